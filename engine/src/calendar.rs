//! The working-day calendar (工作日): which dates are working days, and working-day arithmetic.
//!
//! This module is the one place that answers "is this a working day?" and "what date is N working
//! days after D?". Everything that counts a limit calls it.
//!
//! The rule: Monday to Friday are working days unless listed as a public holiday; Saturday and
//! Sunday are rest days unless listed as a make-up working day (调休上班). The facts come from a
//! YAML file per calendar (`workflows/calendars/<id>.yaml`), one entry per published year, so staff
//! can add a year when the State Council (国务院办公厅) publishes it.
//!
//! After the last published (official) year the calendar goes on with **provisional years**
//! (暂定), [`PROVISIONAL_YEARS`] of them, derived from the statute alone (see [`statutory`]): the
//! law says which days are holidays, only the yearly bridging (调休) is unknown. Every answer that
//! rests on a provisional day says so ([`Calendar::is_provisional`]), so a deadline computed today
//! for next year is usable and marked, and re-timed when the official year is published. A date
//! before the first official year, or past the provisional years, is still an error.
//!
//! Counting follows the administrative-licensing convention: the day an event happens is not
//! counted; the first working day after it is day 1.
//!
//! Representation: per year, a bitset of working days and a prefix count, plus a running total
//! of working days before each year. `is_workday`, `working_days_between` and
//! `add_working_days` are then O(1) / O(log days), with no allocation per call.
//!
//! Local time: China has had no daylight saving since 1991, so local time is UTC+08:00 always and
//! the conversions below need no time-zone database (no I/O).
//!
//! ## File format
//!
//! ```yaml
//! name: 中国大陆法定节假日
//! years:
//!   - year: 2026
//!     source: 国务院办公厅关于2026年部分节假日安排的通知
//!     holidays:
//!       - { name: 元旦, from: 2026-01-01, to: 2026-01-03 }
//!       - { name: 端午节, date: 2026-06-19 }          # one day: `date` instead of from/to
//!     workdays:                                       # 调休上班: weekend days that are worked
//!       - { date: 2026-01-04, for: 元旦 }
//! ```
//!
//! Years must be consecutive. Every problem is reported at once, located, with a code:
//!
//! | code | problem |
//! |---|---|
//! | C001 | YAML syntax, unknown key or wrong shape |
//! | C002 | a date that is not a real `YYYY-MM-DD` date |
//! | C003 | a holiday or make-up day outside the year it is listed under |
//! | C004 | a holiday range that ends before it starts |
//! | C005 | two holidays overlapping |
//! | C006 | a make-up working day that is not a Saturday or Sunday |
//! | C007 | a make-up working day listed twice, or inside a holiday |
//! | C008 | a year listed twice |
//! | C009 | no years at all |
//! | C010 | a year outside 1900..=9998 |
//! | C011 | years not consecutive |
//! | C012 | a holiday with both `date` and `from`/`to`, or with neither |

use std::fmt;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::Offset;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;

use crate::diag::Diagnostic;
use crate::span::{Pos, Sp};

pub mod statutory;

/// How many provisional years follow the last official year (a 730-working-day construction limit
/// is three years; ten more leave room for limits stopped and resumed over a decade).
pub const PROVISIONAL_YEARS: i16 = 15;

/// China Standard Time, UTC+08:00, with no DST.
const CHINA: Offset = Offset::constant(8);

/// A working-day calendar covering the consecutive years `first_year..=last_year`.
#[derive(Clone, Debug)]
pub struct Calendar {
    id: String,
    name: Option<String>,
    first_year: i16,
    /// The last year with an official arrangement; later years are provisional.
    official_last: i16,
    /// One entry per year, `first_year` first: the official years, then the provisional ones.
    years: Vec<YearTable>,
    /// The official years as written, to write the calendar back ([`Calendar::to_yaml`]).
    official: Vec<OfficialYear>,
    /// The published revision this calendar is (0 when read from a file, not from the
    /// revisions the server keeps); recorded with every timer armed on it.
    revision: u32,
}

/// One official year as published: its notice, days off and make-up working days.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OfficialYear {
    year: i16,
    source: Option<String>,
    holidays: Vec<(Date, Date, String)>,
    workdays: Vec<(Date, Option<String>)>,
}

/// A day whose status a calendar revision changes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DayChange {
    pub date: Date,
    pub was_workday: bool,
    pub now_workday: bool,
    /// The day was provisional before the revision.
    pub was_provisional: bool,
    /// The holiday the day belongs to after the revision, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holiday: Option<String>,
}

/// Every statutory day of `year` must be a day off in an official arrangement (C013).
fn check_statutory_days(year: i16, pos: Pos, table: &YearTable, diags: &mut Vec<Diagnostic>) {
    // The revised statute is in force from 2025; earlier years had other holidays.
    if year < 2025 {
        return;
    }
    let Some(law) = statutory::statutory_holidays(year) else {
        return;
    };
    for h in law {
        for d in h.days {
            let idx = usize::try_from(d.day_of_year() - 1).unwrap_or(0);
            if table.is_set(idx) {
                diags.push(
                    Diagnostic::error(
                        "C013",
                        pos,
                        format!(
                            "year {year}: {d} is a statutory day off ({}) but the arrangement makes it a working day",
                            h.name
                        ),
                    )
                    .with_help(format!(
                        "every day of {} is a day off; list it in the holiday's range",
                        statutory::STATUTE
                    )),
                );
            }
        }
    }
}

/// Quotes a string for YAML (JSON strings are YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The working days of one year.
#[derive(Clone)]
struct YearTable {
    /// Bit `i` is set when day-of-year `i + 1` is a working day.
    bits: [u64; 6],
    /// `prefix[i]` = working days among days-of-year `1..=i`; `prefix[0] = 0`. Length = days + 1.
    prefix: Vec<u16>,
    /// Working days in all earlier years of the calendar.
    before: u32,
    /// Named holidays as (first day-of-year, last day-of-year, name), for display.
    holidays: Vec<(i16, i16, String)>,
}

impl fmt::Debug for YearTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YearTable")
            .field("working_days", &self.total())
            .field("holidays", &self.holidays)
            .finish()
    }
}

impl YearTable {
    fn days(&self) -> usize {
        self.prefix.len() - 1
    }

    fn total(&self) -> u16 {
        self.prefix.last().copied().unwrap_or(0)
    }

    fn is_set(&self, idx: usize) -> bool {
        self.bits
            .get(idx / 64)
            .is_some_and(|w| w & (1u64 << (idx % 64)) != 0)
    }
}

/// A date the calendar cannot answer for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalendarError {
    #[error(
        "{date} 不在工作日日历 `{calendar}` 的范围内（该日历覆盖 {first_year}–{last_year} 年，\
         正式年度之后按{statute}推算暂定年度）"
        , statute = statutory::STATUTE
    )]
    OutOfRange {
        date: Date,
        calendar: String,
        first_year: i16,
        last_year: i16,
    },
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    name: Option<String>,
    /// Free text for the reader.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation in the file; read so that the key is allowed"
    )]
    description: Option<String>,
    years: Sp<Vec<YearFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: Sp<i64>,
    /// The notice the dates come from, for the reader.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    holidays: Vec<HolidayFile>,
    #[serde(default)]
    workdays: Vec<WorkdayFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    name: Sp<String>,
    /// A one-day holiday.
    #[serde(default)]
    date: Option<Sp<String>>,
    #[serde(default)]
    from: Option<Sp<String>>,
    /// Inclusive; defaults to `from`.
    #[serde(default)]
    to: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkdayFile {
    date: Sp<String>,
    /// The holiday this make-up day belongs to, for the reader.
    #[serde(default, rename = "for")]
    for_holiday: Option<String>,
}

fn pos_of<T>(s: &Sp<T>, fallback: Pos) -> Pos {
    if s.pos.is_known() { s.pos } else { fallback }
}

/// Reads a date written `YYYY-MM-DD`.
fn parse_date(s: &Sp<String>, diags: &mut Vec<Diagnostic>, what: &str) -> Option<Date> {
    let text = s.value.trim();
    let ok = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
    match text.parse::<Date>() {
        Ok(d) if ok => Some(d),
        _ => {
            diags.push(
                Diagnostic::error(
                    "C002",
                    s.pos,
                    format!("`{text}` is not a valid date for {what}"),
                )
                .with_help("write dates as YYYY-MM-DD, e.g. 2026-10-01"),
            );
            None
        }
    }
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

impl Calendar {
    /// Reads and checks a calendar file. `id` is the calendar's id (the file stem, e.g.
    /// `cn-mainland`). Returns every problem found, each located, or the calendar.
    pub fn from_yaml(id: &str, source: &str) -> Result<Calendar, Vec<Diagnostic>> {
        Self::read(id, source, false)
    }

    /// Reads a newly published arrangement as strictly as an import needs: on top of the file
    /// checks, every statutory day of each year from 2025 on must be off (C013).
    pub fn from_yaml_strict(id: &str, source: &str) -> Result<Calendar, Vec<Diagnostic>> {
        Self::read(id, source, true)
    }

    fn read(id: &str, source: &str, strict: bool) -> Result<Calendar, Vec<Diagnostic>> {
        let file: CalendarFile = serde_saphyr::from_str(source).map_err(|e| {
            let mut d = crate::parse::syntax_diagnostic(&e);
            d.code = "C001";
            d.message = d
                .message
                .replacen("cannot read workflow", "cannot read calendar", 1);
            d.help = Some(
                "a calendar has `name` and `years`; each year has `year`, `holidays` \
                 ({name, from, to} or {name, date}) and `workdays` ({date, for})"
                    .into(),
            );
            vec![d]
        })?;
        let mut diags = Vec::new();
        let years_pos = pos_of(&file.years, Pos { line: 1, col: 1 });

        if file.years.value.is_empty() {
            diags.push(
                Diagnostic::error("C009", years_pos, "the calendar lists no years")
                    .with_help("add at least one year with its holidays and make-up working days"),
            );
            return Err(diags);
        }

        // Years: valid, unique, consecutive.
        let mut year_nums: Vec<(i16, Pos)> = Vec::new();
        for y in &file.years.value {
            match i16::try_from(y.year.value) {
                Ok(n) if (1900..=9998).contains(&n) => {
                    if let Some((_, first)) = year_nums.iter().find(|(v, _)| *v == n) {
                        diags.push(
                            Diagnostic::error(
                                "C008",
                                y.year.pos,
                                format!("year {n} is listed twice (first at line {})", first.line),
                            )
                            .with_help("merge the two entries into one"),
                        );
                    } else {
                        year_nums.push((n, y.year.pos));
                    }
                }
                _ => diags.push(
                    Diagnostic::error(
                        "C010",
                        y.year.pos,
                        format!("{} is not a supported year", y.year.value),
                    )
                    .with_help("years run from 1900 to 9998"),
                ),
            }
        }
        let mut sorted = year_nums.clone();
        sorted.sort_unstable_by_key(|(y, _)| *y);
        for w in sorted.windows(2) {
            if let [(a, _), (b, b_pos)] = w
                && *b != *a + 1
            {
                diags.push(
                    Diagnostic::error(
                        "C011",
                        *b_pos,
                        format!("the years are not consecutive: {a} is followed by {b}"),
                    )
                    .with_help("a calendar must cover every year between its first and last"),
                );
            }
        }

        // Per year: holidays and make-up days, with the checks that need the dates.
        struct Parsed {
            year: i16,
            pos: Pos,
            source: Option<String>,
            holidays: Vec<(Date, Date, String)>,
            workdays: Vec<Date>,
            workdays_for: Vec<Option<String>>,
        }
        let mut parsed: Vec<Parsed> = Vec::new();
        for y in &file.years.value {
            let Ok(year) = i16::try_from(y.year.value) else {
                continue;
            };
            let mut p = Parsed {
                year,
                pos: y.year.pos,
                source: y.source.clone(),
                holidays: Vec::new(),
                workdays: Vec::new(),
                workdays_for: Vec::new(),
            };
            // (from, to, name, pos) of holidays, for overlap checks.
            let mut ranges: Vec<(Date, Date, String, Pos)> = Vec::new();
            for h in &y.holidays {
                let name_pos = pos_of(&h.name, y.year.pos);
                let (from, to) = match (&h.date, &h.from, &h.to) {
                    (Some(d), None, None) => (Some(d), Some(d)),
                    (None, Some(f), t) => (Some(f), Some(t.as_ref().unwrap_or(f))),
                    (Some(d), _, _) => {
                        diags.push(
                            Diagnostic::error(
                                "C012",
                                d.pos,
                                format!(
                                    "holiday `{}` has both `date` and `from`/`to`",
                                    h.name.value
                                ),
                            )
                            .with_help("use `date` for one day, or `from` and `to` for a range"),
                        );
                        (None, None)
                    }
                    (None, None, _) => {
                        diags.push(
                            Diagnostic::error(
                                "C012",
                                name_pos,
                                format!("holiday `{}` has no dates", h.name.value),
                            )
                            .with_help("add `date: YYYY-MM-DD`, or `from:` and `to:`"),
                        );
                        (None, None)
                    }
                };
                let (Some(from_s), Some(to_s)) = (from, to) else {
                    continue;
                };
                let what = format!("holiday `{}`", h.name.value);
                let from = parse_date(from_s, &mut diags, &what);
                let to = if std::ptr::eq(from_s, to_s) {
                    from
                } else {
                    parse_date(to_s, &mut diags, &what)
                };
                let (Some(from), Some(to)) = (from, to) else {
                    continue;
                };
                if to < from {
                    diags.push(
                        Diagnostic::error(
                            "C004",
                            to_s.pos,
                            format!(
                                "holiday `{}` ends ({to}) before it starts ({from})",
                                h.name.value
                            ),
                        )
                        .with_help("`to` is the last day of the holiday, inclusive"),
                    );
                    continue;
                }
                let mut outside = false;
                for (d, s) in [(from, from_s), (to, to_s)] {
                    if d.year() != year && !outside {
                        outside = true;
                        diags.push(
                            Diagnostic::error(
                                "C003",
                                s.pos,
                                format!(
                                    "holiday `{}` date {d} is outside the year {year} it is listed under",
                                    h.name.value
                                ),
                            )
                            .with_help(
                                "list each date under its own year; split a holiday that crosses New Year",
                            ),
                        );
                    }
                }
                if outside {
                    continue;
                }
                if let Some((_, _, other, opos)) =
                    ranges.iter().find(|(f, t, _, _)| from <= *t && *f <= to)
                {
                    diags.push(
                        Diagnostic::error(
                            "C005",
                            from_s.pos,
                            format!(
                                "holiday `{}` ({from}..{to}) overlaps holiday `{other}` at line {}",
                                h.name.value, opos.line
                            ),
                        )
                        .with_help("a date may belong to one holiday only; for a combined holiday (e.g. 国庆+中秋) write one range"),
                    );
                    continue;
                }
                ranges.push((from, to, h.name.value.clone(), from_s.pos));
                p.holidays.push((from, to, h.name.value.clone()));
            }

            let mut seen: Vec<(Date, Pos)> = Vec::new();
            for w in &y.workdays {
                let Some(d) = parse_date(&w.date, &mut diags, "a make-up working day") else {
                    continue;
                };
                if d.year() != year {
                    diags.push(
                        Diagnostic::error(
                            "C003",
                            w.date.pos,
                            format!("make-up working day {d} is outside the year {year} it is listed under"),
                        )
                        .with_help("list each date under its own year"),
                    );
                    continue;
                }
                if !is_weekend(d) {
                    diags.push(
                        Diagnostic::error(
                            "C006",
                            w.date.pos,
                            format!("make-up working day {d} is a {:?}, not a weekend day", d.weekday()),
                        )
                        .with_help("调休上班 days are Saturdays or Sundays; weekdays are working days already"),
                    );
                    continue;
                }
                if let Some((_, p2)) = seen.iter().find(|(x, _)| *x == d) {
                    diags.push(
                        Diagnostic::error(
                            "C007",
                            w.date.pos,
                            format!(
                                "make-up working day {d} is listed twice (first at line {})",
                                p2.line
                            ),
                        )
                        .with_help("remove one of them"),
                    );
                    continue;
                }
                if let Some((_, _, name, _)) = ranges.iter().find(|(f, t, _, _)| *f <= d && d <= *t)
                {
                    diags.push(
                        Diagnostic::error(
                            "C007",
                            w.date.pos,
                            format!("make-up working day {d} falls inside holiday `{name}`"),
                        )
                        .with_help("a date is either a holiday or a working day, not both"),
                    );
                    continue;
                }
                seen.push((d, w.date.pos));
                p.workdays.push(d);
                p.workdays_for.push(w.for_holiday.clone());
            }
            parsed.push(p);
        }

        if diags.iter().any(Diagnostic::is_error) {
            return Err(diags);
        }

        parsed.sort_by_key(|p| p.year);
        let first_year = parsed.first().map(|p| p.year).unwrap_or(0);
        let official_last = parsed.last().map(|p| p.year).unwrap_or(0);
        let mut years = Vec::with_capacity(parsed.len() + PROVISIONAL_YEARS as usize);
        let mut official = Vec::with_capacity(parsed.len());
        let mut before: u32 = 0;
        for p in parsed {
            let table = build_year(p.year, &p.holidays, &p.workdays, before).ok_or_else(|| {
                vec![Diagnostic::error(
                    "C010",
                    years_pos,
                    format!("{} is not a supported year", p.year),
                )]
            })?;
            if strict {
                check_statutory_days(p.year, p.pos, &table, &mut diags);
            }
            before += u32::from(table.total());
            years.push(table);
            official.push(OfficialYear {
                year: p.year,
                source: p.source,
                holidays: p.holidays,
                workdays: p.workdays.into_iter().zip(p.workdays_for).collect(),
            });
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        // Provisional years from the statute, as far as the lunar library reaches.
        for year in (official_last + 1)..=official_last.saturating_add(PROVISIONAL_YEARS) {
            let Some(table) = statutory::provisional_holidays(year)
                .and_then(|h| build_year(year, &h, &[], before))
            else {
                break;
            };
            before += u32::from(table.total());
            years.push(table);
        }
        Ok(Calendar {
            id: id.to_string(),
            name: file.name,
            first_year,
            official_last,
            years,
            official,
            revision: 0,
        })
    }

    /// This calendar as published revision `revision`.
    pub fn with_revision(mut self, revision: u32) -> Calendar {
        self.revision = revision;
        self
    }

    /// The published revision (0 for a calendar read from a file).
    pub fn revision(&self) -> u32 {
        self.revision
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The calendar's human name, if the file gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn first_year(&self) -> i16 {
        self.first_year
    }

    /// The last year the calendar answers for, provisional years included.
    pub fn last_year(&self) -> i16 {
        // `years` is never empty (checked when reading), and its length fits: years ≤ 9998.
        self.first_year + i16::try_from(self.years.len()).unwrap_or(1) - 1
    }

    /// The last year with an official arrangement (国务院办公厅 notice).
    pub fn official_last_year(&self) -> i16 {
        self.official_last
    }

    /// The provisional years, derived from the statute (empty when there are none).
    pub fn provisional_years(&self) -> std::ops::RangeInclusive<i16> {
        (self.official_last + 1)..=self.last_year()
    }

    /// Whether `d` lies in a provisional year: an answer that counts it is provisional.
    pub fn is_provisional(&self, d: Date) -> bool {
        d.year() > self.official_last && self.covers(d)
    }

    /// The last day the calendar knows (31 December of its last year, provisional years
    /// included): a limit that would run past it is refused with `outside_calendar`.
    pub fn last_day(&self) -> Date {
        Date::new(self.last_year(), 12, 31).unwrap_or(Date::MAX)
    }

    /// The last day of the last official year: from the next day on, answers are provisional.
    pub fn official_last_day(&self) -> Date {
        Date::new(self.official_last, 12, 31).unwrap_or(Date::MAX)
    }

    /// The calendar written back as a calendar file (the official years only; provisional
    /// years are derived again when it is read). Reading the text gives the same calendar.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        if let Some(n) = &self.name {
            out.push_str(&format!("name: {}\n", yaml_str(n)));
        }
        out.push_str("years:\n");
        for y in &self.official {
            out.push_str(&format!("  - year: {}\n", y.year));
            if let Some(src) = &y.source {
                out.push_str(&format!("    source: {}\n", yaml_str(src)));
            }
            out.push_str("    holidays:\n");
            if y.holidays.is_empty() {
                out.truncate(out.len() - 1);
                out.push_str(" []\n");
            }
            for (from, to, name) in &y.holidays {
                if from == to {
                    out.push_str(&format!(
                        "      - {{ name: {}, date: {from} }}\n",
                        yaml_str(name)
                    ));
                } else {
                    out.push_str(&format!(
                        "      - {{ name: {}, from: {from}, to: {to} }}\n",
                        yaml_str(name)
                    ));
                }
            }
            out.push_str("    workdays:");
            if y.workdays.is_empty() {
                out.push_str(" []");
            }
            out.push('\n');
            for (d, f) in &y.workdays {
                match f {
                    Some(f) => {
                        out.push_str(&format!("      - {{ date: {d}, for: {} }}\n", yaml_str(f)))
                    }
                    None => out.push_str(&format!("      - {{ date: {d} }}\n")),
                }
            }
        }
        out
    }

    /// This calendar with the official years of `other` put in (added, or replacing the same
    /// years), written as a calendar file: what importing `other` publishes.
    pub fn merged_yaml(&self, other: &Calendar) -> String {
        let mut merged = self.clone();
        for y in &other.official {
            match merged.official.iter_mut().find(|m| m.year == y.year) {
                Some(slot) => *slot = y.clone(),
                None => merged.official.push(y.clone()),
            }
        }
        merged.official.sort_by_key(|y| y.year);
        merged.to_yaml()
    }

    /// The years `self` has official arrangements for.
    pub fn official_years(&self) -> Vec<i16> {
        self.official.iter().map(|y| y.year).collect()
    }

    /// The days whose status differs between `self` (in force) and `new`, over the days both
    /// cover, in date order.
    pub fn diff(&self, new: &Calendar) -> Vec<DayChange> {
        let from = self.first_year.max(new.first_year);
        let to = self.last_year().min(new.last_year());
        let mut out = Vec::new();
        let Ok(mut d) = Date::new(from, 1, 1) else {
            return out;
        };
        while d.year() <= to {
            if let (Ok(a), Ok(b)) = (self.is_workday(d), new.is_workday(d))
                && a != b
            {
                out.push(DayChange {
                    date: d,
                    was_workday: a,
                    now_workday: b,
                    was_provisional: self.is_provisional(d),
                    holiday: new.holiday(d).ok().flatten().map(str::to_string),
                });
            }
            let Ok(next) = d.tomorrow() else { break };
            d = next;
        }
        out
    }

    /// Whether the calendar knows this date.
    pub fn covers(&self, d: Date) -> bool {
        self.table(d).is_some()
    }

    /// Whether `d` is a working day.
    pub fn is_workday(&self, d: Date) -> Result<bool, CalendarError> {
        let (t, idx) = self.locate(d)?;
        Ok(t.is_set(idx))
    }

    /// The name of the public holiday `d` falls in (`春节`, `国庆节` ...), if any.
    pub fn holiday(&self, d: Date) -> Result<Option<&str>, CalendarError> {
        let (t, _) = self.locate(d)?;
        let doy = d.day_of_year();
        Ok(t.holidays
            .iter()
            .find(|(f, l, _)| *f <= doy && doy <= *l)
            .map(|(_, _, n)| n.as_str()))
    }

    /// The date n working days after d; the day d itself is not counted, the first working day
    /// after it is day 1. n = 0 returns d. `d` must be covered by the calendar (even for n = 0),
    /// and so must the result.
    pub fn add_working_days(&self, d: Date, n: u32) -> Result<Date, CalendarError> {
        let start = self.cumulative(d)?;
        if n == 0 {
            return Ok(d);
        }
        let target = u64::from(start) + u64::from(n);
        // The year holding the target-th working day: the last year whose `before` < target.
        let k = self.years.partition_point(|t| u64::from(t.before) < target);
        let Some(k) = k.checked_sub(1) else {
            return Err(self.past_end());
        };
        let Some(t) = self.years.get(k) else {
            return Err(self.past_end());
        };
        let within = target - u64::from(t.before);
        if within > u64::from(t.total()) {
            return Err(self.past_end());
        }
        // Smallest i with prefix[i] >= within: day-of-year i is that working day.
        let i = t.prefix.partition_point(|&c| u64::from(c) < within);
        let year = self.first_year + i16::try_from(k).map_err(|_| self.past_end())?;
        Date::new(year, 1, 1)
            .and_then(|jan1| {
                jan1.checked_add(i64::try_from(i).unwrap_or(0).saturating_sub(1).days())
            })
            .map_err(|_| self.past_end())
    }

    /// The first working day on or after `d`: `d` itself when it is one.
    pub fn working_day_from(&self, d: Date) -> Result<Date, CalendarError> {
        if self.is_workday(d)? {
            Ok(d)
        } else {
            self.add_working_days(d, 1)
        }
    }

    /// The day a wait for `date` that starts on `from` ends: the date itself, or the next
    /// occurrence after `from` of a yearly date, moved to the first working day on or after it
    /// when it is a rest day. An absolute date already reached gives `from`'s own day.
    pub fn wait_ends(&self, from: Date, date: DateSpec) -> Result<Date, CalendarError> {
        let day = match date {
            DateSpec::On(d) => d.max(from),
            DateSpec::Yearly { month, day } => {
                // The first year after `from` that has the day (29 February: a leap year).
                let mut found = None;
                for year in from.year()..from.year().saturating_add(9) {
                    if let Ok(d) = Date::new(year, month, day)
                        && d > from
                    {
                        found = Some(d);
                        break;
                    }
                }
                found.ok_or_else(|| self.past_end())?
            }
        };
        self.working_day_from(day)
    }

    /// Number of working days in (from, to]; 0 when to <= from. Both dates must be covered.
    pub fn working_days_between(&self, from: Date, to: Date) -> Result<u32, CalendarError> {
        let a = self.cumulative(from)?;
        let b = self.cumulative(to)?;
        Ok(b.saturating_sub(a))
    }

    /// Working days from the calendar's first day through `d`, inclusive.
    fn cumulative(&self, d: Date) -> Result<u32, CalendarError> {
        let (t, idx) = self.locate(d)?;
        let within = t.prefix.get(idx + 1).copied().unwrap_or(0);
        Ok(t.before + u32::from(within))
    }

    fn table(&self, d: Date) -> Option<&YearTable> {
        let k = usize::try_from(d.year().checked_sub(self.first_year)?).ok()?;
        self.years.get(k)
    }

    /// The year table of `d` and the 0-based day index of `d` in it.
    fn locate(&self, d: Date) -> Result<(&YearTable, usize), CalendarError> {
        let t = self.table(d).ok_or_else(|| self.out_of_range(d))?;
        let idx = usize::try_from(d.day_of_year() - 1).map_err(|_| self.out_of_range(d))?;
        if idx >= t.days() {
            return Err(self.out_of_range(d));
        }
        Ok((t, idx))
    }

    fn out_of_range(&self, date: Date) -> CalendarError {
        CalendarError::OutOfRange {
            date,
            calendar: self.id.clone(),
            first_year: self.first_year,
            last_year: self.last_year(),
        }
    }

    /// A count ran past the last covered day: the error names the first day not covered.
    fn past_end(&self) -> CalendarError {
        let date = Date::new(self.last_year().saturating_add(1), 1, 1).unwrap_or(Date::MAX);
        self.out_of_range(date)
    }
}

/// Builds one year's table; `None` only for a year jiff cannot represent.
fn build_year(
    year: i16,
    holidays: &[(Date, Date, String)],
    workdays: &[Date],
    before: u32,
) -> Option<YearTable> {
    let jan1 = Date::new(year, 1, 1).ok()?;
    let days = usize::try_from(jan1.days_in_year()).ok()?;
    let mut work = vec![false; days];
    let mut d = jan1;
    for slot in work.iter_mut() {
        *slot = !is_weekend(d);
        d = d.tomorrow().unwrap_or(d);
    }
    let mut named = Vec::with_capacity(holidays.len());
    for (from, to, name) in holidays {
        let (f, l) = (from.day_of_year(), to.day_of_year());
        for doy in f..=l {
            if let Some(slot) = usize::try_from(doy - 1).ok().and_then(|i| work.get_mut(i)) {
                *slot = false;
            }
        }
        named.push((f, l, name.clone()));
    }
    for w in workdays {
        if let Some(slot) = usize::try_from(w.day_of_year() - 1)
            .ok()
            .and_then(|i| work.get_mut(i))
        {
            *slot = true;
        }
    }
    let mut bits = [0u64; 6];
    let mut prefix = Vec::with_capacity(days + 1);
    prefix.push(0u16);
    let mut count = 0u16;
    for (i, &w) in work.iter().enumerate() {
        if w {
            if let Some(word) = bits.get_mut(i / 64) {
                *word |= 1u64 << (i % 64);
            }
            count += 1;
        }
        prefix.push(count);
    }
    Some(YearTable {
        bits,
        prefix,
        before,
        holidays: named,
    })
}

/// Serde for instants in JSON: RFC 3339 at China's offset, e.g. `2026-03-02T09:00:00+08:00`, the
/// time approvers read (jiff's own form is UTC, `2026-03-02T01:00:00Z`). Reading accepts any
/// offset, so values stored in UTC still read, and a round trip gives the same instant.
pub mod china_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::CHINA;

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&ts.display_with_offset(CHINA))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(d)
    }

    /// The same for an optional instant (use with `#[serde(default)]`).
    pub mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        use super::CHINA;

        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(t) => s.collect_str(&t.display_with_offset(CHINA)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<Timestamp>::deserialize(d)
        }
    }
}

/// A calendar date a wait runs until, as `wait_until` writes it: `"01-10"` (every year's
/// 1 月 10 日, the next one) or `"2027-01-10"` (that day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpec {
    Yearly { month: i8, day: i8 },
    On(Date),
}

impl DateSpec {
    pub fn parse(text: &str) -> Result<DateSpec, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "`{t}` is not a date: write `MM-DD` for the next such day (e.g. `01-10`) or `YYYY-MM-DD` for one day (e.g. `2027-01-10`)"
            )
        };
        let parts: Vec<&str> = t.split('-').collect();
        match parts.as_slice() {
            [m, d] => {
                let month: i8 = m.parse().map_err(|_| bad())?;
                let day: i8 = d.parse().map_err(|_| bad())?;
                // Any day that exists in some year (2024 is a leap year).
                Date::new(2024, month, day).map_err(|_| bad())?;
                Ok(DateSpec::Yearly { month, day })
            }
            [_, _, _] => t.parse::<Date>().map(DateSpec::On).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// The local (China, UTC+08:00) date of an instant.
pub fn local_date(ts: Timestamp) -> Date {
    CHINA.to_datetime(ts).date()
}

/// The local (China, UTC+08:00) date and time of an instant.
pub fn local_datetime(ts: Timestamp) -> DateTime {
    CHINA.to_datetime(ts)
}

/// The instant of a local (China, UTC+08:00) date and time. Saturates at the ends of
/// representable time.
pub fn from_local_datetime(dt: DateTime) -> Timestamp {
    CHINA.to_timestamp(dt).unwrap_or(if dt.year() < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The instant a local date ends (00:00 of the next day, +08:00). Saturates at the end of
/// representable time.
pub fn end_of_day(d: Date) -> Timestamp {
    d.tomorrow()
        .ok()
        .and_then(|n| {
            CHINA
                .to_timestamp(n.to_datetime(jiff::civil::Time::midnight()))
                .ok()
        })
        .unwrap_or(Timestamp::MAX)
}

/// The instant a local date begins (00:00, +08:00). Saturates at the start of representable time.
pub fn start_of_day(d: Date) -> Timestamp {
    CHINA
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .unwrap_or(Timestamp::MIN)
}

/// The shipped mainland calendar, for the engine's unit tests.
#[cfg(test)]
pub(crate) fn shipped_for_tests() -> Calendar {
    const CN: &str = include_str!("../../workflows/calendars/cn-mainland.yaml");
    match Calendar::from_yaml("cn-mainland", CN) {
        Ok(c) => c,
        Err(d) => panic!("cn-mainland.yaml does not read: {d:#?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn cn() -> Calendar {
        shipped_for_tests()
    }

    #[test]
    fn a_wait_until_a_date_ends_on_its_next_working_day() {
        let cal = cn();
        let yearly = |s| DateSpec::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let ends = |from, spec| cal.wait_ends(from, spec).unwrap_or_else(|e| panic!("{e}"));
        // 10 月征集，次年 1 月印发: 2027-01-10 is a Sunday, so Monday 01-11 (provisional 2027).
        assert_eq!(ends(date(2026, 10, 12), yearly("01-10")), date(2027, 1, 11));
        assert!(cal.is_provisional(date(2027, 1, 11)));
        // Across the year end: 元旦 2027 is a Friday off, then the weekend: Monday 01-04.
        assert_eq!(ends(date(2026, 12, 1), yearly("01-01")), date(2027, 1, 4));
        // The next occurrence is strictly after the day the wait starts.
        assert_eq!(ends(date(2027, 1, 11), yearly("01-11")), date(2028, 1, 11));
        // 2031-02-10 is a Monday, a working day of the provisional 2031: that very day when
        // written as a date, the next year's when written as a yearly date entered on it.
        assert_eq!(
            ends(date(2031, 2, 1), yearly("2031-02-10")),
            date(2031, 2, 10)
        );
        assert_eq!(ends(date(2031, 2, 10), yearly("01-10")), date(2032, 1, 12));
        // A date already passed ends the wait the day it starts.
        assert_eq!(
            ends(date(2026, 12, 1), yearly("2026-11-02")),
            date(2026, 12, 1)
        );
        // 29 February: the next leap year.
        assert_eq!(ends(date(2026, 3, 1), yearly("02-29")), date(2028, 2, 29));
        for bad in ["13-01", "02-30", "1月10日", "2027-02-29", "", "01"] {
            assert!(DateSpec::parse(bad).is_err(), "{bad}");
        }
    }

    fn codes(src: &str) -> Vec<(&'static str, u32)> {
        match Calendar::from_yaml("t", src) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| (d.code, d.line)).collect(),
        }
    }

    #[test]
    fn shipped_calendar_reads() {
        let c = cn();
        assert_eq!(c.id(), "cn-mainland");
        assert_eq!((c.first_year(), c.official_last_year()), (2025, 2026));
        assert_eq!(c.last_year(), 2026 + PROVISIONAL_YEARS);
        assert_eq!(c.provisional_years(), 2027..=2041);
        assert!(c.covers(date(2025, 1, 1)));
        assert!(c.covers(date(2026, 12, 31)));
        assert!(!c.is_provisional(date(2026, 12, 31)));
        assert!(c.covers(date(2027, 1, 1)));
        assert!(c.is_provisional(date(2027, 1, 1)));
        assert!(c.is_provisional(date(2041, 12, 31)));
        assert!(!c.covers(date(2024, 12, 31)));
        assert!(!c.is_provisional(date(2024, 12, 31)));
        assert!(!c.covers(date(2042, 1, 1)));
        assert!(!c.is_provisional(date(2042, 1, 1)));
        assert_eq!(c.official_last_day(), date(2026, 12, 31));
        assert_eq!(c.last_day(), date(2041, 12, 31));
    }

    #[test]
    fn workdays_and_holidays() {
        let c = cn();
        let w = |y, m, d| c.is_workday(date(y, m, d)).expect("covered");
        assert!(w(2026, 1, 4), "Sunday make-up day for 元旦");
        assert!(!w(2026, 10, 1));
        assert!(!w(2026, 1, 1));
        assert!(!w(2026, 1, 2), "Friday inside 元旦");
        assert!(w(2026, 2, 14), "Saturday make-up day before 春节");
        assert!(w(2026, 2, 28));
        assert!(!w(2026, 2, 23), "Monday inside 春节");
        assert!(w(2025, 1, 26));
        assert!(w(2025, 2, 8));
        assert!(w(2025, 4, 27));
        assert!(w(2025, 9, 28));
        assert!(w(2025, 10, 11));
        assert!(!w(2025, 10, 8));
        assert!(w(2025, 10, 9));
        assert!(!w(2025, 6, 2));
        assert!(w(2026, 5, 9));
        assert!(w(2026, 9, 20));
        assert!(w(2026, 10, 10));
        assert!(!w(2026, 9, 25), "Friday 中秋");
        assert!(!w(2026, 6, 19), "Friday 端午");
        assert!(!w(2026, 4, 6), "Monday 清明");
        assert!(!w(2026, 3, 7), "ordinary Saturday");
        assert!(w(2026, 3, 9), "ordinary Monday");
        assert_eq!(c.holiday(date(2025, 10, 6)), Ok(Some("国庆节、中秋节")));
        assert_eq!(c.holiday(date(2026, 2, 16)), Ok(Some("春节")));
        assert_eq!(c.holiday(date(2026, 2, 14)), Ok(None));
    }

    #[test]
    fn adding_working_days() {
        let c = cn();
        let add = |d: Date, n| c.add_working_days(d, n).expect("covered");
        assert_eq!(add(date(2026, 2, 13), 1), date(2026, 2, 14));
        assert_eq!(add(date(2026, 2, 14), 1), date(2026, 2, 24));
        assert_eq!(add(date(2025, 9, 30), 1), date(2025, 10, 9));
        assert_eq!(add(date(2026, 9, 30), 1), date(2026, 10, 8));
        assert_eq!(add(date(2026, 9, 30), 0), date(2026, 9, 30));
        assert_eq!(
            add(date(2026, 10, 3), 0),
            date(2026, 10, 3),
            "n = 0 keeps a holiday"
        );
        // Across New Year: Wed 2025-12-31 → 2026-01-01..03 off, Sun 01-04 worked.
        assert_eq!(add(date(2025, 12, 31), 1), date(2026, 1, 4));
        assert_eq!(add(date(2025, 12, 31), 2), date(2026, 1, 5));
        // 20 working days from a Friday in 2026 (no holiday between).
        assert_eq!(add(date(2026, 3, 6), 20), date(2026, 4, 3));
        // Last official working day, then into the provisional 2027: Fri 01-01 is 元旦.
        assert_eq!(add(date(2026, 12, 30), 1), date(2026, 12, 31));
        assert_eq!(add(date(2026, 12, 31), 1), date(2027, 1, 4));
        // 40 working days from 2026-12-01 (the 受理 stage limit of provincial-major): December
        // has 22 working days left after the 1st, January 2027 20 (元旦 off): 18 more → 01-27.
        assert_eq!(add(date(2026, 12, 1), 40), date(2027, 1, 27));
        // Past the provisional years.
        assert!(matches!(
            c.add_working_days(date(2041, 12, 31), 1),
            Err(CalendarError::OutOfRange { date: d, .. }) if d == date(2042, 1, 1)
        ));
    }

    #[test]
    fn counting_between() {
        let c = cn();
        let n = |a: Date, b: Date| c.working_days_between(a, b).expect("covered");
        assert_eq!(n(date(2025, 9, 30), date(2025, 10, 9)), 1);
        assert_eq!(n(date(2025, 9, 30), date(2025, 10, 8)), 0);
        assert_eq!(n(date(2026, 3, 6), date(2026, 4, 3)), 20);
        assert_eq!(n(date(2026, 4, 3), date(2026, 3, 6)), 0);
        assert_eq!(n(date(2026, 4, 3), date(2026, 4, 3)), 0);
        // Totals by hand: 261 weekdays - 18 (2025) or 19 (2026) weekday holidays + 5 or 6 make-up days.
        assert_eq!(n(date(2025, 1, 1), date(2025, 12, 31)), 248);
        assert_eq!(n(date(2025, 12, 31), date(2026, 12, 31)), 248);
    }

    #[test]
    fn outside_the_years_is_an_error() {
        let c = cn();
        let e = c.is_workday(date(2024, 12, 31)).expect_err("2024");
        assert_eq!(
            e,
            CalendarError::OutOfRange {
                date: date(2024, 12, 31),
                calendar: "cn-mainland".into(),
                first_year: 2025,
                last_year: 2041
            }
        );
        assert!(e.to_string().contains("2024-12-31"), "{e}");
        assert!(e.to_string().contains("2025–2041"), "{e}");
        assert!(c.is_workday(date(2042, 1, 5)).is_err());
        assert!(c.add_working_days(date(2024, 12, 31), 0).is_err());
        assert!(c.add_working_days(date(2041, 12, 1), 40).is_err());
        assert!(
            c.working_days_between(date(2026, 1, 1), date(2042, 1, 2))
                .is_err()
        );
        assert!(c.holiday(date(2042, 10, 1)).is_err());
        // Inside the provisional years every answer is given.
        assert_eq!(c.is_workday(date(2027, 1, 4)), Ok(true));
        assert_eq!(c.holiday(date(2027, 10, 5)), Ok(Some("国庆节")));
    }

    #[test]
    fn local_time_is_utc_plus_8() {
        let ts: Timestamp = "2026-02-13T16:00:00Z".parse().expect("ts");
        assert_eq!(local_date(ts), date(2026, 2, 14));
        let ts: Timestamp = "2026-02-13T15:59:59Z".parse().expect("ts");
        assert_eq!(local_date(ts), date(2026, 2, 13));
        assert_eq!(local_datetime(ts).hour(), 23);
        assert_eq!(
            end_of_day(date(2026, 2, 13)),
            "2026-02-13T16:00:00Z".parse::<Timestamp>().expect("ts")
        );
        assert_eq!(
            start_of_day(date(2026, 2, 13)),
            "2026-02-12T16:00:00Z".parse::<Timestamp>().expect("ts")
        );
        assert_eq!(end_of_day(Date::MAX), Timestamp::MAX);
    }

    #[test]
    fn bad_files_are_located() {
        // Syntax.
        assert_eq!(codes("years: [\n").first().map(|c| c.0), Some("C001"));
        assert_eq!(
            codes("years:\n  - year: 2026\n    holidys: []\n")
                .first()
                .map(|c| c.0),
            Some("C001")
        );
        // No years.
        assert_eq!(codes("years: []\n"), vec![("C009", 1)]);
        // Bad date, twice in one file: both reported.
        let src = "years:\n  - year: 2026\n    holidays:\n      - { name: A, date: 2026-02-30 }\n      - { name: B, from: 2026-13-01, to: 2026-13-02 }\n";
        assert_eq!(codes(src), vec![("C002", 4), ("C002", 5), ("C002", 5)]);
        // Holiday outside its year.
        let src = "years:\n  - year: 2026\n    holidays:\n      - name: 元旦\n        from: 2025-12-31\n        to: 2026-01-01\n";
        assert_eq!(codes(src), vec![("C003", 5)]);
        // Range backwards.
        let src = "years:\n  - year: 2026\n    holidays:\n      - name: X\n        from: 2026-05-05\n        to: 2026-05-01\n";
        assert_eq!(codes(src), vec![("C004", 6)]);
        // Overlap.
        let src = "years:\n  - year: 2026\n    holidays:\n      - { name: A, from: 2026-05-01, to: 2026-05-05 }\n      - { name: B, date: 2026-05-05 }\n";
        assert_eq!(codes(src), vec![("C005", 5)]);
        // Make-up day not a weekend (2026-01-05 is a Monday), outside its year, inside a holiday, twice.
        let src = "years:\n  - year: 2026\n    holidays:\n      - { name: A, from: 2026-10-01, to: 2026-10-07 }\n    workdays:\n      - { date: 2026-01-05 }\n      - { date: 2027-01-02 }\n      - { date: 2026-10-03 }\n      - { date: 2026-10-10 }\n      - { date: 2026-10-10 }\n";
        assert_eq!(
            codes(src),
            vec![("C006", 6), ("C003", 7), ("C007", 8), ("C007", 10)]
        );
        // Years twice, not consecutive, unsupported.
        let src = "years:\n  - year: 2025\n  - year: 2025\n  - year: 2027\n  - year: 99999\n";
        assert_eq!(codes(src), vec![("C008", 3), ("C010", 5), ("C011", 4)]);
        // Holiday with both forms, or none.
        let src = "years:\n  - year: 2026\n    holidays:\n      - { name: A, date: 2026-05-01, from: 2026-05-01 }\n      - { name: B }\n";
        assert_eq!(codes(src), vec![("C012", 4), ("C012", 5)]);
    }

    #[test]
    fn rendering_a_calendar_diagnostic() {
        let src =
            "years:\n  - year: 2026\n    workdays:\n      - { date: 2026-01-05, for: 元旦 }\n";
        let d = Calendar::from_yaml("t", src).expect_err("weekday make-up");
        let text = d[0].render("t.yaml", src);
        assert!(text.starts_with("t.yaml:4:"), "{text}");
        assert!(text.contains("error[C006]"), "{text}");
    }

    #[test]
    fn a_provisional_year_has_between_246_and_252_working_days() {
        let c = cn();
        for y in c.provisional_years() {
            let dec31 = |y| Date::new(y, 12, 31).expect("date");
            let n = c
                .working_days_between(dec31(y - 1), dec31(y))
                .expect("covered");
            assert!((246..=252).contains(&n), "{y}: {n} working days");
            assert!(
                !c.is_workday(Date::new(y, 10, 1).expect("date"))
                    .expect("covered")
            );
            assert!(
                !c.is_workday(Date::new(y, 1, 1).expect("date"))
                    .expect("covered")
            );
        }
    }

    #[test]
    fn the_statutory_days_of_official_years_are_days_off() {
        // 2025 and 2026 were published under the revised statute: each of their statutory days
        // is off in the official arrangement, and the weekday ones are what the provisional rule
        // takes off too (the official notice only bridges further).
        let c = cn();
        for year in [2025, 2026] {
            let law = statutory::statutory_holidays(year).expect("supported");
            let prov = statutory::provisional_holidays(year).expect("supported");
            for h in &law {
                for d in &h.days {
                    assert_eq!(c.is_workday(*d), Ok(false), "{} {d} is off", h.name);
                    assert!(
                        prov.iter().any(|(f, t, _)| f <= d && d <= t),
                        "{} {d} is in the provisional rule",
                        h.name
                    );
                }
            }
            // The provisional year has no more days off on weekdays than the official one.
            let weekday_off = |off: &dyn Fn(Date) -> bool| {
                let mut d = Date::new(year, 1, 1).expect("date");
                let mut k = 0;
                while d.year() == year {
                    if !is_weekend(d) && off(d) {
                        k += 1;
                    }
                    d = d.tomorrow().expect("date");
                }
                k
            };
            let official = weekday_off(&|d| c.is_workday(d) == Ok(false));
            let provisional = weekday_off(&|d| prov.iter().any(|(f, t, _)| *f <= d && d <= *t));
            assert!(
                provisional <= official,
                "{year}: {provisional} > {official}"
            );
        }
    }

    const Y2027: &str = "name: x\nyears:\n  - year: 2027\n    source: 模拟通知\n    holidays:\n      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }\n      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }\n      - { name: 清明节, from: 2027-04-03, to: 2027-04-05 }\n      - { name: 劳动节, from: 2027-05-01, to: 2027-05-05 }\n      - { name: 端午节, date: 2027-06-09 }\n      - { name: 中秋节, date: 2027-09-15 }\n      - { name: 国庆节, from: 2027-10-01, to: 2027-10-07 }\n    workdays:\n      - { date: 2027-02-20, for: 春节 }\n      - { date: 2027-10-09, for: 国庆节 }\n";

    #[test]
    fn a_calendar_writes_back_to_the_same_calendar() {
        let c = cn();
        let again = Calendar::from_yaml("cn-mainland", &c.to_yaml()).expect("reads back");
        assert_eq!(again.official_years(), vec![2025, 2026]);
        assert!(c.diff(&again).is_empty());
        assert_eq!(again.holiday(date(2025, 10, 6)), Ok(Some("国庆节、中秋节")));
        assert_eq!(again.to_yaml(), c.to_yaml());
    }

    #[test]
    fn importing_a_year_merges_it_and_lists_the_days_it_changes() {
        let c = cn();
        let import = Calendar::from_yaml_strict("cn-mainland", Y2027).expect("valid import");
        let merged = Calendar::from_yaml("cn-mainland", &c.merged_yaml(&import)).expect("merged");
        assert_eq!(merged.official_years(), vec![2025, 2026, 2027]);
        assert!(!merged.is_provisional(date(2027, 6, 1)));
        assert!(merged.is_provisional(date(2028, 1, 3)));
        let changes = c.diff(&merged);
        let days: Vec<(Date, bool)> = changes.iter().map(|d| (d.date, d.now_workday)).collect();
        // Provisional 2027: 春节 02-05..02-10, 劳动节 05-01..05-04, 国庆 10-01..10-05. Official:
        // 春节 to 02-12 with Sat 02-20 worked, 劳动节 to 05-05, 国庆 to 10-07 with Sat 10-09
        // worked; 元旦, 清明 and 端午 take no weekday the statute did not already take.
        assert_eq!(
            days,
            vec![
                (date(2027, 2, 11), false),
                (date(2027, 2, 12), false),
                (date(2027, 2, 20), true),
                (date(2027, 5, 5), false),
                (date(2027, 10, 6), false),
                (date(2027, 10, 7), false),
                (date(2027, 10, 9), true),
            ]
        );
        assert!(changes.iter().all(|d| d.was_provisional));
    }

    #[test]
    fn an_import_that_works_a_statutory_day_is_refused_located() {
        // 2027-02-06 (正月初一) is a Saturday: as a make-up working day it breaks the statute.
        let bad = Y2027
            .replace("2027-02-20, for: 春节", "2027-02-06, for: 春节")
            .replace(
                "{ name: 春节, from: 2027-02-05, to: 2027-02-12 }",
                "{ name: 春节, from: 2027-02-08, to: 2027-02-12 }",
            );
        let d = Calendar::from_yaml_strict("cn-mainland", &bad).expect_err("statutory day worked");
        let codes: Vec<(&str, u32)> = d.iter().map(|d| (d.code, d.line)).collect();
        assert_eq!(codes, vec![("C013", 3), ("C013", 3)], "{d:#?}");
        assert!(d[0].message.contains("2027-02-05"), "{}", d[0].message);
        assert!(d[1].message.contains("2027-02-06"), "{}", d[1].message);
        // The lenient reader (files already in use) takes it.
        assert!(Calendar::from_yaml("cn-mainland", &bad).is_ok());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn add_then_count_round_trips(offset in 0i64..730, n in 0u32..200) {
                let c = cn();
                let d = date(2025, 1, 1).checked_add(offset.days()).expect("in range");
                match c.add_working_days(d, n) {
                    Ok(r) => {
                        prop_assert!(r >= d);
                        prop_assert_eq!(c.working_days_between(d, r), Ok(n));
                        if n > 0 {
                            prop_assert_eq!(c.is_workday(r), Ok(true));
                            // No earlier date already has n working days.
                            let before = r.yesterday().expect("in range");
                            prop_assert!(c.working_days_between(d, before).expect("covered") < n);
                        }
                    }
                    Err(e) => prop_assert!(false, "within the provisional years: {e}"),
                }
            }

            #[test]
            fn counting_matches_a_day_by_day_walk(a in 0i64..730, len in 0i64..60) {
                let c = cn();
                let from = date(2025, 1, 1).checked_add(a.days()).expect("in range");
                let to = from.checked_add(len.days()).expect("in range");
                prop_assume!(c.covers(to));
                let mut walk = 0u32;
                let mut d = from;
                while d < to {
                    d = d.tomorrow().expect("in range");
                    if c.is_workday(d).expect("covered") { walk += 1; }
                }
                prop_assert_eq!(c.working_days_between(from, to), Ok(walk));
            }
        }
    }
}
