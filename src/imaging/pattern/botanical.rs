//! The botanical family: a jittered grid of flowers over their leaves, then buds, berries and
//! small leaves wherever the page is still blank.

use std::f32::consts::{PI, TAU};

use super::canvas::{Pt, Rect, pt};
use super::page::Page;
use super::shapes::{Lobe, Ring, circle};

impl Page {
    pub(super) fn botanical(&mut self) {
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
