//! Cron expressions of `schedule.cron`: standard (Vixie) cron's five fields, checked here so
//! that a mistake is reported with the field it is in, then parsed by `croner`.
//!
//! Accepted, as in Vixie cron (`man 5 crontab`):
//! - five fields separated by blanks: minute (0-59), hour (0-23), day of month (1-31), month
//!   (1-12 or `JAN`-`DEC`), day of week (0-7 or `SUN`-`SAT`; 0 and 7 are Sunday);
//! - in each field a comma-separated list of `*`, a number, a range `a-b` (low to high), and a
//!   step after `*` or a range (`*/15`, `9-17/2`); names are case-insensitive and may bound a
//!   range (`MON-FRI`, `SAT-SUN`);
//! - the nicknames `@yearly` (= `@annually`), `@monthly`, `@weekly`, `@daily` (= `@midnight`)
//!   and `@hourly`.
//!
//! Refused with a message: a seconds or a year field (6 or 7 fields), `@reboot`, and croner's
//! and Quartz's extensions that standard cron does not know (`L`, `W`, `#`, `?`, a `+` before
//! the day of week, a step after a single number like `5/15`), so that an expression means
//! the same here as in a crontab. Day of month and day of week follow croner's rule, which is
//! POSIX's: when both are restricted (neither is exactly `*`), a day matches when either
//! matches (`0 0 1,15 * MON` is the 1st, the 15th and every Monday).

use chrono::{TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::names::shorten;
use crate::report::{did_you_mean, one_of};

/// An error in a cron expression: the message and an optional hint.
pub(crate) type CronError = (String, Option<String>);

/// What a cron expression looks like, for messages.
pub(crate) const EXPECTED: &str =
    "a cron expression of 5 fields (minute hour day-of-month month day-of-week)";

/// The nicknames and what they stand for.
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Month names, January first (value = index + 1).
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Day names, Sunday first (value = index).
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One of the five fields.
struct Field {
    /// Its name in messages.
    name: &'static str,
    /// Smallest value.
    min: u32,
    /// Largest value.
    max: u32,
    /// The names it accepts, and the value of the first.
    names: Option<(&'static [&'static str], u32)>,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: None,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: None,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: None,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: Some((&MONTHS, 1)),
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: Some((&DAYS, 0)),
    },
];

impl Field {
    /// The last value in the order of a week or year (6 for day of week, whose 7 is Sunday
    /// again).
    fn last(&self) -> u32 {
        if self.name == "day-of-week" {
            6
        } else {
            self.max
        }
    }

    /// What a value of this field looks like: `a number from 0 to 59`, ...
    fn expected(&self) -> String {
        match self.names {
            Some((names, _)) => format!(
                "a number from {} to {} or a name from `{}` to `{}`",
                self.min,
                self.max,
                names[0],
                names[names.len() - 1]
            ),
            None => format!("a number from {} to {}", self.min, self.max),
        }
    }
}

/// Checks and parses a cron expression (`text` as written; blanks around it are ignored).
///
/// Errors: the message says which field is wrong, what it expected and what it found.
pub(crate) fn parse(text: &str) -> Result<Cron, CronError> {
    let trimmed = text.trim();
    let expanded = if trimmed.starts_with('@') {
        nickname(trimmed)?
    } else {
        check_fields(trimmed)?;
        trimmed
    };
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(expanded).map_err(|error| {
        (
            format!("expected {EXPECTED}, found `{}`: {error}", shorten(trimmed)),
            None,
        )
    })?;
    // The only way a checked expression can never match: days of month that no month it
    // names has (`0 0 31 2 *`); croner's search gives up after some years.
    let start = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    if let Some(start) = start
        && cron.find_next_occurrence(&start, false).is_err()
    {
        return Err((
            format!(
                "cron expression `{}` never matches: no month it names has the days of month \
                 it names",
                shorten(trimmed)
            ),
            Some("February has 29 days at most; April, June, September and November 30".into()),
        ));
    }
    Ok(cron)
}

/// The 5-field form of a nickname (`@daily`).
fn nickname(text: &str) -> Result<&'static str, CronError> {
    let lower = text.to_ascii_lowercase();
    if let Some((_, fields)) = NICKNAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(fields);
    }
    let names: Vec<&str> = NICKNAMES.iter().map(|(name, _)| *name).collect();
    let accepted = one_of(&names);
    if lower == "@reboot" {
        return Err((
            format!(
                "`@reboot` runs a cron job when cron starts, which a workflow schedule cannot \
                 do: expected {EXPECTED} or one of {accepted}"
            ),
            None,
        ));
    }
    Err((
        format!(
            "unknown cron nickname `{}`, expected one of {accepted}",
            shorten(text)
        ),
        did_you_mean(&lower, names.iter().copied()),
    ))
}

/// Checks the count and the syntax of the five fields.
fn check_fields(text: &str) -> Result<(), CronError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        let found = match fields.len() {
            0 => "an empty string".to_string(),
            1 => format!("1 field (`{}`)", shorten(text)),
            count => format!("{count} fields (`{}`)", shorten(text)),
        };
        let help = match fields.len() {
            6 => "Tandem reads standard cron, with minute precision: leave out the seconds \
                  field (the first of 6)"
                .to_string(),
            7 => "Tandem reads standard cron, with minute precision: leave out the seconds \
                  field (the first of 7) and the year field (the last)"
                .to_string(),
            _ => "e.g. `30 2 * * 1-5` for 02:30 on weekdays, or `*/15 * * * *` for every \
                  15 minutes"
                .to_string(),
        };
        return Err((format!("expected {EXPECTED}, found {found}"), Some(help)));
    }
    for (field, written) in FIELDS.iter().zip(&fields) {
        check_field(field, written).map_err(|(problem, help)| {
            (
                format!(
                    "in cron expression `{}`, the {} field `{}`: {problem}",
                    shorten(text),
                    field.name,
                    shorten(written)
                ),
                help,
            )
        })?;
    }
    Ok(())
}

/// Checks one field: a comma-separated list of `*`, values, ranges and steps.
fn check_field(field: &Field, text: &str) -> Result<(), CronError> {
    if let Some(extension) = extension(field, text) {
        return Err(extension);
    }
    for item in text.split(',') {
        if item.is_empty() {
            return Err((
                "expected a value between every two commas, found an empty one".to_string(),
                None,
            ));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(value) if value >= 1 => {}
                _ => {
                    return Err((
                        format!(
                            "expected a step of at least 1 after `/`, found `{}`",
                            shorten(step)
                        ),
                        None,
                    ));
                }
            }
        }
        if base == "*" {
            if step.is_none() && text.contains(',') {
                return Err((
                    "expected `*` alone or a list without `*`, found `*` in a list".to_string(),
                    Some("`*` selects every value already: leave the other items out".into()),
                ));
            }
            continue;
        }
        match base.split_once('-') {
            Some((low, high)) => {
                let low_value = value(field, low, false)?;
                let high_value = value(field, high, true)?;
                if field.name == "day-of-week" && low_value == 0 && high_value == 7 {
                    // croner reads a range ending in `SUN` as ending in 7: `SUN-SUN` would be
                    // every day.
                    return Err((
                        format!(
                            "expected a range of days, found `{}`, which starts and ends on Sunday",
                            shorten(base)
                        ),
                        Some("write `SUN` (or `0`) for Sundays, `*` for every day".into()),
                    ));
                }
                if low_value > high_value {
                    return Err((
                        format!(
                            "expected a range from low to high, found `{}`",
                            shorten(base)
                        ),
                        Some(format!(
                            "to wrap around, write two ranges: `{low}-{},{}-{high}`",
                            field.last(),
                            field.min
                        )),
                    ));
                }
            }
            None => {
                value(field, base, false)?;
                if let Some(step) = step {
                    return Err((
                        format!(
                            "expected `*` or a range before `/{step}`, found `{}`",
                            shorten(base)
                        ),
                        Some(format!(
                            "standard cron steps through `*` or a range: write `{base}-{}/{step}`",
                            field.last()
                        )),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The error for a croner/Quartz extension in `text`, if it uses one.
fn extension(field: &Field, text: &str) -> Option<CronError> {
    let upper = text.to_ascii_uppercase();
    let is_day_of_week = field.name == "day-of-week";
    let found = if upper.contains('?') {
        Some("`?` (Quartz's \"no specific value\")")
    } else if upper.contains('#') {
        Some("`#` (Quartz's \"nth weekday of the month\")")
    } else if upper.starts_with('+') && is_day_of_week {
        Some("`+` (croner's \"day of month and day of week\")")
    } else if upper.split([',', '-', '/']).any(|part| {
        part == "L" || part == "LW" || (part.len() > 1 && part.ends_with('L') && part != "JUL")
    }) {
        Some("`L` (Quartz's \"last day\")")
    } else if upper.split([',', '-', '/']).any(|part| {
        part.strip_suffix('W')
            .is_some_and(|day| !day.is_empty() && day.bytes().all(|b| b.is_ascii_digit()))
    }) {
        Some("`W` (Quartz's \"nearest weekday\")")
    } else {
        None
    };
    found.map(|found| {
        (
            format!(
                "expected standard cron (numbers, names, `*`, `,`, `-` and `/`), found {found}, \
                 which Tandem does not accept"
            ),
            None,
        )
    })
}

/// The value of one number or name of `field`; `range_end` for the high end of a range, where
/// `SUN` is 7 (so `SAT-SUN` is a range).
fn value(field: &Field, text: &str, range_end: bool) -> Result<u32, CronError> {
    if text.is_empty() {
        return Err((
            format!("expected {}, found nothing", field.expected()),
            None,
        ));
    }
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (field.min..=field.max).contains(&value) => Ok(value),
            _ => Err((
                format!("expected {}, found `{}`", field.expected(), shorten(text)),
                None,
            )),
        };
    }
    let upper = text.to_ascii_uppercase();
    if let Some((names, first)) = field.names {
        if let Some(index) = names.iter().position(|name| *name == upper) {
            let value = first + index as u32;
            // `SUN` closes a range as 7, like croner and Vixie cron.
            return Ok(if range_end && field.name == "day-of-week" && value == 0 {
                7
            } else {
                value
            });
        }
        let help = names
            .iter()
            .find(|name| upper.len() > 3 && upper.starts_with(**name))
            .map(|name| format!("names are 3 letters: write `{name}`"))
            .or_else(|| did_you_mean(&upper, names.iter().copied()));
        return Err((
            format!("expected {}, found `{}`", field.expected(), shorten(text)),
            help,
        ));
    }
    Err((
        format!("expected {}, found `{}`", field.expected(), shorten(text)),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(cron) => panic!("`{text}` parsed as {cron:?}"),
            Err((message, None)) => message,
            Err((message, Some(help))) => format!("{message} (help: {help})"),
        }
    }

    #[test]
    fn accepts_standard_cron() {
        for text in [
            "* * * * *",
            "30 2 * * 1-5",
            "*/15 9-17 * * MON-FRI",
            "0 0 1,15 * *",
            "0 12 * jan-mar,dec sun",
            "0 0 * * SAT-SUN",
            "0 0 * * 7",
            "5-55/10 */2 1-31/3 */6 0-6/2",
            "  0 0 29 2 *  ",
            "@daily",
            "@HOURLY",
            "@midnight",
            "@annually",
        ] {
            assert!(parse(text).is_ok(), "{text}: {:?}", parse(text).err());
        }
    }

    #[test]
    fn a_range_may_end_on_sunday() {
        let weekend = parse("0 0 * * SAT-SUN").unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let days: Vec<u32> = weekend
            .iter_after(monday)
            .take(3)
            .map(|tick| chrono::Datelike::day(&tick))
            .collect();
        assert_eq!(days, [6, 7, 13]);
    }

    #[test]
    fn nicknames_mean_their_five_fields() {
        assert_eq!(parse("@weekly").unwrap(), parse("0 0 * * 0").unwrap());
        assert_eq!(parse("@midnight").unwrap(), parse("0 0 * * *").unwrap());
    }

    #[test]
    fn refuses_seconds_and_years() {
        let six = error("0 30 2 * * 1");
        assert!(six.contains("found 6 fields"), "{six}");
        assert!(six.contains("leave out the seconds field"), "{six}");
        let seven = error("0 30 2 * * 1 2030");
        assert!(seven.contains("and the year field"), "{seven}");
        assert!(error("").contains("found an empty string"));
        assert!(error("* * *").contains("found 3 fields"));
    }

    #[test]
    fn names_the_wrong_field() {
        assert_eq!(
            error("60 * * * *"),
            "in cron expression `60 * * * *`, the minute field `60`: expected a number from 0 \
             to 59, found `60`"
        );
        assert!(error("0 24 * * *").contains("the hour field `24`"));
        assert!(error("0 0 0 * *").contains("the day-of-month field `0`"));
        assert!(error("0 0 * 13 *").contains("from `JAN` to `DEC`, found `13`"));
        assert!(error("0 0 * * 8").contains("from `SUN` to `SAT`, found `8`"));
        assert!(error("0 MON * * *").contains("the hour field `MON`: expected a number"));
        assert!(error("0 0 * * MONDAY").contains("names are 3 letters: write `MON`"));
        assert!(error("0 0 * JNA *").contains("did you mean `JAN`?"));
        assert!(error("0 0 * * SUN-SUN").contains("starts and ends on Sunday"));
        assert!(error("0 0 * * 0-sun").contains("starts and ends on Sunday"));
        assert!(parse("0 0 * * 7-SUN").is_ok());
        assert!(error("0 0 * * FRI-MON").contains("write two ranges: `FRI-6,0-MON`"));
        assert!(error("5-1 * * * *").contains("from low to high, found `5-1`"));
        assert!(error("*/0 * * * *").contains("a step of at least 1"));
        assert!(error("1,,2 * * * *").contains("an empty one"));
        assert!(error("0 0 * * *,1").contains("found `*` in a list"));
        assert!(parse("*/15,5 * * * *").is_ok());
        assert!(error("5/15 * * * *").contains("write `5-59/15`"));
        assert!(error("- * * * *").contains("found nothing"));
    }

    #[test]
    fn refuses_extensions_of_croner_and_quartz() {
        for (text, found) in [
            ("0 0 L * *", "`L`"),
            ("0 0 LW * *", "`L`"),
            ("0 0 15W * *", "`W`"),
            ("0 0 * * 5L", "`L`"),
            ("0 0 * * 5#2", "`#`"),
            ("0 0 ? * MON", "`?`"),
            ("0 0 1 * +MON", "`+`"),
        ] {
            let message = error(text);
            assert!(
                message.contains(&format!("found {found}")),
                "{text}: {message}"
            );
            assert!(
                message.contains("which Tandem does not accept"),
                "{message}"
            );
        }
        assert!(parse("0 0 * JUL *").is_ok());
    }

    #[test]
    fn refuses_unknown_nicknames_and_reboot() {
        assert!(error("@reboot").contains("cannot do"));
        assert!(error("@dayly").contains("did you mean `@daily`?"));
    }

    #[test]
    fn refuses_expressions_that_never_match() {
        assert!(error("0 0 31 2 *").contains("never matches"));
        assert!(error("0 0 30,31 2 *").contains("never matches"));
        // With a restricted day of week, the days of week match on their own.
        assert!(parse("0 0 31 2 MON").is_ok());
    }

    mod generated {
        //! Random standard expressions: each is accepted, and its ticks are exactly the
        //! minutes that a direct reading of the five fields matches.

        use chrono::{DateTime, Datelike, Duration, Timelike};
        use proptest::prelude::*;

        use super::*;

        /// One list item of a field with values `min..=max` (`names` spell `min`, `min + 1`,
        /// ...), and the values it selects.
        fn item(min: u32, max: u32, names: &'static [&'static str]) -> BoxedStrategy<String> {
            let value = move |v: u32, named: bool, lower: bool| -> String {
                let index = (v - min) as usize;
                match names.get(index) {
                    Some(name) if named && lower => name.to_ascii_lowercase(),
                    Some(name) if named => name.to_string(),
                    _ => v.to_string(),
                }
            };
            prop_oneof![
                (1..=max).prop_map(|step| format!("*/{step}")),
                (min..=max, any::<bool>(), any::<bool>())
                    .prop_map(move |(v, named, lower)| value(v, named, lower)),
                (
                    min..=max,
                    min..=max,
                    any::<bool>(),
                    proptest::option::of(1..=max)
                )
                    .prop_map(move |(a, b, named, step)| {
                        let (low, high) = (a.min(b), a.max(b));
                        if named && high == min {
                            // `SUN-SUN` is refused: one value.
                            return value(low, named, false);
                        }
                        let range =
                            format!("{}-{}", value(low, named, false), value(high, named, false));
                        match step {
                            Some(step) => format!("{range}/{step}"),
                            None => range,
                        }
                    }),
            ]
            .boxed()
        }

        /// A field: `*` alone, or a list of other items.
        fn field(min: u32, max: u32, names: &'static [&'static str]) -> BoxedStrategy<String> {
            prop_oneof![
                1 => Just("*".to_string()),
                3 => proptest::collection::vec(item(min, max, names), 1..4)
                    .prop_map(|items| items.join(",")),
            ]
            .boxed()
        }

        /// The values a checked field selects (day of week: 7 is 0).
        fn values(text: &str, min: u32, max: u32, names: Option<(&[&str], u32)>) -> Vec<bool> {
            let number = |part: &str| -> u32 {
                part.parse().unwrap_or_else(|_| {
                    let (names, first) = names.unwrap();
                    let upper = part.to_ascii_uppercase();
                    first + names.iter().position(|name| *name == upper).unwrap() as u32
                })
            };
            let mut selected = vec![false; 8.max(max as usize + 1)];
            for item in text.split(',') {
                let (base, step) = match item.split_once('/') {
                    Some((base, step)) => (base, step.parse::<u32>().unwrap()),
                    None => (item, 1),
                };
                let (low, high) = match base.split_once('-') {
                    _ if base == "*" => (min, max),
                    Some((low, high)) => (number(low), number(high)),
                    None if step > 1 => unreachable!("checked: no step after a number"),
                    None => (number(base), number(base)),
                };
                let mut v = low;
                while v <= high {
                    selected[v as usize] = true;
                    v += step;
                }
            }
            selected
        }

        /// The five fields read directly: the values each selects.
        struct Reading {
            minute: Vec<bool>,
            hour: Vec<bool>,
            dom: Vec<bool>,
            month: Vec<bool>,
            dow: Vec<bool>,
            dom_star: bool,
            dow_star: bool,
        }

        impl Reading {
            fn new(fields: &[String]) -> Reading {
                let mut dow = values(&fields[4], 0, 7, Some((&DAYS, 0)));
                dow[0] |= dow[7];
                Reading {
                    minute: values(&fields[0], 0, 59, None),
                    hour: values(&fields[1], 0, 23, None),
                    dom: values(&fields[2], 1, 31, None),
                    month: values(&fields[3], 1, 12, Some((&MONTHS, 1))),
                    dow,
                    dom_star: fields[2] == "*",
                    dow_star: fields[4] == "*",
                }
            }

            /// Whether minute `t` matches (POSIX day rule: either day field when both are
            /// restricted).
            fn matches(&self, t: DateTime<Utc>) -> bool {
                let day_dom = self.dom[t.day() as usize];
                let day_dow = self.dow[t.weekday().num_days_from_sunday() as usize];
                let day = if self.dom_star || self.dow_star {
                    day_dom && day_dow
                } else {
                    day_dom || day_dow
                };
                self.minute[t.minute() as usize]
                    && self.hour[t.hour() as usize]
                    && self.month[t.month() as usize]
                    && day
            }
        }

        fn expression() -> impl Strategy<Value = Vec<String>> {
            (
                field(0, 59, &[]),
                field(0, 23, &[]),
                field(1, 31, &[]),
                field(1, 12, &MONTHS),
                // Names stop at SAT: `SUN` as 7 is only spelled as a range end.
                field(0, 6, &DAYS),
            )
                .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn standard_expressions_tick_exactly_where_their_fields_match(
                fields in expression(),
                start_minute in 0i64..(60 * 24 * 366 * 4),
            ) {
                let text = fields.join(" ");
                let cron = match parse(&text) {
                    Ok(cron) => cron,
                    Err((message, _)) => {
                        prop_assert!(message.contains("never matches"), "{text}: {message}");
                        return Ok(());
                    }
                };
                let start = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap()
                    + Duration::minutes(start_minute);
                let ticks: Vec<DateTime<Utc>> = cron.iter_after(start).take(5).collect();
                let reading = Reading::new(&fields);
                prop_assert!(!ticks.is_empty(), "{text}");
                let mut previous = start;
                for tick in &ticks {
                    prop_assert!(*tick > previous, "{text}: {tick} after {previous}");
                    prop_assert!(reading.matches(*tick), "{text}: {tick} does not match");
                    previous = *tick;
                }
                // No matching minute is skipped before the first tick (searched for 2 days).
                let mut t = start + Duration::minutes(1);
                while t < ticks[0] && t < start + Duration::days(2) {
                    prop_assert!(!reading.matches(t), "{text}: {t} matches but the first tick is {}", ticks[0]);
                    t += Duration::minutes(1);
                }
            }
        }
    }
}
