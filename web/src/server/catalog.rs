//! The catalogue of workflow definitions and calendars a server runs on: the database and the
//! engine machine's registry ([`EngineMachine`], the one place compiled definitions and the
//! calendars in force are kept) seen together.
//!
//! At start every workflow file is loaded and validated (the server refuses to start on an
//! invalid one) and published to the database, which is a no-op when the same text is already
//! the latest version. Definitions are compiled once per (workflow, version) into the registry; a
//! running instance keeps the version it started on, so old versions are compiled on demand from
//! the YAML stored with them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;
use sha2::{Digest, Sha256};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::loader;
use shenpi_adapters::store::{Db, DefinitionStore};
use shenpi_engine::calendar::{Calendar, local_date};
use shenpi_engine::compile::Definition;
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::validate::ValidateContext;

/// Why the catalogue could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Load(#[from] loader::LoadError),
    /// Rendered diagnostics of every invalid file (rustc style).
    #[error("invalid workflows, refusing to start:\n{0}")]
    Invalid(String),
    #[error("calendar {0}: {1}")]
    Calendar(String, String),
    #[error("storage: {0}")]
    Store(#[from] shenpi_adapters::store::StoreError),
}

/// A calendar closer to its last day than this many days is flagged: at start-up, on the
/// dashboard, and by `shenpi_calendar_days_left` for alerting.
pub const RUNWAY_WARN_DAYS: i64 = 60;

/// How far a calendar in use still reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runway {
    pub calendar: String,
    /// The last day of the last official year: later deadlines are computed on provisional
    /// years (暂定, from the statute) until next year's arrangement is imported.
    pub last_day: Date,
    /// The provisional years that follow, `(first, last)`.
    pub provisional: (i16, i16),
    /// Natural days from today to `last_day` (0 on that day, negative after it).
    pub days_left: i64,
}

impl Runway {
    pub fn is_short(&self) -> bool {
        self.days_left < RUNWAY_WARN_DAYS
    }
}

/// Published definitions and the calendars in force.
pub struct Catalog {
    pub dir: PathBuf,
    machine: Arc<EngineMachine>,
}

pub fn yaml_hash(yaml: &str) -> String {
    let d = Sha256::digest(yaml.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// Loads, validates and publishes every workflow under `dir` into the database and the
    /// machine's registry (which holds `dir`'s calendars).
    pub async fn load(
        dir: &Path,
        db: &Db,
        now: i64,
        machine: Arc<EngineMachine>,
    ) -> Result<Catalog, CatalogError> {
        // Against the registry's context: the calendars and templates it read at start.
        let files = loader::load_in(&[dir.to_path_buf()], machine.validate_context())?;
        let mut rendered = String::new();
        for f in &files {
            if let Err(diags) = &f.result {
                let name = f.path.display().to_string();
                for d in diags {
                    rendered.push_str(&d.render(&name, &f.source));
                }
            }
        }
        if !rendered.is_empty() {
            return Err(CatalogError::Invalid(rendered));
        }
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            machine,
        };
        for f in files {
            if let Ok(def) = f.result {
                let row = db
                    .publish(
                        &def.workflow.id.value,
                        &f.source,
                        &yaml_hash(&f.source),
                        now,
                    )
                    .await?;
                let id = def.id().to_string();
                catalog.insert(&id, row.version, def)?;
            }
        }
        Ok(catalog)
    }

    fn insert(
        &self,
        id: &str,
        version: i64,
        def: Definition,
    ) -> Result<Arc<Definition>, CatalogError> {
        self.machine
            .insert(id, version, def)
            .map(|c| c.def.clone())
            .map_err(|e| CatalogError::Calendar(id.to_string(), e))
    }

    /// What validation knows of this server: its calendar and template names.
    pub fn ctx(&self) -> &ValidateContext {
        self.machine.validate_context()
    }

    pub fn calendar(&self, id: &str) -> Option<Arc<Calendar>> {
        self.machine.calendar(id).ok()
    }

    /// The revision the calendar in force is at (0 before the database was consulted).
    pub fn calendar_revision(&self, id: &str) -> Option<i64> {
        self.machine.calendar_revision(id)
    }

    /// The ids of the workflows whose definitions count on calendar `id`.
    pub fn workflows_on(&self, id: &str) -> Vec<String> {
        self.machine.workflows_on(id)
    }

    /// How far each calendar a loaded workflow counts on still reaches, seen from `now`'s date
    /// in China; the shortest first.
    pub fn runways(&self, now: i64) -> Vec<Runway> {
        let today = jiff::Timestamp::from_millisecond(now)
            .map(local_date)
            .unwrap_or(Date::MIN);
        let mut out: Vec<Runway> = self
            .machine
            .calendars()
            .into_iter()
            .filter(|(id, _)| !self.machine.workflows_on(id).is_empty())
            .map(|(id, cal)| {
                let last_day = cal.official_last_day();
                let provisional = (cal.official_last_year() + 1, cal.last_year());
                let days_left = today
                    .until(last_day)
                    .map(|s| i64::from(s.get_days()))
                    .unwrap_or(i64::MAX);
                Runway {
                    calendar: id,
                    last_day,
                    provisional,
                    days_left,
                }
            })
            .collect();
        out.sort_by_key(|r| r.days_left);
        out
    }

    pub fn calendars(&self) -> Vec<(String, Arc<Calendar>)> {
        self.machine.calendars()
    }

    /// Parses, validates and compiles YAML text: the definition, or every diagnostic.
    pub fn check(&self, yaml: &str) -> Result<Definition, Vec<Diagnostic>> {
        self.machine.check(yaml)
    }

    /// Validates and publishes YAML as the next version of its workflow.
    pub async fn publish(
        &self,
        db: &Db,
        yaml: &str,
        now: i64,
    ) -> Result<Result<(String, i64), Vec<Diagnostic>>, shenpi_adapters::store::StoreError> {
        let def = match self.check(yaml) {
            Ok(d) => d,
            Err(diags) => return Ok(Err(diags)),
        };
        let id = def.id().to_string();
        let row = db.publish(&id, yaml, &yaml_hash(yaml), now).await?;
        // `check` validated the calendar's name against the registry: insert cannot refuse it.
        if let Err(e) = self.insert(&id, row.version, def) {
            tracing::error!(workflow = %id, version = row.version, "published but not registered: {e}");
        }
        Ok(Ok((id, row.version)))
    }

    /// The compiled definition of a version, compiling it from its stored YAML on first use.
    pub async fn definition(
        &self,
        db: &Db,
        id: &str,
        version: i64,
    ) -> Result<Option<Arc<Definition>>, shenpi_adapters::store::StoreError> {
        if let Some(c) = self.machine.get(id, version) {
            return Ok(Some(c.def.clone()));
        }
        let Some(row) = db.definition(id, version).await? else {
            return Ok(None);
        };
        match self.check(&row.yaml) {
            Ok(def) => Ok(self.insert(id, version, def).ok()),
            Err(_) => Ok(None),
        }
    }

    /// The latest published version of a workflow.
    pub async fn latest(
        &self,
        db: &Db,
        id: &str,
    ) -> Result<Option<(i64, Arc<Definition>)>, shenpi_adapters::store::StoreError> {
        let Some(row) = db.latest_definition(id).await? else {
            return Ok(None);
        };
        Ok(self
            .definition(db, id, row.version)
            .await?
            .map(|d| (row.version, d)))
    }

    /// Ids of the workflows compiled so far (every shipped one, and any published since start).
    pub fn workflow_ids(&self) -> Vec<String> {
        self.machine.workflow_ids()
    }
}
