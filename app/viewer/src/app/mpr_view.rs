//! The MPR layout on screen: the active series decoded on a worker into one shared volume, shown as
//! axial, coronal and sagittal views (and the acquisition plane when it is oblique) with crosshairs,
//! reference lines and orientation letters. Pictures come from the GPU reslicer (`gpu_mpr.rs`) when
//! the GPU path is on and the volume is 16-bit, else from a reslicing worker on the CPU; either way
//! the GUI thread only draws.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::{Receiver, Sender};
use egui::{Color32, Pos2, Rect, Sense, TextureHandle, TextureOptions, pos2, vec2};
use radclip_dicom::geometry::{cross, dot};
use radclip_dicom::measure::{self, PointInImage, RoiShape};
use radclip_dicom::volume::{self, Filled, LabelVolume, Plane, SlabMode, Volume};
use radclip_dicom::{VoiFunction, Window};

use super::ViewerApp;
use super::input::{pos, pt, wheel_and_zoom};
use super::textures::segment_color;
use super::viewport::{
    corner_text, draw_image, image_corners, orientation_letters, segment_legend,
};
use crate::gpu_mpr::{MprCallback, MprParams, stride_for};
use crate::mpr::{Mpr, MprCommand, VIEW_COLOURS};
use crate::state::{MeasurementKind, presets};
use crate::transform::ViewTransform;

/// The MPR layout of one series while it is open.
pub struct MprSession {
    pub state: Mpr,
    volume: Arc<RwLock<Volume>>,
    cancel: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    total: usize,
    filled_rx: Option<Receiver<(Filled, Option<LabelVolume>)>>,
    /// The series' own window, for "reset window".
    default_window: (Window, VoiFunction),
    /// Slices that could not be read.
    pub failed: usize,
    cpu: CpuReslicer,
    drag: Option<MprDrag>,
    /// Frames still to draw after the last slice arrived, so the GPU path uploads the rest.
    settle_frames: usize,
    /// Whether the volume is 16-bit (GPU-able), as last seen.
    is_16bit: bool,
    /// Lines and ROIs drawn on the views.
    pub measurements: Vec<MprMeasurement>,
    /// The study's segmentations on the volume's grid (S shows them resliced with the image).
    pub labels: Option<Arc<LabelVolume>>,
    /// Slices that are gaps in the series, and slices interpolated between frames (uneven spacing).
    pub gaps: usize,
    pub interpolated: usize,
}

/// A measurement drawn on an MPR view: kept with the plane it was drawn on, in that plane's pixel
/// coordinates, and shown while the view shows that plane.
#[derive(Debug, Clone)]
pub struct MprMeasurement {
    pub view: usize,
    pub plane: Plane,
    pub kind: MeasurementKind,
    pub a: PointInImage,
    pub b: PointInImage,
    /// Length in mm, or the ROI's statistics once computed (they sample the volume).
    pub label: Option<String>,
}

/// Whether two planes are the same (the view has not moved since).
fn same_plane(p: &Plane, q: &Plane) -> bool {
    let n = p.normal();
    let d: [f64; 3] = std::array::from_fn(|k| p.origin_mm[k] - q.origin_mm[k]);
    dot(n, q.normal()) > 0.99999 && dot(p.row_axis, q.row_axis) > 0.99999 && dot(d, n).abs() < 0.01
}

impl Drop for MprSession {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl MprSession {
    /// Slices decoded so far, of all.
    pub fn progress(&self) -> (usize, usize) {
        (self.done.load(Ordering::Relaxed), self.total)
    }

    /// Whether the volume is complete and every view's picture is up to date.
    pub fn is_settled(&self) -> bool {
        self.filled_rx.is_none() && self.settle_frames == 0 && self.cpu.pending.is_empty()
    }

    /// The volume's value at the crosshair (HU for CT); `None` outside, not yet decoded, or while a
    /// slice is being written (the GUI thread never waits).
    pub fn value_at_crosshair(&self) -> Option<f32> {
        self.volume.try_read().ok()?.sample(self.state.point)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MprDragKind {
    Crosshair,
    /// The active measurement tool, from this point of the plane (pixel coordinates).
    Measure(Pos2),
    Rotate,
    Window(Window),
    Pan,
}

struct MprDrag {
    view: usize,
    kind: MprDragKind,
    last: Pos2,
}

/// What a view's pictures are made from: a change of any part asks for new ones.
#[derive(Debug, Clone, PartialEq)]
struct JobKey {
    params: MprParams,
    /// Slices decoded when asked.
    filled: usize,
    /// The image itself (the CPU path), and the segment overlay.
    image: bool,
    masks: bool,
}

struct CpuJob {
    view: usize,
    key: JobKey,
    volume: Arc<RwLock<Volume>>,
    labels: Option<Arc<LabelVolume>>,
}

struct CpuDone {
    view: usize,
    key: JobKey,
    image: Option<egui::ColorImage>,
    /// The overlay and the segments it shows.
    mask: Option<(egui::ColorImage, Vec<u16>)>,
}

/// A view's pictures on the GUI side.
struct Shown {
    key: JobKey,
    image: Option<TextureHandle>,
    mask: Option<(TextureHandle, Vec<u16>)>,
}

/// Reslices on a worker thread, newest request per view first: the image on the CPU path, and the
/// segment overlay on both paths. The GUI shows the last pictures until the next arrive.
struct CpuReslicer {
    tx: Option<Sender<CpuJob>>,
    rx: Receiver<CpuDone>,
    pending: HashMap<usize, JobKey>,
    shown: HashMap<usize, Shown>,
}

fn work(j: &CpuJob, pool: &rayon::ThreadPool) -> CpuDone {
    let p = &j.key.params;
    let (rows, cols) = (p.plane.rows, p.plane.columns);
    let image = j
        .key
        .image
        .then(|| {
            let v = j.volume.read().ok()?;
            let out = pool.install(|| v.reslice(&p.plane, p.slab));
            drop(v);
            match radclip_dicom::render_values(
                &out.values,
                rows as u32,
                cols as u32,
                p.window,
                p.invert,
            ) {
                radclip_dicom::Rendered::Grey { data, .. } => {
                    Some(egui::ColorImage::from_gray([cols, rows], &data))
                }
                radclip_dicom::Rendered::Rgb { .. } => None,
            }
        })
        .flatten();
    let mask = j.labels.as_ref().filter(|_| j.key.masks).map(|l| {
        let labels = pool.install(|| l.reslice(&p.plane));
        let mut present: Vec<u16> = Vec::new();
        let pixels = labels
            .iter()
            .map(|n| {
                if *n == 0 {
                    return Color32::TRANSPARENT;
                }
                if !present.contains(n) {
                    present.push(*n);
                }
                segment_color(*n)
            })
            .collect();
        present.sort_unstable();
        (egui::ColorImage::new([cols, rows], pixels), present)
    });
    CpuDone {
        view: j.view,
        key: j.key.clone(),
        image,
        mask,
    }
}

impl CpuReslicer {
    fn start(ctx: &egui::Context) -> Self {
        let (tx, jobs) = crossbeam_channel::unbounded::<CpuJob>();
        let (done_tx, rx) = crossbeam_channel::unbounded();
        let waker = ctx.clone();
        // A pool of its own: the global one decodes the volume, and its workers wait on the volume's
        // write lock while a reslice holds the read lock, so a reslice queued there would never run.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("radclip-mpr-{i}"))
            .build();
        let worker = pool.map_err(|e| e.to_string()).and_then(|pool| {
            std::thread::Builder::new()
                .name("radclip-mpr-cpu".into())
                .spawn(move || {
                    while let Ok(first) = jobs.recv() {
                        let mut latest = HashMap::new();
                        latest.insert(first.view, first);
                        while let Ok(j) = jobs.try_recv() {
                            latest.insert(j.view, j);
                        }
                        for (_, j) in latest {
                            if done_tx.send(work(&j, &pool)).is_err() {
                                return;
                            }
                            waker.request_repaint();
                        }
                    }
                })
                .map_err(|e| e.to_string())
        });
        if let Err(e) = &worker {
            tracing::warn!("no CPU reslicing worker: {e}");
        }
        CpuReslicer {
            tx: worker.is_ok().then_some(tx),
            rx,
            pending: HashMap::new(),
            shown: HashMap::new(),
        }
    }

    fn poll(&mut self, ctx: &egui::Context) {
        while let Ok(d) = self.rx.try_recv() {
            if self.pending.get(&d.view) == Some(&d.key) {
                self.pending.remove(&d.view);
            }
            let load = |name: String, img: egui::ColorImage, old: Option<TextureHandle>| match old {
                Some(mut t) => {
                    t.set(img, TextureOptions::LINEAR);
                    t
                }
                None => ctx.load_texture(name, img, TextureOptions::LINEAR),
            };
            let old = self.shown.remove(&d.view);
            let (old_image, old_mask) = match old {
                Some(s) => (s.image, s.mask.map(|(t, _)| t)),
                None => (None, None),
            };
            let image = d
                .image
                .map(|img| load(format!("mpr-{}", d.view), img, old_image));
            let mask = d.mask.map(|(img, present)| {
                (load(format!("mpr-mask-{}", d.view), img, old_mask), present)
            });
            self.shown.insert(
                d.view,
                Shown {
                    key: d.key,
                    image,
                    mask,
                },
            );
        }
    }

    /// Asks for `key`'s pictures unless they are shown or on their way; returns what to draw meanwhile.
    fn pictures(
        &mut self,
        view: usize,
        key: JobKey,
        volume: &Arc<RwLock<Volume>>,
        labels: Option<&Arc<LabelVolume>>,
    ) -> Option<&Shown> {
        let up_to_date = self.shown.get(&view).is_some_and(|s| s.key == key);
        if up_to_date {
            // Nothing newer is needed for this view.
            self.pending.remove(&view);
        } else if (key.image || key.masks)
            && self.pending.get(&view) != Some(&key)
            && let Some(tx) = &self.tx
        {
            let job = CpuJob {
                view,
                key: key.clone(),
                volume: volume.clone(),
                labels: labels.cloned(),
            };
            if tx.send(job).is_ok() {
                self.pending.insert(view, key);
            }
        }
        self.shown.get(&view)
    }
}

fn mode_name(m: SlabMode) -> &'static str {
    match m {
        SlabMode::Mip => "MIP",
        SlabMode::MinIp => "MinIP",
        SlabMode::Mean => "Mean",
    }
}

impl ViewerApp {
    /// Opens the MPR layout on the active viewport's series, or closes it.
    pub fn toggle_mpr(&mut self) {
        let ctx = self.ctx.clone();
        if self.mpr.take().is_some() {
            return;
        }
        let Some(v) = self.viewports.get(self.active) else {
            return;
        };
        let Some((si, entry)) = v.series.and_then(|s| Some((s, self.series.get(s)?))) else {
            self.status = "Open a series first: MPR reformats the active viewport's series.".into();
            return;
        };
        let series = entry.series.clone();
        let vol = match Volume::for_series(&series) {
            Ok(v) => v,
            Err(e) => {
                self.status = format!("{} cannot be shown in MPR: {e}", series.label());
                return;
            }
        };
        let shown_frame = self.frame_key(v).and_then(|k| self.loader.cache().get(&k));
        let default_window = shown_frame
            .as_ref()
            .map(|f| f.default_window())
            .unwrap_or((Window::from_range(-1000.0, 1000.0), VoiFunction::Linear));
        let window = v.window.unwrap_or(default_window);
        let state = Mpr::new(si, vol.geometry.clone(), window);
        let gaps = vol.gaps().len();
        let interpolated = vol
            .plan()
            .iter()
            .filter(|p| matches!(p, radclip_dicom::geometry::SliceSource::Between { .. }))
            .count();
        let total = series.frames.len();
        let volume = Arc::new(RwLock::new(vol));
        let cancel = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (vol2, cancel2, done2, waker) =
            (volume.clone(), cancel.clone(), done.clone(), ctx.clone());
        let segmentations = self.segmentations.clone();
        let geometry = state.geometry.clone();
        let plan = volume
            .try_read()
            .map(|v| v.plan().to_vec())
            .unwrap_or_default();
        let spawned = std::thread::Builder::new()
            .name("radclip-mpr-volume".into())
            .spawn(move || {
                let filled = volume::fill(&series, &vol2, &cancel2, &|n| {
                    done2.store(n, Ordering::Relaxed);
                    waker.request_repaint();
                });
                let labels =
                    LabelVolume::from_segmentations(&series, &geometry, &plan, &segmentations);
                let _ = tx.send((filled, labels));
                waker.request_repaint();
            });
        if let Err(e) = spawned {
            self.status = format!("Could not start decoding the volume: {e}");
            return;
        }
        self.mpr = Some(MprSession {
            state,
            volume,
            cancel,
            done,
            total,
            filled_rx: Some(rx),
            default_window,
            failed: 0,
            cpu: CpuReslicer::start(&ctx),
            drag: None,
            settle_frames: 0,
            is_16bit: true,
            measurements: Vec::new(),
            labels: None,
            gaps,
            interpolated,
        });
    }

    /// Results from the MPR workers.
    pub(super) fn poll_mpr(&mut self, ctx: &egui::Context) {
        let Some(s) = &mut self.mpr else {
            return;
        };
        s.cpu.poll(ctx);
        if let Some(rx) = &s.filled_rx
            && let Ok((filled, labels)) = rx.try_recv()
        {
            s.filled_rx = None;
            s.labels = labels.map(Arc::new);
            s.failed = filled.failed.len();
            // Enough frames for the GPU path to upload the last slices (it takes a batch per frame).
            s.settle_frames = s.total.div_ceil(crate::gpu_mpr::SLICES_PER_FRAME) + 2;
            if let Some((k, why)) = filled.failed.first() {
                self.status = format!(
                    "{} slice(s) of the volume could not be read and stay blank (slice {}: {why}).",
                    s.failed,
                    k + 1
                );
            }
        }
        if s.settle_frames > 0 {
            s.settle_frames -= 1;
            ctx.request_repaint();
        }
    }

    /// Keys and menu actions while the MPR layout is open; `false` for those it leaves to the 2D views.
    pub(super) fn perform_mpr(&mut self, action: crate::actions::Action) -> bool {
        use crate::actions::Action as A;
        let modality = self
            .mpr
            .as_ref()
            .and_then(|s| self.series.get(s.state.series))
            .map(|e| e.series.modality.clone())
            .unwrap_or_default();
        let Some(s) = &mut self.mpr else {
            return false;
        };
        let view = s.state.active;
        let cmd = match action {
            A::PreviousSlice => MprCommand::Scroll { view, steps: -1.0 },
            A::NextSlice => MprCommand::Scroll { view, steps: 1.0 },
            A::BackTen => MprCommand::Scroll { view, steps: -10.0 },
            A::ForwardTen => MprCommand::Scroll { view, steps: 10.0 },
            A::Preset(n) => match presets(&modality).get(n) {
                Some((_, Some(w))) => MprCommand::SetWindow(*w, VoiFunction::Linear),
                Some((_, None)) => MprCommand::SetWindow(s.default_window.0, s.default_window.1),
                None => return true,
            },
            A::ResetWindow => MprCommand::SetWindow(s.default_window.0, s.default_window.1),
            A::Invert => MprCommand::ToggleInvert,
            A::Fit => MprCommand::Fit { view },
            A::Rotate => MprCommand::ResetOrientation,
            A::UndoMeasurement => {
                s.measurements.pop();
                return true;
            }
            A::ClearMeasurements => {
                s.measurements.clear();
                return true;
            }
            // Slice positions, cine and flips belong to the 2D views.
            A::FirstSlice | A::LastSlice | A::Cine | A::FlipHorizontal | A::FlipVertical => {
                return true;
            }
            _ => return false,
        };
        s.state.apply(cmd);
        true
    }

    pub(super) fn mpr_ui(&mut self, ui: &mut egui::Ui) {
        let Some(mut s) = self.mpr.take() else {
            return;
        };
        self.mpr_ai_views.clear();
        let full = ui.max_rect();
        let cell = vec2(full.width() / 2.0, full.height() / 2.0);
        for i in 0..4 {
            let (r, c) = (i / 2, i % 2);
            let rect =
                Rect::from_min_size(full.min + vec2(c as f32 * cell.x, r as f32 * cell.y), cell)
                    .shrink(1.0);
            if i < s.state.views.len() {
                self.mpr_view_ui(ui, &mut s, i, rect);
            } else {
                self.mpr_info_ui(ui, &s, rect);
            }
        }
        // The 2D view (hidden behind the MPR layout) follows the crosshair to the acquired slice nearest
        // it: the AI panel reads that slice, and leaving MPR shows it.
        let nearest = self
            .series
            .get(s.state.series)
            .and_then(|e| e.series.nearest_frame(s.state.point))
            .map(|(j, _)| j);
        if let Some(j) = nearest
            && let Some(v) = self.viewports.get_mut(self.active)
            && v.series == Some(s.state.series)
            && v.slice != j
        {
            v.slice = j;
            self.request_frames();
        }
        self.mpr = Some(s);
    }

    fn mpr_view_ui(&mut self, ui: &mut egui::Ui, s: &mut MprSession, i: usize, rect: Rect) {
        let Some(view) = s.state.views.get(i).cloned() else {
            return;
        };
        let colour = {
            let [r, g, b] = VIEW_COLOURS[i.min(VIEW_COLOURS.len() - 1)];
            Color32::from_rgb(r, g, b)
        };
        // The strip above the picture: the view's name and its slab.
        let strip = Rect::from_min_size(rect.min, vec2(rect.width(), 24.0));
        let image_rect = Rect::from_min_max(pos2(rect.left(), strip.bottom()), rect.max);
        let mut slab = view.slab;
        ui.scope_builder(egui::UiBuilder::new().max_rect(strip.shrink(2.0)), |ui| {
            ui.horizontal(|ui| {
                ui.colored_label(colour, view.name);
                let label = ui.label("Slab");
                ui.add(
                    egui::DragValue::new(&mut slab.thickness_mm)
                        .range(0.0..=200.0)
                        .speed(0.5)
                        .suffix(" mm"),
                )
                .labelled_by(label.id);
                egui::ComboBox::from_id_salt(("mpr-slab-mode", i))
                    .selected_text(mode_name(slab.mode))
                    .width(64.0)
                    .show_ui(ui, |ui| {
                        for m in [SlabMode::Mip, SlabMode::MinIp, SlabMode::Mean] {
                            ui.selectable_value(&mut slab.mode, m, mode_name(m));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
        });
        if slab != view.slab {
            s.state.apply(MprCommand::SetSlab { view: i, slab });
        }
        let resp = ui.interact(
            image_rect,
            ui.scope_id().with(("mpr-view", i)),
            Sense::click_and_drag(),
        );
        let painter = ui.painter_at(image_rect);
        painter.rect_filled(image_rect, 0.0, Color32::BLACK);
        let Some(plane) = s.state.plane(i) else {
            return;
        };
        let t = ViewTransform {
            rect: image_rect,
            image_size: vec2(plane.columns as f32, plane.rows as f32),
            zoom: view.zoom,
            pan: egui::Vec2::from(view.pan),
            rotation: 0,
            flip_h: false,
            flip_v: false,
        };
        let params = MprParams {
            plane: plane.clone(),
            slab: view.slab,
            window: s.state.window,
            invert: s.state.invert,
        };
        if let Ok(v) = s.volume.try_read() {
            s.is_16bit = v.is_16bit();
        }
        let on_gpu = self.gpu_3d_side.is_some() && s.is_16bit;
        let key = JobKey {
            params: params.clone(),
            filled: s.done.load(Ordering::Relaxed),
            image: !on_gpu,
            masks: self.show_segmentations && s.labels.is_some(),
        };
        if on_gpu {
            painter.add(eframe::egui_wgpu::Callback::new_paint_callback(
                image_rect,
                MprCallback {
                    view: i,
                    volume: s.volume.clone(),
                    params,
                    corners: image_corners(&t).map(|(p, _)| p),
                },
            ));
        }
        let masks_on = key.masks;
        let mut legend = Vec::new();
        if let Some(shown) = s.cpu.pictures(i, key, &s.volume, s.labels.as_ref()) {
            if !on_gpu && let Some(tex) = &shown.image {
                draw_image(&painter, tex.id(), &t);
            }
            if masks_on && let Some((tex, present)) = &shown.mask {
                draw_image(&painter, tex.id(), &t);
                legend = present.clone();
            }
        }
        self.transforms.insert(100 + i, t);
        if self.mpr_ai_map(&painter, s, &plane, &t) {
            self.mpr_ai_views.push(i);
        }
        reference_lines(&painter, &s.state, i, &plane, &t);
        self.mpr_measurements_ui(&painter, s, i, &plane, &t);
        let text = Color32::from_rgb(230, 230, 230);
        orientation_letters(
            &painter,
            image_rect,
            &t,
            plane.row_axis,
            plane.column_axis,
            text,
        );
        let font = egui::FontId::monospace(12.0);
        let half = (image_rect.width() / 2.0 - 20.0).max(40.0);
        let (w, _) = s.state.window;
        let mut br = format!("W {:.0} L {:.0}", w.width, w.center);
        if view.slab.thickness_mm > 0.0 {
            br += &format!(
                "\n{} {:.1} mm",
                mode_name(view.slab.mode),
                view.slab.thickness_mm
            );
        }
        corner_text(
            &painter,
            image_rect.right_bottom() + vec2(-16.0, -6.0),
            egui::Align2::RIGHT_BOTTOM,
            &br,
            &font,
            text,
            half,
        );
        let (done, total) = s.progress();
        if done < total && s.filled_rx.is_some() {
            corner_text(
                &painter,
                image_rect.left_bottom() + vec2(6.0, -6.0),
                egui::Align2::LEFT_BOTTOM,
                &format!("Volume {done}/{total} slices"),
                &font,
                text,
                half,
            );
        }
        if let Some(l) = &s.labels {
            let masks: Vec<(usize, usize, String, Color32)> = legend
                .iter()
                .map(|n| {
                    let name = l
                        .names
                        .get(n)
                        .cloned()
                        .unwrap_or_else(|| format!("Segment {n}"));
                    (0, 0, name, segment_color(*n))
                })
                .collect();
            // Above the corner text, which takes two lines with a slab.
            let above = Rect::from_min_max(
                image_rect.min,
                pos2(image_rect.max.x, image_rect.max.y - 18.0),
            );
            segment_legend(&painter, above, &masks);
        }
        let stroke = if i == s.state.active {
            Color32::from_rgb(80, 160, 255)
        } else {
            Color32::from_gray(60)
        };
        ui.painter_at(rect)
            .rect_stroke(rect, 0.0, (1.0, stroke), egui::StrokeKind::Inside);
        self.mpr_input(ui.ctx(), s, &resp, i, &plane, &t);
    }

    fn mpr_info_ui(&self, ui: &mut egui::Ui, s: &MprSession, rect: Rect) {
        let painter = ui.painter_at(rect);
        painter.rect_stroke(
            rect,
            0.0,
            (1.0, Color32::from_gray(60)),
            egui::StrokeKind::Inside,
        );
        let g = &s.state.geometry;
        let p = s.state.point;
        let (done, total) = s.progress();
        let mut lines = vec![
            format!("Volume {} × {} × {}", g.dims[0], g.dims[1], g.dims[2]),
            format!(
                "Voxels {:.2} × {:.2} × {:.2} mm",
                g.spacing[0], g.spacing[1], g.spacing[2]
            ),
            format!("Crosshair {:.1}, {:.1}, {:.1} mm", p[0], p[1], p[2]),
        ];
        let unit = self
            .series
            .get(s.state.series)
            .filter(|e| e.series.modality == "CT")
            .map_or("", |_| " HU");
        match s.value_at_crosshair() {
            Some(v) => lines.push(format!("Value {v:.0}{unit}")),
            None => lines.push("Value —".into()),
        }
        lines.push(format!("Slices decoded {done}/{total}"));
        if s.gaps > 0 {
            lines.push(format!(
                "{} slice(s) missing from the series: blank",
                s.gaps
            ));
        }
        if s.interpolated > 0 {
            lines.push(format!(
                "Uneven spacing: {} slice(s) interpolated at {:.2} mm",
                s.interpolated, g.spacing[2]
            ));
        }
        if s.failed > 0 {
            lines.push(format!("{} slice(s) unreadable, left blank", s.failed));
        }
        match self.gpu_3d_side {
            Some(side) if stride_for(g.dims, side) != [1, 1, 1] => lines.push(format!(
                "Larger than the GPU's 3D texture limit ({side}): shown at a coarser grid"
            )),
            Some(_) => lines.push("Reformatted on the GPU".into()),
            None => lines.push("Reformatted on the CPU".into()),
        }
        lines.push(String::new());
        lines.push("Click: crosshair · Shift+drag: oblique".into());
        lines.push("Wheel: one voxel · Right drag: W/L".into());
        lines.push("R: standard planes · M: back to 2D".into());
        corner_text(
            &painter,
            rect.left_top() + vec2(10.0, 10.0),
            egui::Align2::LEFT_TOP,
            &lines.join("\n"),
            &egui::FontId::monospace(12.0),
            Color32::from_rgb(200, 200, 200),
            rect.width() - 20.0,
        );
    }

    fn mpr_input(
        &mut self,
        ctx: &egui::Context,
        s: &mut MprSession,
        resp: &egui::Response,
        i: usize,
        plane: &Plane,
        t: &ViewTransform,
    ) {
        let patient = |p: Pos2| {
            let q = t.image_from_screen(p);
            plane.point(f64::from(q.y) - 0.5, f64::from(q.x) - 0.5)
        };
        if resp.hovered() {
            let (wheel, zoom) = wheel_and_zoom(ctx);
            if zoom != 1.0 {
                s.state.apply(MprCommand::ZoomBy {
                    view: i,
                    factor: zoom,
                });
            } else if wheel != 0.0 {
                let steps = if wheel > 0.0 { -1.0 } else { 1.0 };
                s.state.apply(MprCommand::Scroll { view: i, steps });
            }
        }
        if resp.clicked() || resp.drag_started() {
            s.state.active = i;
        }
        if resp.clicked()
            && let Some(p) = resp.interact_pointer_pos()
        {
            s.state.apply(MprCommand::SetPoint(patient(p)));
        }
        if resp.drag_started() {
            let shift = ctx.input(|inp| inp.modifiers.shift);
            let origin = ctx
                .input(|inp| inp.pointer.press_origin())
                .or(resp.interact_pointer_pos());
            let kind = if resp.dragged_by(egui::PointerButton::Primary) {
                match (shift, self.measurement_kind(), origin) {
                    (true, _, _) => MprDragKind::Rotate,
                    (false, Some(_), Some(o)) => MprDragKind::Measure(t.image_from_screen(o)),
                    _ => MprDragKind::Crosshair,
                }
            } else if resp.dragged_by(egui::PointerButton::Middle) {
                MprDragKind::Pan
            } else {
                MprDragKind::Window(s.state.window.0)
            };
            if let Some(last) = origin {
                s.drag = Some(MprDrag {
                    view: i,
                    kind,
                    last,
                });
            }
        }
        let Some(drag) = s.drag.as_mut().filter(|d| d.view == i) else {
            return;
        };
        if resp.dragged()
            && let Some(p) = resp.interact_pointer_pos()
        {
            match drag.kind {
                MprDragKind::Crosshair => s.state.apply(MprCommand::SetPoint(patient(p))),
                MprDragKind::Measure(_) => {}
                MprDragKind::Rotate => {
                    // The turn of the pointer about the crosshair, measured in patient space about
                    // this view's normal, so the other planes' lines follow the pointer.
                    let c = s.state.point;
                    let (a, b) = (patient(drag.last), patient(p));
                    let a: [f64; 3] = std::array::from_fn(|k| a[k] - c[k]);
                    let b: [f64; 3] = std::array::from_fn(|k| b[k] - c[k]);
                    let n = plane.normal();
                    let angle = dot(n, cross(a, b)).atan2(dot(a, b));
                    if angle.is_finite() {
                        s.state.apply(MprCommand::Rotate { view: i, angle });
                    }
                }
                MprDragKind::Pan => {
                    let d = p - drag.last;
                    s.state.apply(MprCommand::PanBy {
                        view: i,
                        by: [d.x, d.y],
                    });
                }
                MprDragKind::Window(from) => {
                    let total = resp.total_drag_delta().unwrap_or_default();
                    // Right widens, down raises the centre, as in the 2D views.
                    let sensitivity = (from.width / 250.0).max(0.1);
                    let w = Window {
                        center: from.center + f64::from(total.y) * sensitivity,
                        width: (from.width + f64::from(total.x) * sensitivity).max(1.0),
                    };
                    s.state.apply(MprCommand::SetWindow(w, VoiFunction::Linear));
                }
            }
            drag.last = p;
        }
        if resp.drag_stopped() {
            if let (MprDragKind::Measure(a), Some(kind), Some(p)) = (
                drag.kind,
                self.measurement_kind(),
                resp.interact_pointer_pos(),
            ) {
                let b = t.image_from_screen(p);
                if (a - b).length() > 1.0 {
                    let (a, b) = (pt(a), pt(b));
                    let label = (kind == MeasurementKind::Line).then(|| {
                        let spacing = Some((
                            plane.pixel_spacing_mm,
                            radclip_dicom::SpacingSource::Patient,
                        ));
                        crate::labels::length_label(&measure::line_length(a, b, spacing))
                    });
                    s.measurements.push(MprMeasurement {
                        view: i,
                        plane: plane.clone(),
                        kind,
                        a,
                        b,
                        label,
                    });
                }
            }
            s.drag = None;
        }
    }
}

impl ViewerApp {
    /// The AI panel's map of the acquired slice under the crosshair (the hidden 2D view's), drawn on this
    /// view only when the view's plane is that slice's: a map belongs to the image the model read, never
    /// to a reformat. Returns whether it was drawn.
    fn mpr_ai_map(
        &self,
        painter: &egui::Painter,
        s: &MprSession,
        plane: &Plane,
        t: &ViewTransform,
    ) -> bool {
        let Some(v) = self.viewports.get(self.active) else {
            return false;
        };
        let (Some(ai), Some(key)) = (self.ai.as_ref(), self.frame_key(v)) else {
            return false;
        };
        let Some((texture, opacity)) = ai.overlay_for(&key) else {
            return false;
        };
        let Some(entry) = self.series.get(s.state.series) else {
            return false;
        };
        let (Some(g), Some((inst, _))) = (
            entry.series.geometry_of(v.slice),
            entry.series.instance_of(v.slice),
        ) else {
            return false;
        };
        let Some(px) = &inst.pixel else {
            return false;
        };
        let n = plane.normal();
        let d: [f64; 3] = std::array::from_fn(|k| g.position[k] - plane.origin_mm[k]);
        let on_plane = dot(n, g.normal()).abs() > 0.9999
            && dot(d, n).abs() < s.state.geometry.spacing[2] / 2.0;
        if !on_plane {
            return false;
        }
        // The frame's outer pixel edges, through patient space onto this view.
        let (w, h) = (f64::from(px.cols), f64::from(px.rows));
        let mut mesh = egui::Mesh::with_texture(texture.id());
        let tint = Color32::from_white_alpha((opacity * 255.0) as u8);
        for (x, y, uv) in [
            (-0.5, -0.5, pos2(0.0, 0.0)),
            (w - 0.5, -0.5, pos2(1.0, 0.0)),
            (w - 0.5, h - 0.5, pos2(1.0, 1.0)),
            (-0.5, h - 0.5, pos2(0.0, 1.0)),
        ] {
            let Some(p) = g.patient_from_pixel(x, y) else {
                return false;
            };
            let [r, c] = plane.pixel_of(p);
            mesh.vertices.push(egui::epaint::Vertex {
                pos: t.screen_from_image(pos2(c as f32 + 0.5, r as f32 + 0.5)),
                uv,
                color: tint,
            });
        }
        mesh.indices.extend_from_slice(&[0, 1, 2, 0, 2, 3]);
        painter.add(egui::Shape::mesh(mesh));
        true
    }

    /// View `i`'s measurements on its current plane (ROI statistics computed on first show), and the
    /// one being drawn.
    fn mpr_measurements_ui(
        &self,
        painter: &egui::Painter,
        s: &mut MprSession,
        i: usize,
        plane: &Plane,
        t: &ViewTransform,
    ) {
        for m in s.measurements.iter_mut().filter(|m| m.label.is_none()) {
            let MeasurementKind::Roi(shape) = m.kind else {
                continue;
            };
            // Never waits: a slice being moved in leaves it for the next frame.
            if let Ok(v) = s.volume.try_read() {
                m.label = Some(match v.roi_stats(&m.plane, shape, m.a, m.b) {
                    Some(st) => crate::labels::roi_label(&st),
                    None => "no pixels".into(),
                });
            }
        }
        let mut shown: Vec<MprMeasurement> = s
            .measurements
            .iter()
            .filter(|m| m.view == i && same_plane(&m.plane, plane))
            .cloned()
            .collect();
        if let (Some(d), Some(kind), Some(p)) = (
            s.drag.as_ref().filter(|d| d.view == i),
            self.measurement_kind(),
            painter.ctx().pointer_interact_pos(),
        ) && let MprDragKind::Measure(a) = d.kind
        {
            shown.push(MprMeasurement {
                view: i,
                plane: plane.clone(),
                kind,
                a: pt(a),
                b: pt(t.image_from_screen(p)),
                label: None,
            });
        }
        let colour = Color32::from_rgb(255, 220, 0);
        for m in shown {
            // Through patient space, so a measurement stays on its anatomy whatever the picture's size.
            let on_screen = |q: Pos2| {
                let p = m.plane.point(f64::from(q.y) - 0.5, f64::from(q.x) - 0.5);
                let [r, c] = plane.pixel_of(p);
                t.screen_from_image(pos2(c as f32 + 0.5, r as f32 + 0.5))
            };
            let (a, b) = (pos(m.a), pos(m.b));
            match m.kind {
                MeasurementKind::Line => {
                    painter.line_segment([on_screen(a), on_screen(b)], (1.5, colour));
                }
                MeasurementKind::Roi(shape) => {
                    let pts: Vec<Pos2> = match shape {
                        RoiShape::Rectangle => [a, pos2(b.x, a.y), b, pos2(a.x, b.y)]
                            .into_iter()
                            .map(on_screen)
                            .collect(),
                        RoiShape::Ellipse => {
                            let c = (a.to_vec2() + b.to_vec2()) / 2.0;
                            let r = (b - a).abs() / 2.0;
                            (0..64)
                                .map(|k| {
                                    let th = k as f32 / 64.0 * std::f32::consts::TAU;
                                    on_screen(pos2(c.x + r.x * th.cos(), c.y + r.y * th.sin()))
                                })
                                .collect()
                        }
                    };
                    painter.add(egui::Shape::closed_line(pts, (1.5, colour)));
                }
            }
            if let Some(text) = m.label {
                painter.text(
                    on_screen(b) + vec2(6.0, 6.0),
                    egui::Align2::LEFT_TOP,
                    text,
                    egui::FontId::monospace(12.0),
                    colour,
                );
            }
        }
    }
}

/// The other views' planes as lines through the crosshair, in their colours, with a gap around the
/// crosshair point so the anatomy under it stays visible.
fn reference_lines(painter: &egui::Painter, m: &Mpr, i: usize, plane: &Plane, t: &ViewTransform) {
    let screen = |p: [f64; 3]| {
        let [r, c] = plane.pixel_of(p);
        t.screen_from_image(pos2(c as f32 + 0.5, r as f32 + 0.5))
    };
    let centre = screen(m.point);
    let reach = t.rect.width() + t.rect.height();
    for j in 0..m.views.len() {
        if j == i {
            continue;
        }
        let Some(d) = m.reference_direction(i, j) else {
            continue;
        };
        let ahead = screen(std::array::from_fn(|k| m.point[k] + d[k] * 10.0));
        let u = (ahead - centre).normalized();
        if !u.x.is_finite() {
            continue;
        }
        let [r, g, b] = VIEW_COLOURS[j.min(VIEW_COLOURS.len() - 1)];
        let stroke = (1.0, Color32::from_rgba_unmultiplied(r, g, b, 200));
        let gap = 14.0;
        painter.line_segment([centre + u * gap, centre + u * reach], stroke);
        painter.line_segment([centre - u * gap, centre - u * reach], stroke);
        // A thick slab's two faces, fainter, where they cross this view.
        let half = m.views[j].slab.thickness_mm / 2.0;
        if half > 0.0 {
            let n = m.views[j].normal();
            let faint = (1.0, Color32::from_rgba_unmultiplied(r, g, b, 90));
            for side in [-1.0, 1.0] {
                let c = screen(std::array::from_fn(|k| m.point[k] + n[k] * half * side));
                painter.line_segment([c - u * reach, c + u * reach], faint);
            }
        }
    }
}
