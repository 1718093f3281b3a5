//! The HTTP server, by resource: each resource module holds its API handlers, its pages and its
//! forms together and contributes its [`routes::Routes`] to [`router`]: `login` (sessions),
//! `projects`, `instances`, `tasks`, `inbox`, `definitions` (the workflow editor), `reports`
//! (with the 督办看板), `calendars`, `outbox`. Shared by them: `commands` (the one path to the
//! command bus), `chrome` (the page layout and how dates and colours are written), `form`
//! (typed forms), `diagrams`, `error` and `refusals` (what a failure answers), `auth` (who is
//! calling and the authorisation rules). `openapi` is the API's document, `serve` runs all of it
//! with the durable runtime's command bus and timer scheduler until SIGTERM or Ctrl-C.
//!
//! **Invariant:** handlers never decide anything about an instance; every change goes through
//! `commands::run_command` to the command bus, which asks the engine.

pub mod accounts;
pub mod auth;
pub mod calendars;
pub mod catalog;
pub mod chrome;
pub mod commands;
pub mod definitions;
pub mod demo;
pub mod demo_time;
pub mod diagrams;
pub mod documents;
pub mod dossier;
pub mod engine;
pub mod error;
pub mod extract;
pub mod failure;
pub mod files;
pub mod form;
pub mod inbox;
pub mod instances;
pub mod letters;
pub mod login;
pub mod messages;
pub mod metrics;
pub mod migrations;
pub mod names;
pub mod openapi;
pub mod outbox;
pub mod passwords;
pub mod projects;
pub mod refusals;
pub mod reports;
pub mod routes;
pub mod security;
pub mod start;
pub mod state;
pub mod svg;
pub mod tasks;
pub mod throttle;
pub mod timers;
pub mod whatif;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shenpi_adapters::store::{OutboxStore, ProjectionStore, TimerStore};

pub use state::{App, AppState, Config};

/// What every resource serves, together.
pub fn resources() -> routes::Routes {
    routes::Routes::new()
        .merge(chrome::routes())
        .merge(login::routes())
        .merge(projects::routes())
        .merge(instances::routes())
        .merge(files::routes())
        .merge(letters::routes())
        .merge(dossier::routes())
        .merge(documents::routes())
        .merge(tasks::routes())
        .merge(inbox::routes())
        .merge(definitions::routes())
        .merge(migrations::routes())
        .merge(whatif::routes())
        .merge(reports::routes())
        .merge(calendars::routes())
        .merge(outbox::routes())
        .merge(messages::routes())
        .merge(demo_time::routes())
        .merge(openapi::routes())
}

/// The largest request body read (a workflow's YAML is far below it); larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 2 << 20;

/// Every route of the server.
pub fn router(app: App) -> Router {
    let resources = resources();
    let routes = Router::new()
        .nest("/api", resources.api)
        .merge(resources.pages)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(app.clone());
    // `Router::layer` wraps each route, inside what the router adds to a reply (the `Allow` of
    // a 405); the shaping layer wraps the whole router instead, so it sees the reply as sent.
    // It is inside the security guard, so that the shaped replies carry the security headers.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(failure::shape_errors))
        .layer(middleware::from_fn_with_state(app, security::guard))
}

async fn observe(State(app): State<App>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let resp = next.run(req).await;
    app.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    app.metrics.http_latency.observe(started.elapsed());
    resp
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: not shutting down, the command writer and the timer scheduler running, and the
/// database answering within [`READY_DB_WAIT`] (so an outage shows within a second or two, not
/// after the pool's wait). Each failing part is named.
async fn readyz(State(app): State<App>) -> Response {
    let unready =
        |why: String| (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    if !app.is_ready() {
        return unready("shutting down".into());
    }
    if !app.bus.is_alive() {
        return unready("command writer stopped".into());
    }
    if let Some(s) = &app.scheduler
        && !s.running.load(Ordering::Relaxed)
    {
        return unready("timer scheduler stopped".into());
    }
    match tokio::time::timeout(READY_DB_WAIT, app.db.next_due()).await {
        Ok(Ok(_)) => "ready\n".into_response(),
        Ok(Err(e)) => unready(format!("database: {e}")),
        Err(_) => unready(format!(
            "database: no answer within {} ms",
            READY_DB_WAIT.as_millis()
        )),
    }
}

/// How long `/readyz` waits for the database.
pub const READY_DB_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

async fn metrics(State(app): State<App>) -> Response {
    let mut g = metrics::Gauges::default();
    if let Ok(t) = app.db.timer_counts().await {
        g.timers = t;
    }
    if let Ok(n) = app.accounts.timers_due(app.now()).await {
        g.timers_due = n;
    }
    if let Some(s) = &app.scheduler {
        g.timers_fired = s.fired.load(Ordering::Relaxed);
    }
    if let Some(o) = &app.outbox {
        g.outbox_delivered = o.delivered.load(Ordering::Relaxed);
        g.outbox_dead = o.dead.load(Ordering::Relaxed);
    }
    if let Ok(o) = app.accounts.outbox_counts().await {
        g.outbox = o;
    }
    if let Ok(d) = app.db.dashboard().await {
        g.tasks_by_colour = d.by_colour;
    }
    g.calendars = app.catalog.runways(app.now());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&g),
    )
        .into_response()
}

/// Options of `shenpi serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: String,
    pub workflows: PathBuf,
    pub bind: SocketAddr,
    pub demo: bool,
    /// Run on a clock that starts at this instant (ms since the epoch) instead of now.
    pub clock_start: Option<i64>,
    /// Notification addresses per party (JSON: `{"parties": {"role:x": {"webhook": "..."}}, "default": {...}}`).
    pub directory: shenpi_adapters::outbox::Directory,
    pub webhook_secret: Vec<u8>,
    /// 加签 secret of the DingTalk robots whose directory entry has none.
    pub dingtalk_secret: Option<String>,
    /// The e-mail channel's SMTP server (`None`: e-mail is dead-lettered as not configured).
    pub smtp: Option<shenpi_adapters::outbox::SmtpConfig>,
    /// The address people reach the server at; `https://` turns on `Secure` cookies and HSTS.
    pub public_url: Option<String>,
    /// The CJK font official documents' PDFs embed.
    pub documents: documents::Settings,
    pub passwords: passwords::Limits,
    pub security: security::Settings,
    pub connections: security::ConnLimits,
    /// Material files go to this directory instead of the database (`--file-dir`).
    pub file_dir: Option<PathBuf>,
}

/// Runs the server until SIGTERM or Ctrl-C. In-flight requests finish (their commands are
/// committed before they are answered); then the process exits.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let offset_clock = opts
        .clock_start
        .map(|ms| std::sync::Arc::new(state::OffsetClock::starting_at(ms)));
    let clock: std::sync::Arc<dyn shenpi_adapters::machine::Clock> = match &offset_clock {
        Some(c) => c.clone(),
        None => state::system_clock(),
    };
    let public_url = opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", opts.bind));
    let app = AppState::build(Config {
        db: &opts.db,
        workflows: &opts.workflows,
        scheduler: true,
        clock,
        secure_cookies: opts
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        passwords: opts.passwords,
        security: opts.security,
        directory: opts.directory,
        webhook_secret: opts.webhook_secret,
        dingtalk_secret: opts.dingtalk_secret,
        smtp: opts.smtp,
        demo: opts.demo,
        public_url: Some(public_url.clone()),
        documents: opts.documents,
        file_dir: opts.file_dir.as_deref(),
    })
    .await?;
    if opts.demo {
        if let Some(c) = &offset_clock {
            demo_time::restore(&app, c).await;
        }
        demo::seed(&app).await?;
    }
    if let Err(e) = app.documents.font() {
        eprintln!("shenpi: 警告 [{}] {}", e.body.error, e.body.message);
    }
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    for r in app.catalog.runways(app.now()) {
        if r.is_short() {
            eprintln!(
                "shenpi: warning: calendar `{}` has official years until {} ({}); \
                 deadlines after it are provisional ({}-{}, from the statute) until the next \
                 year's arrangement is imported (`shenpi calendar import FILE`, docs/calendars.md).",
                r.calendar,
                r.last_day,
                match r.days_left {
                    d if d < 0 => format!("{} days ago", -d),
                    0 => "today".to_string(),
                    d => format!("{d} days from today"),
                },
                r.provisional.0,
                r.provisional.1
            );
        }
    }
    for w in start::unheld_roles(&app).await {
        eprintln!("shenpi: warning: {w}");
    }
    eprintln!(
        "shenpi serving on http://{addr}/ (database {}, workflows {})",
        opts.db,
        opts.workflows.display()
    );
    if opts.demo {
        // The last thing printed at start, so that it is not buried under the log: the demo's
        // own notifications (written to the log) are delivered first, for 3 s at most.
        for _ in 0..30 {
            match app.db.outbox_in_state("pending", 1).await {
                Ok(p) if !p.is_empty() => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => break,
            }
        }
        demo::banner(&opts.db, &public_url, app.now());
    }
    let shutdown_app = app.clone();
    security::serve(listener, router(app), opts.connections, async move {
        shutdown_signal().await;
        shutdown_app.ready.store(false, Ordering::Relaxed);
        eprintln!("shenpi: shutting down, finishing in-flight requests");
    })
    .await;
    // Give the audit writer its last flush.
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("shenpi: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
