//! Upscale then threshold in one pass, bit for bit what [`super::resize::resize`] then
//! [`super::threshold::threshold`] make, without the full-size gray page.
//!
//! A 1-bit page needs of each Lanczos pixel only which side of the threshold it falls on. Most
//! of a line-art page is paper, where that is known before any arithmetic: if every source
//! pixel under the kernel is in `[lo, hi]`, the pixel made is within a bound of `lo` and `hi`
//! that only the negative lobes widen ([`axis::Axis::pixel_bounds`] derives it from the very
//! fixed-point weights the library uses). The page is decided in spans of 64 page pixels (8
//! bytes of a packed row): a span whose bound lies wholly on one side of the threshold is
//! written as bytes of ink or paper; the others, near the edges of the line work, are computed
//! exactly as fast_image_resize computes them ([`axis`]): its vertical pass first (source
//! columns to output rows), then the horizontal one, both rounded and clamped to 8 bits.
//!
//! When a `lineart-check` sits between the two steps, the same pass also gives what the check
//! reads of the gray page, its 8x8 blocks, without making the page ([`blocks`]).

mod axis;
mod blocks;

use std::ops::Range;

use fast_image_resize::CropBox;

use super::ImagingError;
use super::quality::tones::{Blocks, ToneLimits};
use super::resize::{Fit, check_size, contain_box};
use super::threshold::pack_row;
use crate::engine::media::{Pixels, Raster};
use axis::Axis;
use blocks::BlockBounds;

/// Page pixels decided together: 64 fill 8 whole bytes of a packed row.
const SPAN: usize = 64;

/// The 1-bit page of `raster` (gray) resized to `width` x `height` with Lanczos3 and `fit`,
/// then thresholded at `level`: the same bits as `threshold(&resize(..), level)`.
pub fn upscale_threshold(
    raster: &Raster,
    width: u32,
    height: u32,
    fit: Fit,
    level: u8,
) -> Result<Raster, ImagingError> {
    Ok(fused(raster, (width, height), fit, level, None)?.0)
}

/// [`upscale_threshold`] at the `tones`' level (all the same), and for each of `tones` the
/// 8x8 blocks of the gray page it never makes, as the quality check measures them with those
/// limits: [`tones::measure`](super::quality::tones::measure) of them equals its measure of
/// `Blocks::of` the resized page. A block is computed exactly where a measure needs its
/// darkest or lightest pixel; elsewhere it holds a value within the bound the pass proved,
/// which answers every measure the same way ([`blocks`]).
pub fn upscale_threshold_blocks(
    raster: &Raster,
    width: u32,
    height: u32,
    fit: Fit,
    tones: &[ToneLimits],
) -> Result<(Raster, Vec<Blocks>), ImagingError> {
    let level = tones.first().map_or(128, |tone| tone.level);
    let mut bounds = BlockBounds::new(width as usize, height as usize);
    let (page, kernel) = fused(raster, (width, height), fit, level, Some(&mut bounds))?;
    Ok((page, tones.iter().map(|&tone| bounds.settle(&kernel, tone)).collect()))
}

/// The fused pass; with `blocks`, it also bounds every 8x8 block of the gray page. Returns the
/// kernel for what is left to compute exactly.
fn fused<'a>(
    raster: &'a Raster,
    (width, height): (u32, u32),
    fit: Fit,
    level: u8,
    mut blocks: Option<&mut BlockBounds>,
) -> Result<(Raster, Kernel<'a>), ImagingError> {
    let Pixels::Gray(source) = &raster.pixels else {
        return Err(ImagingError::Unsupported { operation: "upscale-threshold", media: raster.media() });
    };
    check_size(width, height)?;
    check_size(raster.width, raster.height)?;
    let source_size = (raster.width, raster.height);
    let (inner_width, inner_height, left, top) = match fit {
        Fit::Contain => contain_box(source_size, (width, height)),
        Fit::Cover | Fit::Stretch => (width, height, 0, 0),
    };
    // The source window the library resizes: all of it, or the centre that has the page's shape.
    let crop = match fit {
        Fit::Cover => CropBox::fit_src_into_dst_size(raster.width, raster.height, width, height, None),
        Fit::Contain | Fit::Stretch => {
            CropBox { left: 0., top: 0., width: f64::from(raster.width), height: f64::from(raster.height) }
        }
    };
    let kernel = Kernel {
        source,
        source_width: raster.width as usize,
        across: Axis::for_side(raster.width, crop.left, crop.width, inner_width),
        down: Axis::for_side(raster.height, crop.top, crop.height, inner_height),
        level,
        page_width: width as usize,
        left: left as usize,
        top: top as usize,
    };
    let page_width = width as usize;
    let stride = Raster::bilevel_stride(width);
    let (spans, bytes) = (kernel.spans(SPAN), kernel.spans(8));
    let mut paper = vec![0u8; stride];
    pack_row(&vec![255u8; page_width], level, &mut paper);
    let mut bits = vec![0u8; stride * height as usize];
    let mut scratch = Scratch::new(kernel.source_width);
    for (page_row, out) in bits.chunks_exact_mut(stride).enumerate() {
        match kernel.image_row(page_row) {
            Some(row) => kernel.row(row, (&spans, &bytes), &mut scratch, out, blocks.as_deref_mut()),
            None => {
                out.copy_from_slice(&paper);
                if let Some(blocks) = blocks.as_deref_mut() {
                    blocks.fold_row(0..page_width, (255, 255));
                }
            }
        }
        if let Some(blocks) = blocks.as_deref_mut() {
            blocks.end_row();
        }
    }
    Ok((Raster::new(width, height, raster.dpi, Pixels::Bilevel(bits)), kernel))
}

/// What a span of a row becomes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Decision {
    /// Every image pixel of the span is at or above the level.
    Paper,
    /// Every image pixel of the span is below the level.
    Ink,
    /// The bound straddles the level: compute.
    Compute,
}

/// A run of up to [`SPAN`] page pixels of a row and what its bound needs.
struct Span {
    /// Its page pixels.
    page: Range<usize>,
    /// Its image pixels, in output pixels of the inner box (empty in a margin).
    inner: Range<usize>,
    /// Where in the span the image pixels begin.
    image_at: usize,
    /// The source columns they weigh.
    columns: Range<usize>,
    /// The least and greatest sum of weights of its pixels.
    sum: (i32, i32),
    /// The greatest sum of positive weights of its pixels.
    positive: i32,
}

/// The page-wide parts of one fused resize and threshold.
struct Kernel<'a> {
    source: &'a [u8],
    source_width: usize,
    across: Axis,
    down: Axis,
    level: u8,
    /// The page's width, and where the image starts on it (the rest is white margin).
    page_width: usize,
    left: usize,
    top: usize,
}

/// Per-row buffers, reused from row to row.
struct Scratch {
    /// The source rows whose column extremes `least` and `most` hold.
    rows: Range<u32>,
    /// Per source column, the least and greatest pixel in `rows`.
    least: Vec<u8>,
    most: Vec<u8>,
    /// Source columns whose vertical pass is in `vertical` for the current row.
    ready: Range<usize>,
    /// The vertical pass of the current row, per source column: the library's temporary image.
    vertical: Vec<u8>,
    sums: Vec<i32>,
}

impl Scratch {
    fn new(source_width: usize) -> Scratch {
        Scratch {
            rows: 0..0,
            least: vec![0; source_width],
            most: vec![0; source_width],
            ready: 0..0,
            vertical: vec![0; source_width],
            sums: vec![0; source_width],
        }
    }
}

impl Kernel<'_> {
    /// The image row of page row `page_row`, if it is not in the margin.
    fn image_row(&self, page_row: usize) -> Option<usize> {
        page_row.checked_sub(self.top).filter(|&row| row < self.down.taps.len())
    }

    /// A page row cut into spans of `width` page pixels, with what their bounds need.
    fn spans(&self, width: usize) -> Vec<Span> {
        let image = self.left..self.left + self.across.taps.len();
        (0..self.page_width)
            .step_by(width)
            .map(|x| {
                let page = x..(x + width).min(self.page_width);
                let (first, end) =
                    (page.start.clamp(image.start, image.end), page.end.clamp(image.start, image.end));
                let inner = first - self.left..end - self.left;
                let taps = &self.across.taps[inner.clone()];
                let columns = match (taps.first(), taps.iter().map(|t| t.end()).max()) {
                    (Some(first), Some(end)) => first.start as usize..end as usize,
                    _ => 0..0,
                };
                let sum =
                    taps.iter().fold((i32::MAX, i32::MIN), |(lo, hi), t| (lo.min(t.sum), hi.max(t.sum)));
                let positive = taps.iter().map(|t| t.positive).max().unwrap_or(0);
                Span { image_at: first.max(page.start) - page.start, page, inner, columns, sum, positive }
            })
            .collect()
    }

    /// Writes the packed bits of image row `row` into `out`, and folds what the row shows of
    /// each 8x8 block into `blocks`: exact pixels where it computed, else the bound that let
    /// it skip. A span whose bound straddles the level is decided again byte by byte (`bytes`,
    /// [`SPAN`] / 8 of them per span): each byte's source window is a third of the span's, so
    /// most bytes beside a stroke are still known without arithmetic.
    fn row(
        &self,
        row: usize,
        (spans, bytes): (&[Span], &[Span]),
        scratch: &mut Scratch,
        out: &mut [u8],
        mut blocks: Option<&mut BlockBounds>,
    ) {
        let taps = self.down.taps[row];
        self.column_extremes(taps.start..taps.end(), scratch);
        scratch.ready = 0..0;
        for (at, span) in spans.iter().enumerate() {
            let (decision, bound) = self.decide(row, span, scratch);
            if decision == Decision::Compute {
                let per_span = SPAN / 8;
                for byte in bytes.iter().skip(at * per_span).take(per_span) {
                    let (decision, bound) = self.decide(row, byte, scratch);
                    self.write(row, byte, (decision, bound), scratch, out, blocks.as_deref_mut());
                }
            } else {
                self.write(row, span, (decision, bound), scratch, out, blocks.as_deref_mut());
            }
        }
    }

    /// Writes the bits of `span` of image row `row` as decided (computing them if need be),
    /// and folds them into `blocks`.
    fn write(
        &self,
        row: usize,
        span: &Span,
        (decision, bound): (Decision, (u8, u8)),
        scratch: &mut Scratch,
        out: &mut [u8],
        blocks: Option<&mut BlockBounds>,
    ) {
        let bytes = &mut out[span.page.start / 8..span.page.end.div_ceil(8)];
        // Whole bytes: no padding bits, which stay black whatever the pixels.
        let whole = span.page.len().is_multiple_of(8);
        let all_image = span.inner.len() == span.page.len();
        let mut blocks = blocks;
        if decision != Decision::Compute
            && let Some(blocks) = blocks.as_deref_mut()
        {
            let image = span.page.start + span.image_at..span.page.start + span.image_at + span.inner.len();
            blocks.fold_row(span.page.start..image.start, (255, 255));
            blocks.fold_row(image.clone(), bound);
            blocks.fold_row(image.end..span.page.end, (255, 255));
        }
        match decision {
            Decision::Paper if whole => bytes.fill(0xFF),
            Decision::Ink if whole && all_image => bytes.fill(0),
            _ => {
                // Margins are white; the image part is decided or computed.
                let mut gray = [255u8; SPAN];
                let image = &mut gray[span.image_at..span.image_at + span.inner.len()];
                match decision {
                    Decision::Paper => image.fill(255),
                    Decision::Ink => image.fill(0),
                    Decision::Compute => self.compute(row, span, scratch, image),
                }
                let gray = &gray[..span.page.len()];
                if decision == Decision::Compute
                    && let Some(blocks) = blocks
                {
                    blocks.fold_pixels(span.page.start, gray);
                }
                pack_row(gray, self.level, bytes);
            }
        }
    }

    /// Fills `least` and `most` with each source column's extremes over source `rows`.
    fn column_extremes(&self, rows: Range<u32>, scratch: &mut Scratch) {
        if scratch.rows == rows {
            return;
        }
        let width = self.source_width;
        let mut lines = self.source.chunks_exact(width).skip(rows.start as usize).take(rows.len());
        if let Some(first) = lines.next() {
            scratch.least.copy_from_slice(first);
            scratch.most.copy_from_slice(first);
        }
        for line in lines {
            for ((least, most), &p) in scratch.least.iter_mut().zip(scratch.most.iter_mut()).zip(line) {
                *least = (*least).min(p);
                *most = (*most).max(p);
            }
        }
        scratch.rows = rows;
    }

    /// Bounds the span's pixels of image row `row` through both passes and decides it; the
    /// bound is the least and greatest pixel the span's image part can hold.
    fn decide(&self, row: usize, span: &Span, scratch: &Scratch) -> (Decision, (u8, u8)) {
        if span.inner.is_empty() {
            return (Decision::Paper, (255, 255));
        }
        let least = scratch.least[span.columns.clone()].iter().copied().min().unwrap_or(0);
        let most = scratch.most[span.columns.clone()].iter().copied().max().unwrap_or(255);
        let taps = self.down.taps[row];
        let (lo, hi) = self.down.pixel_bounds((taps.sum, taps.sum), taps.positive, least, most);
        let (lo, hi) = self.across.pixel_bounds(span.sum, span.positive, lo, hi);
        let decision = if lo >= self.level {
            Decision::Paper
        } else if hi < self.level {
            Decision::Ink
        } else {
            Decision::Compute
        };
        (decision, (lo, hi))
    }

    /// The exact pixels of the span's image part in image row `row`, into `gray`.
    fn compute(&self, row: usize, span: &Span, scratch: &mut Scratch, gray: &mut [u8]) {
        self.vertical_pass(row, span.columns.clone(), scratch);
        for (pixel, x) in gray.iter_mut().zip(span.inner.clone()) {
            let start = self.across.taps[x].start as usize;
            let column = &scratch.vertical[start..];
            let weighted: i32 =
                self.across.weights(x).iter().zip(column).map(|(&k, &p)| i32::from(k) * i32::from(p)).sum();
            *pixel = self.across.pixel(weighted);
        }
    }

    /// Makes the vertical pass of image row `row` ready for source `columns`. Spans come left
    /// to right and their columns only move right, so what an earlier span made is kept.
    fn vertical_pass(&self, row: usize, columns: Range<usize>, scratch: &mut Scratch) {
        let extends = scratch.ready.contains(&columns.start) || scratch.ready.end == columns.start;
        let todo = if extends { scratch.ready.end..columns.end.max(scratch.ready.end) } else { columns };
        if todo.is_empty() {
            return;
        }
        let taps = self.down.taps[row];
        let width = self.source_width;
        let sums = &mut scratch.sums[todo.clone()];
        sums.fill(0);
        // Row by row over contiguous columns: the multiply-adds vectorize.
        for (i, &k) in self.down.weights(row).iter().enumerate() {
            let line = (taps.start as usize + i) * width;
            for (sum, &p) in sums.iter_mut().zip(&self.source[line + todo.start..line + todo.end]) {
                *sum += i32::from(k) * i32::from(p);
            }
        }
        for (out, &sum) in scratch.vertical[todo.clone()].iter_mut().zip(sums.iter()) {
            *out = self.down.pixel(sum);
        }
        scratch.ready = if extends { scratch.ready.start..todo.end } else { todo };
    }
}

#[cfg(test)]
mod tests;
