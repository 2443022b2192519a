//! `lineart-check`: judges every page before it is printed. It reads the gray print page (after
//! `upscale`, before `threshold`), thresholds it itself at the same `level` to measure the
//! black-and-white page the book will get, and keeps the gray pixels for what only they show
//! (shading, photo-like tone, faint lines the threshold drops). The page passes on unchanged;
//! the item's metadata gets `quality: {verdict, problems, metrics}`. Its verdict also ranks the
//! page's candidates when `max_rerolls` or `best_of` asks for more than one
//! ([`crate::engine::candidates`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::candidates::CandidatePolicy;
use crate::engine::declared_kind::TypedKind;
use crate::engine::fusion::{SOURCE_SIZE_FACT, Step};
use crate::engine::item::{Item, Judgement};
use crate::engine::media::{Media, Payload, Pixels, Raster};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::quality::bits::InkMap;
use crate::imaging::quality::difficulty::{Audience, Difficulty};
use crate::imaging::quality::likeness::{DEFAULT_MAX_LIKENESS, PageHash};
use crate::imaging::quality::tones::{Blocks, ToneLimits};
use crate::imaging::quality::{InkLimits, Measures, measure_gray, measure_page};
use crate::print::Trim;
use crate::stages::pdf::printed_mm_per_px;
use crate::stages::seen_pages::{SeenPages, Twin, Word};

/// The `lineart-check` kind.
pub struct LineartCheck;

/// A defect the check can find; the names are stable (metadata, `severity`, the pdf sink).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Almost no ink.
    Empty,
    /// Too much ink, or one solid black region too large.
    HeavyInk,
    /// Mid-gray shading that the threshold turns into blobs or noise.
    GrayShading,
    /// Many tiny isolated specks.
    Speckles,
    /// Few enclosed regions for the line drawn: a bucket fill would leak.
    OpenOutlines,
    /// The median stroke is thinner than prints reliably.
    ThinLines,
    /// Much of the line work is too light for the threshold and vanishes.
    InkLost,
    /// Photo-like: continuous tone rather than strokes.
    NotLineArt,
    /// Looks like another page of the book (`duplicate_of` names it).
    NearDuplicate,
    /// Too hard to colour, at its printed size, for the `audience` set.
    NotForAudience,
}

impl Problem {
    /// Every code, in the order they are reported.
    pub const ALL: [Problem; 10] = [
        Problem::Empty,
        Problem::HeavyInk,
        Problem::GrayShading,
        Problem::Speckles,
        Problem::OpenOutlines,
        Problem::ThinLines,
        Problem::InkLost,
        Problem::NotLineArt,
        Problem::NearDuplicate,
        Problem::NotForAudience,
    ];

    /// The code as written in metadata and options.
    pub fn code(self) -> &'static str {
        match self {
            Problem::Empty => "empty",
            Problem::HeavyInk => "heavy_ink",
            Problem::GrayShading => "gray_shading",
            Problem::Speckles => "speckles",
            Problem::OpenOutlines => "open_outlines",
            Problem::ThinLines => "thin_lines",
            Problem::InkLost => "ink_lost",
            Problem::NotLineArt => "not_line_art",
            Problem::NearDuplicate => "near_duplicate",
            Problem::NotForAudience => "not_for_audience",
        }
    }

    /// What a code does to the verdict unless `severity` says otherwise: a page that cannot
    /// be coloured is rejected; defects the cleanup can mend or a reader may accept warn.
    fn default_severity(self) -> Severity {
        match self {
            Problem::Speckles | Problem::OpenOutlines | Problem::ThinLines => Severity::Warn,
            _ => Severity::Reject,
        }
    }
}

/// What a problem does to the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The page is rejected.
    Reject,
    /// The page passes with a warning.
    Warn,
    /// Measured and ignored.
    Ignore,
}

/// The outcome for a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No problem.
    Pass,
    /// Only problems that warn.
    Warn,
    /// At least one problem that rejects.
    Reject,
}

impl Verdict {
    /// The verdict as written in metadata.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Reject => "reject",
        }
    }

    /// The verdict a `lineart-check` recorded on an item, if one ran.
    pub fn of(item: &Item) -> Option<Verdict> {
        match item.facts.get("quality")?.get("verdict")?.as_str()? {
            "pass" => Some(Verdict::Pass),
            "warn" => Some(Verdict::Warn),
            "reject" => Some(Verdict::Reject),
            _ => None,
        }
    }
}

/// Every default, once: the options' serde defaults and their documentation read it.
const D: Options = Options {
    level: 128,
    min_coverage: 0.003,
    max_coverage: 0.35,
    max_solid: 0.05,
    solid_px: 40,
    mid_gray: [40, 200],
    max_shading: 0.05,
    speck_mm: 0.5,
    speck_source_px: 3.0,
    max_specks: 100,
    min_region_px: 400,
    min_regions_per_kpx: 1.1,
    max_open: 0.35,
    min_line_px: 3,
    max_thin: 0.5,
    contrast: 24,
    max_ink_lost: 0.25,
    min_lost: 0.002,
    max_tone: 0.45,
    max_likeness: DEFAULT_MAX_LIKENESS,
    audience: None,
    trim: Trim::LETTER,
    severity: BTreeMap::new(),
    max_rerolls: 0,
    best_of: 1,
};

/// The `lineart-check` options: every limit, and what each problem does.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// The threshold stage's level: the check measures the page that threshold will make.
    level: u8,
    /// empty: less of the page is ink.
    #[schemars(range(min = 0, max = 1))]
    min_coverage: f64,
    /// heavy_ink: more of the page is ink.
    #[schemars(range(min = 0, max = 1))]
    max_coverage: f64,
    /// heavy_ink: one solid black region covers more of the page.
    #[schemars(range(min = 0, max = 1))]
    max_solid: f64,
    /// Ink this thick in every direction (pixels) is a solid region, not a line.
    #[schemars(range(min = 1, max = 64))]
    solid_px: usize,
    /// Gray values counted as mid-gray (shading, tone): [darkest, lightest].
    mid_gray: [u8; 2],
    /// gray_shading: more of the page is in mid-gray areas at least 24 px across.
    #[schemars(range(min = 0, max = 1))]
    max_shading: f64,
    /// An ink piece no bigger than a square this many millimetres wide on the printed page
    /// (from the page's DPI) is a speck (0.5 mm: 6 px at 300 DPI; an eye dot is bigger).
    #[schemars(range(min = 0, max = 10))]
    speck_mm: f64,
    /// ...or no bigger than a square this many pixels wide in the image the page was upscaled
    /// from (the `source_size` the upscale stage records): a model's 1-3 px speck is a dot of
    /// 30-120 px on a page upscaled 3.3 times, bigger than `speck_mm`.
    #[schemars(range(min = 0, max = 64))]
    speck_source_px: f64,
    /// speckles: more specks on the page.
    max_specks: u64,
    /// A white area smaller than this many pixels is not a region to colour.
    min_region_px: u64,
    /// open_outlines: fewer enclosed regions per 1000 px of line drawn...
    #[schemars(range(min = 0))]
    min_regions_per_kpx: f64,
    /// open_outlines: ...and more of the line (crossed along the rows) has the same white area
    /// on both sides: a line that closes nothing.
    #[schemars(range(min = 0, max = 1))]
    max_open: f64,
    /// thin_lines: the median stroke is thinner than this many pixels.
    #[schemars(range(min = 1, max = 64))]
    min_line_px: usize,
    /// thin_lines: more of the line work (by length) is thinner.
    #[schemars(range(min = 0, max = 1))]
    max_thin: f64,
    /// How much darker than the paper around it gray must be to count as line work.
    contrast: u8,
    /// ink_lost: more of the line work is too light for the threshold...
    #[schemars(range(min = 0, max = 1))]
    max_ink_lost: f64,
    /// ...and that light line work is more than a trace: at least this share of the page (a
    /// floor against a stray smudge; the share that counts is `max_ink_lost`, of the line work).
    #[schemars(range(min = 0, max = 1))]
    min_lost: f64,
    /// not_line_art: more of the page is continuous mid-gray tone.
    #[schemars(range(min = 0, max = 1))]
    max_tone: f64,
    /// near_duplicate: the page is at least this alike (0-1: the correlation of two
    /// thumbnails of the drawings, blind to shifts, scale and specks) to another page of the
    /// book, this run's or an earlier one's. Distinct pages stay under 0.9; a redrawn one is
    /// over 0.98.
    #[schemars(range(min = 0, max = 1))]
    max_likeness: f64,
    /// not_for_audience: who the book is for (toddler, kids, teens, adults); a page too hard to
    /// colour for them at its printed size (regions too small or too many, lines too thin) is
    /// flagged. Every page's difficulty is measured either way.
    audience: Option<Audience>,
    /// The book's trim: the page is measured at the size the pdf sink prints it (inside KDP's
    /// margins) for its difficulty.
    trim: Trim,
    /// What each problem does to the verdict, {code: reject|warn|ignore}; unlisted codes keep
    /// theirs: speckles, open_outlines and thin_lines warn, the others reject.
    severity: BTreeMap<Problem, Severity>,
    /// Re-rolls: while a page's best candidate is rejected, generate it again with a new seed,
    /// up to this many times (each paid like the first, inside the batch budget).
    #[schemars(range(max = 20))]
    max_rerolls: u32,
    /// Best of N: make this many candidates of every page (one request with `num_images` on
    /// fal); the best becomes the page, the others go to the disk sink's `candidates/`.
    #[schemars(range(min = 1, max = 8))]
    best_of: u32,
}

impl Default for Options {
    fn default() -> Self {
        D
    }
}

fn parse(options: &Value) -> Result<Options, OptionsError> {
    let o: Options = parse_declared(options)?;
    if o.mid_gray[0] > o.mid_gray[1] {
        return Err(OptionsError::at(
            "mid_gray",
            format!("mid_gray is [darkest, lightest], got [{}, {}]", o.mid_gray[0], o.mid_gray[1]),
        ));
    }
    Ok(o)
}

impl TypedKind for LineartCheck {
    const NAME: &'static str = "lineart-check";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str = "Judges each gray print page (before `threshold`): pass, warn or reject, with problem codes \
                      and metrics in the metadata";
    const ACCEPTS: &'static [Media] = &[Media::Gray];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Gray);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse(options)
    }

    fn build_from(&self, options: Options, ctx: &BuildContext) -> anyhow::Result<Component> {
        let seen = SeenPages::new(&ctx.id, ctx.output_dir.clone());
        Ok(Component::Cpu(Arc::new(CheckStage { o: options, seen })))
    }
}

struct CheckStage {
    o: Options,
    seen: SeenPages,
}

/// What the check found on a page besides its measures.
struct Findings {
    /// The page it repeats.
    twin: Option<Twin>,
    /// Its difficulty at print size.
    difficulty: Difficulty,
}

impl CheckStage {
    /// The largest ink piece, in pixels, that is a speck on this page: a square `speck_mm`
    /// wide at the page's DPI (300 when it has none), or `speck_source_px` source pixels wide
    /// at the page's upscale factor (half a source pixel more, for the soft edge the upscale
    /// gives a dot), whichever is bigger.
    fn speck_area(&self, item: &Item, width: u32, height: u32, dpi: Option<f32>) -> u64 {
        let dpi = f64::from(dpi.unwrap_or(300.0));
        let on_paper = self.o.speck_mm / 25.4 * dpi;
        let upscaled =
            source_scale(item, width, height).map_or(0.0, |scale| (self.o.speck_source_px + 0.5) * scale);
        on_paper.max(upscaled).powi(2).round() as u64
    }

    /// The problems a page's measures show, in code order.
    fn problems(&self, m: &Measures, found_more: &Findings) -> Vec<Problem> {
        let o = &self.o;
        let (ink, tone) = (&m.ink, &m.tone);
        let empty = ink.coverage < o.min_coverage;
        let found = |p: Problem| match p {
            Problem::Empty => empty,
            Problem::HeavyInk => ink.coverage > o.max_coverage || ink.largest_solid > o.max_solid,
            Problem::GrayShading => tone.shading > o.max_shading,
            Problem::Speckles => ink.specks > o.max_specks,
            // Outlines and strokes are only judged where something is drawn.
            Problem::OpenOutlines => {
                !empty && ink.regions_per_kpx() < o.min_regions_per_kpx && ink.open > o.max_open
            }
            Problem::ThinLines => !empty && ink.thin > o.max_thin,
            Problem::InkLost => tone.ink_lost > o.max_ink_lost && tone.faint >= o.min_lost,
            Problem::NotLineArt => tone.tone > o.max_tone,
            Problem::NearDuplicate => found_more.twin.is_some(),
            Problem::NotForAudience => {
                !empty && o.audience.is_some_and(|a| !found_more.difficulty.suits_audience(a))
            }
        };
        Problem::ALL.into_iter().filter(|&p| found(p)).collect()
    }

    fn severity(&self, problem: Problem) -> Severity {
        self.o.severity.get(&problem).copied().unwrap_or_else(|| problem.default_severity())
    }

    /// The `quality` metadata for a page's measures.
    fn judge(&self, m: &Measures, found: &Findings) -> Value {
        let problems: Vec<Problem> =
            self.problems(m, found).into_iter().filter(|&p| self.severity(p) != Severity::Ignore).collect();
        let verdict = problems
            .iter()
            .map(|&p| if self.severity(p) == Severity::Reject { Verdict::Reject } else { Verdict::Warn })
            .max()
            .unwrap_or(Verdict::Pass);
        let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let d = &found.difficulty;
        let mut difficulty = json!({
            "score": d.score,
            "suits": d.suits.name(),
            "smallest_region_mm": round(d.smallest_region_mm),
            "median_region_mm": round(d.median_region_mm),
            "regions": d.regions,
            "line_pt": round(d.line_pt),
        });
        if let Some(audience) = self.o.audience.filter(|_| problems.contains(&Problem::NotForAudience)) {
            difficulty["misses"] = json!(d.misses(audience));
        }
        let mut quality = json!({
            "verdict": verdict.name(),
            "problems": problems.iter().map(|p| p.code()).collect::<Vec<_>>(),
            "metrics": {
                "coverage": round(m.ink.coverage),
                "largest_solid": round(m.ink.largest_solid),
                "specks": m.ink.specks,
                "regions": m.ink.regions,
                "line_px": m.ink.line_px.round(),
                "regions_per_kpx": round(m.ink.regions_per_kpx()),
                "open": round(m.ink.open),
                "thin": round(m.ink.thin),
                "shading": round(m.tone.shading),
                "tone": round(m.tone.tone),
                "paper": round(m.tone.paper),
                "ink_lost": round(m.tone.ink_lost),
                "faint": round(m.tone.faint),
            },
            "difficulty": difficulty,
        });
        if let Some(twin) = found.twin.as_ref().filter(|_| problems.contains(&Problem::NearDuplicate)) {
            quality["duplicate_of"] = json!(twin.key);
            quality["likeness"] = json!(round(twin.likeness));
        }
        quality
    }
}

impl CheckStage {
    /// What the gray measures compare against.
    fn tone(&self) -> ToneLimits {
        let o = &self.o;
        ToneLimits { level: o.level, mid_low: o.mid_gray[0], mid_high: o.mid_gray[1], contrast: o.contrast }
    }

    /// The 1-bit measures' sizes for a page `raster` sized.
    fn ink_limits(&self, item: &Item, raster: &Raster) -> InkLimits {
        InkLimits {
            speck_px: self.speck_area(item, raster.width, raster.height, raster.dpi),
            solid_px: self.o.solid_px,
            min_line_px: self.o.min_line_px,
            min_region_px: self.o.min_region_px,
        }
    }

    /// Records the verdict on the measures of `page` (its size and resolution give the
    /// difficulty at print size), against the book's other pages by `hash` (made only when the
    /// page has ink: a blank page resembles nothing, it is `empty`).
    fn record(&self, item: &mut Item, page: &Raster, measures: &Measures, hash: impl FnOnce() -> PageHash) {
        let o = &self.o;
        let mm_per_px = printed_mm_per_px(o.trim, page.width, page.height, page.dpi);
        let difficulty = Difficulty::of(&measures.ink, mm_per_px);
        let hash = (measures.ink.coverage >= o.min_coverage).then(hash);
        let mut quality = Value::Null;
        self.seen.judge(item, hash, o.max_likeness, |twin| {
            quality = self.judge(measures, &Findings { twin: twin.cloned(), difficulty });
            let judged = judgement(&quality);
            Word {
                acceptable: judged.acceptable,
                score: judged.score,
                difficulty: (difficulty.suits.name(), difficulty.score),
            }
        });
        item.judgement = Some(judgement(&quality));
        item.record("quality", quality);
    }
}

impl CpuStage for CheckStage {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Payload::Image(raster) = &input else {
            return Err(StageError::failed(format!(
                "lineart-check takes a gray image, got {}",
                input.media()
            )));
        };
        let Pixels::Gray(gray) = &raster.pixels else {
            return Err(StageError::failed(format!(
                "lineart-check takes a gray image (put it before threshold), got {}",
                raster.media()
            )));
        };
        let limits = self.ink_limits(item, raster);
        let measures = measure_gray(gray, raster.width, raster.height, self.tone(), limits);
        self.record(item, raster, &measures, || {
            PageHash::of_gray(gray, raster.width as usize, raster.height as usize)
        });
        Ok(input)
    }

    fn candidate_policy(&self) -> Option<CandidatePolicy> {
        Some(CandidatePolicy { best_of: self.o.best_of.max(1), max_rerolls: self.o.max_rerolls })
    }

    /// Fused between `upscale` and a `threshold` at its level, the check judges the page from
    /// the kernel's pass ([`crate::engine::fusion::kernels`]) and the gray page is never made.
    fn step(&self) -> Option<Step> {
        Some(Step::Check { tone: self.tone() })
    }

    fn check_fused(
        &self,
        item: &mut Item,
        page: &Raster,
        blocks: &Blocks,
        source: &Raster,
    ) -> Result<(), StageError> {
        let Pixels::Bilevel(bits) = &page.pixels else {
            return Err(StageError::failed(format!(
                "a fused lineart-check takes the 1-bit page, got {}",
                page.media()
            )));
        };
        let ink = InkMap::from_bilevel(page.width, page.height, bits);
        let measures = measure_page(&ink, blocks, self.tone(), self.ink_limits(item, page));
        // The picture's likeness from the image the page was upscaled from: the hash is a
        // 16x16 thumbnail of the drawing's content box, blind to scale and position, so the
        // source gives the page's hash without the page (see `source_hash_is_the_pages`).
        let Pixels::Gray(gray) = &source.pixels else {
            return Err(StageError::failed(format!(
                "a fused lineart-check takes a gray source, got {}",
                source.media()
            )));
        };
        self.record(item, page, &measures, || {
            PageHash::of_gray(gray, source.width as usize, source.height as usize)
        });
        Ok(())
    }
}

/// How many page pixels one pixel of the image the page was upscaled from became (the smaller
/// of the two axes, as `fit: contain` scales), when the item records that image's size.
fn source_scale(item: &Item, width: u32, height: u32) -> Option<f64> {
    let (source_width, source_height) = item.facts.get(SOURCE_SIZE_FACT)?.as_str()?.split_once('x')?;
    let (source_width, source_height): (f64, f64) = (source_width.parse().ok()?, source_height.parse().ok()?);
    let scale = (f64::from(width) / source_width).min(f64::from(height) / source_height);
    (scale.is_finite() && scale > 1.0).then_some(scale)
}

/// How candidates compare: pass beats warn beats reject, and within a verdict fewer problems win.
fn judgement(quality: &Value) -> Judgement {
    let verdict = quality["verdict"].as_str().unwrap_or_default();
    let rank = match verdict {
        "pass" => 2.0,
        "warn" => 1.0,
        _ => 0.0,
    };
    let problems = quality["problems"].as_array().map_or(0, Vec::len);
    Judgement {
        verdict: verdict.to_owned(),
        acceptable: verdict != Verdict::Reject.name(),
        score: rank + 1.0 / (1.0 + problems as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::stage::Kind;
    use crate::imaging::gray::to_gray;
    use crate::imaging::pattern::{Defect, Family, draw_family, draw_spoiled};
    use crate::imaging::quality::fixtures::{
        H, MODEL_PEN, Pen, SOFT, Sheet, W, faces_page, model_faces_page, upscaled,
    };
    use crate::imaging::resize::{Fit, resize};
    use crate::stages::test_support::build_cpu;

    /// Runs the check with `options` on a gray half letter page; the item's `quality` entry.
    fn check(options: Value, gray: Vec<u8>) -> Value {
        check_page(options, gray, (W, H), None)
    }

    /// Runs the check on a gray page `width` x `height` at 300 DPI, upscaled from an image of
    /// `source` pixels when given (the fact the upscale stage records).
    fn check_page(
        options: Value,
        gray: Vec<u8>,
        (width, height): (usize, usize),
        source: Option<(usize, usize)>,
    ) -> Value {
        let stage = build_cpu(&LineartCheck, options);
        let mut item = Item::new(0, Prompt::default());
        if let Some((w, h)) = source {
            item.record(SOURCE_SIZE_FACT, format!("{w}x{h}"));
        }
        let page = Arc::new(Raster::new(width as u32, height as u32, Some(300.0), Pixels::Gray(gray)));
        let Payload::Image(out) = stage.process(&mut item, Payload::Image(page.clone())).unwrap() else {
            panic!("not an image")
        };
        assert!(Arc::ptr_eq(&out, &page), "the page passes on unchanged, not copied");
        assert_eq!(Verdict::of(&item).map(Verdict::name), item.facts["quality"]["verdict"].as_str());
        item.facts["quality"].clone()
    }

    fn verdict_and_problems(quality: &Value) -> (String, Vec<String>) {
        let problems = quality["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned());
        (quality["verdict"].as_str().unwrap().to_owned(), problems.collect())
    }

    fn judged(gray: Vec<u8>) -> (String, Vec<String>) {
        let quality = check(json!({}), gray);
        verdict_and_problems(&quality)
    }

    #[test]
    fn clean_pages_pass_with_soft_lines_and_eye_dots() {
        for pen in [
            SOFT,
            Pen { width: 6.0, soft: 5.0, ink: 70.0, ..SOFT },
            Pen { width: 16.0, soft: 2.0, ink: 0.0, ..SOFT },
        ] {
            let quality = check(json!({}), faces_page(pen, 1).gray());
            assert_eq!(verdict_and_problems(&quality), ("pass".into(), vec![]), "{quality}");
            let metrics = &quality["metrics"];
            assert!(metrics["regions"].as_u64().unwrap() >= 36, "{metrics}");
            assert_eq!(metrics["specks"], 0, "eye dots are not specks: {metrics}");
        }
    }

    #[test]
    fn each_defect_gets_its_code() {
        let clean = || faces_page(SOFT, 2);
        let mut cases: Vec<(&str, &str, Sheet)> = Vec::new();
        let mut blank = Sheet::new(3);
        blank.specks(3);
        cases.push(("empty", "reject", blank));
        let mut blob = clean();
        blob.disc(640.0, 820.0, 260.0, 20.0);
        cases.push(("heavy_ink", "reject", blob));
        let mut shaded = clean();
        shaded.fill(60, 60, 1215, 500, 120.0);
        cases.push(("gray_shading", "reject", shaded));
        let mut speckled = clean();
        speckled.specks(600);
        cases.push(("speckles", "warn", speckled));
        cases.push(("open_outlines", "warn", faces_page(Pen { gaps: 40.0, ..SOFT }, 2)));
        cases.push(("thin_lines", "warn", faces_page(Pen { width: 2.0, soft: 1.0, ink: 0.0, gaps: 0.0 }, 2)));
        cases.push(("ink_lost", "reject", faces_page(Pen { ink: 195.0, ..SOFT }, 2)));
        let mut photo = Sheet::new(4);
        for (i, p) in photo.px.iter_mut().enumerate() {
            let (x, y) = ((i % W) as f32, (i / W) as f32);
            *p = 125.0 + 60.0 * (x / 97.0).sin() * (y / 131.0).cos() + 20.0 * ((x + y) / 23.0).sin();
        }
        cases.push(("not_line_art", "reject", photo));
        for (code, verdict, sheet) in cases {
            let quality = check(json!({}), sheet.gray());
            let (got, problems) = verdict_and_problems(&quality);
            assert!(problems.iter().any(|p| p == code), "{code}: {quality}");
            assert_eq!(got, verdict, "{code}: {quality}");
        }
    }

    #[test]
    fn light_lines_are_lost_ink_not_an_empty_page_only() {
        let (verdict, problems) = judged(faces_page(Pen { ink: 195.0, ..SOFT }, 5).gray());
        assert_eq!((verdict.as_str(), problems), ("reject", vec!["empty".to_owned(), "ink_lost".to_owned()]));
        let mut blank = Sheet::new(6);
        blank.specks(40);
        let (_, problems) = judged(blank.gray());
        assert_eq!(problems, ["empty"], "specks on a blank page are not lost line work");
    }

    /// The print page of a letter book: what `upscale` makes of a 768x1024 model page.
    const PRINT: (usize, usize) = (2550, 3300);

    /// The check on a model-resolution sheet upscaled to the print page, as the pipeline does.
    fn check_upscaled(sheet: &Sheet) -> Value {
        let gray = upscaled(sheet, PRINT.0 as u32, PRINT.1 as u32);
        check_page(json!({}), gray, PRINT, Some((sheet.width, sheet.height)))
    }

    /// The check on a model-resolution sheet as it is (a page no upscale has touched).
    fn check_at_model_size(sheet: &Sheet) -> Value {
        check_page(json!({}), sheet.gray(), (sheet.width, sheet.height), None)
    }

    #[test]
    fn a_models_specks_are_specks_once_upscaled_and_its_eye_dots_are_not() {
        for seed in [21, 22] {
            let clean = model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, seed);
            let quality = check_upscaled(&clean);
            assert_eq!(verdict_and_problems(&quality), ("pass".into(), vec![]), "{quality}");
            assert_eq!(quality["metrics"]["specks"], 0, "eye dots of 3 model px are no specks: {quality}");

            let mut speckled = model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, seed);
            speckled.specks_sized(300, 1..=3);
            for (at, quality) in
                [("upscaled", check_upscaled(&speckled)), ("model size", check_at_model_size(&speckled))]
            {
                let (_, problems) = verdict_and_problems(&quality);
                assert!(problems.iter().any(|p| p == "speckles"), "{at}: {quality}");
                assert!(quality["metrics"]["specks"].as_u64().unwrap() >= 200, "{at}: {quality}");
            }
        }
        // Judged on paper too: the same 1-3 px specks drawn at print size are specks without
        // any upscale, and a half letter page of soft lines keeps its eye dots.
        let mut native = faces_page(SOFT, 23);
        native.specks_sized(300, 1..=3);
        assert!(verdict_and_problems(&check(json!({}), native.gray())).1.contains(&"speckles".to_owned()));
    }

    #[test]
    fn light_line_art_is_lost_ink_against_the_line_work_whatever_the_page_holds() {
        // Yellow line art (gray 205 once converted) in a black frame: at the threshold only the
        // frame is left. However little of the page the drawing covers, it is lost line work.
        let yellow = Pen { ink: 205.0, ..MODEL_PEN };
        for faces in [3, 6, 12] {
            let sheet = model_faces_page(faces, yellow, 3.0, MODEL_PEN, 30 + faces as u64);
            for (at, quality) in
                [("upscaled", check_upscaled(&sheet)), ("model size", check_at_model_size(&sheet))]
            {
                let (verdict, problems) = verdict_and_problems(&quality);
                assert!(problems.iter().any(|p| p == "ink_lost"), "{faces} faces, {at}: {quality}");
                assert_eq!(verdict, "reject", "{faces} faces, {at}: {quality}");
            }
        }
        // Black line art in the same frame, with as few faces, is clean.
        for faces in [3, 12] {
            let quality = check_upscaled(&model_faces_page(faces, MODEL_PEN, 3.0, MODEL_PEN, 40));
            assert_eq!(verdict_and_problems(&quality), ("pass".into(), vec![]), "{faces}: {quality}");
        }
    }

    #[test]
    fn severity_moves_a_code_between_reject_warn_and_ignore() {
        let mut speckled = faces_page(SOFT, 7);
        speckled.specks(600);
        let gray = speckled.gray();
        let rejecting = check(json!({"severity": {"speckles": "reject"}}), gray.clone());
        assert_eq!(verdict_and_problems(&rejecting), ("reject".into(), vec!["speckles".into()]));
        let ignoring = check(json!({"severity": {"speckles": "ignore"}}), gray.clone());
        assert_eq!(verdict_and_problems(&ignoring), ("pass".into(), vec![]));
        assert!(ignoring["metrics"]["specks"].as_u64().unwrap() >= 500, "still measured");
        let lenient = check(json!({"max_specks": 2000}), gray);
        assert_eq!(verdict_and_problems(&lenient).0, "pass");
    }

    #[test]
    fn options_are_checked_with_their_path() {
        let kind = LineartCheck;
        assert!(kind.check(&json!({})).is_ok());
        assert_eq!(kind.check(&json!({"max_coverage": 35})).unwrap_err().path, ["max_coverage"]);
        assert_eq!(kind.check(&json!({"mid_gray": [200, 40]})).unwrap_err().path, ["mid_gray"]);
        assert_eq!(kind.check(&json!({"severity": {"blurry": "warn"}})).unwrap_err().path, ["severity"]);
        assert_eq!(kind.check(&json!({"severity": {"empty": "maybe"}})).unwrap_err().path, ["severity"]);
        assert_eq!(kind.check(&json!({"min_line_px": 0})).unwrap_err().path, ["min_line_px"]);
        assert!(kind.check(&json!({"levle": 3})).is_err());
        // Every documented option is a real field (a wrong value is refused at its path, not
        // as an unknown field).
        for doc in &kind.info().options {
            let err = kind.check(&json!({ doc.name.clone(): "not a value" })).unwrap_err();
            assert_eq!(err.path.first(), Some(&doc.name), "{}: {err}", doc.name);
        }
    }

    /// A `pattern` page made as a pipeline makes it: drawn, gray, upscaled 3.3x to print size.
    fn pattern_page(family: Family, seed: u64, defect: Option<Defect>) -> Vec<u8> {
        let (w, h) = (386, 500);
        let rgb = match defect {
            Some(defect) => draw_spoiled(family, "a test page", seed, w, h, defect),
            None => draw_family(family, "a test page", seed, w, h),
        };
        let page = resize(&to_gray(&rgb), W as u32, H as u32, Fit::Contain).unwrap();
        let Pixels::Gray(gray) = page.pixels else { panic!("not gray") };
        gray
    }

    #[test]
    fn the_offline_generator_passes_and_its_defects_are_found() {
        for family in Family::ALL {
            for seed in 0..2 {
                let quality = check(json!({}), pattern_page(family, seed, None));
                assert_eq!(
                    verdict_and_problems(&quality),
                    ("pass".into(), vec![]),
                    "{family:?} {seed}: {quality}"
                );
            }
        }
        let expected = [
            (Defect::Speckles, "speckles"),
            (Defect::Shading, "gray_shading"),
            (Defect::Blob, "heavy_ink"),
            (Defect::Gaps, "open_outlines"),
            (Defect::Faint, "ink_lost"),
            (Defect::Blank, "empty"),
            (Defect::Photo, "not_line_art"),
        ];
        for (defect, code) in expected {
            let quality = check(json!({}), pattern_page(Family::Botanical, 1, Some(defect)));
            let (_, problems) = verdict_and_problems(&quality);
            assert!(problems.iter().any(|p| p == code), "{defect:?} should be {code}: {quality}");
        }
    }

    /// Judges `pages` in turn with one stage (one book), as items `p0`, `p1`, ...
    fn check_book(options: Value, pages: Vec<Vec<u8>>) -> Vec<Value> {
        let stage = build_cpu(&LineartCheck, options);
        let mut out = Vec::new();
        for (seq, gray) in pages.into_iter().enumerate() {
            let mut item = Item::with_key(format!("p{seq}"), seq as u64, Prompt::default());
            let page = Arc::new(Raster::new(W as u32, H as u32, Some(300.0), Pixels::Gray(gray)));
            stage.process(&mut item, Payload::Image(page)).unwrap();
            assert_eq!(
                item.judgement.as_ref().map(|j| j.acceptable),
                Some(item.facts["quality"]["verdict"] != "reject")
            );
            out.push(item.facts["quality"].clone());
        }
        out
    }

    #[test]
    fn a_page_drawn_again_is_a_near_duplicate_of_the_first() {
        let first = faces_page(SOFT, 1);
        // The same drawing moved 30 px, on other paper, with specks.
        let mut again = Sheet::new(2);
        for y in 0..H - 30 {
            for x in 0..W - 30 {
                again.px[(y + 30) * W + x + 30] = again.px[(y + 30) * W + x + 30].min(first.px[y * W + x]);
            }
        }
        again.specks(50);
        let other = pattern_page(Family::Mandala, 3, None);
        let qualities = check_book(json!({}), vec![first.gray(), other, again.gray()]);
        assert_eq!(verdict_and_problems(&qualities[0]), ("pass".into(), vec![]), "{}", qualities[0]);
        assert_eq!(
            verdict_and_problems(&qualities[1]),
            ("pass".into(), vec![]),
            "a distinct page: {}",
            qualities[1]
        );
        assert_eq!(verdict_and_problems(&qualities[2]), ("reject".into(), vec!["near_duplicate".into()]));
        assert_eq!(qualities[2]["duplicate_of"], "p0", "{}", qualities[2]);
        assert!(qualities[2]["likeness"].as_f64().unwrap() >= 0.95);
        // The threshold is an option.
        let lenient = check_book(json!({"max_likeness": 0.999}), vec![first.gray(), again.gray()]);
        assert_eq!(verdict_and_problems(&lenient[1]).0, "pass", "{}", lenient[1]);
    }

    #[test]
    fn the_audience_flags_a_page_too_hard_for_it() {
        // Twelve faces with small cheeks and 10 px lines on half a letter page: 36 regions.
        let page = faces_page(SOFT, 1).gray();
        let adults = check_book(json!({"audience": "adults"}), vec![page.clone()]);
        assert_eq!(verdict_and_problems(&adults[0]), ("pass".into(), vec![]), "{}", adults[0]);
        let toddler = check_book(json!({"audience": "toddler"}), vec![page.clone()]);
        assert_eq!(verdict_and_problems(&toddler[0]), ("reject".into(), vec!["not_for_audience".into()]));
        let difficulty = &toddler[0]["difficulty"];
        assert!(!difficulty["misses"].as_array().unwrap().is_empty(), "{difficulty}");
        assert_ne!(difficulty["suits"], "toddler");
        // Without an audience the difficulty is measured and nothing is flagged.
        let measured = check_book(json!({}), vec![page]);
        assert_eq!(
            measured[0]["difficulty"],
            toddler[0]["difficulty"]
                .as_object()
                .map(|d| {
                    let mut d = d.clone();
                    d.remove("misses");
                    Value::Object(d)
                })
                .unwrap()
        );
        assert!(measured[0]["difficulty"]["regions"].as_u64().unwrap() >= 36);
    }

    #[test]
    fn bilevel_input_is_refused_with_a_hint() {
        let stage = build_cpu(&LineartCheck, json!({}));
        let mut item = Item::new(0, Prompt::default());
        let page = Raster::new(8, 1, None, Pixels::Bilevel(vec![0]));
        let err = stage.process(&mut item, Payload::Image(Arc::new(page))).unwrap_err();
        assert!(err.to_string().contains("before threshold"), "{err}");
    }
}
