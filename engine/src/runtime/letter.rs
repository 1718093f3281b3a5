//! The commitment letter (承诺书) of a 容缺 pre-approval.
//!
//! A step's `conditional.letter` names a document template; when the step pre-approves, `decide`
//! renders it with [`variables`] (nothing else: a template using a name outside
//! [`LETTER_VARS`] is refused at validation, so rendering cannot fail on a missing value) and
//! records the exact text and its SHA-256 ([`sha256_hex`]) in a `LetterIssued` event. The
//! applicant side signs that text (`SignLetter`, checked against the hash); the promise clocks
//! run from the approval either way.
//!
//! [`letters`] is how an instance's letters are read by people: the instance page and API, the
//! dossier (办件档案) and the 督办看板 ([`unsigned_overdue`]: not signed within `sign_within`
//! working days, counted on the same clock rule as every other limit).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::{Calendar, local_date};
use crate::compile::Definition;
use crate::limit::{Limit, Unit};
use crate::model::BreachAction;

use super::clock::{Colour, colour};
use super::deadline::last_day;
use super::event::PreApprovalId;
use super::policy;
use super::state::{InstanceState, Signature, Status};

/// Working days to sign a letter when the step's `sign_within` is absent.
pub const DEFAULT_SIGN_WITHIN: u32 = 3;

/// The variables a letter template may use (docs/language.md, "Commitment letters").
pub const LETTER_VARS: &[&str] = &[
    "project_name",
    "enterprise",
    "investment",
    "applicant",
    "materials",
    "material_list",
    "limit",
    "limit_days",
    "deadline",
    "consequence",
    "node",
    "department",
    "date",
    "sign_within",
];

/// What a letter is rendered from, gathered by `decide` at the pre-approval.
pub struct LetterFacts<'a> {
    pub project: &'a serde_json::Value,
    pub applicant: &'a str,
    /// The node's and department's names (their ids when the workflow gives none).
    pub node: &'a str,
    pub department: &'a str,
    /// The waived materials' names, in the order waived.
    pub materials: Vec<String>,
    /// The commitment limit, and the last day of it on the workflow's calendar (the promise
    /// clock's own due date).
    pub limit: Limit,
    pub deadline: Option<Date>,
    pub on_breach: &'a [BreachAction],
    pub issued: Timestamp,
    pub sign_within: Limit,
}

/// The values of [`LETTER_VARS`] for one letter.
pub fn variables(f: &LetterFacts<'_>) -> BTreeMap<String, String> {
    let field = |k: &str| {
        f.project
            .get(k)
            .and_then(value_text)
            .filter(|s| !s.trim().is_empty())
    };
    let mut v = BTreeMap::new();
    let mut put = |k: &str, x: String| {
        v.insert(k.to_string(), x);
    };
    put(
        "project_name",
        field("name").unwrap_or_else(|| "（未填写项目名称）".into()),
    );
    put(
        "enterprise",
        field("enterprise").unwrap_or_else(|| f.applicant.to_string()),
    );
    put(
        "investment",
        field("investment").unwrap_or_else(|| "—".into()),
    );
    put("applicant", f.applicant.to_string());
    put("materials", f.materials.join("、"));
    put(
        "material_list",
        f.materials
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{}. {m}", i + 1))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    put("limit", limit_zh(f.limit));
    put("limit_days", f.limit.amount.to_string());
    put(
        "deadline",
        f.deadline.map_or_else(|| "（日历未覆盖）".into(), date_zh),
    );
    put("consequence", consequence_zh(f.on_breach));
    put("node", f.node.to_string());
    put("department", f.department.to_string());
    put("date", date_zh(local_date(f.issued)));
    put("sign_within", f.sign_within.amount.to_string());
    v
}

/// A project field's value as a letter writes it: text as is, a whole number without `.0`.
fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        }),
        serde_json::Value::Bool(b) => Some(if *b { "是" } else { "否" }.into()),
        _ => None,
    }
}

/// `2026年4月1日`.
pub fn date_zh(d: Date) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

/// `20个工作日`, `30个自然日`, `8小时`.
pub fn limit_zh(l: Limit) -> String {
    match l.unit {
        Unit::WorkingDays => format!("{}个工作日", l.amount),
        Unit::Days => format!("{}个自然日", l.amount),
        Unit::Hours => format!("{}小时", l.amount),
    }
}

/// The consequences of a breach as the rule's `on_breach` lists them, in Chinese.
pub fn consequence_zh(actions: &[BreachAction]) -> String {
    let words: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            BreachAction::Revoke => "撤销预批复",
            BreachAction::CreditMark => "记入信用记录",
            BreachAction::Escalate => "挂牌督办",
        })
        .collect();
    if words.is_empty() {
        "依法依规处理".into()
    } else {
        words.join("、")
    }
}

/// The SHA-256 of a letter's text (its UTF-8 bytes), in lower-case hex: what a signature binds.
pub fn sha256_hex(text: &str) -> SmolStr {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    SmolStr::new(out)
}

/// One letter as people read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LetterView {
    pub pre: PreApprovalId,
    pub node: SmolStr,
    pub template: SmolStr,
    pub text: String,
    pub sha256: SmolStr,
    #[serde(with = "crate::calendar::china_time")]
    pub issued_at: Timestamp,
    /// The last day to sign it: the `sign_within`-th working day after the pre-approval (a
    /// date, as pages print it); absent when the calendar does not cover it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_by: Option<Date>,
    /// `sign_within` as written (`3wd`).
    pub sign_within: String,
    /// Working days since the pre-approval (its own day not counted), on the workflow's
    /// calendar.
    pub working_days_since: u32,
    /// Unsigned after `sign_within`, while the instance runs: the 督办看板 lists it.
    pub overdue: bool,
    /// Who may sign it: the instance's applicant parties ([`policy::applicant_parties`]).
    pub signers: Vec<SmolStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<Signature>,
}

/// The letters of an instance at `now`, in the order issued. This is what the instance page,
/// the API, the dossier and the 督办看板 read.
pub fn letters(
    def: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    now: Timestamp,
) -> Vec<LetterView> {
    let signers: Vec<SmolStr> = policy::applicant_parties(&def.plan, &st.applicant, &st.project)
        .map(SmolStr::new)
        .collect();
    st.letters
        .iter()
        .map(|l| {
            let due = l.clock.due(cal).ok().flatten();
            let late = colour(&l.clock, cal, now, 1000).is_ok_and(|r| r.colour == Colour::Red);
            LetterView {
                pre: l.pre,
                node: l.node.clone(),
                template: l.template.clone(),
                text: l.text.clone(),
                sha256: l.sha256.clone(),
                issued_at: l.clock.opened_at,
                sign_by: due.map(last_day),
                sign_within: l.clock.limit.to_string(),
                working_days_since: l.clock.used_at(cal, now).unwrap_or(0),
                overdue: l.signed.is_none() && late && st.status == Status::Running,
                signers: signers.clone(),
                signed: l.signed.clone(),
            }
        })
        .collect()
}

/// The letters of an instance not signed within their `sign_within` (for the 督办看板).
pub fn unsigned_overdue(
    def: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    now: Timestamp,
) -> Vec<LetterView> {
    let mut v = letters(def, cal, st, now);
    v.retain(|l| l.overdue);
    v
}
