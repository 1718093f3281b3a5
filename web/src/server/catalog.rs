//! The catalogue of workflow definitions and calendars a server runs on: the database and the
//! engine machine's registry ([`EngineMachine`], the one place compiled definitions and the
//! calendars in force are kept) seen together.
//!
//! The database is the one record of the published versions; the files under `workflows/` seed
//! it. At start every workflow file is loaded and validated (the server refuses to start on an
//! invalid one), and published only when its text is new ([`seed`]): a version published later
//! from the editor or the API is kept, and start-up says so ([`KeptNewer`]) instead of silently
//! undoing it. Every version records its source (the file's path, or the editor/API and the
//! user). Definitions are compiled once per (workflow, version) into the registry; a running
//! instance keeps the version it started on (unless migrated, `shenpi_engine::runtime::migrate`),
//! so old versions are compiled on demand from the YAML stored with them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;
use sha2::{Digest, Sha256};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::loader;
use shenpi_adapters::store::{Db, DefinitionRow, DefinitionStore, Source};
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
    /// The files start-up did not republish, a later version being kept.
    kept: Vec<KeptNewer>,
}

pub fn yaml_hash(yaml: &str) -> String {
    let d = Sha256::digest(yaml.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What starting on a workflow file does with it, given every stored version of its workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// No version has this text: publish the file as the next version.
    Publish,
    /// The latest version is the file's text already.
    Current { version: i64 },
    /// A later version (from the editor or the API) is newer than the file's text, which is
    /// version `file_version`: keep the later one, do not republish the file.
    Newer { file_version: i64 },
}

/// The rule of [`Catalog::load`]: a file is published only when its text differs from the latest
/// version that came from that same file, and is no later version either (a file written back by
/// `shenpi workflows export` is not an edit). `versions` oldest first; `path` inside the folder.
pub fn seed(versions: &[DefinitionRow], path: &str, hash: &str) -> Seed {
    let Some(latest) = versions.last() else {
        return Seed::Publish;
    };
    if latest.hash == hash {
        return Seed::Current {
            version: latest.version,
        };
    }
    let last_from_file = versions.iter().rev().find(|v| v.is_from_file(path, hash));
    if let Some(f) = last_from_file
        && f.hash == hash
    {
        return Seed::Newer {
            file_version: f.version,
        };
    }
    let since = last_from_file.map_or(0, |f| f.version);
    match versions
        .iter()
        .rev()
        .find(|v| v.version > since && v.hash == hash)
    {
        Some(v) => Seed::Newer {
            file_version: v.version,
        },
        None => Seed::Publish,
    }
}

/// What start-up kept instead of a file: a later version from the editor or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptNewer {
    pub workflow: String,
    /// The version kept (the latest).
    pub kept: i64,
    /// Where it came from (`editor`, `api`; `None`: before sources were recorded) and who.
    pub source: Option<String>,
    pub by: Option<String>,
    /// The file, as the server was given it (`workflows/x.yaml`).
    pub file: String,
    /// The version the file's text is.
    pub file_version: i64,
}

impl KeptNewer {
    /// The start-up log line.
    pub fn line(&self) -> String {
        let from = match self.source.as_deref() {
            Some("editor") => "from the editor",
            Some("api") => "from the API",
            Some("file") => "from another file",
            _ => "(published before sources were recorded)",
        };
        format!(
            "workflow {}: v{} {from} is newer than {} (v{}); keeping v{}",
            self.workflow, self.kept, self.file, self.file_version, self.kept
        )
    }

    /// The same for people (the editor page).
    pub fn chinese(&self) -> String {
        let from = match (self.source.as_deref(), &self.by) {
            (Some("editor"), Some(u)) => format!("{u} 在编辑器中发布的"),
            (Some("editor"), None) => "编辑器发布的".to_string(),
            (Some("api"), Some(u)) => format!("{u} 通过接口发布的"),
            (Some("api"), None) => "通过接口发布的".to_string(),
            _ => String::new(),
        };
        format!(
            "服务器启动时：{from} v{} 比文件 {}（v{}）新，保留 v{}，未重新发布该文件。",
            self.kept, self.file, self.file_version, self.kept
        )
    }
}

impl Catalog {
    /// Loads and validates every workflow under `dir`, seeds the database with them (see
    /// [`seed`]), and registers the latest published version of every workflow the database
    /// holds (the files' and those published only from the editor or the API) in the machine's
    /// registry (which holds `dir`'s calendars). The database is the one record of what is
    /// published; the files only seed it.
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
        let mut kept = Vec::new();
        for f in &files {
            let Ok(def) = &f.result else { continue };
            let id = def.id().to_string();
            let path = f
                .path
                .strip_prefix(dir)
                .unwrap_or(&f.path)
                .to_string_lossy()
                .replace('\\', "/");
            let hash = yaml_hash(&f.source);
            let versions = db.definitions_of(&id).await?;
            match seed(&versions, &path, &hash) {
                Seed::Publish => {
                    let row = db
                        .publish(&id, &f.source, &hash, Source::File(&path), now)
                        .await?;
                    tracing::info!(workflow = %id, version = row.version, file = %f.path.display(), "published from its file");
                }
                Seed::Current { .. } => {}
                Seed::Newer { file_version } => {
                    if let Some(latest) = versions.last() {
                        let note = KeptNewer {
                            workflow: id.clone(),
                            kept: latest.version,
                            source: latest.source.clone(),
                            by: latest.published_by.clone(),
                            file: f.path.display().to_string(),
                            file_version,
                        };
                        tracing::warn!("{}", note.line());
                        eprintln!("shenpi: {}", note.line());
                        kept.push(note);
                    }
                }
            }
        }
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            machine,
            kept,
        };
        for id in db.workflow_ids().await? {
            let Some(row) = db.latest_definition(&id).await? else {
                continue;
            };
            match catalog.check(&row.yaml) {
                Ok(def) => {
                    catalog.insert(&id, row.version, def)?;
                }
                // A version published earlier that this server can no longer run (its calendar
                // was removed): said, not fatal; the files' workflows are checked above.
                Err(d) => tracing::warn!(
                    workflow = %id,
                    version = row.version,
                    "the latest published version does not compile here: {} problem(s)",
                    d.len()
                ),
            }
        }
        Ok(catalog)
    }

    /// What start-up kept instead of the files (a later version from the editor or the API).
    pub fn kept_newer(&self, workflow: &str) -> Option<&KeptNewer> {
        self.kept.iter().find(|k| k.workflow == workflow)
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

    /// Validates and publishes YAML as the next version of its workflow, recording where it
    /// came from.
    pub async fn publish(
        &self,
        db: &Db,
        yaml: &str,
        source: Source<'_>,
        now: i64,
    ) -> Result<Result<(String, i64), Vec<Diagnostic>>, shenpi_adapters::store::StoreError> {
        let def = match self.check(yaml) {
            Ok(d) => d,
            Err(diags) => return Ok(Err(diags)),
        };
        let id = def.id().to_string();
        let row = db.publish(&id, yaml, &yaml_hash(yaml), source, now).await?;
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
