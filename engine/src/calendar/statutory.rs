//! Provisional years (暂定日历): the days off a year has by statute alone, for the years the State
//! Council has not yet published an arrangement for.
//!
//! The statute is 《全国年节及纪念日放假办法》 as revised in 2024 (in force from 2025-01-01). Its
//! article 2 gives every citizen these days off:
//!
//! | holiday | days |
//! |---|---|
//! | 元旦 | 1 月 1 日 |
//! | 春节 | 农历除夕、正月初一至初三 (4 days) |
//! | 清明节 | the day of the 清明 solar term |
//! | 劳动节 | 5 月 1 日、2 日 |
//! | 端午节 | 农历五月初五 |
//! | 中秋节 | 农历八月十五 |
//! | 国庆节 | 10 月 1 日至 3 日 |
//!
//! Article 6: a holiday that falls on a Saturday or Sunday is made up (补假) on a working day. The
//! statute does not say which one, and the yearly notice moves days around further (调休). The
//! engine's rule for a provisional year, and nothing more:
//!
//! > Each statutory day that falls on a Saturday or Sunday, or on a day that is already a
//! > statutory day of an earlier holiday, adds one day off: the first Monday–Friday after its
//! > holiday's run of days off that is not already off. There are no make-up working days.
//!
//! So a provisional year has every weekday statutory day off once, and nothing else moves: it has
//! 247–249 working days (an official year has 246–252). Holidays are taken in date order, so when
//! 中秋 falls inside 国庆 the extra day goes after the combined run.
//!
//! Lunar dates and the 清明 solar term come from `tyme4rs` (docs/adr/0003-lunar-calendar.md).

use std::collections::BTreeSet;

use jiff::ToSpan;
use jiff::civil::{Date, Weekday};
use tyme4rs::tyme::lunar::LunarDay;
use tyme4rs::tyme::solar::{SolarDay, SolarTerm};

/// The statute provisional years are derived from, as people read it.
pub const STATUTE: &str = "《全国年节及纪念日放假办法》（2024年修订）";

/// The years the lunar library is used for. Outside them no provisional year is made (a
/// calendar then ends with its last official year, as before).
const SUPPORTED: std::ops::RangeInclusive<i16> = 1950..=2199;

/// One holiday of a year as the statute gives it: its name and its days, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatutoryHoliday {
    pub name: &'static str,
    pub days: Vec<Date>,
}

/// The statutory days off of `year`, holiday by holiday in date order; `None` for a year the
/// lunar library is not used for.
pub fn statutory_holidays(year: i16) -> Option<Vec<StatutoryHoliday>> {
    if !SUPPORTED.contains(&year) {
        return None;
    }
    let y = isize::from(year);
    let solar = |m: i8, d: i8| Date::new(year, m, d).ok();
    let lunar = |m: isize, d: usize| LunarDay::new(y, m, d).ok().map(|l| l.get_solar_day());
    let new_year = lunar(1, 1).and_then(date_of)?;
    let spring: Vec<Date> = (-1..=2)
        .map(|k: i64| new_year.checked_add(k.days()).ok())
        .collect::<Option<_>>()?;
    let qingming = SolarTerm::new(y, "清明")
        .ok()
        .map(|t| t.get_solar_day())
        .and_then(date_of)?;
    let dragon = lunar(5, 5).and_then(date_of)?;
    let moon = lunar(8, 15).and_then(date_of)?;
    let mut out = vec![
        StatutoryHoliday {
            name: "元旦",
            days: vec![solar(1, 1)?],
        },
        StatutoryHoliday {
            name: "春节",
            days: spring,
        },
        StatutoryHoliday {
            name: "清明节",
            days: vec![qingming],
        },
        StatutoryHoliday {
            name: "劳动节",
            days: vec![solar(5, 1)?, solar(5, 2)?],
        },
        StatutoryHoliday {
            name: "端午节",
            days: vec![dragon],
        },
        StatutoryHoliday {
            name: "中秋节",
            days: vec![moon],
        },
        StatutoryHoliday {
            name: "国庆节",
            days: vec![solar(10, 1)?, solar(10, 2)?, solar(10, 3)?],
        },
    ];
    // Every day must be of this year (除夕 always is: 春节 is between 21 January and 20 February).
    if out.iter().flat_map(|h| &h.days).any(|d| d.year() != year) {
        return None;
    }
    // In date order; on a shared first day the longer holiday first (国庆 before a 中秋 on 10-01).
    out.sort_by_key(|h| (h.days.first().copied(), std::cmp::Reverse(h.days.len())));
    Some(out)
}

fn date_of(s: SolarDay) -> Option<Date> {
    let y = i16::try_from(s.get_year()).ok()?;
    let m = i8::try_from(s.get_month()).ok()?;
    let d = i8::try_from(s.get_day()).ok()?;
    Date::new(y, m, d).ok()
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The days off of a provisional year as named ranges `(first, last, name)`, inclusive, in date
/// order: each holiday's statutory days with the days it adds under the rule above. Holidays
/// whose ranges meet are merged under a joined name (`国庆节、中秋节`). `None` for a year the
/// lunar library is not used for.
pub fn provisional_holidays(year: i16) -> Option<Vec<(Date, Date, String)>> {
    let holidays = statutory_holidays(year)?;
    let mut off: BTreeSet<Date> = BTreeSet::new();
    let mut ranges: Vec<(Date, Date, String)> = Vec::new();
    let statutory: BTreeSet<Date> = holidays.iter().flat_map(|h| h.days.clone()).collect();
    let is_off = |off: &BTreeSet<Date>, d: Date| is_weekend(d) || off.contains(&d);
    for h in &holidays {
        let mut owed = 0usize;
        for d in &h.days {
            if is_weekend(*d) || off.contains(d) {
                owed += 1;
            }
            off.insert(*d);
        }
        let first = *h.days.first()?;
        let mut last = *h.days.last()?;
        for _ in 0..owed {
            // The end of the run of days off that holds the holiday, then the first weekday
            // after it that is not already off (never a later holiday's statutory day either:
            // that one is off already, so the run passes over it).
            let mut d = last;
            loop {
                let next = d.tomorrow().ok()?;
                if is_off(&off, next) || statutory.contains(&next) {
                    d = next;
                    continue;
                }
                d = next;
                break;
            }
            if d.year() != year {
                break;
            }
            off.insert(d);
            last = d;
        }
        ranges.push((first, last, h.name.to_string()));
    }
    ranges.sort_by_key(|r| r.0);
    let mut merged: Vec<(Date, Date, String)> = Vec::with_capacity(ranges.len());
    for (from, to, name) in ranges {
        if let Some(prev) = merged.last_mut()
            && from <= prev.1
        {
            prev.1 = prev.1.max(to);
            prev.2 = format!("{}、{}", prev.2, name);
            continue;
        }
        merged.push((from, to, name));
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn days_of(year: i16, name: &str) -> Vec<Date> {
        statutory_holidays(year)
            .expect("supported")
            .into_iter()
            .find(|h| h.name == name)
            .map(|h| h.days)
            .unwrap_or_default()
    }

    /// The lunar dates and the solar term, 2025–2035, against the published almanac (the
    /// 紫金山天文台 《中国天文年历》 dates of 春节, 清明, 端午 and 中秋).
    #[test]
    fn lunar_dates_and_solar_term_are_exact_2025_to_2035() {
        let expected: [(i16, Date, Date, Date, Date); 11] = [
            // year, 正月初一, 清明, 端午, 中秋
            (
                2025,
                date(2025, 1, 29),
                date(2025, 4, 4),
                date(2025, 5, 31),
                date(2025, 10, 6),
            ),
            (
                2026,
                date(2026, 2, 17),
                date(2026, 4, 5),
                date(2026, 6, 19),
                date(2026, 9, 25),
            ),
            (
                2027,
                date(2027, 2, 6),
                date(2027, 4, 5),
                date(2027, 6, 9),
                date(2027, 9, 15),
            ),
            (
                2028,
                date(2028, 1, 26),
                date(2028, 4, 4),
                date(2028, 5, 28),
                date(2028, 10, 3),
            ),
            (
                2029,
                date(2029, 2, 13),
                date(2029, 4, 4),
                date(2029, 6, 16),
                date(2029, 9, 22),
            ),
            (
                2030,
                date(2030, 2, 3),
                date(2030, 4, 5),
                date(2030, 6, 5),
                date(2030, 9, 12),
            ),
            (
                2031,
                date(2031, 1, 23),
                date(2031, 4, 5),
                date(2031, 6, 24),
                date(2031, 10, 1),
            ),
            (
                2032,
                date(2032, 2, 11),
                date(2032, 4, 4),
                date(2032, 6, 12),
                date(2032, 9, 19),
            ),
            (
                2033,
                date(2033, 1, 31),
                date(2033, 4, 4),
                date(2033, 6, 1),
                date(2033, 9, 8),
            ),
            (
                2034,
                date(2034, 2, 19),
                date(2034, 4, 5),
                date(2034, 6, 20),
                date(2034, 9, 27),
            ),
            (
                2035,
                date(2035, 2, 8),
                date(2035, 4, 5),
                date(2035, 6, 10),
                date(2035, 9, 16),
            ),
        ];
        for (year, spring, qingming, dragon, moon) in expected {
            let eve = spring.yesterday().expect("date");
            assert_eq!(
                days_of(year, "春节"),
                vec![
                    eve,
                    spring,
                    spring.tomorrow().expect("date"),
                    spring.checked_add(2.days()).expect("date")
                ],
                "春节 {year}"
            );
            assert_eq!(days_of(year, "清明节"), vec![qingming], "清明 {year}");
            assert_eq!(days_of(year, "端午节"), vec![dragon], "端午 {year}");
            assert_eq!(days_of(year, "中秋节"), vec![moon], "中秋 {year}");
        }
    }

    #[test]
    fn weekend_days_are_made_up_after_the_run() {
        // 2027: 春节 is Fri 02-05 (除夕) .. Mon 02-08; Sat and Sun owe two days: Tue 09, Wed 10.
        let h = provisional_holidays(2027).expect("2027");
        let spring = h.iter().find(|r| r.2 == "春节").expect("春节");
        assert_eq!((spring.0, spring.1), (date(2027, 2, 5), date(2027, 2, 10)));
        // 元旦 2027 is a Friday: nothing owed.
        assert!(h.contains(&(date(2027, 1, 1), date(2027, 1, 1), "元旦".into())));
        // 国庆 2027: Fri 10-01 .. Sun 10-03 owes two: Mon 04, Tue 05.
        let national = h.iter().find(|r| r.2 == "国庆节").expect("国庆");
        assert_eq!(
            (national.0, national.1),
            (date(2027, 10, 1), date(2027, 10, 5))
        );
        // 劳动节 2027: Sat 05-01, Sun 05-02 owe two: Mon 03, Tue 04.
        assert!(h.contains(&(date(2027, 5, 1), date(2027, 5, 4), "劳动节".into())));
    }

    #[test]
    fn a_holiday_on_another_holiday_adds_a_day() {
        // 2031: 中秋 is 10-01, the first day of 国庆 (Wed 01 .. Fri 03). It owes one day, after
        // the combined run that the weekend extends: Mon 10-06.
        let h = provisional_holidays(2031).expect("2031");
        let autumn = h
            .iter()
            .find(|r| r.2.contains("国庆节"))
            .expect("国庆")
            .clone();
        assert_eq!(autumn.2, "国庆节、中秋节");
        assert_eq!((autumn.0, autumn.1), (date(2031, 10, 1), date(2031, 10, 6)));
        // 2028: 中秋 is Tue 10-03, inside 国庆 (Sun 01 .. Tue 03): 国庆 owes one for Sunday
        // (Wed 04), 中秋 one more for its shared day (Thu 05).
        let h = provisional_holidays(2028).expect("2028");
        let autumn = h.iter().find(|r| r.2.contains("国庆节")).expect("国庆");
        assert_eq!((autumn.0, autumn.1), (date(2028, 10, 1), date(2028, 10, 5)));
    }

    #[test]
    fn outside_the_supported_years_there_is_nothing() {
        assert!(statutory_holidays(1949).is_none());
        assert!(provisional_holidays(2200).is_none());
        assert!(provisional_holidays(2199).is_some());
    }
}
