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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::raw::{RawDefaults, RawRetry, RawSchedule, RawTask, RawWorker};

    /// An object of the schema: its name, the keys the converter accepts there, and a
    /// function that builds a file setting one key of that object.
    type Object = (&'static str, &'static [&'static str], fn(&str) -> String);

    fn objects() -> Vec<Object> {
        vec![
            ("Workflow", RawWorkflow::FIELDS, |key| match key {
                "name" | "tasks" => format!("{key}: [{{}}]\n"),
                _ => format!("name: w\ntasks: {{ t: {{}} }}\n{key}: [{{}}]\n"),
            }),
            ("Defaults", RawDefaults::FIELDS, |key| {
                format!("name: w\ntasks: {{ t: {{}} }}\ndefaults: {{ {key}: [{{}}] }}\n")
            }),
            ("Task", RawTask::FIELDS, |key| {
                format!("name: w\ntasks: {{ t: {{ {key}: [{{}}] }} }}\n")
            }),
            ("RetryPolicy", RawRetry::FIELDS, |key| {
                format!("name: w\ntasks: {{ t: {{ retry: {{ {key}: [{{}}] }} }} }}\n")
            }),
            ("Worker", RawWorker::FIELDS, |key| {
                format!("name: w\ntasks: {{ t: {{ worker: {{ {key}: [{{}}] }} }} }}\n")
            }),
            ("Schedule", RawSchedule::FIELDS, |key| {
                format!("name: w\ntasks: {{ t: {{}} }}\nschedule: {{ {key}: [{{}}] }}\n")
            }),
        ]
    }

    fn properties(schema: &Value) -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn object_schema<'a>(schema: &'a Value, name: &str) -> &'a Value {
        if name == "Workflow" {
            schema
        } else {
            &schema["$defs"][name]
        }
    }

    #[test]
    fn schema_properties_equal_the_keys_the_parser_accepts() {
        let schema = json_schema();
        for (name, fields, _) in objects() {
            let expected: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
            assert_eq!(properties(object_schema(&schema, name)), expected, "{name}");
        }
        // No other object of the schema has fixed properties the parser would not know.
        let defs = schema["$defs"].as_object().unwrap();
        let with_properties: BTreeSet<&str> = defs
            .iter()
            .filter(|(_, def)| def.get("properties").is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            with_properties,
            BTreeSet::from(["Defaults", "RetryPolicy", "Schedule", "Task", "Worker"])
        );
    }

    #[test]
    fn the_parser_reads_every_schema_property() {
        let schema = json_schema();
        for (name, _, file_with) in objects() {
            for key in properties(object_schema(&schema, name)) {
                let text = file_with(&key);
                let errors = crate::compile("f.yaml", &text).unwrap_err();
                // The value `[{}]` is wrong for every field: the converter must have read it
                // (an error on the field itself) rather than refused the key.
                assert!(
                    errors
                        .0
                        .iter()
                        .all(|e| !e.message.starts_with("unknown field")),
                    "{name}.{key}: {errors}"
                );
                assert!(
                    errors.0.iter().any(|e| e.path == key
                        || e.path.ends_with(&format!(".{key}"))
                        || e.path.contains(&format!(".{key}["))
                        || e.path.starts_with(&format!("{key}["))),
                    "{name}.{key}: {errors}"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_both() {
        let schema = json_schema();
        for (name, _, file_with) in objects() {
            assert_eq!(
                object_schema(&schema, name)["additionalProperties"],
                Value::Bool(false),
                "{name}"
            );
            let errors = crate::compile("f.yaml", &file_with("zzz")).unwrap_err();
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.message.starts_with("unknown field `zzz`")),
                "{name}: {errors}"
            );
        }
    }

    #[test]
    fn every_field_has_a_description_and_the_schema_is_2020_12() {
        let schema = json_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        for (name, _, _) in objects() {
            let object = object_schema(&schema, name);
            assert!(object["description"].is_string(), "{name}");
            for (key, property) in object["properties"].as_object().unwrap() {
                let description = property["description"].as_str().unwrap_or_default();
                assert!(!description.is_empty(), "{name}.{key} has no description");
            }
        }
    }

    #[test]
    fn optional_fields_are_not_nullable_but_param_defaults_are() {
        let schema = json_schema();
        let text = schema.to_string();
        assert_eq!(schema["required"], serde_json::json!(["name", "tasks"]));
        assert_eq!(schema["properties"]["description"]["type"], "string");
        assert!(
            schema["properties"]["deadline"].get("anyOf").is_none(),
            "{text}"
        );
        let param = &schema["$defs"]["ParamDefault"]["type"];
        assert!(param.as_array().unwrap().contains(&Value::from("null")));
    }

    #[test]
    fn schedule_requires_cron_and_lists_the_catchup_policies() {
        let schema = json_schema();
        let schedule = &schema["$defs"]["Schedule"];
        assert_eq!(schedule["required"], serde_json::json!(["cron"]));
        assert_eq!(
            schema["$defs"]["Catchup"]["enum"],
            serde_json::json!(["latest", "all"])
        );
        assert_eq!(
            schedule["properties"]["cron"]["type"], "string",
            "{schedule}"
        );
        assert_eq!(
            schedule["properties"]["timezone"]["$ref"], "#/$defs/Timezone",
            "{schedule}"
        );
    }
}
