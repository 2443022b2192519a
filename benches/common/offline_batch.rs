//! The 1,000-item offline batch the report and review benchmarks read: small pattern pages, a
//! quality check that rejects some, and re-rolls, so there are verdicts, problems and rejected
//! candidates to show.

use std::path::Path;
use std::sync::Arc;

use inkflow::engine::journal::{Journal, ResumePolicy};
use inkflow::engine::runtime::{ItemObserver, RunSettings};
use serde_json::json;

pub const ITEMS: usize = 1_000;

/// Runs a 1,000-item offline batch into `out`, journal and all.
pub fn make_batch(out: &Path) {
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
