//! The built sink: its settings and counters, and the `Sink` calls the engine makes (check the
//! bucket, upload each item, upload the batch files at the end).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::anyhow;
use async_trait::async_trait;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3;
use object_store::path::Path;

use super::credentials::Secret;
use super::upload::UploadError;
use crate::engine::item::{Item, State};
use crate::engine::stage::{Receipt, Sink, StageError, StoredObject};
use crate::engine::summary::Summary;
use crate::imaging::png::PngCompression;
use crate::stages::naming::{UniqueNames, strip_extension};

/// The built sink.
pub(super) struct R2Sink {
    pub(super) id: String,
    pub(super) inputs: Vec<String>,
    pub(super) output_dir: PathBuf,
    pub(super) endpoint: String,
    pub(super) bucket: String,
    pub(super) credential_source: Option<(&'static str, &'static str)>,
    pub(super) secret: Option<Secret>,
    pub(super) store: AmazonS3,
    pub(super) names: UniqueNames,
    pub(super) prefix: String,
    pub(super) content_type: Option<String>,
    pub(super) cache_control: Option<String>,
    pub(super) upload_metadata: bool,
    pub(super) png_compression: PngCompression,
    pub(super) multipart_threshold: u64,
    pub(super) part_size: u64,
    pub(super) upload_files: Vec<String>,
    pub(super) uploaded: AtomicU64,
    pub(super) unchanged: AtomicU64,
}

#[async_trait]
impl Sink for R2Sink {
    /// Complete when the journal holds this sink's receipt for the item as it is now, and the
    /// receipt's page is under the name the item has now: no request to the store at all.
    fn is_complete(&self, item: &Item, recorded: Option<&Receipt>) -> bool {
        let Some(page) = recorded.and_then(|receipt| receipt.objects.first()) else { return false };
        let Ok(name) = self.names.render(item) else { return false };
        self.object_key(strip_extension(&name)).is_ok_and(|stem| strip_extension(&page.name) == stem.as_ref())
    }

    /// Lists one page of the prefix before anything is generated, so a missing bucket, refused
    /// credentials or an unreachable endpoint stop the batch before money is spent. (A HEAD
    /// cannot tell a missing bucket from a missing key: its 404 has no body.)
    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        self.names.plan(items);
        let prefix = if self.prefix.is_empty() { None } else { Some(Path::from(self.prefix.as_str())) };
        match self.store.list(prefix.as_ref()).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                let doing = format!("list bucket {:?} at {}", self.bucket, self.endpoint);
                Err(anyhow!(self.explain(&UploadError::Store(e), &doing).message))
            }
        }
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        // Metadata comes last, so its presence means the item's images are all stored.
        let mut receipt = Receipt::default();
        for object in self.prepare(item, &states).await? {
            self.upload(&object).await.map_err(|e| self.explain(&e, &format!("upload {}", object.key)))?;
            receipt.objects.push(StoredObject {
                name: object.key.to_string(),
                sha256: object.sha256,
                bytes: object.len,
            });
        }
        Ok(receipt)
    }

    /// Last: `upload_files` may name what the other sinks write as they finish (the book,
    /// `batch_metadata.json`).
    fn finish_rank(&self) -> u8 {
        2
    }

    async fn finish(&self, _summary: &Summary) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for relative in &self.upload_files {
            let outcome = match self.file_object(relative).await {
                Ok(object) => self
                    .upload(&object)
                    .await
                    .map_err(|e| self.explain(&e, &format!("upload {}", object.key)).message),
                Err(message) => Err(message),
            };
            if let Err(message) = outcome {
                errors.push(message);
            }
        }
        tracing::info!(
            sink = %self.id,
            uploaded = self.uploaded.load(Ordering::Relaxed),
            unchanged = self.unchanged.load(Ordering::Relaxed),
            "uploads done"
        );
        if errors.is_empty() { Ok(()) } else { Err(anyhow!(errors.join("\n"))) }
    }
}
