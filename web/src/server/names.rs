//! The names a workflow gives its nodes, materials, stages, elements, fields and departments, for
//! what people read: the pages, the refusals, the refused timers. Where the workflow gives no
//! name (or does not know the id) the id stands for itself.

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
