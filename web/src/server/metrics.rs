//! Prometheus metrics, kept by hand: a few counters and latency histograms in atomics, and gauges
//! read from the database when `/metrics` is scraped.
//!
//! Why not the `metrics` crates: what we export is a dozen series with fixed labels; atomics cost
//! nothing on the hot path, add no dependency, and the text format is ten lines of code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; 12],
    /// Observations above the last bucket.
    over: AtomicU64,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        match BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => {
                if let Some(c) = self.counts.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.over.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(self.counts.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let brace = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", brace(labels));
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            brace(labels),
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Commands by result (`ok`, `replayed`, or the error code).
    commands: Mutex<BTreeMap<String, u64>>,
    pub command_latency: Histogram,
    pub http_requests: AtomicU64,
    pub http_latency: Histogram,
    pub logins_failed: AtomicU64,
}

impl Metrics {
    pub fn command(&self, result: &str, took: Duration) {
        self.command_latency.observe(took);
        if let Ok(mut m) = self.commands.lock() {
            *m.entry(result.to_string()).or_default() += 1;
        }
    }

    /// The Prometheus text exposition, with the gauges read at scrape time appended by the caller.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP shenpi_commands_total Commands handled, by result.\n");
        out.push_str("# TYPE shenpi_commands_total counter\n");
        if let Ok(m) = self.commands.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "shenpi_commands_total{{result=\"{}\"}} {v}", esc(k));
            }
        }
        out.push_str(
            "# HELP shenpi_command_duration_seconds Time from request to committed answer.\n",
        );
        out.push_str("# TYPE shenpi_command_duration_seconds histogram\n");
        self.command_latency
            .render(&mut out, "shenpi_command_duration_seconds", "");
        out.push_str("# HELP shenpi_http_requests_total HTTP requests served.\n");
        out.push_str("# TYPE shenpi_http_requests_total counter\n");
        let _ = writeln!(
            out,
            "shenpi_http_requests_total {}",
            self.http_requests.load(Ordering::Relaxed)
        );
        out.push_str("# HELP shenpi_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE shenpi_http_request_duration_seconds histogram\n");
        self.http_latency
            .render(&mut out, "shenpi_http_request_duration_seconds", "");
        out.push_str("# TYPE shenpi_logins_failed_total counter\n");
        let _ = writeln!(
            out,
            "shenpi_logins_failed_total {}",
            self.logins_failed.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP shenpi_timers Timers by state: pending, claimed, refused (open, the engine refused their last firing; retried, never counted as pending), fired, cancelled.\n",
        );
        out.push_str("# TYPE shenpi_timers gauge\n");
        // Every state always, 0 included, so an alert on `refused` has a series to watch.
        let mut states: BTreeMap<&str, i64> = TIMER_STATES.iter().map(|s| (*s, 0)).collect();
        for (state, n) in &gauges.timers {
            *states.entry(state.as_str()).or_default() += n;
        }
        for (state, n) in states {
            let _ = writeln!(out, "shenpi_timers{{state=\"{}\"}} {n}", esc(state));
        }
        out.push_str("# HELP shenpi_timers_due Open timers already due (waiting to fire).\n");
        out.push_str("# TYPE shenpi_timers_due gauge\n");
        let _ = writeln!(out, "shenpi_timers_due {}", gauges.timers_due);
        out.push_str("# HELP shenpi_timers_fired_total Timers this node fired.\n");
        out.push_str("# TYPE shenpi_timers_fired_total counter\n");
        let _ = writeln!(out, "shenpi_timers_fired_total {}", gauges.timers_fired);
        out.push_str("# HELP shenpi_outbox Outbox messages by state.\n");
        out.push_str("# TYPE shenpi_outbox gauge\n");
        for (state, n) in &gauges.outbox {
            let _ = writeln!(out, "shenpi_outbox{{state=\"{}\"}} {n}", esc(state));
        }
        out.push_str("# HELP shenpi_outbox_delivered_total Messages this node delivered.\n");
        out.push_str("# TYPE shenpi_outbox_delivered_total counter\n");
        let _ = writeln!(
            out,
            "shenpi_outbox_delivered_total {}",
            gauges.outbox_delivered
        );
        out.push_str("# TYPE shenpi_outbox_dead_total counter\n");
        let _ = writeln!(out, "shenpi_outbox_dead_total {}", gauges.outbox_dead);
        out.push_str(
            "# HELP shenpi_calendar_days_left Days until the last day a working-day calendar in use knows; limits past it are refused.\n",
        );
        out.push_str("# TYPE shenpi_calendar_days_left gauge\n");
        for r in &gauges.calendars {
            let _ = writeln!(
                out,
                "shenpi_calendar_days_left{{calendar=\"{}\",last_day=\"{}\"}} {}",
                esc(&r.calendar),
                r.last_day,
                r.days_left
            );
        }
        out.push_str("# HELP shenpi_tasks Open tasks by colour.\n");
        out.push_str("# TYPE shenpi_tasks gauge\n");
        for (colour, n) in &gauges.tasks_by_colour {
            let _ = writeln!(out, "shenpi_tasks{{colour=\"{}\"}} {n}", esc(colour));
        }
        out
    }
}

/// The states `shenpi_timers` always reports (see `TimerStore::timer_counts`).
const TIMER_STATES: [&str; 5] = ["pending", "claimed", "refused", "fired", "cancelled"];

/// Values read from the database at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    pub timers: Vec<(String, i64)>,
    pub timers_due: i64,
    pub timers_fired: u64,
    pub outbox: Vec<(String, i64)>,
    pub outbox_delivered: u64,
    pub outbox_dead: u64,
    pub tasks_by_colour: Vec<(String, i64)>,
    pub calendars: Vec<super::catalog::Runway>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(10));
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"0.001\"} 1"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.05\"} 2"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3"), "{s}");
        assert!(s.contains("x_count 3"), "{s}");
    }

    #[test]
    fn every_timer_state_is_exported_even_at_zero() {
        let g = Gauges {
            timers: vec![("pending".into(), 3), ("refused".into(), 2)],
            ..Gauges::default()
        };
        let s = Metrics::default().render(&g);
        for line in [
            "shenpi_timers{state=\"pending\"} 3",
            "shenpi_timers{state=\"refused\"} 2",
            "shenpi_timers{state=\"claimed\"} 0",
            "shenpi_timers{state=\"fired\"} 0",
            "shenpi_timers{state=\"cancelled\"} 0",
        ] {
            assert!(s.contains(line), "{line} missing in\n{s}");
        }
    }
}
