//! A built `fal` stage: one item's way from prompt to image through fal's queue, and what is
//! recorded at each step so that money spent is never lost and never spent twice.
//!
//! - A submission is journaled before it is sent and again when fal accepts it.
//! - An accepted request stays open in the journal (a resumed batch polls it) until its image
//!   is passed on, or until it is settled without one: fal answered for good that it failed,
//!   its result was filtered, or it was cancelled.
//! - Free calls (polls, result fetches, downloads) are retried; a submission only when fal
//!   surely did not accept it (see [`super::retry`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod budget;
mod pending;

use self::budget::Budget;
use self::pending::{Pending, PendingRequests};
use super::catalogue::{self, Model};
use super::client::{QueueClient, QueueState, Submission};
use super::download::{self, OutputCaps};
use super::error::CallError;
use super::images::{ResultImage, decode_data_uri, result_images};
use super::key::{ApiKey, Environment};
use super::models::{platform_url, unchecked_warning};
use super::options::{self, Options};
use super::pricing::{Prices, Quote, fetch_live_price, round_cents};
use super::references;
use super::resolve_base_url;
use super::retry::{self, Call, GaveUp, RetryPolicy, sleep_unless_stopped};
use super::upload::{self, ContentHashes, Reference, Uploads};
use crate::engine::duration::PositiveDuration;
use crate::engine::item::{Item, Trial};
use crate::engine::media::{Payload, Undecoded};
use crate::engine::pipeline_path::{self, PipelinePath};
use crate::engine::raw_cache::{CachedOriginal, RawCache};
use crate::engine::run_context::{RESUME_FACT, RunContext, Settlement, SubmissionLog};
use crate::engine::stage::{BuildContext, CostEstimate, IoStage, StageError};

/// Why an item whose submission may or may not have reached fal is not submitted again:
/// fal's queue API has no idempotency key and no way to look a request up by its input.
const UNCERTAIN_SUBMISSION: &str = "The request was sent but fal's answer never arrived, so it may have been \
     accepted and charged with no way to collect it. It is not submitted again without your word, so nothing \
     is paid twice: `inkflow run --retry-failed` submits it again";

/// What a resumed batch does with a request fal settled for good.
const SETTLED_FOR_GOOD: &str = "it is not polled again; `inkflow run --retry-failed` submits a new request";

/// Why an item did not get its image.
enum Failure {
    /// This item failed; the batch goes on.
    Item(String),
    /// Nothing else can succeed (refused key, budget reached).
    Fatal(String),
    /// fal flagged the image.
    Filtered(String),
    /// The batch's stop cut the item short.
    Interrupted(String),
}

/// One accepted request being followed to its image.
struct Followed<'a> {
    key: &'a str,
    submission: &'a Submission,
    /// What fal charges for it once it runs.
    cost_usd: f64,
    log: Option<&'a Arc<dyn SubmissionLog>>,
    /// Cancelled `stop_wait` after the batch's stop: what polling, downloading and waiting
    /// for room watch, so Ctrl-C still collects a request that fal is generating.
    collecting: &'a CancellationToken,
    /// How large its answers may be.
    caps: OutputCaps,
}

impl Followed<'_> {
    /// The request as the cancel on Ctrl-C needs it.
    fn pending(&self, queued: bool) -> Pending {
        Pending {
            key: self.key.to_owned(),
            cancel_url: self.submission.cancel_url.clone(),
            queued,
            cost_usd: self.cost_usd,
            log: self.log.cloned(),
        }
    }
}

/// A built `fal` stage.
pub(super) struct FalStage {
    id: String,
    /// The options as written, to apply per-item overrides on.
    raw_options: Value,
    pub(super) options: Options,
    client: QueueClient,
    policy: RetryPolicy,
    prices: Prices,
    /// Where model entries are looked up (the user's catalogue folder).
    env: Environment,
    /// The reference files uploaded in this batch.
    uploads: Uploads,
    /// The reference files' contents, for the items' fingerprints.
    content_hashes: ContentHashes,
    /// What a prompt's relative reference paths are read against, as the pipeline's own are.
    pipeline_folder: PathBuf,
    /// Catalogue entries by model id, looked up once (`None`: not catalogued, unchecked).
    models: Mutex<HashMap<String, Option<Arc<Model>>>>,
    budget: Budget,
    /// Requests fal holds for us, for cancelling on Ctrl-C.
    pending: PendingRequests,
    /// Fetched images not yet decoded below, at most as many as the stages below can take: a
    /// finished request waits for room here, with nothing downloaded, since fal keeps results.
    room: Arc<Semaphore>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FalStage {
    pub(super) fn new(
        id: &str,
        raw_options: &Value,
        env: &Environment,
        ctx: &BuildContext,
    ) -> anyhow::Result<Self> {
        let dry_run = ctx.dry_run;
        let options = Options::parse(raw_options)
            .map_err(|e| anyhow!("stage {id:?}: option {:?}: {}", e.path.join("."), e.message))?;
        let key = env.api_key().map(|(key, _)| key);
        if key.is_none() && !dry_run {
            return Err(anyhow!("stage {id:?}: {}", CallError::MissingKey));
        }
        let model = catalogue::find(&options.model, env).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        options.check_catalogued(model.as_ref()).map_err(|e| anyhow!("stage {id:?}: {}", e.qualified()))?;
        if model.is_none() {
            tracing::warn!("stage {id:?}: {}", unchecked_warning(&options.model));
        }
        let uploads = Uploads::new(env).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        let base = resolve_base_url(&options, env).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        let timeout = options.request_timeout.get();
        let mut prices = Prices::new(&options.prices);
        if let Some(key) = &key
            && (env.var("FAL_PLATFORM_BASE_URL").is_some()
                || options.base_url.is_none() && env.var("FAL_QUEUE_BASE_URL").is_none())
        {
            match live_price(env, key, &options.model, timeout) {
                Ok(live) => prices.set_live(&options.model, live),
                Err(e) => tracing::warn!("stage {id:?}: {}; using the catalogue's price", key.redact(&e)),
            }
        }
        let client = QueueClient::new(base, key, timeout).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        let models = Mutex::new(HashMap::from([(options.model.clone(), model.clone().map(Arc::new))]));
        output_caps(&options, model.as_ref()).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        Ok(FalStage {
            uploads,
            content_hashes: ContentHashes::default(),
            pipeline_folder: pipeline_path::folder_of(&ctx.pipeline_file).to_owned(),
            env: env.clone(),
            models,
            id: id.to_owned(),
            raw_options: raw_options.clone(),
            policy: RetryPolicy {
                max_attempts: options.max_attempts,
                base_delay: Duration::from_millis(options.base_delay_ms),
            },
            prices,
            budget: Budget::new(options.max_cost_usd),
            options,
            client,
            pending: PendingRequests::default(),
            room: Arc::new(Semaphore::new(ctx.room_below.max(1))),
        })
    }

    /// The catalogue entry of model `id` (looked up once), `None` for a model it lacks.
    fn model(&self, id: &str) -> Result<Option<Arc<Model>>, String> {
        if let Some(known) = lock(&self.models).get(id) {
            return Ok(known.clone());
        }
        let found = catalogue::find(id, &self.env)?.map(Arc::new);
        if found.is_none() {
            tracing::warn!("{}", unchecked_warning(id));
        }
        lock(&self.models).insert(id.to_owned(), found.clone());
        Ok(found)
    }

    /// The pipeline's options with this item's overrides applied, checked against the
    /// model's schema, for the candidate of its page the item is: a later request asks for a
    /// new seed, and best of N asks for its images in as few requests as the model's limit
    /// per request allows (best of 6 on FLUX: two requests of 3).
    fn options_for(&self, item: &mut Item) -> Result<(Options, Option<Arc<Model>>), String> {
        let overridden = options::item_overrides().iter().any(|name| item.prompt.extra.contains_key(name));
        let mut options = if overridden {
            let mut fields = item.prompt.extra.clone();
            if let Some(written) = fields.get_mut("references") {
                references::resolve_written(written, &self.pipeline_folder);
            }
            self.options.for_item(&self.raw_options, &fields)?
        } else {
            self.options.clone()
        };
        let model = self.model(&options.model)?;
        if overridden {
            options
                .check_catalogued(model.as_deref())
                .map_err(|e| format!("prompt field {:?}: {}", e.path.join("."), e.message))?;
        }
        if let Some(model) = &model {
            let wanted = item.trial.per_request.max(1);
            let cap = model.images_per_request().max(1);
            item.trial.per_request = wanted.div_ceil(wanted.div_ceil(cap));
        }
        let (request, _) = item.trial.request_and_image();
        options.seed = Trial::seed(&item.key, options.seed, request);
        if item.trial.per_request > 1 {
            options.num_images = Some(options.images().max(item.trial.per_request));
        }
        Ok((options, model))
    }

    fn redact(&self, message: &str) -> String {
        match self.client.key() {
            Some(key) => key.redact(message),
            None => message.to_owned(),
        }
    }

    async fn generate(
        &self,
        item: &mut Item,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Undecoded, Failure> {
        let (options, model) = self.options_for(item).map_err(Failure::Item)?;
        let caps = output_caps(&options, model.as_deref()).map_err(Failure::Item)?;
        item.record("model", options.model.clone());
        let references =
            upload::read_all(&options.sent_files(&self.pipeline_folder)).map_err(Failure::Item)?;
        if !references.is_empty() {
            let listed =
                references.iter().map(|(path, r)| json!({"source": path.as_path(), "content": r.identity()}));
            item.record("references", listed.collect::<Vec<_>>());
        }
        // The input as the raw cache knows it: each file by its content, not by the URL of
        // one batch's upload.
        let identity = |path: &PipelinePath| reference_of(&references, path).map(Reference::identity);
        let folder = &self.pipeline_folder;
        let body = options.request_body_with(&item.prompt.image_prompt, model.as_deref(), folder, &|p| {
            identity(p).unwrap_or_default()
        });
        let quote = self.prices.quote(&options.model, model.as_deref(), &body);
        let cost = quote.as_ref().map(|q| q.cost_usd);
        let (request, image) = item.trial.request_and_image();
        // Without a seed every request has the same input: the request number tells a
        // re-roll's original apart from the first one's.
        let cache_key = match model.as_deref() {
            Some(model) if !model.takes_seed() && request > 0 => {
                RawCache::key(&options.model, &json!({"input": body, "request": request}))
            }
            _ => RawCache::key(&options.model, &body),
        };
        let image_key = if image == 0 { cache_key.clone() } else { format!("{cache_key}-{image}") };
        if let Some(cached) = cached_original(cx, &image_key).await? {
            return self.serve_cached(item, cached, options.dimensions());
        }
        if image > 0 {
            // The request that made this image was paid for with the first of them.
            let made = cached_original(cx, &cache_key).await?.is_some();
            return Err(if made {
                Failure::Filtered(format!("fal flagged image {image} of the request, or did not return it"))
            } else {
                Failure::Item(format!(
                    "image {image} of this page's request is not in the raw cache (pruned?); not paying for the request again"
                ))
            });
        }
        // A request an earlier run paid for but did not collect: poll it, never submit again.
        let resumed =
            item.facts.get(RESUME_FACT).filter(|r| r.get("stage").and_then(Value::as_str) == Some(&self.id));
        let submission = match resumed.map(|r| r.get("request").unwrap_or(&Value::Null)) {
            Some(Value::Null) => return Err(Failure::Item(UNCERTAIN_SUBMISSION.into())),
            Some(journaled) => serde_json::from_value::<Submission>(journaled.clone()).map_err(|e| {
                Failure::Item(format!("the journal's request for this item is unreadable: {e}"))
            })?,
            None => {
                let sent = self
                    .with_uploads(
                        &options,
                        model.as_deref(),
                        &item.prompt.image_prompt,
                        &references,
                        cx,
                        retries,
                    )
                    .await?;
                self.submit(item, &options, &sent, quote.as_ref(), cx, retries).await?
            }
        };
        item.record("request_id", submission.request_id.clone());
        // fal charges a request once it runs, whatever its outcome (a 422 too).
        let cost_usd = cost.unwrap_or(0.0);
        item.cost_usd = cost_usd;
        item.record("cost_usd", cost_usd);
        let key = item.key.clone();
        let stop_wait = self.options.stop_wait.get();
        let (collecting, _timer) = retry::cancelled_after(&cx.stop, stop_wait);
        let followed = Followed {
            key: &key,
            submission: &submission,
            cost_usd,
            log: cx.submissions.as_ref(),
            collecting: &collecting,
            caps,
        };
        let deadline = self.options.deadline.get();
        let waited = tokio::time::timeout(deadline, self.wait_for_result(&followed, cx, retries)).await;
        let result = match waited {
            Ok(result) => result,
            Err(_) => self.past_deadline(&followed, deadline, stop_wait, cx, retries).await,
        };
        self.pending.remove(&submission.request_id);
        let result = result?;
        if let Some(log) = cx.submission_log() {
            log.answered(&key, &self.id);
        }
        let room = tokio::select! {
            biased;
            () = collecting.cancelled() => return Err(Failure::Interrupted(format!(
                "stopped: the batch was stopped, and request {} (paid for) was still waiting to be downloaded \
                 after the stage's `stop_wait`: a resumed batch collects it", submission.request_id
            ))),
            room = self.room.clone().acquire_owned() => room.ok(),
        };
        let cache = cx.raw_cache.as_deref();
        let (page, fetched) = self.collect(&followed, &result, item, retries, (cache, &cache_key)).await?;
        // Kept before anything reads them: a file that fails to decode is never paid again,
        // a rerun or `--retry-failed` reads it from the cache.
        if let Some(cache) = cache {
            self.cache_images(cache, item, &fetched);
        }
        // Only the header is read here: the pixels are decoded in the CPU job that needs
        // them, so a finished request waiting for the CPU holds its file, not its pixels.
        let (width, height) = download::page_size(&page.bytes, &page.source, options.dimensions())
            .map_err(|e| self.settle_failed(&followed, &e))?;
        item.record("width", width);
        item.record("height", height);
        item.record("resolution", format!("{width}x{height}"));
        Ok(Undecoded {
            bytes: page.bytes,
            label: page.source,
            width,
            height,
            decode: download::decode_rgb,
            room,
        })
    }

    /// The input fal receives: each reference file as the URL of its upload to fal's storage
    /// (uploaded once per batch), each URL as written.
    async fn with_uploads(
        &self,
        options: &Options,
        model: Option<&Model>,
        prompt: &str,
        references: &[(PipelinePath, Reference)],
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Value, Failure> {
        let mut urls = Vec::with_capacity(references.len());
        for (path, reference) in references {
            let url = match reference {
                Reference::Url(url) => url.clone(),
                Reference::File(file) => self
                    .uploads
                    .url_of(file, &self.client, &self.policy, cx, retries)
                    .await
                    .map_err(|e| self.gave_up(e, &format!("uploading {}", path.display())))?,
            };
            urls.push((path.clone(), url));
        }
        let url_of = |path: &PipelinePath| {
            urls.iter().find(|(p, _)| p == path).map(|(_, url)| url.clone()).unwrap_or_default()
        };
        Ok(options.request_body_with(prompt, model, &self.pipeline_folder, &url_of))
    }

    /// An original generated before with the same model and input: no request, no cost. One
    /// that cannot be read stays cached, so it is never paid for again unasked.
    fn serve_cached(
        &self,
        item: &mut Item,
        cached: CachedOriginal,
        nominal: (u32, u32),
    ) -> Result<Undecoded, Failure> {
        if let Some(facts) = cached.meta.as_object() {
            for (name, value) in facts {
                item.record(name, value.clone());
            }
        }
        item.record("cost_usd", 0.0);
        item.record("cached", true);
        let label = format!("the cached original of {}", item.key);
        let (width, height) = download::page_size(&cached.bytes, &label, nominal).map_err(|e| {
            Failure::Item(format!(
                "{e}; it was paid for and stays in the raw cache: `inkflow cache prune` drops it, to pay for \
                 a new one"
            ))
        })?;
        item.record("width", width);
        item.record("height", height);
        item.record("resolution", format!("{width}x{height}"));
        let bytes = Arc::new(cached.bytes);
        Ok(Undecoded { bytes, label, width, height, decode: download::decode_rgb, room: None })
    }

    /// Keeps every image paid for in the raw cache: the page under the request's key, the
    /// others beside it under `KEY-INDEX`.
    fn cache_images(&self, cache: &RawCache, item: &Item, fetched: &[FetchedImage]) {
        let meta = cached_facts(item);
        for image in fetched {
            if let Err(e) = cache.put(&image.cache_key, &image.bytes, &meta) {
                tracing::warn!("{}: could not cache image {}: {e:#}", item.key, image.index);
            }
        }
    }

    /// Queues the item's request and journals it; fails the item rather than go on with a
    /// paid request the journal does not know.
    async fn submit(
        &self,
        item: &Item,
        options: &Options,
        body: &Value,
        quote: Option<&Quote>,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Submission, Failure> {
        let cost = quote.map(|q| q.cost_usd);
        if item.prompt.image_prompt.trim().is_empty() {
            return Err(Failure::Item("the prompt is empty: nothing to generate".into()));
        }
        if cx.stop.is_cancelled() {
            return Err(Failure::Interrupted(
                "cancelled: the batch was stopped before this item was submitted".into(),
            ));
        }
        self.budget.reserve(&options.model, cost, cx.spent_before_usd)?;
        let log = cx.submission_log();
        if let Some(Err(e)) = log.map(|log| log.submitting(item, &self.id, cost)) {
            self.budget.release(cost);
            return Err(Failure::Item(format!(
                "not submitted: the journal could not record the submission beforehand ({e:#})"
            )));
        }
        let start_timeout = options.start_timeout.map(PositiveDuration::get);
        let submitted = self
            .policy
            .run(Call::Submit, &format!("{}: submit", item.key), &cx.stop, retries, || {
                self.client.submit(&options.model, body, start_timeout)
            })
            .await;
        let submission = match submitted {
            Ok(submission) => submission,
            Err(gave_up) => {
                let uncertain =
                    matches!(&gave_up, GaveUp::Failed(error, _) if retry::may_have_been_accepted(error));
                let failure = self.gave_up(gave_up, &format!("submitting to {}", options.model));
                if let (true, Failure::Item(message)) = (uncertain, &failure) {
                    // The money may be gone: keep it counted and the submission on record.
                    return Err(Failure::Item(format!(
                        "{message}: fal may have accepted the request. {UNCERTAIN_SUBMISSION}"
                    )));
                }
                self.budget.release(cost);
                if let Some(Err(e)) = log.map(|log| log.not_submitted(item, &self.id)) {
                    tracing::warn!("{}: journal: {e:#}", item.key);
                }
                return Err(failure);
            }
        };
        tracing::info!("{}: fal accepted request {}", item.key, submission.request_id);
        // The price the request was counted at goes beside it, so the journal shows what each
        // request cost and where that price came from.
        let mut journaled = serde_json::to_value(&submission).unwrap_or(Value::Null);
        if let (Some(quote), Some(fields)) = (quote, journaled.as_object_mut()) {
            fields.insert("price".into(), quote.record());
        }
        if let Some(Err(e)) = log.map(|log| log.submitted(item, &self.id, &journaled, cost)) {
            let never_polled = Pending {
                key: item.key.clone(),
                cancel_url: submission.cancel_url.clone(),
                queued: true,
                cost_usd: cost.unwrap_or(0.0),
                log: None,
            };
            let cancelled = self.cancel(&submission.request_id, never_polled).await.message;
            // Not followed: the item ends here, whatever fal answered to the cancel.
            self.pending.remove(&submission.request_id);
            return Err(Failure::Item(format!(
                "fal accepted request {} but the journal could not record it ({e:#}); {cancelled}, instead of \
                 going on with a paid request a resumed batch would not know",
                submission.request_id
            )));
        }
        Ok(submission)
    }

    /// Takes the images of a finished request: the page (the first image fal did not flag)
    /// and every other image paid for, each with its key in the raw `cache` under the
    /// request's key.
    async fn collect(
        &self,
        followed: &Followed<'_>,
        result: &Value,
        item: &mut Item,
        retries: &mut u32,
        (cache, cache_key): (Option<&RawCache>, &str),
    ) -> Result<(FetchedImage, Vec<FetchedImage>), Failure> {
        let images = result_images(result).map_err(|e| self.settle_failed(followed, &e))?;
        item.record("seed", result.get("seed").cloned().unwrap_or(Value::Null));
        item.record("timings", result.get("timings").cloned().unwrap_or(Value::Null));
        item.record("images_returned", images.len());
        item.record("has_nsfw_concepts", images.iter().any(|image| image.flagged));
        let Some(page_index) = images.iter().position(|image| !image.flagged) else {
            self.settle(followed, Settlement::Filtered, followed.cost_usd);
            return Err(Failure::Filtered("fal flagged NSFW concepts".into()));
        };
        let mut fetched = Vec::with_capacity(images.len());
        for image in images.iter().filter(|image| !image.flagged) {
            let bytes = self.fetch_image(followed, image, &item.key, retries).await?;
            let is_page = image.index == page_index;
            fetched.push(FetchedImage {
                index: image.index,
                is_page,
                source: image.source(),
                cache_key: if is_page {
                    cache_key.to_owned()
                } else {
                    format!("{cache_key}-{}", image.index)
                },
                bytes: Arc::new(bytes),
            });
        }
        item.record("images", images_fact(&images, page_index, &fetched, cache));
        let page = fetched.iter().find(|image| image.is_page).cloned();
        let page = page.ok_or_else(|| Failure::Item("the page image was not fetched".into()))?;
        Ok((page, fetched))
    }

    /// Polls the request until fal reports it finished, then fetches its result.
    async fn wait_for_result(
        &self,
        followed: &Followed<'_>,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Value, Failure> {
        let submission = followed.submission;
        let id = &submission.request_id;
        self.track(followed, true);
        let poll_interval = Duration::from_millis(self.options.poll_interval_ms);
        loop {
            let polled = self
                .policy
                .run(Call::Queue, &format!("request {id}: status"), followed.collecting, retries, || {
                    self.client.status(&submission.status_url)
                })
                .await;
            match polled {
                Ok(QueueState::Queued(position)) => {
                    tracing::debug!("request {id}: in queue at position {position:?}");
                    if !cx.stop.is_cancelled() {
                        self.track(followed, true);
                    } else if let Some(ended) = self.stopped_in_queue(followed).await {
                        return Err(ended);
                    }
                }
                Ok(QueueState::InProgress) => self.track(followed, false),
                Ok(QueueState::Finished(status)) => {
                    if status != "COMPLETED" {
                        tracing::warn!(
                            "request {id}: fal reports status {status}; fetching its result for details"
                        );
                    }
                    break;
                }
                Err(GaveUp::Stopped) => return Err(self.stopped(followed).await),
                Err(gave_up) => {
                    return Err(self.gave_up(gave_up, &format!("polling the status of request {id}")));
                }
            }
            // Before the stop, the stop wakes this loop at once to look again (a queued request
            // is then cancelled); after it, a running request is polled until `stop_wait` ends.
            let waking = if cx.stop.is_cancelled() { followed.collecting } else { &cx.stop };
            if sleep_unless_stopped(waking, poll_interval).await.is_err()
                && followed.collecting.is_cancelled()
            {
                return Err(self.stopped(followed).await);
            }
        }
        let fetched = self
            .policy
            .run(Call::Queue, &format!("request {id}: result"), followed.collecting, retries, || {
                self.client.result(&submission.response_url, followed.caps.answer_bytes)
            })
            .await;
        match fetched {
            Ok(result) => Ok(result),
            Err(GaveUp::Failed(error, _)) if !error.is_auth() && retry::is_definitive(&error) => {
                // fal ran the request and answered for good: a 5xx of its own is not charged.
                let charged = !matches!(&error, CallError::Http(e) if e.status >= 500);
                let cost = if charged { followed.cost_usd } else { 0.0 };
                self.settle(followed, Settlement::Failed, cost);
                Err(Failure::Item(format!("fal failed request {id}: {error}; {SETTLED_FOR_GOOD}")))
            }
            Err(gave_up) => Err(self.gave_up(gave_up, &format!("fetching the result of request {id}"))),
        }
    }

    /// The bytes of one image of a result: decoded from its `data:` URI, or downloaded
    /// (without the key) with retries, since the CDN can lag a moment behind `COMPLETED`.
    async fn fetch_image(
        &self,
        followed: &Followed<'_>,
        image: &ResultImage,
        key: &str,
        retries: &mut u32,
    ) -> Result<Vec<u8>, Failure> {
        let max_bytes = followed.caps.image_bytes;
        if image.url.starts_with("data:") {
            return decode_data_uri(&image.url, max_bytes)
                .map_err(|e| self.settle_failed(followed, &e.to_string()));
        }
        let downloaded = self
            .policy
            .run(Call::Download, &format!("{key}: download"), followed.collecting, retries, || {
                download::fetch(self.client.downloads(), &image.url, max_bytes)
            })
            .await;
        match downloaded {
            Ok(bytes) => Ok(bytes),
            Err(GaveUp::Failed(error, attempts)) if retry::is_definitive(&error) => {
                let why = format!("downloading {}: {error} (after {attempts} attempts)", image.url);
                Err(self.settle_failed(followed, &why))
            }
            Err(gave_up) => Err(self.gave_up(
                gave_up,
                &format!("downloading {} (a resumed batch downloads it again)", image.url),
            )),
        }
    }

    fn track(&self, followed: &Followed<'_>, queued: bool) {
        self.pending.insert(followed.submission.request_id.clone(), followed.pending(queued));
    }

    /// Records that the request ended without a result, so no resumed batch polls it again.
    fn settle(&self, followed: &Followed<'_>, settlement: Settlement, cost_usd: f64) {
        record_settlement(followed.log.map(Arc::as_ref), followed.key, &self.id, settlement, cost_usd);
    }

    /// Settles the request as failed for good, with `why` in the item's message.
    fn settle_failed(&self, followed: &Followed<'_>, why: &str) -> Failure {
        self.settle(followed, Settlement::Failed, followed.cost_usd);
        let id = &followed.submission.request_id;
        Failure::Item(format!("request {id}: {why}; {SETTLED_FOR_GOOD}"))
    }

    /// The batch was stopped while fal had the request in its queue: cancel it, since it costs
    /// nothing yet. Returns how the item ends, or `None` while the request may still complete
    /// (fal only signalled a runner, or the stop's own cancel did): it is then followed, and
    /// collected, within `stop_wait`.
    async fn stopped_in_queue(&self, followed: &Followed<'_>) -> Option<Failure> {
        let id = &followed.submission.request_id;
        let pending = self.pending.remove(id);
        match pending {
            Some(pending) if pending.queued => {
                let cancel = self.cancel(id, pending).await;
                (!cancel.still_open).then(|| {
                    Failure::Interrupted(format!(
                        "stopped: the batch was stopped while request {id} was queued at fal: {}",
                        cancel.message
                    ))
                })
            }
            Some(open) => {
                self.pending.insert(id.clone(), open);
                None
            }
            None => Some(Failure::Interrupted(format!(
                "stopped: the batch was stopped while request {id} was queued at fal, and the stop asked fal \
                 to cancel it"
            ))),
        }
    }

    /// The batch was stopped while fal held the request: a queued one is cancelled (it costs
    /// nothing yet); one still running after `stop_wait` is left to finish, since the journal
    /// lets a resumed batch collect what is being paid for.
    async fn stopped(&self, followed: &Followed<'_>) -> Failure {
        let id = &followed.submission.request_id;
        let queued = self.pending.remove(id).filter(|p| p.queued);
        match queued {
            Some(queued) => Failure::Interrupted(format!(
                "stopped: the batch was stopped while request {id} was queued at fal: {}",
                self.cancel(id, queued).await.message
            )),
            None => Failure::Interrupted(format!(
                "stopped: the batch was stopped, and fal was still generating request {id} (paid for) after \
                 the stage's `stop_wait`: a resumed batch collects it"
            )),
        }
    }

    /// The item's deadline passed with fal still holding its request: cancel it. One fal
    /// answers it cannot drop (a runner has it, or it has finished) is paid for, so it is
    /// followed for up to `stop_wait` more and collected; past that it stays open for a resumed
    /// batch to poll.
    async fn past_deadline(
        &self,
        followed: &Followed<'_>,
        deadline: Duration,
        stop_wait: Duration,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Value, Failure> {
        let id = &followed.submission.request_id;
        let pending = self.pending.remove(id).unwrap_or_else(|| followed.pending(false));
        let cancel = self.cancel(id, pending).await;
        let why = format!(
            "no result within the deadline of {} (the stage's `deadline` option): {}",
            humantime::format_duration(deadline),
            cancel.message
        );
        if !cancel.still_open {
            return Err(Failure::Item(why));
        }
        tracing::warn!("{}: {why}", followed.key);
        match tokio::time::timeout(stop_wait, self.wait_for_result(followed, cx, retries)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Item(format!(
                "{why}; it did not finish within a further {} (the stage's `stop_wait`): a resumed batch \
                 polls it, for free, and collects it",
                humantime::format_duration(stop_wait)
            ))),
        }
    }

    fn gave_up(&self, gave_up: GaveUp, doing: &str) -> Failure {
        match gave_up {
            GaveUp::Stopped => Failure::Interrupted(format!("stopped: the batch was stopped while {doing}")),
            GaveUp::Failed(CallError::MissingKey, _) => Failure::Fatal(CallError::MissingKey.to_string()),
            GaveUp::Failed(error, _) if error.account_lock().is_some() => Failure::Fatal(format!(
                "fal.ai says the account is locked ({}) while {doing}: the key is valid, but the account cannot \
                 pay for requests until fal lifts the lock (see the billing page of fal's dashboard); stopping \
                 the batch",
                error.account_lock().unwrap_or_default()
            )),
            GaveUp::Failed(error, _) if error.is_auth() => Failure::Fatal(format!(
                "fal.ai refused the API key ({error}) while {doing}: check FAL_KEY; stopping the batch"
            )),
            GaveUp::Failed(error, 1) => Failure::Item(format!("{doing}: {error}")),
            GaveUp::Failed(error, attempts) => {
                Failure::Item(format!("{doing}: {error} (after {attempts} attempts)"))
            }
        }
    }
}

/// The reference read for `path`.
fn reference_of<'a>(
    references: &'a [(PipelinePath, Reference)],
    path: &PipelinePath,
) -> Option<&'a Reference> {
    references.iter().find(|(p, _)| p == path).map(|(_, reference)| reference)
}

/// The answer caps for requests made with `options`, from the size asked for (the largest the
/// model returns, where nothing better is known) and whether the images come inline.
pub(super) fn output_caps(options: &Options, model: Option<&Model>) -> Result<OutputCaps, String> {
    let sync_mode = options.request_body("", model).get("sync_mode") == Some(&Value::Bool(true));
    // A model that picks its own pixel count (an aspect ratio, or no size input) may answer
    // far more than the page asked for: FLUX1.1 ultra answers 2752x1536 for 16:9.
    let max_output = match model {
        Some(model) if !model.inputs.contains_key("image_size") => LARGEST_CHOSEN_OUTPUT,
        _ => options.dimensions(),
    };
    OutputCaps::for_model(&options.model, max_output, options.images(), options.max_image_bytes, sync_mode)
}

/// The largest image a model that chooses its own size is assumed to answer (4K square, the
/// largest any catalogued model offers).
const LARGEST_CHOSEN_OUTPUT: (u32, u32) = (4096, 4096);

/// Writes a settlement to the journal; a journal that cannot take it is logged, since the
/// worst outcome is a resumed batch polling the request once more.
fn record_settlement(
    log: Option<&dyn SubmissionLog>,
    key: &str,
    stage: &str,
    settlement: Settlement,
    cost_usd: f64,
) {
    if let Some(Err(e)) = log.map(|log| log.settled(key, stage, settlement, cost_usd)) {
        tracing::warn!("{key}: journal: could not record the request as {}: {e:#}", settlement.as_str());
    }
}

/// One image of a result, fetched.
#[derive(Clone)]
struct FetchedImage {
    index: usize,
    /// The image that becomes the page.
    is_page: bool,
    /// Where it came from, for messages.
    source: String,
    /// Its key in the raw cache.
    cache_key: String,
    bytes: Arc<Vec<u8>>,
}

#[async_trait]
impl IoStage for FalStage {
    async fn process(
        &self,
        item: &mut Item,
        _input: Payload,
        cx: &RunContext,
    ) -> Result<Payload, StageError> {
        let started = Instant::now();
        let mut retries = 0;
        let outcome = self.generate(item, cx, &mut retries).await;
        item.retries += retries;
        let attempts = retries + 1;
        item.record("attempts", attempts);
        match outcome {
            Ok(image) => {
                item.generation_time = Some(started.elapsed());
                Ok(Payload::Undecoded(Arc::new(image)))
            }
            Err(Failure::Item(message)) => {
                Err(StageError::Failed { message: self.redact(&message), attempts })
            }
            Err(Failure::Fatal(message)) => Err(StageError::Fatal(self.redact(&message))),
            Err(Failure::Filtered(reason)) => Err(StageError::Filtered { reason }),
            Err(Failure::Interrupted(message)) => Err(StageError::Interrupted(self.redact(&message))),
        }
    }

    fn estimate_cost(&self, items: &mut dyn Iterator<Item = Item>) -> Option<CostEstimate> {
        let mut estimate = CostEstimate::default();
        for mut item in items {
            match self.options_for(&mut item) {
                Ok((options, model)) => {
                    let body = options.request_body(&item.prompt.image_prompt, model.as_deref());
                    match self.prices.quote(&options.model, model.as_deref(), &body) {
                        Some(quote) => estimate.usd += quote.cost_usd,
                        None => estimate.unpriced.push(format!(
                            "{}: no price for model {:?}: add it under the stage's `prices`",
                            item.key, options.model
                        )),
                    }
                }
                Err(e) => estimate.unpriced.push(format!("{}: {e}", item.key)),
            }
        }
        estimate.usd = round_cents(estimate.usd);
        Some(estimate)
    }

    fn budget_usd(&self) -> Option<f64> {
        self.options.max_cost_usd
    }

    /// The references and LoRA weights the item sends, each by its content (a local file) or
    /// its URL (a LoRA's URL is in the options already).
    fn input_revision(&self, item: &Item) -> Option<String> {
        let (options, _) = self.options_for(&mut item.clone()).ok()?;
        let sent = options.sent_files(&self.pipeline_folder);
        let identities: Vec<String> = sent.iter().map(|path| self.content_hashes.identity(path)).collect();
        (!identities.is_empty()).then(|| identities.join("\n"))
    }

    async fn cancel_pending(&self) {
        let queued = self.pending.take_queued();
        futures::future::join_all(queued.into_iter().map(|(id, p)| async move { self.cancel(&id, p).await }))
            .await;
    }
}

/// The item's images for its metadata: where each came from, whether fal flagged it, which
/// became the page, the format of each fetched one, and where a vector original is kept in
/// the raw `cache` (the page is drawn from it). Flagged images are listed but never fetched.
fn images_fact(
    images: &[ResultImage],
    page_index: usize,
    fetched: &[FetchedImage],
    cache: Option<&RawCache>,
) -> Value {
    images
        .iter()
        .map(|image| {
            let mut fact = json!({
                "index": image.index,
                "source": image.source(),
                "width": image.width,
                "height": image.height,
                "flagged": image.flagged,
                "page": image.index == page_index,
            });
            if let Some(file) = fetched.iter().find(|f| f.index == image.index) {
                let format = download::format_name(&file.bytes);
                fact["format"] = format.into();
                if let (Some(cache), "svg") = (cache, format) {
                    fact["original"] = cache.file(&file.cache_key).to_string_lossy().into_owned().into();
                }
            }
            fact
        })
        .collect()
}

/// The original the raw cache holds for `key`, if the run has a cache. A cache that cannot
/// say (its shared store unreachable) fails the item: the original may be there, paid for.
async fn cached_original(cx: &RunContext, key: &str) -> Result<Option<CachedOriginal>, Failure> {
    let Some(cache) = &cx.raw_cache else { return Ok(None) };
    cache.get(key).await.map_err(|e| Failure::Item(format!("{e:#}; not paying fal for it again")))
}

/// What fal said about an original, kept beside it in the raw cache.
fn cached_facts(item: &Item) -> Value {
    let keep = [
        "model",
        "request_id",
        "seed",
        "has_nsfw_concepts",
        "timings",
        "images_returned",
        "images",
        "width",
        "height",
    ];
    let facts: serde_json::Map<String, Value> =
        keep.iter().filter_map(|k| item.facts.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    Value::Object(facts)
}

/// fal's live unit price of `model`, read on a thread of its own so a stage can be built
/// inside or outside an async runtime.
fn live_price(
    env: &Environment,
    key: &ApiKey,
    model: &str,
    timeout: Duration,
) -> Result<super::pricing::LivePrice, String> {
    let platform = platform_url(env)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the pricing call: {e}"))?;
                runtime.block_on(fetch_live_price(&platform, key, model, timeout))
            })
            .join()
            .unwrap_or_else(|_| Err("the pricing call failed".into()))
    })
}
