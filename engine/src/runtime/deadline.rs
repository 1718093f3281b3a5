//! Deadlines known only by their instant.
//!
//! A projection row (a report's overdue list, a promise row) keeps the instant a limit runs out,
//! not the limit's clock. Whatever is read off such a row must say what [`colour`] says for the
//! clock itself, or a report and the task page disagree about the same task. They did: a due
//! instant is the *end* of the limit's last day (00:00 of the next day), and counting working
//! days to the date of that instant added one whenever the next day was a working day.
//!
//! So nothing here counts days by a rule of its own. A deadline that has passed is a clock with
//! nothing left: [`working_days_overdue`] reads, through [`colour`], the zero-day clock opened on
//! the deadline's last day. That clock runs out at the same instant, and from that day on it uses
//! exactly the working days the real clock uses, so its units left are the real clock's (the
//! module's tests check it on every day of 2026 against real clocks with and without banked days).

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use crate::calendar::{Calendar, CalendarError, local_date, start_of_day};
use crate::limit::Limit;

use super::clock::{Clock, colour};

/// The last day of a deadline: the day whose end (00:00 of the next day) the due instant is.
/// Pages and reports print this date, never the date of the instant itself.
pub fn last_day(due: Timestamp) -> Date {
    local_date(
        due.checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(due),
    )
}

/// Working days a deadline is past at `now`, as [`colour`] counts them for the clock that ran
/// out: 0 until the deadline has passed and on the rest days right after it, then one more on
/// each working day (the day being read counts, as it does for days left).
pub fn working_days_overdue(
    cal: &Calendar,
    due: Timestamp,
    now: Timestamp,
) -> Result<u32, CalendarError> {
    let spent = Clock::new(start_of_day(last_day(due)), Limit::working_days(0));
    let reading = colour(&spent, cal, now, 1000)?;
    Ok(u32::try_from(reading.days_left.saturating_neg()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::end_of_day;
    use crate::runtime::clock::Colour;
    use jiff::civil::date;

    fn cn() -> Calendar {
        crate::calendar::shipped_for_tests()
    }

    fn at(d: Date, hour: i8) -> Timestamp {
        start_of_day(d)
            .checked_add(SignedDuration::from_hours(i64::from(hour)))
            .expect("in range")
    }

    #[test]
    fn the_last_day_is_the_day_the_instant_ends() {
        assert_eq!(last_day(end_of_day(date(2026, 3, 9))), date(2026, 3, 9));
        assert_eq!(last_day(at(date(2026, 3, 9), 15)), date(2026, 3, 9));
    }

    /// Every opening day of 2026, a 1-, 5- and 20-working-day clock, fresh or with two days
    /// banked before a stop: on every day it is read (10:00, and the instants around its end)
    /// the days overdue of its due instant are minus its units left when red, 0 otherwise.
    #[test]
    fn overdue_days_of_the_instant_are_the_clocks_own_on_every_day_of_2026() {
        let cal = cn();
        let end = date(2026, 12, 31);
        let mut checked = 0u32;
        let mut opened = date(2026, 1, 1);
        while opened <= end {
            for amount in [1, 5, 20] {
                for banked in [0, 2] {
                    if banked >= amount {
                        continue;
                    }
                    let mut clock = Clock::new(at(opened, 9), Limit::working_days(amount));
                    clock.used = banked;
                    let Ok(Some(due)) = clock.due(&cal) else {
                        continue; // runs past the calendar
                    };
                    assert!(
                        cal.is_workday(last_day(due)).expect("covered"),
                        "{opened} {amount}wd ends on a rest day"
                    );
                    let mut reads: Vec<Timestamp> = Vec::new();
                    let mut d = opened;
                    while d <= end && d <= last_day(due).saturating_add(jiff::Span::new().days(40))
                    {
                        reads.push(at(d, 10));
                        d = d.tomorrow().expect("date");
                    }
                    reads.extend([
                        due.checked_sub(SignedDuration::from_millis(1)).expect("ts"),
                        due,
                    ]);
                    for now in reads {
                        let Ok(r) = colour(&clock, &cal, now, 750) else {
                            continue;
                        };
                        let want = if r.colour == Colour::Red {
                            u32::try_from(-r.days_left).expect("red is not positive")
                        } else {
                            0
                        };
                        assert_eq!(
                            working_days_overdue(&cal, due, now),
                            Ok(want),
                            "opened {opened}, {amount}wd, {banked} banked, read at {now}"
                        );
                        checked += 1;
                    }
                }
            }
            opened = opened.tomorrow().expect("date");
        }
        assert!(checked > 50_000, "only {checked} readings");
    }
}
