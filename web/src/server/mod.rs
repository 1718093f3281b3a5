//! The HTTP server: the REST API (`api`), its OpenAPI document (`openapi`), authentication and
//! the authorisation rules (`auth`), the server-rendered UI in Chinese (`pages`, with the SVG
//! diagrams of `svg`), and `serve`, which runs all of it with the durable runtime's command bus
//! and timer scheduler until SIGTERM or Ctrl-C.
//!
//! **Invariant:** handlers never decide anything about an instance; every change goes through
//! `api::run_command` to the command bus, which asks the engine.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod calendars;
pub mod catalog;
pub mod demo;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod refusals;
pub mod state;
pub mod svg;
pub mod throttle;
pub mod timers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shenpi_adapters::store::{ProjectionStore, TimerStore};
use utoipa::OpenApi;

pub use state::{App, AppState, Config};

/// Every route of the server.
pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route(
            "/projects",
            post(api::create_project).get(api::list_projects),
        )
        .route("/projects/{id}", get(api::get_project))
        .route("/instances", post(api::start_instance))
        .route("/instances/{id}", get(api::get_instance))
        .route("/instances/{id}/commands", post(api::instance_command))
        .route("/instances/{id}/diagram", get(api::instance_diagram))
        .route(
            "/instances/{id}/tasks/{task}/actions",
            post(api::task_action),
        )
        .route(
            "/instances/{id}/tasks/{task}/verify",
            post(api::verify_material),
        )
        .route(
            "/instances/{id}/materials/{material}/supply",
            post(api::supply_material),
        )
        .route("/instances/{id}/elements", post(api::attach_element))
        .route("/tasks", get(api::inbox))
        .route(
            "/definitions",
            get(api::list_definitions).post(api::publish_definition),
        )
        .route("/definitions/validate", post(api::validate_definition))
        .route("/definitions/{id}/versions", get(api::list_versions))
        .route(
            "/definitions/{id}/versions/{version}",
            get(api::get_version),
        )
        .route("/definitions/{id}/diff", get(api::diff_versions))
        .route("/definitions/{id}/diagram", get(api::diagram))
        .route("/dashboard", get(api::dashboard))
        .route("/calendars", get(calendars::api_list))
        .route("/calendars/{id}/revisions", post(calendars::api_import))
        .route("/reports", get(api::list_reports).post(api::run_report))
        .route("/outbox/dead", get(api::dead_letters))
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found);
    Router::new()
        .nest("/api", api)
        .merge(pages::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(2 << 20))
        .with_state(app)
}

async fn api_not_found() -> error::ApiError {
    error::ApiError::not_found("no such API endpoint; see /api/openapi.json")
}

async fn openapi_json() -> Response {
    let doc = openapi::ApiDoc::openapi();
    match doc.to_json() {
        Ok(j) => ([(header::CONTENT_TYPE, "application/json")], j).into_response(),
        Err(e) => error::ApiError::internal(e).into_response(),
    }
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

/// Readiness: the database answers and we are not shutting down.
async fn readyz(State(app): State<App>) -> Response {
    if !app.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match app.db.next_due().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response(),
    }
}

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
}

/// Runs the server until SIGTERM or Ctrl-C. In-flight requests finish (their commands are
/// committed before they are answered); then the process exits.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let app = AppState::build(Config {
        db: &opts.db,
        workflows: &opts.workflows,
        scheduler: true,
        clock: match opts.clock_start {
            Some(ms) => std::sync::Arc::new(state::OffsetClock::starting_at(ms)),
            None => state::system_clock(),
        },
        secure_cookies: false,
        directory: opts.directory,
        webhook_secret: opts.webhook_secret,
        dingtalk_secret: opts.dingtalk_secret,
        smtp: opts.smtp,
    })
    .await?;
    if opts.demo {
        demo::seed(&app).await?;
    }
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "shenpi serving on http://{addr}/ (database {}, workflows {})",
        opts.db,
        opts.workflows.display()
    );
    for r in app.catalog.runways(app.now()) {
        if r.is_short() {
            eprintln!(
                "shenpi: warning: calendar `{}` has official years until {} ({} days from today); \
                 deadlines after it are provisional ({}-{}, from the statute) until the next \
                 year's arrangement is imported (`shenpi calendar import FILE`, README, Calendars).",
                r.calendar, r.last_day, r.days_left, r.provisional.0, r.provisional.1
            );
        }
    }
    let shutdown_app = app.clone();
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown_app.ready.store(false, Ordering::Relaxed);
        eprintln!("shenpi: shutting down, finishing in-flight requests");
    })
    .await?;
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
