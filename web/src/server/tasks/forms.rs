//! What the task page posts: one form per action, as a typed form tagged by its `action`, and
//! its engine command. What the form cannot do without is checked here (a 补正 needs its reason);
//! whether the action is allowed, by whom, and on which materials is the engine's to answer.

use serde::Deserialize;
use shenpi_engine::model::RawLimit;
use shenpi_engine::runtime::event::SignOrder;
use shenpi_engine::runtime::{Command, TaskId};

use super::super::form::{self, FormError, required};

/// The task page's forms, by their `action`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TaskForm {
    Claim,
    Approve {
        #[serde(default, deserialize_with = "form::text")]
        comment: Option<String>,
    },
    /// 容缺通过: the materials waived and the commitment's limit.
    Conditional {
        #[serde(default, deserialize_with = "form::list")]
        waive: Vec<String>,
        #[serde(default, deserialize_with = "form::text")]
        limit: Option<String>,
        #[serde(default, deserialize_with = "form::text")]
        comment: Option<String>,
    },
    /// Reject back to `to`, or refuse the application when it is empty.
    Reject {
        #[serde(default, deserialize_with = "form::text")]
        to: Option<String>,
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    /// Return to the applicant for 补正.
    Return {
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
        #[serde(default, deserialize_with = "form::list")]
        materials: Vec<String>,
    },
    /// 委派 (`mode=consult`, the default), 转办 (`transfer`) or 委托 (`entrust`) to `to`.
    Delegate {
        #[serde(default, deserialize_with = "form::text")]
        to: Option<String>,
        #[serde(default, deserialize_with = "form::text")]
        mode: Option<String>,
        /// 转办 (hand over), as the older form posted it.
        #[serde(default, deserialize_with = "form::checked")]
        transfer: bool,
        #[serde(default, deserialize_with = "form::text")]
        text: Option<String>,
    },
    /// The one consulted (委派) answers.
    Answer {
        #[serde(default, deserialize_with = "form::text")]
        opinion: Option<String>,
    },
    /// 加签 before (`order=before`), beside (`with`, the default) or after (`after`) the holder.
    Cosign {
        #[serde(default, deserialize_with = "form::text")]
        user: Option<String>,
        #[serde(default, deserialize_with = "form::text")]
        order: Option<String>,
    },
    /// 减签.
    Uncosign {
        #[serde(default, deserialize_with = "form::text")]
        user: Option<String>,
        #[serde(default, deserialize_with = "form::checked")]
        confirm: bool,
    },
    /// 拿回, confirmed.
    TakeBack {
        #[serde(default, deserialize_with = "form::checked")]
        confirm: bool,
    },
    Extend {
        #[serde(default, deserialize_with = "form::text")]
        limit: Option<String>,
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    Suspend {
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    Resume,
    Verify {
        #[serde(default, deserialize_with = "form::checked")]
        accepted: bool,
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    Comment {
        #[serde(default, deserialize_with = "form::text")]
        text: Option<String>,
    },
    Urge {
        #[serde(default, deserialize_with = "form::text")]
        text: Option<String>,
    },
    /// 挂牌督办 (from the 督办看板).
    Supervise {
        #[serde(default, deserialize_with = "form::text")]
        reason: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

impl TaskForm {
    /// The engine command the form asks for on `task`.
    pub fn command(self, task: TaskId) -> Result<Command, FormError> {
        Ok(match self {
            TaskForm::Claim => Command::Claim { task },
            TaskForm::Approve { comment } => Command::Approve { task, comment },
            TaskForm::Conditional {
                waive,
                limit,
                comment,
            } => Command::ApproveConditional {
                task,
                waive: waive.into_iter().map(Into::into).collect(),
                limit: limit.map(RawLimit::Text),
                comment,
            },
            TaskForm::Reject { to, reason } => Command::Reject {
                task,
                to: to.map(Into::into),
                reason,
            },
            TaskForm::Return { reason, materials } => Command::Return {
                task,
                reason: required(reason, "reason", "补正原因")?,
                materials: materials.into_iter().map(Into::into).collect(),
            },
            TaskForm::Delegate {
                to,
                mode,
                transfer,
                text,
            } => {
                let to = required(to, "to", "委派、转办或委托的对象")?.into();
                match (mode.as_deref(), transfer) {
                    (Some("transfer"), _) | (None, true) => Command::Delegate {
                        task,
                        to,
                        transfer: true,
                    },
                    (Some("entrust"), _) => Command::Delegate {
                        task,
                        to,
                        transfer: false,
                    },
                    (Some("consult") | None, false) => Command::Consult { task, to, text },
                    (Some(_), _) => {
                        return Err(FormError::new("mode", "请选择委派、转办或委托"));
                    }
                }
            }
            TaskForm::Answer { opinion } => Command::AnswerConsult {
                task,
                opinion: required(opinion, "opinion", "意见")?,
            },
            TaskForm::Cosign { user, order } => Command::AddCosigner {
                task,
                user: required(user, "user", "加签人")?.into(),
                order: match order.as_deref() {
                    None | Some("with") => SignOrder::With,
                    Some("before") => SignOrder::Before,
                    Some("after") => SignOrder::After,
                    Some(_) => return Err(FormError::new("order", "请选择前加签、并加签或后加签")),
                },
            },
            TaskForm::Uncosign { user, confirm } => {
                let user = required(user, "user", "减签人")?.into();
                if !confirm {
                    return Err(FormError::new("confirm", "请勾选确认后再减签"));
                }
                Command::RemoveCosigner { task, user }
            }
            TaskForm::TakeBack { confirm } => {
                if !confirm {
                    return Err(FormError::new("confirm", "请勾选确认后再拿回"));
                }
                Command::TakeBack { task }
            }
            TaskForm::Extend { limit, reason } => Command::Extend {
                task,
                limit: RawLimit::Text(required(limit, "limit", "延长时限")?),
                reason: required(reason, "reason", "理由")?,
                step: false,
            },
            TaskForm::Suspend { reason } => Command::Suspend {
                task,
                reason: required(reason, "reason", "中止原因")?,
            },
            TaskForm::Resume => Command::Resume { task: Some(task) },
            TaskForm::Verify { accepted, reason } => Command::VerifyMaterial {
                task,
                accepted,
                reason,
            },
            TaskForm::Comment { text } => Command::Comment {
                task: Some(task),
                text: required(text, "text", "意见")?,
            },
            TaskForm::Urge { text } => Command::Urge { task, text },
            TaskForm::Supervise { reason } => Command::Supervise { task, reason },
            TaskForm::Unknown => return Err(FormError::unknown_action()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::form::Fields;

    fn command(body: &str) -> Result<Command, FormError> {
        Fields::read(body.as_bytes())
            .action::<TaskForm>()
            .and_then(|f| f.command(TaskId(3)))
    }

    #[test]
    fn a_missing_reason_names_its_field_in_chinese() {
        let e = command("action=return&reason=++&materials=eia").unwrap_err();
        assert_eq!(e, FormError::new("reason", "请填写补正原因"));
        let e = command("action=extend&limit=5wd").unwrap_err();
        assert_eq!(e, FormError::new("reason", "请填写理由"));
    }

    #[test]
    fn every_ticked_material_is_waived() {
        let c = command("action=conditional&waive=eia&waive=energy&limit=20wd").unwrap();
        let Command::ApproveConditional {
            task, waive, limit, ..
        } = c
        else {
            panic!("not a conditional approval: {c:?}");
        };
        assert_eq!(task, TaskId(3));
        assert_eq!(waive, vec!["eia", "energy"]);
        assert_eq!(limit, Some(RawLimit::Text("20wd".into())));
    }

    #[test]
    fn a_verification_reads_the_button_pressed() {
        let c = command("action=verify&accepted=false&reason=%E7%BC%BA%E7%AB%A0").unwrap();
        assert!(matches!(
            c,
            Command::VerifyMaterial { accepted: false, reason: Some(r), .. } if r == "缺章"
        ));
        let c = command("action=verify&accepted=true").unwrap();
        assert!(matches!(c, Command::VerifyMaterial { accepted: true, .. }));
    }

    #[test]
    fn the_delegation_form_asks_for_an_opinion_unless_told_to_hand_over() {
        let c = command("action=delegate&to=wu").unwrap();
        assert!(
            matches!(c, Command::Consult { ref to, .. } if to == "wu"),
            "{c:?}"
        );
        let c = command("action=delegate&to=wu&mode=transfer").unwrap();
        assert!(
            matches!(c, Command::Delegate { transfer: true, .. }),
            "{c:?}"
        );
        let c = command("action=delegate&to=wu&transfer=true").unwrap();
        assert!(
            matches!(c, Command::Delegate { transfer: true, .. }),
            "{c:?}"
        );
        let c = command("action=delegate&to=wu&mode=entrust").unwrap();
        assert!(
            matches!(
                c,
                Command::Delegate {
                    transfer: false,
                    ..
                }
            ),
            "{c:?}"
        );
        let e = command("action=delegate&to=wu&mode=fly").unwrap_err();
        assert_eq!(e, FormError::new("mode", "请选择委派、转办或委托"));
    }

    #[test]
    fn a_signer_is_added_in_the_order_chosen_and_removed_only_when_confirmed() {
        let c = command("action=cosign&user=wu&order=before").unwrap();
        assert!(
            matches!(
                c,
                Command::AddCosigner {
                    order: SignOrder::Before,
                    ..
                }
            ),
            "{c:?}"
        );
        let c = command("action=cosign&user=wu").unwrap();
        assert!(
            matches!(
                c,
                Command::AddCosigner {
                    order: SignOrder::With,
                    ..
                }
            ),
            "{c:?}"
        );
        let e = command("action=uncosign&user=wu").unwrap_err();
        assert_eq!(e, FormError::new("confirm", "请勾选确认后再减签"));
        let c = command("action=uncosign&user=wu&confirm=true").unwrap();
        assert!(matches!(c, Command::RemoveCosigner { .. }), "{c:?}");
        let e = command("action=take_back").unwrap_err();
        assert_eq!(e, FormError::new("confirm", "请勾选确认后再拿回"));
        let c = command("action=take_back&confirm=true").unwrap();
        assert!(matches!(c, Command::TakeBack { task: TaskId(3) }), "{c:?}");
    }

    #[test]
    fn an_empty_target_refuses_rather_than_rejects_back() {
        let c = command("action=reject&to=&reason=x").unwrap();
        assert!(matches!(c, Command::Reject { to: None, .. }));
    }

    #[test]
    fn an_unknown_or_missing_action_is_refused() {
        assert_eq!(
            command("action=fly").unwrap_err(),
            FormError::unknown_action()
        );
        assert_eq!(
            command("comment=x").unwrap_err(),
            FormError::unknown_action()
        );
    }
}
