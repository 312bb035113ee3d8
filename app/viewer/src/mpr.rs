//! The MPR layout's state as plain data, driven by commands like `state::Viewport`: one crosshair point
//! in patient space shared by every view, each view's plane orientation, slab, zoom and pan, and one
//! window for all. The geometry itself (planes, steps, rotations) is `radclip_dicom`'s.

use radclip_dicom::geometry::{cross, dot, rotate};
use radclip_dicom::volume::{Plane, PlaneKind, Slab};
use radclip_dicom::{VoiFunction, VolumeGeometry, Window};

/// One MPR view.
#[derive(Debug, Clone, PartialEq)]
pub struct MprView {
    pub name: &'static str,
    /// Along a row and down a column of the view, in patient space (unit, orthogonal).
    pub row: [f64; 3],
    pub col: [f64; 3],
    pub slab: Slab,
    pub zoom: f32,
    pub pan: [f32; 2],
    /// Whether rotating another view's crosshair turns this plane (the acquisition view keeps its own).
    pub rotates: bool,
}

impl MprView {
    fn standard(name: &'static str, kind: PlaneKind) -> Self {
        let (row, col) = kind.axes();
        MprView {
            name,
            row,
            col,
            slab: Slab::default(),
            zoom: 1.0,
            pan: [0.0, 0.0],
            rotates: true,
        }
    }

    pub fn normal(&self) -> [f64; 3] {
        cross(self.row, self.col)
    }
}

/// The reference-line colour of each view, as 3D Slicer colours its planes (axial red, coronal green,
/// sagittal yellow; the acquisition plane blue).
pub const VIEW_COLOURS: [[u8; 3]; 4] =
    [[230, 70, 70], [80, 200, 90], [235, 200, 60], [90, 150, 255]];

#[derive(Debug, Clone, PartialEq)]
pub enum MprCommand {
    /// Moves the crosshair to a patient point (kept inside the volume).
    SetPoint([f64; 3]),
    /// Moves view `view`'s plane along its normal by whole voxel steps.
    Scroll {
        view: usize,
        steps: f64,
    },
    /// Turns the other views' planes about view `view`'s normal (radians, right-handed).
    Rotate {
        view: usize,
        angle: f64,
    },
    /// Back to the standard planes through the same point.
    ResetOrientation,
    SetSlab {
        view: usize,
        slab: Slab,
    },
    ZoomBy {
        view: usize,
        factor: f32,
    },
    PanBy {
        view: usize,
        by: [f32; 2],
    },
    Fit {
        view: usize,
    },
    SetWindow(Window, VoiFunction),
    ToggleInvert,
}

/// The MPR layout of one series' volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpr {
    /// Index of the series in the viewer's list.
    pub series: usize,
    pub geometry: VolumeGeometry,
    /// The crosshair, in patient mm.
    pub point: [f64; 3],
    pub views: Vec<MprView>,
    pub active: usize,
    pub window: (Window, VoiFunction),
    pub invert: bool,
}

/// An acquisition normal this close to a patient axis counts as axial, coronal or sagittal.
const ALIGNED: f64 = 0.9998;

impl Mpr {
    /// Axial, coronal and sagittal views through the voxel at the volume's centre; a fourth in the
    /// acquisition plane when that is oblique.
    pub fn new(series: usize, geometry: VolumeGeometry, window: (Window, VoiFunction)) -> Self {
        let mut views = vec![
            MprView::standard("Axial", PlaneKind::Axial),
            MprView::standard("Coronal", PlaneKind::Coronal),
            MprView::standard("Sagittal", PlaneKind::Sagittal),
        ];
        if geometry.normal.iter().all(|c| c.abs() < ALIGNED) {
            views.push(MprView {
                name: "Acquisition",
                row: geometry.row_dir,
                col: geometry.col_dir,
                rotates: false,
                ..MprView::standard("Acquisition", PlaneKind::Axial)
            });
        }
        // On a voxel, so the view of the acquisition plane shows an acquired slice, not a blend of two.
        let mid = geometry.dims.map(|d| (d / 2) as f64);
        Mpr {
            series,
            point: geometry.point_of(mid),
            geometry,
            views,
            active: 0,
            window,
            invert: false,
        }
    }

    /// The plane view `view` shows: through the crosshair, covering the volume, at the finest in-plane
    /// voxel spacing.
    pub fn plane(&self, view: usize) -> Option<Plane> {
        let v = self.views.get(view)?;
        let spacing = self.geometry.spacing[0].min(self.geometry.spacing[1]);
        Plane::view(v.row, v.col, &self.geometry, self.point, spacing)
    }

    /// The direction on view `on` of view `other`'s plane (their line of intersection), or `None` when
    /// the two planes are parallel.
    pub fn reference_direction(&self, on: usize, other: usize) -> Option<[f64; 3]> {
        let (a, b) = (self.views.get(on)?, self.views.get(other)?);
        let d = cross(a.normal(), b.normal());
        let n = dot(d, d).sqrt();
        (n > 1e-6).then(|| d.map(|x| x / n))
    }

    pub fn apply(&mut self, cmd: MprCommand) {
        match cmd {
            MprCommand::SetPoint(p) => self.point = self.geometry.clamp_inside(p),
            MprCommand::Scroll { view, steps } => {
                if let Some(v) = self.views.get(view) {
                    let n = v.normal();
                    let d = steps * self.geometry.step_along(n);
                    let p = std::array::from_fn(|i| self.point[i] + n[i] * d);
                    self.point = self.geometry.clamp_inside(p);
                }
            }
            MprCommand::Rotate { view, angle } => {
                let Some(axis) = self.views.get(view).map(MprView::normal) else {
                    return;
                };
                for (j, v) in self.views.iter_mut().enumerate() {
                    if j != view && v.rotates {
                        v.row = rotate(v.row, axis, angle);
                        v.col = rotate(v.col, axis, angle);
                    }
                }
            }
            MprCommand::ResetOrientation => {
                for v in self.views.iter_mut().filter(|v| v.rotates) {
                    let kind = match v.name {
                        "Coronal" => PlaneKind::Coronal,
                        "Sagittal" => PlaneKind::Sagittal,
                        _ => PlaneKind::Axial,
                    };
                    (v.row, v.col) = kind.axes();
                }
            }
            MprCommand::SetSlab { view, slab } => {
                if let Some(v) = self.views.get_mut(view) {
                    v.slab = Slab {
                        thickness_mm: slab.thickness_mm.clamp(0.0, 500.0),
                        ..slab
                    };
                }
            }
            MprCommand::ZoomBy { view, factor } => {
                if let Some(v) = self.views.get_mut(view) {
                    v.zoom = (v.zoom * factor).clamp(0.05, 64.0);
                }
            }
            MprCommand::PanBy { view, by } => {
                if let Some(v) = self.views.get_mut(view) {
                    v.pan[0] += by[0];
                    v.pan[1] += by[1];
                }
            }
            MprCommand::Fit { view } => {
                if let Some(v) = self.views.get_mut(view) {
                    v.zoom = 1.0;
                    v.pan = [0.0, 0.0];
                }
            }
            MprCommand::SetWindow(w, f) => self.window = (w, f),
            MprCommand::ToggleInvert => self.invert = !self.invert,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A 100 × 80 × 40 grid, 0.5 × 0.5 × 2 mm, axial, from (-25, -20, 10).
    fn grid(normal: [f64; 3], row: [f64; 3], col: [f64; 3]) -> VolumeGeometry {
        VolumeGeometry {
            dims: [100, 80, 40],
            spacing: [0.5, 0.5, 2.0],
            origin: [-25.0, -20.0, 10.0],
            row_dir: row,
            col_dir: col,
            normal,
        }
    }

    fn axial() -> VolumeGeometry {
        grid([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    }

    fn mpr() -> Mpr {
        let w = (
            Window {
                center: 40.0,
                width: 400.0,
            },
            VoiFunction::Linear,
        );
        Mpr::new(0, axial(), w)
    }

    fn close(a: [f64; 3], b: [f64; 3]) -> bool {
        (0..3).all(|i| (a[i] - b[i]).abs() < 1e-9)
    }

    #[test]
    fn starts_at_the_centre_with_three_standard_views() {
        let m = mpr();
        assert_eq!(
            m.views.len(),
            3,
            "an axial acquisition needs no fourth view"
        );
        // Voxel (50, 40, 20): on an acquired slice.
        assert!(close(m.point, [0.0, 0.0, 50.0]));
        // Each view's plane passes through the crosshair.
        for i in 0..3 {
            let p = m.plane(i).unwrap();
            let d: [f64; 3] = std::array::from_fn(|a| m.point[a] - p.origin_mm[a]);
            assert!(dot(d, p.normal()).abs() < 1e-9, "view {i}");
        }
    }

    #[test]
    fn an_oblique_acquisition_gets_its_own_view() {
        let s = 0.5f64.sqrt();
        let g = grid([0.0, s, s], [1.0, 0.0, 0.0], [0.0, s, -s]);
        let m = Mpr::new(0, g, mpr().window);
        assert_eq!(m.views.len(), 4);
        assert_eq!(m.views[3].name, "Acquisition");
    }

    #[test]
    fn scrolling_moves_one_voxel_along_the_normal_and_stays_inside() {
        let mut m = mpr();
        let z = m.point[2];
        m.apply(MprCommand::Scroll {
            view: 0,
            steps: 1.0,
        });
        // The axial normal (row × column = +z here, toward the head) by one 2-mm slice.
        assert!((m.point[2] - (z + 2.0)).abs() < 1e-9);
        m.apply(MprCommand::Scroll {
            view: 1,
            steps: 3.0,
        });
        assert!((m.point[1] - 1.5).abs() < 1e-9, "{:?}", m.point);
        m.apply(MprCommand::Scroll {
            view: 0,
            steps: 1000.0,
        });
        assert!(
            (m.point[2] - 88.0).abs() < 1e-9,
            "clamped to the last slice"
        );
    }

    #[test]
    fn rotating_turns_the_other_planes_about_this_views_normal() {
        let mut m = mpr();
        let before = m.views[0].clone();
        m.apply(MprCommand::Rotate {
            view: 0,
            angle: std::f64::consts::FRAC_PI_4,
        });
        assert_eq!(m.views[0], before, "the view rotated in keeps its plane");
        let s = 0.5f64.sqrt();
        // The coronal plane's normal (0, 1, 0)·(row × col) turns 45° about the axial normal.
        let n = m.views[1].normal();
        assert!(close(n.map(f64::abs), [s, s, 0.0]), "{n:?}");
        // The coronal plane seen on the axial view now runs at 45°.
        let d = m.reference_direction(0, 1).unwrap();
        assert!(close(d.map(f64::abs), [s, s, 0.0]), "{d:?}");
        // Rotating the coronal view now tilts the axial plane: double oblique.
        m.apply(MprCommand::Rotate {
            view: 1,
            angle: 0.3,
        });
        assert!(m.views[0].normal()[2].abs() < 0.999);
        m.apply(MprCommand::ResetOrientation);
        assert_eq!(m.views[0].row, [1.0, 0.0, 0.0]);
        assert!(close(m.views[1].normal().map(f64::abs), [0.0, 1.0, 0.0]));
    }
}
