//! Diagnostics: what is wrong with a workflow file, where, and what to do about it.
//!
//! Validation returns every problem as a value; rendering follows rustc's layout
//! (`file:line:col: error[CODE]: message`, then the offending line quoted with a caret) so that
//! editors and terminals both understand it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::span::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code, e.g. `E012`; listed in `docs/diagnostics.md`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub line: u32,
    pub col: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            line: pos.line,
            col: pos.col,
            help: None,
        }
    }

    pub fn warning(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, pos, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders rustc style: `file:line:col: error[CODE]: message`, the line quoted, a caret.
    pub fn render(&self, file: &str, source: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!(
            "{file}:{}:{}: {sev}[{}]: {}\n",
            self.line, self.col, self.code, self.message
        );
        if self.line > 0
            && let Some(text) = source.lines().nth(self.line as usize - 1)
        {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let caret_at: usize = text
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c.is_ascii() { 1 } else { 2 })
                .sum();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{num} | {text}");
            let _ = writeln!(out, "{pad} | {}^", " ".repeat(caret_at));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}
