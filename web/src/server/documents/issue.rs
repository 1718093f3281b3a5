//! Issuing official documents: the pass that reads an instance's state, asks the engine which
//! documents it calls for (`engine::documents::due`), and issues each that is not issued yet.
//!
//! Who issues, and why it is never lost (docs/adr/0008-official-documents.md): the command bus
//! wakes [`run`] after every commit that records a pre-approval or an instance's end
//! (`CommandBus::documents_due`); [`run`] also sweeps at start and every [`SWEEP_EVERY`], over
//! the events of those two kinds past what it has handled per instance
//! (`DocumentStore::documents_to_check`). A crash between the commit and the pass leaves the
//! events unhandled, and the next sweep, on any node, issues their documents. Issuing twice is
//! harmless: a document is unique per instance and occasion, and the store returns the one
//! already there.
//!
//! A document is dated when the event that calls for it was recorded (not when the pass ran),
//! so a document issued late by a sweep still bears the day of the decision, and its number is
//! taken from that day's year.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shenpi_adapters::store::DocumentStore;
use shenpi_adapters::store::documents::{DocumentRow, NewDocument, Sealed};
use shenpi_engine::documents::{self as rules, DEFAULT_NUMBER, Occasion};
use shenpi_engine::model::{Outcome, RawLimit};
use shenpi_engine::runtime::{Event, InstanceState};

use super::super::chrome::{date_zh, year_of};
use super::super::names::WorkflowNames;
use super::super::state::App;

/// How often the sweep looks for documents no pass issued.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The issuing loop: a sweep at start, then one whenever the bus says a commit may call for a
/// document, and every [`SWEEP_EVERY`].
pub async fn run(app: App) {
    let wake = app.bus.documents_due.clone();
    loop {
        if let Err(e) = sweep(&app).await {
            tracing::warn!("official documents: {e}");
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// Issues the documents of every instance with events past what the pass has handled.
pub async fn sweep(app: &App) -> Result<usize, String> {
    let mut issued = 0;
    loop {
        let todo = app
            .db
            .documents_to_check(100)
            .await
            .map_err(|e| e.to_string())?;
        if todo.is_empty() {
            return Ok(issued);
        }
        let mut progressed = false;
        for (instance, seq) in todo {
            match issue_for(app, &instance).await {
                Ok(n) => {
                    issued += n;
                    app.db
                        .documents_checked(&instance, seq)
                        .await
                        .map_err(|e| e.to_string())?;
                    progressed = true;
                }
                // Left for the next sweep (a template that no longer renders, the database
                // away): said once per sweep, never skipped for good.
                Err(e) => tracing::warn!("official documents of {instance}: {e}"),
            }
        }
        if !progressed {
            return Ok(issued);
        }
    }
}

/// Issues the documents the instance calls for that it does not have yet; returns how many
/// were issued now. Marks its pre-approvals revoked when it ended revoked.
pub async fn issue_for(app: &App, id: &str) -> Result<usize, String> {
    let Some((row, st, events, ctx)) = app.instance(id).await.map_err(|e| e.body.message)? else {
        return Ok(0);
    };
    let def = &ctx.def;
    let wf = &def.workflow;
    let names = WorkflowNames(def);
    let project = app.project_of(id).await.map_err(|e| e.body.message)?;
    let project_name = project
        .as_ref()
        .map(|p| p.name.clone())
        .or_else(|| {
            row.meta
                .project
                .get("name")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| id.to_string());
    let applicant = project
        .as_ref()
        .map(|p| p.applicant().to_string())
        .unwrap_or_default();
    let pattern = wf
        .document_number
        .as_ref()
        .map_or(DEFAULT_NUMBER, |p| p.value.as_str());
    let number_tpl = shenpi_engine::template::parse(pattern).map_err(|e| e.to_string())?;
    let texts = &app.machine.validate_context().documents;
    let mut issued = 0;
    let mut have: Vec<DocumentRow> = app.db.documents_of(id).await.map_err(|e| e.to_string())?;
    let ended_at = events
        .iter()
        .rev()
        .find(|(_, _, e)| matches!(e, Event::InstanceEnded { .. }))
        .map(|(_, at, _)| *at);
    for due in rules::due(wf, &st) {
        let occasion = due.occasion.key();
        if have.iter().any(|d| d.occasion == occasion) {
            continue;
        }
        let at = match due.occasion {
            Occasion::PreApproval(p) => events
                .iter()
                .find(|(_, _, e)| matches!(e, Event::PreApproved { pre, .. } if *pre == p))
                .map(|(_, at, _)| *at),
            // Dated when the step approved, or when the last 容缺 promise was kept if later
            // (the 批复 waits for them).
            Occasion::Approved(t) => events
                .iter()
                .find(|(_, _, e)| matches!(e, Event::TaskDecided { task, .. } if *task == t))
                .map(|(_, at, _)| {
                    events
                        .iter()
                        .filter(|(_, _, e)| matches!(e, Event::FormalApproval { .. }))
                        .map(|(_, at, _)| *at)
                        .fold(*at, i64::max)
                }),
            Occasion::End | Occasion::Revocation(_) => ended_at,
        }
        .ok_or_else(|| format!("no event for {occasion}"))?;
        let src = texts
            .get(&due.spec.template.value)
            .ok_or_else(|| format!("no document template `{}`", due.spec.template.value))?;
        let body_tpl = shenpi_engine::template::parse(src).map_err(|e| e.to_string())?;
        let kind = due.spec.kind.value;
        let title = due
            .spec
            .title
            .clone()
            .unwrap_or_else(|| kind.name_zh().to_string());
        let issuer = names.department(&due.spec.issuer.value);
        let outcome = match due.occasion {
            Occasion::PreApproval(_) => "预批复（容缺受理）".to_string(),
            Occasion::Revocation(_) => "撤销".to_string(),
            Occasion::Approved(_) => rules::outcome_zh(Outcome::Approved).to_string(),
            Occasion::End => st
                .outcome
                .map(rules::outcome_zh)
                .unwrap_or("办结")
                .to_string(),
        };
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            vars.insert(k.to_string(), v);
        };
        put("project", project_name.clone());
        put("workflow", wf.name.clone());
        put("issuer", issuer.clone());
        put("date", date_zh(at));
        put("title", title.clone());
        put("applicant", applicant.clone());
        put("node", names.node(due.node));
        put("step", names.node(due.node));
        put("outcome", outcome.clone());
        match due.occasion {
            Occasion::PreApproval(p) => {
                let (materials, deadline) = promised(app, &st, &ctx.cal, p, &names);
                put("materials", materials);
                put("deadline", deadline);
                let limit = wf
                    .nodes
                    .iter()
                    .find(|n| n.id.value == due.node)
                    .and_then(|n| n.conditional.as_ref())
                    .map(|c| limit_zh(&c.limit.value))
                    .unwrap_or_default();
                put("limit", limit);
            }
            Occasion::Revocation(p) => {
                let breached: Vec<String> = st
                    .promises
                    .iter()
                    .filter(|q| q.pre == p && q.breached)
                    .map(|q| names.material(&q.material))
                    .collect();
                put("materials", breached.join("、"));
                let pre = have
                    .iter()
                    .find(|d| d.occasion == Occasion::PreApproval(p).key());
                put(
                    "pre_number",
                    pre.map(|d| d.number.clone()).unwrap_or_default(),
                );
                put(
                    "pre_date",
                    pre.map(|d| date_zh(d.issued_at)).unwrap_or_default(),
                );
            }
            // A 批复 may quote the approver's opinion.
            Occasion::Approved(t) => {
                let opinion = events.iter().find_map(|(_, _, e)| match e {
                    Event::TaskDecided { task, comment, .. } if *task == t => comment.clone(),
                    _ => None,
                });
                put("opinion", opinion.unwrap_or_default().trim().to_string());
            }
            // A refusal says why: the step that rejected and what was said (empty when a
            // gateway sent the case to its end).
            Occasion::End => {
                let rejection = rules::final_rejection(events.iter().map(|(_, _, e)| e));
                put(
                    "step",
                    rejection
                        .as_ref()
                        .map(|r| names.node(&r.node))
                        .unwrap_or_default(),
                );
                put(
                    "reason",
                    rejection
                        .as_ref()
                        .map(|r| reason_zh(r, &names))
                        .unwrap_or_default(),
                );
            }
        }
        let year = year_of(at);
        let doc = NewDocument {
            id: format!("doc-{}", random_code(12)?),
            instance: id.to_string(),
            occasion: occasion.clone(),
            kind: kind.code().to_string(),
            title,
            workflow_id: wf.id.value.clone(),
            year,
            issuer,
            project: project_name.clone(),
            outcome,
            issued_at: at,
            verify_code: random_code(20)?,
            chain_head: app.db.head_hash(id).await.map_err(|e| e.to_string())?,
        };
        let vars = Arc::new(vars);
        let seal = |seq: i64| -> Result<Sealed, String> {
            let mut n = BTreeMap::new();
            n.insert("year".to_string(), year.to_string());
            n.insert("seq".to_string(), seq.to_string());
            let number = number_tpl.render(&n).map_err(|e| e.to_string())?;
            let mut v = (*vars).clone();
            v.insert("number".to_string(), number.clone());
            let body = body_tpl.render(&v).map_err(|e| e.to_string())?;
            Ok(Sealed { number, body })
        };
        let (d, new) = app
            .db
            .issue_document(&doc, &seal)
            .await
            .map_err(|e| e.to_string())?;
        if new {
            issued += 1;
            tracing::info!("issued {} {} for {id}", d.title, d.number);
        }
        have.push(d);
    }
    if st.outcome == Some(Outcome::Revoked)
        && let Some(at) = ended_at
    {
        let by = have
            .iter()
            .find(|d| d.occasion.starts_with("revocation/"))
            .map(|d| d.id.clone());
        app.db
            .revoke_documents(id, "pre_approval", at, by.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(issued)
}

/// The materials a pre-approval waived, by name, and the last day of their commitments.
fn promised(
    _app: &App,
    st: &InstanceState,
    cal: &shenpi_engine::calendar::Calendar,
    pre: shenpi_engine::runtime::event::PreApprovalId,
    names: &WorkflowNames<'_>,
) -> (String, String) {
    let promises: Vec<_> = st.promises.iter().filter(|p| p.pre == pre).collect();
    let materials: Vec<String> = promises
        .iter()
        .map(|p| names.material(&p.material))
        .collect();
    let last = promises
        .iter()
        .filter_map(|p| p.clock.due(cal).ok().flatten())
        .max()
        .map(|t| {
            let d = shenpi_engine::runtime::deadline::last_day(t);
            format!("{}年{}月{}日", d.year(), d.month(), d.day())
        })
        .unwrap_or_default();
    (materials.join("、"), last)
}

/// The reasons of a final rejection as a 不予许可决定书 states them: the one opinion as given, or
/// each rejecting party's (a parallel step's branches) after its name, joined with `；`; the
/// closing punctuation is the template's. Without any reason given, that the application does
/// not meet the statutory conditions.
fn reason_zh(r: &rules::FinalRejection, names: &WorkflowNames<'_>) -> String {
    let given: Vec<_> = r
        .opinions
        .iter()
        .map(|o| (o, o.text.trim_end_matches(['。', '；', ';', '.', ' '])))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    match given.as_slice() {
        [] => "申请事项不符合法定条件、标准".to_string(),
        [(_, t)] if r.opinions.len() == 1 => t.to_string(),
        many => many
            .iter()
            .map(|(o, t)| format!("{}：{t}", names.party(&o.party)))
            .collect::<Vec<_>>()
            .join("；"),
    }
}

/// A limit as a document writes it: `20个工作日`.
fn limit_zh(raw: &RawLimit) -> String {
    use shenpi_engine::limit::{Limit, Unit};
    match Limit::parse(raw, false) {
        Ok(Limit { amount, unit }) => match unit {
            Unit::WorkingDays => format!("{amount}个工作日"),
            Unit::Days => format!("{amount}日"),
            Unit::Hours => format!("{amount}小时"),
        },
        Err(_) => String::new(),
    }
}

/// A random code of `n` characters from an alphabet without look-alikes (no 0/O, 1/I/L): 20 of
/// them carry about 99 bits, far past guessing.
pub fn random_code(n: usize) -> Result<String, String> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}
