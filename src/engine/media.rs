//! What flows along the edges of a pipeline: media kinds (checked when the graph is built)
//! and the payloads that carry them at run time.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// The kind of data on an edge, like a GStreamer caps: `validate` rejects a wiring whose
/// producer gives a media its consumer cannot take, before any money is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Media {
    /// A prompt with no pixels yet (the output of a source).
    Prompt,
    /// 8-bit RGB pixels.
    Rgb,
    /// 8-bit grayscale pixels.
    Gray,
    /// True black and white, one bit per pixel.
    Bilevel,
    /// An encoded file (a JPEG thumbnail), written as is by sinks.
    Encoded,
}

impl Media {
    /// Every media kind that carries pixels, for stages that take any image.
    pub const IMAGES: &'static [Media] = &[Media::Rgb, Media::Gray, Media::Bilevel];
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Media::Prompt => "prompt",
            Media::Rgb => "rgb image",
            Media::Gray => "gray image",
            Media::Bilevel => "bilevel image",
            Media::Encoded => "encoded file",
        })
    }
}

/// Pixel storage of a [`Raster`]. Rows are tightly packed; bilevel rows are padded to a whole
/// byte, most significant bit first, 1 = white and 0 = black (the PNG and PDF convention).
#[derive(Clone, PartialEq, Eq)]
pub enum Pixels {
    /// Three bytes per pixel.
    Rgb(Vec<u8>),
    /// One byte per pixel, 0 = black.
    Gray(Vec<u8>),
    /// One bit per pixel; each row takes `width.div_ceil(8)` bytes.
    Bilevel(Vec<u8>),
}

/// A decoded image with its print resolution.
#[derive(Clone, PartialEq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Dots per inch for printing, when a stage has set one (written to PNG pHYs and used by the PDF sink).
    pub dpi: Option<f32>,
    /// The pixels.
    pub pixels: Pixels,
    /// The file these pixels are stored as, made by the first sink that stores them.
    file: EncodedOnce,
}

/// A raster's file encoding, made once: the first sink that stores the raster encodes it and
/// every other sink storing it with the same settings (disk and r2) gets the same bytes. A
/// clone starts empty, and it takes no part in equality: it is derived from the pixels.
#[derive(Default)]
struct EncodedOnce(OnceLock<(&'static str, Result<Bytes, String>)>);

impl Clone for EncodedOnce {
    fn clone(&self) -> Self {
        EncodedOnce::default()
    }
}

impl PartialEq for EncodedOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Raster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Raster({}x{} {}, dpi {:?})", self.width, self.height, self.media(), self.dpi)
    }
}

impl Raster {
    /// A raster with no file made of it yet.
    pub fn new(width: u32, height: u32, dpi: Option<f32>, pixels: Pixels) -> Raster {
        Raster { width, height, dpi, pixels, file: EncodedOnce::default() }
    }

    /// These pixels encoded by `encode`, which is named by `settings`. The first call encodes
    /// (a concurrent one waits for it); later calls with the same settings share its bytes,
    /// and a call with other settings encodes its own. A raster inside a payload is never
    /// changed, so the bytes cannot go stale.
    pub fn encoded_once(
        &self,
        settings: &'static str,
        encode: impl FnOnce(&Raster) -> Result<Vec<u8>, String>,
    ) -> Result<Bytes, String> {
        let mut encode = Some(encode);
        let (made_with, made) = self.file.0.get_or_init(|| {
            let encode = encode.take().expect("get_or_init runs its closure at most once");
            (settings, encode(self).map(Bytes::from))
        });
        match encode {
            Some(encode) if *made_with != settings => encode(self).map(Bytes::from),
            _ => made.clone(),
        }
    }

    /// The media kind these pixels are.
    pub fn media(&self) -> Media {
        match self.pixels {
            Pixels::Rgb(_) => Media::Rgb,
            Pixels::Gray(_) => Media::Gray,
            Pixels::Bilevel(_) => Media::Bilevel,
        }
    }

    /// Bytes per row of bilevel pixels.
    pub fn bilevel_stride(width: u32) -> usize {
        (width as usize).div_ceil(8)
    }
}

/// File formats a stage may hand to a sink already encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodedFormat {
    /// A JPEG file.
    Jpeg,
    /// A PNG file.
    Png,
}

impl EncodedFormat {
    /// The usual file extension, without a dot.
    pub fn extension(self) -> &'static str {
        match self {
            EncodedFormat::Jpeg => "jpg",
            EncodedFormat::Png => "png",
        }
    }

    /// The MIME type, for object storage headers.
    pub fn mime(self) -> &'static str {
        match self {
            EncodedFormat::Jpeg => "image/jpeg",
            EncodedFormat::Png => "image/png",
        }
    }
}

/// An encoded image file and what it shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// The file format of `bytes`.
    pub format: EncodedFormat,
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The data one item carries along an edge. Images sit behind an `Arc`, so fan-out to two
/// consumers shares the pixels instead of copying them.
/// An RGB image as it arrived (PNG, JPEG, WebP or SVG bytes), decoded only inside the CPU job that
/// first needs its pixels: an item waiting between an I/O stage and the CPU holds its file
/// (hundreds of KB), not its pixels (megabytes), however many requests are in flight.
pub struct Undecoded {
    /// The file.
    pub bytes: Arc<Vec<u8>>,
    /// Where it came from, for error messages.
    pub label: String,
    /// Its size as its header declares it.
    pub width: u32,
    pub height: u32,
    /// How to decode it: chosen by the stage that fetched it, which knows the format and the
    /// limits.
    pub decode: DecodeFn,
    /// The place it takes in its producer's window of fetched images, given back when it is
    /// decoded or dropped: so a producer fetches no further ahead than the stages below take.
    pub room: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Turns a file into pixels, given the file, its label (for messages) and `(width, height)`:
/// the size a vector original is drawn at (a raster has it already).
pub type DecodeFn = fn(&[u8], &str, (u32, u32)) -> Result<Raster, String>;

impl fmt::Debug for Undecoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Undecoded({}x{}, {} bytes from {})", self.width, self.height, self.bytes.len(), self.label)
    }
}

impl Undecoded {
    /// The pixels; CPU work, for a pool thread.
    pub fn decode(&self) -> Result<Raster, String> {
        (self.decode)(&self.bytes, &self.label, (self.width, self.height))
    }
}

#[derive(Clone, Debug)]
pub enum Payload {
    /// No data yet: the item is a prompt.
    Prompt,
    /// Decoded pixels.
    Image(Arc<Raster>),
    /// An encoded file.
    Encoded(Arc<Encoded>),
    /// An RGB image not decoded yet: the engine decodes it before a CPU stage or a sink.
    Undecoded(Arc<Undecoded>),
}

impl Payload {
    /// The media kind of this payload.
    pub fn media(&self) -> Media {
        match self {
            Payload::Prompt => Media::Prompt,
            Payload::Image(r) => r.media(),
            Payload::Encoded(_) => Media::Encoded,
            Payload::Undecoded(_) => Media::Rgb,
        }
    }

    /// This payload with an undecoded image decoded (CPU work); any other payload as it is.
    pub fn decoded(self) -> Result<Payload, String> {
        match self {
            Payload::Undecoded(file) => file.decode().map(|raster| Payload::Image(Arc::new(raster))),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_raster_is_encoded_once_per_settings_and_a_clone_encodes_afresh() {
        let raster = Raster::new(2, 1, None, Pixels::Gray(vec![0, 255]));
        let calls = AtomicUsize::new(0);
        let encode = |tag: u8| {
            let calls = &calls;
            move |r: &Raster| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(vec![tag, r.width as u8])
            }
        };
        let first = raster.encoded_once("a", encode(1)).unwrap();
        let again = raster.encoded_once("a", encode(2)).unwrap();
        assert_eq!((first.as_ref(), again.as_ref()), (&[1, 2][..], &[1, 2][..]));
        assert_eq!(first.as_ptr(), again.as_ptr(), "the second sink shares the first one's bytes");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        assert_eq!(raster.encoded_once("b", encode(3)).unwrap().as_ref(), &[3, 2][..]);
        assert_eq!(raster.clone().encoded_once("a", encode(4)).unwrap().as_ref(), &[4, 2][..]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let failing = Raster::new(1, 1, None, Pixels::Gray(vec![0]));
        let refused = |_: &Raster| -> Result<Vec<u8>, String> { Err("no".into()) };
        assert_eq!(failing.encoded_once("a", refused), Err("no".to_string()));
        assert_eq!(
            failing.encoded_once("a", encode(5)),
            Err("no".to_string()),
            "an error is kept, not retried"
        );
    }
}
