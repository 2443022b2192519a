//! Safety end to end: an unsafe prompt is never sent to fal (nothing is paid for it), and an
//! image fal flags with `has_nsfw_concepts` never reaches disk; both are recorded as filtered.

use crate::common::binary::inkflow;
use crate::common::fal_emulator::{FLAGGED, FalEmulator, Latency};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_prompts_are_not_paid_for_and_flagged_images_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts = json!({"prompts": [
        {"section": "s", "image_number": 1, "image_prompt": "a happy whale", "description": "whale"},
        {"section": "s", "image_number": 2, "image_prompt": "a n.u.d.e figure", "description": "unsafe"},
        {"section": "s", "image_number": 3, "image_prompt": format!("a castle {FLAGGED}"), "description": "flagged"},
    ]});
    std::fs::write(dir.path().join("prompts.json"), prompts.to_string()).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "on_reject: drop",
        &format!(
            "kind: fal, inputs: [check], base_url: \"{}\", image_size: square, poll_interval_ms: 20",
            fal.base()
        ),
    );
    let out = dir.path().join("out");
    let result = tokio::process::Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FAL_KEY", "test-key-not-a-secret")
        .arg("run")
        .arg(&pipeline)
        .arg("--output")
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let submitted: Vec<String> = fal.ledger.lock().unwrap().submissions.keys().cloned().collect();
    assert_eq!(submitted.len(), 2, "the unsafe prompt must not be sent: {submitted:?}");
    assert!(!submitted.iter().any(|p| p.contains("n.u.d.e")));
    assert!(out.join("whale.png").is_file());
    assert!(!out.join("flagged.png").exists(), "a flagged image reached disk");
    assert!(!out.join("unsafe.png").exists());

    let meta = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join("metadata").join(format!("{name}.json"))).unwrap())
            .unwrap()
    };
    assert_eq!(meta("flagged")["success"], false);
    assert!(meta("flagged").to_string().contains("NSFW"), "{}", meta("flagged"));
    assert!(meta("unsafe").to_string().contains("deny term \\\"nude\\\""), "{}", meta("unsafe"));

    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["filtered"].as_u64()),
        (Some(1), Some(2)),
        "{summary}"
    );
    let reasons = summary["filtered_reasons"].as_object().unwrap();
    assert!(reasons.keys().any(|r| r.contains("deny term \"nude\"")), "{reasons:?}");
    assert!(reasons.keys().any(|r| r.contains("NSFW")), "{reasons:?}");
}

/// Evasions of the shipped children's list, one of each kind the stage reads, that passed before
/// the confusables data, default-ignorable characters, masks, doubled letters and compounds.
const EVASIONS: [&str; 14] = [
    "a nu\u{115F}de woman",     // Hangul choseong filler
    "a n\u{3164}ude statue",    // Hangul filler
    "g\u{FFA0}un on the table", // halfwidth Hangul filler
    "a gսn",                    // Armenian s
    "ոude",                     // Armenian vo
    "ᏴᏞᎾᎾᎠ everywhere",         // Cherokee
    "🅽🆄🅳🅴",                     // negative squared letters
    "🇬🇺🇳",                      // regional indicators
    "p*rn",
    "f*ck this",
    "nuude",
    "a gunfight",
    "bloodshed in the village",
    "sh#t happens",
];

/// Innocent prompts the shipped lists filtered before the allow phrases and compound rules.
const INNOCENTS: [&str; 10] = [
    "kill two birds with one stone",
    "Kill Devil Hills lighthouse",
    "a wine-red apple",
    "a beer-barrel polka dance",
    "an ass (donkey)",
    "a nude-colored lipstick",
    "a bloodhound on a trail",
    "cut the grass near the Essex passage",
    "a good balloon at the bookkeeper's",
    "a root beer float",
];

#[test]
fn the_binary_blocks_evasions_and_passes_innocent_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = |kind: &str, i: usize, text: &str| json!({"section": kind, "image_number": i + 1, "image_prompt": text, "description": format!("{kind}-{i:02}")});
    let prompts: Vec<Value> = EVASIONS
        .iter()
        .enumerate()
        .map(|(i, text)| prompt("evasion", i, text))
        .chain(INNOCENTS.iter().enumerate().map(|(i, text)| prompt("innocent", i, text)))
        .collect();
    std::fs::write(dir.path().join("prompts.json"), json!({ "prompts": prompts }).to_string()).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!("allow_files: [{}/pipelines/safety/children-allow.txt]", env!("CARGO_MANIFEST_DIR")),
        "kind: pattern, inputs: [check], size: { width: 64, height: 64 }",
    );
    let out = dir.path().join("out");
    let result = inkflow()
        .args(["run".as_ref(), pipeline.as_os_str(), "--output".as_ref(), out.as_os_str()])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let written = |name: &str| out.join(format!("{name}.png")).is_file();
    let passed: Vec<&str> = EVASIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| written(&format!("evasion-{i:02}")))
        .map(|(_, p)| *p)
        .collect();
    assert!(passed.is_empty(), "evasions that reached disk: {passed:?}");
    let blocked: Vec<&str> = INNOCENTS
        .iter()
        .enumerate()
        .filter(|(i, _)| !written(&format!("innocent-{i:02}")))
        .map(|(_, p)| *p)
        .collect();
    assert!(blocked.is_empty(), "innocent prompts blocked: {blocked:?}");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["filtered"].as_u64()),
        (Some(INNOCENTS.len() as u64), Some(EVASIONS.len() as u64)),
        "{summary}"
    );
    let reasons = summary["filtered_reasons"].as_object().unwrap();
    assert!(reasons.keys().all(|r| r.starts_with("deny term ")), "{reasons:?}");
    assert!(
        reasons.keys().any(|r| r.contains("\"gun*\"")),
        "a compound is named by its marked term: {reasons:?}"
    );
}

/// Writes `p.yaml` in `dir`: the prompts in `dir/prompts.json`, checked by the shipped deny
/// list with the `check` options added, drawn by the `generate` stage, written as
/// `{description}.png`.
fn write_pipeline(dir: &Path, check: &str, generate: &str) -> PathBuf {
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {dir}/prompts.json }}
stages:
  check: {{ kind: safety, inputs: [prompts], deny_files: [{root}/pipelines/safety/children-deny.txt], {check} }}
  generate: {{ {generate} }}
  gray: {{ kind: grayscale, inputs: [generate] }}
sinks:
  pages: {{ kind: disk, inputs: [gray], filename: \"{{description}}.png\" }}
",
            dir = dir.display(),
            root = env!("CARGO_MANIFEST_DIR"),
        ),
    )
    .unwrap();
    pipeline
}
