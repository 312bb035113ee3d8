//! The AI panel: the model's findings for the image on screen (probability with its spread across
//! paraphrases), a text-prompted heatmap drawn over the image, and the most similar reports of the
//! library. State and drawing only; the work is done by the worker in `ai.rs`.

use egui::{Color32, Sense, TextureHandle, TextureOptions, vec2};
use radclip_clip::heatmap::Method;
use radclip_clip::zeroshot::FindingScore;
use radclip_dicom::FrameKey;

use crate::ai::{AiEvent, AiFrame, AiSetup, AiWorker, MapStyle, SimilarReport};

#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    Loading,
    Ready {
        name: String,
        intended_use: String,
        modalities: Vec<String>,
        device: radclip_clip::device::RunsOn,
        device_note: Option<String>,
    },
    Failed(String),
}

/// "Pneumothorax (right), Cardiomegaly": each stated finding with the side the report names it on.
fn stated_with_sides(r: &SimilarReport, stated: &[String]) -> String {
    let sides = r.stated_sides.as_deref().unwrap_or_default();
    stated
        .iter()
        .enumerate()
        .map(|(i, name)| match sides.get(i).map(|s| s.name()) {
            Some(side) if !side.is_empty() => format!("{name} ({side})"),
            _ => name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A clause as a sentence's start ("no usable NVIDIA GPU…" → "No usable NVIDIA GPU…").
fn cap_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
pub enum LibraryStatus {
    None,
    Embedding,
    /// Reports in it, and whether they are listed one per set of stated findings.
    Ready(usize, bool),
    Failed(String),
}

/// What the worker said about one frame.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub scores: Option<Vec<FindingScore>>,
    pub ms: f64,
    pub similar: Option<Vec<SimilarReport>>,
    pub draft: Option<radclip_assist::draft::Draft>,
    pub not_applicable: Option<String>,
    pub error: Option<String>,
}

pub struct ShownOverlay {
    pub key: FrameKey,
    pub prompt: String,
    pub style: MapStyle,
    pub texture: TextureHandle,
    pub ms: f64,
}

pub struct AiPanel {
    worker: AiWorker,
    pub open: bool,
    pub status: ModelStatus,
    pub library: LibraryStatus,
    /// Per finding, its name and the prompt a click maps.
    findings: Vec<(String, String)>,
    /// The frame (and window) last sent for reading, and what came back for it.
    requested: Option<FrameKey>,
    pub analysis: Option<(FrameKey, Analysis)>,
    /// The prompt the user asked to map; kept while scrolling, so every frame gets its map.
    wanted: Option<(String, MapStyle)>,
    heat_requested: Option<(FrameKey, String, MapStyle)>,
    /// Maps side by side: the style of the map in the second viewport (same prompt), or `None`.
    pub compare: Option<MapStyle>,
    pub overlay_b: Option<ShownOverlay>,
    heat_requested_b: Option<(FrameKey, String, MapStyle)>,
    pub overlay: Option<ShownOverlay>,
    prompt: String,
    pub method: Method,
    /// Refine maps along the image's edges (PAMR).
    pub refine: bool,
    pub opacity: f32,
    pub show_heatmap: bool,
    /// Set once the user maps a prompt of their own (or clicks a finding): no more automatic maps.
    user_chose: bool,
    provenance: Option<Box<radclip_assist::ModelProvenance>>,
    finding_prompts: Vec<String>,
    /// The draft as the user edits it, for the frame it was made for.
    pub draft_text: Option<(FrameKey, String)>,
    /// The attention inspector's window.
    pub attention: crate::attention_panel::AttentionInspector,
    /// Similar cases from a folder the user indexes.
    pub cases: crate::cases_panel::SimilarCases,
    /// "Find in series".
    pub find: crate::find_panel::FindInSeries,
    /// The series on screen (its UID, the slice shown, its slice count), set by the app each frame.
    pub on_screen: Option<(String, usize, usize)>,
    /// The model and device, for the thread that indexes cases.
    model: String,
    device: String,
    /// Maps side by side from two models: the second model's own worker (no library), whose maps go
    /// beside the first's.
    pub second: Option<SecondModel>,
    /// Set by the "Other model…" button, taken by the app (a folder dialog).
    pub wants_second_model: bool,
}

/// A second model whose maps are shown beside the first's.
pub struct SecondModel {
    worker: AiWorker,
    pub path: std::path::PathBuf,
    pub status: ModelStatus,
    provenance: Option<Box<radclip_assist::ModelProvenance>>,
    requested: Option<FrameKey>,
    heat_requested: Option<(FrameKey, String, MapStyle)>,
}

impl AiPanel {
    pub fn start(setup: AiSetup, ctx: &egui::Context) -> std::io::Result<Self> {
        let waker = ctx.clone();
        let has_library = setup.library.is_some();
        let (model, device) = (setup.model.clone(), setup.device.clone());
        let worker = AiWorker::start(setup, move || waker.request_repaint())?;
        Ok(AiPanel {
            worker,
            open: true,
            status: ModelStatus::Loading,
            library: if has_library {
                LibraryStatus::Embedding
            } else {
                LibraryStatus::None
            },
            findings: Vec::new(),
            requested: None,
            analysis: None,
            wanted: None,
            heat_requested: None,
            compare: None,
            overlay_b: None,
            heat_requested_b: None,
            overlay: None,
            prompt: String::new(),
            // MaskCLIP localised best on the demo model's held-out phantoms (docs/benchmarks.md).
            method: Method::MaskClip,
            // Edge-refined maps overlapped the true masks better on the same phantoms, for every method.
            refine: true,
            opacity: 0.45,
            show_heatmap: true,
            user_chose: false,
            provenance: None,
            finding_prompts: Vec::new(),
            draft_text: None,
            attention: Default::default(),
            cases: Default::default(),
            find: Default::default(),
            on_screen: None,
            model,
            device,
            second: None,
            wants_second_model: false,
        })
    }

    /// Lays maps of the model at `path` beside this model's (same prompt and method), loading it on a
    /// worker of its own.
    pub fn set_second_model(&mut self, path: std::path::PathBuf, ctx: &egui::Context) {
        let waker = ctx.clone();
        let setup = AiSetup {
            model: path.display().to_string(),
            device: self.device.clone(),
            library: None,
        };
        match AiWorker::start(setup, move || waker.request_repaint()) {
            Ok(worker) => {
                self.second = Some(SecondModel {
                    worker,
                    path,
                    status: ModelStatus::Loading,
                    provenance: None,
                    requested: None,
                    heat_requested: None,
                });
                self.compare = Some(self.style());
                self.overlay_b = None;
                self.heat_requested_b = None;
            }
            Err(e) => {
                self.second = None;
                tracing::warn!("no second model: {e}");
            }
        }
    }

    /// Takes the second model's news: its status and its maps (shown beside the first's).
    fn poll_second(&mut self, ctx: &egui::Context) {
        let Some(second) = &mut self.second else {
            return;
        };
        for e in second.worker.poll() {
            match e {
                AiEvent::Ready {
                    provenance,
                    name,
                    intended_use,
                    modalities,
                    device,
                    device_note,
                    ..
                } => {
                    second.provenance = provenance;
                    second.status = ModelStatus::Ready {
                        name,
                        intended_use,
                        modalities,
                        device,
                        device_note,
                    };
                }
                AiEvent::LoadFailed(m) => second.status = ModelStatus::Failed(m),
                AiEvent::Heatmap {
                    key,
                    prompt,
                    style,
                    overlay,
                    ms,
                    ..
                } => place_overlay(
                    ctx,
                    &mut self.overlay_b,
                    "ai-heatmap-b",
                    ShownMap {
                        key,
                        prompt,
                        style,
                        ms,
                    },
                    &overlay,
                ),
                _ => {}
            }
        }
    }

    /// Indexes the images of `folder` as similar cases, in the background.
    pub fn index_cases(&mut self, folder: std::path::PathBuf, ctx: &egui::Context) {
        self.cases
            .index_folder(&self.model, &self.device, folder, ctx);
    }

    /// Scores the phrase box's text against `series` (the slice `first` on screen and its neighbours
    /// first) and maps it on the slice shown; with no phrase, reads the series for its findings.
    pub fn find_in_series(
        &mut self,
        series: std::sync::Arc<radclip_dicom::Series>,
        first: usize,
        ctx: &egui::Context,
    ) {
        let phrase = self.find.phrase.trim().to_string();
        self.find
            .search(&self.model, &self.device, series, first, ctx);
        if !phrase.is_empty() {
            self.map_prompt(&phrase);
        }
    }

    /// Reads `series` (every slice's embedding, then its findings) unless it was read already, once
    /// the model is in and when its card lists the series' modality; a single image is not read.
    pub fn read_series_once(
        &mut self,
        series: std::sync::Arc<radclip_dicom::Series>,
        first: usize,
        ctx: &egui::Context,
    ) {
        let reads = match &self.status {
            ModelStatus::Ready { modalities, .. } => {
                modalities.is_empty()
                    || modalities
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(series.modality.trim()))
            }
            _ => false,
        };
        if reads && series.frames.len() > 1 && self.find.read_uid.as_deref() != Some(&series.uid) {
            self.find.read_uid = Some(series.uid.clone());
            self.find
                .read(&self.model, &self.device, series, first, ctx);
        }
    }

    /// Takes the worker's results.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.find.poll();
        if let Some(index) = self.cases.poll() {
            self.worker.cases(index);
        }
        self.poll_second(ctx);
        for e in self.worker.poll() {
            match e {
                AiEvent::Ready {
                    provenance,
                    finding_prompts,
                    name,
                    intended_use,
                    modalities,
                    device,
                    device_note,
                    findings,
                } => {
                    self.attention.provenance = provenance.clone();
                    self.provenance = provenance;
                    self.finding_prompts = finding_prompts;
                    self.status = ModelStatus::Ready {
                        name,
                        intended_use,
                        modalities,
                        device,
                        device_note,
                    };
                    self.findings = findings;
                }
                AiEvent::LoadFailed(m) => self.status = ModelStatus::Failed(m),
                AiEvent::LibraryReady {
                    reports,
                    by_findings,
                } => self.library = LibraryStatus::Ready(reports, by_findings),
                AiEvent::LibraryFailed(m) => self.library = LibraryStatus::Failed(m),
                AiEvent::Findings { key, scores, ms } => {
                    // Until the user picks a prompt, each image's most probable finding is mapped when
                    // the model calls it present (none when it calls nothing present), so a heatmap is
                    // on screen at once.
                    if !self.user_chose {
                        let top = scores
                            .iter()
                            .max_by(|a, b| a.probability.total_cmp(&b.probability))
                            .filter(|s| s.probability >= 0.5)
                            .map(|s| s.name.clone());
                        self.wanted = top.map(|name| (self.prompt_of(&name), self.style()));
                        self.prompt = self
                            .wanted
                            .as_ref()
                            .map(|w| w.0.clone())
                            .unwrap_or_default();
                    }
                    let a = self.analysis_for(&key);
                    a.scores = Some(scores);
                    a.ms = ms;
                }
                AiEvent::Similar { key, reports } => {
                    self.analysis_for(&key).similar = Some(reports)
                }
                AiEvent::Attention {
                    key,
                    maps,
                    source_rect,
                } => self.attention.receive(ctx, key, maps, source_rect),
                AiEvent::Draft { key, draft } => {
                    // A new draft replaces what the user typed only for another image.
                    if self.draft_text.as_ref().is_none_or(|(k, _)| *k != key) {
                        self.draft_text = Some((key.clone(), draft.text()));
                    }
                    self.analysis_for(&key).draft = Some(draft);
                }
                AiEvent::CasesReady { images } => self.cases.ready(images),
                AiEvent::CasesFailed(m) => {
                    self.cases.status = crate::cases_panel::CasesStatus::Failed(m)
                }
                AiEvent::Cases { key, cases } => self.cases.receive(ctx, key, cases),
                AiEvent::NotApplicable { key, reason } => {
                    self.analysis_for(&key).not_applicable = Some(reason)
                }
                AiEvent::Failed { key, message } => self.analysis_for(&key).error = Some(message),
                AiEvent::Heatmap {
                    key,
                    prompt,
                    style,
                    slot,
                    overlay,
                    ms,
                } => {
                    let (shown, name) = if slot == 0 {
                        (&mut self.overlay, "ai-heatmap")
                    } else {
                        (&mut self.overlay_b, "ai-heatmap-b")
                    };
                    let map = ShownMap {
                        key,
                        prompt,
                        style,
                        ms,
                    };
                    place_overlay(ctx, shown, name, map, &overlay);
                }
            }
        }
    }

    fn analysis_for(&mut self, key: &FrameKey) -> &mut Analysis {
        if self.analysis.as_ref().is_some_and(|(k, _)| k != key) {
            self.analysis = None;
        }
        &mut self
            .analysis
            .get_or_insert_with(|| (key.clone(), Analysis::default()))
            .1
    }

    /// Sends the frame on screen for reading, and the wanted heatmap for it, unless already sent.
    pub fn sync(&mut self, current: Option<AiFrame>) {
        if !self.open || !matches!(self.status, ModelStatus::Ready { .. }) {
            return;
        }
        let Some(c) = current else {
            return;
        };
        let key = c.key.clone();
        if self.requested.as_ref() != Some(&key) {
            self.requested = Some(key.clone());
            self.worker.analyze(c.clone());
        }
        if let Some((prompt, style)) = &self.wanted {
            let want = (key.clone(), prompt.clone(), *style);
            if self.heat_requested.as_ref() != Some(&want) {
                self.worker.heatmap(key.clone(), prompt.clone(), *style, 0);
                self.heat_requested = Some(want);
            }
            match (&mut self.second, self.compare) {
                (Some(second), Some(b)) if matches!(second.status, ModelStatus::Ready { .. }) => {
                    if second.requested.as_ref() != Some(&key) {
                        second.requested = Some(key.clone());
                        second.worker.analyze(c.clone());
                    }
                    let want = (key.clone(), prompt.clone(), b);
                    if second.heat_requested.as_ref() != Some(&want) {
                        second.worker.heatmap(key.clone(), prompt.clone(), b, 0);
                        second.heat_requested = Some(want);
                    }
                }
                (None, Some(b)) => {
                    let want = (key.clone(), prompt.clone(), b);
                    if self.heat_requested_b.as_ref() != Some(&want) {
                        self.worker.heatmap(key.clone(), prompt.clone(), b, 1);
                        self.heat_requested_b = Some(want);
                    }
                }
                _ => {}
            }
        }
        // The inspector's maps once the worker has read the frame (it keeps its attention).
        let read = self
            .analysis
            .as_ref()
            .is_some_and(|(k, a)| *k == key && a.scores.is_some());
        if let Some((k, query)) = self.attention.wanted(Some(&key), read) {
            self.worker.attention(k, query);
        }
    }

    /// The map the controls ask for.
    fn style(&self) -> MapStyle {
        MapStyle {
            method: self.method,
            refine: self.refine,
        }
    }

    /// The prompt a click on finding `name` maps.
    fn prompt_of(&self, name: &str) -> String {
        self.findings
            .iter()
            .find(|(n, _)| n == name)
            .map_or(name.to_string(), |(_, p)| p.clone())
    }

    /// Makes the archive or index at `path` the similar-reports library (read and embedded on the
    /// worker); what the panel listed from the old one goes.
    pub fn set_library(&mut self, path: std::path::PathBuf) {
        self.worker.library(crate::ai::LibrarySource::Path(path));
        self.library = LibraryStatus::Embedding;
        if let Some((_, a)) = &mut self.analysis {
            a.similar = None;
            a.draft = None;
        }
        self.draft_text = None;
    }

    /// Asks for the map of `prompt` (on this and every later frame).
    pub fn map_prompt(&mut self, prompt: &str) {
        let p = prompt.trim();
        self.user_chose = true;
        if !p.is_empty() {
            self.prompt = p.to_string();
            self.wanted = Some((p.to_string(), self.style()));
            self.show_heatmap = true;
        }
    }

    /// The map beside the first when maps are compared side by side, for frame `key`, with its opacity.
    pub fn overlay_b_for(&self, key: &FrameKey) -> Option<(&TextureHandle, f32)> {
        let o = self.overlay_b.as_ref()?;
        let wanted = self.wanted.as_ref().is_some_and(|(p, _)| *p == o.prompt)
            && self.compare == Some(o.style);
        (self.show_heatmap && wanted && o.key == *key).then_some((&o.texture, self.opacity))
    }

    /// The label of each side's map when compared: method and model.
    pub fn compare_labels(&self) -> Option<[String; 2]> {
        let b = self.compare?;
        let name = |s: &ModelStatus| match s {
            ModelStatus::Ready { name, .. } => name.clone(),
            _ => String::new(),
        };
        let model = name(&self.status);
        let model_b = self
            .second
            .as_ref()
            .map_or(model.clone(), |s| name(&s.status));
        Some([
            format!("{} — {model}", self.style().name()),
            format!("{} — {model_b}", b.name()),
        ])
    }

    /// The overlay to draw on the frame `key`, with its opacity.
    pub fn overlay_for(&self, key: &FrameKey) -> Option<(&TextureHandle, f32)> {
        let o = self.overlay.as_ref()?;
        let wanted = self
            .wanted
            .as_ref()
            .is_some_and(|(p, m)| *p == o.prompt && *m == o.style);
        (self.show_heatmap && wanted && o.key == *key).then_some((&o.texture, self.opacity))
    }

    /// The findings shown for `key`, best first.
    pub fn findings_for(&self, key: &FrameKey) -> Option<Vec<FindingScore>> {
        let (k, a) = self.analysis.as_ref()?;
        let mut s = a.scores.clone()?;
        (k == key).then(|| {
            s.sort_by(|a, b| b.probability.total_cmp(&a.probability));
            s
        })
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, current: Option<&FrameKey>) {
        // Not shrunk to the contents: the panel keeps its width whichever result arrives first.
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| self.contents(ui, current));
    }

    /// The provenance of what the panel shows for `current` (findings, the heatmap over it, similar
    /// reports), as pretty JSON; `None` before the model is ready or when nothing is shown.
    pub fn provenance_text(&self, current: Option<&FrameKey>) -> Option<String> {
        use radclip_assist::Provenance;
        let model = self.provenance.as_ref()?;
        let current = current?;
        let mut out = serde_json::Map::new();
        if let Some((k, a)) = &self.analysis
            && k == current
        {
            if a.scores.is_some() {
                let p = Provenance::new(model, "zero-shot", self.finding_prompts.clone(), a.ms);
                out.insert("findings".into(), serde_json::to_value(p).ok()?);
            }
            if let Some(similar) = &a.similar {
                let method = match &self.library {
                    LibraryStatus::Ready(_, true) => {
                        "similar reports: the nearest of each set of stated findings"
                    }
                    _ => "similar reports: maximal marginal relevance",
                };
                let mut v =
                    serde_json::to_value(Provenance::new(model, method, Vec::new(), 0.0)).ok()?;
                v["listed"] = similar.iter().map(|r| r.report.title.clone()).collect();
                out.insert("similar_reports".into(), v);
            }
        }
        if let Some(o) = self.overlay.as_ref().filter(|o| &o.key == current) {
            let p = Provenance::new(model, &o.style.name(), vec![o.prompt.clone()], o.ms);
            out.insert("heatmap".into(), serde_json::to_value(p).ok()?);
        }
        // The map beside it, by this model or by the second one.
        if let Some(o) = self.overlay_b_for(current).and(self.overlay_b.as_ref()) {
            let by = self
                .second
                .as_ref()
                .map_or(Some(model), |s| s.provenance.as_ref())?;
            let p = Provenance::new(by, &o.style.name(), vec![o.prompt.clone()], o.ms);
            out.insert("heatmap_beside".into(), serde_json::to_value(p).ok()?);
        }
        if out.is_empty() {
            return None;
        }
        serde_json::to_string_pretty(&out).ok()
    }

    fn contents(&mut self, ui: &mut egui::Ui, current: Option<&FrameKey>) {
        let warn = Color32::from_rgb(230, 180, 60);
        match &self.status {
            ModelStatus::Loading => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading the AI model…");
                });
                return;
            }
            ModelStatus::Failed(m) => {
                ui.colored_label(Color32::LIGHT_RED, m);
                return;
            }
            ModelStatus::Ready {
                name,
                intended_use,
                modalities,
                device,
                device_note,
            } => {
                ui.heading(format!("AI: {name}"));
                ui.label(egui::RichText::new(intended_use).color(warn));
                if !modalities.is_empty() {
                    ui.small(format!("Reads {} images.", modalities.join("/")));
                }
                // The library detail differs between machines, so it is on hover, not in snapshots.
                ui.small(format!("Runs on {}.", device.place))
                    .on_hover_text(&device.kernels);
                if let Some(note) = device_note {
                    ui.colored_label(warn, format!("{}.", cap_first(note)));
                }
            }
        }
        // Always there (greyed while nothing is shown), so the sections below keep their place while a
        // slice is read.
        let text = self.provenance_text(current);
        let copy = ui
            .add_enabled(text.is_some(), egui::Button::new("Copy provenance").small())
            .on_hover_text(
                "The model (each weights file's SHA-256), method, prompts, window, device and \
                 time of what is shown for this image, as JSON",
            );
        if copy.clicked()
            && let Some(text) = text
        {
            ui.ctx().copy_text(text);
        }
        ui.separator();
        // A series-level search, above the image's own results (which wait while a slice is read).
        // Searching a stack of slices; a single image has nothing to search.
        if let Some((uid, slice, count)) = self.on_screen.clone()
            && count > 1
        {
            self.find.ui(ui, Some((&uid, slice)));
            ui.separator();
        }
        let analysis = match (current, &self.analysis) {
            (Some(c), Some((k, a))) if k == c => Some(a.clone()),
            _ => None,
        };
        let Some(a) = analysis else {
            if current.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading this image…");
                });
            } else {
                ui.label("No image on screen.");
            }
            return;
        };
        if let Some(reason) = &a.not_applicable {
            ui.label(reason);
            return;
        }
        if let Some(e) = &a.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        if let Some(scores) = current.and_then(|c| self.findings_for(c)) {
            ui.strong("Findings")
                .on_hover_text(format!("read in {:.0} ms", a.ms));
            ui.small("probability (bar: ± spread over paraphrases); click one to map it");
            let mut clicked = None;
            for s in &scores {
                if finding_row(ui, s).clicked() {
                    clicked = Some(s.name.clone());
                }
            }
            if let Some(name) = clicked {
                let prompt = self.prompt_of(&name);
                self.map_prompt(&prompt);
            }
        }
        ui.separator();
        ui.strong("Heatmap");
        ui.horizontal(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.prompt)
                    .hint_text("where is the effusion?")
                    .desired_width(170.0),
            );
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Map").clicked() || enter {
                let p = self.prompt.clone();
                self.map_prompt(&p);
            }
        });
        ui.horizontal(|ui| {
            let before = self.style();
            egui::ComboBox::from_label("method")
                .selected_text(self.method.name())
                .show_ui(ui, |ui| {
                    for m in Method::ALL {
                        ui.selectable_value(&mut self.method, m, m.name());
                    }
                });
            ui.checkbox(&mut self.refine, "edges").on_hover_text(
                "Refine the patch map along the image's edges (PAMR): the map follows the \
                 finding's outline instead of the patch grid",
            );
            if self.style() != before
                && let Some((p, _)) = self.wanted.clone()
            {
                self.wanted = Some((p, self.style()));
            }
            ui.checkbox(&mut self.show_heatmap, "Show");
        });
        ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("opacity"));
        ui.horizontal(|ui| {
            let mut on = self.compare.is_some();
            if ui
                .checkbox(&mut on, "Side by side with")
                .on_hover_text(
                    "Two maps of the same prompt in a 1 × 2 layout, pan, zoom and slice linked",
                )
                .changed()
            {
                self.compare = on.then(|| MapStyle {
                    method: Method::ALL
                        .into_iter()
                        .find(|m| *m != self.method)
                        .unwrap_or(self.method),
                    refine: self.refine,
                });
            }
            if let Some(b) = &mut self.compare {
                egui::ComboBox::from_label("beside")
                    .selected_text(b.method.name())
                    .show_ui(ui, |ui| {
                        for m in Method::ALL {
                            ui.selectable_value(&mut b.method, m, m.name());
                        }
                    });
            }
            if !on {
                self.second = None;
            }
        });
        if self.compare.is_some() {
            ui.horizontal(|ui| {
                match &self.second {
                    None => {
                        ui.small("from this model");
                    }
                    Some(s) => {
                        match &s.status {
                            ModelStatus::Loading => {
                                ui.spinner();
                                ui.small("Loading the second model…");
                            }
                            ModelStatus::Failed(m) => {
                                ui.colored_label(Color32::LIGHT_RED, m);
                            }
                            ModelStatus::Ready { name, .. } => {
                                ui.small(format!("from {name}"))
                                    .on_hover_text(s.path.display().to_string());
                            }
                        }
                        if ui.small_button("This model").clicked() {
                            self.second = None;
                            self.overlay_b = None;
                            self.heat_requested_b = None;
                        }
                    }
                }
                if ui
                    .small_button("Other model…")
                    .on_hover_text("The same prompt and method mapped by a second model folder")
                    .clicked()
                {
                    self.wants_second_model = true;
                }
            });
        }
        match (&self.wanted, &self.overlay) {
            (Some((p, m)), Some(o))
                if o.prompt == *p && o.style == *m && Some(&o.key) == current =>
            {
                ui.small(format!("\"{p}\" by {}", m.name()))
                    .on_hover_text(format!("mapped in {:.0} ms", o.ms));
            }
            (Some((p, _)), _) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.small(format!("mapping \"{p}\"…"));
                });
            }
            (None, _) => {
                ui.small("Type a prompt or click a finding.");
            }
        }
        ui.separator();
        match &self.library {
            LibraryStatus::None => {}
            LibraryStatus::Embedding => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Embedding the report library…");
                });
            }
            LibraryStatus::Failed(m) => {
                ui.colored_label(Color32::LIGHT_RED, m);
            }
            LibraryStatus::Ready(n, by_findings) => {
                ui.strong("Similar reports");
                if *by_findings {
                    ui.small(format!(
                        "of {n} in the library: the nearest report of each set of findings"
                    ))
                    .on_hover_text(
                        "Cosine similarity to the image. In order of similarity, the first report of \
                         each set of findings its text states (read with the model's finding list), \
                         so five rewordings of one reading do not fill the list; of each set, the \
                         nearest report that names its findings on the sides the image shows them \
                         (where each present finding's MaskCLIP map peaks), and those first.",
                    );
                } else {
                    let d = radclip_index::Diversity::default();
                    ui.small(format!(
                        "of {n} in the library: the nearest, then the nearest unlike those above"
                    ))
                    .on_hover_text(format!(
                        "Cosine similarity to the image; after the first, maximal marginal relevance \
                         among the {} nearest (λ {}), so rewordings of one report do not fill the list.",
                        d.pool, d.lambda
                    ));
                }
                for (i, r) in a.similar.iter().flatten().enumerate() {
                    egui::CollapsingHeader::new(format!("{:.2}  {}", r.score, r.report.summary))
                        .id_salt(("similar", i))
                        .show(ui, |ui| {
                            ui.small(&r.report.title);
                            if let Some(stated) = &r.stated {
                                ui.small(if stated.is_empty() {
                                    "States none of the listed findings.".to_string()
                                } else {
                                    format!("States: {}.", stated_with_sides(r, stated))
                                });
                            }
                            ui.label(&r.report.text);
                        });
                }
            }
        }
        if let (Some(draft), Some(c)) = (&a.draft, current) {
            self.draft_ui(ui, draft, c);
        }
        self.cases.ui(ui, current);
    }

    /// The drafted report: editable and copyable; each source sentence listed with its report and
    /// score, a click mapping it as a heatmap.
    fn draft_ui(
        &mut self,
        ui: &mut egui::Ui,
        draft: &radclip_assist::draft::Draft,
        current: &FrameKey,
    ) {
        ui.separator();
        let header = ui.strong("Draft report").on_hover_text(
            "Assembled from the library's sentences most similar to the image: findings judged present, \
             on the sides the image shows them, and pertinent negatives for findings judged absent. \
             A draft to check and edit, not a report.",
        );
        let mut clicked = None;
        if let Some((k, text)) = &mut self.draft_text
            && k == current
        {
            ui.add(
                egui::TextEdit::multiline(text)
                    .desired_rows(4)
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(header.id);
            if ui.small_button("Copy draft").clicked() {
                ui.ctx().copy_text(text.clone());
            }
        }
        egui::CollapsingHeader::new("Sources")
            .id_salt("draft-sources")
            .show(ui, |ui| {
                for s in draft.findings.iter().chain(&draft.impression) {
                    let line = ui
                        .add(
                            egui::Label::new(format!("{:.2}  {}", s.score, s.text))
                                .sense(Sense::click()),
                        )
                        .on_hover_text(format!("From {}. Click to map it.", s.source));
                    if line.clicked() {
                        clicked = Some(s.text.clone());
                    }
                }
            });
        if let Some(text) = clicked {
            self.map_prompt(&text);
        }
    }
}

/// What a map shown over an image is of.
struct ShownMap {
    key: FrameKey,
    prompt: String,
    style: MapStyle,
    ms: f64,
}

/// Puts a worker's map in `shown`, reusing its texture when there is one.
fn place_overlay(
    ctx: &egui::Context,
    shown: &mut Option<ShownOverlay>,
    name: &str,
    map: ShownMap,
    overlay: &crate::ai::Overlay,
) {
    let img =
        egui::ColorImage::from_rgba_unmultiplied([overlay.width, overlay.height], &overlay.rgba);
    let texture = match shown.take() {
        Some(mut o) => {
            o.texture.set(img, TextureOptions::LINEAR);
            o.texture
        }
        None => ctx.load_texture(name, img, TextureOptions::LINEAR),
    };
    *shown = Some(ShownOverlay {
        key: map.key,
        prompt: map.prompt,
        style: map.style,
        texture,
        ms: map.ms,
    });
}

/// One finding: name, a bar for the probability with a whisker for its spread, the percentage.
fn finding_row(ui: &mut egui::Ui, s: &FindingScore) -> egui::Response {
    let (rect, resp) = ui.allocate_exact_size(vec2(ui.available_width(), 20.0), Sense::click());
    let painter = ui.painter_at(rect);
    let name_w = 120.0;
    let pct_w = 44.0;
    let bar = egui::Rect::from_min_max(rect.min + vec2(name_w, 4.0), rect.max - vec2(pct_w, 4.0));
    let text = ui.visuals().text_color();
    if resp.hovered() {
        painter.rect_filled(rect, 2.0, ui.visuals().widgets.hovered.weak_bg_fill);
    }
    painter.text(
        rect.left_center() + vec2(2.0, 0.0),
        egui::Align2::LEFT_CENTER,
        &s.name,
        egui::FontId::proportional(13.0),
        text,
    );
    painter.rect_filled(bar, 2.0, Color32::from_gray(50));
    let p = s.probability.clamp(0.0, 1.0) as f32;
    let fill = egui::Rect::from_min_size(bar.min, vec2(bar.width() * p, bar.height()));
    let colour = if p >= 0.5 {
        Color32::from_rgb(220, 110, 60)
    } else {
        Color32::from_rgb(80, 140, 200)
    };
    painter.rect_filled(fill, 2.0, colour);
    let (lo, hi) = (
        (s.probability - s.spread).clamp(0.0, 1.0) as f32,
        (s.probability + s.spread).clamp(0.0, 1.0) as f32,
    );
    let y = bar.center().y;
    let x = |v: f32| bar.left() + bar.width() * v;
    painter.line_segment(
        [egui::pos2(x(lo), y), egui::pos2(x(hi), y)],
        (1.5, Color32::WHITE),
    );
    for v in [lo, hi] {
        painter.line_segment(
            [egui::pos2(x(v), y - 3.0), egui::pos2(x(v), y + 3.0)],
            (1.5, Color32::WHITE),
        );
    }
    painter.text(
        rect.right_center() - vec2(2.0, 0.0),
        egui::Align2::RIGHT_CENTER,
        format!("{:.0} %", s.probability * 100.0),
        egui::FontId::proportional(13.0),
        text,
    );
    // A button to assistive technology (and to the GUI tests), named by its finding.
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &s.name));
    resp.on_hover_text(format!(
        "{}: {:.1} % (spread ± {:.1} over {} paraphrase pairs)",
        s.name,
        s.probability * 100.0,
        s.spread * 100.0,
        s.pair_probabilities.len()
    ))
}
