//! The last two stages of the pixel pipeline, VOI LUT and presentation, producing 8-bit display pixels.
//! Integer frames go through a lookup table indexed by stored value, so a window change costs one table
//! build (≤ 65,536 entries) plus one pass of lookups.

use rayon::prelude::*;

use crate::pixel::{ColorModel, Frame, Samples, VoiFunction, Window};

/// Display pixels, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Grey { rows: u32, cols: u32, data: Vec<u8> },
    Rgb { rows: u32, cols: u32, data: Vec<u8> },
}

impl Rendered {
    pub fn size(&self) -> (u32, u32) {
        match self {
            Rendered::Grey { rows, cols, .. } | Rendered::Rgb { rows, cols, .. } => (*rows, *cols),
        }
    }

    /// RGBA bytes for upload as a texture.
    pub fn to_rgba(&self) -> Vec<u8> {
        match self {
            Rendered::Grey { data, .. } => data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            Rendered::Rgb { data, .. } => data
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
        }
    }
}

/// The largest stored-value span for which a lookup table is built; wider (32-bit) data is mapped per pixel.
const MAX_LUT: i64 = 1 << 20;

/// Renders a frame with `window` (modality units) or, if `None`, the frame's default window.
pub fn render(frame: &Frame, window: Option<(Window, VoiFunction)>) -> Rendered {
    let (rows, cols) = (frame.rows, frame.cols);
    match &frame.color {
        ColorModel::Rgb => Rendered::Rgb {
            rows,
            cols,
            data: match &frame.samples {
                Samples::U8(v) => v.clone(),
                other => scale_to_u8(other, frame.stored_range),
            },
        },
        ColorModel::Palette(p) => {
            let mut data = Vec::with_capacity(frame.samples.len() * 3);
            frame
                .samples
                .for_each(|i| data.extend_from_slice(&p.rgb8(i)));
            Rendered::Rgb { rows, cols, data }
        }
        ColorModel::Mono { invert } => {
            let (w, f) = window.unwrap_or_else(|| frame.default_window());
            let to_display = |stored: i64| {
                let y = f.apply(frame.modality.apply(stored as f64), w);
                let y = if *invert { 1.0 - y } else { y };
                (y * 255.0).round().clamp(0.0, 255.0) as u8
            };
            let (lo, hi) = frame.stored_range;
            let data = if hi - lo < MAX_LUT {
                let lut: Vec<u8> = (lo..=hi).map(to_display).collect();
                let look = |s: i64| lut.get((s - lo) as usize).copied().unwrap_or(0);
                map_samples(&frame.samples, look)
            } else {
                map_samples(&frame.samples, to_display)
            };
            Rendered::Grey { rows, cols, data }
        }
    }
}

/// Applies `f` to every sample in parallel chunks.
fn map_samples(samples: &Samples, f: impl Fn(i64) -> u8 + Sync) -> Vec<u8> {
    fn go<T: Copy + Sync>(
        v: &[T],
        widen: impl Fn(T) -> i64 + Sync,
        f: &(impl Fn(i64) -> u8 + Sync),
    ) -> Vec<u8> {
        let mut out = vec![0u8; v.len()];
        out.par_chunks_mut(1 << 16)
            .zip(v.par_chunks(1 << 16))
            .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &s)| *o = f(widen(s))));
        out
    }
    match samples {
        Samples::U8(v) => go(v, i64::from, &f),
        Samples::U16(v) => go(v, i64::from, &f),
        Samples::I16(v) => go(v, i64::from, &f),
        Samples::U32(v) => go(v, i64::from, &f),
        Samples::I32(v) => go(v, i64::from, &f),
    }
}

fn scale_to_u8(samples: &Samples, (lo, hi): (i64, i64)) -> Vec<u8> {
    let span = (hi - lo).max(1) as f64;
    map_samples(samples, |s| {
        (((s - lo) as f64 / span) * 255.0).round() as u8
    })
}
