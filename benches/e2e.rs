//! End-to-end throughput against a local fal emulator: the real pipeline (fal → grayscale →
//! upscale 2550x3300 → threshold → thumbnail → disk) in-process, with a configurable latency L
//! per request and concurrency C. Prints pages/s against the ideal min(C / L, CPU limit), CPU
//! seconds per page and peak RSS.
//!
//!   cargo bench --bench e2e                                   # 400 items, C=40, L=2000 ms
//!   E2E_ITEMS=2000 E2E_CONCURRENCY=20 E2E_LATENCY_MS=1000 cargo bench --bench e2e

#[path = "../tests/it/common/fal_emulator.rs"]
#[allow(dead_code)]
mod fal_emulator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fal_emulator::{FalEmulator, Images, Latency};
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::engine::runtime::{self, RunSettings};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User + system CPU seconds of this process, from /proc/self/stat (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// Peak resident memory in MiB, from /proc/self/status (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    inkflow::keep_large_buffers_out_of_the_heap();
    let items = env_number("E2E_ITEMS", 400);
    let concurrency = env_number("E2E_CONCURRENCY", 40);
    let latency_ms = env_number("E2E_LATENCY_MS", 2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/page_000.png")).expect("fixture");
        let latency = Latency { status: Duration::from_millis(latency_ms), ..Latency::default() };
        let fal = FalEmulator::start_with(latency, Images::Fixed(Arc::new(png))).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let prompts: Vec<serde_json::Value> = (1..=items)
            .map(|i| serde_json::json!({"section": "bench", "image_number": i, "image_prompt": format!("page {i}"), "description": format!("p{i}")}))
            .collect();
        std::fs::write(dir.path().join("prompts.json"), serde_json::json!({ "prompts": prompts }).to_string()).unwrap();
        let file = dir.path().join("e2e.yaml");
        std::fs::write(
            &file,
            format!(
                "version: 1
defaults: {{ capacity: 4, concurrency: 2 }}
sources:
  prompts: {{ kind: prompts, path: {dir}/prompts.json }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{base}\", concurrency: {concurrency}, image_size: portrait_4_3,
              poll_interval_ms: 10 }}
  gray: {{ kind: grayscale, inputs: [generate] }}
  print: {{ kind: upscale, inputs: [gray], width: 2550, height: 3300, dpi: 300 }}
  lineart: {{ kind: threshold, inputs: [print] }}
  thumb: {{ kind: thumbnail, inputs: [lineart] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart, thumb] }}
",
                dir = dir.path().display(),
                base = fal.base()
            ),
        )
        .unwrap();
        // SAFETY: set before any other thread reads the environment in this process.
        unsafe { std::env::set_var("FAL_KEY", "bench-key") };
        let registry = inkflow::stages::builtin();
        let pipeline = pipeline::load(&file, &LoadOptions::default(), &registry).expect("pipeline");
        let batch = runtime::build(pipeline, &registry, &dir.path().join("out"), false).expect("build");
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let summary = batch.run(RunSettings::default()).await.expect("run");
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        assert_eq!(summary.succeeded, items, "every page must succeed: {:?}", summary.failures.first());
        let pages_per_s = items as f64 / wall;
        let latency_limit = concurrency as f64 / (latency_ms as f64 / 1000.0);
        let cpu_per_page = cpu / items as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu_limit = cores / cpu_per_page;
        let ideal = latency_limit.min(cpu_limit);
        println!(
            "e2e items={items} C={concurrency} L={latency_ms}ms: {pages_per_s:.1} pages/s ({:.0}% of ideal {ideal:.1} = min(C/L {latency_limit:.1}, CPU limit {cpu_limit:.1})), CPU {:.0} ms/page, peak RSS {:.0} MiB, wall {wall:.1} s",
            100.0 * pages_per_s / ideal,
            cpu_per_page * 1000.0,
            peak_rss_mib()
        );
    });
}
