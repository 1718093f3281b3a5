//! 政策模拟 (what-if): a version of a workflow run against many projects on virtual time.
//!
//! Policy staff ask two questions before a rule change: what would the new rule do to the
//! projects we have, and how does it compare with the rule in force? [`compare`] answers both by
//! running every project of a [`Cohort`] through two definitions with the same draws (common
//! random numbers: a project's fields, each department's response and each 容缺 or rejection are
//! drawn from the project, the task's name and its occurrence, never from the order things
//! happen), so a difference in the figures is the rules' difference, not noise.
//!
//! A run drives the pure runtime as the server does: every decision is a command through
//! [`decide`], every timer fires at its own instant (yellow warnings, deadlines, escalation rungs,
//! 挂牌督办, promise breaches), nothing touches live data. Who acts, when and how is the cohort's:
//! a task is decided a drawn number of working days after it opens (per node, else per
//! department, else the default), a waived material is supplied a drawn number of working days
//! after the promise, each stage's required elements are attached by their department.
//!
//! A cohort comes from a population file ([`Population`], YAML, generated projects) or from the
//! projects a database holds (the CLI reads them and each department's observed response times
//! into a [`Cohort`] directly).
//!
//! ```yaml
//! seed: 7                      # the same seed gives the same figures
//! start: 2027-01-04            # the first arrivals; the horizon counts from here
//! per_month: 40                # projects arriving each month, spread over its days
//! months: 12
//! fields:                      # the project fields, by the workflow's field ids
//!   tier: { choose: { 重中之重: 1, 省级重大: 2, 年度省级重大: 7 } }
//!   investment: { between: [5000, 800000] }
//!   funding: { value: 政府投资 }
//! respond:                     # working days from a task opening to its decision
//!   default: { between: [1, 4] }
//!   departments: { zrzy: { between: [3, 9] } }
//!   nodes: { intake: { value: 1 } }
//!   applicant: { between: [5, 25] }   # supplying a promised (容缺) material
//! conditional: 30%             # decisions granting 容缺 where the node allows it
//! reject: 5%                   # final rejections where the node allows them
//! ```

use std::collections::{BTreeMap, HashMap};

use jiff::civil::{Date, Time};
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calendar::{self, Calendar};
use crate::compile::{Definition, Party};
use crate::model::{Action, FieldType, Outcome};
use crate::runtime::event::{ClockRef, TaskKind, TimerKind};
use crate::runtime::policy::addressee;
use crate::runtime::state::{PromiseStatus, StageStatus, Status};
use crate::runtime::{
    Actor, Colour, Command, CommandEnvelope, Event, InstanceState, TaskId, TimerId, apply, decide,
};

/// A population file: how many projects arrive, what they look like, how fast everyone answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    #[serde(default)]
    pub seed: u64,
    pub start: Date,
    pub per_month: u32,
    #[serde(default = "twelve")]
    pub months: u32,
    #[serde(default)]
    pub fields: BTreeMap<String, Dist>,
    #[serde(default)]
    pub respond: Respond,
    #[serde(default)]
    pub conditional: Option<Share>,
    #[serde(default)]
    pub reject: Option<Share>,
}

fn twelve() -> u32 {
    12
}

/// A distribution to draw from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always this value.
    Value(serde_json::Value),
    /// Uniformly between the two bounds (whole numbers when both are whole).
    Between([f64; 2]),
    /// One of the keys, with the given weights.
    Choose(BTreeMap<String, f64>),
    /// One of these values, each equally likely (observed response times).
    Sample(Vec<f64>),
}

/// Response times in working days.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    #[serde(default)]
    pub default: Option<Dist>,
    #[serde(default)]
    pub departments: BTreeMap<String, Dist>,
    #[serde(default)]
    pub nodes: BTreeMap<String, Dist>,
    #[serde(default)]
    pub applicant: Option<Dist>,
}

/// A share, written `30%` or `0.3`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Share {
    Number(f64),
    Text(String),
}

impl Share {
    fn value(&self) -> Option<f64> {
        let v = match self {
            Share::Number(n) => *n,
            Share::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
                None => t.trim().parse::<f64>().ok()?,
            },
        };
        (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
    }
}

/// What is wrong with a population file, and where (a path of keys and, when found, a line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PopulationError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PopulationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "第 {l} 行 {}：{}", self.path, self.message),
            None => write!(f, "{}：{}", self.path, self.message),
        }
    }
}

/// The projects and behaviour one comparison runs on.
#[derive(Debug, Clone)]
pub struct Cohort {
    pub seed: u64,
    pub projects: Vec<SimProject>,
    pub respond: Respond,
    pub conditional: f64,
    pub reject: f64,
}

/// One project: when it arrives and its fields.
#[derive(Debug, Clone)]
pub struct SimProject {
    pub arrival: Timestamp,
    pub fields: serde_json::Value,
}

const DEFAULT_RESPONSE: Dist = Dist::Between([1.0, 3.0]);
const DEFAULT_APPLICANT: Dist = Dist::Between([5.0, 15.0]);
/// The longest response a cohort may declare, in working days (about two years).
const MAX_RESPONSE: f64 = 500.0;

impl Population {
    /// Reads a population file; the error says where it is wrong.
    pub fn from_yaml(src: &str) -> Result<Population, Vec<PopulationError>> {
        serde_saphyr::from_str(src).map_err(|e| {
            vec![PopulationError {
                path: "(文件)".into(),
                line: None,
                message: format!("无法读取总体文件：{e}"),
            }]
        })
    }

    /// The cohort this file describes for `def`, or every way the file does not fit it.
    /// `src` is the file's text, for line numbers.
    pub fn cohort(&self, def: &Definition, src: &str) -> Result<Cohort, Vec<PopulationError>> {
        let mut errs = Vec::new();
        let mut err = |path: String, message: String| {
            let line = locate(src, &path);
            errs.push(PopulationError {
                path,
                line,
                message,
            });
        };
        if self.per_month == 0 || self.per_month > 100_000 {
            err(
                "per_month".into(),
                format!(
                    "每月到达的项目数应在 1 到 100000 之间，这里是 {}",
                    self.per_month
                ),
            );
        }
        if self.months == 0 || self.months > 120 {
            err(
                "months".into(),
                format!("到达的月数应在 1 到 120 之间，这里是 {}", self.months),
            );
        }
        let plan = &def.plan;
        for (id, dist) in &self.fields {
            let path = format!("fields.{id}");
            match plan.fields.iter().find(|f| f.0 == id.as_str()) {
                None => err(
                    path,
                    format!(
                        "工作流程「{}」没有字段 {id}（可用：{}）",
                        def.workflow.name,
                        plan.fields
                            .iter()
                            .map(|f| f.0.as_str())
                            .collect::<Vec<_>>()
                            .join("、")
                    ),
                ),
                Some((_, ty, _, values)) => {
                    if let Some(m) = check_field_dist(dist, *ty, values) {
                        err(path, m);
                    }
                }
            }
        }
        let r = &self.respond;
        let responses = r
            .default
            .iter()
            .map(|d| ("respond.default".to_string(), d))
            .chain(r.applicant.iter().map(|d| ("respond.applicant".into(), d)))
            .chain(
                r.departments
                    .iter()
                    .map(|(k, d)| (format!("respond.departments.{k}"), d)),
            )
            .chain(
                r.nodes
                    .iter()
                    .map(|(k, d)| (format!("respond.nodes.{k}"), d)),
            );
        for (path, d) in responses {
            if let Some(m) = check_response_dist(d) {
                err(path, m);
            }
        }
        for k in r.departments.keys() {
            if !plan.departments.contains_key(k.as_str()) {
                err(
                    format!("respond.departments.{k}"),
                    format!("工作流程没有部门 {k}"),
                );
            }
        }
        for k in r.nodes.keys() {
            if def.node(k).is_none() {
                err(
                    format!("respond.nodes.{k}"),
                    format!("工作流程没有节点 {k}"),
                );
            }
        }
        let mut share = |name: &str, s: &Option<Share>| match s {
            None => 0.0,
            Some(s) => s.value().unwrap_or_else(|| {
                err(
                    name.into(),
                    format!("比例应写成 0% 到 100%（或 0 到 1），这里是 {s:?}"),
                );
                0.0
            }),
        };
        let conditional = share("conditional", &self.conditional);
        let reject = share("reject", &self.reject);
        if conditional + reject > 1.0 + 1e-9 {
            err(
                "reject".into(),
                format!(
                    "容缺比例与不予批准比例之和超过 100%（{:.0}% + {:.0}%）",
                    conditional * 100.0,
                    reject * 100.0
                ),
            );
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut projects = Vec::new();
        for m in 0..self.months {
            let Some(first) = self.start.checked_add((m as i64).months()).ok() else {
                break;
            };
            let days = i64::from(first.days_in_month()) - i64::from(first.day()) + 1;
            for k in 0..self.per_month {
                let offset = i64::from(k) * days / i64::from(self.per_month);
                let Ok(day) = first.checked_add(offset.days()) else {
                    continue;
                };
                let ix = projects.len() as u64;
                let arrival =
                    calendar::from_local_datetime(day.to_datetime(Time::constant(9, 30, 0, 0)));
                let fields = self.fields_of(def, ix);
                projects.push(SimProject { arrival, fields });
            }
        }
        Ok(Cohort {
            seed: self.seed,
            projects,
            respond: self.respond.clone(),
            conditional,
            reject,
        })
    }

    /// The fields of generated project `ix`: drawn where the file says, the required ones
    /// filled with a plain value of their type otherwise.
    fn fields_of(&self, def: &Definition, ix: u64) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (id, ty, required, values) in &def.plan.fields {
            let v = match self.fields.get(id.as_str()) {
                Some(d) => draw_value(d, *ty, unit(&[self.seed, ix, hash(id), 1])),
                None if *required || id == "name" => plain(id, *ty, values, ix),
                None => continue,
            };
            out.insert(id.to_string(), v);
        }
        serde_json::Value::Object(out)
    }
}

fn check_field_dist(dist: &Dist, ty: FieldType, values: &[SmolStr]) -> Option<String> {
    let numeric = matches!(ty, FieldType::Number | FieldType::Int);
    match dist {
        Dist::Between([lo, hi]) => {
            if !numeric {
                Some("只有数值字段可以写 between".into())
            } else if !lo.is_finite() || !hi.is_finite() || lo > hi {
                Some(format!("下限 {lo} 大于上限 {hi}"))
            } else {
                None
            }
        }
        Dist::Sample(v) if v.is_empty() => Some("sample 至少要有一个值".into()),
        Dist::Sample(_) if !numeric => Some("只有数值字段可以写 sample".into()),
        Dist::Sample(_) => None,
        Dist::Choose(w) => {
            if let Some(m) = check_weights(w) {
                return Some(m);
            }
            if ty == FieldType::Enum
                && let Some(k) = w.keys().find(|k| !values.iter().any(|v| v == k.as_str()))
            {
                return Some(format!(
                    "「{k}」不是这个字段的取值（可选：{}）",
                    values
                        .iter()
                        .map(SmolStr::as_str)
                        .collect::<Vec<_>>()
                        .join("、")
                ));
            }
            if numeric && let Some(k) = w.keys().find(|k| k.parse::<f64>().is_err()) {
                return Some(format!("数值字段的取值「{k}」不是数"));
            }
            None
        }
        Dist::Value(v) => {
            let ok = match ty {
                FieldType::Number | FieldType::Int => v.is_number(),
                FieldType::Bool => v.is_boolean(),
                FieldType::List => v.is_array(),
                FieldType::Enum => v.as_str().is_some_and(|s| values.iter().any(|x| x == s)),
                FieldType::String | FieldType::User | FieldType::Date => v.is_string(),
            };
            (!ok).then(|| format!("值 {v} 不符合字段的类型"))
        }
    }
}

fn check_weights(w: &BTreeMap<String, f64>) -> Option<String> {
    if w.is_empty() {
        return Some("choose 至少要有一个取值".into());
    }
    if let Some((k, x)) = w.iter().find(|(_, x)| !x.is_finite() || **x < 0.0) {
        return Some(format!("「{k}」的权重 {x} 不能为负"));
    }
    if w.values().sum::<f64>() <= 0.0 {
        return Some("权重之和为 0，无从抽取".into());
    }
    None
}

fn check_response_dist(d: &Dist) -> Option<String> {
    let ok = |x: f64| x.is_finite() && (0.0..=MAX_RESPONSE).contains(&x);
    match d {
        Dist::Value(v) => match v.as_f64() {
            Some(x) if ok(x) => None,
            _ => Some(format!(
                "办理用时应是 0 到 {MAX_RESPONSE} 个工作日，这里是 {v}"
            )),
        },
        Dist::Between([lo, hi]) => {
            if !ok(*lo) || !ok(*hi) {
                Some(format!(
                    "办理用时应是 0 到 {MAX_RESPONSE} 个工作日，这里是 {lo} 到 {hi}"
                ))
            } else if lo > hi {
                Some(format!("下限 {lo} 大于上限 {hi}"))
            } else {
                None
            }
        }
        Dist::Sample(v) if v.is_empty() => Some("sample 至少要有一个值".into()),
        Dist::Sample(v) => v
            .iter()
            .find(|x| !ok(**x))
            .map(|x| format!("办理用时 {x} 不在 0 到 {MAX_RESPONSE} 个工作日之间")),
        Dist::Choose(w) => check_weights(w).or_else(|| {
            w.keys()
                .find(|k| k.parse::<f64>().ok().is_none_or(|x| !ok(x)))
                .map(|k| format!("办理用时「{k}」不是 0 到 {MAX_RESPONSE} 之间的数"))
        }),
    }
}

/// The line of the last key of a dotted path (`fields.tier`): each key searched below the
/// previous one, deeper indented.
fn locate(src: &str, path: &str) -> Option<usize> {
    let mut from = 0;
    let mut indent: Option<usize> = None;
    let lines: Vec<&str> = src.lines().collect();
    let mut found = None;
    for key in path.split('.') {
        let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start();
            let i = l.len() - t.len();
            indent.is_none_or(|p| i > p)
                && (t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":")))
        });
        let (n, l) = hit?;
        indent = Some(l.len() - l.trim_start().len());
        from = n + 1;
        found = Some(n + 1);
    }
    found
}

fn plain(id: &str, ty: FieldType, values: &[SmolStr], ix: u64) -> serde_json::Value {
    use serde_json::Value;
    match ty {
        FieldType::Number | FieldType::Int => Value::from(0),
        FieldType::Bool => Value::Bool(false),
        FieldType::List => Value::Array(Vec::new()),
        FieldType::Enum => values
            .first()
            .map_or(Value::Null, |v| Value::String(v.to_string())),
        FieldType::User => Value::String("模拟帮办专员".into()),
        FieldType::Date => Value::String("2027-01-04".into()),
        FieldType::String if id == "name" => Value::String(format!("模拟项目{}", ix + 1)),
        FieldType::String => Value::String("模拟".into()),
    }
}

fn draw_value(d: &Dist, ty: FieldType, u: f64) -> serde_json::Value {
    use serde_json::Value;
    let number = |x: f64| {
        if ty == FieldType::Int {
            Value::from(x.round() as i64)
        } else {
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
    };
    match d {
        Dist::Value(v) => v.clone(),
        Dist::Between(_) | Dist::Sample(_) => number(draw_number(d, u)),
        Dist::Choose(w) => {
            let k = choose(w, u);
            match ty {
                FieldType::Number | FieldType::Int => number(k.parse().unwrap_or(0.0)),
                _ => Value::String(k.to_string()),
            }
        }
    }
}

fn draw_number(d: &Dist, u: f64) -> f64 {
    match d {
        Dist::Value(v) => v.as_f64().unwrap_or(0.0),
        Dist::Between([lo, hi]) => {
            if lo.fract() == 0.0 && hi.fract() == 0.0 {
                // Whole bounds: each whole number in [lo, hi] equally likely.
                (lo + (u * (hi - lo + 1.0)).floor()).min(*hi)
            } else {
                lo + u * (hi - lo)
            }
        }
        Dist::Sample(v) => {
            let i = ((u * v.len() as f64) as usize).min(v.len().saturating_sub(1));
            v.get(i).copied().unwrap_or(0.0)
        }
        Dist::Choose(w) => choose(w, u).parse().unwrap_or(0.0),
    }
}

fn choose(w: &BTreeMap<String, f64>, u: f64) -> &str {
    let total: f64 = w.values().sum();
    let mut acc = 0.0;
    for (k, x) in w {
        acc += x / total;
        if u < acc {
            return k;
        }
    }
    w.keys().next_back().map_or("", String::as_str)
}

/// A uniform number in [0, 1) from the given words (splitmix64 over a fold).
fn unit(words: &[u64]) -> f64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for w in words {
        h = mix(h ^ w.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a name, so draws are keyed by names rather than by arrival order.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// p50 and p90 (nearest rank) of a set of working-day durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50: Option<u32>,
    pub p90: Option<u32>,
}

impl Spread {
    fn of(mut v: Vec<u32>) -> Spread {
        v.sort_unstable();
        let rank = |p: usize| {
            let n = v.len();
            (n > 0).then(|| v[((n * p).div_ceil(100)).clamp(1, n) - 1])
        };
        Spread {
            count: v.len(),
            p50: rank(50),
            p90: rank(90),
        }
    }
}

/// What one version did to the cohort by the horizon.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Projects that arrived before the horizon.
    pub projects: u32,
    /// Projects whose start the version refused (a required field, a rule that does not hold).
    pub refused_start: u32,
    pub approved: u32,
    pub rejected: u32,
    pub revoked: u32,
    pub withdrawn: u32,
    pub open_at_horizon: u32,
    /// Working days from start to end, over the projects that ended.
    pub lead: Spread,
    /// Working days in each stage (by stage id), over the visits that closed.
    pub stages: BTreeMap<String, Spread>,
    /// Working days from a task opening to its decision, by department id (`""`: the applicant).
    pub departments: BTreeMap<String, Spread>,
    pub tasks: u32,
    /// Tasks that went yellow / red (their limit ran out).
    pub yellow: u32,
    pub red: u32,
    /// Red tasks still open at the horizon.
    pub overdue_open: u32,
    /// Escalation rungs that fired, and 挂牌督办 among them.
    pub escalations: u32,
    pub supervised: u32,
    /// Projects per channel chosen at start (green channel share = green / projects).
    pub channels: BTreeMap<String, u32>,
    pub promises: u32,
    pub promises_kept: u32,
    pub promises_breached: u32,
    /// Actions of the cohort the version refused (they are left undone: the task waits).
    pub refused_actions: u32,
    /// The refusals by command and code (`approve: not_assigned`).
    pub refusals: BTreeMap<String, u32>,
}

/// The two versions side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub base: Figures,
    pub draft: Figures,
}

/// Runs `cohort` through `base` and `draft` up to `horizon`.
pub fn compare(
    base: &Definition,
    draft: &Definition,
    cal: &Calendar,
    cohort: &Cohort,
    horizon: Timestamp,
) -> Comparison {
    Comparison {
        base: run(base, cal, cohort, horizon),
        draft: run(draft, cal, cohort, horizon),
    }
}

/// Runs `cohort` through one version up to `horizon`.
pub fn run(def: &Definition, cal: &Calendar, cohort: &Cohort, horizon: Timestamp) -> Figures {
    let mut acc = Acc::default();
    for (ix, p) in cohort.projects.iter().enumerate() {
        if p.arrival >= horizon {
            continue;
        }
        let mut r = ProjectRun {
            def,
            cal,
            cohort,
            ix: ix as u64,
            state: InstanceState::default(),
            now: p.arrival,
            pending: Vec::new(),
            seq: 0,
            occurrences: HashMap::new(),
            escalation_timers: Vec::new(),
            opened: HashMap::new(),
            visits: HashMap::new(),
            red: Vec::new(),
            acc: &mut acc,
        };
        r.go(p, horizon);
    }
    acc.finish()
}

#[derive(Default)]
struct Acc {
    f: Figures,
    lead: Vec<u32>,
    stages: BTreeMap<String, Vec<u32>>,
    departments: BTreeMap<String, Vec<u32>>,
}

impl Acc {
    fn finish(mut self) -> Figures {
        self.f.lead = Spread::of(self.lead);
        self.f.stages = self
            .stages
            .into_iter()
            .map(|(k, v)| (k, Spread::of(v)))
            .collect();
        self.f.departments = self
            .departments
            .into_iter()
            .map(|(k, v)| (k, Spread::of(v)))
            .collect();
        self.f
    }
}

/// Something the cohort does at a time.
#[derive(Debug, Clone)]
enum Act {
    Decide(TaskId),
    Supply(SmolStr),
    Attach {
        element: SmolStr,
        department: SmolStr,
    },
}

struct ProjectRun<'a> {
    def: &'a Definition,
    cal: &'a Calendar,
    cohort: &'a Cohort,
    ix: u64,
    state: InstanceState,
    now: Timestamp,
    pending: Vec<(Timestamp, u64, Act)>,
    seq: u64,
    /// How often a name was drawn for (the third 驳回 round of a node draws anew).
    occurrences: HashMap<SmolStr, u64>,
    escalation_timers: Vec<TimerId>,
    opened: HashMap<TaskId, (Timestamp, SmolStr)>,
    visits: HashMap<crate::runtime::event::StageVisitId, (SmolStr, Timestamp)>,
    red: Vec<TaskId>,
    acc: &'a mut Acc,
}

const APPLICANT: &str = "模拟项目单位";
/// More events than any real project has: a version that loops is cut off here.
const MAX_STEPS: usize = 20_000;

impl ProjectRun<'_> {
    fn go(&mut self, p: &SimProject, horizon: Timestamp) {
        self.acc.f.projects += 1;
        let start = Command::Start {
            project: p.fields.clone(),
            channel: None,
        };
        if self.exec(applicant(), start).is_err() {
            self.acc.f.refused_start += 1;
            return;
        }
        for _ in 0..MAX_STEPS {
            if self.state.status != Status::Running {
                break;
            }
            let timer = self
                .state
                .timers
                .iter()
                .min_by_key(|t| (t.due, t.id))
                .map(|t| (t.due, t.id));
            let act = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, (t, s, _))| (*t, *s))
                .map(|(i, (t, _, _))| (*t, i));
            let timer_first = match (timer, act) {
                (Some((due, _)), Some((t, _))) => due <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if let (true, Some((due, id))) = (timer_first, timer) {
                if due >= horizon {
                    break;
                }
                self.now = self.now.max(due);
                if self
                    .exec(Actor::system(), Command::TimerFired { timer: id })
                    .is_err()
                {
                    // A timer the engine will not fire would be found again forever.
                    break;
                }
            } else if let Some((t, i)) = act {
                if t >= horizon {
                    break;
                }
                self.now = self.now.max(t);
                let (_, _, act) = self.pending.swap_remove(i);
                self.act(act);
            }
        }
        match self.state.outcome {
            Some(o) if self.state.status == Status::Ended => {
                let f = &mut self.acc.f;
                match o {
                    Outcome::Approved => f.approved += 1,
                    Outcome::Rejected => f.rejected += 1,
                    Outcome::Revoked => f.revoked += 1,
                    Outcome::Withdrawn => f.withdrawn += 1,
                }
                self.acc.lead.push(self.days(p.arrival, self.now));
            }
            _ => self.acc.f.open_at_horizon += 1,
        }
        let open_red = self
            .red
            .iter()
            .filter(|t| {
                self.state
                    .tasks
                    .iter()
                    .any(|x| x.spec.task == **t && x.is_open())
            })
            .count();
        self.acc.f.overdue_open += open_red as u32;
    }

    fn act(&mut self, act: Act) {
        let decided = match act {
            Act::Decide(t) => Some(t),
            _ => None,
        };
        let res = match act {
            Act::Decide(task) => {
                let Some(t) = self.state.tasks.iter().find(|t| t.spec.task == task) else {
                    return;
                };
                if !t.is_open() || t.suspended {
                    return;
                }
                let actor = actor_for(&addressee(t, APPLICANT), self.def);
                let (kind, node, label) = (t.spec.kind, t.spec.node.clone(), t.spec.label.clone());
                let cmd = self.decision(kind, &node, &label, task);
                match self.exec(actor.clone(), cmd.clone()) {
                    Err(_) if t_needs_claim(&self.state, task) => self
                        .exec(actor.clone(), Command::Claim { task })
                        .and_then(|()| self.exec(actor, cmd)),
                    r => r,
                }
            }
            Act::Supply(material) => {
                let open = self
                    .state
                    .promises
                    .iter()
                    .any(|p| p.material == material && p.status == PromiseStatus::Open);
                if !open {
                    return;
                }
                self.exec(
                    applicant(),
                    Command::SupplyMaterial {
                        material,
                        files: Vec::new(),
                    },
                )
            }
            Act::Attach {
                element,
                department,
            } => {
                if self.state.elements.iter().any(|e| {
                    e.element == element
                        && e.stage.is_some_and(|s| {
                            self.state
                                .stages
                                .iter()
                                .any(|v| v.id == s && v.status == StageStatus::Open)
                        })
                }) {
                    return;
                }
                let fields = self.element_fields(&element);
                let actor = Actor {
                    name: SmolStr::new(format!("模拟:{department}")),
                    department: Some(department),
                    roles: Vec::new(),
                };
                self.exec(actor, Command::AttachElement { element, fields })
            }
        };
        if let Err(code) = res {
            // An approver whose stage still lacks its elements waits for them: the decision
            // is taken again once the last one due is attached.
            if let (Some(task), true) = (decided, code.ends_with(": stage_cannot_close")) {
                let last = self
                    .pending
                    .iter()
                    .filter(|(_, _, a)| matches!(a, Act::Attach { .. }))
                    .map(|(t, _, _)| *t)
                    .max();
                if let Some(at) = last {
                    self.schedule(at, Act::Decide(task));
                    return;
                }
            }
            self.acc.f.refused_actions += 1;
            *self.acc.f.refusals.entry(code).or_default() += 1;
        }
    }

    /// The cohort's decision on a task: 容缺, a final rejection or an approval, as drawn.
    fn decision(&mut self, kind: TaskKind, node: &str, label: &str, task: TaskId) -> Command {
        match kind {
            TaskKind::Verify => {
                return Command::VerifyMaterial {
                    task,
                    accepted: true,
                    reason: None,
                };
            }
            TaskKind::Cosign => {
                return Command::Approve {
                    task,
                    comment: None,
                };
            }
            TaskKind::Work => {}
        }
        let u = self.draw(label, 2);
        let plan = self
            .def
            .node_ix(node)
            .and_then(|i| self.def.plan.nodes.get(i));
        let allows = |a| plan.is_some_and(|p| p.allows(a));
        let reject = self.cohort.reject;
        if u < reject && allows(Action::Reject) {
            return Command::Reject {
                task,
                to: None,
                reason: Some("模拟：不予批准".into()),
            };
        }
        let waivable = plan
            .and_then(|p| p.conditional.as_ref())
            .map(|c| c.waivable.clone())
            .unwrap_or_default();
        if u < reject + self.cohort.conditional
            && allows(Action::Conditional)
            && !waivable.is_empty()
            // A project already holding a pre-approval is not granted another one.
            && self.state.pre_approvals.is_empty()
        {
            return Command::ApproveConditional {
                task,
                waive: waivable,
                limit: None,
                comment: None,
            };
        }
        Command::Approve {
            task,
            comment: None,
        }
    }

    /// A number in [0, 1) for the next draw on `name` in this project.
    fn draw(&mut self, name: &str, purpose: u64) -> f64 {
        let n = self.occurrences.entry(SmolStr::new(name)).or_insert(0);
        *n += 1;
        unit(&[self.cohort.seed, self.ix, hash(name), purpose, *n])
    }

    /// Plain values for an element's required fields (an enum's first value).
    fn element_fields(&self, element: &str) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(k) = self
            .def
            .workflow
            .elements
            .iter()
            .find(|k| k.id.value == element)
        {
            for f in k.fields.iter().filter(|f| f.required) {
                let values: Vec<SmolStr> =
                    f.values.iter().map(|v| SmolStr::new(&v.value)).collect();
                out.insert(
                    f.id.value.clone(),
                    plain(&f.id.value, f.ty.value, &values, self.ix),
                );
            }
        }
        serde_json::Value::Object(out)
    }

    /// Runs one command now; applies its events and lets the cohort react to them.
    fn exec(&mut self, actor: Actor, command: Command) -> Result<(), String> {
        let env = CommandEnvelope { actor, command };
        let events = decide(self.def, self.cal, &self.state, &env, self.now)
            .map_err(|r| format!("{}: {}", command_name(&env.command), r.code()))?;
        for e in &events {
            apply(&mut self.state, e);
            self.observe(e);
        }
        Ok(())
    }

    fn observe(&mut self, e: &Event) {
        let now = self.now;
        match e {
            Event::ChannelChosen { channel, .. } => {
                *self.acc.f.channels.entry(channel.to_string()).or_default() += 1;
            }
            Event::TaskOpened(t) => {
                self.acc.f.tasks += 1;
                let department = t
                    .department
                    .clone()
                    .or_else(|| match &t.assignment {
                        Party::Department(d) => Some(d.clone()),
                        Party::Role(r) => self.def.plan.role_department.get(r).cloned(),
                        Party::User(_) => None,
                    })
                    .unwrap_or_default();
                let dist = self
                    .cohort
                    .respond
                    .nodes
                    .get(t.node.as_str())
                    .or_else(|| self.cohort.respond.departments.get(department.as_str()))
                    .or(self.cohort.respond.default.as_ref())
                    .unwrap_or(&DEFAULT_RESPONSE)
                    .clone();
                let u = self.draw(&t.label, 1);
                let at = self.after(draw_number(&dist, u));
                self.opened.insert(t.task, (now, department));
                self.schedule(at, Act::Decide(t.task));
            }
            Event::TaskDecided { task, .. } => {
                if let Some((at, dept)) = self.opened.remove(task) {
                    let d = self.days(at, now);
                    self.acc
                        .departments
                        .entry(dept.to_string())
                        .or_default()
                        .push(d);
                }
            }
            Event::StageEntered { visit, stage, .. } => {
                self.visits.insert(*visit, (stage.clone(), now));
                let Some(plan) = self.def.plan.stages.iter().find(|s| s.id == *stage) else {
                    return;
                };
                for el in plan.elements.clone() {
                    let dist = self
                        .cohort
                        .respond
                        .departments
                        .get(el.from.as_str())
                        .or(self.cohort.respond.default.as_ref())
                        .unwrap_or(&DEFAULT_RESPONSE)
                        .clone();
                    let u = self.draw(&format!("{stage}.{}", el.element), 3);
                    let at = self.after(draw_number(&dist, u));
                    self.schedule(
                        at,
                        Act::Attach {
                            element: el.element.clone(),
                            department: el.from.clone(),
                        },
                    );
                }
            }
            Event::StageClosed { visit } | Event::StageLeft { visit } => {
                if let Some((stage, at)) = self.visits.remove(visit) {
                    let d = self.days(at, now);
                    self.acc
                        .stages
                        .entry(stage.to_string())
                        .or_default()
                        .push(d);
                }
            }
            Event::PromiseMade { material, .. } => {
                self.acc.f.promises += 1;
                let dist = self
                    .cohort
                    .respond
                    .applicant
                    .clone()
                    .unwrap_or(DEFAULT_APPLICANT);
                let u = self.draw(&format!("promise.{material}"), 4);
                let at = self.after(draw_number(&dist, u));
                self.schedule(at, Act::Supply(material.clone()));
            }
            Event::MaterialVerified { accepted: true, .. } => self.acc.f.promises_kept += 1,
            Event::PromiseBreached { .. } => self.acc.f.promises_breached += 1,
            Event::Warning {
                target: ClockRef::Task(t),
                colour,
            } => match colour {
                Colour::Yellow => self.acc.f.yellow += 1,
                Colour::Red => {
                    self.acc.f.red += 1;
                    self.red.push(*t);
                }
                Colour::Green => {}
            },
            Event::TimerArmed(t) => {
                if matches!(t.kind, TimerKind::Escalation { .. }) {
                    self.escalation_timers.push(t.id);
                }
            }
            Event::TimerFired { timer } if self.escalation_timers.contains(timer) => {
                self.acc.f.escalations += 1;
            }
            Event::Supervised { .. } => self.acc.f.supervised += 1,
            _ => {}
        }
    }

    fn schedule(&mut self, at: Timestamp, act: Act) {
        self.seq += 1;
        self.pending.push((at, self.seq, act));
    }

    /// `n` working days after now, at the same time of day (half an hour for 0); the end of
    /// time where the calendar ends.
    fn after(&self, n: f64) -> Timestamp {
        let n = n.max(0.0).round() as u32;
        if n == 0 {
            return self.now.checked_add(30.minutes()).unwrap_or(self.now);
        }
        let local = calendar::local_datetime(self.now);
        match self.cal.add_working_days(local.date(), n) {
            Ok(d) => calendar::from_local_datetime(d.to_datetime(local.time())),
            Err(_) => Timestamp::MAX,
        }
    }

    fn days(&self, from: Timestamp, to: Timestamp) -> u32 {
        self.cal
            .working_days_between(calendar::local_date(from), calendar::local_date(to))
            .unwrap_or(0)
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Approve { .. } => "approve",
        Command::Reject { .. } => "reject",
        Command::ApproveConditional { .. } => "approve_conditional",
        Command::VerifyMaterial { .. } => "verify_material",
        Command::SupplyMaterial { .. } => "supply_material",
        Command::AttachElement { .. } => "attach_element",
        Command::Claim { .. } => "claim",
        Command::Start { .. } => "start",
        Command::TimerFired { .. } => "timer_fired",
        _ => "other",
    }
}

fn t_needs_claim(state: &InstanceState, task: TaskId) -> bool {
    state
        .tasks
        .iter()
        .any(|t| t.spec.task == task && t.is_open() && t.claimed_by.is_none())
}

fn applicant() -> Actor {
    Actor::new(APPLICANT, None, &["applicant"])
}

/// A stand-in user of the party a task is addressed to.
fn actor_for(p: &Party, def: &Definition) -> Actor {
    match p {
        Party::User(u) => Actor::new(u, None, &[]),
        Party::Role(r) => Actor {
            name: SmolStr::new(format!("模拟:{r}")),
            department: def.plan.role_department.get(r).cloned(),
            roles: vec![r.clone()],
        },
        Party::Department(d) => Actor {
            name: SmolStr::new(format!("模拟:{d}")),
            department: Some(d.clone()),
            roles: Vec::new(),
        },
    }
}
