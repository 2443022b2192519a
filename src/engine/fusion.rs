//! Operator fusion: a run of CPU work linked one to one becomes one CPU job per item.
//!
//! When stage B reads only A and nothing else reads A, a channel between them buys nothing:
//! every item goes from A to B anyway. What it costs is memory, because a finished output waits
//! in the channel (or for a pool thread) while new items start. Fused, an item goes through A
//! and B in one job on one pool thread, and A's output is dropped as soon as B is done with
//! it: `upscale -> threshold` never holds more 8.4 MB gray pages than the chain has items in
//! progress, whatever the batch size. A source's load (reading and decoding a file) is CPU
//! work too: fused, a decoded input exists only inside the job that shrinks it.
//!
//! Inside a chain, fusion also picks kernels: neighbours that one pass does better together
//! ([`kernels`]), while the pipeline file keeps its separate stages. `upscale -> threshold`,
//! with or without `lineart-check` between them, never makes the full-size gray page at all.

use std::sync::Arc;

use crate::engine::item::Item;
use crate::engine::media::{Media, Payload, Raster};
use crate::engine::stage::{CpuStage, StageError};
use crate::imaging::fused::{upscale_threshold, upscale_threshold_blocks};
use crate::imaging::quality::tones::ToneLimits;
use crate::imaging::resize::Fit;

/// What a CPU stage does, as far as picking a kernel cares ([`CpuStage::step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// `upscale`: Lanczos3 to `width` x `height` by `fit`, printed at `dpi`.
    Resize {
        /// Page width in pixels.
        width: u32,
        /// Page height in pixels.
        height: u32,
        /// How the image meets the page.
        fit: Fit,
        /// The page's print resolution.
        dpi: f32,
    },
    /// `threshold`: a pixel below `level` is black.
    Threshold {
        /// The level.
        level: u8,
    },
    /// `lineart-check`: judges the gray page by the ink a threshold at `tone.level` leaves and
    /// by the page's 8x8 blocks, passing the page on unchanged ([`CpuStage::check_fused`]).
    Check {
        /// What its gray measures compare against.
        tone: ToneLimits,
    },
}

/// The stages of a fused chain, with each `upscale` followed by `threshold` made by one kernel
/// that never makes the full-size gray page ([`upscale_threshold`], the same bits). Checks
/// between them that threshold at the same level judge the page from the same pass
/// ([`upscale_threshold_blocks`]), with the same verdicts and metrics. The chain keeps its
/// length and every stage its place, so each keeps its own counts and facts: a check done in
/// the pass passes the page on, and the threshold stage passes the finished 1-bit page on and
/// records its level.
pub fn kernels(chain: &[Arc<dyn CpuStage>]) -> Vec<Arc<dyn CpuStage>> {
    let mut picked = chain.to_vec();
    for (at, upscale) in chain.iter().enumerate() {
        let Some(Step::Resize { width, height, fit, dpi }) = upscale.step() else { continue };
        let checks: Vec<(Arc<dyn CpuStage>, ToneLimits)> = chain[at + 1..]
            .iter()
            .map_while(|stage| match stage.step() {
                Some(Step::Check { tone }) => Some((stage.clone(), tone)),
                _ => None,
            })
            .collect();
        let Some(Step::Threshold { level }) = chain.get(at + 1 + checks.len()).and_then(|s| s.step()) else {
            continue;
        };
        if checks.iter().any(|(_, tone)| tone.level != level) {
            continue; // a check that measures another level than the page gets needs the gray page
        }
        for (offset, (check, _)) in checks.iter().enumerate() {
            picked[at + 1 + offset] = Arc::new(CheckedInPass(check.clone()));
        }
        picked[at] =
            Arc::new(ResizeThreshold { upscale: upscale.clone(), width, height, fit, dpi, level, checks });
    }
    picked
}

/// The fact naming the size of the image a page was upscaled from (`768x1024`), so the quality
/// check can judge a defect by the source's own pixels. A second upscale keeps the first's.
pub const SOURCE_SIZE_FACT: &str = "source_size";

/// Records the page's resolution and, the first time, the size of the image it was made from
/// (the quality check judges specks against that source's pixels). Every path that upscales,
/// fused or not, records the same facts.
pub fn record_resize_facts(item: &mut Item, source: &Raster, page: (u32, u32)) {
    if !item.facts.contains_key(SOURCE_SIZE_FACT) {
        item.record(SOURCE_SIZE_FACT, format!("{}x{}", source.width, source.height));
    }
    item.record("resolution", format!("{}x{}", page.0, page.1));
}

/// `upscale` with the checks after it and the threshold after them done in the same pass, for
/// gray pages.
struct ResizeThreshold {
    /// The stage it stands in for, which still resizes what the kernel does not take (RGB).
    upscale: Arc<dyn CpuStage>,
    width: u32,
    height: u32,
    fit: Fit,
    dpi: f32,
    level: u8,
    /// The checks between the upscale and the threshold, in order, with their limits.
    checks: Vec<(Arc<dyn CpuStage>, ToneLimits)>,
}

impl CpuStage for ResizeThreshold {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Payload::Image(raster) = &input else { return self.apart(item, input) };
        if raster.media() != Media::Gray {
            return self.apart(item, input);
        }
        let failed = |e| StageError::failed(format!("upscale: {e}"));
        let (mut page, blocks) = if self.checks.is_empty() {
            (
                upscale_threshold(raster, self.width, self.height, self.fit, self.level).map_err(failed)?,
                Vec::new(),
            )
        } else {
            let tones: Vec<ToneLimits> = self.checks.iter().map(|(_, tone)| *tone).collect();
            upscale_threshold_blocks(raster, self.width, self.height, self.fit, &tones).map_err(failed)?
        };
        page.dpi = Some(self.dpi);
        record_resize_facts(item, raster, (self.width, self.height));
        for ((check, _), blocks) in self.checks.iter().zip(&blocks) {
            check.check_fused(item, &page, blocks, raster)?;
        }
        Ok(Payload::Image(Arc::new(page)))
    }
}

impl ResizeThreshold {
    /// What the kernel does not take (RGB) goes through the upscale and the checks as it would
    /// unfused; the threshold stage after them thresholds it.
    fn apart(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let mut payload = self.upscale.process(item, input)?;
        for (check, _) in &self.checks {
            payload = check.process(item, payload)?;
        }
        Ok(payload)
    }
}

/// A check's place in a fused chain whose kernel judged the page already: it passes it on.
struct CheckedInPass(Arc<dyn CpuStage>);

impl CpuStage for CheckedInPass {
    fn process(&self, _item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        Ok(input)
    }

    fn candidate_policy(&self) -> Option<crate::engine::candidates::CandidatePolicy> {
        self.0.candidate_policy()
    }
}

/// What a component does with each item, as far as fusion cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A source: it loads each item, and may head a chain.
    Load,
    /// A CPU stage: it may head a chain or join one.
    Compute,
    /// An I/O stage or a sink: never fused.
    Other,
}

/// The components of a pipeline grouped into the units the runtime runs: a chain of fused
/// components (in order, the head first), or a single component. Every component is in
/// exactly one unit; units come in pipeline order of their heads.
///
/// `inputs[i]` are component `i`'s inputs (given before it). A CPU stage joins its input's
/// chain when it reads nothing else, and that input is a source or a CPU stage that feeds
/// nothing else.
pub fn units(inputs: &[&[usize]], work: &[Work]) -> Vec<Vec<usize>> {
    let mut consumers = vec![0usize; inputs.len()];
    for &input in inputs.iter().copied().flatten() {
        consumers[input] += 1;
    }
    let mut unit_of: Vec<usize> = Vec::with_capacity(inputs.len());
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (index, component_inputs) in inputs.iter().enumerate() {
        match **component_inputs {
            [input]
                if work[index] == Work::Compute && work[input] != Work::Other && consumers[input] == 1 =>
            {
                let unit = unit_of[input];
                units[unit].push(index);
                unit_of.push(unit);
            }
            _ => {
                unit_of.push(units.len());
                units.push(vec![index]);
            }
        }
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::media::{Pixels, Raster};
    use crate::stages::lineart_cleanup::LineartCleanup;
    use crate::stages::test_support::build_cpu;
    use crate::stages::threshold::Threshold;
    use crate::stages::upscale::Upscale;

    fn stages(pairs: &[(&dyn crate::engine::stage::Kind, serde_json::Value)]) -> Vec<Arc<dyn CpuStage>> {
        pairs.iter().map(|(kind, options)| build_cpu(*kind, options.clone())).collect()
    }

    /// Runs `chain` on `input` as a fused chain runs it: each stage on the one before's output.
    fn run(chain: &[Arc<dyn CpuStage>], input: Raster) -> (Item, Arc<Raster>) {
        let mut item = Item::new(0, Prompt::default());
        let mut payload = Payload::Image(Arc::new(input));
        for stage in chain {
            payload = stage.process(&mut item, payload).unwrap();
        }
        let Payload::Image(page) = payload else { panic!("not an image") };
        (item, page)
    }

    /// A gray card with a dark ring, so the page has ink, paper and edges.
    fn card(width: u32, height: u32) -> Raster {
        let (cx, cy) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
        let px = (0..width * height)
            .map(|i| {
                let r = (f64::from(i % width) - cx).hypot(f64::from(i / width) - cy);
                if (r - 15.0).abs() < 2.0 { 30 } else { 250 }
            })
            .collect();
        Raster::new(width, height, None, Pixels::Gray(px))
    }

    #[test]
    fn upscale_then_threshold_is_one_kernel_with_the_same_page_and_facts() {
        let chain = stages(&[
            (&Upscale, serde_json::json!({"width": 255, "height": 330, "dpi": 30})),
            (&Threshold, serde_json::json!({"level": 140})),
        ]);
        let picked = kernels(&chain);
        assert_eq!(picked.len(), 2);
        assert!(!Arc::ptr_eq(&picked[0], &chain[0]), "the upscale was not replaced");
        assert!(Arc::ptr_eq(&picked[1], &chain[1]), "the threshold keeps its place");
        let (apart_item, apart) = run(&chain, card(77, 100));
        let (fused_item, fused) = run(&picked, card(77, 100));
        assert_eq!(fused.media(), Media::Bilevel);
        assert!(fused.pixels == apart.pixels, "the fused page differs");
        assert_eq!((fused.width, fused.height, fused.dpi), (apart.width, apart.height, Some(30.0)));
        assert_eq!(fused_item.facts, apart_item.facts);
    }

    #[test]
    fn rgb_pages_and_stages_between_keep_the_separate_steps() {
        let upscale =
            (&Upscale as &dyn crate::engine::stage::Kind, serde_json::json!({"width": 60, "height": 80}));
        let threshold = (&Threshold as &dyn crate::engine::stage::Kind, serde_json::json!({}));
        let cleanup = (&LineartCleanup as &dyn crate::engine::stage::Kind, serde_json::json!({}));
        // Not neighbours: nothing to fuse.
        let apart = stages(&[upscale.clone(), cleanup, threshold.clone()]);
        assert!(kernels(&apart).iter().zip(&apart).all(|(a, b)| Arc::ptr_eq(a, b)));
        // RGB is resized as before and thresholded by the threshold stage.
        let chain = stages(&[upscale, threshold]);
        let rgb = Raster::new(6, 8, None, Pixels::Rgb((0..144).map(|i| (i * 7 % 256) as u8).collect()));
        let (_, fused) = run(&kernels(&chain), rgb.clone());
        let (_, separate) = run(&chain, rgb);
        assert_eq!(fused.media(), Media::Bilevel);
        assert!(fused.pixels == separate.pixels);
    }

    /// Upscale, check and threshold fused: the page, every fact (the verdict, its codes and
    /// metrics) and the judgement are those of the three steps apart, on the check's fixtures
    /// drawn at the model's resolution; and no buffer the size of the gray page is allocated.
    #[test]
    fn a_check_between_upscale_and_threshold_is_judged_in_the_kernels_pass() {
        use crate::imaging::quality::fixtures::{MODEL_H, MODEL_PEN, MODEL_W, Pen, model_faces_page};
        use crate::stages::lineart_check::LineartCheck;
        let chain = stages(&[
            (&Upscale, serde_json::json!({"width": 2550, "height": 3300, "dpi": 300})),
            (&LineartCheck, serde_json::json!({})),
            (&Threshold, serde_json::json!({"level": 128})),
        ]);
        let picked = kernels(&chain);
        assert!(!Arc::ptr_eq(&picked[0], &chain[0]) && !Arc::ptr_eq(&picked[1], &chain[1]));
        assert!(Arc::ptr_eq(&picked[2], &chain[2]), "the threshold keeps its place");
        let mut speckled = model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 22);
        speckled.specks_sized(300, 1..=3);
        let sheets = [
            model_faces_page(12, MODEL_PEN, 3.0, MODEL_PEN, 21),
            model_faces_page(3, Pen { ink: 205.0, ..MODEL_PEN }, 3.0, MODEL_PEN, 33),
            speckled,
        ];
        let full_gray_page = 2550 * 3300;
        let mut verdicts = Vec::new();
        for sheet in sheets {
            let source = || Raster::new(MODEL_W as u32, MODEL_H as u32, None, Pixels::Gray(sheet.gray()));
            // Fused first: apart, the threshold gives the gray page's memory to the thread's next
            // resize, which then allocates nothing.
            let ((fused_item, fused), fused_largest) = largest_allocation(|| run(&picked, source()));
            let ((apart_item, apart), apart_largest) = largest_allocation(|| run(&chain, source()));
            assert!(fused.pixels == apart.pixels, "the fused page differs");
            assert_eq!(fused_item.facts, apart_item.facts, "facts differ");
            assert_eq!(fused_item.judgement.map(|j| j.score), apart_item.judgement.map(|j| j.score));
            assert!(fused_largest < full_gray_page / 4, "fused, a buffer of {fused_largest} bytes");
            if verdicts.is_empty() {
                assert!(apart_largest >= full_gray_page, "apart, the gray page is made: {apart_largest}");
            }
            verdicts.push(fused_item.facts["quality"]["verdict"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(verdicts, ["pass", "reject", "warn"], "the fixtures keep their verdicts");
    }

    #[test]
    fn a_check_at_another_level_keeps_the_gray_page() {
        use crate::stages::lineart_check::LineartCheck;
        let chain = stages(&[
            (&Upscale, serde_json::json!({"width": 60, "height": 80})),
            (&LineartCheck, serde_json::json!({"level": 100})),
            (&Threshold, serde_json::json!({"level": 128})),
        ]);
        assert!(kernels(&chain).iter().zip(&chain).all(|(a, b)| Arc::ptr_eq(a, b)));
    }

    /// What `work` returns, and the largest single allocation it made on this thread.
    fn largest_allocation<T>(work: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|largest| largest.set(0));
        let out = work();
        (out, LARGEST.with(std::cell::Cell::get))
    }

    thread_local! {
        /// The largest allocation made on this thread since [`largest_allocation`] reset it.
        static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The system allocator, noting each thread's largest allocation (tests run in parallel).
    struct Noting;

    // SAFETY: every call is the system allocator's; the note is a thread-local Cell that
    // allocates nothing.
    unsafe impl std::alloc::GlobalAlloc for Noting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(layout.size())));
            // SAFETY: as the caller promised for `layout`.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(layout.size())));
            // SAFETY: as the caller promised for `layout`.
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(new_size)));
            // SAFETY: as the caller promised for `ptr` and `layout`.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: as the caller promised for `ptr` and `layout`.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static NOTING: Noting = Noting;

    use Work::{Compute, Load, Other};

    #[test]
    fn a_source_and_its_one_to_one_run_of_cpu_stages_are_one_unit() {
        // source -> gray -> print -> lineart -> {thumb, disk}, thumb -> disk
        let inputs: [&[usize]; 6] = [&[], &[0], &[1], &[2], &[3], &[3, 4]];
        let work = [Load, Compute, Compute, Compute, Compute, Other];
        assert_eq!(units(&inputs, &work), [vec![0, 1, 2, 3], vec![4], vec![5]]);
    }

    #[test]
    fn io_stages_fan_out_and_joins_break_a_chain() {
        // source -> safety -> fal -> gray -> {a, b}; a -> c; a sink reads b and c, another the source.
        let inputs: [&[usize]; 9] = [&[], &[0], &[1], &[2], &[3], &[3], &[4], &[5, 6], &[0]];
        let work = [Load, Compute, Other, Compute, Compute, Compute, Compute, Other, Other];
        assert_eq!(
            units(&inputs, &work),
            [vec![0], vec![1], vec![2], vec![3], vec![4, 6], vec![5], vec![7], vec![8]]
        );
    }

    #[test]
    fn a_source_feeding_one_cpu_stage_loads_in_its_jobs() {
        // prompts -> safety -> fal -> sink
        let inputs: [&[usize]; 4] = [&[], &[0], &[1], &[2]];
        assert_eq!(units(&inputs, &[Load, Compute, Other, Other]), [vec![0, 1], vec![2], vec![3]]);
    }
}
