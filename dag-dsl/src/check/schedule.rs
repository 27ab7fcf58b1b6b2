//! Checks of `schedule:`: the cron expression, the time zone, the catch-up policy and window,
//! and that every param has a default (a scheduled run has nobody to give one).

use chrono_tz::Tz;

use crate::names::shorten;
use crate::raw::{CatchupText, Entries, ParamDefault, ParamKeys, RawSchedule, Sp, TimezoneText};
use crate::report::{Path, Report, did_you_mean, one_of};
use crate::schedule::{Catchup, ScheduleSpec};
use crate::yaml::Pos;

use super::fields;

/// What a time zone looks like, for messages.
const EXPECTED_ZONE: &str =
    "an IANA time zone name like `Europe/Paris`, `America/New_York` or `UTC`";

/// Checks `schedule` (at path `schedule`); `None` when something was reported.
pub(super) fn check(report: &mut Report, raw: &RawSchedule) -> Option<ScheduleSpec> {
    let path = Path::ROOT.key("schedule");
    let cron = raw
        .cron
        .as_ref()
        .and_then(|cron| match crate::cron::parse(&cron.value.0) {
            Ok(pattern) => Some((cron.value.0.trim().to_string(), pattern)),
            Err((message, help)) => {
                report.push(cron.pos, &path.key("cron"), message, help);
                None
            }
        });
    let zone = match &raw.timezone {
        Some(zone) => timezone(report, zone, &path.key("timezone")),
        None => Some(Tz::UTC),
    };
    let catchup = match &raw.catchup {
        Some(catchup) => self::catchup(report, catchup, &path.key("catchup")),
        None => Some(Catchup::default()),
    };
    let window = match &raw.catchup_window {
        Some(text) => {
            let window_path = path.key("catchup_window");
            fields::duration(report, text, &window_path, true).and_then(|window| {
                if (ScheduleSpec::MIN_CATCHUP_WINDOW..=ScheduleSpec::MAX_CATCHUP_WINDOW)
                    .contains(&window)
                {
                    return Some(window);
                }
                let help = (window < ScheduleSpec::MIN_CATCHUP_WINDOW).then(|| {
                    "the region may look at a tick a little after its time (a busy store, a \
                     leader change); a shorter window could skip it"
                        .to_string()
                });
                report.push(
                    text.pos,
                    &window_path,
                    format!(
                        "expected a catch-up window from 1m to 366d, found `{}`",
                        shorten(&text.value.0)
                    ),
                    help,
                );
                None
            })
        }
        None => Some(ScheduleSpec::DEFAULT_CATCHUP_WINDOW),
    };
    let (cron, pattern) = cron?;
    let tz = zone?;
    Some(ScheduleSpec {
        cron,
        pattern,
        timezone: tz.name().to_string(),
        tz,
        catchup: catchup?,
        catchup_window: window?,
    })
}

/// Reports every param without a default of a workflow that has a schedule at `schedule`.
pub(super) fn params_have_defaults(
    report: &mut Report,
    params: Option<&Entries<ParamKeys, Sp<ParamDefault>>>,
    schedule: Pos,
) {
    let params_path = Path::ROOT.key("params");
    for (name, default) in params.iter().flat_map(|entries| entries.entries.iter()) {
        if default.value.0.is_some() {
            continue;
        }
        report.error_with_help(
            name.pos,
            &params_path.key(&name.value),
            format!(
                "param `{}` has no default, but the workflow has a `schedule` (line {}): a \
                 scheduled run starts with the params' defaults, nobody passes --param",
                shorten(&name.value),
                schedule.line
            ),
            format!(
                "give `{}` a default, e.g. `{}: VALUE`, or leave `schedule` out",
                shorten(&name.value),
                shorten(&name.value)
            ),
        );
    }
}

fn timezone(report: &mut Report, text: &Sp<TimezoneText>, path: &Path<'_>) -> Option<Tz> {
    let written = &text.value.0;
    if let Ok(zone) = written.parse::<Tz>() {
        return Some(zone);
    }
    let found = if written.is_empty() {
        "an empty string".to_string()
    } else {
        format!("`{}`", shorten(written))
    };
    let offset = written
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .starts_with(['+', '-'])
        && written.bytes().any(|byte| byte.is_ascii_digit());
    let help = if offset {
        Some(
            "a fixed offset is not a time zone: name the zone of a place, e.g. `Europe/Paris` \
             (which follows its daylight-saving changes), or `Etc/GMT-2` for a constant UTC+2 \
             (tz database names invert the sign)"
                .to_string(),
        )
    } else {
        did_you_mean(
            written,
            chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name()),
        )
    };
    report.push(
        text.pos,
        path,
        format!("unknown time zone {found}, expected {EXPECTED_ZONE}"),
        help,
    );
    None
}

fn catchup(report: &mut Report, text: &Sp<CatchupText>, path: &Path<'_>) -> Option<Catchup> {
    let found = &text.value.0;
    if let Some(catchup) = Catchup::parse(found) {
        return Some(catchup);
    }
    let accepted: Vec<&str> = Catchup::ALL.iter().map(|(_, name)| *name).collect();
    report.push(
        text.pos,
        path,
        format!(
            "unknown catchup `{}`, expected {}",
            shorten(found),
            one_of(&accepted)
        ),
        did_you_mean(found, accepted.iter().copied()),
    );
    None
}
