//! Local reference images reach fal as URLs of its storage. Each content is uploaded once per
//! batch: the items that need it meanwhile wait for that one upload, its URL is journaled by
//! content hash so a resumed batch sends it again instead of uploading, and a file whose
//! content changed has another hash, so it is uploaded anew.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::client::QueueClient;
use super::key::Environment;
use super::options::check_base_url;
use super::references::{LORA_FILE_EXTENSION, Source, source};
use super::retry::{Call, GaveUp, RetryPolicy};
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::run_context::RunContext;

/// fal's REST host, where its storage API lives (as fal's own clients call it).
const DEFAULT_REST_URL: &str = "https://rest.alpha.fal.ai";

/// The largest reference file read: fal's single-request upload takes files this size, and
/// a wrong path such as `/dev/zero` fails at once instead of filling memory.
const MAX_REFERENCE_BYTES: u64 = 32 << 20;

/// The largest LoRA weights file read: fal's LoRA endpoints load LoRAs of a few hundred MB at
/// most, and anything bigger is more likely a wrong file than weights.
const MAX_LORA_BYTES: u64 = 1 << 30;

/// A local file sent to fal (a reference image or LoRA weights), read and hashed.
pub(super) struct LocalFile {
    /// Hex SHA-256 of its content: what the journal and the raw cache know it by.
    pub sha256: String,
    bytes: Vec<u8>,
    name: String,
    content_type: &'static str,
}

impl LocalFile {
    /// Reads `path`: LoRA weights (a `.safetensors` file), else an image fal reads (PNG, JPEG,
    /// WebP or GIF).
    pub(super) fn read(path: &Path) -> Result<LocalFile, String> {
        let shown = path.display();
        let is_lora = path.extension().is_some_and(|e| e == LORA_FILE_EXTENSION);
        let (what, max_bytes) =
            if is_lora { ("LoRA weights", MAX_LORA_BYTES) } else { ("reference image", MAX_REFERENCE_BYTES) };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(max_bytes + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the {what} {shown}: {e}"))?;
        if bytes.len() as u64 > max_bytes {
            return Err(format!("the {what} {shown} is over {} MiB: make it smaller", max_bytes >> 20));
        }
        let content_type = match image::guess_format(&bytes) {
            _ if is_lora => {
                check_safetensors(&bytes)
                    .map_err(|e| format!("the LoRA weights {shown} are not safetensors: {e}"))?;
                "application/octet-stream"
            }
            Ok(image::ImageFormat::Png) => "image/png",
            Ok(image::ImageFormat::Jpeg) => "image/jpeg",
            Ok(image::ImageFormat::WebP) => "image/webp",
            Ok(image::ImageFormat::Gif) => "image/gif",
            _ => return Err(format!("the reference {shown} is not a PNG, JPEG, WebP or GIF image")),
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let name = path.file_name().map_or_else(|| "reference".into(), |n| n.to_string_lossy().into_owned());
        Ok(LocalFile { sha256, bytes, name, content_type })
    }
}

/// Checks the safetensors layout: a little-endian u64 header size, then that many bytes of a
/// JSON object, within the file. A wrong file fails here, before anything is uploaded or paid.
fn check_safetensors(bytes: &[u8]) -> Result<(), String> {
    let size = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let header = size
        .and_then(|size| usize::try_from(size).ok())
        .and_then(|size| bytes.get(8..8usize.checked_add(size)?))
        .ok_or("its header is cut short")?;
    match serde_json::from_slice::<serde_json::Value>(header) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err("its header is not a JSON object".into()),
    }
}

/// One file of an item (reference image or LoRA weights), as read before anything is sent.
pub(super) enum Reference {
    /// A URL (or `data:` URI), sent as written.
    Url(String),
    /// A local file, uploaded when the item is submitted.
    File(LocalFile),
}

impl Reference {
    /// What identifies it in the raw cache's key: the URL, or the file's content, so a changed
    /// file makes a new image and an unchanged one (uploaded again in another batch) does not.
    pub(super) fn identity(&self) -> String {
        match self {
            Reference::Url(url) => url.clone(),
            Reference::File(file) => content_identity(&file.sha256),
        }
    }
}

/// How a local file is named in a raw cache key and in an item fingerprint: by its content.
fn content_identity(sha256: &str) -> String {
    format!("sha256:{sha256}")
}

/// Reads every reference `written` names (files are hashed, nothing is uploaded yet).
pub(super) fn read_all(written: &[PipelinePath]) -> Result<Vec<(PipelinePath, Reference)>, String> {
    written
        .iter()
        .map(|path| {
            let reference = match source(path) {
                Source::Url(url) => Reference::Url(url.to_owned()),
                Source::File(file) => Reference::File(LocalFile::read(file)?),
            };
            Ok((path.clone(), reference))
        })
        .collect()
}

/// The content of the reference files, hashed once per batch while a file stays as it was (same
/// size and modification time): every item's fingerprint names the content of the references
/// it sends, and a hundred pages sharing one reference read it once.
#[derive(Default)]
pub(super) struct ContentHashes(Mutex<HashMap<PathBuf, Hashed>>);

/// A file's content hash, with the size and modification time it was read at.
struct Hashed {
    stamp: (u64, Option<SystemTime>),
    sha256: String,
}

impl ContentHashes {
    /// What identifies the reference `written` in an item's fingerprint, as
    /// [`Reference::identity`] does in the raw cache: the URL, or `sha256:` of the file's
    /// content (a file that cannot be read is named by its error, and fails when the item runs).
    pub(super) fn identity(&self, written: &PipelinePath) -> String {
        match source(written) {
            Source::Url(url) => url.to_owned(),
            Source::File(path) => match self.sha256(path) {
                Ok(sha256) => content_identity(&sha256),
                Err(e) => format!("unreadable: {e}"),
            },
        }
    }

    fn sha256(&self, path: &Path) -> std::io::Result<String> {
        let metadata = std::fs::metadata(path)?;
        if !metadata.is_file() {
            return Err(std::io::Error::other("not a file"));
        }
        let stamp = (metadata.len(), metadata.modified().ok());
        if let Some(hashed) = lock(&self.0).get(path).filter(|hashed| hashed.stamp == stamp) {
            return Ok(hashed.sha256.clone());
        }
        let (mut file, mut hasher, mut buffer) =
            (std::fs::File::open(path)?, Sha256::new(), vec![0; 1 << 16]);
        loop {
            match file.read(&mut buffer)? {
                0 => break,
                read => hasher.update(&buffer[..read]),
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        lock(&self.0).insert(path.to_owned(), Hashed { stamp, sha256: sha256.clone() });
        Ok(sha256)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The batch's uploads by content hash.
pub(super) struct Uploads {
    rest: Url,
    by_hash: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
}

impl Uploads {
    /// fal's storage at `$FAL_REST_BASE_URL`, else fal's REST host.
    pub(super) fn new(env: &Environment) -> Result<Self, String> {
        let rest = env.var("FAL_REST_BASE_URL").unwrap_or_else(|| DEFAULT_REST_URL.to_owned());
        let rest = check_base_url(&rest).map_err(|e| format!("FAL_REST_BASE_URL: {e}"))?;
        Ok(Uploads { rest, by_hash: Mutex::new(HashMap::new()) })
    }

    /// The URL fal reads `file` from: the batch's earlier upload of the same content (this
    /// run's, or one the journal kept), else a new upload, journaled.
    pub(super) async fn url_of(
        &self,
        file: &LocalFile,
        client: &QueueClient,
        policy: &RetryPolicy,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<String, GaveUp> {
        let cell = {
            let mut by_hash = lock(&self.by_hash);
            by_hash.entry(file.sha256.clone()).or_default().clone()
        };
        let url = cell
            .get_or_try_init(|| async {
                let log = cx.submission_log();
                match log.map(|log| log.uploaded(&file.sha256)).transpose() {
                    Ok(Some(Some(url))) => return Ok(url),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("journal: cannot look up the upload of {}: {e:#}", file.name),
                }
                let url = self.upload(file, client, policy, cx, retries).await?;
                if let Some(Err(e)) =
                    log.map(|log| log.record_upload(&file.sha256, &url, file.bytes.len() as u64))
                {
                    tracing::warn!(
                        "journal: cannot record the upload of {} (a resumed batch uploads it again): {e:#}",
                        file.name
                    );
                }
                Ok(url)
            })
            .await?;
        Ok(url.clone())
    }

    /// fal's two steps: the initiate call (with the key, to fal's REST host) answers where to
    /// put the bytes and where the file will be; the bytes go there without the key.
    async fn upload(
        &self,
        file: &LocalFile,
        client: &QueueClient,
        policy: &RetryPolicy,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<String, GaveUp> {
        let what = format!("uploading {}", file.name);
        let (upload_url, file_url) = policy
            .run(Call::Queue, &what, &cx.stop, retries, || {
                client.initiate_upload(&self.rest, file.content_type, &file.name)
            })
            .await?;
        policy
            .run(Call::Queue, &what, &cx.stop, retries, || {
                client.put_upload(&upload_url, file.content_type, file.bytes.clone())
            })
            .await?;
        tracing::info!("uploaded {} to fal's storage: {file_url}", file.name);
        Ok(file_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_must_be_an_image_and_is_known_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not an image").unwrap();
        assert!(LocalFile::read(&text).err().unwrap_or_default().contains("is not a PNG, JPEG, WebP or GIF"));
        assert!(
            LocalFile::read(&dir.path().join("missing.png"))
                .err()
                .unwrap_or_default()
                .contains("missing.png")
        );
        let png = dir.path().join("hero.png");
        let mut bytes = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(&png, &bytes).unwrap();
        let read = LocalFile::read(&png).unwrap();
        assert_eq!((read.content_type, read.name.as_str()), ("image/png", "hero.png"));
        assert_eq!(
            Reference::File(read).identity(),
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
        );
    }
}
