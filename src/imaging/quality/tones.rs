//! What the gray page (before the threshold) tells that the 1-bit page cannot: mid-gray areas
//! the threshold will turn into blobs or noise, photo-like tone, and faint line work that the
//! threshold drops. Measured on 8x8 blocks of the print page (its darkest and lightest pixel):
//! at 300 DPI a block is under 0.7 mm, finer than any of these defects, and one pass over the
//! page gives a map 64 times smaller to reason on.

/// Side of a block, in pixels.
pub const BLOCK: usize = 8;

/// The darkest and lightest pixel of every block of a gray page, row after row of blocks.
pub struct Blocks {
    /// Blocks across.
    pub cols: usize,
    /// Blocks down.
    pub rows: usize,
    /// The darkest pixel of each block.
    pub min: Vec<u8>,
    /// The lightest pixel of each block.
    pub max: Vec<u8>,
}

impl Blocks {
    /// The blocks of a gray page `width` x `height` (the last row and column may be partial).
    pub fn of(gray: &[u8], width: usize, height: usize) -> Blocks {
        let (cols, rows) = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
        let (mut min, mut max) = (Vec::with_capacity(cols * rows), Vec::with_capacity(cols * rows));
        let (mut col_min, mut col_max) = (vec![255u8; width], vec![0u8; width]);
        for band in gray.chunks(BLOCK * width.max(1)).take(rows) {
            col_min.fill(255);
            col_max.fill(0);
            // Column-wise over the band first: straight loops over whole rows vectorize.
            for row in band.chunks_exact(width.max(1)) {
                for (lo, &p) in col_min.iter_mut().zip(row) {
                    *lo = (*lo).min(p);
                }
                for (hi, &p) in col_max.iter_mut().zip(row) {
                    *hi = (*hi).max(p);
                }
            }
            for (lo, hi) in col_min.chunks(BLOCK).zip(col_max.chunks(BLOCK)) {
                min.push(lo.iter().copied().min().unwrap_or(255));
                max.push(hi.iter().copied().max().unwrap_or(0));
            }
        }
        Blocks { cols, rows, min, max }
    }

    fn len(&self) -> usize {
        self.min.len()
    }
}

/// What the gray page measures, each a share from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneMeasures {
    /// Share of the page in blocks that are wholly mid-gray: continuous tone, as in a photo.
    pub tone: f64,
    /// Share of the page in blocks with no pixel darker than mid-gray: blank paper.
    pub paper: f64,
    /// Share of the page in mid-gray areas at least three blocks (24 px) across: shading, not
    /// the soft edge of a line.
    pub shading: f64,
    /// Share of the line work that is visibly darker than the paper around it but not dark
    /// enough for the threshold: light or coloured lines that vanish.
    pub ink_lost: f64,
    /// That faint line work, as a share of the page (in blocks).
    pub faint: f64,
}

/// What a gray measurement needs to know.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneLimits {
    /// The threshold level: darker pixels become ink.
    pub level: u8,
    /// The darkest value counted as mid-gray.
    pub mid_low: u8,
    /// The lightest value counted as mid-gray.
    pub mid_high: u8,
    /// How much darker than the paper nearby a block must be to count as line work.
    pub contrast: u8,
}

/// How far (in blocks) to look for the paper around a faint line: 2 blocks, up to 24 px, so
/// lines up to that width are measured against real paper and slow shading is not.
pub const PAPER_REACH: usize = 2;

/// Measures tone, shading and lost ink on the blocks of a gray page.
pub fn measure(blocks: &Blocks, limits: ToneLimits) -> ToneMeasures {
    let (cols, rows) = (blocks.cols, blocks.rows);
    if blocks.len() == 0 {
        return ToneMeasures { tone: 0.0, paper: 0.0, shading: 0.0, ink_lost: 0.0, faint: 0.0 };
    }
    let mid: Vec<bool> = blocks
        .min
        .iter()
        .zip(&blocks.max)
        .map(|(&lo, &hi)| lo >= limits.mid_low && hi <= limits.mid_high)
        .collect();
    let kept: Vec<bool> = blocks.min.iter().map(|&lo| lo < limits.level).collect();
    // Mid-gray with every neighbour mid-gray too; near (or on) a block of kept ink.
    let wide_mid = neighbourhood(&mid, cols, rows, true);
    let near_kept = neighbourhood(&kept, cols, rows, false);
    let paper = max_filter(&blocks.min, cols, rows, PAPER_REACH);
    let paper_count = blocks.min.iter().filter(|&&lo| lo > limits.mid_high).count();
    let tone = mid.iter().filter(|&&m| m).count();
    let shading = wide_mid.iter().filter(|&&m| m).count();
    let kept_count = kept.iter().filter(|&&k| k).count();
    // Faint ink away from any kept ink (the soft rim of a black line is not lost).
    let lost = (0..blocks.len())
        .filter(|&i| !near_kept[i] && paper[i].saturating_sub(blocks.min[i]) >= limits.contrast)
        .count();
    let total = blocks.len() as f64;
    let line_work = lost + kept_count;
    ToneMeasures {
        tone: tone as f64 / total,
        paper: paper_count as f64 / total,
        shading: shading as f64 / total,
        ink_lost: if line_work == 0 { 0.0 } else { lost as f64 / line_work as f64 },
        faint: lost as f64 / total,
    }
}

/// For every cell, whether all (`all`) or any of the cells in its 3x3 neighbourhood (within
/// the map) are set, separably.
pub(crate) fn neighbourhood(cells: &[bool], cols: usize, rows: usize, all: bool) -> Vec<bool> {
    let join = |a: bool, b: bool| if all { a && b } else { a || b };
    let mut across = vec![false; cells.len()];
    for (out, row) in across.chunks_exact_mut(cols).zip(cells.chunks_exact(cols)) {
        for x in 0..cols {
            let left = if x > 0 { row[x - 1] } else { row[x] };
            let right = if x + 1 < cols { row[x + 1] } else { row[x] };
            out[x] = join(join(left, row[x]), right);
        }
    }
    let mut out = vec![false; cells.len()];
    for y in 0..rows {
        let (up, down) = (y.saturating_sub(1), (y + 1).min(rows - 1));
        for x in 0..cols {
            out[y * cols + x] =
                join(join(across[up * cols + x], across[y * cols + x]), across[down * cols + x]);
        }
    }
    out
}

/// The largest value within `reach` cells (a square window), separably.
pub(crate) fn max_filter(cells: &[u8], cols: usize, rows: usize, reach: usize) -> Vec<u8> {
    let mut across = vec![0u8; cells.len()];
    for y in 0..rows {
        let row = &cells[y * cols..(y + 1) * cols];
        for x in 0..cols {
            across[y * cols + x] =
                row[x.saturating_sub(reach)..=(x + reach).min(cols - 1)].iter().copied().max().unwrap_or(0);
        }
    }
    let mut out = vec![0u8; cells.len()];
    for y in 0..rows {
        for x in 0..cols {
            out[y * cols + x] = (y.saturating_sub(reach)..=(y + reach).min(rows - 1))
                .map(|yy| across[yy * cols + x])
                .max()
                .unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ToneLimits = ToneLimits { level: 128, mid_low: 40, mid_high: 200, contrast: 24 };

    fn page(width: usize, height: usize, paint: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..height).flat_map(|y| (0..width).map(move |x| (x, y))).map(|(x, y)| paint(x, y)).collect()
    }

    #[test]
    fn blocks_take_the_darkest_and_lightest_pixel_with_partial_edges() {
        let gray = page(20, 10, |x, y| (x * 10 + y) as u8);
        let blocks = Blocks::of(&gray, 20, 10);
        assert_eq!((blocks.cols, blocks.rows), (3, 2));
        assert_eq!(blocks.min, [0, 80, 160, 8, 88, 168]);
        assert_eq!(blocks.max, [77, 157, 197, 79, 159, 199]);
    }

    #[test]
    fn black_lines_on_paper_have_no_tone_and_lose_nothing() {
        // Lines 12 px wide with 4 px soft edges, every 64 px.
        let gray = page(512, 512, |x, _| match x % 64 {
            0..12 => 10,
            12..16 => 60 + (x % 64 - 12) as u8 * 45,
            _ => 250,
        });
        let m = measure(&Blocks::of(&gray, 512, 512), LIMITS);
        assert_eq!((m.tone, m.shading, m.ink_lost), (0.0, 0.0, 0.0));
    }

    #[test]
    fn a_gray_patch_is_shading_and_a_light_line_is_lost_ink() {
        let patch =
            page(256, 256, |x, y| if (64..192).contains(&x) && (64..192).contains(&y) { 120 } else { 250 });
        let m = measure(&Blocks::of(&patch, 256, 256), LIMITS);
        assert!((m.tone - 0.25).abs() < 1e-9, "{m:?}");
        assert!(
            (m.shading - 14.0 * 14.0 / 1024.0).abs() < 1e-9,
            "the rim of the patch is not shading: {m:?}"
        );
        let light = page(256, 256, |x, _| if (100..110).contains(&x) { 200 } else { 250 });
        let m = measure(&Blocks::of(&light, 256, 256), LIMITS);
        assert_eq!(m.ink_lost, 1.0, "{m:?}");
        assert_eq!(m.shading, 0.0, "a line is not shading");
    }
}
