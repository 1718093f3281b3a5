//! The projects a database holds, as a what-if cohort (`engine::whatif`): each instance's
//! project and start, and the response times and shares its history shows, so a draft is tried
//! on the projects an office has, answered as fast as its departments really answer.

use std::collections::BTreeMap;

use jiff::Timestamp;
use shenpi_engine::calendar::{Calendar, local_date};
use shenpi_engine::compile::{Definition, Party};
use shenpi_engine::runtime::event::{Decision, TaskKind, decode_event};
use shenpi_engine::runtime::{Event, TaskId};
use shenpi_engine::whatif::{Cohort, Dist, Respond, SimProject};

use crate::engine_machine::timestamp;
use crate::store::{Db, EventStore};

/// What the histories of one workflow's instances show.
#[derive(Debug, Clone)]
pub struct Observed {
    pub cohort: Cohort,
    /// Instances read, and decisions and promises their histories hold.
    pub instances: usize,
    pub decisions: usize,
    pub promises: usize,
}

/// Reads every instance of `def`'s workflow from `db` into a cohort: its start and project,
/// per-department samples of working days from a task opening to its decision (all departments
/// pooled as the default), the applicant's working days from a promise to the material, and the
/// shares of 容缺 and final rejections among decisions on work tasks.
pub async fn observed(
    db: &Db,
    def: &Definition,
    cal: &Calendar,
    seed: u64,
) -> Result<Observed, String> {
    let ids = db
        .instances_of_workflow(def.id())
        .await
        .map_err(|e| format!("无法读取实例：{e}"))?;
    let days = |a: Timestamp, b: Timestamp| {
        cal.working_days_between(local_date(a), local_date(b))
            .map(f64::from)
            .ok()
    };
    let mut projects = Vec::new();
    let mut departments: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut applicant = Vec::new();
    let (mut work, mut conditional, mut rejected, mut promises) = (0usize, 0usize, 0usize, 0usize);
    for id in &ids {
        let Some((_, rows)) = db
            .load(id, 0)
            .await
            .map_err(|e| format!("无法读取实例 {id} 的历史：{e}"))?
        else {
            continue;
        };
        let mut opened: BTreeMap<TaskId, (Timestamp, String, TaskKind)> = BTreeMap::new();
        let mut made: BTreeMap<String, Timestamp> = BTreeMap::new();
        for row in &rows {
            let at = timestamp(row.recorded_at);
            let event = decode_event(row.format, &row.body)
                .map_err(|e| format!("实例 {id} 的第 {} 条事件无法读取：{e}", row.seq))?;
            match event {
                Event::InstanceStarted { at, project, .. } => projects.push(SimProject {
                    arrival: at,
                    fields: project,
                }),
                Event::TaskOpened(t) => {
                    let dept = t
                        .department
                        .clone()
                        .or_else(|| match &t.assignment {
                            Party::Department(d) => Some(d.clone()),
                            Party::Role(r) => def.plan.role_department.get(r).cloned(),
                            Party::User(_) => None,
                        })
                        .map(|d| d.to_string())
                        .unwrap_or_default();
                    opened.insert(t.task, (at, dept, t.kind));
                }
                Event::TaskDecided {
                    task, decision, to, ..
                } => {
                    if let Some((from, dept, kind)) = opened.remove(&task) {
                        if let Some(d) = days(from, at) {
                            departments.entry(dept).or_default().push(d);
                        }
                        if kind == TaskKind::Work {
                            work += 1;
                            match decision {
                                Decision::ApproveConditional => conditional += 1,
                                Decision::Reject if to.is_none() => rejected += 1,
                                _ => {}
                            }
                        }
                    }
                }
                Event::PromiseMade { material, .. } => {
                    promises += 1;
                    made.insert(material.to_string(), at);
                }
                Event::MaterialSupplied { material, .. } => {
                    if let Some(from) = made.remove(material.as_str()) {
                        applicant.extend(days(from, at));
                    }
                }
                _ => {}
            }
        }
    }
    let pooled: Vec<f64> = departments.values().flatten().copied().collect();
    let share = |n: usize| {
        if work == 0 {
            0.0
        } else {
            n as f64 / work as f64
        }
    };
    let decisions = pooled.len();
    Ok(Observed {
        instances: ids.len(),
        decisions,
        promises,
        cohort: Cohort {
            seed,
            projects,
            respond: Respond {
                default: (!pooled.is_empty()).then_some(Dist::Sample(pooled)),
                departments: departments
                    .into_iter()
                    .map(|(k, v)| (k, Dist::Sample(v)))
                    .collect(),
                nodes: BTreeMap::new(),
                applicant: (!applicant.is_empty()).then_some(Dist::Sample(applicant)),
            },
            conditional: share(conditional),
            reject: share(rejected),
        },
    })
}
