//! The embedded offline generator: deterministic coloring-book line art (mandalas, geometric
//! tilings, botanical scenes) so a whole pipeline runs without an API key, in tests and in
//! benchmarks.
//!
//! Everything is drawn with one primitive, an anti-aliased stroke along a polyline (the union
//! of round-capped segments, so joins are clean), plus "erase the inside of a closed shape".
//! Drawing shapes back to front with erase-then-stroke hides what lies beneath, the way an
//! illustrator overlaps petals, and keeps every region closed: every stroke is either a closed
//! curve or a line whose ends lie on other strokes.

mod botanical;
mod canvas;
mod geometric;
mod mandala;
mod page;
mod shapes;

use self::page::Page;
use crate::engine::media::Raster;

/// A family of drawings the generator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Concentric rings of petals, beads and scallops around a centre, with corner fans.
    Mandala,
    /// Tilings: Truchet arcs, the flower of life, spiralling squares.
    Geometric,
    /// Overlapping flowers and leaves with small buds and berries in the gaps.
    Botanical,
}

impl Family {
    /// Every family, in the order a prompt hash picks from.
    pub const ALL: [Family; 3] = [Family::Mandala, Family::Geometric, Family::Botanical];

    /// The family's name, as the `style` option spells it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Mandala => "mandala",
            Family::Geometric => "geometric",
            Family::Botanical => "botanical",
        }
    }

    /// The family whose word comes first in the prompt, if any word hints at one.
    pub fn hinted_by(prompt: &str) -> Option<Family> {
        const BOTANICAL: &[&str] = &[
            "flower",
            "flowers",
            "floral",
            "leaf",
            "leaves",
            "garden",
            "gardens",
            "plant",
            "plants",
            "rose",
            "roses",
            "tulip",
            "tulips",
            "daisy",
            "daisies",
            "sunflower",
            "sunflowers",
            "blossom",
            "blossoms",
            "bloom",
            "blooms",
            "botanical",
            "tree",
            "trees",
            "vine",
            "vines",
            "fern",
            "ferns",
            "bouquet",
            "petal",
            "petals",
            "lotus",
            "forest",
            "meadow",
            "wreath",
        ];
        const MANDALA: &[&str] = &[
            "mandala",
            "mandalas",
            "kaleidoscope",
            "radial",
            "zen",
            "meditation",
            "snowflake",
            "rosette",
            "sun",
        ];
        const GEOMETRIC: &[&str] = &[
            "geometric",
            "geometry",
            "tile",
            "tiles",
            "tiled",
            "hexagon",
            "hexagons",
            "triangle",
            "triangles",
            "square",
            "squares",
            "mosaic",
            "grid",
            "maze",
            "quilt",
            "abstract",
            "tessellation",
            "pattern",
            "patterns",
            "stained",
        ];
        prompt.split(|c: char| !c.is_alphanumeric()).find_map(|word| {
            let word = word.to_lowercase();
            let word = word.as_str();
            if BOTANICAL.contains(&word) {
                Some(Family::Botanical)
            } else if MANDALA.contains(&word) {
                Some(Family::Mandala)
            } else if GEOMETRIC.contains(&word) {
                Some(Family::Geometric)
            } else {
                None
            }
        })
    }
}

/// The family a prompt gets: the one its words hint at, else one picked by its hash.
pub fn family_for(prompt: &str, seed: u64) -> Family {
    Family::hinted_by(prompt).unwrap_or(Family::ALL[(mix(prompt, seed) % 3) as usize])
}

/// Draws a coloring page for `prompt`: the same prompt and seed always give the same pixels.
pub fn draw(prompt: &str, seed: u64, width: u32, height: u32) -> Raster {
    draw_family(family_for(prompt, seed), prompt, seed, width, height)
}

/// Draws a page of the given family, seeded by the prompt and seed.
pub fn draw_family(family: Family, prompt: &str, seed: u64, width: u32, height: u32) -> Raster {
    drawn(family, prompt, seed, width, height).canvas.into_raster()
}

/// The finished drawing, before it becomes pixels.
fn drawn(family: Family, prompt: &str, seed: u64, width: u32, height: u32) -> Page {
    let mut page = Page::new(width, height, mix(prompt, seed));
    match family {
        Family::Mandala => page.mandala(),
        Family::Geometric => page.geometric(),
        Family::Botanical => page.botanical(),
    }
    page
}

/// A defect [`draw_spoiled`] gives a page, the kinds a model's bad output has, so the offline book
/// shows what `lineart-check` finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Defect {
    /// Many one-pixel specks of ink.
    Speckles,
    /// Large discs of soft gray shading.
    Shading,
    /// A large solid black blob.
    Blob,
    /// Thin white cuts across the whole page, so no outline is closed.
    Gaps,
    /// Every line drawn light gray, lighter than the threshold.
    Faint,
    /// Nothing drawn.
    Blank,
    /// Continuous tone all over, like a photo.
    Photo,
}

impl Defect {
    /// Every defect, in the order a hash picks from.
    pub const ALL: [Defect; 7] = [
        Defect::Speckles,
        Defect::Shading,
        Defect::Blob,
        Defect::Gaps,
        Defect::Faint,
        Defect::Blank,
        Defect::Photo,
    ];

    /// The defect's name, for the item's metadata.
    pub fn name(self) -> &'static str {
        match self {
            Defect::Speckles => "speckles",
            Defect::Shading => "shading",
            Defect::Blob => "blob",
            Defect::Gaps => "gaps",
            Defect::Faint => "faint",
            Defect::Blank => "blank",
            Defect::Photo => "photo",
        }
    }

    /// The defect, if any, that a page of `prompt` and `seed` gets when a `share` (0 to 1) of
    /// pages is spoiled: the same page always, another one with another seed.
    pub fn pick(prompt: &str, seed: u64, share: f64) -> Option<Defect> {
        let h = mix(prompt, seed ^ 0x0defec7);
        let roll = (h >> 11) as f64 / (1u64 << 53) as f64;
        (roll < share).then(|| Defect::ALL[(h % Defect::ALL.len() as u64) as usize])
    }
}

/// Draws a page as [`draw_family`] does, then spoils it with `defect`.
pub fn draw_spoiled(
    family: Family,
    prompt: &str,
    seed: u64,
    width: u32,
    height: u32,
    defect: Defect,
) -> Raster {
    let mut page = drawn(family, prompt, seed, width, height);
    page.spoil(defect);
    page.canvas.into_raster()
}

/// A stable 64-bit hash of prompt and seed (FNV-1a, then a SplitMix64 finaliser), so pages do
/// not change between Rust versions the way `DefaultHasher` may.
fn mix(prompt: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prompt.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::Pixels;

    const W: u32 = 384;
    const H: u32 = 512;

    fn gray(raster: &Raster) -> Vec<u8> {
        match &raster.pixels {
            Pixels::Rgb(rgb) => rgb.chunks_exact(3).map(|p| p[0]).collect(),
            _ => panic!("the generator draws RGB"),
        }
    }

    /// The white pixels (lighter than mid-gray) 4-connected to `start`, as a mask.
    fn flood(pixels: &[u8], start: (usize, usize)) -> Vec<bool> {
        let (w, h) = (W as usize, H as usize);
        let mut seen = vec![false; w * h];
        let mut stack = vec![start];
        while let Some((x, y)) = stack.pop() {
            let i = y * w + x;
            if seen[i] || pixels[i] < 128 {
                continue;
            }
            seen[i] = true;
            if x > 0 {
                stack.push((x - 1, y));
            }
            if x + 1 < w {
                stack.push((x + 1, y));
            }
            if y > 0 {
                stack.push((x, y - 1));
            }
            if y + 1 < h {
                stack.push((x, y + 1));
            }
        }
        seen
    }

    /// How many separate white regions a page has: the areas a child colours in.
    fn regions(pixels: &[u8]) -> usize {
        let mut painted = vec![false; pixels.len()];
        let mut count = 0;
        for i in 0..pixels.len() {
            if !painted[i] && pixels[i] >= 128 {
                count += 1;
                for (p, reached) in painted.iter_mut().zip(flood(pixels, (i % W as usize, i / W as usize))) {
                    *p |= reached;
                }
            }
        }
        count
    }

    #[test]
    fn the_same_prompt_and_seed_give_the_same_pixels() {
        for family in Family::ALL {
            let a = draw_family(family, "a fox in the woods", 3, W, H);
            let b = draw_family(family, "a fox in the woods", 3, W, H);
            assert!(a == b, "{family:?} is not deterministic");
            assert!(a != draw_family(family, "a fox in the woods", 4, W, H), "{family:?} ignores the seed");
            assert!(a != draw_family(family, "a fox in the snow", 3, W, H), "{family:?} ignores the prompt");
        }
    }

    #[test]
    fn pages_are_anti_aliased_black_lines_on_white() {
        for family in Family::ALL {
            let page = draw_family(family, "line art", 1, W, H);
            assert_eq!((page.width, page.height), (W, H));
            let pixels = gray(&page);
            let black = pixels.iter().filter(|&&v| v == 0).count();
            let white = pixels.iter().filter(|&&v| v == 255).count();
            let edges = pixels.len() - black - white;
            assert!(white > pixels.len() / 2, "{family:?}: mostly white paper, got {white} white pixels");
            assert!(black > pixels.len() / 50, "{family:?}: solid black strokes, got {black}");
            assert!(edges > black / 10, "{family:?}: anti-aliased edges, got {edges} gray pixels");
        }
    }

    #[test]
    fn every_region_is_closed_inside_the_frame() {
        let (w, h) = (W as usize, H as usize);
        for family in Family::ALL {
            for seed in 0..4 {
                let pixels = gray(&draw_family(family, "closed", seed, W, H));
                // The paper outside the frame, up to the frame along the middle row and column.
                let outside = flood(&pixels, (0, 0));
                let left = (0..w).find(|&x| !outside[h / 2 * w + x]).unwrap_or(w);
                let right = (0..w).rev().find(|&x| !outside[h / 2 * w + x]).unwrap_or(0);
                let top = (0..h).find(|&y| !outside[y * w + w / 2]).unwrap_or(h);
                let bottom = (0..h).rev().find(|&y| !outside[y * w + w / 2]).unwrap_or(0);
                assert!(
                    (right - left) * (bottom - top) > w * h / 2,
                    "{family:?} seed {seed}: the frame encloses too little"
                );
                // Nothing inside that rectangle (but its round-joined corners) may be reached from
                // the outside: the frame is closed.
                let corner = 4;
                let leak = (top + corner..=bottom - corner)
                    .flat_map(|y| (left + corner..=right - corner).map(move |x| (x, y)))
                    .find(|&(x, y)| outside[y * w + x]);
                assert_eq!(leak, None, "{family:?} seed {seed}: the frame is open");
                let count = regions(&pixels);
                assert!(count >= 25, "{family:?} seed {seed}: only {count} regions to colour");
            }
        }
    }

    #[test]
    fn a_mandala_centre_is_enclosed() {
        for seed in 0..4 {
            let pixels = gray(&draw_family(Family::Mandala, "mandala", seed, W, H));
            let (cx, cy) = (W as usize / 2, H as usize / 2);
            // The nearest white pixel to the centre, walking right.
            let start = (cx..W as usize)
                .find(|&x| pixels[cy * W as usize + x] >= 128)
                .expect("white near the centre");
            let region = flood(&pixels, (start, cy));
            let reach = region
                .iter()
                .enumerate()
                .filter(|(_, r)| **r)
                .map(|(i, _)| ((i % W as usize).abs_diff(cx)).max((i / W as usize).abs_diff(cy)))
                .max()
                .unwrap_or(0);
            assert!(reach < W as usize / 4, "seed {seed}: the centre region spreads {reach} px");
        }
    }

    #[test]
    fn any_allowed_size_draws() {
        for family in Family::ALL {
            for (w, h) in [(64, 64), (300, 64), (64, 300)] {
                let page = draw_family(family, "tiny", 0, w, h);
                assert_eq!((page.width, page.height, gray(&page).len()), (w, h, (w * h) as usize));
            }
        }
    }

    #[test]
    fn words_in_the_prompt_pick_the_family() {
        assert_eq!(family_for("A garden of roses", 0), Family::Botanical);
        assert_eq!(family_for("Sunflowers by the fence", 9), Family::Botanical);
        assert_eq!(family_for("a MANDALA with stars", 0), Family::Mandala);
        assert_eq!(family_for("hexagon tiles", 0), Family::Geometric);
        assert_eq!(Family::hinted_by("a fire truck"), None);
        let picked: std::collections::HashSet<Family> =
            (0..30).map(|seed| family_for("a fire truck", seed)).collect();
        assert_eq!(picked.len(), 3, "unhinted prompts spread over every family");
    }
}
