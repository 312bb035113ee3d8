//! Viewer state as plain data, driven by commands: the keyboard, the mouse, the CLI and tests all go
//! through [`Viewport::apply`]. Nothing here draws or touches egui's context.

use radclip_dicom::measure::{PointInImage, RoiShape};
use radclip_dicom::{VoiFunction, Window};

/// What a mouse button does while dragged in a viewport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DragAction {
    WindowLevel,
    Pan,
    Zoom,
    /// The active measurement tool (line, rectangle, ellipse).
    Measure,
}

/// Mouse bindings; the defaults are OHIF's and Weasis'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MouseBindings {
    pub primary: DragAction,
    pub middle: DragAction,
    pub secondary: DragAction,
}

impl Default for MouseBindings {
    fn default() -> Self {
        MouseBindings {
            primary: DragAction::WindowLevel,
            middle: DragAction::Pan,
            secondary: DragAction::Zoom,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    WindowLevel,
    Line,
    Rectangle,
    Ellipse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    One,
    OneByTwo,
    TwoByTwo,
}

impl Layout {
    pub fn grid(self) -> (usize, usize) {
        match self {
            Layout::One => (1, 1),
            Layout::OneByTwo => (1, 2),
            Layout::TwoByTwo => (2, 2),
        }
    }

    pub fn count(self) -> usize {
        let (r, c) = self.grid();
        r * c
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeasurementKind {
    Line,
    Roi(RoiShape),
}

/// A measurement drawn on one slice, in image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub slice: usize,
    pub kind: MeasurementKind,
    pub a: PointInImage,
    pub b: PointInImage,
}

/// Window presets offered on the number keys.
pub fn presets(modality: &str) -> Vec<(&'static str, Option<Window>)> {
    let w = |center, width| Some(Window { center, width });
    if modality == "CT" {
        vec![
            ("Soft tissue", w(40.0, 400.0)),
            ("Lung", w(-600.0, 1500.0)),
            ("Bone", w(300.0, 1500.0)),
            ("Brain", w(40.0, 80.0)),
            ("File default", None),
        ]
    } else {
        // `None` = the file's own window; the min/max window is computed from the frame by the caller.
        vec![("File default", None), ("Min/max", None)]
    }
}

/// Commands a viewport understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ScrollBy(i64),
    GoTo(usize),
    SetWindow(Window, VoiFunction),
    /// Drag in screen points, scaled by `sensitivity` (modality units per point).
    DragWindow {
        dx: f32,
        dy: f32,
        sensitivity: f64,
        from: Window,
    },
    ResetWindow,
    ZoomBy(f32),
    PanBy([f32; 2]),
    RotateClockwise,
    FlipHorizontal,
    FlipVertical,
    ToggleInvert,
    Fit,
    ToggleCine,
    SetCineFps(f32),
    AddMeasurement(Measurement),
    UndoMeasurement,
    ClearMeasurements,
}

/// Everything about one viewport that is not pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewport {
    /// Index into the list of image series, if a series is shown.
    pub series: Option<usize>,
    pub slice: usize,
    pub slice_count: usize,
    /// The user's window; `None` shows the frame's default.
    pub window: Option<(Window, VoiFunction)>,
    pub zoom: f32,
    /// Offset of the image centre from the viewport centre, in screen points.
    pub pan: [f32; 2],
    /// Clockwise quarter turns.
    pub rotation: u8,
    pub flip_h: bool,
    pub flip_v: bool,
    pub invert: bool,
    pub cine: bool,
    pub cine_fps: f32,
    pub measurements: Vec<Measurement>,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport {
            series: None,
            slice: 0,
            slice_count: 0,
            window: None,
            zoom: 1.0,
            pan: [0.0, 0.0],
            rotation: 0,
            flip_h: false,
            flip_v: false,
            invert: false,
            cine: false,
            cine_fps: 10.0,
            measurements: Vec::new(),
        }
    }
}

impl Viewport {
    /// Shows series `index` with `slice_count` slices, starting in the middle as radiologists expect for
    /// cross-sections (a single image shows its only frame).
    pub fn show_series(&mut self, index: usize, slice_count: usize) {
        *self = Viewport {
            series: Some(index),
            slice: slice_count / 2,
            slice_count,
            cine_fps: self.cine_fps,
            ..Viewport::default()
        };
    }

    pub fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::ScrollBy(d) => {
                if self.slice_count > 0 {
                    let s = (self.slice as i64 + d).clamp(0, self.slice_count as i64 - 1);
                    self.slice = s as usize;
                }
            }
            Command::GoTo(s) => self.slice = s.min(self.slice_count.saturating_sub(1)),
            Command::SetWindow(w, f) => self.window = Some((w, f)),
            Command::DragWindow {
                dx,
                dy,
                sensitivity,
                from,
            } => {
                // Right widens the window, down raises the centre (darker image), as in OHIF and Weasis.
                let width = (from.width + f64::from(dx) * sensitivity).max(1.0);
                let center = from.center + f64::from(dy) * sensitivity;
                self.window = Some((Window { center, width }, VoiFunction::Linear));
            }
            Command::ResetWindow => self.window = None,
            Command::ZoomBy(f) => self.zoom = (self.zoom * f).clamp(0.05, 64.0),
            Command::PanBy([dx, dy]) => {
                self.pan[0] += dx;
                self.pan[1] += dy;
            }
            Command::RotateClockwise => self.rotation = (self.rotation + 1) % 4,
            Command::FlipHorizontal => self.flip_h = !self.flip_h,
            Command::FlipVertical => self.flip_v = !self.flip_v,
            Command::ToggleInvert => self.invert = !self.invert,
            Command::Fit => {
                self.zoom = 1.0;
                self.pan = [0.0, 0.0];
            }
            Command::ToggleCine => self.cine = !self.cine && self.slice_count > 1,
            Command::SetCineFps(f) => self.cine_fps = f.clamp(1.0, 60.0),
            Command::AddMeasurement(m) => self.measurements.push(m),
            Command::UndoMeasurement => {
                self.measurements.pop();
            }
            Command::ClearMeasurements => self.measurements.clear(),
        }
    }

    /// Advances cine playback by `dt` seconds given the time accumulated so far; returns the new remainder.
    pub fn cine_step(&mut self, acc: f32) -> f32 {
        if !self.cine || self.slice_count < 2 {
            return 0.0;
        }
        let period = 1.0 / self.cine_fps.max(1.0);
        let mut acc = acc;
        while acc >= period {
            acc -= period;
            self.slice = (self.slice + 1) % self.slice_count;
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrolling_stays_in_range() {
        let mut v = Viewport::default();
        v.show_series(0, 10);
        assert_eq!(v.slice, 5);
        v.apply(Command::ScrollBy(100));
        assert_eq!(v.slice, 9);
        v.apply(Command::ScrollBy(-100));
        assert_eq!(v.slice, 0);
    }

    #[test]
    fn window_drag_widens_and_moves_center() {
        let mut v = Viewport::default();
        let from = Window {
            center: 40.0,
            width: 400.0,
        };
        v.apply(Command::DragWindow {
            dx: 10.0,
            dy: -5.0,
            sensitivity: 2.0,
            from,
        });
        let (w, _) = v.window.unwrap_or((from, VoiFunction::Linear));
        assert_eq!((w.center, w.width), (30.0, 420.0));
        v.apply(Command::DragWindow {
            dx: -1000.0,
            dy: 0.0,
            sensitivity: 2.0,
            from,
        });
        assert_eq!(v.window.map(|w| w.0.width), Some(1.0));
    }

    #[test]
    fn cine_wraps_around() {
        let mut v = Viewport::default();
        v.show_series(0, 3);
        v.apply(Command::SetCineFps(10.0));
        v.apply(Command::ToggleCine);
        let rest = v.cine_step(0.25);
        assert_eq!(v.slice, (1 + 2) % 3);
        assert!((rest - 0.05).abs() < 1e-5);
    }
}
