//! Patient-space geometry (DICOM LPS, mm) of frames and volumes. Names say their space:
//! `patient_from_pixel` maps (col, row) pixel coordinates to patient coordinates.

use dicom_dictionary_std::tags;
use serde::Serialize;

use crate::attrs::{self, Obj};
use crate::error::{Error, Result};
use crate::study::Series;

/// Which attribute the pixel spacing came from: they mean different things for projection radiographs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpacingSource {
    /// PixelSpacing (0028,0030): in the patient (or calibrated) plane.
    Patient,
    /// ImagerPixelSpacing (0018,1164): at the detector front plane, magnification not corrected.
    Detector,
}

/// Position, orientation and spacing of one frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameGeometry {
    /// ImagePositionPatient: centre of the first transmitted pixel, mm.
    pub position: [f64; 3],
    /// ImageOrientationPatient: row direction cosines then column direction cosines.
    pub orientation: [f64; 6],
    /// (row spacing, column spacing) in mm, i.e. distance between rows, then between columns.
    pub spacing: Option<([f64; 2], SpacingSource)>,
    pub slice_thickness: Option<f64>,
}

/// Pixel spacing of a frame: PixelSpacing (or Pixel Measures macro) first, then ImagerPixelSpacing.
pub fn pixel_spacing(obj: &Obj, frame: u32) -> Option<([f64; 2], SpacingSource)> {
    let two = |v: Vec<f64>| match v.as_slice() {
        [r, c, ..] if *r > 0.0 && *c > 0.0 => Some([*r, *c]),
        _ => None,
    };
    attrs::frame_attr(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, |o| {
        attrs::floats(o, tags::PIXEL_SPACING).and_then(two)
    })
    .map(|s| (s, SpacingSource::Patient))
    .or_else(|| {
        attrs::floats(obj, tags::IMAGER_PIXEL_SPACING)
            .and_then(two)
            .map(|s| (s, SpacingSource::Detector))
    })
}

impl FrameGeometry {
    /// Reads the geometry of `frame`, from functional groups for enhanced objects.
    pub fn read(obj: &Obj, frame: u32) -> Option<Self> {
        let position = attrs::frame_attr(obj, frame, tags::PLANE_POSITION_SEQUENCE, |o| {
            attrs::floats(o, tags::IMAGE_POSITION_PATIENT)
        })?;
        let orientation = attrs::frame_attr(obj, frame, tags::PLANE_ORIENTATION_SEQUENCE, |o| {
            attrs::floats(o, tags::IMAGE_ORIENTATION_PATIENT)
        })?;
        let (Ok(position), Ok(orientation)) = (
            <[f64; 3]>::try_from(position.get(..3)?),
            <[f64; 6]>::try_from(orientation.get(..6)?),
        ) else {
            return None;
        };
        Some(FrameGeometry {
            position,
            orientation,
            spacing: pixel_spacing(obj, frame),
            slice_thickness: attrs::frame_attr(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, |o| {
                attrs::float(o, tags::SLICE_THICKNESS)
            }),
        })
    }

    pub fn row_dir(&self) -> [f64; 3] {
        [
            self.orientation[0],
            self.orientation[1],
            self.orientation[2],
        ]
    }

    pub fn col_dir(&self) -> [f64; 3] {
        [
            self.orientation[3],
            self.orientation[4],
            self.orientation[5],
        ]
    }

    pub fn normal(&self) -> [f64; 3] {
        cross(self.row_dir(), self.col_dir())
    }

    pub fn distance_along_normal(&self) -> f64 {
        dot(self.position, self.normal())
    }

    /// Patient coordinates (mm) of the pixel at column `x`, row `y`.
    pub fn patient_from_pixel(&self, x: f64, y: f64) -> Option<[f64; 3]> {
        let ([row_spacing, col_spacing], _) = self.spacing?;
        let (r, c) = (self.row_dir(), self.col_dir());
        Some(std::array::from_fn(|i| {
            self.position[i] + r[i] * col_spacing * x + c[i] * row_spacing * y
        }))
    }
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// The patient direction a unit vector points to, as DICOM's letters (PS3.3 C.7.6.1.1.1): L/R along
/// x, P/A along y, H/F along z, strongest first, an axis named only when it carries a quarter or more
/// of the vector ("L", or "LP" for an oblique direction). Empty for a zero vector.
pub fn orientation_letters(v: [f64; 3]) -> String {
    let n = dot(v, v).sqrt();
    if !(n.is_finite() && n > 1e-9) {
        return String::new();
    }
    let mut axes: Vec<(f64, char)> = [('L', 'R'), ('P', 'A'), ('H', 'F')]
        .iter()
        .zip(v)
        .map(|((plus, minus), c)| (c.abs() / n, if c >= 0.0 { *plus } else { *minus }))
        .filter(|(w, _)| *w >= 0.25)
        .collect();
    axes.sort_by(|a, b| b.0.total_cmp(&a.0));
    axes.into_iter().map(|(_, c)| c).collect()
}

/// A series whose frames form a regular grid in patient space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeGeometry {
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Spacing in mm between columns, between rows, between slices.
    pub spacing: [f64; 3],
    /// Patient position of voxel (0, 0, 0).
    pub origin: [f64; 3],
    pub row_dir: [f64; 3],
    pub col_dir: [f64; 3],
    /// From slice k to slice k + 1.
    pub normal: [f64; 3],
}

impl VolumeGeometry {
    /// The grid of a series' frames (in display order), which must share size, orientation and
    /// in-plane spacing and lie along one normal; see [`slice_plan`] for uneven spacing.
    pub fn from_series(series: &Series) -> Result<Self> {
        slice_plan(series).map(|(g, _)| g)
    }
}

/// Where a volume slice's values come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SliceSource {
    /// Frame `k` of the series (display order) lies on it.
    Frame(usize),
    /// None does: interpolated linearly between two frames, `t` of the way from `below` to `above`.
    Between { below: usize, above: usize, t: f64 },
    /// A gap in an evenly spaced series (a slice never sent, or lost): left blank, and listed.
    Missing,
}

/// The volume grid of a series and where each of its slices comes from. Evenly spaced frames (to 1%
/// of the step, or 0.01 mm) are the slices themselves. Gaps that are whole multiples of the step
/// (missing slices) leave blank slices. Any other spacing is resampled by position at the smallest
/// step between frames, so distances in the volume stay true. Frames offset sideways (gantry tilt,
/// shear) are refused with a sentence.
pub fn slice_plan(series: &Series) -> Result<(VolumeGeometry, Vec<SliceSource>)> {
    let n = series.frames.len();
    if n < 2 {
        return Err(Error::Geometry("a volume needs at least two slices".into()));
    }
    let mut geoms = Vec::with_capacity(n);
    let mut size = None;
    for i in 0..n {
        let (inst, _) = series
            .instance_of(i)
            .ok_or_else(|| Error::Geometry("frame index out of range".into()))?;
        let px = inst
            .pixel
            .as_ref()
            .ok_or_else(|| Error::Geometry("a frame has no pixel description".into()))?;
        let this_size = (px.rows, px.cols);
        if *size.get_or_insert(this_size) != this_size {
            return Err(Error::Geometry("slices differ in size".into()));
        }
        geoms.push(series.geometry_of(i).ok_or_else(|| {
            Error::Geometry(format!("slice {} has no position or orientation", i + 1))
        })?);
    }
    let (rows, cols) = size.unwrap_or_default();
    let first = geoms[0];
    let ([row_spacing, col_spacing], _) = first
        .spacing
        .ok_or_else(|| Error::Geometry("the first slice has no pixel spacing".into()))?;
    for g in &geoms {
        if g.orientation
            .iter()
            .zip(first.orientation)
            .any(|(a, b)| (a - b).abs() > 1e-3)
        {
            return Err(Error::Geometry("slices differ in orientation".into()));
        }
        if g.spacing.map(|s| s.0) != Some([row_spacing, col_spacing]) {
            return Err(Error::Geometry("slices differ in pixel spacing".into()));
        }
    }
    let d: Vec<f64> = geoms.iter().map(|g| g.distance_along_normal()).collect();
    let steps: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let sign = if steps.iter().sum::<f64>() < 0.0 {
        -1.0
    } else {
        1.0
    };
    if steps.iter().any(|s| s * sign < 1e-6) {
        return Err(Error::Geometry(
            "two slices share a position or are out of order along the normal".into(),
        ));
    }
    let mut sorted: Vec<f64> = steps.iter().map(|s| s.abs()).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let smallest = sorted[0];
    let tol = |step: f64| (step * 0.01).max(0.01);
    let (step, plan) = if sorted.iter().all(|s| (s - median).abs() <= tol(median)) {
        (median, (0..n).map(SliceSource::Frame).collect())
    } else if sorted
        .iter()
        .all(|s| (s - (s / smallest).round() * smallest).abs() <= tol(smallest))
    {
        // Whole multiples of the step: the frames on their slices, blanks between.
        let mut plan = vec![SliceSource::Frame(0)];
        for (k, s) in steps.iter().enumerate() {
            let m = (s.abs() / smallest).round() as usize;
            plan.extend(std::iter::repeat_n(
                SliceSource::Missing,
                m.saturating_sub(1),
            ));
            plan.push(SliceSource::Frame(k + 1));
        }
        (smallest, plan)
    } else {
        let at: Vec<f64> = d.iter().map(|x| (x - d[0]) * sign).collect();
        let extent = at[n - 1];
        let count = (extent / smallest + 1e-6).floor() as usize + 1;
        let mut j = 0;
        let plan = (0..count)
            .map(|z| {
                let t = z as f64 * smallest;
                while j + 2 < n && at[j + 1] <= t {
                    j += 1;
                }
                let (lo, hi) = (at[j], at[j + 1]);
                if (t - lo).abs() <= tol(smallest) {
                    SliceSource::Frame(j)
                } else if (hi - t).abs() <= tol(smallest) {
                    SliceSource::Frame(j + 1)
                } else {
                    SliceSource::Between {
                        below: j,
                        above: j + 1,
                        t: ((t - lo) / (hi - lo)).clamp(0.0, 1.0),
                    }
                }
            })
            .collect();
        (smallest, plan)
    };
    let tol = tol(step);
    // Each slice straight along the normal from the first: a gantry tilt or a shear would put
    // voxels elsewhere than a grid of these axes says.
    let normal = first.normal();
    for (g, dk) in geoms.iter().zip(&d) {
        let along = dk - d[0];
        let off: f64 = (0..3)
            .map(|a| (g.position[a] - first.position[a] - along * normal[a]).powi(2))
            .sum::<f64>()
            .sqrt();
        if off > tol.max(0.05 * row_spacing.min(col_spacing)) {
            return Err(Error::Geometry(
                "the slices are offset sideways (a gantry tilt or a sheared series), which \
                 radclip does not reformat yet"
                    .into(),
            ));
        }
    }
    let geometry = VolumeGeometry {
        dims: [cols as usize, rows as usize, plan.len()],
        spacing: [col_spacing, row_spacing, step],
        origin: first.position,
        row_dir: first.row_dir(),
        col_dir: first.col_dir(),
        // From slice k to k + 1, which may be against the orientation's normal.
        normal: if sign < 0.0 {
            [-normal[0], -normal[1], -normal[2]]
        } else {
            normal
        },
    };
    Ok((geometry, plan))
}

impl VolumeGeometry {
    /// Patient point `p` (mm) in voxel index units along the columns, rows and slices.
    pub fn index_of(&self, p: [f64; 3]) -> [f64; 3] {
        let d = [
            p[0] - self.origin[0],
            p[1] - self.origin[1],
            p[2] - self.origin[2],
        ];
        [
            dot(d, self.row_dir) / self.spacing[0],
            dot(d, self.col_dir) / self.spacing[1],
            dot(d, self.normal) / self.spacing[2],
        ]
    }

    /// The patient point (mm) at voxel index coordinates `i`.
    pub fn point_of(&self, i: [f64; 3]) -> [f64; 3] {
        let dirs = [self.row_dir, self.col_dir, self.normal];
        std::array::from_fn(|a| {
            self.origin[a]
                + (0..3)
                    .map(|k| dirs[k][a] * i[k] * self.spacing[k])
                    .sum::<f64>()
        })
    }

    /// `p` moved to the nearest point inside the volume's voxel grid.
    pub fn clamp_inside(&self, p: [f64; 3]) -> [f64; 3] {
        let i = self.index_of(p);
        self.point_of(std::array::from_fn(|a| {
            i[a].clamp(0.0, self.dims[a].saturating_sub(1) as f64)
        }))
    }

    /// The distance between neighbouring voxel planes along unit direction `n` (mm): a voxel spacing
    /// for the acquisition axes, less for a direction across the grid.
    pub fn step_along(&self, n: [f64; 3]) -> f64 {
        let per_mm: f64 = [self.row_dir, self.col_dir, self.normal]
            .into_iter()
            .zip(self.spacing)
            .map(|(d, s)| (dot(n, d) / s).powi(2))
            .sum();
        if per_mm > 0.0 {
            1.0 / per_mm.sqrt()
        } else {
            1.0
        }
    }
}

/// The direction DICOM's patient letters name (PS3.3 C.7.6.1.1.1: L, R, A, P, H, F; "LP" for one between
/// two axes), as a unit vector in LPS; `None` for an empty or unknown letter.
pub fn direction_of_letters(s: &str) -> Option<[f64; 3]> {
    let mut v = [0.0f64; 3];
    for ch in s.trim().chars() {
        let (axis, sign) = match ch.to_ascii_uppercase() {
            'L' => (0, 1.0),
            'R' => (0, -1.0),
            'P' => (1, 1.0),
            'A' => (1, -1.0),
            'H' => (2, 1.0),
            'F' => (2, -1.0),
            _ => return None,
        };
        v[axis] += sign;
    }
    let n = dot(v, v).sqrt();
    (n > 0.0).then(|| v.map(|x| x / n))
}

/// `v` turned by `angle` radians about unit axis `axis` (right-handed, Rodrigues' formula).
pub fn rotate(v: [f64; 3], axis: [f64; 3], angle: f64) -> [f64; 3] {
    let (s, c) = angle.sin_cos();
    let k = cross(axis, v);
    let kv = dot(axis, v) * (1.0 - c);
    std::array::from_fn(|i| v[i] * c + k[i] * s + axis[i] * kv)
}
