//! The built stage: a pool of plugin instances made with the component's options, and the
//! per-page call into the library, with its error and panic statuses and the output's checks.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use inkflow_sdk::{DestroyFn, ErrorMessage, Format, ImageBuffer, ImageView, STATUS_ERROR, STATUS_OK};
use serde_json::{Value, json};

use super::library::LoadedStage;
use crate::engine::item::Item;
use crate::engine::media::{Payload, Pixels, Raster};
use crate::engine::stage::{BuildContext, Component, CpuStage, StageError};

impl LoadedStage {
    /// Makes the first instance (so bad options fail the build) and wraps it as a CPU stage.
    pub(super) fn start(
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
