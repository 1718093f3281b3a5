//! Validation of a workflow: every rule broken, each with a code and a position.

use crate::diag::Diagnostic;
use crate::model::Workflow;

/// What validation needs to know from outside the file.
#[derive(Debug, Clone, Default)]
pub struct ValidateContext {
    /// Ids of the calendars that exist (files in `workflows/calendars/`).
    pub calendars: Vec<String>,
    /// Names of the message templates that exist (files in `workflows/templates/`); empty means
    /// "do not check templates".
    pub templates: Vec<String>,
}

pub fn validate(_workflow: &Workflow, _ctx: &ValidateContext) -> Vec<Diagnostic> {
    Vec::new()
}
