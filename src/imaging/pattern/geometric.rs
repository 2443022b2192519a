//! The geometric family: one of three tilings (Truchet arcs, the flower of life, spiralling
//! squares), laid on a grid centred in the page margin.

use std::f32::consts::PI;

use super::canvas::{Rect, pt};
use super::page::Page;
use super::shapes::{arc, circle};

impl Page {
    pub(super) fn geometric(&mut self) {
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
}
