//! The AI panel's worker: loads the CLIP model on its own thread, then reads the frame on screen
//! (zero-shot findings, most similar reports) and draws heatmaps for prompts. The report library is
//! embedded a batch at a time while no request waits, so the first findings do not wait for it; the
//! frame on screen gets its similar reports when the library is complete. The GUI thread only sends
//! requests and shows what comes back; a newer request replaces the ones not yet started, so
//! scrolling through a series never queues stale work.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use radclip_assist::ReportLibrary;
pub use radclip_assist::{LibraryReport, SimilarReport};
use radclip_clip::engine::Engine;
use radclip_clip::heatmap::{EncodedImage, Method};
use radclip_clip::zeroshot::{FindingList, FindingScore, PromptSet};
use radclip_dicom::{self as dicom, FrameKey, VoiFunction, Window};

/// What the binary configures: the model and, optionally, a report library to search.
pub struct AiSetup {
    /// A model folder or Hugging Face cache entry (as `--model` takes it).
    pub model: String,
    /// "cpu", "cuda" or "auto".
    pub device: String,
    /// The similar-reports library, read on the worker thread (it may generate or read many reports).
    pub library: Option<LibrarySource>,
}

/// Where the similar-reports library comes from.
pub enum LibrarySource {
    /// Reports made on the worker, embedded as they are (the demo's synthetic archive).
    Reports(Box<dyn FnOnce() -> Vec<LibraryReport> + Send>),
    /// A user's archive (a folder of .txt, .xml or .csv reports, or such a file), indexed by what each
    /// report asserts as `radclip index` does; or an index file made by `radclip index` with this
    /// model's weights.
    Path(std::path::PathBuf),
}

/// Whether `p` names an index file rather than an archive (a .txt, .xml, .csv or DICOM SR file).
fn is_index_file(p: &std::path::Path) -> bool {
    p.is_file() && !radclip_assist::archive::is_archive_file(p)
}

/// A frame to read, with what the model card may need from the viewer.
#[derive(Clone)]
pub struct AiFrame {
    pub key: FrameKey,
    pub frame: Arc<dicom::Frame>,
    /// The window on screen (`None`: the file's), for cards that take the viewer's.
    pub window: Option<(Window, VoiFunction)>,
    pub modality: String,
}

/// Which map to draw: the method, and whether it is refined along the image's edges (PAMR,
/// `radclip_clip::refine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapStyle {
    pub method: Method,
    pub refine: bool,
}

impl MapStyle {
    pub fn name(&self) -> String {
        if self.refine {
            format!("{} + edges", self.method.name())
        } else {
            self.method.name().to_string()
        }
    }
}

/// A heatmap resampled onto the whole frame, colour-mapped, ready for a texture: RGBA, transparent
/// outside the region the model saw.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum AiEvent {
    /// The model is loaded.
    Ready {
        name: String,
        intended_use: String,
        modalities: Vec<String>,
        /// Where it runs ("the CPU"), and the detail shown on hover (its matrix-product library).
        device: radclip_clip::device::RunsOn,
        /// Why the device asked for is not the one used, if it is not.
        device_note: Option<String>,
        /// Per finding, the prompt a click on it maps.
        findings: Vec<(String, String)>,
        /// The model's provenance (weights hashed); `None` if a weights file could not be read again.
        provenance: Option<Box<radclip_assist::ModelProvenance>>,
        /// Every prompt the findings are scored with.
        finding_prompts: Vec<String>,
    },
    /// The model could not be loaded; one sentence.
    LoadFailed(String),
    /// The report library is embedded.
    LibraryReady {
        reports: usize,
        /// Listed one per set of stated findings (else by maximal marginal relevance).
        by_findings: bool,
    },
    LibraryFailed(String),
    Findings {
        key: FrameKey,
        scores: Vec<FindingScore>,
        ms: f64,
    },
    Similar {
        key: FrameKey,
        reports: Vec<SimilarReport>,
    },
    /// The attention inspector's maps of a frame, and the source-image rectangle (x0, y0, x1, y1) the
    /// patch grid covers.
    Attention {
        key: FrameKey,
        maps: radclip_assist::attention::AttentionMaps,
        source_rect: (f64, f64, f64, f64),
    },
    /// A findings + impression draft from the library's sentences (`radclip_assist::draft`).
    Draft {
        key: FrameKey,
        draft: radclip_assist::draft::Draft,
    },
    Heatmap {
        key: FrameKey,
        prompt: String,
        style: MapStyle,
        /// 0: the map shown; 1: the one beside it (maps side by side).
        slot: usize,
        overlay: Overlay,
        ms: f64,
    },
    /// The similar-cases index is loaded: how many images it holds.
    CasesReady {
        images: usize,
    },
    CasesFailed(String),
    /// The indexed images nearest to a frame, best first (the frame's own file left out).
    Cases {
        key: FrameKey,
        cases: Vec<CaseHit>,
    },
    /// The model does not read this frame (e.g. another modality); why, in a sentence.
    NotApplicable {
        key: FrameKey,
        reason: String,
    },
    Failed {
        key: FrameKey,
        message: String,
    },
}

/// One similar case: the indexed file, its cosine to the frame, and a small picture of it.
#[derive(Debug, Clone)]
pub struct CaseHit {
    pub source: std::path::PathBuf,
    pub score: f32,
    /// RGBA, `THUMB_SIDE` on its longer side; `None` if the file could not be read again.
    pub thumb: Option<Overlay>,
}

/// The most similar cases shown, and the longer side of their pictures.
pub const CASES: usize = 4;
const THUMB_SIDE: usize = 96;

enum Request {
    Analyze(AiFrame),
    /// An index of images (made by [`radclip_assist::store::build`]) to list similar cases from.
    Cases(std::path::PathBuf),
    /// Another similar-reports library in place of the one there is.
    Library(LibrarySource),
    Attention(FrameKey, radclip_assist::attention::Query),
    Heatmap {
        key: FrameKey,
        prompt: String,
        style: MapStyle,
        slot: usize,
    },
}

/// The handle the GUI keeps.
pub struct AiWorker {
    tx: Sender<Request>,
    rx: Receiver<AiEvent>,
}

/// The most reports shown as similar.
pub const SIMILAR: usize = 5;
/// Longest side of a heatmap overlay texture (the map itself is a patch grid, or the model's input
/// pixels when refined: more adds nothing).
const OVERLAY_SIDE: usize = 512;

impl AiWorker {
    pub fn start(setup: AiSetup, wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (tx, requests) = crossbeam_channel::unbounded();
        let (events, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("radclip-ai".into())
            .spawn(move || run(setup, requests, events, wake))?;
        Ok(AiWorker { tx, rx })
    }

    pub fn analyze(&self, frame: AiFrame) {
        let _ = self.tx.send(Request::Analyze(frame));
    }

    /// Replaces the similar-reports library (the user chose an archive); the frame read last gets
    /// its similar reports and draft again once it is complete.
    pub fn library(&self, source: LibrarySource) {
        let _ = self.tx.send(Request::Library(source));
    }

    /// Lists similar cases from the index at `path` (made with this model), for this and later frames.
    pub fn cases(&self, path: std::path::PathBuf) {
        let _ = self.tx.send(Request::Cases(path));
    }

    /// Every layer's and head's attention from `query` (the class token or a patch), for the frame
    /// read last.
    pub fn attention(&self, key: FrameKey, query: radclip_assist::attention::Query) {
        let _ = self.tx.send(Request::Attention(key, query));
    }

    /// The map of `prompt` by `style` for frame `key`, for display slot `slot` (0: the map shown;
    /// 1: the one beside it when maps are compared side by side).
    pub fn heatmap(&self, key: FrameKey, prompt: String, style: MapStyle, slot: usize) {
        let _ = self.tx.send(Request::Heatmap {
            key,
            prompt,
            style,
            slot,
        });
    }

    pub fn poll(&self) -> Vec<AiEvent> {
        self.rx.try_iter().collect()
    }
}

/// Reports still to embed, in order, and the library they go into.
type PendingLibrary = (std::vec::IntoIter<LibraryReport>, ReportLibrary);

struct State {
    engine: Engine,
    list: FindingList,
    prompts: PromptSet,
    /// Complete libraries only: a partial one would give other reports than the finished one.
    library: Option<ReportLibrary>,
    pending: Option<PendingLibrary>,
    /// The frame read last, kept so that a new prompt on it is cheap.
    current: Option<(FrameKey, EncodedImage)>,
    /// The sides the frame read last shows its present findings on, for its similar reports.
    current_sides: Vec<radclip_assist::Sides>,
    /// The frame read last's findings, for its draft.
    current_scores: Vec<radclip_clip::zeroshot::FindingScore>,
    /// The library's sentences, for drafts (made once the library is complete).
    bank: Option<radclip_assist::draft::SentenceBank>,
    /// The model's provenance, to check that an index was made with its weights.
    provenance: Option<Box<radclip_assist::ModelProvenance>>,
    /// The similar-cases index, and the pictures of cases already shown (by file).
    cases: Option<radclip_assist::store::Store>,
    thumbs: std::collections::HashMap<std::path::PathBuf, Option<Overlay>>,
}

fn run(setup: AiSetup, requests: Receiver<Request>, events: Sender<AiEvent>, wake: impl Fn()) {
    let send = |e: AiEvent| {
        let _ = events.send(e);
        wake();
    };
    let (device, device_note) = radclip_clip::device::select(&setup.device);
    let loaded = Engine::load(&setup.model, &device).and_then(|engine| {
        let list = FindingList::for_engine(&engine)?;
        let prompts = PromptSet::new(&engine, &list)?;
        Ok((engine, list, prompts))
    });
    let (engine, list, prompts) = match loaded {
        Ok(v) => v,
        Err(e) => {
            send(AiEvent::LoadFailed(format!(
                "The AI model could not be loaded: {e}"
            )));
            return;
        }
    };
    let provenance = radclip_assist::provenance::model_provenance(&engine)
        .inspect_err(|e| tracing::warn!("no provenance: {e}"))
        .ok()
        .map(Box::new);
    let provenance_for_index = provenance.clone();
    send(AiEvent::Ready {
        provenance,
        finding_prompts: radclip_assist::provenance::prompts_of(&list),
        name: engine.card.name.clone().unwrap_or_else(|| "model".into()),
        intended_use: engine.card.intended_use.clone(),
        modalities: engine.card.modalities.clone(),
        device: radclip_clip::device::describe(&device),
        device_note,
        findings: list
            .finding
            .iter()
            .map(|f| {
                let prompt = f
                    .positive
                    .first()
                    .cloned()
                    .unwrap_or_else(|| f.name.clone());
                (f.name.clone(), prompt)
            })
            .collect(),
    });
    let mut state = State {
        engine,
        list,
        prompts,
        library: None,
        pending: None,
        current: None,
        current_sides: Vec::new(),
        current_scores: Vec::new(),
        bank: None,
        provenance: provenance_for_index,
        cases: None,
        thumbs: Default::default(),
    };
    if let Some(source) = setup.library {
        state.set_library(source, &send);
    }
    loop {
        // While the library is being embedded, a request waits at most one batch.
        let first = if state.pending.is_some() {
            match requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => {
                    state.embed_batch(&send);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match requests.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        // Only the newest frame and the newest heatmap matter: the user has moved on from the rest.
        let (mut analyze, mut heat, mut attention) = (None, [None, None], None);
        for r in std::iter::once(first).chain(requests.try_iter()) {
            match r {
                Request::Analyze(f) => {
                    analyze = Some(f);
                    heat = [None, None];
                }
                Request::Attention(key, query) => attention = Some((key, query)),
                Request::Library(source) => state.set_library(source, &send),
                Request::Cases(path) => state.set_cases(&path, &send),
                Request::Heatmap {
                    key,
                    prompt,
                    style,
                    slot,
                } => {
                    if let Some(h) = heat.get_mut(slot) {
                        *h = Some((key, prompt, style));
                    }
                }
            }
        }
        if let Some(f) = analyze {
            let key = f.key.clone();
            if let Err(e) = state.analyze(f, &send) {
                send(AiEvent::Failed { key, message: e });
            }
        }
        for (slot, h) in heat.into_iter().enumerate() {
            if let Some((key, prompt, style)) = h
                && let Err(e) = state.heatmap(&key, &prompt, style, slot, &send)
            {
                send(AiEvent::Failed { key, message: e });
            }
        }
        if let Some((key, query)) = attention
            && let Err(e) = state.attention(&key, query, &send)
        {
            send(AiEvent::Failed { key, message: e });
        }
    }
}

/// A user's library at `path`: an index made with this model's weights is loaded whole (`Ok(None)`:
/// nothing left to embed); an archive's reports are returned to embed, each indexed by what it asserts.
fn read_library(
    path: &std::path::Path,
    library: &mut ReportLibrary,
    model: Option<&radclip_assist::ModelProvenance>,
) -> Result<Option<Vec<LibraryReport>>, String> {
    if is_index_file(path) {
        if !model.is_some_and(|m| radclip_assist::store::made_by(path, m)) {
            return Err("it was not indexed with this model's weights".into());
        }
        let store = radclip_assist::store::Store::load(path).map_err(|e| e.to_string())?;
        let reports = store
            .items()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((e.report.clone()?, store.row(i)?.to_vec())))
            .collect();
        library.add_embedded(reports).map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let mut reports: Vec<LibraryReport> = radclip_assist::archive::read_reports(path)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| r.report)
        .collect();
    if let Some(l) = library.labeler() {
        reports
            .iter_mut()
            .for_each(|r| radclip_assist::archive::assert_only(r, l));
    }
    Ok(Some(reports))
}

/// A small RGBA picture of an indexed image, rendered as the model reads it.
fn thumbnail(path: &std::path::Path, window: &radclip_clip::card::WindowSpec) -> Option<Overlay> {
    let rgb = radclip_assist::frame::load_image(path, 0, window)
        .inspect_err(|e| tracing::debug!("no picture of a case: {e}"))
        .ok()?;
    let scale = (THUMB_SIDE as f64 / rgb.width.max(rgb.height).max(1) as f64).min(1.0);
    let (w, h) = (
        ((rgb.width as f64 * scale).round() as usize).max(1),
        ((rgb.height as f64 * scale).round() as usize).max(1),
    );
    let mut rgba = vec![255u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let sx = (((x as f64 + 0.5) / scale) as usize).min(rgb.width.saturating_sub(1));
            let sy = (((y as f64 + 0.5) / scale) as usize).min(rgb.height.saturating_sub(1));
            let i = (sy * rgb.width + sx) * 3;
            let o = (y * w + x) * 4;
            if let (Some(src), Some(dst)) = (rgb.data.get(i..i + 3), rgba.get_mut(o..o + 3)) {
                dst.copy_from_slice(src);
            }
        }
    }
    Some(Overlay {
        width: w,
        height: h,
        rgba,
    })
}

/// Reports embedded per step (one padded batch of thousands would be mostly padding, and a request
/// waits for at most one step).
const LIBRARY_BATCH: usize = 64;

impl State {
    /// Embeds the next batch of the library; when it is the last, publishes the library and sends the
    /// frame on screen its similar reports.
    fn embed_batch(&mut self, send: &impl Fn(AiEvent)) {
        let Some((mut todo, mut library)) = self.pending.take() else {
            return;
        };
        let batch: Vec<LibraryReport> = todo.by_ref().take(LIBRARY_BATCH).collect();
        if !batch.is_empty() {
            if let Err(e) = library.add(&self.engine, batch) {
                send(AiEvent::LibraryFailed(format!(
                    "The report library could not be embedded: {e}"
                )));
                return;
            }
            self.pending = Some((todo, library));
            return;
        }
        send(AiEvent::LibraryReady {
            reports: library.len(),
            by_findings: library.by_findings(),
        });
        self.library = Some(library);
        self.make_bank();
        if let Some((key, encoded)) = self.current.take() {
            if let Err(e) = self.send_listings(&key, &encoded.features, send) {
                send(AiEvent::Failed {
                    key: key.clone(),
                    message: e,
                });
            }
            self.current = Some((key, encoded));
        }
    }

    /// Puts the library of `source` in place of the one there is: an index is loaded whole, reports are
    /// embedded a batch at a time between requests.
    fn set_library(&mut self, source: LibrarySource, send: &impl Fn(AiEvent)) {
        self.library = None;
        self.pending = None;
        self.bank = None;
        // A list's words that do not parse leave the similar list by maximal marginal relevance; the
        // finding list itself loaded, so the rest of the panel works.
        let labeler = radclip_assist::library::labeler(&self.list)
            .inspect_err(|e| tracing::warn!("report labeler off: {e}"))
            .ok()
            .flatten();
        let mut library = ReportLibrary::new(labeler);
        match source {
            LibrarySource::Reports(make) => self.pending = Some((make().into_iter(), library)),
            LibrarySource::Path(path) => {
                match read_library(&path, &mut library, self.provenance.as_deref()) {
                    Ok(Some(reports)) => self.pending = Some((reports.into_iter(), library)),
                    // Loaded whole: published as the last batch of an embedded one is.
                    Ok(None) => self.pending = Some((Vec::new().into_iter(), library)),
                    Err(e) => send(AiEvent::LibraryFailed(format!(
                        "The report library {} could not be read: {e}",
                        path.display()
                    ))),
                }
            }
        }
    }

    /// Loads the similar-cases index at `path`; the frame read last gets its cases.
    fn set_cases(&mut self, path: &std::path::Path, send: &impl Fn(AiEvent)) {
        self.cases = None;
        if !self
            .provenance
            .as_deref()
            .is_some_and(|m| radclip_assist::store::made_by(path, m))
        {
            send(AiEvent::CasesFailed(
                "The cases were not indexed with this model's weights.".into(),
            ));
            return;
        }
        match radclip_assist::store::Store::load(path) {
            Ok(store) => {
                let images = store.items().iter().filter(|e| !e.is_report()).count();
                self.cases = Some(store);
                send(AiEvent::CasesReady { images });
                if let Some((key, encoded)) = self.current.take() {
                    let q = encoded
                        .features
                        .to_dtype(candle_core::DType::F32)
                        .and_then(|t| t.to_vec1::<f32>());
                    let sent = match q {
                        Ok(q) => self.send_cases(&key, &q, send),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(message) = sent {
                        send(AiEvent::Failed {
                            key: key.clone(),
                            message,
                        });
                    }
                    self.current = Some((key, encoded));
                }
            }
            Err(e) => send(AiEvent::CasesFailed(format!(
                "The cases index could not be read: {e}"
            ))),
        }
    }

    /// The indexed images nearest to features `q`, with their pictures, sent for `key`.
    fn send_cases(
        &mut self,
        key: &FrameKey,
        q: &[f32],
        send: &impl Fn(AiEvent),
    ) -> Result<(), String> {
        let Some(store) = &self.cases else {
            return Ok(());
        };
        // The frame's own file, when it is in the index, is not a similar case of itself.
        let own = std::path::Path::new(&*key.path);
        let hits = store
            .search_filtered(q, CASES + 1, |e| {
                !e.is_report() && std::path::Path::new(&e.source) != own
            })
            .map_err(|e| e.to_string())?;
        let window = self.engine.card.preprocess.window.clone();
        let cases = hits
            .into_iter()
            .take(CASES)
            .map(|h| {
                let source = std::path::PathBuf::from(&h.item.source);
                let thumb = self
                    .thumbs
                    .entry(source.clone())
                    .or_insert_with(|| thumbnail(&source, &window))
                    .clone();
                CaseHit {
                    source,
                    score: h.score,
                    thumb,
                }
            })
            .collect();
        send(AiEvent::Cases {
            key: key.clone(),
            cases,
        });
        Ok(())
    }

    /// The complete library's sentences, read and embedded for drafts (none without report words).
    fn make_bank(&mut self) {
        let (Some(lib), Some(words)) = (
            &self.library,
            self.library.as_ref().and_then(|l| l.labeler()),
        ) else {
            return;
        };
        let reports: Vec<LibraryReport> = lib.reports().into_iter().cloned().collect();
        match radclip_assist::draft::SentenceBank::build(&self.engine, &reports, words) {
            Ok(b) => self.bank = Some(b),
            Err(e) => tracing::warn!("no drafts: {e}"),
        }
    }

    /// The library's reports most similar to image features `features`, listed as
    /// [`radclip_assist::Listing::Shown`] says (and `radclip eval` measures), then the draft from its
    /// sentences, each sent for `key` when there is a library.
    fn send_listings(
        &mut self,
        key: &FrameKey,
        features: &candle_core::Tensor,
        send: &impl Fn(AiEvent),
    ) -> Result<(), String> {
        let q = features
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        self.send_cases(key, &q, send)?;
        let Some(lib) = &self.library else {
            return Ok(());
        };
        let reports = lib
            .similar(&q, &self.current_sides, SIMILAR)
            .map_err(|e| e.to_string())?;
        send(AiEvent::Similar {
            key: key.clone(),
            reports,
        });
        if let Some(bank) = &self.bank {
            let draft = bank
                .draft(&q, &self.current_scores, &self.current_sides)
                .map_err(|e| e.to_string())?;
            send(AiEvent::Draft {
                key: key.clone(),
                draft,
            });
        }
        Ok(())
    }

    fn analyze(&mut self, f: AiFrame, send: &impl Fn(AiEvent)) -> Result<(), String> {
        let card = &self.engine.card;
        if !card.reads_modality(&f.modality) {
            send(AiEvent::NotApplicable {
                key: f.key,
                reason: format!(
                    "This model reads {} images; this series is {}.",
                    card.modalities.join("/"),
                    if f.modality.is_empty() {
                        "of unknown modality"
                    } else {
                        f.modality.as_str()
                    }
                ),
            });
            return Ok(());
        }
        if f.frame.is_color() {
            send(AiEvent::NotApplicable {
                key: f.key,
                reason: "This model reads greyscale images.".into(),
            });
            return Ok(());
        }
        let t = Instant::now();
        let rgb = radclip_assist::frame::render(&f.frame, &card.preprocess.window, f.window);
        let prepared = self.engine.prepare(rgb).map_err(|e| e.to_string())?;
        let encoded = EncodedImage::new(&self.engine, &prepared).map_err(|e| e.to_string())?;
        let scores = self
            .prompts
            .score(&encoded.features)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .unwrap_or_default();
        send(AiEvent::Findings {
            key: f.key.clone(),
            scores: scores.clone(),
            ms: t.elapsed().as_secs_f64() * 1e3,
        });
        // Similar reports prefer the sides the image shows its findings on (a map per present finding).
        self.current_sides = if self.library.is_some() || self.pending.is_some() {
            radclip_assist::sides::image_sides(&self.engine, &encoded, &self.list, &scores)
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        self.current_scores = scores;
        self.send_listings(&f.key, &encoded.features, send)?;
        self.current = Some((f.key, encoded));
        Ok(())
    }

    /// The attention maps of the frame read last from `query`, if it is `key` (the image is already
    /// encoded, with every layer's attention probabilities).
    fn attention(
        &self,
        key: &FrameKey,
        query: radclip_assist::attention::Query,
        send: &impl Fn(AiEvent),
    ) -> Result<(), String> {
        let Some((k, encoded)) = self.current.as_ref().filter(|(k, _)| k == key) else {
            return Ok(());
        };
        let maps = radclip_assist::attention::AttentionMaps::of(encoded, query)
            .map_err(|e| e.to_string())?;
        send(AiEvent::Attention {
            key: k.clone(),
            maps,
            source_rect: encoded.placement.source_rect(),
        });
        Ok(())
    }

    fn heatmap(
        &mut self,
        key: &FrameKey,
        prompt: &str,
        style: MapStyle,
        slot: usize,
        send: &impl Fn(AiEvent),
    ) -> Result<(), String> {
        let Some((k, encoded)) = &self.current else {
            return Ok(());
        };
        // A map for a frame that is no longer the one read is not wanted any more.
        if k != key {
            return Ok(());
        }
        let t = Instant::now();
        let mut map = self
            .engine
            .heatmap(encoded, style.method, prompt)
            .map_err(|e| e.to_string())?;
        if style.refine {
            map = encoded
                .refine(&map, &radclip_clip::refine::Refinement::default())
                .map_err(|e| e.to_string())?;
        }
        let (sw, sh) = map.placement.source;
        let scale = (OVERLAY_SIDE as f64 / sw.max(sh).max(1) as f64).min(1.0);
        let (w, h) = (
            ((sw as f64 * scale).round() as usize).max(1),
            ((sh as f64 * scale).round() as usize).max(1),
        );
        let norm = map.normalized();
        let mut rgba = vec![0u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                let sx = (((x as f64 + 0.5) / scale) as usize).min(sw.saturating_sub(1));
                let sy = (((y as f64 + 0.5) / scale) as usize).min(sh.saturating_sub(1));
                if let Some(v) = map.sample(&norm, sx, sy) {
                    let c = radclip_clip::heatmap::turbo(v);
                    let i = (y * w + x) * 4;
                    rgba[i..i + 3].copy_from_slice(&c.map(|c| c as u8));
                    // Hot regions opaque, cold ones faint, so the anatomy stays readable under the
                    // map (the panel's opacity scales all of it).
                    rgba[i + 3] = ((0.25 + 0.75 * v.clamp(0.0, 1.0)) * 255.0).round() as u8;
                }
            }
        }
        send(AiEvent::Heatmap {
            key: key.clone(),
            prompt: prompt.to_string(),
            style,
            slot,
            overlay: Overlay {
                width: w,
                height: h,
                rgba,
            },
            ms: t.elapsed().as_secs_f64() * 1e3,
        });
        Ok(())
    }
}
