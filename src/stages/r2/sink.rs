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
use super::held::Held;
use super::objects::{Keys, Object};
use super::options::CandidateUploads;
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
    pub(super) candidates: CandidateUploads,
    /// Pages held back until their rounds are over.
    pub(super) held: Held,
    pub(super) uploaded: AtomicU64,
    pub(super) unchanged: AtomicU64,
}

impl R2Sink {
    /// Uploads objects in order (metadata last, so its presence means the images are all
    /// stored) and returns what is stored.
    async fn store(&self, objects: Vec<Object>) -> Result<Receipt, StageError> {
        let mut receipt = Receipt::default();
        for object in objects {
            self.upload(&object).await.map_err(|e| self.explain(&e, &format!("upload {}", object.key)))?;
            receipt.objects.push(StoredObject {
                name: object.key.to_string(),
                sha256: object.sha256,
                bytes: object.len,
            });
        }
        Ok(receipt)
    }

    /// A page held under `stem` loses to the candidate now written: it goes up as a candidate
    /// set aside (or nowhere, with `candidates: skip`) and is let go.
    async fn set_aside_held(&self, item: &Item, stem: &str) -> Result<(), StageError> {
        let held =
            self.held.get(stem).map_err(|e| self.fail(item, &format!("reading the held page: {e:#}")))?;
        if let Some(held) = held {
            self.store(held.aside).await?;
            self.held
                .release(stem)
                .map_err(|e| self.fail(item, &format!("releasing the held page: {e:#}")))?;
        }
        Ok(())
    }

    /// Where this candidate goes when it is not the page, by its judgement.
    fn aside_keys(&self, item: &Item) -> Keys {
        let rejected = item.judgement.as_ref().is_some_and(|j| !j.acceptable);
        Keys::Aside { number: item.trial.number, rejected }
    }

    pub(super) fn stem(&self, item: &Item) -> Result<String, StageError> {
        let name = self.names.render(item).map_err(|e| self.fail(item, &e))?;
        Ok(strip_extension(&name).to_owned())
    }

    fn fail(&self, item: &Item, message: &str) -> StageError {
        StageError::failed(format!("sink {:?}: item {}: {message}", self.id, item.key))
    }
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

    /// The page goes up under its own key only when its rounds are over: a page that may
    /// still lose to a later candidate is held back ([`Held`]). A held page this one replaces
    /// is set aside.
    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        let Some(encoded) = self.encode(item, &states).await? else { return Ok(Receipt::default()) };
        drop(states);
        self.set_aside_held(item, &encoded.stem).await?;
        let page = self.objects(item, &encoded, Keys::Page)?;
        if item.trial.last {
            return self.store(page).await;
        }
        let aside = match self.candidates {
            CandidateUploads::Upload => self.objects(item, &encoded, self.aside_keys(item))?,
            CandidateUploads::Skip => Vec::new(),
        };
        self.held
            .put(&encoded.stem, &page, &aside)
            .map_err(|e| self.fail(item, &format!("holding the page until its rounds are over: {e:#}")))?;
        Ok(Receipt::default())
    }

    /// Uploads the candidate under rejected/ or candidates/ (unless `candidates: skip`); when it
    /// is the page's last, the page held back goes up under its own key.
    async fn write_aside(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        if self.candidates == CandidateUploads::Upload
            && let Some(encoded) = self.encode(item, &states).await?
        {
            self.store(self.objects(item, &encoded, self.aside_keys(item))?).await?;
        }
        if !item.trial.last {
            return Ok(Receipt::default());
        }
        let stem = self.stem(item)?;
        let held =
            self.held.get(&stem).map_err(|e| self.fail(item, &format!("reading the held page: {e:#}")))?;
        let Some(held) = held else {
            tracing::warn!(sink = %self.id, item = %item.key, "no held page to publish; it goes up when the item runs again");
            return Ok(Receipt::default());
        };
        let receipt = self.store(held.page).await?;
        self.held.release(&stem).map_err(|e| self.fail(item, &format!("releasing the held page: {e:#}")))?;
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
