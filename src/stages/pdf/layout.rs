//! Where everything goes on a printed page (the page boxes with bleed, the safe area inside the
//! margins) and in which order the pages come: front matter, art, blank backs and padding.

use super::*;

pub(super) use crate::print::area::Area;
use crate::print::{BLEED_IN, MIN_PAGES, PT_PER_IN, Trim, gutter_in, outside_margin_in};

/// How the book is printed: the options that place things, resolved once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub(super) trim: Trim,
    pub(super) bleed: bool,
    pub(super) margin: Margins,
    pub(super) art: ArtArea,
    pub(super) sides: Sides,
    pub(super) pad: bool,
    pub(super) page_numbers: bool,
}

/// One page's boxes, in the page's own coordinates.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub(super) media: Area,
    pub(super) trim: Area,
    /// Where ink may go: the trim inside the margins.
    pub(super) safe: Area,
    /// Where art goes: the safe area less the page number's band, or the whole page with
    /// `art: bleed`.
    pub(super) art: Area,
}

/// The height kept free for the page number at the bottom of the safe area.
pub(super) const NUMBER_BAND_PT: f32 = 18.0;

/// What goes on one page of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Front(Front),
    /// The art page at this index of the book's pages (in book order).
    Art(usize),
    Blank,
}

/// The front matter pages, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Front {
    Title,
    Copyright,
    BelongsTo,
}

impl Layout {
    /// The page's boxes. `index` counts from 0 (page 1, a right-hand page); `pages` is the
    /// final count, which sets the gutter.
    pub(super) fn frame(&self, index: usize, pages: usize) -> Frame {
        let bleed = if self.bleed { BLEED_IN * PT_PER_IN } else { 0.0 };
        // Bleed goes on the outside edge only: the gutter edge is bound into the spine.
        let right_hand = index.is_multiple_of(2);
        let (width, height) = (self.trim.width + bleed, self.trim.height + 2.0 * bleed);
        let media = Area { x0: 0.0, y0: 0.0, x1: width, y1: height };
        let trim_x0 = if right_hand { 0.0 } else { bleed };
        let trim =
            Area { x0: trim_x0, y0: bleed, x1: trim_x0 + self.trim.width, y1: bleed + self.trim.height };
        let (outside, gutter) = match self.margin {
            Margins::Auto => (outside_margin_in(self.bleed) * PT_PER_IN, gutter_in(pages) * PT_PER_IN),
            Margins::Fixed { outside, gutter } => (outside, gutter),
        };
        let (left, right) = if right_hand { (gutter, outside) } else { (outside, gutter) };
        let safe =
            Area { x0: trim.x0 + left, y0: trim.y0 + outside, x1: trim.x1 - right, y1: trim.y1 - outside };
        let art = match self.art {
            ArtArea::Bleed => media,
            ArtArea::Safe if self.page_numbers => Area { y0: safe.y0 + NUMBER_BAND_PT, ..safe },
            ArtArea::Safe => safe,
        };
        Frame { media, trim, safe, art }
    }

    /// The book's pages in order: front matter, then the art pages, each followed by a blank
    /// back when single-sided, then blank pages up to an even count and KDP's minimum with `pad`.
    pub(super) fn plan(&self, front: &[Front], art_pages: usize) -> Vec<Slot> {
        let content = front.iter().map(|f| Slot::Front(*f)).chain((0..art_pages).map(Slot::Art));
        let mut slots = Vec::with_capacity(2 * (front.len() + art_pages));
        for slot in content {
            slots.push(slot);
            if self.sides == Sides::Single {
                slots.push(Slot::Blank);
            }
        }
        if self.pad {
            while slots.len() < MIN_PAGES || !slots.len().is_multiple_of(2) {
                slots.push(Slot::Blank);
            }
        }
        slots
    }
}

/// Where an image goes inside `area`: `[x, y, width, height]` in points, centred, never
/// stretched. `fill` covers the area (cropping what overflows, for art to the bleed edge);
/// otherwise an image with a DPI keeps its printed size when it fits and is shrunk when it does
/// not, and one without is fitted.
pub(crate) fn place_image(area: Area, width: u32, height: u32, dpi: Option<f32>, fill: bool) -> [f32; 4] {
    let (width, height) = (width as f32, height as f32);
    let (w, h) = if fill {
        let scale = (area.width() / width).max(area.height() / height);
        (width * scale, height * scale)
    } else {
        let natural =
            dpi.filter(|d| d.is_finite() && *d > 0.0).map(|d| (width * 72.0 / d, height * 72.0 / d));
        match natural {
            // A hundredth of a point of slack absorbs float rounding of an exact fit.
            Some((w, h)) if w <= area.width() + 0.01 && h <= area.height() + 0.01 => (w, h),
            _ => {
                let scale = (area.width() / width).min(area.height() / height);
                (width * scale, height * scale)
            }
        }
    };
    [area.x0 + (area.width() - w) / 2.0, area.y0 + (area.height() - h) / 2.0, w, h]
}

/// Millimetres one pixel of an art page `width` x `height` at `dpi` covers in a book of `trim`
/// laid out as the pdf sink lays it by default (KDP's margins, art inside them): the scale the
/// difficulty check measures a page at.
pub(crate) fn printed_mm_per_px(trim: Trim, width: u32, height: u32, dpi: Option<f32>) -> f64 {
    let layout = Layout {
        trim,
        bleed: false,
        margin: Margins::Auto,
        art: ArtArea::Safe,
        sides: Sides::Double,
        pad: false,
        page_numbers: false,
    };
    let [_, _, placed_width, _] = place_image(layout.frame(0, MIN_PAGES).art, width, height, dpi, false);
    f64::from(placed_width) / f64::from(width.max(1)) * 25.4 / f64::from(PT_PER_IN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(bleed: bool, sides: Sides, pad: bool) -> Layout {
        Layout {
            trim: Trim::LETTER,
            bleed,
            margin: Margins::Auto,
            art: ArtArea::Safe,
            sides,
            pad,
            page_numbers: false,
        }
    }

    #[test]
    fn without_bleed_the_page_is_the_trim_with_kdps_margins() {
        let frame = layout(false, Sides::Double, false).frame(0, 40);
        assert_eq!(frame.media, frame.trim);
        assert_eq!(frame.trim, Area { x0: 0.0, y0: 0.0, x1: 612.0, y1: 792.0 });
        // A right-hand page: the 0.375 in gutter on the left, 0.25 in elsewhere.
        assert_eq!(frame.safe, Area { x0: 27.0, y0: 18.0, x1: 594.0, y1: 774.0 });
        let left_hand = layout(false, Sides::Double, false).frame(1, 40);
        assert_eq!(left_hand.safe, Area { x0: 18.0, y0: 18.0, x1: 585.0, y1: 774.0 });
        // 151 pages and more: a 0.5 in gutter.
        assert_eq!(layout(false, Sides::Double, false).frame(0, 200).safe.x0, 36.0);
    }

    #[test]
    fn bleed_widens_the_outside_edge_and_both_ends() {
        let right = layout(true, Sides::Double, false).frame(0, 40);
        assert_eq!(right.media, Area { x0: 0.0, y0: 0.0, x1: 621.0, y1: 810.0 });
        assert_eq!(right.trim, Area { x0: 0.0, y0: 9.0, x1: 612.0, y1: 801.0 });
        // 0.375 in outside margins with bleed.
        assert_eq!(right.safe, Area { x0: 27.0, y0: 36.0, x1: 585.0, y1: 774.0 });
        let left = layout(true, Sides::Double, false).frame(1, 40);
        assert_eq!(left.trim, Area { x0: 9.0, y0: 9.0, x1: 621.0, y1: 801.0 });
    }

    #[test]
    fn single_sided_books_get_a_blank_back_and_padding_reaches_an_even_minimum() {
        let plan = layout(false, Sides::Single, false).plan(&[Front::Title], 2);
        let expected =
            [Slot::Front(Front::Title), Slot::Blank, Slot::Art(0), Slot::Blank, Slot::Art(1), Slot::Blank];
        assert_eq!(plan, expected);
        assert_eq!(layout(false, Sides::Double, true).plan(&[Front::Title], 2).len(), 24);
        assert_eq!(layout(false, Sides::Double, true).plan(&[Front::Title], 30).len(), 32);
        assert_eq!(layout(false, Sides::Double, false).plan(&[Front::Title], 30).len(), 31);
    }

    #[test]
    fn a_letter_page_prints_inside_kdps_margins() {
        // 2550 px at 300 DPI would be 8.5 in; inside 0.25 + 0.375 in margins it is shrunk to 7.875 in.
        let mm = printed_mm_per_px(Trim::LETTER, 2550, 3300, Some(300.0));
        assert!((mm - 7.875 * 25.4 / 2550.0).abs() < 1e-6, "{mm}");
        let small = printed_mm_per_px(Trim::inches(6.0, 9.0), 2550, 3300, Some(300.0));
        assert!(small < mm * 0.7, "a 6x9 book prints the same page smaller: {small}");
    }

    #[test]
    fn art_keeps_its_dpi_when_it_fits_and_is_shrunk_otherwise() {
        let page = Area { x0: 0.0, y0: 0.0, x1: 612.0, y1: 792.0 };
        assert_eq!(place_image(page, 2550, 3300, Some(300.0), false), [0.0, 0.0, 612.0, 792.0]);
        let safe = Area { x0: 27.0, y0: 18.0, x1: 594.0, y1: 774.0 };
        let [x, y, w, h] = place_image(safe, 2550, 3300, Some(300.0), false);
        assert!((w - 567.0).abs() < 0.01 && (h - 567.0 * 3300.0 / 2550.0).abs() < 0.01, "{w}x{h}");
        assert!((x - 27.0).abs() < 0.01 && (y - (18.0 + (756.0 - h) / 2.0)).abs() < 0.01);
        assert_eq!(place_image(safe, 300, 300, Some(300.0), false), [274.5, 360.0, 72.0, 72.0]);
        // Filling covers the area and keeps the aspect ratio.
        let [_, _, w, h] = place_image(page, 100, 100, None, true);
        assert_eq!((w, h), (792.0, 792.0));
    }
}
