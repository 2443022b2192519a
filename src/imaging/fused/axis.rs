//! One axis of fast_image_resize 6.1's Lanczos3 convolution for 8-bit pixels, weight for
//! weight, so the fused kernel computes the very numbers the library does.
//!
//! The library (`convolution::precompute_coefficients`, then `Normalizer16`) places each
//! output pixel's centre in the source, weighs the source pixels under the kernel's support,
//! normalises the weights to sum to 1.0 in f64, and stores them as i16 fixed point with one
//! precision for the whole axis: the most fraction bits that keep the largest weight, doubled,
//! below 2^15. A pass then computes `clamp((2^(precision-1) + Σ weight·pixel) >> precision,
//! 0, 255)` in i32 (its SIMD paths split the rounding term over lanes, which sums the same).
//! Every f64 operation below is written in the library's order, so the rounding is the same.

use std::f64::consts::PI;

/// Lanczos3's support in source pixels, before the kernel widens when shrinking.
const SUPPORT: f64 = 3.0;

/// Fraction bits the library allows a weight: 32 bits less 8 for the pixel and 2 for the
/// overshoot of negative lobes.
const PRECISION_BITS: u8 = 32 - 8 - 2;

/// The i16 weights are kept below this.
const MAX_WEIGHT: i32 = 1 << 15;

/// The weights of one output pixel.
#[derive(Clone, Copy, Debug)]
pub(super) struct Taps {
    /// The first source pixel weighed.
    pub start: u32,
    /// Where its weights begin in [`Axis::weights`].
    from: u32,
    /// How many source pixels are weighed.
    pub len: u32,
    /// The sum of its positive weights: a bound needs it (see [`Axis::sum_bounds`]).
    pub positive: i32,
    /// The sum of all its weights, about 2^precision.
    pub sum: i32,
}

/// The fixed-point weights of every output pixel along one axis.
#[derive(Debug)]
pub(super) struct Axis {
    /// Fraction bits of every weight.
    pub precision: u8,
    /// Per output pixel.
    pub taps: Vec<Taps>,
    weights: Vec<i16>,
}

impl Axis {
    /// The axis of a Lanczos3 resize of source pixels `[in0, in1)` (a crop box side, maybe
    /// fractional) of a source `in_size` long onto `out_size` pixels.
    pub fn lanczos3(in_size: u32, in0: f64, in1: f64, out_size: u32) -> Axis {
        let scale = (in1 - in0) / f64::from(out_size);
        // The kernel widens when shrinking (the library's adaptive kernel size).
        let filter_scale = scale.max(1.0);
        let radius = SUPPORT * filter_scale;
        let window = radius.ceil() as usize * 2 + 1;
        let recip_filter_scale = 1.0 / filter_scale;
        // Normalised f64 weights, `window` per output pixel, zero-padded as the library pads.
        let mut real: Vec<f64> = Vec::with_capacity(window * out_size as usize);
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(out_size as usize);
        for out_x in 0..out_size {
            let in_center = in0 + (f64::from(out_x) + 0.5) * scale;
            let x_min = (in_center - radius).floor().max(0.) as u32;
            let x_max = (in_center + radius).ceil().min(f64::from(in_size)) as u32;
            let first = real.len();
            let center = in_center - 0.5;
            let (mut start, mut end) = (x_min, x_max);
            let mut total = 0.0;
            for x in x_min..x_max {
                let w = lanczos3((f64::from(x) - center) * recip_filter_scale);
                // Zero weights at the start are skipped, not stored.
                if x == start && w == 0. {
                    start += 1;
                } else {
                    real.push(w);
                    total += w;
                }
            }
            // Zero weights at the end are stored but not used.
            for &w in real.iter().rev() {
                if end <= start || w != 0. {
                    break;
                }
                end -= 1;
            }
            if total != 0.0 {
                real[first..].iter_mut().for_each(|w| *w /= total);
            }
            real.resize(first + window, 0.);
            spans.push((start, end - start));
        }
        let largest = real.iter().copied().fold(0.0_f64, f64::max);
        let precision = precision_for(largest);
        let one = f64::from(1u32 << precision);
        let mut weights = Vec::with_capacity(real.len());
        let taps = spans
            .iter()
            .zip(real.chunks_exact(window.max(1)))
            .map(|(&(start, len), chunk)| {
                let from = weights.len() as u32;
                weights.extend(chunk[..len as usize].iter().map(|&w| (w * one).round() as i16));
                Taps::new(start, from, &weights[from as usize..])
            })
            .collect();
        Axis { precision, taps, weights }
    }

    /// The axis of a pass the library skips (the crop box side is whole and already the
    /// output's size): output pixel `i` is source pixel `offset + i`. One weight of 2 with one
    /// fraction bit gives `(1 + 2·p) >> 1 = p`, so the same code serves both.
    pub fn identity(offset: u32, out_size: u32) -> Axis {
        let weights = vec![2i16; out_size as usize];
        let taps =
            (0..out_size).map(|i| Taps::new(offset + i, i, &weights[i as usize..=i as usize])).collect();
        Axis { precision: 1, taps, weights }
    }

    /// The side of a crop box as the library resizes it: skipped when whole and already the
    /// output's size, Lanczos3 otherwise.
    pub fn for_side(in_size: u32, start: f64, length: f64, out_size: u32) -> Axis {
        if f64::from(out_size) == length && start == start.round() {
            Axis::identity(start as u32, out_size)
        } else {
            Axis::lanczos3(in_size, start, start + length, out_size)
        }
    }

    /// The weights of output pixel `i`, the first for source pixel `taps[i].start`.
    pub fn weights(&self, i: usize) -> &[i16] {
        let taps = &self.taps[i];
        &self.weights[taps.from as usize..(taps.from + taps.len) as usize]
    }

    /// The pixel a pass makes of a weighted sum, as the library rounds and clamps it.
    #[inline]
    pub fn pixel(&self, weighted: i32) -> u8 {
        ((weighted + (1 << (self.precision - 1))) >> self.precision).clamp(0, 255) as u8
    }

    /// The least and the greatest pixel this pass can make where every weighed pixel is in
    /// `[lo, hi]`, for weights summing to between `sum.0` and `sum.1` with positive parts
    /// summing to at most `positive`.
    ///
    /// Why: with weights `k` (positive part P, sum S, so the negative part is P − S) over pixels
    /// in `[lo, hi]`, `Σ k·p` is least with every positively weighed pixel at `lo` and every
    /// negatively weighed one at `hi`: `P·lo − (P − S)·hi = S·hi − P·(hi − lo)`; and greatest
    /// at `S·lo + P·(hi − lo)`. Both grow with S where `hi, lo ≥ 0`, so the smallest and largest
    /// S of a group of output pixels bound them all; P is taken at its largest, which only
    /// widens the bound. Rounding and clamping ([`Axis::pixel`]) keep order, so the bound holds
    /// for the pixels made. On blank paper (`lo = hi`) it is exact: `S·lo` rounded.
    pub fn pixel_bounds(&self, sum: (i32, i32), positive: i32, lo: u8, hi: u8) -> (u8, u8) {
        let (lo, hi) = (i32::from(lo), i32::from(hi));
        let swing = positive * (hi - lo);
        (self.pixel(sum.0 * hi - swing), self.pixel(sum.1 * lo + swing))
    }
}

impl Taps {
    fn new(start: u32, from: u32, weights: &[i16]) -> Taps {
        let positive = weights.iter().map(|&w| i32::from(w).max(0)).sum();
        let sum = weights.iter().map(|&w| i32::from(w)).sum();
        Taps { start, from, len: weights.len() as u32, positive, sum }
    }

    /// One past the last source pixel weighed.
    pub fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// The library's choice of fraction bits for an axis whose largest weight is `largest`.
fn precision_for(largest: f64) -> u8 {
    let mut precision = 0u8;
    for candidate in 0..PRECISION_BITS {
        precision = candidate;
        let doubled = (largest * f64::from(1u32 << (candidate + 1))).round() as i32;
        if doubled >= MAX_WEIGHT {
            break;
        }
    }
    precision
}

/// Lanczos3: sinc(x)·sinc(x/3) on (−3, 3), as the library computes it.
fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.) } else { 0.0 }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}
