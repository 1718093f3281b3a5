//! The SQL both backends run, and the store operations built on it, written once.
//!
//! SQLite and PostgreSQL agree on far more than they differ: numbered placeholders (`$1`, which
//! sqlx binds by number on SQLite too), `ON CONFLICT`, `NULLS LAST`, `CAST(x AS TEXT)` (how a JSON
//! column is read back as the text it was written as), `->>` with a key name. So every statement
//! whose text is the same on both is a constant here, with the row mapping and every
//! [`Store`](super::Store) operation on top of it, implemented once for any [`Backend`].
//!
//! What differs is declared by each backend's [`Backend`] impl, beside the backend: how a
//! transaction starts, the statements that take a list (a JSON array through `json_each` on
//! SQLite, an array with `ANY`/`UNNEST` on PostgreSQL), the claims (one `UPDATE` under SQLite's
//! single writer; advisory locks and `SKIP LOCKED` on PostgreSQL) and the group commit (a
//! `rusqlite` thread writing row by row; one `UNNEST` statement per table). Both commits write a
//! batch's parts in one order, [`COMMIT_ORDER`], and report a lost race with [`Step::check`].

use std::future::Future;

use sqlx::{Database, Pool};

use super::*;

/// A row as the backend's driver returns it.
pub type RowOf<S> = <<S as Backend>::Db as Database>::Row;
/// A connection (or an open transaction, which dereferences to one) of the backend.
pub type ConnOf<S> = <<S as Backend>::Db as Database>::Connection;

/// A value bound to a numbered placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    /// A list, for the statements each backend writes in its own way (see the module doc).
    Texts(&'a [&'a str]),
}

/// A claim of due timers by `node` at `now`, held until `lease_until`, at most `limit` (> 0).
#[derive(Debug, Clone, Copy)]
pub struct TimerClaim<'a> {
    pub node: &'a str,
    pub now: Millis,
    pub lease_until: Millis,
    pub limit: i64,
}

/// What a backend adds to the shared SQL: its driver, its dialect's statements, its claims and
/// its group commit. Implemented by [`super::sqlite::SqliteStore`] and
/// [`super::postgres::PgStore`]; everything else of [`Store`](super::Store) comes from here.
pub trait Backend: Clone + Send + Sync + 'static {
    type Db: Database;
    /// Starts a transaction that writes (SQLite takes the write lock up front, so it cannot fail
    /// half-way on upgrading a read lock).
    const BEGIN_WRITE: &'static str;
    /// Starts a transaction that reads several statements from one snapshot.
    const BEGIN_READ: &'static str;
    /// Idempotency rows: `$1` the keys (a list).
    const KEYS: &'static str;
    /// `(instance, timer_id, state)` of timers: `$1` instances and `$2` timer ids, pairwise.
    const TIMER_STATES: &'static str;
    /// Inbox rows ([`inbox_cols!`]): `$1` one of the row's addressees, `$2` departments (a
    /// list) whose unassigned tasks count too, `$3` the limit.
    const INBOX: &'static str;
    /// Inbox rows ([`inbox_cols!`]): `$1` parties (a list), one of which is among the row's
    /// addressees, `$2` the limit.
    const INBOX_FOR: &'static str;
    /// Claims outbox rows ([`outbox_cols!`]): `$1` node, `$2` lease end, `$3` now, `$4` limit.
    const CLAIM_OUTBOX: &'static str;
    /// Outbox rows ([`outbox_cols!`]) addressed to any of `$1` (a list), newest first, `$2` limit.
    const OUTBOX_FOR: &'static str;

    fn pool(&self) -> &Pool<Self::Db>;

    /// Runs one statement and returns its rows.
    fn rows<'a>(
        conn: &'a mut ConnOf<Self>,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Vec<RowOf<Self>>>> + Send + 'a;
    /// Runs one statement and returns how many rows it changed.
    fn execute<'a>(
        conn: &'a mut ConnOf<Self>,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<u64>> + Send + 'a;
    fn text(row: &RowOf<Self>, i: usize) -> Result<String>;
    fn opt_text(row: &RowOf<Self>, i: usize) -> Result<Option<String>>;
    fn int(row: &RowOf<Self>, i: usize) -> Result<i64>;
    fn opt_int(row: &RowOf<Self>, i: usize) -> Result<Option<i64>>;
    fn flag(row: &RowOf<Self>, i: usize) -> Result<bool>;

    /// [`TimerStore::claim_due`]: the claimed rows, `(instance, timer_id, due, kind)`.
    fn claim_timers(
        &self,
        claim: TimerClaim<'_>,
    ) -> impl Future<Output = Result<Vec<RowOf<Self>>>> + Send;
    /// [`EventStore::commit`].
    fn write_batch(&self, batch: &Batch) -> impl Future<Output = Result<()>> + Send;
    /// [`EventStore::commit_owned`].
    fn write_owned_batch(&self, batch: Batch) -> impl Future<Output = Result<()>> + Send {
        async move { self.write_batch(&batch).await }
    }
    /// Outbox rows written in `conn`'s transaction; ids already present are ignored.
    fn insert_outbox<'a>(
        conn: &'a mut ConnOf<Self>,
        rows: &'a [OutboxRow],
    ) -> impl Future<Output = Result<()>> + Send + 'a;
}

/// The driver calls of a [`Backend`] impl, the same text for both drivers (each expansion is
/// compiled against its own, so nothing here is generic over sqlx's traits). A backend provides
/// the `bind` they call with [`bind_arg!`].
macro_rules! driver_calls {
    () => {
        fn pool(&self) -> &sqlx::Pool<Self::Db> {
            &self.pool
        }

        fn rows<'a>(
            conn: &'a mut $crate::store::sql::ConnOf<Self>,
            sql: &'static str,
            args: &'a [$crate::store::sql::Arg<'a>],
        ) -> impl std::future::Future<
            Output = $crate::store::Result<Vec<$crate::store::sql::RowOf<Self>>>,
        > + Send
        + 'a {
            async move {
                let q = args.iter().fold(sqlx::query(sql), |q, a| Self::bind(q, *a));
                Ok(q.fetch_all(&mut *conn).await?)
            }
        }

        fn execute<'a>(
            conn: &'a mut $crate::store::sql::ConnOf<Self>,
            sql: &'static str,
            args: &'a [$crate::store::sql::Arg<'a>],
        ) -> impl std::future::Future<Output = $crate::store::Result<u64>> + Send + 'a {
            async move {
                let q = args.iter().fold(sqlx::query(sql), |q, a| Self::bind(q, *a));
                Ok(q.execute(&mut *conn).await?.rows_affected())
            }
        }

        fn text(row: &$crate::store::sql::RowOf<Self>, i: usize) -> $crate::store::Result<String> {
            Ok(sqlx::Row::try_get(row, i)?)
        }

        fn opt_text(
            row: &$crate::store::sql::RowOf<Self>,
            i: usize,
        ) -> $crate::store::Result<Option<String>> {
            Ok(sqlx::Row::try_get(row, i)?)
        }

        fn int(row: &$crate::store::sql::RowOf<Self>, i: usize) -> $crate::store::Result<i64> {
            Ok(sqlx::Row::try_get(row, i)?)
        }

        fn opt_int(
            row: &$crate::store::sql::RowOf<Self>,
            i: usize,
        ) -> $crate::store::Result<Option<i64>> {
            Ok(sqlx::Row::try_get(row, i)?)
        }

        fn flag(row: &$crate::store::sql::RowOf<Self>, i: usize) -> $crate::store::Result<bool> {
            Ok(sqlx::Row::try_get(row, i)?)
        }
    };
}
pub(super) use driver_calls;

/// Binds one [`Arg`]; the same text for both drivers, like [`driver_calls!`], but for
/// [`Arg::Texts`], which each backend binds its own way: `|query, list| query.bind(...)`.
macro_rules! bind_arg {
    ($db:ty, |$q:ident, $list:ident| $texts:expr) => {
        fn bind<'q>(
            $q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            a: $crate::store::sql::Arg<'_>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            use $crate::store::sql::Arg;
            match a {
                Arg::Text(v) => $q.bind(v),
                Arg::OptText(v) => $q.bind(v),
                Arg::Int(v) => $q.bind(v),
                Arg::Texts($list) => $texts,
            }
        }
    };
}
pub(super) use bind_arg;

/// The inbox columns, in the order [`inbox_row`] reads them.
macro_rules! inbox_cols {
    () => {
        "instance, task_id, workflow_id, node, stage, assignee, department, colour, due, \
         priority, supervised, opened_at, CAST(addressees AS TEXT)"
    };
}
pub(super) use inbox_cols;

/// The outbox columns, in the order [`outbox_message`] reads them.
macro_rules! outbox_cols {
    () => {
        "id, instance, channel, recipient, template, CAST(payload AS TEXT), next_attempt_at, \
         created_at, state, tries, last_error"
    };
}
pub(super) use outbox_cols;

/// Inbox rows ([`inbox_row`]) that match `$where`, most urgent first (priority, then the nearest
/// due, undated last), at most `$limit` of them.
macro_rules! inbox_where {
    ($where:literal, $limit:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::inbox_cols!(),
            " FROM inbox WHERE ",
            $where,
            " ORDER BY priority DESC, due ASC NULLS LAST, opened_at LIMIT ",
            $limit
        )
    };
}
pub(super) use inbox_where;

/// Reads a row's columns left to right.
struct Cols<'r, S: Backend> {
    row: &'r RowOf<S>,
    at: usize,
}

impl<'r, S: Backend> Cols<'r, S> {
    fn of(row: &'r RowOf<S>) -> Self {
        Cols { row, at: 0 }
    }
    fn next(&mut self) -> usize {
        self.at += 1;
        self.at - 1
    }
    fn text(&mut self) -> Result<String> {
        S::text(self.row, self.next())
    }
    fn opt_text(&mut self) -> Result<Option<String>> {
        S::opt_text(self.row, self.next())
    }
    fn int(&mut self) -> Result<i64> {
        S::int(self.row, self.next())
    }
    fn opt_int(&mut self) -> Result<Option<i64>> {
        S::opt_int(self.row, self.next())
    }
    fn flag(&mut self) -> Result<bool> {
        S::flag(self.row, self.next())
    }
    /// A JSON column read as text (`CAST(col AS TEXT)`).
    fn json(&mut self) -> Result<serde_json::Value> {
        parse_json(&self.text()?)
    }
    /// A JSON column of an outer join: `null` when absent.
    fn opt_json(&mut self) -> Result<serde_json::Value> {
        Ok(self
            .opt_text()?
            .as_deref()
            .map(parse_json)
            .transpose()?
            .unwrap_or_default())
    }
}

fn definition_row<S: Backend>(r: &RowOf<S>) -> Result<DefinitionRow> {
    let mut c = Cols::<S>::of(r);
    Ok(DefinitionRow {
        workflow_id: c.text()?,
        version: c.int()?,
        yaml: c.text()?,
        hash: c.text()?,
        published_at: c.int()?,
        source: c.opt_text()?,
        source_path: c.opt_text()?,
        published_by: c.opt_text()?,
    })
}

fn inbox_row<S: Backend>(r: &RowOf<S>) -> Result<InboxRow> {
    let mut c = Cols::<S>::of(r);
    Ok(InboxRow {
        instance: c.text()?,
        task_id: c.text()?,
        workflow_id: c.text()?,
        node: c.text()?,
        stage: c.opt_text()?,
        assignee: c.opt_text()?,
        department: c.opt_text()?,
        colour: c.text()?,
        due: c.opt_int()?,
        priority: c.int()?.try_into().unwrap_or(i32::MAX),
        supervised: c.flag()?,
        opened_at: c.int()?,
        addressees: serde_json::from_value(c.json()?)
            .map_err(|e| StoreError::Corrupt(format!("inbox addressees: {e}")))?,
    })
}

/// A row's addressees as the JSON array text both backends store.
pub fn addressees_json(t: &InboxRow) -> Result<String> {
    serde_json::to_string(&t.addressees)
        .map_err(|e| StoreError::Corrupt(format!("inbox addressees: {e}")))
}

fn outbox_message<S: Backend>(r: &RowOf<S>) -> Result<OutboxMessage> {
    let mut c = Cols::<S>::of(r);
    Ok(OutboxMessage {
        row: OutboxRow {
            id: c.text()?,
            instance: c.opt_text()?,
            channel: c.text()?,
            recipient: c.text()?,
            template: c.text()?,
            payload: c.json()?,
            next_attempt_at: c.int()?,
            created_at: c.int()?,
        },
        state: c.text()?,
        tries: c.int()?,
        last_error: c.opt_text()?,
    })
}

fn timer_row<S: Backend>(c: &mut Cols<'_, S>) -> Result<TimerRow> {
    Ok(TimerRow {
        instance: c.text()?,
        timer_id: c.text()?,
        due: c.int()?,
        kind: c.text()?,
    })
}

/// Rows of `(label, count)`; a NULL label (no stage, no department) counts as `""`.
fn counts<S: Backend>(rows: Vec<RowOf<S>>) -> Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|r| {
            let mut c = Cols::<S>::of(r);
            Ok((c.opt_text()?.unwrap_or_default(), c.int()?))
        })
        .collect()
}

fn map<S: Backend, T>(
    rows: Vec<RowOf<S>>,
    f: impl Fn(&mut Cols<'_, S>) -> Result<T>,
) -> Result<Vec<T>> {
    rows.iter().map(|r| f(&mut Cols::of(r))).collect()
}

/// Claimed timers, in the order of due (the claim statements return them unordered).
fn claimed<S: Backend>(rows: Vec<RowOf<S>>, lease_until: Millis) -> Result<Vec<ClaimedTimer>> {
    let mut out = map::<S, _>(rows, |c| {
        Ok(ClaimedTimer {
            timer: timer_row(c)?,
            lease_until,
        })
    })?;
    out.sort_by_key(|c| c.timer.due);
    Ok(out)
}

/// One part of a group commit: what a [`Batch`] holds, written by one statement (PostgreSQL) or
/// one prepared statement per row (SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// New instance rows, and the versions of stored ones (guarded: `WHERE version = <read>`).
    Instances,
    /// The read models of each instance: only the rows that changed.
    Projections,
    Events,
    /// Timers fired by the batch (guarded: still open).
    Fire,
    /// Timers whose firing was refused, back to pending with the refusal (guarded: still open).
    Refuse,
    /// Timers not due yet by the instance's own state, back to pending (guarded: still open).
    Postpone,
    Cancel,
    Arm,
    Outbox,
    Keys,
    /// Projects registered with their first instance, and the links of started instances.
    Projects,
    /// The audit entries of the batch's commands.
    Audit,
}

/// The order both backends write a batch in. The instances first: a stale version fails the
/// batch before anything else is written. Timers fired before anything else touches timers: a
/// firing may re-arm a timer with the same id. Refused and postponed timers go back open before
/// the batch's cancels and armings, which may then close or re-arm the same timer.
pub const COMMIT_ORDER: [Step; 12] = [
    Step::Instances,
    Step::Projections,
    Step::Events,
    Step::Fire,
    Step::Refuse,
    Step::Postpone,
    Step::Cancel,
    Step::Arm,
    Step::Outbox,
    Step::Keys,
    Step::Projects,
    Step::Audit,
];

impl Step {
    /// For a guarded step: a [`StoreError::Conflict`] unless every row it was meant for matched
    /// (another writer got there first, and the batch is decided again on fresh state).
    pub fn check(self, matched: u64, expected: usize) -> Result<()> {
        if usize::try_from(matched).is_ok_and(|m| m == expected) {
            return Ok(());
        }
        let what = match self {
            Step::Instances => "an instance moved on since it was read",
            Step::Fire => "a timer fired or was cancelled meanwhile",
            Step::Refuse => "a refused timer fired or was cancelled meanwhile",
            Step::Postpone => "a postponed timer fired or was cancelled meanwhile",
            _ => "a commit changed fewer rows than it wrote",
        };
        Err(StoreError::Conflict(what.into()))
    }
}

/// The definition columns, in the order [`definition_row`] reads them.
macro_rules! definitions {
    () => {
        "SELECT workflow_id, version, yaml, hash, published_at, source, source_path, published_by
         FROM definitions"
    };
}

impl<S: Backend> DefinitionStore for S {
    async fn publish(
        &self,
        workflow_id: &str,
        yaml: &str,
        hash: &str,
        source: Source<'_>,
        now: Millis,
    ) -> Result<DefinitionRow> {
        const INSERT: &str = "INSERT INTO definitions (workflow_id, version, yaml, hash,
             published_at, source, source_path, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
        let (kind, path, by) = source.columns();
        loop {
            let latest = self.latest_definition(workflow_id).await?;
            if let Some(l) = latest.as_ref().filter(|l| l.hash == hash) {
                return Ok(l.clone());
            }
            let version = latest.map_or(1, |l| l.version + 1);
            // Two nodes publishing at once: the primary key picks one, the other looks again.
            let mut c = self.pool().acquire().await?;
            let args = [
                Arg::Text(workflow_id),
                Arg::Int(version),
                Arg::Text(yaml),
                Arg::Text(hash),
                Arg::Int(now),
                Arg::Text(kind),
                Arg::OptText(path),
                Arg::OptText(by),
            ];
            if S::execute(&mut c, INSERT, &args).await? == 1 {
                return Ok(DefinitionRow {
                    workflow_id: workflow_id.to_string(),
                    version,
                    yaml: yaml.to_string(),
                    hash: hash.to_string(),
                    published_at: now,
                    source: Some(kind.to_string()),
                    source_path: path.map(str::to_string),
                    published_by: by.map(str::to_string),
                });
            }
        }
    }

    async fn definition(&self, workflow_id: &str, version: i64) -> Result<Option<DefinitionRow>> {
        const SQL: &str = concat!(definitions!(), " WHERE workflow_id = $1 AND version = $2");
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(workflow_id), Arg::Int(version)]).await?;
        rows.first().map(definition_row::<S>).transpose()
    }

    async fn definitions_of(&self, workflow_id: &str) -> Result<Vec<DefinitionRow>> {
        const SQL: &str = concat!(definitions!(), " WHERE workflow_id = $1 ORDER BY version");
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(workflow_id)]).await?;
        rows.iter().map(definition_row::<S>).collect()
    }

    async fn workflow_ids(&self) -> Result<Vec<String>> {
        const SQL: &str = "SELECT DISTINCT workflow_id FROM definitions ORDER BY workflow_id";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[]).await?;
        rows.iter().map(|r| S::text(r, 0)).collect()
    }

    async fn latest_definition(&self, workflow_id: &str) -> Result<Option<DefinitionRow>> {
        const SQL: &str = concat!(
            definitions!(),
            " WHERE workflow_id = $1 ORDER BY version DESC LIMIT 1"
        );
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(workflow_id)]).await?;
        rows.first().map(definition_row::<S>).transpose()
    }
}

impl<S: Backend> EventStore for S {
    async fn load(
        &self,
        instance: &str,
        after_seq: i64,
    ) -> Result<Option<(InstanceRow, Vec<EventRow>)>> {
        const INSTANCE: &str = "SELECT id, workflow_id, def_version, CAST(project AS TEXT),
             version, status, stage, channel FROM instances WHERE id = $1";
        const EVENTS: &str = "SELECT instance, seq, type, CAST(body AS TEXT), recorded_at,
             CAST(format AS BIGINT)
             FROM events WHERE instance = $1 AND seq > $2 ORDER BY seq";
        // One read transaction so the instance row and its events are from the same snapshot.
        let mut tx = self.pool().begin_with(S::BEGIN_READ).await?;
        let rows = S::rows(&mut tx, INSTANCE, &[Arg::Text(instance)]).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let mut c = Cols::<S>::of(r);
        let row = InstanceRow {
            meta: InstanceMeta {
                id: c.text()?,
                workflow_id: c.text()?,
                def_version: c.int()?,
                project: c.json()?,
            },
            version: c.int()?,
            status: c.text()?,
            stage: c.opt_text()?,
            channel: c.opt_text()?,
        };
        let rows = S::rows(&mut tx, EVENTS, &[Arg::Text(instance), Arg::Int(after_seq)]).await?;
        let events = map::<S, _>(rows, |c| {
            Ok(EventRow {
                instance: c.text()?,
                seq: c.int()?,
                kind: c.text()?,
                body: c.text()?,
                recorded_at: c.int()?,
                format: c
                    .int()?
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("event format out of range".into()))?,
            })
        })?;
        tx.commit().await?;
        Ok(Some((row, events)))
    }

    async fn lookup_keys(&self, keys: &[String]) -> Result<Vec<IdempotencyRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, S::KEYS, &[Arg::Texts(&keys)]).await?;
        map::<S, _>(rows, |c| {
            Ok(IdempotencyRow {
                key: c.text()?,
                instance: c.text()?,
                result: c.text()?,
                request: c.opt_text()?,
            })
        })
    }

    async fn timer_states(
        &self,
        timers: &[(String, String)],
    ) -> Result<Vec<(String, String, TimerState)>> {
        if timers.is_empty() {
            return Ok(Vec::new());
        }
        let (inst, ids): (Vec<&str>, Vec<&str>) =
            timers.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(
            &mut c,
            S::TIMER_STATES,
            &[Arg::Texts(&inst), Arg::Texts(&ids)],
        )
        .await?;
        map::<S, _>(rows, |c| {
            let (instance, id, s) = (c.text()?, c.text()?, c.text()?);
            let st = TimerState::parse(&s)
                .ok_or_else(|| StoreError::Corrupt(format!("timer state `{s}`")))?;
            Ok((instance, id, st))
        })
    }

    async fn commit(&self, b: &Batch) -> Result<()> {
        self.write_batch(b).await
    }

    async fn commit_owned(&self, b: Batch) -> Result<()> {
        self.write_owned_batch(b).await
    }

    async fn count_events(&self, instance: Option<&str>) -> Result<i64> {
        const SQL: &str =
            "SELECT count(*) FROM events WHERE CAST($1 AS TEXT) IS NULL OR instance = $1";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::OptText(instance)]).await?;
        rows.first().map_or(Ok(0), |r| S::int(r, 0))
    }
}

impl<S: Backend> TimerStore for S {
    async fn claim_due(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedTimer>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let lease_until = now.saturating_add(lease_ms);
        let claim = TimerClaim {
            node,
            now,
            lease_until,
            limit,
        };
        claimed::<S>(self.claim_timers(claim).await?, lease_until)
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        const SQL: &str = "SELECT min(due) FROM timers
             WHERE state IN ('pending', 'claimed') AND retry_at IS NULL";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[]).await?;
        rows.first().map_or(Ok(None), |r| S::opt_int(r, 0))
    }

    async fn timer_counts(&self) -> Result<Vec<(String, i64)>> {
        // The open timers whose last firing was refused are counted as `refused`.
        const SQL: &str = "
            SELECT CASE WHEN state IN ('pending', 'claimed') AND refused_at IS NOT NULL
                        THEN 'refused' ELSE state END AS s, count(*)
            FROM timers GROUP BY s ORDER BY s";
        let mut c = self.pool().acquire().await?;
        counts::<S>(S::rows(&mut c, SQL, &[]).await?)
    }

    async fn refused_timers(&self, limit: i64) -> Result<Vec<RefusedTimer>> {
        const SQL: &str = "SELECT t.instance, t.timer_id, t.due, t.kind, t.refused_code,
                    t.refused_message, t.refused_at, t.retry_at, CAST(i.project AS TEXT)
             FROM timers t LEFT JOIN instances i ON i.id = t.instance
             WHERE t.state IN ('pending', 'claimed') AND t.refused_at IS NOT NULL
             ORDER BY t.refused_at, t.instance, t.timer_id LIMIT $1";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Int(limit)]).await?;
        map::<S, _>(rows, |c| {
            Ok(RefusedTimer {
                timer: timer_row(c)?,
                code: c.opt_text()?.unwrap_or_default(),
                message: c.opt_text()?.unwrap_or_default(),
                refused_at: c.int()?,
                retry_at: c.opt_int()?,
                project: c.opt_json()?,
            })
        })
    }

    async fn retry_refused_timers(&self, retry_by: Millis) -> Result<u64> {
        const SQL: &str =
            "UPDATE timers SET retry_at = NULL WHERE retry_at IS NOT NULL AND retry_at <= $1";
        let mut c = self.pool().acquire().await?;
        S::execute(&mut c, SQL, &[Arg::Int(retry_by)]).await
    }
}

impl<S: Backend> OutboxStore for S {
    async fn claim_outbox(
        &self,
        node: &str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let args = [
            Arg::Text(node),
            Arg::Int(now.saturating_add(lease_ms)),
            Arg::Int(now),
            Arg::Int(limit),
        ];
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, S::CLAIM_OUTBOX, &args).await?;
        rows.iter().map(outbox_message::<S>).collect()
    }

    async fn mark_delivered(&self, id: &str, now: Millis) -> Result<()> {
        const SQL: &str = "UPDATE outbox SET state = 'delivered', delivered_at = $1,
             tries = tries + 1, claimed_by = NULL, lease_until = NULL WHERE id = $2";
        let mut c = self.pool().acquire().await?;
        S::execute(&mut c, SQL, &[Arg::Int(now), Arg::Text(id)]).await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Millis,
        dead: bool,
    ) -> Result<()> {
        const SQL: &str = "UPDATE outbox SET state = $1, tries = tries + 1, last_error = $2,
             next_attempt_at = $3, claimed_by = NULL, lease_until = NULL WHERE id = $4";
        let args = [
            Arg::Text(if dead { "dead" } else { "pending" }),
            Arg::Text(error),
            Arg::Int(next_attempt_at),
            Arg::Text(id),
        ];
        let mut c = self.pool().acquire().await?;
        S::execute(&mut c, SQL, &args).await?;
        Ok(())
    }

    async fn enqueue(&self, rows: &[OutboxRow]) -> Result<()> {
        let mut tx = self.pool().begin_with(S::BEGIN_WRITE).await?;
        S::insert_outbox(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_in_state(&self, state: &str, limit: i64) -> Result<Vec<OutboxMessage>> {
        const SQL: &str = concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox WHERE state = $1 ORDER BY created_at, id LIMIT $2"
        );
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(state), Arg::Int(limit)]).await?;
        rows.iter().map(outbox_message::<S>).collect()
    }

    async fn outbox_for(&self, recipients: &[String], limit: i64) -> Result<Vec<OutboxMessage>> {
        let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(
            &mut c,
            S::OUTBOX_FOR,
            &[Arg::Texts(&recipients), Arg::Int(limit)],
        )
        .await?;
        rows.iter().map(outbox_message::<S>).collect()
    }
}

impl<S: Backend> ProjectionStore for S {
    async fn inbox(
        &self,
        assignee: Option<&str>,
        departments: &[String],
        limit: i64,
    ) -> Result<Vec<InboxRow>> {
        let departments: Vec<&str> = departments.iter().map(String::as_str).collect();
        let args = [
            Arg::OptText(assignee),
            Arg::Texts(&departments),
            Arg::Int(limit),
        ];
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, S::INBOX, &args).await?;
        rows.iter().map(inbox_row::<S>).collect()
    }

    async fn inbox_for(&self, parties: &[String], limit: i64) -> Result<Vec<InboxRow>> {
        let parties: Vec<&str> = parties.iter().map(String::as_str).collect();
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(
            &mut c,
            S::INBOX_FOR,
            &[Arg::Texts(&parties), Arg::Int(limit)],
        )
        .await?;
        rows.iter().map(inbox_row::<S>).collect()
    }

    async fn dashboard(&self) -> Result<Dashboard> {
        let mut tx = self.pool().begin_with(S::BEGIN_READ).await?;
        let mut count = async |sql: &'static str| counts::<S>(S::rows(&mut tx, sql, &[]).await?);
        let by_colour =
            count("SELECT colour, count(*) FROM inbox GROUP BY colour ORDER BY colour").await?;
        let by_stage =
            count("SELECT stage, count(*) FROM inbox GROUP BY stage ORDER BY stage").await?;
        let by_department =
            count("SELECT department, count(*) FROM inbox GROUP BY department ORDER BY department")
                .await?;
        let by_status =
            count("SELECT status, count(*) FROM instances GROUP BY status ORDER BY status").await?;
        let supervised = S::rows(&mut tx, "SELECT count(*) FROM inbox WHERE supervised", &[])
            .await?
            .first()
            .map_or(Ok(0), |r| S::int(r, 0))?;
        tx.commit().await?;
        Ok(Dashboard {
            by_colour,
            by_stage,
            by_department,
            by_status,
            supervised,
        })
    }

    async fn overdue(&self, now: Millis, limit: i64) -> Result<Vec<InboxRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            inbox_cols!(),
            " FROM inbox WHERE due < $1 ORDER BY due, instance, task_id LIMIT $2"
        );
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Int(now), Arg::Int(limit)]).await?;
        rows.iter().map(inbox_row::<S>).collect()
    }

    async fn promises_due(&self, from: Millis, to: Millis) -> Result<Vec<PromiseRow>> {
        const SQL: &str = "SELECT instance, promise_id, material, state, colour, due
             FROM promises WHERE state = 'open' AND due >= $1 AND due < $2
             ORDER BY due, instance, promise_id";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Int(from), Arg::Int(to)]).await?;
        map::<S, _>(rows, |c| {
            Ok(PromiseRow {
                instance: c.text()?,
                promise_id: c.text()?,
                material: c.text()?,
                state: c.text()?,
                colour: c.text()?,
                due: c.opt_int()?,
            })
        })
    }

    async fn supervised(&self, limit: i64) -> Result<Vec<InboxRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            inbox_cols!(),
            " FROM inbox WHERE supervised ORDER BY due, instance, task_id LIMIT $1"
        );
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Int(limit)]).await?;
        rows.iter().map(inbox_row::<S>).collect()
    }

    async fn running_with_promises(&self, limit: i64) -> Result<Vec<String>> {
        const SQL: &str = "SELECT DISTINCT p.instance FROM promises p
             JOIN instances i ON i.id = p.instance
             WHERE i.status = 'running' ORDER BY p.instance LIMIT $1";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Int(limit)]).await?;
        map::<S, _>(rows, |c| c.text())
    }

    async fn elements_of(&self, instance: &str) -> Result<Vec<ElementRow>> {
        const SQL: &str = "SELECT instance, stage, element, department, state, due FROM elements
             WHERE instance = $1 ORDER BY stage, element";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(instance)]).await?;
        map::<S, _>(rows, |c| {
            Ok(ElementRow {
                instance: c.text()?,
                stage: c.text()?,
                element: c.text()?,
                department: c.opt_text()?,
                state: c.text()?,
                due: c.opt_int()?,
            })
        })
    }
}

/// Open tasks of a report, with their instance's project: `$1` workflow, `$2` now, `$3` limit.
macro_rules! report_tasks {
    ($where:literal) => {
        concat!(
            "SELECT t.instance, CAST(i.project AS TEXT), t.node, t.department, t.due, t.supervised
             FROM inbox t JOIN instances i ON i.id = t.instance
             WHERE t.workflow_id = $1 AND ",
            $where,
            " ORDER BY t.due ASC NULLS LAST, t.instance, t.task_id LIMIT $3"
        )
    };
}

impl<S: Backend> ReportStore for S {
    async fn try_start_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
    ) -> Result<bool> {
        self.run_report(report, scheduled_at, node, now, &[]).await
    }

    async fn last_report_run(&self, report: &str) -> Result<Option<Millis>> {
        const SQL: &str = "SELECT max(scheduled_at) FROM report_runs WHERE report = $1";
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(report)]).await?;
        rows.first().map_or(Ok(None), |r| S::opt_int(r, 0))
    }

    async fn run_report(
        &self,
        report: &str,
        scheduled_at: Millis,
        node: &str,
        now: Millis,
        rows: &[OutboxRow],
    ) -> Result<bool> {
        const SQL: &str = "INSERT INTO report_runs (report, scheduled_at, node, ran_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (report, scheduled_at) DO NOTHING";
        let mut tx = self.pool().begin_with(S::BEGIN_WRITE).await?;
        let args = [
            Arg::Text(report),
            Arg::Int(scheduled_at),
            Arg::Text(node),
            Arg::Int(now),
        ];
        if S::execute(&mut tx, SQL, &args).await? != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        S::insert_outbox(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn report_data(
        &self,
        workflow_id: &str,
        from: Millis,
        now: Millis,
        promise_until: Millis,
        limit: i64,
    ) -> Result<ReportData> {
        const TASKS: &str = "SELECT stage, department, colour, count(*),
                    sum(CASE WHEN supervised THEN 1 ELSE 0 END)
             FROM inbox WHERE workflow_id = $1 GROUP BY stage, department, colour
             ORDER BY stage, department, colour";
        const STARTED_FINISHED: &str = "SELECT
               (SELECT count(*) FROM instances WHERE workflow_id = $1
                  AND created_at >= $2 AND created_at < $3),
               (SELECT count(*) FROM instances WHERE workflow_id = $1
                  AND status NOT IN ('running', 'not_started')
                  AND updated_at >= $2 AND updated_at < $3)";
        // Decisions in the period, by the department of the task's own `task_opened` event (the
        // inbox row is gone once the task is decided). Every commit sets `updated_at`, so an
        // instance with a decision in the period was updated in it: that bounds the scan to
        // the instances active in the period and reads their events by primary key.
        const DECIDED: &str = "SELECT o.body ->> 'department', count(*)
             FROM instances i
             JOIN events d ON d.instance = i.id AND d.type = 'task_decided'
                  AND d.recorded_at >= $2 AND d.recorded_at < $3
             JOIN events o ON o.instance = d.instance AND o.type = 'task_opened'
                  AND o.body ->> 'task' = d.body ->> 'task'
             WHERE i.workflow_id = $1 AND i.updated_at >= $2
             GROUP BY 1 ORDER BY 1";
        const PROMISES: &str = "SELECT p.state, count(*)
             FROM promises p JOIN instances i ON i.id = p.instance
             WHERE i.workflow_id = $1 GROUP BY p.state ORDER BY p.state";
        const PROMISES_DUE: &str = "SELECT p.instance, CAST(i.project AS TEXT), p.material, p.due
             FROM promises p JOIN instances i ON i.id = p.instance
             WHERE i.workflow_id = $1 AND p.state = 'open' AND p.due >= $2 AND p.due < $3
             ORDER BY p.due, p.instance, p.promise_id LIMIT $4";
        const OVERDUE: &str = report_tasks!("t.due < $2");
        const SUPERVISED: &str = report_tasks!("t.supervised AND $2 = $2");

        let wf = Arg::Text(workflow_id);
        let mut c = self.pool().acquire().await?;
        let tasks = map::<S, _>(S::rows(&mut c, TASKS, &[wf]).await?, |c| {
            Ok(TaskCount {
                stage: c.opt_text()?,
                department: c.opt_text()?,
                colour: c.text()?,
                open: c.int()?,
                supervised: c.opt_int()?.unwrap_or(0),
            })
        })?;
        let period = [wf, Arg::Int(from), Arg::Int(now)];
        let (started, finished) = match S::rows(&mut c, STARTED_FINISHED, &period).await?.first() {
            Some(r) => (S::int(r, 0)?, S::int(r, 1)?),
            None => (0, 0),
        };
        let decided_by_department = map::<S, _>(S::rows(&mut c, DECIDED, &period).await?, |c| {
            Ok((c.opt_text()?, c.int()?))
        })?;
        let promises = map::<S, _>(S::rows(&mut c, PROMISES, &[wf]).await?, |c| {
            Ok((c.text()?, c.int()?))
        })?;
        let due_args = [wf, Arg::Int(now), Arg::Int(promise_until), Arg::Int(limit)];
        let promises_due = map::<S, _>(S::rows(&mut c, PROMISES_DUE, &due_args).await?, |c| {
            Ok(PromiseDue {
                instance: c.text()?,
                project: c.json()?,
                material: c.text()?,
                due: c.int()?,
            })
        })?;
        let task_args = [wf, Arg::Int(now), Arg::Int(limit)];
        let mut report_tasks = async |sql: &'static str| {
            map::<S, _>(S::rows(&mut c, sql, &task_args).await?, |c| {
                Ok(OverdueTask {
                    instance: c.text()?,
                    project: c.json()?,
                    node: c.text()?,
                    department: c.opt_text()?,
                    due: c.opt_int()?.unwrap_or(0),
                    supervised: c.flag()?,
                })
            })
        };
        let overdue = report_tasks(OVERDUE).await?;
        let supervised = report_tasks(SUPERVISED).await?;
        Ok(ReportData {
            tasks,
            started,
            finished,
            decided_by_department,
            promises,
            overdue,
            promises_due,
            supervised,
        })
    }
}
