//! The drawing surface: points, ink coverage per pixel and the two primitives every shape is
//! made of, an anti-aliased round-capped stroke and erasing the inside of a closed outline.

use crate::engine::media::{Pixels, Raster};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Pt {
    pub(super) x: f32,
    pub(super) y: f32,
}

pub(super) fn pt(x: f32, y: f32) -> Pt {
    Pt { x, y }
}

impl Pt {
    /// The point at `angle` (radians, clockwise on screen from +x) and distance `r` from `self`.
    pub(super) fn polar(self, angle: f32, r: f32) -> Pt {
        pt(self.x + r * angle.cos(), self.y + r * angle.sin())
    }

    pub(super) fn lerp(self, to: Pt, t: f32) -> Pt {
        pt(self.x + (to.x - self.x) * t, self.y + (to.y - self.y) * t)
    }

    pub(super) fn dist(self, to: Pt) -> f32 {
        (to.x - self.x).hypot(to.y - self.y)
    }
}

/// Longest piece a segment is cut into before rasterising, so a long diagonal never scans a
/// huge bounding box.
const MAX_PIECE: f32 = 12.0;

/// Ink coverage per pixel (0 = white paper, 1 = black) with the drawing operations.
pub(super) struct Canvas {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) ink: Vec<f32>,
}

impl Canvas {
    pub(super) fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width as usize, height as usize);
        Canvas { width, height, ink: vec![0.0; width * height] }
    }

    /// Strokes a polyline `width` pixels wide with round caps and joins.
    pub(super) fn stroke(&mut self, points: &[Pt], closed: bool, width: f32) {
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
    pub(super) fn shape(&mut self, points: &[Pt], width: f32) {
        self.erase(points);
        self.stroke(points, true, width);
    }

    /// Clears everything outside a rectangle, so tilings and fans can overrun the frame.
    pub(super) fn erase_outside(&mut self, rect: Rect) {
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
    pub(super) fn is_blank(&self, c: Pt, r: f32) -> bool {
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

    pub(super) fn into_raster(self) -> Raster {
        let mut rgb = Vec::with_capacity(self.ink.len() * 3);
        for ink in self.ink {
            let v = (255.0 * (1.0 - ink) + 0.5) as u8;
            rgb.extend_from_slice(&[v, v, v]);
        }
        Raster::new(self.width as u32, self.height as u32, None, Pixels::Rgb(rgb))
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Rect {
    pub(super) left: f32,
    pub(super) top: f32,
    pub(super) right: f32,
    pub(super) bottom: f32,
}

impl Rect {
    pub(super) fn width(self) -> f32 {
        self.right - self.left
    }

    pub(super) fn height(self) -> f32 {
        self.bottom - self.top
    }

    pub(super) fn centre(self) -> Pt {
        pt((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)
    }

    pub(super) fn corners(self) -> [Pt; 4] {
        [
            pt(self.left, self.top),
            pt(self.right, self.top),
            pt(self.right, self.bottom),
            pt(self.left, self.bottom),
        ]
    }

    pub(super) fn inset(self, by: f32) -> Rect {
        Rect { left: self.left + by, top: self.top + by, right: self.right - by, bottom: self.bottom - by }
    }
}
