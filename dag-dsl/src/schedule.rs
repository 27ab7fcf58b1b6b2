//! A workflow's `schedule:`, checked: when the region starts runs of it on its own.
//!
//! ```
//! let spec = tandem_dsl::compile(
//!     "nightly.yaml",
//!     "name: nightly\nschedule: { cron: '30 2 * * 1-5', timezone: Europe/Paris }\n\
//!      tasks: { t: { run: 'true' } }\n",
//! )
//! .unwrap();
//! let schedule = spec.schedule.unwrap();
//! // Monday 2024-01-01 00:00 UTC → 02:30 in Paris (CET, UTC+1) is 01:30 UTC.
//! let after = 1_704_067_200_000;
//! assert_eq!(schedule.next_tick(after), Some(after + 90 * 60 * 1000));
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

/// A checked `schedule:`: the cron expression, its time zone and the catch-up policy.
///
/// Ticks are the instants the expression matches in `timezone`'s wall-clock time, at whole
/// minutes. Across daylight-saving changes (croner's rules, the OCPS and Vixie cron
/// behaviour): in a spring-forward gap, a fixed time (`30 2 * * *` in a zone that skips 02:00
/// to 03:00) ticks once at the first minute after the gap (03:00), while wildcard or step
/// fields skip the times that do not exist; in a fall-back overlap, a fixed time ticks once,
/// at its first occurrence, while wildcard or step fields tick in both passes of the repeated
/// hour.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// `schedule.cron` as written, without surrounding blanks: five standard cron fields
    /// (minute hour day-of-month month day-of-week) or a nickname such as `@daily`.
    pub cron: String,
    /// The parsed expression (standard cron meaning: no seconds, no extensions).
    pub pattern: croner::Cron,
    /// `schedule.timezone`: the IANA time zone name the expression is read in, as written;
    /// `UTC` by default.
    pub timezone: String,
    /// The time zone.
    pub tz: Tz,
    /// `schedule.catchup`: which missed ticks to fire when the region comes back.
    pub catchup: Catchup,
    /// `schedule.catchup_window`: missed ticks older than this (at the time the region looks
    /// at them) are skipped. Between [`ScheduleSpec::MIN_CATCHUP_WINDOW`] and
    /// [`ScheduleSpec::MAX_CATCHUP_WINDOW`]; default [`ScheduleSpec::DEFAULT_CATCHUP_WINDOW`].
    pub catchup_window: Duration,
}

impl ScheduleSpec {
    /// The default `catchup_window`: 24 hours.
    pub const DEFAULT_CATCHUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
    /// The shortest `catchup_window`: 1 minute, so that a tick looked at a little late (a busy
    /// store, a leader change) is still fired.
    pub const MIN_CATCHUP_WINDOW: Duration = Duration::from_secs(60);
    /// The longest `catchup_window`: 366 days.
    pub const MAX_CATCHUP_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

    /// The ticks strictly after `after` (ms since the Unix epoch, UTC), in ascending order,
    /// as ms since the Unix epoch (whole minutes).
    ///
    /// Croner's calendar runs from the year 1 to the year 5000: an `after` before the year 1
    /// counts as its start, and the iterator ends at the year 5000 (it is empty when `after`
    /// is beyond what a date can hold).
    pub fn ticks_after(&self, after: i64) -> impl Iterator<Item = i64> + '_ {
        let first = Utc
            .with_ymd_and_hms(croner::YEAR_LOWER_LIMIT, 1, 1, 0, 0, 0)
            .single()
            .map_or(i64::MIN, |first| first.timestamp());
        // Ticks are whole seconds, so "after the second `after` falls in" is "after `after`".
        let start = Utc
            .timestamp_opt(after.div_euclid(1000).max(first), 0)
            .single()
            .map(|start| start.with_timezone(&self.tz));
        start
            .into_iter()
            .flat_map(|start| self.pattern.iter_after(start))
            .map(|tick| tick.timestamp_millis())
    }

    /// The first tick strictly after `after` (ms since the Unix epoch), if any.
    pub fn next_tick(&self, after: i64) -> Option<i64> {
        self.ticks_after(after).next()
    }
}

/// What to fire for ticks missed while no leader ran the region (`schedule.catchup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Catchup {
    /// Only the latest missed tick inside the catch-up window (the default).
    #[default]
    Latest,
    /// Every missed tick inside the catch-up window, oldest first.
    All,
}

impl Catchup {
    /// Every policy with its file spelling.
    pub const ALL: [(Catchup, &'static str); 2] =
        [(Catchup::Latest, "latest"), (Catchup::All, "all")];

    /// The spelling used in files (`latest`, `all`).
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
    }

    /// Parses the file spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<Catchup> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(catchup, _)| *catchup)
    }
}

impl fmt::Display for Catchup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, timezone: &str) -> ScheduleSpec {
        let text = format!(
            "name: w\nschedule: {{ cron: '{cron}', timezone: {timezone} }}\ntasks: {{ t: {{}} }}\n"
        );
        crate::compile("w.yaml", &text)
            .unwrap_or_else(|errors| panic!("{errors}"))
            .schedule
            .unwrap()
    }

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn ticks(schedule: &ScheduleSpec, after: &str, count: usize) -> Vec<String> {
        schedule
            .ticks_after(utc(after))
            .take(count)
            .map(|tick| {
                Utc.timestamp_millis_opt(tick)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .collect()
    }

    #[test]
    fn ticks_are_strictly_after_even_within_the_second() {
        let every_minute = schedule("* * * * *", "UTC");
        assert_eq!(
            ticks(&every_minute, "2024-01-01T10:01:00Z", 2),
            ["2024-01-01T10:02:00Z", "2024-01-01T10:03:00Z"]
        );
        assert_eq!(
            ticks(&every_minute, "2024-01-01T10:01:00.500Z", 1),
            ["2024-01-01T10:02:00Z"]
        );
        assert_eq!(
            ticks(&every_minute, "2024-01-01T10:00:59.999Z", 1),
            ["2024-01-01T10:01:00Z"]
        );
    }

    #[test]
    fn fixed_times_tick_once_across_daylight_saving_changes() {
        // Paris: 2024-03-31 02:00 CET → 03:00 CEST; 2024-10-27 03:00 CEST → 02:00 CET.
        let daily = schedule("30 2 * * *", "Europe/Paris");
        assert_eq!(
            ticks(&daily, "2024-03-30T12:00:00Z", 2),
            // 02:30 does not exist on the 31st: the tick is at 03:00 CEST (01:00 UTC).
            ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"]
        );
        assert_eq!(
            ticks(&daily, "2024-10-26T12:00:00Z", 2),
            // 02:30 happens twice on the 27th: only the first (CEST, 00:30 UTC) ticks.
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]
        );
        // Resuming from the first 02:30 does not find the second one.
        assert_eq!(
            ticks(&daily, "2024-10-27T00:30:00Z", 1),
            ["2024-10-28T01:30:00Z"]
        );
    }

    #[test]
    fn wildcard_times_skip_the_gap_and_repeat_the_overlap() {
        let half_hourly = schedule("*/30 * * * *", "Europe/Paris");
        assert_eq!(
            ticks(&half_hourly, "2024-03-31T00:00:00Z", 3),
            // 01:30 CET, then 03:00 CEST: 02:00 and 02:30 do not exist.
            [
                "2024-03-31T00:30:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:30:00Z"
            ]
        );
        assert_eq!(
            ticks(&half_hourly, "2024-10-26T23:45:00Z", 5),
            // 02:00 and 02:30 CEST, then 02:00 and 02:30 CET, then 03:00 CET.
            [
                "2024-10-27T00:00:00Z",
                "2024-10-27T00:30:00Z",
                "2024-10-27T01:00:00Z",
                "2024-10-27T01:30:00Z",
                "2024-10-27T02:00:00Z"
            ]
        );
    }

    #[test]
    fn instants_beyond_the_calendar_are_clamped_or_have_no_ticks() {
        let every_minute = schedule("* * * * *", "UTC");
        assert_eq!(every_minute.next_tick(i64::MAX), None);
        assert_eq!(
            every_minute.next_tick(utc("4999-12-31T23:59:00Z")),
            Some(utc("4999-12-31T23:59:00Z") + 60_000)
        );
        assert_eq!(every_minute.next_tick(utc("5000-01-01T00:00:00Z")), None);
        assert_eq!(
            every_minute.next_tick(i64::MIN),
            Some(utc("0001-01-01T00:01:00Z"))
        );
    }

    #[test]
    fn catchup_spellings_round_trip() {
        for (catchup, name) in Catchup::ALL {
            assert_eq!(Catchup::parse(name), Some(catchup));
            assert_eq!(catchup.to_string(), name);
        }
        assert_eq!(Catchup::parse("Latest"), None);
    }
}
