//! How both backends store an event: its kind in one column and the event as JSON in
//! another; reading checks that the two agree.

use crate::checkpoint::Event;

/// Decodes the JSON `payload` of the checkpoint at `at` (a place like `checkpoint at position
/// 12`) and checks that its kind is the `kind` column's.
///
/// Errors: what was expected and found, for [`crate::store::StoreError::Corrupt`].
pub(crate) fn decode_event(at: &str, kind: &str, payload: &str) -> Result<Event, String> {
    let event: Event = serde_json::from_str(payload).map_err(|error| {
        format!(
            "{at}: expected a checkpoint event as JSON in column payload, found one that does not decode: {error}"
        )
    })?;
    if event.kind() != kind {
        return Err(format!(
            "{at}: column kind says `{kind}` but the payload is an event of kind `{}`",
            event.kind()
        ));
    }
    Ok(event)
}
