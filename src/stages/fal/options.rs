//! The fal stage's options: the model inputs (overridable per item from the prompt file) and
//! the client settings (retries, timeouts, caps, budget).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::catalogue::{Model, shape_inputs};
use super::references::{self, Lora, References};
use crate::engine::duration::PositiveDuration;
use crate::engine::options::parse_declared;
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::OptionsError;

/// The default model: FLUX.1 [dev], the model of both original scripts.
pub(super) const DEFAULT_MODEL: &str = "fal-ai/flux/dev";

/// The default queue host.
pub(super) const DEFAULT_BASE_URL: &str = "https://queue.fal.run";

/// fal's named sizes for FLUX models and the pixels they stand for.
pub(super) const PRESETS: [(&str, (u32, u32)); 6] = [
    ("square_hd", (1024, 1024)),
    ("square", (512, 512)),
    ("portrait_4_3", (768, 1024)),
    ("portrait_16_9", (576, 1024)),
    ("landscape_4_3", (1024, 768)),
    ("landscape_16_9", (1024, 576)),
];

/// The size fal's FLUX endpoints use when none is sent.
const FAL_DEFAULT_PRESET: &str = "landscape_4_3";

/// The pixels of one of fal's named sizes.
pub(super) fn preset_dimensions(name: &str) -> Option<(u32, u32)> {
    PRESETS.iter().find(|(p, _)| *p == name).map(|(_, dims)| *dims)
}

/// Schema extension marking an option a prompt file may set per item: a model input, never a
/// client setting. The mark on the field is the one declaration; [`item_overrides`] reads it.
const PER_ITEM: &str = "x-inkflow-per-item";

/// Option names a prompt file may set per item (in the prompt's extra fields) to override the
/// pipeline's value: the fields of [`Options`] marked [`PER_ITEM`], in name order.
pub(super) fn item_overrides() -> &'static [String] {
    static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
        let schema = schemars::schema_for!(Options);
        let properties = schema.as_value().get("properties").and_then(Value::as_object).cloned();
        properties
            .into_iter()
            .flatten()
            .filter(|(_, property)| property.get(PER_ITEM) == Some(&Value::Bool(true)))
            .map(|(name, _)| name)
            .collect()
    });
    &NAMES
}

/// An image size: a named preset or explicit pixels.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub(super) enum ImageSize {
    /// One of [`PRESETS`].
    Preset(String),
    /// Explicit pixels.
    Custom {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl ImageSize {
    /// The pixels this size stands for, or `None` for an unknown preset.
    pub(super) fn dimensions(&self) -> Option<(u32, u32)> {
        match self {
            ImageSize::Preset(name) => preset_dimensions(name),
            ImageSize::Custom { width, height } => Some((*width, *height)),
        }
    }
}

/// Everything the pipeline file may set on a `fal` stage. Unset model inputs are left to the
/// model's own defaults.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Options {
    /// fal model id; a prompt field `model` overrides it if `allow_overrides` lists it.
    #[serde(default = "default_model")]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub model: String,
    /// The page shape: square_hd, square, portrait_4_3, portrait_16_9, landscape_4_3,
    /// landscape_16_9 or {width, height}; sent as the model's preset or pixels, or as its
    /// nearest aspect ratio of the same orientation (the model's default when not set).
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub image_size: Option<ImageSize>,
    /// Denoising steps.
    #[serde(default)]
    #[schemars(range(min = 1))]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub num_inference_steps: Option<u32>,
    /// How closely to follow the prompt.
    #[serde(default)]
    #[schemars(range(min = 0))]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub guidance_scale: Option<f64>,
    /// Seed for reproducible images (random when not set); a prompt field `seed` overrides it.
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub seed: Option<u64>,
    /// Images per request; all are paid, downloaded and cached, the first unflagged one
    /// becomes the page.
    #[serde(default)]
    #[schemars(range(min = 1))]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub num_images: Option<u32>,
    /// fal's NSFW check; flagged images are filtered.
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub enable_safety_checker: Option<bool>,
    /// Format fal encodes the image in (png, jpeg, or what `inkflow models MODEL` lists).
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub output_format: Option<String>,
    /// Reference images, local files (uploaded to fal once per batch) or URLs: a list for the
    /// model's first image input, or lists by kind ({image, character, style}) for the inputs
    /// the model takes them in (`inkflow models MODEL` lists them); a model without image
    /// inputs refuses them.
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub references: Option<References>,
    /// LoRAs for a LoRA endpoint such as fal-ai/flux-lora: [{path, scale}], each path a URL or
    /// a local .safetensors file (uploaded to fal once per batch), scale 0-4 (default 1);
    /// priced as the endpoint is.
    #[serde(default)]
    #[schemars(extend("x-inkflow-per-item" = true))]
    pub loras: Vec<Lora>,
    /// More model inputs (e.g. Recraft's style, sync_mode, strength), checked against the model's
    /// schema like the named ones; `inkflow models MODEL` lists them.
    #[serde(default)]
    pub extra: Map<String, Value>,
    /// The queue host (default: $FAL_QUEUE_BASE_URL, else https://queue.fal.run).
    #[serde(default)]
    #[schemars(extend("x-inkflow-type" = "URL"))]
    pub base_url: Option<String>,
    /// Attempts per free call (408, 429, 500, 502-504, lost connections; 404 on images) and
    /// per submission fal surely did not accept.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// First retry delay; doubles per retry, with jitter.
    #[serde(default = "default_base_delay_ms")]
    #[schemars(range(max = 600_000))]
    pub base_delay_ms: u64,
    /// Limit for each HTTP call, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: PositiveDuration,
    /// Time between status polls.
    #[serde(default = "default_poll_interval_ms")]
    #[schemars(range(min = 1))]
    pub poll_interval_ms: u64,
    /// Largest image accepted, in bytes (downloads and inline data: URIs).
    #[serde(default = "default_max_image_bytes")]
    #[schemars(range(min = 1))]
    pub max_image_bytes: u64,
    /// Stop submitting once this many dollars would be exceeded (no limit when not set).
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Prices in $ per the model's billing unit (per megapixel for a model not in the
    /// catalogue), by model, over fal's and the catalogue's, for the estimate and the budget.
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// fal gives up (uncharged) on a request no runner started by then (x-fal-request-timeout).
    #[serde(default)]
    pub start_timeout: Option<PositiveDuration>,
    /// Longest wait for one item's result; then the request is cancelled and the item fails.
    #[serde(default = "default_deadline")]
    pub deadline: PositiveDuration,
    /// After Ctrl-C, how long to go on collecting the requests fal is already generating (they
    /// are paid for); what still runs then is left for a resumed batch to collect.
    #[serde(default = "default_stop_wait")]
    pub stop_wait: PositiveDuration,
    /// Which model inputs (model, image_size, num_images, enable_safety_checker...) a prompt
    /// file may set per item.
    #[serde(default = "default_allow_overrides")]
    pub allow_overrides: Vec<String>,
}

fn default_model() -> String {
    DEFAULT_MODEL.to_owned()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_base_delay_ms() -> u64 {
    1000
}
fn default_request_timeout() -> PositiveDuration {
    PositiveDuration::from_secs(60)
}
fn default_deadline() -> PositiveDuration {
    PositiveDuration::from_secs(10 * 60)
}
/// FLUX runs take seconds; a minute collects them without keeping a user who pressed Ctrl-C.
fn default_stop_wait() -> PositiveDuration {
    PositiveDuration::from_secs(60)
}
/// A prompt may pick its own seed; anything that changes the bill or the safety check needs
/// the pipeline's word.
fn default_allow_overrides() -> Vec<String> {
    vec!["seed".to_owned()]
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_max_image_bytes() -> u64 {
    10 * 1024 * 1024
}

impl Options {
    /// Parses and checks the options without any I/O, pointing at the offending field.
    pub(super) fn parse(options: &Value) -> Result<Options, OptionsError> {
        let parsed: Options = parse_declared(options)?;
        parsed.check_inputs()?;
        if !parsed.prices.values().all(|p| p.is_finite() && *p >= 0.0) {
            return Err(OptionsError::at("prices", "prices must be >= 0"));
        }
        if let Some(name) = parsed.allow_overrides.iter().find(|name| !item_overrides().contains(name)) {
            return Err(OptionsError::at(
                "allow_overrides",
                format!("{name:?} cannot be set per prompt (these can: {})", item_overrides().join(", ")),
            ));
        }
        if let Some(url) = &parsed.base_url {
            check_base_url(url).map_err(|m| OptionsError::at("base_url", m))?;
        }
        if let Some(budget) = parsed.max_cost_usd
            && !(budget.is_finite() && budget > 0.0)
        {
            return Err(OptionsError::at("max_cost_usd", "must be a positive number of dollars"));
        }
        Ok(parsed)
    }

    /// The options with an item's overrides (fields of its prompt named in [`item_overrides`])
    /// applied to `raw`, the options as written in the pipeline. A prompt file may override
    /// only what `allow_overrides` lists, so it cannot raise the bill or turn the safety
    /// checker off behind the pipeline's back.
    pub(super) fn for_item(
        &self,
        raw: &Value,
        prompt_fields: &Map<String, Value>,
    ) -> Result<Options, String> {
        let mut merged = raw.as_object().cloned().unwrap_or_default();
        for name in item_overrides() {
            let Some(value) = prompt_fields.get(name) else { continue };
            if !self.allow_overrides.iter().any(|allowed| allowed == name) {
                return Err(format!(
                    "prompt field {name:?} would override the pipeline's {name}, which this stage does not allow: \
                     add {name:?} to the stage's allow_overrides to let prompts set it"
                ));
            }
            merged.insert(name.to_owned(), value.clone());
        }
        let parsed: Options = parse_declared(&Value::Object(merged))
            .map_err(|e| format!("prompt field {:?}: {}", e.path.join("."), e.message))?;
        parsed.check_inputs().map_err(|e| format!("prompt field {:?}: {}", e.path.join("."), e.message))?;
        Ok(parsed)
    }

    /// Checks on the model inputs, which an item may override.
    fn check_inputs(&self) -> Result<(), OptionsError> {
        let model_ok = !self.model.is_empty()
            && !self.model.starts_with('/')
            && self.model.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && self.model.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !model_ok {
            return Err(OptionsError::at(
                "model",
                format!("{:?} is not a fal model id like fal-ai/flux/dev", self.model),
            ));
        }
        match &self.image_size {
            Some(ImageSize::Preset(name)) if ImageSize::Preset(name.clone()).dimensions().is_none() => {
                let names: Vec<&str> = PRESETS.iter().map(|(p, _)| *p).collect();
                return Err(OptionsError::at(
                    "image_size",
                    format!(
                        "unknown size {name:?} (expected one of {} or {{width, height}})",
                        names.join(", ")
                    ),
                ));
            }
            Some(ImageSize::Custom { width, height })
                if !(1..=16384).contains(width) || !(1..=16384).contains(height) =>
            {
                return Err(OptionsError::at("image_size", "width and height must be between 1 and 16384"));
            }
            _ => {}
        }
        if self.guidance_scale.is_some_and(|g| !g.is_finite() || g < 0.0) {
            return Err(OptionsError::at("guidance_scale", "must be a number >= 0"));
        }
        if let Some(references) = &self.references {
            references.check_written()?;
        }
        references::check_loras(&self.loras)?;
        if let Some(name) = ["loras", "references"].into_iter().find(|name| self.extra.contains_key(*name)) {
            return Err(OptionsError::at(
                &format!("extra.{name}"),
                format!("set `{name}` as the stage's own option, where it is checked and priced"),
            ));
        }
        if self.extra.contains_key("prompt") {
            return Err(OptionsError::at(
                "extra.prompt",
                "the prompt comes from the source, not from `extra`",
            ));
        }
        Ok(())
    }

    /// The pixels of one requested image, assuming fal's default size when none is given.
    pub(super) fn dimensions(&self) -> (u32, u32) {
        self.image_size.as_ref().and_then(ImageSize::dimensions).unwrap_or_else(|| {
            ImageSize::Preset(FAL_DEFAULT_PRESET.into()).dimensions().unwrap_or((1024, 768))
        })
    }

    /// Images per request.
    pub(super) fn images(&self) -> u32 {
        self.num_images.unwrap_or(1)
    }

    /// The model inputs these options set by name, as fal takes them.
    fn named_inputs(&self) -> Vec<(&'static str, Value)> {
        let inputs = [
            ("image_size", self.image_size.as_ref().and_then(|s| serde_json::to_value(s).ok())),
            ("num_inference_steps", self.num_inference_steps.map(Value::from)),
            ("guidance_scale", self.guidance_scale.map(Value::from)),
            ("seed", self.seed.map(Value::from)),
            ("num_images", self.num_images.map(Value::from)),
            ("enable_safety_checker", self.enable_safety_checker.map(Value::from)),
            ("output_format", self.output_format.clone().map(Value::from)),
            ("loras", (!self.loras.is_empty()).then(|| serde_json::to_value(&self.loras).ok()).flatten()),
        ];
        inputs.into_iter().filter_map(|(name, value)| Some((name, value?))).collect()
    }

    /// Every model input these options set, with the option that sets it (`extra.style`):
    /// the named inputs over `extra`, and never `image_size`, the page shape, which is mapped
    /// onto each model's own size input.
    fn set_inputs(&self) -> Vec<(String, String, Value)> {
        let named = self.named_inputs();
        let from_extra = self
            .extra
            .iter()
            .filter(|(name, _)| !named.iter().any(|(n, _)| n == name))
            .map(|(name, value)| (format!("extra.{name}"), name.clone(), value.clone()));
        let by_name =
            named.iter().map(|(name, value)| ((*name).to_owned(), (*name).to_owned(), value.clone()));
        by_name.filter(|(_, name, _)| name != "image_size").chain(from_extra).collect()
    }

    /// Checks every input these options would send against `model`'s schema, pointing at the
    /// option that sets it: an out-of-range, mistyped or unknown value is refused here, before
    /// fal runs (and bills) a request only to refuse it.
    pub(super) fn check_model(&self, model: &Model) -> Result<(), OptionsError> {
        if let Some(references) = &self.references {
            references.check_model(model)?;
        }
        references::check_model_loras(&self.loras, model)?;
        for (path, name, value) in self.set_inputs() {
            if let Some(input) = model.inputs.get(&name) {
                input.check(&model.id, &name, &value).map_err(|message| OptionsError::at(&path, message))?;
            }
        }
        Ok(())
    }

    /// [`Options::check_model`] for a catalogued model; a model the catalogue lacks runs
    /// unchecked, but cannot take references, since nothing says which input takes images.
    pub(super) fn check_catalogued(&self, model: Option<&Model>) -> Result<(), OptionsError> {
        match model {
            Some(model) => self.check_model(model),
            None if self.references.is_some() => Err(OptionsError::at(
                "references",
                format!(
                    "{} is not in inkflow's catalogue, so which of its inputs takes images is unknown: \
                     `inkflow models {} --refresh` adds it from fal's APIs",
                    self.model, self.model
                ),
            )),
            None => Ok(()),
        }
    }

    /// The JSON input fal receives for `prompt` with this item's references and local LoRA
    /// weights (read against `folder`), each given as `url_of` says (its fal storage URL, or
    /// what identifies it for the raw cache).
    pub(super) fn request_body_with(
        &self,
        prompt: &str,
        model: Option<&Model>,
        folder: &std::path::Path,
        url_of: &dyn Fn(&PipelinePath) -> String,
    ) -> Value {
        let mut body = self.request_body(prompt, model);
        if let (Some(references), Some(model), Some(fields)) = (&self.references, model, body.as_object_mut())
        {
            fields.extend(references.placed(model, url_of));
        }
        let sent_loras = body.get_mut("loras").and_then(Value::as_array_mut).into_iter().flatten();
        for (lora, sent) in self.loras.iter().zip(sent_loras) {
            if let Some(file) = lora.file(folder) {
                sent["path"] = url_of(&file).into();
            }
        }
        body
    }

    /// The local files these options send (references, then LoRA weights), each read against
    /// `folder` (the pipeline file's) where it is relative.
    pub(super) fn sent_files(&self, folder: &std::path::Path) -> Vec<PipelinePath> {
        let references = self.references.as_ref().map(References::paths).unwrap_or_default();
        let references = references.into_iter().cloned();
        references.chain(self.loras.iter().filter_map(|lora| lora.file(folder))).collect()
    }

    /// The inputs these options set that `model` does not take: they are not sent. Each is
    /// the option's path and a warning.
    pub(super) fn unsent(&self, model: &Model) -> Vec<OptionsError> {
        let mut unsent: Vec<OptionsError> = self
            .set_inputs()
            .into_iter()
            .filter(|(_, name, _)| !model.inputs.contains_key(name))
            .map(|(path, name, _)| {
                OptionsError::at(&path, format!("{} takes no input {name}: it is not sent", model.id))
            })
            .collect();
        let takes_a_size = ["image_size", "aspect_ratio"].iter().any(|n| model.inputs.contains_key(*n));
        if self.image_size.is_some() && !takes_a_size {
            unsent.push(OptionsError::at(
                "image_size",
                format!(
                    "{} takes no size input: the page shape is not sent, the model picks its own",
                    model.id
                ),
            ));
        }
        unsent
    }

    /// The JSON input fal receives for `prompt`: `extra` first, then the named inputs on top.
    /// For a catalogued `model`, the page shape becomes the size input it reads and inputs it
    /// does not take are left out; an unknown model gets everything as written.
    pub(super) fn request_body(&self, prompt: &str, model: Option<&Model>) -> Value {
        let mut body = self.extra.clone();
        for (name, value) in self.named_inputs().into_iter().filter(|(name, _)| *name != "image_size") {
            body.insert(name.into(), value);
        }
        if let Some(written) = self.image_size.as_ref().and_then(|s| serde_json::to_value(s).ok()) {
            match model {
                Some(model) => {
                    body.remove("image_size");
                    body.extend(shape_inputs(model, &written, self.dimensions()));
                }
                None => {
                    body.insert("image_size".into(), written);
                }
            }
        }
        if let Some(model) = model {
            body.retain(|name, _| model.inputs.contains_key(name));
        }
        body.insert("prompt".into(), prompt.into());
        Value::Object(body)
    }
}

/// A base URL must be http(s) with a host and no query, since request paths are appended to it.
pub(super) fn check_base_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} must be an http:// or https:// URL with a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn error_at(options: Value) -> (String, String) {
        let e = Options::parse(&options).unwrap_err();
        (e.path.join("."), e.message)
    }

    #[test]
    fn defaults_are_flux_dev_with_five_attempts() {
        let o = Options::parse(&json!({})).unwrap();
        assert_eq!(o.model, "fal-ai/flux/dev");
        assert_eq!((o.max_attempts, o.max_image_bytes), (5, 10 * 1024 * 1024));
        assert_eq!(o.request_timeout.get(), Duration::from_secs(60));
        assert_eq!((o.start_timeout, o.deadline.get()), (None, Duration::from_secs(600)));
        assert_eq!(o.stop_wait.get(), Duration::from_secs(60));
        assert_eq!(o.dimensions(), (1024, 768));
    }

    #[test]
    fn a_prompt_may_override_the_model_inputs_and_nothing_else() {
        let names = [
            "enable_safety_checker",
            "guidance_scale",
            "image_size",
            "loras",
            "model",
            "num_images",
            "num_inference_steps",
            "output_format",
            "references",
            "seed",
        ];
        assert_eq!(item_overrides(), names);
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(error_at(json!({"image_size": "portrait"})).0, "image_size");
        assert!(error_at(json!({"image_size": "portrait"})).1.contains("portrait_4_3"));
        assert_eq!(error_at(json!({"image_size": {"width": 0, "height": 5}})).0, "image_size");
        assert_eq!(error_at(json!({"max_attempts": 0})).0, "max_attempts");
        assert_eq!(error_at(json!({"request_timeout": "soon"})).0, "request_timeout");
        assert_eq!(error_at(json!({"stop_wait": "a while"})).0, "stop_wait");
        assert_eq!(error_at(json!({"model": "../etc"})).0, "model");
        assert_eq!(error_at(json!({"base_url": "ftp://x"})).0, "base_url");
        assert_eq!(error_at(json!({"extra": {"prompt": "x"}})).0, "extra.prompt");
        assert_eq!(error_at(json!({"stepz": 3})).0, "stepz");
        assert!(error_at(json!({"stepz": 3})).1.contains("num_inference_steps"));
        assert_eq!(error_at(json!({"max_cost_usd": 0})).0, "max_cost_usd");
    }

    #[test]
    fn items_override_model_inputs_only() {
        let raw = json!({"seed": 1, "image_size": "portrait_4_3", "max_attempts": 2,
                         "allow_overrides": ["seed", "image_size"]});
        let pipeline = Options::parse(&raw).unwrap();
        let fields: Map<String, Value> =
            json!({"seed": 42, "image_size": {"width": 640, "height": 480}, "max_attempts": 9, "mood": "calm"})
                .as_object()
                .cloned()
                .unwrap();
        let o = pipeline.for_item(&raw, &fields).unwrap();
        assert_eq!(o.seed, Some(42));
        assert_eq!(o.dimensions(), (640, 480));
        assert_eq!(o.max_attempts, 2);
        let bad = json!({"seed": "forty"}).as_object().cloned().unwrap();
        let message = pipeline.for_item(&raw, &bad).unwrap_err();
        assert!(message.starts_with("prompt field \"seed\""), "{message}");
    }

    #[test]
    fn a_prompt_overrides_only_what_the_pipeline_allows() {
        let defaults = Options::parse(&json!({})).unwrap();
        for field in ["model", "num_images", "enable_safety_checker", "image_size"] {
            let fields = json!({ field: json!(null) }).as_object().cloned().unwrap();
            let message = defaults.for_item(&json!({}), &fields).unwrap_err();
            assert!(message.contains(field) && message.contains("allow_overrides"), "{message}");
        }
        let seed = json!({"seed": 3}).as_object().cloned().unwrap();
        assert_eq!(defaults.for_item(&json!({}), &seed).unwrap().seed, Some(3));
        assert_eq!(error_at(json!({"allow_overrides": ["max_cost_usd"]})).0, "allow_overrides");
    }

    fn model(id: &str) -> &'static Model {
        crate::stages::fal::catalogue::Catalogue::builtin().get(id).unwrap()
    }

    #[test]
    fn request_body_puts_named_inputs_over_extra() {
        let o = Options::parse(&json!({
            "image_size": "portrait_4_3", "num_inference_steps": 28, "guidance_scale": 3.5,
            "output_format": "png", "extra": {"seed": 5, "acceleration": "high"}, "seed": 7
        }))
        .unwrap();
        let expected = json!({"prompt": "a cat", "image_size": "portrait_4_3", "num_inference_steps": 28,
                              "guidance_scale": 3.5, "output_format": "png", "seed": 7, "acceleration": "high"});
        assert_eq!(o.request_body("a cat", None), expected);
        assert_eq!(o.request_body("a cat", Some(model("fal-ai/flux/dev"))), expected);
    }

    #[test]
    fn a_model_gets_its_own_size_input_and_only_the_inputs_it_takes() {
        let o = Options::parse(&json!({
            "image_size": "portrait_4_3", "num_inference_steps": 28, "guidance_scale": 3.5,
            "extra": {"raw": true, "style": "vector_illustration"}
        }))
        .unwrap();
        assert_eq!(
            o.request_body("a cat", Some(model("fal-ai/flux-pro/v1.1-ultra"))),
            json!({"prompt": "a cat", "aspect_ratio": "3:4", "raw": true})
        );
        assert_eq!(
            o.request_body("a cat", Some(model("fal-ai/recraft/v3/text-to-image"))),
            json!({"prompt": "a cat", "image_size": "portrait_4_3", "style": "vector_illustration"})
        );
        let unsent: Vec<String> =
            o.unsent(model("fal-ai/flux-pro/v1.1-ultra")).iter().map(|e| e.path.join(".")).collect();
        assert_eq!(unsent, ["num_inference_steps", "guidance_scale", "extra.style"]);
    }

    #[test]
    fn every_input_is_checked_against_the_model_wherever_it_is_set() {
        let schnell = model("fal-ai/flux/schnell");
        let check = |options: Value| Options::parse(&options).unwrap().check_model(schnell);
        let e = check(json!({"num_inference_steps": 28})).unwrap_err();
        assert_eq!(
            (e.path.join("."), e.message.as_str()),
            ("num_inference_steps".into(), "num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12")
        );
        let e = check(json!({"extra": {"num_inference_steps": 13}})).unwrap_err();
        assert_eq!(e.path.join("."), "extra.num_inference_steps");
        let e = check(json!({"output_format": "gif"})).unwrap_err();
        assert_eq!(e.path.join("."), "output_format");
        assert_eq!(
            check(json!({"extra": {"num_images": 5}})).unwrap_err().path.join("."),
            "extra.num_images"
        );
        // The named input wins over `extra`, so only it is checked.
        assert!(check(json!({"num_inference_steps": 4, "extra": {"num_inference_steps": 40}})).is_ok());
        assert!(check(json!({"extra": {"unknown_to_schnell": 1}})).is_ok());
    }
}
