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
//!
//! A firing the engine refuses (a `Rejection`, e.g. `outside_calendar`) is not marked fired: the
//! bus writes the refusal on the timer, which stays open and is held back from claims until its
//! retry time (an hour by default, [`crate::bus::BusOptions::refused_timer_retry_ms`]). This loop
//! logs each refusal as a warning and, every [`SchedulerOptions::retry_sweep`], lets the timers
//! whose retry time has come be claimed again; [`retry_refused_timers`] lets them all go at once,
//! for a calendar or definition revision that may let them fire. A refused timer is tried again,
//! never marked fired without its effects, and still fires once (the same guarded commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bus::{CommandBus, CommandError};
use crate::machine::{Clock, Machine};
use crate::store::{Millis, Store, TimerStore};

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
    /// How often to let refused timers whose retry time has come be claimed again.
    pub retry_sweep: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            node: format!("node-{}", std::process::id()),
            poll: Duration::from_millis(100),
            lease_ms: 30_000,
            batch: 1000,
            retry_sweep: Duration::from_secs(60),
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
    /// Firings the machine refused: the timer stays open with the refusal recorded.
    pub refused: AtomicU64,
    /// Firings that came before the instance's own due: the timer moved to that due.
    pub postponed: AtomicU64,
    pub errors: AtomicU64,
    /// Whether the scheduler's loop is running: cleared when its task ends for any reason (a
    /// panic included), so `/readyz` can say so.
    pub running: std::sync::atomic::AtomicBool,
}

/// Clears [`SchedulerStats::running`] when the scheduler's task ends, however it ends.
struct Running(Arc<SchedulerStats>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// Lets every refused timer be tried again as soon as it is due, and wakes the scheduler: call it
/// after a calendar or definition revision that may let them fire (and at start, when the
/// calendars and definitions have just been loaded). Returns how many were held.
pub async fn retry_refused_timers<M: Machine, S: TimerStore>(
    bus: &CommandBus<M>,
    store: &S,
) -> crate::store::Result<u64> {
    let n = store.retry_refused_timers(Millis::MAX).await?;
    if n > 0 {
        tracing::info!("{n} refused timers released to be tried again");
        bus.timer_armed.notify_one();
    }
    Ok(n)
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
    stats.running.store(true, Ordering::Relaxed);
    let st = stats.clone();
    let handle = tokio::spawn(async move {
        let _running = Running(st.clone());
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            let now = clock.now();
            if last_sweep.is_none_or(|at| at.elapsed() >= opts.retry_sweep) {
                last_sweep = Some(tokio::time::Instant::now());
                match store.retry_refused_timers(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("{n} refused timers are due to be tried again"),
                    Err(e) => {
                        tracing::warn!("refused-timer sweep failed: {e}");
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
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
                set.spawn(async move {
                    let r = bus.fire(c.timer.clone()).await;
                    (c.timer, r)
                });
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((_, Ok(_))) => {
                        st.fired.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((t, Err(CommandError::Rejected(why)))) => {
                        st.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            instance = %t.instance,
                            timer = %t.timer_id,
                            kind = %t.kind,
                            code = %why.code,
                            "the engine refused to fire a timer ({why}); it stays pending with \
                             the refusal recorded, tried again after a calendar or definition \
                             revision or at its retry time"
                        );
                    }
                    Ok((t, Err(CommandError::TimerNotDue { due }))) => {
                        st.postponed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            instance = %t.instance,
                            timer = %t.timer_id,
                            "timer came before its instance's due (row due {}, instance due \
                             {due}); moved to that due",
                            t.due
                        );
                    }
                    Ok((_, Err(CommandError::TimerSpent))) => {
                        st.spent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((t, Err(e))) => {
                        tracing::warn!(
                            instance = %t.instance,
                            timer = %t.timer_id,
                            "timer firing failed: {e}; the claim lapses and it is tried again"
                        );
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
