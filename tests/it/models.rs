//! Any fal model by config (issue 31), through the `inkflow` binary against the fal emulator,
//! whose models follow inkflow's catalogue: `inkflow models`, the schema check before paying,
//! one page shape for every model, the price fal bills, and images per request.

use std::path::{Path, PathBuf};
use std::process::Output;

use inkflow::engine::journal::Journal;
use serde_json::{Value, json};
use tokio::process::Command;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::fal_emulator::{FalEmulator, Latency};

const KEY: &str = "test-key-not-a-secret";

/// `inkflow ARGS` with the key, an empty user catalogue in `models` and `env` on top.
pub(crate) async fn inkflow(models: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inkflow"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FAL_KEY", KEY)
        .env_remove("FAL_API_KEY")
        .env_remove("FAL_PLATFORM_BASE_URL")
        .env("INKFLOW_MODELS_DIR", models)
        .args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().await.unwrap()
}

pub(crate) fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A pipeline in `dir` generating `prompts` with the fal options `fal` through the emulator,
/// then writing the pages; `allow` lets the prompts override those inputs.
pub(crate) fn pipeline(dir: &Path, base: &str, prompts: &[Value], fal: &str) -> PathBuf {
    let prompts: Vec<Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, extra)| {
            let mut prompt =
                json!({"section": "s", "image_number": i + 1, "description": format!("p{}", i + 1)});
            prompt.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            prompt
        })
        .collect();
    let prompts_file = dir.join("prompts.json");
    std::fs::write(&prompts_file, json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {} }}
stages:
  generate:
    kind: fal
    inputs: [prompts]
    base_url: \"{base}\"
    poll_interval_ms: 20
    base_delay_ms: 10
    deadline: 5s
{fal}
sinks:
  pages: {{ kind: disk, inputs: [generate], filename: \"{{number:02}}.png\" }}
",
            prompts_file.display()
        ),
    )
    .unwrap();
    file
}

pub(crate) fn prompt(text: &str) -> Value {
    json!({"image_prompt": text})
}

/// The coloring book's fal options as shipped (FLUX.1 [dev], portrait 3:4, 28 steps).
const SHIPPED: &str = "    model: fal-ai/flux/dev
    image_size: portrait_4_3
    num_inference_steps: 28
    guidance_scale: 3.5
    output_format: png";

#[tokio::test]
async fn models_lists_the_catalogue_and_describes_one_model() {
    let models = tempfile::tempdir().unwrap();
    let listed = inkflow(models.path(), &["models"], &[]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    for id in [
        "fal-ai/flux/schnell",
        "fal-ai/flux-pro/v1.1-ultra",
        "fal-ai/recraft/v3/text-to-image",
        "fal-ai/nano-banana",
    ] {
        assert!(text(&listed).contains(id), "{id} missing from:\n{}", text(&listed));
    }
    let schnell = inkflow(models.path(), &["models", "fal-ai/flux/schnell"], &[]).await;
    let page = text(&schnell);
    assert!(schnell.status.success(), "{page}");
    assert!(page.contains("$0.003 per megapixel"), "{page}");
    assert!(
        page.contains("num_inference_steps") && page.contains("1..12") && page.contains("default 4"),
        "{page}"
    );
    let recraft = text(&inkflow(models.path(), &["models", "fal-ai/recraft/v3/text-to-image"], &[]).await);
    assert!(recraft.contains("x2 when style is vector_illustration") && recraft.contains("svg"), "{recraft}");
    assert!(recraft.contains("no (a re-roll is a new request)"), "{recraft}");
    let unknown = inkflow(models.path(), &["models", "someone/new-model"], &[]).await;
    assert!(!unknown.status.success() && text(&unknown).contains("--refresh"), "{}", text(&unknown));
}

#[tokio::test]
async fn refresh_adds_an_unlisted_model_from_fals_schema_and_price() {
    let fal = FalEmulator::start(Latency::default()).await;
    let openapi = json!({
        "info": {"title": "queue.fal.run"},
        "paths": {"/someone/new-model": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Input"}}}}}}},
        "components": {"schemas": {"Input": {"properties": {
            "prompt": {"type": "string"},
            "aspect_ratio": {"type": "string", "enum": ["1:1", "3:4", "4:3"], "default": "1:1"},
            "num_images": {"type": "integer", "minimum": 1, "maximum": 2, "default": 1}
        }}}}
    });
    Mock::given(method("GET"))
        .and(path("/api/openapi/queue/openapi.json"))
        .and(query_param("endpoint_id", "someone/new-model"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openapi))
        .mount(&fal.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models/pricing"))
        .and(query_param("endpoint_id", "someone/new-model"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"prices": [
            {"endpoint_id": "someone/new-model", "unit_price": 0.07, "unit": "images", "currency": "USD"}]})))
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let models = tempfile::tempdir().unwrap();
    let apis = [("FAL_API_BASE_URL", fal.base()), ("FAL_PLATFORM_BASE_URL", fal.base())];
    let apis: Vec<(&str, &str)> = apis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let keyless = Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .env_remove("FAL_KEY")
        .env_remove("FAL_API_KEY")
        .env("INKFLOW_MODELS_DIR", models.path())
        .args(["models", "someone/new-model", "--refresh"])
        .output()
        .await
        .unwrap();
    assert!(!keyless.status.success() && text(&keyless).contains("FAL_KEY"), "{}", text(&keyless));
    let refreshed = inkflow(models.path(), &["models", "someone/new-model", "--refresh"], &apis).await;
    assert!(refreshed.status.success(), "{}", text(&refreshed));
    assert!(models.path().join("someone__new-model.json").is_file());
    let page = text(&inkflow(models.path(), &["models", "someone/new-model"], &[]).await);
    assert!(
        page.contains("$0.07 per image") && page.contains("aspect_ratio (\"1:1\", \"3:4\", \"4:3\")"),
        "{page}"
    );
    assert!(page.contains("images/request:    2"), "{page}");
    assert!(!page.contains(KEY));
}

#[tokio::test]
async fn an_input_over_the_models_limit_is_refused_before_anything_is_paid() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox"), prompt("an owl")], SHIPPED);
    let file_arg = file.to_str().unwrap();
    let swap = ["--set", "stages.generate.model=fal-ai/flux/schnell"];
    let validate = inkflow(models.path(), &[&["validate", file_arg][..], &swap].concat(), &[]).await;
    let said = text(&validate);
    assert_eq!(validate.status.code(), Some(2), "{said}");
    assert!(said.contains("num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12"), "{said}");
    assert!(said.contains("pipeline.yaml:14:"), "the line of num_inference_steps: {said}");
    let out = dir.path().join("out");
    for dry_run in [true, false] {
        let mut args = vec!["run", file_arg, "--output", out.to_str().unwrap()];
        args.extend(swap);
        if dry_run {
            args.push("--dry-run");
        }
        let run = inkflow(models.path(), &args, &[]).await;
        assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    }
    assert_eq!(fal.total_submissions(), 0, "nothing reached fal");
    // With the model's own steps, schnell runs, and the README's command works.
    let own_steps = ["--set", "stages.generate.num_inference_steps=4"];
    let run = inkflow(
        models.path(),
        &[&["run", file_arg, "--output", out.to_str().unwrap()][..], &swap, &own_steps].concat(),
        &[],
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(fal.total_submissions(), 2);
}

#[tokio::test]
async fn extra_and_prompt_overrides_are_checked_the_same_way() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let recraft = "    model: fal-ai/recraft/v3/text-to-image\n    extra: { style: vector_illustration, num_images: 2, colors: blue }";
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox")], recraft);
    let validate = inkflow(models.path(), &["validate", file.to_str().unwrap()], &[]).await;
    let said = text(&validate);
    assert_eq!(validate.status.code(), Some(2), "{said}");
    assert!(said.contains("extra.colors") && said.contains("colors \"blue\" is not a list"), "{said}");
    // Steps set in a prompt file, where the pipeline lets prompts set them: that item fails
    // before submitting, the other is generated.
    let fal_options = "    model: fal-ai/flux/schnell\n    allow_overrides: [seed, num_inference_steps]";
    let prompts =
        [json!({"image_prompt": "too many steps", "num_inference_steps": 28}), prompt("a calm lake")];
    let file = pipeline(dir.path(), &fal.base(), &prompts, fal_options);
    let out = dir.path().join("out");
    let run =
        inkflow(models.path(), &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
            .await;
    assert!(!run.status.success(), "{}", text(&run));
    let mut failures = Vec::new();
    Journal::each_item(&out, Some("failed"), |item| {
        failures.push(item.error.unwrap_or_default());
        Ok(())
    })
    .unwrap();
    let failure = failures.join("\n");
    assert!(failure.contains("num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12"), "{failure}");
    let refused = fal.ledger.lock().unwrap().accepted("too many steps");
    assert_eq!((refused, fal.total_submissions()), (0, 1));
}

#[tokio::test]
async fn inputs_a_model_does_not_take_are_not_sent_and_validate_says_so() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox")], SHIPPED);
    let file_arg = file.to_str().unwrap();
    let swap = ["--set", "stages.generate.model=fal-ai/flux-pro/v1.1-ultra"];
    let validate = inkflow(models.path(), &[&["validate", file_arg][..], &swap].concat(), &[]).await;
    let said = text(&validate);
    assert!(validate.status.success(), "{said}");
    assert!(
        said.contains("pipeline.yaml:14:") && said.contains("warning: option num_inference_steps: fal-ai/flux-pro/v1.1-ultra takes no input num_inference_steps: it is not sent"),
        "{said}"
    );
    assert!(said.contains("takes no input guidance_scale"), "{said}");
    let out = dir.path().join("out");
    let run = inkflow(
        models.path(),
        &[&["run", file_arg, "--output", out.to_str().unwrap()][..], &swap].concat(),
        &[],
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    let ledger = fal.ledger.lock().unwrap();
    let body = ledger.bodies.values().next().unwrap().clone();
    assert_eq!(body["aspect_ratio"], json!("3:4"), "{body}");
    for unsent in ["num_inference_steps", "guidance_scale", "image_size"] {
        assert!(body.get(unsent).is_none(), "{unsent} was sent: {body}");
    }
}

#[tokio::test]
async fn aspect_ratio_models_make_portrait_pages_and_record_the_size_fal_returned() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    for model in ["fal-ai/flux-pro/v1.1-ultra", "fal-ai/imagen4/preview", "fal-ai/nano-banana"] {
        let options = format!("    model: {model}\n    image_size: {{ width: 2550, height: 3300 }}");
        let file = pipeline(dir.path(), &fal.base(), &[prompt(&format!("a page for {model}"))], &options);
        let out = dir.path().join(model.replace('/', "_"));
        let run =
            inkflow(models.path(), &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
                .await;
        assert!(run.status.success(), "{model}: {}", text(&run));
        let page = image::open(out.join("01.png")).unwrap();
        assert!(page.height() > page.width(), "{model}: a {}x{} page", page.width(), page.height());
        let metadata = std::fs::read_to_string(out.join("metadata/01.json")).unwrap_or_default();
        let returned = fal.ledger.lock().unwrap().bodies.len();
        assert!(returned > 0);
        let facts: Value = serde_json::from_str(&metadata).unwrap_or(Value::Null);
        let image = &facts.pointer("/images/0").cloned().unwrap_or(Value::Null);
        let (w, h) = (image["width"].as_u64().unwrap_or(0), image["height"].as_u64().unwrap_or(0));
        assert!(h > w && w > 0, "{model}: the metadata records fal's {w}x{h}: {metadata}");
    }
}

/// Money the journal in `out` counts as spent, rounded to a millionth.
fn spent(out: &Path) -> f64 {
    (Journal::status(out).unwrap().spent_usd * 1e6).round() / 1e6
}

#[tokio::test]
async fn the_recorded_spend_is_what_fal_bills_in_each_models_unit() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let runs = [
        "    model: fal-ai/recraft/v3/text-to-image\n    image_size: portrait_4_3\n    extra: { style: vector_illustration/line_art }",
        "    model: fal-ai/ideogram/v3\n    extra: { rendering_speed: TURBO, num_images: 3 }",
        "    model: fal-ai/flux/dev\n    image_size: { width: 1100, height: 1400 }\n    extra: { num_images: 2 }",
        "    model: fal-ai/flux-pro/v1.1-ultra\n    image_size: portrait_4_3\n    num_images: 2",
    ];
    let mut estimates = 0.0;
    for (i, options) in runs.iter().enumerate() {
        let file = pipeline(dir.path(), &fal.base(), &[prompt(&format!("page {i}"))], options);
        let out = dir.path().join(format!("out{i}"));
        let plan = inkflow(
            models.path(),
            &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap(), "--dry-run"],
            &[],
        )
        .await;
        let said = text(&plan);
        let estimate: f64 = said
            .split('$')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .unwrap_or_else(|| panic!("no estimate in {said}"));
        estimates += estimate;
        let run =
            inkflow(models.path(), &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
                .await;
        assert!(run.status.success(), "{options}: {}", text(&run));
        let billed = fal.ledger.lock().unwrap().billed_usd();
        let recorded: f64 = (0..=i).map(|j| spent(&dir.path().join(format!("out{j}")))).sum();
        assert!((recorded - billed).abs() < 1e-9, "{options}: recorded ${recorded}, fal billed ${billed}");
    }
    // Recraft vector 0.08 + Ideogram turbo 3 x 0.03 + dev 2 images x 2 MP x 0.025 + ultra 2 x 0.06.
    let expected = 0.08 + 0.09 + 0.1 + 0.12;
    assert!((fal.ledger.lock().unwrap().billed_usd() - expected).abs() < 1e-9);
    assert!((estimates - expected).abs() < 1e-6, "--dry-run estimated ${estimates}");
}

#[tokio::test]
async fn with_a_key_fals_live_price_is_used_and_journaled() {
    let fal = FalEmulator::start(Latency::default()).await;
    fal.ledger.lock().unwrap().live_prices.insert("fal-ai/flux/schnell".into(), 0.004);
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let options = "    model: fal-ai/flux/schnell\n    image_size: square_hd\n    max_cost_usd: 1";
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox"), prompt("an owl")], options);
    let out = dir.path().join("out");
    let platform = [("FAL_PLATFORM_BASE_URL", fal.base())];
    let platform: Vec<(&str, &str)> = platform.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = inkflow(
        models.path(),
        &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()],
        &platform,
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    assert!(fal.ledger.lock().unwrap().pricing_calls >= 1);
    assert_eq!(spent(&out), 0.008, "two 1 MP images at fal's live $0.004, not the catalogue's $0.003");
    assert!((fal.ledger.lock().unwrap().billed_usd() - 0.008).abs() < 1e-9);
    let journal = rusqlite::Connection::open(out.join("journal.sqlite")).unwrap();
    let request: String =
        journal.query_row("SELECT request FROM submissions LIMIT 1", [], |row| row.get(0)).unwrap();
    let request: Value = serde_json::from_str(&request).unwrap();
    assert_eq!(request["price"]["source"], json!("fal's pricing API"), "{request}");
    assert_eq!(request["price"]["unit_usd"], json!(0.004), "{request}");
}

#[tokio::test]
async fn best_of_six_on_a_four_per_request_model_makes_two_requests() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let judged = |model: &str| {
        format!(
            "    model: {model}\n    image_size: portrait_4_3
  gray: {{ kind: grayscale, inputs: [generate] }}
  quality: {{ kind: lineart-check, inputs: [gray], best_of: 6 }}"
        )
    };
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox")], &judged("fal-ai/flux/schnell"));
    let text_of = std::fs::read_to_string(&file)
        .unwrap()
        .replace("inputs: [generate], filename", "inputs: [quality], filename");
    std::fs::write(&file, text_of).unwrap();
    let out = dir.path().join("out");
    let run =
        inkflow(models.path(), &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
            .await;
    assert!(run.status.success(), "{}", text(&run));
    {
        let ledger = fal.ledger.lock().unwrap();
        let sizes: Vec<u64> = ledger.bodies.values().map(|b| b["num_images"].as_u64().unwrap_or(1)).collect();
        assert_eq!(
            (ledger.accepted("a fox"), sizes.iter().sum::<u64>()),
            (2, 6),
            "two requests of 3: {sizes:?}"
        );
    }
    // Recraft makes one image a request and takes no seed: six requests, none served from the
    // raw cache of another though their inputs are the same.
    let file =
        pipeline(dir.path(), &fal.base(), &[prompt("an owl")], &judged("fal-ai/recraft/v3/text-to-image"));
    let text_of = std::fs::read_to_string(&file)
        .unwrap()
        .replace("inputs: [generate], filename", "inputs: [quality], filename");
    std::fs::write(&file, text_of).unwrap();
    let out = dir.path().join("out2");
    let run =
        inkflow(models.path(), &["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()], &[])
            .await;
    assert!(run.status.success(), "{}", text(&run));
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!(ledger.accepted("an owl"), 6);
    assert!(ledger.requests_of("an owl").iter().all(|id| ledger.bodies[id].get("seed").is_none()));
}

/// A `max_image_bytes` below what the model can answer is raised, and `validate` says so: an
/// image already paid for is never dropped for its size.
#[tokio::test]
async fn a_cap_below_the_models_images_is_raised_and_validate_says_so() {
    let fal = FalEmulator::start(Latency::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &fal.base(), &[prompt("a fox")], SHIPPED);
    let file_arg = file.to_str().unwrap();
    let validate = |cap: &'static str| {
        let set = format!("stages.generate.max_image_bytes={cap}");
        let file_arg = file_arg.to_owned();
        let models = models.path().to_owned();
        async move { inkflow(&models, &["validate", &file_arg, "--set", &set], &[]).await }
    };
    let low = validate("1000").await;
    let said = text(&low);
    assert!(low.status.success(), "{said}");
    assert!(said.contains("warning: option max_image_bytes: max_image_bytes 1000 is raised to"), "{said}");
    let ample = validate("900000000").await;
    assert!(!text(&ample).contains("max_image_bytes"), "{}", text(&ample));
}
