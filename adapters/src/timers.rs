//! The timer scheduler: fires what is due, once.
//!
//! Pending timers live in the `timers` table (indexed on `due` over open rows only), never in
//! memory, so a million pending deadlines cost this process nothing. Each node polls for due rows
//! and claims a batch with a lease, by instance: all due timers of the instances it takes,
//! skipping instances another node holds a live claim on (per-instance advisory locks on
//! PostgreSQL, one atomic `UPDATE ... RETURNING` on SQLite). Claiming row by row would hand two
//! nodes timers of the same instances, and their firings, each committed under the instance's
//! version, would keep conflicting. It then fires each through the ordinary command path
//! ([`CommandBus::fire`]): the timer's `fired` mark is written in the same transaction as the
//! events its firing produced, and that write requires the timer to still be open, so a timer
//! fires once even if two nodes both claimed it (one after the other's lease expired). A node that
//! dies with claims leaves them to the others when the lease runs out; timers that came due while
//! every node was down are simply due on start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bus::{CommandBus, CommandError};
use crate::machine::{Clock, Machine};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// This node's name in claims (for operators; correctness does not depend on it).
    pub node: String,
    /// How often to look for due timers when nothing woke us.
    pub poll: Duration,
    /// How long a claim holds before another node may take it over.
    pub lease_ms: i64,
    /// Timers claimed at once.
    pub batch: i64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            node: format!("node-{}", std::process::id()),
            poll: Duration::from_millis(100),
            lease_ms: 30_000,
            batch: 1000,
        }
    }
}

/// Counters of a running scheduler.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Timers whose firing this node committed.
    pub fired: AtomicU64,
    /// Claimed timers that turned out to be spent already (fired by another node, or cancelled).
    pub spent: AtomicU64,
    pub errors: AtomicU64,
}

/// Starts the scheduler loop; abort the handle to stop it (claims in flight expire with their
/// lease, nothing is lost).
pub fn spawn_scheduler<M: Machine, S: Store>(
    bus: CommandBus<M>,
    store: S,
    clock: Arc<dyn Clock>,
    opts: SchedulerOptions,
) -> (tokio::task::JoinHandle<()>, Arc<SchedulerStats>) {
    let stats = Arc::new(SchedulerStats::default());
    let st = stats.clone();
    let handle = tokio::spawn(async move {
        loop {
            let now = clock.now();
            let claimed = match store
                .claim_due(&opts.node, now, opts.lease_ms, opts.batch)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("timer claim failed: {e}");
                    st.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(opts.poll).await;
                    continue;
                }
            };
            let full = claimed.len() as i64 >= opts.batch;
            let mut set = tokio::task::JoinSet::new();
            for c in claimed {
                let bus = bus.clone();
                set.spawn(async move { bus.fire(c.timer).await });
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(_)) | Ok(Err(CommandError::Rejected(_))) => {
                        st.fired.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(CommandError::TimerSpent)) => {
                        st.spent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("timer firing failed: {e}");
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!("timer task failed: {e}");
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(opts.poll) => {}
                _ = bus.timer_armed.notified() => {}
            }
        }
    });
    (handle, stats)
}
