//! The one rectangle of the print code: the book and the cover place things in it, preflight
//! finds ink in it and checks it against the page boxes.

use pdf_writer::Rect;

/// A rectangle in points, from its lower-left to its upper-right corner: a page box, where
/// art or text goes, or where ink was found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Area {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Area {
    pub fn from_points(points: impl IntoIterator<Item = (f32, f32)>) -> Option<Area> {
        let mut b: Option<Area> = None;
        for (x, y) in points {
            b = Some(match b {
                None => Area { x0: x, y0: y, x1: x, y1: y },
                Some(b) => Area { x0: b.x0.min(x), y0: b.y0.min(y), x1: b.x1.max(x), y1: b.y1.max(y) },
            });
        }
        b
    }

    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    /// Inside `outer`, with a quarter point of slack for rounding.
    pub fn within(&self, outer: &Area) -> bool {
        const SLACK: f32 = 0.25;
        self.x0 >= outer.x0 - SLACK
            && self.y0 >= outer.y0 - SLACK
            && self.x1 <= outer.x1 + SLACK
            && self.y1 <= outer.y1 + SLACK
    }

    pub fn overlaps(&self, other: &Area) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    pub fn inset(&self, left: f32, bottom: f32, right: f32, top: f32) -> Area {
        Area { x0: self.x0 + left, y0: self.y0 + bottom, x1: self.x1 - right, y1: self.y1 - top }
    }

    /// The same rectangle as `pdf_writer` writes it.
    pub fn rect(&self) -> Rect {
        Rect::new(self.x0, self.y0, self.x1, self.y1)
    }
}
