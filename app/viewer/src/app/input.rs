//! Input: keys become actions (`crate::actions`), mouse drags become viewport commands, and commands
//! keep linked viewports in step.

use std::path::PathBuf;

use egui::{Pos2, pos2};
use radclip_dicom::measure::{PointInImage, RoiShape};
use radclip_dicom::{self as dicom, VoiFunction, Window};

use super::ViewerApp;
use crate::actions::Action;
use crate::state::{Command, DragAction, Measurement, MeasurementKind, Tool, presets};
use crate::transform::ViewTransform;

impl ViewerApp {
    /// Applies a command to a viewport and keeps linked viewports in step.
    pub fn command(&mut self, index: usize, cmd: Command) {
        let scrolls = matches!(cmd, Command::ScrollBy(_) | Command::GoTo(_));
        let Some(v) = self.viewports.get_mut(index) else {
            return;
        };
        let before = v.slice;
        v.apply(cmd);
        if scrolls && v.slice != before {
            self.link_scroll(index);
            self.request_frames();
        }
    }

    /// Moves other viewports showing the same frame of reference to the slice nearest in patient space.
    pub(super) fn link_scroll(&mut self, from: usize) {
        let Some(v) = self.viewports.get(from) else {
            return;
        };
        let Some(src) = v.series.and_then(|s| self.series.get(s)) else {
            return;
        };
        let Some(for_uid) = src.series.frame_of_reference.clone() else {
            return;
        };
        let Some(pos) = src.series.geometry_of(v.slice).map(|g| g.position) else {
            return;
        };
        let src_series = v.series;
        for (i, other) in self.viewports.iter_mut().enumerate() {
            if i == from || other.series == src_series {
                continue;
            }
            let Some(entry) = other.series.and_then(|s| self.series.get(s)) else {
                continue;
            };
            if entry.series.frame_of_reference.as_deref() != Some(for_uid.as_str()) {
                continue;
            }
            if let Some((j, _)) = entry.series.nearest_frame(pos) {
                other.slice = j;
            }
        }
    }

    pub(super) fn viewport_input(
        &mut self,
        ctx: &egui::Context,
        resp: &egui::Response,
        index: usize,
        t: &ViewTransform,
        frame: Option<&dicom::Frame>,
    ) {
        if resp.hovered() {
            let (wheel, zoom) = wheel_and_zoom(ctx);
            if zoom != 1.0 {
                self.command(index, Command::ZoomBy(zoom));
            } else if wheel != 0.0 {
                self.command(index, Command::ScrollBy(if wheel > 0.0 { -1 } else { 1 }));
            }
        }
        // While the attention inspector picks a patch, a click on the image picks it.
        if resp.clicked()
            && let Some(ai) = &mut self.ai
            && ai.attention.picking
            && let Some(p) = resp.interact_pointer_pos()
        {
            let at = t.image_from_screen(p);
            ai.attention.pick(f64::from(at.x), f64::from(at.y));
            return;
        }
        let Some(v) = self.viewports.get(index).cloned() else {
            return;
        };
        let default_window = frame.map(|f| f.default_window().0);
        let range = frame.map_or(1.0, |f| {
            let (lo, hi) = f.modality_range();
            hi - lo
        });
        if resp.drag_started() {
            let button_action = if resp.dragged_by(egui::PointerButton::Primary) {
                if self.tool == Tool::WindowLevel {
                    self.bindings.primary
                } else {
                    DragAction::Measure
                }
            } else if resp.dragged_by(egui::PointerButton::Middle) {
                self.bindings.middle
            } else {
                self.bindings.secondary
            };
            // A drag is recognised only after the pointer has moved a little: start where the button went down.
            let origin = ctx
                .input(|i| i.pointer.press_origin())
                .or(resp.interact_pointer_pos());
            if let (Some(p), Some(w)) = (origin, v.window.map(|w| w.0).or(default_window)) {
                self.drag = Some(Drag {
                    action: button_action,
                    viewport: index,
                    start_window: w,
                    start_image: t.image_from_screen(p),
                });
            }
        }
        let Some((action, start_window, start_image)) = self
            .drag
            .as_ref()
            .filter(|d| d.viewport == index)
            .map(|d| (d.action, d.start_window, d.start_image))
        else {
            return;
        };
        if resp.dragged() {
            let total = resp.total_drag_delta().unwrap_or_default();
            let d = resp.drag_delta();
            match action {
                DragAction::WindowLevel => {
                    let from = start_window;
                    self.command(
                        index,
                        Command::DragWindow {
                            dx: total.x,
                            dy: total.y,
                            sensitivity: (range / 500.0).max(0.05),
                            from,
                        },
                    );
                }
                DragAction::Pan => self.command(index, Command::PanBy([d.x, d.y])),
                DragAction::Zoom => self.command(index, Command::ZoomBy((-d.y * 0.01).exp())),
                DragAction::Measure => {}
            }
        }
        if resp.drag_stopped() {
            if action == DragAction::Measure
                && let Some(p) = resp.interact_pointer_pos()
            {
                let a = start_image;
                let b = t.image_from_screen(p);
                if (a - b).length() > 1.0
                    && let Some(kind) = self.measurement_kind()
                {
                    let m = Measurement {
                        slice: v.slice,
                        kind,
                        a: pt(a),
                        b: pt(b),
                    };
                    self.command(index, Command::AddMeasurement(m));
                }
            }
            self.drag = None;
        }
    }

    pub(super) fn measurement_kind(&self) -> Option<MeasurementKind> {
        match self.tool {
            Tool::Line => Some(MeasurementKind::Line),
            Tool::Rectangle => Some(MeasurementKind::Roi(RoiShape::Rectangle)),
            Tool::Ellipse => Some(MeasurementKind::Roi(RoiShape::Ellipse)),
            Tool::WindowLevel => None,
        }
    }

    pub(super) fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Option<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(p) = dropped {
            self.open(ctx, p);
        }
    }

    pub(super) fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let actions: Vec<Action> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Key {
                        key,
                        pressed: true,
                        modifiers,
                        ..
                    } => Action::for_key(*key, *modifiers),
                    _ => None,
                })
                .collect()
        });
        for a in actions {
            self.perform(a);
        }
    }

    /// Carries out an action on the active viewport (keys, menus and the toolbar all come here).
    pub fn perform(&mut self, action: Action) {
        if self.mpr.is_some() && self.perform_mpr(action) {
            return;
        }
        let a = self.active;
        let slices = self.viewports.get(a).map_or(0, |v| v.slice_count);
        let cmd = match action {
            Action::PreviousSlice => Some(Command::ScrollBy(-1)),
            Action::NextSlice => Some(Command::ScrollBy(1)),
            Action::BackTen => Some(Command::ScrollBy(-10)),
            Action::ForwardTen => Some(Command::ScrollBy(10)),
            Action::FirstSlice => Some(Command::GoTo(0)),
            Action::LastSlice => Some(Command::GoTo(slices.saturating_sub(1))),
            Action::Cine => Some(Command::ToggleCine),
            Action::Preset(n) => self.preset_command(a, n),
            Action::ResetWindow => Some(Command::ResetWindow),
            Action::Fit => Some(Command::Fit),
            Action::Rotate => Some(Command::RotateClockwise),
            Action::FlipHorizontal => Some(Command::FlipHorizontal),
            Action::FlipVertical => Some(Command::FlipVertical),
            Action::Invert => Some(Command::ToggleInvert),
            Action::UndoMeasurement => Some(Command::UndoMeasurement),
            Action::ClearMeasurements => Some(Command::ClearMeasurements),
            Action::CornerText
            | Action::HidePatientData
            | Action::Segmentations
            | Action::AiPanel
            | Action::AttentionInspector => {
                if let Some(on) = self.switch(action) {
                    *on = !*on;
                }
                None
            }
            Action::Tags => {
                self.open_tags();
                None
            }
            Action::Mpr => {
                self.toggle_mpr();
                None
            }
            Action::Help => {
                self.show_help = true;
                None
            }
            Action::WindowLevelTool => self.set_tool(Tool::WindowLevel),
            Action::LineTool => self.set_tool(Tool::Line),
            Action::RectangleTool => self.set_tool(Tool::Rectangle),
            Action::EllipseTool => self.set_tool(Tool::Ellipse),
        };
        if let Some(c) = cmd {
            self.command(a, c);
        }
    }

    /// The on/off state an action toggles, for the key handler and the menu's checkboxes; `None` for
    /// actions that are not switches (and for the AI panel when no model is configured).
    pub(super) fn switch(&mut self, action: Action) -> Option<&mut bool> {
        match action {
            Action::CornerText => Some(&mut self.show_overlay),
            Action::HidePatientData => Some(&mut self.hide_phi),
            Action::Segmentations => Some(&mut self.show_segmentations),
            Action::AiPanel => self.ai.as_mut().map(|ai| &mut ai.open),
            Action::AttentionInspector => self.ai.as_mut().map(|ai| &mut ai.attention.open),
            _ => None,
        }
    }

    fn set_tool(&mut self, tool: Tool) -> Option<Command> {
        self.tool = tool;
        None
    }

    /// Maps side by side: a 1 × 2 layout whose two viewports show the active one's image and view
    /// (series, slice, window, pan, zoom), so the two maps are compared at the same place.
    pub(super) fn sync_compare(&mut self) {
        if self.ai.as_ref().is_none_or(|a| a.compare.is_none()) {
            return;
        }
        if self.layout != crate::state::Layout::OneByTwo {
            self.set_layout(crate::state::Layout::OneByTwo);
        }
        let from = self.active.min(1);
        let Some(v) = self.viewports.get(from).cloned() else {
            return;
        };
        if let Some(other) = self.viewports.get_mut(1 - from)
            && *other != v
        {
            *other = v;
        }
    }

    /// The window of preset `n` for the active viewport's modality.
    pub fn preset_command(&self, viewport: usize, n: usize) -> Option<Command> {
        let v = self.viewports.get(viewport)?;
        let e = self.series.get(v.series?)?;
        let list = presets(&e.series.modality);
        let (name, w) = list.get(n)?;
        match (w, *name) {
            (Some(w), _) => Some(Command::SetWindow(*w, VoiFunction::Linear)),
            (None, "Min/max") => {
                let f = self.loader.cache().get(&self.frame_key(v)?)?;
                let (lo, hi) = f.modality_range();
                Some(Command::SetWindow(
                    Window::from_range(lo, hi),
                    VoiFunction::LinearExact,
                ))
            }
            (None, _) => Some(Command::ResetWindow),
        }
    }

    pub(super) fn advance_cine(&mut self, ctx: &egui::Context) {
        let playing: Vec<usize> = (0..self.viewports.len())
            .filter(|&i| self.viewports[i].cine)
            .collect();
        if playing.is_empty() {
            self.cine_acc = 0.0;
            return;
        }
        self.cine_acc += ctx.input(|i| i.stable_dt).min(0.25);
        let mut rest = self.cine_acc;
        for i in playing {
            if let Some(v) = self.viewports.get_mut(i) {
                rest = v.cine_step(self.cine_acc);
            }
        }
        self.cine_acc = rest;
        self.request_frames();
        ctx.request_repaint();
    }
}

pub(super) struct Drag {
    pub(super) action: DragAction,
    pub(super) viewport: usize,
    pub(super) start_window: Window,
    pub(super) start_image: Pos2,
}

/// This frame's wheel (summed, without Ctrl) and zoom factor: one wheel event is one slice whatever its
/// size, and Ctrl+wheel arrives as egui's zoom delta.
pub(super) fn wheel_and_zoom(ctx: &egui::Context) -> (f32, f32) {
    ctx.input(|i| {
        let wheel: f32 = i
            .events
            .iter()
            .filter_map(|e| match e {
                egui::Event::MouseWheel {
                    delta, modifiers, ..
                } if !modifiers.ctrl => Some(delta.y),
                _ => None,
            })
            .sum();
        (wheel, i.zoom_delta())
    })
}

pub(super) fn pt(p: Pos2) -> PointInImage {
    PointInImage {
        x: f64::from(p.x),
        y: f64::from(p.y),
    }
}

pub(super) fn pos(p: PointInImage) -> Pos2 {
    pos2(p.x as f32, p.y as f32)
}
