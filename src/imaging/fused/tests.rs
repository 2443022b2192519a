//! The fused kernel against today's two steps, `threshold(&resize(..), level)`, bit for bit.

use super::*;
use crate::imaging::quality::tones;
use crate::imaging::resize::resize;
use crate::imaging::threshold::threshold;

fn gray(width: u32, height: u32, pixels: Vec<u8>) -> Raster {
    Raster::new(width, height, Some(72.0), Pixels::Gray(pixels))
}

fn bits(raster: &Raster) -> &[u8] {
    match &raster.pixels {
        Pixels::Bilevel(bits) => bits,
        _ => panic!("not bilevel: {:?}", raster.media()),
    }
}

/// Asserts the fused page equals resize-then-threshold, naming the first differing pixel.
fn assert_same(source: &Raster, width: u32, height: u32, fit: Fit, level: u8, what: &str) {
    let want = threshold(&resize(source, width, height, fit).unwrap(), level);
    let got = upscale_threshold(source, width, height, fit, level).unwrap();
    assert_eq!((got.width, got.height, got.dpi), (want.width, want.height, want.dpi));
    if bits(&got) != bits(&want) {
        let stride = Raster::bilevel_stride(width);
        let at = bits(&got).iter().zip(bits(&want)).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{what}: {}x{} -> {width}x{height} {fit:?} level {level}: first difference at row {}, pixels {}..{}",
            source.width,
            source.height,
            at / stride,
            at % stride * 8,
            at % stride * 8 + 8
        );
    }
}

/// Sizes that upscale, shrink, keep one side, and keep both (the library copies then).
const SIZES: [((u32, u32), (u32, u32)); 7] = [
    ((40, 52), (130, 170)),
    ((37, 29), (121, 95)),
    ((64, 48), (200, 150)),
    ((90, 70), (45, 33)),
    ((50, 40), (50, 97)),
    ((33, 44), (80, 44)),
    ((31, 23), (31, 23)),
];

const FITS: [Fit; 3] = [Fit::Contain, Fit::Cover, Fit::Stretch];

/// On noise almost nothing is decided, so this checks the computed pixels. Every level from 0
/// to 255 agreeing means every gray value computed equals the library's.
#[test]
fn random_pages_agree_at_every_level() {
    let mut rng = fastrand::Rng::with_seed(35);
    for ((sw, sh), (w, h)) in SIZES {
        let source = gray(sw, sh, (0..sw * sh).map(|_| rng.u8(..)).collect());
        for fit in FITS {
            for level in 0..=255 {
                assert_same(&source, w, h, fit, level, "noise");
            }
        }
    }
}

#[test]
fn pure_black_and_pure_white_pages_agree() {
    for value in [0u8, 255] {
        let source = gray(192, 256, vec![value; 192 * 256]);
        for fit in FITS {
            for level in [0u8, 1, 127, 128, 254, 255] {
                assert_same(&source, 638, 825, fit, level, "flat");
            }
        }
    }
}

/// White paper with thin lines one step either side of the level and exactly at it, single
/// pixels and two-pixel strokes, across and down and diagonal: the bound's hardest case.
fn thin_lines(width: u32, height: u32, level: u8, rng: &mut fastrand::Rng) -> Raster {
    let (w, h) = (width as usize, height as usize);
    let mut px = vec![255u8; w * h];
    let near = |rng: &mut fastrand::Rng| level.saturating_add_signed(rng.i8(-2..=2));
    for _ in 0..12 {
        let value = near(rng);
        let (x, y, thick) = (rng.usize(..w), rng.usize(..h), rng.usize(1..=2));
        match rng.u8(..3) {
            0 => px[y * w..(y + thick).min(h) * w].fill(value),
            1 => (0..h).for_each(|r| px[r * w + x..r * w + (x + thick).min(w)].fill(value)),
            _ => (0..w.min(h)).for_each(|i| px[i * w + (i + x) % w] = value),
        }
    }
    for _ in 0..40 {
        px[rng.usize(..w * h)] = near(rng);
    }
    gray(width, height, px)
}

#[test]
fn thin_lines_near_the_level_agree() {
    let mut rng = fastrand::Rng::with_seed(7);
    for level in [1u8, 64, 127, 128, 129, 200, 254, 255] {
        for ((sw, sh), (w, h)) in SIZES {
            let source = thin_lines(sw * 2, sh * 2, level, &mut rng);
            for fit in FITS {
                for near in [level.saturating_sub(1), level, level.saturating_add(1)] {
                    assert_same(&source, w * 2, h * 2, fit, near, "thin lines");
                }
            }
        }
    }
}

/// The drawings of the offline `pattern` generator, the pages the books are made of, at
/// print size.
#[test]
fn pattern_pages_at_print_size_agree() {
    for (seed, prompt) in [(1u64, "a mandala"), (2, "a botanical garden"), (3, "geometric tiles")] {
        let page = crate::imaging::gray::to_gray(&crate::imaging::pattern::draw(prompt, seed, 768, 1024));
        for level in [96u8, 128, 160] {
            assert_same(&page, 2550, 3300, Fit::Contain, level, prompt);
        }
        assert_same(&page, 2550, 3300, Fit::Cover, 128, prompt);
    }
}

/// The reference inputs of benches/fixtures (anti-aliased line art, 768x1024).
#[test]
fn reference_inputs_agree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let pages: Vec<_> = names.iter().filter(|p| p.extension().is_some_and(|e| e == "png")).take(4).collect();
    assert!(!pages.is_empty(), "no fixtures in {}", dir.display());
    for path in pages {
        let bytes = std::fs::read(path).unwrap();
        let page = crate::imaging::gray::to_gray(&crate::imaging::decode::decode_rgb(&bytes).unwrap());
        for (level, fit) in [(128u8, Fit::Contain), (200, Fit::Stretch), (40, Fit::Contain)] {
            assert_same(&page, 2550, 3300, fit, level, &path.display().to_string());
        }
    }
}

#[test]
fn only_gray_is_taken() {
    let rgb = Raster::new(2, 2, None, Pixels::Rgb(vec![0; 12]));
    assert!(upscale_threshold(&rgb, 4, 4, Fit::Contain, 128).is_err());
    let one = gray(1, 1, vec![0]);
    assert!(upscale_threshold(&one, 0, 4, Fit::Contain, 128).is_err());
}

/// The quality check's limits, as it is shipped and pushed to the edges (no contrast, a wide
/// and a narrow mid-gray, the level away from 128).
const TONES: [ToneLimits; 4] = [
    ToneLimits { level: 128, mid_low: 40, mid_high: 200, contrast: 24 },
    ToneLimits { level: 160, mid_low: 60, mid_high: 180, contrast: 10 },
    ToneLimits { level: 100, mid_low: 30, mid_high: 230, contrast: 40 },
    ToneLimits { level: 128, mid_low: 120, mid_high: 130, contrast: 0 },
];

/// Asserts that the pass's blocks measure as the resized page's own blocks do, for every
/// limits in `tones` (one level), and that its bits are still the two steps' bits.
fn assert_same_measures(
    source: &Raster,
    (width, height): (u32, u32),
    fit: Fit,
    tones: &[ToneLimits],
    what: &str,
) {
    let resized = resize(source, width, height, fit).unwrap();
    let Pixels::Gray(gray) = &resized.pixels else { panic!("not gray") };
    let want = Blocks::of(gray, width as usize, height as usize);
    let (page, blocks) = upscale_threshold_blocks(source, width, height, fit, tones).unwrap();
    assert!(bits(&page) == bits(&threshold(&resized, tones[0].level)), "{what}: the bits differ");
    assert_eq!(blocks.len(), tones.len());
    for (tone, got) in tones.iter().zip(&blocks) {
        assert_eq!((got.cols, got.rows), (want.cols, want.rows));
        let (got, want) = (tones::measure(got, *tone), tones::measure(&want, *tone));
        assert_eq!(
            got, want,
            "{what}: {}x{} -> {width}x{height} {fit:?} {tone:?}",
            source.width, source.height
        );
    }
}

#[test]
fn blocks_of_noise_and_thin_lines_measure_as_the_page() {
    let mut rng = fastrand::Rng::with_seed(36);
    for ((sw, sh), (w, h)) in SIZES {
        let noise = gray(sw, sh, (0..sw * sh).map(|_| rng.u8(..)).collect());
        for fit in FITS {
            for tone in TONES {
                assert_same_measures(&noise, (w, h), fit, &[tone], "noise");
            }
            for tone in TONES {
                let lines = thin_lines(sw * 2, sh * 2, tone.level, &mut rng);
                assert_same_measures(&lines, (w * 2, h * 2), fit, &[tone], "thin lines");
            }
        }
    }
}

/// The check's own fixtures at the model's resolution, upscaled to the print page: clean
/// faces, specks, light (yellow) line art in a black frame, shading and a photo.
#[test]
fn blocks_of_the_checks_fixtures_measure_as_the_page() {
    use crate::imaging::quality::fixtures::{MODEL_H, MODEL_PEN, MODEL_W, Pen, Sheet, model_faces_page};
    let mut sheets = vec![
        ("clean", model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 21)),
        ("yellow", model_faces_page(6, Pen { ink: 205.0, ..MODEL_PEN }, 3.0, MODEL_PEN, 36)),
        ("light gray", model_faces_page(12, Pen { ink: 150.0, ..MODEL_PEN }, 3.0, MODEL_PEN, 37)),
    ];
    let mut speckled = model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 22);
    speckled.specks_sized(300, 1..=3);
    sheets.push(("speckled", speckled));
    let mut shaded = model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 23);
    shaded.fill(40, 40, 700, 300, 120.0);
    sheets.push(("shaded", shaded));
    let mut photo = Sheet::sized(MODEL_W, MODEL_H, 4);
    for (i, p) in photo.px.iter_mut().enumerate() {
        let (x, y) = ((i % MODEL_W) as f32, (i / MODEL_W) as f32);
        *p = 125.0 + 60.0 * (x / 37.0).sin() * (y / 51.0).cos() + 20.0 * ((x + y) / 9.0).sin();
    }
    sheets.push(("photo", photo));
    for (what, sheet) in sheets {
        let source = gray(MODEL_W as u32, MODEL_H as u32, sheet.gray());
        assert_same_measures(&source, (2550, 3300), Fit::Contain, &TONES[..1], what);
        assert_same_measures(&source, (1275, 1650), Fit::Cover, &[TONES[0], TONES[3]], what);
    }
}

/// The reference inputs and the offline generator's pages, at print size.
#[test]
fn blocks_of_reference_and_pattern_pages_measure_as_the_page() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "png")).take(2) {
        let bytes = std::fs::read(path).unwrap();
        let page = crate::imaging::gray::to_gray(&crate::imaging::decode::decode_rgb(&bytes).unwrap());
        assert_same_measures(&page, (2550, 3300), Fit::Contain, &TONES[..1], &path.display().to_string());
        assert_same_measures(&page, (2550, 3300), Fit::Stretch, &TONES[1..2], &path.display().to_string());
    }
    for (seed, prompt) in [(1u64, "a mandala"), (2, "a botanical garden")] {
        let page = crate::imaging::gray::to_gray(&crate::imaging::pattern::draw(prompt, seed, 768, 1024));
        assert_same_measures(&page, (2550, 3300), Fit::Contain, &TONES[..1], prompt);
    }
}
