//! The files the review page may show: those inside the output folder, and only images,
//! metadata and the book. A path with `..`, an absolute one, or a symlink that leads out of
//! the folder is refused, whatever the URL's encoding.

use std::path::{Component, Path, PathBuf};

/// File kinds served, with their content type: nothing that a browser would run.
const SERVED: [(&str, &str); 6] = [
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("json", "application/json"),
    ("pdf", "application/pdf"),
];

/// The file `requested` (percent-encoded, relative to `root`, the canonical output folder)
/// names, with its content type; `None` when it is not one the page may show.
pub fn resolve(root: &Path, requested: &str) -> Option<(PathBuf, &'static str)> {
    let decoded = percent_encoding::percent_decode_str(requested).decode_utf8().ok()?;
    let relative = Path::new(decoded.as_ref());
    if decoded.contains('\0') || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let extension = relative.extension()?.to_str()?.to_ascii_lowercase();
    let kind = SERVED.iter().find(|(ext, _)| *ext == extension)?.1;
    // Following symlinks, the file must still be inside the folder.
    let real = root.join(relative).canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some((real, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_folder_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir_all(root.join("metadata")).unwrap();
        std::fs::write(root.join("01.png"), b"png").unwrap();
        std::fs::write(root.join("metadata/01.json"), b"{}").unwrap();
        std::fs::write(root.join("journal.sqlite"), b"db").unwrap();
        std::fs::write(dir.path().join("secret.png"), b"secret").unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "01.png").is_some());
        assert_eq!(resolve(&root, "metadata%2F01.json").map(|(_, kind)| kind), Some("application/json"));
        for refused in [
            "../secret.png",
            "..%2Fsecret.png",
            "%2E%2E/secret.png",
            "/etc/passwd",
            "journal.sqlite",
            "missing.png",
        ] {
            assert!(resolve(&root, refused).is_none(), "{refused}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("escape.png")).unwrap();
            assert!(resolve(&root, "escape.png").is_none(), "a symlink out of the folder");
        }
    }
}
