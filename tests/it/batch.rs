//! One batch, one owner (issue 16): the real binary on one output folder at a time, paths that
//! stay inside it, no page lost to a name clash, failures that stay listed, resume by content.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::binary::{inkflow, inkflow_with_test_key, run, text};
use crate::common::fal_emulator::{FalEmulator, Latency};
use crate::common::pipeline_text::pattern_pipeline;

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Writes `{"prompts": [...]}` with one prompt per (section, number, description).
fn prompts(path: &Path, entries: &[(&str, u32, &str)]) -> PathBuf {
    let prompts: Vec<Value> = entries
        .iter()
        .map(|(section, number, description)| {
            json!({ "section": section, "image_number": number, "description": description,
                    "image_prompt": format!("a mandala with petals for {description}") })
        })
        .collect();
    std::fs::write(path, json!({ "prompts": prompts }).to_string()).unwrap();
    path.to_owned()
}

/// A small offline pipeline: pattern pages, thumbnails, disk and a book.
fn small_pipeline(dir: &Path, prompts: &Path, filename: &str) -> PathBuf {
    let file = dir.join("small.yaml");
    let rest = format!(
        "  lineart: {{ kind: threshold, inputs: [gray] }}
  thumb: {{ kind: thumbnail, inputs: [lineart], width: 16, height: 20 }}
sinks:
  pages: {{ kind: disk, inputs: [lineart, thumb], filename: \"{filename}\" }}
  book: {{ kind: pdf, inputs: [lineart], path: book.pdf }}
"
    );
    std::fs::write(&file, pattern_pipeline(prompts, "size: { width: 64, height: 80 }", &rest)).unwrap();
    file
}

fn run_small(pipeline: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", s(pipeline), "--output", s(out)];
    args.extend_from_slice(extra);
    run(&args)
}

fn files_named(dir: &Path, needle: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(needle))
        .collect();
    found.sort();
    found
}

#[cfg(unix)]
#[test]
fn a_second_run_on_a_busy_folder_exits_at_once_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let first = prompts(&tmp.path().join("first.json"), &[("a", 1, "first one"), ("a", 2, "first two")]);
    let pipeline = small_pipeline(tmp.path(), &first, "{section}_{number:03}_{description}.png");
    assert!(run_small(&pipeline, &out, &[]).status.success());

    // The holder lists its prompts from a FIFO nobody writes yet, so it holds the folder for as
    // long as the test needs, deterministically.
    let fifo = tmp.path().join("prompts.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut holder = inkflow()
        .args(["run", s(&pipeline), "--output", s(&out), "--prompts", s(&fifo)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join("inkflow.lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains(&format!("pid {}", holder.id())) {
        assert!(holder.try_wait().unwrap().is_none(), "the holder ended early");
        assert!(started.elapsed() < Duration::from_secs(60), "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let journal_before = std::fs::read(out.join("journal.sqlite")).unwrap();
    let log_before = std::fs::read(out.join("inkflow.log")).unwrap();

    let other =
        prompts(&tmp.path().join("other.json"), &[("a", 1, "intruder one"), ("a", 9, "intruder nine")]);
    let second = run_small(&pipeline, &out, &["--prompts", s(&other)]);
    assert_eq!(second.status.code(), Some(75), "{}", text(&second.stderr));
    let stderr = text(&second.stderr);
    let expected =
        format!("{} is in use by another inkflow run (pid {}, started ", out.display(), holder.id());
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(std::fs::read(out.join("journal.sqlite")).unwrap(), journal_before);
    assert_eq!(std::fs::read(out.join("inkflow.log")).unwrap(), log_before);
    assert!(files_named(&out, "intruder").is_empty());

    // Readers still read while the folder is held.
    let status = run(&["status", s(&out)]);
    assert!(status.status.success() && text(&status.stdout).contains("written"), "{}", text(&status.stderr));
    assert!(run(&["cache", "stats", s(&out)]).status.success());

    // Let the holder go on; once it ends, the folder is free again.
    let again = prompts(&tmp.path().join("again.json"), &[("a", 1, "first one"), ("a", 2, "first two")]);
    std::fs::write(&fifo, std::fs::read(&again).unwrap()).unwrap();
    assert!(holder.wait().unwrap().success());
    let third = run_small(&pipeline, &out, &[]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(files_named(&out, ".png").len(), 2);
}

/// `inkflow validate` on a pipeline whose sinks section is `sinks`, with `--set` overrides.
fn validate_sinks(dir: &Path, sinks: &str, overrides: &[&str]) -> Output {
    let file = dir.join("paths.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {root}/pipelines/prompts/sample_image_prompts.json }}
stages:
  draw: {{ kind: pattern, inputs: [prompts] }}
  cache: {{ kind: thumbnail, inputs: [draw] }}
sinks:
  thumbs: {{ kind: disk, inputs: [cache], dir: thumbs }}
{sinks}",
            root = env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let mut args = vec!["validate", s(&file)];
    for o in overrides {
        args.extend(["--set", o]);
    }
    run(&args)
}

#[test]
fn every_written_path_stays_inside_the_output_folder_and_off_inkflows_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("paths.yaml");
    let shown = file.display().to_string();
    // (sinks, the refused text, which the error points at, and words of the message)
    let refused = [
        ("  book: { kind: pdf, inputs: [draw], path: ../escape.pdf }\n", "../escape.pdf", "'..'"),
        ("  book: { kind: pdf, inputs: [draw], path: /tmp/escape.pdf }\n", "/tmp/escape.pdf", "relative"),
        ("  pages: { kind: disk, inputs: [draw], dir: /elsewhere }\n", "/elsewhere", "relative"),
        ("  pages: { kind: disk, inputs: [draw], dir: \"a/../../b\" }\n", "\"a/../../b\"", "'..'"),
        (
            "  book: { kind: pdf, inputs: [draw], path: journal.sqlite }\n",
            "journal.sqlite",
            "own journal.sqlite",
        ),
        ("  book: { kind: pdf, inputs: [draw], path: cache/book.pdf }\n", "cache/book.pdf", "own cache"),
        ("  book: { kind: pdf, inputs: [draw], path: inkflow.lock }\n", "inkflow.lock", "own inkflow.lock"),
        ("  book: { kind: pdf, inputs: [draw], path: report.html }\n", "report.html", "own report.html"),
        ("  pages: { kind: disk, inputs: [draw], filename: \"cache/{key}.png\" }\n", "\"cache/", "own cache"),
        ("  pages: { kind: disk, inputs: [draw, cache] }\n", "inputs", "own cache"),
        (
            "  pages: { kind: disk, inputs: [draw] }\n  book: { kind: pdf, inputs: [draw], path: batch_metadata.json }\n",
            "batch_metadata.json",
            "sink \"pages\"",
        ),
        (
            "  pages: { kind: disk, inputs: [draw] }\n  book: { kind: pdf, inputs: [draw], path: metadata/book.pdf }\n",
            "metadata/book.pdf",
            "sink \"pages\"",
        ),
        (
            "  one: { kind: pdf, inputs: [draw] }\n  two: { kind: pdf, inputs: [draw], path: ./book.pdf }\n",
            "./book.pdf",
            "sink \"one\"",
        ),
        (
            "  a: { kind: disk, inputs: [draw], dir: pages }\n  b: { kind: disk, inputs: [draw], dir: pages/ }\n",
            "pages/",
            "batch_metadata.json",
        ),
    ];
    for (sinks, needle, words) in refused {
        let (line, column) = sinks
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 9, c + 1)))
            .expect("the needle is in the sinks");
        let out = validate_sinks(tmp.path(), sinks, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "accepted:\n{sinks}{stderr}");
        let at = format!("{shown}:{line}:{column}: sink");
        assert!(
            stderr.lines().any(|l| l.starts_with(&at) && l.contains(words)),
            "{at} {words}\n{sinks}{stderr}"
        );
    }
    let fine = "  pages: { kind: disk, inputs: [draw, cache], dir: ./pages }\n  book: { kind: pdf, inputs: [draw], path: books/cache.pdf }\n  own: { kind: disk, inputs: [draw] }\n";
    let out = validate_sinks(tmp.path(), fine, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A --set value goes through the same rule.
    let book = "  book: { kind: pdf, inputs: [draw] }\n";
    for value in ["journal.sqlite", "../x.pdf", "/tmp/x.pdf", "inkflow.log"] {
        let out = validate_sinks(tmp.path(), book, &[&format!("sinks.book.path={value}")]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--set path={value} accepted: {stderr}");
        assert!(stderr.contains("sink \"book\": path:"), "{stderr}");
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

#[test]
fn a_rerun_writes_what_a_full_disk_left_missing_and_keeps_failing_while_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let list = prompts(&tmp.path().join("p.json"), &[("a", 1, "one"), ("a", 2, "two"), ("a", 3, "three")]);
    let pipeline = small_pipeline(tmp.path(), &list, "{section}_{number:03}_{description}.png");
    // A directory where page two's thumbnail goes: its write fails as on a full disk, after
    // its page was written.
    let blocker = out.join("thumb/a_002_two.jpg");
    std::fs::create_dir_all(&blocker).unwrap();
    let first = run_small(&pipeline, &out, &[]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stdout));
    assert!(out.join("a_002_two.png").is_file() && !out.join("metadata/a_002_two.json").exists());

    // Still failing: listed, and the exit code says so.
    let second = run_small(&pipeline, &out, &[]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stdout));
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!((summary["failed"].clone(), summary["skipped"].clone()), (json!(1), json!(2)), "{summary:#}");
    assert_eq!(summary["failures"][0]["key"], "a-00002");

    std::fs::remove_dir(&blocker).unwrap();
    let third = run_small(&pipeline, &out, &[]);
    assert!(third.status.success(), "{}", text(&third.stdout));
    for name in ["one", "two", "three"] {
        let n = ["one", "two", "three"].iter().position(|x| *x == name).unwrap() + 1;
        let stem = format!("a_{n:03}_{name}");
        assert!(out.join(format!("thumb/{stem}.jpg")).is_file(), "{stem}");
        assert_eq!(read_json(&out.join(format!("metadata/{stem}.json")))["success"], true, "{stem}");
    }
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!(
        (summary["failed"].clone(), summary["succeeded"].clone()),
        (json!(0), json!(1)),
        "{summary:#}"
    );
    // The book finishes before the disk sink writes the summary (listed after it or not), so
    // its preflight verdict is in batch_metadata.json too.
    let notes = summary["sink_notes"].as_array().cloned().unwrap_or_default();
    assert!(
        notes.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("sink \"book\": KDP preflight"))),
        "{notes:?}"
    );
}

/// A files pipeline over `images`: gray, black and white, pages on disk.
fn files_pipeline(dir: &Path, images: &Path, filename: &str) -> PathBuf {
    let file = dir.join("files.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  images: {{ kind: files, path: \"{images}\" }}
stages:
  gray: {{ kind: grayscale, inputs: [images] }}
  lineart: {{ kind: threshold, inputs: [gray] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{filename}\" }}
",
            images = images.display()
        ),
    )
    .unwrap();
    file
}

fn png(path: &Path, shade: u8) {
    image::RgbImage::from_pixel(8, 6, image::Rgb([shade, shade, shade])).save(path).unwrap();
}

#[test]
fn failures_of_earlier_runs_stay_in_the_summary_and_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, out) = (tmp.path().join("art"), tmp.path().join("out"));
    std::fs::create_dir(&images).unwrap();
    png(&images.join("b.png"), 255);
    std::fs::write(images.join("c_broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let pipeline = files_pipeline(tmp.path(), &images, "{description}.png");
    let first = run(&["run", s(&pipeline), "--output", s(&out)]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stdout));

    let second = run(&["run", s(&pipeline), "--output", s(&out)]);
    let stdout = text(&second.stdout);
    assert_eq!(second.status.code(), Some(1), "an earlier failure is still a failure:\n{stdout}");
    assert!(stdout.contains("c_broken"), "{stdout}");
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!(summary["failed"], 1, "{summary:#}");
    assert!(summary["failures"][0]["error"].as_str().unwrap().contains("c_broken.png"), "{summary:#}");
    assert_eq!(summary["skipped"], 1, "{summary:#}");
}

#[test]
fn a_file_added_to_a_folder_changes_nothing_for_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, out) = (tmp.path().join("art"), tmp.path().join("out"));
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::write(images.join("b_broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    png(&images.join("c.png"), 255);
    let pattern = images.join("**/*.png");
    let pipeline = files_pipeline(tmp.path(), &pattern, "{description}.png");
    let first = run(&["run", s(&pipeline), "--output", s(&out)]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stdout));

    // a.png sorts first: keyed by position it would take the broken file's failed key and
    // never be processed.
    png(&images.join("a.png"), 0);
    png(&images.join("sub/d.png"), 255);
    let second = run(&["run", s(&pipeline), "--output", s(&out)]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stdout));
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!(
        (summary["succeeded"].clone(), summary["skipped"].clone(), summary["failed"].clone()),
        (json!(2), json!(1), json!(1)),
        "{summary:#}"
    );
    assert_eq!(summary["failures"][0]["key"], "b_broken.png");
    let page = image::open(out.join("a.png")).unwrap().into_luma8();
    assert!(page.pixels().all(|p| p.0[0] == 0), "a.png's own page, black");
    assert!(out.join("sub_d.png").is_file() && out.join("c.png").is_file());
    assert_eq!(read_json(&out.join("metadata/sub_d.json"))["key"], "sub/d.png");
    let pages = files_named(&out, ".png");
    assert_eq!(pages, ["a.png", "c.png", "sub_d.png"], "no stale outputs beside new ones");
}

/// A pipeline generating through the emulated fal at `base`; its prompts file is `prompts`.
fn fal_pipeline(dir: &Path, base: &str, prompts: &Path) -> PathBuf {
    let file = dir.join("fal.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {prompts} }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{base}\", concurrency: 2, image_size: square,
              poll_interval_ms: 20, base_delay_ms: 10 }}
  gray: {{ kind: grayscale, inputs: [generate] }}
  lineart: {{ kind: threshold, inputs: [gray] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
",
            prompts = prompts.display()
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_prompt_runs_again_alone_and_the_dry_run_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let fal = FalEmulator::start(Latency::default()).await;
    let list = tmp.path().join("p.json");
    let entries = [("s", 1, "one"), ("s", 2, "two"), ("s", 3, "three")];
    prompts(&list, &entries);
    let pipeline = fal_pipeline(tmp.path(), &fal.base(), &list);
    let run_fal = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::from(inkflow_with_test_key());
        cmd.args(["run", s(&pipeline), "--output", s(&out)]).args(extra);
        cmd.output()
    };
    let first = run_fal(&[]).await.unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let page_two = std::fs::read(out.join("02.png")).unwrap();

    // Nothing changed: nothing to run, nothing to pay for.
    let plan = text(&run_fal(&["--dry-run"]).await.unwrap().stdout);
    assert!(plan.contains("to run: 0 of 3 items") && plan.contains("to pay for: 0 item(s)"), "{plan}");

    // Prompt two is edited in place: only it runs again, and is paid for.
    let mut edited: Value = read_json(&list);
    edited["prompts"][1]["image_prompt"] = json!("a lighthouse on a cliff, line art");
    std::fs::write(&list, edited.to_string()).unwrap();
    let plan = text(&run_fal(&["--dry-run"]).await.unwrap().stdout);
    assert!(plan.contains("to run: 1 of 3 items") && plan.contains("to pay for: 1 item(s)"), "{plan}");
    assert!(plan.contains("estimated cost: $0.025"), "{plan}");

    let second = run_fal(&[]).await.unwrap();
    assert!(second.status.success(), "{}", text(&second.stderr));
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!(
        (summary["succeeded"].clone(), summary["skipped"].clone()),
        (json!(1), json!(2)),
        "{summary:#}"
    );
    let ledger = fal.ledger.lock().unwrap();
    assert_eq!(ledger.accepted("lighthouse"), 1, "the edited prompt was generated");
    assert_eq!(ledger.submissions.values().sum::<u32>(), 4, "three first, then the edited one alone");
    drop(ledger);
    assert_ne!(std::fs::read(out.join("02.png")).unwrap(), page_two, "page two is the new prompt's");
    let meta = read_json(&out.join("metadata/02.json"));
    assert_eq!(meta["image_prompt"], "a lighthouse on a cliff, line art");
}

#[test]
fn items_whose_names_clash_each_get_their_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = [("a", 1, "cat"), ("a", 1, "cat"), ("a", 2, "Cat"), ("b", 3, "a_2")];
    let list = prompts(&tmp.path().join("p.json"), &entries);
    for (template, names) in [
        (
            "{section}_{number:03}_{description}.png",
            vec!["a_001_cat", "a_001_cat_2", "a_002_Cat", "b_003_a_2"],
        ),
        ("{description}.png", vec!["cat", "cat_2", "Cat_3", "a_2"]),
        ("{section}.png", vec!["a", "a_2", "a_3", "b"]),
    ] {
        let out = tmp.path().join(template.replace(['{', '}', ':', '.'], ""));
        let pipeline = small_pipeline(tmp.path(), &list, template);
        let first = run_small(&pipeline, &out, &[]);
        assert!(first.status.success(), "{template}: {}", text(&first.stderr));
        let mut keys = Vec::new();
        for name in &names {
            assert!(out.join(format!("{name}.png")).is_file(), "{template}: no {name}.png");
            assert!(out.join(format!("thumb/{name}.jpg")).is_file(), "{template}: no thumb/{name}.jpg");
            keys.push(
                read_json(&out.join(format!("metadata/{name}.json")))["key"].as_str().unwrap().to_owned(),
            );
        }
        assert_eq!(keys, ["a-00001", "a-00001-2", "a-00002", "b-00003"], "{template}");
        assert_eq!(files_named(&out, ".png").len(), 4, "{template}");
        // The names are the same on a rerun, so it has nothing to do.
        let again = run_small(&pipeline, &out, &[]);
        let summary = read_json(&out.join("batch_metadata.json"));
        assert!(again.status.success() && summary["skipped"] == 4, "{template}: {summary:#}");
    }
}

#[test]
fn a_very_long_section_makes_short_enough_names_and_a_whole_book() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let section = "ü".repeat(300);
    let description = format!("{} end", "猫".repeat(90));
    let entries = [(section.as_str(), 1, description.as_str()), (section.as_str(), 2, "short")];
    let list = prompts(&tmp.path().join("p.json"), &entries);
    let pipeline = small_pipeline(tmp.path(), &list, "{section}_{number:03}_{description}.png");
    let first = run_small(&pipeline, &out, &[]);
    assert!(first.status.success(), "{}{}", text(&first.stdout), text(&first.stderr));
    let pages = files_named(&out, ".png");
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() < 255), "{pages:?}");
    let book = std::fs::read(out.join("book.pdf")).unwrap();
    assert!(book.starts_with(b"%PDF"));
    let again = run_small(&pipeline, &out, &[]);
    assert!(again.status.success());
    assert_eq!(read_json(&out.join("batch_metadata.json"))["skipped"], 2);
}

#[test]
fn a_cycle_error_names_only_the_components_in_the_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cycle.yaml");
    std::fs::write(
        &file,
        concat!(
            "version: 1
sources:
  prompts: { kind: prompts, path: ",
            env!("CARGO_MANIFEST_DIR"),
            "/pipelines/prompts/sample_image_prompts.json }
stages:
  draw: { kind: pattern, inputs: [prompts] }
  a: { kind: grayscale, inputs: [b] }
  b: { kind: threshold, inputs: [a] }
  after: { kind: thumbnail, inputs: [b] }
sinks:
  pages: { kind: disk, inputs: [after, draw] }
"
        ),
    )
    .unwrap();
    let out = run(&["validate", s(&file)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("form a cycle")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.ends_with("the inputs form a cycle through a -> b"), "{line}");
}

#[test]
fn a_prompt_file_with_a_byte_order_mark_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let list = prompts(&tmp.path().join("p.json"), &[("a", 1, "one")]);
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(&list).unwrap());
    std::fs::write(&list, bytes).unwrap();
    let pipeline = small_pipeline(tmp.path(), &list, "{section}_{number:03}_{description}.png");
    let out = run_small(&pipeline, &tmp.path().join("out"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_next_run_removes_the_temporary_files_a_killed_run_left() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let list = prompts(&tmp.path().join("p.json"), &[("a", 1, "one")]);
    let pipeline = small_pipeline(tmp.path(), &list, "{section}_{number:03}_{description}.png");
    std::fs::create_dir_all(out.join("thumb")).unwrap();
    let stale = [out.join(".a_001_one.png.4242-0.tmp"), out.join("thumb/.inkflow-x1y2z3.tmp")];
    for file in &stale {
        std::fs::write(file, b"half a page").unwrap();
    }
    std::fs::write(out.join("notes.tmp"), b"the user's").unwrap();
    assert!(run_small(&pipeline, &out, &[]).status.success());
    assert!(stale.iter().all(|f| !f.exists()), "stale temporary files left");
    assert!(out.join("notes.tmp").exists(), "only inkflow's hidden temporary files go");
}

/// A 60x40 landscape JPEG, left half black, whose EXIF says to turn it 90 degrees clockwise to
/// view it (orientation 6, as phones save pictures taken upright).
fn jpeg_turned_by_exif() -> Vec<u8> {
    let picture =
        image::RgbImage::from_fn(
            60,
            40,
            |x, _| if x < 30 { image::Rgb([0; 3]) } else { image::Rgb([255; 3]) },
        );
    let mut plain = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut plain), image::ImageFormat::Jpeg).unwrap();
    // APP1 "Exif": a big-endian TIFF header and one IFD entry, Orientation (0x0112) SHORT 6.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut jpeg = plain[..2].to_vec();
    jpeg.extend_from_slice(&[0xFF, 0xE1]);
    jpeg.extend_from_slice(&(exif.len() as u16 + 2).to_be_bytes());
    jpeg.extend_from_slice(&exif);
    jpeg.extend_from_slice(&plain[2..]);
    jpeg
}

/// Issue 30 items 5 and 6: a phone's picture prints upright, a JPEG cut in half fails as
/// truncated instead of becoming a half-gray page, and a 1 GiB file is refused from its size
/// (its limit named) without being read; the others go on.
#[test]
fn files_are_read_as_people_take_them_and_only_as_far_as_they_need_to_be() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, out) = (tmp.path().join("art"), tmp.path().join("out"));
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("phone.jpg"), jpeg_turned_by_exif()).unwrap();
    let mut whole = Vec::new();
    let noise =
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, 90]));
    noise.write_to(&mut std::io::Cursor::new(&mut whole), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(images.join("cut.jpg"), &whole[..whole.len() / 2]).unwrap();
    std::fs::File::create(images.join("huge.jpg")).unwrap().set_len(1 << 30).unwrap();
    let pipeline = files_pipeline(tmp.path(), &images, "{description}.png");
    let output = run(&["run", s(&pipeline), "--output", s(&out)]);
    assert_eq!(output.status.code(), Some(1), "{}{}", text(&output.stdout), text(&output.stderr));

    let page = image::open(out.join("phone.png")).unwrap().into_luma8();
    assert_eq!(page.dimensions(), (40, 60), "the phone's picture is upright (portrait)");
    assert_eq!((page.get_pixel(20, 5).0[0], page.get_pixel(20, 55).0[0]), (0, 255), "turned clockwise");

    let summary = read_json(&out.join("batch_metadata.json"));
    let error = |key: &str| {
        let failures = summary["failures"].as_array().unwrap();
        let failure = failures.iter().find(|f| f["key"] == key).unwrap_or_else(|| panic!("{summary:#}"));
        failure["error"].as_str().unwrap().to_owned()
    };
    assert!(error("cut.jpg").contains("truncated JPEG"), "{}", error("cut.jpg"));
    let huge = error("huge.jpg");
    assert!(huge.contains("1073741824 bytes, over the limit of 160000000 bytes"), "{huge}");
    assert_eq!(summary["failed"], 2, "{summary:#}");
}
