//! Official documents (公文) as stored: numbered per workflow and year without gaps, once per
//! instance and occasion, found by their verification code (migration 17).
//!
//! [`DocumentStore::issue_document`] is the one place a number is taken: in one write
//! transaction it looks for the instance's document of that occasion (an issuing pass run twice
//! finds it and stops), takes the workflow's next number for the year (an upsert of the
//! counter row, which PostgreSQL locks until the transaction ends and SQLite's single writer
//! serialises), lets the caller seal the document with it (its 文号, body and digest) and
//! writes the row. A failed insert rolls the counter back with it, so the numbers of a year are
//! 1, 2, 3 … with no gap and no repeat, however many nodes issue at once.
//!
//! The SQL is written once for both backends over [`Backend`], as in [`super::sql`].

use std::future::Future;

use super::sql::{Arg, Backend, RowOf};
use super::{Millis, Result, StoreError};

/// The kinds of event after which an instance may call for an official document
/// (`engine::documents::due`): a 容缺 pre-approval (预批复), a task's decision (the 批复 of a step
/// that declares one), every promise kept (a 批复 that waited for them), the end. The bus wakes
/// the issuing pass after a commit with one, and the sweep's query reads them: one list, made
/// into both.
macro_rules! calling_events {
    ($first:literal $(, $rest:literal)*) => {
        pub const CALLING_EVENTS: &[&str] = &[$first $(, $rest)*];
        /// The instances with calling events past what the pass has handled.
        const TO_CHECK_SQL: &str = concat!(
            "SELECT e.instance, max(e.seq) FROM events e \
             LEFT JOIN document_checks c ON c.instance = e.instance \
             WHERE e.type IN ('", $first, "'" $(, ", '", $rest, "'")*, ") \
               AND (c.seq IS NULL OR e.seq > c.seq) \
             GROUP BY e.instance ORDER BY e.instance LIMIT $1"
        );
    };
}
calling_events!(
    "pre_approved",
    "task_decided",
    "formal_approval",
    "instance_ended"
);

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    pub id: String,
    pub instance: String,
    /// Why it was issued (`end`, `pre_approval/0`, `approved/7`, `revocation/0`): unique per
    /// instance.
    pub occasion: String,
    /// `pre_approval`, `approval`, `filing`, `refusal`, `revocation`.
    pub kind: String,
    pub title: String,
    pub workflow_id: String,
    pub year: i64,
    /// Its number in the workflow's year, from 1.
    pub seq: i64,
    /// The 文号 as printed.
    pub number: String,
    /// The issuing authority's name (发文机关).
    pub issuer: String,
    /// The project's name.
    pub project: String,
    /// What it records, in Chinese (批准, 不予许可, 预批复, 撤销).
    pub outcome: String,
    /// The rendered body text.
    pub body: String,
    pub issued_at: Millis,
    /// The code of its verification page, `/verify/{code}`: random, unguessable.
    pub verify_code: String,
    /// SHA-256 (hex) of [`canonical`] content.
    pub sha256: String,
    /// The instance's event-chain head when it was issued (NULL until events are chained).
    pub chain_head: Option<String>,
    pub revoked_at: Option<Millis>,
    /// The id of the 撤销决定 that revoked it.
    pub revoked_by: Option<String>,
}

/// A document to issue, before it has a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    pub id: String,
    pub instance: String,
    pub occasion: String,
    pub kind: String,
    pub title: String,
    pub workflow_id: String,
    /// The year of issue (Asia/Shanghai): whose numbers it takes.
    pub year: i64,
    pub issuer: String,
    pub project: String,
    pub outcome: String,
    pub issued_at: Millis,
    pub verify_code: String,
    /// The instance's head hash when the document is issued (`Db::head_hash`): a later edit of
    /// the history before it no longer leads to this head.
    pub chain_head: Option<String>,
}

/// What the number makes of a document: its 文号 and body (which may print the 文号).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub number: String,
    pub body: String,
}

/// The text a document's digest is taken of: every field a reader relies on, one per line, in a
/// fixed order. The verification page shows the digest, the PDF prints it: a changed word, number
/// or date gives another digest.
pub fn canonical(d: &DocumentRow) -> String {
    format!(
        "shenpi-document/1\n发文机关：{}\n标题：{}\n文号：{}\n项目：{}\n结果：{}\n日期：{}\n核验码：{}\n正文：\n{}",
        d.issuer, d.title, d.number, d.project, d.outcome, d.issued_at, d.verify_code, d.body
    )
}

/// SHA-256 of `text`, lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Documents as stored.
pub trait DocumentStore {
    /// Issues `doc` with the next number of its workflow's year, `seal` making its 文号 and body
    /// from that number; or, when the instance already has a document for the occasion, returns
    /// that one. Says whether this call issued it.
    fn issue_document(
        &self,
        doc: &NewDocument,
        seal: &(dyn Fn(i64) -> std::result::Result<Sealed, String> + Send + Sync),
    ) -> impl Future<Output = Result<(DocumentRow, bool)>> + Send;
    /// Marks the instance's documents of `kind` revoked (those not yet), by the 撤销决定 `by`.
    fn revoke_documents(
        &self,
        instance: &str,
        kind: &str,
        at: Millis,
        by: Option<&str>,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// An instance's documents, in the order they were issued.
    fn documents_of(&self, instance: &str)
    -> impl Future<Output = Result<Vec<DocumentRow>>> + Send;
    /// The document with this verification code.
    fn document_by_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<DocumentRow>>> + Send;
    /// Instances with events that may call for a document past what the issuing pass has
    /// handled: (instance, the last such event's seq), at most `limit`.
    fn documents_to_check(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
    /// Records that the issuing pass has handled the instance's events up to `seq`.
    fn documents_checked(
        &self,
        instance: &str,
        seq: i64,
    ) -> impl Future<Output = Result<()>> + Send;
}

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT id, instance, occasion, kind, title, workflow_id, year, seq, number, \
             issuer, project, outcome, body, issued_at, verify_code, sha256, chain_head, \
             revoked_at, revoked_by FROM documents WHERE ",
            $where
        )
    };
}

fn row<S: Backend>(r: &RowOf<S>) -> Result<DocumentRow> {
    Ok(DocumentRow {
        id: S::text(r, 0)?,
        instance: S::text(r, 1)?,
        occasion: S::text(r, 2)?,
        kind: S::text(r, 3)?,
        title: S::text(r, 4)?,
        workflow_id: S::text(r, 5)?,
        year: S::int(r, 6)?,
        seq: S::int(r, 7)?,
        number: S::text(r, 8)?,
        issuer: S::text(r, 9)?,
        project: S::text(r, 10)?,
        outcome: S::text(r, 11)?,
        body: S::text(r, 12)?,
        issued_at: S::int(r, 13)?,
        verify_code: S::text(r, 14)?,
        sha256: S::text(r, 15)?,
        chain_head: S::opt_text(r, 16)?,
        revoked_at: S::opt_int(r, 17)?,
        revoked_by: S::opt_text(r, 18)?,
    })
}

const BY_OCCASION: &str = select!("instance = $1 AND occasion = $2");

impl<S: Backend> DocumentStore for S {
    async fn issue_document(
        &self,
        doc: &NewDocument,
        seal: &(dyn Fn(i64) -> std::result::Result<Sealed, String> + Send + Sync),
    ) -> Result<(DocumentRow, bool)> {
        const NEXT: &str = "INSERT INTO document_counters (workflow_id, year, last)
             VALUES ($1, $2, 1) ON CONFLICT (workflow_id, year)
             DO UPDATE SET last = document_counters.last + 1 RETURNING last";
        const INSERT: &str = "INSERT INTO documents (id, instance, occasion, kind, title,
             workflow_id, year, seq, number, issuer, project, outcome, body, issued_at,
             verify_code, sha256, chain_head, revoked_at, revoked_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, NULL, NULL)";
        let key = [Arg::Text(&doc.instance), Arg::Text(&doc.occasion)];
        let attempt = async {
            let mut tx = self.pool().begin_with(S::BEGIN_WRITE).await?;
            if let Some(r) = S::rows(&mut tx, BY_OCCASION, &key).await?.first() {
                let existing = row::<S>(r)?;
                tx.rollback().await?;
                return Ok((existing, false));
            }
            let counter = [Arg::Text(&doc.workflow_id), Arg::Int(doc.year)];
            let seq = match S::rows(&mut tx, NEXT, &counter).await?.first() {
                Some(r) => S::int(r, 0)?,
                None => return Err(StoreError::Corrupt("document counter not returned".into())),
            };
            let sealed = seal(seq).map_err(StoreError::Content)?;
            let mut d = DocumentRow {
                id: doc.id.clone(),
                instance: doc.instance.clone(),
                occasion: doc.occasion.clone(),
                kind: doc.kind.clone(),
                title: doc.title.clone(),
                workflow_id: doc.workflow_id.clone(),
                year: doc.year,
                seq,
                number: sealed.number,
                issuer: doc.issuer.clone(),
                project: doc.project.clone(),
                outcome: doc.outcome.clone(),
                body: sealed.body,
                issued_at: doc.issued_at,
                verify_code: doc.verify_code.clone(),
                sha256: String::new(),
                chain_head: doc.chain_head.clone(),
                revoked_at: None,
                revoked_by: None,
            };
            d.sha256 = sha256_hex(&canonical(&d));
            let args = [
                Arg::Text(&d.id),
                Arg::Text(&d.instance),
                Arg::Text(&d.occasion),
                Arg::Text(&d.kind),
                Arg::Text(&d.title),
                Arg::Text(&d.workflow_id),
                Arg::Int(d.year),
                Arg::Int(d.seq),
                Arg::Text(&d.number),
                Arg::Text(&d.issuer),
                Arg::Text(&d.project),
                Arg::Text(&d.outcome),
                Arg::Text(&d.body),
                Arg::Int(d.issued_at),
                Arg::Text(&d.verify_code),
                Arg::Text(&d.sha256),
                Arg::OptText(d.chain_head.as_deref()),
            ];
            S::execute(&mut tx, INSERT, &args).await?;
            tx.commit().await?;
            Ok((d, true))
        };
        match attempt.await {
            // Another node issued it meanwhile (the unique key on instance and occasion): the
            // transaction, counter and all, was rolled back; that node's document stands.
            Err(StoreError::Conflict(e)) => {
                let mut c = self.pool().acquire().await?;
                match S::rows(&mut c, BY_OCCASION, &key).await?.first() {
                    Some(r) => Ok((row::<S>(r)?, false)),
                    None => Err(StoreError::Conflict(e)),
                }
            }
            other => other,
        }
    }

    async fn revoke_documents(
        &self,
        instance: &str,
        kind: &str,
        at: Millis,
        by: Option<&str>,
    ) -> Result<u64> {
        const SQL: &str = "UPDATE documents SET revoked_at = $3, revoked_by = $4
             WHERE instance = $1 AND kind = $2 AND revoked_at IS NULL";
        let mut c = self.pool().acquire().await?;
        let args = [
            Arg::Text(instance),
            Arg::Text(kind),
            Arg::Int(at),
            Arg::OptText(by),
        ];
        S::execute(&mut c, SQL, &args).await
    }

    async fn documents_of(&self, instance: &str) -> Result<Vec<DocumentRow>> {
        const SQL: &str = select!("instance = $1 ORDER BY issued_at, year, seq");
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(instance)]).await?;
        rows.iter().map(row::<S>).collect()
    }

    async fn document_by_code(&self, code: &str) -> Result<Option<DocumentRow>> {
        const SQL: &str = select!("verify_code = $1");
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, SQL, &[Arg::Text(code)]).await?;
        rows.first().map(row::<S>).transpose()
    }

    async fn documents_to_check(&self, limit: i64) -> Result<Vec<(String, i64)>> {
        let mut c = self.pool().acquire().await?;
        let rows = S::rows(&mut c, TO_CHECK_SQL, &[Arg::Int(limit)]).await?;
        rows.iter()
            .map(|r| Ok((S::text(r, 0)?, S::int(r, 1)?)))
            .collect()
    }

    async fn documents_checked(&self, instance: &str, seq: i64) -> Result<()> {
        const SQL: &str = "INSERT INTO document_checks (instance, seq) VALUES ($1, $2)
             ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq
             WHERE document_checks.seq < excluded.seq";
        let mut c = self.pool().acquire().await?;
        S::execute(&mut c, SQL, &[Arg::Text(instance), Arg::Int(seq)]).await?;
        Ok(())
    }
}
