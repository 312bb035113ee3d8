//! The viewer application: wires the study engine's scanner and loader to viewports. Files are read and
//! decoded only on worker threads; this thread renders cached frames to textures and handles input.
//! Split by job: `workers` (scanning, decoding requests, dialogs), `panels` (menu, browser, status
//! bar), `viewport` (drawing an image with its overlays), `input` (keys, mouse, commands) and
//! `textures` (what reaches the GPU). App-wide actions and their keys are in `crate::actions`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use egui::{Color32, TextureHandle};
use radclip_dicom::seg::Segmentation;
use radclip_dicom::{self as dicom, FrameKey, LoadEvent, Loader, Series, StudyTree};

use crate::ai::AiFrame;
use crate::ai_panel::AiPanel;
use crate::state::{Layout, MouseBindings, Tool, Viewport};
use crate::tags::TagBrowser;
use crate::transform::ViewTransform;

mod input;
mod mpr_view;
mod panels;
mod textures;
mod viewport;
mod workers;

use input::Drag;
pub use mpr_view::MprSession;
pub use textures::color_image;
use textures::{Picture, ShownTexture};

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
    /// A report archive or index chosen in the File menu, for the AI panel's library.
    archive_rx: Option<Receiver<Option<PathBuf>>>,
    /// A folder of cases chosen for "Similar cases", and a case being read to show beside the image.
    cases_rx: Option<Receiver<Option<PathBuf>>>,
    /// A second model's folder, for maps side by side from two models.
    second_rx: Option<Receiver<Option<PathBuf>>>,
    beside_rx: Option<Receiver<Result<StudyTree, String>>>,
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
    /// The MPR layout (M), in place of the viewports while open.
    pub mpr: Option<MprSession>,
    /// The MPR views the AI map was drawn on in the last frame (for tests).
    pub mpr_ai_views: Vec<usize>,
    /// Set with the GPU path: the most voxels the GPU reslicer takes along an axis.
    gpu_3d_side: Option<u32>,
    /// The context the viewer draws in, for workers started by key or menu.
    ctx: egui::Context,
}

impl ViewerApp {
    /// Moves the VOI stage of monochrome images to the GPU of `render_state` (eframe's or a test
    /// renderer's): a W/L change then uploads a ≤ 64 KB table instead of the whole image.
    pub fn enable_gpu_voi(&mut self, render_state: &eframe::egui_wgpu::RenderState) {
        self.gpu_side = Some(crate::gpu::install(render_state));
        self.gpu_3d_side = Some(crate::gpu_mpr::install(render_state));
        self.shown.clear();
    }

    /// Starts the AI panel: its worker loads the model (and embeds the report library) in the background.
    pub fn enable_ai(&mut self, ctx: &egui::Context, setup: crate::ai::AiSetup) {
        match AiPanel::start(setup, ctx) {
            Ok(p) => self.ai = Some(p),
            Err(e) => self.status = format!("Could not start the AI worker: {e}"),
        }
    }

    /// "Find in series": a search asked for in the panel runs on the active viewport's series; a match
    /// clicked there is shown.
    fn find_requests(&mut self, ctx: &egui::Context) {
        let Some(ai) = &mut self.ai else {
            return;
        };
        let (search, jump) = (
            std::mem::take(&mut ai.find.wants_search),
            ai.find.jump.take(),
        );
        if let Some(v) = self.viewports.get(self.active)
            && let Some(e) = v.series.and_then(|s| self.series.get(s))
        {
            let (series, slice) = (e.series.clone(), v.slice);
            if search {
                ai.find_in_series(series, slice, ctx);
            } else {
                // A stack the model reads is read in the background as soon as it is on screen, so
                // its findings and any search are ready sooner.
                ai.read_series_once(series, slice, ctx);
            }
        }
        if let Some(j) = jump {
            self.command(self.active, crate::state::Command::GoTo(j));
        }
    }

    /// The active viewport's frame, as the AI panel needs it.
    pub(super) fn ai_current(&self) -> Option<AiFrame> {
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
            archive_rx: None,
            cases_rx: None,
            second_rx: None,
            beside_rx: None,
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
            mpr: None,
            mpr_ai_views: Vec::new(),
            gpu_3d_side: None,
            ctx: ctx.clone(),
        };
        if let Some(p) = path {
            app.open(ctx, p);
        }
        Ok(app)
    }

    /// True once scanning is over and every viewport's current frame is decoded (or failed).
    pub fn is_settled(&self) -> bool {
        self.scan_rx.is_none()
            && self.seg_rx.is_none()
            && self.mpr.as_ref().is_none_or(MprSession::is_settled)
            && self.beside_rx.is_none()
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

    pub(super) fn frame_key(&self, v: &Viewport) -> Option<FrameKey> {
        let s = &self.series.get(v.series?)?.series;
        let (inst, frame) = s.instance_of(v.slice)?;
        Some(FrameKey {
            path: inst.path.clone(),
            frame,
        })
    }

    /// Draws the whole UI; also the entry point for GUI tests.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_workers(&ctx);
        self.poll_mpr(&ctx);
        if self.ai.is_some() {
            let current = self.ai_current();
            let on_screen = self.viewports.get(self.active).and_then(|v| {
                let e = self.series.get(v.series?)?;
                Some((e.series.uid.clone(), v.slice, e.series.frames.len()))
            });
            if let Some(ai) = &mut self.ai {
                ai.poll(&ctx);
                ai.sync(current);
                ai.on_screen = on_screen;
            }
            self.find_requests(&ctx);
        }
        let (wants_folder, open_case, wants_model) = match &mut self.ai {
            Some(ai) => (
                std::mem::take(&mut ai.cases.wants_folder),
                ai.cases.open_request.take(),
                std::mem::take(&mut ai.wants_second_model),
            ),
            None => (false, None, false),
        };
        if wants_folder {
            self.pick_cases(&ctx);
        }
        if wants_model {
            self.pick_second_model(&ctx);
        }
        if let Some(p) = open_case {
            self.open_beside(&ctx, p);
        }
        self.handle_dropped_files(&ctx);
        self.handle_keys(&ctx);
        self.sync_compare();
        self.advance_cine(&ctx);

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
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
            .show(ui, |ui| {
                if self.mpr.is_some() {
                    self.mpr_ui(ui);
                } else {
                    self.viewports_ui(ui);
                }
            });
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
        if let Some(ai) = &mut self.ai
            && ai.attention.open
        {
            let mut open = true;
            egui::Window::new("Attention inspector")
                .open(&mut open)
                .default_size([420.0, 360.0])
                .show(&ctx, |ui| ai.attention.ui(ui));
            ai.attention.open = open;
        }
        if self.show_help {
            egui::Window::new("Keys and mouse")
                .open(&mut self.show_help)
                .show(&ctx, |ui| ui.label(crate::actions::help_text()));
        }
    }
}
