//! One page shape for every model: the pipeline states it once (`image_size`, a preset or
//! width x height) and each model gets it in the size input it reads. fal's apps ignore inputs
//! they do not know, so sending `image_size` to a model that reads `aspect_ratio` silently
//! makes its default shape (landscape for FLUX1.1 [pro] ultra).

use serde_json::{Value, json};

use super::Model;
use super::input::{Input, InputType};

/// The inputs that ask `model` for a page of `dims` pixels, written as `written` in the
/// pipeline (a preset name or `{width, height}`): the preset or the pixels where the model
/// takes them, else its nearest aspect ratio of the same orientation (3:4 for a letter page).
/// Empty when the model reads no size input at all.
pub fn shape_inputs(model: &Model, written: &Value, dims: (u32, u32)) -> Vec<(String, Value)> {
    if let Some(size) = model.inputs.get("image_size").filter(|i| i.kind == InputType::ImageSize) {
        let value = if size.check(&model.id, "image_size", written).is_ok() {
            written.clone()
        } else if size.custom != Some(false) {
            json!({"width": dims.0, "height": dims.1})
        } else {
            match nearest_preset(size, dims) {
                Some(preset) => preset,
                None => return Vec::new(),
            }
        };
        return vec![("image_size".into(), value)];
    }
    let Some(ratios) = model.inputs.get("aspect_ratio") else { return Vec::new() };
    nearest_ratio(ratios, dims).map(|ratio| vec![("aspect_ratio".into(), ratio)]).unwrap_or_default()
}

/// The ratio among `input`'s choices (`"3:4"`...) nearest to `dims` that keeps its orientation.
pub fn nearest_ratio(input: &Input, dims: (u32, u32)) -> Option<Value> {
    let choices = input.choices.as_ref()?;
    nearest(choices.iter().filter_map(|c| Some((c.clone(), parse_ratio(c.as_str()?)?))), dims)
}

/// The preset among `input`'s choices nearest in shape to `dims`, keeping its orientation.
fn nearest_preset(input: &Input, dims: (u32, u32)) -> Option<Value> {
    let choices = input.choices.as_ref()?;
    let known = choices.iter().filter_map(|c| {
        let (w, h) = crate::stages::fal::options::preset_dimensions(c.as_str()?)?;
        Some((c.clone(), f64::from(w) / f64::from(h)))
    });
    nearest(known, dims)
}

/// The candidate whose width/height ratio is nearest to that of `dims` on a log scale,
/// among those of the same orientation (a portrait page never becomes landscape).
fn nearest(candidates: impl Iterator<Item = (Value, f64)>, (width, height): (u32, u32)) -> Option<Value> {
    let page = f64::from(width.max(1)) / f64::from(height.max(1));
    let same_side = |ratio: f64| {
        if page < 1.0 {
            ratio <= 1.0
        } else if page > 1.0 {
            ratio >= 1.0
        } else {
            true
        }
    };
    candidates
        .filter(|(_, ratio)| same_side(*ratio))
        .min_by(|a, b| (a.1.ln() - page.ln()).abs().total_cmp(&(b.1.ln() - page.ln()).abs()))
        .map(|(value, _)| value)
}

/// `"3:4"` as 0.75.
fn parse_ratio(text: &str) -> Option<f64> {
    let (w, h) = text.split_once(':')?;
    let (w, h): (f64, f64) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0.0 && h > 0.0).then_some(w / h)
}

/// The pixels an aspect-ratio model makes for `ratio` at `megapixels` (fal's size for it,
/// rounded to multiples of 16 as the models do), for the emulator and estimates.
pub fn ratio_dimensions(ratio: &str, megapixels: f64) -> Option<(u32, u32)> {
    let r = parse_ratio(ratio)?;
    let pixels = megapixels * 1024.0 * 1024.0;
    let height = (pixels / r).sqrt();
    let round16 = |v: f64| ((v / 16.0).round() * 16.0).max(16.0) as u32;
    Some((round16(height * r), round16(height)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stages::fal::catalogue::Catalogue;

    fn shape(model: &str, written: Value, dims: (u32, u32)) -> Vec<(String, Value)> {
        shape_inputs(Catalogue::builtin().get(model).unwrap(), &written, dims)
    }

    #[test]
    fn image_size_models_get_the_preset_or_the_pixels() {
        assert_eq!(
            shape("fal-ai/flux/schnell", json!("portrait_4_3"), (768, 1024)),
            vec![("image_size".to_owned(), json!("portrait_4_3"))]
        );
        assert_eq!(
            shape("fal-ai/recraft/v3/text-to-image", json!({"width": 850, "height": 1100}), (850, 1100)),
            vec![("image_size".to_owned(), json!({"width": 850, "height": 1100}))]
        );
    }

    #[test]
    fn aspect_ratio_models_get_the_nearest_ratio_of_the_same_orientation() {
        let letter = (2550, 3300);
        for model in ["fal-ai/flux-pro/v1.1-ultra", "fal-ai/imagen4/preview", "fal-ai/nano-banana"] {
            assert_eq!(
                shape(model, json!({"width": 2550, "height": 3300}), letter),
                vec![("aspect_ratio".to_owned(), json!("3:4"))],
                "{model}"
            );
            assert_eq!(shape(model, json!("portrait_4_3"), (768, 1024))[0].1, json!("3:4"), "{model}");
            assert_eq!(shape(model, json!("landscape_16_9"), (1024, 576))[0].1, json!("16:9"), "{model}");
            assert_eq!(shape(model, json!("square_hd"), (1024, 1024))[0].1, json!("1:1"), "{model}");
        }
        // A tall page on a model whose tallest ratio is 9:16 stays portrait.
        assert_eq!(
            shape("fal-ai/imagen4/preview", json!({"width": 500, "height": 2000}), (500, 2000))[0].1,
            json!("9:16")
        );
    }

    #[test]
    fn ratio_dimensions_keep_the_ratio_and_the_megapixels() {
        let (w, h) = ratio_dimensions("3:4", 1.0).unwrap();
        assert!(h > w && (f64::from(w) / f64::from(h) - 0.75).abs() < 0.02, "{w}x{h}");
        assert_eq!(ratio_dimensions("1:1", 1.0), Some((1024, 1024)));
        assert_eq!(ratio_dimensions("wide", 1.0), None);
    }
}
