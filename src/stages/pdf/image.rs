//! Encoded page images (CCITT Group 4 for line art, Flate otherwise) and the store that keeps them for resumed runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use fax::Color;
use pdf_writer::{Chunk, Filter, Finish, Ref};

use crate::engine::atomic_file::write_atomically;
use crate::engine::media::{Pixels, Raster};

/// Encoded pages kept beside the book (`OUTPUT/cache/pdf-pages-HASH/HASH.page`), so a resumed
/// run rebuilds the whole book from pages earlier runs made, without their pixels in memory.
/// Files are named by short hashes of the book's path and the item key: a key can be long or
/// hold `/`, a hash is always one short file name.
pub(crate) struct PageStore {
    pub(crate) dir: PathBuf,
}

/// 16 hex digits of SHA-256: one short file name, unique among a batch's items.
pub(crate) fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}

impl PageStore {
    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.page", short_hash(key)))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// Where the book keeps what it printed instead of a rejected page.
    fn stand_in_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.rejected", short_hash(key)))
    }

    /// Whether the book settled a rejected page without its image (`rejected: placeholder` or
    /// `skip`): the page is done as far as the book is concerned, so a rerun leaves it be.
    pub(crate) fn has_stand_in(&self, key: &str) -> bool {
        self.stand_in_path(key).is_file()
    }

    /// Keeps what the book prints for a rejected page: `Some(reason)` for a placeholder page,
    /// `None` to leave it out. An image kept for the item before is no longer its page.
    pub(crate) fn save_stand_in(&self, key: &str, reason: Option<&str>) -> Result<(), String> {
        let text = match reason {
            Some(reason) => format!("{PLACEHOLDER}\n{reason}"),
            None => format!("{OMITTED}\n"),
        };
        // The old kind goes first: a crash between leaves no page (made again for nothing),
        // never two that disagree.
        remove_stale(&self.path(key))?;
        self.write(&self.stand_in_path(key), text.as_bytes())
    }

    /// What the book printed for a rejected page: `Some(Some(reason))` a placeholder page,
    /// `Some(None)` nothing; `None` when it kept none (or the file is damaged).
    pub(crate) fn load_stand_in(&self, key: &str) -> Option<Option<String>> {
        let text = fs::read_to_string(self.stand_in_path(key)).ok()?;
        match text.split_once('\n')? {
            (PLACEHOLDER, reason) => Some(Some(reason.to_owned())),
            (OMITTED, _) => Some(None),
            _ => None,
        }
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))
            .and_then(|()| write_atomically(path, bytes).map_err(|e| format!("{e:#}")))
    }

    /// One header line (`width height dpi coding`), then the encoded data; written whole or not at all.
    pub(crate) fn save(&self, key: &str, stream: &ImageStream) -> Result<(), String> {
        let mut bytes = format!(
            "{} {} {} {}\n",
            stream.width,
            stream.height,
            stream.dpi.unwrap_or(0.0),
            stream.coding.code()
        )
        .into_bytes();
        bytes.extend_from_slice(&stream.data);
        remove_stale(&self.stand_in_path(key))?;
        self.write(&self.path(key), &bytes)
    }

    pub(crate) fn load(&self, key: &str) -> io::Result<ImageStream> {
        let bytes = fs::read(self.path(key))?;
        let bad = || io::Error::other(format!("{} is damaged", self.path(key).display()));
        let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| bad())?;
        let fields: Vec<&str> = header.split(' ').collect();
        let [width, height, dpi, coding] = fields[..] else { return Err(bad()) };
        let dpi: f32 = dpi.parse().map_err(|_| bad())?;
        Ok(ImageStream {
            width: width.parse().map_err(|_| bad())?,
            height: height.parse().map_err(|_| bad())?,
            dpi: (dpi > 0.0).then_some(dpi),
            coding: Coding::from_code(coding).ok_or_else(bad)?,
            data: bytes[newline + 1..].to_vec(),
        })
    }
}

/// The first line of a stand-in for a rejected page: a placeholder page (its reason follows),
/// or the page left out.
const PLACEHOLDER: &str = "placeholder";
const OMITTED: &str = "omitted";

/// Removes what an item's page was before it became another kind of page.
fn remove_stale(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// An image encoded for the PDF, ready to be written as an image XObject.
pub(crate) struct ImageStream {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) dpi: Option<f32>,
    pub(crate) coding: Coding,
    pub(crate) data: Vec<u8>,
}

pub(crate) enum Coding {
    /// 1-bit, CCITT Group 4: about a third of Flate's size for line art.
    Group4,
    /// 8-bit gray, Flate.
    FlateGray,
    /// 8-bit RGB, Flate.
    FlateRgb,
}

impl Coding {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Coding::Group4 => "g4",
            Coding::FlateGray => "gray",
            Coding::FlateRgb => "rgb",
        }
    }

    pub(crate) fn from_code(code: &str) -> Option<Self> {
        [Coding::Group4, Coding::FlateGray, Coding::FlateRgb].into_iter().find(|c| c.code() == code)
    }
}

impl ImageStream {
    /// Encodes a raster; CPU work for the rayon pool.
    pub(crate) fn encode(raster: &Raster) -> Result<Self, String> {
        let (width, height) = (raster.width, raster.height);
        if width == 0 || height == 0 {
            return Err(format!("the image is empty ({width}x{height})"));
        }
        let pixels = width as usize * height as usize;
        let (coding, data) = match &raster.pixels {
            Pixels::Bilevel(packed) => (Coding::Group4, encode_group4(width, height, packed)?),
            Pixels::Gray(gray) => (Coding::FlateGray, deflate(gray, pixels)?),
            Pixels::Rgb(rgb) => (Coding::FlateRgb, deflate(rgb, pixels * 3)?),
        };
        Ok(ImageStream { width, height, dpi: raster.dpi, coding, data })
    }

    pub(crate) fn write(&self, chunk: &mut Chunk, id: Ref) -> io::Result<()> {
        let too_large =
            || io::Error::other(format!("a {}x{} image is too large for PDF", self.width, self.height));
        let width = i32::try_from(self.width).map_err(|_| too_large())?;
        let height = i32::try_from(self.height).map_err(|_| too_large())?;
        let mut image = chunk.image_xobject(id, &self.data);
        image.width(width).height(height);
        match self.coding {
            Coding::Group4 => {
                image.color_space().device_gray();
                image.bits_per_component(1);
                image.filter(Filter::CcittFaxDecode);
                // K < 0 is pure two-dimensional Group 4. BlackIs1 false: a decoded 0 is black,
                // which is our packing too (1 = white).
                image.decode_parms().k(-1).columns(width).rows(height).black_is_1(false);
            }
            Coding::FlateGray => {
                image.color_space().device_gray();
                image.bits_per_component(8);
                image.filter(Filter::FlateDecode);
            }
            Coding::FlateRgb => {
                image.color_space().device_rgb();
                image.bits_per_component(8);
                image.filter(Filter::FlateDecode);
            }
        }
        image.finish();
        Ok(())
    }
}

/// CCITT Group 4 (T.6) of packed 1-bit rows, most significant bit first, 1 = white.
pub(crate) fn encode_group4(width: u32, height: u32, packed: &[u8]) -> Result<Vec<u8>, String> {
    let stride = Raster::bilevel_stride(width);
    let needed = stride * height as usize;
    if packed.len() < needed {
        return Err(format!(
            "a {width}x{height} bilevel image needs {needed} bytes, it has {}",
            packed.len()
        ));
    }
    let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::with_capacity(needed));
    for row in packed.chunks_exact(stride).take(height as usize) {
        let pels = (0..width as usize)
            .map(|x| if row[x / 8] & (0x80 >> (x % 8)) != 0 { Color::White } else { Color::Black });
        let Ok(()) = encoder.encode_line(pels, width);
    }
    let Ok(writer) = encoder.finish();
    Ok(writer.finish())
}

pub(crate) fn deflate(samples: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    match samples.get(..expected) {
        Some(samples) => Ok(miniz_oxide::deflate::compress_to_vec_zlib(samples, 6)),
        None => Err(format!("the image needs {expected} bytes of samples, it has {}", samples.len())),
    }
}
