//! Compiling `schedule:`: defaults, every field, and what the compiled schedule means.

use std::path::Path;
use std::time::Duration;

use tandem_dsl::{Catchup, ScheduleSpec, WorkflowSpec, compile, compile_file};

fn ok(text: &str) -> WorkflowSpec {
    compile("test.yaml", text).unwrap_or_else(|errors| panic!("{errors}"))
}

fn schedule_of(text: &str) -> ScheduleSpec {
    ok(text).schedule.expect("a schedule")
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn every_field_is_read() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/scheduled.yaml");
    let spec = compile_file(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let schedule = spec.schedule.expect("a schedule");
    assert_eq!(schedule.cron, "30 2 * * MON-FRI");
    assert_eq!(schedule.timezone, "Europe/Paris");
    assert_eq!(schedule.tz, chrono_tz::Europe::Paris);
    assert_eq!(schedule.catchup, Catchup::All);
    assert_eq!(schedule.catchup_window, Duration::from_secs(6 * 3600));
    // Friday 2024-01-05 02:30 CET, then Monday 2024-01-08 02:30 CET.
    assert_eq!(
        schedule.next_tick(ms("2024-01-04T02:00:00Z")),
        Some(ms("2024-01-05T01:30:00Z"))
    );
    assert_eq!(
        schedule.next_tick(ms("2024-01-05T01:30:00Z")),
        Some(ms("2024-01-08T01:30:00Z"))
    );
}

#[test]
fn defaults_are_utc_latest_and_a_day() {
    let schedule = schedule_of("name: w\nschedule: { cron: ' @daily ' }\ntasks: { t: {} }\n");
    assert_eq!(schedule.cron, "@daily");
    assert_eq!(schedule.timezone, "UTC");
    assert_eq!(schedule.tz, chrono_tz::UTC);
    assert_eq!(schedule.catchup, Catchup::Latest);
    assert_eq!(
        schedule.catchup_window,
        ScheduleSpec::DEFAULT_CATCHUP_WINDOW
    );
    assert_eq!(
        schedule.next_tick(ms("2024-02-29T12:00:00Z")),
        Some(ms("2024-03-01T00:00:00Z"))
    );
}

#[test]
fn a_workflow_without_schedule_has_none() {
    assert_eq!(ok("name: w\ntasks: { t: {} }\n").schedule, None);
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/full.yaml");
    assert_eq!(compile_file(&full).unwrap().schedule, None);
}

#[test]
fn the_window_bounds_are_accepted() {
    for (text, window) in [("1m", 60), ("366d", 366 * 24 * 3600), ("1h30m", 5400)] {
        let schedule = schedule_of(&format!(
            "name: w\nschedule: {{ cron: '0 * * * *', catchup_window: {text} }}\ntasks: {{ t: {{}} }}\n"
        ));
        assert_eq!(
            schedule.catchup_window,
            Duration::from_secs(window),
            "{text}"
        );
    }
    for text in ["59s", "367d"] {
        let errors = compile(
            "w.yaml",
            &format!(
                "name: w\nschedule: {{ cron: '0 * * * *', catchup_window: {text} }}\ntasks: {{ t: {{}} }}\n"
            ),
        )
        .unwrap_err();
        assert!(
            errors.to_string().contains("from 1m to 366d"),
            "{text}: {errors}"
        );
    }
}

#[test]
fn params_need_defaults_only_with_a_schedule() {
    let required =
        "name: w\nparams: { region: ~ }\ntasks: { t: { run: 'echo ${{ params.region }}' } }\n";
    ok(required);
    let scheduled = format!("{required}schedule: {{ cron: '@hourly' }}\n");
    let errors = compile("w.yaml", &scheduled).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].path, "params.region");
    // A bad default is reported once, not again as a missing one.
    let bad = "name: w\nparams: { region: [x] }\nschedule: { cron: '@hourly' }\ntasks: { t: {} }\n";
    let errors = compile("w.yaml", bad).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(
        errors.0[0].message.starts_with("expected a default value"),
        "{errors}"
    );
}

#[test]
fn a_schedule_does_not_change_the_rest_of_the_spec() {
    let plain = ok("name: w\ntasks: { a: { run: 'true' }, b: { needs: [a] } }\n");
    let scheduled = ok(
        "name: w\nschedule: { cron: '*/5 * * * *' }\ntasks: { a: { run: 'true' }, b: { needs: [a] } }\n",
    );
    assert_eq!(plain.tasks, scheduled.tasks);
    assert_ne!(plain.version, scheduled.version);
}
