//! Connected components of a 1-bit page from its run-length rows: each row becomes a list of
//! runs read off the packed words (a leading-zeros count per run, not a test per pixel), runs
//! touching runs of the row above are joined in a union-find, and a component's area is the
//! sum of its runs. A page of 8.4 million pixels has a few hundred thousand runs.

use super::bits::InkMap;

/// Which pixels the components are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Ink, joined through the 8 neighbours (a diagonal stroke is one piece).
    Ink,
    /// Paper, joined through the 4 neighbours only, as a bucket fill spreads: a diagonal
    /// stroke of ink is a wall.
    Paper,
}

/// The runs of one colour on a page, row by row.
pub struct Runs {
    /// Start (inclusive) and end (exclusive) column of every run, row after row.
    spans: Vec<(u32, u32)>,
    /// Index in `spans` of each row's first run; one more entry than rows.
    rows: Vec<u32>,
}

impl Runs {
    /// The runs of `colour` in `map`.
    pub fn of(map: &InkMap, colour: Colour) -> Runs {
        let mut spans = Vec::new();
        let mut rows = Vec::with_capacity(map.height() + 1);
        for y in 0..map.height() {
            rows.push(spans.len() as u32);
            let first = spans.len();
            ink_runs(map.row(y), map.width(), &mut spans);
            if colour == Colour::Paper {
                invert_runs(&mut spans, first, map.width() as u32);
            }
        }
        rows.push(spans.len() as u32);
        Runs { spans, rows }
    }

    /// The runs of row `y`.
    pub fn row(&self, y: usize) -> &[(u32, u32)] {
        &self.spans[self.rows[y] as usize..self.rows[y + 1] as usize]
    }

    /// Index of the first run of row `y`.
    pub fn first(&self, y: usize) -> usize {
        self.rows[y] as usize
    }

    /// How many rows.
    pub fn height(&self) -> usize {
        self.rows.len() - 1
    }
}

/// Appends the ink runs of one row of words to `spans`.
fn ink_runs(row: &[u64], width: usize, spans: &mut Vec<(u32, u32)>) {
    let mut inside = false;
    let mut start = 0u32;
    for (i, &word) in row.iter().enumerate() {
        let base = (i * 64) as u32;
        // Bits that differ from the state we are in mark the next change.
        let mut pending = if inside { !word } else { word };
        let mut from = 0u32;
        while from < 64 {
            let masked = pending & (u64::MAX >> from);
            if masked == 0 {
                break;
            }
            let at = masked.leading_zeros();
            if inside {
                spans.push((start, base + at));
            } else {
                start = base + at;
            }
            inside = !inside;
            pending = !pending;
            from = at;
        }
    }
    if inside {
        spans.push((start, width as u32));
    }
}

/// Turns the ink runs `spans[first..]` of a row `width` wide into its paper runs.
fn invert_runs(spans: &mut Vec<(u32, u32)>, first: usize, width: u32) {
    let ink: Vec<(u32, u32)> = spans.drain(first..).collect();
    let mut at = 0;
    for (start, end) in ink {
        if start > at {
            spans.push((at, start));
        }
        at = end;
    }
    if at < width {
        spans.push((at, width));
    }
}

/// The connected components of a set of runs.
pub struct Components {
    /// The component of each run (an index into the other fields).
    pub of_run: Vec<u32>,
    /// Pixels in each component.
    pub area: Vec<u64>,
    /// True when the component reaches the edge of the page.
    pub on_border: Vec<bool>,
}

impl Components {
    /// Labels `runs` (of `colour`, on a page `width` wide).
    pub fn label(runs: &Runs, colour: Colour, width: usize) -> Components {
        let slack = u32::from(colour == Colour::Ink);
        let mut parent: Vec<u32> = (0..runs.spans.len() as u32).collect();
        for y in 1..runs.height() {
            let (above, here) = (runs.row(y - 1), runs.row(y));
            let (base_above, base_here) = (runs.first(y - 1), runs.first(y));
            let (mut i, mut j) = (0, 0);
            while i < above.len() && j < here.len() {
                let (a, b) = (above[i], here[j]);
                // Ink touches diagonally too: the runs may be one pixel apart.
                if a.0 < b.1 + slack && b.0 < a.1 + slack {
                    union(&mut parent, (base_above + i) as u32, (base_here + j) as u32);
                }
                if a.1 < b.1 {
                    i += 1;
                } else {
                    j += 1;
                }
            }
        }
        let mut of_run = vec![0u32; parent.len()];
        let mut id_of_root = vec![u32::MAX; parent.len()];
        let (mut area, mut on_border) = (Vec::new(), Vec::new());
        let last_row = runs.height().saturating_sub(1);
        for y in 0..runs.height() {
            for (k, &(start, end)) in runs.row(y).iter().enumerate() {
                let run = runs.first(y) + k;
                let root = find(&mut parent, run as u32) as usize;
                if id_of_root[root] == u32::MAX {
                    id_of_root[root] = area.len() as u32;
                    area.push(0);
                    on_border.push(false);
                }
                let id = id_of_root[root];
                of_run[run] = id;
                area[id as usize] += u64::from(end - start);
                if y == 0 || y == last_row || start == 0 || end as usize == width {
                    on_border[id as usize] = true;
                }
            }
        }
        Components { of_run, area, on_border }
    }

    /// How many components.
    pub fn len(&self) -> usize {
        self.area.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.area.is_empty()
    }
}

/// The root of `x`, halving the path on the way.
fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grand = parent[parent[x as usize] as usize];
        parent[x as usize] = grand;
        x = grand;
    }
    x
}

/// Joins the sets of `a` and `b` under the smaller root.
fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Paints every run of the components `chosen` picks with `ink` (true) or paper: how the
/// cleanup removes specks and fills pin-holes. Returns the pixels changed.
pub fn paint(
    map: &mut InkMap,
    runs: &Runs,
    components: &Components,
    ink: bool,
    chosen: impl Fn(usize) -> bool,
) -> u64 {
    let mut changed = 0;
    for y in 0..runs.height() {
        for (k, &(start, end)) in runs.row(y).iter().enumerate() {
            if chosen(components.of_run[runs.first(y) + k] as usize) {
                map.fill_run(y, start as usize, end as usize, ink);
                changed += u64::from(end - start);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::quality::bits::tests::map;

    /// Components by flood fill, one pixel at a time: the reference the runs must match.
    fn flood_areas(m: &InkMap, colour: Colour) -> Vec<u64> {
        let (w, h) = (m.width(), m.height());
        let want = colour == Colour::Ink;
        let mut seen = vec![false; w * h];
        let mut areas = Vec::new();
        for y0 in 0..h {
            for x0 in 0..w {
                if seen[y0 * w + x0] || m.get(x0, y0) != want {
                    continue;
                }
                let mut stack = vec![(x0, y0)];
                seen[y0 * w + x0] = true;
                let mut area = 0;
                while let Some((x, y)) = stack.pop() {
                    area += 1;
                    for (dx, dy) in
                        [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
                    {
                        if colour == Colour::Paper && dx != 0 && dy != 0 {
                            continue;
                        }
                        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            continue;
                        }
                        let (nx, ny) = (nx as usize, ny as usize);
                        if !seen[ny * w + nx] && m.get(nx, ny) == want {
                            seen[ny * w + nx] = true;
                            stack.push((nx, ny));
                        }
                    }
                }
                areas.push(area);
            }
        }
        areas.sort_unstable();
        areas
    }

    #[test]
    fn random_pages_match_a_flood_fill() {
        let mut rng = fastrand::Rng::with_seed(5);
        for (width, height, density) in [(1, 1, 50), (70, 9, 30), (130, 40, 45), (64, 64, 55), (200, 30, 70)]
        {
            let mut m = InkMap::blank(width, height);
            for y in 0..height {
                for x in 0..width {
                    if rng.u32(..100) < density {
                        m.fill_run(y, x, x + 1, true);
                    }
                }
            }
            for colour in [Colour::Ink, Colour::Paper] {
                let runs = Runs::of(&m, colour);
                let components = Components::label(&runs, colour, width);
                let mut areas = components.area.clone();
                areas.sort_unstable();
                assert_eq!(areas, flood_areas(&m, colour), "{width}x{height} {density}% {colour:?}");
            }
        }
    }

    #[test]
    fn diagonals_join_ink_but_not_paper() {
        let m = map(&["#.", ".#"]);
        let ink = Components::label(&Runs::of(&m, Colour::Ink), Colour::Ink, 2);
        assert_eq!(ink.len(), 1);
        let paper = Components::label(&Runs::of(&m, Colour::Paper), Colour::Paper, 2);
        assert_eq!(paper.len(), 2);
    }

    #[test]
    fn a_ring_encloses_one_region_off_the_border() {
        let m = map(&[".......", ".#####.", ".#...#.", ".#####.", "......."]);
        let runs = Runs::of(&m, Colour::Paper);
        let paper = Components::label(&runs, Colour::Paper, 7);
        assert_eq!(paper.len(), 2);
        let inside: Vec<u64> =
            (0..paper.len()).filter(|&c| !paper.on_border[c]).map(|c| paper.area[c]).collect();
        assert_eq!(inside, [3]);
        let mut filled = m.clone();
        let changed = paint(&mut filled, &runs, &paper, true, |c| !paper.on_border[c]);
        assert_eq!((changed, filled.count()), (3, m.count() + 3));
    }
}
