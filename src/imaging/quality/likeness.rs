//! A perceptual hash of a page, to find pages that show the same picture: models drift into the
//! same composition, and buyers (and KDP's reviewers) notice a book that repeats itself.
//!
//! The hash is a small thumbnail of the drawing's content box. The page's ink (gray darker than
//! [`INK_BELOW`], so paper grain and tint count for nothing) is summed into a [`GRID`]x[`GRID`]
//! grid in one pass over the pixels, cropped to where the ink is (from the 1st to the 99th
//! percentile of the ink along each axis, so a stray speck does not move the box) and averaged
//! down to [`SIDE`]x[`SIDE`] cells, one byte each. Cropping makes it blind to where the
//! drawing sits and how big it is (a shifted or rescaled page hashes alike); the coarse cells
//! make it blind to noise, specks and small changes of line. Two pages are compared by the
//! correlation of their thumbnails: 1 for the same picture, about 0 for unrelated ones. A bit
//! hash (pHash, dHash) was tried first: line art is often symmetric, which leaves many of its
//! frequencies near zero, and their signs flip with the slightest shift.

/// Gray darker than this is ink.
const INK_BELOW: u8 = 200;
/// Cells per side of the grid the page is summed into: 20 px cells on a letter page at 300 DPI.
const GRID: usize = 128;
/// Cells per side of the thumbnail.
const SIDE: usize = 16;
/// The share of the ink left outside the content box on each side.
const CROP_TAIL: f64 = 0.01;

/// The likeness from which a page is a near-duplicate of another: the offline generator's
/// distinct sample pages reach 0.89 at most, and a page redrawn shifted, rescaled and
/// speckled stays above 0.98.
pub const DEFAULT_MAX_LIKENESS: f64 = 0.95;

/// A page's thumbnail hash: [`SIDE`]x[`SIDE`] cells of ink, 255 for the inkiest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageHash(Vec<u8>);

impl PageHash {
    /// The hash of a gray page `width` x `height` (row-major, 0 black, 255 white).
    pub fn of_gray(gray: &[u8], width: usize, height: usize) -> PageHash {
        let grid = ink_grid(gray, width, height);
        let columns: Vec<f64> = (0..GRID).map(|x| (0..GRID).map(|y| grid[y * GRID + x]).sum()).collect();
        let rows: Vec<f64> = (0..GRID).map(|y| grid[y * GRID..(y + 1) * GRID].iter().sum()).collect();
        let across = resampling(content_span(&columns));
        let down = resampling(content_span(&rows));
        let mut cells = vec![0.0f64; SIDE * SIDE];
        for (j, down) in down.iter().enumerate() {
            for &(y, wy) in down {
                for (i, across) in across.iter().enumerate() {
                    cells[j * SIDE + i] +=
                        across.iter().map(|&(x, wx)| wx * wy * grid[y * GRID + x]).sum::<f64>();
                }
            }
        }
        let top = cells.iter().copied().fold(0.0, f64::max);
        let scale = if top > 0.0 { 255.0 / top } else { 0.0 };
        PageHash(cells.iter().map(|&c| (c * scale).round() as u8).collect())
    }

    /// How alike two pages are: the correlation of their thumbnails, from -1 to 1 (1 for the
    /// same picture; 0 when either is blank, which resembles nothing).
    pub fn likeness(&self, other: &PageHash) -> f64 {
        let n = self.0.len().min(other.0.len()) as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let (ma, mb) = (mean(&self.0), mean(&other.0));
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (&a, &b) in self.0.iter().zip(&other.0) {
            let (a, b) = (f64::from(a) - ma, f64::from(b) - mb);
            ab += a * b;
            aa += a * a;
            bb += b * b;
        }
        if aa <= 0.0 || bb <= 0.0 { 0.0 } else { ab / (aa * bb).sqrt() }
    }

    /// The hash as hex digits, as the journal keeps it.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// A hash written by [`PageHash::to_hex`].
    pub fn from_hex(text: &str) -> Option<PageHash> {
        hex::decode(text).ok().filter(|b| b.len() == SIDE * SIDE).map(PageHash)
    }
}

/// The page's ink summed per cell of the grid, as a mean per pixel: one pass over the rows.
fn ink_grid(gray: &[u8], width: usize, height: usize) -> Vec<f64> {
    let mut sums = vec![0u64; GRID * GRID];
    let mut counts = vec![0u64; GRID * GRID];
    if width > 0 && height > 0 {
        let column_cell: Vec<usize> = (0..width).map(|x| x * GRID / width).collect();
        let mut row_sums = [0u64; GRID];
        for (y, row) in gray.chunks_exact(width).take(height).enumerate() {
            row_sums.fill(0);
            for (&value, &cell) in row.iter().zip(&column_cell) {
                row_sums[cell] += u64::from(INK_BELOW.saturating_sub(value));
            }
            let cy = y * GRID / height;
            for (cx, &sum) in row_sums.iter().enumerate() {
                sums[cy * GRID + cx] += sum;
            }
            for &cell in &column_cell {
                counts[cy * GRID + cell] += 1;
            }
        }
    }
    sums.iter().zip(&counts).map(|(&s, &c)| if c == 0 { 0.0 } else { s as f64 / c as f64 }).collect()
}

/// The span (in fractional cells) holding all but [`CROP_TAIL`] of the ink on each side; the
/// whole axis when there is no ink.
fn content_span(profile: &[f64]) -> (f64, f64) {
    let total: f64 = profile.iter().sum();
    if total <= 0.0 {
        return (0.0, profile.len() as f64);
    }
    let tail = total * CROP_TAIL;
    let edge = |values: &mut dyn Iterator<Item = (usize, f64)>| {
        let mut seen = 0.0;
        for (i, v) in values {
            if seen + v >= tail {
                // The part of this cell still inside the tail.
                return (i, if v > 0.0 { (tail - seen) / v } else { 0.0 });
            }
            seen += v;
        }
        (0, 0.0)
    };
    let (first, into_first) = edge(&mut profile.iter().copied().enumerate());
    let (last, into_last) = edge(&mut profile.iter().copied().enumerate().rev());
    let (start, end) = (first as f64 + into_first, last as f64 + 1.0 - into_last);
    if end - start < 1.0 { (start, start + 1.0) } else { (start, end) }
}

/// For each of the [`SIDE`] thumbnail cells along an axis, the grid cells it covers within
/// `span` and the share of each it covers (an area average).
fn resampling((start, end): (f64, f64)) -> Vec<Vec<(usize, f64)>> {
    let step = (end - start) / SIDE as f64;
    (0..SIDE)
        .map(|k| {
            let (from, to) = (start + k as f64 * step, start + (k + 1) as f64 * step);
            let first = from.floor().max(0.0) as usize;
            let last = (to.ceil() as usize).min(GRID);
            (first..last)
                .map(|cell| (cell, (to.min(cell as f64 + 1.0) - from.max(cell as f64)).max(0.0)))
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::Pixels;
    use crate::imaging::quality::fixtures::{H, SOFT, Sheet, W, faces_page, unframed_faces_page};

    fn hash(sheet: &Sheet) -> PageHash {
        PageHash::of_gray(&sheet.gray(), sheet.width, sheet.height)
    }

    /// `sheet` moved by (dx, dy) pixels and scaled by `scale` about the page's centre, on new
    /// paper (its own grain).
    fn moved(sheet: &Sheet, dx: f32, dy: f32, scale: f32, seed: u64) -> Sheet {
        let mut out = Sheet::new(seed);
        let (cx, cy) = (W as f32 / 2.0, H as f32 / 2.0);
        for y in 0..H {
            for x in 0..W {
                let sx = (x as f32 - cx - dx) / scale + cx;
                let sy = (y as f32 - cy - dy) / scale + cy;
                if sx >= 0.0 && sy >= 0.0 && (sx as usize) < W && (sy as usize) < H {
                    let v = sheet.px[sy as usize * W + sx as usize];
                    out.px[y * W + x] = out.px[y * W + x].min(v);
                }
            }
        }
        out
    }

    #[test]
    fn a_page_moved_rescaled_or_speckled_hashes_alike() {
        let page = unframed_faces_page(SOFT, 1);
        let original = hash(&page);
        assert_eq!(original, hash(&unframed_faces_page(SOFT, 1)), "the same page, the same hash");
        for (dx, dy, scale) in [(40.0, -30.0, 1.0), (0.0, 0.0, 0.9), (-60.0, 25.0, 0.85), (15.0, 10.0, 1.1)] {
            let mut copy = moved(&page, dx, dy, scale, 9);
            copy.specks(200);
            let likeness = original.likeness(&hash(&copy));
            assert!(likeness >= DEFAULT_MAX_LIKENESS + 0.03, "moved {dx},{dy} scaled {scale}: {likeness}");
        }
    }

    /// A fused chain hashes the image the page is upscaled from (it never makes the gray page):
    /// the model-sized drawing and its print page, fitted or stretched, hash as the same
    /// picture, far above the near-duplicate line.
    #[test]
    fn source_hash_is_the_pages() {
        use crate::imaging::quality::fixtures::{MODEL_H, MODEL_PEN, MODEL_W, model_faces_page};
        use crate::imaging::resize::{Fit, resize};
        let pages = [
            model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 21),
            model_faces_page(5, MODEL_PEN, 3.0, MODEL_PEN, 7),
        ];
        for sheet in pages {
            let source = crate::engine::media::Raster::new(
                MODEL_W as u32,
                MODEL_H as u32,
                None,
                Pixels::Gray(sheet.gray()),
            );
            let Pixels::Gray(gray) = &source.pixels else { unreachable!() };
            let of_source = PageHash::of_gray(gray, MODEL_W, MODEL_H);
            for fit in [Fit::Contain, Fit::Stretch] {
                let page = resize(&source, 2550, 3300, fit).unwrap();
                let Pixels::Gray(big) = &page.pixels else { unreachable!() };
                let likeness = of_source.likeness(&PageHash::of_gray(big, 2550, 3300));
                assert!(likeness >= 0.99, "{fit:?}: {likeness}");
            }
        }
    }

    #[test]
    fn different_drawings_are_unalike() {
        let faces = hash(&faces_page(SOFT, 1));
        let mut rings = Sheet::new(2);
        for k in 0..6 {
            rings.ring(W as f32 / 2.0, H as f32 / 2.0, 80.0 + 90.0 * k as f32, SOFT);
        }
        let mut grid = Sheet::new(3);
        for k in 0..8 {
            let at = 100.0 + 140.0 * k as f32;
            grid.line((at, 60.0), (at, H as f32 - 60.0), SOFT);
            grid.line((60.0, at * 1.3), (W as f32 - 60.0, at * 1.3), SOFT);
        }
        let (rings, grid) = (hash(&rings), hash(&grid));
        for (a, b) in [(&faces, &rings), (&faces, &grid), (&rings, &grid)] {
            assert!(a.likeness(b) < 0.5, "{}", a.likeness(b));
        }
    }

    /// A gray page as the offline generator draws `prompt` (768x1024), and as ink at a quarter
    /// of that size (a pixel is ink when any of its 4x4 block is).
    fn sample_page(prompt: &str) -> (Vec<u8>, Vec<bool>) {
        let rgb = crate::imaging::pattern::draw(prompt, 7, 768, 1024);
        let Pixels::Gray(gray) = crate::imaging::gray::to_gray(&rgb).pixels else { panic!("not gray") };
        let ink = (0..256 * 192)
            .map(|i| {
                let (bx, by) = (i % 192 * 4, i / 192 * 4);
                (0..16).any(|k| gray[(by + k / 4) * 768 + bx + k % 4] < 128)
            })
            .collect();
        (gray, ink)
    }

    #[test]
    fn the_sample_pages_are_unalike_but_where_the_generator_drew_the_same_picture() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pipelines/prompts/sample_image_prompts.json"
        ))
        .unwrap();
        let prompts: serde_json::Value = serde_json::from_str(&text).unwrap();
        let pages: Vec<(PageHash, Vec<bool>)> = prompts["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let (gray, ink) = sample_page(p["image_prompt"].as_str().unwrap());
                (PageHash::of_gray(&gray, 768, 1024), ink)
            })
            .collect();
        assert_eq!(pages.len(), 32);
        let (mut alike, mut closest_distinct) = (0, 0.0f64);
        for (i, (a, ink_a)) in pages.iter().enumerate() {
            for (b, ink_b) in &pages[..i] {
                // The same picture: half the ink lies on the other's (different drawings
                // overlap by 0.47 at most; the generator's twin tilings by 0.52 to 0.99).
                let both = ink_a.iter().zip(ink_b).filter(|(x, y)| **x && **y).count();
                let either = ink_a.iter().zip(ink_b).filter(|(x, y)| **x || **y).count();
                let same_picture = both as f64 >= 0.5 * either as f64;
                let likeness = a.likeness(b);
                if same_picture {
                    alike += 1;
                    assert!(likeness >= DEFAULT_MAX_LIKENESS, "the same picture: {likeness}");
                } else {
                    closest_distinct = closest_distinct.max(likeness);
                }
            }
        }
        assert!(
            closest_distinct < DEFAULT_MAX_LIKENESS - 0.03,
            "distinct pages too alike: {closest_distinct}"
        );
        assert!(alike <= 4, "the generator repeats a few tilings, not more: {alike}");
        // The reference line art (a model's kind of page) is unlike every sample page.
        for name in ["page_000.png", "page_002.png"] {
            let bytes =
                std::fs::read(format!("{}/benches/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let rgb = crate::imaging::decode::decode_rgb(&bytes).unwrap();
            let Pixels::Gray(gray) = crate::imaging::gray::to_gray(&rgb).pixels else { panic!("not gray") };
            let reference = PageHash::of_gray(&gray, rgb.width as usize, rgb.height as usize);
            for (page, _) in &pages {
                assert!(reference.likeness(page) < DEFAULT_MAX_LIKENESS - 0.03, "{name}");
            }
        }
    }

    #[test]
    fn hex_round_trips_and_a_blank_page_resembles_nothing() {
        let h = hash(&faces_page(SOFT, 4));
        assert_eq!(PageHash::from_hex(&h.to_hex()), Some(h.clone()));
        assert_eq!(PageHash::from_hex("not hex"), None);
        assert_eq!(PageHash::from_hex("00ff"), None, "a hash of another size");
        let blank = PageHash::of_gray(&vec![250u8; 64 * 80], 64, 80);
        assert_eq!(blank.likeness(&blank), 0.0);
        assert_eq!(blank.likeness(&h), 0.0);
    }
}
