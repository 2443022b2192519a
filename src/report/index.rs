//! The metadata files of a batch's disk sinks, indexed by item key in a temporary SQLite
//! database. SQLite keeps it in a nameless file of its own, removed when it is closed, and holds
//! a small cache of it in memory, so a card is looked up by key in the same memory whatever the
//! size of the batch. It is built by walking the sinks' folders once, one file at a time.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde_json::Value;

/// The folder name disk sinks keep per-item metadata JSON in.
const METADATA_DIR: &str = "metadata";
/// Folders, beside `metadata/`, holding the other tries of a page (kept by a quality check).
const CANDIDATES_DIR: &str = "candidates";
const REJECTED_DIR: &str = "rejected";
/// How deep under the output folder to look for sinks' `metadata/` folders.
const SEARCH_DEPTH: usize = 4;

/// `meta`: what a card shows of each item's metadata file, paths relative to the output folder.
/// `tries`: every file of the sinks' candidates and rejected folders.
const SCHEMA: &str = "PRAGMA temp_store = FILE;
    ATTACH DATABASE '' AS idx;
    PRAGMA idx.journal_mode = OFF;
    PRAGMA idx.synchronous = OFF;
    PRAGMA idx.cache_size = -2048;
    CREATE TABLE idx.meta (
        key TEXT PRIMARY KEY, sink INTEGER NOT NULL, stem TEXT NOT NULL, retries INTEGER NOT NULL,
        message TEXT, page TEXT, thumbnail TEXT, name TEXT, verdict TEXT, problems TEXT, model TEXT
    ) WITHOUT ROWID;
    CREATE TABLE idx.tries (
        sink INTEGER NOT NULL, folder TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (sink, folder, name)
    ) WITHOUT ROWID;";

/// Two metadata files naming one key: the first sink folder's wins, then the first file's.
const INSERT_META: &str = "INSERT INTO idx.meta
        (key, sink, stem, retries, message, page, thumbnail, name, verdict, problems, model)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT(key) DO UPDATE SET sink = excluded.sink, stem = excluded.stem,
        retries = excluded.retries, message = excluded.message, page = excluded.page,
        thumbnail = excluded.thumbnail, name = excluded.name, verdict = excluded.verdict,
        problems = excluded.problems, model = excluded.model
    WHERE excluded.sink < meta.sink OR (excluded.sink = meta.sink AND excluded.stem < meta.stem)";

/// What a card shows from its item's metadata file. Paths are relative to the output folder.
#[derive(Debug, Default)]
pub(super) struct Metadata {
    /// The metadata file itself.
    pub path: String,
    pub retries: u64,
    /// The failure message the metadata records.
    pub message: Option<String>,
    pub page: Option<String>,
    pub thumbnail: Option<String>,
    /// The page's file name, when it was written.
    pub name: Option<String>,
    pub verdict: Option<String>,
    pub problems: Vec<String>,
    pub candidates: Vec<String>,
    pub rejected: Vec<String>,
}

/// The little a summary of the batch needs of an item's metadata.
pub(super) struct Brief {
    pub verdict: Option<String>,
    pub model: Option<String>,
}

/// A sink folder holding `metadata/`, with the other tries kept beside it.
struct SinkDir {
    /// Relative to the output folder, with `/` separators ("" for the output folder itself).
    rel: String,
    path: PathBuf,
}

/// The metadata of every sink folder of a batch, by item key.
pub(super) struct MetadataIndex {
    conn: Connection,
    sinks: Vec<SinkDir>,
}

impl MetadataIndex {
    /// Reads the metadata and the tries the disk sinks left under `output_dir`.
    pub fn build(output_dir: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory()
            .and_then(|conn| conn.execute_batch(SCHEMA).map(|()| conn))
            .context("cannot make a temporary index of the batch's metadata")?;
        let index = MetadataIndex { conn, sinks: find_metadata_dirs(output_dir) };
        index.fill().context("cannot index the batch's metadata")?;
        Ok(index)
    }

    fn fill(&self) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let mut insert_meta = tx.prepare(INSERT_META)?;
        let mut insert_try =
            tx.prepare("INSERT OR IGNORE INTO idx.tries (sink, folder, name) VALUES (?1, ?2, ?3)")?;
        for (index, sink) in self.sinks.iter().enumerate() {
            let root = sink.path.join(METADATA_DIR);
            each_file(&root, &mut |rel, path| {
                let Some(found) = read_metadata(sink, rel, path) else { return Ok(()) };
                insert_meta.execute(params![
                    found.key,
                    index as i64,
                    found.stem,
                    found.retries as i64,
                    found.message,
                    found.page,
                    found.thumbnail,
                    found.name,
                    found.verdict,
                    found.problems,
                    found.model
                ])?;
                Ok(())
            })?;
            for folder in [CANDIDATES_DIR, REJECTED_DIR] {
                each_file(&sink.path.join(folder), &mut |rel, _| {
                    insert_try.execute(params![index as i64, folder, rel]).map(drop)
                })?;
            }
        }
        drop((insert_meta, insert_try));
        tx.commit()
    }

    /// The verdict and model of item `key`'s metadata, if a sink wrote one.
    pub fn brief(&self, key: &str) -> anyhow::Result<Option<Brief>> {
        let mut stmt = self.conn.prepare_cached("SELECT verdict, model FROM idx.meta WHERE key = ?1")?;
        Ok(stmt.query_row([key], |r| Ok(Brief { verdict: r.get(0)?, model: r.get(1)? })).optional()?)
    }

    /// What item `key`'s metadata says, with the other tries of its page.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Metadata>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sink, stem, retries, message, page, thumbnail, name, verdict, problems
             FROM idx.meta WHERE key = ?1",
        )?;
        let row = stmt
            .query_row([key], |r| {
                let sink: i64 = r.get(0)?;
                let stem: String = r.get(1)?;
                let problems: Option<String> = r.get(8)?;
                let meta = Metadata {
                    path: String::new(),
                    retries: r.get::<_, i64>(2)? as u64,
                    message: r.get(3)?,
                    page: r.get(4)?,
                    thumbnail: r.get(5)?,
                    name: r.get(6)?,
                    verdict: r.get(7)?,
                    problems: problems.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default(),
                    candidates: Vec::new(),
                    rejected: Vec::new(),
                };
                Ok((sink as usize, stem, meta))
            })
            .optional()?;
        let Some((sink_index, stem, mut meta)) = row else { return Ok(None) };
        let sink = &self.sinks[sink_index];
        meta.path = in_sink(sink, &format!("{METADATA_DIR}/{stem}.json"));
        meta.candidates = self.tries_of(sink_index, CANDIDATES_DIR, &stem)?;
        meta.rejected = self.tries_of(sink_index, REJECTED_DIR, &stem)?;
        Ok(Some(meta))
    }

    /// The files of `folder` that belong to the page `stem`: the stem itself with any extension,
    /// or followed by `_`, `-` or `/` (numbered tries, or a folder per page), as paths relative to
    /// the output folder.
    fn tries_of(&self, sink: usize, folder: &str, stem: &str) -> anyhow::Result<Vec<String>> {
        // Names starting with the stem and one of `-./_`, which sort between these two bounds.
        let (from, to) = (format!("{stem}-"), format!("{stem}`"));
        let mut stmt = self.conn.prepare_cached(
            "SELECT name FROM idx.tries WHERE sink = ?1 AND folder = ?2 AND name >= ?3 AND name < ?4
             ORDER BY name",
        )?;
        let names = stmt.query_map(params![sink as i64, folder, from, to], |r| r.get::<_, String>(0))?;
        let mut tries = Vec::new();
        for name in names {
            let name = name?;
            // A candidate's metadata sits beside its image: the card links the image.
            if name[stem.len()..].starts_with(['.', '_', '-', '/']) && !name.ends_with(".json") {
                tries.push(in_sink(&self.sinks[sink], &format!("{folder}/{name}")));
            }
        }
        Ok(tries)
    }
}

/// One metadata file, as the index keeps it.
struct Found {
    key: String,
    /// The file's stem relative to `metadata/`, which the page and its tries share.
    stem: String,
    retries: u64,
    message: Option<String>,
    page: Option<String>,
    thumbnail: Option<String>,
    name: Option<String>,
    verdict: Option<String>,
    /// The quality problems as a JSON array of lines of text.
    problems: Option<String>,
    model: Option<String>,
}

/// The metadata file `rel` of `sink`, when it is JSON naming its item's key.
fn read_metadata(sink: &SinkDir, rel: &str, path: &Path) -> Option<Found> {
    let stem = rel.strip_suffix(".json")?.to_owned();
    let meta: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let key = meta.get("key")?.as_str()?.to_owned();
    let text = |field: &str| meta.get(field).and_then(Value::as_str).map(str::to_owned);
    let mut found = Found {
        key,
        stem,
        retries: meta.get("retry_count").and_then(Value::as_u64).unwrap_or(0),
        message: text("error_message"),
        page: None,
        thumbnail: None,
        name: None,
        verdict: None,
        problems: None,
        model: text("model"),
    };
    if meta.get("success") == Some(&Value::Bool(true)) {
        let outputs: Vec<&str> = meta
            .get("outputs")
            .and_then(Value::as_object)
            .map(|o| o.values().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let named = meta.get("output_filename").and_then(Value::as_str);
        // The page is the file the metadata names; a JPEG beside it is its thumbnail.
        let page = named.filter(|n| outputs.contains(n)).or_else(|| outputs.first().copied());
        let thumbnail = outputs.iter().copied().find(|o| o.ends_with(".jpg") || o.ends_with(".jpeg"));
        found.page = page.map(|p| in_sink(sink, p));
        found.thumbnail = thumbnail.or(page).map(|t| in_sink(sink, t));
        found.name = page.map(|name| name.rsplit('/').next().unwrap_or(name).to_owned());
    }
    if let Some(quality) = meta.get("quality") {
        found.verdict = quality.get("verdict").and_then(Value::as_str).map(str::to_owned);
        let problems: Vec<String> = quality
            .get("problems")
            .and_then(Value::as_array)
            .map(|problems| problems.iter().map(problem_text).collect())
            .unwrap_or_default();
        found.problems = serde_json::to_string(&problems).ok();
    }
    Some(found)
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
            found.push(SinkDir { rel: relative(output_dir, &dir), path: dir.clone() });
        }
        if depth < SEARCH_DEPTH {
            stack.extend(subdirs.into_iter().rev().map(|d| (d, depth + 1)));
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    found
}

/// Hands `visit` every file under `top` (hidden ones aside) as it is found, with its path
/// relative to `top` (`/` separators): a folder of any size is walked without listing it whole.
fn each_file(top: &Path, visit: &mut dyn FnMut(&str, &Path) -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => visit(&relative(top, &entry.path()), &entry.path())?,
                _ => {}
            }
        }
    }
    Ok(())
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
