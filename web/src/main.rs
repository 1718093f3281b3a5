//! The `shenpi` command line. Each subcommand lives in its own module under `cli/`.
//!
//! Exit codes: 0 success, 1 the input was checked and is wrong (e.g. validation errors),
//! 2 the command could not run (bad arguments, unreadable file, date outside the calendar).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shenpi",
    version,
    about = "Workflow engine for investment-project approval (审批)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check workflow files (a file or a directory) and print every error, rustc style.
    Validate(cli::validate::Args),
    /// Print a workflow's state graph as Mermaid or Graphviz DOT.
    Graph(cli::graph::Args),
    /// Run a scenario through a workflow on virtual time; print the event log and final state.
    Simulate(cli::simulate::Args),
    /// 政策模拟: a draft against many projects, side by side with the version in force.
    Whatif(cli::whatif::Args),
    /// Working-day arithmetic on the official calendar.
    #[command(subcommand)]
    Calendar(cli::calendar::Command),
    /// Print the JSON Schema of the workflow language.
    Schema(cli::schema::Args),
    /// Print the OpenAPI document of the REST API (what `/api/openapi.json` serves).
    Openapi(cli::openapi::Args),
    /// Published workflows in the database: `export DIR` writes the latest versions as files.
    #[command(subcommand)]
    Workflows(cli::workflows::Command),
    /// Move running projects from one version of a workflow to another (dry run unless --yes).
    Migrate(cli::migrate::Args),
    /// Run the server: REST API, web UI, timer scheduler (`shenpi serve --demo` to try it).
    Serve(cli::server::ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(cli::server::UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(cli::server::TokenCommand),
    /// Load-test the task-action endpoint of a running server (loopback only).
    Loadgen(cli::loadgen::Args),
    /// The tamper-evident record: `audit verify` recomputes each instance's event hash chain.
    #[command(subcommand)]
    Audit(cli::audit::Command),
    /// Material files: `files sweep` removes content no event names, stored more than N days ago.
    #[command(subcommand)]
    Files(cli::files::Command),
    /// Benchmarks of the durable runtime (SQLite, PostgreSQL).
    #[command(subcommand)]
    Bench(cli::bench::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => cli::validate::run(a),
        Command::Graph(a) => cli::graph::run(a),
        Command::Simulate(a) => cli::simulate::run(a),
        Command::Whatif(a) => cli::whatif::run(a),
        Command::Calendar(c) => cli::calendar::run(c),
        Command::Schema(a) => cli::schema::run(a),
        Command::Openapi(a) => cli::openapi::run(a),
        Command::Workflows(c) => cli::workflows::run(c),
        Command::Migrate(a) => cli::migrate::run(a),
        Command::Serve(a) => cli::server::run_serve(a),
        Command::User(c) => cli::server::run_user(c),
        Command::Token(c) => cli::server::run_token(c),
        Command::Loadgen(a) => cli::loadgen::run(a),
        Command::Audit(c) => cli::audit::run(c),
        Command::Files(c) => cli::files::run(c),
        Command::Bench(c) => cli::bench::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
