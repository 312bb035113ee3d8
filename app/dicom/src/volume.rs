//! Volumes and multiplanar reformatting on the CPU: a series with a regular grid in patient space held as
//! modality values (HU for CT), filled slice by slice as frames decode, and resliced along any plane —
//! axial, coronal, sagittal or oblique — trilinearly in millimetres, with thick-slab MIP, MinIP or mean.
//! This is the reference a GPU reslicer is tested against.
//!
//! Coordinates are DICOM patient coordinates (LPS, mm). A plane follows DICOM's image conventions: the
//! centre of its first pixel, a unit vector along a row and one down a column (as
//! ImageOrientationPatient), and the spacing between rows and between columns.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::geometry::{SliceSource, VolumeGeometry, cross, dot, slice_plan};
use crate::measure::{PointInImage, RoiShape, RoiStats, roi_stats_by};
use crate::pixel::{Frame, VoiFunction, Window};
use crate::study::Series;

/// Voxels as stored, one vector per slice (empty until it decodes, so a decoded slice moves in
/// without a copy): 16-bit where every modality value is a whole number in range (CT in HU), which
/// halves the memory of 32-bit floats; else f32.
#[derive(Debug, Clone)]
enum Voxels {
    I16(Vec<Vec<i16>>),
    F32(Vec<Vec<f32>>),
}

/// One slice's values.
#[derive(Debug, Clone)]
enum SliceData {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

/// Kept out of 16-bit volumes, so a strided GPU upload can mark what it has no value for.
const BLANK_I16: i16 = i16::MIN;

/// A series as a volume: `geometry.normal` is the direction from slice k to slice k + 1.
#[derive(Debug, Clone)]
pub struct Volume {
    pub geometry: VolumeGeometry,
    voxels: Voxels,
    present: Vec<bool>,
    /// Where each slice's values come from (frames of the series, interpolated, or a gap).
    plan: Vec<SliceSource>,
}

/// Which standard plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneKind {
    Axial,
    Coronal,
    Sagittal,
}

impl PlaneKind {
    /// Row and column axes as a radiologist views the plane: axial from the feet (patient's right on
    /// the left, anterior up), coronal from the front (head up), sagittal from the patient's left
    /// (anterior on the left, head up).
    pub fn axes(self) -> ([f64; 3], [f64; 3]) {
        match self {
            PlaneKind::Axial => ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            PlaneKind::Coronal => ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
            PlaneKind::Sagittal => ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "axial" => Some(PlaneKind::Axial),
            "coronal" => Some(PlaneKind::Coronal),
            "sagittal" => Some(PlaneKind::Sagittal),
            _ => None,
        }
    }
}

/// A plane of pixels in patient space, in DICOM's image conventions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plane {
    /// Centre of the first (top left) pixel.
    pub origin_mm: [f64; 3],
    /// Unit vector along a row (left to right).
    pub row_axis: [f64; 3],
    /// Unit vector down a column (top to bottom).
    pub column_axis: [f64; 3],
    /// Between rows, between columns.
    pub pixel_spacing_mm: [f64; 2],
    pub rows: usize,
    pub columns: usize,
}

fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-9).then(|| scale(a, 1.0 / n))
}

/// How the samples across a slab are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlabMode {
    Mip,
    MinIp,
    Mean,
}

impl SlabMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mip" => Some(SlabMode::Mip),
            "minip" => Some(SlabMode::MinIp),
            "mean" => Some(SlabMode::Mean),
            _ => None,
        }
    }
}

/// A thick slab: its thickness along the plane's normal (0: the plane alone) and how it is combined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slab {
    pub thickness_mm: f64,
    pub mode: SlabMode,
}

impl Default for Slab {
    fn default() -> Self {
        Slab {
            thickness_mm: 0.0,
            mode: SlabMode::Mip,
        }
    }
}

impl Plane {
    /// The plane of `kind` through `through`, covering the volume, `spacing` mm per pixel both ways.
    pub fn standard(
        kind: PlaneKind,
        volume: &VolumeGeometry,
        through: [f64; 3],
        spacing: f64,
    ) -> Self {
        let (row, col) = kind.axes();
        Self::covering(row, col, volume, through, spacing)
    }

    /// The plane through `through` with normal `normal`, covering the volume: its row axis is the
    /// standard plane's nearest to it (the axial's for a normal nearest the feet-head axis, and so on),
    /// projected onto the plane. `None` for a zero normal.
    pub fn oblique(
        normal: [f64; 3],
        volume: &VolumeGeometry,
        through: [f64; 3],
        spacing: f64,
    ) -> Option<Self> {
        let n = unit(normal)?;
        let kind = [PlaneKind::Sagittal, PlaneKind::Coronal, PlaneKind::Axial]
            .into_iter()
            .enumerate()
            .max_by(|(i, _), (j, _)| n[*i].abs().total_cmp(&n[*j].abs()))
            .map_or(PlaneKind::Axial, |(_, k)| k);
        let (row0, _) = kind.axes();
        let row = unit(add(row0, scale(n, -dot(row0, n))))?;
        // Down a column: the normal crossed with the row axis, turned to point as the standard one does.
        let mut col = cross(n, row);
        if dot(col, kind.axes().1) < 0.0 {
            col = scale(col, -1.0);
        }
        Some(Self::covering(row, col, volume, through, spacing))
    }

    /// A view's plane: rows along `row`, columns down `col` (made orthonormal), through `through`, covering
    /// the volume around the projection of its centre, so that the picture stays put while the plane moves
    /// along its normal. `None` when the axes are parallel or zero.
    pub fn view(
        row: [f64; 3],
        col: [f64; 3],
        volume: &VolumeGeometry,
        through: [f64; 3],
        spacing: f64,
    ) -> Option<Self> {
        let row = unit(row)?;
        let col = unit(add(col, scale(row, -dot(col, row))))?;
        let n = cross(row, col);
        let c = volume_centre(volume);
        let d = [through[0] - c[0], through[1] - c[1], through[2] - c[2]];
        let on_plane = add(c, scale(n, dot(d, n)));
        Some(Self::covering(row, col, volume, on_plane, spacing))
    }

    fn covering(
        row: [f64; 3],
        col: [f64; 3],
        v: &VolumeGeometry,
        through: [f64; 3],
        spacing: f64,
    ) -> Self {
        let spacing = if spacing.is_finite() && spacing > 0.0 {
            spacing
        } else {
            v.spacing.iter().copied().fold(f64::INFINITY, f64::min)
        };
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for corner in 0..8 {
            let idx = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
            let mut p = v.origin;
            for (axis, dir) in [v.row_dir, v.col_dir, v.normal].into_iter().enumerate() {
                let n = v.dims[axis].saturating_sub(1) as f64 * idx[axis] as f64;
                p = add(p, scale(dir, n * v.spacing[axis]));
            }
            let d = [p[0] - through[0], p[1] - through[1], p[2] - through[2]];
            for (k, axis) in [row, col].into_iter().enumerate() {
                let t = dot(d, axis);
                lo[k] = lo[k].min(t);
                hi[k] = hi[k].max(t);
            }
        }
        // Whole pixels from the point itself, so it falls on a pixel centre.
        let first = [(lo[0] / spacing).floor(), (lo[1] / spacing).floor()];
        let last = [(hi[0] / spacing).ceil(), (hi[1] / spacing).ceil()];
        let origin = add(
            through,
            add(
                scale(row, first[0] * spacing),
                scale(col, first[1] * spacing),
            ),
        );
        Plane {
            origin_mm: origin,
            row_axis: row,
            column_axis: col,
            pixel_spacing_mm: [spacing, spacing],
            rows: ((last[1] - first[1]) as usize + 1).min(8192),
            columns: ((last[0] - first[0]) as usize + 1).min(8192),
        }
    }

    /// The patient position of pixel (row, column).
    pub fn point(&self, row: f64, column: f64) -> [f64; 3] {
        add(
            self.origin_mm,
            add(
                scale(self.row_axis, column * self.pixel_spacing_mm[1]),
                scale(self.column_axis, row * self.pixel_spacing_mm[0]),
            ),
        )
    }

    pub fn normal(&self) -> [f64; 3] {
        cross(self.row_axis, self.column_axis)
    }

    /// Where patient point `p` projects onto the plane, as (row, column) pixel coordinates: the inverse
    /// of [`Plane::point`] for points on the plane.
    pub fn pixel_of(&self, p: [f64; 3]) -> [f64; 2] {
        let d = [
            p[0] - self.origin_mm[0],
            p[1] - self.origin_mm[1],
            p[2] - self.origin_mm[2],
        ];
        [
            dot(d, self.column_axis) / self.pixel_spacing_mm[0],
            dot(d, self.row_axis) / self.pixel_spacing_mm[1],
        ]
    }
}

/// A resliced plane: modality values, row-major; NaN where the plane leaves the volume or meets a
/// slice not decoded.
#[derive(Debug, Clone)]
pub struct Resliced {
    pub plane: Plane,
    pub values: Vec<f32>,
}

impl Volume {
    /// An empty volume for `series`, whose frames must form a regular grid (a sentence says why not).
    pub fn for_series(series: &Series) -> Result<Self> {
        let (geometry, plan) = slice_plan(series)?;
        let mut v = Self::new(geometry);
        v.plan = plan;
        Ok(v)
    }

    /// An empty volume of `geometry`: no slice present.
    pub fn new(geometry: VolumeGeometry) -> Self {
        Volume {
            voxels: Voxels::I16(vec![Vec::new(); geometry.dims[2]]),
            present: vec![false; geometry.dims[2]],
            plan: (0..geometry.dims[2]).map(SliceSource::Frame).collect(),
            geometry,
        }
    }

    /// Whether slice `k` is filled.
    pub fn has_slice(&self, k: usize) -> bool {
        self.present.get(k).copied().unwrap_or(false)
    }

    pub fn is_complete(&self) -> bool {
        self.present.iter().all(|p| *p)
    }

    /// Fills slice `k` with `frame`'s modality values.
    pub fn set_slice(&mut self, k: usize, frame: &Frame) -> Result<()> {
        let values = SliceValues::from_frame(&self.geometry, k, frame.clone())?;
        self.put_slice(k, values)
    }

    /// Fills slice `k` with values made by [`SliceValues::from_frame`] (a copy: the conversion is done
    /// before, outside any lock around the volume).
    pub fn put_slice(&mut self, k: usize, values: SliceValues) -> Result<()> {
        let n = self.geometry.dims[0] * self.geometry.dims[1];
        if k >= self.present.len() || values.len() != n {
            return Err(Error::Geometry(format!(
                "slice {k} does not fit a volume of {:?}",
                self.geometry.dims
            )));
        }
        if let (Voxels::I16(v), SliceData::F32(_)) = (&mut self.voxels, &values.0) {
            // Values that are not whole numbers in range: the volume goes to f32.
            let widened = std::mem::take(v)
                .into_iter()
                .map(|s| s.into_iter().map(f32::from).collect())
                .collect();
            self.voxels = Voxels::F32(widened);
        }
        match (&mut self.voxels, values.0) {
            (Voxels::I16(v), SliceData::I16(x)) => v[k] = x,
            (Voxels::F32(v), SliceData::F32(x)) => v[k] = x,
            (Voxels::F32(v), SliceData::I16(x)) => v[k] = x.into_iter().map(f32::from).collect(),
            (Voxels::I16(_), SliceData::F32(_)) => {}
        }
        self.present[k] = true;
        Ok(())
    }

    /// Bytes held by the voxels.
    pub fn byte_len(&self) -> usize {
        match &self.voxels {
            Voxels::I16(v) => v.iter().map(|s| s.len() * 2).sum(),
            Voxels::F32(v) => v.iter().map(|s| s.len() * 4).sum(),
        }
    }

    /// The value of voxel (column, row, slice); `None` outside or not yet decoded.
    pub fn voxel(&self, i: usize, j: usize, k: usize) -> Option<f32> {
        let [cols, rows, slices] = self.geometry.dims;
        if i >= cols || j >= rows || k >= slices || !self.has_slice(k) {
            return None;
        }
        let at = j * cols + i;
        match &self.voxels {
            Voxels::I16(v) => v.get(k)?.get(at).map(|x| f32::from(*x)),
            Voxels::F32(v) => v.get(k)?.get(at).copied(),
        }
    }

    /// The volume's value at patient point `p` (mm), trilinear between the 8 voxels around it; `None`
    /// outside the volume or next to a missing slice.
    pub fn sample(&self, p: [f64; 3]) -> Option<f32> {
        let g = &self.geometry;
        let f = g.index_of(p);
        let mut base = [0usize; 3];
        let mut frac = [0f64; 3];
        for a in 0..3 {
            let last = g.dims[a].saturating_sub(1) as f64;
            // A thousandth of a voxel past the edge still samples the edge voxel (rounding of the
            // plane's corners, in f32 on the GPU).
            if !(f[a] >= -1e-3 && f[a] <= last + 1e-3) {
                return None;
            }
            let x = f[a].clamp(0.0, last);
            let b = x.floor().min((last - 1.0).max(0.0));
            base[a] = b as usize;
            frac[a] = x - b;
        }
        let mut acc = 0f64;
        for corner in 0..8 {
            let o = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
            let w: f64 = (0..3)
                .map(|a| if o[a] == 1 { frac[a] } else { 1.0 - frac[a] })
                .product();
            if w == 0.0 {
                continue;
            }
            let v = self.voxel(base[0] + o[0], base[1] + o[1], base[2] + o[2])?;
            if v.is_nan() {
                return None;
            }
            acc += w * f64::from(v);
        }
        Some(acc as f32)
    }

    /// The volume along `plane`: each pixel sampled trilinearly; with a slab, samples every
    /// `min(spacing)` mm across its thickness along the plane's normal, combined by its mode.
    pub fn reslice(&self, plane: &Plane, slab: Slab) -> Resliced {
        let step = self
            .geometry
            .spacing
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-3);
        let n = plane.normal();
        let count = if slab.thickness_mm > 0.0 {
            ((slab.thickness_mm / step).round() as usize).max(1) + 1
        } else {
            1
        };
        let offsets: Vec<f64> = (0..count)
            .map(|s| {
                if count == 1 {
                    0.0
                } else {
                    -slab.thickness_mm / 2.0 + slab.thickness_mm * s as f64 / (count - 1) as f64
                }
            })
            .collect();
        let mut values = vec![f32::NAN; plane.rows * plane.columns];
        values
            .par_chunks_mut(plane.columns.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                for (c, out) in row.iter_mut().enumerate() {
                    let p = plane.point(r as f64, c as f64);
                    let mut got: Option<f64> = None;
                    let mut inside = 0usize;
                    for t in &offsets {
                        let Some(v) = self.sample(add(p, scale(n, *t))) else {
                            continue;
                        };
                        let v = f64::from(v);
                        inside += 1;
                        got = Some(match (got, slab.mode) {
                            (None, _) => v,
                            (Some(g), SlabMode::Mip) => g.max(v),
                            (Some(g), SlabMode::MinIp) => g.min(v),
                            (Some(g), SlabMode::Mean) => g + v,
                        });
                    }
                    if let Some(g) = got {
                        *out = if slab.mode == SlabMode::Mean {
                            (g / inside as f64) as f32
                        } else {
                            g as f32
                        };
                    }
                }
            });
        Resliced {
            plane: plane.clone(),
            values,
        }
    }

    /// Statistics (HU for CT) inside a rectangle or ellipse drawn on `plane`, corners `a` and `b` in
    /// its pixel coordinates, each pixel sampled as [`Volume::reslice`] samples it.
    pub fn roi_stats(
        &self,
        plane: &Plane,
        shape: RoiShape,
        a: PointInImage,
        b: PointInImage,
    ) -> Option<RoiStats> {
        let spacing = Some((plane.pixel_spacing_mm, crate::SpacingSource::Patient));
        let size = (plane.columns as u32, plane.rows as u32);
        roi_stats_by(shape, a, b, size, spacing, |r, c| {
            self.sample(plane.point(f64::from(r), f64::from(c)))
                .map(f64::from)
        })
    }

    /// The centre of the volume in patient mm.
    pub fn centre(&self) -> [f64; 3] {
        volume_centre(&self.geometry)
    }

    /// Slice `k`'s voxels when the volume is 16-bit (what a GPU texture takes) and the slice is
    /// decoded; `None` otherwise.
    pub fn slice_i16(&self, k: usize) -> Option<&[i16]> {
        match &self.voxels {
            Voxels::I16(v) => v.get(k).filter(|s| !s.is_empty()).map(Vec::as_slice),
            Voxels::F32(_) => None,
        }
    }

    /// Whether the voxels are 16-bit (so far: an f32 slice turns the whole volume to f32).
    pub fn is_16bit(&self) -> bool {
        matches!(self.voxels, Voxels::I16(_))
    }

    /// Where each slice comes from.
    pub fn plan(&self) -> &[SliceSource] {
        &self.plan
    }

    /// The slices that are gaps in the series (no frame lies on them): blank for good.
    pub fn gaps(&self) -> Vec<usize> {
        (0..self.plan.len())
            .filter(|k| self.plan[*k] == SliceSource::Missing)
            .collect()
    }

    /// The slices not (yet) filled.
    pub fn missing_slices(&self) -> Vec<usize> {
        (0..self.present.len())
            .filter(|k| !self.present[*k])
            .collect()
    }
}

/// One slice's modality values, ready to copy into a [`Volume`].
#[derive(Debug, Clone)]
pub struct SliceValues(SliceData);

impl SliceValues {
    /// `frame`'s modality values as slice `k` of a volume of `geometry`: 16-bit when they are whole
    /// numbers in range (an integer rescale, as CT's, takes a fast path), else f32.
    pub fn from_frame(geometry: &VolumeGeometry, k: usize, frame: Frame) -> Result<Self> {
        let [cols, rows, slices] = geometry.dims;
        if k >= slices || frame.rows as usize != rows || frame.cols as usize != cols {
            return Err(Error::Geometry(format!(
                "slice {k} of {}×{} does not fit a volume of {cols}×{rows}×{slices}",
                frame.cols, frame.rows
            )));
        }
        if frame.is_color() {
            return Err(Error::Geometry("colour images do not make a volume".into()));
        }
        if frame.samples.len() != rows * cols {
            return Err(Error::Geometry(format!(
                "slice {k} has {} samples for {cols}×{rows}",
                frame.samples.len()
            )));
        }
        let frame = match whole_i16(frame) {
            Ok(v) => return Ok(SliceValues(SliceData::I16(v))),
            Err(f) => f,
        };
        let values: Vec<f64> = (0..rows * cols)
            .map(|i| {
                frame
                    .samples
                    .get(i)
                    .map_or(f64::NAN, |s| frame.modality.apply(s as f64))
            })
            .collect();
        let whole = values
            .iter()
            .all(|v| v.fract() == 0.0 && *v > f64::from(BLANK_I16) && *v <= f64::from(i16::MAX));
        Ok(SliceValues(if whole {
            SliceData::I16(values.iter().map(|v| *v as i16).collect())
        } else {
            SliceData::F32(values.iter().map(|v| *v as f32).collect())
        }))
    }

    /// The slice `t` of the way from `a` to `b` (0: `a`), for a slice no frame lies on; 16-bit stays
    /// 16-bit, rounded to the nearest whole value.
    pub fn between(a: &SliceValues, b: &SliceValues, t: f64) -> SliceValues {
        let lerp = |x: f64, y: f64| x + (y - x) * t;
        SliceValues(match (&a.0, &b.0) {
            (SliceData::I16(x), SliceData::I16(y)) => SliceData::I16(
                x.iter()
                    .zip(y)
                    .map(|(p, q)| lerp(f64::from(*p), f64::from(*q)).round() as i16)
                    .collect(),
            ),
            (x, y) => {
                let wide = |d: &SliceData| -> Vec<f32> {
                    match d {
                        SliceData::I16(v) => v.iter().map(|p| f32::from(*p)).collect(),
                        SliceData::F32(v) => v.clone(),
                    }
                };
                SliceData::F32(
                    wide(x)
                        .iter()
                        .zip(wide(y))
                        .map(|(p, q)| lerp(f64::from(*p), f64::from(q)) as f32)
                        .collect(),
                )
            }
        })
    }

    fn len(&self) -> usize {
        match &self.0 {
            SliceData::I16(v) => v.len(),
            SliceData::F32(v) => v.len(),
        }
    }
}

/// The modality values of a frame with an integer rescale (or none) as 16-bit, converted in place
/// where the stored samples are 16-bit (no new allocation); the frame back when the rescale is not
/// integral or a value would leave the 16-bit range (its stored range says beforehand).
fn whole_i16(frame: Frame) -> std::result::Result<Vec<i16>, Box<Frame>> {
    use crate::pixel::{ModalityLut, Samples};
    let (slope, intercept) = match frame.modality {
        ModalityLut::Identity => (1i32, 0i32),
        // Bounds that keep every product and sum in i32 once the ends are known to fit 16 bits.
        ModalityLut::Rescale { slope, intercept }
            if slope.fract() == 0.0
                && intercept.fract() == 0.0
                && slope.abs() <= 65536.0
                && intercept.abs() <= 65536.0 =>
        {
            (slope as i32, intercept as i32)
        }
        _ => return Err(Box::new(frame)),
    };
    let (lo, hi) = frame.stored_range;
    let ends = [
        lo * i64::from(slope) + i64::from(intercept),
        hi * i64::from(slope) + i64::from(intercept),
    ];
    let fits = ends
        .iter()
        .all(|x| *x > i64::from(BLANK_I16) && *x <= i64::from(i16::MAX));
    if !fits {
        return Err(Box::new(frame));
    }
    // In i32 (16 lanes to an AVX-512 register), in place where the stored samples are 16-bit: a
    // plain loop over a slice, which the compiler vectorises.
    let f = |s: i32| (s * slope + intercept) as i16;
    Ok(match frame.samples {
        // CT's usual rescale (slope 1): one 16-bit add, exact because both ends fit.
        Samples::I16(mut v) if slope == 1 => {
            let add = intercept as i16;
            for x in v.iter_mut() {
                *x = x.wrapping_add(add);
            }
            v
        }
        Samples::I16(mut v) => {
            for x in v.iter_mut() {
                *x = f(i32::from(*x));
            }
            v
        }
        Samples::U16(v) => match bytemuck::allocation::try_cast_vec::<u16, i16>(v) {
            Ok(mut v) => {
                for x in v.iter_mut() {
                    // The same bits, read back as the unsigned stored value.
                    *x = f(i32::from(*x as u16));
                }
                v
            }
            Err((_, v)) => v.into_iter().map(|s| f(i32::from(s))).collect(),
        },
        Samples::U8(v) => v.into_iter().map(|s| f(i32::from(s))).collect(),
        // Wider samples are in range (the ends fit), so they narrow to i32 without loss.
        Samples::U32(v) => v.into_iter().map(|s| f(s as i32)).collect(),
        Samples::I32(v) => v.into_iter().map(f).collect(),
    })
}

/// The voxel value a 16-bit volume holds where no slice has been decoded.
pub const BLANK_VOXEL: i16 = BLANK_I16;

fn volume_centre(g: &VolumeGeometry) -> [f64; 3] {
    let mut p = g.origin;
    for (axis, dir) in [g.row_dir, g.col_dir, g.normal].into_iter().enumerate() {
        let half = g.dims[axis].saturating_sub(1) as f64 * g.spacing[axis] / 2.0;
        p = add(p, scale(dir, half));
    }
    p
}

/// What [`fill`] did: the first decoded slice's own window, and the slices that failed with why.
#[derive(Debug, Default)]
pub struct Filled {
    pub window: Option<(Window, VoiFunction)>,
    pub failed: Vec<(usize, String)>,
}

/// Decodes every frame of `series` on the rayon pool and writes it into `volume` as soon as it is
/// decoded, so a reader sees the slices arrive (each file is read once, whatever its frame count).
/// `progress` gets the number of slices done; `cancel` stops it between files. A file that fails
/// leaves its slices blank and is listed.
pub fn fill(
    series: &Series,
    volume: &RwLock<Volume>,
    cancel: &AtomicBool,
    progress: &(dyn Fn(usize) + Sync),
) -> Filled {
    // Display index by file.
    let mut files: Vec<(&std::path::Path, Vec<(usize, u32)>)> = Vec::new();
    let mut at: std::collections::HashMap<&std::path::Path, usize> = Default::default();
    for k in 0..series.frames.len() {
        let Some((inst, f)) = series.instance_of(k) else {
            continue;
        };
        let i = *at.entry(&*inst.path).or_insert_with(|| {
            files.push((&*inst.path, Vec::new()));
            files.len() - 1
        });
        if let Some(slot) = files.get_mut(i) {
            slot.1.push((k, f));
        }
    }
    let (geometry, plan) = match volume.read() {
        Ok(v) => (v.geometry.clone(), v.plan.clone()),
        Err(_) => return Filled::default(),
    };
    // Frame k → the slice it lies on; frames an interpolated slice needs are kept until the end.
    let mut slice_of = std::collections::HashMap::new();
    let mut needed = std::collections::HashSet::new();
    for (z, src) in plan.iter().enumerate() {
        match src {
            SliceSource::Frame(k) => {
                slice_of.insert(*k, z);
            }
            SliceSource::Between { below, above, .. } => {
                needed.insert(*below);
                needed.insert(*above);
            }
            SliceSource::Missing => {}
        }
    }
    let kept = std::sync::Mutex::new(std::collections::HashMap::new());
    // The middle slices first: a viewer's planes start through the centre, so its first pictures fill
    // before the ends arrive.
    let middle = series.frames.len() / 2;
    files.sort_by_key(|(_, slices)| {
        slices
            .first()
            .map_or(usize::MAX, |(k, _)| k.abs_diff(middle))
    });
    let done = std::sync::atomic::AtomicUsize::new(0);
    let window = std::sync::Mutex::new(None);
    let failed = std::sync::Mutex::new(Vec::new());
    files.par_iter().for_each(|(path, slices)| {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let fail = |why: String| {
            if let Ok(mut f) = failed.lock() {
                f.extend(slices.iter().map(|(k, _)| (*k, why.clone())));
            }
        };
        let mut frames: Vec<Option<Frame>> = match crate::pixel::decode_image_file(path) {
            Ok(f) => f.into_iter().map(Some).collect(),
            Err(e) => return fail(e.to_string()),
        };
        for (k, f) in slices {
            let Some(frame) = frames.get_mut(*f as usize).and_then(Option::take) else {
                fail(format!("{} lacks frame {f}", path.display()));
                continue;
            };
            let own_window = frame.default_window();
            // Converted on this thread; the lock is held only to move the slice in.
            let z = slice_of.get(k).copied();
            let written =
                SliceValues::from_frame(&geometry, z.unwrap_or(0), frame).and_then(|values| {
                    if needed.contains(k)
                        && let Ok(mut m) = kept.lock()
                    {
                        m.insert(*k, values.clone());
                    }
                    match (z, volume.write()) {
                        (Some(z), Ok(mut v)) => v.put_slice(z, values),
                        (None, Ok(_)) => Ok(()),
                        (_, Err(_)) => Err(Error::Geometry("the volume's lock is poisoned".into())),
                    }
                });
            if let Err(e) = written {
                fail(e.to_string());
                continue;
            }
            if let Ok(mut w) = window.lock()
                && w.as_ref().is_none_or(|(first, _)| k < first)
            {
                *w = Some((*k, own_window));
            }
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        }
    });
    // Slices between frames, once both frames are in.
    let kept = kept.into_inner().unwrap_or_default();
    for (z, src) in plan.iter().enumerate() {
        if let SliceSource::Between { below, above, t } = src
            && let (Some(a), Some(b)) = (kept.get(below), kept.get(above))
            && !cancel.load(Ordering::Relaxed)
            && let Ok(mut v) = volume.write()
        {
            let _ = v.put_slice(z, SliceValues::between(a, b, *t));
        }
    }
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort_by_key(|(k, _)| *k);
    Filled {
        window: window.into_inner().ok().flatten().map(|(_, w)| w),
        failed,
    }
}

/// Segment numbers on a volume's grid, from the DICOM SEG frames laid over its slices (by source image,
/// else by frame of reference and position): what a reformatted plane shows of a segmentation. Slices
/// no segment touches hold nothing.
#[derive(Debug, Clone)]
pub struct LabelVolume {
    geometry: VolumeGeometry,
    slices: Vec<Option<Vec<u16>>>,
    /// Segment labels by number.
    pub names: std::collections::BTreeMap<u16, String>,
}

impl LabelVolume {
    /// The labels of `segmentations` over `series` (whose grid is `geometry`); `None` when no frame of
    /// any lies on the series.
    pub fn from_segmentations(
        series: &Series,
        geometry: &VolumeGeometry,
        plan: &[SliceSource],
        segmentations: &[std::sync::Arc<crate::seg::Segmentation>],
    ) -> Option<Self> {
        let [cols, rows, slices] = geometry.dims;
        let mut out = LabelVolume {
            geometry: geometry.clone(),
            slices: vec![None; slices],
            names: Default::default(),
        };
        for z in 0..slices {
            // An interpolated slice takes the nearer frame's labels; a gap has none.
            let k = match plan.get(z) {
                Some(SliceSource::Frame(k)) => *k,
                Some(SliceSource::Between { below, above, t }) => {
                    if *t < 0.5 {
                        *below
                    } else {
                        *above
                    }
                }
                _ => continue,
            };
            let Some((inst, frame)) = series.instance_of(k) else {
                continue;
            };
            let plane = series.frame_of_reference.as_deref().and_then(|f| {
                let g = inst.frame_geometry.get(frame as usize)?.as_ref()?;
                Some((f, g.position, g.orientation))
            });
            for seg in segmentations
                .iter()
                .filter(|s| s.cols as usize == cols && s.rows as usize == rows)
            {
                for (_, info, f) in seg.frames_over(&inst.sop_instance_uid, plane) {
                    let labels = out.slices[z].get_or_insert_with(|| vec![0; cols * rows]);
                    for (l, on) in labels.iter_mut().zip(&f.mask) {
                        if *on {
                            *l = f.segment;
                        }
                    }
                    out.names.insert(f.segment, info.label.clone());
                }
            }
        }
        out.slices.iter().any(Option::is_some).then_some(out)
    }

    /// The segment at each pixel of `plane` (nearest voxel; 0 for none), row-major.
    pub fn reslice(&self, plane: &Plane) -> Vec<u16> {
        let g = &self.geometry;
        let mut out = vec![0u16; plane.rows * plane.columns];
        out.par_chunks_mut(plane.columns.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                for (c, o) in row.iter_mut().enumerate() {
                    let i = g.index_of(plane.point(r as f64, c as f64));
                    let n = [i[0].round(), i[1].round(), i[2].round()];
                    let inside = (0..3).all(|a| n[a] >= 0.0 && n[a] < g.dims[a] as f64);
                    if !inside {
                        continue;
                    }
                    let (x, y, z) = (n[0] as usize, n[1] as usize, n[2] as usize);
                    if let Some(Some(s)) = self.slices.get(z) {
                        *o = s.get(y * g.dims[0] + x).copied().unwrap_or(0);
                    }
                }
            });
        out
    }
}
