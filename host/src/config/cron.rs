//! The cron expressions of the model's timer trigger ([`Cron`]), in UTC,
//! and the civil-time arithmetic they need.
//!
//! The model's syntax, exactly:
//!
//! - 7 fields `second minute hour day month week year`, or the legacy 5
//!   `minute hour day month week` (second 0, any year);
//! - ranges 0-59, 0-59, 0-23, 1-31, 1-12 or `JAN`-`DEC`, 0-6 or
//!   `SUN`-`SAT` with 0 = Sunday, 1970-2099;
//! - `,` union, `-` range, `*` every value, `/` increment: `*/5`, `1-30/5`,
//!   and `1/10`, which in minutes means 1, 11, 21, ... (from 1 to the top);
//! - when both day and week are given (neither is exactly `*`) a day
//!   matches if either does; otherwise the one given decides.
//!
//! Written here rather than taken from a crate: the well-kept ones differ
//! from the model where it matters (checked with a quick test of each on
//! the model's examples): `cron` numbers weekdays 1-7 from Sunday, combines
//! day and week with AND and has no 5-field form; `saffron` has only the
//! 5-field form; `croner` refuses `1/10` unless told to be sloppy, takes 7
//! for Sunday, gives up on a year far ahead ("search limit exceeded"), and
//! accepts much the model does not (`L`, `W`, `#`, `?`, six fields,
//! `@daily`), which a timer written here would then not port back. Errors
//! name the field, for `service.toml`'s messages.

use std::fmt;

/// One of the seven fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values, the first for `min` (months and weekdays).
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const WEEK: Field = Field {
    name: "week",
    min: 0,
    max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};
const YEAR: Field = Field {
    name: "year",
    min: FIRST_YEAR as u32,
    max: LAST_YEAR as u32,
    names: &[],
};

/// The first year a timer may name.
pub const FIRST_YEAR: i64 = 1970;
/// The last year a timer may name: after it, a schedule has no next time.
pub const LAST_YEAR: i64 = 2099;

/// Why a cron expression was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// The values a field allows, as bits from its `min` (the year field has
/// 130 values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Values([u64; 3]);

impl Values {
    fn insert(&mut self, field: Field, value: u32) {
        let bit = value - field.min;
        self.0[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    fn contains(self, field: Field, value: u32) -> bool {
        if value < field.min || value > field.max {
            return false;
        }
        let bit = value - field.min;
        self.0[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// The smallest allowed value at or above `value`.
    fn at_or_after(self, field: Field, value: u32) -> Option<u32> {
        (value.max(field.min)..=field.max).find(|v| self.contains(field, *v))
    }
}

/// A parsed cron expression of the model's timer trigger. Times are UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: Values,
    minutes: Values,
    hours: Values,
    days: Values,
    months: Values,
    weekdays: Values,
    years: Values,
    /// Whether day and week were both given (neither exactly `*`): then a
    /// day matches if either does.
    either_day: bool,
}

impl Cron {
    /// Parses the 7-field or 5-field form.
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (second, rest, year) = match parts.len() {
            7 => (parts[0], &parts[1..6], parts[6]),
            5 => ("0", &parts[..], "*"),
            n => {
                return Err(CronError(format!(
                    "expected 7 fields (second minute hour day month week year) or 5 \
                     (minute hour day month week), found {n}"
                )))
            }
        };
        let [minute, hour, day, month, week] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
        Ok(Self {
            seconds: parse_field(SECOND, second)?,
            minutes: parse_field(MINUTE, minute)?,
            hours: parse_field(HOUR, hour)?,
            days: parse_field(DAY, day)?,
            months: parse_field(MONTH, month)?,
            weekdays: parse_field(WEEK, week)?,
            years: parse_field(YEAR, year)?,
            either_day: day != "*" && week != "*",
        })
    }

    /// Whether the day `date` (its time of day ignored) matches day, week,
    /// month and year.
    fn day_matches(&self, date: &CivilTime) -> bool {
        if !self.years.contains(YEAR, date.year as u32) || !self.months.contains(MONTH, date.month)
        {
            return false;
        }
        let by_day = self.days.contains(DAY, date.day);
        let by_week = self.weekdays.contains(WEEK, date.weekday());
        if self.either_day {
            by_day || by_week
        } else {
            by_day && by_week
        }
    }

    /// The first time strictly after `after` (Unix seconds, UTC) that the
    /// expression matches; `None` when there is none up to the end of
    /// [`LAST_YEAR`].
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut day = CivilTime::from_unix(after.max(FIRST_YEAR_START - 1) + 1);
        // The first day may be entered part-way; every later one at 00:00:00.
        let mut from = (day.hour, day.minute, day.second);
        while day.year <= LAST_YEAR {
            if self.day_matches(&day) {
                if let Some((hour, minute, second)) = self.time_of_day_at_or_after(from) {
                    return Some(
                        CivilTime {
                            hour,
                            minute,
                            second,
                            ..day
                        }
                        .to_unix(),
                    );
                }
            }
            day = day.next_day();
            from = (0, 0, 0);
        }
        None
    }

    /// The first allowed time of day at or after `(hour, minute, second)`.
    fn time_of_day_at_or_after(&self, (h, m, s): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let mut hour = self.hours.at_or_after(HOUR, h)?;
        loop {
            let (minute_from, second_from) = if hour == h { (m, s) } else { (0, 0) };
            let mut minute = self.minutes.at_or_after(MINUTE, minute_from);
            while let Some(this) = minute {
                let from = if hour == h && this == m {
                    second_from
                } else {
                    0
                };
                if let Some(second) = self.seconds.at_or_after(SECOND, from) {
                    return Some((hour, this, second));
                }
                minute = self.minutes.at_or_after(MINUTE, this + 1);
            }
            hour = self.hours.at_or_after(HOUR, hour + 1)?;
        }
    }
}

/// 1970-01-01T00:00:00Z.
const FIRST_YEAR_START: i64 = 0;

/// Parses one field: items separated by `,`.
fn parse_field(field: Field, text: &str) -> Result<Values, CronError> {
    let error = |why: String| CronError(format!("{} field `{text}`: {why}", field.name));
    let mut values = Values::default();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|step| *step > 0).ok_or_else(|| {
                        error(format!("`{step}` is not an increment (1 or more)"))
                    })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (field.min, field.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (
                value(field, low).map_err(error)?,
                value(field, high).map_err(error)?,
            );
            if low > high {
                return Err(error(format!("the range {low}-{high} runs backwards")));
            }
            (low, high)
        } else {
            let low = value(field, range).map_err(error)?;
            // `1/10` runs from 1 to the top; a lone value is itself.
            (low, if step.is_some() { field.max } else { low })
        };
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            values.insert(field, v);
            v += step;
        }
    }
    Ok(values)
}

/// One value of a field: a number in its range, or a name.
fn value(field: Field, text: &str) -> Result<u32, String> {
    if let Some(index) = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(field.min + index as u32);
    }
    let number: u32 = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse()
            .map_err(|_| format!("`{text}` is out of range"))?
    } else if field.names.is_empty() {
        return Err(format!("`{text}` is not a number"));
    } else {
        return Err(format!(
            "`{text}` is neither a number nor one of {}",
            field.names.join(" ")
        ));
    };
    if number < field.min || number > field.max {
        return Err(format!(
            "{number} is out of range {}-{}",
            field.min, field.max
        ));
    }
    Ok(number)
}

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// The year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

impl CivilTime {
    /// The UTC time of `unix` seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix(unix: i64) -> Self {
        let (days, seconds) = (unix.div_euclid(86_400), unix.rem_euclid(86_400) as u32);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: seconds / 3600,
            minute: seconds / 60 % 60,
            second: seconds % 60,
        }
    }

    /// Days since 1970-01-01 of this date (Hinnant's days_from_civil).
    fn days(&self) -> i64 {
        let year = self.year - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let month = i64::from(self.month);
        let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
            + i64::from(self.day)
            - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn to_unix(self) -> i64 {
        self.days() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// 0 = Sunday to 6 = Saturday (1970-01-01 was a Thursday).
    pub fn weekday(&self) -> u32 {
        (self.days() + 4).rem_euclid(7) as u32
    }

    /// The next day, at 00:00:00.
    fn next_day(self) -> Self {
        Self::from_unix((self.days() + 1) * 86_400)
    }
}

/// As the model writes times: `2019-02-21T11:49:00Z`.
impl fmt::Display for CivilTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC time written as the model writes it.
    fn at(text: &str) -> i64 {
        let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap();
        CivilTime {
            year: i64::from(number(0..4)),
            month: number(5..7),
            day: number(8..10),
            hour: number(11..13),
            minute: number(14..16),
            second: number(17..19),
        }
        .to_unix()
    }

    /// The next `count` times of `cron` after `from`, as the model writes them.
    fn next(cron: &str, from: &str, count: usize) -> Vec<String> {
        let cron = Cron::parse(cron).unwrap();
        let mut time = at(from);
        (0..count)
            .map(|_| {
                time = cron.next_after(time).expect("a next time");
                CivilTime::from_unix(time).to_string()
            })
            .collect()
    }

    /// Thursday 2019-02-21 11:49:00 UTC, the model's own example time.
    const THURSDAY: &str = "2019-02-21T11:49:00Z";

    #[test]
    fn civil_time_round_trips_and_knows_its_weekday() {
        for unix in [0, 951_782_400, 1_550_749_740, 4_107_542_399, -86_400] {
            assert_eq!(CivilTime::from_unix(unix).to_unix(), unix);
        }
        let time = CivilTime::from_unix(at(THURSDAY));
        assert_eq!(time.to_string(), THURSDAY);
        assert_eq!(time.weekday(), 4);
        // A leap day, and the day after it.
        assert_eq!(
            CivilTime::from_unix(at("2020-02-29T00:00:00Z")).weekday(),
            6
        );
        assert_eq!(
            CivilTime::from_unix(at("2020-02-29T00:00:00Z"))
                .next_day()
                .to_string(),
            "2020-03-01T00:00:00Z"
        );
    }

    #[test]
    fn the_models_table() {
        // Every 5 seconds.
        assert_eq!(
            next("*/5 * * * * * *", THURSDAY, 3),
            [
                "2019-02-21T11:49:05Z",
                "2019-02-21T11:49:10Z",
                "2019-02-21T11:49:15Z"
            ]
        );
        // 10:15 on the 1st of every month.
        assert_eq!(
            next("0 15 10 1 * * *", THURSDAY, 3),
            [
                "2019-03-01T10:15:00Z",
                "2019-04-01T10:15:00Z",
                "2019-05-01T10:15:00Z"
            ]
        );
        // 10:15 Monday to Friday: Friday, then Monday.
        assert_eq!(
            next("0 15 10 * * MON-FRI *", THURSDAY, 3),
            [
                "2019-02-22T10:15:00Z",
                "2019-02-25T10:15:00Z",
                "2019-02-26T10:15:00Z"
            ]
        );
        // 10:00, 14:00 and 16:00 every day.
        assert_eq!(
            next("0 0 10,14,16 * * * *", THURSDAY, 4),
            [
                "2019-02-21T14:00:00Z",
                "2019-02-21T16:00:00Z",
                "2019-02-22T10:00:00Z",
                "2019-02-22T14:00:00Z"
            ]
        );
        // Every half hour from 9:00 to 17:30.
        let half_hours = next("0 */30 9-17 * * * *", THURSDAY, 13);
        assert_eq!(half_hours[0], "2019-02-21T12:00:00Z");
        assert_eq!(half_hours[11], "2019-02-21T17:30:00Z");
        assert_eq!(half_hours[12], "2019-02-22T09:00:00Z");
        // Noon on Wednesdays.
        assert_eq!(
            next("0 0 12 * * WED *", THURSDAY, 2),
            ["2019-02-27T12:00:00Z", "2019-03-06T12:00:00Z"]
        );
    }

    #[test]
    fn weekdays_count_from_sunday_and_names_match_numbers() {
        assert_eq!(
            next("0 0 12 * * 0 *", THURSDAY, 1),
            ["2019-02-24T12:00:00Z"]
        );
        assert_eq!(
            next("0 0 12 * * 6 *", THURSDAY, 1),
            ["2019-02-23T12:00:00Z"]
        );
        assert_eq!(
            Cron::parse("0 0 12 * * sun-sat *").unwrap(),
            Cron::parse("0 0 12 * * 0-6 *").unwrap()
        );
        assert_eq!(
            Cron::parse("0 0 0 1 jan-Dec * *").unwrap(),
            Cron::parse("0 0 0 1 1-12 * *").unwrap()
        );
    }

    #[test]
    fn day_and_week_both_given_combine_with_or() {
        // The 1st of the month or any Monday: Monday the 25th, Friday
        // March 1st, Monday March 4th.
        assert_eq!(
            next("0 0 0 1 * MON *", THURSDAY, 3),
            [
                "2019-02-25T00:00:00Z",
                "2019-03-01T00:00:00Z",
                "2019-03-04T00:00:00Z"
            ]
        );
        // Only one given: it alone decides.
        assert_eq!(
            next("0 0 0 * * MON *", THURSDAY, 1),
            ["2019-02-25T00:00:00Z"]
        );
        assert_eq!(next("0 0 0 1 * * *", THURSDAY, 1), ["2019-03-01T00:00:00Z"]);
    }

    #[test]
    fn a_lone_start_with_an_increment_runs_to_the_top() {
        assert_eq!(
            next("0 1/10 * * * * *", THURSDAY, 3),
            [
                "2019-02-21T11:51:00Z",
                "2019-02-21T12:01:00Z",
                "2019-02-21T12:11:00Z"
            ]
        );
        assert_eq!(
            next("0 10-30/10 * * * * *", THURSDAY, 3),
            [
                "2019-02-21T12:10:00Z",
                "2019-02-21T12:20:00Z",
                "2019-02-21T12:30:00Z"
            ]
        );
    }

    #[test]
    fn the_five_field_form_is_minute_to_week_at_second_zero() {
        assert_eq!(
            Cron::parse("15 10 * * MON-FRI").unwrap(),
            Cron::parse("0 15 10 * * MON-FRI *").unwrap()
        );
        assert_eq!(
            next("*/20 * * * *", THURSDAY, 2),
            ["2019-02-21T12:00:00Z", "2019-02-21T12:20:00Z"]
        );
    }

    #[test]
    fn years_bound_the_schedule() {
        assert_eq!(
            next("0 0 0 1 1 * 2099", THURSDAY, 1),
            ["2099-01-01T00:00:00Z"]
        );
        let cron = Cron::parse("0 0 0 1 1 * 2099").unwrap();
        assert_eq!(cron.next_after(at("2099-01-01T00:00:00Z")), None);
        assert_eq!(
            Cron::parse("0 0 0 1 1 * 2019")
                .unwrap()
                .next_after(at(THURSDAY)),
            None
        );
        // February 30th never comes.
        assert_eq!(
            Cron::parse("0 0 0 30 2 * *")
                .unwrap()
                .next_after(at(THURSDAY)),
            None
        );
        // A leap day comes every four years.
        assert_eq!(
            next("0 0 0 29 2 * *", THURSDAY, 2),
            ["2020-02-29T00:00:00Z", "2024-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        for (cron, field) in [
            ("60 * * * * * *", "second"),
            ("* 60 * * * * *", "minute"),
            ("0 0 24 * * * *", "hour"),
            ("0 0 0 0 * * *", "day"),
            ("0 0 0 32 * * *", "day"),
            ("0 0 0 * 13 * *", "month"),
            ("0 0 0 * JANUARY * *", "month"),
            ("0 0 0 * * 7 *", "week"),
            ("0 0 0 * * MON-XYZ *", "week"),
            ("0 0 0 * * * 1969", "year"),
            ("0 0 0 * * * 2100", "year"),
            ("*/0 * * * * * *", "second"),
            ("0 30-10 * * * * *", "minute"),
            ("0 1,,2 * * * * *", "minute"),
            ("0 ? * * * * *", "minute"),
            ("0 0 L * * * *", "hour"),
            ("0 0 0 * * 5#2 *", "week"),
            ("0 0 0 -1 * * *", "day"),
        ] {
            let error = Cron::parse(cron).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("{field} field")),
                "{cron}: {error}"
            );
        }
        for cron in ["", "* * * *", "0 * * * * *", "0 0 0 * * * * *"] {
            let error = Cron::parse(cron).unwrap_err().to_string();
            assert!(error.contains("expected 7 fields"), "{cron:?}: {error}");
        }
    }
}
