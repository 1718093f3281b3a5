//! The commitment letter (承诺书) of a 容缺 pre-approval: rendered from the step's template with
//! the waived materials by name and the deadline on the working-day calendar (here across the
//! 2026 National Day holiday), signed once, by the applicant side only, against the text shown;
//! and listed as late when unsigned past `sign_within`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::runtime::deadline::last_day;
use shenpi_engine::runtime::event::PreApprovalId;
use shenpi_engine::runtime::letter::{letters, unsigned_overdue};
use shenpi_engine::runtime::{
    Actor, Command, CommandEnvelope, Event, InstanceState, Rejection, TaskId, apply, decide,
    replay, view,
};
use shenpi_engine::validate::ValidateContext;

const CALENDAR: &str = include_str!("../../workflows/calendars/cn-mainland.yaml");

const WORKFLOW: &str = r#"
id: letters
name: 承诺书
calendar: cn-mainland
start: review
fields:
  - { id: name, type: string }
  - { id: enterprise, type: string }
  - { id: investment, type: number }
  - { id: service_officer, type: user, required: true }
departments:
  - { id: fgw, name: 县发展改革局 }
roles:
  - { id: applicant }
  - { id: clerk, department: fgw }
materials:
  - { id: plan, name: 项目规划方案 }
  - { id: eia, name: 环境影响评价批复 }
  - { id: land, name: 用地预审意见, red_line: true }
nodes:
  - id: review
    name: 备案审查
    type: task
    assignee: { role: clerk }
    actions: [approve, conditional]
    materials: [plan, eia, land]
    conditional:
      waivable: [plan, eia]
      limit: 5wd
      on_breach: [revoke, credit_mark]
      letter: pledge
      sign_within: 2wd
    next: done
  - { id: done, type: end, outcome: approved }
"#;

const TEMPLATE: &str = "致{{ department }}：\n{{ enterprise }}申报的“{{ project_name }}”（总投资{{ investment }}万元）在“{{ node }}”环节容缺受理。\n{{ material_list }}\n本单位承诺在{{ limit }}内（{{ deadline }}前）补齐{{ materials }}；如未按期补齐，{{ consequence }}。\n签署期限：{{ sign_within }}个工作日。申报账户：{{ applicant }}。{{ date }}\n";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}

fn definition() -> Definition {
    let wf = parse_workflow(WORKFLOW).unwrap_or_else(|d| panic!("parse: {d:?}"));
    let ctx = ValidateContext {
        calendars: vec!["cn-mainland".into()],
        templates: Vec::new(),
        documents: BTreeMap::from([("pledge".to_string(), TEMPLATE.to_string())]),
    };
    compile(wf, &ctx).unwrap_or_else(|d| panic!("compile: {d:#?}"))
}

struct Case {
    def: Definition,
    cal: Calendar,
    st: InstanceState,
    log: Vec<Event>,
}

impl Case {
    fn decide(&self, who: &Actor, cmd: Command, now: &str) -> Result<Vec<Event>, Rejection> {
        let env = CommandEnvelope {
            actor: who.clone(),
            command: cmd,
        };
        decide(&self.def, &self.cal, &self.st, &env, ts(now))
    }

    fn ok(&mut self, who: &Actor, cmd: Command, now: &str) -> Vec<Event> {
        let events = self
            .decide(who, cmd, now)
            .unwrap_or_else(|r| panic!("refused: {r:?}"));
        for e in &events {
            apply(&mut self.st, e);
            self.log.push(e.clone());
        }
        events
    }

    fn refused(&self, who: &Actor, cmd: Command, now: &str) -> Rejection {
        match self.decide(who, cmd, now) {
            Ok(e) => panic!("accepted: {e:?}"),
            Err(r) => r,
        }
    }
}

fn zhang() -> Actor {
    Actor::new("zhang", None, &["applicant"])
}
fn wang() -> Actor {
    Actor::new("wang", None, &["service_officer"])
}
fn clerk() -> Actor {
    Actor::new("li", Some("fgw"), &["clerk"])
}

/// An instance pre-approved with plan and eia waived on Tuesday 2026-09-29, two days before the
/// National Day holiday (10-01 to 10-07; Saturday 10-10 is a working day).
fn pre_approved() -> Case {
    let mut c = Case {
        def: definition(),
        cal: Calendar::from_yaml("cn-mainland", CALENDAR)
            .unwrap_or_else(|d| panic!("calendar: {d:?}")),
        st: InstanceState::default(),
        log: Vec::new(),
    };
    c.ok(
        &zhang(),
        Command::Start {
            project: serde_json::json!({
                "name": "年产五万吨饲料加工项目",
                "enterprise": "某某农业科技有限公司",
                "investment": 12000,
                "service_officer": "wang",
            }),
            channel: None,
        },
        "2026-09-28T09:00:00+08:00",
    );
    c.ok(
        &clerk(),
        Command::ApproveConditional {
            task: TaskId(0),
            waive: vec!["eia".into(), "plan".into()],
            limit: None,
            comment: None,
        },
        "2026-09-29T10:00:00+08:00",
    );
    c
}

fn sign(pre: u32, sha256: &str) -> Command {
    Command::SignLetter {
        pre: PreApprovalId(pre),
        sha256: sha256.into(),
        remote: Some("10.1.2.3".into()),
    }
}

#[test]
fn the_letter_names_the_materials_and_the_deadline_on_the_working_day_calendar() {
    let c = pre_approved();
    let l = c.st.letters.first().expect("a letter was issued");
    assert_eq!(l.pre, PreApprovalId(0));
    // Five working days from Tuesday 09-29: 09-30, 10-08, 10-09, 10-10 (a make-up Saturday),
    // 10-12. Counting weekdays alone would give 10-06, a day of the holiday.
    assert!(l.text.contains("本单位承诺在5个工作日内（2026年10月12日前）补齐环境影响评价批复、项目规划方案；如未按期补齐，撤销预批复、记入信用记录。"), "{}", l.text);
    assert!(
        l.text.contains("1. 环境影响评价批复\n2. 项目规划方案"),
        "{}",
        l.text
    );
    assert!(
        !l.text.contains("eia") && !l.text.contains("plan\n"),
        "ids leak: {}",
        l.text
    );
    assert!(l.text.starts_with("致县发展改革局："), "{}", l.text);
    assert!(
        l.text.contains(
            "某某农业科技有限公司申报的“年产五万吨饲料加工项目”（总投资12000万元）在“备案审查”环节"
        ),
        "{}",
        l.text
    );
    assert!(
        l.text
            .contains("签署期限：2个工作日。申报账户：zhang。2026年9月29日"),
        "{}",
        l.text
    );
    // The hash is the SHA-256 of the exact text.
    let want: String = Sha256::digest(l.text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(l.sha256, want);
    // The letter's date is the promise clocks' own due date.
    let v = view(&c.def, &c.cal, &c.st, ts("2026-09-30T09:00:00+08:00"));
    for p in &v.promises {
        let due = p
            .clock
            .as_ref()
            .and_then(|k| k.due)
            .expect("a running promise");
        assert_eq!(last_day(due).to_string(), "2026-10-12");
    }
    assert_eq!(v.letters.len(), 1);
    assert_eq!(v.letters[0].signers, vec!["zhang", "wang"]);
    // And the state replays from the history.
    assert_eq!(replay(&c.log), c.st);
}

#[test]
fn only_the_applicant_side_signs_the_text_shown_and_only_once() {
    let mut c = pre_approved();
    let sha = c.st.letters[0].sha256.to_string();
    let now = "2026-09-30T11:00:00+08:00";

    // The approver, and an applicant of another project, are not this instance's applicant.
    for who in [clerk(), Actor::new("zhao", None, &["applicant"])] {
        assert!(
            matches!(
                c.refused(&who, sign(0, &sha), now),
                Rejection::NotLetterSigner { .. }
            ),
            "{who:?}"
        );
    }
    // A text other than the letter's.
    let other = "0".repeat(64);
    assert!(matches!(
        c.refused(&zhang(), sign(0, &other), now),
        Rejection::LetterChanged { .. }
    ));
    // A pre-approval without a letter.
    assert!(matches!(
        c.refused(&zhang(), sign(7, &sha), now),
        Rejection::UnknownLetter { .. }
    ));
    assert!(c.st.letters[0].signed.is_none(), "nothing was signed");

    let events = c.ok(&zhang(), sign(0, &sha.to_uppercase()), now);
    assert_eq!(events.len(), 1);
    let s = c.st.letters[0].signed.clone().expect("signed");
    assert_eq!((s.by.as_str(), s.sha256.as_str()), ("zhang", sha.as_str()));
    assert_eq!(s.at, ts(now));
    assert_eq!(s.remote.as_deref(), Some("10.1.2.3"));

    // Once: neither the applicant again nor the service officer.
    for who in [zhang(), wang()] {
        assert!(matches!(
            c.refused(&who, sign(0, &sha), now),
            Rejection::LetterAlreadySigned { .. }
        ));
    }
    // The promise clocks kept running from the approval.
    assert!(
        c.st.promises
            .iter()
            .all(|p| p.clock.opened_at == ts("2026-09-29T10:00:00+08:00"))
    );
    assert_eq!(replay(&c.log), c.st);
}

#[test]
fn the_service_officer_may_sign() {
    let mut c = pre_approved();
    let sha = c.st.letters[0].sha256.to_string();
    c.ok(&wang(), sign(0, &sha), "2026-09-30T11:00:00+08:00");
    assert_eq!(
        c.st.letters[0].signed.as_ref().map(|s| s.by.as_str()),
        Some("wang")
    );
}

#[test]
fn an_unsigned_letter_is_late_after_sign_within_and_a_signed_one_never() {
    let mut c = pre_approved();
    // Two working days: 09-30 and 10-08 (the holiday between does not count).
    let on_last_day = "2026-10-08T16:00:00+08:00";
    let day_after = "2026-10-09T10:00:00+08:00";
    assert!(unsigned_overdue(&c.def, &c.cal, &c.st, ts("2026-10-07T10:00:00+08:00")).is_empty());
    assert!(unsigned_overdue(&c.def, &c.cal, &c.st, ts(on_last_day)).is_empty());
    let late = unsigned_overdue(&c.def, &c.cal, &c.st, ts(day_after));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].working_days_since, 3, "09-30, 10-08, 10-09");
    assert_eq!(
        late[0].sign_by.map(|d| d.to_string()).as_deref(),
        Some("2026-10-08")
    );

    let sha = c.st.letters[0].sha256.to_string();
    c.ok(&zhang(), sign(0, &sha), day_after);
    assert!(unsigned_overdue(&c.def, &c.cal, &c.st, ts("2026-10-20T10:00:00+08:00")).is_empty());
    let all = letters(&c.def, &c.cal, &c.st, ts("2026-10-20T10:00:00+08:00"));
    assert!(all[0].signed.is_some() && !all[0].overdue);
}

#[test]
fn a_step_without_a_letter_issues_none_and_an_old_history_replays() {
    let src = WORKFLOW
        .replace("      letter: pledge\n", "")
        .replace("      sign_within: 2wd\n", "");
    let wf = parse_workflow(&src).unwrap_or_else(|d| panic!("parse: {d:?}"));
    let def = compile(wf, &ValidateContext::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let mut c = pre_approved();
    c.def = def;
    c.st = InstanceState::default();
    c.log.clear();
    c.ok(
        &zhang(),
        Command::Start {
            project: serde_json::json!({"service_officer": "wang"}),
            channel: None,
        },
        "2026-09-28T09:00:00+08:00",
    );
    let events = c.ok(
        &clerk(),
        Command::ApproveConditional {
            task: TaskId(0),
            waive: vec!["plan".into()],
            limit: None,
            comment: None,
        },
        "2026-09-29T10:00:00+08:00",
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::PreApproved { .. }))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::LetterIssued { .. }))
    );
    assert!(c.st.letters.is_empty() && c.st.promises.len() == 1);
    // A state without letters is written without the key, and reads back the same.
    let json = serde_json::to_value(&c.st).expect("serialises");
    assert!(json.get("letters").is_none());
    let back: InstanceState = serde_json::from_value(json).expect("reads");
    assert_eq!(back, c.st);
    assert_eq!(replay(&c.log), c.st);
}
