//! Re-timing after a calendar revision: one `Recalendar` command per instance with an open
//! timer, through the durable command path, decided by the engine.
//!
//! Each command carries the idempotency key `recalendar:<calendar>:<revision>:<instance>`, so a
//! pass interrupted by a crash and run again, or run by two nodes at once, records each move
//! once (and the engine's decision is itself idempotent: on a calendar already in force nothing
//! moves). Up to [`CONCURRENCY`] commands are in flight, so they share group commits.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shenpi_engine::calendar::local_date;
use shenpi_engine::runtime::{Actor, Command, CommandEnvelope, Event};
use tokio::task::JoinSet;

use crate::bus::{CommandBus, Submit};
use crate::engine_machine::EngineMachine;
use crate::store::{Db, EventStore};

/// Commands in flight at once during a pass.
pub const CONCURRENCY: usize = 64;

/// What re-timing on a revision did, as kept with the revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetimeSummary {
    pub calendar: String,
    pub revision: i64,
    /// Instances with an open timer on the calendar.
    pub instances: usize,
    /// Instances whose history records the move (a `retimed` event).
    pub moved_instances: usize,
    /// Timers moved (yellow points, deadlines, escalation rungs).
    pub clocks_moved: usize,
    pub moved_later: usize,
    pub moved_earlier: usize,
    /// The largest move, in natural days either way.
    pub max_days: i64,
    /// Instances whose command failed (tried again on the next pass).
    pub failed: usize,
}

impl RetimeSummary {
    fn count(&mut self, old: jiff::Timestamp, new: jiff::Timestamp) {
        self.clocks_moved += 1;
        if new > old {
            self.moved_later += 1;
        } else {
            self.moved_earlier += 1;
        }
        let days = local_date(new)
            .since(local_date(old))
            .map(|d| i64::from(d.get_days()).abs())
            .unwrap_or(0);
        self.max_days = self.max_days.max(days);
    }
}

/// The idempotency key of one instance's re-timing on a revision.
pub fn key(calendar: &str, revision: i64, instance: &str) -> String {
    format!("recalendar:{calendar}:{revision}:{instance}")
}

/// Re-times every instance of `workflows` (the workflows counting on `calendar`) that has an
/// open timer, on the calendar the machine has in force. Call it after the revision is in force
/// on this node (`EngineMachine::set_calendar`).
pub async fn retime(
    bus: &CommandBus<EngineMachine>,
    db: &Db,
    calendar: &str,
    revision: i64,
    workflows: &[String],
) -> Result<RetimeSummary, String> {
    let instances = db
        .instances_with_open_timers()
        .await
        .map_err(|e| e.to_string())?;
    let mut s = RetimeSummary {
        calendar: calendar.to_string(),
        revision,
        ..RetimeSummary::default()
    };
    let rev = u32::try_from(revision).unwrap_or(u32::MAX);
    let cal: Arc<str> = Arc::from(calendar);
    let mut todo = instances
        .into_iter()
        .filter(|(_, w)| workflows.contains(w))
        .map(|(i, _)| i);
    let mut running: JoinSet<(String, Result<Vec<Event>, String>)> = JoinSet::new();
    loop {
        while running.len() < CONCURRENCY {
            let Some(instance) = todo.next() else { break };
            s.instances += 1;
            let (bus, db, cal) = (bus.clone(), db.clone(), cal.clone());
            running.spawn(async move {
                let r = one(&bus, &db, &cal, revision, rev, &instance).await;
                (instance, r)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok((_, Ok(events))) => {
                for e in events {
                    if let Event::Retimed { moves, .. } = e {
                        s.moved_instances += 1;
                        for m in moves {
                            s.count(m.old_due, m.new_due);
                        }
                    }
                }
            }
            Ok((instance, Err(e))) => {
                tracing::warn!(%instance, calendar, revision, error = %e, "re-timing failed");
                s.failed += 1;
            }
            Err(e) => {
                tracing::warn!(calendar, revision, error = %e, "re-timing task failed");
                s.failed += 1;
            }
        }
    }
    Ok(s)
}

/// One instance: the command, then the events it recorded (or recorded the first time, when
/// the key was seen before).
async fn one(
    bus: &CommandBus<EngineMachine>,
    db: &Db,
    calendar: &str,
    revision: i64,
    rev: u32,
    instance: &str,
) -> Result<Vec<Event>, String> {
    let receipt = bus
        .submit(Submit {
            instance: instance.to_string(),
            start: None,
            key: Some(key(calendar, revision, instance)),
            expected_version: None,
            command: CommandEnvelope {
                actor: Actor::system(),
                command: Command::Recalendar {
                    calendar: calendar.into(),
                    revision: rev,
                },
            },
            audit: None,
            project: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    if receipt.events == 0 {
        return Ok(Vec::new());
    }
    let Some((_, rows)) = db
        .load(instance, receipt.first_seq - 1)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    Ok(rows
        .iter()
        .take(usize::try_from(receipt.events).unwrap_or(usize::MAX))
        .filter(|r| r.kind == "retimed")
        .filter_map(|r| shenpi_engine::runtime::event::decode_event(r.format, &r.body).ok())
        .collect())
}
