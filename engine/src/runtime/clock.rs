//! Limits as running clocks, and the one colour function.
//!
//! Every limited thing of an instance (a task, a parallel step, a promise, a stage, an element
//! deadline, an outstanding item) carries a [`Clock`]. The clock follows the 行政许可法 time model:
//!
//! - it counts in the limit's unit: working days on the calendar (the usual case), natural days
//!   or hours;
//! - the day it opens is not counted; the first working day after it is day 1 (so a 5-working-day
//!   task opened on a Monday is due at the end of the next Monday);
//! - it stops while the case waits on the applicant (补正) or on time the law does not count
//!   (听证, 专家评审, 检测): the days used so far are banked in `used` and `running_since` is
//!   cleared; on resume it restarts from the resume instant (that day again not counted) with the
//!   banked days kept;
//! - an extension (延长) adds to the limit (`extended`).
//!
//! Clocks are plain data inside the state; the arithmetic needs the calendar, so it happens in
//! `decide` (which writes its results, e.g. the banked days, into events) and in [`colour`] (which
//! the view calls). `evolve` never needs a calendar.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, CalendarError, end_of_day, local_date, start_of_day};
use crate::limit::{Limit, Unit};

/// The three warning colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Green,
    Yellow,
    Red,
}

/// A limit being counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    #[serde(with = "crate::calendar::china_time")]
    pub opened_at: Timestamp,
    pub limit: Limit,
    /// Added by extensions (延长), in the limit's unit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extended: u32,
    /// Units used in earlier running segments (banked when the clock stopped).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub used: u32,
    /// Start of the current running segment; `None` while stopped.
    #[serde(default, with = "crate::calendar::china_time::option")]
    pub running_since: Option<Timestamp>,
    /// How many stops hold the clock (a suspended branch during a 补正 is held twice).
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub holds: u8,
    /// The yellow warning has been given for the current limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub yellow_warned: bool,
    /// The overdue (red) warning has been given for the current limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub red_warned: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What [`colour`] reads off a clock at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub colour: Colour,
    /// Units left (working days for a working-day limit); negative when overdue.
    pub days_left: i64,
    pub unit: Unit,
    /// When the limit runs out; `None` while the clock is stopped.
    #[serde(default, with = "crate::calendar::china_time::option")]
    pub due: Option<Timestamp>,
    pub stopped: bool,
    /// The reading counts days of a provisional calendar year (暂定, derived from the statute,
    /// not yet published officially): the due date or the days left may still move.
    #[serde(default)]
    pub provisional: bool,
}

impl Clock {
    pub fn new(opened_at: Timestamp, limit: Limit) -> Clock {
        Clock {
            opened_at,
            limit,
            extended: 0,
            used: 0,
            running_since: Some(opened_at),
            holds: 0,
            yellow_warned: false,
            red_warned: false,
        }
    }

    /// The limit including extensions.
    pub fn total(&self) -> u32 {
        self.limit.amount.saturating_add(self.extended)
    }

    pub fn running(&self) -> bool {
        self.running_since.is_some()
    }

    /// Units used by `now`: banked units plus the current segment.
    pub fn used_at(&self, cal: &Calendar, now: Timestamp) -> Result<u32, CalendarError> {
        match self.running_since {
            Some(since) => Ok(self
                .used
                .saturating_add(elapsed(self.limit.unit, cal, since, now)?)),
            None => Ok(self.used),
        }
    }

    /// The instant the limit runs out, while running.
    pub fn due(&self, cal: &Calendar) -> Result<Option<Timestamp>, CalendarError> {
        let Some(since) = self.running_since else {
            return Ok(None);
        };
        let remaining = i64::from(self.total()) - i64::from(self.used);
        point(self.limit.unit, cal, since, remaining, false).map(Some)
    }

    /// The instant the colour turns yellow, while running (the opening instant when it already is).
    pub fn yellow_due(
        &self,
        cal: &Calendar,
        yellow_permille: u32,
    ) -> Result<Option<Timestamp>, CalendarError> {
        let Some(since) = self.running_since else {
            return Ok(None);
        };
        let k = threshold(self.total(), yellow_permille);
        let remaining = i64::from(k) - i64::from(self.used);
        if remaining <= 0 {
            return Ok(Some(since));
        }
        point(self.limit.unit, cal, since, remaining, true).map(Some)
    }
}

/// Units used at which the colour turns yellow: `ceil(total × permille / 1000)`.
pub fn threshold(total: u32, yellow_permille: u32) -> u32 {
    let x = u64::from(total) * u64::from(yellow_permille);
    u32::try_from(x.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Units elapsed in (since, now] in `unit`.
fn elapsed(
    unit: Unit,
    cal: &Calendar,
    since: Timestamp,
    now: Timestamp,
) -> Result<u32, CalendarError> {
    if now <= since {
        return Ok(0);
    }
    match unit {
        Unit::WorkingDays => cal.working_days_between(local_date(since), local_date(now)),
        Unit::Days => {
            let days = local_date(now)
                .since(local_date(since))
                .map(|s| s.get_days())
                .unwrap_or(0);
            Ok(u32::try_from(days.max(0)).unwrap_or(0))
        }
        Unit::Hours => {
            let secs = now.duration_since(since).as_secs();
            Ok(u32::try_from((secs / 3600).max(0)).unwrap_or(u32::MAX))
        }
    }
}

/// The instant `n` units after `since`: the end of the n-th working day (a deadline) or its
/// start (`start = true`, a threshold being reached). `n = 0` on working days means "the end of
/// the same working day" (即报即审); negative `n` (already overdue when a clock resumes) is
/// `since` itself.
fn point(
    unit: Unit,
    cal: &Calendar,
    since: Timestamp,
    n: i64,
    start: bool,
) -> Result<Timestamp, CalendarError> {
    if n < 0 {
        return Ok(since);
    }
    let d0 = local_date(since);
    let day_edge = |d| {
        if start {
            start_of_day(d)
        } else {
            end_of_day(d)
        }
    };
    match unit {
        Unit::WorkingDays => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let d = if n == 0 {
                if cal.is_workday(d0)? {
                    d0
                } else {
                    cal.add_working_days(d0, 1)?
                }
            } else {
                cal.add_working_days(d0, n)?
            };
            Ok(day_edge(d))
        }
        Unit::Days => {
            let d = d0
                .checked_add(jiff::Span::new().days(n.min(100_000)))
                .unwrap_or(jiff::civil::Date::MAX);
            Ok(day_edge(d))
        }
        Unit::Hours => Ok(since
            .checked_add(SignedDuration::from_hours(n.min(10_000_000)))
            .unwrap_or(Timestamp::MAX)),
    }
}

/// The colour of a clock at `now`, and the units left. This is the only colour rule: every open
/// task, step, promise, stage and element in a view is read through it.
///
/// Yellow once `used ≥ ceil(limit × yellow_at)`; red once the due instant has passed (for a
/// stopped clock: once more units were used than the limit allows). `days_left` counts the
/// units left, negative when overdue; it is 0 (not negative) on a rest day right after a
/// deadline, because no working day has been lost yet.
pub fn colour(
    clock: &Clock,
    cal: &Calendar,
    now: Timestamp,
    yellow_permille: u32,
) -> Result<Reading, CalendarError> {
    let used = clock.used_at(cal, now)?;
    let total = clock.total();
    let left = i64::from(total) - i64::from(used);
    let due = clock.due(cal)?;
    let red = match due {
        Some(d) => now >= d,
        None => left < 0,
    };
    let colour = if red {
        Colour::Red
    } else if used >= threshold(total, yellow_permille) {
        Colour::Yellow
    } else {
        Colour::Green
    };
    let days_left = if red { left.min(0) } else { left.max(0) };
    Ok(Reading {
        colour,
        days_left,
        unit: clock.limit.unit,
        due,
        stopped: !clock.running(),
        provisional: clock.limit.unit == Unit::WorkingDays
            && (cal.is_provisional(local_date(now))
                || due.is_some_and(|d| rests_on_provisional(cal, d))),
    })
}

/// Whether a deadline instant falls on a provisional day (the day it ends, for an end-of-day
/// instant: 00:00 of 2027-01-01 ends 2026-12-31, an official day).
pub fn rests_on_provisional(cal: &Calendar, due: Timestamp) -> bool {
    cal.is_provisional(super::deadline::last_day(due))
}
