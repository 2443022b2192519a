//! The `fal` stage: turns prompts into images with fal.ai's queue API (FLUX by default).
//!
//! This is the stage users pay for, so it is built around three promises: a request fal has
//! accepted is journaled before anything else happens (and a resumed batch collects it instead
//! of paying again); a retry of a poll or a download never re-submits; and rate limits and
//! outages are waited out with backoff, while a refused key stops the batch at once.

mod catalogue;
mod check;
mod client;
mod download;
mod error;
mod images;
mod key;
pub(crate) mod llm;
mod models;
mod options;
mod pricing;
mod references;
mod retry;
mod stage;
mod upload;

use std::sync::Arc;

use serde_json::Value;

pub use self::catalogue::{Input, InputType, Model, show as show_value};
pub use self::check::{CheckLine, check_setup};
pub use self::key::{ApiKey, Environment};
pub use self::models::{ModelEntry, all_models, find_model, refresh_model};
use self::options::{DEFAULT_BASE_URL, Options, check_base_url};
pub use self::pricing::{Price, Unit};
use self::stage::FalStage;
use crate::engine::media::Media;
use crate::engine::options::documented;
use crate::engine::stage::{BuildContext, Component, Kind, KindInfo, OptionsError, OutputMedia, Role};

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
        let info = KindInfo {
            name: "fal".into(),
            role: Role::Stage,
            summary: "generates an image per prompt with fal.ai (FLUX), with retries, a budget and resume"
                .into(),
            options: documented::<Options>(),
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

    fn check(&self, options: &Value) -> Result<(), OptionsError> {
        let parsed = Options::parse(options)?;
        let model = catalogue::find(&parsed.model, &self.env).map_err(|e| OptionsError::at("model", e))?;
        parsed.check_catalogued(model.as_ref())?;
        if parsed.max_cost_usd.is_some()
            && !pricing::Prices::new(&parsed.prices).knows(&parsed.model, model.as_ref())
        {
            return Err(OptionsError::at(
                "max_cost_usd",
                format!(
                    "a budget needs a price for model {:?}, which is not in the catalogue: add it under `prices`, \
                     or add the model with `inkflow models {} --refresh`",
                    parsed.model, parsed.model
                ),
            ));
        }
        Ok(())
    }

    fn warnings(&self, options: &Value) -> Vec<OptionsError> {
        let Ok(parsed) = Options::parse(options) else { return Vec::new() };
        let Ok(model) = catalogue::find(&parsed.model, &self.env) else { return Vec::new() };
        let mut warnings = match &model {
            Some(model) => parsed.unsent(model),
            None => vec![OptionsError::at("model", models::unchecked_warning(&parsed.model))],
        };
        // A cap set below what the model can answer is raised, never enforced after paying.
        if options.get("max_image_bytes").is_some()
            && let Ok(caps) = stage::output_caps(&parsed, model.as_ref())
            && caps.image_bytes > parsed.max_image_bytes
        {
            warnings.push(OptionsError::at(
                "max_image_bytes",
                format!(
                    "max_image_bytes {} is raised to {} for {}: its images can be that large, and an image \
                     already paid for is never dropped for its size",
                    parsed.max_image_bytes, caps.image_bytes, parsed.model
                ),
            ));
        }
        warnings
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
