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

#[cfg(test)]
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
}
