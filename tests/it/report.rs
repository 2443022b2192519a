//! The batch report, parsed with an HTML5 parser: one card per item in book order, every
//! link resolving to a file of the batch, the counts and failure messages from the journal,
//! the quality verdict and other tries when a check left them, and no external URL.

use std::path::Path;
use std::sync::Arc;

use crate::common::{Probe, registry, write_pipeline};
use inkflow::engine::journal::{Journal, ResumePolicy};
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::engine::run_context::RunContext;
use inkflow::engine::runtime::{self, RunSettings};
use inkflow::report::{REPORT_FILE, RunFacts, write_report};
use scraper::{Html, Selector};
use serde_json::{Value, json};

const PIPELINE: &str = "version: 1
sources:
  src: { kind: count, items: 6 }
stages:
  a: { kind: draw, inputs: [src], fail: [3] }
sinks:
  pages: { kind: disk, inputs: [a], dir: pages, filename: \"{section}_{number:03}.png\" }
";

/// Runs the six-item batch (item 3 fails) into `dir` with the real journal and disk sink.
async fn run_batch(dir: &Path) {
    let summary = run_pipeline(dir, PIPELINE).await;
    assert_eq!((summary.succeeded, summary.failed), (5, 1));
}

/// Runs `text` into `dir` with the real journal and disk sink.
async fn run_pipeline(dir: &Path, text: &str) -> inkflow::engine::summary::Summary {
    let probe = Arc::new(Probe::default());
    let mut registry = registry(&probe);
    registry.register(Arc::new(inkflow::stages::disk::Disk));
    let file = write_pipeline(dir, text);
    let pipeline = pipeline::load(&file, &LoadOptions::default(), &registry).unwrap();
    let journal = Arc::new(Journal::open(dir, &pipeline, ResumePolicy::default()).unwrap());
    let batch = runtime::build(pipeline, &registry, dir, false).unwrap();
    let settings = RunSettings {
        context: RunContext { submissions: Some(journal.clone()), ..RunContext::default() },
        observer: Some(journal),
    };
    batch.run(settings).await.unwrap()
}

fn select<'a>(page: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    page.select(&Selector::parse(css).unwrap()).collect()
}

fn text(element: &scraper::ElementRef) -> String {
    element.text().collect::<String>()
}

fn percent_decoded(url: &str) -> String {
    let bytes = url.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&url[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A quality check's verdict on page 2, and the tries it kept beside the pages.
fn leave_quality_results(dir: &Path) {
    let meta_path = dir.join("pages/metadata/t_002.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["quality"] = json!({
        "verdict": "warn",
        "problems": ["gray pixels: 3.1%", {"message": "open shape near the top"}],
        "metrics": {"gray_fraction": 0.031}
    });
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    for (folder, name) in
        [("candidates", "t_002_1.png"), ("candidates", "t_002_2.png"), ("rejected", "t_002_0.png")]
    {
        std::fs::create_dir_all(dir.join("pages").join(folder)).unwrap();
        std::fs::write(dir.join("pages").join(folder).join(name), b"png").unwrap();
    }
    // Another page's try must not be shown as page 2's.
    std::fs::write(dir.join("pages/candidates/t_0021.png"), b"png").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_every_item_in_order_with_working_links_and_no_network() {
    let dir = tempfile::tempdir().unwrap();
    run_batch(dir.path()).await;
    leave_quality_results(dir.path());
    let facts = RunFacts { summary: None, estimate_usd: Some(1.5), budget_usd: Some(4.0) };
    let path = write_report(dir.path(), facts).unwrap();
    assert_eq!(path, dir.path().join(REPORT_FILE));
    let html = std::fs::read_to_string(&path).unwrap();
    let page = Html::parse_document(&html);
    assert!(page.errors.is_empty(), "HTML5 parse errors: {:?}", page.errors);

    // One card per item, in book order.
    let cards = select(&page, "ol.grid > li.card");
    let ids: Vec<&str> = cards.iter().map(|c| c.value().attr("id").unwrap()).collect();
    let expected: Vec<String> = (1..=6).map(|n| format!("item-t-{n:05}")).collect();
    assert_eq!(ids, expected);

    // The counts and the money, from the journal and the run.
    let facts: Vec<(String, String)> = select(&page, "dl.facts > div")
        .iter()
        .map(|d| (text(&select_in(d, "dt")), text(&select_in(d, "dd"))))
        .collect();
    for expected in
        [("Items", "6"), ("Written", "5"), ("Failed", "1"), ("Estimated", "$1.500"), ("Budget", "$4.000")]
    {
        assert!(
            facts.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {facts:?}"
        );
    }

    // The failure, with its stage and message, in the list and on its card.
    let failures = select(&page, "ul.failures > li");
    assert_eq!(failures.len(), 1);
    assert_eq!(text(&failures[0]), "t-00003 failed at a: refused 3");
    assert_eq!(cards[2].value().attr("data-tags"), Some("failed"));
    assert!(text(&cards[2]).contains("a: refused 3"));
    assert!(select_all_in(&cards[2], "img").is_empty(), "a failed item has no page to show");

    // The quality verdict, its problems and the other tries of page 2.
    let second = &cards[1];
    assert_eq!(second.value().attr("data-tags"), Some("warn"));
    let card_text = text(second);
    assert!(card_text.contains("quality: warn"), "{card_text}");
    assert!(card_text.contains("gray pixels: 3.1%") && card_text.contains("open shape near the top"));
    let tries: Vec<&str> =
        select_all_in(second, "details a").iter().map(|a| a.value().attr("href").unwrap()).collect();
    assert_eq!(
        tries,
        ["pages/candidates/t_002_1.png", "pages/candidates/t_002_2.png", "pages/rejected/t_002_0.png"]
    );

    // Written cards show their thumbnail with alt text and link the page and the metadata.
    for card in [&cards[0], &cards[1], &cards[3]] {
        let img = select_in(card, "img");
        assert!(img.value().attr("alt").is_some_and(|alt| alt.starts_with("Page: ")));
        let links: Vec<String> = select_all_in(card, "a").iter().map(text).collect();
        assert!(links.contains(&"page".to_owned()) && links.contains(&"metadata".to_owned()), "{links:?}");
    }

    // Every link and image resolves: to a file of the batch, or to a card of this page.
    let mut checked = 0;
    for element in select(&page, "[href], [src]") {
        let target = element.value().attr("href").or(element.value().attr("src")).unwrap();
        assert!(!target.contains("//") && !target.contains(':'), "not a relative link: {target}");
        match target.strip_prefix('#') {
            Some(id) => assert_eq!(select(&page, &format!("[id=\"{id}\"]")).len(), 1, "{target}"),
            None => assert!(dir.path().join(percent_decoded(target)).is_file(), "{target} is not a file"),
        }
        checked += 1;
    }
    assert!(checked >= 5 * 3 + 1 + 3, "only {checked} links");
    // No stylesheet, script or font comes from elsewhere.
    assert!(select(&page, "link, script[src], iframe, object, embed").is_empty());
    assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("url("));
}

fn select_in<'a>(element: &scraper::ElementRef<'a>, css: &str) -> scraper::ElementRef<'a> {
    select_all_in(element, css).into_iter().next().unwrap_or_else(|| panic!("no {css}"))
}

fn select_all_in<'a>(element: &scraper::ElementRef<'a>, css: &str) -> Vec<scraper::ElementRef<'a>> {
    element.select(&Selector::parse(css).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_batch_reports_every_item_not_only_the_last_run() {
    let dir = tempfile::tempdir().unwrap();
    run_batch(dir.path()).await;
    // The second run runs nothing: it skips the written items and keeps the failed one, which
    // its summary still lists; the report covers the whole batch.
    let probe = Arc::new(Probe::default());
    let mut registry = registry(&probe);
    registry.register(Arc::new(inkflow::stages::disk::Disk));
    let file = write_pipeline(dir.path(), PIPELINE);
    let pipeline = pipeline::load(&file, &LoadOptions::default(), &registry).unwrap();
    let journal = Arc::new(Journal::open(dir.path(), &pipeline, ResumePolicy::default()).unwrap());
    let batch = runtime::build(pipeline, &registry, dir.path(), false).unwrap();
    let settings = RunSettings { context: RunContext::default(), observer: Some(journal) };
    let summary = batch.run(settings).await.unwrap();
    assert_eq!((summary.skipped, summary.failed), (5, 1));
    let facts = RunFacts { summary: serde_json::to_value(&summary).ok(), ..RunFacts::default() };
    let html = std::fs::read_to_string(write_report(dir.path(), facts).unwrap()).unwrap();
    let page = Html::parse_document(&html);
    assert_eq!(select(&page, "li.card").len(), 6);
    assert_eq!(select(&page, "ul.failures > li").len(), 1);
    assert_eq!(select(&page, "li.card img").len(), 5);
}

#[test]
fn a_folder_without_a_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = write_report(dir.path(), RunFacts::default()).unwrap_err().to_string();
    assert!(error.contains("has no journal"), "{error}");
    assert!(!dir.path().join(REPORT_FILE).exists());
}

/// The cards of a page file, its failures list and every link in it, parsed.
struct PageFile {
    html: Html,
    bytes: usize,
}

impl PageFile {
    fn read(dir: &Path, name: &str) -> PageFile {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let html = Html::parse_document(&text);
        assert!(html.errors.is_empty(), "{name}: HTML5 parse errors: {:?}", html.errors);
        PageFile { html, bytes: text.len() }
    }

    fn card_ids(&self) -> Vec<String> {
        select(&self.html, "ol.grid > li.card")
            .iter()
            .map(|c| c.value().attr("id").unwrap().to_owned())
            .collect()
    }

    fn hrefs(&self, css: &str) -> Vec<String> {
        select(&self.html, css).iter().map(|a| a.value().attr("href").unwrap().to_owned()).collect()
    }

    fn buttons(&self) -> Vec<String> {
        select(&self.html, ".filters button").iter().map(text).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_batch_is_paged_with_every_item_reachable_and_exact_counts() {
    use inkflow::report::CARDS_PER_PAGE;
    let dir = tempfile::tempdir().unwrap();
    let total = 2 * CARDS_PER_PAGE + 345;
    // Failures on every page file: one on the first, one on the second, two on the last.
    let failing = [3, CARDS_PER_PAGE + 500, 2 * CARDS_PER_PAGE + 300, 2 * CARDS_PER_PAGE + 301];
    let pipeline = format!(
        "version: 1
sources:
  src: {{ kind: count, items: {total} }}
stages:
  a: {{ kind: draw, inputs: [src], fail: {failing:?} }}
sinks:
  pages: {{ kind: disk, inputs: [a], dir: pages, filename: \"{{section}}_{{number:05}}.png\" }}
"
    );
    let summary = run_pipeline(dir.path(), &pipeline).await;
    assert_eq!((summary.succeeded, summary.failed), ((total - 4) as u64, 4));
    // A verdict on the second and on the last page file.
    let warned = CARDS_PER_PAGE + 1;
    let rejected = 2 * CARDS_PER_PAGE + 200;
    for (number, verdict) in [(warned, "warn"), (rejected, "reject")] {
        let meta_path = dir.path().join(format!("pages/metadata/t_{number:05}.json"));
        let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta["quality"] = json!({ "verdict": verdict, "problems": ["gray pixels"] });
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }
    // A page file an earlier, bigger report left is not one of this batch's.
    std::fs::write(dir.path().join("report-4.html"), "stale").unwrap();

    write_report(dir.path(), RunFacts::default()).unwrap();
    let names = ["report.html", "report-2.html", "report-3.html"];
    let files: Vec<PageFile> = names.iter().map(|name| PageFile::read(dir.path(), name)).collect();
    assert!(!dir.path().join("report-4.html").exists(), "the stale page file is removed");

    // Capped: the first file holds the first cards only, and no file grows with the batch.
    let ids: Vec<Vec<String>> = files.iter().map(PageFile::card_ids).collect();
    assert_eq!(ids.iter().map(Vec::len).collect::<Vec<_>>(), [CARDS_PER_PAGE, CARDS_PER_PAGE, 345]);
    for (name, file) in names.iter().zip(&files) {
        assert!(file.bytes < 2 * 1024 * 1024, "{name} is {} bytes", file.bytes);
    }
    // Every item is reachable, once, in book order.
    let expected: Vec<String> = (1..=total).map(|n| format!("item-t-{n:05}")).collect();
    assert_eq!(ids.concat(), expected);

    // The counts are the batch's on every file; the filters count the file's own cards.
    for file in &files {
        let facts: Vec<String> = select(&file.html, "dl.facts > div").iter().map(text).collect();
        for fact in [format!("Items{total}"), format!("Written{}", total - 4), "Failed4".to_owned()] {
            assert!(facts.contains(&fact), "{fact} not in {facts:?}");
        }
    }
    assert_eq!(files[0].buttons(), ["All (1000)", "Failed or filtered (1)", "Warn (0)", "Reject (0)"]);
    assert_eq!(files[2].buttons(), ["All (345)", "Failed or filtered (2)", "Warn (0)", "Reject (1)"]);

    // report.html lists every page file with what needs a look on it, and every problem of the
    // batch, linked to the file that shows its card.
    let nav: Vec<String> = select(&files[0].html, "nav.files li").iter().map(text).collect();
    assert_eq!(
        nav,
        [
            "items 1–1000: 1 failed or filtered".to_owned(),
            "items 1001–2000: 1 failed or filtered, 1 warn".to_owned(),
            format!("items 2001–{total}: 2 failed or filtered, 1 reject"),
        ]
    );
    assert_eq!(files[0].hrefs("nav.files a"), names);
    let listed = files[0].hrefs("ul.failures a");
    let expected: Vec<String> = failing
        .iter()
        .map(|n| {
            let file = if *n <= CARDS_PER_PAGE { "" } else { names[(n - 1) / CARDS_PER_PAGE] };
            format!("{file}#item-t-{n:05}")
        })
        .collect();
    assert_eq!(listed, expected);
    // The other files list their own problems and lead back to the first and to each other.
    assert_eq!(files[2].hrefs("ul.failures a"), ["#item-t-02300", "#item-t-02301"]);
    assert_eq!(files[1].hrefs("nav.files a"), ["report.html", "report-3.html"]);
    assert_eq!(files[2].hrefs("nav.files a"), ["report.html", "report-2.html"]);

    // Every link resolves: to a file of the batch, or to a card of the page file it names.
    for (name, file) in names.iter().zip(&files) {
        for element in select(&file.html, "[href], [src]") {
            let target = element.value().attr("href").or(element.value().attr("src")).unwrap();
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let holder = if path.is_empty() { *name } else { path };
            match names.iter().position(|n| *n == holder) {
                Some(index) if !anchor.is_empty() => {
                    assert!(ids[index].iter().any(|id| id == anchor), "{name}: {target} names no card")
                }
                Some(_) => {}
                None => assert!(
                    dir.path().join(percent_decoded(path)).is_file(),
                    "{name}: {target} is not a file"
                ),
            }
        }
    }
}
