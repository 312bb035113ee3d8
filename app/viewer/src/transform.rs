//! The one mapping between image pixel coordinates and screen points for a viewport: fit, zoom, pan,
//! quarter-turn rotation and flips. `screen_from_image` and `image_from_screen` are exact inverses.

use egui::{Pos2, Rect, Vec2, pos2, vec2};

#[derive(Debug, Clone, Copy)]
pub struct ViewTransform {
    /// The viewport on screen.
    pub rect: Rect,
    /// Image size in pixels (columns, rows).
    pub image_size: Vec2,
    pub zoom: f32,
    pub pan: Vec2,
    pub rotation: u8,
    pub flip_h: bool,
    pub flip_v: bool,
}

impl ViewTransform {
    /// Screen points per image pixel.
    pub fn scale(&self) -> f32 {
        let (w, h) = if self.rotation % 2 == 1 {
            (self.image_size.y, self.image_size.x)
        } else {
            (self.image_size.x, self.image_size.y)
        };
        let fit = (self.rect.width() / w.max(1.0)).min(self.rect.height() / h.max(1.0));
        fit * self.zoom
    }

    fn centre(&self) -> Pos2 {
        self.rect.center() + self.pan
    }

    pub fn screen_from_image(&self, p: Pos2) -> Pos2 {
        let mut q = p.to_vec2() - self.image_size / 2.0;
        for _ in 0..self.rotation % 4 {
            q = vec2(-q.y, q.x);
        }
        if self.flip_h {
            q.x = -q.x;
        }
        if self.flip_v {
            q.y = -q.y;
        }
        self.centre() + q * self.scale()
    }

    pub fn image_from_screen(&self, s: Pos2) -> Pos2 {
        let mut q = (s - self.centre()) / self.scale();
        if self.flip_v {
            q.y = -q.y;
        }
        if self.flip_h {
            q.x = -q.x;
        }
        for _ in 0..self.rotation % 4 {
            q = vec2(q.y, -q.x);
        }
        pos2(q.x, q.y) + self.image_size / 2.0
    }
}

impl ViewTransform {
    /// The patient directions at the right, left, top and bottom edges of the viewport (DICOM's
    /// letters: L/R, P/A, H/F), for an image whose rows run along `row_dir` and columns down
    /// `col_dir`, through the view's rotation and flips.
    pub fn edge_letters(&self, row_dir: [f64; 3], col_dir: [f64; 3]) -> [String; 4] {
        let c = self.image_from_screen(self.rect.center());
        let step = |d: Vec2| -> [f64; 3] {
            let v = self.image_from_screen(self.rect.center() + d) - c;
            let (x, y) = (f64::from(v.x), f64::from(v.y));
            [
                x * row_dir[0] + y * col_dir[0],
                x * row_dir[1] + y * col_dir[1],
                x * row_dir[2] + y * col_dir[2],
            ]
        };
        let letters = radclip_dicom::geometry::orientation_letters;
        let (r, d) = (step(vec2(1.0, 0.0)), step(vec2(0.0, 1.0)));
        let neg = |v: [f64; 3]| [-v[0], -v[1], -v[2]];
        [letters(r), letters(neg(r)), letters(neg(d)), letters(d)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transforms_are_inverse_for_every_orientation() {
        for rotation in 0..4 {
            for (flip_h, flip_v) in [(false, false), (true, false), (false, true), (true, true)] {
                let t = ViewTransform {
                    rect: Rect::from_min_size(pos2(10.0, 20.0), vec2(300.0, 200.0)),
                    image_size: vec2(512.0, 256.0),
                    zoom: 1.7,
                    pan: vec2(12.0, -7.0),
                    rotation,
                    flip_h,
                    flip_v,
                };
                for p in [pos2(0.0, 0.0), pos2(511.0, 3.0), pos2(100.5, 200.25)] {
                    let back = t.image_from_screen(t.screen_from_image(p));
                    assert!(
                        (back - p).length() < 1e-3,
                        "{rotation} {flip_h} {flip_v} {p:?} {back:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn quarter_turn_puts_top_left_at_top_right() {
        let t = ViewTransform {
            rect: Rect::from_min_size(pos2(0.0, 0.0), vec2(100.0, 100.0)),
            image_size: vec2(100.0, 100.0),
            zoom: 1.0,
            pan: Vec2::ZERO,
            rotation: 1,
            flip_h: false,
            flip_v: false,
        };
        let s = t.screen_from_image(pos2(0.0, 0.0));
        assert!((s - pos2(100.0, 0.0)).length() < 1e-4, "{s:?}");
    }

    #[test]
    fn edge_letters_follow_the_direction_cosines_through_rotation_and_flips() {
        let mut t = ViewTransform {
            rect: Rect::from_min_size(pos2(0.0, 0.0), vec2(200.0, 100.0)),
            image_size: vec2(64.0, 64.0),
            zoom: 1.0,
            pan: Vec2::ZERO,
            rotation: 0,
            flip_h: false,
            flip_v: false,
        };
        // An axial image (rows to the patient's left, columns posterior), viewed from the feet.
        let axial = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]);
        assert_eq!(t.edge_letters(axial.0, axial.1), ["L", "R", "A", "P"]);
        // A quarter turn clockwise: what was at the top is on the right.
        t.rotation = 1;
        assert_eq!(t.edge_letters(axial.0, axial.1), ["A", "P", "R", "L"]);
        t.rotation = 0;
        t.flip_h = true;
        assert_eq!(t.edge_letters(axial.0, axial.1), ["R", "L", "A", "P"]);
        // A coronal image, and an oblique one tilted 30° about the patient's x axis.
        t.flip_h = false;
        assert_eq!(
            t.edge_letters([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
            ["L", "R", "H", "F"]
        );
        let (s, c) = (0.5f64, 0.75f64.sqrt());
        assert_eq!(
            t.edge_letters([1.0, 0.0, 0.0], [0.0, s, -c]),
            ["L", "R", "HA", "FP"]
        );
        // A radiograph's Patient Orientation "L\\F" (no direction cosines in the file), flipped.
        let dir = |s| radclip_dicom::geometry::direction_of_letters(s).unwrap();
        t.flip_h = true;
        assert_eq!(t.edge_letters(dir("L"), dir("F")), ["R", "L", "H", "F"]);
        let lp = dir("lp");
        assert!((lp[0] - lp[1]).abs() < 1e-12 && (lp[0] * lp[0] * 2.0 - 1.0).abs() < 1e-12);
        assert_eq!(radclip_dicom::geometry::direction_of_letters("X"), None);
        assert_eq!(radclip_dicom::geometry::direction_of_letters(""), None);
    }
}
