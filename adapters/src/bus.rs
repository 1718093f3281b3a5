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
//! Correctness does not rest on the single writer: every commit is guarded by the versions it
//! read (instance version, idempotency key absent, timer still pending), so several processes
//! on one PostgreSQL are safe; a guard that fails makes the whole batch retry with fresh state.
//! A command that `decide` rejects is answered with its rejection and takes nothing from the
//! others in its batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::machine::{Clock, Effects, Machine, Rejection};
use crate::store::{
    Batch, EventRow, IdempotencyRow, InstanceMeta, InstanceWrite, Millis, OutboxRow, Store,
    StoreError, TimerRow, TimerState,
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
    #[error("too much contention on this instance, retry")]
    Busy,
    #[error("storage failed: {0}")]
    Store(String),
    #[error("the command bus has stopped")]
    Stopped,
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
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            max_batch: 512,
            cache_capacity: 100_000,
            max_attempts: 8,
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
    pub stats: Arc<BusStats>,
}

impl<M: Machine> Clone for CommandBus<M> {
    fn clone(&self) -> Self {
        CommandBus {
            tx: self.tx.clone(),
            timer_armed: self.timer_armed.clone(),
            outbox_queued: self.outbox_queued.clone(),
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
        };
        tokio::spawn(writer.run(rx));
        CommandBus {
            tx,
            timer_armed,
            outbox_queued,
            stats,
        }
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

struct Writer<M: Machine, S: Store> {
    machine: Arc<M>,
    store: S,
    clock: Arc<dyn Clock>,
    opts: BusOptions,
    cache: HashMap<String, Cached<M>>,
    timer_armed: Arc<Notify>,
    outbox_queued: Arc<Notify>,
    stats: Arc<BusStats>,
}

enum BatchError {
    Retry,
    Fatal(String),
}

impl<M: Machine, S: Store> Writer<M, S> {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending<M::Command>>) {
        let mut jobs = Vec::with_capacity(self.opts.max_batch);
        loop {
            jobs.clear();
            if rx.recv_many(&mut jobs, self.opts.max_batch).await == 0 {
                return;
            }
            self.run_batch(&mut jobs).await;
        }
    }

    async fn run_batch(&mut self, jobs: &mut [Pending<M::Command>]) {
        for attempt in 0..self.opts.max_attempts {
            match self.try_batch(jobs).await {
                Ok(()) => return,
                Err(BatchError::Retry) => {
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    // Someone else moved these instances: forget what we knew and look again.
                    for p in jobs.iter() {
                        self.cache.remove(p.job.instance());
                    }
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
                    }
                }
                Err(BatchError::Fatal(e)) => {
                    for p in jobs.iter_mut() {
                        self.cache.remove(p.job.instance());
                        answer(p, Err(CommandError::Store(e.clone())));
                    }
                    return;
                }
            }
        }
        for p in jobs.iter_mut() {
            answer(p, Err(CommandError::Busy));
        }
    }

    /// Gets an instance's state, from the cache or the store.
    async fn working(
        &mut self,
        instance: &str,
        start: Option<&InstanceMeta>,
    ) -> Result<Option<Working<M>>, BatchError> {
        if let Some(c) = self.cache.remove(instance) {
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
            let ev: M::Event = serde_json::from_str(&e.body).map_err(|err| {
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

    async fn try_batch(&mut self, jobs: &mut [Pending<M::Command>]) -> Result<(), BatchError> {
        let t0 = Instant::now();
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
        let known: HashMap<String, IdempotencyRow> = self
            .store
            .lookup_keys(&keys)
            .await
            .map_err(fatal)?
            .into_iter()
            .map(|k| (k.key.clone(), k))
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

        for (i, p) in jobs.iter().enumerate() {
            if p.reply.is_none() {
                continue;
            }
            let key = match &p.job {
                Job::Command(s) => s.key.clone(),
                Job::Timer(_) => None,
            };
            if let Some(k) = &key {
                if let Some(row) = known.get(k) {
                    answers[i] = Some(replay(row));
                    continue;
                }
                if let Some(&first) = key_owner.get(k) {
                    dup_of.push((i, first));
                    continue;
                }
                key_owner.insert(k.clone(), i);
            }
            if let Job::Timer(t) = &p.job {
                let st = timer_state.get(&(t.instance.clone(), t.timer_id.clone()));
                let already = batch
                    .timers_fired
                    .iter()
                    .any(|(a, b)| *a == t.instance && *b == t.timer_id);
                if already || !matches!(st, Some(TimerState::Pending | TimerState::Claimed)) {
                    answers[i] = Some(Err(CommandError::TimerSpent));
                    continue;
                }
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
            let answer = self.apply(w, &p.job, now, &mut batch);
            if answer.is_err() {
                w.read_only_check = true;
            }
            if let (Some(k), Ok(r)) = (&key, &answer) {
                batch.idempotency.push(IdempotencyRow {
                    key: k.clone(),
                    instance: instance.clone(),
                    result: serde_json::to_string(r).unwrap_or_default(),
                });
            }
            answers[i] = Some(answer);
        }
        for (i, first) in dup_of {
            answers[i] = answers[first].clone().map(|a| {
                a.map(|mut r| {
                    r.replayed = true;
                    r
                })
            });
        }

        for w in work.values() {
            let c = &w.cached;
            if c.version != w.from_version || (w.read_only_check && !w.is_new) {
                batch.instances.push(InstanceWrite {
                    meta: (*c.meta).clone(),
                    from_version: w.from_version,
                    to_version: c.version,
                    projection: self.machine.project(&c.ctx, &c.meta, &c.state, now),
                });
            }
        }
        // A new instance whose start was refused is not written.
        batch
            .instances
            .retain(|iw| iw.to_version > 0 || iw.from_version > 0);

        let t1 = Instant::now();
        self.stats
            .decide_ns
            .fetch_add(nanos(t1 - t0), Ordering::Relaxed);
        if !batch.is_empty() {
            let result = self.store.commit(&batch).await;
            self.stats
                .commit_ns
                .fetch_add(nanos(t1.elapsed()), Ordering::Relaxed);
            match result {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Err(BatchError::Retry),
                Err(e) => return Err(BatchError::Fatal(e.to_string())),
            }
            if !batch.timers_armed.is_empty() {
                self.timer_armed.notify_one();
            }
            if !batch.outbox.is_empty() {
                self.outbox_queued.notify_one();
            }
        }

        for (id, w) in work {
            if w.cached.version > 0 {
                self.cache.insert(id, w.cached);
            }
        }
        if self.cache.len() > self.opts.cache_capacity {
            let drop: Vec<String> = self
                .cache
                .keys()
                .take(self.opts.cache_capacity / 10 + 1)
                .cloned()
                .collect();
            for k in drop {
                self.cache.remove(&k);
            }
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        for (p, a) in jobs.iter_mut().zip(answers) {
            if let Some(a) = a {
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
                answer(p, a);
            }
        }
        Ok(())
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
                batch
                    .timers_fired
                    .push((t.instance.clone(), t.timer_id.clone()));
                owned = self.machine.timer_command(t);
                owned.as_ref()
            }
        };
        let first_seq = c.version + 1;
        let Some(cmd) = cmd else {
            return Ok(receipt(&c.meta.id, c.version, first_seq, 0));
        };
        let events = self
            .machine
            .decide(&c.ctx, &c.meta, &c.state, cmd, now)
            .map_err(CommandError::Rejected)?;
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
                batch.timers_cancelled.push((c.meta.id.clone(), id));
            }
            for (n, note) in effects.notifications.drain(..).enumerate() {
                batch.outbox.push(OutboxRow {
                    // Derived from the event, so a retried batch cannot queue it twice.
                    id: format!("{}/{}/{}", c.meta.id, seq, n),
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
        }
        Ok(receipt(
            &c.meta.id,
            c.version,
            first_seq,
            c.version - first_seq + 1,
        ))
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

fn replay(row: &IdempotencyRow) -> Answer {
    let mut r: Receipt = serde_json::from_str(&row.result)
        .map_err(|e| CommandError::Store(format!("stored result of key {}: {e}", row.key)))?;
    r.replayed = true;
    Ok(r)
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
        other => BatchError::Fatal(other.to_string()),
    }
}
