//! `shenpi serve --demo`: a demo data set (users in every role, a few projects under way), so a
//! person can click through the product at once. Never on by default; it prints its accounts,
//! all with one well-known password, in a loud banner.

use shenpi_adapters::bus::Submit;
use shenpi_adapters::store::InstanceMeta;
use shenpi_engine::runtime::{Command, CommandEnvelope, TaskId};

use super::accounts::{Project, User, random_hex};
use super::state::App;

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "demo-shenpi";

/// (name, department, roles, what they do)
pub const DEMO_USERS: &[(&str, Option<&str>, &[&str], &str)] = &[
    ("chen", None, &["applicant"], "项目单位（申报人）"),
    ("sun", None, &["service_officer"], "1对1帮办专员"),
    (
        "zhang",
        Some("fgw"),
        &["approver", "fgw_intake", "fgw_filing"],
        "发改委受理窗口（审批人员）",
    ),
    (
        "li",
        Some("fgw"),
        &["approver", "fgw_planner", "fgw_reviewer"],
        "发改委规划处/投资处审核人",
    ),
    (
        "zhou",
        Some("zrzy"),
        &["approver", "zrzy_reviewer"],
        "自然资源厅审核人",
    ),
    (
        "ma",
        Some("dsj"),
        &["approver", "dsj_officer"],
        "大数据局经办人（项目数据要素）",
    ),
    (
        "wu",
        Some("sthj"),
        &["approver", "sthj_reviewer"],
        "生态环境厅审核人",
    ),
    (
        "zheng",
        Some("zj"),
        &["approver", "zj_reviewer"],
        "住建厅审核人",
    ),
    (
        "qian",
        Some("cz"),
        &["approver", "cz_reviewer"],
        "财政厅审核人",
    ),
    (
        "feng",
        Some("fgw"),
        &["approver", "fgw_chief"],
        "发改委投资处处长",
    ),
    (
        "zhao",
        Some("szf"),
        &["supervisor", "szf_office", "zdb_coordinator"],
        "督办（省政府督查室）",
    ),
    (
        "he",
        Some("szf"),
        &["approver", "szf_leader"],
        "省政府分管副省长（报省政府审定）",
    ),
    (
        "lin",
        Some("ny"),
        &["approver", "ny_reviewer"],
        "省能源局审核人",
    ),
    (
        "liu",
        Some("zwfw"),
        &["approver", "window_clerk"],
        "政务服务中心综合窗口（工程建设）",
    ),
    (
        "gao",
        Some("zjk"),
        &[
            "approver",
            "expert_arch",
            "expert_struct",
            "expert_mep",
            "expert_fire",
            "expert_cost",
        ],
        "方案评审专家组",
    ),
    (
        "xu",
        Some("sw"),
        &["approver", "sw_reviewer"],
        "市水务局审核人",
    ),
    (
        "tang",
        Some("rf"),
        &["approver", "rf_reviewer"],
        "市人防办审核人",
    ),
    (
        "song",
        Some("cg"),
        &["approver", "cg_reviewer"],
        "市城市管理局审核人",
    ),
    (
        "luo",
        Some("qx"),
        &["approver", "qx_reviewer"],
        "市气象局审核人",
    ),
    (
        "han",
        Some("da"),
        &["approver", "da_reviewer"],
        "市城建档案馆审核人",
    ),
    ("wang", None, &["policy_staff"], "政策法规处（规则编写）"),
    ("admin", None, &["admin"], "系统管理员"),
];

async fn submit(
    app: &App,
    instance: &str,
    start: Option<InstanceMeta>,
    actor: &User,
    command: Command,
) -> anyhow::Result<()> {
    app.bus
        .submit(Submit {
            instance: instance.to_string(),
            start,
            key: None,
            expected_version: None,
            command: CommandEnvelope {
                actor: actor.actor(),
                command,
            },
            audit: None,
            project: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("demo command on {instance}: {e}"))?;
    Ok(())
}

fn user(name: &str) -> User {
    let (n, d, r, _) = DEMO_USERS
        .iter()
        .find(|(n, ..)| *n == name)
        .copied()
        .unwrap_or((name, None, &[], ""));
    User {
        name: n.to_string(),
        department: d.map(str::to_string),
        roles: r.iter().map(|s| s.to_string()).collect(),
    }
}

/// One step of a demo project's history.
enum Step {
    /// The user approves the instance's first open task.
    Approve(&'static str),
    /// The user attaches an element to the current stage.
    Attach(&'static str, &'static str, fn() -> serde_json::Value),
}

fn project_data() -> serde_json::Value {
    serde_json::json!({"project_code": "2026-530000-44-01-000001"})
}

fn land_quota() -> serde_json::Value {
    serde_json::json!({"area_mu": 320, "quota_source": "省级统筹"})
}

/// What brings a provincial-major project to 受理审查: data element, 入库审核, land element.
const TO_INTAKE_GREEN: &[Step] = &[
    Step::Attach("ma", "project_data", project_data),
    Step::Approve("li"),
    Step::Attach("zhou", "land_quota", land_quota),
];
const TO_INTAKE: &[Step] = &[
    Step::Attach("ma", "project_data", project_data),
    Step::Approve("li"),
    Step::Attach("zhou", "land_quota", land_quota),
    Step::Approve("li"),
];

/// Starts a project's instance and plays `steps` on it as their users would.
async fn project(
    app: &App,
    name: &str,
    workflow: &str,
    fields: serde_json::Value,
    steps: &[Step],
) -> anyhow::Result<String> {
    let now = app.now();
    let owner = user("chen");
    let p = Project {
        id: format!("P{}", random_hex(5)?),
        name: name.to_string(),
        workflow_id: workflow.to_string(),
        owner: owner.name.clone(),
        fields: fields.clone(),
        created_at: now,
        instances: Vec::new(),
    };
    app.accounts.create_project(&p).await?;
    let (version, _) = app
        .catalog
        .latest(&app.db, workflow)
        .await?
        .ok_or_else(|| anyhow::anyhow!("workflow {workflow} is not loaded"))?;
    let id = format!("I{}", random_hex(6)?);
    let meta = InstanceMeta {
        id: id.clone(),
        workflow_id: workflow.to_string(),
        def_version: version,
        project: fields.clone(),
    };
    submit(
        app,
        &id,
        Some(meta),
        &owner,
        Command::Start {
            project: fields,
            channel: None,
        },
    )
    .await?;
    app.accounts
        .link_instance(&id, &p.id, workflow, version, now)
        .await?;
    for step in steps {
        match step {
            Step::Approve(who) => {
                let (_, st, _, _) = app
                    .instance(&id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .ok_or_else(|| anyhow::anyhow!("demo instance vanished"))?;
                let Some(task) = st.open_tasks().next().map(|t| t.spec.task) else {
                    break;
                };
                let cmd = Command::Approve {
                    task: TaskId(task.0),
                    comment: Some("同意（演示数据）".into()),
                };
                submit(app, &id, None, &user(who), cmd).await?;
            }
            Step::Attach(who, element, fields) => {
                let cmd = Command::AttachElement {
                    element: (*element).into(),
                    fields: fields(),
                };
                submit(app, &id, None, &user(who), cmd).await?;
            }
        }
    }
    Ok(id)
}

/// Seeds the demo users and projects (projects only once per database) and prints the accounts.
pub async fn seed(app: &App) -> anyhow::Result<()> {
    let now = app.now();
    for (name, dept, roles, _) in DEMO_USERS {
        let u = User {
            name: name.to_string(),
            department: dept.map(str::to_string),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        };
        app.accounts
            .upsert_user(&u, Some(DEMO_PASSWORD), now)
            .await?;
    }
    if app
        .accounts
        .projects(Some("chen"), None, 1)
        .await?
        .is_empty()
    {
        let ids = app.catalog.workflow_ids();
        if ids.iter().any(|i| i == "provincial-major") {
            project(app, "滇中新区智能制造产业园（演示）", "provincial-major", serde_json::json!({
                "name": "滇中新区智能制造产业园（演示）", "enterprise": "滇中新区产业投资集团有限公司", "tier": "省级重大", "investment": 120000,
                "funding": "政府投资", "industry": "数字经济", "region": "昆明市", "service_officer": "sun"
            }), TO_INTAKE_GREEN).await?;
            project(app, "昆明绕城高速扩容工程（演示）", "provincial-major", serde_json::json!({
                "name": "昆明绕城高速扩容工程（演示）", "enterprise": "云南省交通投资建设集团有限公司", "tier": "年度省级重大", "investment": 680000,
                "funding": "政府投资", "industry": "交通", "region": "昆明市", "service_officer": "sun"
            }), TO_INTAKE).await?;
            project(app, "普洱茶叶精深加工项目（演示）", "provincial-major", serde_json::json!({
                "name": "普洱茶叶精深加工项目（演示）", "enterprise": "普洱某茶业股份有限公司", "tier": "中长期库", "investment": 30000,
                "funding": "企业投资", "industry": "农业", "region": "普洱市", "service_officer": "sun"
            }), &[]).await?;
        }
        if ids.iter().any(|i| i == "enterprise-filing") {
            project(app, "应急物资仓储中心（演示）", "enterprise-filing", serde_json::json!({
                "name": "应急物资仓储中心（演示）", "enterprise": "云南某物流有限公司", "funding": "企业投资",
                "catalog": "备案类", "industry": "重点物资保障", "investment": 8000, "service_officer": "sun"
            }), &[]).await?;
        }
    }
    Ok(())
}

/// The demo's banner: the accounts, where the data is and where to open it. Printed last at
/// start.
pub fn banner(db: &str, url: &str, now: i64) {
    let bar = "!".repeat(78);
    eprintln!("{bar}");
    eprintln!("!! DEMO MODE: demo accounts exist in this database. Do not use in production.");
    eprintln!("!! Open {url}/ and log in; every demo account's password is: {DEMO_PASSWORD}");
    for (name, dept, roles, what) in DEMO_USERS {
        eprintln!(
            "!!   {name:<6} {:<5} {:<40} {what}",
            dept.unwrap_or("-"),
            roles.join(",")
        );
    }
    eprintln!("!! Data: {db} (delete it to start the demo afresh)");
    eprintln!(
        "!! Clock: {} (the demo clock; it goes on from here after a restart, --clock-start moves it on)",
        super::chrome::today_zh(now)
    );
    eprintln!("{bar}");
}
