//! Event payloads keep any text: NUL characters, escapes, emoji, large outputs.

use std::collections::BTreeMap;

use super::fixtures::{append_ok, batch, create, owner, read_run_ok};
use crate::checkpoint::{AttemptOutcome, Event, RunId};
use crate::store::CheckpointStore;

/// Strings a task can produce (a NUL character, a literal `\u0000`, control characters,
/// emoji, 1 MB of output) come back from `read_run` and `read_log` exactly as appended.
pub async fn test_payloads_keep_any_text(store: &dyn CheckpointStore) {
    let odd = "nul:\0 escaped:\\u0000 bell:\u{7} del:\u{7f} emoji:😀 bom:\u{feff} end";
    let run_id = RunId::new();
    let created = Event::RunCreated {
        workflow: "payloads".into(),
        version: "v1".into(),
        source_path: "/flows/payloads.yaml".into(),
        source: format!("name: payloads\n# {odd}\n"),
        params: BTreeMap::from([(odd.to_string(), odd.to_string())]),
        at: 1,
    };
    let epoch = create(store, run_id, &owner("payloads", 1), created.clone()).await;
    let big: String = "0123456789abcdef\n".repeat(64 * 1024);
    let events = vec![
        Event::AttemptFinished {
            task: 0,
            attempt: 1,
            at: 2,
            outcome: AttemptOutcome::Succeeded {
                outputs: BTreeMap::from([
                    ("odd".to_string(), odd.to_string()),
                    ("big".to_string(), big),
                ]),
            },
        },
        Event::RunFinished {
            state: crate::checkpoint::RunEnd::Failed,
            at: 3,
            reason: odd.to_string(),
        },
    ];
    append_ok(store, epoch, batch(run_id, &events)).await;
    let expected: Vec<Event> = std::iter::once(created).chain(events).collect();
    let read: Vec<Event> = read_run_ok(store, run_id)
        .await
        .into_iter()
        .map(|checkpoint| checkpoint.event)
        .collect();
    assert!(
        read == expected,
        "read_run must return the events exactly as appended"
    );
    let log: Vec<Event> = store
        .read_log(0, 10)
        .await
        .unwrap_or_else(|error| panic!("read_log failed: {error}"))
        .into_iter()
        .map(|checkpoint| checkpoint.event)
        .collect();
    assert!(
        log == expected,
        "read_log must return the events exactly as appended"
    );
}
