//! Legal time across the turn of the year: limits that reach a provisional year, a task due at
//! the end of the last official year climbing its whole escalation ladder, and a calendar
//! revision (next year's official arrangement) re-timing the open clocks, dates computed by hand.

use jiff::Timestamp;
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::Definition;
use shenpi_engine::model::NotificationEvent;
use shenpi_engine::runtime::event::{ClockRef, TimerKind};
use shenpi_engine::runtime::{
    Actor, Colour, Command, CommandEnvelope, Event, InstanceState, apply, decide, replay, view,
};

mod common;
use common::{compiled, ts};

const SHIPPED: &str = include_str!("../../workflows/calendars/cn-mainland.yaml");

/// An official-like 2027 arrangement: more days off than the statute around 春节 and 国庆, and two
/// make-up Saturdays.
const OFFICIAL_2027: &str = r#"
  - year: 2027
    source: 模拟的 2027 年放假安排（测试用）
    holidays:
      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }
      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }
      - { name: 清明节, from: 2027-04-03, to: 2027-04-05 }
      - { name: 劳动节, from: 2027-05-01, to: 2027-05-05 }
      - { name: 端午节, date: 2027-06-09 }
      - { name: 中秋节, date: 2027-09-15 }
      - { name: 国庆节, from: 2027-10-01, to: 2027-10-07 }
    workdays:
      - { date: 2027-02-20, for: 春节 }
      - { date: 2027-10-09, for: 国庆节 }
"#;

const WORKFLOW: &str = r#"
id: turn
name: 跨年测试
calendar: cn-mainland
start: review
roles:
  - { id: clerk, department: a }
  - { id: chief, department: a }
departments:
  - { id: a, name: 发展改革局, supervisor: chief, leader: chief }
warnings:
  yellow_at: 75%
  escalation:
    - { after: 0wd, action: remind }
    - { after: 1wd, action: supervisor }
    - { after: 2wd, action: supervise }
nodes:
  - id: review
    name: 审查
    type: task
    assignee: { role: clerk }
    actions: [approve, reject]
    limit: LIMIT
    next: done
  - id: done
    type: end
    outcome: approved
"#;

fn shipped() -> Calendar {
    Calendar::from_yaml("cn-mainland", SHIPPED).unwrap_or_else(|d| panic!("{d:?}"))
}

fn with_2027() -> Calendar {
    let src = format!("{SHIPPED}{OFFICIAL_2027}");
    Calendar::from_yaml("cn-mainland", &src).unwrap_or_else(|d| panic!("{d:?}"))
}

fn definition(limit: &str) -> Definition {
    compiled(&WORKFLOW.replace("LIMIT", limit))
}

struct Case {
    def: Definition,
    cal: Calendar,
    state: InstanceState,
    log: Vec<Event>,
    now: Timestamp,
}

impl Case {
    fn start(limit: &str, cal: Calendar, at: &str) -> Case {
        let mut c = Case {
            def: definition(limit),
            cal,
            state: InstanceState::default(),
            log: Vec::new(),
            now: ts(at),
        };
        c.run(Command::Start {
            project: serde_json::json!({}),
            channel: None,
        });
        c
    }

    fn run(&mut self, command: Command) -> Vec<Event> {
        let who = match command {
            Command::Start { .. } => Actor::new("zhang", None, &["applicant"]),
            _ => Actor::system(),
        };
        let env = CommandEnvelope {
            actor: who,
            command,
        };
        let events = decide(&self.def, &self.cal, &self.state, &env, self.now)
            .unwrap_or_else(|r| panic!("refused at {}: {r}", self.now));
        for e in &events {
            apply(&mut self.state, e);
            self.log.push(e.clone());
        }
        events
    }

    /// Fires every timer due by `to`, in order, each at its own instant.
    fn advance(&mut self, to: &str) {
        let to = ts(to);
        while let Some((id, due)) = self
            .state
            .timers
            .iter()
            .filter(|t| t.due <= to)
            .min_by_key(|t| (t.due, t.id))
            .map(|t| (t.id, t.due))
        {
            self.now = self.now.max(due);
            self.run(Command::TimerFired { timer: id });
        }
        self.now = self.now.max(to);
    }

    fn recalendar(&mut self, cal: Calendar, revision: u32) -> Vec<Event> {
        self.cal = cal;
        self.run(Command::Recalendar {
            calendar: "cn-mainland".into(),
            revision,
        })
    }

    fn armed(&self, pick: impl Fn(&TimerKind) -> bool) -> Vec<Timestamp> {
        let mut v: Vec<Timestamp> = self
            .state
            .timers
            .iter()
            .filter(|t| pick(&t.kind))
            .map(|t| t.due)
            .collect();
        v.sort();
        v
    }

    fn due_timer(&self) -> Vec<Timestamp> {
        self.armed(|k| {
            matches!(
                k,
                TimerKind::Due {
                    target: ClockRef::Task(_)
                }
            )
        })
    }

    fn yellow_timer(&self) -> Vec<Timestamp> {
        self.armed(|k| {
            matches!(
                k,
                TimerKind::Yellow {
                    target: ClockRef::Task(_)
                }
            )
        })
    }

    fn task_view(&self) -> shenpi_engine::runtime::view::ClockView {
        let v = view(&self.def, &self.cal, &self.state, self.now);
        v.tasks
            .iter()
            .find_map(|t| t.clock.clone())
            .expect("an open task with a clock")
    }
}

#[test]
fn a_forty_day_limit_opened_on_2026_12_01_reaches_a_provisional_2027() {
    let c = Case::start("40wd", shipped(), "2026-12-01T10:00:00+08:00");
    // 22 working days left in December after the 1st, 18 more in January 2027 (元旦 off).
    assert_eq!(c.due_timer(), vec![ts("2027-01-28T00:00:00+08:00")]);
    let clock = c.task_view();
    assert!(clock.provisional, "{clock:?}");
    assert_eq!(clock.days_left, 40);
    assert_eq!(clock.colour, Colour::Green);
}

#[test]
fn a_task_due_2026_12_30_turns_red_and_climbs_every_rung_on_time() {
    // Thu 12-24 + 4 working days = Wed 12-30 (25, 28, 29, 30).
    let mut c = Case::start("4wd", shipped(), "2026-12-24T09:00:00+08:00");
    assert_eq!(c.due_timer(), vec![ts("2026-12-31T00:00:00+08:00")]);
    assert!(
        !c.task_view().provisional,
        "the due date is an official day"
    );
    c.advance("2026-12-30T23:00:00+08:00");
    assert!(!c.log.iter().any(|e| matches!(
        e,
        Event::Warning {
            colour: Colour::Red,
            ..
        }
    )));
    c.advance("2026-12-31T00:00:00+08:00");
    assert_eq!(c.task_view().colour, Colour::Red);
    // The ladder: remind at the deadline (fired with it), supervisor after 1 working day (Thu
    // 12-31), 挂牌督办 after 2 (Mon 2027-01-04: 元旦 and the weekend are off in the provisional
    // 2027).
    let on = |c: &Case, kind: NotificationEvent| {
        c.log
            .iter()
            .filter(|e| matches!(e, Event::NotificationRequested { on: Some(k), .. } if *k == kind))
            .count()
    };
    assert_eq!(on(&c, NotificationEvent::Overdue), 1);
    assert_eq!(on(&c, NotificationEvent::Escalation), 1, "the reminder");
    let rungs = c.armed(|k| matches!(k, TimerKind::Escalation { .. }));
    assert_eq!(
        rungs,
        vec![
            ts("2027-01-01T00:00:00+08:00"),
            ts("2027-01-05T00:00:00+08:00"),
        ]
    );
    c.advance("2027-01-04T23:00:00+08:00");
    assert_eq!(
        on(&c, NotificationEvent::Escalation),
        2,
        "remind and supervisor"
    );
    assert!(!c.log.iter().any(|e| matches!(e, Event::Supervised { .. })));
    c.advance("2027-01-05T00:00:00+08:00");
    assert_eq!(
        c.log
            .iter()
            .filter(|e| matches!(e, Event::Supervised { .. }))
            .count(),
        1
    );
    assert_eq!(on(&c, NotificationEvent::Supervise), 1);
    assert!(
        c.state.timers.is_empty(),
        "every rung fired: {:?}",
        c.state.timers
    );
    assert_eq!(replay(&c.log), c.state);
}

#[test]
fn importing_the_official_2027_moves_the_due_date_yellow_point_and_history_once() {
    // Mon 2027-01-25, 20 working days. Provisional 2027: 春节 02-05..02-10, so the 15th working
    // day (yellow) is Fri 02-19 and the 20th Fri 02-26. Official: 春节 02-05..02-12 and Sat 02-20
    // worked: the 15th is Mon 02-22, the 20th Mon 03-01.
    let mut c = Case::start("20wd", shipped(), "2027-01-25T09:00:00+08:00");
    assert_eq!(c.due_timer(), vec![ts("2027-02-27T00:00:00+08:00")]);
    assert_eq!(c.yellow_timer(), vec![ts("2027-02-19T00:00:00+08:00")]);
    assert!(c.task_view().provisional);

    c.now = ts("2027-02-01T09:00:00+08:00");
    let events = c.recalendar(with_2027(), 2);
    let retimed: Vec<&Event> = events.iter().filter(|e| e.kind() == "retimed").collect();
    assert_eq!(retimed.len(), 1, "{events:#?}");
    let Event::Retimed {
        revision, moves, ..
    } = retimed[0]
    else {
        unreachable!()
    };
    assert_eq!(*revision, 2);
    assert_eq!(moves.len(), 2, "the yellow point and the deadline");
    assert_eq!(c.due_timer(), vec![ts("2027-03-02T00:00:00+08:00")]);
    assert_eq!(c.yellow_timer(), vec![ts("2027-02-22T00:00:00+08:00")]);
    let clock = c.task_view();
    assert!(!clock.provisional, "2027 is official now");
    assert_eq!(clock.due, Some(ts("2027-03-02T00:00:00+08:00")));
    // A later deadline tells nobody; an earlier one would.
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::NotificationRequested {
            on: Some(NotificationEvent::DeadlineMoved),
            ..
        }
    )));

    // The same revision again: nothing moves, the history says it once.
    assert!(c.recalendar(with_2027(), 2).is_empty());
    assert_eq!(c.log.iter().filter(|e| e.kind() == "retimed").count(), 1);

    // Timers fire on the new instants only: yellow on Mon 02-22, red on 03-02, once each.
    c.advance("2027-02-21T23:00:00+08:00");
    assert!(!c.log.iter().any(|e| e.kind() == "warning"));
    c.advance("2027-03-02T00:00:00+08:00");
    let warnings: Vec<Colour> = c
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Warning { colour, .. } => Some(*colour),
            _ => None,
        })
        .collect();
    assert_eq!(warnings, vec![Colour::Yellow, Colour::Red]);
    assert_eq!(replay(&c.log), c.state);
}

#[test]
fn a_revision_that_makes_a_deadline_pass_fires_the_overdue_path_once() {
    // On the official 2027 the task is due at the end of Mon 03-01; on Sat 02-27 it is not red.
    let mut c = Case::start("20wd", with_2027(), "2027-01-25T09:00:00+08:00");
    c.advance("2027-02-27T12:00:00+08:00");
    assert_eq!(c.task_view().colour, Colour::Yellow);
    // Back to the statute alone (a withdrawn arrangement): due Fri 02-26, already past.
    let events = c.recalendar(shipped(), 3);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::NotificationRequested {
            on: Some(NotificationEvent::DeadlineMoved),
            ..
        }
    )));
    assert_eq!(c.due_timer(), vec![ts("2027-02-27T00:00:00+08:00")]);
    c.advance("2027-02-27T12:00:00+08:00");
    c.advance("2027-03-10T12:00:00+08:00");
    let reds = c
        .log
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Warning {
                    colour: Colour::Red,
                    ..
                }
            )
        })
        .count();
    assert_eq!(reds, 1);
    assert_eq!(c.task_view().colour, Colour::Red);
    assert_eq!(replay(&c.log), c.state);
}
