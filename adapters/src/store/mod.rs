//! Storage: the seam between the durable runtime and its database.
//!
//! [`Store`] is what the command path, the timer scheduler, the outbox worker and the reports need
//! from a database, and nothing more. Two implementations pass one conformance suite
//! (`tests/tests/durable_store.rs`): [`sqlite::SqliteStore`] (the embedded default, a file in WAL
//! mode with `synchronous=FULL`) and [`postgres::PgStore`] (several nodes on one server). [`Db`]
//! picks one from a URL.
//!
//! Everything the engine produces arrives here already serialised (events as JSON text, timer
//! kinds and notification payloads as JSON), so this module does not depend on the engine's types;
//! [`crate::machine`] does the translation. Times are milliseconds since the Unix epoch (UTC), the
//! same integer on both backends, so ordering and indexing behave the same.
//!
//! **Invariant:** [`Store::commit`] writes a whole [`Batch`] (events, instance versions, timers,
//! outbox rows, projections, idempotency keys) in one transaction, or nothing. A stale instance
//! version, an idempotency key recorded meanwhile, or a timer fired meanwhile is a
//! [`StoreError::Conflict`] and the caller retries with fresh state.

pub mod calendars;
pub mod chain;
mod dialect;
pub mod documents;
pub mod files;
mod migrations;
pub mod postgres;
pub mod sql;
pub mod sqlite;
mod sqlite_commit;
pub mod version_migrations;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first (instance version, idempotency key or timer); retry with
    /// fresh state.
    #[error("concurrent update, retry: {0}")]
    Conflict(String),
    /// The database URL is neither `sqlite:` nor `postgres://`.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// An error of the SQLite commit connection (see `sqlite_commit`).
    #[error("database error: {0}")]
    Native(String),
    /// A row held something this version cannot read (e.g. invalid JSON written by hand).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The content of a file to store could not be read whole (`files::put_file`).
    #[error("file content: {0}")]
    Content(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // A unique violation inside a commit means someone else wrote the same key first.
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return StoreError::Conflict(d.message().to_string());
        }
        StoreError::Db(e)
    }
}

impl StoreError {
    /// Whether the database could not be reached (refused, timed out, the connection lost or
    /// the server shutting down), as opposed to a statement that failed: the request may
    /// succeed later unchanged, so the server answers 503 with `Retry-After`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => db_unavailable(e),
            _ => false,
        }
    }
}

/// How long a request waits for a PostgreSQL connection before the database counts as
/// unavailable ([`StoreError::is_unavailable`]): far above a healthy pool's wait, short enough
/// that a person sees "try later" at once during an outage.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`StoreError::is_unavailable`] for an error of the database driver.
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server shutting down or
        // not accepting connections yet), 53300 (too many connections).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub use documents::DocumentStore;

/// A published workflow version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionRow {
    pub workflow_id: String,
    pub version: i64,
    pub yaml: String,
    pub hash: String,
    pub published_at: Millis,
    /// Where the version came from: `file`, `editor` or `api` (`None` for versions published
    /// before sources were recorded).
    #[serde(default)]
    pub source: Option<String>,
    /// For a file: its path inside the workflows folder.
    #[serde(default)]
    pub source_path: Option<String>,
    /// For the editor and the API: who published it.
    #[serde(default)]
    pub published_by: Option<String>,
}

/// Where a published version comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A file of the workflows folder, by its path inside the folder (`provincial-major.yaml`).
    File(&'a str),
    /// The web editor, by this user.
    Editor(&'a str),
    /// The API (`POST /api/definitions`), by this user.
    Api(&'a str),
}

impl<'a> Source<'a> {
    /// `(source, source_path, published_by)` as stored.
    pub fn columns(self) -> (&'static str, Option<&'a str>, Option<&'a str>) {
        match self {
            Source::File(p) => ("file", Some(p), None),
            Source::Editor(u) => ("editor", None, Some(u)),
            Source::Api(u) => ("api", None, Some(u)),
        }
    }
}

impl DefinitionRow {
    /// Whether this version was published from the file at `path` (inside the workflows
    /// folder). A version stored before sources were recorded counts as the file's when its
    /// text is the file's.
    pub fn is_from_file(&self, path: &str, hash: &str) -> bool {
        match self.source.as_deref() {
            Some("file") => self.source_path.as_deref() == Some(path),
            None => self.hash == hash,
            _ => false,
        }
    }
}

/// What identifies an instance besides its events: the definition version it runs on and its
/// project record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceMeta {
    pub id: String,
    pub workflow_id: String,
    pub def_version: i64,
    /// The project record (JSON object).
    pub project: serde_json::Value,
}

/// An instance row as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    pub meta: InstanceMeta,
    /// Number of events recorded.
    pub version: i64,
    pub status: String,
    pub stage: Option<String>,
    pub channel: Option<String>,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub instance: String,
    /// 1-based position in the instance's log.
    pub seq: i64,
    /// The event's type name (for queries and audit views without parsing the body).
    pub kind: String,
    /// The event, as JSON text.
    pub body: String,
    pub recorded_at: Millis,
    /// The format `body` was written in (for the engine's events, `engine::runtime::EVENT_FORMAT`
    /// of the version that wrote it), so that a later version reads it through its upcasters.
    pub format: u32,
}

/// A timer armed by an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRow {
    pub instance: String,
    pub timer_id: String,
    pub due: Millis,
    /// The engine's timer kind, as JSON text.
    pub kind: String,
}

/// A timer claimed by this node, to be fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedTimer {
    pub timer: TimerRow,
    pub lease_until: Millis,
}

/// A timer whose firing the machine refused, to be written back open (see [`Batch::timers_refused`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRefusal {
    pub instance: String,
    pub timer_id: String,
    /// The rejection's stable code (`outside_calendar`, `internal` ...).
    pub code: String,
    pub message: String,
    /// When `decide` refused it.
    pub refused_at: Millis,
    /// Until when the scheduler leaves it alone (unless [`TimerStore::retry_refused_timers`]
    /// lets it go sooner).
    pub retry_at: Millis,
}

/// An open timer whose last firing the machine refused, as read back for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedTimer {
    pub timer: TimerRow,
    pub code: String,
    pub message: String,
    pub refused_at: Millis,
    /// When the scheduler tries it again; `None` once released for a retry (it is tried as soon
    /// as a node claims it).
    pub retry_at: Option<Millis>,
    /// The instance's project record (`null` if the instance row is missing).
    pub project: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    Pending,
    Claimed,
    Fired,
    Cancelled,
}

impl TimerState {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerState::Pending => "pending",
            TimerState::Claimed => "claimed",
            TimerState::Fired => "fired",
            TimerState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TimerState> {
        Some(match s {
            "pending" => TimerState::Pending,
            "claimed" => TimerState::Claimed,
            "fired" => TimerState::Fired,
            "cancelled" => TimerState::Cancelled,
            _ => return None,
        })
    }
}

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// Deterministic (derived from the event that caused it), so a retried commit cannot
    /// enqueue the same message twice.
    pub id: String,
    pub instance: Option<String>,
    /// `log`, `webhook`, `dingtalk`, `wecom`, `email`.
    pub channel: String,
    /// A URL, an address or a user name, depending on the channel.
    pub recipient: String,
    /// Template name in `workflows/templates/` (without `.hbs`).
    pub template: String,
    /// Template variables (JSON object).
    pub payload: serde_json::Value,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
}

/// An outbox row as read back for delivery or inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub row: OutboxRow,
    /// `pending`, `sending`, `delivered`, `dead`.
    pub state: String,
    pub tries: i64,
    pub last_error: Option<String>,
}

/// An open task, as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRow {
    pub instance: String,
    pub task_id: String,
    pub workflow_id: String,
    pub node: String,
    pub stage: Option<String>,
    /// Whom the task is addressed to before delegates (its claimer, else its assignment):
    /// `user:NAME`, `role:ID` or `dept:ID`; what the inbox shows as 办理人.
    pub assignee: Option<String>,
    /// Everyone the task is addressed to, as parties like `assignee`: `engine::runtime::policy::
    /// addressees` (the assignee, then each delegate). An inbox shows the row to whoever is one
    /// of them, so a delegated task reaches its delegates and its own addressee alike.
    #[serde(default)]
    pub addressees: Vec<String>,
    pub department: Option<String>,
    /// `green`, `yellow`, `red`.
    pub colour: String,
    pub due: Option<Millis>,
    /// Higher sorts first (green-channel instances are raised).
    pub priority: i32,
    /// On a leader's 挂牌督办 list.
    pub supervised: bool,
    pub opened_at: Millis,
}

/// A 容缺 commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseRow {
    pub instance: String,
    pub promise_id: String,
    pub material: String,
    /// `open`, `supplied`, `verified`, `breached`.
    pub state: String,
    pub colour: String,
    pub due: Option<Millis>,
}

/// An element attached to (or owed by) a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementRow {
    pub instance: String,
    pub stage: String,
    pub element: String,
    pub department: Option<String>,
    /// `missing`, `attached`, `carried`.
    pub state: String,
    pub due: Option<Millis>,
}

/// The read models of one instance after a command, replacing what was stored for it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Projection {
    pub status: String,
    pub stage: Option<String>,
    pub channel: Option<String>,
    pub tasks: Vec<InboxRow>,
    pub promises: Vec<PromiseRow>,
    pub elements: Vec<ElementRow>,
}

/// The new state of one instance touched by a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceWrite {
    pub meta: InstanceMeta,
    /// The version read before the batch (0 for a new instance); the commit fails with
    /// [`StoreError::Conflict`] if the stored one differs.
    pub from_version: i64,
    pub to_version: i64,
    pub projection: Projection,
    /// The read models as last written for this instance, when the writer knows them (it keeps
    /// them with the cached state): the store then writes only the rows that changed. `None`
    /// replaces all of the instance's rows.
    pub written: Option<Arc<Projection>>,
}

/// What a commit must do to an instance's read-model rows (see [`InstanceWrite::written`]).
/// Approving one task of a five-department parallel step deletes one inbox row instead of
/// rewriting five, each with its three indexes: that is most of the write volume saved.
#[derive(Debug, Default)]
pub struct RowChanges<'a> {
    /// Delete every inbox row of the instance first.
    pub clear_tasks: bool,
    /// Inbox rows to delete, by task id.
    pub tasks_deleted: Vec<&'a str>,
    pub tasks_inserted: Vec<&'a InboxRow>,
    /// Replace all the instance's promise rows with the projection's.
    pub replace_promises: bool,
    pub replace_elements: bool,
}

impl InstanceWrite {
    pub fn row_changes(&self) -> RowChanges<'_> {
        let new = &self.projection;
        let Some(old) = self.written.as_deref() else {
            return RowChanges {
                clear_tasks: self.from_version > 0,
                tasks_deleted: Vec::new(),
                tasks_inserted: new.tasks.iter().collect(),
                replace_promises: true,
                replace_elements: true,
            };
        };
        let same = |a: &InboxRow, b: &InboxRow| a == b;
        RowChanges {
            clear_tasks: false,
            tasks_deleted: old
                .tasks
                .iter()
                .filter(|o| !new.tasks.iter().any(|n| same(n, o)))
                .map(|o| o.task_id.as_str())
                .collect(),
            tasks_inserted: new
                .tasks
                .iter()
                .filter(|n| !old.tasks.iter().any(|o| same(n, o)))
                .collect(),
            replace_promises: old.promises != new.promises,
            replace_elements: old.elements != new.elements,
        }
    }
}

/// An idempotency key and the result it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub key: String,
    pub instance: String,
    /// JSON text.
    pub result: String,
    /// A digest of the request the key was first used with (instance and command); `None` for
    /// a key stored before keys were bound to their request.
    pub request: Option<String>,
}

/// A project registered together with its first instance (`web_projects`): written in the
/// transaction that starts the instance, so applying leaves no project without its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub workflow_id: String,
    pub owner: String,
    /// The field values, JSON text.
    pub fields: String,
    pub created_at: Millis,
}

/// Which project an instance was started on (`web_project_instances`), written with the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectLink {
    pub instance: String,
    pub project_id: String,
    pub workflow_id: String,
    pub def_version: i64,
    pub created_at: Millis,
}

/// One entry of the audit trail (`web_audit`): who did what, when, from where, and how it ended.
/// The command bus writes a command's entry in the command's own transaction, so an
/// acknowledged command always has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    pub at: Millis,
    pub user: String,
    pub remote: Option<String>,
    pub action: String,
    pub instance: Option<String>,
    /// `ok`, `replayed`, or the refusal's code.
    pub outcome: String,
}

/// Everything one group commit writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub now: Millis,
    pub instances: Vec<InstanceWrite>,
    pub events: Vec<EventRow>,
    pub timers_armed: Vec<TimerRow>,
    /// (instance, timer id)
    pub timers_cancelled: Vec<(String, String)>,
    /// (instance, timer id): must still be pending or claimed, and become fired.
    pub timers_fired: Vec<(String, String)>,
    /// Timers whose firing the machine refused: must still be pending or claimed, and go back to
    /// pending with the refusal recorded, held back until their retry time. Never marked fired:
    /// a refused firing did nothing, so its warnings and escalations are still owed.
    pub timers_refused: Vec<TimerRefusal>,
    /// (instance, timer id, due): timers the instance's own state says are not due until `due`
    /// (the clock moved back, or the row is behind the state): must still be pending or claimed,
    /// and go back to pending at that due, any earlier refusal cleared (it was not refused).
    pub timers_postponed: Vec<(String, String, Millis)>,
    pub outbox: Vec<OutboxRow>,
    pub idempotency: Vec<IdempotencyRow>,
    /// The audit entries of the batch's commands.
    pub audit: Vec<AuditRow>,
    /// Projects registered with the instances this batch starts, and the starts' links.
    pub projects: Vec<ProjectRow>,
    pub project_links: Vec<ProjectLink>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
            && self.events.is_empty()
            && self.timers_armed.is_empty()
            && self.timers_cancelled.is_empty()
            && self.timers_fired.is_empty()
            && self.timers_refused.is_empty()
            && self.timers_postponed.is_empty()
            && self.outbox.is_empty()
            && self.idempotency.is_empty()
            && self.audit.is_empty()
            && self.projects.is_empty()
            && self.project_links.is_empty()
    }
}

/// Counts for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dashboard {
    /// (colour, open tasks)
    pub by_colour: Vec<(String, i64)>,
    /// (stage, open tasks)
    pub by_stage: Vec<(String, i64)>,
    /// (department, open tasks)
    pub by_department: Vec<(String, i64)>,
    /// (instance status, instances)
    pub by_status: Vec<(String, i64)>,
    pub supervised: i64,
}

/// Published definitions.
pub trait DefinitionStore {
    /// Stores a new version of a workflow (the next number) unless the same text (hash) is already
    /// the latest version, in which case that version is returned.
    fn publish(
        &self,
        workflow_id: &str,
        yaml: &str,
        hash: &str,
        source: Source<'_>,
        now: Millis,
    ) -> impl Future<Output = Result<DefinitionRow>> + Send;
    /// Every version of a workflow, oldest first.
    fn definitions_of(
        &self,
        workflow_id: &str,
    ) -> impl Future<Output = Result<Vec<DefinitionRow>>> + Send;
    /// The ids of every workflow with a published version.
    fn workflow_ids(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn definition(
        &self,
        workflow_id: &str,
        version: i64,
    ) -> impl Future<Output = Result<Option<DefinitionRow>>> + Send;
    fn latest_definition(
        &self,
        workflow_id: &str,
    ) -> impl Future<Output = Result<Option<DefinitionRow>>> + Send;
}

/// The event log and the transaction that extends it.
pub trait EventStore {
    /// The instance row and its events after `after_seq`, in order.
    fn load(
        &self,
        instance: &str,
        after_seq: i64,
    ) -> impl Future<Output = Result<Option<(InstanceRow, Vec<EventRow>)>>> + Send;
    /// Results recorded for these idempotency keys.
    fn lookup_keys(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<IdempotencyRow>>> + Send;
    /// States of these timers ((instance, timer id)); absent ones are left out.
    fn timer_states(
        &self,
        timers: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<(String, String, TimerState)>>> + Send;
    /// Writes the whole batch in one transaction, or nothing.
    fn commit(&self, batch: &Batch) -> impl Future<Output = Result<()>> + Send;
    /// [`EventStore::commit`] for a caller done with the batch: a store that writes on another
    /// thread takes it as it is instead of copying it.
    fn commit_owned(&self, batch: Batch) -> impl Future<Output = Result<()>> + Send;
    /// Number of events of an instance with the same (instance, seq): always 0 or 1; for tests.
    fn count_events(&self, instance: Option<&str>) -> impl Future<Output = Result<i64>> + Send;
}

/// Due timers, claimed with a lease so that a dead node's claims pass to others.
pub trait TimerStore {
    /// Claims up to `limit` timers due at `now` (pending, or claimed with an expired lease).
    fn claim_due(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedTimer>>> + Send;
    /// The earliest due time of a claimable open timer (held refused ones left out).
    fn next_due(&self) -> impl Future<Output = Result<Option<Millis>>> + Send;
    /// Counts of timers per state: `pending`, `claimed`, `fired`, `cancelled`, and `refused`
    /// for the open timers whose last firing the machine refused (counted there only, not as
    /// pending or claimed). States with no timer are left out.
    fn timer_counts(&self) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
    /// Open timers whose last firing the machine refused, oldest refusal first.
    fn refused_timers(&self, limit: i64) -> impl Future<Output = Result<Vec<RefusedTimer>>> + Send;
    /// Lets the scheduler try again, as soon as they are due, the refused timers held until
    /// `retry_by` or earlier: the scheduler's slow backoff passes its clock, a calendar or
    /// definition revision that may let them fire passes `Millis::MAX` (all of them). The
    /// refusal stays recorded until the timer fires or is refused again. Returns how many.
    fn retry_refused_timers(&self, retry_by: Millis) -> impl Future<Output = Result<u64>> + Send;
}

/// The notification outbox.
pub trait OutboxStore {
    /// Claims up to `limit` messages whose next attempt is due (or whose lease expired).
    fn claim_outbox(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>>> + Send;
    fn mark_delivered(&self, id: &str, now: Millis) -> impl Future<Output = Result<()>> + Send;
    /// Records a failed attempt: retried at `next_attempt_at`, or dead-lettered when `dead`.
    fn mark_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Millis,
        dead: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Puts messages straight into the outbox (reports, tests); ids already present are ignored.
    fn enqueue(&self, rows: &[OutboxRow]) -> impl Future<Output = Result<()>> + Send;
    /// Messages in a state (`pending`, `delivered`, `dead` ...), oldest first.
    fn outbox_in_state(
        &self,
        state: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>>> + Send;
    /// Messages addressed to any of `recipients` (`user:NAME`, `role:ID`, `dept:ID`), on every
    /// channel, newest first: what the message centre shows.
    fn outbox_for(
        &self,
        recipients: &[String],
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>>> + Send;
}

/// Read models.
pub trait ProjectionStore {
    /// Open tasks addressed to any of `parties` (a user's `user:NAME`, `role:ID` for each of
    /// their roles, `dept:ID` for their department): one of the row's `addressees` is among
    /// them. Most urgent first, in one query; each row once.
    fn inbox_for(
        &self,
        parties: &[String],
        limit: i64,
    ) -> impl Future<Output = Result<Vec<InboxRow>>> + Send;
    /// Open tasks addressed to `assignee` (a party string, one of the row's `addressees`), or
    /// unassigned in one of `departments`, most urgent first.
    fn inbox(
        &self,
        assignee: Option<&str>,
        departments: &[String],
        limit: i64,
    ) -> impl Future<Output = Result<Vec<InboxRow>>> + Send;
    fn dashboard(&self) -> impl Future<Output = Result<Dashboard>> + Send;
    /// Open tasks due before `now` (overdue), most overdue first.
    fn overdue(
        &self,
        now: Millis,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<InboxRow>>> + Send;
    /// Open promises due in `[from, to)`.
    fn promises_due(
        &self,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<PromiseRow>>> + Send;
    fn supervised(&self, limit: i64) -> impl Future<Output = Result<Vec<InboxRow>>> + Send;
    fn elements_of(&self, instance: &str) -> impl Future<Output = Result<Vec<ElementRow>>> + Send;
}

/// Open tasks of one workflow in one (stage, department, colour) cell, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCount {
    pub stage: Option<String>,
    pub department: Option<String>,
    pub colour: String,
    pub open: i64,
    /// Of which on a 挂牌督办 list.
    pub supervised: i64,
}

/// An open task past due, with its instance's project record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverdueTask {
    pub instance: String,
    pub project: serde_json::Value,
    pub node: String,
    pub department: Option<String>,
    pub due: Millis,
    pub supervised: bool,
}

/// An open 容缺 commitment coming due, with its instance's project record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromiseDue {
    pub instance: String,
    pub project: serde_json::Value,
    pub material: String,
    pub due: Millis,
}

/// What a report of one workflow is computed from: all projection queries, filtered by workflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReportData {
    pub tasks: Vec<TaskCount>,
    /// Instances created in `[from, now)`.
    pub started: i64,
    /// Instances that ended (any outcome) in `[from, now)`.
    pub finished: i64,
    /// (department, tasks decided in `[from, now)`), the department being the one the task
    /// opened in (`None`: none). A task closed without a decision (a join fired, a 驳回, the
    /// instance ended) is not counted: nobody in the department finished it.
    #[serde(default)]
    pub decided_by_department: Vec<(Option<String>, i64)>,
    /// (promise state, count)
    pub promises: Vec<(String, i64)>,
    /// Open tasks due before `now`, most overdue first.
    pub overdue: Vec<OverdueTask>,
    /// Open promises due in `[now, promise_until)`, soonest first.
    pub promises_due: Vec<PromiseDue>,
    /// Open tasks on a 挂牌督办 list (any due), most urgent first.
    pub supervised: Vec<OverdueTask>,
}

/// Cron report runs, once across nodes.
pub trait ReportStore {
    /// The latest `scheduled_at` this report ran for, on any node.
    fn last_report_run(&self, report: &str) -> impl Future<Output = Result<Option<Millis>>> + Send;
    /// Records the run of `report` for `scheduled_at` and enqueues its messages in one
    /// transaction; false (and nothing written) if some node already ran it.
    fn run_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
        rows: &[OutboxRow],
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The projections a report of `workflow_id` reads; at most `limit` rows per list.
    fn report_data(
        &self,
        workflow_id: &str,
        from: Millis,
        now: Millis,
        promise_until: Millis,
        limit: i64,
    ) -> impl Future<Output = Result<ReportData>> + Send;
    /// Records that `report` ran for `scheduled_at`; false if some node already did.
    fn try_start_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// All storage capabilities together.
pub trait Store:
    DefinitionStore
    + EventStore
    + TimerStore
    + OutboxStore
    + ProjectionStore
    + ReportStore
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: DefinitionStore
        + EventStore
        + TimerStore
        + OutboxStore
        + ProjectionStore
        + ReportStore
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Either backend, chosen by URL.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Db {
    /// `sqlite://PATH` (or `sqlite:PATH`, or a bare path ending in `.db`) or `postgres://...`.
    /// Runs the migrations.
    pub async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Db::Postgres(postgres::PgStore::connect(url, None).await?))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Ok(Db::Sqlite(sqlite::SqliteStore::open(path).await?))
        } else if url.ends_with(".db") || url.ends_with(".sqlite") {
            Ok(Db::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else {
            Err(StoreError::BadUrl(url.to_string()))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// Delegates every capability to the chosen backend.
macro_rules! delegate {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        impl $trait for Db {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Db::Sqlite(s) => s.$name($($arg),*).await,
                        Db::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate!(DefinitionStore {
    fn publish(&self, workflow_id: &str, yaml: &str, hash: &str, source: Source<'_>, now: Millis) -> Result<DefinitionRow>;
    fn definitions_of(&self, workflow_id: &str) -> Result<Vec<DefinitionRow>>;
    fn workflow_ids(&self) -> Result<Vec<String>>;
    fn definition(&self, workflow_id: &str, version: i64) -> Result<Option<DefinitionRow>>;
    fn latest_definition(&self, workflow_id: &str) -> Result<Option<DefinitionRow>>;
});
delegate!(EventStore {
    fn load(&self, instance: &str, after_seq: i64) -> Result<Option<(InstanceRow, Vec<EventRow>)>>;
    fn lookup_keys(&self, keys: &[String]) -> Result<Vec<IdempotencyRow>>;
    fn timer_states(&self, timers: &[(String, String)]) -> Result<Vec<(String, String, TimerState)>>;
    fn commit(&self, batch: &Batch) -> Result<()>;
    fn commit_owned(&self, batch: Batch) -> Result<()>;
    fn count_events(&self, instance: Option<&str>) -> Result<i64>;
});
delegate!(TimerStore {
    fn claim_due(&self, node: &str, now: Millis, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedTimer>>;
    fn next_due(&self) -> Result<Option<Millis>>;
    fn timer_counts(&self) -> Result<Vec<(String, i64)>>;
    fn refused_timers(&self, limit: i64) -> Result<Vec<RefusedTimer>>;
    fn retry_refused_timers(&self, retry_by: Millis) -> Result<u64>;
});
delegate!(OutboxStore {
    fn claim_outbox(&self, node: &str, now: Millis, lease_ms: i64, limit: i64) -> Result<Vec<OutboxMessage>>;
    fn mark_delivered(&self, id: &str, now: Millis) -> Result<()>;
    fn mark_failed(&self, id: &str, error: &str, next_attempt_at: Millis, dead: bool) -> Result<()>;
    fn enqueue(&self, rows: &[OutboxRow]) -> Result<()>;
    fn outbox_in_state(&self, state: &str, limit: i64) -> Result<Vec<OutboxMessage>>;
    fn outbox_for(&self, recipients: &[String], limit: i64) -> Result<Vec<OutboxMessage>>;
});
delegate!(ProjectionStore {
    fn inbox_for(&self, parties: &[String], limit: i64) -> Result<Vec<InboxRow>>;
    fn inbox(&self, assignee: Option<&str>, departments: &[String], limit: i64) -> Result<Vec<InboxRow>>;
    fn dashboard(&self) -> Result<Dashboard>;
    fn overdue(&self, now: Millis, limit: i64) -> Result<Vec<InboxRow>>;
    fn promises_due(&self, from: Millis, to: Millis) -> Result<Vec<PromiseRow>>;
    fn supervised(&self, limit: i64) -> Result<Vec<InboxRow>>;
    fn elements_of(&self, instance: &str) -> Result<Vec<ElementRow>>;
});
delegate!(ReportStore {
    fn last_report_run(&self, report: &str) -> Result<Option<Millis>>;
    fn run_report(&self, report: &str, scheduled_at: Millis, node: &str, now: Millis, rows: &[OutboxRow]) -> Result<bool>;
    fn report_data(&self, workflow_id: &str, from: Millis, now: Millis, promise_until: Millis, limit: i64) -> Result<ReportData>;
    fn try_start_report(&self, report: &str, scheduled_at: Millis, node: &str, now: Millis) -> Result<bool>;
});

delegate!(DocumentStore {
    fn issue_document(&self, doc: &documents::NewDocument, seal: &(dyn Fn(i64) -> std::result::Result<documents::Sealed, String> + Send + Sync)) -> Result<(documents::DocumentRow, bool)>;
    fn revoke_documents(&self, instance: &str, kind: &str, at: Millis, by: Option<&str>) -> Result<u64>;
    fn documents_of(&self, instance: &str) -> Result<Vec<documents::DocumentRow>>;
    fn document_by_code(&self, code: &str) -> Result<Option<documents::DocumentRow>>;
    fn documents_to_check(&self, limit: i64) -> Result<Vec<(String, i64)>>;
    fn documents_checked(&self, instance: &str, seq: i64) -> Result<()>;
});

/// Parses JSON text read from a row.
pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("invalid JSON: {e}")))
}
