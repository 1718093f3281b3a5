//! `shenpi migrate`: move running projects from one version of a workflow to another, on the
//! server's database, through the same durable path and the same engine decision as the API and
//! the page (`shenpi_adapters::migrate`). Without `--yes` it is a dry run and changes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use shenpi_adapters::bus::{BusOptions, CommandBus};
use shenpi_adapters::engine_machine::EngineMachine;
use shenpi_adapters::machine::SystemClock;
use shenpi_adapters::migrate::{self as run, MigrationAsk, Seen};
use shenpi_engine::runtime::migrate::Mapping;
use shenpi_web::server::accounts::Accounts;
use shenpi_web::server::migrations::{dry_run_table, migrate_error, result_table};

#[derive(clap::Args)]
pub struct Args {
    /// The workflow id.
    workflow: String,
    /// The version the projects run on now.
    #[arg(long)]
    from: i64,
    /// The version to move them to.
    #[arg(long)]
    to: i64,
    /// Old node id = new node id (repeatable); a node not named keeps its id.
    #[arg(long = "map", value_name = "OLD=NEW")]
    map: Vec<String>,
    /// Old stage id = new stage id (repeatable).
    #[arg(long = "map-stage", value_name = "OLD=NEW")]
    map_stage: Vec<String>,
    /// Only this instance (repeatable; default every running instance on `--from`).
    #[arg(long = "instance")]
    instances: Vec<String>,
    /// The account the migration is recorded under (a user with the policy_staff role).
    #[arg(long)]
    by: String,
    /// Move the instances the dry run shows as movable; without it, only the dry run.
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = super::server::default_db())]
    db: String,
    /// The workflows folder (for its calendars and templates).
    #[arg(long, default_value = "./workflows")]
    workflows: PathBuf,
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                Ok((a.trim().to_string(), b.trim().to_string()))
            }
            _ => anyhow::bail!("{what} `{s}`: write OLD=NEW"),
        })
        .collect()
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mapping = Mapping {
        nodes: pairs(&a.map, "--map")?
            .into_iter()
            .map(|(o, n)| (o.into(), n.into()))
            .collect(),
        stages: pairs(&a.map_stage, "--map-stage")?
            .into_iter()
            .map(|(o, n)| (o.into(), n.into()))
            .collect(),
    };
    let ask = MigrationAsk {
        workflow: a.workflow.clone(),
        from: a.from,
        to: a.to,
        to_workflow: None,
        mapping,
        instances: (!a.instances.is_empty()).then(|| a.instances.clone()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let db = super::server::existing_db(&a.db).await?;
        let accounts = Accounts::new(&db);
        let user = accounts
            .user(&a.by)
            .await?
            .with_context(|| format!("no user `{}` (shenpi user add)", a.by))?;
        let actor = user.actor();
        if !shenpi_engine::runtime::policy::may_migrate(&actor) {
            eprintln!("{} 不是政策法规人员（policy_staff），不能迁移运行中的项目。", a.by);
            return Ok(ExitCode::from(1));
        }
        let machine = Arc::new(
            EngineMachine::from_dir(&a.workflows)
                .with_context(|| format!("cannot read {}", a.workflows.display()))?,
        );
        // The calendars in force are the newest revisions in the database.
        for (id, _) in machine.calendars() {
            if let Some(rev) = db.latest_calendar(&id).await? {
                shenpi_web::server::calendars::put_in_force(&machine, &rev)
                    .map_err(anyhow::Error::msg)?;
            }
        }
        let now = shenpi_adapters::machine::now_millis();
        let checks = match run::dry_run(&db, &machine, &ask, &actor, now).await {
            Ok(c) => c,
            Err(e) => {
                let e = migrate_error(e);
                eprintln!("{}", e.body.message);
                if !a.json {
                    return Ok(ExitCode::from(1));
                }
                println!("{}", serde_json::to_string_pretty(&e.body)?);
                return Ok(ExitCode::from(1));
            }
        };
        let from_def = run::context(&db, &machine, &ask.workflow, ask.from).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let to_def = run::context(&db, &machine, &ask.workflow, ask.to).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut names = HashMap::new();
        for c in &checks {
            let name = accounts
                .project_of(&c.instance)
                .await?
                .map(|p| p.name)
                .unwrap_or_else(|| c.instance.clone());
            names.insert(c.instance.clone(), name);
        }
        let seen: HashMap<String, Seen> = checks
            .iter()
            .map(|c| {
                (
                    c.instance.clone(),
                    Seen {
                        version: c.version,
                        can_move: c.report.can_move,
                    },
                )
            })
            .collect();
        let table = dry_run_table(&ask, checks, &from_def.def, &to_def.def, &names);
        if !a.yes {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&table)?);
            } else {
                println!(
                    "试运行 {} v{} → v{}：运行中的项目 {} 个，可迁移 {} 个，不能迁移 {} 个（未改动任何项目；加 --yes 执行）",
                    ask.workflow,
                    ask.from,
                    ask.to,
                    table.instances.len(),
                    table.movable,
                    table.blocked
                );
                for r in &table.instances {
                    let verdict = if r.can_move { "可迁移" } else { "不能迁移" };
                    println!("{}\t{}\t{verdict}", r.instance, r.project);
                    for b in &r.blockers {
                        println!("    原因：{}", b.message);
                    }
                    for c in &r.changes {
                        println!("    {}", c.message);
                    }
                    for t in &r.timers {
                        println!("    定时：{}", t.message);
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let bus = CommandBus::start(
            machine.clone(),
            db.clone(),
            Arc::new(SystemClock),
            BusOptions::default(),
        );
        let id = shenpi_web::server::accounts::random_hex(12)?;
        let (row, results) = run::execute(&bus, &db, &machine, &ask, &actor, &id, Some(&seen), now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = result_table(&results, Some((&from_def.def, &to_def.def)), &names);
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "id": row.id, "moved": row.moved, "blocked": row.blocked,
                    "failed": row.failed, "instances": rows,
                }))?
            );
        } else {
            println!(
                "迁移 {} v{} → v{}（记录 {}）：已迁移 {} 个，未改动 {} 个，失败 {} 个",
                ask.workflow, ask.from, ask.to, row.id, row.moved, row.blocked, row.failed
            );
            for r in &rows {
                println!("{}\t{}\t{}", r.instance, r.project, r.message);
                for b in &r.blockers {
                    println!("    原因：{}", b.message);
                }
            }
        }
        Ok(if row.failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
