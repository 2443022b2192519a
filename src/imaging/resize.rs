//! Lanczos3 resizing with fast_image_resize (SIMD; ~27x faster than the `image` crate here),
//! fitted to a target box without distortion unless asked.

use std::cell::RefCell;

use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{PixelType, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

use super::ImagingError;
use crate::engine::media::{Pixels, Raster};

/// How an image meets a target box of another aspect ratio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit inside the box and pad the rest with white, centred: nothing cut, nothing bent.
    #[default]
    Contain,
    /// Scale to fill the box and cut the overflow, centred.
    Cover,
    /// Scale each axis to the box, distorting the image (the original service's behaviour).
    Stretch,
}

/// Pixels past this count are refused, so a typo in a size cannot ask for gigabytes.
const MAX_PIXELS: u64 = 100_000_000;

thread_local! {
    // One resizer per pool thread keeps its scratch buffers between pages.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
    /// Pixel buffers of finished pages, given back by the stage that used them last
    /// ([`recycle`]): the next page resized on this thread writes into memory already mapped,
    /// where a fresh 8.4 MB page costs the kernel some 2,000 page faults to map and unmap.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Page buffers kept per thread: the pages a fused chain has in flight on it.
const SPARES_PER_THREAD: usize = 2;

/// A buffer of `len` bytes set to `fill`, reusing a spare of about that size.
fn page_buffer(len: usize, fill: u8) -> Vec<u8> {
    // Not much larger: a small image (a thumbnail) must not carry a page's memory away.
    let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() / 2 <= len;
    let spare = SPARE.with_borrow_mut(|spares| spares.iter().position(fits).map(|i| spares.swap_remove(i)));
    match spare {
        Some(mut buffer) => {
            buffer.clear();
            buffer.resize(len, fill);
            buffer
        }
        None => vec![fill; len],
    }
}

/// Gives a page nothing else holds back for the next [`resize`] on this thread.
pub fn recycle(raster: Raster) {
    if let Pixels::Gray(buffer) | Pixels::Rgb(buffer) = raster.pixels {
        SPARE.with_borrow_mut(|spares| {
            if spares.len() < SPARES_PER_THREAD {
                spares.push(buffer);
            }
        });
    }
}

/// The size and offset of an image of `src` size scaled to fit inside `dst` (contain),
/// centred: `(width, height, left, top)`. Neither side is below 1 pixel.
pub fn contain_box(src: (u32, u32), dst: (u32, u32)) -> (u32, u32, u32, u32) {
    let scale = (f64::from(dst.0) / f64::from(src.0)).min(f64::from(dst.1) / f64::from(src.1));
    let width = ((f64::from(src.0) * scale).round() as u32).clamp(1, dst.0);
    let height = ((f64::from(src.1) * scale).round() as u32).clamp(1, dst.1);
    (width, height, (dst.0 - width) / 2, (dst.1 - height) / 2)
}

/// Resizes a gray or RGB raster to exactly `width` x `height` with Lanczos3. The print
/// resolution is kept; callers that change it set `dpi` themselves.
pub fn resize(raster: &Raster, width: u32, height: u32, fit: Fit) -> Result<Raster, ImagingError> {
    let (bytes, pixel_type, channels) = match &raster.pixels {
        Pixels::Gray(p) => (p, PixelType::U8, 1),
        Pixels::Rgb(p) => (p, PixelType::U8x3, 3),
        Pixels::Bilevel(_) => {
            return Err(ImagingError::Unsupported { operation: "resize", media: raster.media() });
        }
    };
    check_size(width, height)?;
    check_size(raster.width, raster.height)?;
    let src = ImageRef::new(raster.width, raster.height, bytes, pixel_type)
        .map_err(|e| ImagingError::codec("resize", e))?;
    let len = width as usize * height as usize * channels;
    // Only contain leaves pixels uncovered; the others overwrite every byte.
    let mut out = page_buffer(len, if fit == Fit::Contain { 255 } else { 0 });
    let mut dst = Image::from_slice_u8(width, height, &mut out, pixel_type)
        .map_err(|e| ImagingError::codec("resize", e))?;
    let options = ResizeOptions::new();
    RESIZER
        .with_borrow_mut(|resizer| match fit {
            Fit::Stretch => resizer.resize(&src, &mut dst, &options),
            Fit::Cover => resizer.resize(&src, &mut dst, &options.fit_into_destination(None)),
            Fit::Contain => {
                let (w, h, left, top) = contain_box((raster.width, raster.height), (width, height));
                let mut inner = CroppedImageMut::new(&mut dst, left, top, w, h)?;
                resizer.resize(&src, &mut inner, &options)
            }
        })
        .map_err(|e| ImagingError::codec("resize", e))?;
    drop(dst);
    let pixels = if channels == 1 { Pixels::Gray(out) } else { Pixels::Rgb(out) };
    Ok(Raster::new(width, height, raster.dpi, pixels))
}

pub(super) fn check_size(width: u32, height: u32) -> Result<(), ImagingError> {
    if width == 0 || height == 0 {
        return Err(ImagingError::BadSize { width, height, reason: "a side is zero" });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImagingError::BadSize { width, height, reason: "more than 100 megapixels" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gray test card: black everywhere, so any white in the output is padding.
    fn black(width: u32, height: u32) -> Raster {
        Raster::new(width, height, Some(96.0), Pixels::Gray(vec![0; (width * height) as usize]))
    }

    fn gray(r: &Raster) -> &[u8] {
        match &r.pixels {
            Pixels::Gray(p) => p,
            _ => panic!("not gray"),
        }
    }

    #[test]
    fn contain_pads_with_white_and_keeps_the_aspect_ratio() {
        // 768x1024 (3:4) into 2550x3300: 2475x3300 of image, 37/38 columns of white each side.
        let out = resize(&black(768, 1024), 2550, 3300, Fit::Contain).unwrap();
        assert_eq!((out.width, out.height, out.dpi), (2550, 3300, Some(96.0)));
        let (w, h, left, top) = contain_box((768, 1024), (2550, 3300));
        assert_eq!((w, h, left, top), (2475, 3300, 37, 0));
        let px = gray(&out);
        for y in [0usize, 1650, 3299] {
            let row = &px[y * 2550..(y + 1) * 2550];
            assert!(row[..37].iter().all(|&p| p == 255), "left pad of row {y} not white");
            assert!(row[37 + 2475..].iter().all(|&p| p == 255), "right pad of row {y} not white");
            // The image itself is black from edge to edge: not stretched over the padding.
            assert!(row[37..37 + 2475].iter().all(|&p| p == 0), "image of row {y} not black");
        }
    }

    #[test]
    fn contain_pads_top_and_bottom_for_wide_images() {
        let out = resize(&black(200, 100), 100, 100, Fit::Contain).unwrap();
        let px = gray(&out);
        let (w, h, left, top) = contain_box((200, 100), (100, 100));
        assert_eq!((w, h, left, top), (100, 50, 0, 25));
        assert!(px[..25 * 100].iter().all(|&p| p == 255), "top pad not white");
        assert!(px[75 * 100..].iter().all(|&p| p == 255), "bottom pad not white");
        assert!(px[25 * 100..75 * 100].iter().all(|&p| p == 0), "image rows not black");
    }

    #[test]
    fn cover_and_stretch_fill_the_box() {
        for fit in [Fit::Cover, Fit::Stretch] {
            let out = resize(&black(768, 1024), 600, 300, fit).unwrap();
            assert_eq!((out.width, out.height), (600, 300));
            assert!(gray(&out).iter().all(|&p| p == 0), "{fit:?} left uncovered pixels");
        }
    }

    #[test]
    fn cover_crops_the_centre() {
        // Left half black, right half white, 200x100, covered into 50x100: only the middle
        // 100 columns are kept, so the left and right edges differ.
        let mut px = vec![255u8; 200 * 100];
        for row in px.chunks_exact_mut(200) {
            row[..100].fill(0);
        }
        let src = Raster::new(200, 100, None, Pixels::Gray(px));
        let out = resize(&src, 50, 100, Fit::Cover).unwrap();
        let row = &gray(&out)[50 * 50..51 * 50];
        assert!(row[0] < 16 && row[49] > 239, "{row:?}");
    }

    #[test]
    fn a_recycled_page_is_reused_and_filled_afresh() {
        let first = resize(&black(60, 80), 120, 160, Fit::Stretch).unwrap();
        let Pixels::Gray(pixels) = &first.pixels else { panic!("not gray") };
        let memory = pixels.as_ptr();
        recycle(first);
        // Contain pads with white: the old black must not show through the margins.
        let second = resize(&black(60, 60), 120, 160, Fit::Contain).unwrap();
        assert_eq!(gray(&second).as_ptr(), memory, "the spare was not reused");
        let (_, h, _, top) = contain_box((60, 60), (120, 160));
        assert!(gray(&second)[..top as usize * 120].iter().all(|&p| p == 255));
        assert!(gray(&second)[(top + h) as usize * 120..].iter().all(|&p| p == 255));
        // A thumbnail-sized resize does not take a page's buffer.
        recycle(second);
        let small = resize(&black(60, 80), 12, 16, Fit::Stretch).unwrap();
        assert_ne!(gray(&small).as_ptr(), memory);
    }

    #[test]
    fn rgb_resizes_and_bilevel_is_refused() {
        let rgb = Raster::new(4, 4, None, Pixels::Rgb(vec![10; 48]));
        let out = resize(&rgb, 8, 8, Fit::Stretch).unwrap();
        assert!(out.pixels == Pixels::Rgb(vec![10; 8 * 8 * 3]));
        let bilevel = Raster::new(8, 1, None, Pixels::Bilevel(vec![0]));
        assert!(resize(&bilevel, 16, 2, Fit::Contain).is_err());
        assert!(resize(&rgb, 0, 8, Fit::Contain).is_err());
    }
}
