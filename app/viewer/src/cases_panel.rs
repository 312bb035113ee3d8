//! The AI panel's "Similar cases": the user picks a folder of cases (DICOM, PNG, JPEG); it is indexed on
//! a thread of its own by `radclip_assist::store::build` (what `radclip index` runs), with progress and
//! a Cancel button, into radclip's cache directory (never beside the cases); the AI worker then lists
//! the indexed images nearest to each frame read, with their pictures. A click opens a case beside the
//! image on screen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;
use egui::{TextureHandle, TextureOptions};
use radclip_assist::store::Stage;
use radclip_dicom::FrameKey;

use crate::ai::CaseHit;

/// What the indexing thread reports.
pub enum BuildMsg {
    Progress(Stage, usize, usize),
    /// The index file, or why there is none (`None`: cancelled).
    Done(Result<PathBuf, Option<String>>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CasesStatus {
    None,
    Building {
        folder: PathBuf,
        stage: Stage,
        done: usize,
        total: usize,
    },
    /// Indexed; the worker is loading the index.
    Loading(PathBuf),
    Ready {
        folder: PathBuf,
        images: usize,
    },
    Failed(String),
}

/// A listed case and its picture as a texture.
pub struct ShownCase {
    pub hit: CaseHit,
    pub texture: Option<TextureHandle>,
}

pub struct SimilarCases {
    pub status: CasesStatus,
    build: Option<(Receiver<BuildMsg>, Arc<AtomicBool>)>,
    /// The cases of the frame read last.
    pub shown: Option<(FrameKey, Vec<ShownCase>)>,
    /// Set by the panel's buttons, taken by the app: a folder dialog, a case to open beside the image.
    pub wants_folder: bool,
    pub open_request: Option<PathBuf>,
}

impl Default for SimilarCases {
    fn default() -> Self {
        SimilarCases {
            status: CasesStatus::None,
            build: None,
            shown: None,
            wants_folder: false,
            open_request: None,
        }
    }
}

/// Where the index of `folder`'s cases is kept: radclip's cache directory, named by the folder's path,
/// so indexing it again embeds only what changed.
pub fn index_path(folder: &Path) -> Option<PathBuf> {
    let canonical = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    let digest = radclip_assist::store::sha256(canonical.to_string_lossy().as_bytes());
    let name = format!("{}.idx", digest.get(..16).unwrap_or(&digest));
    Some(
        radclip_assist::provenance::cache_dir()?
            .join("cases")
            .join(name),
    )
}

/// Indexes `folder` with the model at `model` on a thread of its own (it loads its own copy of the
/// model, so the panel's findings and maps never wait for it).
fn spawn_build(
    model: String,
    device: String,
    folder: PathBuf,
    ctx: egui::Context,
    cancel: Arc<AtomicBool>,
) -> std::io::Result<Receiver<BuildMsg>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("radclip-cases".into())
        .spawn(move || {
            let send = |m: BuildMsg| {
                let _ = tx.send(m);
                ctx.request_repaint();
            };
            let result = (|| {
                let out = index_path(&folder)
                    .ok_or_else(|| Some("there is no cache directory to keep it in".to_string()))?;
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Some(e.to_string()))?;
                }
                let (device, _) = radclip_clip::device::select(&device);
                let engine = radclip_clip::engine::Engine::load(&model, &device)
                    .map_err(|e| Some(e.to_string()))?;
                let mut progress =
                    |stage: Stage, done, total| send(BuildMsg::Progress(stage, done, total));
                let built = radclip_assist::store::build(
                    &engine,
                    std::slice::from_ref(&folder),
                    Some(&out),
                    &radclip_assist::store::BuildOptions::default(),
                    &mut progress,
                    &cancel,
                )
                .map_err(|e| match e {
                    radclip_assist::AssistError::Cancelled => None,
                    e => Some(e.to_string()),
                })?;
                if built.store.items().iter().all(|e| e.is_report()) {
                    return Err(Some("it holds no images".to_string()));
                }
                radclip_assist::store::write(&built, &out).map_err(|e| Some(e.to_string()))?;
                Ok(out)
            })();
            send(BuildMsg::Done(result));
        })?;
    Ok(rx)
}

impl SimilarCases {
    /// Starts indexing `folder` (a build under way is cancelled first).
    pub fn index_folder(
        &mut self,
        model: &str,
        device: &str,
        folder: PathBuf,
        ctx: &egui::Context,
    ) {
        self.cancel();
        let cancel = Arc::new(AtomicBool::new(false));
        match spawn_build(
            model.to_string(),
            device.to_string(),
            folder.clone(),
            ctx.clone(),
            cancel.clone(),
        ) {
            Ok(rx) => {
                self.build = Some((rx, cancel));
                self.status = CasesStatus::Building {
                    folder,
                    stage: Stage::Images,
                    done: 0,
                    total: 0,
                };
            }
            Err(e) => self.status = CasesStatus::Failed(format!("Could not start indexing: {e}")),
        }
    }

    /// Stops the build under way, if any.
    pub fn cancel(&mut self) {
        if let Some((_, c)) = self.build.take() {
            c.store(true, Ordering::Relaxed);
            self.status = CasesStatus::None;
        }
    }

    /// Takes the indexing thread's news; returns the index to hand to the AI worker once it is built.
    pub fn poll(&mut self) -> Option<PathBuf> {
        let (rx, _) = self.build.as_ref()?;
        let mut ready = None;
        for m in rx.try_iter() {
            match m {
                BuildMsg::Progress(stage, done, total) => {
                    if let CasesStatus::Building {
                        stage: s,
                        done: d,
                        total: t,
                        ..
                    } = &mut self.status
                    {
                        (*s, *d, *t) = (stage, done, total);
                    }
                }
                BuildMsg::Done(Ok(path)) => ready = Some(path),
                BuildMsg::Done(Err(why)) => {
                    self.status = match why {
                        Some(w) => {
                            CasesStatus::Failed(format!("The cases could not be indexed: {w}"))
                        }
                        None => CasesStatus::None,
                    };
                    self.build = None;
                    return None;
                }
            }
        }
        let path = ready?;
        let folder = match &self.status {
            CasesStatus::Building { folder, .. } => folder.clone(),
            _ => PathBuf::new(),
        };
        self.build = None;
        self.status = CasesStatus::Loading(folder);
        Some(path)
    }

    /// The worker's cases for `key`, pictures made into textures.
    pub fn receive(&mut self, ctx: &egui::Context, key: FrameKey, cases: Vec<CaseHit>) {
        let shown = cases
            .into_iter()
            .enumerate()
            .map(|(i, hit)| {
                let texture = hit.thumb.as_ref().map(|t| {
                    let img =
                        egui::ColorImage::from_rgba_unmultiplied([t.width, t.height], &t.rgba);
                    ctx.load_texture(format!("case-{i}"), img, TextureOptions::LINEAR)
                });
                ShownCase { hit, texture }
            })
            .collect();
        self.shown = Some((key, shown));
    }

    pub fn ready(&mut self, images: usize) {
        if let CasesStatus::Loading(folder) = &self.status {
            self.status = CasesStatus::Ready {
                folder: folder.clone(),
                images,
            };
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, current: Option<&FrameKey>) {
        ui.separator();
        ui.strong("Similar cases");
        match self.status.clone() {
            CasesStatus::None => {
                ui.small("The images of a folder of cases nearest to the image on screen.");
                if ui.button("Index a folder of cases…").clicked() {
                    self.wants_folder = true;
                }
            }
            CasesStatus::Building {
                folder,
                stage,
                done,
                total,
            } => {
                let what = match stage {
                    Stage::Reports => "reports",
                    Stage::Images => "images",
                    Stage::Graph => "search graph",
                };
                ui.horizontal(|ui| {
                    ui.spinner();
                    let name = folder.file_name().unwrap_or(folder.as_os_str());
                    ui.label(format!(
                        "Indexing {}: {what} {done}/{total}",
                        name.to_string_lossy()
                    ));
                });
                ui.add(
                    egui::ProgressBar::new(if total > 0 {
                        done as f32 / total as f32
                    } else {
                        0.0
                    })
                    .desired_height(6.0),
                );
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
            }
            CasesStatus::Loading(_) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading the cases index…");
                });
            }
            CasesStatus::Failed(m) => {
                ui.colored_label(egui::Color32::LIGHT_RED, m);
                if ui.button("Index a folder of cases…").clicked() {
                    self.wants_folder = true;
                }
            }
            CasesStatus::Ready { folder, images } => {
                let name = folder.file_name().map_or_else(
                    || folder.display().to_string(),
                    |n| n.to_string_lossy().into(),
                );
                ui.small(format!("of {images} images in {name}"))
                    .on_hover_text(format!(
                        "{}: cosine similarity of each indexed image to the image on screen (the \
                         image's own file left out). Click a case to open it beside this image.",
                        folder.display()
                    ));
                let cases = self
                    .shown
                    .as_ref()
                    .filter(|(k, _)| Some(k) == current)
                    .map(|(_, c)| c);
                let mut open = None;
                ui.horizontal_wrapped(|ui| {
                    for (i, c) in cases.into_iter().flatten().enumerate() {
                        ui.vertical(|ui| {
                            let name = c
                                .hit
                                .source
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                            let clicked = match &c.texture {
                                Some(t) => {
                                    let size = t.size_vec2();
                                    ui.add(
                                        egui::Button::image(
                                            egui::Image::new((t.id(), size))
                                                .alt_text(format!("Similar case {}", i + 1)),
                                        )
                                        .frame(false),
                                    )
                                    .on_hover_text(c.hit.source.display().to_string())
                                    .clicked()
                                }
                                None => ui.button(&name).clicked(),
                            };
                            ui.small(format!("{:.2}", c.hit.score));
                            if clicked {
                                open = Some(c.hit.source.clone());
                            }
                        });
                    }
                });
                if open.is_some() {
                    self.open_request = open;
                }
                if ui.small_button("Index another folder…").clicked() {
                    self.wants_folder = true;
                }
            }
        }
    }
}
