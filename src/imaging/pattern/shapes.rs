//! Closed outlines as point lists, for the canvas to stroke or erase: circles, arcs and the
//! lobed rings (scallops, petals, waves, zigzags) that mandalas and flowers are built from.

use std::f32::consts::{PI, TAU};

use super::canvas::Pt;

/// Points on a circle, about two pixels apart.
pub(super) fn circle(c: Pt, r: f32) -> Vec<Pt> {
    let n = ((TAU * r / 2.0).ceil() as usize).max(16);
    (0..n).map(|i| c.polar(TAU * i as f32 / n as f32, r)).collect()
}

/// Points on an arc from angle `a0` to `a1`, ends included.
pub(super) fn arc(c: Pt, r: f32, a0: f32, a1: f32) -> Vec<Pt> {
    let n = (((a1 - a0).abs() * r / 2.0).ceil() as usize).max(4);
    (0..=n).map(|i| c.polar(a0 + (a1 - a0) * i as f32 / n as f32, r)).collect()
}

/// The outline of one lobe, as a height from 0 (valley) to 1 (crest) for `v` in -1..1 across it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Lobe {
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
pub(super) struct Ring {
    pub(super) lobes: u32,
    pub(super) lobe: Lobe,
    pub(super) outer: f32,
    pub(super) inner: f32,
    pub(super) phase: f32,
    pub(super) alternate: bool,
}

impl Ring {
    fn radius(&self, angle: f32) -> f32 {
        let u = self.lobes as f32 * angle / TAU + self.phase;
        let index = u.floor();
        let v = 2.0 * (u - index) - 1.0;
        let scale = if self.alternate && (index as i64).rem_euclid(2) == 1 { 0.6 } else { 1.0 };
        self.inner + (self.outer - self.inner) * scale * self.lobe.height(v)
    }

    pub(super) fn points(&self, c: Pt) -> Vec<Pt> {
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
    pub(super) fn crest_angle(&self, i: u32) -> f32 {
        (i as f32 + 0.5 - self.phase) * TAU / self.lobes as f32
    }

    /// The angle of the valley before lobe `i`.
    pub(super) fn valley_angle(&self, i: u32) -> f32 {
        (i as f32 - self.phase) * TAU / self.lobes as f32
    }
}
