//! The command path, with group commit.
//!
//! Every command (from the API, a timer, a test) goes through one writer task per process:
//! [`CommandBus::submit`] puts it on a queue and waits. The writer takes whatever has queued up
//! (up to [`BusOptions::max_batch`]), and for each command in arrival order loads the instance's
//! state (from its cache, else by folding the stored events), calls the machine's `decide`, and
//! `evolve`s the state; then it writes all the batch's events, timers, outbox rows, projections
//! and idempotency keys in **one** transaction, and only after that transaction committed
//! answers each caller. One fsync then covers many commands: that is how a fully durable engine
//! passes the ~250 commits/s a 4 ms fsync allows (see docs/adr/0001-group-commit.md).
//!
//! The writer is pipelined two deep: a batch's commit runs on a task of its own while the next
//! batch is decided on the states the first one leaves, so deciding and writing overlap. The
//! second batch is written only after the first committed, and if the first fails the second is
//! decided again from the store (see [`Writer::run`]).
//!
//! Correctness does not rest on the single writer: every commit is guarded by the versions it
//! read (instance version, idempotency key absent, timer still pending), so several processes
//! on one PostgreSQL are safe; a guard that fails makes the whole batch retry with fresh state.
//! A command that `decide` rejects is answered with its rejection and takes nothing from the
//! others in its batch. A timer firing that `decide` rejects is not marked fired: the refusal is
//! recorded on the timer, which stays open to be tried again (see `Writer::timer_refused` and
//! docs/durable.md, "Refused timers").

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};

use crate::machine::{Clock, Effects, Machine, Rejection};
use crate::store::{
    AuditRow, Batch, EventRow, IdempotencyRow, InstanceMeta, InstanceWrite, Millis, OutboxRow,
    ProjectLink, ProjectRow, Projection, Store, StoreError, TimerRefusal, TimerRow, TimerState,
};

/// A command for one instance.
#[derive(Debug, Clone)]
pub struct Submit<C> {
    pub instance: String,
    /// Set to create the instance: its definition version and project. Ignored if it exists.
    pub start: Option<InstanceMeta>,
    /// The same key returns the same receipt and changes nothing the second time.
    pub key: Option<String>,
    /// Refuse unless the instance is at this version (what the caller saw).
    pub expected_version: Option<i64>,
    pub command: C,
    /// Who sent it and from where: the bus writes its audit entry, with the outcome, in the
    /// transaction that records the command, so an acknowledged command always has one.
    pub audit: Option<Audit>,
    /// With `start`: the project the new instance belongs to, linked in the start's
    /// transaction (and registered in it too, when it is new).
    pub project: Option<StartProject>,
}

/// The project an instance is started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProject {
    pub id: String,
    /// A project registered together with this start: written only if the start commits.
    pub register: Option<Box<ProjectRow>>,
}

/// Who sent a command, from where, and what it is called in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub user: String,
    pub remote: Option<String>,
    pub action: String,
}

/// What a successful command recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub instance: String,
    /// The instance version after the command (number of events recorded).
    pub version: i64,
    /// Sequence number of the command's first event (`version + 1` when it recorded none).
    pub first_seq: i64,
    pub events: i64,
    /// True when this is the stored answer to an earlier command with the same key.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("instance `{0}` does not exist")]
    NotFound(String),
    #[error("instance is at version {actual}, not {expected}: reload and retry")]
    StaleVersion { expected: i64, actual: i64 },
    #[error("no published definition {0}")]
    NoDefinition(String),
    #[error("timer already fired or cancelled")]
    TimerSpent,
    /// The instance's own state has the timer due later than its row said (the clock moved
    /// back, or the row was behind): nothing fired, and the timer now waits for that time.
    #[error("timer not due until {due} (ms since the epoch); moved to that time")]
    TimerNotDue { due: Millis },
    #[error("too much contention on this instance, retry")]
    Busy,
    /// The idempotency key was first used with another request (another instance or another
    /// command): nothing was done.
    #[error("idempotency key already used for another request")]
    KeyReused,
    /// The machine panicked on this command: nothing of it was written, and the writer goes on
    /// with the next commands.
    #[error("the command failed inside the engine: {0}")]
    Panicked(String),
    /// The database cannot be reached (refused, timed out, gone): nothing was written; try later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("storage failed: {0}")]
    Store(String),
    #[error("the command bus has stopped")]
    Stopped,
}

impl CommandError {
    /// The error a failed store call is answered with.
    fn from_store(e: &StoreError) -> CommandError {
        if e.is_unavailable() {
            CommandError::Unavailable(e.to_string())
        } else {
            CommandError::Store(e.to_string())
        }
    }

    /// Whether the bus wrote this answer's audit entry in a committed transaction: every
    /// answer decided in a batch. The others (the batch never committed, or never ran) are
    /// the caller's to record.
    pub fn audited_by_bus(&self) -> bool {
        !matches!(
            self,
            CommandError::Busy
                | CommandError::Panicked(_)
                | CommandError::Unavailable(_)
                | CommandError::Store(_)
                | CommandError::Stopped
                | CommandError::TimerSpent
                | CommandError::TimerNotDue { .. }
        )
    }

    /// The audit trail's word for an answer that is not a receipt.
    pub fn outcome(&self) -> &str {
        match self {
            CommandError::Rejected(r) => &r.code,
            CommandError::NotFound(_) => "not_found",
            CommandError::StaleVersion { .. } => "stale_version",
            CommandError::NoDefinition(_) => "no_definition",
            CommandError::TimerSpent | CommandError::TimerNotDue { .. } => "conflict",
            CommandError::Busy => "busy",
            CommandError::KeyReused => "idempotency_key_reused",
            CommandError::Panicked(_) => "internal",
            CommandError::Unavailable(_) => "database_unavailable",
            CommandError::Store(_) => "internal",
            CommandError::Stopped => "shutting_down",
        }
    }
}

type Answer = Result<Receipt, CommandError>;

enum Job<C> {
    Command(Submit<C>),
    Timer(TimerRow),
}

impl<C> Job<C> {
    fn instance(&self) -> &str {
        match self {
            Job::Command(s) => &s.instance,
            Job::Timer(t) => &t.instance,
        }
    }
}

struct Pending<C> {
    job: Job<C>,
    reply: Option<oneshot::Sender<Answer>>,
}

#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Most commands in one transaction.
    pub max_batch: usize,
    /// Instances whose state is kept in memory.
    pub cache_capacity: usize,
    /// Attempts of a batch that keeps meeting conflicts before answering `Busy`.
    pub max_attempts: usize,
    /// How long a timer whose firing the machine refused is left alone before it is tried again
    /// (unless a revision lets it go sooner: [`crate::store::TimerStore::retry_refused_timers`]).
    /// Slow on purpose: a refusal that heals by itself heals within it, one that does not costs
    /// one attempt per timer per period.
    pub refused_timer_retry_ms: i64,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            max_batch: 512,
            cache_capacity: 100_000,
            max_attempts: 8,
            refused_timer_retry_ms: 3_600_000,
        }
    }
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
    /// Batches retried after a conflict.
    pub conflicts: AtomicU64,
    /// Time spent loading states, deciding and projecting (ns).
    pub decide_ns: AtomicU64,
    /// Time spent in `Store::commit` (ns).
    pub commit_ns: AtomicU64,
}

/// Handle to the writer task; cheap to clone.
pub struct CommandBus<M: Machine> {
    tx: mpsc::Sender<Pending<M::Command>>,
    /// Woken when a committed batch armed a timer, so the scheduler can look sooner.
    pub timer_armed: Arc<Notify>,
    /// Woken when a committed batch queued a notification.
    pub outbox_queued: Arc<Notify>,
    /// Woken when a committed batch recorded an event that may call for an official document
    /// (a pre-approval, an instance's end): the server's issuing pass looks then.
    pub documents_due: Arc<Notify>,
    pub stats: Arc<BusStats>,
}

impl<M: Machine> Clone for CommandBus<M> {
    fn clone(&self) -> Self {
        CommandBus {
            tx: self.tx.clone(),
            timer_armed: self.timer_armed.clone(),
            outbox_queued: self.outbox_queued.clone(),
            documents_due: self.documents_due.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<M: Machine> CommandBus<M> {
    /// Starts the writer task on the current tokio runtime.
    pub fn start<S: Store>(
        machine: Arc<M>,
        store: S,
        clock: Arc<dyn Clock>,
        opts: BusOptions,
    ) -> CommandBus<M> {
        let (tx, rx) = mpsc::channel(opts.max_batch.max(1) * 8);
        let timer_armed = Arc::new(Notify::new());
        let outbox_queued = Arc::new(Notify::new());
        let documents_due = Arc::new(Notify::new());
        let stats = Arc::new(BusStats::default());
        let writer = Writer {
            stats: stats.clone(),
            machine,
            store,
            clock,
            opts,
            cache: HashMap::new(),
            timer_armed: timer_armed.clone(),
            outbox_queued: outbox_queued.clone(),
            documents_due: documents_due.clone(),
            audit_tag: random_tag(),
            audit_seq: 0,
        };
        tokio::spawn(writer.run(rx));
        CommandBus {
            tx,
            timer_armed,
            outbox_queued,
            documents_due,
            stats,
        }
    }

    /// Whether the writer task is still running (it ends only if the process is stopping, or
    /// on a fault outside any one command: a panicking command costs only itself).
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Runs a command; returns once its events are committed (or it was refused).
    pub async fn submit(&self, s: Submit<M::Command>) -> Answer {
        self.send(Job::Command(s)).await
    }

    /// Fires a due timer through the same path: its effects and its `fired` mark commit together.
    pub async fn fire(&self, t: TimerRow) -> Answer {
        self.send(Job::Timer(t)).await
    }

    async fn send(&self, job: Job<M::Command>) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                job,
                reply: Some(reply),
            })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }
}

struct Cached<M: Machine> {
    meta: Arc<InstanceMeta>,
    ctx: Arc<M::Context>,
    state: M::State,
    version: i64,
    /// The read models as last written (None when loaded from the store): the commit then
    /// writes only the rows that changed.
    written: Option<Arc<Projection>>,
}

/// One instance as a batch sees it: taken out of the cache for the batch, put back on commit.
struct Working<M: Machine> {
    cached: Cached<M>,
    from_version: i64,
    is_new: bool,
    /// Whether a command was refused on this state: the commit then re-checks the version so a
    /// refusal is never based on a state another node has moved past.
    read_only_check: bool,
}

/// A decided batch: what to write, and what to answer once it is written.
struct Prepared<C> {
    jobs: Vec<Pending<C>>,
    answers: Vec<Option<Answer>>,
    batch: Batch,
    /// Instances whose cached state already includes this batch: speculative until it commits.
    touched: Vec<String>,
    /// The answer recorded for each idempotency key, with the digest of its request, for
    /// duplicates arriving in the next batch (they cannot find it in the store before this
    /// batch commits).
    keys: HashMap<String, (Option<String>, Answer)>,
    /// Timers this batch fires, for the same reason.
    fired: HashSet<(String, String)>,
}

/// Whether a batch records an event that may call for an official document (the kinds the
/// sweep of `store::documents` reads).
fn calls_for_documents(b: &Batch) -> bool {
    b.events
        .iter()
        .any(|e| crate::store::documents::CALLING_EVENTS.contains(&e.kind.as_ref()))
}

/// Appends batch `b`, decided on the states `a` left, to `a`: one transaction for both.
fn merge<C>(mut a: Prepared<C>, b: Prepared<C>) -> Prepared<C> {
    a.jobs.extend(b.jobs);
    a.answers.extend(b.answers);
    let (x, y) = (&mut a.batch, b.batch);
    x.now = y.now;
    for w in y.instances {
        match x.instances.iter_mut().find(|v| v.meta.id == w.meta.id) {
            // Keep the version `a` read: that is what the store must still hold.
            Some(v) => {
                v.to_version = w.to_version;
                v.projection = w.projection;
                // A migration in `b` moved the instance to another definition version.
                v.meta = w.meta;
            }
            None => x.instances.push(w),
        }
    }
    x.events.extend(y.events);
    for c in &y.timers_cancelled {
        // A timer armed by `a` and cancelled by `b` need never be written.
        x.timers_armed
            .retain(|t| !(t.instance == c.0 && t.timer_id == c.1));
    }
    x.timers_armed.extend(y.timers_armed);
    x.timers_cancelled.extend(y.timers_cancelled);
    x.timers_fired.extend(y.timers_fired);
    x.timers_refused.extend(y.timers_refused);
    x.timers_postponed.extend(y.timers_postponed);
    x.outbox.extend(y.outbox);
    x.idempotency.extend(y.idempotency);
    x.audit.extend(y.audit);
    x.projects.extend(y.projects);
    x.project_links.extend(y.project_links);
    for id in b.touched {
        if !a.touched.contains(&id) {
            a.touched.push(id);
        }
    }
    a.keys.extend(b.keys);
    a.fired.extend(b.fired);
    a
}

/// A prepared batch whose commit runs on a task of its own while the next batch is decided.
struct Flight<C> {
    prepared: Prepared<C>,
    commit: JoinHandle<Result<(), StoreError>>,
    launched: Instant,
    armed: bool,
    queued: bool,
    documents: bool,
}

struct Writer<M: Machine, S: Store> {
    machine: Arc<M>,
    store: S,
    clock: Arc<dyn Clock>,
    opts: BusOptions,
    cache: HashMap<String, Cached<M>>,
    timer_armed: Arc<Notify>,
    outbox_queued: Arc<Notify>,
    documents_due: Arc<Notify>,
    stats: Arc<BusStats>,
    /// This writer's mark in the ids of the audit entries it writes (random: several nodes
    /// write one trail), and the count after it.
    audit_tag: u64,
    audit_seq: u64,
}

enum BatchError {
    Retry,
    Fatal(String),
    /// The database could not be reached while deciding (loading a state, the keys).
    Unavailable(String),
    /// The machine panicked on the job at this index.
    Panicked(usize, String),
}

/// What woke the writer while a commit was in flight.
enum Wake {
    Landed(Result<Result<(), StoreError>, JoinError>),
    Jobs(usize),
}

impl<M: Machine, S: Store> Writer<M, S> {
    /// The writer's loop, pipelined: while batch N commits (on a task of its own, mostly waiting
    /// for the disk), the commands arriving meanwhile are decided, as they come, on the states N
    /// leaves, and gathered into batch N+1, which is launched the moment N has committed. So
    /// deciding overlaps writing and batches stay as large as without the pipeline. If N fails,
    /// N+1 was decided on states that never existed: both are run again from the store, in
    /// order. Callers are answered only after the commit holding their events.
    async fn run(mut self, mut rx: mpsc::Receiver<Pending<M::Command>>) {
        let max = self.opts.max_batch.max(1);
        let mut flight: Option<Flight<M::Command>> = None;
        let mut next: Option<Prepared<M::Command>> = None;
        loop {
            let mut jobs = Vec::with_capacity(max);
            let room = max.saturating_sub(next.as_ref().map_or(0, |n| n.jobs.len()));
            let wake = match flight.as_mut() {
                None => Wake::Jobs(rx.recv_many(&mut jobs, max).await),
                Some(f) if room == 0 => Wake::Landed((&mut f.commit).await),
                Some(f) => tokio::select! {
                    biased;
                    done = &mut f.commit => Wake::Landed(done),
                    n = rx.recv_many(&mut jobs, room) => Wake::Jobs(n),
                },
            };
            match wake {
                Wake::Landed(done) => {
                    let Some(f) = flight.take() else { continue };
                    match self.land(f, done) {
                        Ok(()) => flight = next.take().and_then(|n| self.launch(n)),
                        Err(retry) => self.redo(retry, next.take()).await,
                    }
                }
                Wake::Jobs(0) => {
                    self.drain(flight.take(), next.take()).await;
                    return;
                }
                Wake::Jobs(_) if flight.is_none() => match self.prepare(jobs, &[]).await {
                    Ok(p) => flight = self.launch(p),
                    Err((jobs, _)) => self.run_batch(jobs).await,
                },
                Wake::Jobs(_) => {
                    let prevs: Vec<&Prepared<M::Command>> = flight
                        .iter()
                        .map(|f| &f.prepared)
                        .chain(next.iter())
                        .collect();
                    match self.prepare(jobs, &prevs).await {
                        Ok(p) => {
                            next = Some(match next.take() {
                                Some(n) => merge(n, p),
                                None => p,
                            })
                        }
                        Err((jobs, _)) => {
                            self.drain(flight.take(), next.take()).await;
                            self.run_batch(jobs).await;
                        }
                    }
                }
            }
        }
    }

    /// Starts the commit of a prepared batch; a batch with nothing to write is answered at once.
    fn launch(&mut self, mut p: Prepared<M::Command>) -> Option<Flight<M::Command>> {
        if p.batch.is_empty() {
            self.finish(p);
            return None;
        }
        let batch = std::mem::take(&mut p.batch);
        let (armed, queued) = (!batch.timers_armed.is_empty(), !batch.outbox.is_empty());
        let documents = calls_for_documents(&batch);
        let store = self.store.clone();
        Some(Flight {
            prepared: p,
            commit: tokio::spawn(async move { store.commit_owned(batch).await }),
            launched: Instant::now(),
            armed,
            queued,
            documents,
        })
    }

    /// Takes a finished commit and answers its callers. If it failed, nothing of it was written
    /// and the states it left in the cache are fiction: they are dropped, and the commands come
    /// back to be run again (after a conflict) or are answered with the error.
    fn land(
        &mut self,
        f: Flight<M::Command>,
        done: Result<Result<(), StoreError>, JoinError>,
    ) -> Result<(), Vec<Pending<M::Command>>> {
        self.stats
            .commit_ns
            .fetch_add(nanos(f.launched.elapsed()), Ordering::Relaxed);
        let result = done.unwrap_or_else(|e| Err(StoreError::Native(format!("commit task: {e}"))));
        match result {
            Ok(()) => {
                self.notify(f.armed, f.queued, f.documents);
                self.finish(f.prepared);
                Ok(())
            }
            Err(StoreError::Conflict(_)) => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                self.forget(&f.prepared.touched);
                Err(f.prepared.jobs)
            }
            Err(e) => {
                self.forget(&f.prepared.touched);
                let e = CommandError::from_store(&e);
                let mut jobs = f.prepared.jobs;
                for p in jobs.iter_mut() {
                    answer(p, Err(e.clone()));
                }
                Err(Vec::new())
            }
        }
    }

    /// After a failed commit: runs its commands again, then those decided on top of it.
    async fn redo(&mut self, retry: Vec<Pending<M::Command>>, next: Option<Prepared<M::Command>>) {
        if let Some(n) = &next {
            self.forget(&n.touched);
        }
        if !retry.is_empty() {
            self.run_batch(retry).await;
        }
        if let Some(n) = next {
            self.run_batch(n.jobs).await;
        }
    }

    /// Waits for the batch in flight and commits the one gathered behind it.
    async fn drain(
        &mut self,
        flight: Option<Flight<M::Command>>,
        next: Option<Prepared<M::Command>>,
    ) {
        let mut next = next;
        if let Some(mut f) = flight {
            let done = (&mut f.commit).await;
            if let Err(retry) = self.land(f, done) {
                return self.redo(retry, next).await;
            }
        }
        if let Some(mut f) = next.take().and_then(|n| self.launch(n)) {
            let done = (&mut f.commit).await;
            if let Err(retry) = self.land(f, done) {
                self.redo(retry, None).await;
            }
        }
    }

    /// Decides and commits one batch with nothing in flight, retrying on conflicts.
    async fn run_batch(&mut self, mut jobs: Vec<Pending<M::Command>>) {
        let mut attempt = 0;
        while attempt < self.opts.max_attempts {
            attempt += 1;
            if attempt > 2 {
                tokio::time::sleep(Duration::from_millis(2 << (attempt - 1).min(6))).await;
            }
            let p = match self.prepare(jobs, &[]).await {
                Ok(p) => p,
                Err((back, BatchError::Retry)) => {
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    jobs = back;
                    continue;
                }
                Err((mut back, BatchError::Fatal(e))) => {
                    for p in back.iter_mut() {
                        answer(p, Err(CommandError::Store(e.clone())));
                    }
                    return;
                }
                Err((mut back, BatchError::Unavailable(e))) => {
                    for p in back.iter_mut() {
                        answer(p, Err(CommandError::Unavailable(e.clone())));
                    }
                    return;
                }
                // `prepare` answered the job that panicked and hands back the others: not an
                // attempt lost to contention (each panic answers one job, so this ends).
                Err((back, BatchError::Panicked(..))) => {
                    jobs = back;
                    attempt -= 1;
                    continue;
                }
            };
            let t = Instant::now();
            let result = if p.batch.is_empty() {
                Ok(())
            } else {
                self.store.commit(&p.batch).await
            };
            self.stats
                .commit_ns
                .fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
            match result {
                Ok(()) => {
                    self.notify(
                        !p.batch.timers_armed.is_empty(),
                        !p.batch.outbox.is_empty(),
                        calls_for_documents(&p.batch),
                    );
                    self.finish(p);
                    return;
                }
                Err(StoreError::Conflict(_)) => {
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.forget(&p.touched);
                    jobs = p.jobs;
                }
                Err(e) => {
                    self.forget(&p.touched);
                    let e = CommandError::from_store(&e);
                    jobs = p.jobs;
                    for p in jobs.iter_mut() {
                        answer(p, Err(e.clone()));
                    }
                    return;
                }
            }
        }
        for p in jobs.iter_mut() {
            answer(p, Err(CommandError::Busy));
        }
    }

    fn notify(&self, armed: bool, queued: bool, documents: bool) {
        if armed {
            self.timer_armed.notify_one();
        }
        if queued {
            self.outbox_queued.notify_one();
        }
        if documents {
            self.documents_due.notify_one();
        }
    }

    /// Drops cached states that were never committed (or may be stale).
    fn forget(&mut self, instances: &[String]) {
        for id in instances {
            self.cache.remove(id);
        }
    }

    /// Answers the callers of a committed batch.
    fn finish(&mut self, p: Prepared<M::Command>) {
        if self.cache.len() > self.opts.cache_capacity {
            // Arbitrary victims; one that a prepared batch still builds on costs that batch a
            // conflict and a retry, never a wrong answer (its commit is version-guarded).
            let drop: Vec<String> = self
                .cache
                .keys()
                .take(self.opts.cache_capacity / 10 + 1)
                .cloned()
                .collect();
            self.forget(&drop);
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let mut jobs = p.jobs;
        for (p, a) in jobs.iter_mut().zip(p.answers) {
            if let Some(a) = a {
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
                answer(p, a);
            }
        }
    }

    /// Gets an instance's state, from the cache or the store.
    async fn working(
        &mut self,
        instance: &str,
        start: Option<&InstanceMeta>,
    ) -> Result<Option<Working<M>>, BatchError> {
        if let Some(mut c) = self.cache.remove(instance) {
            // The context in force, not the one the state was loaded with: a calendar revision
            // replaces it in the machine, and a timer refused on the old calendar and released
            // by the revision must be decided on the new one.
            if let Some(ctx) = self.machine.context(&c.meta) {
                c.ctx = ctx;
            }
            let v = c.version;
            return Ok(Some(Working {
                cached: c,
                from_version: v,
                is_new: false,
                read_only_check: false,
            }));
        }
        let loaded = self.store.load(instance, 0).await.map_err(fatal)?;
        let (meta, events, stored_version) = match loaded {
            Some((row, events)) => (row.meta, events, row.version),
            None => match start {
                Some(m) => (m.clone(), Vec::new(), 0),
                None => return Ok(None),
            },
        };
        let ctx = self.context(&meta).await?;
        let mut state = self.machine.initial(&ctx, &meta);
        let mut version = 0;
        for e in &events {
            let ev = self
                .machine
                .decode_event(e.format, &e.body)
                .map_err(|err| {
                    BatchError::Fatal(format!("event {}#{}: {err}", e.instance, e.seq))
                })?;
            self.machine.evolve(&ctx, &mut state, &ev);
            version = e.seq;
        }
        if version != stored_version {
            // The instance row and its events disagree only if read across a commit.
            return Err(BatchError::Retry);
        }
        Ok(Some(Working {
            is_new: stored_version == 0,
            cached: Cached {
                meta: Arc::new(meta),
                ctx,
                state,
                version,
                written: None,
            },
            from_version: version,
            read_only_check: false,
        }))
    }

    async fn context(&self, meta: &InstanceMeta) -> Result<Arc<M::Context>, BatchError> {
        if let Some(c) = self.machine.context(meta) {
            return Ok(c);
        }
        let def = self
            .store
            .definition(&meta.workflow_id, meta.def_version)
            .await
            .map_err(fatal)?;
        if let Some(def) = def {
            self.machine.register(&def).map_err(BatchError::Fatal)?;
        }
        self.machine
            .context(meta)
            .ok_or_else(|| BatchError::Fatal(format!("{}@{}", meta.workflow_id, meta.def_version)))
    }

    /// Decides a batch on the cached states (which include `prev`, the batch still committing,
    /// if any) and leaves the resulting states in the cache. On error the jobs come back.
    async fn prepare(
        &mut self,
        jobs: Vec<Pending<M::Command>>,
        prev: &[&Prepared<M::Command>],
    ) -> Result<Prepared<M::Command>, (Vec<Pending<M::Command>>, BatchError)> {
        let t0 = Instant::now();
        let decided = self.decide_batch(&jobs, prev).await;
        self.stats
            .decide_ns
            .fetch_add(nanos(t0.elapsed()), Ordering::Relaxed);
        match decided {
            Ok((answers, batch, work, keys, fired)) => {
                let mut touched = Vec::with_capacity(work.len());
                for (id, w) in work {
                    if w.cached.version > 0 {
                        self.cache.insert(id.clone(), w.cached);
                        touched.push(id);
                    }
                }
                Ok(Prepared {
                    jobs,
                    answers,
                    batch,
                    touched,
                    keys,
                    fired,
                })
            }
            Err(BatchError::Panicked(i, why)) => {
                // Only this command is lost: the states the batch built are dropped (they were
                // taken out of the cache), and the others are decided again from the store.
                let mut jobs = jobs;
                tracing::error!(
                    instance = %jobs[i].job.instance(),
                    "the machine panicked on a command ({why}); it is answered as failed and \
                     the writer goes on"
                );
                answer(&mut jobs[i], Err(CommandError::Panicked(why.clone())));
                Err((jobs, BatchError::Panicked(i, why)))
            }
            Err(e) => Err((jobs, e)),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn decide_batch(
        &mut self,
        jobs: &[Pending<M::Command>],
        prev: &[&Prepared<M::Command>],
    ) -> Result<
        (
            Vec<Option<Answer>>,
            Batch,
            HashMap<String, Working<M>>,
            HashMap<String, (Option<String>, Answer)>,
            HashSet<(String, String)>,
        ),
        BatchError,
    > {
        let now = self.clock.now();
        // Keys already recorded by earlier commits.
        let keys: Vec<String> = jobs
            .iter()
            .filter(|p| p.reply.is_some())
            .filter_map(|p| match &p.job {
                Job::Command(s) => s.key.clone(),
                Job::Timer(_) => None,
            })
            .collect();
        let mut known: HashMap<String, (Option<String>, Answer)> = self
            .store
            .lookup_keys(&keys)
            .await
            .map_err(fatal)?
            .iter()
            .map(|k| (k.key.clone(), (k.request.clone(), replay(k))))
            .collect();
        for p in prev {
            for k in &keys {
                if let Some((request, a)) = p.keys.get(k) {
                    known.insert(k.clone(), (request.clone(), a.clone().map(replayed)));
                }
            }
        }
        // What each keyed command asks, to tell a retry from a key reused for another request.
        let digests: Vec<Option<String>> = jobs
            .iter()
            .map(|p| match &p.job {
                // A start names an instance id made afresh for each request: it is bound to
                // the workflow and the command (which carries the project) instead.
                Job::Command(s) if s.key.is_some() => match &s.start {
                    Some(m) => request_digest(&format!("start\u{1f}{}", m.workflow_id), &s.command),
                    None => request_digest(&s.instance, &s.command),
                },
                _ => None,
            })
            .collect();
        // Timers fired or cancelled since they were claimed.
        let timers: Vec<(String, String)> = jobs
            .iter()
            .filter(|p| p.reply.is_some())
            .filter_map(|p| match &p.job {
                Job::Timer(t) => Some((t.instance.clone(), t.timer_id.clone())),
                Job::Command(_) => None,
            })
            .collect();
        let timer_state: HashMap<(String, String), TimerState> = self
            .store
            .timer_states(&timers)
            .await
            .map_err(fatal)?
            .into_iter()
            .map(|(i, t, s)| ((i, t), s))
            .collect();

        let mut work: HashMap<String, Working<M>> = HashMap::new();
        let mut batch = Batch {
            now,
            ..Batch::default()
        };
        let mut answers: Vec<Option<Answer>> = vec![None; jobs.len()];
        let mut key_owner: HashMap<String, usize> = HashMap::new();
        let mut dup_of: Vec<(usize, usize)> = Vec::new();
        let mut fired: HashSet<(String, String)> = HashSet::new();

        for (i, p) in jobs.iter().enumerate() {
            if p.reply.is_none() {
                continue;
            }
            let key = match &p.job {
                Job::Command(s) => s.key.clone(),
                Job::Timer(_) => None,
            };
            if let Some(k) = &key {
                if let Some((request, a)) = known.get(k) {
                    answers[i] = Some(if same_request(request, &digests[i]) {
                        a.clone()
                    } else {
                        Err(CommandError::KeyReused)
                    });
                    continue;
                }
                if let Some(&first) = key_owner.get(k) {
                    dup_of.push((i, first));
                    continue;
                }
                key_owner.insert(k.clone(), i);
            }
            if let Job::Timer(t) = &p.job {
                let id = (t.instance.clone(), t.timer_id.clone());
                let spent = fired.contains(&id)
                    || prev.iter().any(|p| p.fired.contains(&id))
                    || !matches!(
                        timer_state.get(&id),
                        Some(TimerState::Pending | TimerState::Claimed)
                    );
                if spent {
                    answers[i] = Some(Err(CommandError::TimerSpent));
                    continue;
                }
                fired.insert(id);
            }
            let instance = p.job.instance().to_string();
            if !work.contains_key(&instance) {
                let start = match &p.job {
                    Job::Command(s) => s.start.as_ref(),
                    Job::Timer(_) => None,
                };
                match self.working(&instance, start).await? {
                    Some(w) => {
                        work.insert(instance.clone(), w);
                    }
                    None => {
                        if let Job::Timer(t) = &p.job {
                            // A timer of an instance that does not exist has nothing to do.
                            batch
                                .timers_fired
                                .push((t.instance.clone(), t.timer_id.clone()));
                            answers[i] = Some(Err(CommandError::TimerSpent));
                        } else {
                            answers[i] = Some(Err(CommandError::NotFound(instance)));
                        }
                        continue;
                    }
                }
            }
            let Some(w) = work.get_mut(&instance) else {
                continue;
            };
            let answer = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.apply(w, &p.job, now, &mut batch)
            })) {
                Ok(a) => a,
                Err(panic) => return Err(BatchError::Panicked(i, panic_text(&*panic))),
            };
            if answer.is_err() {
                w.read_only_check = true;
            }
            if let Some(k) = &key
                && let Some(stored) = stored_answer(&answer)
            {
                batch.idempotency.push(IdempotencyRow {
                    key: k.clone(),
                    instance: instance.clone(),
                    result: stored,
                    request: digests[i].clone(),
                });
            }
            answers[i] = Some(answer);
        }
        for (i, first) in dup_of {
            answers[i] = if same_request(&digests[first], &digests[i]) {
                answers[first].clone().map(|a| a.map(replayed))
            } else {
                Some(Err(CommandError::KeyReused))
            };
        }
        let mut recorded = HashMap::new();
        for (k, &i) in &key_owner {
            if let Some(a) = &answers[i]
                && stored_answer(a).is_some()
            {
                recorded.insert(k.clone(), (digests[i].clone(), a.clone()));
            }
        }
        self.audit(jobs, &answers, &mut batch);

        for w in work.values_mut() {
            let c = &mut w.cached;
            if c.version != w.from_version || (w.read_only_check && !w.is_new) {
                let projection = self.machine.project(&c.ctx, &c.meta, &c.state, now);
                // A new instance has no rows yet: nothing to compare with is nothing to delete.
                let written = match (&c.written, w.from_version) {
                    (_, 0) => Some(Arc::new(Projection::default())),
                    (known, _) => known.clone(),
                };
                c.written = Some(Arc::new(projection.clone()));
                batch.instances.push(InstanceWrite {
                    meta: (*c.meta).clone(),
                    from_version: w.from_version,
                    to_version: c.version,
                    projection,
                    written,
                });
            }
        }
        // A new instance whose start was refused is not written.
        batch
            .instances
            .retain(|iw| iw.to_version > 0 || iw.from_version > 0);
        Ok((answers, batch, work, recorded, fired))
    }

    /// Decides one command on a working state and adds what it implies to the batch.
    fn apply(
        &self,
        w: &mut Working<M>,
        job: &Job<M::Command>,
        now: Millis,
        batch: &mut Batch,
    ) -> Answer {
        let c = &mut w.cached;
        let owned;
        let cmd = match job {
            Job::Command(s) => {
                if let Some(expected) = s.expected_version
                    && expected != c.version
                {
                    return Err(CommandError::StaleVersion {
                        expected,
                        actual: c.version,
                    });
                }
                Some(&s.command)
            }
            Job::Timer(t) => {
                owned = self.machine.timer_command(t);
                owned.as_ref()
            }
        };
        let first_seq = c.version + 1;
        let timer = match job {
            Job::Timer(t) => Some(t),
            Job::Command(_) => None,
        };
        let Some(cmd) = cmd else {
            if let Some(t) = timer {
                batch
                    .timers_fired
                    .push((t.instance.clone(), t.timer_id.clone()));
            }
            return Ok(receipt(&c.meta.id, c.version, first_seq, 0));
        };
        let events = match self.machine.decide(&c.ctx, &c.meta, &c.state, cmd, now) {
            Ok(events) => events,
            Err(r) => {
                return Err(match timer {
                    Some(t) => self.timer_refused(c, t, r, now, batch),
                    None => CommandError::Rejected(r),
                });
            }
        };
        // An event that moves the instance to another definition version (a migration) needs
        // that version registered: checked before anything is added to the batch.
        for ev in &events {
            if let Some(v) = self.machine.moved_to(ev) {
                let meta = InstanceMeta {
                    def_version: v,
                    ..(*c.meta).clone()
                };
                if self.machine.context(&meta).is_none() {
                    return Err(CommandError::NoDefinition(format!(
                        "{}@{v}",
                        meta.workflow_id
                    )));
                }
            }
        }
        // A timer is marked fired only with the events of a firing `decide` accepted.
        if let Some(t) = timer {
            batch
                .timers_fired
                .push((t.instance.clone(), t.timer_id.clone()));
        }
        let mut effects = Effects::default();
        for ev in &events {
            let seq = c.version + 1;
            let body = serde_json::to_string(ev)
                .map_err(|e| CommandError::Store(format!("event does not serialise: {e}")))?;
            batch.events.push(EventRow {
                instance: c.meta.id.clone(),
                seq,
                kind: self.machine.event_kind(ev),
                body,
                recorded_at: now,
                format: self.machine.event_format(),
            });
            effects.timers_armed.clear();
            effects.timers_cancelled.clear();
            effects.notifications.clear();
            self.machine
                .effects(&c.ctx, &c.meta, &c.state, ev, now, &mut effects);
            for (id, due, kind) in effects.timers_armed.drain(..) {
                batch.timers_armed.push(TimerRow {
                    instance: c.meta.id.clone(),
                    timer_id: id,
                    due,
                    kind,
                });
            }
            for id in effects.timers_cancelled.drain(..) {
                // The store cancels before it arms: a timer armed earlier in this batch is
                // simply not written.
                batch
                    .timers_armed
                    .retain(|t| !(t.instance == c.meta.id && t.timer_id == id));
                batch.timers_cancelled.push((c.meta.id.clone(), id));
            }
            for (n, note) in effects.notifications.drain(..).enumerate() {
                batch.outbox.push(OutboxRow {
                    // The event names the message (a failed batch wrote nothing, so a retry cannot
                    // queue it twice); the time in front, fixed-width hex, keeps the outbox's
                    // primary key appending instead of touching one index page per instance in
                    // every commit.
                    id: format!("{now:012x}/{}/{}/{}", c.meta.id, seq, n),
                    instance: Some(c.meta.id.clone()),
                    channel: note.channel,
                    recipient: note.recipient,
                    template: note.template,
                    payload: note.payload,
                    next_attempt_at: now,
                    created_at: now,
                });
            }
            self.machine.evolve(&c.ctx, &mut c.state, ev);
            c.version = seq;
            if let Some(v) = self.machine.moved_to(ev) {
                let meta = InstanceMeta {
                    def_version: v,
                    ..(*c.meta).clone()
                };
                if let Some(ctx) = self.machine.context(&meta) {
                    c.ctx = ctx;
                    c.meta = Arc::new(meta);
                }
            }
        }
        Ok(receipt(
            &c.meta.id,
            c.version,
            first_seq,
            c.version - first_seq + 1,
        ))
    }
}

impl<M: Machine, S: Store> Writer<M, S> {
    /// The audit entries of a batch's commands, with how each ended: written with the batch,
    /// so a command acknowledged to its caller has its entry committed. A refused start names
    /// no instance (none was created). With them, the project of each instance the batch
    /// starts (and the project itself when it is registered by the start).
    fn audit(
        &mut self,
        jobs: &[Pending<M::Command>],
        answers: &[Option<Answer>],
        batch: &mut Batch,
    ) {
        for (p, a) in jobs.iter().zip(answers) {
            let (Job::Command(s), Some(a)) = (&p.job, a) else {
                continue;
            };
            if let (Some(meta), Some(project), Ok(r)) = (&s.start, &s.project, a)
                && !r.replayed
            {
                batch.projects.extend(project.register.as_deref().cloned());
                batch.project_links.push(ProjectLink {
                    instance: s.instance.clone(),
                    project_id: project.id.clone(),
                    workflow_id: meta.workflow_id.clone(),
                    def_version: meta.def_version,
                    created_at: batch.now,
                });
            }
            let Some(who) = &s.audit else { continue };
            let outcome = match a {
                Ok(r) if r.replayed => "replayed",
                Ok(_) => "ok",
                Err(e) if e.audited_by_bus() => e.outcome(),
                Err(_) => continue,
            };
            let instance = (s.start.is_none() || a.is_ok()).then(|| s.instance.clone());
            self.audit_seq += 1;
            batch.audit.push(AuditRow {
                id: format!(
                    "{:012x}/{:016x}/{}",
                    batch.now, self.audit_tag, self.audit_seq
                ),
                at: batch.now,
                user: who.user.clone(),
                remote: who.remote.clone(),
                action: who.action.clone(),
                instance,
                outcome: outcome.to_string(),
            });
        }
    }

    /// What a refused timer firing writes. Never the `fired` mark: the firing did nothing, so the
    /// warnings and escalations it owes are still owed. If the instance's state has the timer due
    /// later than now, the firing merely came early and the timer moves to that due; otherwise the
    /// refusal is recorded on the timer, which stays open and is left alone until the slow retry
    /// (or a revision's [`crate::store::TimerStore::retry_refused_timers`]). Either write is
    /// guarded like a refused command: it commits only if the instance is still at the version
    /// the refusal was decided on.
    fn timer_refused(
        &self,
        c: &Cached<M>,
        t: &TimerRow,
        r: Rejection,
        now: Millis,
        batch: &mut Batch,
    ) -> CommandError {
        if let Some(due) = self
            .machine
            .timer_due(&c.ctx, &c.state, t)
            .filter(|d| *d > now)
        {
            batch
                .timers_postponed
                .push((t.instance.clone(), t.timer_id.clone(), due));
            return CommandError::TimerNotDue { due };
        }
        batch.timers_refused.push(TimerRefusal {
            instance: t.instance.clone(),
            timer_id: t.timer_id.clone(),
            code: r.code.clone(),
            message: r.message.clone(),
            refused_at: now,
            retry_at: now.saturating_add(self.opts.refused_timer_retry_ms.max(0)),
        });
        CommandError::Rejected(r)
    }
}

fn receipt(instance: &str, version: i64, first_seq: i64, events: i64) -> Receipt {
    Receipt {
        instance: instance.to_string(),
        version,
        first_seq,
        events,
        replayed: false,
    }
}

/// What an idempotency key records: the receipt, or the refusal `decide` gave. Other errors
/// (stale version, busy, storage) are not outcomes of the command, so they are not kept and the
/// same key may be tried again.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Done(Receipt),
    Refused { rejected: Rejection },
}

fn stored_answer(a: &Answer) -> Option<String> {
    let stored = match a {
        Ok(r) => Stored::Done(r.clone()),
        // The machine's own fault is no outcome of the command: the key may be tried again.
        Err(CommandError::Rejected(rejected)) if rejected.internal => return None,
        Err(CommandError::Rejected(rejected)) => Stored::Refused {
            rejected: rejected.clone(),
        },
        Err(_) => return None,
    };
    serde_json::to_string(&stored).ok()
}

fn replay(row: &IdempotencyRow) -> Answer {
    let stored: Stored = serde_json::from_str(&row.result)
        .map_err(|e| CommandError::Store(format!("stored result of key {}: {e}", row.key)))?;
    match stored {
        Stored::Done(r) => Ok(replayed(r)),
        Stored::Refused { rejected } => Err(CommandError::Rejected(rejected)),
    }
}

fn replayed(mut r: Receipt) -> Receipt {
    r.replayed = true;
    r
}

fn answer<C>(p: &mut Pending<C>, a: Answer) {
    if let Some(tx) = p.reply.take() {
        // The caller may have gone away (timed out); its command is committed all the same.
        let _ = tx.send(a);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn fatal(e: StoreError) -> BatchError {
    match e {
        StoreError::Conflict(_) => BatchError::Retry,
        other if other.is_unavailable() => BatchError::Unavailable(other.to_string()),
        other => BatchError::Fatal(other.to_string()),
    }
}

/// A digest of a keyed request: the instance and the command (with its actor), so that a key
/// reused for another request is told apart from a retry of the same one.
fn request_digest<C: Serialize>(instance: &str, command: &C) -> Option<String> {
    use sha2::{Digest, Sha256};
    let body = serde_json::to_vec(command).ok()?;
    let mut h = Sha256::new();
    h.update(instance.as_bytes());
    h.update([0x1f]);
    h.update(&body);
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a key's stored request is this one. A key stored before keys were bound to their
/// request has no digest and matches by the key alone, as it did.
fn same_request(stored: &Option<String>, this: &Option<String>) -> bool {
    stored.is_none() || stored == this
}

/// A random tag for this writer's audit ids (no extra crate: the standard library seeds each
/// `RandomState` from the operating system).
fn random_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
