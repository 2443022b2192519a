//! Models are data: the fal text-to-image endpoints inkflow knows, each with every input's
//! type, range, enum and default, the size input it reads, images per request, outputs, seed
//! support and price, built from fal's published schema and pricing (`models.json`, embedded in
//! the binary). A user catalogue folder (see [`user_dir`]) holds entries `inkflow models ID
//! --refresh` fetched from fal's APIs; they win over the built-in ones.

mod image_input;
mod input;
mod openapi;
mod size;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::image_input::{ImageInput, ReferenceKind};
pub use self::input::{Input, InputType, show};
pub(super) use self::openapi::from_openapi;
pub(super) use self::size::{ratio_dimensions, shape_inputs};
use super::key::Environment;
use super::pricing::Price;

/// The built-in catalogue.
const BUILTIN: &str = include_str!("models.json");

/// Where a user's own catalogue lives when `INKFLOW_MODELS_DIR` is not set, under the XDG
/// config folder (`$XDG_CONFIG_HOME`, else `~/.config`).
const USER_SUBDIR: &str = "inkflow/models";

/// One fal endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// fal's endpoint id, e.g. `fal-ai/flux/schnell`.
    pub id: String,
    /// Its name on fal.
    pub title: String,
    /// Where its figures come from.
    pub source: String,
    /// Anything its schema does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// What fal bills.
    pub price: Price,
    /// The image formats it answers in.
    pub outputs: Vec<String>,
    /// Every input besides the prompt.
    pub inputs: BTreeMap<String, Input>,
    /// Inputs that take images (URLs or `data:` URIs), each with what an image there does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_inputs: Vec<ImageInput>,
    /// Whether it takes a `loras` list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loras: bool,
    /// For a model that reads an aspect ratio: about how many megapixels it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub megapixels: Option<f64>,
    /// When an input's value makes it answer in another format (Recraft's vector styles: SVG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_outputs: Option<VectorOutputs>,
}

/// Which values of an input make a model answer in another format.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VectorOutputs {
    /// The input, e.g. `style`.
    pub input: String,
    /// Values starting with this, e.g. `vector_illustration`.
    pub prefix: String,
    /// The format they answer in, e.g. `svg`.
    pub format: String,
}

impl Model {
    /// Whether the model takes a seed: without one, a re-roll is simply a new request.
    pub fn takes_seed(&self) -> bool {
        self.inputs.contains_key("seed")
    }

    /// How many images one request may make (its `num_images` maximum; 1 without the input).
    pub fn images_per_request(&self) -> u32 {
        self.inputs.get("num_images").and_then(Input::max_count).unwrap_or(1)
    }

    /// The input that takes references of `kind`: the model's first image input for `None`.
    pub fn image_input(&self, kind: Option<ReferenceKind>) -> Option<&ImageInput> {
        self.image_inputs.iter().find(|i| kind.is_none_or(|kind| i.kind == kind))
    }

    /// The most images input `name` takes: one for a single URL, the input's `max` for a list
    /// (`None`: no limit the schema states).
    pub fn images_taken(&self, name: &str) -> Option<u32> {
        match self.inputs.get(name) {
            Some(input) if input.kind == InputType::Array => input.max_count(),
            _ => Some(1),
        }
    }

    /// The size input it reads, in words.
    pub fn size_input(&self) -> String {
        if let Some(size) = self.inputs.get("image_size") {
            format!("image_size ({})", size.choice_list())
        } else if let Some(ratio) = self.inputs.get("aspect_ratio") {
            format!("aspect_ratio ({})", ratio.choice_list())
        } else {
            "none (the model picks)".into()
        }
    }

    /// The value the model uses for `name`: the request's, else the model's default.
    pub fn value_of<'a>(&'a self, body: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
        body.get(name).or_else(|| self.inputs.get(name).and_then(|i| i.default.as_ref()))
    }
}

/// A set of models by id.
#[derive(Debug, Deserialize)]
pub struct Catalogue {
    models: Vec<Model>,
}

static BUILTIN_CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // The file is part of the binary and covered by a unit test: it cannot fail at run time.
    serde_json::from_str(BUILTIN).unwrap_or_else(|e| panic!("src/stages/fal/catalogue/models.json: {e}"))
});

impl Catalogue {
    /// The catalogue shipped in the binary.
    pub fn builtin() -> &'static Catalogue {
        &BUILTIN_CATALOGUE
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Every model, in catalogue order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }
}

/// The folder of the user's own catalogue entries: `$INKFLOW_MODELS_DIR`, else
/// `$XDG_CONFIG_HOME/inkflow/models`, else `~/.config/inkflow/models`.
pub fn user_dir(env: &Environment) -> Option<PathBuf> {
    if let Some(dir) = env.var("INKFLOW_MODELS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let config = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join(USER_SUBDIR))
}

/// The file of model `id` in the user catalogue folder `dir`.
pub fn user_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{}.json", id.replace('/', "__")))
}

/// Model `id`: the user's entry if there is one, else the built-in one, else `None` (the
/// model runs unchecked). A user entry that cannot be read is an error naming its file.
pub fn find(id: &str, env: &Environment) -> Result<Option<Model>, String> {
    if let Some(dir) = user_dir(env) {
        let file = user_file(&dir, id);
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                return serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| format!("the catalogue entry {} is not readable: {e}", file.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read the catalogue entry {}: {e}", file.display())),
        }
    }
    Ok(Catalogue::builtin().get(id).cloned())
}

/// Every model: the built-in ones with the user's entries over them and after them.
pub fn all(env: &Environment) -> Vec<(Model, bool)> {
    let mut models: Vec<(Model, bool)> =
        Catalogue::builtin().models().iter().map(|m| (m.clone(), false)).collect();
    let Some(dir) = user_dir(env) else { return models };
    let Ok(entries) = std::fs::read_dir(&dir) else { return models };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let Some(model) =
            std::fs::read_to_string(file).ok().and_then(|t| serde_json::from_str::<Model>(&t).ok())
        else {
            tracing::warn!("{} is not a catalogue entry: skipped", file.display());
            continue;
        };
        match models.iter_mut().find(|(m, _)| m.id == model.id) {
            Some(slot) => *slot = (model, true),
            None => models.push((model, true)),
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::fal::pricing::Unit;

    #[test]
    fn the_catalogue_has_the_models_people_try_with_their_published_figures() {
        let catalogue = Catalogue::builtin();
        for id in [
            "fal-ai/flux/dev",
            "fal-ai/flux/schnell",
            "fal-ai/flux/krea",
            "fal-ai/flux-pro/v1.1",
            "fal-ai/flux-pro/v1.1-ultra",
            "fal-ai/flux-pro/kontext/text-to-image",
            "fal-ai/flux-2",
            "fal-ai/recraft/v3/text-to-image",
            "fal-ai/ideogram/v3",
            "fal-ai/imagen4/preview",
            "fal-ai/qwen-image",
            "bytedance/seedream/v5/lite/text-to-image",
            "fal-ai/hidream-i1-full",
            "fal-ai/nano-banana",
        ] {
            let model = catalogue.get(id).unwrap_or_else(|| panic!("{id} is missing"));
            assert!(model.source.starts_with("https://fal.ai/models/"), "{id}: {}", model.source);
            assert!(!model.outputs.is_empty(), "{id}");
        }
        let schnell = catalogue.get("fal-ai/flux/schnell").unwrap();
        let steps = &schnell.inputs["num_inference_steps"];
        assert_eq!((steps.min, steps.max, steps.default.clone()), (Some(1.0), Some(12.0), Some(4.into())));
        assert_eq!((schnell.price.unit, schnell.price.usd), (Unit::Megapixel, 0.003));
        assert_eq!(schnell.images_per_request(), 4);
        assert!(schnell.takes_seed());
        let dev = catalogue.get("fal-ai/flux/dev").unwrap();
        assert_eq!(dev.inputs["num_inference_steps"].max, Some(50.0));
        let ultra = catalogue.get("fal-ai/flux-pro/v1.1-ultra").unwrap();
        assert!(ultra.size_input().starts_with("aspect_ratio") && ultra.size_input().contains("\"3:4\""));
        assert_eq!(ultra.inputs["aspect_ratio"].default, Some("16:9".into()));
        assert_eq!((ultra.price.unit, ultra.price.usd), (Unit::Image, 0.06));
        let recraft = catalogue.get("fal-ai/recraft/v3/text-to-image").unwrap();
        assert_eq!(recraft.images_per_request(), 1);
        assert!(!recraft.takes_seed());
        assert!(recraft.outputs.contains(&"svg".to_owned()));
        let banana = catalogue.get("fal-ai/nano-banana").unwrap();
        assert!(!banana.takes_seed());
        assert_eq!(catalogue.get("fal-ai/ideogram/v3").unwrap().images_per_request(), 8);
        assert!(catalogue.get("fal-ai/qwen-image").unwrap().loras);
    }

    #[test]
    fn user_entries_win_over_the_builtin_ones() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::fixed([("INKFLOW_MODELS_DIR", dir.path().to_str().unwrap())]);
        let mut schnell = Catalogue::builtin().get("fal-ai/flux/schnell").unwrap().clone();
        schnell.title = "refreshed".into();
        let file = user_file(dir.path(), &schnell.id);
        std::fs::write(&file, serde_json::to_string(&schnell).unwrap()).unwrap();
        assert!(file.ends_with("fal-ai__flux__schnell.json"));
        assert_eq!(find("fal-ai/flux/schnell", &env).unwrap().unwrap().title, "refreshed");
        assert_eq!(find("fal-ai/flux/dev", &env).unwrap().unwrap().title, "FLUX.1 [dev]");
        assert_eq!(find("someone/else", &env).unwrap(), None);
        assert!(all(&env).iter().any(|(m, user)| *user && m.title == "refreshed"));
        std::fs::write(&file, "{").unwrap();
        assert!(find("fal-ai/flux/schnell", &env).unwrap_err().contains("fal-ai__flux__schnell.json"));
    }
}
