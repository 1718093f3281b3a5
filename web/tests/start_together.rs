//! Several `shenpi serve` nodes pointed at one empty PostgreSQL database start at the same moment
//! (a deployment rolled out to every node at once): each one must come up. Every table a node
//! needs, the server's own `web_` tables included, is created by the migrations, which run under
//! one lock; a node that created tables of its own beside them could lose the race on PostgreSQL's
//! catalog (`duplicate key value violates unique constraint "pg_type_typname_nsp_index"`).
//!
//! PostgreSQL is at `SHENPI_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! cannot be reached the test is skipped, except under `CI`, where it fails.

mod api_common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use api_common::{ManualClock, T0, in_schema, pg_admin, pg_schema, pg_url, workflows_dir};
use shenpi_web::server::{AppState, Config};

/// How many nodes start together, and on how many fresh schemas: the race is a matter of
/// microseconds, so it is given several chances to happen.
const NODES: usize = 3;
const ROUNDS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_on_a_fresh_postgres_database_all_come_up() {
    let Some(mut admin) = pg_admin(&pg_url()).await else {
        return;
    };
    let workflows = workflows_dir();
    for round in 0..ROUNDS {
        let schema = pg_schema(&mut admin, &format!("{round}_start_together")).await;
        let url = in_schema(&pg_url(), &schema);
        let config = || Config::new(&url, &workflows, Arc::new(ManualClock(AtomicI64::new(T0))));
        let started = futures_join(NODES, || AppState::build(config())).await;
        let failures: Vec<String> = started
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert!(
            failures.is_empty(),
            "round {round}: {} of {NODES} nodes failed to start: {failures:?}",
            failures.len()
        );
        // Each node sees the same server tables: a user one node adds, another finds.
        let apps: Vec<_> = started.into_iter().flatten().collect();
        let user = shenpi_web::server::accounts::User {
            name: "chen".into(),
            department: None,
            roles: vec!["applicant".into()],
        };
        apps[0]
            .accounts
            .upsert_user(&user, None, T0)
            .await
            .expect("add a user on the first node");
        let found = apps[NODES - 1]
            .accounts
            .user("chen")
            .await
            .expect("read users on the last node");
        assert_eq!(found.map(|u| u.name), Some("chen".to_string()));
        drop(apps);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await
            .expect("drop schema");
    }
}

/// Runs `n` futures made by `make` at the same time and waits for all of them.
async fn futures_join<F, T>(n: usize, make: impl Fn() -> F) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pending: Vec<std::pin::Pin<Box<F>>> = (0..n).map(|_| Box::pin(make())).collect();
    let mut done: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut open = false;
        for (f, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => open = true,
                }
            }
        }
        if open {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
