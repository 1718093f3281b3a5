//! The real engine behind the durable layer: [`Machine`] for `shenpi_engine::runtime`.
//!
//! It owns the translation between the engine's types and the rows the store keeps: a
//! `TimerArmed` event becomes a timer row keyed by (instance, timer id), `TimerCancelled` cancels
//! it, a due timer comes back as a `TimerFired` command from the system actor;
//! `NotificationRequested` becomes one outbox row per recipient and delivery channel, with every
//! variable the shipped templates use filled in (templates render in strict mode, so a missing
//! variable would be a delivery error, not a blank); the inbox, promise and element projections
//! are read off the engine's own [`view`], so the colour rule stays in one place.
//!
//! It is also the one registry of what a node runs on: the calendars in force (with the revision
//! each is at) and the compiled definitions, once per published version, kept for the process's
//! life (an instance always runs on the version it started on). The server's catalogue reads and
//! fills this registry; it keeps no copy of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use serde::Serialize;
use shenpi_engine::calendar::{Calendar, local_datetime};
use shenpi_engine::compile::{Definition, Party, compile};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::runtime::policy;
use shenpi_engine::runtime::{
    self, Actor, Command, CommandEnvelope, Event, InstanceState, TimerId, view,
};
use shenpi_engine::validate::ValidateContext;

use crate::loader::{self, LoadError};
use crate::machine::{Effects, Machine, Notification, Rejection};
use crate::store::{
    DefinitionRow, ElementRow, InboxRow, InstanceMeta, Millis, Projection, PromiseRow, TimerRow,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("calendar {0} is invalid: {1}")]
    Calendar(String, String),
}

/// A calendar file of a workflow folder: its id (the file's stem), its text and what it says.
#[derive(Debug, Clone)]
pub struct CalendarFile {
    pub id: String,
    /// Relative to the workflow folder: `calendars/<id>.yaml`.
    pub shown: String,
    pub text: String,
    pub calendar: Calendar,
}

/// What a node reads of its workflow folder before it runs, read once: `calendars/*.yaml`
/// (text and parsed) and the names of `templates/*.hbs`.
#[derive(Debug, Clone)]
pub struct WorkflowDir {
    pub calendars: Vec<CalendarFile>,
    pub templates: Vec<String>,
    /// `documents/*.txt`, name → text (commitment letters, official documents).
    pub documents: BTreeMap<String, String>,
}

impl WorkflowDir {
    pub fn read(dir: &Path) -> Result<WorkflowDir, EngineSetupError> {
        let listed = |sub: &str, ext: &str| {
            loader::named_files(&dir.join(sub), ext).map_err(|e| setup_error(e, &dir.join(sub)))
        };
        let mut calendars = Vec::new();
        for (id, path) in listed("calendars", "yaml")? {
            let text = std::fs::read_to_string(&path).map_err(|source| EngineSetupError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let calendar = Calendar::from_yaml(&id, &text).map_err(|d| {
                let name = path.display().to_string();
                EngineSetupError::Calendar(
                    id.clone(),
                    d.iter().map(|d| d.render(&name, &text)).collect(),
                )
            })?;
            calendars.push(CalendarFile {
                shown: format!("calendars/{id}.yaml"),
                id,
                text,
                calendar,
            });
        }
        let templates = listed("templates", "hbs")?
            .into_iter()
            .map(|(stem, _)| stem)
            .collect();
        let documents = loader::document_templates(&dir.join("documents"))
            .map_err(|e| setup_error(e, &dir.join("documents")))?;
        Ok(WorkflowDir {
            calendars,
            templates,
            documents,
        })
    }
}

/// A folder of the workflow directory that could not be read.
fn setup_error(e: LoadError, at: &Path) -> EngineSetupError {
    match e {
        LoadError::Read { path, source } => EngineSetupError::Read {
            path: path.display().to_string(),
            source,
        },
        other => EngineSetupError::Read {
            path: at.display().to_string(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// A compiled definition version with its calendar.
pub struct EngineContext {
    pub def: Arc<Definition>,
    pub cal: Arc<Calendar>,
}

/// The engine as a [`Machine`], and the registry of calendars and definitions.
pub struct EngineMachine {
    /// The calendars in force, by id, with the revision each is at (0 until the database was
    /// consulted); a published revision replaces one ([`Self::put_calendar`]).
    calendars: RwLock<HashMap<String, (Arc<Calendar>, i64)>>,
    vctx: ValidateContext,
    defs: RwLock<HashMap<(String, i64), Arc<EngineContext>>>,
}

impl EngineMachine {
    pub fn new(
        calendars: Vec<Calendar>,
        templates: Vec<String>,
        documents: BTreeMap<String, String>,
    ) -> EngineMachine {
        let mut ids: Vec<String> = calendars.iter().map(|c| c.id().to_string()).collect();
        ids.sort();
        let vctx = ValidateContext {
            calendars: ids,
            templates,
            documents,
        };
        EngineMachine {
            calendars: RwLock::new(
                calendars
                    .into_iter()
                    .map(|c| (c.id().to_string(), (Arc::new(c), 0)))
                    .collect(),
            ),
            vctx,
            defs: RwLock::new(HashMap::new()),
        }
    }

    /// Reads `DIR/calendars/*.yaml` and the template names of `DIR/templates/*.hbs`.
    pub fn from_dir(dir: &Path) -> Result<EngineMachine, EngineSetupError> {
        Ok(EngineMachine::from_files(&WorkflowDir::read(dir)?))
    }

    /// The registry of a workflow folder already read: its calendars, its template names.
    pub fn from_files(dir: &WorkflowDir) -> EngineMachine {
        let calendars = dir.calendars.iter().map(|f| f.calendar.clone()).collect();
        EngineMachine::new(calendars, dir.templates.clone(), dir.documents.clone())
    }

    /// What validation knows of this node: its calendar and template names.
    pub fn validate_context(&self) -> &ValidateContext {
        &self.vctx
    }

    /// Parses, validates and compiles a workflow text: the definition, or every diagnostic.
    pub fn check(&self, yaml: &str) -> Result<Definition, Vec<Diagnostic>> {
        let wf = parse_workflow(yaml)?;
        let def = compile(wf, &self.vctx)?;
        // Validation checks the name only when it knows some calendars; a definition this node
        // cannot run is refused here either way.
        if self.calendar(&def.workflow.calendar.value).is_err() {
            return Err(vec![shenpi_engine::validate::UNKNOWN_CALENDAR.at(
                def.workflow.calendar.pos,
                format!("unknown calendar `{}`", def.workflow.calendar.value),
            )]);
        }
        Ok(def)
    }

    /// [`Self::check`] with the diagnostics rendered as `line:col: message` lines.
    pub fn compile(&self, yaml: &str) -> Result<Definition, String> {
        self.check(yaml).map_err(render_diags)
    }

    /// The calendar in force with this id.
    pub fn calendar(&self, id: &str) -> Result<Arc<Calendar>, String> {
        self.calendars
            .read()
            .map_err(|_| "calendar registry poisoned".to_string())?
            .get(id)
            .map(|(c, _)| c.clone())
            .ok_or_else(|| format!("unknown calendar `{id}`"))
    }

    /// The revision the calendar in force is at (0 before the database was consulted).
    pub fn calendar_revision(&self, id: &str) -> Option<i64> {
        self.calendars.read().ok()?.get(id).map(|(_, r)| *r)
    }

    /// Every calendar in force, by id.
    pub fn calendars(&self) -> Vec<(String, Arc<Calendar>)> {
        let Ok(m) = self.calendars.read() else {
            return Vec::new();
        };
        let mut v: Vec<(String, Arc<Calendar>)> =
            m.iter().map(|(k, (c, _))| (k.clone(), c.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Puts a calendar in force without changing the revision it is recorded at.
    pub fn set_calendar(&self, cal: Calendar) -> Result<(), String> {
        let revision = self.calendar_revision(cal.id()).unwrap_or(0);
        self.put_calendar(cal, revision)
    }

    /// Puts a calendar revision in force: every definition counting on it counts on the new one
    /// from the next command on. Only a calendar the machine already knows may be replaced (a
    /// definition names its calendar when it is validated).
    pub fn put_calendar(&self, cal: Calendar, revision: i64) -> Result<(), String> {
        let id = cal.id().to_string();
        let cal = Arc::new(cal);
        {
            let mut cals = self
                .calendars
                .write()
                .map_err(|_| "calendar registry poisoned".to_string())?;
            let Some(slot) = cals.get_mut(&id) else {
                return Err(format!("unknown calendar `{id}`"));
            };
            *slot = (cal.clone(), revision);
        }
        let mut defs = self
            .defs
            .write()
            .map_err(|_| "definition registry poisoned".to_string())?;
        for ctx in defs.values_mut() {
            if ctx.def.workflow.calendar.value == id {
                *ctx = Arc::new(EngineContext {
                    def: ctx.def.clone(),
                    cal: cal.clone(),
                });
            }
        }
        Ok(())
    }

    /// Registers a compiled definition as `(workflow, version)`.
    pub fn insert(
        &self,
        workflow: &str,
        version: i64,
        def: Definition,
    ) -> Result<Arc<EngineContext>, String> {
        let cal = self.calendar(&def.workflow.calendar.value)?;
        let ctx = Arc::new(EngineContext {
            def: Arc::new(def),
            cal,
        });
        self.defs
            .write()
            .map_err(|_| "definition registry poisoned".to_string())?
            .insert((workflow.to_string(), version), ctx.clone());
        Ok(ctx)
    }

    /// A registered definition version.
    pub fn get(&self, workflow: &str, version: i64) -> Option<Arc<EngineContext>> {
        self.defs
            .read()
            .ok()?
            .get(&(workflow.to_string(), version))
            .cloned()
    }

    /// The newest registered version of every workflow (the names a page gives a role or a
    /// department that belongs to no one instance: the header, the dashboard's rows).
    pub fn newest(&self) -> Vec<Arc<EngineContext>> {
        let Ok(m) = self.defs.read() else {
            return Vec::new();
        };
        let mut best: std::collections::BTreeMap<&str, (i64, &Arc<EngineContext>)> =
            std::collections::BTreeMap::new();
        for ((id, v), ctx) in m.iter() {
            match best.get(id.as_str()) {
                Some((bv, _)) if *bv >= *v => {}
                _ => {
                    best.insert(id.as_str(), (*v, ctx));
                }
            }
        }
        best.into_values().map(|(_, c)| c.clone()).collect()
    }

    /// Ids of the workflows registered so far.
    pub fn workflow_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .defs
            .read()
            .map(|m| m.keys().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Ids of the registered workflows whose definitions count on calendar `id`.
    pub fn workflows_on(&self, id: &str) -> Vec<String> {
        let Ok(m) = self.defs.read() else {
            return Vec::new();
        };
        let mut v: Vec<String> = m
            .values()
            .filter(|c| c.def.workflow.calendar.value == id)
            .map(|c| c.def.id().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn render_diags(d: Vec<Diagnostic>) -> String {
    d.iter()
        .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A short stable string of a serde unit enum (`green`, `running` ...).
fn name<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// How a party is addressed in the outbox and the inbox: `user:NAME`, `role:ID`, `dept:ID`.
pub fn party(p: &Party) -> String {
    match p {
        Party::User(u) => format!("user:{u}"),
        Party::Role(r) => format!("role:{r}"),
        Party::Department(d) => format!("dept:{d}"),
    }
}

pub fn millis(ts: Timestamp) -> Millis {
    ts.as_millisecond()
}

pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn local(ts: Timestamp) -> String {
    local_datetime(ts).strftime("%Y-%m-%d %H:%M").to_string()
}

impl Machine for EngineMachine {
    type Context = EngineContext;
    type State = InstanceState;
    type Command = CommandEnvelope;
    type Event = Event;

    fn context(&self, meta: &InstanceMeta) -> Option<Arc<EngineContext>> {
        self.get(&meta.workflow_id, meta.def_version)
    }

    fn register(&self, row: &DefinitionRow) -> Result<(), String> {
        let def = self.compile(&row.yaml)?;
        self.insert(&row.workflow_id, row.version, def).map(|_| ())
    }

    fn initial(&self, _ctx: &EngineContext, _meta: &InstanceMeta) -> InstanceState {
        InstanceState::default()
    }

    fn decide(
        &self,
        ctx: &EngineContext,
        meta: &InstanceMeta,
        state: &InstanceState,
        cmd: &CommandEnvelope,
        now: Millis,
    ) -> Result<Vec<Event>, Rejection> {
        let refused = |r: runtime::Rejection| Rejection {
            code: r.code().to_string(),
            message: r.to_string(),
            detail: serde_json::to_value(&r).unwrap_or_default(),
            internal: r.kind() == runtime::RejectionKind::Internal,
        };
        // A migration is decided with both versions: the one the instance runs on, and the one
        // it moves to (which whoever sends the command has registered first).
        if let Command::Migrate { from, to, .. } = &cmd.command {
            if i64::from(*from) != meta.def_version {
                return Err(refused(runtime::Rejection::NotOnVersion {
                    runs_on: u32::try_from(meta.def_version).unwrap_or(u32::MAX),
                    asked: *from,
                }));
            }
            let Some(target) = self.get(&meta.workflow_id, i64::from(*to)) else {
                return Err(refused(runtime::Rejection::Internal(format!(
                    "version {}@{to} is not registered on this node",
                    meta.workflow_id
                ))));
            };
            return runtime::migrate::decide_migration(
                &ctx.def,
                &target.def,
                &target.cal,
                state,
                cmd,
                timestamp(now),
            )
            .map_err(refused);
        }
        runtime::decide(&ctx.def, &ctx.cal, state, cmd, timestamp(now)).map_err(refused)
    }

    fn moved_to(&self, event: &Event) -> Option<i64> {
        match event {
            Event::Migrated { to, .. } => Some(i64::from(*to)),
            _ => None,
        }
    }

    fn evolve(&self, _ctx: &EngineContext, state: &mut InstanceState, event: &Event) {
        runtime::apply(state, event);
    }

    fn event_kind(&self, event: &Event) -> String {
        event.kind().to_string()
    }

    fn event_format(&self) -> u32 {
        shenpi_engine::runtime::event::EVENT_FORMAT
    }

    fn decode_event(&self, format: u32, body: &str) -> Result<Event, String> {
        shenpi_engine::runtime::event::decode_event(format, body).map_err(|e| e.to_string())
    }

    fn effects(
        &self,
        ctx: &EngineContext,
        meta: &InstanceMeta,
        state: &InstanceState,
        event: &Event,
        now: Millis,
        out: &mut Effects,
    ) {
        match event {
            Event::TimerArmed(t) => out.timers_armed.push((
                t.id.to_string(),
                millis(t.due),
                serde_json::to_string(&t.kind).unwrap_or_else(|_| "{}".into()),
            )),
            Event::TimerCancelled { timer } => out.timers_cancelled.push(timer.to_string()),
            Event::NotificationRequested {
                on,
                recipients,
                template,
                via,
                data,
            } => {
                let base = notice_payload(ctx, meta, state, on.as_ref().map(name), data, now);
                let channels: Vec<String> = if via.is_empty() {
                    vec!["log".to_string()]
                } else {
                    via.iter().map(name).collect()
                };
                for r in recipients {
                    let mut payload = base.clone();
                    if let Some(o) = payload.as_object_mut() {
                        o.insert("recipient".into(), party_label(ctx, r).into());
                    }
                    for ch in &channels {
                        out.notifications.push(Notification {
                            channel: ch.clone(),
                            recipient: party(r),
                            template: template.to_string(),
                            payload: payload.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn project(
        &self,
        ctx: &EngineContext,
        meta: &InstanceMeta,
        state: &InstanceState,
        now: Millis,
    ) -> Projection {
        let v = view(&ctx.def, &ctx.cal, state, timestamp(now));
        let stage = v.stage.as_ref().map(|s| s.stage.to_string());
        let tasks = v
            .tasks
            .iter()
            .filter_map(|t| {
                let task = state.task(t.id);
                let spec = task.map(|x| &x.spec);
                // The policy's addressees: `role: applicant` reaches this instance's applicant
                // only, a delegated task its delegates too, a task out for an opinion (委派) the
                // one consulted, and a holder waiting for a signer added before them (前加签) no
                // one (no row).
                let addressees: Vec<String> = match task {
                    Some(task) => policy::addressees(task, &state.applicant)
                        .iter()
                        .map(party)
                        .collect(),
                    None => vec![party(&t.assignment)],
                };
                if addressees.is_empty() {
                    return None;
                }
                Some(InboxRow {
                    instance: meta.id.clone(),
                    task_id: t.id.to_string(),
                    workflow_id: meta.workflow_id.clone(),
                    node: t.node.to_string(),
                    stage: stage.clone(),
                    assignee: addressees.first().cloned(),
                    addressees,
                    department: t.department.as_ref().map(|d| d.to_string()),
                    colour: name(&t.colour),
                    due: t.clock.as_ref().and_then(|c| c.due).map(millis),
                    priority: t.priority,
                    supervised: t.supervised,
                    opened_at: spec
                        .and_then(|s| s.clock.as_ref())
                        .map_or(now, |c| millis(c.opened_at)),
                })
            })
            .collect();
        let promises = v
            .promises
            .iter()
            .map(|p| PromiseRow {
                instance: meta.id.clone(),
                promise_id: p.id.to_string(),
                material: p.material.to_string(),
                state: if p.breached {
                    "breached".to_string()
                } else {
                    name(&p.status)
                },
                colour: p.clock.as_ref().map_or("green".into(), |c| name(&c.colour)),
                due: p.clock.as_ref().and_then(|c| c.due).map(millis),
            })
            .collect();
        let mut elements: Vec<ElementRow> = Vec::new();
        if let Some(s) = &v.stage {
            for e in &s.elements {
                elements.push(ElementRow {
                    instance: meta.id.clone(),
                    stage: s.stage.to_string(),
                    element: e.element.to_string(),
                    department: Some(e.from.to_string()),
                    state: if e.attached { "attached" } else { "missing" }.into(),
                    due: e.clock.as_ref().and_then(|c| c.due).map(millis),
                });
            }
        }
        for o in &v.outstanding {
            if elements
                .iter()
                .any(|e| e.stage == o.stage.as_str() && e.element == o.element.as_str())
            {
                continue;
            }
            elements.push(ElementRow {
                instance: meta.id.clone(),
                stage: o.stage.to_string(),
                element: o.element.to_string(),
                department: None,
                state: if o.resolved { "attached" } else { "carried" }.into(),
                due: o.clock.as_ref().and_then(|c| c.due).map(millis),
            });
        }
        Projection {
            status: v.outcome.to_string(),
            stage,
            channel: v.channel.as_ref().map(|c| c.to_string()),
            tasks,
            promises,
            elements,
        }
    }

    fn timer_command(&self, timer: &TimerRow) -> Option<CommandEnvelope> {
        let id: u32 = timer.timer_id.parse().ok()?;
        Some(CommandEnvelope {
            actor: Actor::system(),
            command: Command::TimerFired { timer: TimerId(id) },
        })
    }

    fn timer_due(
        &self,
        _ctx: &EngineContext,
        state: &InstanceState,
        timer: &TimerRow,
    ) -> Option<Millis> {
        let id: u32 = timer.timer_id.parse().ok()?;
        state.timer(TimerId(id)).map(|t| millis(t.due))
    }
}

/// The display name of a party: a user's name, a role's or department's name from the workflow.
fn party_label(ctx: &EngineContext, p: &Party) -> String {
    let wf = &ctx.def.workflow;
    match p {
        Party::User(u) => u.to_string(),
        Party::Role(r) => wf
            .roles
            .iter()
            .find(|x| x.id.value == r.as_str())
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| r.to_string()),
        Party::Department(d) => department_name(ctx, d),
    }
}

fn department_name(ctx: &EngineContext, id: &str) -> String {
    ctx.def
        .workflow
        .departments
        .iter()
        .find(|x| x.id.value == id)
        .and_then(|x| x.name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// Every variable the instance templates of `workflows/templates/` use, filled from the
/// definition, the project and the instance state at the time of the notification.
fn notice_payload(
    ctx: &EngineContext,
    meta: &InstanceMeta,
    state: &InstanceState,
    on: Option<String>,
    data: &runtime::event::NoticeData,
    now: Millis,
) -> serde_json::Value {
    let wf = &ctx.def.workflow;
    let node_id = data.node.clone().or_else(|| {
        data.task
            .and_then(|t| state.task(t))
            .map(|t| t.spec.node.clone())
    });
    let node_name = node_id
        .as_ref()
        .map(|n| {
            ctx.def
                .node(n)
                .and_then(|n| n.name.clone())
                .unwrap_or_else(|| n.to_string())
        })
        .unwrap_or_default();
    let task = data.task.and_then(|t| state.task(t));
    let v = view(&ctx.def, &ctx.cal, state, timestamp(now));
    let tv = data.task.and_then(|id| v.tasks.iter().find(|t| t.id == id));
    let clock = tv.and_then(|t| t.clock.as_ref());
    let days_left = clock.map_or(0, |c| c.days_left);
    let promises: Vec<&runtime::view::PromiseView> = v
        .promises
        .iter()
        .filter(|p| {
            data.promise.is_none_or(|id| p.id == id)
                && data.material.as_ref().is_none_or(|m| p.material == *m)
        })
        .collect();
    let materials: Vec<String> = match (&data.material, promises.is_empty()) {
        (Some(m), true) => vec![material_name(ctx, m)],
        _ => promises
            .iter()
            .map(|p| material_name(ctx, &p.material))
            .collect(),
    };
    let due = data.due.or_else(|| clock.and_then(|c| c.due)).or_else(|| {
        promises
            .iter()
            .find_map(|p| p.clock.as_ref().and_then(|c| c.due))
    });
    let channel_name = state
        .channel
        .as_ref()
        .or(data.channel.as_ref())
        .and_then(|c| wf.channels.iter().find(|x| x.id.value == c.as_str()))
        .map(|c| c.name.clone().unwrap_or_else(|| c.id.value.clone()))
        .unwrap_or_default();
    let channel = data
        .channel
        .as_ref()
        .and_then(|c| wf.channels.iter().find(|x| x.id.value == c.as_str()));
    let department = task
        .and_then(|t| t.spec.department.as_ref())
        .map(|d| department_name(ctx, d))
        .unwrap_or_default();
    let on = on.unwrap_or_default();
    // The engine words an escalation notice's text as `rung N` and a green-channel notice's as
    // the reason the channel was chosen.
    let rung = match on.as_str() {
        "escalation" | "supervise" => data
            .text
            .as_deref()
            .and_then(|t| t.strip_prefix("rung "))
            .map(|n| format!("第{n}级"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let reason = match on.as_str() {
        "green_channel" => data.text.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let leader = task
        .and_then(|t| t.spec.department.as_ref())
        .and_then(|d| wf.departments.iter().find(|x| x.id.value == d.as_str()))
        .and_then(|d| d.leader.as_ref())
        .map(|role| {
            wf.roles
                .iter()
                .find(|r| r.id.value == role.value)
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| role.value.clone())
        })
        .unwrap_or_default();
    // A yellow warning fires when the workflow's `yellow_at` share of the limit is used.
    let used_percent = shenpi_engine::limit::parse_share(&wf.warnings.yellow_at)
        .map(|x| (x * 100.0).round() as i64)
        .unwrap_or(75);
    serde_json::json!({
        "on": on,
        "recipient": "",
        "workflow_name": wf.name,
        "instance": meta.id,
        "project_name": meta.project.get("name").and_then(|n| n.as_str()).unwrap_or(&meta.id),
        "node_name": node_name,
        "task_id": data.task.map(|t| t.to_string()).unwrap_or_default(),
        "department_name": department,
        "assignee": task.map(|t| match &t.claimed_by {
            Some(u) => u.to_string(),
            None => party_label(ctx, &t.spec.assignment),
        }).unwrap_or_default(),
        "due": due.map(local).unwrap_or_default(),
        "days_left": days_left.max(0),
        "days_overdue": (-days_left).max(0),
        "used_percent": used_percent,
        "rung": rung,
        "leader": leader,
        "from": data.by.as_deref().unwrap_or(""),
        "text": data.text.as_deref().unwrap_or(""),
        "materials": materials,
        "promised_at": "",
        "actions": Vec::<String>::new(),
        "channel_name": channel_name,
        "reason": reason,
        "limit_scale": channel.and_then(|c| c.limit_scale.as_ref()).map(|s| s.value.clone()).unwrap_or_default(),
        "same_day": channel.is_some_and(|c| c.same_day),
        "skipped": channel.map(|c| c.skip.iter().map(|s| s.value.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "conditional": !v.pre_approvals.is_empty(),
        "priority": task.map_or(0, |t| t.spec.priority),
        "url": format!("/instances/{}", meta.id),
    })
}

fn material_name(ctx: &EngineContext, id: &str) -> String {
    ctx.def
        .workflow
        .materials
        .iter()
        .find(|m| m.id.value == id)
        .and_then(|m| m.name.clone())
        .unwrap_or_else(|| id.to_string())
}
