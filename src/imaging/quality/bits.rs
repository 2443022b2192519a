//! The ink of a 1-bit page in 64-bit words, and the morphology the measurements and the cleanup
//! need. Working on words, one operation touches 64 pixels, so opening or closing a whole
//! 2550x3300 page costs well under a millisecond.

use crate::engine::media::Raster;
use crate::imaging::threshold::pack_row;

/// Which pixels carry ink: bit 1 = black, rows of `stride` words, pixel `x` of a row in word
/// `x / 64` at bit `63 - x % 64` (most significant first, like the PNG bytes). Bits past the
/// width are always 0, so they read as paper.
#[derive(Clone, PartialEq, Eq)]
pub struct InkMap {
    width: usize,
    height: usize,
    stride: usize,
    words: Vec<u64>,
}

impl std::fmt::Debug for InkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InkMap({}x{}, {} ink)", self.width, self.height, self.count())
    }
}

impl InkMap {
    /// A page of paper.
    pub fn blank(width: usize, height: usize) -> Self {
        let stride = width.div_ceil(64);
        InkMap { width, height, stride, words: vec![0; stride * height] }
    }

    /// Reads packed bilevel rows (MSB first, 1 = white, `Raster::bilevel_stride` bytes a row).
    pub fn from_bilevel(width: u32, height: u32, packed: &[u8]) -> Self {
        let mut map = InkMap::blank(width as usize, height as usize);
        let bytes = Raster::bilevel_stride(width);
        for (row, src) in packed.chunks_exact(bytes.max(1)).take(map.height).enumerate() {
            map.set_row_from_white_bytes(row, src);
        }
        map
    }

    /// Thresholds gray rows the way the `threshold` stage does: below `level` is ink.
    pub fn from_gray(width: u32, height: u32, gray: &[u8], level: u8) -> Self {
        let mut map = InkMap::blank(width as usize, height as usize);
        let mut bytes = vec![0u8; Raster::bilevel_stride(width)];
        for (row, src) in gray.chunks_exact(map.width.max(1)).take(map.height).enumerate() {
            pack_row(src, level, &mut bytes);
            map.set_row_from_white_bytes(row, &bytes);
        }
        map
    }

    /// Sets row `row` from MSB-first bytes where 1 is white.
    fn set_row_from_white_bytes(&mut self, row: usize, bytes: &[u8]) {
        let dst = &mut self.words[row * self.stride..(row + 1) * self.stride];
        for (word, chunk) in dst.iter_mut().zip(bytes.chunks(8)) {
            let mut be = [0xFFu8; 8];
            be[..chunk.len()].copy_from_slice(chunk);
            *word = !u64::from_be_bytes(be);
        }
        self.clear_padding_of(row);
    }

    /// Packed bilevel rows again (1 = white, padding bits black as the threshold writes them).
    pub fn to_bilevel(&self) -> Vec<u8> {
        let bytes = Raster::bilevel_stride(self.width as u32);
        let mut out = Vec::with_capacity(bytes * self.height);
        let tail_bits = self.width % 8;
        for row in 0..self.height {
            let start = out.len();
            for word in self.row(row) {
                out.extend_from_slice(&(!word).to_be_bytes());
            }
            out.truncate(start + bytes);
            if tail_bits != 0
                && let Some(last) = out.last_mut()
            {
                *last &= !(0xFFu8 >> tail_bits);
            }
        }
        out
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The words of one row.
    pub fn row(&self, row: usize) -> &[u64] {
        &self.words[row * self.stride..(row + 1) * self.stride]
    }

    /// True when pixel (x, y) is ink.
    pub fn get(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.words[y * self.stride + x / 64] >> (63 - x % 64) & 1 == 1
    }

    /// Sets pixels `start..end` of row `y` to ink (`true`) or paper.
    pub fn fill_run(&mut self, y: usize, start: usize, end: usize, ink: bool) {
        let end = end.min(self.width);
        let mut x = start;
        while x < end {
            let (word, bit) = (x / 64, x % 64);
            let take = (64 - bit).min(end - x);
            let mask = (u64::MAX >> bit) & !(u64::MAX.checked_shr((bit + take) as u32).unwrap_or(0));
            let w = &mut self.words[y * self.stride + word];
            if ink {
                *w |= mask;
            } else {
                *w &= !mask;
            }
            x += take;
        }
    }

    /// How many pixels are ink.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many pixels are ink in `self` and not in `other` (same size).
    pub fn count_minus(&self, other: &InkMap) -> u64 {
        self.words.iter().zip(&other.words).map(|(a, b)| u64::from((a & !b).count_ones())).sum()
    }

    /// Pixel edges between ink and paper, counting the page border as paper: about 4/pi times
    /// the length of the outlines.
    pub fn boundary_edges(&self) -> u64 {
        let mut edges = 0u64;
        let empty = vec![0u64; self.stride];
        for y in 0..self.height {
            let row = self.row(y);
            let below = if y + 1 < self.height { self.row(y + 1) } else { &empty };
            for i in 0..self.stride {
                let left = shift_in_left(row, i);
                edges += u64::from((row[i] ^ left).count_ones());
                edges += u64::from((row[i] ^ below[i]).count_ones());
            }
            // The right border when the last word is full (else the padding bits count it), and
            // the top row's upper edges.
            if self.width > 0 && self.width.is_multiple_of(64) && self.get(self.width - 1, y) {
                edges += 1;
            }
            if y == 0 {
                edges += row.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
            }
        }
        edges
    }

    /// Crossings of the line work thinner than `limit` pixels, and all crossings: every run of
    /// ink along a row or a column is one crossing of a stroke, about as wide as the stroke
    /// (up to 1.4 times, on a diagonal). A stroke crosses as many rows and columns as it is
    /// long, so this weighs strokes by length, not by area as solid fills would.
    pub fn crossings(&self, limit: usize) -> (u64, u64) {
        let (mut short, mut all) = (0u64, 0u64);
        let limit = limit.clamp(1, 64);
        let empty = vec![0u64; self.stride];
        for y in 0..self.height {
            let row = self.row(y);
            // Along the row: a run starts where ink follows paper; it is long when the next
            // `limit` pixels are all ink.
            for i in 0..self.stride {
                let starts = row[i] & !shift_in_left(row, i);
                let long = (1..limit).fold(row[i], |acc, k| acc & shifted_by(row, i, k));
                all += u64::from(starts.count_ones());
                short += u64::from((starts & !long).count_ones());
            }
            // Down the column, the same with the rows below.
            let above = if y > 0 { self.row(y - 1) } else { &empty };
            for i in 0..self.stride {
                let starts = row[i] & !above[i];
                let long = (1..limit).fold(row[i], |acc, k| {
                    acc & if y + k < self.height { self.words[(y + k) * self.stride + i] } else { 0 }
                });
                all += u64::from(starts.count_ones());
                short += u64::from((starts & !long).count_ones());
            }
        }
        (short, all)
    }

    fn clear_padding_of(&mut self, row: usize) {
        let tail = self.width % 64;
        if tail != 0 {
            self.words[row * self.stride + self.stride - 1] &= !(u64::MAX >> tail);
        }
    }

    fn clear_padding(&mut self) {
        for row in 0..self.height {
            self.clear_padding_of(row);
        }
    }

    /// One step of erosion (`grow = false`) or dilation (`grow = true`) by a 3x3 square
    /// (`square`) or a plus of radius 1. Outside the page is paper.
    fn step(&self, grow: bool, square: bool) -> InkMap {
        let combine = |a: u64, b: u64| if grow { a | b } else { a & b };
        // Horizontal pass: each pixel with its left and right neighbours.
        let mut across = self.clone();
        for y in 0..self.height {
            let row = self.row(y);
            let out = &mut across.words[y * self.stride..(y + 1) * self.stride];
            for (i, o) in out.iter_mut().enumerate() {
                *o = combine(combine(row[i], shift_in_left(row, i)), shift_in_right(row, i));
            }
        }
        across.clear_padding();
        // Vertical pass over the horizontal result (square) or the original (plus).
        let source = if square { &across } else { self };
        let mut out = InkMap::blank(self.width, self.height);
        for y in 0..self.height {
            for i in 0..self.stride {
                let up = if y > 0 { source.words[(y - 1) * self.stride + i] } else { 0 };
                let down = if y + 1 < self.height { source.words[(y + 1) * self.stride + i] } else { 0 };
                let v = combine(combine(source.words[y * self.stride + i], up), down);
                out.words[y * self.stride + i] =
                    if square { v } else { combine(v, across.words[y * self.stride + i]) };
            }
        }
        out
    }

    /// Erosion by a near-round probe `2 * radius + 1` pixels across (alternating plus and
    /// square steps, an octagon): what is left is the ink at least that thick.
    pub fn erode(&self, radius: usize) -> InkMap {
        (0..radius).fold(self.clone(), |map, i| map.step(false, i % 2 == 1))
    }

    /// Dilation by the same probe as [`InkMap::erode`].
    pub fn dilate(&self, radius: usize) -> InkMap {
        (0..radius).fold(self.clone(), |map, i| map.step(true, i % 2 == 1))
    }

    /// Opening: the ink covered by the probe placed wholly on ink, which drops every stroke
    /// thinner than `2 * radius + 1` pixels and keeps the rest as it was.
    pub fn open(&self, radius: usize) -> InkMap {
        self.erode(radius).dilate_mirrored(radius)
    }

    /// Closing: fills every gap and notch narrower than `2 * radius + 1` pixels.
    pub fn close(&self, radius: usize) -> InkMap {
        self.dilate(radius).erode_mirrored(radius)
    }

    /// Dilation with the steps in reverse order, so `erode` then this is an exact opening.
    fn dilate_mirrored(&self, radius: usize) -> InkMap {
        (0..radius).rev().fold(self.clone(), |map, i| map.step(true, i % 2 == 1))
    }

    /// Erosion with the steps in reverse order, so `dilate` then this is an exact closing.
    fn erode_mirrored(&self, radius: usize) -> InkMap {
        (0..radius).rev().fold(self.clone(), |map, i| map.step(false, i % 2 == 1))
    }

    /// A map with one pixel per 8x8 block, ink where the whole block is ink: the scale at which
    /// solid black areas are measured, since any probe wider than the boldest line is costly
    /// pixel by pixel. Partial blocks at the right and bottom edge are never full.
    pub fn full_blocks(&self) -> InkMap {
        let mut out = InkMap::blank(self.width / 8, self.height / 8);
        let mut band = vec![0u64; self.stride];
        for by in 0..out.height {
            band.fill(u64::MAX);
            for y in by * 8..by * 8 + 8 {
                for (b, w) in band.iter_mut().zip(self.row(y)) {
                    *b &= w;
                }
            }
            for bx in 0..out.width {
                if (band[bx / 8] >> (56 - 8 * (bx % 8))) & 0xFF == 0xFF {
                    out.fill_run(by, bx, bx + 1, true);
                }
            }
        }
        out
    }
}

/// Word `i` of `row` seen one pixel to the right: each bit holds the pixel on its left
/// (paper left of the first column).
#[inline]
fn shift_in_left(row: &[u64], i: usize) -> u64 {
    let carry = if i > 0 { row[i - 1] << 63 } else { 0 };
    (row[i] >> 1) | carry
}

/// Word `i` of `row` seen `k` pixels to the left (0 < k < 64): each bit holds the pixel `k`
/// to its right.
#[inline]
fn shifted_by(row: &[u64], i: usize, k: usize) -> u64 {
    let carry = if i + 1 < row.len() { row[i + 1] >> (64 - k) } else { 0 };
    (row[i] << k) | carry
}

/// Word `i` of `row` seen one pixel to the left: each bit holds the pixel on its right.
#[inline]
fn shift_in_right(row: &[u64], i: usize) -> u64 {
    let carry = if i + 1 < row.len() { row[i + 1] >> 63 } else { 0 };
    (row[i] << 1) | carry
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A map from rows of `#` (ink) and `.` (paper).
    pub(crate) fn map(rows: &[&str]) -> InkMap {
        let mut m = InkMap::blank(rows[0].len(), rows.len());
        for (y, row) in rows.iter().enumerate() {
            for (x, c) in row.chars().enumerate() {
                if c == '#' {
                    m.fill_run(y, x, x + 1, true);
                }
            }
        }
        m
    }

    fn show(m: &InkMap) -> Vec<String> {
        (0..m.height())
            .map(|y| (0..m.width()).map(|x| if m.get(x, y) { '#' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn bilevel_round_trips_at_odd_widths() {
        let mut rng = fastrand::Rng::with_seed(11);
        for width in [1u32, 7, 8, 9, 63, 64, 65, 130, 2550] {
            let height = 5u32;
            let gray: Vec<u8> = (0..width * height).map(|_| rng.u8(..)).collect();
            let map = InkMap::from_gray(width, height, &gray, 128);
            for y in 0..height as usize {
                for x in 0..width as usize {
                    assert_eq!(map.get(x, y), gray[y * width as usize + x] < 128, "{width}: {x},{y}");
                }
            }
            let raster = crate::imaging::threshold::threshold(
                &Raster::new(width, height, None, crate::engine::media::Pixels::Gray(gray.clone())),
                128,
            );
            let crate::engine::media::Pixels::Bilevel(packed) = &raster.pixels else { panic!() };
            assert_eq!(&map.to_bilevel(), packed, "width {width}: same bytes as the threshold stage");
            assert_eq!(InkMap::from_bilevel(width, height, packed), map);
            let ink = gray.iter().filter(|&&g| g < 128).count() as u64;
            assert_eq!(map.count(), ink);
        }
    }

    #[test]
    fn runs_fill_across_words() {
        let mut m = InkMap::blank(200, 1);
        m.fill_run(0, 60, 140, true);
        assert_eq!(m.count(), 80);
        assert!(!m.get(59, 0) && m.get(60, 0) && m.get(139, 0) && !m.get(140, 0));
        m.fill_run(0, 62, 66, false);
        assert_eq!(m.count(), 76);
        m.fill_run(0, 190, 500, true);
        assert_eq!(m.count(), 86, "clipped at the width");
    }

    #[test]
    fn opening_drops_thin_strokes_and_keeps_thick_ones() {
        let m = map(&["..........", ".##....#..", ".###...#..", ".###...#..", ".###...#..", ".........."]);
        assert_eq!(
            show(&m.open(1)),
            ["..........", "..#.......", ".###......", ".###......", "..#.......", ".........."]
        );
        assert_eq!(m.erode(1).count(), 2);
    }

    #[test]
    fn closing_bridges_a_gap_and_keeps_the_rest() {
        let line = |gap: usize| {
            let row = format!(".####{}####.", ".".repeat(gap));
            let blank = ".".repeat(row.len());
            map(&[&blank, &row, &row, &row, &blank])
        };
        for gap in [1, 2] {
            let m = line(gap);
            let closed = m.close(1);
            assert!((5..5 + gap).all(|x| closed.get(x, 2)), "a {gap}-pixel gap is bridged");
            assert_eq!(closed.count(), m.count() + gap as u64, "nothing else changes");
        }
        let wide = line(3);
        assert_eq!(wide.close(1), wide, "a three-pixel gap needs radius 2");
        assert!(wide.close(2).get(6, 2));
    }

    #[test]
    fn full_blocks_need_every_pixel() {
        let mut m = InkMap::blank(150, 20);
        for y in 0..16 {
            m.fill_run(y, 8, 140, true);
        }
        m.fill_run(3, 70, 71, false);
        let blocks = m.full_blocks();
        assert_eq!((blocks.width(), blocks.height()), (18, 2));
        let row: String = (0..18).map(|x| if blocks.get(x, 0) { '#' } else { '.' }).collect();
        assert_eq!(row, ".#######.########.");
        assert!(blocks.get(8, 1), "the hole is only in the top band");
    }

    #[test]
    fn crossings_count_runs_both_ways() {
        let m = map(&[".........", ".##...###", ".##...###", ".##...###", "........."]);
        // Rows: three runs of 2 and three of 3; columns: two runs of 3 and three of 3.
        assert_eq!(m.crossings(3), (3, 11));
        assert_eq!(m.crossings(4), (11, 11));
        let mut wide = InkMap::blank(130, 1);
        wide.fill_run(0, 62, 67, true);
        assert_eq!(wide.crossings(5), (5, 6), "a run across a word boundary is one long run");
    }

    #[test]
    fn boundary_edges_of_a_square() {
        let m = map(&[".....", ".###.", ".###.", ".###.", "....."]);
        assert_eq!(m.boundary_edges(), 12);
        let corner = map(&["##", "#."]);
        assert_eq!(corner.boundary_edges(), 8, "the page border counts as paper");
    }
}
