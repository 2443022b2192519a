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
use crate::engine::options::documented;
use crate::engine::stage::{BuildContext, Component, Kind, KindInfo, OutputMedia, Role};

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
