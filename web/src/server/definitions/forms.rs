//! What the workflow editor posts and asks for, as typed forms.

use serde::Deserialize;

use super::super::form;

/// The editor's query: the workflow to open (a new one when absent).
#[derive(Debug, Deserialize)]
pub struct EditorQuery {
    pub id: Option<String>,
}

/// The editor's form: the YAML, and which button was pressed.
#[derive(Debug, Deserialize)]
pub struct EditorForm {
    /// The workflow being edited, when it exists already.
    #[serde(default, deserialize_with = "form::text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "form::raw")]
    yaml: String,
    /// `validate` (校验) or `publish` (发布为新版本).
    #[serde(default, deserialize_with = "form::text")]
    op: Option<String>,
}

impl EditorForm {
    /// The YAML as typed, with the browser's line ends made Unix ones, so that the lines and
    /// columns of the diagnostics are those of the text shown.
    pub fn yaml(&self) -> String {
        self.yaml.replace("\r\n", "\n")
    }

    /// 发布为新版本 rather than 校验.
    pub fn publishes(&self) -> bool {
        self.op.as_deref() == Some("publish")
    }
}
