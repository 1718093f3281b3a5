//! What the instance page posts: an applicant's action, as a typed form.

use serde::Deserialize;
use shenpi_engine::runtime::Command;

use super::super::form::{self, FormError};

/// The instance page's forms, by their `action`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InstanceForm {
    /// Supply a promised material (容缺补交).
    Supply {
        #[serde(default, deserialize_with = "form::text")]
        material: Option<String>,
    },
    /// Resubmit after a 补正.
    Resume,
    Withdraw {
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    Comment {
        #[serde(default, deserialize_with = "form::text")]
        text: Option<String>,
    },
    /// Attach an element; `fields` is a JSON object.
    Attach {
        #[serde(default, deserialize_with = "form::text")]
        element: Option<String>,
        #[serde(default, deserialize_with = "form::raw_opt")]
        fields: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

impl InstanceForm {
    /// The engine command the form asks for. What the engine checks (which material is
    /// expected, which element exists) it answers itself, in the workflow's names.
    pub fn command(self) -> Result<Command, FormError> {
        Ok(match self {
            InstanceForm::Supply { material } => Command::SupplyMaterial {
                material: material.unwrap_or_default().into(),
                files: Vec::new(),
            },
            InstanceForm::Resume => Command::Resume { task: None },
            InstanceForm::Withdraw { reason } => Command::Withdraw { reason },
            InstanceForm::Comment { text } => Command::Comment {
                task: None,
                text: text.unwrap_or_default(),
            },
            InstanceForm::Attach { element, fields } => {
                let fields = serde_json::from_str(fields.as_deref().unwrap_or("{}"))
                    .map_err(|e| FormError::new("fields", format!("字段不是合法 JSON：{e}")))?;
                Command::AttachElement {
                    element: element.unwrap_or_default().into(),
                    fields,
                }
            }
            InstanceForm::Unknown => return Err(FormError::unknown_action()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::form::Fields;

    fn command(body: &str) -> Result<Command, FormError> {
        Fields::read(body.as_bytes())
            .action::<InstanceForm>()
            .and_then(InstanceForm::command)
    }

    #[test]
    fn an_element_with_bad_json_names_the_field() {
        let e = command("action=attach&element=site&fields=%7Bx").unwrap_err();
        assert_eq!(e.field, "fields");
        assert!(e.message.starts_with("字段不是合法 JSON"), "{}", e.message);
    }

    #[test]
    fn an_unknown_action_is_refused_in_chinese() {
        assert_eq!(
            command("action=explode").unwrap_err(),
            FormError::unknown_action()
        );
        assert_eq!(command("csrf=x").unwrap_err(), FormError::unknown_action());
    }

    #[test]
    fn a_supply_names_its_material() {
        let c = command("csrf=x&idem=y&action=supply&material=+eia+").unwrap();
        assert!(matches!(c, Command::SupplyMaterial { material, .. } if material == "eia"));
    }
}
