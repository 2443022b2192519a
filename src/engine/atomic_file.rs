//! Files that exist whole or not at all, so a crash never leaves a half file that looks complete.

use std::path::Path;

use anyhow::Context as _;

/// Writes a file so that it either exists whole or not at all: a temp name in the same
/// folder, synced, then renamed over the final name.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".inkflow-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Removes the temporary files of atomic writes (hidden `.*.tmp` files) that a killed run left
/// in `dir` and its sub-folders; returns how many. Only safe while holding the folder's lock:
/// then no other run is writing them.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let mut removed = 0;
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => folders.push(entry.path()),
                Ok(kind)
                    if kind.is_file()
                        && name.starts_with('.')
                        && name.ends_with(".tmp")
                        && std::fs::remove_file(entry.path()).is_ok() =>
                {
                    removed += 1;
                }
                _ => {}
            }
        }
    }
    removed
}
