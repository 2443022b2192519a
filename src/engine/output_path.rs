//! The one rule for every path a pipeline writes: it names a place inside the output folder
//! (relative, no `..`) that is not one of inkflow's own files. Another folder is what
//! `--output` is for. Kinds take such options as [`OutputPath`], so `validate` refuses a bad one
//! at its line and column, and a `--set` value goes through the same check.

use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The journal's database, in the output folder.
pub const JOURNAL_FILE: &str = "journal.sqlite";
/// The run's log, in the output folder.
pub const LOG_FILE: &str = "inkflow.log";
/// The lock a run holds on its output folder ([`super::output_lock`]).
pub const LOCK_FILE: &str = "inkflow.lock";
/// The review page every run writes.
pub const REPORT_FILE: &str = "report.html";
/// The folder of inkflow's caches (generated originals, the book's encoded pages).
pub const CACHE_DIR: &str = "cache";

/// A further page file of the review page of a big batch (`number` from 2): `report-2.html`...
pub fn report_page_file(number: usize) -> String {
    format!("report-{number}.html")
}

/// The number of a further page file of the review page ([`report_page_file`]), which only
/// inkflow writes.
pub fn report_page_number(name: &str) -> Option<usize> {
    let number = name.strip_prefix("report-")?.strip_suffix(".html")?;
    number.bytes().all(|b| b.is_ascii_digit()).then(|| number.parse().ok()).flatten()
}

/// Longest name of one folder or file in a path a pipeline writes, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Names at the top of the output folder that only inkflow writes. SQLite keeps `-wal` and
/// `-shm` files beside the journal, so the journal's name is reserved as a prefix.
fn own_file(first: &str) -> Option<&'static str> {
    let first = first.to_ascii_lowercase(); // a case-insensitive file system (macOS) sees one file
    if first.starts_with(JOURNAL_FILE) {
        return Some(JOURNAL_FILE);
    }
    if report_page_number(&first).is_some() {
        return Some(REPORT_FILE);
    }
    [LOG_FILE, LOCK_FILE, REPORT_FILE, CACHE_DIR].into_iter().find(|own| first == *own)
}

/// A path inside the output folder that a component may write: relative, without `..`, and not
/// one of inkflow's own files. `.` segments are dropped, so `./pages` and `pages` are one path.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputPath(PathBuf);

impl OutputPath {
    /// Checks `text` as a path to write inside the output folder.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the path is empty".into());
        }
        // Checked on both separators whatever the platform, so a pipeline valid on Linux is
        // valid on Windows; `:` would name a drive or an alternate data stream there.
        if text.starts_with(['/', '\\']) || text.contains(':') {
            return Err(format!(
                "{text:?} must be a relative path inside the output folder (use --output for another folder)"
            ));
        }
        let mut clean = PathBuf::new();
        for segment in text.split(['/', '\\']) {
            match segment {
                "" | "." => {}
                ".." => {
                    return Err(format!(
                        "{text:?} must not contain '..': it would write outside the output folder \
                         (use --output for another folder)"
                    ));
                }
                segment if segment.len() > MAX_SEGMENT_BYTES => {
                    return Err(format!(
                        "{text:?} has a name longer than {MAX_SEGMENT_BYTES} bytes (file systems allow 255, \
                         with room kept for inkflow's temporary names)"
                    ));
                }
                segment => clean.push(segment),
            }
        }
        if let Some(first) = clean.components().next().and_then(|c| c.as_os_str().to_str())
            && let Some(own) = own_file(first)
        {
            return Err(format!("{text:?} is inkflow's own {own}; choose another name"));
        }
        Ok(OutputPath(clean))
    }

    /// A path below this one (a sink's sub-folder or file), checked by the same rule.
    pub fn join(&self, below: &str) -> Result<Self, String> {
        let base = self.0.to_string_lossy().replace('\\', "/");
        OutputPath::new(&if base.is_empty() { below.to_owned() } else { format!("{base}/{below}") })
    }

    /// The relative path (empty for the output folder itself).
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// Where it is, under the output folder of a run.
    pub fn under(&self, output_dir: &Path) -> PathBuf {
        output_dir.join(&self.0)
    }

    /// True when `other` is this path or lies below it.
    pub fn contains(&self, other: &OutputPath) -> bool {
        let lower =
            |p: &Path| p.components().map(|c| c.as_os_str().to_string_lossy().to_lowercase()).collect();
        let (outer, inner): (Vec<String>, Vec<String>) = (lower(&self.0), lower(&other.0));
        inner.starts_with(&outer)
    }
}

/// A place in the output folder a component writes (a file, or a folder it owns whole), and
/// the option that put it there, for the message when another component writes there too.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The option's dotted path within the component (`path`, `dir`, `inputs`).
    pub option: String,
    /// The place.
    pub path: OutputPath,
}

impl Claim {
    /// `path`, claimed by `option`.
    pub fn new(option: &str, path: OutputPath) -> Self {
        Claim { option: option.to_owned(), path }
    }

    /// True when the two places are one, or one holds the other.
    pub fn overlaps(&self, other: &Claim) -> bool {
        self.path.contains(&other.path) || other.path.contains(&self.path)
    }
}

impl fmt::Display for OutputPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.components().next() {
            None => f.write_str("."),
            Some(_) => write!(f, "{}", self.0.display()),
        }
    }
}

impl Serialize for OutputPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for OutputPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OutputPath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "x-inkflow-type": "path inside the output folder"})
    }
}

impl<'de> Deserialize<'de> for OutputPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OutputPath::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_output_folder_are_kept_without_dot_segments() {
        assert_eq!(OutputPath::new("./pages//a").unwrap().as_path(), Path::new("pages/a"));
        assert_eq!(OutputPath::new(".").unwrap().to_string(), ".");
        assert_eq!(OutputPath::new("books/cache.pdf").unwrap().to_string(), "books/cache.pdf");
    }

    #[test]
    fn escapes_and_inkflows_own_files_are_refused() {
        for bad in [
            "../escape.pdf",
            "/tmp/book.pdf",
            "\\\\server\\share",
            "C:book.pdf",
            "a/../../b",
            "pages/..",
            "",
            "journal.sqlite",
            "journal.sqlite-wal",
            "./Journal.SQLite",
            "cache",
            "cache/raw/x",
            "inkflow.log",
            "inkflow.lock",
            "report.html",
            "report-2.html",
            "Report-17.HTML",
            &format!("books/{}.pdf", "ü".repeat(101)),
        ] {
            assert!(OutputPath::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn join_checks_the_result_and_contains_compares_by_segment() {
        let root = OutputPath::new(".").unwrap();
        assert!(root.join("cache").is_err());
        let pages = OutputPath::new("pages").unwrap();
        assert!(pages.join("cache").is_ok());
        assert!(pages.contains(&pages.join("metadata/x.json").unwrap()));
        assert!(!pages.contains(&OutputPath::new("pages2/x").unwrap()));
        assert!(root.contains(&pages));
    }
}
