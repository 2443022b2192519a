//! Vector originals (SVG, as Recraft's vector styles answer) drawn as pixels with resvg, on
//! white paper, at a print resolution: lines drawn at the page's size stay sharp where a small
//! raster scaled up would blur. A hostile file reaches nothing outside itself: references to
//! other files are never followed, and the drawing's size is bounded by [`MAX_PIXELS`].

use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{ImageHrefResolver, Options, Tree};

use super::decode::MAX_PIXELS;
use crate::engine::media::{Pixels, Raster};

/// The long side a vector page is drawn at, at least: 11 inches at 300 DPI, the resolution
/// print-on-demand asks for, so a letter or A4 page needs no upscaling of a drawing.
pub const PRINT_LONG_SIDE_PX: u32 = 3300;

/// Whether `bytes` hold an SVG document (an XML declaration, comment or doctype may come
/// first), as opposed to an HTML error page or a raster image.
pub fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.starts_with('<') && text.contains("<svg")
}

/// The size the drawing declares (its `width`/`height`, else its `viewBox`), in CSS pixels.
pub fn declared_size(bytes: &[u8]) -> Result<(f32, f32), String> {
    let size = parse(bytes)?.size();
    Ok((size.width(), size.height()))
}

/// The pixel size to draw a vector of `declared` size at: its shape, with the long side the
/// larger of `nominal`'s (what the model was asked for) and [`PRINT_LONG_SIDE_PX`], within
/// [`MAX_PIXELS`].
pub fn raster_size(declared: (f32, f32), nominal: (u32, u32)) -> (u32, u32) {
    let (width, height) = (f64::from(declared.0.max(1.0)), f64::from(declared.1.max(1.0)));
    let long_side = f64::from(nominal.0.max(nominal.1).max(PRINT_LONG_SIDE_PX));
    let mut scale = long_side / width.max(height);
    let pixels = width * height * scale * scale;
    if pixels > MAX_PIXELS as f64 {
        scale *= (MAX_PIXELS as f64 / pixels).sqrt();
    }
    let side = |length: f64| ((length * scale).floor() as u32).max(1);
    (side(width), side(height))
}

/// Draws the SVG in `bytes` stretched to `width` x `height` pixels (the shape
/// [`raster_size`] kept) over white.
pub fn rasterize(bytes: &[u8], width: u32, height: u32) -> Result<Raster, String> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("{width}x{height} is over the limit of {MAX_PIXELS} pixels"));
    }
    let tree = parse(bytes)?;
    let mut pixmap = Pixmap::new(width, height).ok_or_else(|| format!("cannot draw at {width}x{height}"))?;
    pixmap.fill(Color::WHITE);
    let size = tree.size();
    let transform = Transform::from_scale(width as f32 / size.width(), height as f32 / size.height());
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    // Over opaque white every pixel is opaque, so the premultiplied RGBA is plain RGB.
    let rgb = pixmap.data().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    Ok(Raster::new(width, height, None, Pixels::Rgb(rgb)))
}

fn parse(bytes: &[u8]) -> Result<Tree, String> {
    let options = Options {
        // A reference to a file (`href="/etc/..."`) is never read; inline data: images are.
        image_href_resolver: ImageHrefResolver {
            resolve_data: ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..Options::default()
    };
    Tree::from_data(bytes, &options).map_err(|e| format!("not a readable SVG image: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str = r#"<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="30" height="40" viewBox="0 0 30 40">
  <rect x="0" y="0" width="15" height="40" fill="black"/>
</svg>"#;

    #[test]
    fn a_vector_is_drawn_at_print_size_in_its_own_shape() {
        assert!(looks_like_svg(SQUARE.as_bytes()) && !looks_like_svg(b"<html><body>502</body></html>"));
        let declared = declared_size(SQUARE.as_bytes()).unwrap();
        assert_eq!(declared, (30.0, 40.0));
        let (width, height) = raster_size(declared, (768, 1024));
        assert_eq!((width, height), (2475, 3300));
        let raster = rasterize(SQUARE.as_bytes(), width, height).unwrap();
        let Pixels::Rgb(rgb) = &raster.pixels else { panic!("RGB expected") };
        let at = |x: u32, y: u32| rgb[((y * width + x) * 3) as usize];
        assert_eq!((at(10, 1650), at(2400, 1650)), (0, 255), "left half black, right half white paper");
    }

    #[test]
    fn a_huge_declared_size_stays_within_the_pixel_limit() {
        let (width, height) = raster_size((100_000.0, 100.0), (1024, 1024));
        assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS);
        let (width, height) = raster_size((10.0, 10.0), (8000, 8000));
        assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS && width == height);
    }

    #[test]
    fn references_to_files_are_not_followed_and_junk_is_refused() {
        let sneaky = r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
            width="4" height="4"><image xlink:href="/etc/passwd" width="4" height="4"/></svg>"#;
        let raster = rasterize(sneaky.as_bytes(), 4, 4).unwrap();
        assert!(matches!(&raster.pixels, Pixels::Rgb(rgb) if rgb.iter().all(|&c| c == 255)));
        assert!(declared_size(b"<svg").unwrap_err().contains("not a readable SVG"));
    }
}
