//! `shenpi bench`: the durable benchmarks (the drivers live in `shenpi_adapters::bench`) and the
//! login flood against a running server (`login_flood`).

use std::path::PathBuf;
use std::process::ExitCode;

use shenpi_adapters::bench::{
    DurableBench, RetimeBench, TimerBench, run_durable, run_retime, run_timers,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Approval actions on the parallel-approval example through the durable command path;
    /// the last line is `durable actions/s: X`.
    Durable {
        /// `sqlite://PATH` (created if missing) or `postgres://...`.
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        actions: u64,
        /// The workflows directory (calendars, templates, construction-permit.yaml).
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
    },
    /// Re-timing after a calendar revision: N open instances whose deadlines cross 春节 2027,
    /// then the official 2027 put in force; the last line is `retime instances/s: X`.
    Retime {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 100_000)]
        instances: u64,
        /// The workflows directory (calendars, templates).
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
    },
    /// Many pending timers, some coming due: how late do the due ones fire, does RSS stay flat;
    /// the last line is `timer p99 lateness ms: X`.
    Timers {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 1_000_000)]
        pending: u64,
        #[arg(long, default_value_t = 10_000)]
        due: u64,
        /// Seconds over which the due timers come due.
        #[arg(long, default_value_t = 10)]
        spread: u64,
    },
    /// Failed logins from many clients against a `serve --demo` child: its RSS before, at the
    /// peak and after, `/healthz` latency during the flood, and whether a real login succeeds.
    LoginFlood(super::login_flood::Args),
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let report = match c {
        Command::Durable {
            db,
            clients,
            actions,
            workflows,
        } => run_durable(&DurableBench {
            db,
            clients,
            actions,
            workflows,
        })?,
        Command::Retime {
            db,
            instances,
            workflows,
        } => run_retime(&RetimeBench {
            db,
            instances,
            workflows,
        })?,
        Command::Timers {
            db,
            pending,
            due,
            spread,
        } => run_timers(&TimerBench {
            db,
            pending,
            due,
            spread_secs: spread,
        })?,
        Command::LoginFlood(a) => return super::login_flood::run(a),
    };
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
