//! The mandala family: nested rings of lobes around the centre, decorated with echoes, dots,
//! beads and separators, with matching fans in the corners and medallions above and below.

use std::f32::consts::TAU;

use super::canvas::{Pt, pt};
use super::page::Page;
use super::shapes::{Lobe, Ring, circle};

impl Page {
    pub(super) fn mandala(&mut self) {
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
}
