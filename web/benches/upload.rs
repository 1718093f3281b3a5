//! `cargo bench -p shenpi-web --bench upload`: a 50 MiB material file uploaded through the API,
//! as an applicant does after a 补正, on a fresh SQLite database, in a files directory
//! (`serve --file-dir`) and on PostgreSQL when it is reachable: how fast, and what it costs the
//! server's memory.
//!
//! The server runs in this process (the API tests' server, `tests/api_common`), and the request
//! body is generated chunk by chunk as it is sent, so the memory measured is the server's
//! handling of the upload, not a copy of the file held by the client. RSS is sampled every 5 ms
//! from `/proc/self/status`. The target: the body is streamed, so the peak RSS growth stays well
//! under the file's size (below half of it). Three uploads of different content (a file uploaded
//! twice is kept once, which would measure nothing); the exit code is 1 when a target is missed.

#[path = "../tests/api_common/mod.rs"]
mod api_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use shenpi_adapters::bench::rss_kib_of;

const FILE_BYTES: usize = 50 << 20;
const PIECE: usize = 64 << 10;
const RUNS: u8 = 3;
const BOUNDARY: &str = "----shenpi-bench-boundary";

/// The multipart body of one PDF of `FILE_BYTES`, produced piece by piece as it is sent.
fn body(seed: u8) -> (u64, Body) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"环评报告全本.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let len = (head.len() + FILE_BYTES + tail.len()) as u64;
    let pieces = FILE_BYTES / PIECE;
    let content = (0..pieces).map(move |i| {
        let mut p = vec![0u8; PIECE];
        for (j, b) in p.iter_mut().enumerate() {
            *b = ((i * 31 + j * 7) as u8).wrapping_add(seed);
        }
        if i == 0 {
            p[..9].copy_from_slice(b"%PDF-1.7\n");
        }
        Bytes::from(p)
    });
    let all = std::iter::once(Bytes::from(head))
        .chain(content)
        .chain(std::iter::once(Bytes::from(tail)))
        .map(Ok::<_, std::io::Error>);
    (len, Body::from_stream(futures_util::stream::iter(all)))
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run())
}

async fn run() -> ExitCode {
    let mut ok = upload_on("SQLite", api_common::server("bench-upload").await).await;
    let in_dir = api_common::server_with_file_dir("bench-upload-dir", Default::default()).await;
    ok &= upload_on(
        "a files directory (serve --file-dir), rows in SQLite",
        in_dir,
    )
    .await;
    let base = api_common::pg_url();
    if let Some(mut admin) = api_common::pg_admin(&base).await {
        let schema = api_common::pg_schema(&mut admin, "bench_upload").await;
        let dir =
            std::env::temp_dir().join(format!("shenpi-bench-upload-pg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let url = api_common::in_schema(&base, &schema);
        let s = api_common::server_at(dir, &url, Default::default(), Default::default()).await;
        ok &= upload_on("PostgreSQL", s).await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Three uploads on `s`; whether each stayed under the target.
async fn upload_on(backend: &str, s: api_common::Server) -> bool {
    let pid = std::process::id();
    let mut ok = true;
    println!(
        "{backend}: a {} MiB PDF through POST /api/instances/{{id}}/materials/eia/files",
        FILE_BYTES >> 20
    );
    for run in 1..=RUNS {
        let (inst, _) = s.returned_for_eia().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_kib_of(pid).unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(before));
        let sampler = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib_of(pid).unwrap_or(0), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let (len, b) = body(run);
        let req = Request::post(format!("/api/instances/{inst}/materials/eia/files"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::CONTENT_LENGTH, len)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", s.tokens.get("chen").expect("token")),
            )
            .body(b)
            .expect("request");
        let started = Instant::now();
        let r = s.send(req).await;
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        if r.status != StatusCode::CREATED {
            println!("run {run}: refused {} {}", r.status, r.text);
            return false;
        }
        let peak = peak.load(Ordering::Relaxed);
        let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
        let mib_s = FILE_BYTES as f64 / (1 << 20) as f64 / took.as_secs_f64();
        let under = growth_mib < (FILE_BYTES >> 20) as f64 / 2.0;
        ok &= under;
        println!(
            "run {run}: {:.2} s, {mib_s:.1} MiB/s; RSS {:.1} MiB before, peak {:.1} MiB (+{growth_mib:.1} MiB, {})",
            took.as_secs_f64(),
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            if under {
                "under half the file: streamed"
            } else {
                "TARGET MISSED"
            },
        );
    }
    let _ = std::fs::remove_dir_all(&s.dir);
    ok
}
