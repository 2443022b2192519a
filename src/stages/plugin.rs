//! Stages from dynamic libraries built with the `inkflow-sdk` SDK, so users add a stage (a
//! border, a watermark) without forking inkflow. `kind: plugin` names a library by path;
//! [`kinds_from_dir`] turns every stage of every library in a `plugins:` directory into a kind
//! of its own. Only C data crosses the boundary (see the SDK for the contract); the version is
//! checked before any plugin code but the descriptor function runs, and libraries are never
//! unloaded because their functions stay referenced by built stages.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use anyhow::{Context, bail};
use inkflow_sdk::{
    ABI_MAJOR, ABI_MINOR, CreateFn, DESCRIPTOR_SYMBOL, DescriptorFn, DestroyFn, ErrorMessage, Format,
    ImageBuffer, ImageView, MAGIC, PluginDescriptor, ProcessFn, STATUS_ERROR, STATUS_OK, StageVTable,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::engine::item::Item;
use crate::engine::media::{Media, Payload, Pixels, Raster};
use crate::engine::options::{documented, parse_declared};
use crate::engine::stage::{
    BuildContext, Component, CpuStage, Kind, KindInfo, OptionDoc, OptionsError, OutputMedia, Role,
    StageError, TypedKind,
};

/// `kind: plugin`: a stage from the library at `path`, for a one-off plugin without a
/// `plugins:` directory. Its plugin options are checked when the pipeline is built, since
/// `check` may not open files.
pub struct Plugin;

/// The `plugin` options: which library and stage, and the stage's own options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginOptions {
    /// The library file, e.g. target/release/libmy_stage.so.
    #[schemars(extend("x-inkflow-type" = "path"))]
    path: PathBuf,
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
    type Options = PluginOptions;

    fn describe(&self) -> &KindInfo {
        static INFO: LazyLock<KindInfo> = LazyLock::new(|| KindInfo {
            name: "plugin".into(),
            role: Role::Stage,
            summary: "Runs a stage from a dynamic library built with the inkflow-sdk SDK".into(),
            options: documented::<PluginOptions>(),
            accepts: Media::IMAGES.to_vec(),
            output: OutputMedia::SameAsInput,
        });
        &INFO
    }

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

/// A stage's self-description, the JSON documented on `StageVTable::description`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    summary: String,
    #[serde(default)]
    accepts: Option<Vec<String>>,
    #[serde(default)]
    options: Vec<OptionDescription>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionDescription {
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
    fn doc(&self) -> OptionDoc {
        let ty = self.ty.name();
        match &self.default {
            Some(default) => OptionDoc::new(&self.name, ty, &default.to_string(), &self.doc),
            None => OptionDoc::required(&self.name, ty, &self.doc),
        }
    }
}

/// A validated stage of a loaded library. The function pointers stay valid for the life of
/// the process because the library is never unloaded.
struct LoadedStage {
    /// The library as the user named it, for messages.
    library: PathBuf,
    name: String,
    description: Description,
    accepts: Vec<Media>,
    create: CreateFn,
    process: ProcessFn,
    destroy: DestroyFn,
}

impl LoadedStage {
    /// Checks option names and types against the stage's description; `prefix` is where the
    /// options sit within the component (for error paths).
    fn check_options(&self, options: &Value, prefix: &str) -> Result<(), OptionsError> {
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

    /// Makes the first instance (so bad options fail the build) and wraps it as a CPU stage.
    fn start(
        self: &Arc<Self>,
        options: &Value,
        max_panics: u32,
        ctx: &BuildContext,
    ) -> anyhow::Result<Component> {
        let config = options.to_string();
        let first = self.instantiate(&config).map_err(|e| {
            anyhow::anyhow!(
                "stage {}: plugin {} stage {} refused its options: {e}",
                ctx.id,
                self.library.display(),
                self.name
            )
        })?;
        Ok(Component::Cpu(Arc::new(RunningPlugin {
            stage: Arc::clone(self),
            config,
            idle: Mutex::new(vec![first]),
            panics: Mutex::new(Panics::default()),
            max_panics,
        })))
    }

    fn instantiate(&self, config: &str) -> Result<Instance, String> {
        let mut error = ErrorMessage::empty();
        // SAFETY: create takes the config buffer with its length and an error slot, per the SDK contract.
        let handle = unsafe { (self.create)(config.as_ptr(), config.len(), &mut error) };
        // SAFETY: the error slot is as the plugin left it.
        let message = unsafe { error.take() };
        match NonNull::new(handle) {
            Some(handle) => Ok(Instance { handle, destroy: self.destroy }),
            None => Err(message.unwrap_or_else(|| "create failed without a message".to_owned())),
        }
    }
}

/// A plugin stage instance, destroyed by the plugin when dropped.
struct Instance {
    handle: NonNull<c_void>,
    destroy: DestroyFn,
}

// SAFETY: the SDK requires stages to be Send, and the host uses an instance from one thread at a time.
unsafe impl Send for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the handle came from create and is destroyed once.
        unsafe { (self.destroy)(self.handle.as_ptr()) }
    }
}

/// A built plugin stage. The plugin's trait takes `&mut self`, so each concurrent call gets
/// its own instance: idle ones wait in a pool and more are made (with the same options) when
/// the engine runs more items at once.
struct RunningPlugin {
    stage: Arc<LoadedStage>,
    config: String,
    idle: Mutex<Vec<Instance>>,
    panics: Mutex<Panics>,
    max_panics: u32,
}

/// The plugin's recent panics. A panicked instance's state is unknown, so it is abandoned;
/// panics in a row mean the plugin, not one page, is broken.
#[derive(Default)]
struct Panics {
    in_a_row: u32,
    /// Set once `max_panics` panics came in a row: the last one, and the stage runs no more.
    disabled: Option<String>,
}

impl RunningPlugin {
    fn fail(&self, message: impl std::fmt::Display) -> StageError {
        StageError::failed(format!("plugin stage {}: {message}", self.stage.name))
    }

    fn take_instance(&self) -> Result<Instance, StageError> {
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => self.stage.instantiate(&self.config).map_err(|e| self.fail(e)),
        }
    }
}

impl CpuStage for RunningPlugin {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        if let Some(panic) = &self.panics.lock().unwrap_or_else(PoisonError::into_inner).disabled {
            return Err(
                self.fail(format!("disabled after {} panics in a row, the last {panic}", self.max_panics))
            );
        }
        let Payload::Image(raster) = input else {
            return Err(self.fail(format!("takes images, got {}", input.media())));
        };
        if !self.stage.accepts.contains(&raster.media()) {
            return Err(self.fail(format!("does not take a {}", raster.media())));
        }
        let meta = json!({
            "key": item.key,
            "seq": item.seq,
            "prompt": item.prompt,
            "facts": item.facts,
            "dpi": raster.dpi,
        })
        .to_string();
        let (view, format) = image_view(&raster);
        let instance = self.take_instance()?;
        let mut output = ImageBuffer::empty();
        let mut error = ErrorMessage::empty();
        // SAFETY: the view borrows `raster`, the metadata borrows `meta`, both alive for the call;
        // the instance is used by this thread only.
        let status = unsafe {
            (self.stage.process)(
                instance.handle.as_ptr(),
                &view,
                meta.as_ptr(),
                meta.len(),
                &mut output,
                &mut error,
            )
        };
        let output = Released(output);
        // SAFETY: the error slot is as the plugin left it.
        let message = unsafe { error.take() }.unwrap_or_else(|| format!("failed with status {status}"));
        match status {
            STATUS_OK => {
                self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(instance);
                self.panics.lock().unwrap_or_else(PoisonError::into_inner).in_a_row = 0;
                let pixels = raster_pixels(&output.0, format).map_err(|e| self.fail(e))?;
                Ok(Payload::Image(Arc::new(Raster::new(output.0.width, output.0.height, raster.dpi, pixels))))
            }
            STATUS_ERROR => {
                self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(instance);
                Err(self.fail(message))
            }
            _ => {
                // A panicked instance's state is unknown, so even its destructor is not run;
                // the next item gets a fresh instance with the same options.
                std::mem::forget(instance);
                let mut panics = self.panics.lock().unwrap_or_else(PoisonError::into_inner);
                panics.in_a_row += 1;
                if panics.in_a_row >= self.max_panics {
                    tracing::error!(
                        "plugin stage {}: disabled after {} panics in a row (the last on item {}); \
                         the pages after it fail",
                        self.stage.name,
                        panics.in_a_row,
                        item.key
                    );
                    panics.disabled = Some(format!("(item {}): {message}", item.key));
                }
                Err(self.fail(message))
            }
        }
    }
}

/// An output image, handed back to the plugin's release function whatever happens.
struct Released(ImageBuffer);

impl Drop for Released {
    fn drop(&mut self) {
        if let Some(release) = self.0.release
            && !self.0.ptr.is_null()
        {
            // SAFETY: the plugin's own buffer and release function, released once.
            unsafe { release(self.0.ptr, self.0.len) }
        }
    }
}

/// Lends a raster's tightly packed pixels to a plugin without copying.
fn image_view(raster: &Raster) -> (ImageView, Format) {
    let (format, bytes) = match &raster.pixels {
        Pixels::Gray(bytes) => (Format::Gray, bytes),
        Pixels::Bilevel(bytes) => (Format::Bilevel, bytes),
        Pixels::Rgb(bytes) => (Format::Rgb, bytes),
    };
    let view = ImageView {
        ptr: bytes.as_ptr(),
        len: bytes.len(),
        width: raster.width,
        height: raster.height,
        stride: format.row_bytes(raster.width),
        format: format.raw(),
    };
    (view, format)
}

/// Copies a plugin's output into tightly packed pixels, refusing anything that is not a
/// well-formed image of the input's format.
fn raster_pixels(output: &ImageBuffer, expected: Format) -> Result<Pixels, String> {
    let format = Format::from_raw(output.format)
        .ok_or_else(|| format!("returned an image of unknown format {}", output.format))?;
    if format != expected {
        return Err(format!("returned a {} image for a {} input", format.name(), expected.name()));
    }
    if output.width == 0 || output.height == 0 || output.ptr.is_null() {
        return Err(format!("returned an empty {}x{} image", output.width, output.height));
    }
    format
        .check_layout(output.width, output.height, output.stride, output.len)
        .map_err(|e| format!("returned a malformed image: {e}"))?;
    // SAFETY: the plugin vouches that ptr holds len bytes until released.
    let bytes = unsafe { std::slice::from_raw_parts(output.ptr, output.len) };
    let row = format.row_bytes(output.width);
    let packed: Vec<u8> =
        bytes.chunks(output.stride).take(output.height as usize).flat_map(|r| &r[..row]).copied().collect();
    Ok(match format {
        Format::Gray => Pixels::Gray(packed),
        Format::Bilevel => Pixels::Bilevel(packed),
        Format::Rgb => Pixels::Rgb(packed),
    })
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

/// Loads a plugin library and validates its descriptor and every stage in it.
fn load(path: &Path) -> anyhow::Result<Vec<Arc<LoadedStage>>> {
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
