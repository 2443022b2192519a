//! Opening a plugin library and trusting it step by step: the descriptor's magic number, ABI
//! version and sizes, then each stage's name, self-description and functions; and the check
//! of a component's options against that description.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use inkflow_sdk::{
    ABI_MAJOR, ABI_MINOR, CreateFn, DESCRIPTOR_SYMBOL, DescriptorFn, DestroyFn, MAGIC, PluginDescriptor,
    ProcessFn, StageVTable,
};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::media::Media;
use crate::engine::stage::{OptionDoc, OptionsError};

/// A stage's self-description, the JSON documented on `StageVTable::description`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Description {
    pub(super) summary: String,
    #[serde(default)]
    accepts: Option<Vec<String>>,
    #[serde(default)]
    pub(super) options: Vec<OptionDescription>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OptionDescription {
    name: String,
    #[serde(rename = "type")]
    ty: OptionType,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    doc: String,
}

#[derive(Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OptionType {
    Integer,
    Number,
    String,
    Boolean,
    Any,
}

impl OptionType {
    fn name(self) -> &'static str {
        match self {
            OptionType::Integer => "integer",
            OptionType::Number => "number",
            OptionType::String => "string",
            OptionType::Boolean => "boolean",
            OptionType::Any => "any",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match self {
            OptionType::Integer => value.is_i64() || value.is_u64(),
            OptionType::Number => value.is_number(),
            OptionType::String => value.is_string(),
            OptionType::Boolean => value.is_boolean(),
            OptionType::Any => true,
        }
    }
}

impl OptionDescription {
    pub(super) fn doc(&self) -> OptionDoc {
        let ty = self.ty.name();
        match &self.default {
            Some(default) => OptionDoc::new(&self.name, ty, &default.to_string(), &self.doc),
            None => OptionDoc::required(&self.name, ty, &self.doc),
        }
    }
}

/// A validated stage of a loaded library. The function pointers stay valid for the life of
/// the process because the library is never unloaded.
pub(super) struct LoadedStage {
    /// The library as the user named it, for messages.
    pub(super) library: PathBuf,
    pub(super) name: String,
    pub(super) description: Description,
    pub(super) accepts: Vec<Media>,
    pub(super) create: CreateFn,
    pub(super) process: ProcessFn,
    pub(super) destroy: DestroyFn,
}

impl LoadedStage {
    /// Checks option names and types against the stage's description; `prefix` is where the
    /// options sit within the component (for error paths).
    pub(super) fn check_options(&self, options: &Value, prefix: &str) -> Result<(), OptionsError> {
        let at = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        let Some(given) = options.as_object() else {
            return Err(OptionsError::at(prefix, format!("expected a map of {} options", self.name)));
        };
        let known = &self.description.options;
        for (name, value) in given {
            let Some(option) = known.iter().find(|o| &o.name == name) else {
                let names: Vec<&str> = known.iter().map(|o| o.name.as_str()).collect();
                let expected = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
                return Err(OptionsError::at(
                    &at(name),
                    format!("unknown option `{name}` of plugin stage {}; it takes: {expected}", self.name),
                ));
            };
            if !option.ty.admits(value) {
                return Err(OptionsError::at(
                    &at(name),
                    format!("expected {}, got {value}", option.ty.name()),
                ));
            }
        }
        match known.iter().find(|o| o.default.is_none() && !given.contains_key(&o.name)) {
            Some(missing) => Err(OptionsError::at(
                prefix,
                format!("missing option `{}` of plugin stage {}", missing.name, self.name),
            )),
            None => Ok(()),
        }
    }
}

/// Loads a plugin library and validates its descriptor and every stage in it.
pub(super) fn load(path: &Path) -> anyhow::Result<Vec<Arc<LoadedStage>>> {
    let shown = path.display();
    // An absolute path keeps the loader from searching the system library path for a bare name.
    let absolute = std::path::absolute(path).with_context(|| format!("plugin {shown}"))?;
    let file = std::fs::metadata(&absolute).with_context(|| format!("plugin {shown}: cannot read it"))?;
    // Opening a FIFO or a device would block or read for ever.
    if !file.is_file() {
        bail!("plugin {shown}: not a regular file; give the path of the plugin's library");
    }
    // SAFETY: loading runs the library's initialisers; a plugin is code the user chose to run.
    let library = unsafe { libloading::Library::new(&absolute) }
        .with_context(|| format!("plugin {shown}: not a dynamic library that can be loaded"))?;
    // Never unloaded: built stages keep pointers into it.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol is declared with the SDK's DescriptorFn type.
    let entry = unsafe { library.get::<DescriptorFn>(DESCRIPTOR_SYMBOL) }.map_err(|_| {
        anyhow::anyhow!(
            "plugin {shown}: not an inkflow plugin: it does not export `{DESCRIPTOR_SYMBOL}` \
             (plugins define it with inkflow_sdk::export_plugin!)"
        )
    })?;
    // SAFETY: the descriptor function of an SDK plugin only returns a pointer to a static.
    let descriptor = unsafe { entry() };
    if descriptor.is_null() || !descriptor.is_aligned() {
        bail!("plugin {shown}: `{DESCRIPTOR_SYMBOL}` returned an invalid pointer");
    }
    // SAFETY: non-null and aligned; the header fields (magic, versions, size) keep their
    // layout in every ABI version, so they are read before trusting the rest.
    let (magic, major, minor, size) = unsafe {
        ((*descriptor).magic, (*descriptor).abi_major, (*descriptor).abi_minor, (*descriptor).size)
    };
    if magic != MAGIC {
        bail!(
            "plugin {shown}: `{DESCRIPTOR_SYMBOL}` does not return an inkflow plugin descriptor (bad magic number)"
        );
    }
    if major != ABI_MAJOR {
        bail!(
            "plugin {shown}: ABI {major}.{minor} is not supported by this inkflow ({ABI_MAJOR}.x); \
             rebuild it against inkflow-sdk {ABI_MAJOR}.x"
        );
    }
    if minor > ABI_MINOR {
        bail!(
            "plugin {shown}: ABI {major}.{minor} is newer than this inkflow supports ({ABI_MAJOR}.{ABI_MINOR}); \
             update inkflow or rebuild it against inkflow-sdk {ABI_MAJOR}.{ABI_MINOR}"
        );
    }
    if (size as usize) < size_of::<PluginDescriptor>() {
        bail!(
            "plugin {shown}: its descriptor is {size} bytes but ABI {major}.{minor} needs {}",
            size_of::<PluginDescriptor>()
        );
    }
    // SAFETY: the version and size say the whole 1.x descriptor is there.
    let descriptor: &'static PluginDescriptor = unsafe { &*descriptor };
    let stride = descriptor.stage_size as usize;
    if stride < size_of::<StageVTable>() {
        bail!(
            "plugin {shown}: its stages are {stride} bytes each but ABI {major}.{minor} needs {}",
            size_of::<StageVTable>()
        );
    }
    if descriptor.stage_count == 0 || descriptor.stages.is_null() {
        bail!("plugin {shown}: it offers no stages");
    }
    let mut stages: Vec<Arc<LoadedStage>> = Vec::new();
    for index in 0..descriptor.stage_count as usize {
        // SAFETY: the descriptor promises stage_count vtables, stage_size bytes apart; later
        // minors may append fields, which this host does not read.
        let vtable = unsafe { descriptor.stages.byte_add(index * stride) };
        if !vtable.is_aligned() {
            bail!("plugin {shown}: stage {index} is misaligned");
        }
        // SAFETY: aligned and inside the plugin's static array.
        let stage = read_stage(path, unsafe { &*vtable })
            .with_context(|| format!("plugin {shown}: stage {index}"))?;
        if stages.iter().any(|s| s.name == stage.name) {
            bail!("plugin {shown}: two stages are named {}", stage.name);
        }
        stages.push(Arc::new(stage));
    }
    Ok(stages)
}

/// Reads and checks one stage's name, description and functions.
fn read_stage(path: &Path, vtable: &'static StageVTable) -> anyhow::Result<LoadedStage> {
    // SAFETY: the SDK contract makes name and description point at static UTF-8.
    let (name, description) = unsafe { (vtable.name.bytes(), vtable.description.bytes()) };
    let name = std::str::from_utf8(name).context("its name is not UTF-8")?.to_owned();
    if name.is_empty() {
        bail!("it has no name");
    }
    let description: Description = serde_json::from_slice(description)
        .with_context(|| format!("{name}: its description is not valid"))?;
    let accepts = match &description.accepts {
        None => Media::IMAGES.to_vec(),
        Some(formats) => formats
            .iter()
            .map(|f| match f.as_str() {
                "gray" => Ok(Media::Gray),
                "bilevel" => Ok(Media::Bilevel),
                "rgb" => Ok(Media::Rgb),
                other => {
                    bail!("{name}: its description accepts unknown format `{other}` (gray, bilevel, rgb)")
                }
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let (Some(create), Some(process), Some(destroy)) = (vtable.create, vtable.process, vtable.destroy) else {
        bail!("{name}: it lacks a create, process or destroy function");
    };
    Ok(LoadedStage { library: path.to_owned(), name, description, accepts, create, process, destroy })
}
