//! Pages held back from the bucket while their rounds go on. A page that may still lose to a
//! later candidate (a rejected page that will be re-rolled, the first of best of N) is not put
//! under the page's key, where anyone reading the bucket would take it for the book's page:
//! its encoded objects wait in the output folder's cache, under both the keys it would have as
//! the page and as a candidate set aside, until the page's last candidate says which it is.
//! On disk rather than in memory, so memory stays flat and a stopped batch resumes with them.

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::objects::{Body, Object};
use crate::engine::atomic_file::write_atomically;

/// The file listing a held page's objects, in its folder.
const MANIFEST: &str = "held.json";

/// The held pages of one sink: `<cache>/<sink id>/<stem>/`.
pub(super) struct Held {
    pub(super) dir: PathBuf,
}

/// A held page's objects: as the page, and as a candidate set aside.
pub(super) struct HeldPage {
    pub(super) page: Vec<Object>,
    pub(super) aside: Vec<Object>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    page: Vec<Entry>,
    aside: Vec<Entry>,
}

/// One object as the manifest lists it; its bytes are in `file`, beside the manifest.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    file: String,
    len: u64,
    sha256: String,
    content_type: String,
}

impl Held {
    fn folder(&self, stem: &str) -> PathBuf {
        self.dir.join(stem)
    }

    /// Holds a page's objects (replacing what was held under `stem`).
    pub(super) fn put(&self, stem: &str, page: &[Object], aside: &[Object]) -> anyhow::Result<()> {
        let folder = self.folder(stem);
        let _ = fs::remove_dir_all(&folder);
        fs::create_dir_all(&folder)?;
        let entries = |prefix: &str, objects: &[Object]| -> anyhow::Result<Vec<Entry>> {
            objects
                .iter()
                .enumerate()
                .map(|(index, object)| {
                    let file = format!("{prefix}{index}");
                    match &object.body {
                        Body::Memory(bytes) => write_atomically(&folder.join(&file), bytes)?,
                        Body::File(path) => {
                            fs::copy(path, folder.join(&file))?;
                        }
                    }
                    Ok(Entry {
                        key: object.key.to_string(),
                        file,
                        len: object.len,
                        sha256: object.sha256.clone(),
                        content_type: object.content_type.clone(),
                    })
                })
                .collect()
        };
        let manifest = Manifest { page: entries("page", page)?, aside: entries("aside", aside)? };
        // The manifest goes last: a page is held only once all its bytes are.
        write_atomically(&folder.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)
    }

    /// The page held under `stem`, if any; its objects read from the held files.
    pub(super) fn get(&self, stem: &str) -> anyhow::Result<Option<HeldPage>> {
        let folder = self.folder(stem);
        let text = match fs::read(folder.join(MANIFEST)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let manifest: Manifest = serde_json::from_slice(&text)?;
        let objects = |entries: Vec<Entry>| -> anyhow::Result<Vec<Object>> {
            entries.into_iter().map(|entry| entry.object(&folder)).collect()
        };
        Ok(Some(HeldPage { page: objects(manifest.page)?, aside: objects(manifest.aside)? }))
    }

    /// Lets go of the page held under `stem`, once it is stored where it belongs.
    pub(super) fn release(&self, stem: &str) -> anyhow::Result<()> {
        match fs::remove_dir_all(self.folder(stem)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Entry {
    fn object(self, folder: &FsPath) -> anyhow::Result<Object> {
        let key = Path::parse(&self.key)?;
        Ok(Object {
            key,
            body: Body::File(folder.join(self.file)),
            len: self.len,
            sha256: self.sha256,
            content_type: self.content_type,
        })
    }
}
