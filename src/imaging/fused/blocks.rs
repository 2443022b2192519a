//! The 8x8 blocks of the gray page (their darkest and lightest pixel) that the quality check
//! reads, from a fused pass that never makes the page.
//!
//! The pass knows every row of a block either exactly (a span it computed) or within the bound
//! that let it skip the span. Folded together, that bounds each block's darkest and lightest
//! pixel. The check's gray measures ([`tones::measure`]) only ask questions of these two
//! values: is the darkest below the level, is the block wholly mid-gray, is the darkest more
//! than `contrast` under the lightest paper nearby. A block whose bounds answer every question
//! the same way for any value inside them needs nothing more; the others (the soft edges of
//! lines, faint marks near paper) are computed exactly, 64 pixels each. Any value inside the
//! bounds then gives the measures of the real page, so the check's verdict, codes and metrics
//! do not change.

use std::ops::Range;

use super::{Kernel, Scratch};
use crate::imaging::quality::tones::{self, BLOCK, Blocks, ToneLimits};

/// How far the check looks for paper around a block, in blocks ([`tones::PAPER_REACH`]).
const REACH: usize = tones::PAPER_REACH;

/// The least and greatest a value can be.
type Bound = (u8, u8);

/// What a fused pass has learned of each block of a gray page so far.
pub(super) struct BlockBounds {
    cols: usize,
    rows: usize,
    /// Bounds of each block's darkest pixel, row after row of blocks.
    darkest: Vec<Bound>,
    /// Bounds of each block's lightest pixel.
    lightest: Vec<Bound>,
    /// The page's height in pixels.
    height: usize,
    /// The page row being folded.
    row: usize,
}

impl BlockBounds {
    /// Nothing known yet of a page `width` x `height`.
    pub fn new(width: usize, height: usize) -> BlockBounds {
        let (cols, rows) = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
        // The identities of min and max: the first fold sets them.
        let (darkest, lightest) = (vec![(255, 255); cols * rows], vec![(0, 0); cols * rows]);
        BlockBounds { cols, rows, darkest, lightest, height, row: 0 }
    }

    /// Page pixels `columns` of the current row are each within `bound`.
    pub fn fold_row(&mut self, columns: Range<usize>, bound: Bound) {
        if columns.is_empty() {
            return;
        }
        let first = self.row / BLOCK * self.cols;
        for block in first + columns.start / BLOCK..first + columns.end.div_ceil(BLOCK) {
            self.fold(block, bound, bound);
        }
    }

    /// The current row's exact pixels from page column `start` (a multiple of [`BLOCK`]).
    pub fn fold_pixels(&mut self, start: usize, gray: &[u8]) {
        let first = self.row / BLOCK * self.cols + start / BLOCK;
        for (block, pixels) in (first..).zip(gray.chunks(BLOCK)) {
            let darkest = pixels.iter().copied().min().unwrap_or(255);
            let lightest = pixels.iter().copied().max().unwrap_or(0);
            self.fold(block, (darkest, darkest), (lightest, lightest));
        }
    }

    /// Some pixels of `block`, whose darkest is within `dark` and lightest within `light`.
    fn fold(&mut self, block: usize, dark: Bound, light: Bound) {
        let (darkest, lightest) = (&mut self.darkest[block], &mut self.lightest[block]);
        *darkest = (darkest.0.min(dark.0), darkest.1.min(dark.1));
        *lightest = (lightest.0.max(light.0), lightest.1.max(light.1));
    }

    /// On to the next page row.
    pub fn end_row(&mut self) {
        self.row += 1;
    }

    /// The blocks as the check measures them: every block whose bounds leave a measure open is
    /// computed exactly; the others take a value inside their bounds.
    pub fn settle(&self, kernel: &Kernel, limits: ToneLimits) -> Blocks {
        let mut settled =
            BlockBounds { darkest: self.darkest.clone(), lightest: self.lightest.clone(), ..*self };
        settled.settle_in_place(kernel, limits);
        Blocks {
            cols: self.cols,
            rows: self.rows,
            min: settled.darkest.iter().map(|d| d.0).collect(),
            max: settled.lightest.iter().map(|l| l.1).collect(),
        }
    }

    fn settle_in_place(&mut self, kernel: &Kernel, limits: ToneLimits) {
        let spans = kernel.spans(BLOCK);
        let mut scratch = Scratch::new(kernel.source_width);
        self.tighten(kernel, &spans, &mut scratch);
        // Each block's own questions: mid-gray, kept ink, paper.
        let open: Vec<usize> =
            (0..self.darkest.len()).filter(|&i| !self.own_questions_closed(i, limits)).collect();
        for &block in &open {
            self.compute(block, kernel, &spans, &mut scratch);
        }
        // Lost ink asks about the neighbours too; their own questions are answered by now.
        // Computing an open block itself closes most (its darkest pixel is then known, and on
        // grainy paper well within `contrast` of its neighbours'); the blocks still open then
        // get their whole neighbourhood computed, after which every question is answered.
        for block in self.lost_open(limits) {
            if !self.exact(block) {
                self.compute(block, kernel, &spans, &mut scratch);
            }
        }
        let mut open = Vec::new();
        for block in self.lost_open(limits) {
            let (x, y) = (block % self.cols, block / self.cols);
            for ny in y.saturating_sub(REACH)..=(y + REACH).min(self.rows - 1) {
                let row = ny * self.cols;
                open.extend((x.saturating_sub(REACH)..=(x + REACH).min(self.cols - 1)).map(|nx| row + nx));
            }
        }
        open.sort_unstable();
        open.dedup();
        for block in open {
            if !self.exact(block) {
                self.compute(block, kernel, &spans, &mut scratch);
            }
        }
    }

    /// Narrows each block's bounds to what its own source window allows. The pass bounded a
    /// skipped span of 64 pixels by its whole window, so a stroke near one end widened the
    /// bounds of all eight blocks; a block's own window is about 9 source pixels a side, and
    /// on blank paper its bound is tight. Both bounds hold, so their intersection does.
    fn tighten(&mut self, kernel: &Kernel, spans: &[super::Span], scratch: &mut Scratch) {
        for y in 0..self.rows {
            let rows: Vec<usize> =
                (y * BLOCK..((y + 1) * BLOCK).min(self.height)).filter_map(|r| kernel.image_row(r)).collect();
            let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else { continue };
            let taps = &kernel.down.taps[first..=last];
            let sources = taps[0].start..taps.iter().map(|t| t.end()).max().unwrap_or(taps[0].start);
            let sum = taps.iter().fold((i32::MAX, i32::MIN), |(lo, hi), t| (lo.min(t.sum), hi.max(t.sum)));
            let positive = taps.iter().map(|t| t.positive).max().unwrap_or(0);
            kernel.column_extremes(sources, scratch);
            for (x, span) in spans.iter().enumerate() {
                if span.inner.is_empty() {
                    continue;
                }
                let least = scratch.least[span.columns.clone()].iter().copied().min().unwrap_or(0);
                let most = scratch.most[span.columns.clone()].iter().copied().max().unwrap_or(255);
                let (lo, hi) = kernel.down.pixel_bounds(sum, positive, least, most);
                let (lo, hi) = kernel.across.pixel_bounds(span.sum, span.positive, lo, hi);
                let block = y * self.cols + x;
                let dark = &mut self.darkest[block];
                *dark = (dark.0.max(lo), dark.1.min(hi));
                let margin =
                    span.inner.len() < span.page.len() || rows.len() < BLOCK.min(self.height - y * BLOCK);
                if !margin {
                    let light = &mut self.lightest[block];
                    *light = (light.0.max(lo), light.1.min(hi));
                }
            }
        }
    }

    fn exact(&self, block: usize) -> bool {
        let (dark, light) = (self.darkest[block], self.lightest[block]);
        dark.0 == dark.1 && light.0 == light.1
    }

    /// Whether the block's bounds answer its own questions: is it wholly mid-gray, is its
    /// darkest pixel ink, is it paper.
    fn own_questions_closed(&self, block: usize, limits: ToneLimits) -> bool {
        let (dark, light) = (self.darkest[block], self.lightest[block]);
        let mid = (dark.0 >= limits.mid_low && light.1 <= limits.mid_high)
            || dark.1 < limits.mid_low
            || light.0 > limits.mid_high;
        let kept = dark.1 < limits.level || dark.0 >= limits.level;
        let paper = dark.0 > limits.mid_high || dark.1 <= limits.mid_high;
        mid && kept && paper
    }

    /// The blocks whose bounds, and their neighbours', do not tell whether they are faint ink
    /// lost at the threshold, as [`tones::measure`] asks it: away from kept ink, darker by
    /// `contrast` than the lightest paper within [`REACH`] blocks. Every block's own questions
    /// (is its darkest pixel kept ink) must be answered before.
    fn lost_open(&self, limits: ToneLimits) -> Vec<usize> {
        let (cols, rows) = (self.cols, self.rows);
        let kept: Vec<bool> = self.darkest.iter().map(|dark| dark.1 < limits.level).collect();
        let near_kept = tones::neighbourhood(&kept, cols, rows, false);
        let least: Vec<u8> = self.darkest.iter().map(|dark| dark.0).collect();
        let most: Vec<u8> = self.darkest.iter().map(|dark| dark.1).collect();
        let (paper_lo, paper_hi) =
            (tones::max_filter(&least, cols, rows, REACH), tones::max_filter(&most, cols, rows, REACH));
        (0..self.darkest.len())
            .filter(|&block| {
                let dark = self.darkest[block];
                let surely = paper_lo[block].saturating_sub(dark.1) >= limits.contrast;
                let surely_not = paper_hi[block].saturating_sub(dark.0) < limits.contrast;
                !near_kept[block] && !surely && !surely_not
            })
            .collect()
    }

    /// Computes the block's pixels exactly, as the library would, and keeps its extremes.
    fn compute(&mut self, block: usize, kernel: &Kernel, spans: &[super::Span], scratch: &mut Scratch) {
        let (x, y) = (block % self.cols, block / self.cols);
        let span = &spans[x];
        let (mut darkest, mut lightest) = (255u8, 0u8);
        if span.inner.len() < span.page.len() {
            lightest = 255; // the block reaches the white margin
        }
        let page_rows = y * BLOCK..((y + 1) * BLOCK).min(self.height);
        let mut pixels = [0u8; BLOCK];
        for page_row in page_rows {
            let Some(row) = kernel.image_row(page_row) else {
                lightest = 255;
                continue;
            };
            let image = &mut pixels[..span.inner.len()];
            scratch.ready = 0..0;
            kernel.compute(row, span, scratch, image);
            darkest = image.iter().copied().fold(darkest, u8::min);
            lightest = image.iter().copied().fold(lightest, u8::max);
        }
        self.darkest[block] = (darkest, darkest);
        self.lightest[block] = (lightest, lightest);
    }
}
