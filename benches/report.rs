//! `report.html` for a batch of 1,000 items: how long gathering (journal, metadata files,
//! candidate folders) and rendering take, and how large the page is. The batch is made once,
//! offline, with small pattern pages, a quality check that rejects some, and re-rolls, so the
//! report has verdicts, problems and rejected candidates to show.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use inkflow::engine::journal::{Journal, ResumePolicy};
use inkflow::engine::runtime::{ItemObserver, RunSettings};
use inkflow::report::{RunFacts, write_report};
use serde_json::json;

const ITEMS: usize = 1_000;

/// Runs a 1,000-item offline batch into `out`, journal and all.
fn make_batch(out: &Path) {
    let prompts: Vec<serde_json::Value> = (1..=ITEMS)
        .map(|n| {
            json!({"section": format!("s{}", n % 10), "image_number": n, "image_prompt": format!("a mandala number {n}"),
                   "description": format!("Mandala {n}")})
        })
        .collect();
    let prompts_file = out.join("prompts.json");
    std::fs::write(&prompts_file, json!({ "prompts": prompts }).to_string()).unwrap();
    let pipeline_file = out.join("report-bench.yaml");
    std::fs::write(
        &pipeline_file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {} }}
stages:
  draw: {{ kind: pattern, inputs: [prompts], size: {{ width: 96, height: 128 }}, defects: 0.2 }}
  gray: {{ kind: grayscale, inputs: [draw] }}
  print: {{ kind: upscale, inputs: [gray], width: 255, height: 330, fit: contain, dpi: 30 }}
  quality: {{ kind: lineart-check, inputs: [print], max_rerolls: 1 }}
  lineart: {{ kind: threshold, inputs: [quality] }}
  thumb: {{ kind: thumbnail, inputs: [lineart], width: 40, height: 52 }}
sinks:
  pages: {{ kind: disk, inputs: [lineart, thumb] }}
",
            prompts_file.display()
        ),
    )
    .unwrap();
    let registry = inkflow::stages::builtin();
    let pipeline = inkflow::engine::pipeline::load(&pipeline_file, &Default::default(), &registry).unwrap();
    let batch = inkflow::engine::runtime::build(pipeline, &registry, out, false).unwrap();
    let journal: Arc<dyn ItemObserver> =
        Arc::new(Journal::open(out, batch.pipeline(), ResumePolicy::default()).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let settings = RunSettings { observer: Some(journal), ..RunSettings::default() };
    let summary = runtime.block_on(batch.run(settings)).unwrap();
    assert_eq!(summary.succeeded as usize + summary.failed as usize, ITEMS);
}

fn report(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    make_batch(dir.path());
    let path = write_report(dir.path(), RunFacts::default()).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let rejected = std::fs::read_dir(dir.path().join("rejected")).map_or(0, |d| d.count());
    println!("report.html for {ITEMS} items: {} KiB ({rejected} rejected candidate files)", bytes / 1024);
    assert!(bytes < 2 * 1024 * 1024, "the report stays under 2 MB: {bytes} bytes");
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    group.bench_function("gather_and_write_1000_items", |b| {
        b.iter(|| write_report(dir.path(), RunFacts::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
