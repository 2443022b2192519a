//! Reference images and LoRAs as a pipeline (or a prompt) writes them: checked against the
//! model's catalogue entry before anything is paid, and placed in the very inputs the model
//! reads them from (Kontext's `image_url`, Ideogram's `reference_image_urls`...).

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::catalogue::{InputType, Model, ReferenceKind};
use crate::engine::pipeline_path::{self, PipelinePath};
use crate::engine::stage::OptionsError;

/// fal's range for a LoRA's `scale` (its `LoraWeight` schema).
const LORA_SCALES: std::ops::RangeInclusive<f64> = 0.0..=4.0;

/// The endpoint to point a user at when a model takes no LoRAs.
const LORA_ENDPOINT: &str = "fal-ai/flux-lora";

/// Reference images: local files (uploaded to fal's storage once per batch) or URLs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub(super) enum References {
    /// For the model's first image input (`inkflow models MODEL` lists them).
    Images(Vec<PipelinePath>),
    /// By what they do: `image` (to start from or edit), `character`, `style`.
    ByKind(BTreeMap<ReferenceKind, Vec<PipelinePath>>),
}

/// Where one reference comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source<'a> {
    /// Sent as written: fal fetches it.
    Url(&'a str),
    /// Read and uploaded to fal's storage.
    File(&'a Path),
}

/// Whether `written` is a URL fal fetches itself rather than a local file.
pub(super) fn is_url(written: &str) -> bool {
    ["http://", "https://", "data:"].iter().any(|scheme| written.starts_with(scheme))
}

impl References {
    /// Each group of references with the kind it is for (`None`: the model's first input),
    /// and the option path that names it.
    fn groups(&self) -> Vec<(Option<ReferenceKind>, String, &[PipelinePath])> {
        match self {
            References::Images(list) => vec![(None, "references".to_owned(), list.as_slice())],
            References::ByKind(by_kind) => by_kind
                .iter()
                .map(|(kind, list)| (Some(*kind), format!("references.{kind}"), list.as_slice()))
                .collect(),
        }
    }

    /// Every reference as written, in order.
    pub(super) fn paths(&self) -> Vec<&PipelinePath> {
        self.groups().into_iter().flat_map(|(_, _, list)| list.iter()).collect()
    }

    /// Checks what can be checked without the model: no empty list, no empty entry.
    pub(super) fn check_written(&self) -> Result<(), OptionsError> {
        for (_, path, list) in self.groups() {
            if list.is_empty() {
                return Err(OptionsError::at(&path, "the list of reference images is empty"));
            }
            if list.iter().any(|p| p.as_os_str().is_empty()) {
                return Err(OptionsError::at(&path, "a reference is empty: give a file or a URL"));
            }
        }
        Ok(())
    }

    /// Checks that `model` takes these references, each kind in an input of its own and no
    /// more images than the input takes; the error points at the group that does not fit.
    pub(super) fn check_model(&self, model: &Model) -> Result<(), OptionsError> {
        if model.image_inputs.is_empty() {
            return Err(OptionsError::at(
                "references",
                format!(
                    "{} takes no reference images: pick a model that does (`inkflow models` lists each \
                     model's image inputs), e.g. fal-ai/flux-pro/kontext or fal-ai/flux/dev/image-to-image",
                    model.id
                ),
            ));
        }
        for (kind, path, list) in self.groups() {
            let Some(input) = model.image_input(kind) else {
                let taken: Vec<String> = model.image_inputs.iter().map(ToString::to_string).collect();
                return Err(OptionsError::at(
                    &path,
                    format!(
                        "{} takes no {} references; its image inputs: {}",
                        model.id,
                        kind.map_or("image", ReferenceKind::word),
                        taken.join(", ")
                    ),
                ));
            };
            if let Some(max) = model.images_taken(&input.input).filter(|max| list.len() > *max as usize) {
                return Err(OptionsError::at(
                    &path,
                    format!(
                        "{} takes at most {max} image(s) in {}, and {} are given",
                        model.id,
                        input.input,
                        list.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The model inputs that carry the references, each given as `url_of` says (a fal storage
    /// URL for a file): a URL for a single-image input, a list for a list input.
    pub(super) fn placed(
        &self,
        model: &Model,
        url_of: &dyn Fn(&PipelinePath) -> String,
    ) -> Map<String, Value> {
        let mut inputs = Map::new();
        for (kind, _, list) in self.groups() {
            let Some(input) = model.image_input(kind) else { continue };
            let mut urls: Vec<Value> = list.iter().map(|p| Value::from(url_of(p))).collect();
            let takes_a_list = model.inputs.get(&input.input).is_some_and(|i| i.kind == InputType::Array);
            let value = if takes_a_list { Value::Array(urls) } else { urls.swap_remove(0) };
            inputs.insert(input.input.clone(), value);
        }
        inputs
    }
}

/// Where a written reference comes from.
pub(super) fn source(written: &PipelinePath) -> Source<'_> {
    match written.to_str() {
        Some(url) if is_url(url) => Source::Url(url),
        _ => Source::File(written.as_path()),
    }
}

/// A prompt's references, read against `folder` (the pipeline file's) as the pipeline's own
/// are: every relative file path is resolved, URLs stay as written.
pub(super) fn resolve_written(value: &mut Value, folder: &Path) {
    match value {
        Value::String(written) if !is_url(written) => {
            *written = pipeline_path::resolve(folder, written).to_string_lossy().into_owned();
        }
        Value::Array(items) => items.iter_mut().for_each(|item| resolve_written(item, folder)),
        Value::Object(fields) => fields.values_mut().for_each(|item| resolve_written(item, folder)),
        _ => {}
    }
}

/// The extension of LoRA weights a pipeline may name as a local file (fal's LoRA endpoints
/// load safetensors).
pub(super) const LORA_FILE_EXTENSION: &str = "safetensors";

/// One LoRA for a LoRA endpoint: fal's `{path, scale}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Lora {
    /// The LoRA weights: a URL (Hugging Face, Civitai, fal storage...) or a local
    /// `.safetensors` file, uploaded to fal's storage once per batch like a reference image.
    pub path: String,
    /// How strongly it applies, 0 to 4.
    #[serde(default = "full_scale")]
    pub scale: f64,
}

fn full_scale() -> f64 {
    1.0
}

impl Lora {
    /// The local weights file it names, read against `folder` (the pipeline file's), or `None`
    /// for a URL fal fetches itself.
    pub(super) fn file(&self, folder: &Path) -> Option<PipelinePath> {
        let local = !self.path.starts_with("https://") && !self.path.starts_with("http://");
        local.then(|| {
            PipelinePath::from(pipeline_path::resolve(folder, &self.path).to_string_lossy().as_ref())
        })
    }
}

/// Checks each LoRA as written: a URL fal can fetch or a local `.safetensors` file, a scale in
/// fal's range.
pub(super) fn check_loras(loras: &[Lora]) -> Result<(), OptionsError> {
    for (index, lora) in loras.iter().enumerate() {
        let is_url = lora.path.starts_with("https://") || lora.path.starts_with("http://");
        let is_weights = Path::new(&lora.path).extension().is_some_and(|e| e == LORA_FILE_EXTENSION);
        if !is_url && !is_weights {
            return Err(OptionsError::at(
                &format!("loras.{index}.path"),
                format!(
                    "{:?} is neither an http(s) URL nor a .{LORA_FILE_EXTENSION} file: give the LoRA weights' URL or file",
                    lora.path
                ),
            ));
        }
        if !LORA_SCALES.contains(&lora.scale) {
            return Err(OptionsError::at(
                &format!("loras.{index}.scale"),
                format!(
                    "{} is outside fal's LoRA scale range {} to {}",
                    lora.scale,
                    LORA_SCALES.start(),
                    LORA_SCALES.end()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `model` takes LoRAs at all (the list itself is checked like any input).
pub(super) fn check_model_loras(loras: &[Lora], model: &Model) -> Result<(), OptionsError> {
    if loras.is_empty() || model.loras {
        return Ok(());
    }
    Err(OptionsError::at(
        "loras",
        format!("{} takes no LoRAs: use a LoRA endpoint such as {LORA_ENDPOINT}", model.id),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stages::fal::catalogue::Catalogue;

    fn model(id: &str) -> &'static Model {
        Catalogue::builtin().get(id).unwrap()
    }

    fn references(value: Value) -> References {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn each_model_gets_references_in_its_own_input() {
        let one = references(json!(["refs/hero.png"]));
        let url_of = |p: &PipelinePath| format!("https://fal.media/{}", p.display());
        assert_eq!(
            Value::Object(one.placed(model("fal-ai/flux-pro/kontext"), &url_of)),
            json!({"image_url": "https://fal.media/refs/hero.png"})
        );
        assert_eq!(
            Value::Object(one.placed(model("fal-ai/nano-banana/edit"), &url_of)),
            json!({"image_urls": ["https://fal.media/refs/hero.png"]})
        );
        let by_kind = references(json!({"character": ["hero.png"], "style": ["a.png", "b.png"]}));
        assert_eq!(
            Value::Object(by_kind.placed(model("fal-ai/ideogram/character"), &url_of)),
            json!({"reference_image_urls": ["https://fal.media/hero.png"],
                   "image_urls": ["https://fal.media/a.png", "https://fal.media/b.png"]})
        );
    }

    #[test]
    fn a_model_refuses_references_it_cannot_take() {
        let one = references(json!(["hero.png"]));
        let e = one.check_model(model("fal-ai/flux/dev")).unwrap_err();
        assert_eq!(e.path, ["references"]);
        assert!(e.message.starts_with("fal-ai/flux/dev takes no reference images"), "{}", e.message);
        let character = references(json!({"character": ["hero.png"]}));
        let e = character.check_model(model("fal-ai/ideogram/v3")).unwrap_err();
        assert_eq!(e.path, ["references", "character"]);
        assert!(e.message.contains("image_urls (style)"), "{}", e.message);
        let two = references(json!(["a.png", "b.png"]));
        let e = two.check_model(model("fal-ai/flux-pro/kontext")).unwrap_err();
        assert!(e.message.contains("at most 1 image(s) in image_url, and 2 are given"), "{}", e.message);
        let two_characters = references(json!({"character": ["a.png", "b.png"]}));
        assert!(two_characters.check_model(model("fal-ai/ideogram/character")).is_err());
        assert!(two.check_model(model("fal-ai/nano-banana/edit")).is_ok());
    }

    #[test]
    fn urls_stay_as_written_and_files_are_read_against_the_folder() {
        let mut written = json!({"style": ["style.png", "https://example.com/a.png"]});
        resolve_written(&mut written, Path::new("books"));
        assert_eq!(written, json!({"style": ["books/style.png", "https://example.com/a.png"]}));
        let list = references(written["style"].clone());
        let sources: Vec<Source<'_>> = list.paths().into_iter().map(source).collect();
        assert_eq!(
            sources,
            [Source::File(Path::new("books/style.png")), Source::Url("https://example.com/a.png")]
        );
    }

    #[test]
    fn loras_need_a_url_a_scale_in_range_and_a_lora_endpoint() {
        let lora = |path: &str, scale: f64| Lora { path: path.into(), scale };
        assert!(check_loras(&[lora("https://huggingface.co/x/y.safetensors", 0.8)]).is_ok());
        assert!(check_loras(&[lora("loras/ink.safetensors", 1.0)]).is_ok());
        assert_eq!(check_loras(&[lora("x.ckpt", 1.0)]).unwrap_err().path, ["loras", "0", "path"]);
        assert_eq!(
            check_loras(&[lora("https://x", 1.0), lora("https://y", 5.0)]).unwrap_err().path,
            ["loras", "1", "scale"]
        );
        let loras = [lora("https://x", 1.0)];
        assert!(check_model_loras(&loras, model("fal-ai/flux-lora")).is_ok());
        let e = check_model_loras(&loras, model("fal-ai/flux/dev")).unwrap_err();
        assert_eq!(e.message, "fal-ai/flux/dev takes no LoRAs: use a LoRA endpoint such as fal-ai/flux-lora");
    }
}
