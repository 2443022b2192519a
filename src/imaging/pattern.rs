//! The embedded offline generator: deterministic coloring-book line art (mandalas, geometric
//! tilings, botanical scenes) so a whole pipeline runs without an API key, in tests and in
//! benchmarks.
//!
//! Everything is drawn with one primitive, an anti-aliased stroke along a polyline (the union
//! of round-capped segments, so joins are clean), plus "erase the inside of a closed shape".
//! Drawing shapes back to front with erase-then-stroke hides what lies beneath, the way an
//! illustrator overlaps petals, and keeps every region closed: every stroke is either a closed
//! curve or a line whose ends lie on other strokes.

use std::f32::consts::{PI, TAU};

use crate::engine::media::{Pixels, Raster};

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

/// A defect [`spoil`] gives a page, the kinds a model's bad output has, so the offline book
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

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pt {
    x: f32,
    y: f32,
}

fn pt(x: f32, y: f32) -> Pt {
    Pt { x, y }
}

impl Pt {
    /// The point at `angle` (radians, clockwise on screen from +x) and distance `r` from `self`.
    fn polar(self, angle: f32, r: f32) -> Pt {
        pt(self.x + r * angle.cos(), self.y + r * angle.sin())
    }

    fn lerp(self, to: Pt, t: f32) -> Pt {
        pt(self.x + (to.x - self.x) * t, self.y + (to.y - self.y) * t)
    }

    fn dist(self, to: Pt) -> f32 {
        (to.x - self.x).hypot(to.y - self.y)
    }
}

/// Longest piece a segment is cut into before rasterising, so a long diagonal never scans a
/// huge bounding box.
const MAX_PIECE: f32 = 12.0;

/// Ink coverage per pixel (0 = white paper, 1 = black) with the drawing operations.
struct Canvas {
    width: usize,
    height: usize,
    ink: Vec<f32>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width as usize, height as usize);
        Canvas { width, height, ink: vec![0.0; width * height] }
    }

    /// Strokes a polyline `width` pixels wide with round caps and joins.
    fn stroke(&mut self, points: &[Pt], closed: bool, width: f32) {
        let half = width / 2.0;
        let closing = if closed && points.len() > 2 { points.first().copied() } else { None };
        for (a, b) in points.iter().copied().zip(points.iter().copied().skip(1).chain(closing)) {
            let pieces = (a.dist(b) / MAX_PIECE).ceil().max(1.0);
            for i in 0..pieces as usize {
                let t0 = i as f32 / pieces;
                let t1 = (i + 1) as f32 / pieces;
                self.segment(a.lerp(b, t0), a.lerp(b, t1), half);
            }
        }
    }

    /// Adds the coverage of one round-capped segment: the pixel's distance to the segment
    /// against the half width, with a one-pixel linear ramp for anti-aliasing.
    fn segment(&mut self, a: Pt, b: Pt, half: f32) {
        let reach = half + 0.5;
        let x0 = (a.x.min(b.x) - reach).floor().max(0.0) as usize;
        let y0 = (a.y.min(b.y) - reach).floor().max(0.0) as usize;
        let x1 = ((a.x.max(b.x) + reach).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((a.y.max(b.y) + reach).ceil().max(0.0) as usize).min(self.height);
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for y in y0..y1 {
            let py = y as f32 + 0.5 - a.y;
            let row = &mut self.ink[y * self.width..(y + 1) * self.width];
            for (x, ink) in row.iter_mut().enumerate().take(x1).skip(x0) {
                let px = x as f32 + 0.5 - a.x;
                let t = ((px * dx + py * dy) / len2).clamp(0.0, 1.0);
                let (ex, ey) = (px - t * dx, py - t * dy);
                let d2 = ex * ex + ey * ey;
                if d2 < reach * reach {
                    let coverage = (reach - d2.sqrt()).min(1.0);
                    if coverage > *ink {
                        *ink = coverage;
                    }
                }
            }
        }
    }

    /// Clears the ink inside a closed polygon (even-odd rule on pixel centres).
    fn erase(&mut self, points: &[Pt]) {
        let (mut top, mut bottom) = (f32::MAX, f32::MIN);
        for p in points {
            top = top.min(p.y);
            bottom = bottom.max(p.y);
        }
        let y0 = (top - 0.5).ceil().max(0.0) as usize;
        let y1 = ((bottom - 0.5).floor() + 1.0).clamp(0.0, self.height as f32) as usize;
        let mut crossings = Vec::new();
        for y in y0..y1 {
            let py = y as f32 + 0.5;
            crossings.clear();
            for (i, a) in points.iter().enumerate() {
                let b = points[(i + 1) % points.len()];
                if (a.y <= py) != (b.y <= py) {
                    crossings.push(a.x + (py - a.y) / (b.y - a.y) * (b.x - a.x));
                }
            }
            crossings.sort_by(f32::total_cmp);
            for pair in crossings.chunks_exact(2) {
                let x0 = (pair[0] - 0.5).ceil().clamp(0.0, self.width as f32) as usize;
                let x1 = ((pair[1] - 0.5).floor() + 1.0).clamp(0.0, self.width as f32) as usize;
                if x0 < x1 {
                    self.ink[y * self.width + x0..y * self.width + x1].fill(0.0);
                }
            }
        }
    }

    /// Draws a closed shape over whatever lies beneath it.
    fn shape(&mut self, points: &[Pt], width: f32) {
        self.erase(points);
        self.stroke(points, true, width);
    }

    /// Clears everything outside a rectangle, so tilings and fans can overrun the frame.
    fn erase_outside(&mut self, rect: Rect) {
        let inside = |v: usize, lo: f32, hi: f32| (v as f32 + 0.5) > lo && (v as f32 + 0.5) < hi;
        for y in 0..self.height {
            let row = &mut self.ink[y * self.width..(y + 1) * self.width];
            if !inside(y, rect.top, rect.bottom) {
                row.fill(0.0);
                continue;
            }
            for (x, ink) in row.iter_mut().enumerate() {
                if !inside(x, rect.left, rect.right) {
                    *ink = 0.0;
                }
            }
        }
    }

    /// True when no ink lies within `r` of `c` (and the disc is on the canvas).
    fn is_blank(&self, c: Pt, r: f32) -> bool {
        if c.x - r < 0.0 || c.y - r < 0.0 || c.x + r >= self.width as f32 || c.y + r >= self.height as f32 {
            return false;
        }
        let (x0, x1) = ((c.x - r) as usize, (c.x + r) as usize);
        (((c.y - r) as usize)..=((c.y + r) as usize)).all(|y| {
            (x0..=x1).all(|x| {
                pt(x as f32 + 0.5, y as f32 + 0.5).dist(c) > r || self.ink[y * self.width + x] <= 0.0
            })
        })
    }

    fn into_raster(self) -> Raster {
        let mut rgb = Vec::with_capacity(self.ink.len() * 3);
        for ink in self.ink {
            let v = (255.0 * (1.0 - ink) + 0.5) as u8;
            rgb.extend_from_slice(&[v, v, v]);
        }
        Raster::new(self.width as u32, self.height as u32, None, Pixels::Rgb(rgb))
    }
}

#[derive(Clone, Copy, Debug)]
struct Rect {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
}

impl Rect {
    fn width(self) -> f32 {
        self.right - self.left
    }

    fn height(self) -> f32 {
        self.bottom - self.top
    }

    fn centre(self) -> Pt {
        pt((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)
    }

    fn corners(self) -> [Pt; 4] {
        [
            pt(self.left, self.top),
            pt(self.right, self.top),
            pt(self.right, self.bottom),
            pt(self.left, self.bottom),
        ]
    }

    fn inset(self, by: f32) -> Rect {
        Rect { left: self.left + by, top: self.top + by, right: self.right - by, bottom: self.bottom - by }
    }
}

/// Points on a circle, about two pixels apart.
fn circle(c: Pt, r: f32) -> Vec<Pt> {
    let n = ((TAU * r / 2.0).ceil() as usize).max(16);
    (0..n).map(|i| c.polar(TAU * i as f32 / n as f32, r)).collect()
}

/// Points on an arc from angle `a0` to `a1`, ends included.
fn arc(c: Pt, r: f32, a0: f32, a1: f32) -> Vec<Pt> {
    let n = (((a1 - a0).abs() * r / 2.0).ceil() as usize).max(4);
    (0..=n).map(|i| c.polar(a0 + (a1 - a0) * i as f32 / n as f32, r)).collect()
}

/// The outline of one lobe, as a height from 0 (valley) to 1 (crest) for `v` in -1..1 across it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lobe {
    /// Semicircular scallops meeting in sharp valleys.
    Round,
    /// Petals with a pointed tip and rounded shoulders.
    Pointed,
    /// A smooth wave.
    Wave,
    /// Triangles.
    Zigzag,
}

impl Lobe {
    fn height(self, v: f32) -> f32 {
        match self {
            Lobe::Round => (1.0 - v * v).max(0.0).sqrt(),
            Lobe::Pointed => (1.0 - v.abs()).max(0.0).sqrt(),
            Lobe::Wave => 0.5 + 0.5 * (PI * v).cos(),
            Lobe::Zigzag => 1.0 - v.abs(),
        }
    }
}

/// A closed curve around a centre made of `lobes` equal lobes between radii `inner` (valleys)
/// and `outer` (crests); `phase` (in lobes) turns it, `alternate` makes every other lobe shorter.
#[derive(Clone, Copy, Debug)]
struct Ring {
    lobes: u32,
    lobe: Lobe,
    outer: f32,
    inner: f32,
    phase: f32,
    alternate: bool,
}

impl Ring {
    fn radius(&self, angle: f32) -> f32 {
        let u = self.lobes as f32 * angle / TAU + self.phase;
        let index = u.floor();
        let v = 2.0 * (u - index) - 1.0;
        let scale = if self.alternate && (index as i64).rem_euclid(2) == 1 { 0.6 } else { 1.0 };
        self.inner + (self.outer - self.inner) * scale * self.lobe.height(v)
    }

    fn points(&self, c: Pt) -> Vec<Pt> {
        // A multiple of twice the lobe count, so crests and valleys fall on samples.
        let per_lobe = ((TAU * self.outer / 2.0) / self.lobes as f32 / 2.0).ceil().max(4.0) as u32 * 2;
        let n = self.lobes * per_lobe;
        (0..n)
            .map(|i| {
                let angle = TAU * i as f32 / n as f32;
                c.polar(angle, self.radius(angle))
            })
            .collect()
    }

    /// The angle of the middle of lobe `i`.
    fn crest_angle(&self, i: u32) -> f32 {
        (i as f32 + 0.5 - self.phase) * TAU / self.lobes as f32
    }

    /// The angle of the valley before lobe `i`.
    fn valley_angle(&self, i: u32) -> f32 {
        (i as f32 - self.phase) * TAU / self.lobes as f32
    }
}

/// The state of one page being drawn: canvas, random numbers and line widths scaled to the size.
struct Page {
    canvas: Canvas,
    rng: fastrand::Rng,
    /// Outline strokes.
    bold: f32,
    /// Detail strokes.
    fine: f32,
    /// The shorter side, which sizes everything.
    unit: f32,
}

impl Page {
    fn new(width: u32, height: u32, seed: u64) -> Self {
        let unit = width.min(height).max(1) as f32;
        let scale = unit / 768.0;
        Page {
            canvas: Canvas::new(width, height),
            rng: fastrand::Rng::with_seed(seed),
            bold: (4.5 * scale).max(1.2),
            fine: (3.2 * scale).max(1.0),
            unit,
        }
    }

    /// Applies a defect to the finished drawing.
    fn spoil(&mut self, defect: Defect) {
        let (w, h) = (self.canvas.width, self.canvas.height);
        let area = (w * h) as f32 / (768.0 * 768.0);
        match defect {
            Defect::Speckles => {
                for _ in 0..(2500.0 * area) as usize {
                    let i = self.rng.usize(..w * h);
                    self.canvas.ink[i] = 1.0;
                }
            }
            Defect::Shading | Defect::Blob => {
                let count = if defect == Defect::Blob { 1 } else { 3 };
                for _ in 0..count {
                    let c = pt(self.range(0.25, 0.75) * w as f32, self.range(0.25, 0.75) * h as f32);
                    let r = self.range(0.22, 0.3) * self.unit;
                    for (i, ink) in self.canvas.ink.iter_mut().enumerate() {
                        let d = pt((i % w) as f32 + 0.5, (i / w) as f32 + 0.5).dist(c) / r;
                        if d < 1.0 {
                            // Shading darkens towards one side, like a lit sphere.
                            let shade = if defect == Defect::Blob { 1.0 } else { 0.3 + 0.35 * (1.0 - d) };
                            *ink = ink.max(shade);
                        }
                    }
                }
            }
            Defect::Gaps => {
                let step = (0.05 * self.unit).max(8.0) as usize;
                let cut = (0.004 * self.unit).max(2.0) as usize;
                for (i, ink) in self.canvas.ink.iter_mut().enumerate() {
                    if (i % w) % step < cut || (i / w) % step < cut {
                        *ink = 0.0;
                    }
                }
            }
            Defect::Faint => self.canvas.ink.iter_mut().for_each(|ink| *ink *= 0.28),
            Defect::Blank => self.canvas.ink.fill(0.0),
            Defect::Photo => {
                let (fx, fy) = (self.range(4.0, 9.0) / w as f32, self.range(4.0, 9.0) / h as f32);
                for (i, ink) in self.canvas.ink.iter_mut().enumerate() {
                    let (x, y) = ((i % w) as f32, (i / w) as f32);
                    let wave =
                        (TAU * x * fx).sin() * (TAU * y * fy).cos() + 0.4 * (TAU * (x + y) * 3.0 * fx).sin();
                    *ink = (0.5 + 0.3 * wave).clamp(0.0, 1.0);
                }
            }
        }
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.rng.f32()
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.rng.usize(..choices.len())]
    }

    fn full(&self) -> Rect {
        Rect { left: 0.0, top: 0.0, right: self.canvas.width as f32, bottom: self.canvas.height as f32 }
    }

    /// The area inside the page margin.
    fn inner(&self) -> Rect {
        self.full().inset(0.045 * self.unit)
    }

    /// Cleans everything outside `rect` and draws a double frame around it.
    fn frame(&mut self, rect: Rect) {
        self.canvas.erase_outside(rect);
        let gap = 0.016 * self.unit;
        self.canvas.stroke(&rect.corners(), true, self.bold);
        self.canvas.stroke(&rect.inset(-gap).corners(), true, self.fine);
    }

    fn ring(&mut self, c: Pt, ring: &Ring) {
        let points = ring.points(c);
        self.canvas.shape(&points, self.bold);
    }

    fn mandala(&mut self) {
        let inner = self.inner();
        let c = inner.centre();
        let radius = 0.47 * inner.width().min(inner.height());
        // Fans in the corners first: the mandala is drawn over them.
        let corner_room = inner.corners()[0].dist(c) - radius;
        let fan = (0.26 * self.unit).min(0.95 * corner_room);
        if fan > 12.0 * self.bold {
            let base = self.pick(&[8u32, 12, 16]);
            // The same random numbers for every corner, so the four fans match.
            let shared = self.rng.clone();
            for corner in inner.corners() {
                self.rng = shared.clone();
                self.rosette(corner, fan, base, 0.3);
            }
        }
        // Small medallions above and below a mandala that leaves room there.
        let room = (inner.height() - 2.0 * radius) / 2.0;
        if room > 16.0 * self.bold {
            let base = self.pick(&[6u32, 8]);
            let shared = self.rng.clone();
            for y in [inner.top + room / 2.0, inner.bottom - room / 2.0] {
                self.rng = shared.clone();
                self.rosette(pt(c.x, y), 0.38 * room, base, 0.0);
            }
        }
        let base = self.pick(&[6u32, 8, 10, 12]);
        self.rosette(c, radius, base, 0.0);
        self.frame(inner);
    }

    /// Nested lobed rings from the outside in, each drawn over the last, with beads, dots and
    /// separators in between; down to `stop` times the radius, then a small flower in the middle.
    fn rosette(&mut self, c: Pt, radius: f32, base: u32, stop: f32) {
        let mut outer = radius;
        let mut phase = 0.0;
        let min_band = 6.0 * self.bold;
        while outer > (0.2 * radius).max(stop * radius).max(3.0 * min_band) {
            let depth = (radius * self.range(0.07, 0.15)).max(min_band);
            let aspect = self.range(1.0, 1.9);
            let wanted = TAU * outer / (depth * aspect);
            let lobes = base * ((wanted / base as f32).round() as u32).max(1);
            let lobe = self.pick(&[
                Lobe::Round,
                Lobe::Round,
                Lobe::Pointed,
                Lobe::Pointed,
                Lobe::Wave,
                Lobe::Zigzag,
            ]);
            let alternate = lobes >= 2 * base && lobes.is_multiple_of(2) && self.rng.u32(..4) == 0;
            let ring = Ring { lobes, lobe, outer, inner: outer - depth, phase, alternate };
            self.ring(c, &ring);
            let band = (radius * self.range(0.03, 0.07)).max(min_band * 0.8);
            if !self.decorate_lobes(c, &ring, band) {
                self.decorate_band(c, &ring, band);
            }
            outer = ring.inner - band;
            phase = if self.rng.bool() { phase + 0.5 } else { phase };
        }
        if stop > 0.0 {
            return;
        }
        // The centre: a small flower in a circle.
        let hub = outer.max(3.0 * min_band);
        self.canvas.shape(&circle(c, hub), self.bold);
        let petals = Ring {
            lobes: base.min(8),
            lobe: Lobe::Round,
            outer: hub * 0.78,
            inner: hub * 0.42,
            phase,
            alternate: false,
        };
        self.ring(c, &petals);
        self.canvas.shape(&circle(c, hub * 0.24), self.fine);
    }

    /// Draws an echo of the outline or dots inside the lobes, or nothing; true when the echo
    /// took the band below the lobes, which then gets no decoration of its own.
    fn decorate_lobes(&mut self, c: Pt, ring: &Ring, band: f32) -> bool {
        let depth = ring.outer - ring.inner;
        match self.rng.u32(..3) {
            0 if depth > 9.0 * self.bold && band > 4.0 * self.bold => {
                let gap = (0.32 * depth).min(0.6 * band).max(3.0 * self.bold);
                let echo = Ring { outer: ring.outer - gap, inner: ring.inner - gap, ..*ring };
                let points = echo.points(c);
                self.canvas.stroke(&points, true, self.fine);
                return true;
            }
            1 => {
                let mid = ring.inner + 0.42 * depth;
                let r = (0.2 * depth).min(0.17 * TAU * mid / ring.lobes as f32);
                if r > 2.5 * self.fine {
                    for i in (0..ring.lobes).filter(|i| !ring.alternate || i.is_multiple_of(2)) {
                        let dot = circle(c.polar(ring.crest_angle(i), mid), r);
                        self.canvas.stroke(&dot, true, self.fine);
                    }
                }
            }
            _ => {}
        }
        false
    }

    /// Separators that cut the ring into cells, a row of beads, or a plain circle.
    fn decorate_band(&mut self, c: Pt, ring: &Ring, band: f32) {
        match self.rng.u32(..5) {
            0 | 1 => {
                // Separators: rays from each valley towards the centre, cut off by the next ring.
                for i in 0..ring.lobes {
                    let a = ring.valley_angle(i);
                    self.canvas.stroke(
                        &[c.polar(a, ring.inner), c.polar(a, ring.inner - band - 2.0 * self.bold)],
                        false,
                        self.fine,
                    );
                }
            }
            2 => {
                let r = ring.inner - 0.5 * band;
                let bead = 0.32 * band;
                let count = ((TAU * r / (2.8 * bead)).floor() as u32).max(3);
                if bead > 2.5 * self.fine {
                    for i in 0..count {
                        let dot = circle(c.polar(TAU * (i as f32 + 0.5) / count as f32, r), bead);
                        self.canvas.stroke(&dot, true, self.fine);
                    }
                }
            }
            3 => {
                let line = circle(c, ring.inner - 0.45 * band);
                self.canvas.stroke(&line, true, self.fine);
            }
            _ => {}
        }
    }

    fn geometric(&mut self) {
        match self.rng.u32(..3) {
            0 => self.truchet(),
            1 => self.flower_of_life(),
            _ => self.square_spirals(),
        }
    }

    /// A rectangle of `cell`-sized squares, centred in the page margin.
    fn grid(&mut self, columns: u32) -> (Rect, f32, u32, u32) {
        let inner = self.inner();
        let cell = inner.width().min(inner.height()) / columns as f32;
        let cols = (inner.width() / cell + 1e-3).floor() as u32;
        let rows = (inner.height() / cell + 1e-3).floor() as u32;
        let (w, h) = (cols as f32 * cell, rows as f32 * cell);
        let c = inner.centre();
        let rect =
            Rect { left: c.x - w / 2.0, top: c.y - h / 2.0, right: c.x + w / 2.0, bottom: c.y + h / 2.0 };
        (rect, cell, cols, rows)
    }

    /// Quarter arcs in randomly turned squares join into winding bands.
    fn truchet(&mut self) {
        let columns = self.rng.u32(5..=7);
        let (rect, cell, cols, rows) = self.grid(columns);
        let radii: Vec<f32> =
            if self.rng.bool() { vec![1.0 / 3.0, 2.0 / 3.0] } else { vec![0.34, 0.66, 0.5] };
        for row in 0..rows {
            for col in 0..cols {
                let x = rect.left + col as f32 * cell;
                let y = rect.top + row as f32 * cell;
                let corners = if self.rng.bool() {
                    [(pt(x, y), 0.0), (pt(x + cell, y + cell), PI)]
                } else {
                    [(pt(x + cell, y), 0.5 * PI), (pt(x, y + cell), 1.5 * PI)]
                };
                for (corner, start) in corners {
                    for (k, r) in radii.iter().enumerate() {
                        let width = if k < 2 { self.bold } else { self.fine };
                        let points = arc(corner, r * cell, start, start + 0.5 * PI);
                        self.canvas.stroke(&points, false, width);
                    }
                }
            }
        }
        self.frame(rect);
    }

    /// The flower of life: overlapping circles on a triangular lattice, which cut each other
    /// into petals and curved triangles.
    fn flower_of_life(&mut self) {
        let inner = self.inner();
        let r = inner.width().min(inner.height()) / self.range(4.5, 6.5);
        let c = inner.centre();
        let row_step = r * 3f32.sqrt() / 2.0;
        let rows = (inner.height() / row_step / 2.0).ceil() as i32 + 2;
        let cols = (inner.width() / r / 2.0).ceil() as i32 + 2;
        let mut centres = Vec::new();
        for j in -rows..=rows {
            let shift = if j % 2 == 0 { 0.0 } else { r / 2.0 };
            for i in -cols..=cols {
                centres.push(pt(c.x + i as f32 * r + shift, c.y + j as f32 * row_step));
            }
        }
        for centre in centres {
            self.canvas.stroke(&circle(centre, r), true, self.bold);
        }
        self.frame(inner);
    }

    /// Nested squares, each turned a little inside the last, in a grid of alternating whirls.
    fn square_spirals(&mut self) {
        let columns = self.rng.u32(2..=3);
        let (rect, cell, cols, rows) = self.grid(columns);
        let t = self.range(0.2, 0.26);
        let smallest = 0.3 * cell;
        for row in 0..rows {
            for col in 0..cols {
                let x = rect.left + col as f32 * cell;
                let y = rect.top + row as f32 * cell;
                let mut quad = [pt(x, y), pt(x + cell, y), pt(x + cell, y + cell), pt(x, y + cell)];
                let clockwise = (row + col).is_multiple_of(2);
                while quad[0].dist(quad[1]) > smallest {
                    self.canvas.stroke(&quad, true, self.bold);
                    quad = std::array::from_fn(|i| {
                        let next = if clockwise { quad[(i + 1) % 4] } else { quad[(i + 3) % 4] };
                        quad[i].lerp(next, t)
                    });
                }
                self.canvas.stroke(&quad, true, self.bold);
            }
        }
        self.frame(rect);
    }

    fn botanical(&mut self) {
        let inner = self.inner();
        let size = 0.13 * self.unit;
        let cols = (inner.width() / (2.1 * size)).round().max(1.0) as u32;
        let rows = (inner.height() / (2.1 * size)).round().max(1.0) as u32;
        let (cw, ch) = (inner.width() / cols as f32, inner.height() / rows as f32);
        let mut flowers = Vec::new();
        for row in 0..rows {
            for col in 0..cols {
                let x = inner.left + (col as f32 + 0.5 + self.range(-0.22, 0.22)) * cw;
                let y = inner.top + (row as f32 + 0.5 + self.range(-0.22, 0.22)) * ch;
                flowers.push((pt(x, y), size * self.range(0.7, 1.15)));
            }
        }
        // Leaves first, tucked under the flowers they belong to.
        for &(c, r) in &flowers {
            let count = self.rng.u32(2..=3);
            let start = self.range(0.0, TAU);
            for k in 0..count {
                let angle = start + TAU * k as f32 / count as f32 + self.range(-0.4, 0.4);
                let length = r * self.range(1.7, 2.2);
                let width = length * self.range(0.36, 0.46);
                self.leaf(c, angle, length, width);
            }
        }
        self.rng.shuffle(&mut flowers);
        for &(c, r) in &flowers {
            self.flower(c, r);
        }
        self.fill_gaps(inner);
        self.frame(inner);
    }

    /// One of four flower types, built from overlapping rings of petals.
    fn flower(&mut self, c: Pt, r: f32) {
        let phase = self.range(0.0, 1.0);
        let ring = |lobes: u32, lobe: Lobe, outer: f32, inner: f32, phase: f32| Ring {
            lobes,
            lobe,
            outer: outer * r,
            inner: inner * r,
            phase,
            alternate: false,
        };
        let (layers, hub) = match self.rng.u32(..4) {
            // Daisy: many long petals.
            0 => (vec![ring(self.rng.u32(11..=15), Lobe::Round, 1.0, 0.3, phase)], 0.3),
            // Five or six broad petals over a second layer.
            1 => {
                let n = self.rng.u32(5..=6);
                (
                    vec![
                        ring(n, Lobe::Round, 1.0, 0.45, phase),
                        ring(n, Lobe::Round, 0.62, 0.3, phase + 0.5),
                    ],
                    0.22,
                )
            }
            // Lotus: pointed petals in two layers.
            2 => {
                let n = self.pick(&[6u32, 8]);
                (
                    vec![
                        ring(n, Lobe::Pointed, 1.0, 0.4, phase),
                        ring(n, Lobe::Pointed, 0.7, 0.3, phase + 0.5),
                    ],
                    0.24,
                )
            }
            // Sunflower: a ring of pointed petals round a large seed head.
            _ => {
                let n = self.rng.u32(16..=22);
                (
                    vec![
                        ring(n, Lobe::Pointed, 1.0, 0.6, phase),
                        ring(n, Lobe::Pointed, 0.86, 0.55, phase + 0.5),
                    ],
                    0.5,
                )
            }
        };
        for layer in &layers {
            self.ring(c, layer);
        }
        if let Some(first) = layers.first().filter(|l| l.lobe == Lobe::Round && l.lobes > 8) {
            // Daisy petals get a crease down the middle.
            for i in 0..first.lobes {
                let a = first.crest_angle(i);
                self.canvas.stroke(&[c.polar(a, hub * r), c.polar(a, 0.7 * r)], false, self.fine);
            }
        }
        self.canvas.shape(&circle(c, hub * r), self.bold);
        if hub >= 0.4 {
            // A seed head: rings of small circles.
            self.canvas.stroke(&circle(c, 0.55 * hub * r), true, self.fine);
            let seeds = ((TAU * 0.77 * hub * r) / (0.2 * hub * r)).floor() as u32;
            for i in 0..seeds {
                let seed = circle(c.polar(TAU * i as f32 / seeds as f32, 0.77 * hub * r), 0.08 * hub * r);
                self.canvas.stroke(&seed, true, self.fine);
            }
        } else if hub * r > 6.0 * self.bold {
            self.canvas.stroke(&circle(c, 0.5 * hub * r), true, self.fine);
        }
    }

    /// A leaf from `base` pointing along `angle`, with a midrib and veins that end on the outline.
    fn leaf(&mut self, base: Pt, angle: f32, length: f32, width: f32) {
        let (ux, uy) = (angle.cos(), angle.sin());
        let at = |along: f32, across: f32| {
            pt(base.x + ux * along - uy * across, base.y + uy * along + ux * across)
        };
        // Widest a little below the middle, pointed at both ends.
        let half_width = |t: f32| 0.5 * width * (PI * t.powf(0.8)).sin().max(0.0);
        let n = ((2.0 * length / 3.0).ceil() as usize).max(12);
        let mut outline: Vec<Pt> = (0..=n)
            .map(|i| {
                let t = i as f32 / n as f32;
                at(t * length, half_width(t))
            })
            .collect();
        outline.extend((1..n).rev().map(|i| {
            let t = i as f32 / n as f32;
            at(t * length, -half_width(t))
        }));
        self.canvas.shape(&outline, self.bold);
        self.canvas.stroke(&[at(0.0, 0.0), at(0.9 * length, 0.0)], false, self.fine);
        let veins = ((length / (0.16 * self.unit)).round() as u32).clamp(2, 4);
        for k in 0..veins {
            let t = 0.2 + 0.6 * k as f32 / veins as f32;
            let end = t + 0.14;
            for side in [-1.0, 1.0] {
                self.canvas.stroke(
                    &[at(t * length, 0.0), at(end * length, side * half_width(end))],
                    false,
                    self.fine,
                );
            }
        }
    }

    /// Buds, berries and leaves wherever the page is still blank.
    fn fill_gaps(&mut self, area: Rect) {
        let margin = 1.5 * self.bold;
        const ATTEMPTS: u32 = 600;
        for attempt in 0..ATTEMPTS {
            // Large motifs first, while large gaps remain.
            let r = (0.09 - 0.065 * attempt as f32 / ATTEMPTS as f32) * self.unit;
            let c = pt(self.range(area.left + r, area.right - r), self.range(area.top + r, area.bottom - r));
            if !self.canvas.is_blank(c, r + margin) {
                continue;
            }
            match self.rng.u32(..3) {
                0 => {
                    let ring = Ring {
                        lobes: 5,
                        lobe: Lobe::Round,
                        outer: r,
                        inner: 0.45 * r,
                        phase: self.range(0.0, 1.0),
                        alternate: false,
                    };
                    self.ring(c, &ring);
                    self.canvas.shape(&circle(c, 0.28 * r), self.fine);
                }
                1 => {
                    // Three berries.
                    let a = self.range(0.0, TAU);
                    for k in 0..3 {
                        let berry = circle(c.polar(a + TAU * k as f32 / 3.0, 0.45 * r), 0.45 * r);
                        self.canvas.shape(&berry, self.bold);
                    }
                }
                _ => {
                    let a = self.range(0.0, TAU);
                    self.leaf(c.polar(a + PI, r), a, 2.0 * r, 0.8 * r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
