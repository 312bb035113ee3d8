//! The AI panel's "Find in series": a phrase scored against every slice of the series on screen, as
//! `radclip find` does (`radclip_assist::find`). A thread of its own, with its own copy of the model,
//! embeds the series (from the on-disk slice cache where it can), the slice on screen and its neighbours
//! first, and sends the scores as they fill in; the viewport draws them as a heat track beside its
//! scrollbar. A new phrase re-scores the embeddings already made; another series cancels the one
//! under way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use radclip_assist::find::{self, SeriesFinding, SliceCache};
use radclip_dicom::Series;

struct FindJob {
    series: Arc<Series>,
    first: usize,
    /// `None`: only read the series (its findings).
    phrase: Option<String>,
    cancel: Arc<AtomicBool>,
}

/// The scores of a phrase over a series, as far as it is embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct FindResult {
    pub series_uid: String,
    pub phrase: String,
    /// Per slice (display order): its cosine similarity to the phrase, once embedded.
    pub scores: Vec<Option<f32>>,
    pub done: usize,
    pub total: usize,
}

impl FindResult {
    /// Slices by score, best first.
    pub fn ranked(&self) -> Vec<usize> {
        let mut k: Vec<usize> = (0..self.scores.len())
            .filter(|k| self.scores[*k].is_some())
            .collect();
        k.sort_by(|a, b| {
            let s = |i: &usize| self.scores[*i].unwrap_or(f32::NEG_INFINITY);
            s(b).total_cmp(&s(a))
        });
        k
    }
}

enum FindMsg {
    Update(FindResult),
    /// A series' findings, once every slice is read.
    Findings(String, Vec<SeriesFinding>),
    Failed(String),
}

#[derive(Default)]
pub struct FindInSeries {
    /// The phrase box.
    pub phrase: String,
    pub result: Option<FindResult>,
    /// The findings of the series read last (its UID), most probable first.
    pub findings: Option<(String, Vec<SeriesFinding>)>,
    pub error: Option<String>,
    worker: Option<(Sender<FindJob>, Receiver<FindMsg>)>,
    cancel: Option<Arc<AtomicBool>>,
    /// Set by the panel's buttons, taken by the app: search the series on screen; go to a slice.
    pub wants_search: bool,
    /// The series read last in the background (its UID), so it is read once.
    pub read_uid: Option<String>,
    pub jump: Option<usize>,
}

fn spawn(
    model: String,
    device: String,
    ctx: egui::Context,
) -> std::io::Result<(Sender<FindJob>, Receiver<FindMsg>)> {
    let (tx, jobs) = crossbeam_channel::unbounded::<FindJob>();
    let (out, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("radclip-find".into())
        .spawn(move || {
            let send = |m: FindMsg| {
                let _ = out.send(m);
                ctx.request_repaint();
            };
            let (dev, _) = radclip_clip::device::select(&device);
            let engine = match radclip_clip::engine::Engine::load(&model, &dev) {
                Ok(e) => e,
                Err(e) => return send(FindMsg::Failed(format!("The model did not load: {e}"))),
            };
            let cache = match radclip_assist::provenance::model_provenance(&engine) {
                Ok(p) => SliceCache::for_model(&p),
                Err(e) => return send(FindMsg::Failed(e.to_string())),
            };
            // The model's findings, for the series-level list (none when the list cannot be read).
            let prompts = radclip_clip::zeroshot::FindingList::for_engine(&engine)
                .and_then(|l| radclip_clip::zeroshot::PromptSet::new(&engine, &l))
                .map_err(|e| tracing::warn!("no series findings: {e}"))
                .ok();
            // Embeddings of the series read so far, kept so a new phrase needs only its text.
            let mut embedded: HashMap<String, Vec<find::Embedding>> = HashMap::new();
            while let Ok(mut job) = jobs.recv() {
                while let Ok(newer) = jobs.try_recv() {
                    job = newer;
                }
                let text = match job.phrase.as_deref().map(|p| find::phrase(&engine, p)) {
                    Some(Ok(t)) => Some(t),
                    Some(Err(e)) => {
                        send(FindMsg::Failed(e.to_string()));
                        continue;
                    }
                    None => None,
                };
                let uid = job.series.uid.clone();
                let result = |slices: &[find::Embedding], done, total| {
                    let (text, phrase) = (text.as_ref()?, job.phrase.clone()?);
                    Some(FindResult {
                        series_uid: uid.clone(),
                        phrase,
                        scores: slices
                            .iter()
                            .map(|v| {
                                v.as_ref()
                                    .map(|v| v.iter().zip(text).map(|(a, b)| a * b).sum())
                            })
                            .collect(),
                        done,
                        total,
                    })
                };
                let n = job.series.frames.len();
                if let Some(all) = embedded.get(&uid) {
                    if let Some(r) = result(all, n, n) {
                        send(FindMsg::Update(r));
                    }
                    // The panel may show another series' findings by now.
                    if let Some(p) = &prompts {
                        send(FindMsg::Findings(
                            uid.clone(),
                            find::series_findings(p, all),
                        ));
                    }
                    continue;
                }
                let mut progress = |done, total, so_far: &[find::Embedding]| {
                    if let Some(r) = result(so_far, done, total) {
                        send(FindMsg::Update(r));
                    }
                };
                let read = find::embed_series(
                    &engine,
                    &job.series,
                    &cache,
                    job.first,
                    8,
                    &mut progress,
                    &job.cancel,
                );
                match read {
                    Ok(all) => {
                        if let Some(p) = &prompts {
                            send(FindMsg::Findings(
                                uid.clone(),
                                find::series_findings(p, &all),
                            ));
                        }
                        embedded.insert(uid.clone(), all);
                    }
                    Err(radclip_assist::AssistError::Cancelled) => {}
                    Err(e) => send(FindMsg::Failed(e.to_string())),
                }
            }
        })?;
    Ok((tx, rx))
}

impl FindInSeries {
    /// Scores the phrase against `series`, the slice `first` (on screen) and its neighbours first. The
    /// search under way is cancelled.
    pub fn search(
        &mut self,
        model: &str,
        device: &str,
        series: Arc<Series>,
        first: usize,
        ctx: &egui::Context,
    ) {
        let phrase = Some(self.phrase.trim().to_string()).filter(|p| !p.is_empty());
        self.send(model, device, series, first, phrase, ctx);
    }

    /// Reads `series` (its embeddings and findings) without a phrase.
    pub fn read(
        &mut self,
        model: &str,
        device: &str,
        series: Arc<Series>,
        first: usize,
        ctx: &egui::Context,
    ) {
        self.send(model, device, series, first, None, ctx);
    }

    fn send(
        &mut self,
        model: &str,
        device: &str,
        series: Arc<Series>,
        first: usize,
        phrase: Option<String>,
        ctx: &egui::Context,
    ) {
        if self.worker.is_none() {
            match spawn(model.to_string(), device.to_string(), ctx.clone()) {
                Ok(w) => self.worker = Some(w),
                Err(e) => {
                    self.error = Some(format!("Could not start the search: {e}"));
                    return;
                }
            }
        }
        if let Some(c) = self.cancel.take() {
            c.store(true, Ordering::Relaxed);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        self.error = None;
        if let Some((tx, _)) = &self.worker {
            let job = FindJob {
                series,
                first,
                phrase,
                cancel: cancel.clone(),
            };
            if tx.send(job).is_ok() {
                self.cancel = Some(cancel);
            }
        }
    }

    /// Takes the worker's results.
    pub fn poll(&mut self) {
        let Some((_, rx)) = &self.worker else {
            return;
        };
        while let Ok(m) = rx.try_recv() {
            match m {
                FindMsg::Update(r) => self.result = Some(r),
                FindMsg::Findings(uid, f) => self.findings = Some((uid, f)),
                FindMsg::Failed(e) => self.error = Some(e),
            }
        }
    }

    /// The scores to draw beside `series_uid`'s scrollbar.
    pub fn track_for(&self, series_uid: &str) -> Option<&FindResult> {
        self.result.as_ref().filter(|r| r.series_uid == series_uid)
    }

    /// The panel's section: the phrase, Find, progress, and the best and next matches.
    pub fn ui(&mut self, ui: &mut egui::Ui, current: Option<(&str, usize)>) {
        ui.heading("Find in series");
        ui.horizontal(|ui| {
            let label = ui.label("Phrase");
            let edit = ui
                .add(egui::TextEdit::singleline(&mut self.phrase).desired_width(150.0))
                .labelled_by(label.id);
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            // With no phrase, the button reads the series for its findings alone.
            let label = if self.phrase.trim().is_empty() {
                "Read series"
            } else {
                "Find"
            };
            if ui.button(label).clicked() || entered {
                self.wants_search = true;
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        let Some((uid, slice)) = current else {
            return;
        };
        if let Some((_, findings)) = self.findings.as_ref().filter(|(u, _)| u == uid) {
            ui.small("Series findings: each one's highest slice; click to go there");
            let mut go = None;
            for f in findings.iter().take(6) {
                let text = format!(
                    "{:<22} {:>3.0} %  slice {}",
                    f.name,
                    f.probability * 100.0,
                    f.index + 1
                );
                if ui
                    .add(egui::Button::new(egui::RichText::new(text).monospace()).frame(false))
                    .clicked()
                {
                    go = Some(f.index);
                }
            }
            if go.is_some() {
                self.jump = go;
            }
        }
        let Some(r) = self.track_for(uid) else {
            return;
        };
        if r.done < r.total {
            ui.label(format!(
                "\"{}\": {}/{} slices read",
                r.phrase, r.done, r.total
            ));
        } else {
            ui.label(format!(
                "\"{}\": every slice scored (track beside the scrollbar)",
                r.phrase
            ));
        }
        let ranked = r.ranked();
        ui.horizontal(|ui| {
            if ui.button("Best match").clicked() {
                self.jump = ranked.first().copied();
            }
            // The next slice down the ranking from the one on screen.
            if ui.button("Next match").clicked() {
                let at = ranked.iter().position(|k| *k == slice);
                self.jump = match at {
                    Some(i) => ranked.get(i + 1).or(ranked.first()).copied(),
                    None => ranked.first().copied(),
                };
            }
        });
    }
}
