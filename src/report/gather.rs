//! Collects a batch from disk: the journal's items in book order, joined by key with the
//! metadata JSON that disk sinks wrote, and the candidate and rejected images beside them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RunFacts;
use crate::engine::journal::{ItemRecord, Journal};

/// The folder name disk sinks keep per-item metadata JSON in.
const METADATA_DIR: &str = "metadata";
/// Folders, beside `metadata/`, holding the other tries of a page (kept by a quality check).
const CANDIDATES_DIR: &str = "candidates";
const REJECTED_DIR: &str = "rejected";
/// How deep under the output folder to look for sinks' `metadata/` folders.
const SEARCH_DEPTH: usize = 4;

/// Everything the page shows.
#[derive(Debug)]
pub struct Report {
    /// The output folder, as given.
    pub output_dir: String,
    /// Items per journal state, sorted by state.
    pub states: BTreeMap<String, u64>,
    /// Money spent over every run of the batch, from the journal.
    pub spent_usd: f64,
    /// Money spent per model (from the items' metadata; "unknown" when none says).
    pub spent_by_model: BTreeMap<String, f64>,
    /// What the run passed in.
    pub facts: RunFacts,
    /// One card per item, in book order.
    pub cards: Vec<Card>,
}

/// One item of the batch. Paths are relative to the output folder.
#[derive(Debug, Default)]
pub struct Card {
    pub key: String,
    pub description: String,
    /// The page's file name when it was written, else the key.
    pub name: String,
    /// The journal state: written, failed, filtered, pending...
    pub state: String,
    /// The stage that failed or filtered it.
    pub stage: Option<String>,
    /// The failure message or filter reason.
    pub message: Option<String>,
    pub attempts: u32,
    pub retries: u64,
    pub cost_usd: f64,
    pub page: Option<String>,
    pub thumbnail: Option<String>,
    pub metadata: Option<String>,
    /// The quality check's verdict (e.g. pass, warn, reject) when the pipeline has one.
    pub verdict: Option<String>,
    pub problems: Vec<String>,
    pub candidates: Vec<String>,
    pub rejected: Vec<String>,
}

/// Reads the batch in `output_dir`.
pub fn gather(output_dir: &Path, facts: RunFacts) -> anyhow::Result<Report> {
    let records = Journal::items(output_dir)?;
    let sinks = find_metadata_dirs(output_dir);
    let mut metadata: HashMap<String, Found> = HashMap::new();
    for (index, sink) in sinks.iter().enumerate() {
        for found in read_metadata(index, sink) {
            metadata.entry(found.key.clone()).or_insert(found);
        }
    }
    let mut report = Report {
        output_dir: output_dir.display().to_string(),
        states: BTreeMap::new(),
        spent_usd: 0.0,
        spent_by_model: BTreeMap::new(),
        facts,
        cards: Vec::with_capacity(records.len()),
    };
    for record in records {
        *report.states.entry(record.state.clone()).or_default() += 1;
        report.spent_usd += record.cost_usd;
        let found = metadata.remove(&record.key);
        if record.cost_usd > 0.0 {
            let model = found
                .as_ref()
                .and_then(|f| f.meta.get("model").and_then(Value::as_str))
                .unwrap_or("unknown")
                .to_owned();
            *report.spent_by_model.entry(model).or_default() += record.cost_usd;
        }
        report.cards.push(card(record, found, &sinks));
    }
    Ok(report)
}

/// A sink folder holding `metadata/`, with the other tries kept beside it.
struct SinkDir {
    /// Relative to the output folder, with `/` separators ("" for the output folder itself).
    rel: String,
    path: PathBuf,
    candidates: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

/// One metadata file.
struct Found {
    key: String,
    /// The file's stem relative to `metadata/`, which the page and its tries share.
    stem: String,
    /// Index into the sink folders.
    sink: usize,
    meta: Value,
}

fn find_metadata_dirs(output_dir: &Path) -> Vec<SinkDir> {
    let mut found = Vec::new();
    let mut stack = vec![(output_dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        if subdirs.iter().any(|d| d.file_name().is_some_and(|n| n == METADATA_DIR)) {
            found.push(SinkDir {
                rel: relative(output_dir, &dir),
                candidates: list_files(&dir.join(CANDIDATES_DIR)),
                rejected: list_files(&dir.join(REJECTED_DIR)),
                path: dir.clone(),
            });
        }
        if depth < SEARCH_DEPTH {
            stack.extend(subdirs.into_iter().rev().map(|d| (d, depth + 1)));
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    found
}

/// Every file under `top` (hidden ones aside), relative to it with `/` separators.
fn list_files(top: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    files.insert(relative(top, &entry.path()));
                }
                _ => {}
            }
        }
    }
    files
}

/// The metadata files of one sink folder that name their item's key.
fn read_metadata(index: usize, sink: &SinkDir) -> Vec<Found> {
    let root = sink.path.join(METADATA_DIR);
    list_files(&root)
        .into_iter()
        .filter_map(|rel| {
            let stem = rel.strip_suffix(".json")?.to_owned();
            let meta: Value = serde_json::from_slice(&std::fs::read(root.join(&rel)).ok()?).ok()?;
            let key = meta.get("key")?.as_str()?.to_owned();
            Some(Found { key, stem, sink: index, meta })
        })
        .collect()
}

/// `path` relative to `base`, with `/` separators.
fn relative(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// `rel` inside the sink folder `sink`, relative to the output folder.
fn in_sink(sink: &SinkDir, rel: &str) -> String {
    if sink.rel.is_empty() { rel.to_owned() } else { format!("{}/{rel}", sink.rel) }
}

/// The files of `set` that belong to the page `stem`: the stem itself with any extension, or
/// followed by `_`, `-` or `/` (numbered tries, or a folder per page).
fn tries_of(set: &BTreeSet<String>, stem: &str) -> Vec<String> {
    set.range(stem.to_owned()..)
        .take_while(|f| f.starts_with(stem))
        .filter(|f| f[stem.len()..].starts_with(['.', '_', '-', '/']))
        // A candidate's metadata sits beside its image: the card links the image.
        .filter(|f| !f.ends_with(".json"))
        .cloned()
        .collect()
}

fn card(record: ItemRecord, found: Option<Found>, sinks: &[SinkDir]) -> Card {
    let mut card = Card {
        name: record.key.clone(),
        key: record.key,
        description: record.description,
        state: record.state,
        stage: record.stage,
        message: record.error,
        attempts: record.attempts,
        cost_usd: record.cost_usd,
        ..Card::default()
    };
    let Some(found) = found else { return card };
    let sink = &sinks[found.sink];
    let meta = &found.meta;
    card.metadata = Some(in_sink(sink, &format!("{METADATA_DIR}/{}.json", found.stem)));
    card.retries = meta.get("retry_count").and_then(Value::as_u64).unwrap_or(0);
    if card.message.is_none() {
        card.message = meta.get("error_message").and_then(Value::as_str).map(str::to_owned);
    }
    let written = meta.get("success") == Some(&Value::Bool(true));
    let outputs: Vec<&str> = meta
        .get("outputs")
        .and_then(Value::as_object)
        .map(|o| o.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let named = meta.get("output_filename").and_then(Value::as_str);
    if written {
        // The page is the file the metadata names; a JPEG beside it is its thumbnail.
        let page = named.filter(|n| outputs.contains(n)).or_else(|| outputs.first().copied());
        let thumbnail = outputs.iter().copied().find(|o| o.ends_with(".jpg") || o.ends_with(".jpeg"));
        card.page = page.map(|p| in_sink(sink, p));
        card.thumbnail = thumbnail.or(page).map(|t| in_sink(sink, t));
        if let Some(name) = page {
            card.name = name.rsplit('/').next().unwrap_or(name).to_owned();
        }
    }
    if let Some(quality) = meta.get("quality") {
        card.verdict = quality.get("verdict").and_then(Value::as_str).map(str::to_owned);
        card.problems = quality
            .get("problems")
            .and_then(Value::as_array)
            .map(|problems| problems.iter().map(problem_text).collect())
            .unwrap_or_default();
    }
    card.candidates = tries_of(&sink.candidates, &found.stem)
        .iter()
        .map(|f| in_sink(sink, &format!("{CANDIDATES_DIR}/{f}")))
        .collect();
    card.rejected = tries_of(&sink.rejected, &found.stem)
        .iter()
        .map(|f| in_sink(sink, &format!("{REJECTED_DIR}/{f}")))
        .collect();
    card
}

/// A problem as a line of text: a string as is, an object by its message or description.
fn problem_text(problem: &Value) -> String {
    match problem {
        Value::String(s) => s.clone(),
        Value::Object(o) => ["message", "description", "kind", "code"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map_or_else(|| problem.to_string(), str::to_owned),
        other => other.to_string(),
    }
}
