//! Cron schedules of reports (周统计, 半月通报, 月调度): the one parser and the one meaning, used
//! by validation and by the scheduler alike.
//!
//! Standard five fields, `minute hour day-of-month month day-of-week`, read in China time
//! (UTC+08:00, no daylight saving):
//! - each field takes `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the
//!   field's end), and comma lists of these; months `JAN`–`DEC` and weekdays `SUN`–`SAT` by name;
//! - weekdays count from Sunday = 0, and 7 is Sunday too (`0 9 * * 1` is Monday 09:00);
//! - when both the day of month and the day of week are restricted (neither starts with `*`), a
//!   day matches if either does, as in every Unix cron; otherwise both must.
//!
//! A schedule that can never fire (`0 9 31 2 *`) is refused at parse time, so a published report
//! always has a next slot.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};

use crate::calendar::{from_local_datetime, local_datetime};

/// Days searched for a matching day: eight years hold every 29 February pattern.
const SEARCH_DAYS: i32 = 366 * 8;

/// A parsed schedule. Each field is a bit set of the values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    /// Both day fields were restricted: a day matches when either matches.
    either_day: bool,
}

/// Why an expression is not a schedule; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
    /// The value of the first name.
    base: u32,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        lo: 0,
        hi: 59,
        names: &[],
        base: 0,
    },
    Field {
        name: "hour",
        lo: 0,
        hi: 23,
        names: &[],
        base: 0,
    },
    Field {
        name: "day",
        lo: 1,
        hi: 31,
        names: &[],
        base: 0,
    },
    Field {
        name: "month",
        lo: 1,
        hi: 12,
        names: &MONTHS,
        base: 1,
    },
    Field {
        name: "weekday",
        lo: 0,
        hi: 7,
        names: &DAYS,
        base: 0,
    },
];

impl Field {
    fn value(&self, s: &str) -> Result<u32, CronError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + self.base);
        }
        let (name, lo, hi) = (self.name, self.lo, self.hi);
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            Ok(v) => Err(CronError(format!("{name} {v} is outside {lo}-{hi}"))),
            Err(_) => Err(CronError(format!("`{s}` is not a valid {name}"))),
        }
    }

    /// The bit set of one field's text.
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => match s.parse::<u32>() {
                    Ok(n) if n > 0 && n <= self.hi => (r, n),
                    _ => {
                        return Err(CronError(format!(
                            "step `{s}` of the {} field is not valid",
                            self.name
                        )));
                    }
                },
                None => (item, 1),
            };
            let (a, b) = if range == "*" {
                (self.lo, self.hi)
            } else {
                match range.split_once('-') {
                    Some((a, b)) => (self.value(a)?, self.value(b)?),
                    // `a/n` runs from `a` to the end of the field.
                    None if step > 1 || item.contains('/') => (self.value(range)?, self.hi),
                    None => {
                        let v = self.value(range)?;
                        (v, v)
                    }
                }
            };
            if a > b {
                return Err(CronError(format!(
                    "{} range {range} goes backwards",
                    self.name
                )));
            }
            for v in (a..=b).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

impl Schedule {
    /// Parses a five-field expression.
    pub fn parse(expr: &str) -> Result<Schedule, CronError> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(CronError(format!(
                "has {} fields; write 5: minute hour day month weekday",
                parts.len()
            )));
        };
        let [fm, fh, fd, fmo, fw] = &FIELDS;
        let mut weekdays = fw.parse(weekday)?;
        // 7 is Sunday as well as 0.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let schedule = Schedule {
            minutes: fm.parse(minute)?,
            hours: fh.parse(hour)? as u32,
            days: fd.parse(day)? as u32,
            months: fmo.parse(month)? as u16,
            weekdays: weekdays as u8,
            either_day: !day.starts_with('*') && !weekday.starts_with('*'),
        };
        if !schedule.ever_fires() {
            return Err(CronError(format!(
                "day {day} never falls in month {month}: the report would never run"
            )));
        }
        Ok(schedule)
    }

    /// Whether the schedule fires on this local date.
    pub fn matches_day(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn ever_fires(&self) -> bool {
        // Every month holds every weekday, so only the day of month can miss (31 February);
        // 2024 is a leap year, so its months hold every day any month can hold.
        (1..=12i8).filter(|m| self.months & (1 << m) != 0).any(|m| {
            (self.either_day && self.weekdays != 0)
                || (1..=31i8).any(|d| self.days & (1 << d) != 0 && Date::new(2024, m, d).is_ok())
        })
    }

    /// The latest slot (hour, minute) on a matching day at or before `limit` minutes of the day.
    fn latest_in_day(&self, limit: Option<(u32, u32)>) -> Option<Time> {
        let (h_max, m_max) = limit.unwrap_or((23, 59));
        (0..=h_max).rev().find_map(|h| {
            if self.hours & (1 << h) == 0 {
                return None;
            }
            let top = if h == h_max { m_max } else { 59 };
            (0..=top)
                .rev()
                .find(|m| self.minutes & (1 << m) != 0)
                .and_then(|m| Time::new(h as i8, m as i8, 0, 0).ok())
        })
    }

    /// The earliest slot on a matching day strictly after `after` minutes of the day.
    fn earliest_in_day(&self, after: Option<(u32, u32)>) -> Option<Time> {
        let first = |h: u32, from: u32| {
            (from..=59)
                .find(|m| self.minutes & (1 << m) != 0)
                .map(|m| (h, m))
        };
        let found = match after {
            None => (0..=23)
                .filter(|h| self.hours & (1 << h) != 0)
                .find_map(|h| first(h, 0)),
            Some((h0, m0)) => (h0..=23)
                .filter(|h| self.hours & (1 << h) != 0)
                .find_map(|h| {
                    if h == h0 {
                        first(h, m0 + 1)
                    } else {
                        first(h, 0)
                    }
                }),
        };
        found.and_then(|(h, m)| Time::new(h as i8, m as i8, 0, 0).ok())
    }

    /// The latest slot at or before the local date and time `t`.
    pub fn latest_at_or_before_local(&self, t: DateTime) -> Option<DateTime> {
        let mut day = t.date();
        for i in 0..SEARCH_DAYS {
            if self.matches_day(day) {
                let limit = (i == 0).then(|| (t.hour() as u32, t.minute() as u32));
                if let Some(time) = self.latest_in_day(limit) {
                    return Some(day.to_datetime(time));
                }
            }
            day = day.yesterday().ok()?;
        }
        None
    }

    /// The earliest slot strictly after the local date and time `t`.
    pub fn next_after_local(&self, t: DateTime) -> Option<DateTime> {
        let mut day = t.date();
        for i in 0..SEARCH_DAYS {
            if self.matches_day(day) {
                let after = (i == 0).then(|| (t.hour() as u32, t.minute() as u32));
                if let Some(time) = self.earliest_in_day(after) {
                    return Some(day.to_datetime(time));
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The latest slot at or before the instant `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.latest_at_or_before_local(local_datetime(t))
            .map(from_local_datetime)
            .filter(|&s| s <= t)
    }

    /// The latest slot strictly before the instant `t` (the start of the period a slot at `t`
    /// reports on).
    pub fn latest_before(&self, t: Timestamp) -> Option<Timestamp> {
        let earlier = t.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?;
        self.latest_at_or_before(earlier)
    }

    /// The earliest slot strictly after the instant `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.next_after_local(local_datetime(t))
            .map(from_local_datetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(y: i16, m: i8, d: i8, h: i8, min: i8) -> DateTime {
        date(y, m, d).at(h, min, 0, 0)
    }

    /// Each case: a schedule, an instant, and its next slot after the instant.
    fn check_next(cases: &[(&str, DateTime, DateTime)]) {
        for (expr, from, want) in cases {
            let s = Schedule::parse(expr).unwrap();
            assert_eq!(
                s.next_after_local(*from),
                Some(*want),
                "{expr} after {from}"
            );
        }
    }

    /// Each case: a schedule, an instant, and its latest slot at or before the instant.
    fn check_latest(cases: &[(&str, DateTime, DateTime)]) {
        for (expr, from, want) in cases {
            let s = Schedule::parse(expr).unwrap();
            assert_eq!(
                s.latest_at_or_before_local(*from),
                Some(*want),
                "{expr} at or before {from}"
            );
        }
    }

    #[test]
    fn weekday_one_is_monday_and_seven_is_sunday() {
        // 2026-12-02 is a Wednesday.
        let now = at(2026, 12, 2, 10, 0);
        assert_eq!(date(2026, 12, 7).weekday(), jiff::civil::Weekday::Monday);
        check_latest(&[("0 9 * * 1", now, at(2026, 11, 30, 9, 0))]);
        check_next(&[
            ("0 9 * * 1", now, at(2026, 12, 7, 9, 0)),
            ("0 9 * * 0", now, at(2026, 12, 6, 9, 0)),
            ("0 9 * * 7", now, at(2026, 12, 6, 9, 0)),
            ("0 9 * * SUN", now, at(2026, 12, 6, 9, 0)),
            (
                "30 8 * * 1-5",
                at(2026, 12, 4, 9, 0),
                at(2026, 12, 7, 8, 30),
            ),
            ("0 9 * * 6-7", now, at(2026, 12, 5, 9, 0)),
            ("0 9 * * 6-7", at(2026, 12, 5, 9, 0), at(2026, 12, 6, 9, 0)),
        ]);
    }

    #[test]
    fn slots_at_and_around_the_boundary() {
        // Exactly at a slot: it is the latest at or before, and not after.
        check_latest(&[
            (
                "0 9 1,16 * *",
                at(2026, 12, 16, 9, 0),
                at(2026, 12, 16, 9, 0),
            ),
            (
                "0 9 1,16 * *",
                at(2026, 12, 16, 8, 59),
                at(2026, 12, 1, 9, 0),
            ),
            (
                "*/15 8-9 * * *",
                at(2026, 12, 2, 9, 44),
                at(2026, 12, 2, 9, 30),
            ),
        ]);
        check_next(&[
            ("0 9 1,16 * *", at(2026, 12, 16, 9, 0), at(2027, 1, 1, 9, 0)),
            (
                "*/15 8-9 * * *",
                at(2026, 12, 2, 9, 45),
                at(2026, 12, 3, 8, 0),
            ),
            // `a/n` runs to the end of the field.
            (
                "5/20 9 * * *",
                at(2026, 12, 2, 9, 25),
                at(2026, 12, 2, 9, 45),
            ),
        ]);
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        check_next(&[
            // The 1st of the month or any Friday.
            ("0 9 1 * FRI", at(2026, 12, 2, 10, 0), at(2026, 12, 4, 9, 0)),
            ("0 9 1 * FRI", at(2026, 12, 25, 10, 0), at(2027, 1, 1, 9, 0)),
            // `*` in the day field: weekday alone decides.
            (
                "0 9 * DEC FRI",
                at(2026, 12, 25, 10, 0),
                at(2027, 12, 3, 9, 0),
            ),
        ]);
    }

    #[test]
    fn leap_day_and_never() {
        check_next(&[("0 9 29 2 *", at(2026, 12, 2, 0, 0), at(2028, 2, 29, 9, 0))]);
        assert!(Schedule::parse("0 9 31 2 *").is_err());
        assert!(Schedule::parse("0 9 30,31 2 *").is_err());
        // With a weekday as well, it fires on the weekday.
        assert!(Schedule::parse("0 9 31 2 MON").is_ok());
    }

    #[test]
    fn shapes_refused() {
        for bad in [
            "0 9 * *",
            "60 9 * * *",
            "0 24 * * *",
            "0 9 0 * *",
            "0 9 * 13 *",
            "0 9 * * FUN",
            "0 9 * * 5-1",
            "*/0 9 * * *",
            "0 9 * * 8",
            "a b c d e",
            "0 9 * * 1 2",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "0 9 * * MON",
            "*/15 8-18 * JAN-DEC 1-5",
            "0 0 L * *".replace('L', "1").as_str(),
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn instants_are_read_in_china_time() {
        let s = Schedule::parse("0 9 * * 1").unwrap();
        // 2026-11-30 01:00 UTC is Monday 09:00 in China.
        let slot: Timestamp = "2026-11-30T01:00:00Z".parse().unwrap();
        assert_eq!(s.latest_at_or_before(slot), Some(slot));
        assert_eq!(
            s.latest_before(slot),
            Some("2026-11-23T01:00:00Z".parse().unwrap())
        );
        assert_eq!(
            s.next_after(slot),
            Some("2026-12-07T01:00:00Z".parse().unwrap())
        );
    }
}
