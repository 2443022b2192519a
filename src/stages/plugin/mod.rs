//! Stages from dynamic libraries built with the `inkflow-sdk` SDK, so users add a stage (a
//! border, a watermark) without forking inkflow. `kind: plugin` names a library by path;
//! [`kinds_from_dir`] turns every stage of every library in a `plugins:` directory into a kind
//! of its own. Only C data crosses the boundary (see the SDK for the contract); the version is
//! checked before any plugin code but the descriptor function runs, and libraries are never
//! unloaded because their functions stay referenced by built stages.

mod library;
mod stage;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use self::library::{LoadedStage, OptionDescription, load};
use crate::engine::declared_kind::TypedKind;
use crate::engine::media::Media;
use crate::engine::options::{documented, parse_declared};
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::{BuildContext, Component, Kind, KindInfo, OptionsError, OutputMedia, Role};

/// `kind: plugin`: a stage from the library at `path`, for a one-off plugin without a
/// `plugins:` directory. Its plugin options are checked when the pipeline is built, since
/// `check` may not open files.
pub struct Plugin;

/// The `plugin` options: which library and stage, and the stage's own options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginOptions {
    /// The library file, e.g. target/release/libmy_stage.so.
    path: PipelinePath,
    /// Which stage of the library to run (its only stage when not given).
    #[serde(default)]
    stage: Option<String>,
    /// The plugin stage's own options.
    #[serde(default = "empty_map")]
    #[schemars(extend("x-inkflow-type" = "map"))]
    options: Value,
    /// Panics in a row after which the stage is disabled. A panicked instance is abandoned and
    /// a fresh one made for the next page, so one bad page fails alone. (A `plugins:` kind
    /// takes it beside the plugin's own options.)
    #[serde(default = "default_max_panics")]
    #[schemars(range(min = 1))]
    max_panics: u32,
}

fn empty_map() -> Value {
    Value::Object(Map::new())
}

fn default_max_panics() -> u32 {
    3
}

/// The host's option among a `plugins:` kind's inline options: `max_panics`, taken out before
/// the plugin's own options are checked.
fn take_max_panics(options: &Value) -> Result<(Value, u32), OptionsError> {
    let mut options = options.clone();
    let given = options.as_object_mut().and_then(|map| map.remove("max_panics"));
    let max_panics = match given {
        None => default_max_panics(),
        Some(value) => {
            value.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|&n| n >= 1).ok_or_else(|| {
                OptionsError::at("max_panics", format!("expected a whole number from 1, got {value}"))
            })?
        }
    };
    Ok((options, max_panics))
}

impl TypedKind for Plugin {
    const NAME: &'static str = "plugin";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str = "Runs a stage from a dynamic library built with the inkflow-sdk SDK";
    const ACCEPTS: &'static [Media] = Media::IMAGES;
    const OUTPUT: OutputMedia = OutputMedia::SameAsInput;
    type Options = PluginOptions;
    type Parsed = PluginOptions;

    /// Also reads the library's descriptor, so `validate` refuses a file that is not an
    /// inkflow plugin, and checks the plugin's options against it.
    fn parse(&self, options: &Value) -> Result<PluginOptions, OptionsError> {
        let parsed: PluginOptions = parse_declared(options)?;
        if !parsed.options.is_object() {
            return Err(OptionsError::at("options", "expected a map of the plugin stage's options"));
        }
        let stages = load(&parsed.path).map_err(|e| OptionsError::at("path", format!("{e:#}")))?;
        let stage = pick_stage(&parsed.path, stages, parsed.stage.as_deref())
            .map_err(|e| OptionsError::at("stage", format!("{e:#}")))?;
        stage.check_options(&parsed.options, "options")?;
        Ok(parsed)
    }

    fn build_from(&self, parsed: PluginOptions, ctx: &BuildContext) -> anyhow::Result<Component> {
        let stages = load(&parsed.path).with_context(|| format!("stage {}", ctx.id))?;
        let stage = pick_stage(&parsed.path, stages, parsed.stage.as_deref())
            .with_context(|| format!("stage {}", ctx.id))?;
        stage.check_options(&parsed.options, "options").map_err(|e| options_error(ctx, e))?;
        stage.start(&parsed.options, parsed.max_panics, ctx)
    }
}

/// A kind made from one stage of a library in a `plugins:` directory: `kind: page-border`
/// with the plugin's options inline, checked by `validate` against the stage's description.
pub struct PluginKind {
    info: KindInfo,
    stage: Arc<LoadedStage>,
}

impl Kind for PluginKind {
    fn info(&self) -> &KindInfo {
        &self.info
    }

    fn check(&self, options: &Value) -> Result<(), OptionsError> {
        let (own, _) = take_max_panics(options)?;
        self.stage.check_options(&own, "")
    }

    fn build(&self, options: &Value, ctx: &BuildContext) -> anyhow::Result<Component> {
        let (own, max_panics) = take_max_panics(options).map_err(|e| options_error(ctx, e))?;
        self.stage.check_options(&own, "").map_err(|e| options_error(ctx, e))?;
        self.stage.start(&own, max_panics, ctx)
    }
}

/// One kind per stage of every plugin library (files ending in the platform's library
/// extension) in `dir`, for a pipeline's `plugins: [dir]`. A library that fails to load is
/// an error, not skipped: a typo in a plugin must not turn into "unknown kind" later.
pub fn kinds_from_dir(dir: &Path) -> anyhow::Result<Vec<Arc<dyn Kind>>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("plugins directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("plugins directory {}", dir.display()))?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION) {
            files.push(path);
        }
    }
    files.sort();
    let mut kinds: Vec<(Arc<dyn Kind>, &Path)> = Vec::new();
    for file in &files {
        for kind in kinds_from_file(file)? {
            if let Some((_, twin)) = kinds.iter().find(|(k, _)| k.info().name == kind.info().name) {
                bail!(
                    "plugins: stage {} is defined by both {} and {}",
                    kind.info().name,
                    twin.display(),
                    file.display()
                );
            }
            kinds.push((kind, file));
        }
    }
    Ok(kinds.into_iter().map(|(kind, _)| kind).collect())
}

/// One kind per stage of the plugin library at `path`.
pub fn kinds_from_file(path: &Path) -> anyhow::Result<Vec<Arc<dyn Kind>>> {
    Ok(load(path)?
        .into_iter()
        .map(|stage| {
            let description = &stage.description;
            let info = KindInfo {
                name: stage.name.clone(),
                role: Role::Stage,
                summary: format!("{} (plugin {})", description.summary, stage.library.display()),
                options: description
                    .options
                    .iter()
                    .map(OptionDescription::doc)
                    .chain(documented::<PluginOptions>().into_iter().filter(|o| o.name == "max_panics"))
                    .collect(),
                accepts: stage.accepts.clone(),
                output: OutputMedia::SameAsInput,
            };
            Arc::new(PluginKind { info, stage }) as Arc<dyn Kind>
        })
        .collect())
}

/// A build error for options refused by the description check, naming the option.
fn options_error(ctx: &BuildContext, error: OptionsError) -> anyhow::Error {
    anyhow::anyhow!("stage {}: {}", ctx.id, error.qualified())
}

/// Chooses the stage to run from a library: the named one, or the only one.
fn pick_stage(
    path: &Path,
    stages: Vec<Arc<LoadedStage>>,
    name: Option<&str>,
) -> anyhow::Result<Arc<LoadedStage>> {
    let names = || stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    match name {
        Some(name) => match stages.iter().find(|s| s.name == name) {
            Some(stage) => Ok(Arc::clone(stage)),
            None => bail!("plugin {} has no stage {name}; it has: {}", path.display(), names()),
        },
        None if stages.len() == 1 => Ok(Arc::clone(&stages[0])),
        None => bail!("plugin {} has several stages ({}); choose one with `stage:`", path.display(), names()),
    }
}
