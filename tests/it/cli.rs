//! The `inkflow` binary as a user runs it: the offline book, validation errors with
//! positions, dry runs, resume after a crash and after Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::binary::{inkflow, run, text};

/// Runs the offline book on a prompts file into `out`.
fn offline_book(prompts: &Path, out: &Path) -> Output {
    run(&[
        "run",
        "pipelines/offline-book.yaml",
        "--prompts",
        prompts.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
}

/// A prompts file with `n` prompts in the original `{"prompts": [...]}` format.
fn prompts_file(dir: &Path, n: u32) -> PathBuf {
    let sections = ["animals", "flowers", "ocean", "space"];
    let prompts: Vec<Value> = (1..=n)
        .map(|i| {
            serde_json::json!({
                "section": sections[i as usize % sections.len()],
                "image_number": i,
                "image_prompt": format!("a friendly mandala number {i} with petals and stars"),
                "description": format!("page {i}"),
            })
        })
        .collect();
    let path = dir.join("prompts.json");
    std::fs::write(&path, serde_json::json!({ "prompts": prompts }).to_string()).unwrap();
    path
}

fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "png")).collect()
        })
        .unwrap_or_default();
    pages.sort();
    pages
}

fn no_temp_files(dir: &Path) {
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp") && !name.ends_with(".partial"), "left behind: {}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Starts a run and kills it with `signal` once `min_pages` pages exist; returns the exit status.
fn interrupt(args: &[&str], out: &Path, min_pages: usize, signal: &str) -> std::process::ExitStatus {
    let mut child: Child = inkflow().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while pages(out).len() < min_pages {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        assert!(started.elapsed() < Duration::from_secs(120), "no pages appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

#[test]
fn the_offline_book_is_print_ready() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path(), 3);
    let out = dir.path().join("book");
    let result = offline_book(&prompts, &out);
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert!(text(&result.stdout).contains("succeeded"), "{}", text(&result.stdout));

    let pages = pages(&out);
    assert_eq!(pages.len(), 3, "{pages:?}");
    // Every page was judged: `inkflow status` counts the verdicts from the metadata.
    let status = text(&run(&["status", out.to_str().unwrap()]).stdout);
    let line =
        status.lines().find(|l| l.trim_start().starts_with("quality")).unwrap_or_else(|| panic!("{status}"));
    let judged: u64 = line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).sum();
    assert_eq!(judged, 3, "{line}");
    for page in &pages {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(page).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (2550, 3300));
        assert_eq!(info.bit_depth, png::BitDepth::One, "pages are stored 1 bit per pixel");
        let dpi = info.pixel_dims.expect("pHYs");
        assert_eq!((dpi.xppu, dpi.unit), (11811, png::Unit::Meter), "300 DPI");
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        // Expanded to 8 bits, every pixel is pure black or pure white, and both occur.
        let gray = image::open(page).unwrap().into_luma8();
        assert!(gray.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        let black = gray.pixels().filter(|p| p.0[0] == 0).count();
        assert!(
            black > 10_000 && black < gray.len() / 2,
            "{black} black pixels: line art, not blank or solid"
        );

        let stem = page.file_stem().unwrap().to_string_lossy();
        let meta: Value = serde_json::from_slice(
            &std::fs::read(out.join("metadata").join(format!("{stem}.json"))).unwrap(),
        )
        .unwrap();
        for field in [
            "section",
            "image_number",
            "image_prompt",
            "description",
            "output_filename",
            "generation_time",
            "timestamp",
            "model",
            "resolution",
            "success",
            "error_message",
            "retry_count",
        ] {
            assert!(meta.get(field).is_some(), "metadata lacks {field}: {meta}");
        }
        assert_eq!(meta["success"], true);
        let thumb = image::open(out.join("thumb").join(format!("{stem}.jpg"))).unwrap();
        assert!(thumb.width() <= 400 && thumb.height() <= 518 && thumb.width().max(thumb.height()) >= 400);
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!((summary["total_items"].as_u64(), summary["succeeded"].as_u64()), (Some(3), Some(3)));
    assert!(out.join("book.pdf").is_file());
    assert!(out.join("inkflow.log").is_file());
    no_temp_files(&out);

    // A second run resumes: everything is already there.
    let again = offline_book(&prompts, &out);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(summary["skipped"].as_u64(), Some(3), "{summary}");
}

#[test]
fn validate_reports_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "version: 1
sources:
  prompts: { kind: prompts, path: p.json }
  spare: { kind: prompts, path: q.json }
stages:
  draw: { kind: patern, inputs: [prompts] }
  print: { kind: upscale, inputs: [prompts], factr: 2 }
  lineart: { kind: threshold, inputs: [ghost], level: high }
  thumb: { kind: thumbnail, inputs: [prompts] }
  loop1: { kind: grayscale, inputs: [loop2] }
  loop2: { kind: grayscale, inputs: [loop1] }
sinks:
  pages: { kind: disk, inputs: [draw, print, lineart, thumb, loop2] }
",
    )
    .unwrap();
    let result = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(2), "{}", text(&result.stderr));
    let stderr = text(&result.stderr).replace(&file.display().to_string(), "broken.yaml");
    for expected in [
        "broken.yaml:4:3: source \"spare\": source \"spare\" has no consumer",
        "broken.yaml:6:17: stage \"draw\": unknown kind \"patern\"",
        "broken.yaml:7:46: stage \"print\": unknown field \"factr\" (expected: ",
        "broken.yaml:8:40: stage \"lineart\": input \"ghost\" doesn't match any source or stage",
        "broken.yaml:8:55: stage \"lineart\": level: invalid type: string \"high\"",
        "stage \"thumb\": kind \"thumbnail\" cannot take a prompt from \"prompts\"",
        "the inputs form a cycle through",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("known stage kinds: ") && stderr.contains("pattern"), "{stderr}");
}

#[test]
fn dry_run_plans_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let result = run(&["run", "pipelines/offline-book.yaml", "--dry-run", "--output", out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    assert!(stdout.contains("32 items") && stdout.contains("estimated cost: $0"), "{stdout}");
    assert!(!out.exists());
}

#[test]
fn stages_and_graph_describe_the_pipeline() {
    let list = text(&run(&["stages"]).stdout);
    for kind in [
        "prompts",
        "files",
        "pattern",
        "grayscale",
        "threshold",
        "lineart-check",
        "lineart-cleanup",
        "upscale",
        "thumbnail",
        "disk",
        "pdf",
        "cover",
    ] {
        assert!(list.contains(kind), "{kind} missing from:\n{list}");
    }
    let upscale = text(&run(&["stages", "upscale"]).stdout);
    assert!(upscale.contains("fit") && upscale.contains("takes: ") && upscale.contains("dpi"), "{upscale}");
    let graph = text(&run(&["graph", "pipelines/offline-book.yaml", "--format", "mermaid"]).stdout);
    assert!(
        graph.contains("draw -->|rgb image| gray") && graph.contains("clean -->|bilevel image| book"),
        "{graph}"
    );
}

/// The pages and thumbnails of a finished run, by name.
fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walk(out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .filter(|p| !p.starts_with(out.join("cache")))
        .map(|p| (p.strip_prefix(out).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_killed_run_resumes_to_the_same_book() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path(), 24);
    let reference = dir.path().join("reference");
    let resumed = dir.path().join("resumed");
    let args = |out: &Path| {
        vec![
            "run".to_owned(),
            "pipelines/offline-book.yaml".to_owned(),
            "--prompts".to_owned(),
            prompts.display().to_string(),
            "--output".to_owned(),
            out.display().to_string(),
            "--set".to_owned(),
            "sinks.book.on_missing=fail".to_owned(),
        ]
    };
    let done = inkflow().args(args(&reference)).output().unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));

    let resumed_args = args(&resumed);
    let argv: Vec<&str> = resumed_args.iter().map(String::as_str).collect();
    let status = interrupt(&argv, &resumed, 2, "-KILL");
    assert!(!status.success());
    let before = pages(&resumed).len();
    assert!(before < 24, "the kill came too late to test anything ({before} pages)");

    let finish = inkflow().args(&argv).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(resumed.join("batch_metadata.json")).unwrap()).unwrap();
    assert!(summary["skipped"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0), "{summary}");
    assert_eq!(outputs(&reference), outputs(&resumed), "resumed outputs differ from an uninterrupted run");
    no_temp_files(&resumed);
}

#[test]
fn ctrl_c_finishes_in_flight_items_and_writes_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path(), 40);
    let out = dir.path().join("out");
    let argv = [
        "run",
        "pipelines/offline-book.yaml",
        "--prompts",
        prompts.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let status = interrupt(&argv, &out, 1, "-INT");
    assert_eq!(status.code(), Some(130));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    let succeeded = summary["succeeded"].as_u64().unwrap();
    assert!((1..40).contains(&succeeded), "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0), "in-flight items finish cleanly: {summary}");
    // Every item that was started either finished or was never started: none is half-written.
    assert_eq!(pages(&out).len() as u64, succeeded);
    assert!(!out.join("book.pdf").exists(), "an interrupted batch leaves no book of placeholder pages");
    no_temp_files(&out);
}

#[test]
fn the_book_holds_the_disk_pages_in_section_order() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path(), 5);
    let out = dir.path().join("book");
    let result = offline_book(&prompts, &out);
    assert!(result.status.success(), "{}", text(&result.stderr));

    let doc = crate::common::pdf_reader::load(&out.join("book.pdf"));
    let book_pages = crate::common::pdf_reader::pages(&doc);
    assert_eq!(book_pages.len(), 24, "a title page, five pages, and blank ones up to KDP's 24 (pad: true)");
    assert!(
        crate::common::pdf_reader::page_image(&doc, book_pages[0]).is_none(),
        "the title page has no image"
    );
    // The prompts file names its sections flowers (1, 5), ocean (2), space (3), animals (4):
    // the book keeps that order, page numbers within a section.
    let disk: Vec<PathBuf> = ["flowers_001", "flowers_005", "ocean_002", "space_003", "animals_004"]
        .iter()
        .map(|stem| out.join(format!("{stem}_page_{}.png", stem[stem.len() - 1..].trim_start_matches('0'))))
        .collect();
    for (page, png_path) in book_pages[1..].iter().zip(&disk) {
        let (dict, data) = crate::common::pdf_reader::page_image(&doc, *page).expect("an image page");
        assert_eq!(dict.get(b"BitsPerComponent").and_then(lopdf::Object::as_i64).unwrap(), 1);
        let rows = crate::common::pdf_reader::decode_g4(&data, 2550, 3300);
        let png =
            image::open(png_path).unwrap_or_else(|e| panic!("{}: {e}", png_path.display())).into_luma8();
        for (y, row) in rows.iter().enumerate() {
            for (x, black) in row.iter().enumerate() {
                assert_eq!(
                    *black,
                    png.get_pixel(x as u32, y as u32).0[0] == 0,
                    "{} differs at {x},{y}",
                    png_path.display()
                );
            }
        }
    }
}

#[test]
fn check_without_a_key_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // No key in the environment and no .env in the working directory.
    let result = inkflow()
        .arg("check")
        .current_dir(dir.path())
        .env_remove("FAL_KEY")
        .env_remove("FAL_API_KEY")
        .env("FAL_QUEUE_BASE_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stdout = text(&result.stdout);
    assert!(stdout.starts_with("✗ API key present"), "{stdout}");
    assert!(stdout.contains("FAL_KEY"), "{stdout}");
}

/// Runs `pipelines/postprocess.yaml` over the images in `inputs`, writing into `out`.
fn run_postprocess(inputs: &std::path::Path, out: &std::path::Path) -> Output {
    run(&[
        "run",
        "pipelines/postprocess.yaml",
        "--set",
        &format!("sources.images.path={}", inputs.display()),
        "--output",
        out.to_str().unwrap(),
    ])
}

/// `postprocess.yaml` on a folder with a broken file: the good page is written, and the broken
/// one fails alone, named with its file and the source that read it (which loads inside the
/// fused gray -> upscale -> threshold job).
#[test]
fn postprocess_names_a_broken_input_and_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("art");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::copy("benches/fixtures/page_000.png", inputs.join("a_good.png")).unwrap();
    std::fs::write(inputs.join("b_broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.path().join("out");
    let output = run_postprocess(&inputs, &out);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let page = image::open(out.join("a_good.png")).unwrap();
    assert_eq!((page.width(), page.height()), (2550, 3300));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!((summary["succeeded"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)), "{summary}");
    let failure = &summary["failures"][0];
    assert_eq!(failure["stage"], "images", "{failure}");
    let error = failure["error"].as_str().unwrap();
    assert!(error.contains("cannot decode") && error.contains("b_broken.png"), "{error}");
    let counts = summary["components"].as_array().unwrap();
    let images = counts.iter().find(|c| c["id"] == "images").unwrap();
    assert_eq!((images["done"].as_u64(), images["failed"].as_u64()), (Some(1), Some(1)), "{images}");
}

/// A PNG header declaring `width`x`height` RGB pixels with a token of image data: what a
/// decompression bomb looks like before its pixels are inflated.
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    // The header and a token IDAT chunk: the run must refuse the file before inflating it.
    let mut writer = encoder.write_header().unwrap();
    writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x63, 0x00, 0x00]).unwrap();
    drop(writer);
    out
}

#[test]
fn postprocess_refuses_a_bomb_alone_and_puts_transparency_on_white() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("art");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a_bomb.png"), bomb_png(16000, 16000)).unwrap();
    // Black line art on a transparent background: a 200x200 black square in a 600x800 page.
    let mut art = image::RgbaImage::new(600, 800);
    for (x, y, pixel) in art.enumerate_pixels_mut() {
        if (200..400).contains(&x) && (300..500).contains(&y) {
            *pixel = image::Rgba([0, 0, 0, 255]);
        }
    }
    art.save(inputs.join("b_transparent.png")).unwrap();
    let out = dir.path().join("out");
    let output = run_postprocess(&inputs, &out);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!((summary["succeeded"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)), "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("a_bomb.png") && error.contains("declares 16000x16000 pixels, over the limit"),
        "{error}"
    );

    let page = image::open(out.join("b_transparent.png")).unwrap().into_luma8();
    let black =
        page.pixels().filter(|p| p.0[0] == 0).count() as f64 / f64::from(page.width() * page.height());
    // The square covers 1/12 of the art; a transparent background read as black would be 11/12 more.
    assert!((0.05..0.12).contains(&black), "{:.1}% of the page is black", black * 100.0);
}

/// The KDP book end to end: interior and cover written, the summary's verdicts, and
/// `inkflow preflight` passing them (exit 0) and failing them against the wrong trim (exit 1).
#[test]
fn the_kdp_book_passes_preflight_and_a_wrong_trim_fails_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("kdp");
    let output = run(&["run", "pipelines/kdp-book.yaml", "--output", out.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("sink \"interior\": KDP preflight") && stdout.contains("all 12 rules pass"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink \"cover\": KDP preflight") && stdout.contains("all 11 rules pass"),
        "{stdout}"
    );
    let doc = lopdf::Document::load(out.join("interior.pdf")).expect("interior.pdf");
    assert_eq!(doc.get_pages().len(), 68, "title, copyright and 32 pages, each with a blank back");
    // The cover prompt is drawn like a page, kept with the pages, and is no page of the book.
    assert!(out.join("cover_000_cover.png").is_file(), "the cover art is written with the pages");
    let images = |doc: &lopdf::Document| -> Vec<Vec<u8>> {
        doc.objects
            .values()
            .filter_map(|object| object.as_stream().ok())
            .filter(|stream| {
                stream.dict.get(b"Subtype").and_then(|s| s.as_name()).ok() == Some(&b"Image"[..])
            })
            .map(|stream| stream.content.clone())
            .collect()
    };
    let interior_images = images(&doc);
    // The check re-rolls the generator's repeated tilings; the book holds only the pages, not
    // the candidates they replaced.
    let near_duplicates = std::fs::read_dir(out.join("rejected"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains("near_duplicate"))
        })
        .count();
    assert!(near_duplicates > 0, "kdp-book checks its pages for near-duplicates");
    assert_eq!(interior_images.len(), 32, "one image per page");
    let cover_images = images(&lopdf::Document::load(out.join("cover.pdf")).expect("cover.pdf"));
    assert_eq!(cover_images.len(), 1, "the front art");
    assert!(!interior_images.contains(&cover_images[0]), "the front art is the cover prompt's, not a page");

    let (interior, cover) = (out.join("interior.pdf"), out.join("cover.pdf"));
    let checked = run(&["preflight", interior.to_str().unwrap(), "--cover", cover.to_str().unwrap()]);
    let report = text(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{report}{}", text(&checked.stderr));
    assert_eq!(report.matches('✓').count(), 23, "{report}");
    assert!(!report.contains('✗'), "{report}");

    let wrong = run(&["preflight", interior.to_str().unwrap(), "--trim", "6x9", "--paper", "cream"]);
    let report = text(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{report}");
    assert!(report.contains("✗ page boxes") && report.contains("(pages 1-68)"), "{report}");
}

/// A pipeline file's relative paths (prompts, deny lists, fonts, `output:`) are read against
/// the file's own folder, whatever the working directory; paths on the command line
/// (`--prompts`, `--output`, `--set`) against the working directory.
#[test]
fn a_pipeline_reads_its_paths_from_its_own_folder_and_the_command_line_from_the_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("books").join("forest");
    std::fs::create_dir_all(folder.join("lists")).unwrap();
    std::fs::create_dir_all(folder.join("type")).unwrap();
    prompts_file(&folder, 2);
    std::fs::write(folder.join("lists").join("deny.txt"), "# nothing here is allowed\nchainsaw\n").unwrap();
    let font = Path::new(env!("CARGO_MANIFEST_DIR")).join("fonts").join("LiberationSans-Regular.ttf");
    std::fs::copy(&font, folder.join("type").join("book.ttf")).unwrap();
    std::fs::write(
        folder.join("pipeline.yaml"),
        "version: 1
output: ../../made/forest
sources:
  prompts: { kind: prompts, path: prompts.json }
stages:
  check: { kind: safety, inputs: [prompts], deny_files: [lists/deny.txt], on_reject: drop }
  draw: { kind: pattern, inputs: [check], size: { width: 96, height: 128 } }
  gray: { kind: grayscale, inputs: [draw] }
  lineart: { kind: threshold, inputs: [gray] }
sinks:
  pages: { kind: disk, inputs: [lineart] }
  book: { kind: pdf, inputs: [lineart], title: Forest, font: ./type/book.ttf }
",
    )
    .unwrap();
    // Run from a working directory that is neither the file's folder nor its parent.
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let in_dir = |dir: &Path, args: &[&str]| inkflow().current_dir(dir).args(args).output().unwrap();
    let file = "../books/forest/pipeline.yaml";

    let validated = in_dir(&elsewhere, &["validate", file]);
    assert!(validated.status.success(), "{}{}", text(&validated.stdout), text(&validated.stderr));
    let ran = in_dir(&elsewhere, &["run", file]);
    assert!(ran.status.success(), "{}{}", text(&ran.stdout), text(&ran.stderr));
    let out = root.path().join("made").join("forest");
    assert_eq!(pages(&out).len(), 2, "output: is read against the pipeline's folder");
    assert!(out.join("book.pdf").is_file());
    assert!(!elsewhere.join("made").exists() && !folder.join("made").exists());

    // Command-line paths stay with the working directory.
    prompts_file(&elsewhere, 3);
    let ran = in_dir(&elsewhere, &["run", file, "--prompts", "prompts.json", "--output", "mine"]);
    assert!(ran.status.success(), "{}{}", text(&ran.stdout), text(&ran.stderr));
    assert_eq!(pages(&elsewhere.join("mine")).len(), 3, "--prompts and --output from the working directory");
    let ran = in_dir(
        &elsewhere,
        &["run", file, "--set", "sources.prompts.path=prompts.json", "--set", "output=set"],
    );
    assert!(ran.status.success(), "{}{}", text(&ran.stdout), text(&ran.stderr));
    assert_eq!(pages(&elsewhere.join("set")).len(), 3, "--set paths from the working directory");

    // A missing file is named as resolved, at its line and column, by validate and by run.
    std::fs::remove_file(folder.join("lists").join("deny.txt")).unwrap();
    for command in ["validate", "run"] {
        let failed = in_dir(&elsewhere, &[command, file]);
        assert_eq!(failed.status.code(), Some(2), "{command}: {}", text(&failed.stderr));
        let stderr = text(&failed.stderr);
        let expected = format!(
            "pipeline.yaml:6:58: stage \"check\": deny_files: {} does not exist",
            Path::new("../books/forest/lists/deny.txt").display()
        );
        assert!(stderr.contains(&expected), "{command}: missing {expected:?} in:\n{stderr}");
    }
}

/// Every shipped pipeline passes `validate`, and each that runs offline passes its own checks
/// on its own output: it succeeds, no sink fails, and the books pass their KDP preflight.
#[test]
fn every_shipped_pipeline_passes_its_own_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut shipped: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    shipped.sort();
    assert!(shipped.len() >= 5, "{shipped:?}");
    for file in &shipped {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let validated = run(&["validate", file.to_str().unwrap()]);
        assert!(validated.status.success(), "{name}: {}", text(&validated.stderr));
        if std::fs::read_to_string(file).unwrap().contains("kind: fal") {
            let planned = run(&["run", file.to_str().unwrap(), "--dry-run"]);
            assert!(planned.status.success(), "{name}: {}", text(&planned.stderr));
            continue;
        }
        let out = dir.path().join(&name);
        let ran = run(&["run", file.to_str().unwrap(), "--output", out.to_str().unwrap()]);
        let stdout = text(&ran.stdout);
        assert!(ran.status.success(), "{name}: {stdout}{}", text(&ran.stderr));
        let summary: Value =
            serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
        assert!(summary.get("sink_errors").is_none(), "{name}: {summary:#}");
        let notes = summary["sink_notes"].as_array().cloned().unwrap_or_default();
        for note in &notes {
            let note = note.as_str().unwrap();
            assert!(!note.contains("fail") && !note.contains("could not"), "{name}: {note}");
        }
        let books = std::fs::read_to_string(file).unwrap().matches("kind: pdf").count();
        let passed = notes.iter().filter(|n| n.as_str().unwrap().contains("rules pass")).count();
        assert!(passed >= books, "{name}: every book is preflighted and passes: {notes:?}");
    }
}
