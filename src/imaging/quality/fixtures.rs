//! Gray print pages made in code for the tests: a clean page of soft anti-aliased lines with
//! small details (eye dots), and one page for each defect the check knows. Half a letter page
//! at 300 DPI (1275x1650), so sizes in pixels mean what they mean on a printed page. Pages can
//! also be drawn at a model's resolution (768x1024) and upscaled to the print page as a
//! pipeline does ([`model_faces_page`], [`upscaled`]), for defects that only show there.

/// Page width.
pub const W: usize = 1275;
/// Page height.
pub const H: usize = 1650;

/// How a page is drawn.
#[derive(Clone, Copy)]
pub struct Pen {
    /// Stroke width in pixels.
    pub width: f32,
    /// Width of the soft edge (an upscaled model output has 3-5 px).
    pub soft: f32,
    /// The darkest value of a stroke.
    pub ink: f32,
    /// Leave two gaps this wide (px) in every outline.
    pub gaps: f32,
}

/// Bold soft lines, as a model draws them.
pub const SOFT: Pen = Pen { width: 10.0, soft: 4.0, ink: 35.0, gaps: 0.0 };

/// A gray page being drawn: paper with a little grain.
pub struct Sheet {
    pub px: Vec<f32>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    rng: fastrand::Rng,
}

impl Sheet {
    /// A half letter page at 300 DPI.
    pub fn new(seed: u64) -> Sheet {
        Sheet::sized(W, H, seed)
    }

    /// A blank sheet `width` x `height`.
    pub fn sized(width: usize, height: usize, seed: u64) -> Sheet {
        let mut rng = fastrand::Rng::with_seed(seed);
        let px = (0..width * height).map(|_| 248.0 + 4.0 * (rng.f32() - 0.5)).collect();
        Sheet { px, width, height, rng }
    }

    /// Darkens towards `ink` by `coverage` (0-1), keeping the darkest of what is there.
    fn ink(&mut self, x: usize, y: usize, ink: f32, coverage: f32) {
        let p = &mut self.px[y * self.width + x];
        let v = 248.0 - (248.0 - ink) * coverage.clamp(0.0, 1.0);
        if v < *p {
            *p = v;
        }
    }

    /// Everything within `reach` of (cx, cy), with its distance: the pixels a shape may touch.
    fn around(&self, cx: f32, cy: f32, reach: f32) -> impl Iterator<Item = (usize, usize, f32, f32)> + use<> {
        let (x0, x1) = ((cx - reach).max(0.0) as usize, ((cx + reach) as usize + 1).min(self.width));
        let (y0, y1) = ((cy - reach).max(0.0) as usize, ((cy + reach) as usize + 1).min(self.height));
        (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y, x as f32 + 0.5 - cx, y as f32 + 0.5 - cy)))
    }

    /// A circle of radius `r` stroked with `pen`, gaps included.
    pub fn ring(&mut self, cx: f32, cy: f32, r: f32, pen: Pen) {
        self.arc(cx, cy, r, 0.0, std::f32::consts::TAU, pen);
    }

    /// Part of a circle, from angle `a0` to `a1`.
    pub fn arc(&mut self, cx: f32, cy: f32, r: f32, a0: f32, a1: f32, pen: Pen) {
        let gap = pen.gaps / r;
        for (x, y, dx, dy) in self.around(cx, cy, r + pen.width) {
            let mut a = dy.atan2(dx);
            if a < a0 {
                a += std::f32::consts::TAU;
            }
            let off_gap = pen.gaps == 0.0 || ((a % std::f32::consts::PI) > gap);
            if a <= a1 && off_gap {
                let d = ((dx * dx + dy * dy).sqrt() - r).abs();
                self.ink(x, y, pen.ink, (pen.width / 2.0 - d) / pen.soft + 0.5);
            }
        }
    }

    /// A straight stroke.
    pub fn line(&mut self, (ax, ay): (f32, f32), (bx, by): (f32, f32), pen: Pen) {
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        let half = (dx * dx + dy * dy).sqrt() / 2.0;
        for (x, y, px, py) in self.around((ax + bx) / 2.0, (ay + by) / 2.0, half + pen.width) {
            let (px, py) = (px + dx / 2.0, py + dy / 2.0);
            let t = ((px * dx + py * dy) / len2).clamp(0.0, 1.0);
            let in_gap = pen.gaps > 0.0 && ((t - 0.5).abs() * 2.0 * half) < pen.gaps / 2.0;
            if !in_gap {
                let d = ((px - t * dx).powi(2) + (py - t * dy).powi(2)).sqrt();
                self.ink(x, y, pen.ink, (pen.width / 2.0 - d) / pen.soft + 0.5);
            }
        }
    }

    /// A filled disc (an eye dot, a pupil).
    pub fn disc(&mut self, cx: f32, cy: f32, r: f32, ink: f32) {
        for (x, y, dx, dy) in self.around(cx, cy, r + 2.0) {
            self.ink(x, y, ink, r - (dx * dx + dy * dy).sqrt() + 0.5);
        }
    }

    /// Flat gray over a rectangle.
    pub fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, value: f32) {
        let width = self.width;
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(width) {
                self.px[y * width + x] = self.px[y * width + x].min(value);
            }
        }
    }

    /// Dark specks of 2x2 to 3x3 pixels, scattered.
    pub fn specks(&mut self, count: usize) {
        self.specks_sized(count, 2..=3);
    }

    /// Dark specks of `sizes` pixels square, scattered.
    pub fn specks_sized(&mut self, count: usize, sizes: std::ops::RangeInclusive<usize>) {
        for _ in 0..count {
            let (x, y) = (self.rng.usize(20..self.width - 20), self.rng.usize(20..self.height - 20));
            let s = self.rng.usize(sizes.clone());
            self.fill(x, y, x + s, y + s, 30.0);
        }
    }

    /// The page as gray bytes.
    pub fn gray(&self) -> Vec<u8> {
        self.px.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect()
    }
}

/// Where each face of a page sits, and its radius.
pub fn faces() -> impl Iterator<Item = (f32, f32, f32)> {
    (0..4).flat_map(|row| {
        (0..3).map(move |col| (230.0 + col as f32 * 410.0, 250.0 + row as f32 * 390.0, 150.0))
    })
}

/// The eye dots of a face: radius 4.5 (about 60 px), small details the cleanup must keep.
pub fn eyes(cx: f32, cy: f32, r: f32) -> [(f32, f32); 2] {
    [(cx - 0.35 * r, cy - 0.2 * r), (cx + 0.35 * r, cy - 0.2 * r)]
}

/// Radius of an eye dot.
pub const EYE: f32 = 4.5;

/// A page of twelve faces in a frame: outline, cheeks, eye dots and a smile.
pub fn faces_page(pen: Pen, seed: u64) -> Sheet {
    let mut s = Sheet::new(seed);
    draw_faces(&mut s, 12, 1.0, pen, EYE);
    s.frame(30.0, pen);
    s
}

/// The twelve faces of [`faces_page`] without its frame: a drawing that can move on the page.
pub fn unframed_faces_page(pen: Pen, seed: u64) -> Sheet {
    let mut s = Sheet::new(seed);
    draw_faces(&mut s, 12, 1.0, pen, EYE);
    s
}

/// The model's resolution: what a generator gives before `upscale`.
pub const MODEL_W: usize = 768;
/// See [`MODEL_W`].
pub const MODEL_H: usize = 1024;

/// A model's line width at its own resolution: 3.5 px, about 11 px on the upscaled page.
pub const MODEL_PEN: Pen = Pen { width: 3.5, soft: 1.2, ink: 35.0, gaps: 0.0 };

/// The faces page as a model draws it at 768x1024 (the layout scaled to the sheet): the first
/// `count` of its faces, with eye dots of `eye` model pixels radius, and the frame drawn with
/// `frame`.
pub fn model_faces_page(count: usize, pen: Pen, eye: f32, frame: Pen, seed: u64) -> Sheet {
    let mut s = Sheet::sized(MODEL_W, MODEL_H, seed);
    draw_faces(&mut s, count, MODEL_W as f32 / W as f32, pen, eye);
    s.frame(18.0, frame);
    s
}

/// The first `count` faces laid out as on [`faces_page`], scaled by `scale`.
fn draw_faces(s: &mut Sheet, count: usize, scale: f32, pen: Pen, eye: f32) {
    for (cx, cy, r) in faces().take(count) {
        let (cx, cy, r) = (cx * scale, cy * scale, r * scale);
        s.ring(cx, cy, r, pen);
        for side in [-1.0, 1.0] {
            s.ring(cx + side * 0.55 * r, cy + 0.25 * r, 0.2 * r, pen);
        }
        for (x, y) in eyes(cx, cy, r) {
            s.disc(x, y, eye, pen.ink);
        }
        s.arc(cx, cy + 0.1 * r, 0.45 * r, 0.6, 2.5, Pen { gaps: 0.0, ..pen });
    }
}

impl Sheet {
    /// A rectangle `inset` pixels inside the sheet's edges.
    fn frame(&mut self, inset: f32, pen: Pen) {
        let (l, t, r, b) = (inset, inset, self.width as f32 - inset, self.height as f32 - inset);
        for (a, z) in [((l, t), (r, t)), ((r, t), (r, b)), ((r, b), (l, b)), ((l, b), (l, t))] {
            self.line(a, z, pen);
        }
    }
}

/// A model-resolution sheet upscaled to a print page `width` x `height` (300 DPI) as the
/// pipeline's `upscale` does (fit: contain), as gray bytes.
pub fn upscaled(sheet: &Sheet, width: u32, height: u32) -> Vec<u8> {
    use crate::engine::media::{Pixels, Raster};
    let raster = Raster::new(sheet.width as u32, sheet.height as u32, None, Pixels::Gray(sheet.gray()));
    let page = crate::imaging::resize::resize(&raster, width, height, crate::imaging::resize::Fit::Contain)
        .expect("resize");
    match page.pixels {
        Pixels::Gray(gray) => gray,
        _ => unreachable!("a gray page stays gray"),
    }
}
