//! What a generation costs, in each model's own billing unit: per image, or per megapixel with
//! each image rounded up to whole megapixels (as fal bills FLUX), with the tier an input picks
//! (Ideogram's rendering speed) and the surcharges the model page states (Recraft's vector
//! styles cost double). The price is computed from the very input sent, so every cost-bearing
//! input counts wherever it was set (`extra: {num_images: 4}` is 4x). With a key, fal's
//! platform pricing API gives the unit price; the catalogue's is the fallback.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::catalogue::{Model, ratio_dimensions};
use super::key::ApiKey;
use super::options::preset_dimensions;

/// fal's megapixel is 1024x1024 pixels: a `square_hd` image is billed as exactly one.
const PIXELS_PER_MEGAPIXEL: u64 = 1024 * 1024;

/// The size FLUX-like endpoints make when none is sent and the model's default is unknown.
const FALLBACK_DIMENSIONS: (u32, u32) = (1024, 768);

/// What fal bills per.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Each image made.
    Image,
    /// Each started megapixel of each image.
    Megapixel,
}

impl Unit {
    fn word(self) -> &'static str {
        match self {
            Unit::Image => "image",
            Unit::Megapixel => "megapixel",
        }
    }

    /// The unit of fal's pricing API (`images`, `megapixels`...), when it is one inkflow prices.
    fn from_api(unit: &str) -> Option<Unit> {
        let unit = unit.to_ascii_lowercase();
        if unit.contains("megapixel") {
            Some(Unit::Megapixel)
        } else if unit.contains("image") {
            Some(Unit::Image)
        } else {
            None
        }
    }
}

/// A model's price.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// What it bills per.
    pub unit: Unit,
    /// US dollars per unit (at the default tier).
    pub usd: f64,
    /// Prices per value of an input, when one picks the tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Tiers>,
    /// Factors some input values add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surcharges: Vec<Surcharge>,
}

/// Dollars per unit by the value of one input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    /// The input, e.g. `rendering_speed`.
    pub input: String,
    /// Its values and their prices.
    pub usd: BTreeMap<String, f64>,
}

/// A factor on the price when an input's value starts with `prefix`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Surcharge {
    /// The input, e.g. `style`.
    pub input: String,
    /// Values starting with this, e.g. `vector_illustration`.
    pub prefix: String,
    /// What the price is multiplied by.
    pub factor: f64,
    /// What the model page says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Price {
    /// The cost of one request of `model` (when known) with input `body`, or `None` when its
    /// size cannot be known for a per-megapixel price.
    pub fn request_cost(&self, model: Option<&Model>, body: &Map<String, Value>) -> Option<f64> {
        let value_of = |name: &str| match model {
            Some(model) => model.value_of(body, name),
            None => body.get(name),
        };
        let images = value_of("num_images").and_then(Value::as_u64).unwrap_or(1).max(1);
        let mut per_unit = self.usd;
        if let Some(tiers) = &self.tiers
            && let Some(price) = value_of(&tiers.input).and_then(Value::as_str).and_then(|v| tiers.usd.get(v))
        {
            per_unit = *price;
        }
        for surcharge in &self.surcharges {
            if value_of(&surcharge.input)
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with(&surcharge.prefix))
            {
                per_unit *= surcharge.factor;
            }
        }
        let units = match self.unit {
            Unit::Image => 1,
            Unit::Megapixel => {
                let (width, height) = dimensions(model, body)?;
                (u64::from(width) * u64::from(height)).div_ceil(PIXELS_PER_MEGAPIXEL).max(1)
            }
        };
        Some(round_cents(per_unit * units as f64 * images as f64))
    }

    /// The price in a few words for a listing, e.g. `$0.025/megapixel`, `from $0.03/image`.
    pub fn describe_short(&self) -> String {
        let lowest = self.tiers.iter().flat_map(|t| t.usd.values()).fold(self.usd, |a, b| a.min(*b));
        let from = if lowest < self.usd || !self.surcharges.is_empty() { "from " } else { "" };
        format!("{from}${lowest}/{}", self.unit.word())
    }

    /// The price in words, e.g. `$0.04 per image; x2 when style is vector_illustration...`.
    pub fn describe(&self) -> String {
        let mut text = format!("${} per {}", self.usd, self.unit.word());
        if self.unit == Unit::Megapixel {
            text.push_str(" (each image rounded up to whole megapixels)");
        }
        if let Some(tiers) = &self.tiers {
            let listed: Vec<String> =
                tiers.usd.iter().map(|(value, usd)| format!("{value} ${usd}")).collect();
            text.push_str(&format!("; by {}: {}", tiers.input, listed.join(", ")));
        }
        for surcharge in &self.surcharges {
            text.push_str(&format!(
                "; x{} when {} is {}...",
                surcharge.factor, surcharge.input, surcharge.prefix
            ));
        }
        text
    }

    /// This price with `usd` per unit (from fal's pricing API or the pipeline), tiers scaled
    /// alike, since fal's API answers one unit price per endpoint.
    pub(super) fn with_unit_price(&self, unit: Unit, usd: f64) -> Price {
        let scale = if self.usd > 0.0 { usd / self.usd } else { 1.0 };
        let tiers = self.tiers.clone().map(|mut tiers| {
            tiers.usd.values_mut().for_each(|price| *price = round_cents(*price * scale));
            tiers
        });
        Price { unit, usd, tiers, surcharges: self.surcharges.clone() }
    }
}

/// The pixels of each image a request makes: its size input (or the model's default), else an
/// aspect-ratio model's size at its megapixels.
fn dimensions(model: Option<&Model>, body: &Map<String, Value>) -> Option<(u32, u32)> {
    let size = match model {
        Some(model) => model.value_of(body, "image_size"),
        None => body.get("image_size"),
    };
    match size {
        Some(Value::String(preset)) => return preset_dimensions(preset),
        Some(Value::Object(pixels)) => {
            let side =
                |key: &str| pixels.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
            return side("width").zip(side("height"));
        }
        _ => {}
    }
    let model = match model {
        Some(model) => model,
        None => return Some(FALLBACK_DIMENSIONS),
    };
    // A model that takes no size (image to image: the image takes the reference's) is priced
    // at the square of its megapixels.
    let ratio = model.value_of(body, "aspect_ratio").and_then(Value::as_str);
    let ratio = ratio.or(model.megapixels.map(|_| "1:1"))?;
    ratio_dimensions(ratio, model.megapixels.unwrap_or(1.0))
}

/// Where a price comes from, for the journal and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PriceSource {
    /// The stage's `prices` option.
    Pipeline,
    /// fal's platform pricing API, read when the stage was built.
    Platform,
    /// inkflow's catalogue.
    Catalogue,
}

impl PriceSource {
    fn word(self) -> &'static str {
        match self {
            PriceSource::Pipeline => "the stage's prices option",
            PriceSource::Platform => "fal's pricing API",
            PriceSource::Catalogue => "inkflow's catalogue",
        }
    }
}

/// The prices a stage uses: the pipeline's `prices` over fal's live ones over the catalogue.
#[derive(Clone, Debug, Default)]
pub(super) struct Prices {
    /// The pipeline's dollars per unit by model.
    overrides: BTreeMap<String, f64>,
    /// What fal's pricing API answered, by model.
    live: BTreeMap<String, (Unit, f64)>,
}

/// One request's price: its cost, and the unit price that made it, for the journal.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Quote {
    /// Dollars for the request.
    pub cost_usd: f64,
    /// The price it was computed from.
    pub price: Price,
    /// Where that price came from.
    pub source: PriceSource,
}

impl Quote {
    /// What the journal keeps beside the request.
    pub(super) fn record(&self) -> Value {
        json!({
            "cost_usd": self.cost_usd, "unit": self.price.unit.word(), "unit_usd": self.price.usd,
            "source": self.source.word(),
        })
    }
}

impl Prices {
    /// The catalogue's prices with the pipeline's `prices` (dollars per the model's unit; per
    /// megapixel for a model not in the catalogue) on top.
    pub(super) fn new(overrides: &BTreeMap<String, f64>) -> Self {
        Prices { overrides: overrides.clone(), live: BTreeMap::new() }
    }

    /// Takes fal's live price for `model`.
    pub(super) fn set_live(&mut self, model: &str, live: LivePrice) {
        self.live.insert(model.to_owned(), (live.unit, live.usd));
    }

    /// The price of `id` (whose catalogue entry is `model`), and where it comes from.
    pub(super) fn price(&self, id: &str, model: Option<&Model>) -> Option<(Price, PriceSource)> {
        let catalogued = model.map(|m| m.price.clone());
        if let Some(usd) = self.overrides.get(id) {
            let price = match &catalogued {
                Some(price) => price.with_unit_price(price.unit, *usd),
                None => Price { unit: Unit::Megapixel, usd: *usd, tiers: None, surcharges: Vec::new() },
            };
            return Some((price, PriceSource::Pipeline));
        }
        if let Some((unit, usd)) = self.live.get(id) {
            let price = match &catalogued {
                Some(price) => price.with_unit_price(*unit, *usd),
                None => Price { unit: *unit, usd: *usd, tiers: None, surcharges: Vec::new() },
            };
            return Some((price, PriceSource::Platform));
        }
        catalogued.map(|price| (price, PriceSource::Catalogue))
    }

    /// Whether `id` can be priced.
    pub(super) fn knows(&self, id: &str, model: Option<&Model>) -> bool {
        self.price(id, model).is_some()
    }

    /// What one request of `id` with input `body` costs, or `None` when it cannot be priced.
    pub(super) fn quote(&self, id: &str, model: Option<&Model>, body: &Value) -> Option<Quote> {
        let (price, source) = self.price(id, model)?;
        let cost_usd = price.request_cost(model, body.as_object()?)?;
        Some(Quote { cost_usd, price, source })
    }
}

/// A unit price from fal's platform pricing API.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct LivePrice {
    pub unit: Unit,
    pub usd: f64,
}

/// `GET {platform}/v1/models/pricing?endpoint_id=MODEL` (free, needs the key): fal's unit
/// price for `model`, when it is in dollars per image or per megapixel.
pub(super) async fn fetch_live_price(
    platform: &Url,
    key: &ApiKey,
    model: &str,
    timeout: Duration,
) -> Result<LivePrice, String> {
    let url = format!("{}/v1/models/pricing", platform.as_str().trim_end_matches('/'));
    let url =
        Url::parse_with_params(&url, [("endpoint_id", model)]).map_err(|e| format!("bad URL {url}: {e}"))?;
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .header(AUTHORIZATION, key.authorization()?)
        .send()
        .await
        .map_err(|e| format!("fal's pricing API did not answer: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("fal's pricing API answered HTTP {}", status.as_u16()));
    }
    let answer: Value =
        response.json().await.map_err(|e| format!("fal's pricing API answered no JSON: {e}"))?;
    let prices = answer.get("prices").and_then(Value::as_array).cloned().unwrap_or_default();
    let entry = prices
        .iter()
        .find(|p| p.get("endpoint_id").and_then(Value::as_str).is_none_or(|id| id == model))
        .ok_or_else(|| format!("fal's pricing API lists no price for {model}"))?;
    let currency = entry.get("currency").and_then(Value::as_str).unwrap_or("USD");
    let unit_text = entry.get("unit").and_then(Value::as_str).unwrap_or_default();
    let usd = entry.get("unit_price").and_then(Value::as_f64).filter(|p| p.is_finite() && *p >= 0.0);
    match (Unit::from_api(unit_text), usd, currency.eq_ignore_ascii_case("USD")) {
        (Some(unit), Some(usd), true) => Ok(LivePrice { unit, usd }),
        _ => Err(format!("fal's pricing API prices {model} as {entry}, which inkflow cannot apply")),
    }
}

/// Rounds to a millionth of a dollar so sums print as `0.075`, not `0.07500000000000001`.
pub(super) fn round_cents(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stages::fal::catalogue::Catalogue;

    fn cost(id: &str, body: Value) -> Option<f64> {
        let model = Catalogue::builtin().get(id);
        Prices::new(&BTreeMap::new()).quote(id, model, &body).map(|q| q.cost_usd)
    }

    #[test]
    fn per_megapixel_models_round_each_image_up_to_whole_megapixels() {
        assert_eq!(cost("fal-ai/flux/dev", json!({"image_size": "portrait_4_3"})), Some(0.025));
        assert_eq!(cost("fal-ai/flux/dev", json!({"image_size": "square_hd"})), Some(0.025));
        assert_eq!(
            cost("fal-ai/flux/dev", json!({"image_size": {"width": 1025, "height": 1024}})),
            Some(0.05)
        );
        assert_eq!(
            cost("fal-ai/flux/dev", json!({"image_size": {"width": 1920, "height": 1080}, "num_images": 3})),
            Some(0.15)
        );
        assert_eq!(cost("fal-ai/flux/schnell", json!({"image_size": "square"})), Some(0.003));
        // No size sent: the model's default (landscape_4_3 for FLUX, 1024x1024 for HiDream).
        assert_eq!(cost("fal-ai/flux/dev", json!({})), Some(0.025));
        assert_eq!(
            cost("fal-ai/qwen-image", json!({"image_size": "portrait_4_3", "num_images": 2})),
            Some(0.04)
        );
        assert_eq!(cost("fal-ai/hidream-i1-full", json!({})), Some(0.05));
        assert_eq!(cost("someone/else", json!({})), None);
    }

    #[test]
    fn per_image_models_tiers_and_surcharges_follow_the_model_pages() {
        assert_eq!(
            cost("fal-ai/flux-pro/v1.1-ultra", json!({"aspect_ratio": "3:4", "num_images": 4})),
            Some(0.24)
        );
        assert_eq!(cost("fal-ai/imagen4/preview", json!({})), Some(0.04));
        assert_eq!(cost("fal-ai/nano-banana", json!({"num_images": 2})), Some(0.078));
        let recraft = "fal-ai/recraft/v3/text-to-image";
        assert_eq!(cost(recraft, json!({})), Some(0.04));
        assert_eq!(cost(recraft, json!({"style": "vector_illustration/line_art"})), Some(0.08));
        assert_eq!(cost(recraft, json!({"style": "digital_illustration"})), Some(0.04));
        let ideogram = "fal-ai/ideogram/v3";
        assert_eq!(cost(ideogram, json!({})), Some(0.06));
        assert_eq!(cost(ideogram, json!({"rendering_speed": "TURBO", "num_images": 2})), Some(0.06));
        assert_eq!(cost(ideogram, json!({"rendering_speed": "QUALITY"})), Some(0.09));
        assert_eq!(cost("bytedance/seedream/v5/lite/text-to-image", json!({"num_images": 3})), Some(0.105));
    }

    #[test]
    fn the_pipeline_and_fal_live_prices_come_before_the_catalogue() {
        let recraft = Catalogue::builtin().get("fal-ai/recraft/v3/text-to-image");
        let mut prices = Prices::new(&[("x/y".into(), 0.1)].into());
        prices.set_live("fal-ai/recraft/v3/text-to-image", LivePrice { unit: Unit::Image, usd: 0.05 });
        let vector = json!({"style": "vector_illustration"});
        let quote = prices.quote("fal-ai/recraft/v3/text-to-image", recraft, &vector).unwrap();
        assert_eq!((quote.cost_usd, quote.source), (0.1, PriceSource::Platform));
        assert_eq!(quote.record()["unit_usd"], json!(0.05));
        let unknown =
            prices.quote("x/y", None, &json!({"image_size": {"width": 2048, "height": 1024}})).unwrap();
        assert_eq!((unknown.cost_usd, unknown.source), (0.2, PriceSource::Pipeline));
        assert!(prices.knows("fal-ai/flux/dev", Catalogue::builtin().get("fal-ai/flux/dev")));
        assert!(!prices.knows("a/b", None));
    }
}
