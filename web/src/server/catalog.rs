//! The catalogue of workflow definitions and calendars a server runs on.
//!
//! At start every workflow file is loaded and validated (the server refuses to start on an
//! invalid one) and published to the database, which is a no-op when the same text is already
//! the latest version. Definitions are compiled once per (workflow, version) and shared; a running
//! instance keeps the version it started on, so old versions are compiled on demand from the YAML
//! stored with them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use jiff::civil::Date;
use sha2::{Digest, Sha256};
use shenpi_adapters::loader::{self, LoadOptions};
use shenpi_adapters::store::{Db, DefinitionStore};
use shenpi_engine::calendar::{Calendar, local_date};
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::parse::parse_workflow;
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

/// Compiled definitions and calendars.
pub struct Catalog {
    pub dir: PathBuf,
    pub ctx: ValidateContext,
    /// The calendars in force, with the revision each is at ([`Catalog::set_calendar`]).
    calendars: RwLock<HashMap<String, (Arc<Calendar>, i64)>>,
    defs: RwLock<HashMap<(String, i64), Arc<Definition>>>,
}

pub fn yaml_hash(yaml: &str) -> String {
    let d = Sha256::digest(yaml.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn stems(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p.clone())))
        .collect();
    out.sort();
    out
}

impl Catalog {
    /// Loads, validates and publishes every workflow under `dir`; loads its calendars.
    pub async fn load(dir: &Path, db: &Db, now: i64) -> Result<Catalog, CatalogError> {
        let files = loader::load(&[dir.to_path_buf()], &LoadOptions::default())?;
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
        let mut calendars = HashMap::new();
        for (id, path) in stems(&dir.join("calendars"), "yaml") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CatalogError::Calendar(id.clone(), e.to_string()))?;
            let cal = Calendar::from_yaml(&id, &text).map_err(|diags| {
                let name = path.display().to_string();
                CatalogError::Calendar(
                    id.clone(),
                    diags.iter().map(|d| d.render(&name, &text)).collect(),
                )
            })?;
            calendars.insert(id, (Arc::new(cal), 0));
        }
        let ctx = ValidateContext {
            calendars: calendars.keys().cloned().collect(),
            templates: stems(&dir.join("templates"), "hbs")
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        };
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            ctx,
            calendars: RwLock::new(calendars),
            defs: RwLock::new(HashMap::new()),
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
                catalog.insert(&id, row.version, Arc::new(def));
            }
        }
        Ok(catalog)
    }

    fn insert(&self, id: &str, version: i64, def: Arc<Definition>) {
        if let Ok(mut m) = self.defs.write() {
            m.insert((id.to_string(), version), def);
        }
    }

    pub fn calendar(&self, id: &str) -> Option<Arc<Calendar>> {
        self.calendars.read().ok()?.get(id).map(|(c, _)| c.clone())
    }

    /// The revision the calendar in force is at (0 before the database was consulted).
    pub fn calendar_revision(&self, id: &str) -> Option<i64> {
        self.calendars.read().ok()?.get(id).map(|(_, r)| *r)
    }

    /// Puts a calendar revision in force for the views (the engine machine has its own, see
    /// `calendars::put_in_force`, which sets both).
    pub fn set_calendar(&self, cal: Arc<Calendar>, revision: i64) {
        if let Ok(mut m) = self.calendars.write() {
            m.insert(cal.id().to_string(), (cal, revision));
        }
    }

    /// The ids of the workflows whose definitions count on calendar `id`.
    pub fn workflows_on(&self, id: &str) -> Vec<String> {
        let Ok(m) = self.defs.read() else {
            return Vec::new();
        };
        let mut v: Vec<String> = m
            .values()
            .filter(|d| d.workflow.calendar.value == id)
            .map(|d| d.id().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// How far each calendar a loaded workflow counts on still reaches, seen from `now`'s date
    /// in China; the shortest first.
    pub fn runways(&self, now: i64) -> Vec<Runway> {
        let mut used: Vec<String> = match self.defs.read() {
            Ok(m) => m
                .values()
                .map(|d| d.workflow.calendar.value.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        used.sort();
        used.dedup();
        let today = jiff::Timestamp::from_millisecond(now)
            .map(local_date)
            .unwrap_or(Date::MIN);
        let mut out: Vec<Runway> = used
            .into_iter()
            .filter_map(|id| {
                let cal = self.calendar(&id)?;
                let last_day = cal.official_last_day();
                let provisional = (cal.official_last_year() + 1, cal.last_year());
                let days_left = today
                    .until(last_day)
                    .map(|s| i64::from(s.get_days()))
                    .unwrap_or(i64::MAX);
                Some(Runway {
                    calendar: id,
                    last_day,
                    provisional,
                    days_left,
                })
            })
            .collect();
        out.sort_by_key(|r| r.days_left);
        out
    }

    pub fn calendars(&self) -> Vec<(String, Arc<Calendar>)> {
        let Ok(m) = self.calendars.read() else {
            return Vec::new();
        };
        let mut v: Vec<(String, Arc<Calendar>)> =
            m.iter().map(|(k, (c, _))| (k.clone(), c.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Parses, validates and compiles YAML text: the definition, or every diagnostic.
    pub fn check(&self, yaml: &str) -> Result<Definition, Vec<Diagnostic>> {
        let wf = parse_workflow(yaml)?;
        let def = compile(wf, &self.ctx)?;
        if self.calendar(&def.workflow.calendar.value).is_none() {
            return Err(vec![shenpi_engine::validate::UNKNOWN_CALENDAR.at(
                def.workflow.calendar.pos,
                format!("unknown calendar `{}`", def.workflow.calendar.value),
            )]);
        }
        Ok(def)
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
        self.insert(&id, row.version, Arc::new(def));
        Ok(Ok((id, row.version)))
    }

    /// The compiled definition of a version, compiling it from its stored YAML on first use.
    pub async fn definition(
        &self,
        db: &Db,
        id: &str,
        version: i64,
    ) -> Result<Option<Arc<Definition>>, shenpi_adapters::store::StoreError> {
        if let Some(d) = self
            .defs
            .read()
            .ok()
            .and_then(|m| m.get(&(id.to_string(), version)).cloned())
        {
            return Ok(Some(d));
        }
        let Some(row) = db.definition(id, version).await? else {
            return Ok(None);
        };
        match self.check(&row.yaml) {
            Ok(def) => {
                let def = Arc::new(def);
                self.insert(id, version, def.clone());
                Ok(Some(def))
            }
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
        let mut ids: Vec<String> = self
            .defs
            .read()
            .map(|m| m.keys().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }
}
