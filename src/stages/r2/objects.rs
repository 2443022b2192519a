//! What the sink stores: an item's pages and inputs encoded and hashed, its metadata JSON, and
//! the batch files of `upload_files`, each as an object with its key, hash and content type.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::{Payload, Raster};
use crate::engine::stage::StageError;
use crate::imaging::png::PngCompression;
use crate::imaging::png::page_png;
use crate::stages::naming::{UniqueNames, aside_name, strip_extension};

/// One object to upload.
pub(super) struct Object {
    pub(super) key: Path,
    pub(super) body: Body,
    pub(super) len: u64,
    pub(super) sha256: String,
    pub(super) content_type: String,
}

/// Where an object's bytes are: encoded in memory (pages) or in a file (the book, which may be
/// large and is streamed part by part).
pub(super) enum Body {
    Memory(Bytes),
    File(PathBuf),
}

/// An item's images, encoded and hashed once, whatever keys they go under.
pub(super) struct Encoded {
    /// The item's name without its extension, which every key is made from.
    pub(super) stem: String,
    parts: Vec<Part>,
    /// The inputs that gave no image (failed or filtered), for the metadata.
    not_uploaded: Vec<serde_json::Value>,
}

/// One input's encoded image.
struct Part {
    input: String,
    extension: &'static str,
    sha256: String,
    bytes: Bytes,
    content_type: String,
}

/// Which keys an item's objects go under.
#[derive(Clone, Copy)]
pub(super) enum Keys {
    /// The page's own: `<stem>.<ext>`, `<input>/<stem>.<ext>`, `metadata/<stem>.json`.
    Page,
    /// A candidate that is not the page, as the disk sink names it (`rejected/<stem>.c<N>.png`).
    Aside { number: u32, rejected: bool },
}

/// A payload ready to hash and upload: its bytes (or the pixels to encode) and its type.
enum Prepared {
    Encoded(Bytes, &'static str, &'static str),
    Pixels(Arc<Raster>),
}

/// What goes into the bucket and under which keys: the item's name, the prefix, and how each
/// input is encoded; it knows nothing of the store.
pub(super) struct ObjectPlan {
    /// The sink's id, for messages.
    pub(super) id: String,
    /// The sink's inputs, naming each state of an item.
    pub(super) inputs: Vec<String>,
    /// The output folder `upload_files` are read from.
    pub(super) output_dir: PathBuf,
    pub(super) names: UniqueNames,
    pub(super) prefix: String,
    pub(super) content_type: Option<String>,
    pub(super) upload_metadata: bool,
    pub(super) png_compression: PngCompression,
}

impl ObjectPlan {
    /// The item's name without its extension: the stem of all its keys.
    pub(super) fn stem(&self, item: &Item) -> Result<String, StageError> {
        let name = self.names.render(item).map_err(|e| self.fail(item, &e))?;
        Ok(strip_extension(&name).to_owned())
    }

    pub(super) fn fail(&self, item: &Item, message: &str) -> StageError {
        StageError::failed(format!("sink {:?}: item {}: {message}", self.id, item.key))
    }

    pub(super) fn object_key(&self, relative: &str) -> Result<Path, String> {
        let full =
            if self.prefix.is_empty() { relative.to_owned() } else { format!("{}/{relative}", self.prefix) };
        Path::parse(&full).map_err(|e| format!("{full:?} is not a valid object key: {e}"))
    }

    /// Encodes and hashes an item's images on the CPU pool; `None` when no input gave one (a
    /// failed or filtered item stores nothing).
    pub(super) async fn encode(&self, item: &Item, states: &[State]) -> Result<Option<Encoded>, StageError> {
        let sink = &self.id;
        let stem = self.stem(item)?;
        let mut prepared = Vec::new();
        let mut not_uploaded = Vec::new();
        for (index, state) in states.iter().enumerate() {
            let input = self.inputs.get(index).cloned().unwrap_or_else(|| format!("input{index}"));
            match state {
                State::Ready(Payload::Image(raster)) => {
                    prepared.push((input, Prepared::Pixels(raster.clone())))
                }
                State::Ready(Payload::Encoded(file)) => prepared.push((
                    input,
                    Prepared::Encoded(
                        Bytes::from(file.bytes.clone()),
                        file.format.extension(),
                        file.format.mime(),
                    ),
                )),
                State::Ready(Payload::Prompt | Payload::Undecoded(_)) => {
                    return Err(StageError::failed(format!(
                        "sink {sink:?}: input {input:?} gave no pixels to upload"
                    )));
                }
                State::Failed(failure) => not_uploaded.push(json!({
                    "input": input, "state": "failed", "stage": failure.stage, "error": failure.error,
                })),
                State::Filtered { stage, reason } => not_uploaded.push(json!({
                    "input": input, "state": "filtered", "stage": stage, "reason": reason,
                })),
            }
        }
        if prepared.is_empty() {
            return Ok(None);
        }
        let (content_type, png_compression) = (self.content_type.clone(), self.png_compression);
        let parts = cpu::run(move || {
            prepared
                .into_iter()
                .map(|(input, prepared)| {
                    let (bytes, extension, mime) = match prepared {
                        Prepared::Encoded(bytes, extension, mime) => (bytes, extension, mime),
                        Prepared::Pixels(raster) => (page_png(&raster, png_compression)?, "png", "image/png"),
                    };
                    let content_type = content_type.clone().unwrap_or_else(|| mime.to_owned());
                    Ok(Part { input, extension, sha256: sha256_hex(&bytes), bytes, content_type })
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .and_then(|r| r)
        .map_err(|e| StageError::failed(format!("sink {sink:?}: item {}: {e}", item.key)))?;
        Ok(Some(Encoded { stem, parts, not_uploaded }))
    }

    /// An encoded item's objects under `keys`, its metadata JSON last: as the page, every
    /// input and the metadata; as a candidate set aside, the page image and its metadata, as
    /// the disk sink keeps one.
    pub(super) fn objects(
        &self,
        item: &Item,
        encoded: &Encoded,
        keys: Keys,
    ) -> Result<Vec<Object>, StageError> {
        let sink = &self.id;
        let stem = &encoded.stem;
        let key_of = |relative: &str| {
            self.object_key(relative).map_err(|e| StageError::failed(format!("sink {sink:?}: {e}")))
        };
        let (parts, metadata_name) = match keys {
            Keys::Page => (&encoded.parts[..], format!("metadata/{stem}.json")),
            Keys::Aside { number, rejected } => {
                (&encoded.parts[..1], aside_name(stem, u64::from(number), rejected, "json"))
            }
        };
        let mut objects = Vec::new();
        let mut listed = Vec::new();
        for (position, part) in parts.iter().enumerate() {
            let relative = match keys {
                Keys::Page if position == 0 => format!("{stem}.{}", part.extension),
                Keys::Page => format!("{}/{stem}.{}", part.input, part.extension),
                Keys::Aside { number, rejected } => {
                    aside_name(stem, u64::from(number), rejected, part.extension)
                }
            };
            let key = key_of(&relative)?;
            listed.push(json!({
                "input": part.input, "key": key.as_ref(), "content_type": part.content_type,
                "bytes": part.bytes.len(), "sha256": part.sha256,
            }));
            objects.push(Object {
                key,
                len: part.bytes.len() as u64,
                body: Body::Memory(part.bytes.clone()),
                sha256: part.sha256.clone(),
                content_type: part.content_type.clone(),
            });
        }
        if self.upload_metadata {
            let metadata = json!({
                "key": item.key,
                "seq": item.seq,
                "candidate": item.trial.number,
                "prompt": item.prompt,
                "facts": item.facts,
                "retries": item.retries,
                "generation_seconds": item.generation_time.map(|t| t.as_secs_f64()),
                "objects": listed,
                "not_uploaded": encoded.not_uploaded,
            });
            let bytes = Bytes::from(
                serde_json::to_vec_pretty(&metadata)
                    .map_err(|e| StageError::failed(format!("sink {sink:?}: metadata: {e}")))?,
            );
            objects.push(Object {
                key: key_of(&metadata_name)?,
                len: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                body: Body::Memory(bytes),
                content_type: "application/json".into(),
            });
        }
        Ok(objects)
    }

    /// One listed batch file as an object; fails when the file is missing.
    pub(super) async fn file_object(&self, relative: &str) -> Result<Object, String> {
        let sink = &self.id;
        let path = self.output_dir.join(relative);
        let shown = path.display().to_string();
        let hashed = path.clone();
        let (sha256, len) = tokio::task::spawn_blocking(move || hash_file(&hashed))
            .await
            .map_err(|e| format!("sink {sink:?}: hashing {shown} stopped: {e}"))?
            .map_err(|e| {
                format!("sink {sink:?}: cannot read {shown} (upload_files; is it written by an earlier sink?): {e}")
            })?;
        let key = self.object_key(&relative.replace('\\', "/")).map_err(|e| format!("sink {sink:?}: {e}"))?;
        Ok(Object {
            key,
            body: Body::File(path),
            len,
            sha256,
            content_type: content_type_for_file(relative).into(),
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 and length of a file, read in blocks so a large book needs little memory.
fn hash_file(path: &FsPath) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), len));
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

fn content_type_for_file(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
