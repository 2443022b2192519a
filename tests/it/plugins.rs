//! Stage plugins loaded from real dynamic libraries: the example `page-border` plugin and the
//! deliberately broken ones under `plugins/tests/`, built by the test itself so a bare
//! `cargo test` works on a fresh clone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use inkflow::engine::item::{Item, Prompt};
use inkflow::engine::media::{Media, Payload, Pixels, Raster};
use inkflow::engine::stage::{BuildContext, Component, CpuStage, Kind, StageError};
use inkflow::stages::plugin::{Plugin, kinds_from_dir, kinds_from_file};
use serde_json::{Value, json};

use crate::common::pipeline_text::pattern_pipeline;

const PLUGIN_PACKAGES: &[&str] = &[
    "inkflow-page-border",
    "inkflow-test-misbehaving",
    "inkflow-test-abi-major",
    "inkflow-test-abi-minor",
    "inkflow-test-no-descriptor",
];

/// Builds the plugin crates with the profile and target directory of this test binary
/// (`<target>/<profile>/deps/plugins-*`) and returns the directory holding the libraries.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("no profile directory in {}", exe.display()),
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--profile", &profile, "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        for package in PLUGIN_PACKAGES {
            cargo.args(["-p", package]);
        }
        let status = cargo.status().expect("run cargo build for the plugin crates");
        assert!(status.success(), "building the plugin crates failed");
        profile_dir.to_owned()
    })
}

/// The built library of a plugin package, e.g. `inkflow_page_border`.
fn library(crate_name: &str) -> PathBuf {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    library_dir().join(format!("{DLL_PREFIX}{crate_name}{DLL_SUFFIX}"))
}

fn ctx(id: &str) -> BuildContext {
    BuildContext {
        id: id.into(),
        inputs: vec!["print".into()],
        output_dir: std::env::temp_dir(),
        pipeline_file: "pipelines/plugins.yaml".into(),
        dry_run: false,
        room_below: 4,
    }
}

fn cpu(kind: &dyn Kind, options: Value, id: &str) -> anyhow::Result<Arc<dyn CpuStage>> {
    match kind.build(&options, &ctx(id))? {
        Component::Cpu(stage) => Ok(stage),
        _ => panic!("a plugin stage must build as a CPU stage"),
    }
}

fn build_error(kind: &dyn Kind, options: Value) -> String {
    match cpu(kind, options, "custom") {
        Ok(_) => panic!("the build should have failed"),
        Err(e) => format!("{e:#}"),
    }
}

fn item(number: u32) -> Item {
    Item::new(u64::from(number), Prompt { section: "plugins".into(), number, ..Prompt::default() })
}

fn gray_page(width: u32, height: u32, level: u8) -> Payload {
    let pixels = Pixels::Gray(vec![level; (width * height) as usize]);
    Payload::Image(Arc::new(Raster::new(width, height, Some(300.0), pixels)))
}

fn raster(payload: Payload) -> Arc<Raster> {
    match payload {
        Payload::Image(raster) => raster,
        other => panic!("expected an image, got {}", other.media()),
    }
}

fn failure(result: Result<Payload, StageError>) -> String {
    match result {
        Err(StageError::Failed { message, .. }) => message,
        Err(other) => panic!("expected an item failure, got {other:?}"),
        Ok(payload) => panic!("expected an item failure, got a {}", payload.media()),
    }
}

#[test]
fn the_border_plugin_frames_a_gray_page_through_kind_plugin() {
    let path = library("inkflow_page_border");
    let options = json!({ "path": path, "options": { "width_px": 3, "margin_px": 10 } });
    Plugin.check(&options).expect("valid options");
    let stage = cpu(&Plugin, options, "border").expect("build");

    let out = raster(stage.process(&mut item(1), gray_page(100, 120, 200)).expect("process"));
    assert_eq!((out.width, out.height, out.dpi), (100, 120, Some(300.0)));
    let Pixels::Gray(pixels) = &out.pixels else { panic!("gray in, gray out") };
    let at = |x: u32, y: u32| pixels[(y * 100 + x) as usize];
    // The frame: 3 px lines whose outer edge is 10 px in from each side.
    for (x, y) in [(10, 10), (12, 60), (50, 10), (50, 12), (89, 60), (87, 60), (50, 109), (50, 107)] {
        assert_eq!(at(x, y), 0, "({x}, {y}) is on the frame");
    }
    // Outside the frame and inside it the page is untouched.
    for (x, y) in [(0, 0), (9, 60), (50, 9), (90, 60), (50, 110), (13, 60), (50, 13), (86, 60), (50, 60)] {
        assert_eq!(at(x, y), 200, "({x}, {y}) is off the frame");
    }
    // Nothing else is painted: the frame is the 80x100 box minus its 74x94 inside.
    assert_eq!(pixels.iter().filter(|&&p| p == 0).count(), 80 * 100 - 74 * 94);
}

#[test]
fn a_plugins_directory_gives_each_stage_its_own_kind_for_bilevel_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(library("inkflow_page_border").file_name().expect("file name"));
    std::fs::copy(library("inkflow_page_border"), &file).expect("copy the plugin");
    std::fs::write(dir.path().join("README.txt"), "not a plugin, ignored").expect("write");

    let kinds = kinds_from_dir(dir.path()).expect("load the plugins directory");
    assert_eq!(kinds.len(), 1);
    let kind = &kinds[0];
    let info = kind.info();
    assert_eq!(info.name, "page-border");
    assert_eq!(info.accepts, vec![Media::Gray, Media::Bilevel]);
    let options: Vec<(&str, Option<&str>)> =
        info.options.iter().map(|o| (o.name.as_str(), o.default.as_deref())).collect();
    assert_eq!(options, vec![("width_px", Some("12")), ("margin_px", Some("75")), ("max_panics", Some("3"))]);

    // `validate` catches typos and wrong types from the description alone.
    let typo = kind.check(&json!({ "widht_px": 2 })).expect_err("unknown option");
    assert_eq!(typo.path, vec!["widht_px"]);
    assert!(typo.message.contains("it takes: width_px, margin_px"), "{}", typo.message);
    let wrong_type = kind.check(&json!({ "width_px": "wide" })).expect_err("not an integer");
    assert_eq!(wrong_type.path, vec!["width_px"]);
    assert_eq!(wrong_type.message, "expected integer, got \"wide\"");

    // A 16x6 white bilevel page, 2 bytes a row; a 1 px frame 1 px in from the edges.
    let stage = cpu(kind.as_ref(), json!({ "width_px": 1, "margin_px": 1 }), "border").expect("build");
    let page = Raster::new(16, 6, None, Pixels::Bilevel(vec![0xFF; 12]));
    let out = raster(stage.process(&mut item(2), Payload::Image(Arc::new(page))).expect("process"));
    let Pixels::Bilevel(bits) = &out.pixels else { panic!("bilevel in, bilevel out") };
    #[rustfmt::skip]
    let expected = [
        0xFF, 0xFF,
        0b1000_0000, 0b0000_0001,
        0b1011_1111, 0b1111_1101,
        0b1011_1111, 0b1111_1101,
        0b1000_0000, 0b0000_0001,
        0xFF, 0xFF,
    ];
    assert_eq!(bits.as_slice(), &expected);

    let rgb = Raster::new(1, 1, None, Pixels::Rgb(vec![0; 3]));
    let refused = failure(stage.process(&mut item(3), Payload::Image(Arc::new(rgb))));
    assert!(refused.contains("does not take a rgb image"), "{refused}");
}

#[test]
fn a_newer_major_abi_is_refused_before_any_plugin_function_runs() {
    // The plugin's stage functions abort the process, so reaching this assertion proves the
    // host read nothing past the version.
    let path = library("inkflow_test_abi_major");
    let error = format!("{:#}", kinds_from_file(&path).err().expect("refused"));
    assert_eq!(
        error,
        format!(
            "plugin {}: ABI 2.0 is not supported by this inkflow (1.x); rebuild it against inkflow-sdk 1.x",
            path.display()
        )
    );
    let through_kind = build_error(&Plugin, json!({ "path": path }));
    assert!(through_kind.contains(&format!("plugin {}", path.display())), "{through_kind}");
    assert!(through_kind.contains("ABI 2.0 is not supported"), "{through_kind}");
}

#[test]
fn a_newer_minor_abi_is_refused() {
    let error = format!("{:#}", kinds_from_file(&library("inkflow_test_abi_minor")).err().expect("refused"));
    assert!(error.contains("ABI 1.1 is newer than this inkflow supports (1.0)"), "{error}");
    assert!(error.contains("rebuild it against inkflow-sdk 1.0"), "{error}");
}

#[test]
fn a_library_without_the_descriptor_symbol_is_not_a_plugin() {
    let error =
        format!("{:#}", kinds_from_file(&library("inkflow_test_no_descriptor")).err().expect("refused"));
    assert!(
        error.contains("not an inkflow plugin: it does not export `inkflow_plugin_descriptor`"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join(format!("libfake.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(&fake, "just text\n").expect("write");
    let error = format!("{:#}", kinds_from_file(&fake).err().expect("refused"));
    assert!(error.starts_with(&format!("plugin {}: not a dynamic library", fake.display())), "{error}");
    // A directory scan reports the same file rather than skipping it.
    let scanned = format!("{:#}", kinds_from_dir(dir.path()).err().expect("refused"));
    assert!(scanned.contains("libfake"), "{scanned}");

    let missing = dir.path().join("libmissing.so");
    let error = format!("{:#}", kinds_from_file(&missing).err().expect("refused"));
    assert!(error.starts_with(&format!("plugin {}: cannot read it", missing.display())), "{error}");
}

#[test]
fn a_panic_fails_its_item_and_disables_the_stage() {
    let path = library("inkflow_test_misbehaving");
    let stage = cpu(&Plugin, json!({ "path": path, "stage": "panics-in-process" }), "boom").expect("build");

    let first = failure(stage.process(&mut item(1), gray_page(8, 4, 255)));
    assert_eq!(first, "plugin stage panics-in-process: panicked: the test plugin panicked on a 8x4 page");
    // Each panic abandons its instance; the next page gets a fresh one, until 3 in a row.
    for n in 2..=3 {
        let again = failure(stage.process(&mut item(n), gray_page(8, 4, 255)));
        assert!(again.contains("panicked on a 8x4 page"), "{again}");
    }
    let fourth = failure(stage.process(&mut item(4), gray_page(8, 4, 255)));
    assert!(fourth.contains("disabled after 3 panics in a row, the last (item plugins-00003)"), "{fourth}");

    let strict =
        cpu(&Plugin, json!({ "path": path, "stage": "panics-in-process", "max_panics": 1 }), "strict")
            .expect("build");
    failure(strict.process(&mut item(1), gray_page(8, 4, 255)));
    let second = failure(strict.process(&mut item(2), gray_page(8, 4, 255)));
    assert!(second.contains("disabled after 1 panics in a row"), "{second}");

    let create = build_error(&Plugin, json!({ "path": path, "stage": "panics-in-create" }));
    assert!(create.contains("refused its options: panicked: the test plugin panicked in create"), "{create}");
}

#[test]
fn an_output_in_another_format_fails_the_item() {
    let path = library("inkflow_test_misbehaving");
    let stage = cpu(&Plugin, json!({ "path": path, "stage": "changes-format" }), "odd").expect("build");
    let error = failure(stage.process(&mut item(1), gray_page(2, 2, 0)));
    assert_eq!(error, "plugin stage changes-format: returned a rgb image for a gray input");
}

#[test]
fn bad_plugin_options_fail_the_build_naming_the_option() {
    let path = library("inkflow_page_border");
    // Accepted by the description (an integer) but refused by the plugin's own create.
    let zero = build_error(&Plugin, json!({ "path": path, "options": { "width_px": 0 } }));
    assert!(zero.contains("refused its options: width_px must be at least 1"), "{zero}");
    // Refused by the description before the plugin is asked.
    let typo = build_error(&Plugin, json!({ "path": path, "options": { "margin": 5 } }));
    assert!(typo.contains("option options.margin: unknown option `margin`"), "{typo}");
    // `check` reads the library's descriptor, so validate finds these too.
    let shape = Plugin.check(&json!({ "path": path, "options": 5 })).expect_err("not a map");
    assert_eq!(shape.path, vec!["options"]);
    let several = build_error(&Plugin, json!({ "path": library("inkflow_test_misbehaving") }));
    assert!(
        several.contains(
            "several stages (panics-in-process, panics-in-create, changes-format, panics-on-one-page)"
        ),
        "{several}"
    );
}

/// Runs a pipeline (with the page-border plugin's kinds registered) through the engine.
async fn run_pipeline(dir: &Path, stages_and_sinks: &str) -> inkflow::engine::summary::Summary {
    // Page 2 asks the test plugin that panics on one page to do so.
    let prompts: Vec<Value> = (1..=4)
        .map(|n| {
            let prompt = if n == 2 { "mandala, panic here".to_owned() } else { format!("mandala {n}") };
            json!({"section": "s", "image_number": n, "image_prompt": prompt, "description": format!("p{n}")})
        })
        .collect();
    std::fs::write(dir.join("prompts.json"), json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("p.yaml");
    let text =
        pattern_pipeline(&dir.join("prompts.json"), "size: { width: 120, height: 160 }", stages_and_sinks);
    std::fs::write(&file, text).unwrap();
    let mut registry = inkflow::stages::builtin();
    for kind in kinds_from_file(&library("inkflow_page_border")).unwrap() {
        registry.register(kind);
    }
    let options = inkflow::engine::pipeline::LoadOptions::default();
    let pipeline = inkflow::engine::pipeline::load(&file, &options, &registry).unwrap();
    let batch = inkflow::engine::runtime::build(pipeline, &registry, dir, false).unwrap();
    batch.run(inkflow::engine::runtime::RunSettings::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_kind_runs_in_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_pipeline(
        dir.path(),
        "  framed: { kind: page-border, inputs: [gray], width_px: 3, margin_px: 2 }\nsinks:\n  pages: { kind: disk, inputs: [framed], filename: \"{number}.png\" }\n",
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed), (4, 0), "{summary:?}");
    let page = image::open(dir.path().join("1.png")).unwrap().into_luma8();
    assert_eq!((page.get_pixel(2, 50).0[0], page.get_pixel(4, 50).0[0]), (0, 0), "the frame is drawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_fails_its_items_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let misbehaving = library("inkflow_test_misbehaving");
    let summary = run_pipeline(
        dir.path(),
        &format!(
            "  broken: {{ kind: plugin, inputs: [gray], path: {}, stage: panics-in-process }}\nsinks:\n  plain: {{ kind: disk, inputs: [gray], dir: plain, filename: \"{{number}}.png\" }}\n  framed: {{ kind: disk, inputs: [broken], dir: framed, filename: \"{{number}}.png\" }}\n",
            misbehaving.display()
        ),
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed), (0, 4), "{summary:?}");
    assert!(summary.failures.iter().all(|f| f.stage == "broken"), "{:?}", summary.failures);
    assert!(
        summary.failures.iter().any(|f| f.error.contains("the test plugin panicked on a 120x160 page")),
        "{:?}",
        summary.failures
    );
    // The other branch of the batch wrote every page.
    for n in 1..=4 {
        assert!(dir.path().join("plain").join(format!("{n}.png")).is_file());
        assert!(!dir.path().join("framed").join(format!("{n}.png")).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_panics_on_one_page_of_many_fails_that_page_only() {
    let dir = tempfile::tempdir().unwrap();
    let misbehaving = library("inkflow_test_misbehaving");
    let summary = run_pipeline(
        dir.path(),
        &format!(
            "  framed: {{ kind: plugin, inputs: [gray], path: {}, stage: panics-on-one-page }}\nsinks:\n  pages: {{ kind: disk, inputs: [framed], filename: \"{{number}}.png\" }}\n",
            misbehaving.display()
        ),
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed), (3, 1), "{summary:?}");
    assert!(
        summary.failures[0].error.contains("panicked on the page that asked for it"),
        "{:?}",
        summary.failures
    );
    for n in [1, 3, 4] {
        assert!(dir.path().join(format!("{n}.png")).is_file(), "page {n} is written");
    }
}

#[test]
fn a_plugin_path_that_is_not_a_regular_file_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let error = format!("{:#}", kinds_from_file(dir.path()).err().expect("a folder is refused"));
    assert!(error.contains("not a regular file"), "{error}");
    // validate reads the library: a file that is not a plugin fails there, at its path.
    let not_a_library = dir.path().join("notes.so");
    std::fs::write(&not_a_library, "just text").unwrap();
    let refused = Plugin.check(&json!({ "path": not_a_library })).expect_err("refused");
    assert_eq!(refused.path, vec!["path"]);
    assert!(refused.to_string().contains("not a dynamic library"), "{refused}");
}
