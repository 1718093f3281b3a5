//! The names a workflow gives its nodes, materials, stages, elements, fields and departments, for
//! what people read: the pages, the refusals, the refused timers. Where the workflow gives no
//! name (or does not know the id) the id stands for itself.
//!
//! [`WorkflowNames`] names what one workflow version declares; [`Everywhere`] names what
//! belongs to no one instance (a user's department and roles in the header, a row of the
//! 督办看板, an inbox filter) from the newest version of every loaded workflow.

use std::sync::Arc;

use shenpi_engine::compile::Definition;

/// The names of one workflow version.
#[derive(Clone, Copy)]
pub struct WorkflowNames<'a>(pub &'a Definition);

impl WorkflowNames<'_> {
    pub fn node(&self, id: &str) -> String {
        self.0
            .node(id)
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn material(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.materials, id, |m| (&m.id.value, &m.name))
    }

    pub fn stage(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.stages, id, |s| (&s.id.value, &s.name))
    }

    pub fn element(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.elements, id, |e| (&e.id.value, &e.name))
    }

    /// A project field, by its label.
    pub fn field(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.fields, id, |f| (&f.id.value, &f.label))
    }

    /// A role: its name, else the department it belongs to, else its id.
    pub fn role(&self, id: &str) -> String {
        let w = &self.0.workflow;
        match w.roles.iter().find(|r| r.id.value == id) {
            Some(r) => match (&r.name, &r.department) {
                (Some(n), _) => n.clone(),
                (None, Some(d)) => format!("{}经办人", self.department(&d.value)),
                (None, None) => id.to_string(),
            },
            None => id.to_string(),
        }
    }

    /// Who a task is assigned to, as people read it.
    pub fn party(&self, p: &shenpi_engine::compile::Party) -> String {
        use shenpi_engine::compile::Party;
        match p {
            Party::User(u) => u.to_string(),
            Party::Role(r) => self.role(r),
            Party::Department(d) => self.department(d),
        }
    }

    pub fn department(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.departments, id, |d| (&d.id.value, &d.name))
    }

    /// A green channel, by its name.
    pub fn channel(&self, id: &str) -> String {
        let w = &self.0.workflow;
        name_of(&w.channels, id, |c| (&c.id.value, &c.name))
    }

    /// A party as the projection and the outbox write it (`user:NAME`, `role:ID`, `dept:ID`).
    pub fn party_key(&self, key: &str) -> String {
        match key.split_once(':') {
            Some(("user", u)) => u.to_string(),
            Some(("role", r)) => self.role(r),
            Some(("dept", d)) => self.department(d),
            _ => key.to_string(),
        }
    }

    /// The workflow's own name.
    pub fn workflow(&self) -> String {
        self.0.workflow.name.clone()
    }
}

/// Names that belong to no one instance, from the newest version of every loaded workflow:
/// the first workflow that names an id gives its name; an id none names stands for itself.
pub struct Everywhere(pub Vec<Arc<shenpi_adapters::engine_machine::EngineContext>>);

impl Everywhere {
    pub fn of(machine: &shenpi_adapters::engine_machine::EngineMachine) -> Everywhere {
        Everywhere(machine.newest())
    }

    /// The name the workflows give `id`; when they name it differently (`fgw` is the
    /// 省发展改革委 of one workflow and the 市发展改革委 of another), every name, joined with 「／」,
    /// since nothing outside an instance says which is meant.
    fn first(&self, id: &str, name: impl Fn(&WorkflowNames<'_>, &str) -> String) -> String {
        let mut given: Vec<String> = Vec::new();
        for c in &self.0 {
            let n = name(&WorkflowNames(&c.def), id);
            if n != id && !given.contains(&n) {
                given.push(n);
            }
        }
        if given.is_empty() {
            id.to_string()
        } else {
            given.join("／")
        }
    }

    pub fn department(&self, id: &str) -> String {
        self.first(id, |n, i| n.department(i))
    }

    /// A user's department as the workflow that declares one of their roles in it names it
    /// (`fgw` is 省发展改革委 to a holder of a provincial role, 市发展改革委 to a city one);
    /// else as most workflows name it.
    pub fn department_of(&self, department: &str, roles: &[String]) -> String {
        let held = |c: &&Arc<shenpi_adapters::engine_machine::EngineContext>| {
            c.def
                .workflow
                .roles
                .iter()
                .filter(|r| {
                    roles.contains(&r.id.value)
                        && r.department.as_ref().is_some_and(|d| d.value == department)
                })
                .count()
        };
        // The workflow that declares the most of the user's roles in that department.
        let mut best: Option<(&Arc<shenpi_adapters::engine_machine::EngineContext>, usize)> = None;
        for c in &self.0 {
            let n = held(&c);
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| WorkflowNames(&c.def).department(department))
            .unwrap_or_else(|| self.department(department))
    }

    /// A role: a system role's Chinese name, else the first workflow's name for it.
    pub fn role(&self, id: &str) -> String {
        match system_role(id) {
            Some(n) => n.to_string(),
            None => self.first(id, |n, i| n.role(i)),
        }
    }

    pub fn stage(&self, id: &str) -> String {
        self.first(id, |n, i| n.stage(i))
    }

    /// A workflow by its id.
    pub fn workflow(&self, id: &str) -> String {
        self.0
            .iter()
            .find(|c| c.def.workflow.id.value == id)
            .map(|c| c.def.workflow.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The names of one workflow's newest version, if it is loaded.
    pub fn of_workflow(&self, id: &str) -> Option<&Definition> {
        self.0
            .iter()
            .find(|c| c.def.workflow.id.value == id)
            .map(|c| c.def.as_ref())
    }

    pub fn party_key(&self, key: &str) -> String {
        match key.split_once(':') {
            Some(("user", u)) => u.to_string(),
            Some(("role", r)) => self.role(r),
            Some(("dept", d)) => self.department(d),
            _ => key.to_string(),
        }
    }

    /// Every (id, name) of the stages the loaded workflows declare, in their order, once each.
    pub fn stages(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for c in &self.0 {
            for s in &c.def.workflow.stages {
                if !out.iter().any(|(id, _)| *id == s.id.value) {
                    let name = s.name.clone().unwrap_or_else(|| s.id.value.clone());
                    out.push((s.id.value.clone(), name));
                }
            }
        }
        out
    }

    /// Every (id, name) of the departments the loaded workflows declare, once each.
    pub fn departments(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for c in &self.0 {
            for d in &c.def.workflow.departments {
                if !out.iter().any(|(id, _)| *id == d.id.value) {
                    let name = d.name.clone().unwrap_or_else(|| d.id.value.clone());
                    out.push((d.id.value.clone(), name));
                }
            }
        }
        out
    }

    /// Every (id, name) of the loaded workflows.
    pub fn workflows(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|c| (c.def.workflow.id.value.clone(), c.def.workflow.name.clone()))
            .collect()
    }
}

/// The Chinese name of a role the server itself knows (not a workflow's).
pub fn system_role(id: &str) -> Option<&'static str> {
    Some(match id {
        "applicant" => "项目单位",
        "service_officer" => "帮办专员",
        "approver" => "审批人员",
        "supervisor" => "督办",
        "policy_staff" => "政策法规",
        "admin" => "管理员",
        _ => return None,
    })
}

/// The name of the item with id `id`, given each item's (id, name).
fn name_of<T>(items: &[T], id: &str, key: impl Fn(&T) -> (&String, &Option<String>)) -> String {
    items
        .iter()
        .map(&key)
        .find(|(i, _)| i.as_str() == id)
        .and_then(|(_, name)| name.clone())
        .unwrap_or_else(|| id.to_string())
}
