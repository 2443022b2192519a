//! What a generation costs: fal bills FLUX models per megapixel, rounding each image up to a
//! whole megapixel, so a price table per model and the requested size give the cost before
//! anything is submitted (for `--dry-run` and the `max_cost_usd` budget).

use std::collections::BTreeMap;

/// fal's megapixel is 1024x1024 pixels: a `square_hd` image is billed as exactly one.
const PIXELS_PER_MEGAPIXEL: u64 = 1024 * 1024;

/// Prices in US dollars per megapixel for the models the original scripts used.
pub(super) const DEFAULT_PRICES: [(&str, f64); 2] =
    [("fal-ai/flux/dev", 0.025), ("fal-ai/flux/schnell", 0.003)];

/// Dollars per megapixel by model id: the defaults overlaid with the pipeline's `prices`.
#[derive(Clone, Debug)]
pub(super) struct Prices {
    per_megapixel: BTreeMap<String, f64>,
}

impl Prices {
    /// The default table with `overrides` (from the pipeline file) on top.
    pub(super) fn new(overrides: &BTreeMap<String, f64>) -> Self {
        let mut per_megapixel: BTreeMap<String, f64> =
            DEFAULT_PRICES.iter().map(|(model, price)| ((*model).to_owned(), *price)).collect();
        per_megapixel.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Prices { per_megapixel }
    }

    /// Whether the table knows this model.
    pub(super) fn knows(&self, model: &str) -> bool {
        self.per_megapixel.contains_key(model)
    }

    /// The cost of one request making `images` images of `width`x`height`, or `None` for a
    /// model without a price.
    pub(super) fn request_cost(&self, model: &str, (width, height): (u32, u32), images: u32) -> Option<f64> {
        let price = self.per_megapixel.get(model)?;
        let megapixels = (u64::from(width) * u64::from(height)).div_ceil(PIXELS_PER_MEGAPIXEL).max(1);
        Some(round_cents(price * megapixels as f64 * f64::from(images)))
    }
}

/// Rounds to a millionth of a dollar so sums print as `0.075`, not `0.07500000000000001`.
pub(super) fn round_cents(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_rounded_up_to_whole_megapixels() {
        let prices = Prices::new(&BTreeMap::new());
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (768, 1024), 1), Some(0.025));
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (1024, 1024), 1), Some(0.025));
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (1025, 1024), 1), Some(0.05));
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (1920, 1080), 1), Some(0.05));
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (1920, 1080), 3), Some(0.15));
        assert_eq!(prices.request_cost("fal-ai/flux/schnell", (512, 512), 1), Some(0.003));
        assert_eq!(prices.request_cost("someone/else", (512, 512), 1), None);
    }

    #[test]
    fn pipeline_prices_override_and_extend_the_defaults() {
        let prices = Prices::new(&[("fal-ai/flux/dev".into(), 0.03), ("x/y".into(), 0.1)].into());
        assert_eq!(prices.request_cost("fal-ai/flux/dev", (512, 512), 1), Some(0.03));
        assert_eq!(prices.request_cost("x/y", (2048, 1024), 1), Some(0.2));
        assert!(prices.knows("fal-ai/flux/schnell"));
    }
}
