//! Near-duplicates and difficulty through the binary (issue 33 items 4, 5): the offline book's
//! generator draws the same tiling for a few prompts, which the check finds and re-rolls, and
//! `status`, `report.html` and the review page show the book's difficulty spread.

use std::path::Path;
use std::process::Command;

use scraper::{Html, Selector};
use serde_json::Value;

use crate::review::Served;

fn inkflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("inkflow runs")
}

/// The text of every element of `html` that `css` selects.
fn texts(html: &str, css: &str) -> Vec<String> {
    let page = Html::parse_document(html);
    page.select(&Selector::parse(css).unwrap()).map(|e| e.text().collect::<String>()).collect()
}

#[tokio::test]
async fn the_offline_book_rerolls_its_near_duplicates_and_status_report_and_review_show_the_difficulty_spread()
 {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("book");
    let ran = inkflow(&["run", "pipelines/offline-book.yaml", "--output", out.to_str().unwrap()]);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let mut duplicates = Vec::new();
    let mut pages = 0;
    for folder in ["metadata", "rejected"] {
        let Ok(entries) = std::fs::read_dir(out.join(folder)) else { continue };
        for entry in entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")) {
            let meta: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
            let quality = &meta["quality"];
            assert!(quality["difficulty"]["score"].is_number(), "{quality}");
            if folder == "metadata" {
                pages += 1;
                assert_ne!(quality["problems"].as_array().unwrap().first(), Some(&"near_duplicate".into()));
            }
            if let Some(of) = quality["duplicate_of"].as_str() {
                duplicates.push((folder, of.to_owned()));
            }
        }
    }
    assert!(pages >= 32, "{pages}");
    assert!(
        duplicates.iter().any(|(folder, _)| *folder == "rejected"),
        "the repeated tilings are rejected and re-rolled: {duplicates:?}"
    );
    let status = inkflow(&["status", out.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(printed.contains("difficulty   score"), "{printed}");
    assert!(printed.contains("suits:"), "{printed}");
    let spread = printed.lines().find_map(|l| l.trim().strip_prefix("difficulty")).unwrap().trim();
    // The static report: the batch's facts hold it, as `status` prints it.
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    let names = texts(&report, "dl.facts dt");
    let values = texts(&report, "dl.facts dd");
    let shown = names.iter().position(|name| name == "Difficulty").map(|at| values[at].as_str());
    assert_eq!(shown, Some(spread), "{names:?}");
    // The review page, served for the batch.
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/offline-book.yaml");
    let served = Served::start(&out, &pipeline).await;
    let page = served.client().await.get(&served.base).send().await.unwrap().text().await.unwrap();
    assert_eq!(texts(&page, "header #difficulty"), [format!("Difficulty: {spread}")], "{page:.400}");
}
