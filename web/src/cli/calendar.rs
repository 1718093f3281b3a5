//! `shenpi calendar`: working-day arithmetic on a calendar file, for staff checking a deadline by
//! hand and for checking a newly added year of the calendar.
//!
//! Exit codes follow `main`: 0 with the answer alone on stdout; 1 when the calendar file is
//! invalid (its diagnostics on stderr); 2 when the command cannot answer (a malformed date, a date
//! outside the calendar's years, an unreadable file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::civil::Date;
use shenpi_engine::calendar::Calendar;

/// Where the calendar is looked for when `--calendar` is not given, relative to the current
/// directory (the repository or installation root).
pub const DEFAULT_CALENDAR: &str = "workflows/calendars/cn-mainland.yaml";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the date N working days after DATE (YYYY-MM-DD). DATE itself is not counted; the
    /// first working day after it is day 1; N = 0 prints DATE.
    Add {
        /// The start date, YYYY-MM-DD.
        date: String,
        /// How many working days to add.
        n: u32,
        #[command(flatten)]
        file: CalendarFile,
    },
    /// Print `workday` or `off` for DATE (YYYY-MM-DD).
    IsWorkday {
        /// The date, YYYY-MM-DD.
        date: String,
        #[command(flatten)]
        file: CalendarFile,
    },
}

#[derive(clap::Args)]
pub struct CalendarFile {
    /// The calendar file [default: workflows/calendars/cn-mainland.yaml].
    #[arg(long, value_name = "FILE")]
    calendar: Option<PathBuf>,
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Add { date, n, file } => {
            let d = parse_date(&date)?;
            let Some(cal) = load(&file)? else {
                return Ok(ExitCode::from(1));
            };
            let r = cal
                .add_working_days(d, n)
                .with_context(|| format!("cannot add {n} working days to {d}"))?;
            println!("{r}");
        }
        Command::IsWorkday { date, file } => {
            let d = parse_date(&date)?;
            let Some(cal) = load(&file)? else {
                return Ok(ExitCode::from(1));
            };
            let w = cal.is_workday(d)?;
            println!("{}", if w { "workday" } else { "off" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `YYYY-MM-DD` strictly: a date is a deadline's basis, so no lenient guessing.
fn parse_date(text: &str) -> anyhow::Result<Date> {
    let t = text.trim();
    let shaped = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    match t.parse::<Date>() {
        Ok(d) if shaped => Ok(d),
        _ => bail!("`{text}` is not a date: write it as YYYY-MM-DD, e.g. 2026-10-08"),
    }
}

/// Reads and checks the calendar file. `Ok(None)`: the file is invalid and its diagnostics have
/// been printed.
pub fn load(file: &CalendarFile) -> anyhow::Result<Option<Calendar>> {
    let path = file
        .calendar
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CALENDAR));
    load_path(&path)
}

/// Reads and checks a calendar file; its id is the file stem. `Ok(None)`: the file is invalid
/// and its diagnostics have been printed on stderr.
pub fn load_path(path: &Path) -> anyhow::Result<Option<Calendar>> {
    let source = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read calendar file {} (give another with --calendar FILE)",
            path.display()
        )
    })?;
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("calendar");
    match Calendar::from_yaml(id, &source) {
        Ok(c) => Ok(Some(c)),
        Err(diags) => {
            let name = path.display().to_string();
            for d in &diags {
                eprint!("{}", d.render(&name, &source));
            }
            Ok(None)
        }
    }
}
