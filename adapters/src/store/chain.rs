//! The event hash chain (事件哈希链): what makes a changed history show.
//!
//! Every stored event carries the hash of the one before it (`prev_hash`) and its own (`hash`),
//! the SHA-256 of the previous hash and of everything an `UPDATE` could change that matters: the
//! instance, the sequence number, the stored format version, the event's kind, when it was
//! recorded and its exact stored text (which holds who did it, the decision, the comment). The
//! instance row keeps the last one (`head_hash`). A group commit chains its events in its own
//! transaction ([`link`], called by both backends' commits), so an acknowledged event is always
//! chained; histories written before the chain existed are chained once, after migration 18
//! ([`backfill`]). [`verify`] recomputes a chain and names the first event that is not intact.
//!
//! What it detects, and what it does not, is in docs/adr/0009-event-hash-chain.md: an edited,
//! deleted or inserted event, a re-ordered history, a cut-off tail (by the head); not someone who
//! rewrites the whole chain and the head consistently (there is no secret in the hash), which is
//! why documents carry the head hash at the time they were issued ([`head_hash`]).

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::sql::{Arg, Backend};
use super::{Batch, Db, EventRow, Millis, Result, StoreError};

/// The `prev_hash` of an instance's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a hash is computed over, and in which version of this rule.
const DOMAIN: &[u8] = b"shenpi-event-chain/1";

/// The hash of one event: SHA-256 over the rule's name and each part, every part preceded by its
/// length (so no two different events can run together into the same bytes), in lower-case hex.
pub fn event_hash(prev: &str, e: &EventRow) -> String {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    part(DOMAIN);
    part(prev.as_bytes());
    part(e.instance.as_bytes());
    part(e.seq.to_string().as_bytes());
    part(e.format.to_string().as_bytes());
    part(e.kind.as_bytes());
    part(e.recorded_at.to_string().as_bytes());
    part(e.body.as_bytes());
    hex::encode(h.finalize())
}

/// The hashes a batch writes: for each of its events (in the batch's order) its `prev_hash` and
/// `hash`, and for each instance its new head. `None` for an instance stored before the chain
/// whose history is not chained yet ([`backfill`] chains it, from its first unchained event).
#[derive(Debug, Default)]
pub struct Links {
    pub events: Vec<Option<(String, String)>>,
    pub heads: HashMap<String, Option<String>>,
}

impl Links {
    /// The head hash an instance has after the batch.
    pub fn head(&self, instance: &str) -> Option<&str> {
        self.heads.get(instance).and_then(|h| h.as_deref())
    }
}

/// Chains a batch's events onto the stored heads: `stored` has, for each stored instance the
/// batch writes (`from_version > 0`), its head as read in the commit's transaction. A new
/// instance starts from [`GENESIS`]. The commit's version guard makes sure the head read is the
/// one of the version the batch was decided on: another writer in between fails the batch.
pub fn link(stored: &HashMap<String, Option<String>>, b: &Batch) -> Links {
    let mut heads: HashMap<String, Option<String>> = b
        .instances
        .iter()
        .map(|w| {
            let head = if w.from_version == 0 {
                Some(GENESIS.to_string())
            } else {
                stored.get(&w.meta.id).cloned().flatten()
            };
            (w.meta.id.clone(), head)
        })
        .collect();
    // Each instance's events in order of sequence, whatever order the batch holds them in.
    let mut order: Vec<usize> = (0..b.events.len()).collect();
    order.sort_by(|&x, &y| {
        let (x, y) = (&b.events[x], &b.events[y]);
        (x.instance.as_str(), x.seq).cmp(&(y.instance.as_str(), y.seq))
    });
    let mut events = vec![None; b.events.len()];
    for i in order {
        let e = &b.events[i];
        let Some(Some(prev)) = heads.get_mut(&e.instance) else {
            continue;
        };
        let hash = event_hash(prev, e);
        events[i] = Some((std::mem::replace(prev, hash.clone()), hash));
    }
    Links { events, heads }
}

/// An event as the chain reads it back: the stored row and the hashes stored with it.
#[derive(Debug, Clone)]
pub struct ChainedEvent {
    pub event: EventRow,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// What is wrong at the first event of a chain that is not intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum ChainFault {
    /// The event's stored hash is not the hash of what it holds now: the event (who, when,
    /// what, the comment) was changed after it was written.
    HashMismatch,
    /// The event before it is missing: its sequence number is not the next one (`expected`).
    MissingPredecessor { expected: i64 },
    /// The hash the event records for its predecessor is not the predecessor's hash: the event
    /// before it was changed, or replaced.
    LinkMismatch,
    /// The event has no hash, although every event is chained when written (or by the
    /// migration's chaining).
    Unchained,
    /// The instance's head is not its last event's hash, or its recorded number of events is not
    /// the number stored: events at the end were deleted (or added by hand). `recorded` is the
    /// number of events the instance row records.
    HeadMismatch { recorded: i64 },
}

/// The first event of a chain that is not intact. For a [`ChainFault::HeadMismatch`] with
/// events missing at the end, `seq` is the first missing one, and it has no kind or time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenEvent {
    pub seq: i64,
    pub kind: Option<String>,
    pub recorded_at: Option<Millis>,
    #[serde(flatten)]
    pub fault: ChainFault,
}

/// Whether one instance's chain is intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub instance: String,
    /// Events stored.
    pub events: i64,
    /// The instance's head hash as stored.
    pub head: Option<String>,
    /// `None`: intact.
    pub broken: Option<BrokenEvent>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Recomputes an instance's chain: its events as stored, in order of sequence, against the head
/// and the number of events (`version`) its row records.
pub fn verify(
    instance: &str,
    version: i64,
    head: Option<&str>,
    events: &[ChainedEvent],
) -> ChainReport {
    let report = |broken| ChainReport {
        instance: instance.to_string(),
        events: events.len() as i64,
        head: head.map(str::to_string),
        broken,
    };
    let at = |e: &EventRow, fault| {
        Some(BrokenEvent {
            seq: e.seq,
            kind: Some(e.kind.clone()),
            recorded_at: Some(e.recorded_at),
            fault,
        })
    };
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 1;
    for c in events {
        let e = &c.event;
        if e.seq != expected_seq {
            return report(at(
                e,
                ChainFault::MissingPredecessor {
                    expected: expected_seq,
                },
            ));
        }
        let (Some(prev), Some(hash)) = (&c.prev_hash, &c.hash) else {
            return report(at(e, ChainFault::Unchained));
        };
        if *prev != expected_prev {
            return report(at(e, ChainFault::LinkMismatch));
        }
        if event_hash(prev, e) != *hash {
            return report(at(e, ChainFault::HashMismatch));
        }
        expected_prev = hash.clone();
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    let head_ok = match head {
        Some(h) => h == expected_prev,
        // An instance row without a head is intact only with nothing recorded.
        None => last == 0,
    };
    if head_ok && version == last {
        return report(None);
    }
    let fault = ChainFault::HeadMismatch { recorded: version };
    let broken = match events.last() {
        // Events recorded beyond the last stored one are missing: name the first of them.
        Some(e) if version <= last => at(&e.event, fault),
        _ => Some(BrokenEvent {
            seq: last + 1,
            kind: None,
            recorded_at: None,
            fault,
        }),
    };
    report(broken)
}

const EVENTS: &str = "SELECT instance, seq, type, CAST(body AS TEXT), recorded_at,
     CAST(format AS BIGINT), prev_hash, hash FROM events WHERE instance = $1 ORDER BY seq";

async fn chained_events<S: Backend>(
    conn: &mut super::sql::ConnOf<S>,
    instance: &str,
) -> Result<Vec<ChainedEvent>> {
    let rows = S::rows(conn, EVENTS, &[Arg::Text(instance)]).await?;
    rows.iter()
        .map(|r| {
            Ok(ChainedEvent {
                event: EventRow {
                    instance: S::text(r, 0)?,
                    seq: S::int(r, 1)?,
                    kind: S::text(r, 2)?,
                    body: S::text(r, 3)?,
                    recorded_at: S::int(r, 4)?,
                    format: S::int(r, 5)?
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("event format out of range".into()))?,
                },
                prev_hash: S::opt_text(r, 6)?,
                hash: S::opt_text(r, 7)?,
            })
        })
        .collect()
}

/// [`Db::verify_chain`] on one backend.
pub async fn verify_instance<S: Backend>(s: &S, instance: &str) -> Result<Option<ChainReport>> {
    const INSTANCE: &str = "SELECT version, head_hash FROM instances WHERE id = $1";
    let mut tx = s.pool().begin_with(S::BEGIN_READ).await?;
    let rows = S::rows(&mut tx, INSTANCE, &[Arg::Text(instance)]).await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let (version, head) = (S::int(r, 0)?, S::opt_text(r, 1)?);
    let events = chained_events::<S>(&mut tx, instance).await?;
    tx.commit().await?;
    Ok(Some(verify(instance, version, head.as_deref(), &events)))
}

/// [`Db::head_hash`] on one backend.
pub async fn head_of<S: Backend>(s: &S, instance: &str) -> Result<Option<String>> {
    const SQL: &str = "SELECT head_hash FROM instances WHERE id = $1";
    let mut c = s.pool().acquire().await?;
    let rows = S::rows(&mut c, SQL, &[Arg::Text(instance)]).await?;
    rows.first().map_or(Ok(None), |r| S::opt_text(r, 0))
}

/// [`Db::instance_ids`] on one backend.
pub async fn ids<S: Backend>(s: &S, after: &str, limit: i64) -> Result<Vec<String>> {
    const SQL: &str = "SELECT id FROM instances WHERE id > $1 ORDER BY id LIMIT $2";
    let mut c = s.pool().acquire().await?;
    let rows = S::rows(&mut c, SQL, &[Arg::Text(after), Arg::Int(limit)]).await?;
    rows.iter().map(|r| S::text(r, 0)).collect()
}

/// How many instances one transaction of [`backfill`] chains.
const BACKFILL_BATCH: i64 = 200;

/// Chains the histories written before the chain existed: run once after the migrations, by
/// every store as it opens. Idempotent and resumable: while migration 18's marker says it is not
/// done, it takes, [`BACKFILL_BATCH`] instances at a time, each instance with an unchained event,
/// chains its events from the first unchained one on, and sets its head; then it marks itself
/// done, so that later an event someone strips of its hash is reported ([`ChainFault::Unchained`])
/// instead of chained again. A commit meanwhile (another node) on such an instance writes its
/// events unchained and leaves the head alone; the next round picks them up, and the head is set
/// only while the instance's version is still the one chained. Returns how many instances.
pub async fn backfill<S: Backend>(s: &S) -> Result<u64> {
    const PENDING: &str = "SELECT done FROM event_chain_backfill WHERE id = 1";
    const UNCHAINED: &str = "SELECT DISTINCT instance FROM events WHERE hash IS NULL
         ORDER BY instance LIMIT $1";
    const SET_EVENT: &str =
        "UPDATE events SET prev_hash = $3, hash = $4 WHERE instance = $1 AND seq = $2";
    const SET_HEAD: &str = "UPDATE instances SET head_hash = $2 WHERE id = $1 AND version = $3";
    const DONE: &str = "UPDATE event_chain_backfill SET done = 1 WHERE id = 1";
    let mut c = s.pool().acquire().await?;
    let pending = S::rows(&mut c, PENDING, &[])
        .await?
        .first()
        .map_or(Ok(0), |r| S::int(r, 0))?
        == 0;
    drop(c);
    if !pending {
        return Ok(0);
    }
    let mut chained = 0;
    loop {
        let mut tx = s.pool().begin_with(S::BEGIN_WRITE).await?;
        let instances: Vec<String> = S::rows(&mut tx, UNCHAINED, &[Arg::Int(BACKFILL_BATCH)])
            .await?
            .iter()
            .map(|r| S::text(r, 0))
            .collect::<Result<_>>()?;
        if instances.is_empty() {
            S::execute(&mut tx, DONE, &[]).await?;
            tx.commit().await?;
            return Ok(chained);
        }
        for instance in &instances {
            let events = chained_events::<S>(&mut tx, instance).await?;
            let mut prev = GENESIS.to_string();
            let mut rechain = false;
            for c in &events {
                // The chained part before the first unchained event is kept as it is.
                if !rechain && let Some(h) = c.hash.as_ref().filter(|_| c.prev_hash.is_some()) {
                    prev = h.clone();
                    continue;
                }
                rechain = true;
                let hash = event_hash(&prev, &c.event);
                let args = [
                    Arg::Text(instance),
                    Arg::Int(c.event.seq),
                    Arg::Text(&prev),
                    Arg::Text(&hash),
                ];
                S::execute(&mut tx, SET_EVENT, &args).await?;
                prev = hash;
            }
            let last = events.last().map_or(0, |c| c.event.seq);
            let args = [Arg::Text(instance), Arg::Text(&prev), Arg::Int(last)];
            S::execute(&mut tx, SET_HEAD, &args).await?;
            chained += 1;
        }
        tx.commit().await?;
    }
}

impl Db {
    /// An instance's current head hash (the hash of its last event), `None` for an unknown
    /// instance. A document issued for the instance records it: whatever is later changed in
    /// the history before that point no longer leads to the recorded head.
    pub async fn head_hash(&self, instance: &str) -> Result<Option<String>> {
        match self {
            Db::Sqlite(s) => head_of(s, instance).await,
            Db::Postgres(s) => head_of(s, instance).await,
        }
    }

    /// Recomputes an instance's chain (see [`verify`]); `None` for an unknown instance.
    pub async fn verify_chain(&self, instance: &str) -> Result<Option<ChainReport>> {
        match self {
            Db::Sqlite(s) => verify_instance(s, instance).await,
            Db::Postgres(s) => verify_instance(s, instance).await,
        }
    }

    /// Up to `limit` instance ids after `after` (`""` from the start), in order: for checking
    /// every chain page by page.
    pub async fn instance_ids(&self, after: &str, limit: i64) -> Result<Vec<String>> {
        match self {
            Db::Sqlite(s) => ids(s, after, limit).await,
            Db::Postgres(s) => ids(s, after, limit).await,
        }
    }
}
