//! Where an item's files go and how they get there: names relative to the sink's directory,
//! writes through a temporary file and a rename, and the set-aside of a replaced candidate.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use crate::stages::naming::aside_name;

/// What one item's files are called, relative to the sink's directory.
pub(super) struct Names {
    /// The rendered name without its extension (may hold `/` from the template).
    pub(super) stem: String,
    pub(super) metadata: String,
}

/// Where input `index` of an item goes, relative to the sink's directory: the first input
/// beside the metadata folder, the others in a folder named after their input.
pub(super) fn output_path(inputs: &[String], index: usize, stem: &str, extension: &str) -> String {
    match index {
        0 => format!("{stem}.{extension}"),
        _ => format!("{}/{stem}.{extension}", inputs[index]),
    }
}

/// Before candidate `number` becomes the page: moves the candidate that is the page now (with
/// its metadata) aside, and drops the aside copy of the new one, so every candidate is kept
/// exactly once. The old page goes to `rejected/` when the check rejected it or a reviewer did
/// (`rejected_in_review` is that candidate's number).
pub(super) fn set_aside_the_old_page(
    dir: &Path,
    names: &Names,
    key: &str,
    number: u32,
    rejected_in_review: Option<u64>,
) -> std::io::Result<()> {
    for rejected in [true, false] {
        for extension in ["png", "jpg", "json"] {
            let stale = dir.join(aside_name(&names.stem, u64::from(number), rejected, extension));
            if stale.exists() {
                std::fs::remove_file(stale)?;
            }
        }
    }
    let Ok(text) = std::fs::read(dir.join(&names.metadata)) else { return Ok(()) };
    let Ok(mut meta) = serde_json::from_slice::<Value>(&text) else { return Ok(()) };
    let old = meta.get("candidate").and_then(Value::as_u64).unwrap_or(0);
    let page = meta.get("output_filename").and_then(Value::as_str).map(str::to_owned);
    let ours = meta.get("key").and_then(Value::as_str) == Some(key)
        && meta.get("success") == Some(&Value::Bool(true));
    let (Some(page), true) = (page, ours && old != u64::from(number)) else { return Ok(()) };
    let rejected = meta.pointer("/quality/verdict").and_then(Value::as_str) == Some("reject")
        || rejected_in_review == Some(old);
    let extension = Path::new(&page).extension().and_then(|e| e.to_str()).unwrap_or("png").to_owned();
    let moved = aside_name(&names.stem, old, rejected, &extension);
    if let Some(parent) = dir.join(&moved).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(dir.join(&page), dir.join(&moved))?;
    meta["output_filename"] = moved.as_str().into();
    meta["outputs"] = Value::Object(Map::new());
    let text = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(aside_name(&names.stem, old, rejected, "json")), &text)
}

/// Makes temporary names unique between concurrent writers of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a hidden temporary file in the same directory and a rename,
/// so the final name only ever holds a whole file.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = parent.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let result = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&temp);
    }
    result
}
