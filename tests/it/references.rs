//! Reference images and LoRAs (issue 33 items 2 and 3), through the `inkflow` binary against
//! the fal emulator: local references uploaded once per batch through fal's storage (the key
//! only at fal's own host), journaled and reused on resume, uploaded again once changed, and
//! sent in the input each model reads them from; models that cannot take them refuse before
//! anything is paid; LoRAs priced from their endpoint.

use std::path::Path;

use inkflow::engine::journal::Journal;
use serde_json::{Value, json};

use crate::common::fal_emulator::{FalEmulator, Latency, POLICY_422};
use crate::models::{inkflow, pipeline, prompt, text};

/// A LoRA's weights, as a URL fal fetches itself.
const LORA: &str = "https://huggingface.co/someone/coloring-book-lora/resolve/main/lora.safetensors";

/// A small PNG of one gray level, so two levels are two different files.
fn reference_png(path: &Path, level: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::GrayImage::from_pixel(8, 8, image::Luma([level]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// `inkflow run FILE --output OUT EXTRA...` with fal's REST host (its storage) on the emulator.
async fn run(
    fal: &FalEmulator,
    models: &Path,
    file: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let args = [&["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()][..], extra].concat();
    inkflow(models, &args, &[("FAL_REST_BASE_URL", &fal.base())]).await
}

/// The body fal received for the prompt containing `text`, in its latest request.
fn body_of(fal: &FalEmulator, text: &str) -> Value {
    let ledger = fal.ledger.lock().unwrap();
    let last = ledger.requests_of(text).pop().unwrap_or_else(|| panic!("no request for {text}"));
    ledger.bodies[&last].clone()
}

#[tokio::test]
async fn a_reference_is_uploaded_once_per_batch_and_sent_as_the_models_image_input() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let hero = reference_png(&dir.path().join("refs/hero.png"), 90);
    let prompts = [
        prompt("the hero at the beach"),
        prompt(&format!("the hero in a forest {POLICY_422}")),
        prompt("the hero at home"),
    ];
    let options = "    model: fal-ai/flux-pro/kontext\n    references: [refs/hero.png]";
    let file = pipeline(dir.path(), &fal.base(), &prompts, options);
    let out = dir.path().join("out");
    let first = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(!first.status.success(), "the refused page fails the run: {}", text(&first));
    let file_url = {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!((ledger.upload_initiates, ledger.uploaded.len()), (1, 1), "three pages, one upload");
        let uploaded = &ledger.uploaded[0];
        assert_eq!(uploaded.bytes, hero);
        assert_eq!(uploaded.content_type, "image/png");
        assert_eq!(uploaded.authorization, None, "the key went to the storage host");
        uploaded.file_url.clone()
    };
    let put = fal.storage.received_requests().await.unwrap_or_default();
    assert_eq!(put.len(), 1, "the bytes go to the storage host the initiate call named");
    for page in ["beach", "forest", "home"] {
        assert_eq!(body_of(&fal, page)["image_url"], json!(file_url), "{page}");
    }
    // The refused page, submitted again by a resumed batch, reuses the journaled upload.
    let again = run(&fal, models.path(), &file, &out, &["--retry-failed"]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(fal.ledger.lock().unwrap().accepted("forest"), 2);
    assert_eq!(fal.ledger.lock().unwrap().upload_initiates, 1, "uploaded again on resume");
    assert_eq!(body_of(&fal, "forest")["image_url"], json!(file_url));
    assert!(out.join("02.png").exists());
    // A changed reference is a new file: the next page uploads it, and is sent the new one.
    let changed = reference_png(&dir.path().join("refs/hero.png"), 200);
    let prompts = [&prompts[..], &[prompt("the hero in the snow")]].concat();
    pipeline(dir.path(), &fal.base(), &prompts, options);
    let third = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(third.status.success(), "{}", text(&third));
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!(ledger.upload_initiates, 2);
    assert_eq!(ledger.uploaded[1].bytes, changed);
    drop(ledger);
    let snow = body_of(&fal, "snow")["image_url"].clone();
    assert!(
        snow != json!(file_url) && snow == json!(fal.ledger.lock().unwrap().uploaded[1].file_url),
        "{snow}"
    );
}

#[tokio::test]
async fn each_kind_of_reference_reaches_the_input_the_model_reads_it_from() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    reference_png(&dir.path().join("hero.png"), 90);
    reference_png(&dir.path().join("pages/style.png"), 30);
    let style_url = "https://example.com/styles/ink.png";
    let options = format!(
        "    model: fal-ai/ideogram/character
    references: {{ character: [hero.png], style: [pages/style.png, \"{style_url}\"] }}
    allow_overrides: [seed, references]"
    );
    // A prompt of its own references (read against the pipeline's folder, as the stage's are).
    let prompts = [
        prompt("the hero waves"),
        json!({"image_prompt": "the hero sleeps", "references": {"character": ["pages/style.png"]}}),
    ];
    let file = pipeline(dir.path(), &fal.base(), &prompts, &options);
    let out = dir.path().join("out");
    let done = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(done.status.success(), "{}", text(&done));
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!(ledger.uploaded.len(), 2, "two files, each once");
    let url = |n: usize| json!(ledger.uploaded[n].file_url);
    let (hero, style) = if ledger.uploaded[0].bytes == std::fs::read(dir.path().join("hero.png")).unwrap() {
        (url(0), url(1))
    } else {
        (url(1), url(0))
    };
    drop(ledger);
    let waves = body_of(&fal, "waves");
    assert_eq!(waves["reference_image_urls"], json!([hero]), "{waves}");
    assert_eq!(waves["image_urls"], json!([style, style_url]), "{waves}");
    let sleeps = body_of(&fal, "sleeps");
    assert_eq!(sleeps["reference_image_urls"], json!([style]), "{sleeps}");
    assert!(sleeps.get("image_urls").is_none(), "the prompt's references replace the stage's: {sleeps}");
    let metadata: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metadata/01.json")).unwrap()).unwrap();
    assert_eq!(metadata["references"].as_array().map(Vec::len), Some(3), "{metadata}");
}

#[tokio::test]
async fn a_model_without_image_inputs_refuses_references_before_anything_is_paid() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    reference_png(&dir.path().join("hero.png"), 90);
    let cases = [
        (
            "    model: fal-ai/flux/dev\n    references: [hero.png]",
            "pipeline.yaml:13:5",
            "fal-ai/flux/dev takes no reference images",
        ),
        (
            "    model: fal-ai/flux-pro/kontext\n    references: { style: [hero.png] }",
            "pipeline.yaml:13:19",
            "fal-ai/flux-pro/kontext takes no style references",
        ),
        (
            "    model: fal-ai/flux-pro/kontext\n    references: [hero.png, hero.png]",
            "pipeline.yaml:13:5",
            "takes at most 1 image(s) in image_url",
        ),
        (
            "    model: fal-ai/flux/dev\n    loras: [{ path: \"https://x/y.safetensors\" }]",
            "pipeline.yaml:13:5",
            "fal-ai/flux/dev takes no LoRAs",
        ),
        (
            "    model: fal-ai/flux-lora\n    loras: [{ path: lora.ckpt }]",
            "pipeline.yaml:13:",
            "is neither an http(s) URL nor a .safetensors file",
        ),
    ];
    for (options, at, said) in cases {
        let file = pipeline(dir.path(), &fal.base(), &[prompt("the hero")], options);
        let out = dir.path().join("out");
        let refused = run(&fal, models.path(), &file, &out, &[]).await;
        let message = text(&refused);
        assert_eq!(refused.status.code(), Some(2), "{message}");
        assert!(message.contains(at) && message.contains(said), "{options}: {message}");
    }
    // Per prompt: that page fails before its request; the others are made.
    let options = "    model: fal-ai/flux/dev\n    allow_overrides: [seed, references]";
    let prompts = [json!({"image_prompt": "the hero", "references": ["hero.png"]}), prompt("a tree")];
    let file = pipeline(dir.path(), &fal.base(), &prompts, options);
    let out = dir.path().join("per-prompt");
    let ran = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(!ran.status.success(), "{}", text(&ran));
    let mut failures = Vec::new();
    Journal::each_item(&out, Some("failed"), |item| {
        failures.push(item.error.unwrap_or_default());
        Ok(())
    })
    .unwrap();
    assert!(failures.len() == 1 && failures[0].contains("takes no reference images"), "{failures:?}");
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!((ledger.accepted("the hero"), ledger.accepted("a tree"), ledger.upload_initiates), (0, 1, 0));
}

/// Money the journal in `out` counts as spent, rounded to a millionth.
fn spent(out: &Path) -> f64 {
    (Journal::status(out).unwrap().spent_usd * 1e6).round() / 1e6
}

#[tokio::test]
async fn loras_are_sent_to_the_lora_endpoint_and_priced_as_it_bills() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    reference_png(&dir.path().join("sketch.png"), 60);
    let runs = [
        // Two 1 MP pages at $0.035 per megapixel.
        (
            format!(
                "    model: fal-ai/flux-lora\n    image_size: portrait_4_3\n    loras: [{{ path: \"{LORA}\", scale: 0.8 }}]"
            ),
            0.07,
        ),
        // Image to image with a LoRA: the page takes the sketch's size, priced as 1 MP each.
        (
            format!(
                "    model: fal-ai/flux-lora/image-to-image\n    references: [sketch.png]\n    extra: {{ strength: 0.7 }}\n    loras: [{{ path: \"{LORA}\" }}]"
            ),
            0.07,
        ),
    ];
    for (i, (options, expected)) in runs.iter().enumerate() {
        let prompts = [prompt(&format!("a fox {i}")), prompt(&format!("an owl {i}"))];
        let file = pipeline(dir.path(), &fal.base(), &prompts, options);
        let out = dir.path().join(format!("out{i}"));
        let plan = run(&fal, models.path(), &file, &out, &["--dry-run"]).await;
        let said = text(&plan);
        assert!(plan.status.success() && said.contains(&format!("estimated cost: ${expected:.3}")), "{said}");
        let billed_before = fal.ledger.lock().unwrap().billed_usd();
        let done = run(&fal, models.path(), &file, &out, &[]).await;
        assert!(done.status.success(), "{}", text(&done));
        let billed = fal.ledger.lock().unwrap().billed_usd() - billed_before;
        assert!(
            (billed - expected).abs() < 1e-9 && (spent(&out) - expected).abs() < 1e-9,
            "{options}: billed {billed}"
        );
        let body = body_of(&fal, &format!("a fox {i}"));
        let scale = if i == 0 { 0.8 } else { 1.0 };
        assert_eq!(body["loras"], json!([{"path": LORA, "scale": scale}]), "{body}");
        let journal = rusqlite::Connection::open(out.join("journal.sqlite")).unwrap();
        let request: String =
            journal.query_row("SELECT request FROM submissions LIMIT 1", [], |r| r.get(0)).unwrap();
        let request: Value = serde_json::from_str(&request).unwrap();
        assert_eq!(request["price"]["unit_usd"], json!(0.035), "{request}");
    }
    let image_to_image = body_of(&fal, "an owl 1");
    assert_eq!(image_to_image["strength"], json!(0.7));
    assert!(
        image_to_image["image_url"].as_str().is_some_and(|url| url.contains("/files/upload-")),
        "{image_to_image}"
    );
}

#[tokio::test]
async fn a_replaced_reference_remakes_the_pages_that_send_it_and_an_unchanged_one_pays_nothing() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let hero = dir.path().join("refs/hero.png");
    let villain = dir.path().join("refs/villain.png");
    reference_png(&hero, 90);
    reference_png(&villain, 20);
    let options = "    model: fal-ai/flux-pro/kontext\n    references: [refs/hero.png]\n    allow_overrides: [seed, references]";
    let prompts = [
        prompt("the hero at the beach"),
        prompt("the hero at home"),
        json!({"image_prompt": "the villain laughs", "references": ["refs/villain.png"]}),
    ];
    let file = pipeline(dir.path(), &fal.base(), &prompts, options);
    let out = dir.path().join("out");
    let paid = |fal: &FalEmulator| {
        let ledger = fal.ledger.lock().unwrap();
        ["beach", "home", "villain"].map(|page| ledger.accepted(page))
    };
    let run_ok = async |expected: [u32; 3], why: &str| {
        let done = run(&fal, models.path(), &file, &out, &[]).await;
        assert!(done.status.success(), "{why}: {}", text(&done));
        assert_eq!(paid(&fal), expected, "{why}");
    };
    run_ok([1, 1, 1], "the first run").await;
    run_ok([1, 1, 1], "nothing changed").await;
    // Same path, new content: the two pages that send it are made again, the other is not.
    reference_png(&hero, 200);
    run_ok([2, 2, 1], "the stage's reference replaced").await;
    reference_png(&villain, 240);
    run_ok([2, 2, 2], "the prompt's reference replaced").await;
    // Back to a content already paid for: those pages come from the raw cache.
    reference_png(&hero, 90);
    run_ok([2, 2, 2], "the stage's reference put back").await;
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!(ledger.uploaded.len(), 4, "each content once: the hero twice, the villain twice");
    assert_eq!(
        ledger.bodies[&ledger.requests_of("beach")[1]]["image_url"],
        json!(ledger.uploaded[2].file_url)
    );
}

/// Storage uploads and paid requests so far.
fn uploads_and_paid(fal: &FalEmulator) -> (u32, u32) {
    let uploads = fal.ledger.lock().unwrap().upload_initiates;
    (uploads, fal.total_submissions())
}

/// A small safetensors file: its header (a JSON object) and one tensor's bytes.
fn lora_file(path: &Path, tag: u8) -> Vec<u8> {
    let header = br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[tag; 4]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[tokio::test]
async fn a_local_lora_is_uploaded_once_per_batch_journaled_and_sent_as_its_storage_url() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let weights = lora_file(&dir.path().join("loras/ink.safetensors"), 1);
    let options = format!(
        "    model: fal-ai/flux-lora\n    image_size: portrait_4_3\n    loras: [{{ path: loras/ink.safetensors, scale: 0.6 }}, {{ path: \"{LORA}\" }}]"
    );
    let prompts = [prompt("a fox"), prompt("an owl"), prompt("a bear")];
    let file = pipeline(dir.path(), &fal.base(), &prompts[..2], &options);
    let out = dir.path().join("out");
    let plan = run(&fal, models.path(), &file, &out, &["--dry-run"]).await;
    assert!(text(&plan).contains("estimated cost: $0.070"), "priced as the endpoint bills: {}", text(&plan));
    let done = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(done.status.success(), "{}", text(&done));
    let file_url = {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!((ledger.upload_initiates, ledger.uploaded.len()), (1, 1), "two pages, one upload");
        let uploaded = &ledger.uploaded[0];
        assert_eq!(uploaded.bytes, weights);
        assert_eq!(uploaded.authorization, None, "the key went to the storage host");
        uploaded.file_url.clone()
    };
    let sent = json!([{"path": file_url, "scale": 0.6}, {"path": LORA, "scale": 1.0}]);
    for page in ["a fox", "an owl"] {
        assert_eq!(body_of(&fal, page)["loras"], sent, "{page}");
    }
    // A new page in a later batch sends the journaled upload; the pages made pay nothing.
    pipeline(dir.path(), &fal.base(), &prompts, &options);
    let more = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(more.status.success(), "{}", text(&more));
    assert_eq!(body_of(&fal, "a bear")["loras"], sent);
    assert_eq!(uploads_and_paid(&fal), (1, 3));
    // New weights in the same file: uploaded again, and every page that sends them made again.
    lora_file(&dir.path().join("loras/ink.safetensors"), 2);
    let retrained = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(retrained.status.success(), "{}", text(&retrained));
    assert_eq!(uploads_and_paid(&fal), (2, 6));
    // A file that is not safetensors fails its pages before anything is uploaded or paid.
    std::fs::write(dir.path().join("loras/ink.safetensors"), "not weights").unwrap();
    let broken = run(&fal, models.path(), &file, &out, &[]).await;
    assert!(text(&broken).contains("are not safetensors"), "{}", text(&broken));
    assert_eq!(uploads_and_paid(&fal), (2, 6));
}
