//! The shared state of a running server, and how it is built.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shenpi_adapters::bus::{BusOptions, CommandBus};
use shenpi_adapters::machine::Machine as _;
use shenpi_adapters::machine::{Clock, SystemClock};
use shenpi_adapters::outbox::{
    Directory, OutboxOptions, OutboxStats, Templates, spawn_outbox_worker,
};
use shenpi_adapters::store::files::FileStore;
use shenpi_adapters::store::{Db, DefinitionStore, EventStore};
use shenpi_adapters::timers::{
    SchedulerOptions, SchedulerStats, retry_refused_timers, spawn_scheduler,
};
use shenpi_engine::runtime::{Event, InstanceState, replay};

use super::accounts::{Accounts, AuditEntry, User};
use super::catalog::Catalog;
use super::engine::{EngineCtx, EngineMachine, WorkflowDir};
use super::error::{ApiError, ApiResult};
use super::metrics::Metrics;

/// The machine the command bus runs (see `engine.rs` for why it lives here).
pub type EngineBus = CommandBus<EngineMachine>;

pub struct AppState {
    pub db: Db,
    /// Where material files are stored and read (the database, or `--file-dir`).
    pub files: FileStore,
    pub accounts: Accounts,
    pub catalog: Arc<Catalog>,
    pub machine: Arc<EngineMachine>,
    pub bus: EngineBus,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub scheduler: Option<Arc<SchedulerStats>>,
    pub outbox: Option<Arc<OutboxStats>>,
    pub ready: AtomicBool,
    /// Bearer token → user, for a minute, so the hot path does not query per request.
    token_cache: Mutex<HashMap<String, (User, Instant)>>,
    /// Instance → its project (owner and fields never change), for the command path's checks.
    project_cache: Mutex<HashMap<String, Arc<super::accounts::Project>>>,
    /// Set the `Secure` attribute on cookies (behind TLS).
    pub secure_cookies: bool,
    /// Wrong passwords per user name (see `throttle.rs`).
    logins: super::throttle::LoginThrottle,
    /// Where passwords are checked (see `passwords.rs`).
    passwords: super::passwords::Hasher,
    /// Proxy trust and the body deadline (see `security.rs`).
    pub security: super::security::Settings,
    /// A `serve --demo`: the demo-only controls (moving the clock forward) are on.
    pub demo: AtomicBool,
    /// The message templates the outbox renders, for the message centre.
    pub templates: Arc<Templates>,
    /// The address people reach the server at, for absolute links (`--public-url`).
    pub public_url: Mutex<Option<String>>,
    /// The workflows folder the server was started with (its `populations/` for 政策模拟).
    pub workflows_dir: std::path::PathBuf,
    /// How official documents' PDFs are made (the font).
    pub documents: super::documents::Settings,
}

pub type App = Arc<AppState>;

/// What `build` needs.
pub struct Config<'a> {
    pub db: &'a str,
    pub workflows: &'a Path,
    /// Run the timer scheduler and the outbox worker (off in tests that move time by hand).
    pub scheduler: bool,
    /// Where notifications go (webhook / DingTalk / WeCom / e-mail addresses per party).
    pub directory: Directory,
    /// HMAC key of the webhook signature.
    pub webhook_secret: Vec<u8>,
    /// 加签 secret of the DingTalk robots whose directory entry has none.
    pub dingtalk_secret: Option<String>,
    /// The e-mail channel's SMTP server.
    pub smtp: Option<shenpi_adapters::outbox::SmtpConfig>,
    pub clock: Arc<dyn Clock>,
    pub secure_cookies: bool,
    /// How many password checks run at once, and how long a login waits for one.
    pub passwords: super::passwords::Limits,
    pub security: super::security::Settings,
    /// `serve --demo`: notifications without an address go to the log (and the message
    /// centre), and the demo's clock control is on.
    pub demo: bool,
    /// `--public-url`: links in notifications are absolute under it.
    pub public_url: Option<String>,
    /// The font of official documents' PDFs (`--document-font`).
    pub documents: super::documents::Settings,
    /// `--file-dir`: material files go to this directory instead of the database.
    pub file_dir: Option<&'a Path>,
}

impl<'a> Config<'a> {
    /// A server on `db` with the workflows of `workflows` on `clock`, and nothing else: no
    /// scheduler, no notification addresses, plain cookies, the default password pool and
    /// security settings (what an in-process test or a tool starts; `serve` sets every field).
    pub fn new(db: &'a str, workflows: &'a Path, clock: Arc<dyn Clock>) -> Config<'a> {
        Config {
            db,
            workflows,
            scheduler: false,
            directory: Directory::default(),
            webhook_secret: Vec::new(),
            dingtalk_secret: None,
            smtp: None,
            clock,
            secure_cookies: false,
            passwords: Default::default(),
            security: Default::default(),
            demo: false,
            public_url: None,
            documents: Default::default(),
            file_dir: None,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The cause is the error's source, which `{:#}` (the CLI) prints after the colon: saying it
    // here as well printed it twice.
    #[error("database")]
    Store(#[from] shenpi_adapters::store::StoreError),
    /// `--file-dir` cannot be created or written.
    #[error("files directory {dir} (--file-dir)")]
    Files {
        dir: String,
        source: shenpi_adapters::store::StoreError,
    },
    #[error(transparent)]
    Catalog(#[from] super::catalog::CatalogError),
    #[error("server tables")]
    Accounts(#[from] super::accounts::AccountError),
    #[error("{0}")]
    Other(String),
}

/// The outcome of [`AppState::check_login`].
pub enum LoginCheck {
    /// Too many wrong passwords for this name: try again in this many minutes.
    Locked {
        minutes: i64,
    },
    /// Every password worker was taken for longer than a login waits: nothing was checked.
    Busy(super::passwords::Busy),
    Wrong,
    Ok(User),
}

impl AppState {
    /// Connects, migrates, loads and publishes the workflows, starts the command bus, the audit
    /// writer and (optionally) the timer scheduler.
    pub async fn build(cfg: Config<'_>) -> Result<App, StartError> {
        let db = Db::connect(cfg.db).await?;
        let files = match cfg.file_dir {
            None => FileStore::in_database(db.clone()),
            Some(dir) => FileStore::in_directory(db.clone(), dir)
                .await
                .map_err(|source| StartError::Files {
                    dir: dir.display().to_string(),
                    source,
                })?,
        };
        let accounts = Accounts::new(&db);
        let now = cfg.clock.now();
        // The calendar files and template names, read once for the registry, the workflows'
        // validation and the seeding below.
        let folder =
            WorkflowDir::read(cfg.workflows).map_err(|e| StartError::Other(e.to_string()))?;
        let machine = Arc::new(EngineMachine::from_files(&folder));
        let catalog = Arc::new(Catalog::load(cfg.workflows, &db, now, machine.clone()).await?);
        // Calendars are data: the files seed the database, the newest revision is in force.
        for note in super::calendars::seed(&db, &folder.calendars, &machine, now)
            .await
            .map_err(StartError::Other)?
        {
            eprintln!("shenpi: {note}");
        }
        let bus = CommandBus::start(
            machine.clone(),
            db.clone(),
            cfg.clock.clone(),
            BusOptions::default(),
        );
        // The calendars and definitions were just (re)loaded: a timer refused on the ones
        // before may fire now.
        retry_refused_timers(&bus, &db).await?;
        let templates = Arc::new(
            Templates::from_dir(&cfg.workflows.join("templates"))
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        let (scheduler, outbox) = if cfg.scheduler {
            let (_handle, stats) = spawn_scheduler(
                bus.clone(),
                db.clone(),
                cfg.clock.clone(),
                SchedulerOptions::default(),
            );
            tokio::spawn(report_loop(db.clone(), machine.clone(), cfg.clock.clone()));
            let (_handle, ostats) = spawn_outbox_worker(
                db.clone(),
                templates.clone(),
                Arc::new(cfg.directory),
                cfg.clock.clone(),
                OutboxOptions {
                    webhook_secret: cfg.webhook_secret,
                    dingtalk_secret: cfg.dingtalk_secret,
                    smtp: cfg.smtp,
                    public_url: cfg.public_url.clone(),
                    unaddressed_to_log: cfg.demo,
                    ..OutboxOptions::default()
                },
                Some(bus.outbox_queued.clone()),
            )
            .map_err(StartError::Other)?;
            (Some(stats), Some(ostats))
        } else {
            (None, None)
        };
        let passwords = super::passwords::Hasher::new(cfg.passwords)
            .map_err(|e| StartError::Other(e.to_string()))?;
        let app = Arc::new(AppState {
            db,
            files,
            accounts,
            catalog,
            machine,
            bus,
            clock: cfg.clock,
            metrics: Metrics::default(),
            scheduler,
            outbox,
            ready: AtomicBool::new(true),
            token_cache: Mutex::new(HashMap::new()),
            project_cache: Mutex::new(HashMap::new()),
            secure_cookies: cfg.secure_cookies,
            logins: Default::default(),
            passwords,
            security: cfg.security,
            demo: AtomicBool::new(cfg.demo),
            templates,
            public_url: Mutex::new(cfg.public_url),
            workflows_dir: cfg.workflows.to_path_buf(),
            documents: cfg.documents,
        });
        // Re-time on revisions not yet re-timed (a crash in the middle, another node's import,
        // the CLI), now and every few seconds.
        super::calendars::retime_pending(&app)
            .await
            .map_err(StartError::Other)?;
        if app.scheduler.is_some() {
            tokio::spawn(super::calendars::watch(app.clone()));
        }
        // Official documents: issued after each commit that calls for one, and swept for at
        // start and periodically (documents/issue.rs), with or without the scheduler.
        tokio::spawn(super::documents::issue::run(app.clone()));
        Ok(app)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Lets every timer whose firing the engine refused be tried again now: call it after
    /// anything that may let them fire (a definition published, a calendar revision). A failure
    /// is logged, not returned: the refused timers are still retried at their retry time.
    pub async fn retry_refused_timers(&self) {
        if let Err(e) = retry_refused_timers(&self.bus, &self.db).await {
            tracing::warn!("could not release the refused timers for a retry: {e}");
        }
    }

    /// Checks a password login for the API and the login form alike: a locked name is refused
    /// without looking at the password; every attempt is counted before its hash is computed
    /// (`throttle.rs` says why), a right one clears the count, a wrong one stays counted and
    /// adds to `shenpi_logins_failed_total`; one the password workers had no time for is given
    /// back and refused as busy.
    pub async fn check_login(
        &self,
        name: &str,
        password: &str,
    ) -> super::accounts::Result<LoginCheck> {
        if let Err(left) = self.logins.reserve(name, self.now()) {
            return Ok(LoginCheck::Locked {
                minutes: super::throttle::minutes(left),
            });
        }
        let (user, stored) = match self.accounts.user_with_hash(name).await {
            Ok(Some((user, stored))) => (Some(user), stored),
            Ok(None) => (None, None),
            Err(e) => {
                self.logins.release(name);
                return Err(e);
            }
        };
        match (
            self.passwords.verify(password, stored.as_deref()).await,
            user,
        ) {
            (Err(busy), _) => {
                self.logins.release(name);
                Ok(LoginCheck::Busy(busy))
            }
            (Ok(true), Some(user)) => {
                self.logins.succeeded(name);
                Ok(LoginCheck::Ok(user))
            }
            (Ok(_), _) => {
                self.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
                Ok(LoginCheck::Wrong)
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub async fn user_for_token(&self, token: &str) -> ApiResult<Option<User>> {
        if let Ok(m) = self.token_cache.lock()
            && let Some((u, at)) = m.get(token)
            && at.elapsed() < Duration::from_secs(60)
        {
            return Ok(Some(u.clone()));
        }
        let user = self
            .accounts
            .token_user(token)
            .await
            .map_err(ApiError::internal)?;
        if let (Some(u), Ok(mut m)) = (&user, self.token_cache.lock()) {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(token.to_string(), (u.clone(), Instant::now()));
        }
        Ok(user)
    }

    /// The project an instance runs for, cached (for authorisation on the command path).
    pub async fn project_of(
        &self,
        instance: &str,
    ) -> ApiResult<Option<Arc<super::accounts::Project>>> {
        if let Some(p) = self
            .project_cache
            .lock()
            .ok()
            .and_then(|m| m.get(instance).cloned())
        {
            return Ok(Some(p));
        }
        let p = self
            .accounts
            .project_of(instance)
            .await
            .map_err(ApiError::internal)?
            .map(Arc::new);
        if let (Some(p), Ok(mut m)) = (&p, self.project_cache.lock()) {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(instance.to_string(), p.clone());
        }
        Ok(p)
    }

    /// Writes an entry of the audit trail at once (awaited: an action acknowledged to its caller
    /// has its entry). A command's entry is the command bus's to write, in the command's own
    /// transaction (`commands::record`); this serves the other actions (publishing, calendars,
    /// migrations, registering a project) and commands the bus never committed.
    pub async fn audit(
        &self,
        user: &str,
        remote: Option<String>,
        action: &str,
        instance: Option<&str>,
        outcome: &str,
    ) {
        let id = super::accounts::random_hex(12).unwrap_or_default();
        let entry = AuditEntry {
            at: self.now(),
            user: user.to_string(),
            remote,
            action: action.to_string(),
            instance: instance.map(str::to_string),
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.accounts.write_audit(&[(id, entry)]).await {
            tracing::warn!("audit entry for {user} {action} not written: {e}");
        }
    }

    /// An instance's state (folded from its events), with its definition context.
    pub async fn instance(
        &self,
        id: &str,
    ) -> ApiResult<
        Option<(
            shenpi_adapters::store::InstanceRow,
            InstanceState,
            Vec<(i64, i64, Event)>,
            Arc<EngineCtx>,
        )>,
    > {
        let Some((row, events)) = self.db.load(id, 0).await? else {
            return Ok(None);
        };
        let mut parsed = Vec::with_capacity(events.len());
        for e in &events {
            let ev =
                shenpi_engine::runtime::event::decode_event(e.format, &e.body).map_err(|err| {
                    ApiError::internal(format!("event {}#{}: {err}", e.instance, e.seq))
                })?;
            parsed.push((e.seq, e.recorded_at, ev));
        }
        let state = replay(parsed.iter().map(|(_, _, e)| e));
        let ctx = self
            .context(&row.meta.workflow_id, row.meta.def_version)
            .await?;
        Ok(Some((row, state, parsed, ctx)))
    }

    /// The definition context of a version, compiling it if needed.
    pub async fn context(&self, workflow: &str, version: i64) -> ApiResult<Arc<EngineCtx>> {
        let meta = shenpi_adapters::store::InstanceMeta {
            id: String::new(),
            workflow_id: workflow.to_string(),
            def_version: version,
            project: serde_json::Value::Null,
        };
        if let Some(c) = self.machine.context(&meta) {
            return Ok(c);
        }
        let row = self
            .db
            .definition(workflow, version)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("没有流程「{workflow}」的第 {version} 版。"))
                    .in_english(format!("no definition {workflow}@{version}"))
            })?;
        self.machine.register(&row).map_err(ApiError::internal)?;
        self.machine
            .context(&meta)
            .ok_or_else(|| ApiError::internal("definition did not register"))
    }
}

/// The system clock, for `serve`.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Wall-clock time shifted to start at a chosen instant (`serve --clock-start`): demos and
/// browser tests run on a fixed date of the shipped calendar, while time still passes. Its
/// offset only grows: [`Clock::advance`] moves it forward (the demo's clock control), and
/// [`OffsetClock::at_least`] raises it to a stored one (a restarted demo goes on from where it
/// was, never back).
pub struct OffsetClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn starting_at(start_ms: i64) -> OffsetClock {
        OffsetClock {
            offset_ms: std::sync::atomic::AtomicI64::new(start_ms - SystemClock.now()),
        }
    }

    /// How far ahead of the wall clock it runs (ms), to store.
    pub fn offset(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// Raises the offset to `offset` if that is further ahead; answers the offset in force.
    pub fn at_least(&self, offset: i64) -> i64 {
        self.offset_ms
            .fetch_max(offset, Ordering::SeqCst)
            .max(offset)
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.offset_ms.load(Ordering::SeqCst)
    }

    fn advance(&self, by: i64) -> Option<i64> {
        if by < 0 {
            return None;
        }
        self.offset_ms.fetch_add(by, Ordering::SeqCst);
        Some(self.now())
    }
}

/// Runs the cron reports of the latest published versions every 30 s (see
/// `shenpi_adapters::reports`; `report_runs` makes each slot run once across nodes).
/// The latest published version of every workflow in the registry, compiled (for reports).
pub async fn latest_contexts(db: &Db, machine: &EngineMachine) -> Vec<Arc<EngineCtx>> {
    let mut defs = Vec::new();
    for id in machine.workflow_ids() {
        let Ok(Some(row)) = db.latest_definition(&id).await else {
            continue;
        };
        if machine.get(&row.workflow_id, row.version).is_none()
            && let Err(e) = machine.register(&row)
        {
            tracing::warn!(workflow = %id, version = row.version, "cannot compile: {e}");
            continue;
        }
        defs.extend(machine.get(&row.workflow_id, row.version));
    }
    defs
}

async fn report_loop(db: Db, machine: Arc<EngineMachine>, clock: Arc<dyn Clock>) {
    use shenpi_adapters::reports::{ReportOptions, run_due_reports};
    let opts = ReportOptions::default();
    loop {
        // Read each pass: a workflow published since start reports too.
        let defs = latest_contexts(&db, &machine).await;
        if let Err(e) = run_due_reports(&db, &defs, clock.now(), &opts).await {
            tracing::warn!("reports: {e}");
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
