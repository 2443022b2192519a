//! The `fal` stage: turns prompts into images with fal.ai's queue API (FLUX by default).
//!
//! This is the stage users pay for, so it is built around three promises: a request fal has
//! accepted is journaled before anything else happens (and a resumed batch collects it instead
//! of paying again); a retry of a poll or a download never re-submits; and rate limits and
//! outages are waited out with backoff, while a refused key stops the batch at once.

mod check;
mod client;
mod download;
mod key;
mod options;
mod pricing;
mod retry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use serde_json::Value;

pub use self::check::{CheckLine, check_setup};
use self::client::{CallError, QueueClient, QueueState, Submission};
pub use self::key::{ApiKey, Environment};
use self::options::{DEFAULT_BASE_URL, Options, check_base_url};
use self::pricing::{Prices, round_cents};
use self::retry::{Call, GaveUp, RetryPolicy, sleep_unless_stopped};
use crate::engine::cpu;
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload, Raster};
use crate::engine::raw_cache::{CachedOriginal, RawCache};
use crate::engine::run_context::{RESUME_FACT, RunContext};
use crate::engine::stage::{
    BuildContext, Component, IoStage, Kind, KindInfo, OptionDoc, OutputMedia, Role, StageError,
};

/// How long a best-effort cancel may take, so Ctrl-C stays prompt.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an item whose submission may or may not have reached fal is not submitted again:
/// fal's queue API has no idempotency key and no way to look a request up by its input.
const UNCERTAIN_SUBMISSION: &str = "The request was sent but fal's answer never arrived, so it may have been \
     accepted and charged with no way to collect it. It is not submitted again without your word, so nothing \
     is paid twice: `inkflow run --retry-failed` submits it again";

/// The `fal` kind: generation with fal.ai's queue API.
pub struct Fal {
    info: KindInfo,
    env: Environment,
}

impl Default for Fal {
    fn default() -> Self {
        Fal::new()
    }
}

impl Fal {
    /// The kind reading its key and queue host from the process environment and `.env`.
    pub fn new() -> Self {
        Fal::with_environment(Environment::process())
    }

    /// The kind reading its key and queue host from `env` (tests, embedding).
    pub fn with_environment(env: Environment) -> Self {
        let doc = OptionDoc::new;
        let options = vec![
            doc(
                "model",
                "string",
                options::DEFAULT_MODEL,
                "fal model id; a prompt field `model` overrides it",
            ),
            doc(
                "image_size",
                "square_hd|square|portrait_4_3|portrait_16_9|landscape_4_3|landscape_16_9|{width,height}",
                "the model's default (landscape_4_3)",
                "size of the generated image",
            ),
            doc("num_inference_steps", "integer >= 1", "the model's default", "denoising steps"),
            doc("guidance_scale", "number >= 0", "the model's default", "how closely to follow the prompt"),
            doc(
                "seed",
                "integer",
                "random",
                "seed for reproducible images; a prompt field `seed` overrides it",
            ),
            doc(
                "num_images",
                "integer >= 1",
                "1",
                "images per request; the first becomes the page, all are paid",
            ),
            doc(
                "enable_safety_checker",
                "boolean",
                "the model's default",
                "fal's NSFW check; flagged images are filtered",
            ),
            doc("output_format", "png|jpeg", "the model's default", "format fal encodes the image in"),
            doc("extra", "map", "{}", "more inputs passed to the model as they are"),
            doc("base_url", "URL", "$FAL_QUEUE_BASE_URL or https://queue.fal.run", "the queue host"),
            doc(
                "max_attempts",
                "integer >= 1",
                "5",
                "attempts per HTTP call (429, 502-504, timeouts, lost connections)",
            ),
            doc("base_delay_ms", "integer", "1000", "first retry delay; doubles per retry, with jitter"),
            doc("request_timeout", "duration", "60s", "limit for each HTTP call, body included"),
            doc("poll_interval_ms", "integer >= 1", "1000", "time between status polls"),
            doc("max_image_bytes", "integer", "10485760", "largest image download accepted"),
            doc(
                "max_cost_usd",
                "number",
                "no limit",
                "stop submitting once this many dollars would be exceeded",
            ),
            doc(
                "prices",
                "map model -> $/megapixel",
                "flux/dev 0.025, flux/schnell 0.003",
                "prices for the cost estimate",
            ),
        ];
        let info = KindInfo {
            name: "fal".into(),
            role: Role::Stage,
            summary: "generates an image per prompt with fal.ai (FLUX), with retries, a budget and resume"
                .into(),
            options,
            accepts: vec![Media::Prompt],
            output: OutputMedia::Fixed(Media::Rgb),
        };
        Fal { info, env }
    }
}

impl Kind for Fal {
    fn info(&self) -> &KindInfo {
        &self.info
    }

    fn check(&self, options: &Value) -> Result<(), crate::engine::stage::OptionsError> {
        Options::parse(options).map(|_| ())
    }

    fn build(&self, options: &Value, ctx: &BuildContext) -> anyhow::Result<Component> {
        let stage = FalStage::new(&ctx.id, options, &self.env, ctx.dry_run)?;
        Ok(Component::Io(Arc::new(stage)))
    }
}

/// The queue host: the `base_url` option, else `FAL_QUEUE_BASE_URL`, else fal's.
fn resolve_base_url(options: &Options, env: &Environment) -> Result<reqwest::Url, String> {
    match (&options.base_url, env.var("FAL_QUEUE_BASE_URL")) {
        (Some(url), _) => check_base_url(url).map_err(|e| format!("option base_url: {e}")),
        (None, Some(url)) => check_base_url(&url).map_err(|e| format!("FAL_QUEUE_BASE_URL: {e}")),
        (None, None) => check_base_url(DEFAULT_BASE_URL),
    }
}

/// Why an item did not get its image.
enum Failure {
    /// This item failed; the batch goes on.
    Item(String),
    /// Nothing else can succeed (refused key, budget reached).
    Fatal(String),
    /// fal flagged the image.
    Filtered(String),
}

/// A request fal holds for us, for cancelling on Ctrl-C.
struct Pending {
    cancel_url: String,
    /// Last seen waiting in the queue (or not polled yet): cancelling it costs nothing.
    queued: bool,
}

/// A built `fal` stage.
struct FalStage {
    id: String,
    /// The options as written, to apply per-item overrides on.
    raw_options: Value,
    options: Options,
    client: QueueClient,
    policy: RetryPolicy,
    prices: Prices,
    spent_usd: Mutex<f64>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FalStage {
    fn new(id: &str, raw_options: &Value, env: &Environment, dry_run: bool) -> anyhow::Result<Self> {
        let options = Options::parse(raw_options)
            .map_err(|e| anyhow!("stage {id:?}: option {:?}: {}", e.path.join("."), e.message))?;
        let key = env.api_key().map(|(key, _)| key);
        if key.is_none() && !dry_run {
            return Err(anyhow!("stage {id:?}: {}", CallError::MissingKey));
        }
        let base = resolve_base_url(&options, env).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        let timeout = options.request_timeout().map_err(|e| anyhow!("stage {id:?}: {}", e.message))?;
        let client = QueueClient::new(base, key, timeout).map_err(|e| anyhow!("stage {id:?}: {e}"))?;
        Ok(FalStage {
            id: id.to_owned(),
            raw_options: raw_options.clone(),
            policy: RetryPolicy {
                max_attempts: options.max_attempts,
                base_delay: Duration::from_millis(options.base_delay_ms),
            },
            prices: Prices::new(&options.prices),
            options,
            client,
            spent_usd: Mutex::new(0.0),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The pipeline's options with this item's overrides applied.
    fn options_for(&self, item: &Item) -> Result<Options, String> {
        let overridden = options::ITEM_OVERRIDES.iter().any(|name| item.prompt.extra.contains_key(*name));
        if overridden {
            Options::for_item(&self.raw_options, &item.prompt.extra)
        } else {
            Ok(self.options.clone())
        }
    }

    fn redact(&self, message: &str) -> String {
        match self.client.key() {
            Some(key) => key.redact(message),
            None => message.to_owned(),
        }
    }

    async fn generate(&self, item: &mut Item, cx: &RunContext, retries: &mut u32) -> Result<Raster, Failure> {
        let options = self.options_for(item).map_err(Failure::Item)?;
        let cost = self.prices.request_cost(&options.model, options.dimensions(), options.images());
        item.record("model", options.model.clone());
        let body = options.request_body(&item.prompt.image_prompt);
        let cache_key = RawCache::key(&options.model, &body);
        if let Some(cached) = cx.raw_cache.as_ref().and_then(|cache| cache.get(&cache_key)) {
            return self.serve_cached(item, cached).await;
        }
        // A request an earlier run paid for but did not collect: poll it, never submit again.
        let resumed =
            item.facts.get(RESUME_FACT).filter(|r| r.get("stage").and_then(Value::as_str) == Some(&self.id));
        let submission = match resumed.map(|r| r.get("request").unwrap_or(&Value::Null)) {
            Some(Value::Null) => return Err(Failure::Item(UNCERTAIN_SUBMISSION.into())),
            Some(journaled) => serde_json::from_value::<Submission>(journaled.clone()).map_err(|e| {
                Failure::Item(format!("the journal's request for this item is unreadable: {e}"))
            })?,
            None => self.submit(item, &options, &body, cost, cx, retries).await?,
        };
        item.record("request_id", submission.request_id.clone());
        let result = self.collect(&submission, cx, retries).await;
        lock(&self.pending).remove(&submission.request_id);
        let result = result?;

        let images = result.get("images").and_then(Value::as_array).filter(|images| !images.is_empty());
        let Some(url) = images.and_then(|images| images[0].get("url")).and_then(Value::as_str) else {
            let shown: String = result.to_string().chars().take(300).collect();
            return Err(Failure::Item(format!(
                "fal's result for request {} has no image URL: {shown}",
                submission.request_id
            )));
        };
        let url = url.to_owned();
        let flagged = result
            .get("has_nsfw_concepts")
            .and_then(Value::as_array)
            .and_then(|flags| flags.first())
            .and_then(Value::as_bool)
            .unwrap_or(false);
        item.record("seed", result.get("seed").cloned().unwrap_or(Value::Null));
        item.record("has_nsfw_concepts", flagged);
        item.record("timings", result.get("timings").cloned().unwrap_or(Value::Null));
        item.record("images_returned", images.map_or(0, Vec::len));
        if let Some(cost) = cost {
            item.record("cost_usd", cost);
        }
        if flagged {
            return Err(Failure::Filtered("fal flagged NSFW concepts".into()));
        }

        let max_bytes = self.options.max_image_bytes;
        let bytes = self
            .policy
            .run(Call::Repeatable, &format!("{}: download", item.key), &cx.stop, retries, || {
                download::fetch(self.client.downloads(), &url, max_bytes)
            })
            .await
            .map_err(|gave_up| self.gave_up(gave_up, &format!("downloading {url}")))?;
        let bytes = Arc::new(bytes);
        let raster = {
            let bytes = bytes.clone();
            cpu::run(move || download::decode_rgb(&bytes, &url))
                .await
                .map_err(Failure::Item)?
                .map_err(Failure::Item)?
        };
        if let Some(cache) = &cx.raw_cache {
            let meta = cached_facts(item);
            if let Err(e) = cache.put(&cache_key, &bytes, &meta) {
                tracing::warn!("{}: could not cache the original: {e:#}", item.key);
            }
        }
        item.record("width", raster.width);
        item.record("height", raster.height);
        item.record("resolution", format!("{}x{}", raster.width, raster.height));
        Ok(raster)
    }

    /// An original generated before with the same model and input: no request, no cost.
    async fn serve_cached(&self, item: &mut Item, cached: CachedOriginal) -> Result<Raster, Failure> {
        if let Some(facts) = cached.meta.as_object() {
            for (name, value) in facts {
                item.record(name, value.clone());
            }
        }
        item.record("cost_usd", 0.0);
        item.record("cached", true);
        let label = format!("the cached original of {}", item.key);
        let raster = cpu::run(move || download::decode_rgb(&cached.bytes, &label))
            .await
            .map_err(Failure::Item)?
            .map_err(Failure::Item)?;
        item.record("resolution", format!("{}x{}", raster.width, raster.height));
        Ok(raster)
    }

    /// Queues the item's request and journals it; fails the item rather than go on with a
    /// paid request the journal does not know.
    async fn submit(
        &self,
        item: &Item,
        options: &Options,
        body: &Value,
        cost: Option<f64>,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Submission, Failure> {
        if item.prompt.image_prompt.trim().is_empty() {
            return Err(Failure::Item("the prompt is empty: nothing to generate".into()));
        }
        if cx.stop.is_cancelled() {
            return Err(Failure::Item(
                "cancelled: the batch was stopped before this item was submitted".into(),
            ));
        }
        self.reserve_budget(&options.model, cost, cx.spent_before_usd)?;
        let log = cx.submission_log();
        if let Some(Err(e)) = log.map(|log| log.submitting(item, &self.id, cost)) {
            self.release_budget(cost);
            return Err(Failure::Item(format!(
                "not submitted: the journal could not record the submission beforehand ({e:#})"
            )));
        }
        let submitted = self
            .policy
            .run(Call::Submit, &format!("{}: submit", item.key), &cx.stop, retries, || {
                self.client.submit(&options.model, body)
            })
            .await;
        let submission = match submitted {
            Ok(submission) => submission,
            Err(gave_up) => {
                let uncertain =
                    matches!(&gave_up, GaveUp::Failed(error, _) if error.may_have_been_accepted());
                let failure = self.gave_up(gave_up, &format!("submitting to {}", options.model));
                if let (true, Failure::Item(message)) = (uncertain, &failure) {
                    // The money may be gone: keep it counted and the submission on record.
                    return Err(Failure::Item(format!("{message}. {UNCERTAIN_SUBMISSION}")));
                }
                self.release_budget(cost);
                if let Some(Err(e)) = log.map(|log| log.not_submitted(item, &self.id)) {
                    tracing::warn!("{}: journal: {e:#}", item.key);
                }
                return Err(failure);
            }
        };
        tracing::info!("{}: fal accepted request {}", item.key, submission.request_id);
        let mut journaled = serde_json::to_value(&submission).unwrap_or(Value::Null);
        if let (Some(fields), Some(cost)) = (journaled.as_object_mut(), cost) {
            fields.insert("cost_usd".into(), cost.into());
        }
        if let Some(Err(e)) = log.map(|log| log.submitted(item, &self.id, &journaled)) {
            self.cancel_quietly(&submission.request_id, &submission.cancel_url).await;
            return Err(Failure::Item(format!(
                "fal accepted request {} but the journal could not record it ({e:#}); cancelled it instead of \
                 going on with a paid request a resumed batch would not know",
                submission.request_id
            )));
        }
        Ok(submission)
    }

    /// Polls until fal has finished, then fetches the result.
    async fn collect(
        &self,
        submission: &Submission,
        cx: &RunContext,
        retries: &mut u32,
    ) -> Result<Value, Failure> {
        let id = &submission.request_id;
        self.track(submission, true);
        let poll_interval = Duration::from_millis(self.options.poll_interval_ms);
        loop {
            let polled = self
                .policy
                .run(Call::Repeatable, &format!("request {id}: status"), &cx.stop, retries, || {
                    self.client.status(&submission.status_url)
                })
                .await;
            match polled {
                Ok(QueueState::Queued(position)) => {
                    tracing::debug!("request {id}: in queue at position {position:?}");
                    self.track(submission, true);
                }
                Ok(QueueState::InProgress) => self.track(submission, false),
                Ok(QueueState::Finished(status)) => {
                    if status != "COMPLETED" {
                        tracing::warn!(
                            "request {id}: fal reports status {status}; fetching its result for details"
                        );
                    }
                    break;
                }
                Err(GaveUp::Stopped) => return Err(self.stopped(submission).await),
                Err(gave_up) => {
                    return Err(self.gave_up(gave_up, &format!("polling the status of request {id}")));
                }
            }
            if sleep_unless_stopped(&cx.stop, poll_interval).await.is_err() {
                return Err(self.stopped(submission).await);
            }
        }
        self.policy
            .run(Call::Repeatable, &format!("request {id}: result"), &cx.stop, retries, || {
                self.client.result(&submission.response_url)
            })
            .await
            .map_err(|gave_up| self.gave_up(gave_up, &format!("fetching the result of request {id}")))
    }

    fn track(&self, submission: &Submission, queued: bool) {
        let pending = Pending { cancel_url: submission.cancel_url.clone(), queued };
        lock(&self.pending).insert(submission.request_id.clone(), pending);
    }

    /// The batch was stopped while fal held the request: a queued one is cancelled (it costs
    /// nothing yet); a running one is left to finish, since the journal lets a resumed batch
    /// collect what is being paid for.
    async fn stopped(&self, submission: &Submission) -> Failure {
        let id = &submission.request_id;
        let queued = lock(&self.pending).remove(id).is_some_and(|p| p.queued);
        if queued {
            self.cancel_quietly(id, &submission.cancel_url).await;
            Failure::Item(format!("cancelled: the batch was stopped while request {id} was queued at fal"))
        } else {
            Failure::Item(format!(
                "cancelled: the batch was stopped while fal was generating request {id}; a resumed batch collects it"
            ))
        }
    }

    async fn cancel_quietly(&self, request_id: &str, cancel_url: &str) {
        match tokio::time::timeout(CANCEL_TIMEOUT, self.client.cancel(cancel_url)).await {
            Ok(Ok(())) => tracing::info!("cancelled fal request {request_id}"),
            Ok(Err(e)) => {
                tracing::warn!("could not cancel fal request {request_id}: {}", self.redact(&e.to_string()))
            }
            Err(_) => {
                tracing::warn!("could not cancel fal request {request_id}: no answer in {CANCEL_TIMEOUT:?}")
            }
        }
    }

    fn gave_up(&self, gave_up: GaveUp, doing: &str) -> Failure {
        match gave_up {
            GaveUp::Stopped => Failure::Item(format!("cancelled: the batch was stopped while {doing}")),
            GaveUp::Failed(CallError::MissingKey, _) => {
                Failure::Fatal(format!("stage {:?}: {}", self.id, CallError::MissingKey))
            }
            GaveUp::Failed(error, _) if error.is_auth() => Failure::Fatal(format!(
                "stage {:?}: fal.ai refused the API key ({error}) while {doing}: check FAL_KEY; stopping the batch",
                self.id
            )),
            GaveUp::Failed(error, 1) => Failure::Item(format!("{doing}: {error}")),
            GaveUp::Failed(error, attempts) => {
                Failure::Item(format!("{doing}: {error} (after {attempts} attempts)"))
            }
        }
    }

    /// Counts this request against `max_cost_usd`, or refuses to submit it.
    /// `spent_before` is what earlier runs of the batch spent (from the journal).
    fn reserve_budget(&self, model: &str, cost: Option<f64>, spent_before: f64) -> Result<(), Failure> {
        let Some(budget) = self.options.max_cost_usd else { return Ok(()) };
        let Some(cost) = cost else {
            return Err(Failure::Item(format!(
                "no price for model {model:?}, so max_cost_usd cannot be enforced: add it under `prices`"
            )));
        };
        let mut spent = lock(&self.spent_usd);
        let total = round_cents(spent_before + *spent);
        if total + cost > budget + 1e-9 {
            return Err(Failure::Fatal(format!(
                "stage {:?}: max_cost_usd budget of ${budget} reached after ${total}: not submitting more",
                self.id
            )));
        }
        *spent = round_cents(*spent + cost);
        Ok(())
    }

    fn release_budget(&self, cost: Option<f64>) {
        if let (Some(_), Some(cost)) = (self.options.max_cost_usd, cost) {
            let mut spent = lock(&self.spent_usd);
            *spent = round_cents((*spent - cost).max(0.0));
        }
    }
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
            Ok(raster) => {
                item.generation_time = Some(started.elapsed());
                Ok(Payload::Image(Arc::new(raster)))
            }
            Err(Failure::Item(message)) => {
                Err(StageError::Failed { message: self.redact(&message), attempts })
            }
            Err(Failure::Fatal(message)) => Err(StageError::Fatal(self.redact(&message))),
            Err(Failure::Filtered(reason)) => Err(StageError::Filtered { reason }),
        }
    }

    fn estimate_cost_usd(&self, items: &mut dyn Iterator<Item = Item>) -> Option<f64> {
        let mut total = 0.0;
        for item in items {
            let options = self.options_for(&item).unwrap_or_else(|_| self.options.clone());
            total += self.prices.request_cost(&options.model, options.dimensions(), options.images())?;
        }
        Some(round_cents(total))
    }

    async fn cancel_pending(&self) {
        let queued: Vec<(String, String)> = lock(&self.pending)
            .iter()
            .filter(|(_, pending)| pending.queued)
            .map(|(id, pending)| (id.clone(), pending.cancel_url.clone()))
            .collect();
        futures::future::join_all(queued.iter().map(|(id, url)| self.cancel_quietly(id, url))).await;
        let mut pending = lock(&self.pending);
        for (id, _) in &queued {
            pending.remove(id);
        }
    }
}

/// What fal said about an original, kept beside it in the raw cache.
fn cached_facts(item: &Item) -> Value {
    let keep =
        ["model", "request_id", "seed", "has_nsfw_concepts", "timings", "images_returned", "width", "height"];
    let facts: serde_json::Map<String, Value> =
        keep.iter().filter_map(|k| item.facts.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    Value::Object(facts)
}
