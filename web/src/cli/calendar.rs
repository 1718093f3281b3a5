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
    /// Import an official arrangement (next year's 放假安排) into the server's database: checked
    /// strictly (every error located, nothing published on error), shown as the days it changes,
    /// published as a new revision with --yes. A running server re-times its open limits on it
    /// within seconds (or at its next start).
    Import {
        /// The arrangement: a calendar file with the `years:` to import.
        file: PathBuf,
        /// The server's database.
        #[arg(long, default_value_t = super::server::default_db())]
        db: String,
        /// The calendar to import into.
        #[arg(long = "id", default_value = "cn-mainland")]
        id: String,
        /// Who publishes it (recorded with the revision).
        #[arg(long, default_value = "cli")]
        by: String,
        /// Publish; without it, only show what would change.
        #[arg(long)]
        yes: bool,
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
            if cal.is_provisional(r) || cal.is_provisional(d) {
                say_provisional(&cal);
            }
        }
        Command::IsWorkday { date, file } => {
            let d = parse_date(&date)?;
            let Some(cal) = load(&file)? else {
                return Ok(ExitCode::from(1));
            };
            let w = cal.is_workday(d)?;
            println!("{}", if w { "workday" } else { "off" });
            if cal.is_provisional(d) {
                say_provisional(&cal);
            }
        }
        Command::Import {
            file,
            db,
            id,
            by,
            yes,
        } => return import(&file, &db, &id, &by, yes),
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer counts a provisional year: said on stderr, so stdout stays the answer alone.
fn say_provisional(cal: &Calendar) {
    let years = cal.provisional_years();
    eprintln!(
        "provisional: {}-{} have no official arrangement yet; computed from {}",
        years.start(),
        years.end(),
        shenpi_engine::calendar::statutory::STATUTE
    );
}

fn import(file: &Path, db: &str, id: &str, by: &str, yes: bool) -> anyhow::Result<ExitCode> {
    use shenpi_adapters::store::Db;
    use shenpi_adapters::store::calendars::Origin;

    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read arrangement {}", file.display()))?;
    let import = match Calendar::from_yaml_strict(id, &source) {
        Ok(c) => c,
        Err(diags) => {
            let name = file.display().to_string();
            for d in &diags {
                eprint!("{}", d.render(&name, &source));
            }
            eprintln!("nothing published: {} problem(s)", diags.len());
            return Ok(ExitCode::from(1));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let db = Db::connect(db).await?;
        let Some(current) = db.latest_calendar(id).await? else {
            bail!(
                "the database has no calendar `{id}` yet: start the server on it once, so the \
                 files under workflows/calendars/ seed it"
            );
        };
        let in_force = Calendar::from_yaml(id, &current.yaml).map_err(|d| {
            anyhow::anyhow!(
                "revision {} in the database does not read: {d:?}",
                current.revision
            )
        })?;
        let merged = in_force.merged_yaml(&import);
        let new = Calendar::from_yaml(id, &merged).map_err(|d| {
            anyhow::anyhow!(
                "the merged calendar does not read: {}",
                d.iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let changes = in_force.diff(&new);
        eprintln!(
            "calendar {id}: revision {} in force; importing {:?}: {} day(s) change",
            current.revision,
            import.official_years(),
            changes.len()
        );
        for c in &changes {
            println!(
                "{}\t{} -> {}{}",
                c.date,
                if c.was_workday { "workday" } else { "off" },
                if c.now_workday { "workday" } else { "off" },
                c.holiday
                    .as_deref()
                    .map(|h| format!("\t{h}"))
                    .unwrap_or_default()
            );
        }
        if !yes {
            eprintln!("dry run: nothing published (add --yes to publish)");
            return Ok(ExitCode::SUCCESS);
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let hash = shenpi_web::server::catalog::yaml_hash(&merged);
        let rev = db
            .publish_calendar(id, &merged, &hash, Origin::Import("cli"), by, now)
            .await?;
        eprintln!(
            "published calendar {id} revision {}; a running server re-times its open limits \
             within seconds, a stopped one at its next start",
            rev.revision
        );
        Ok(ExitCode::SUCCESS)
    })
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
