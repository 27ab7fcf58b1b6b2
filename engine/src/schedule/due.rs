//! Which ticks of a schedule to fire now: the catch-up policy and window applied to the ticks
//! between a workflow's cursor and the current time. Pure: no clock, no store.

use tandem_dsl::{Catchup, ScheduleSpec};

use crate::checkpoint::UnixMillis;

/// At most this many ticks older than the catch-up window are counted in
/// [`DueTicks::skipped`]; beyond that the count stops (and the search jumps to the window),
/// so a cursor years old costs no more than this many steps (well under a second).
pub const SKIPPED_COUNT_LIMIT: u64 = 100_000;

/// What to do with a schedule now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DueTicks {
    /// The ticks to fire now, oldest first (ms since the Unix epoch).
    pub fire: Vec<UnixMillis>,
    /// How many ticks after the cursor and not after now are not fired: older than the
    /// catch-up window, or left out by `catchup: latest`. Counted up to
    /// [`SKIPPED_COUNT_LIMIT`] for those older than the window.
    pub skipped: u64,
    /// The first tick after now, when the calendar has one (croner's ends at the year 5000).
    pub next: Option<UnixMillis>,
}

/// The ticks of `schedule` to fire at `now`, every tick after `after` (the cursor, exclusive)
/// counting as missed: the catch-up policy applies to all of them. The same as
/// [`due_ticks_watched`] with `watching_since = now`.
pub fn due_ticks(schedule: &ScheduleSpec, after: UnixMillis, now: UnixMillis) -> DueTicks {
    due_ticks_watched(schedule, after, now, now)
}

/// The ticks of `schedule` to fire at `now`, after the cursor `after` (exclusive), for a ticker
/// that has been watching since `watching_since`. All times are ms since the Unix epoch.
///
/// Rules, for the ticks `t` with `after < t <= now`:
/// - `t` older than the catch-up window (`t < now - catchup_window`) is skipped;
/// - `t <= watching_since` was missed while nobody watched (no leader ran the region): with
///   `catchup: all` it is fired; with `catchup: latest` only the latest such tick is;
/// - `t > watching_since` fell due while the ticker watched: it is fired, however late the
///   ticker is, so its own timing never makes it skip a tick inside the window.
///
/// Daylight-saving changes are the schedule's (see [`ScheduleSpec`]): croner moves a fixed
/// time that falls in a skipped hour to the first minute after it, fires a fixed time once
/// in a repeated hour, and fires wildcard times in both passes of a repeated hour.
pub fn due_ticks_watched(
    schedule: &ScheduleSpec,
    after: UnixMillis,
    now: UnixMillis,
    watching_since: UnixMillis,
) -> DueTicks {
    let window = i64::try_from(schedule.catchup_window.as_millis()).unwrap_or(i64::MAX);
    let window_start = now.saturating_sub(window);
    let mut due = DueTicks::default();

    // Ticks older than the window: counted, up to the limit.
    let mut search_from = after;
    if after < window_start {
        for tick in schedule.ticks_after(after) {
            if tick >= window_start || tick > now {
                break;
            }
            due.skipped += 1;
            if due.skipped >= SKIPPED_COUNT_LIMIT {
                break;
            }
        }
        // Every tick from here on is at or after the window's start.
        search_from = window_start - 1;
    }

    let mut latest_missed: Option<UnixMillis> = None;
    for tick in schedule.ticks_after(search_from) {
        if tick > now {
            due.next = Some(tick);
            break;
        }
        if tick <= watching_since {
            match schedule.catchup {
                Catchup::All => due.fire.push(tick),
                Catchup::Latest => {
                    if latest_missed.replace(tick).is_some() {
                        due.skipped += 1;
                    }
                }
            }
        } else {
            // Missed ticks all come before the watched ones.
            due.fire.extend(latest_missed.take());
            due.fire.push(tick);
        }
    }
    due.fire.extend(latest_missed);
    due
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    fn schedule(cron: &str, timezone: &str, catchup: &str, window: &str) -> ScheduleSpec {
        let text = format!(
            "name: w\nschedule: {{ cron: '{cron}', timezone: {timezone}, catchup: {catchup}, \
             catchup_window: {window} }}\ntasks: {{ t: {{}} }}\n"
        );
        tandem_dsl::compile("w.yaml", &text)
            .unwrap_or_else(|errors| panic!("{errors}"))
            .schedule
            .expect("a schedule")
    }

    /// Ms since the Unix epoch of an RFC 3339 time.
    fn at(text: &str) -> UnixMillis {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("{text}: {error}"))
            .timestamp_millis()
    }

    fn times(ticks: &[UnixMillis]) -> Vec<String> {
        ticks
            .iter()
            .map(|tick| {
                chrono::DateTime::from_timestamp_millis(*tick)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .collect()
    }

    #[test]
    fn nothing_is_due_before_the_first_tick_after_the_cursor() {
        let hourly = schedule("0 * * * *", "UTC", "latest", "24h");
        let registered = at("2024-05-01T10:20:00.123Z");
        let due = due_ticks(&hourly, registered, at("2024-05-01T10:59:59.999Z"));
        assert_eq!(due.fire, Vec::<UnixMillis>::new());
        assert_eq!(due.skipped, 0);
        assert_eq!(due.next, Some(at("2024-05-01T11:00:00Z")));
        // At the tick exactly, it is due; the next one is an hour later.
        let due = due_ticks(&hourly, registered, at("2024-05-01T11:00:00Z"));
        assert_eq!(times(&due.fire), ["2024-05-01T11:00:00Z"]);
        assert_eq!(due.next, Some(at("2024-05-01T12:00:00Z")));
    }

    #[test]
    fn a_tick_at_the_cursor_is_not_due_again() {
        let hourly = schedule("0 * * * *", "UTC", "all", "24h");
        let fired = at("2024-05-01T11:00:00Z");
        let due = due_ticks(&hourly, fired, fired + 30 * MINUTE);
        assert!(due.fire.is_empty(), "{due:?}");
        assert_eq!(due.next, Some(fired + HOUR));
    }

    #[test]
    fn catchup_latest_fires_only_the_latest_missed_tick() {
        let hourly = schedule("0 * * * *", "UTC", "latest", "24h");
        let due = due_ticks(
            &hourly,
            at("2024-05-01T10:00:00Z"),
            at("2024-05-01T14:30:00Z"),
        );
        assert_eq!(times(&due.fire), ["2024-05-01T14:00:00Z"]);
        assert_eq!(due.skipped, 3);
        assert_eq!(due.next, Some(at("2024-05-01T15:00:00Z")));
    }

    #[test]
    fn catchup_all_fires_every_missed_tick_oldest_first() {
        let hourly = schedule("0 * * * *", "UTC", "all", "24h");
        let due = due_ticks(
            &hourly,
            at("2024-05-01T10:00:00Z"),
            at("2024-05-01T14:30:00Z"),
        );
        assert_eq!(
            times(&due.fire),
            [
                "2024-05-01T11:00:00Z",
                "2024-05-01T12:00:00Z",
                "2024-05-01T13:00:00Z",
                "2024-05-01T14:00:00Z"
            ]
        );
        assert_eq!(due.skipped, 0);
    }

    #[test]
    fn ticks_older_than_the_window_are_skipped() {
        let hourly = schedule("0 * * * *", "UTC", "all", "2h");
        let now = at("2024-05-02T14:30:00Z");
        let due = due_ticks(&hourly, at("2024-05-01T10:00:00Z"), now);
        // 12:30 is the window's start: 13:00 and 14:00 are inside it.
        assert_eq!(
            times(&due.fire),
            ["2024-05-02T13:00:00Z", "2024-05-02T14:00:00Z"]
        );
        // 2024-05-01 11:00 to 2024-05-02 12:00: 26 ticks.
        assert_eq!(due.skipped, 26);
        // A tick exactly at the window's start is inside it.
        let due = due_ticks(
            &hourly,
            at("2024-05-02T10:00:00Z"),
            at("2024-05-02T13:00:00Z"),
        );
        assert_eq!(
            times(&due.fire),
            [
                "2024-05-02T11:00:00Z",
                "2024-05-02T12:00:00Z",
                "2024-05-02T13:00:00Z"
            ]
        );
        // With `latest` and every missed tick outside the window, nothing is fired.
        let sparse = schedule("0 3 * * *", "UTC", "latest", "1h");
        let due = due_ticks(
            &sparse,
            at("2024-05-01T03:00:00Z"),
            at("2024-05-04T10:00:00Z"),
        );
        assert!(due.fire.is_empty(), "{due:?}");
        assert_eq!(due.skipped, 3);
        assert_eq!(due.next, Some(at("2024-05-05T03:00:00Z")));
    }

    #[test]
    fn ticks_that_fell_due_while_watching_are_all_fired_whatever_the_policy() {
        let every_minute = schedule("* * * * *", "UTC", "latest", "1h");
        let started = at("2024-05-01T10:00:30Z");
        // The ticker was 3 minutes late (a slow store): every tick since it started is fired,
        // and of the ticks missed before it started only the latest.
        let due = due_ticks_watched(
            &every_minute,
            at("2024-05-01T09:55:00Z"),
            at("2024-05-01T10:03:10Z"),
            started,
        );
        assert_eq!(
            times(&due.fire),
            [
                "2024-05-01T10:00:00Z",
                "2024-05-01T10:01:00Z",
                "2024-05-01T10:02:00Z",
                "2024-05-01T10:03:00Z"
            ]
        );
        assert_eq!(due.skipped, 4, "09:56 to 09:59");
        // Still bounded by the window.
        let due = due_ticks_watched(&every_minute, started, started + 2 * HOUR, started);
        // The window starts at 11:00:30: 11:01 to 12:00 are fired, 10:01 to 11:00 skipped.
        assert_eq!(due.fire.len(), 60, "{:?}", times(&due.fire));
        assert_eq!(due.fire[0], at("2024-05-01T11:01:00Z"));
        assert_eq!(due.skipped, 60);
    }

    #[test]
    fn a_cursor_in_the_future_makes_nothing_due() {
        let hourly = schedule("0 * * * *", "UTC", "all", "24h");
        let due = due_ticks(
            &hourly,
            at("2024-05-01T12:00:00Z"),
            at("2024-05-01T10:00:00Z"),
        );
        assert!(due.fire.is_empty());
        assert_eq!(due.skipped, 0);
        assert_eq!(due.next, Some(at("2024-05-01T13:00:00Z")));
    }

    #[test]
    fn a_very_old_cursor_costs_a_bounded_count() {
        let every_minute = schedule("* * * * *", "UTC", "latest", "1m");
        let now = at("2024-05-01T10:00:30Z");
        let due = due_ticks(&every_minute, at("2014-05-01T10:00:00Z"), now);
        assert_eq!(times(&due.fire), ["2024-05-01T10:00:00Z"]);
        assert_eq!(due.skipped, SKIPPED_COUNT_LIMIT);
        assert_eq!(due.next, Some(at("2024-05-01T10:01:00Z")));
    }

    #[test]
    fn spring_forward_moves_a_fixed_time_and_skips_wildcard_times() {
        // Paris, 2024-03-31: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
        let fixed = schedule("30 2 * * *", "Europe/Paris", "all", "3d");
        let due = due_ticks(
            &fixed,
            at("2024-03-29T12:00:00Z"),
            at("2024-04-01T12:00:00Z"),
        );
        assert_eq!(
            times(&due.fire),
            [
                "2024-03-30T01:30:00Z", // 02:30 CET
                "2024-03-31T01:00:00Z", // 02:30 does not exist: 03:00 CEST
                "2024-04-01T00:30:00Z"  // 02:30 CEST
            ]
        );
        let every_half_hour = schedule("*/30 * * * *", "Europe/Paris", "all", "1d");
        let due = due_ticks(
            &every_half_hour,
            at("2024-03-31T00:00:00Z"),
            at("2024-03-31T01:30:00Z"),
        );
        // 01:30 CET, then 03:00 and 03:30 CEST: 02:00 and 02:30 are skipped, not moved.
        assert_eq!(
            times(&due.fire),
            [
                "2024-03-31T00:30:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:30:00Z"
            ]
        );
    }

    #[test]
    fn fall_back_fires_a_fixed_time_once_and_wildcard_times_twice() {
        // New York, 2024-11-03: 02:00 EDT (06:00 UTC) falls back to 01:00 EST.
        let fixed = schedule("30 1 * * *", "America/New_York", "all", "3d");
        let due = due_ticks(
            &fixed,
            at("2024-11-02T12:00:00Z"),
            at("2024-11-04T12:00:00Z"),
        );
        assert_eq!(
            times(&due.fire),
            [
                "2024-11-03T05:30:00Z", // 01:30 EDT; 01:30 EST (06:30 UTC) does not tick
                "2024-11-04T06:30:00Z"  // 01:30 EST
            ]
        );
        // A cursor on the first 01:30 does not find the second one.
        let due = due_ticks(
            &fixed,
            at("2024-11-03T05:30:00Z"),
            at("2024-11-03T07:00:00Z"),
        );
        assert!(due.fire.is_empty(), "{:?}", times(&due.fire));
        let hourly = schedule("0 * * * *", "America/New_York", "all", "1d");
        let due = due_ticks(
            &hourly,
            at("2024-11-03T04:30:00Z"),
            at("2024-11-03T07:30:00Z"),
        );
        // 01:00 EDT, 01:00 EST, 02:00 EST: local 01:00 ticks in both passes.
        assert_eq!(
            times(&due.fire),
            [
                "2024-11-03T05:00:00Z",
                "2024-11-03T06:00:00Z",
                "2024-11-03T07:00:00Z"
            ]
        );
    }

    #[test]
    fn the_window_is_the_schedules() {
        let hourly = schedule("0 * * * *", "UTC", "all", "90m");
        assert_eq!(hourly.catchup_window, Duration::from_secs(5400));
        let due = due_ticks(&hourly, 0, at("2024-05-01T10:30:00Z"));
        assert_eq!(
            times(&due.fire),
            ["2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"]
        );
    }
}
