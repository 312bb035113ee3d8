//! The last two stages of the pixel pipeline, VOI LUT and presentation, producing 8-bit display pixels.
//! Integer frames go through a lookup table indexed by stored value, so a window change costs one table
//! build (≤ 65,536 entries) plus one pass of lookups.

use rayon::prelude::*;

use crate::pixel::{ColorModel, Frame, Samples, Voi, VoiFunction, Window};

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

/// Renders a frame with `window` (modality units) or, if `None`, the frame's default VOI (its VOI LUT
/// table, else its window, else min/max).
pub fn render(frame: &Frame, window: Option<(Window, VoiFunction)>) -> Rendered {
    let voi = window.map(|(w, f)| Voi::Window(w, f));
    render_voi(frame, voi.as_ref())
}

/// Renders a frame with an explicit VOI stage, or the frame's default when `None`.
pub fn render_voi(frame: &Frame, voi: Option<&Voi>) -> Rendered {
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
            let (lo, hi) = frame.stored_range;
            let data = if hi - lo < MAX_LUT {
                let lut = display_lut_span(frame, voi, lo, hi);
                let look = |s: i64| lut.get((s - lo) as usize).copied().unwrap_or(0);
                map_samples(&frame.samples, look)
            } else {
                let voi = voi_or_default(frame, voi);
                map_samples(&frame.samples, |s| to_display(frame, &voi, *invert, s))
            };
            Rendered::Grey { rows, cols, data }
        }
    }
}

/// Modality values (a resliced plane's; NaN where there is no image) as display pixels through `window`
/// and its function: the CPU reference of the GPU reslicer, and what `radclip reslice` writes. NaN is
/// black, inverted or not.
pub fn render_values(
    values: &[f32],
    rows: u32,
    cols: u32,
    (window, function): (Window, VoiFunction),
    invert: bool,
) -> Rendered {
    let data = values
        .par_iter()
        .map(|v| {
            if v.is_nan() {
                return 0;
            }
            let y = function.apply(f64::from(*v), window);
            let y = if invert { 1.0 - y } else { y };
            (y * 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    Rendered::Grey { rows, cols, data }
}

/// Stored value → display byte: modality LUT, VOI, presentation (MONOCHROME1 / INVERSE).
fn to_display(frame: &Frame, voi: &Voi, invert: bool, stored: i64) -> u8 {
    let y = voi.apply(frame.modality.apply(stored as f64));
    let y = if invert { 1.0 - y } else { y };
    (y * 255.0).round().clamp(0.0, 255.0) as u8
}

/// The VOI asked for, else the frame's default.
fn voi_or_default<'a>(frame: &Frame, voi: Option<&'a Voi>) -> std::borrow::Cow<'a, Voi> {
    match voi {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(frame.default_voi()),
    }
}

fn display_lut_span(frame: &Frame, voi: Option<&Voi>, lo: i64, hi: i64) -> Vec<u8> {
    let invert = matches!(frame.color, ColorModel::Mono { invert: true });
    let voi = voi_or_default(frame, voi);
    (lo..=hi)
        .map(|s| to_display(frame, &voi, invert, s))
        .collect()
}

/// The largest stored-value span a [`DisplayLut`] covers: it is indexed by 16-bit texels on the GPU.
pub const GPU_LUT_MAX: usize = 1 << 16;

/// The whole pixel pipeline of a monochrome frame as one table, indexed by `stored − first`: what the
/// viewer's GPU path samples, so that it shows exactly what [`render`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplayLut {
    pub first: i64,
    pub table: Vec<u8>,
}

/// The stored range of a monochrome frame when it fits a [`DisplayLut`], else `None`.
fn gpu_span(frame: &Frame) -> Option<(i64, i64)> {
    let (lo, hi) = frame.stored_range;
    let fits = usize::try_from(hi - lo).is_ok_and(|span| span < GPU_LUT_MAX);
    (matches!(frame.color, ColorModel::Mono { .. }) && fits).then_some((lo, hi))
}

/// The display table of a monochrome frame whose stored values span at most [`GPU_LUT_MAX`] values;
/// `None` for colour frames and wider (32-bit) data.
pub fn display_lut(frame: &Frame, voi: Option<&Voi>) -> Option<DisplayLut> {
    let (lo, hi) = gpu_span(frame)?;
    Some(DisplayLut {
        first: lo,
        table: display_lut_span(frame, voi, lo, hi),
    })
}

/// Every sample of a monochrome frame as `stored − first` in 16 bits, the index into its
/// [`DisplayLut`]; `None` where [`display_lut`] is `None`.
pub fn lut_indices(frame: &Frame) -> Option<Vec<u16>> {
    let (lo, _) = gpu_span(frame)?;
    Some(map_samples(&frame.samples, |s| (s - lo) as u16))
}

/// Applies `f` to every sample in parallel chunks.
fn map_samples<O: Copy + Default + Send>(samples: &Samples, f: impl Fn(i64) -> O + Sync) -> Vec<O> {
    fn go<T: Copy + Sync, O: Copy + Default + Send>(
        v: &[T],
        widen: impl Fn(T) -> i64 + Sync,
        f: &(impl Fn(i64) -> O + Sync),
    ) -> Vec<O> {
        let mut out = vec![O::default(); v.len()];
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
