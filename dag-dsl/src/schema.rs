//! The JSON Schema of the workflow file format, for editor completion (`tandem schema`).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::raw::RawWorkflow;

/// The `$id` of the schema.
pub const SCHEMA_ID: &str = "https://tandem.dev/schemas/workflow.json";

/// The JSON Schema (draft 2020-12) of a workflow file, generated with `schemars` from the
/// raw structs the parser fills, with a description for every field.
///
/// It matches what the parser accepts: unknown keys are refused (`additionalProperties:
/// false`), optional fields may be left out but not set to null (only a param's default may
/// be null), and names follow the spelling rules of the parser. Semantic rules (no cycles,
/// known task ids, valid templates) are beyond JSON Schema and checked by [`crate::compile`].
pub fn json_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<RawWorkflow>().to_value();
    forbid_null_fields(&mut schema);
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".to_string(), Value::String(SCHEMA_ID.to_string()));
    }
    schema
}

/// `schemars` lets every `Option` field be null; the parser treats null as a wrong type, so
/// the schema of every object property drops its null alternative.
fn forbid_null_fields(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                for property in properties.values_mut() {
                    drop_null(property);
                }
            }
            for value in object.values_mut() {
                forbid_null_fields(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null_fields),
        _ => {}
    }
}

/// Removes `null` from one property schema: `type: [T, "null"]` → `type: T`, and
/// `anyOf: [S, {type: null}]` → `S`'s keywords merged in.
fn drop_null(property: &mut Value) {
    let Some(object) = property.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".to_string(), only);
        }
    }
    if let Some(Value::Array(alternatives)) = object.get("anyOf") {
        let rest: Vec<Value> = alternatives
            .iter()
            .filter(|alt| alt.get("type") != Some(&Value::String("null".to_string())))
            .cloned()
            .collect();
        if rest.len() == 1 && rest.len() < alternatives.len() {
            object.remove("anyOf");
            if let Value::Object(only) = &rest[0] {
                for (key, value) in only {
                    object.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
    }
}
