//! `inkflow preflight` through the binary: hostile PDFs (made here by small generators) checked
//! in a child process under a memory limit and a kill timeout, finishing with a verdict and
//! "could not check" where a limit stops the walk; and text in scripts the default font lacks,
//! set in the bundled fallbacks, embedded and passing the glyph rule.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lopdf::{Dictionary, Document, Object, ObjectId, Stream, dictionary};

use crate::common::binary::{run_peak_rss, text};
use crate::common::pdf_reader::{embedded_fonts, load, pages};

/// The address space the child may map, in KiB (`ulimit -v`): preflight aims at 200 MB of
/// memory; the binary's code and its allocator's reservations take address space besides.
const ADDRESS_SPACE_KIB: u64 = 300 * 1024;
/// Killed past this: a walk that never ends fails the test instead of hanging it. Preflight
/// aims at 10 s; this leaves room for an unoptimised build on a busy machine.
const KILL_AFTER: Duration = Duration::from_secs(90);

/// `inkflow preflight FILE` under the memory limit, killed after [`KILL_AFTER`]: its output,
/// or a panic saying it was killed or died of the limit.
fn preflight_limited(pdf: &Path) -> String {
    let script = format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" preflight \"$1\"");
    let mut child = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_inkflow")])
        .arg(pdf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("child waits") {
            break status;
        }
        if started.elapsed() > KILL_AFTER {
            child.kill().expect("child is killed");
            panic!("preflight of {} still running after {KILL_AFTER:?}", pdf.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("stdout reads");
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr reads");
    // A clear verdict: 1 (rules fail or could not be checked), not a crash or an abort.
    assert_eq!(status.code(), Some(1), "{}: {status}\n{stdout}\n{stderr}", pdf.display());
    assert!(stdout.contains("KDP preflight of"), "{stdout}\n{stderr}");
    stdout
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(bytes, 1)
}

fn flate(dict: Dictionary, content: &[u8]) -> Stream {
    let mut dict = dict;
    dict.set("Filter", "FlateDecode");
    Stream::new(dict, zlib(content))
}

/// A one-page-tree PDF under construction.
struct Hostile {
    doc: Document,
    tree: ObjectId,
    kids: Vec<Object>,
}

impl Hostile {
    fn new() -> Self {
        let mut doc = Document::with_version("1.7");
        let tree = doc.new_object_id();
        Hostile { doc, tree, kids: Vec::new() }
    }

    /// A letter page drawing `content` (flate-compressed) with `resources`.
    fn page(&mut self, content: &[u8], resources: Dictionary) -> ObjectId {
        let content = self.doc.add_object(flate(Dictionary::new(), content));
        let page = self.doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => self.tree,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            "Resources" => resources,
            "Contents" => content,
        });
        self.kids.push(page.into());
        page
    }

    fn write(mut self, dir: &Path, name: &str) -> PathBuf {
        let count = self.kids.len() as i64;
        self.doc.objects.insert(
            self.tree,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => self.kids, "Count" => count }),
        );
        let catalog = self.doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => self.tree });
        self.doc.trailer.set("Root", catalog);
        let path = dir.join(name);
        self.doc.save(&path).expect("the hostile PDF is written");
        path
    }
}

fn form(content: &[u8], resources: Dictionary) -> Stream {
    flate(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Form",
            "BBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            "Resources" => resources,
        },
        content,
    )
}

fn gray_image(width: i64, height: i64, pixels: &[u8]) -> Stream {
    flate(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => width,
            "Height" => height,
            "ColorSpace" => "DeviceGray",
            "BitsPerComponent" => 8,
        },
        pixels,
    )
}

#[test]
fn a_page_tree_that_shares_its_subtrees_is_read_once_per_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pdf = Hostile::new();
    pdf.page(b"100 100 200 200 re f", Dictionary::new());
    // 48 levels, each listing the one below twice: 2^48 paths to the one page.
    let mut below = pdf.tree;
    for _ in 0..48 {
        below = pdf.doc.add_object(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![below.into(), below.into()],
            "Count" => 1,
        });
    }
    let path = pdf.write(dir.path(), "tree.pdf");
    // The root lists the shared top of the tree beside the first page tree node.
    let mut doc = Document::load(&path).expect("reads");
    let root = doc.catalog().and_then(|c| c.get(b"Pages")).and_then(Object::as_reference).expect("root");
    let top = below;
    let shared = dictionary! { "Type" => "Pages", "Kids" => vec![root.into(), top.into()], "Count" => 2 };
    let new_root = doc.add_object(shared);
    doc.catalog_mut().expect("catalog").set("Pages", new_root);
    doc.save(&path).expect("written");
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 8_000);

    let report = preflight_limited(&path);
    assert!(report.contains("(1 pages,"), "each page once: {report}");
    assert!(report.contains("✗ page count: 1 pages"), "{report}");
    assert!(report.contains("✓ ink inside the margins"), "{report}");
}

#[test]
fn forms_drawn_fifty_times_inside_forms_end_as_could_not_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pdf = Hostile::new();
    let mut inner = pdf.doc.add_object(form(b"100 100 10 10 re f", Dictionary::new()));
    let fifty = b"q 1 0 0 1 0.1 0.1 cm /X Do Q\n".repeat(50);
    for _ in 0..8 {
        let resources = dictionary! { "XObject" => dictionary! { "X" => inner } };
        inner = pdf.doc.add_object(form(&fifty, resources));
    }
    pdf.page(b"/X Do", dictionary! { "XObject" => dictionary! { "X" => inner } });
    let path = pdf.write(dir.path(), "forms.pdf");
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 4_000);

    let report = preflight_limited(&path);
    assert!(
        report.contains("? ink inside the margins") && report.contains("could not check pages 1: more than"),
        "{report}"
    );
    assert!(report.contains("marks of ink"), "{report}");
    assert!(report.contains("rules could not check every page"), "{report}");
}

#[test]
fn ten_million_operators_stop_at_the_limit_and_a_million_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pdf = Hostile::new();
    pdf.page(&b"n\n".repeat(10_000_000), Dictionary::new());
    // Dense vector art: a million operators in 250,000 stroked paths, inside the margins.
    let mut art = Vec::new();
    for i in 0..250_000u32 {
        let (x, y) = (100 + i % 400, 100 + (i / 400) % 500);
        art.extend(format!("{x} {y} m {} {} l {x} {} l S\n", x + 3, y + 2, y + 4).bytes());
    }
    pdf.page(&art, Dictionary::new());
    let path = pdf.write(dir.path(), "operators.pdf");

    let report = preflight_limited(&path);
    assert!(
        report.contains("? ink inside the margins")
            && report.contains("could not check pages 1: more than 5000000 content operators"),
        "{report}"
    );
    // Page 2 is checked: only page 1 is named.
    assert!(!report.contains("could not check pages 1-2"), "{report}");
    assert!(report.contains("✗ page count"), "{report}");
}

#[test]
fn an_image_bomb_a_content_bomb_and_deep_nesting_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pdf = Hostile::new();
    let place = b"q 400 0 0 500 100 100 cm /Im Do Q".to_vec();
    // 1: an image declaring 60,000 x 60,000 gray pixels (3.6 GB).
    let bomb = pdf.doc.add_object(gray_image(60_000, 60_000, &vec![0u8; 4 << 20]));
    pdf.page(&place, dictionary! { "XObject" => dictionary! { "Im" => bomb } });
    // 2: a 64 MB image, decoded a row at a time: checked.
    let big = pdf.doc.add_object(gray_image(8192, 8192, &vec![0u8; 64 << 20]));
    pdf.page(&place, dictionary! { "XObject" => dictionary! { "Im" => big } });
    // 3: content that inflates to 64 MB.
    pdf.page(&b" ".repeat(64 << 20), Dictionary::new());
    // 4: four thousand graphics states saved, never restored.
    pdf.page(&[b"q ".repeat(4000), b"100 100 10 10 re f".to_vec()].concat(), Dictionary::new());
    // 5: arrays nested 100,000 deep: read without recursion, and the rest of the page still walked.
    pdf.page(
        &[b"[".repeat(100_000), b"]".repeat(100_000), b" 100 100 10 10 re f".to_vec()].concat(),
        Dictionary::new(),
    );
    let path = pdf.write(dir.path(), "bombs.pdf");
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 1_000_000);

    let report = preflight_limited(&path);
    let line = report.lines().find(|l| l.contains("images at 300 DPI")).unwrap_or_default();
    assert!(
        line.starts_with('?')
            && line.contains("could not check pages 1, 3-4: an image of 60000 x 60000 pixels"),
        "{report}"
    );
    let margins = report.lines().find(|l| l.contains("ink inside the margins")).unwrap_or_default();
    assert!(margins.contains("could not check pages 1, 3-4"), "{report}");
    assert!(report.contains("✓ blank pages"), "pages over a limit are not blank: {report}");
}

/// A long book is read a page at a time: `inkflow preflight` of 300 pages, each drawing 200 KB
/// of noise of its own (60 MB in all), peaks far below the file's size, where reading the file
/// whole took more than twice its size; and every page is still checked.
#[test]
fn a_long_book_is_read_a_page_at_a_time() {
    const PAGES: usize = 300;
    /// An image's side in pixels: 450 x 450 gray noise does not compress.
    const SIDE: i64 = 450;
    /// Peak RSS of the preflight, in KiB.
    const BOUND_KIB: i64 = 40 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pdf = Hostile::new();
    let mut noise = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..PAGES {
        let pixels: Vec<u8> = (0..SIDE * SIDE)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                (noise >> 32) as u8
            })
            .collect();
        let image = pdf.doc.add_object(gray_image(SIDE, SIDE, &pixels));
        pdf.page(
            b"q 612 0 0 792 0 0 cm /Im Do Q",
            dictionary! { "XObject" => dictionary! { "Im" => image } },
        );
    }
    let path = pdf.write(dir.path(), "long.pdf");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 60_000_000, "{size} bytes");

    let (out, peak_kib) = run_peak_rss(&["preflight", path.to_str().expect("a UTF-8 path")]);
    let report = text(&out.stdout);
    assert!(report.contains(&format!("({PAGES} pages")), "{report}");
    // Each page's image is read: all of them are placed at 53 DPI.
    let line = report.lines().find(|l| l.contains("images at 300 DPI")).unwrap_or_default();
    assert!(line.starts_with('✗') && line.ends_with(&format!("(pages 1-{PAGES})")), "{report}");
    assert!(peak_kib < BOUND_KIB, "peak RSS {peak_kib} KiB for a {size}-byte file\n{report}");
}

/// Offline KDP book with `author` on its cover, written into `out`.
fn kdp_book_with_author(out: &Path, author: &str) -> Output {
    let prompts = out.with_extension("json");
    // Twelve pages: with their blank backs and the front matter, a book with no long blank run.
    let entries: Vec<serde_json::Value> = (1..=12)
        .map(|i| serde_json::json!({ "section": "shapes", "image_number": i, "image_prompt": format!("mandala {i}"), "description": format!("page {i}") }))
        .collect();
    std::fs::write(&prompts, serde_json::json!({ "prompts": entries }).to_string()).expect("prompts written");
    Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "pipelines/kdp-book.yaml", "--prompts"])
        .arg(&prompts)
        .arg("--output")
        .arg(out)
        .args(["--set", &format!("sinks.cover.author={author}")])
        .output()
        .expect("inkflow runs")
}

#[test]
fn a_cover_author_in_three_scripts_prints_in_the_fallback_fonts_and_passes_the_glyph_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("book");
    let run = kdp_book_with_author(&out, "Ada 字 🎨");
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{log}");
    assert!(!log.contains("no font has a glyph"), "{log}");

    let cover = out.join("cover.pdf");
    let doc = load(&cover);
    let fonts = embedded_fonts(&doc, pages(&doc)[0]);
    for family in ["LiberationSans", "NotoSansCJKsc-Regular", "NotoEmoji-Regular"] {
        assert!(
            fonts.iter().any(|(name, embedded)| name.ends_with(&format!("+{family}")) && *embedded),
            "{family}: {fonts:?}"
        );
    }
    let checked = Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .arg("preflight")
        .arg(out.join("interior.pdf"))
        .arg("--cover")
        .arg(&cover)
        .output()
        .expect("preflight runs");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{report}");
    assert_eq!(report.matches("✓ every character has a glyph").count(), 2, "{report}");
}

#[test]
fn a_character_no_font_has_is_warned_at_validate_and_fails_the_glyph_rule() {
    let validated = Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "pipelines/kdp-book.yaml", "--set", "sinks.cover.author=Ada 한글"])
        .output()
        .expect("inkflow runs");
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(validated.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("pipelines/kdp-book.yaml:")
            && stderr.contains("warning: `sinks.cover.author`")
            && stderr.contains("U+D55C 한, U+AE00 글"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("book");
    let run = kdp_book_with_author(&out, "Ada 한글");
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(
        log.contains("warning: `sinks.cover.author`") && log.contains("U+D55C 한"),
        "at run start: {log}"
    );
    let checked = Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .arg("preflight")
        .arg(out.join("interior.pdf"))
        .arg("--cover")
        .arg(out.join("cover.pdf"))
        .output()
        .expect("preflight runs");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{report}");
    assert!(report.contains("✗ every character has a glyph: text shows the empty .notdef box"), "{report}");
}
