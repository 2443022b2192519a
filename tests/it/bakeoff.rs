//! The model bake-off (issue 31 item 8), through the `inkflow` binary against the fal emulator:
//! the same first prompts through each model, judged by `lineart-check`, a table whose counts
//! and costs are the journals' and the emulator's bill, paid once, refused before any payment.

use std::path::{Path, PathBuf};
use std::process::Output;

use inkflow::engine::journal::Journal;
use serde_json::{Value, json};

use crate::common::fal_emulator::{FalEmulator, Latency};
use crate::models::{inkflow, text};

const MODELS: [&str; 2] = ["fal-ai/flux/schnell", "fal-ai/imagen4/preview"];

/// A pipeline in `dir`: three prompts, fal (options `fal`), lineart-check, thumbnails, pages.
/// `judged: false` leaves the check out; `top` is added at the top level.
fn pipeline(dir: &Path, base: &str, fal: &str, judged: bool, top: &str) -> PathBuf {
    let prompts: Vec<Value> = (1..=3)
        .map(|i| json!({"section": "s", "image_number": i, "description": format!("p{i}"), "image_prompt": format!("bake prompt {i}")}))
        .collect();
    let prompts_file = dir.join("prompts.json");
    std::fs::write(&prompts_file, json!({ "prompts": prompts }).to_string()).unwrap();
    let (check, page) = if judged {
        ("  quality: { kind: lineart-check, inputs: [gray] }\n", "quality")
    } else {
        ("", "gray")
    };
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
{top}sources:
  prompts: {{ kind: prompts, path: {} }}
stages:
  generate:
    kind: fal
    inputs: [prompts]
    base_url: \"{base}\"
    poll_interval_ms: 20
    base_delay_ms: 10
    deadline: 5s
    image_size: portrait_4_3
{fal}
  gray: {{ kind: grayscale, inputs: [generate] }}
{check}  thumb: {{ kind: thumbnail, inputs: [{page}], width: 40, height: 52 }}
sinks:
  pages: {{ kind: disk, inputs: [{page}, thumb], filename: \"{{number:02}}.png\" }}
",
            prompts_file.display()
        ),
    )
    .unwrap();
    file
}

/// `inkflow bakeoff FILE` of [`MODELS`] on the first 2 prompts into `out`, with `more` flags.
async fn bakeoff_of_two(models: &Path, file: &Path, out: &Path, more: &[&str]) -> Output {
    let models_list = MODELS.join(",");
    let args = [
        "bakeoff",
        file.to_str().unwrap(),
        "--models",
        &models_list,
        "--sample",
        "2",
        "--output",
        out.to_str().unwrap(),
    ];
    inkflow(models, &[&args[..], more].concat(), &[]).await
}

/// Dollars the emulator billed for `model`'s requests.
fn billed_for(fal: &FalEmulator, model: &str) -> f64 {
    let ledger = fal.ledger.lock().unwrap();
    ledger
        .bills
        .iter()
        .filter(|(id, _)| ledger.models.get(*id).is_some_and(|m| m == model))
        .map(|(_, usd)| usd)
        .sum()
}

fn table(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("bakeoff/bakeoff.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn the_bakeoff_table_is_the_journals_and_the_bill_and_a_rerun_pays_nothing() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &fal.base(), "    model: fal-ai/flux/dev", true, "");
    let out = dir.path().join("out");
    let first = bakeoff_of_two(models.path(), &file, &out, &[]).await;
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(fal.ledger.lock().unwrap().accepted("bake prompt 3"), 0, "only the first 2 prompts");
    let submitted = fal.total_submissions();
    assert_eq!(submitted, 4, "2 prompts x 2 models");
    let said = text(&first);
    let written = table(&out);
    let mut total_spent = 0.0;
    for (row, model) in written["models"].as_array().unwrap().iter().zip(MODELS) {
        assert_eq!(row["model"], json!(model));
        let batch = out.join("bakeoff").join(row["folder"].as_str().unwrap());
        assert!(batch.starts_with(out.join("bakeoff")) && batch.join("journal.sqlite").is_file());
        let spent = Journal::status(&batch).unwrap().spent_usd;
        let billed = billed_for(&fal, model);
        assert!(
            billed > 0.0 && (spent - billed).abs() < 1e-9,
            "{model}: journal ${spent}, fal billed ${billed}"
        );
        assert!((row["spent_usd"].as_f64().unwrap() - billed).abs() < 1e-9, "{row}");
        total_spent += billed;
        // The verdicts lineart-check wrote into each page's metadata.
        let verdicts: Vec<String> = std::fs::read_dir(batch.join("metadata"))
            .unwrap()
            .map(|entry| {
                let page: Value =
                    serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
                page.pointer("/quality/verdict").and_then(Value::as_str).unwrap_or("none").to_owned()
            })
            .collect();
        let count = |v: &str| verdicts.iter().filter(|found| *found == v).count() as u64;
        assert_eq!(
            (row["pass"].as_u64(), row["warn"].as_u64(), row["reject"].as_u64()),
            (Some(count("pass")), Some(count("warn")), Some(count("reject"))),
            "{model}: {row}"
        );
        assert_eq!(count("pass") + count("warn") + count("reject"), 2, "every page judged: {verdicts:?}");
        let accepted = count("pass") + count("warn");
        assert_eq!(row["accepted"].as_u64(), Some(accepted));
        match row["cost_per_accepted_page_usd"].as_f64() {
            Some(per_page) => assert!((per_page - billed / accepted as f64).abs() < 1e-9, "{row}"),
            None => assert_eq!(accepted, 0, "{row}"),
        }
        assert!(said.contains(model), "{said}");
    }
    assert!((total_spent - fal.ledger.lock().unwrap().billed_usd()).abs() < 1e-9);
    let markdown = std::fs::read_to_string(out.join("bakeoff/bakeoff.md")).unwrap();
    assert!(
        MODELS.iter().all(|m| markdown.contains(m)) && markdown.contains("per accepted page"),
        "{markdown}"
    );
    // The review page: a row per prompt, a column per model, every thumbnail a file.
    let html = std::fs::read_to_string(out.join("bakeoff/bakeoff.html")).unwrap();
    let images: Vec<&str> =
        html.split("<img src=\"").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    assert_eq!(images.len(), 4, "{html}");
    for image in images {
        assert!(out.join("bakeoff").join(image).is_file(), "{image} in {html}");
    }
    assert_eq!(html.matches("<br><small>s-0000").count(), 2, "a row per prompt: {html}");

    let rerun = bakeoff_of_two(models.path(), &file, &out, &[]).await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(fal.total_submissions(), submitted, "the rerun paid nothing");
    let again = table(&out);
    for (before, after) in
        written["models"].as_array().unwrap().iter().zip(again["models"].as_array().unwrap())
    {
        for field in ["pages", "pass", "warn", "reject", "spent_usd", "accepted"] {
            assert_eq!(before[field], after[field], "{field}");
        }
    }
}

#[tokio::test]
async fn a_bad_model_or_input_stops_the_bakeoff_before_anything_is_paid() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // 28 steps suit FLUX.1 [dev], listed first, but are over schnell's 12: neither runs.
    let steps = "    model: fal-ai/flux/dev\n    num_inference_steps: 28";
    let file = pipeline(dir.path(), &fal.base(), steps, true, "");
    let run = |models_list: String, file: PathBuf| {
        let out = out.clone();
        let models = models.path().to_owned();
        async move {
            let args = [
                "bakeoff",
                file.to_str().unwrap(),
                "--models",
                &models_list,
                "--sample",
                "2",
                "--output",
                out.to_str().unwrap(),
            ];
            inkflow(&models, &args, &[]).await
        }
    };
    let refused = run("fal-ai/flux/dev,fal-ai/flux/schnell".into(), file.clone()).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12"),
        "{}",
        text(&refused)
    );
    let unknown = run("fal-ai/flux/dev,nobody/no-such-model".into(), file.clone()).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("\"nobody/no-such-model\" is not in the catalogue"),
        "{}",
        text(&unknown)
    );
    let unjudged = pipeline(dir.path(), &fal.base(), "    model: fal-ai/flux/dev", false, "");
    let said = run(MODELS.join(","), unjudged).await;
    assert_eq!(said.status.code(), Some(2), "{}", text(&said));
    assert!(
        text(&said).contains("pipeline.yaml:4:") && text(&said).contains("no stage of kind lineart-check"),
        "{}",
        text(&said)
    );
    // A model the pipeline names is pointed at where it is written.
    let top = "bakeoff:\n  models: [fal-ai/flux/dev, nobody/listed]\n  sample: 1\n";
    let named = pipeline(dir.path(), &fal.base(), "    model: fal-ai/flux/dev", true, top);
    let refused =
        inkflow(models.path(), &["bakeoff", named.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
            .await;
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("pipeline.yaml:3:")
            && said.contains("bakeoff.models: \"nobody/listed\" is not in the catalogue"),
        "{said}"
    );
    assert_eq!(fal.total_submissions(), 0, "nothing reached fal");
    assert!(!out.join("bakeoff").exists(), "no model's batch was started");
}

#[tokio::test]
async fn the_pipeline_can_name_the_models_and_the_sample() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let top = format!("bakeoff:\n  models: [{}]\n  sample: 1\n", MODELS.join(", "));
    let file = pipeline(dir.path(), &fal.base(), "    model: fal-ai/flux/dev", true, &top);
    let out = dir.path().join("out");
    let validate = inkflow(models.path(), &["validate", file.to_str().unwrap()], &[]).await;
    assert!(validate.status.success(), "{}", text(&validate));
    let ran =
        inkflow(models.path(), &["bakeoff", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
            .await;
    assert!(ran.status.success(), "{}", text(&ran));
    assert_eq!(fal.total_submissions(), 2, "one prompt through each of the two models");
    assert_eq!(table(&out)["sample"], json!(1));
    // The flag overrides the pipeline's sample.
    let more = inkflow(
        models.path(),
        &["bakeoff", file.to_str().unwrap(), "--sample", "2", "--output", out.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(more.status.success(), "{}", text(&more));
    assert_eq!(fal.total_submissions(), 4, "only the second prompt is new for each model");
}

/// `--dry-run` shows what each model's run would pay for, and pays for nothing.
#[tokio::test]
async fn a_dry_run_shows_each_models_cost_and_pays_nothing() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = pipeline(dir.path(), &fal.base(), "    model: fal-ai/flux/dev", true, "");
    let dry = bakeoff_of_two(models.path(), &file, &out, &["--dry-run"]).await;
    let said = text(&dry);
    assert!(dry.status.success(), "{said}");
    for model in MODELS {
        assert!(said.contains(&format!("bake-off (dry run): {model}")), "{said}");
    }
    assert_eq!(said.matches("to pay for: 2 item(s) reach a paid stage").count(), 2, "{said}");
    assert_eq!(fal.total_submissions(), 0, "nothing reached fal");
    assert!(!out.join("bakeoff").join("bakeoff.json").exists(), "no table was written");
}
