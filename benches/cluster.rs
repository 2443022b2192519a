//! Scale-out throughput (issue 32 item 7): W `inkflow worker` processes against a throwaway
//! PostgreSQL, the S3 test server and the fal emulator holding every request for L, with the
//! account's limit C (the fal stage's `concurrency`). Prints pages/s against the ideal
//! min(C / L, CPU) for each worker count, and each worker's peak RSS.
//!
//!   cargo bench --bench cluster                                  # 60 items, C=6, L=1000 ms, 1-3 workers
//!   CLUSTER_ITEMS=120 CLUSTER_CONCURRENCY=12 CLUSTER_WORKERS=3 cargo bench --bench cluster

#[path = "../tests/it/common/fal_emulator.rs"]
#[allow(dead_code)]
mod fal_emulator;
#[path = "../tests/it/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../tests/it/common/s3.rs"]
#[allow(dead_code)]
mod s3;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fal_emulator::{FalEmulator, Images, Latency};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of process `pid` in MiB (Linux).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Setup {
    items: u64,
    concurrency: u64,
    latency_ms: u64,
}

fn main() {
    let setup = Setup {
        items: env_number("CLUSTER_ITEMS", 60),
        concurrency: env_number("CLUSTER_CONCURRENCY", 6),
        latency_ms: env_number("CLUSTER_LATENCY_MS", 1000),
    };
    let max_workers = env_number("CLUSTER_WORKERS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    println!("items {}, C {}, L {} ms", setup.items, setup.concurrency, setup.latency_ms);
    println!("workers | pages/s | ideal C/L | share | first page | peak RSS per worker (MiB)");
    for workers in 1..=max_workers {
        runtime.block_on(measure(&setup, workers));
    }
}

async fn measure(setup: &Setup, workers: u64) {
    let Some(db) = postgres::Postgres::start("bench cluster") else { return };
    let store = s3::Server::start(true).await;
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/page_000.png"))
        .expect("fixture");
    let latency = Latency { status: Duration::from_millis(setup.latency_ms), ..Latency::default() };
    let fal = FalEmulator::start_with(latency, Images::Fixed(Arc::new(png))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let prompts: Vec<serde_json::Value> = (1..=setup.items)
        .map(|i| serde_json::json!({"section": "bench", "image_number": i, "image_prompt": format!("page {i}"), "description": format!("p{i}")}))
        .collect();
    std::fs::write(dir.path().join("prompts.json"), serde_json::json!({ "prompts": prompts }).to_string())
        .unwrap();
    let pipeline = dir.path().join("cluster.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: prompts.json }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{}\", image_size: square, poll_interval_ms: 50,
              concurrency: {} }}
  gray: {{ kind: grayscale, inputs: [generate] }}
sinks:
  pages: {{ kind: disk, inputs: [gray] }}
",
            fal.base(),
            setup.concurrency
        ),
    )
    .unwrap();
    let inkflow = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inkflow"));
        command
            .current_dir(dir.path())
            .env("FAL_KEY", "bench-key")
            .env("AWS_ENDPOINT_URL", &store.endpoint)
            .env("AWS_REGION", "auto")
            .env("AWS_ACCESS_KEY_ID", s3::KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET)
            .env("AWS_ALLOW_HTTP", "true")
            .env("RUST_LOG", "warn")
            .args(args);
        command
    };
    let registered = inkflow(&[
        "run",
        pipeline.to_str().unwrap(),
        "--cluster",
        &db.url,
        "--output",
        "s3://books/bench",
        "--detach",
    ])
    .output()
    .expect("inkflow run");
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    // Each worker has twice its share of the account's limit in hand: while an item is
    // downloaded, processed and stored after fal answered, another is ready to take its slot.
    let threads = env_number("CLUSTER_THREADS", 2 * setup.concurrency.div_ceil(workers)).to_string();
    let started = Instant::now();
    let mut running: Vec<Child> = (0..workers)
        .map(|_| {
            inkflow(&["worker", "--cluster", &db.url, "--threads", &threads, "--exit-when-idle"])
                .stdout(Stdio::null())
                .spawn()
                .expect("worker")
        })
        .collect();
    let client = inkflow::cluster::Database::connect(&db.url).await.expect("database").client;
    let mut peaks = vec![0.0f64; running.len()];
    let (mut first_at, mut settled_at) = (None, None);
    while running.iter_mut().any(|w| w.try_wait().ok().flatten().is_none()) {
        for (peak, worker) in peaks.iter_mut().zip(&running) {
            *peak = peak.max(peak_rss_mib(worker.id()));
        }
        let settled = client
            .query_one("SELECT count(*) FROM items WHERE state IN ('written', 'failed', 'filtered')", &[])
            .await
            .map_or(0, |row| row.get::<_, i64>(0));
        if first_at.is_none() && settled > 0 {
            first_at = Some(started.elapsed());
        }
        if settled_at.is_none() && settled as u64 >= setup.items {
            settled_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pages count once stored and settled; the batch's last step (the summary) is excluded.
    let elapsed = settled_at.unwrap_or_else(|| started.elapsed()).as_secs_f64();
    let rate = setup.items as f64 / elapsed;
    let ideal = setup.concurrency as f64 / (setup.latency_ms as f64 / 1000.0);
    let peaks: Vec<String> = peaks.iter().map(|p| format!("{p:.0}")).collect();
    // The workers' start (connecting, reading the batch) and the first round of requests are
    // in the time: a longer batch amortises them.
    let first = first_at.map_or(0.0, |t| t.as_secs_f64());
    println!(
        "{workers} | {rate:.2} | {ideal:.2} | {:.0}% | {first:.2} s | {}",
        100.0 * rate / ideal,
        peaks.join(", ")
    );
    store.stop().await;
}
