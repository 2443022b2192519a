//! One page being drawn: the canvas with its random numbers and line widths scaled to the
//! page, the helpers every family draws with (margin, double frame, rings), and the defects
//! that spoil a finished page.

use std::f32::consts::TAU;

use super::Defect;
use super::canvas::{Canvas, Pt, Rect, pt};
use super::shapes::Ring;

/// The state of one page being drawn: canvas, random numbers and line widths scaled to the size.
pub(super) struct Page {
    pub(super) canvas: Canvas,
    pub(super) rng: fastrand::Rng,
    /// Outline strokes.
    pub(super) bold: f32,
    /// Detail strokes.
    pub(super) fine: f32,
    /// The shorter side, which sizes everything.
    pub(super) unit: f32,
}

impl Page {
    pub(super) fn new(width: u32, height: u32, seed: u64) -> Self {
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
    pub(super) fn spoil(&mut self, defect: Defect) {
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

    pub(super) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.rng.f32()
    }

    pub(super) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.rng.usize(..choices.len())]
    }

    fn full(&self) -> Rect {
        Rect { left: 0.0, top: 0.0, right: self.canvas.width as f32, bottom: self.canvas.height as f32 }
    }

    /// The area inside the page margin.
    pub(super) fn inner(&self) -> Rect {
        self.full().inset(0.045 * self.unit)
    }

    /// Cleans everything outside `rect` and draws a double frame around it.
    pub(super) fn frame(&mut self, rect: Rect) {
        self.canvas.erase_outside(rect);
        let gap = 0.016 * self.unit;
        self.canvas.stroke(&rect.corners(), true, self.bold);
        self.canvas.stroke(&rect.inset(-gap).corners(), true, self.fine);
    }

    pub(super) fn ring(&mut self, c: Pt, ring: &Ring) {
        let points = ring.points(c);
        self.canvas.shape(&points, self.bold);
    }
}
