//! The contract between inkflow and a stage plugin: a dynamic library that exports one
//! `extern "C"` function, `inkflow_plugin_descriptor`, returning a [`PluginDescriptor`].
//!
//! Rust has no stable ABI, so everything that crosses the boundary is `#[repr(C)]` data and
//! `extern "C"` functions: a plugin built with another compiler version still loads. Memory is
//! always freed by the side that allocated it (every owned buffer carries its release function).
//!
//! Plugin authors do not touch the raw types: they implement [`PluginStage`] and call
//! [`export_plugin!`]. The host (inkflow) reads the raw types directly.
//!
//! The guide below is the crate's README, compiled as a doctest so it stays true.
#![doc = include_str!("../README.md")]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

/// Marks a descriptor as an inkflow one ("INKFLOWP"), so a library that happens to export a
/// symbol of the same name is refused instead of misread.
pub const MAGIC: u64 = u64::from_le_bytes(*b"INKFLOWP");
/// Bumped on any incompatible change; the host refuses a plugin with another major.
pub const ABI_MAJOR: u16 = 1;
/// Bumped when fields are appended; the host refuses a plugin with a newer minor than its own.
pub const ABI_MINOR: u16 = 0;
/// The name of the one symbol a plugin exports (what [`export_plugin!`] defines).
pub const DESCRIPTOR_SYMBOL: &str = "inkflow_plugin_descriptor";

/// `format` value of an 8-bit grayscale image, 0 = black.
pub const FORMAT_GRAY: u32 = 1;
/// `format` value of a 1-bit image: rows padded to whole bytes, most significant bit first,
/// 1 = white, 0 = black (the PNG and PDF convention).
pub const FORMAT_BILEVEL: u32 = 2;
/// `format` value of an 8-bit RGB image, three bytes per pixel.
pub const FORMAT_RGB: u32 = 3;

/// `process` succeeded and filled the output image.
pub const STATUS_OK: i32 = 0;
/// `process` failed for this item; the stage can take the next one.
pub const STATUS_ERROR: i32 = 1;
/// `process` panicked (or had panicked before): this stage instance refuses every further call.
pub const STATUS_PANICKED: i32 = 2;

/// The type of the exported `inkflow_plugin_descriptor` function.
pub type DescriptorFn = unsafe extern "C" fn() -> *const PluginDescriptor;
/// Frees a buffer the plugin allocated: called by the host with the buffer's own `ptr` and `len`.
pub type ReleaseFn = unsafe extern "C" fn(ptr: *mut u8, len: usize);
/// Makes a stage instance from its options (a UTF-8 JSON object). Returns null and fills
/// `error` when the options are refused.
pub type CreateFn =
    unsafe extern "C" fn(config: *const u8, config_len: usize, error: *mut ErrorMessage) -> *mut c_void;
/// Processes one image. `meta` is a UTF-8 JSON object describing the item (key, prompt, facts,
/// dpi). Returns a `STATUS_*` value; on [`STATUS_OK`] `output` is filled, otherwise `error` is.
pub type ProcessFn = unsafe extern "C" fn(
    stage: *mut c_void,
    input: *const ImageView,
    meta: *const u8,
    meta_len: usize,
    output: *mut ImageBuffer,
    error: *mut ErrorMessage,
) -> i32;
/// Frees a stage instance made by `create`.
pub type DestroyFn = unsafe extern "C" fn(stage: *mut c_void);

/// What `inkflow_plugin_descriptor` returns: a static the host reads before calling anything.
/// The first four fields keep their layout in every ABI version, so any host can read them.
#[repr(C)]
pub struct PluginDescriptor {
    /// Always [`MAGIC`].
    pub magic: u64,
    /// [`ABI_MAJOR`] of the SDK the plugin was built with.
    pub abi_major: u16,
    /// [`ABI_MINOR`] of the SDK the plugin was built with.
    pub abi_minor: u16,
    /// `size_of::<PluginDescriptor>()` as the plugin saw it.
    pub size: u32,
    /// `size_of::<StageVTable>()` as the plugin saw it: the stride of `stages`.
    pub stage_size: u32,
    /// How many stages `stages` points at.
    pub stage_count: u32,
    /// The stages this library offers.
    pub stages: *const StageVTable,
}

// The descriptor only points at immutable statics of the plugin.
unsafe impl Sync for PluginDescriptor {}

impl PluginDescriptor {
    /// A descriptor of the current ABI version for these stages.
    pub const fn new(stages: &'static [StageVTable]) -> Self {
        PluginDescriptor {
            magic: MAGIC,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            size: size_of::<PluginDescriptor>() as u32,
            stage_size: size_of::<StageVTable>() as u32,
            stage_count: stages.len() as u32,
            stages: stages.as_ptr(),
        }
    }
}

/// One stage of a plugin: its name, what its options are and its three functions.
#[repr(C)]
pub struct StageVTable {
    /// The `kind:` name the stage gets in a pipeline (UTF-8).
    pub name: StrRef,
    /// A JSON object describing the stage, so `validate` and `inkflow stages` need not run it:
    /// `{"summary": "...", "accepts": ["gray", "bilevel", "rgb"], "options": [{"name": "...",
    /// "type": "integer|number|string|boolean|any", "default": <json, absent when required>,
    /// "doc": "..."}]}`. `accepts` defaults to every format.
    pub description: StrRef,
    /// See [`CreateFn`].
    pub create: Option<CreateFn>,
    /// See [`ProcessFn`].
    pub process: Option<ProcessFn>,
    /// See [`DestroyFn`].
    pub destroy: Option<DestroyFn>,
}

// A vtable holds pointers to static strings and functions only.
unsafe impl Sync for StageVTable {}

impl StageVTable {
    /// The vtable of a [`PluginStage`] type: used by [`export_plugin!`].
    pub const fn of<S: PluginStage>() -> Self {
        StageVTable {
            name: StrRef::new(S::NAME),
            description: StrRef::new(S::DESCRIPTION),
            create: Some(create::<S>),
            process: Some(process::<S>),
            destroy: Some(destroy::<S>),
        }
    }
}

/// A borrowed static UTF-8 string.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StrRef {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl StrRef {
    /// Points at a static string.
    pub const fn new(s: &'static str) -> Self {
        StrRef { ptr: s.as_ptr(), len: s.len() }
    }

    /// The bytes pointed at.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that outlive the returned slice (or be null).
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: the caller vouches for ptr/len.
        unsafe { bytes_at(self.ptr, self.len) }
    }
}

/// An image the host lends to `process` for the duration of the call.
#[repr(C)]
pub struct ImageView {
    /// First byte of the first row.
    pub ptr: *const u8,
    /// Bytes readable from `ptr`.
    pub len: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from the start of one row to the next.
    pub stride: usize,
    /// One of the `FORMAT_*` values.
    pub format: u32,
}

/// An image the plugin allocated and hands to the host, which calls `release` when done.
#[repr(C)]
pub struct ImageBuffer {
    /// First byte of the first row.
    pub ptr: *mut u8,
    /// Bytes from `ptr`, as passed back to `release`.
    pub len: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from the start of one row to the next.
    pub stride: usize,
    /// One of the `FORMAT_*` values.
    pub format: u32,
    /// Frees `ptr`; None when there is nothing to free.
    pub release: Option<ReleaseFn>,
}

impl ImageBuffer {
    /// No image: what the host passes in for `process` to fill.
    pub const fn empty() -> Self {
        ImageBuffer { ptr: ptr::null_mut(), len: 0, width: 0, height: 0, stride: 0, format: 0, release: None }
    }
}

/// A UTF-8 error message the plugin allocated; the host calls `release` after reading it.
#[repr(C)]
pub struct ErrorMessage {
    /// First byte.
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
    /// Frees `ptr`; None when there is nothing to free.
    pub release: Option<ReleaseFn>,
}

impl ErrorMessage {
    /// No message: what the host passes in for the plugin to fill.
    pub const fn empty() -> Self {
        ErrorMessage { ptr: ptr::null_mut(), len: 0, release: None }
    }

    /// Reads the message (None when the plugin wrote none) and releases it.
    ///
    /// # Safety
    /// The fields must be as the plugin wrote them (or still empty).
    pub unsafe fn take(&mut self) -> Option<String> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: the plugin wrote ptr/len together.
        let text = String::from_utf8_lossy(unsafe { bytes_at(self.ptr, self.len) }).into_owned();
        if let Some(release) = self.release {
            // SAFETY: handing the buffer back to the function that came with it, once.
            unsafe { release(self.ptr, self.len) };
        }
        *self = ErrorMessage::empty();
        Some(text)
    }
}

/// The pixel formats, as the safe side sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// See [`FORMAT_GRAY`].
    Gray,
    /// See [`FORMAT_BILEVEL`].
    Bilevel,
    /// See [`FORMAT_RGB`].
    Rgb,
}

impl Format {
    /// The `FORMAT_*` value.
    pub const fn raw(self) -> u32 {
        match self {
            Format::Gray => FORMAT_GRAY,
            Format::Bilevel => FORMAT_BILEVEL,
            Format::Rgb => FORMAT_RGB,
        }
    }

    /// The format of a `FORMAT_*` value, None for anything else.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            FORMAT_GRAY => Some(Format::Gray),
            FORMAT_BILEVEL => Some(Format::Bilevel),
            FORMAT_RGB => Some(Format::Rgb),
            _ => None,
        }
    }

    /// The name used in stage descriptions and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Gray => "gray",
            Format::Bilevel => "bilevel",
            Format::Rgb => "rgb",
        }
    }

    /// Bytes holding one row of `width` pixels, without padding.
    pub const fn row_bytes(self, width: u32) -> usize {
        match self {
            Format::Gray => width as usize,
            Format::Bilevel => (width as usize).div_ceil(8),
            Format::Rgb => width as usize * 3,
        }
    }

    /// Checks that `len` bytes with this `stride` hold a `width` x `height` image.
    pub fn check_layout(self, width: u32, height: u32, stride: usize, len: usize) -> Result<(), String> {
        let row = self.row_bytes(width);
        if stride < row {
            return Err(format!("stride {stride} is shorter than a {} row of {width} pixels", self.name()));
        }
        let needed = match height {
            0 => 0,
            h => stride.checked_mul(h as usize - 1).and_then(|n| n.checked_add(row)).unwrap_or(usize::MAX),
        };
        if len < needed {
            return Err(format!("{len} bytes cannot hold a {width}x{height} {} image", self.name()));
        }
        Ok(())
    }
}

/// A borrowed image: what [`PluginStage::process`] gets.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: Format,
    stride: usize,
    data: &'a [u8],
}

impl<'a> ImageRef<'a> {
    /// An image over `data`, checked to be large enough.
    pub fn new(
        format: Format,
        width: u32,
        height: u32,
        stride: usize,
        data: &'a [u8],
    ) -> Result<Self, String> {
        format.check_layout(width, height, stride, data.len())?;
        Ok(ImageRef { width, height, format, stride, data })
    }

    /// The bytes of row `y`, without padding.
    pub fn row(&self, y: u32) -> &'a [u8] {
        let start = y as usize * self.stride;
        &self.data[start..start + self.format.row_bytes(self.width)]
    }

    /// A tightly packed copy to draw on.
    pub fn to_image(&self) -> Image {
        let mut data = Vec::with_capacity(self.format.row_bytes(self.width) * self.height as usize);
        for y in 0..self.height {
            data.extend_from_slice(self.row(y));
        }
        Image { width: self.width, height: self.height, format: self.format, data }
    }
}

/// An owned, tightly packed image: what [`PluginStage::process`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: Format,
    data: Vec<u8>,
}

impl Image {
    /// A white image.
    pub fn white(format: Format, width: u32, height: u32) -> Self {
        Image { width, height, format, data: vec![0xFF; format.row_bytes(width) * height as usize] }
    }

    /// An image over tightly packed rows, checked to be the right size.
    pub fn from_rows(format: Format, width: u32, height: u32, data: Vec<u8>) -> Result<Self, String> {
        let expected = format.row_bytes(width) * height as usize;
        if data.len() != expected {
            return Err(format!("{} bytes is not a {width}x{height} {} image", data.len(), format.name()));
        }
        Ok(Image { width, height, format, data })
    }

    /// The pixel bytes, rows tightly packed.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Sets pixel (x, y) to a gray level: bilevel pixels become black below 128, RGB pixels gray.
    /// Pixels outside the image are ignored, so shapes may run off the page.
    pub fn paint(&mut self, x: u32, y: u32, level: u8) {
        if x >= self.width || y >= self.height {
            return;
        }
        let row = y as usize * self.format.row_bytes(self.width);
        match self.format {
            Format::Gray => self.data[row + x as usize] = level,
            Format::Rgb => {
                let at = row + x as usize * 3;
                self.data[at..at + 3].fill(level);
            }
            Format::Bilevel => {
                let byte = &mut self.data[row + x as usize / 8];
                let bit = 0x80 >> (x % 8);
                if level >= 128 { *byte |= bit } else { *byte &= !bit }
            }
        }
    }

    /// Paints the rectangle of `width` x `height` pixels whose top-left corner is (x, y).
    pub fn fill_rect(&mut self, x: u32, y: u32, width: u32, height: u32, level: u8) {
        for py in y..y.saturating_add(height).min(self.height) {
            for px in x..x.saturating_add(width).min(self.width) {
                self.paint(px, py, level);
            }
        }
    }
}

/// A stage written in safe Rust. [`export_plugin!`] wraps it in the C functions of a
/// [`StageVTable`], catching panics: a panic fails the item and disables the instance.
pub trait PluginStage: Sized + Send + 'static {
    /// The `kind:` name in a pipeline file.
    const NAME: &'static str;
    /// The JSON description of the stage and its options (see [`StageVTable::description`]).
    const DESCRIPTION: &'static str;
    /// Makes an instance from the options given in the pipeline file (a JSON object).
    /// The host may make several instances to process items in parallel.
    fn new(config: &str) -> Result<Self, String>;
    /// Processes one image; `meta` is the item as a JSON object.
    fn process(&mut self, image: ImageRef<'_>, meta: &str) -> Result<Image, String>;
}

/// Exports the plugin's descriptor function for the listed [`PluginStage`] types.
///
/// ```
/// use inkflow_sdk::{Image, ImageRef, PluginStage};
///
/// struct Copy;
///
/// impl PluginStage for Copy {
///     const NAME: &'static str = "copy";
///     const DESCRIPTION: &'static str = r#"{"summary": "Passes pages through", "options": []}"#;
///     fn new(_config: &str) -> Result<Self, String> {
///         Ok(Copy)
///     }
///     fn process(&mut self, page: ImageRef<'_>, _meta: &str) -> Result<Image, String> {
///         Ok(page.to_image())
///     }
/// }
///
/// inkflow_sdk::export_plugin!(Copy);
/// # let descriptor = unsafe { &*inkflow_plugin_descriptor() };
/// # assert_eq!((descriptor.magic, descriptor.stage_count), (inkflow_sdk::MAGIC, 1));
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($($stage:ty),+ $(,)?) => {
        /// The entry point inkflow looks up: the plugin's stages and ABI version.
        #[unsafe(no_mangle)]
        pub extern "C" fn inkflow_plugin_descriptor() -> *const $crate::PluginDescriptor {
            static STAGES: &[$crate::StageVTable] = &[$($crate::StageVTable::of::<$stage>()),+];
            static DESCRIPTOR: $crate::PluginDescriptor = $crate::PluginDescriptor::new(STAGES);
            &DESCRIPTOR
        }
    };
}

/// A stage instance behind the C handle, with the panic that disabled it, if any.
struct Instance<S> {
    stage: S,
    panicked: Option<String>,
}

/// # Safety
/// `ptr` must point at `len` readable bytes, or be null (read as empty).
unsafe fn bytes_at<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller vouches for ptr/len.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Leaks `bytes` for the host; [`release_bytes`] takes them back.
fn leak_bytes(bytes: Box<[u8]>) -> (*mut u8, usize) {
    let len = bytes.len();
    (Box::into_raw(bytes).cast::<u8>(), len)
}

/// The [`ReleaseFn`] of every buffer this SDK hands out.
unsafe extern "C" fn release_bytes(ptr: *mut u8, len: usize) {
    // SAFETY: ptr/len came from leak_bytes, and the host releases each buffer once.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Writes `message` where the host asked for errors (if it asked).
///
/// # Safety
/// `error` must be null or point at a writable [`ErrorMessage`].
unsafe fn report(error: *mut ErrorMessage, message: String) {
    if error.is_null() {
        return;
    }
    let (ptr, len) = leak_bytes(message.into_bytes().into_boxed_slice());
    // SAFETY: the caller vouches for error.
    unsafe { error.write(ErrorMessage { ptr, len, release: Some(release_bytes) }) };
}

/// The text of a caught panic.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => format!("panicked: {s}"),
        Err(payload) => match payload.downcast::<&str>() {
            Ok(s) => format!("panicked: {s}"),
            Err(_) => "panicked".to_owned(),
        },
    }
}

unsafe extern "C" fn create<S: PluginStage>(
    config: *const u8,
    config_len: usize,
    error: *mut ErrorMessage,
) -> *mut c_void {
    let made = catch_unwind(|| {
        // SAFETY: the host passes its config buffer with its length.
        let config = std::str::from_utf8(unsafe { bytes_at(config, config_len) })
            .map_err(|e| format!("options are not UTF-8: {e}"))?;
        S::new(config)
    });
    let message = match made {
        Ok(Ok(stage)) => return Box::into_raw(Box::new(Instance { stage, panicked: None })).cast(),
        Ok(Err(message)) => message,
        Err(payload) => panic_text(payload),
    };
    // SAFETY: the host passes a valid error slot.
    unsafe { report(error, message) };
    ptr::null_mut()
}

unsafe extern "C" fn process<S: PluginStage>(
    stage: *mut c_void,
    input: *const ImageView,
    meta: *const u8,
    meta_len: usize,
    output: *mut ImageBuffer,
    error: *mut ErrorMessage,
) -> i32 {
    if stage.is_null() || input.is_null() || output.is_null() {
        // SAFETY: error is null or valid, as the host promises.
        unsafe { report(error, "process called with a null pointer".to_owned()) };
        return STATUS_ERROR;
    }
    // SAFETY: a non-null stage is a handle from create::<S>, used by one thread at a time.
    let instance = unsafe { &mut *stage.cast::<Instance<S>>() };
    if let Some(panic) = &instance.panicked {
        let message = format!("stage {} refuses further calls after it {panic}", S::NAME);
        // SAFETY: as above.
        unsafe { report(error, message) };
        return STATUS_PANICKED;
    }
    // SAFETY: the host lends a valid view and metadata buffer for this call.
    let (view, meta) = unsafe { (&*input, bytes_at(meta, meta_len)) };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let format = Format::from_raw(view.format).ok_or(format!("unknown image format {}", view.format))?;
        // SAFETY: the view's ptr/len describe the lent pixels.
        let data = unsafe { bytes_at(view.ptr, view.len) };
        let image = ImageRef::new(format, view.width, view.height, view.stride, data)?;
        let meta = std::str::from_utf8(meta).map_err(|e| format!("item metadata is not UTF-8: {e}"))?;
        instance.stage.process(image, meta)
    }));
    let (message, status) = match outcome {
        Ok(Ok(image)) => {
            let stride = image.format.row_bytes(image.width);
            let (ptr, len) = leak_bytes(image.data.into_boxed_slice());
            let buffer = ImageBuffer {
                ptr,
                len,
                width: image.width,
                height: image.height,
                stride,
                format: image.format.raw(),
                release: Some(release_bytes),
            };
            // SAFETY: output was checked non-null and the host gives a writable slot.
            unsafe { output.write(buffer) };
            return STATUS_OK;
        }
        Ok(Err(message)) => (message, STATUS_ERROR),
        Err(payload) => {
            let message = panic_text(payload);
            instance.panicked = Some(message.clone());
            (message, STATUS_PANICKED)
        }
    };
    // SAFETY: error is null or valid, as the host promises.
    unsafe { report(error, message) };
    status
}

unsafe extern "C" fn destroy<S: PluginStage>(stage: *mut c_void) {
    if stage.is_null() {
        return;
    }
    // SAFETY: the handle came from create::<S> and the host destroys it once. A panic in the
    // stage's Drop has nowhere to be reported; it must not unwind into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(stage.cast::<Instance<S>>()) })));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painting_a_bilevel_pixel_clears_its_bit_msb_first() {
        let mut image = Image::white(Format::Bilevel, 10, 2);
        image.paint(1, 1, 0);
        image.paint(9, 0, 0);
        assert_eq!(image.data(), &[0xFF, 0b1011_1111, 0b1011_1111, 0xFF]);
    }

    #[test]
    fn a_view_too_small_for_its_size_is_refused() {
        let err = ImageRef::new(Format::Gray, 4, 3, 4, &[0; 11]).unwrap_err();
        assert!(err.contains("11 bytes cannot hold a 4x3 gray image"), "{err}");
        assert!(ImageRef::new(Format::Gray, 4, 3, 4, &[0; 12]).is_ok());
        assert!(ImageRef::new(Format::Rgb, 4, 1, 11, &[0; 12]).unwrap_err().contains("stride 11"));
    }

    #[test]
    fn a_strided_view_copies_to_a_packed_image() {
        let data = [1, 2, 99, 3, 4, 99];
        let image = ImageRef::new(Format::Gray, 2, 2, 3, &data).unwrap().to_image();
        assert_eq!(image.data(), &[1, 2, 3, 4]);
    }
}
