//! The example workflows that ship in `workflows/`, and their scenarios.
//!
//! Every `workflows/*.yaml` must parse and validate with the calendars of `workflows/calendars/`
//! and the templates of `workflows/templates/`; every `workflows/scenarios/*.yaml` must run to the
//! expectations it states. Failures are collected and reported together, so one broken file does
//! not hide the others.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::simulate::{Scenario, SimOutput, run_with_output};
use shenpi_engine::validate::ValidateContext;

mod common;
use common::{shipped_context, stems, workflows_dir};

fn context() -> ValidateContext {
    shipped_context()
}

/// Parses and compiles every workflow; the map is keyed by workflow id.
fn load_all() -> (BTreeMap<String, Definition>, Vec<String>) {
    let dir = workflows_dir();
    let ctx = context();
    let mut defs = BTreeMap::new();
    let mut errors = Vec::new();
    for stem in stems(&dir, "yaml") {
        let file = format!("workflows/{stem}.yaml");
        let source = match fs::read_to_string(dir.join(format!("{stem}.yaml"))) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{file}: cannot read: {e}"));
                continue;
            }
        };
        let parsed = parse_workflow(&source).and_then(|w| compile(w, &ctx));
        match parsed {
            Ok(def) => {
                if def.id() != stem {
                    errors.push(format!(
                        "{file}: id `{}` differs from the file name",
                        def.id()
                    ));
                }
                defs.insert(def.id().to_string(), def);
            }
            Err(diags) => {
                for d in diags.iter().filter(|d| d.is_error()) {
                    errors.push(d.render(&file, &source));
                }
            }
        }
    }
    (defs, errors)
}

#[test]
fn every_example_workflow_is_valid() {
    let (defs, errors) = load_all();
    assert!(
        errors.is_empty(),
        "invalid workflows:\n{}",
        errors.join("\n")
    );
    for id in [
        "provincial-major",
        "construction-permit",
        "enterprise-filing",
    ] {
        assert!(
            defs.contains_key(id),
            "workflow `{id}` missing from workflows/"
        );
    }
}

/// Loads every calendar of `workflows/calendars/`, keyed by id (the file stem).
fn calendars() -> BTreeMap<String, Calendar> {
    let dir = workflows_dir().join("calendars");
    let mut out = BTreeMap::new();
    for id in stems(&dir, "yaml") {
        let path = dir.join(format!("{id}.yaml"));
        let source = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match Calendar::from_yaml(&id, &source) {
            Ok(cal) => {
                out.insert(id, cal);
            }
            Err(diags) => {
                let text: Vec<String> = diags
                    .iter()
                    .map(|d| d.render(&format!("workflows/calendars/{id}.yaml"), &source))
                    .collect();
                panic!("invalid calendar {id}:\n{}", text.join("\n"));
            }
        }
    }
    out
}

/// Runs one scenario file; the output, or why it failed.
fn run_scenario(
    stem: &str,
    defs: &BTreeMap<String, Definition>,
    cals: &BTreeMap<String, Calendar>,
) -> Result<SimOutput, String> {
    let path = workflows_dir()
        .join("scenarios")
        .join(format!("{stem}.yaml"));
    let source = fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"))?;
    let sc = Scenario::from_yaml(&source).map_err(|e| e.to_string())?;
    if !stem.starts_with(&format!("{}-", sc.workflow)) {
        return Err(format!(
            "file name should start with the workflow id `{}-`",
            sc.workflow
        ));
    }
    simulate(stem, &sc, defs, cals)
}

/// Runs a parsed scenario against the shipped workflows.
fn simulate(
    stem: &str,
    sc: &Scenario,
    defs: &BTreeMap<String, Definition>,
    cals: &BTreeMap<String, Calendar>,
) -> Result<SimOutput, String> {
    let def = defs
        .get(&sc.workflow)
        .ok_or_else(|| format!("unknown workflow `{}`", sc.workflow))?;
    let cal_id = &def.workflow.calendar.value;
    let cal = cals
        .get(cal_id)
        .ok_or_else(|| format!("unknown calendar `{cal_id}`"))?;
    let (out, res) = run_with_output(def, cal, sc);
    // `EXAMPLES_TRACE=<scenario stem>` prints that scenario's log (timer bookkeeping left out).
    if std::env::var("EXAMPLES_TRACE").is_ok_and(|t| t == stem) {
        for t in &out.events {
            if !matches!(
                t.event.kind(),
                "timer_armed" | "timer_cancelled" | "timer_fired"
            ) {
                let json = serde_json::to_string(&t.event).unwrap_or_default();
                println!("{} {json}", t.at);
            }
        }
    }
    match res {
        Ok(()) => Ok(out),
        Err(e) => {
            let tail: Vec<String> = out
                .events
                .iter()
                .rev()
                .take(12)
                .rev()
                .map(|t| format!("    {} {}", t.at, t.event.kind()))
                .collect();
            Err(format!("{e}\n  last events:\n{}", tail.join("\n")))
        }
    }
}

/// The scenarios every example must have, by the case they cover.
const REQUIRED_CASES: &[&str] = &[
    "happy",
    "green",
    "reject-back",
    "promise-kept",
    "promise-breached",
    "overdue",
    "vote",
    "withdraw",
];

#[test]
fn every_scenario_holds() {
    let (defs, errors) = load_all();
    assert!(
        errors.is_empty(),
        "invalid workflows:\n{}",
        errors.join("\n")
    );
    let cals = calendars();
    let scenarios = stems(&workflows_dir().join("scenarios"), "yaml");
    for case in REQUIRED_CASES {
        assert!(
            scenarios.iter().any(|s| s.contains(case)),
            "no scenario covers `{case}`"
        );
    }
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for stem in &scenarios {
        match run_scenario(stem, &defs, &cals) {
            Ok(out) => {
                for c in CHECKS.iter().filter(|c| c.scenario == stem.as_str()) {
                    checked += 1;
                    if let Err(e) = c.holds(&out) {
                        failures.push(format!("workflows/scenarios/{stem}.yaml: {e}"));
                    }
                }
            }
            Err(e) => failures.push(format!("workflows/scenarios/{stem}.yaml: {e}")),
        }
    }
    let expected_checks = CHECKS
        .iter()
        .filter(|c| scenarios.iter().any(|s| s == c.scenario))
        .count();
    assert_eq!(
        checked, expected_checks,
        "a check names a scenario that failed to run"
    );
    assert_eq!(
        expected_checks,
        CHECKS.len(),
        "a check names a scenario that does not exist"
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}

/// A fact a scenario's expectations cannot state (they name event types only): that events of
/// `kind` whose JSON contains every one of `needles` happen `count` times, at `at` when given.
/// These pin down the calendar arithmetic the scenarios' comments explain.
struct Check {
    scenario: &'static str,
    what: &'static str,
    kind: &'static str,
    needles: &'static [&'static str],
    count: usize,
    at: Option<&'static str>,
}

impl Check {
    fn holds(&self, out: &SimOutput) -> Result<(), String> {
        let found: Vec<Timestamp> = out
            .events
            .iter()
            .filter(|t| t.event.kind() == self.kind)
            .filter(|t| {
                let json = serde_json::to_string(&t.event).unwrap_or_default();
                self.needles.iter().all(|n| json.contains(n))
            })
            .map(|t| t.at)
            .collect();
        if found.len() != self.count {
            return Err(format!(
                "{}: expected {} `{}` event(s) with {:?}, found {} at {:?}",
                self.what,
                self.count,
                self.kind,
                self.needles,
                found.len(),
                found
            ));
        }
        if let Some(at) = self.at {
            let want: Timestamp = at
                .parse()
                .map_err(|e| format!("{}: bad instant `{at}` in the check: {e}", self.what))?;
            if let Some(bad) = found.iter().find(|t| **t != want) {
                return Err(format!(
                    "{}: `{}` at {bad}, expected {want} ({at})",
                    self.what, self.kind
                ));
            }
        }
        Ok(())
    }
}

const CHECKS: &[Check] = &[
    // 入库审核 opened Mon 03-02 with 10wd: due at the end of Mon 03-16.
    Check {
        scenario: "provincial-major-overdue",
        what: "yellow from the start of working day 8 (Thu 03-12)",
        kind: "warning",
        needles: &[r#""target":{"task":0},"colour":"yellow""#],
        count: 1,
        at: Some("2026-03-12T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-overdue",
        what: "red when day 10 (Mon 03-16) ends",
        kind: "warning",
        needles: &[r#""target":{"task":0},"colour":"red""#],
        count: 1,
        at: Some("2026-03-17T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-overdue",
        what: "rung 1 (0wd): remind the assignee at the deadline",
        kind: "notification_requested",
        needles: &[r#""on":"escalation""#, r#""role":"fgw_planner""#, "rung 1"],
        count: 1,
        at: Some("2026-03-17T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-overdue",
        what: "rung 2 (2wd): the supervisor when Wed 03-18 ends",
        kind: "notification_requested",
        needles: &[r#""on":"escalation""#, r#""role":"fgw_chief""#, "rung 2"],
        count: 1,
        at: Some("2026-03-19T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-overdue",
        what: "rung 3 (5wd): 挂牌督办 when Mon 03-23 ends",
        kind: "supervised",
        needles: &[r#""leader":"fgw_leader""#],
        count: 1,
        at: Some("2026-03-24T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-overdue",
        what: "挂牌督办 notice to the leader",
        kind: "notification_requested",
        needles: &[r#""on":"supervise""#, r#""role":"fgw_leader""#, "rung 3"],
        count: 1,
        at: Some("2026-03-24T00:00:00+08:00"),
    },
    // Green channel: limits halved (rounded up), 受理 and 批复 at their 1wd channel limits.
    Check {
        scenario: "provincial-major-green",
        what: "事前会商 skipped",
        kind: "node_skipped",
        needles: &[r#""node":"pre_consult","channel":"green""#],
        count: 1,
        at: Some("2026-03-03T09:30:00+08:00"),
    },
    Check {
        scenario: "provincial-major-green",
        what: "受理 has its 1wd channel limit",
        kind: "task_opened",
        needles: &[
            r#""label":"intake""#,
            r#""limit":{"amount":1,"#,
            r#""priority":10"#,
        ],
        count: 1,
        at: None,
    },
    Check {
        scenario: "provincial-major-green",
        what: "10wd branches halved to 5wd",
        kind: "task_opened",
        needles: &[r#""node":"joint_review""#, r#""limit":{"amount":5,"#],
        count: 3,
        at: None,
    },
    Check {
        scenario: "provincial-major-green",
        what: "8wd branches halved to 4wd",
        kind: "task_opened",
        needles: &[r#""node":"joint_review""#, r#""limit":{"amount":4,"#],
        count: 3,
        at: None,
    },
    Check {
        scenario: "provincial-major-green",
        what: "15wd step halved to 8wd (rounded up)",
        kind: "step_opened",
        needles: &[r#""node":"joint_review""#, r#""limit":{"amount":8,"#],
        count: 1,
        at: None,
    },
    Check {
        scenario: "provincial-major-green",
        what: "the coordinator is told",
        kind: "notification_requested",
        needles: &[r#""on":"green_channel""#, r#""role":"zdb_coordinator""#],
        count: 1,
        at: Some("2026-03-02T09:00:00+08:00"),
    },
    // 驳回 across the parallel review: a second round with a fresh task for every branch.
    Check {
        scenario: "provincial-major-reject-back",
        what: "rejected back once, from the review to 受理",
        kind: "rejected_back",
        needles: &[r#""from":"joint_review","to":"intake""#],
        count: 1,
        at: Some("2026-03-11T10:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-reject-back",
        what: "round 2 of the review",
        kind: "step_opened",
        needles: &[r#""node":"joint_review","round":2"#],
        count: 1,
        at: Some("2026-03-16T10:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-reject-back",
        what: "eight branch tasks over two rounds",
        kind: "task_opened",
        needles: &[r#""node":"joint_review""#],
        count: 8,
        at: None,
    },
    Check {
        scenario: "construction-permit-reject-back",
        what: "immediate: the two open branches are cancelled when 自然资源 rejects",
        kind: "task_cancelled",
        needles: &[r#""reason":"join_fired""#],
        count: 2,
        at: Some("2026-03-05T10:30:00+08:00"),
    },
    // 补正 and 延长 on 受理 (task 2), opened Wed 03-04 with 5wd.
    Check {
        scenario: "provincial-major-return-extend",
        what: "补正 on day 1 banks one working day",
        kind: "clock_stopped",
        needles: &[r#""target":{"task":2},"used":1"#],
        count: 1,
        at: Some("2026-03-05T10:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-return-extend",
        what: "yellow from the start of Wed 03-18 (6 of 5 + 3 days used)",
        kind: "warning",
        needles: &[r#""target":{"task":2},"colour":"yellow""#],
        count: 1,
        at: Some("2026-03-18T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-return-extend",
        what: "not red at the old deadline (end of Tue 03-17)",
        kind: "warning",
        needles: &[r#""target":{"task":2},"colour":"red""#],
        count: 0,
        at: None,
    },
    // 延长 of a parallel branch (住建厅, task 6, 8wd from Fri 03-06) by the step's `extend_by`.
    Check {
        scenario: "provincial-major-branch-extend",
        what: "the 住建厅 branch extended by 3wd",
        kind: "limit_extended",
        needles: &[r#""target":{"task":6},"amount":3"#, r#""by":"zhou""#],
        count: 1,
        at: Some("2026-03-12T10:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-branch-extend",
        what: "yellow from the start of Thu 03-19 (day 9 of 8 + 3)",
        kind: "warning",
        needles: &[r#""target":{"task":6},"colour":"yellow""#],
        count: 1,
        at: Some("2026-03-19T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-branch-extend",
        what: "not red at the old deadline (end of Wed 03-18)",
        kind: "warning",
        needles: &[r#""target":{"task":6},"colour":"red""#],
        count: 0,
        at: None,
    },
    // 容缺 promises: 20wd with the holidays counted out.
    Check {
        scenario: "provincial-major-promise-breached",
        what: "breach at the end of Fri 04-10 (清明 not counted)",
        kind: "promise_breached",
        needles: &[],
        count: 1,
        at: Some("2026-04-11T00:00:00+08:00"),
    },
    Check {
        scenario: "enterprise-filing-promise-breached",
        what: "breach at the end of Wed 05-20 (劳动节 out, Sat 05-09 in)",
        kind: "promise_breached",
        needles: &[r#""promise":3"#],
        count: 1,
        at: Some("2026-05-21T00:00:00+08:00"),
    },
    Check {
        scenario: "provincial-major-promise-kept",
        what: "one formal approval, when the last material is verified",
        kind: "formal_approval",
        needles: &[],
        count: 1,
        at: Some("2026-03-31T10:00:00+08:00"),
    },
    Check {
        scenario: "enterprise-filing-promise-kept",
        what: "four promises for 100% 容缺",
        kind: "promise_made",
        needles: &[r#""limit":{"amount":20,"unit":"working_days"}"#],
        count: 4,
        at: Some("2026-03-09T11:00:00+08:00"),
    },
    // 即报即审: due when the same working day ends.
    Check {
        scenario: "enterprise-filing-green",
        what: "same-day filing (0wd)",
        kind: "task_opened",
        needles: &[
            r#""label":"filing""#,
            r#""limit":{"amount":0,"#,
            r#""priority":20"#,
        ],
        count: 1,
        at: Some("2026-04-03T09:30:00+08:00"),
    },
    Check {
        scenario: "enterprise-filing-green-holiday",
        what: "no red before Tue 04-07 ends",
        kind: "warning",
        needles: &[r#""colour":"red""#],
        count: 0,
        at: None,
    },
    // 票签 2/3 of five experts needs four approvals.
    Check {
        scenario: "construction-permit-happy",
        what: "4 of 5 experts approve: passes",
        kind: "join_fired",
        needles: &[r#""approved":true,"approvals":4,"rejects":1,"needed":4"#],
        count: 1,
        at: Some("2026-03-18T10:00:00+08:00"),
    },
    Check {
        scenario: "construction-permit-happy",
        what: "工程建设许可 opens when 7 natural days of 公示 end",
        kind: "step_opened",
        needles: &[r#""node":"stage2""#],
        count: 1,
        at: Some("2026-03-26T00:00:00+08:00"),
    },
    Check {
        scenario: "construction-permit-happy",
        what: "补正 stops the window clock with no day used",
        kind: "clock_stopped",
        needles: &[r#""target":{"task":0},"used":0"#],
        count: 1,
        at: Some("2026-03-02T14:00:00+08:00"),
    },
    Check {
        scenario: "construction-permit-vote-fail",
        what: "3 of 5 experts approve: fails",
        kind: "join_fired",
        needles: &[r#""approved":false,"approvals":3,"rejects":2,"needed":4"#],
        count: 1,
        at: Some("2026-03-09T10:00:00+08:00"),
    },
];

/// What a 不予许可决定书 gives as its reasons (`documents::final_rejection`), read from the
/// scenarios' histories: the step whose final rejection ended the case and every rejection of it
/// that counted, with who gave it; nothing for a case a gateway routed to its rejected end, nor
/// for one whose 票签 passed over an expert's rejection.
#[test]
fn refusals_name_the_step_and_every_rejection_that_counted() {
    use shenpi_engine::compile::Party;
    use shenpi_engine::documents::final_rejection;
    let (defs, errors) = load_all();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let cals = calendars();
    let role = |r: &str| Party::Role(r.into());
    // The step, and who rejected it with what reason; none when no rejection ended the case.
    type Refusal<'a> = Option<(&'a str, Vec<(Party, &'a str)>)>;
    let cases: Vec<(&str, Refusal)> = vec![
        (
            "provincial-major-refused",
            Some((
                "intake",
                vec![(
                    role("fgw_intake"),
                    "未取得用地预审与选址意见书，该材料为红线材料，不得容缺受理",
                )],
            )),
        ),
        (
            "construction-permit-vote-fail",
            Some((
                "scheme_review",
                vec![
                    (
                        role("expert_struct"),
                        "结构选型不合理，大跨度区域需重新论证",
                    ),
                    (role("expert_fire"), "疏散距离不满足规范要求"),
                ],
            )),
        ),
        (
            "construction-permit-refused",
            Some((
                "window",
                vec![(
                    role("window_clerk"),
                    "项目用地尚未取得用地批准文件或不动产权证书，不具备受理条件",
                )],
            )),
        ),
        (
            "enterprise-filing-not-filed",
            Some((
                "filing",
                vec![(
                    role("fgw_filing"),
                    "项目单位经营范围不含饲料生产，备案信息与营业执照不符",
                )],
            )),
        ),
        ("enterprise-filing-refused", None),
        ("construction-permit-happy", None),
    ];
    for (stem, want) in cases {
        let out = run_scenario(stem, &defs, &cals).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let got = final_rejection(out.events.iter().map(|t| &t.event));
        let got = got.map(|r| {
            let opinions: Vec<(Party, String)> =
                r.opinions.into_iter().map(|o| (o.party, o.text)).collect();
            (r.node.to_string(), opinions)
        });
        let want = want.map(|(node, ops)| {
            let ops: Vec<(Party, String)> =
                ops.into_iter().map(|(p, t)| (p, t.to_string())).collect();
            (node.to_string(), ops)
        });
        assert_eq!(got, want, "{stem}");
    }
}

/// Which official documents each case calls for (`documents::due`), from the scenarios' final
/// states: the 预批复 at 容缺, the 批复 when 出具批复 approves (the case then goes on to 开工 and
/// 竣工) but only once the promises are kept, the 撤销决定 (and no 批复) after a breach, and a
/// 不予许可决定书 at a rejected end.
#[test]
fn documents_are_called_for_where_and_when_the_rules_say() {
    use shenpi_engine::documents::{Occasion, due};
    let (defs, errors) = load_all();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let cals = calendars();
    let cases: &[(&str, &[&str])] = &[
        ("provincial-major-happy", &["approved@decision"]),
        // 在办 at 出具批复 with the EIA promise open: only its 预批复.
        ("provincial-major-promise-kept", &["pre_approval@intake"]),
        // Approved at 出具批复, then a promise breached: revoked, never a 批复.
        (
            "provincial-major-promise-breached",
            &["pre_approval@intake", "revocation@intake"],
        ),
        ("provincial-major-green", &["approved@decision"]),
        ("provincial-major-refused", &["end@refused"]),
        (
            "enterprise-filing-promise-kept",
            &["pre_approval@filing", "end@done"],
        ),
    ];
    for (stem, want) in cases {
        let out = run_scenario(stem, &defs, &cals).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let st = shenpi_engine::runtime::replay(out.events.iter().map(|t| &t.event));
        let wf_id = stem.split('-').take(2).collect::<Vec<_>>().join("-");
        let def = defs.get(&wf_id).unwrap_or_else(|| panic!("{wf_id}"));
        let got: Vec<String> = due(&def.workflow, &st)
            .iter()
            .map(|d| {
                let what = match d.occasion {
                    Occasion::End => "end",
                    Occasion::PreApproval(_) => "pre_approval",
                    Occasion::Approved(_) => "approved",
                    Occasion::Revocation(_) => "revocation",
                };
                format!("{what}@{}", d.node)
            })
            .collect();
        assert_eq!(got, *want, "{stem}");
    }
}

/// Top-level keys of a workflow file, for reading the language chapter's fragments.
const WORKFLOW_KEYS: &[&str] = &[
    "fields",
    "departments",
    "roles",
    "materials",
    "elements",
    "stages",
    "channels",
    "warnings",
    "nodes",
    "reports",
    "notifications",
];

/// The ```yaml blocks of a Markdown file, with the line each starts on.
fn yaml_blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        match current.as_mut() {
            None if line.trim_start().starts_with("```yaml") => {
                current = Some((i + 2, String::new()))
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                if let Some(block) = current.take() {
                    out.push(block);
                }
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    out
}

/// Every YAML snippet of the language guide (`docs/language.md`) uses the language as `model.rs` defines it: a
/// complete workflow validates; a fragment (nodes, or top-level sections) reads into the types
/// when wrapped in a workflow. A scenario snippet runs and holds against the shipped workflows.
#[test]
fn language_chapter_snippets_are_the_language() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md");
    let md =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read docs/language.md: {e}"));
    let ctx = context();
    let (defs, errors) = load_all();
    assert!(
        errors.is_empty(),
        "invalid workflows:\n{}",
        errors.join("\n")
    );
    let cals = calendars();
    let header = "id: snippet\nname: snippet\ncalendar: cn-mainland\nstart: a\n";
    let mut failures = Vec::new();
    let mut read = 0usize;
    for (line, block) in yaml_blocks(&md) {
        let first = block
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap_or("");
        let top_key = first.split(':').next().unwrap_or("").trim();
        let result = if block.lines().any(|l| l.starts_with("workflow:")) {
            Scenario::from_yaml(&block)
                .map_err(|e| e.to_string())
                .and_then(|sc| simulate("docs", &sc, &defs, &cals).map(|_| ()))
        } else if block.lines().any(|l| l.starts_with("id:")) {
            parse_workflow(&block)
                .and_then(|w| compile(w, &ctx))
                .map(|_| ())
                .map_err(|d| {
                    d.iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.render("snippet", &block))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
        } else if first.starts_with("- ") {
            let nodes: String = block.lines().map(|l| format!("  {l}\n")).collect();
            parse_workflow(&format!("{header}nodes:\n{nodes}"))
                .map(|_| ())
                .map_err(|d| format!("{d:?}"))
        } else if WORKFLOW_KEYS.contains(&top_key) {
            let nodes = if block.lines().any(|l| l.starts_with("nodes:")) {
                ""
            } else {
                "nodes: []\n"
            };
            parse_workflow(&format!("{header}{block}{nodes}"))
                .map(|_| ())
                .map_err(|d| format!("{d:?}"))
        } else {
            failures.push(format!(
                "docs/language.md:{line}: a yaml block of unknown shape"
            ));
            continue;
        };
        read += 1;
        if let Err(e) = result {
            failures.push(format!("docs/language.md:{line}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        read >= 20,
        "only {read} yaml blocks found in docs/language.md"
    );
}
