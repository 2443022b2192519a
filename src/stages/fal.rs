//! The `fal` stage: turns prompts into images with fal.ai's queue API (FLUX by default).
//!
//! This is the stage users pay for, so it is built around three promises: a request fal has
//! accepted is journaled before anything else happens (and a resumed batch collects it instead
//! of paying again); a retry of a poll or a download never re-submits; and rate limits and
//! outages are waited out with backoff, while a refused key stops the batch at once.

mod check;
mod client;
mod download;
mod error;
mod images;
mod key;
mod options;
mod pricing;
mod retry;
mod stage;

use std::sync::Arc;

use serde_json::Value;

pub use self::check::{CheckLine, check_setup};
pub use self::key::{ApiKey, Environment};
use self::options::{DEFAULT_BASE_URL, Options, check_base_url};
use self::stage::FalStage;
use crate::engine::media::Media;
use crate::engine::stage::{BuildContext, Component, Kind, KindInfo, OptionDoc, OutputMedia, Role};

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
                "fal model id; a prompt field `model` overrides it if `allow_overrides` lists it",
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
                "allow_overrides",
                "list of model input names",
                "[seed]",
                "which model inputs (model, image_size, num_images, enable_safety_checker...) a prompt file may set per item",
            ),
            doc(
                "num_images",
                "integer >= 1",
                "1",
                "images per request; all are paid, downloaded and cached, the first unflagged one becomes the page",
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
                "attempts per free call (408, 429, 500, 502-504, lost connections; 404 on images) and per submission fal surely did not accept",
            ),
            doc("base_delay_ms", "integer", "1000", "first retry delay; doubles per retry, with jitter"),
            doc("request_timeout", "duration", "60s", "limit for each HTTP call, body included"),
            doc("poll_interval_ms", "integer >= 1", "1000", "time between status polls"),
            doc(
                "start_timeout",
                "duration",
                "none",
                "fal gives up (uncharged) on a request no runner started by then (x-fal-request-timeout)",
            ),
            doc(
                "deadline",
                "duration",
                "10m",
                "longest wait for one item's result; then the request is cancelled and the item fails",
            ),
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
        let stage = FalStage::new(&ctx.id, options, &self.env, ctx)?;
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
