//! The viewer application: wires the study engine's scanner and loader to viewports. Files are read and
//! decoded only on worker threads; this thread renders cached frames to textures and handles input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use egui::{Color32, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2, pos2, vec2};
use radclip_dicom::measure::{self, PointInImage, RoiShape};
use radclip_dicom::seg::Segmentation;
use radclip_dicom::{
    self as dicom, FrameKey, LoadEvent, Loader, Series, StudyTree, VoiFunction, Window,
};

use crate::ai::AiFrame;
use crate::ai_panel::AiPanel;
use crate::gpu::{GpuFrame, GpuTable, VoiCallback};
use crate::state::{
    Command, DragAction, Layout, Measurement, MeasurementKind, MouseBindings, Tool, Viewport,
    presets,
};
use crate::tags::TagBrowser;
use crate::transform::ViewTransform;

/// Decoded frames kept in memory.
const CACHE_BYTES: usize = 1536 << 20;

/// A series as shown, with its patient and study context for the overlay.
pub struct SeriesEntry {
    pub series: Arc<Series>,
    pub patient_name: String,
    pub patient_id: String,
    pub birth_date: String,
    pub study_date: String,
    pub study_description: String,
}

struct ShownTexture {
    key: (FrameKey, Option<(u64, u64)>, bool),
    picture: Picture,
    size: Vec2,
}

/// How a viewport's image reaches the screen.
enum Picture {
    /// The rendered 8-bit image as an egui texture (colour frames, 32-bit data, no wgpu).
    Texture(TextureHandle),
    /// Table indices plus the display table, combined by a shader (`gpu.rs`): a W/L change
    /// uploads only the table.
    Gpu {
        frame: Arc<GpuFrame>,
        table: Arc<GpuTable>,
    },
}

struct Drag {
    action: DragAction,
    viewport: usize,
    start_window: Window,
    start_image: Pos2,
}

pub struct ViewerApp {
    pub series: Vec<SeriesEntry>,
    pub viewports: Vec<Viewport>,
    pub active: usize,
    pub layout: Layout,
    pub tool: Tool,
    pub bindings: MouseBindings,
    pub show_overlay: bool,
    pub hide_phi: bool,
    pub status: String,
    /// The AI model's name and intended use, shown in the status bar whenever a model is configured
    /// ("… — not for clinical use" for the demo model).
    pub model_label: Option<String>,
    pub problems: Vec<dicom::study::FileProblem>,
    loader: Loader,
    events: Receiver<LoadEvent>,
    scan_rx: Option<Receiver<Result<StudyTree, String>>>,
    dialog_rx: Option<Receiver<Option<PathBuf>>>,
    shown: HashMap<usize, ShownTexture>,
    thumbs: HashMap<usize, TextureHandle>,
    drag: Option<Drag>,
    tags: Option<TagBrowser>,
    cine_acc: f32,
    show_help: bool,
    /// The transform each viewport was last drawn with (for tests and tools that map screen ↔ image).
    pub transforms: HashMap<usize, ViewTransform>,
    /// Set by [`ViewerApp::enable_gpu_voi`]: the largest texture side the GPU path takes.
    gpu_side: Option<u32>,
    /// The AI panel, when a model is configured ([`ViewerApp::enable_ai`]).
    pub ai: Option<AiPanel>,
    /// Segmentations (DICOM SEG) of the open studies, read on a worker after the scan.
    pub segmentations: Vec<Arc<Segmentation>>,
    seg_rx: Option<Receiver<Vec<Result<Segmentation, String>>>>,
    /// Whether segment masks are drawn over the images they were derived from (S).
    pub show_segmentations: bool,
    /// Mask textures by (segmentation, frame), made once.
    seg_textures: HashMap<(usize, usize), TextureHandle>,
}

impl ViewerApp {
    /// Moves the VOI stage of monochrome images to the GPU of `render_state` (eframe's or a test
    /// renderer's): a W/L change then uploads a ≤ 64 KB table instead of the whole image.
    pub fn enable_gpu_voi(&mut self, render_state: &eframe::egui_wgpu::RenderState) {
        self.gpu_side = Some(crate::gpu::install(render_state));
        self.shown.clear();
    }

    /// Starts the AI panel: its worker loads the model (and embeds the report library) in the background.
    pub fn enable_ai(&mut self, ctx: &egui::Context, setup: crate::ai::AiSetup) {
        match AiPanel::start(setup, ctx) {
            Ok(p) => self.ai = Some(p),
            Err(e) => self.status = format!("Could not start the AI worker: {e}"),
        }
    }

    /// The active viewport's frame, as the AI panel needs it.
    fn ai_current(&self) -> Option<AiFrame> {
        let v = self.viewports.get(self.active)?;
        let key = self.frame_key(v)?;
        let frame = self.loader.cache().get(&key)?;
        let modality = self.series.get(v.series?)?.series.modality.clone();
        Some(AiFrame {
            key,
            frame,
            window: v.window,
            modality,
        })
    }

    /// Whether the viewport's image is drawn by the GPU VOI path (for tests).
    pub fn is_gpu_drawn(&self, index: usize) -> bool {
        matches!(
            self.shown.get(&index).map(|s| &s.picture),
            Some(Picture::Gpu { .. })
        )
    }

    /// A viewer that starts scanning `path` in the background. `ctx` is woken by the workers.
    pub fn new(ctx: &egui::Context, path: Option<PathBuf>) -> std::io::Result<Self> {
        let waker = ctx.clone();
        let (loader, events) = Loader::new(CACHE_BYTES, Arc::new(move || waker.request_repaint()))?;
        let mut app = ViewerApp {
            series: Vec::new(),
            viewports: vec![Viewport::default()],
            active: 0,
            layout: Layout::One,
            tool: Tool::WindowLevel,
            bindings: MouseBindings::default(),
            show_overlay: true,
            hide_phi: false,
            status: "Open a DICOM file or folder (File menu, or drop it here).".into(),
            model_label: None,
            problems: Vec::new(),
            loader,
            events,
            scan_rx: None,
            dialog_rx: None,
            shown: HashMap::new(),
            thumbs: HashMap::new(),
            drag: None,
            tags: None,
            cine_acc: 0.0,
            show_help: false,
            transforms: HashMap::new(),
            gpu_side: None,
            ai: None,
            segmentations: Vec::new(),
            seg_rx: None,
            show_segmentations: false,
            seg_textures: HashMap::new(),
        };
        if let Some(p) = path {
            app.open(ctx, p);
        }
        Ok(app)
    }

    /// Starts scanning a file, folder or DICOMDIR on a worker thread.
    pub fn open(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.open_all(ctx, vec![path]);
    }

    /// Starts scanning several files, folders or DICOMDIRs on a worker thread, shown as one tree in
    /// the order given. A path that cannot be read is listed with the skipped files unless all fail.
    pub fn open_all(&mut self, ctx: &egui::Context, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let spawned = spawn_job("radclip-scan", ctx, move || {
            let mut tree = StudyTree::default();
            let mut errors = Vec::new();
            for p in &paths {
                match dicom::scan(p) {
                    Ok(t) => {
                        tree.patients.extend(t.patients);
                        tree.problems.extend(t.problems);
                        tree.other_files += t.other_files;
                    }
                    Err(e) => errors.push((p.clone(), e.to_string())),
                }
            }
            if errors.len() == paths.len() {
                Err(errors
                    .into_iter()
                    .map(|(_, e)| e)
                    .collect::<Vec<_>>()
                    .join("; "))
            } else {
                tree.problems.extend(
                    errors
                        .into_iter()
                        .map(|(path, message)| dicom::study::FileProblem { path, message }),
                );
                Ok(tree)
            }
        });
        match spawned {
            Ok(rx) => {
                self.loader.cancel();
                self.scan_rx = Some(rx);
                self.status = "Reading the study…".into();
            }
            Err(e) => self.status = format!("Could not start reading: {e}"),
        }
    }

    /// True once scanning is over and every viewport's current frame is decoded (or failed).
    pub fn is_settled(&self) -> bool {
        self.scan_rx.is_none()
            && self.seg_rx.is_none()
            && self.viewports.iter().all(|v| match self.frame_key(v) {
                Some(k) => {
                    self.loader.cache().contains(&k)
                        || self.loader.cache().failure(&k.path).is_some()
                }
                None => true,
            })
    }

    /// Settled, and no background decoding left (for reproducible snapshots).
    pub fn is_idle(&self) -> bool {
        self.is_settled() && self.loader.is_idle()
    }

    fn set_tree(&mut self, ctx: &egui::Context, tree: StudyTree) {
        self.series.clear();
        self.shown.clear();
        self.thumbs.clear();
        for p in &tree.patients {
            for st in &p.studies {
                for se in st.series.iter().filter(|s| s.is_image()) {
                    self.series.push(SeriesEntry {
                        series: Arc::new(se.clone()),
                        patient_name: p.name.replace('^', " ").trim().to_string(),
                        patient_id: p.id.clone(),
                        birth_date: p.birth_date.clone().unwrap_or_default(),
                        study_date: st.date.clone().unwrap_or_default(),
                        study_description: st.description.clone(),
                    });
                }
            }
        }
        self.read_segmentations(ctx, &tree);
        self.problems = tree.problems;
        let n_series = self.series.len();
        let listed = tree
            .patients
            .iter()
            .flat_map(|p| &p.studies)
            .flat_map(|s| &s.series)
            .count();
        self.status = match n_series {
            0 => format!("No images to show ({listed} non-image series listed)."),
            n => format!("{n} image series."),
        };
        if !self.problems.is_empty() {
            self.status += &format!(" {} file(s) skipped.", self.problems.len());
        }
        self.viewports = vec![Viewport::default(); self.layout.count()];
        for i in 0..self.viewports.len().min(n_series) {
            self.show_series_in(i, i);
        }
        self.active = 0;
        self.request_frames();
    }

    /// Reads the tree's segmentations on a worker thread (they carry whole masks, so they are not read
    /// during the header scan); their masks are drawn over their source images when shown (S).
    fn read_segmentations(&mut self, ctx: &egui::Context, tree: &StudyTree) {
        self.segmentations.clear();
        self.seg_textures.clear();
        self.seg_rx = None;
        let paths: Vec<Arc<Path>> = tree
            .series()
            .flat_map(|s| &s.instances)
            .filter(|i| i.sop_class_uid == dicom::seg::SEGMENTATION_STORAGE)
            .map(|i| i.path.clone())
            .take(MAX_SEGMENTATIONS)
            .collect();
        if paths.is_empty() {
            return;
        }
        self.seg_rx = spawn_job("radclip-seg", ctx, move || {
            paths
                .iter()
                .map(|p| Segmentation::read(p).map_err(|e| e.to_string()))
                .collect()
        })
        .ok();
    }

    /// The mask texture of frame `frame` of segmentation `seg`, made on first use.
    fn seg_texture(
        &mut self,
        ctx: &egui::Context,
        seg: usize,
        frame: usize,
    ) -> Option<TextureHandle> {
        if let Some(t) = self.seg_textures.get(&(seg, frame)) {
            return Some(t.clone());
        }
        let s = self.segmentations.get(seg)?;
        let f = s.frames.get(frame)?;
        let color = segment_color(f.segment);
        let pixels: Vec<Color32> = f
            .mask
            .iter()
            .map(|&on| if on { color } else { Color32::TRANSPARENT })
            .collect();
        let img = egui::ColorImage::new([s.cols as usize, s.rows as usize], pixels);
        // Nearest: a label map's edges stay where the mask puts them.
        let t = ctx.load_texture(format!("seg-{seg}-{frame}"), img, TextureOptions::NEAREST);
        self.seg_textures.insert((seg, frame), t.clone());
        Some(t)
    }

    /// (segmentation, frame, label, colour) of every mask laid over image `sop_uid` of `cols × rows`
    /// (`plane`: its frame of reference, position and orientation, for SEG frames that name no source).
    fn masks_over(
        &self,
        sop_uid: &str,
        cols: u32,
        rows: u32,
        plane: Option<(&str, [f64; 3], [f64; 6])>,
    ) -> Vec<(usize, usize, String, Color32)> {
        self.segmentations
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cols == cols && s.rows == rows)
            .flat_map(|(si, s)| {
                s.frames_over(sop_uid, plane).map(move |(fi, info, f)| {
                    (si, fi, info.label.clone(), segment_color(f.segment))
                })
            })
            .collect()
    }

    pub fn show_series_in(&mut self, viewport: usize, series: usize) {
        let n = self.series.get(series).map_or(0, |s| s.series.frames.len());
        if let Some(v) = self.viewports.get_mut(viewport) {
            v.show_series(series, n);
        }
        self.request_frames();
    }

    pub fn set_layout(&mut self, layout: Layout) {
        self.layout = layout;
        let n = layout.count();
        let old = self.viewports.len();
        self.viewports.resize(n, Viewport::default());
        for i in old..n {
            if i < self.series.len() {
                self.show_series_in(i, i);
            }
        }
        self.active = self.active.min(n - 1);
        self.request_frames();
    }

    fn frame_key(&self, v: &Viewport) -> Option<FrameKey> {
        let s = &self.series.get(v.series?)?.series;
        let (inst, frame) = s.instance_of(v.slice)?;
        Some(FrameKey {
            path: inst.path.clone(),
            frame,
        })
    }

    /// Queues decoding: visible slices first, then thumbnails, then the active series outward from the
    /// current slice, so the first image is on screen before the rest of the series is decoded.
    fn request_frames(&mut self) {
        let mut order: Vec<Arc<Path>> = Vec::new();
        let active_first = std::iter::once(self.active)
            .chain((0..self.viewports.len()).filter(|&i| i != self.active));
        let visible: Vec<usize> = active_first.collect();
        for &i in &visible {
            if let Some(k) = self.viewports.get(i).and_then(|v| self.frame_key(v)) {
                order.push(k.path);
            }
        }
        for e in &self.series {
            if let Some((inst, _)) = e.series.instance_of(e.series.frames.len() / 2) {
                order.push(inst.path.clone());
            }
        }
        for &i in &visible {
            let Some(v) = self.viewports.get(i) else {
                continue;
            };
            let Some(entry) = v.series.and_then(|s| self.series.get(s)) else {
                continue;
            };
            let n = entry.series.frames.len();
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by_key(|&j| j.abs_diff(v.slice));
            order.extend(idx.into_iter().filter_map(|j| {
                entry
                    .series
                    .instance_of(j)
                    .map(|(inst, _)| inst.path.clone())
            }));
        }
        let mut seen = std::collections::HashSet::new();
        order.retain(|p| seen.insert(p.clone()));
        self.loader.request(order);
    }

    fn poll_workers(&mut self, ctx: &egui::Context) {
        if let Some(rx) = &self.scan_rx
            && let Ok(r) = rx.try_recv()
        {
            self.scan_rx = None;
            match r {
                Ok(tree) => self.set_tree(ctx, tree),
                Err(e) => self.status = format!("Could not open: {e}"),
            }
        }
        if let Some(rx) = &self.seg_rx
            && let Ok(read) = rx.try_recv()
        {
            self.seg_rx = None;
            let failed = read.iter().filter(|r| r.is_err()).count();
            for r in read {
                match r {
                    Ok(s) => self.segmentations.push(Arc::new(s)),
                    Err(e) => tracing::debug!("segmentation not read: {e}"),
                }
            }
            if !self.segmentations.is_empty() {
                self.status += &format!(
                    " {} segmentation(s): S shows their masks.",
                    self.segmentations.len()
                );
            }
            if failed > 0 {
                self.status += &format!(" {failed} segmentation(s) could not be read.");
            }
        }
        if let Some(rx) = &self.dialog_rx
            && let Ok(choice) = rx.try_recv()
        {
            self.dialog_rx = None;
            if let Some(p) = choice {
                self.open(ctx, p);
            }
        }
        let mut any = false;
        while let Ok(ev) = self.events.try_recv() {
            any = true;
            if let LoadEvent::Failed { message, .. } = ev {
                tracing::debug!("decode failed: {message}");
            }
        }
        if any {
            ctx.request_repaint();
        }
        if let Some(t) = &mut self.tags {
            t.poll();
        }
    }

    fn pick(&mut self, ctx: &egui::Context, folder: bool) {
        // The dialog blocks its thread, so it runs off the GUI thread.
        self.dialog_rx = spawn_job("radclip-dialog", ctx, move || {
            let d = rfd::FileDialog::new();
            if folder {
                d.pick_folder()
            } else {
                d.pick_file()
            }
        })
        .ok();
    }

    /// Draws the whole UI; also the entry point for GUI tests.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_workers(&ctx);
        if self.ai.is_some() {
            let current = self.ai_current();
            if let Some(ai) = &mut self.ai {
                ai.poll(&ctx);
                ai.sync(current);
            }
        }
        self.handle_dropped_files(&ctx);
        self.handle_keys(&ctx);
        self.advance_cine(&ctx);

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if self.scan_rx.is_some() {
                    ui.spinner();
                }
                ui.label(&self.status);
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.label(format!("cache {} MB", self.loader.cache().bytes() >> 20));
                    if let Some(m) = &self.model_label {
                        ui.separator();
                        ui.label(egui::RichText::new(m).color(Color32::from_rgb(230, 180, 60)));
                    }
                });
            });
        });
        egui::Panel::left("browser")
            .resizable(true)
            .default_size(220.0)
            .show(ui, |ui| self.browser_ui(ui));
        let current_key = self
            .viewports
            .get(self.active)
            .and_then(|v| self.frame_key(v));
        if let Some(ai) = self.ai.as_mut().filter(|a| a.open) {
            egui::Panel::right("ai")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| ai.ui(ui, current_key.as_ref()));
        }
        egui::CentralPanel::default()
            .frame(egui::Frame::new().fill(Color32::BLACK))
            .show(ui, |ui| self.viewports_ui(ui));
        if let Some(t) = &mut self.tags {
            let mut open = true;
            egui::Window::new("Tags")
                .open(&mut open)
                .default_size([640.0, 480.0])
                .show(&ctx, |ui| t.ui(ui));
            if !open {
                self.tags = None;
            }
        }
        if self.show_help {
            egui::Window::new("Keys and mouse")
                .open(&mut self.show_help)
                .show(&ctx, |ui| ui.label(crate::HELP));
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open file…").clicked() {
                    self.pick(ui.ctx(), false);
                }
                if ui.button("Open folder or DICOMDIR…").clicked() {
                    self.pick(ui.ctx(), true);
                }
            });
            ui.menu_button("View", |ui| {
                for (l, name) in [
                    (Layout::One, "1 × 1"),
                    (Layout::OneByTwo, "1 × 2"),
                    (Layout::TwoByTwo, "2 × 2"),
                ] {
                    if ui.radio(self.layout == l, name).clicked() {
                        self.set_layout(l);
                    }
                }
                ui.separator();
                ui.checkbox(&mut self.show_overlay, "Corner text (O)");
                ui.checkbox(&mut self.hide_phi, "Hide patient data (P)");
                ui.checkbox(&mut self.show_segmentations, "Segmentations (S)");
                if let Some(ai) = &mut self.ai {
                    ui.checkbox(&mut ai.open, "AI panel (A)");
                }
                if ui.button("Tags of this image (T)").clicked() {
                    self.open_tags();
                }
            });
            ui.menu_button("Mouse", |ui| {
                let actions = [
                    (DragAction::WindowLevel, "Window/level"),
                    (DragAction::Pan, "Pan"),
                    (DragAction::Zoom, "Zoom"),
                    (DragAction::Measure, "Measure (active tool)"),
                ];
                for (label, slot) in [
                    ("Left drag", &mut self.bindings.primary),
                    ("Middle drag", &mut self.bindings.middle),
                    ("Right drag", &mut self.bindings.secondary),
                ] {
                    ui.menu_button(label, |ui| {
                        for (a, name) in actions {
                            ui.radio_value(slot, a, name);
                        }
                    });
                }
            });
            ui.separator();
            for (t, name) in [
                (Tool::WindowLevel, "W/L"),
                (Tool::Line, "Line"),
                (Tool::Rectangle, "Rect"),
                (Tool::Ellipse, "Ellipse"),
            ] {
                if ui.selectable_label(self.tool == t, name).clicked() {
                    self.tool = t;
                }
            }
            ui.separator();
            if let Some(v) = self.viewports.get_mut(self.active) {
                if ui.selectable_label(v.cine, "Cine").clicked() {
                    v.apply(Command::ToggleCine);
                }
                let mut fps = v.cine_fps;
                if ui
                    .add(egui::Slider::new(&mut fps, 1.0..=60.0).text("fps"))
                    .changed()
                {
                    v.apply(Command::SetCineFps(fps));
                }
            }
            if ui.button("?").clicked() {
                self.show_help = true;
            }
        });
    }

    fn browser_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        egui::ScrollArea::vertical().show(ui, |ui| {
            let mut last_study = String::new();
            let mut clicked = None;
            for (i, e) in self.series.iter().enumerate() {
                let study = format!("{} {}", e.study_date, e.study_description);
                if study != last_study {
                    let who = if self.hide_phi {
                        "Patient (hidden)".to_string()
                    } else {
                        e.patient_name.clone()
                    };
                    ui.strong(format!("{who} — {study}"));
                    last_study = study;
                }
                if !self.thumbs.contains_key(&i)
                    && let Some(t) = make_thumbnail(&ctx, &self.loader, &e.series, i)
                {
                    self.thumbs.insert(i, t);
                }
                let selected = self.viewports.get(self.active).and_then(|v| v.series) == Some(i);
                ui.horizontal(|ui| {
                    let (rect, resp) = ui.allocate_exact_size(vec2(64.0, 64.0), Sense::click());
                    ui.painter().rect_filled(rect, 2.0, Color32::from_gray(20));
                    if let Some(t) = self.thumbs.get(&i) {
                        let sz = t.size_vec2();
                        let s = 64.0 / sz.x.max(sz.y).max(1.0);
                        let r = Rect::from_center_size(rect.center(), sz * s);
                        ui.painter().image(
                            t.id(),
                            r,
                            Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                            Color32::WHITE,
                        );
                    }
                    let label = ui.selectable_label(selected, e.series.label());
                    if resp.clicked() || label.clicked() {
                        clicked = Some(i);
                    }
                });
            }
            if let Some(i) = clicked {
                self.show_series_in(self.active, i);
            }
            if !self.problems.is_empty() {
                ui.separator();
                ui.collapsing(format!("{} skipped file(s)", self.problems.len()), |ui| {
                    for p in &self.problems {
                        ui.label(format!("{}: {}", p.path.display(), p.message));
                    }
                });
            }
        });
    }

    fn viewports_ui(&mut self, ui: &mut egui::Ui) {
        let full = ui.max_rect();
        let (rows, cols) = self.layout.grid();
        let cell = vec2(full.width() / cols as f32, full.height() / rows as f32);
        for i in 0..self.viewports.len() {
            let (r, c) = (i / cols, i % cols);
            let rect =
                Rect::from_min_size(full.min + vec2(c as f32 * cell.x, r as f32 * cell.y), cell)
                    .shrink(1.0);
            self.viewport_ui(ui, i, rect);
        }
    }

    fn viewport_ui(&mut self, ui: &mut egui::Ui, index: usize, rect: Rect) {
        let ctx = ui.ctx().clone();
        let resp = ui.interact(
            rect,
            ui.scope_id().with(("viewport", index)),
            Sense::click_and_drag(),
        );
        let painter = ui.painter_at(rect);
        if self.layout != Layout::One {
            let stroke = if index == self.active {
                Color32::from_rgb(80, 160, 255)
            } else {
                Color32::from_gray(60)
            };
            painter.rect_stroke(rect, 0.0, (1.0, stroke), egui::StrokeKind::Inside);
        }
        if resp.clicked() || resp.drag_started() {
            self.active = index;
        }
        let Some(v) = self.viewports.get(index).cloned() else {
            return;
        };
        let Some(entry) = v.series.and_then(|s| self.series.get(s)) else {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "No series",
                egui::FontId::proportional(14.0),
                Color32::GRAY,
            );
            return;
        };
        let series = entry.series.clone();
        let Some(key) = self.frame_key(&v) else {
            return;
        };
        let frame = self.loader.cache().get(&key);
        if let Some(f) = &frame {
            self.update_texture(&ctx, index, &key, f, &v);
        }
        let Some(shown) = self.shown.get(&index) else {
            let msg = match self.loader.cache().failure(&key.path) {
                Some(e) => format!("Cannot display this image:\n{e}"),
                None => "Loading…".into(),
            };
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                msg,
                egui::FontId::proportional(14.0),
                Color32::LIGHT_RED,
            );
            return;
        };
        let t = ViewTransform {
            rect,
            image_size: shown.size,
            zoom: v.zoom,
            pan: Vec2::from(v.pan),
            rotation: v.rotation,
            flip_h: v.flip_h,
            flip_v: v.flip_v,
        };
        match &shown.picture {
            Picture::Texture(texture) => draw_image(&painter, texture.id(), &t),
            Picture::Gpu { frame, table } => {
                let corners = image_corners(&t).map(|(p, _)| p);
                painter.add(eframe::egui_wgpu::Callback::new_paint_callback(
                    rect,
                    VoiCallback {
                        viewport: index,
                        frame: frame.clone(),
                        table: table.clone(),
                        corners,
                    },
                ));
            }
        }
        self.transforms.insert(index, t);
        if index == self.active
            && let Some((texture, opacity)) = self.ai.as_ref().and_then(|a| a.overlay_for(&key))
        {
            draw_textured(
                &painter,
                texture.id(),
                &t,
                Color32::from_white_alpha((opacity * 255.0) as u8),
            );
        }
        if self.show_segmentations
            && let Some((inst, frame_no)) = series.instance_of(v.slice)
        {
            let (cols, rows) = (t.image_size.x as u32, t.image_size.y as u32);
            let plane = series.frame_of_reference.as_deref().and_then(|f| {
                let g = inst.frame_geometry.get(frame_no as usize)?.as_ref()?;
                Some((f, g.position, g.orientation))
            });
            let masks = self.masks_over(&inst.sop_instance_uid, cols, rows, plane);
            for (si, fi, _, _) in &masks {
                if let Some(tex) = self.seg_texture(&ctx, *si, *fi) {
                    draw_textured(&painter, tex.id(), &t, Color32::WHITE);
                }
            }
            segment_legend(&painter, rect, &masks);
        }
        if frame.is_none()
            && let Some(e) = self.loader.cache().failure(&key.path)
        {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                format!("Cannot display this image:\n{e}"),
                egui::FontId::proportional(14.0),
                Color32::LIGHT_RED,
            );
        }
        let spacing = series
            .instance_of(v.slice)
            .and_then(|(inst, _)| inst.spacing);
        self.measurements_ui(&painter, &t, &v, frame.as_deref(), spacing);
        self.viewport_input(&ctx, &resp, index, &t, frame.as_deref());
        if self.show_overlay {
            self.overlay_ui(&painter, rect, index, frame.as_deref(), &t);
        }
        // Scrollbar along the right edge.
        if v.slice_count > 1 {
            let bar = Rect::from_min_max(
                pos2(rect.right() - 8.0, rect.top() + 20.0),
                pos2(rect.right() - 2.0, rect.bottom() - 20.0),
            );
            let bresp = ui.interact(
                bar,
                ui.scope_id().with(("scrollbar", index)),
                Sense::click_and_drag(),
            );
            painter.rect_filled(bar, 2.0, Color32::from_gray(40));
            let frac = v.slice as f32 / (v.slice_count - 1) as f32;
            let y = bar.top() + frac * bar.height();
            painter.rect_filled(
                Rect::from_center_size(pos2(bar.center().x, y), vec2(8.0, 10.0)),
                2.0,
                Color32::from_gray(160),
            );
            if let Some(p) = bresp.interact_pointer_pos() {
                let f = ((p.y - bar.top()) / bar.height()).clamp(0.0, 1.0);
                self.command(
                    index,
                    Command::GoTo((f * (v.slice_count - 1) as f32).round() as usize),
                );
            }
        }
    }

    fn update_texture(
        &mut self,
        ctx: &egui::Context,
        index: usize,
        key: &FrameKey,
        frame: &dicom::Frame,
        v: &Viewport,
    ) {
        let wkey = v
            .window
            .map(|(w, _)| (w.center.to_bits(), w.width.to_bits()));
        let full_key = (key.clone(), wkey, v.invert);
        if self.shown.get(&index).is_some_and(|s| s.key == full_key) {
            return;
        }
        let size = vec2(frame.cols as f32, frame.rows as f32);
        if let Some(picture) = self.gpu_picture(index, key, frame, v) {
            self.shown.insert(
                index,
                ShownTexture {
                    key: full_key,
                    picture,
                    size,
                },
            );
            return;
        }
        let img = color_image(frame, v.window, v.invert);
        match self.shown.get_mut(&index) {
            Some(ShownTexture {
                picture: Picture::Texture(texture),
                key,
                size: s,
            }) => {
                texture.set(img, TextureOptions::LINEAR);
                *key = full_key;
                *s = size;
            }
            _ => {
                let texture =
                    ctx.load_texture(format!("viewport-{index}"), img, TextureOptions::LINEAR);
                self.shown.insert(
                    index,
                    ShownTexture {
                        key: full_key,
                        picture: Picture::Texture(texture),
                        size,
                    },
                );
            }
        }
    }

    /// The GPU picture of a monochrome frame: the frame's table indices are re-used while only the
    /// window or the invert toggle changes. `None` when the GPU path is off or cannot take the frame.
    fn gpu_picture(
        &self,
        index: usize,
        key: &FrameKey,
        frame: &dicom::Frame,
        v: &Viewport,
    ) -> Option<Picture> {
        let side = self.gpu_side?;
        if frame.cols > side || frame.rows > side {
            return None;
        }
        let voi = v.window.map(|(w, f)| dicom::Voi::Window(w, f));
        let mut table = dicom::display_lut(frame, voi.as_ref())?.table;
        if v.invert {
            table.iter_mut().for_each(|p| *p = 255 - *p);
        }
        let same_frame = self.shown.get(&index).and_then(|s| match &s.picture {
            Picture::Gpu { frame, .. } if s.key.0 == *key => Some(frame.clone()),
            _ => None,
        });
        let frame = match same_frame {
            Some(f) => f,
            None => GpuFrame::new(frame.cols, frame.rows, dicom::lut_indices(frame)?),
        };
        Some(Picture::Gpu {
            frame,
            table: GpuTable::new(table),
        })
    }

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
    fn link_scroll(&mut self, from: usize) {
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
            let best = (0..entry.series.frames.len())
                .filter_map(|j| {
                    let g = entry.series.geometry_of(j)?;
                    let d = dicom::geometry::dot(g.normal(), pos) - g.distance_along_normal();
                    Some((j, d.abs()))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, _)) = best {
                other.slice = j;
            }
        }
    }

    fn viewport_input(
        &mut self,
        ctx: &egui::Context,
        resp: &egui::Response,
        index: usize,
        t: &ViewTransform,
        frame: Option<&dicom::Frame>,
    ) {
        if resp.hovered() {
            // One wheel event = one slice, whatever its size; Ctrl+wheel arrives as egui's zoom delta.
            let (wheel, zoom) = ctx.input(|i| {
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
            });
            if zoom != 1.0 {
                self.command(index, Command::ZoomBy(zoom));
            } else if wheel != 0.0 {
                self.command(index, Command::ScrollBy(if wheel > 0.0 { -1 } else { 1 }));
            }
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

    fn measurement_kind(&self) -> Option<MeasurementKind> {
        match self.tool {
            Tool::Line => Some(MeasurementKind::Line),
            Tool::Rectangle => Some(MeasurementKind::Roi(RoiShape::Rectangle)),
            Tool::Ellipse => Some(MeasurementKind::Roi(RoiShape::Ellipse)),
            Tool::WindowLevel => None,
        }
    }

    fn measurements_ui(
        &self,
        painter: &egui::Painter,
        t: &ViewTransform,
        v: &Viewport,
        frame: Option<&dicom::Frame>,
        spacing: Option<([f64; 2], dicom::SpacingSource)>,
    ) {
        let mut all: Vec<Measurement> = v
            .measurements
            .iter()
            .filter(|m| m.slice == v.slice)
            .copied()
            .collect();
        // The measurement being drawn.
        if let (Some(d), Some(kind)) = (&self.drag, self.measurement_kind())
            && d.action == DragAction::Measure
            && let Some(p) = painter.ctx().pointer_interact_pos()
        {
            all.push(Measurement {
                slice: v.slice,
                kind,
                a: pt(d.start_image),
                b: pt(t.image_from_screen(p)),
            });
        }
        let color = Color32::from_rgb(255, 220, 0);
        for m in all {
            let (a, b) = (t.screen_from_image(pos(m.a)), t.screen_from_image(pos(m.b)));
            let text = match m.kind {
                MeasurementKind::Line => {
                    painter.line_segment([a, b], (1.5, color));
                    crate::labels::length_label(&measure::line_length(m.a, m.b, spacing))
                }
                MeasurementKind::Roi(shape) => {
                    let corners = [
                        pos(m.a),
                        pos2(m.b.x as f32, m.a.y as f32),
                        pos(m.b),
                        pos2(m.a.x as f32, m.b.y as f32),
                    ];
                    let pts: Vec<Pos2> = match shape {
                        RoiShape::Rectangle => {
                            corners.iter().map(|&p| t.screen_from_image(p)).collect()
                        }
                        RoiShape::Ellipse => {
                            let c = (pos(m.a).to_vec2() + pos(m.b).to_vec2()) / 2.0;
                            let r = (pos(m.b) - pos(m.a)).abs() / 2.0;
                            (0..64)
                                .map(|k| {
                                    let th = k as f32 / 64.0 * std::f32::consts::TAU;
                                    t.screen_from_image(pos2(
                                        c.x + r.x * th.cos(),
                                        c.y + r.y * th.sin(),
                                    ))
                                })
                                .collect()
                        }
                    };
                    painter.add(egui::Shape::closed_line(pts, (1.5, color)));
                    match frame.and_then(|f| measure::roi_stats(f, shape, m.a, m.b, spacing)) {
                        Some(s) => crate::labels::roi_label(&s),
                        None => "no pixels".into(),
                    }
                }
            };
            painter.text(
                b + vec2(6.0, 6.0),
                egui::Align2::LEFT_TOP,
                text,
                egui::FontId::monospace(12.0),
                color,
            );
        }
    }

    fn overlay_ui(
        &self,
        painter: &egui::Painter,
        rect: Rect,
        index: usize,
        frame: Option<&dicom::Frame>,
        t: &ViewTransform,
    ) {
        let Some(v) = self.viewports.get(index) else {
            return;
        };
        let Some(e) = v.series.and_then(|s| self.series.get(s)) else {
            return;
        };
        let font = egui::FontId::monospace(12.0);
        let col = Color32::from_rgb(230, 230, 230);
        let m = 6.0;
        let tl = if self.hide_phi {
            "Patient data hidden".to_string()
        } else {
            format!(
                "{}\nID {}\nDOB {}",
                e.patient_name, e.patient_id, e.birth_date
            )
        };
        // Each corner gets half the viewport's width; longer lines end in "…" instead of running into
        // the opposite corner.
        let half = (rect.width() / 2.0 - 2.0 * m - 10.0).max(40.0);
        corner_text(
            painter,
            rect.left_top() + vec2(m, m),
            egui::Align2::LEFT_TOP,
            &tl,
            &font,
            col,
            half,
        );
        let tr = format!(
            "{}\n{}\n{}",
            e.study_date,
            e.study_description,
            e.series.label()
        );
        corner_text(
            painter,
            rect.right_top() + vec2(-m - 10.0, m),
            egui::Align2::RIGHT_TOP,
            &tr,
            &font,
            col,
            half,
        );
        let mut bl = format!("Im {}/{}", v.slice + 1, v.slice_count);
        if let Some(g) = e.series.geometry_of(v.slice) {
            bl += &format!("\nLoc {:.2} mm", g.distance_along_normal());
            if let Some(th) = g.slice_thickness {
                bl += &format!("\nThk {th:.2} mm");
            }
        }
        corner_text(
            painter,
            rect.left_bottom() + vec2(m, -m),
            egui::Align2::LEFT_BOTTOM,
            &bl,
            &font,
            col,
            half,
        );
        let voi = v
            .window
            .map(|(w, f)| dicom::Voi::Window(w, f))
            .or_else(|| frame.filter(|f| !f.is_color()).map(|f| f.default_voi()));
        let mut br = match voi {
            Some(dicom::Voi::Window(w, _)) => format!("W {:.0} L {:.0}", w.width, w.center),
            // The file's VOI LUT table is shown as it is named, not as an equivalent window.
            Some(dicom::Voi::Table(t)) => match &t.explanation {
                Some(e) => format!("VOI LUT: {e}"),
                None => "VOI LUT".into(),
            },
            None => String::new(),
        };
        br += &format!("\nZoom {:.0}%", t.scale() * 100.0);
        corner_text(
            painter,
            rect.right_bottom() + vec2(-m - 10.0, -m),
            egui::Align2::RIGHT_BOTTOM,
            &br,
            &font,
            col,
            half,
        );
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Option<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(p) = dropped {
            self.open(ctx, p);
        }
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        use egui::Key;
        let keys: Vec<(Key, egui::Modifiers)> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Key {
                        key,
                        pressed: true,
                        modifiers,
                        ..
                    } => Some((*key, *modifiers)),
                    _ => None,
                })
                .collect()
        });
        let a = self.active;
        for (key, mods) in keys {
            let slices = self.viewports.get(a).map_or(0, |v| v.slice_count);
            let cmd = match key {
                Key::ArrowUp | Key::ArrowLeft => Some(Command::ScrollBy(-1)),
                Key::ArrowDown | Key::ArrowRight => Some(Command::ScrollBy(1)),
                Key::PageUp => Some(Command::ScrollBy(-10)),
                Key::PageDown => Some(Command::ScrollBy(10)),
                Key::Home => Some(Command::GoTo(0)),
                Key::End => Some(Command::GoTo(slices.saturating_sub(1))),
                Key::I => Some(Command::ToggleInvert),
                Key::R => Some(Command::RotateClockwise),
                Key::H => Some(Command::FlipHorizontal),
                Key::V => Some(Command::FlipVertical),
                Key::F => Some(Command::Fit),
                Key::Space => Some(Command::ToggleCine),
                Key::Z if mods.command => Some(Command::UndoMeasurement),
                Key::Delete => Some(Command::ClearMeasurements),
                Key::Num0 => Some(Command::ResetWindow),
                Key::Num1 | Key::Num2 | Key::Num3 | Key::Num4 | Key::Num5 => {
                    let n = match key {
                        Key::Num1 => 0,
                        Key::Num2 => 1,
                        Key::Num3 => 2,
                        Key::Num4 => 3,
                        _ => 4,
                    };
                    self.preset_command(a, n)
                }
                _ => None,
            };
            match (cmd, key) {
                (Some(c), _) => self.command(a, c),
                (None, Key::O) => self.show_overlay = !self.show_overlay,
                (None, Key::P) => self.hide_phi = !self.hide_phi,
                (None, Key::S) => self.show_segmentations = !self.show_segmentations,
                (None, Key::T) => self.open_tags(),
                (None, Key::A) => {
                    if let Some(ai) = &mut self.ai {
                        ai.open = !ai.open;
                    }
                }
                (None, Key::L) => self.tool = Tool::Line,
                (None, Key::E) => self.tool = Tool::Ellipse,
                (None, Key::B) => self.tool = Tool::Rectangle,
                (None, Key::W) | (None, Key::Escape) => self.tool = Tool::WindowLevel,
                _ => {}
            }
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

    fn open_tags(&mut self) {
        let Some(v) = self.viewports.get(self.active) else {
            return;
        };
        if let Some(k) = self.frame_key(v) {
            self.tags = TagBrowser::open(k.path).ok();
        }
    }

    fn advance_cine(&mut self, ctx: &egui::Context) {
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

/// Lines of corner text anchored at `at`, each cut to `max_width` with "…".
fn corner_text(
    painter: &egui::Painter,
    at: Pos2,
    align: egui::Align2,
    text: &str,
    font: &egui::FontId,
    color: Color32,
    max_width: f32,
) {
    let galleys: Vec<_> = text
        .lines()
        .map(|line| {
            let mut job =
                egui::text::LayoutJob::simple_singleline(line.to_string(), font.clone(), color);
            job.wrap = egui::text::TextWrapping {
                max_width,
                max_rows: 1,
                break_anywhere: true,
                overflow_character: Some('…'),
            };
            painter.layout_job(job)
        })
        .collect();
    let total: f32 = galleys.iter().map(|g| g.size().y).sum();
    let mut y = if align.y() == egui::Align::Max {
        at.y - total
    } else {
        at.y
    };
    for g in galleys {
        let x = if align.x() == egui::Align::Max {
            at.x - g.size().x
        } else {
            at.x
        };
        let h = g.size().y;
        painter.galley(pos2(x, y), g, color);
        y += h;
    }
}

fn pt(p: Pos2) -> PointInImage {
    PointInImage {
        x: f64::from(p.x),
        y: f64::from(p.y),
    }
}

fn pos(p: PointInImage) -> Pos2 {
    pos2(p.x as f32, p.y as f32)
}

/// Runs `job` on a thread of its own (named for profiles) and wakes the GUI when its result is in the
/// returned channel.
fn spawn_job<T: Send + 'static>(
    name: &str,
    ctx: &egui::Context,
    job: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Receiver<T>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let waker = ctx.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(job());
            waker.request_repaint();
        })?;
    Ok(rx)
}

/// Segmentations read per opened tree, at most (each holds whole masks in memory).
const MAX_SEGMENTATIONS: usize = 64;

/// A segment's overlay colour (translucent), by its number.
fn segment_color(number: u16) -> Color32 {
    const PALETTE: [(u8, u8, u8); 6] = [
        (255, 70, 70),
        (60, 200, 255),
        (255, 210, 40),
        (90, 230, 110),
        (210, 110, 255),
        (255, 140, 20),
    ];
    let (r, g, b) = PALETTE[usize::from(number.saturating_sub(1)) % PALETTE.len()];
    Color32::from_rgba_unmultiplied(r, g, b, 110)
}

/// The drawn segments' labels with their colours, on a dark band along the bottom of the viewport (the
/// image under it may be bright).
fn segment_legend(painter: &egui::Painter, rect: Rect, masks: &[(usize, usize, String, Color32)]) {
    if masks.is_empty() {
        return;
    }
    let font = egui::FontId::proportional(13.0);
    let text = Color32::from_rgb(235, 235, 235);
    let galleys: Vec<_> = masks
        .iter()
        .map(|(_, _, label, _)| painter.layout_no_wrap(label.clone(), font.clone(), text))
        .collect();
    let (swatch, gap) = (10.0, 14.0);
    let width: f32 = galleys
        .iter()
        .map(|g| swatch + 4.0 + g.size().x)
        .sum::<f32>()
        + gap * (galleys.len() - 1) as f32;
    let height = galleys.iter().map(|g| g.size().y).fold(swatch, f32::max);
    let band = Rect::from_center_size(
        pos2(rect.center().x, rect.bottom() - 34.0),
        vec2(width + 16.0, height + 8.0),
    );
    painter.rect_filled(band, 4.0, Color32::from_black_alpha(170));
    let mut x = band.left() + 8.0;
    let y = band.center().y;
    for ((_, _, _, color), galley) in masks.iter().zip(galleys) {
        let sq = Rect::from_min_size(pos2(x, y - swatch / 2.0), vec2(swatch, swatch));
        painter.rect_filled(sq, 2.0, color.to_opaque());
        let w = galley.size().x;
        painter.galley(
            pos2(x + swatch + 4.0, y - galley.size().y / 2.0),
            galley,
            text,
        );
        x += swatch + 4.0 + w + gap;
    }
}

/// Draws the image texture as a quad whose corners follow the view transform (rotation and flips included).
fn draw_image(painter: &egui::Painter, texture: egui::TextureId, t: &ViewTransform) {
    draw_textured(painter, texture, t, Color32::WHITE);
}

/// A texture stretched over the whole image, tinted (white with alpha for an overlay).
fn draw_textured(
    painter: &egui::Painter,
    texture: egui::TextureId,
    t: &ViewTransform,
    tint: Color32,
) {
    let mut mesh = egui::Mesh::with_texture(texture);
    for (pos, uv) in image_corners(t) {
        mesh.vertices.push(egui::epaint::Vertex {
            pos,
            uv,
            color: tint,
        });
    }
    mesh.indices.extend_from_slice(&[0, 1, 2, 0, 2, 3]);
    painter.add(egui::Shape::mesh(mesh));
}

/// The image's corners (0,0), (w,0), (w,h), (0,h) on screen, with their texture coordinates: one quad
/// for the texture path, the overlay and the GPU path alike.
fn image_corners(t: &ViewTransform) -> [(Pos2, Pos2); 4] {
    let (w, h) = (t.image_size.x, t.image_size.y);
    [
        (pos2(0.0, 0.0), pos2(0.0, 0.0)),
        (pos2(w, 0.0), pos2(1.0, 0.0)),
        (pos2(w, h), pos2(1.0, 1.0)),
        (pos2(0.0, h), pos2(0.0, 1.0)),
    ]
    .map(|(p, uv)| (t.screen_from_image(p), uv))
}

/// The pixel pipeline's display output as an egui image; `invert` is the user's toggle.
pub fn color_image(
    frame: &dicom::Frame,
    window: Option<(Window, VoiFunction)>,
    invert: bool,
) -> egui::ColorImage {
    let size = [frame.cols as usize, frame.rows as usize];
    match dicom::render(frame, window) {
        dicom::Rendered::Grey { mut data, .. } => {
            if invert {
                data.iter_mut().for_each(|p| *p = 255 - *p);
            }
            egui::ColorImage::from_gray(size, &data)
        }
        dicom::Rendered::Rgb { mut data, .. } => {
            if invert {
                data.iter_mut().for_each(|p| *p = 255 - *p);
            }
            egui::ColorImage::from_rgb(size, &data)
        }
    }
}

fn make_thumbnail(
    ctx: &egui::Context,
    loader: &Loader,
    series: &Series,
    index: usize,
) -> Option<TextureHandle> {
    let (inst, frame) = series.instance_of(series.frames.len() / 2)?;
    let f = loader.cache().get(&FrameKey {
        path: inst.path.clone(),
        frame,
    })?;
    let img = color_image(&f, None, false);
    let step = (img.size[0].max(img.size[1]) / 64).max(1);
    let (w, h) = (img.size[0] / step, img.size[1] / step);
    let pixels: Vec<Color32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            img.pixels
                .get(y * step * img.size[0] + x * step)
                .copied()
                .unwrap_or_default()
        })
        .collect();
    let small = egui::ColorImage::new([w.max(1), h.max(1)], pixels);
    Some(ctx.load_texture(format!("thumb-{index}"), small, TextureOptions::LINEAR))
}
