//! Who may do what on an instance: the one authorisation policy.
//!
//! `decide` refuses with it, the inbox projection addresses its rows with it and the web server
//! shows a task's actions with it, so the three cannot disagree on who may act. Five questions:
//!
//! - [`applicant_parties`] / [`is_applicant_party`]: the instance's own applicant, and the
//!   project's service officer (帮办专员) named by a user-typed project field. Holding the
//!   `applicant` role does *not* make anyone the applicant of someone else's instance.
//! - [`may_act`]: who may act on a task — its assigned user, a holder of its role, a member of
//!   its department pool, or a delegate; once claimed only the claimer (and delegates). A task
//!   assigned to `role: applicant` (the construction permit's `build`) belongs to the instance's
//!   applicant alone, never to every holder of the role.
//! - [`addressee`] / [`addressees`]: whom a task is addressed to in inboxes, with the same
//!   resolution, so an inbox shows exactly the tasks its owner may act on: the one consulted
//!   while a 委派 is open, no one while the holder waits for a 前加签 signer.
//! - [`may_migrate`]: who may move running instances to another version (the policy staff).
//! - [`may_take_part`]: who may comment on an instance or send a copy (抄送) from it: its
//!   applicant parties, whoever holds or held one of its tasks (assigned user, role holder,
//!   pool member, claimer, delegate, decider), members of a department one of its tasks belongs
//!   to, and the supervisors and leaders the workflow names for its departments (they chase
//!   overdue work, so they follow every instance). Anyone else is outside the file.
//! - [`may_resolve_supervision`]: who may 销号 an item of the supervision list (挂牌督办): a
//!   holder of the leader role it went to; when the workflow named none, a holder of any role
//!   named as a department's leader.

use serde_json::Value;
use smol_str::SmolStr;

use crate::compile::{Party, Plan};

use super::command::Actor;
use super::state::{InstanceState, Supervision, Task};

/// The role a workflow names for "whoever applied": resolved per instance, never a pool.
pub const APPLICANT_ROLE: &str = "applicant";

/// The users who stand for the applicant of an instance: the applicant, then each user named by
/// a user-typed project field (the service officer). Empty names are skipped.
pub fn applicant_parties<'a>(
    plan: &'a Plan,
    applicant: &'a str,
    project: &'a Value,
) -> impl Iterator<Item = &'a str> + 'a {
    let officers = plan
        .user_fields
        .iter()
        .filter_map(move |f| project.get(f.as_str()).and_then(Value::as_str));
    std::iter::once(applicant)
        .chain(officers)
        .filter(|u| !u.is_empty())
}

/// Whether `actor` is one of the instance's applicant parties (see [`applicant_parties`]).
pub fn is_applicant_party(plan: &Plan, applicant: &str, project: &Value, actor: &Actor) -> bool {
    applicant_parties(plan, applicant, project).any(|u| u == actor.name)
}

/// The party a task is addressed to before delegates: its claimer if claimed, else its
/// assignment, with `role: applicant` resolved to the instance's applicant.
pub fn addressee(task: &Task, applicant: &str) -> Party {
    match &task.claimed_by {
        Some(c) => Party::User(c.clone()),
        None => assignment(task, applicant),
    }
}

/// Whether the workflow addresses the task to the applicant side (`role: applicant`) rather
/// than to the administration.
pub fn is_applicants_task(task: &Task) -> bool {
    matches!(&task.spec.assignment, Party::Role(r) if r == APPLICANT_ROLE)
}

/// A task's assignment with `role: applicant` resolved to the instance's applicant.
fn assignment(task: &Task, applicant: &str) -> Party {
    if is_applicants_task(task) {
        return Party::User(SmolStr::new(applicant));
    }
    task.spec.assignment.clone()
}

/// Everyone a task is addressed to: its [`addressee`], then each delegate. While the task is
/// with someone for an opinion (委派) it is addressed to them alone; while its holder waits for
/// a signer added before them (前加签) it is addressed to no one (the signer has a task of
/// their own).
pub fn addressees(task: &Task, applicant: &str) -> Vec<Party> {
    if let Some(c) = &task.consulting {
        return vec![Party::User(c.clone())];
    }
    if task.is_awaiting() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(1 + task.delegates.len());
    out.push(addressee(task, applicant));
    for d in &task.delegates {
        let p = Party::User(d.clone());
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Whether `actor` is in `party`: the user, a holder of the role, a member of the department.
fn is_in(party: &Party, actor: &Actor) -> bool {
    match party {
        Party::User(u) => *u == actor.name,
        Party::Role(r) => actor.has_role(r),
        Party::Department(d) => actor.department.as_ref() == Some(d),
    }
}

/// The one authorisation rule for acting on a task of the instance whose applicant is
/// `applicant`: `actor` is one of its [`addressees`] — or, while it waits for a signer added
/// before them (前加签), its holder (who may comment or remove the signer, not decide). While
/// the task is with someone for an opinion (委派), only they may act (they answer).
pub fn may_act(task: &Task, actor: &Actor, applicant: &str) -> bool {
    if let Some(c) = &task.consulting {
        return *c == actor.name;
    }
    is_holder(task, actor, applicant)
}

/// Whether `actor` holds the task, leaving aside a 委派 in progress: its addressee or a delegate.
pub fn is_holder(task: &Task, actor: &Actor, applicant: &str) -> bool {
    task.delegates.contains(&actor.name) || is_in(&addressee(task, applicant), actor)
}

/// Whether `actor` may comment on the instance or send a copy from it (see the module docs).
pub fn may_take_part(plan: &Plan, state: &InstanceState, project: &Value, actor: &Actor) -> bool {
    if is_applicant_party(plan, &state.applicant, project, actor) {
        return true;
    }
    let holds = |t: &Task| {
        may_act(t, actor, &state.applicant)
            || is_in(&assignment(t, &state.applicant), actor)
            || t.decided_by.as_ref() == Some(&actor.name)
            || (actor.department.is_some() && actor.department == t.spec.department)
    };
    state.tasks.iter().any(holds) || oversees(plan, actor)
}

/// Whether `actor` holds a role the workflow names as some department's supervisor or leader.
pub fn oversees(plan: &Plan, actor: &Actor) -> bool {
    plan.departments.values().any(|d| {
        [&d.supervisor, &d.leader]
            .into_iter()
            .flatten()
            .any(|r| actor.has_role(r))
    })
}

/// Whether `actor` may resolve (销号) a supervised item (see the module docs).
pub fn may_resolve_supervision(plan: &Plan, item: &Supervision, actor: &Actor) -> bool {
    match &item.leader {
        Some(role) => actor.has_role(role),
        None => plan
            .departments
            .values()
            .filter_map(|d| d.leader.as_ref())
            .any(|r| actor.has_role(r)),
    }
}

/// The role of the policy staff (政策法规人员) who write and publish the rules.
pub const POLICY_STAFF_ROLE: &str = "policy_staff";

/// Whether `actor` may move running instances to another version of their workflow (迁移):
/// the policy staff, who publish the versions.
pub fn may_migrate(actor: &Actor) -> bool {
    actor.has_role(POLICY_STAFF_ROLE)
}
