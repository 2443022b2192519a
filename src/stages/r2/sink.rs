//! The built sink: its object plan, its bucket and its held pages, and the `Sink` calls the
//! engine makes (check the bucket, upload each item, upload the batch files at the end).

use anyhow::anyhow;
use async_trait::async_trait;

use super::bucket::Bucket;
use super::held::Held;
use super::objects::{Keys, Object, ObjectPlan};
use super::options::CandidateUploads;
use crate::engine::item::{Item, State};
use crate::engine::stage::{Receipt, Sink, StageError, StoredObject};
use crate::engine::summary::Summary;
use crate::stages::naming::strip_extension;

/// The built sink: an object plan (what goes up, under which keys) and a bucket (where it
/// goes), and the pages held back until their rounds are over.
pub(super) struct R2Sink {
    pub(super) plan: ObjectPlan,
    pub(super) bucket: Bucket,
    pub(super) upload_files: Vec<String>,
    pub(super) candidates: CandidateUploads,
    /// Pages held back until their rounds are over.
    pub(super) held: Held,
}

impl R2Sink {
    /// Uploads objects in order (metadata last, so its presence means the images are all
    /// stored) and returns what is stored.
    async fn store(&self, objects: Vec<Object>) -> Result<Receipt, StageError> {
        let mut receipt = Receipt::default();
        for object in objects {
            self.bucket
                .upload(&object)
                .await
                .map_err(|e| self.bucket.explain(&e, &format!("upload {}", object.key)))?;
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
        let held = self
            .held
            .get(stem)
            .map_err(|e| self.plan.fail(item, &format!("reading the held page: {e:#}")))?;
        if let Some(held) = held {
            self.store(held.aside).await?;
            self.held
                .release(stem)
                .map_err(|e| self.plan.fail(item, &format!("releasing the held page: {e:#}")))?;
        }
        Ok(())
    }

    /// Where this candidate goes when it is not the page, by its judgement.
    fn aside_keys(&self, item: &Item) -> Keys {
        let rejected = item.judgement.as_ref().is_some_and(|j| !j.acceptable);
        Keys::Aside { number: item.trial.number, rejected }
    }
}

#[async_trait]
impl Sink for R2Sink {
    /// Complete when the journal holds this sink's receipt for the item as it is now, and the
    /// receipt's page is under the name the item has now: no request to the store at all.
    fn is_complete(&self, item: &Item, recorded: Option<&Receipt>) -> bool {
        let Some(page) = recorded.and_then(|receipt| receipt.objects.first()) else { return false };
        let Ok(name) = self.plan.names.render(item) else { return false };
        self.plan
            .object_key(strip_extension(&name))
            .is_ok_and(|stem| strip_extension(&page.name) == stem.as_ref())
    }

    /// Lists one page of the prefix before anything is generated, so a missing bucket, refused
    /// credentials or an unreachable endpoint stop the batch before money is spent. (A HEAD
    /// cannot tell a missing bucket from a missing key: its 404 has no body.)
    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        self.plan.names.plan(items);
        self.bucket.check_reachable(&self.plan.prefix).await.map_err(|e| anyhow!(e.message))
    }

    /// The page goes up under its own key only when its rounds are over: a page that may
    /// still lose to a later candidate is held back ([`Held`]). A held page this one replaces
    /// is set aside.
    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        let Some(encoded) = self.plan.encode(item, &states).await? else { return Ok(Receipt::default()) };
        drop(states);
        self.set_aside_held(item, &encoded.stem).await?;
        let page = self.plan.objects(item, &encoded, Keys::Page)?;
        if item.trial.last {
            return self.store(page).await;
        }
        let aside = match self.candidates {
            CandidateUploads::Upload => self.plan.objects(item, &encoded, self.aside_keys(item))?,
            CandidateUploads::Skip => Vec::new(),
        };
        self.held.put(&encoded.stem, &page, &aside).map_err(|e| {
            self.plan.fail(item, &format!("holding the page until its rounds are over: {e:#}"))
        })?;
        Ok(Receipt::default())
    }

    /// Uploads the candidate under rejected/ or candidates/ (unless `candidates: skip`); when it
    /// is the page's last, the page held back goes up under its own key.
    async fn write_aside(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        if self.candidates == CandidateUploads::Upload
            && let Some(encoded) = self.plan.encode(item, &states).await?
        {
            self.store(self.plan.objects(item, &encoded, self.aside_keys(item))?).await?;
        }
        if !item.trial.last {
            return Ok(Receipt::default());
        }
        let stem = self.plan.stem(item)?;
        let held = self
            .held
            .get(&stem)
            .map_err(|e| self.plan.fail(item, &format!("reading the held page: {e:#}")))?;
        let Some(held) = held else {
            tracing::warn!(sink = %self.plan.id, item = %item.key, "no held page to publish; it goes up when the item runs again");
            return Ok(Receipt::default());
        };
        let receipt = self.store(held.page).await?;
        self.held
            .release(&stem)
            .map_err(|e| self.plan.fail(item, &format!("releasing the held page: {e:#}")))?;
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
            let outcome = match self.plan.file_object(relative).await {
                Ok(object) => self
                    .bucket
                    .upload(&object)
                    .await
                    .map_err(|e| self.bucket.explain(&e, &format!("upload {}", object.key)).message),
                Err(message) => Err(message),
            };
            if let Err(message) = outcome {
                errors.push(message);
            }
        }
        self.bucket.log_counts();
        if errors.is_empty() { Ok(()) } else { Err(anyhow!(errors.join("\n"))) }
    }
}
