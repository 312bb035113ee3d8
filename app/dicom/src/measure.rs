//! Measurements on a frame, in image pixel coordinates (x = column, y = row, pixel centres at integer + 0.5
//! offsets are not assumed: coordinates are continuous, pixel (c, r) covers [c, c+1) × [r, r+1)).

use serde::Serialize;

use crate::geometry::SpacingSource;
use crate::pixel::Frame;

/// A point in image pixel coordinates (continuous).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PointInImage {
    pub x: f64,
    pub y: f64,
}

/// Length of a line, in mm when the frame has a spacing, else in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Length {
    pub pixels: f64,
    pub mm: Option<f64>,
    pub source: Option<SpacingSource>,
}

/// `spacing` is (row spacing, column spacing) in mm.
pub fn line_length(
    a: PointInImage,
    b: PointInImage,
    spacing: Option<([f64; 2], SpacingSource)>,
) -> Length {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    Length {
        pixels: dx.hypot(dy),
        mm: spacing.map(|([row_sp, col_sp], _)| (dx * col_sp).hypot(dy * row_sp)),
        source: spacing.map(|s| s.1),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RoiShape {
    Rectangle,
    Ellipse,
}

/// Statistics of the pixels whose centres lie inside a region, in modality units (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoiStats {
    pub count: usize,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    /// Geometric area of the shape.
    pub area_mm2: Option<f64>,
    pub area_px: f64,
}

/// Statistics inside the rectangle or ellipse bounded by corners `a` and `b`. `None` for colour frames or
/// a region containing no pixel centre.
pub fn roi_stats(
    frame: &Frame,
    shape: RoiShape,
    a: PointInImage,
    b: PointInImage,
    spacing: Option<([f64; 2], SpacingSource)>,
) -> Option<RoiStats> {
    roi_stats_by(shape, a, b, (frame.cols, frame.rows), spacing, |r, c| {
        frame.value_at(r, c)
    })
}

/// Statistics inside a shape on any grid of `(columns, rows)` pixels whose value at (row, column) is
/// `value` (`None`: no value there): a frame's, or a reformatted plane's sampled from a volume.
pub fn roi_stats_by(
    shape: RoiShape,
    a: PointInImage,
    b: PointInImage,
    (cols, rows): (u32, u32),
    spacing: Option<([f64; 2], SpacingSource)>,
    value: impl Fn(u32, u32) -> Option<f64>,
) -> Option<RoiStats> {
    let (x0, x1) = (a.x.min(b.x), a.x.max(b.x));
    let (y0, y1) = (a.y.min(b.y), a.y.max(b.y));
    let (cx, cy, rx, ry) = (
        (x0 + x1) / 2.0,
        (y0 + y1) / 2.0,
        (x1 - x0) / 2.0,
        (y1 - y0) / 2.0,
    );
    let inside = |x: f64, y: f64| match shape {
        RoiShape::Rectangle => x >= x0 && x <= x1 && y >= y0 && y <= y1,
        RoiShape::Ellipse => {
            rx > 0.0 && ry > 0.0 && ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0
        }
    };
    let col_range = (x0.floor().max(0.0) as u32)..=(x1.ceil().min(f64::from(cols)) as u32);
    let row_range = (y0.floor().max(0.0) as u32)..=(y1.ceil().min(f64::from(rows)) as u32);
    let (mut n, mut sum, mut sum2, mut lo, mut hi) =
        (0usize, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for r in row_range {
        for c in col_range.clone() {
            if !inside(f64::from(c) + 0.5, f64::from(r) + 0.5) {
                continue;
            }
            let Some(v) = value(r, c) else {
                continue;
            };
            n += 1;
            sum += v;
            sum2 += v * v;
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let var = if n > 1 {
        ((sum2 - sum * mean) / (n as f64 - 1.0)).max(0.0)
    } else {
        0.0
    };
    let area_px = match shape {
        RoiShape::Rectangle => (x1 - x0) * (y1 - y0),
        RoiShape::Ellipse => std::f64::consts::PI * rx * ry,
    };
    Some(RoiStats {
        count: n,
        mean,
        sd: var.sqrt(),
        min: lo,
        max: hi,
        area_mm2: spacing.map(|([row_sp, col_sp], _)| area_px * row_sp * col_sp),
        area_px,
    })
}
