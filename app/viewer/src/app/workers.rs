//! Work off the GUI thread: scanning what the user opens, reading segmentations, queueing decodes in the
//! order the user will look at them, the file dialog; and taking in what those workers send back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use radclip_dicom::seg::Segmentation;
use radclip_dicom::{self as dicom, LoadEvent, StudyTree};

use super::{SeriesEntry, ViewerApp};
use crate::actions::Action;
use crate::state::{Layout, Viewport};

impl ViewerApp {
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

    pub(super) fn set_tree(&mut self, ctx: &egui::Context, tree: StudyTree) {
        self.series.clear();
        self.shown.clear();
        self.thumbs.clear();
        self.series = series_entries(&tree);
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
    pub(super) fn read_segmentations(&mut self, ctx: &egui::Context, tree: &StudyTree) {
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

    /// Queues decoding: visible slices first, then thumbnails, then the active series outward from the
    /// current slice, so the first image is on screen before the rest of the series is decoded.
    pub(super) fn request_frames(&mut self) {
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

    pub(super) fn poll_workers(&mut self, ctx: &egui::Context) {
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
                    " {} segmentation(s): {} shows their masks.",
                    self.segmentations.len(),
                    Action::Segmentations.keys_text()
                );
            }
            if failed > 0 {
                self.status += &format!(" {failed} segmentation(s) could not be read.");
            }
        }
        if let Some(rx) = &self.archive_rx
            && let Ok(choice) = rx.try_recv()
        {
            self.archive_rx = None;
            if let (Some(p), Some(ai)) = (choice, &mut self.ai) {
                ai.set_library(p);
            }
        }
        if let Some(rx) = &self.cases_rx
            && let Ok(choice) = rx.try_recv()
        {
            self.cases_rx = None;
            if let (Some(p), Some(ai)) = (choice, &mut self.ai) {
                ai.index_cases(p, ctx);
            }
        }
        if let Some(rx) = &self.second_rx
            && let Ok(choice) = rx.try_recv()
        {
            self.second_rx = None;
            if let (Some(p), Some(ai)) = (choice, &mut self.ai) {
                ai.set_second_model(p, ctx);
            }
        }
        if let Some(rx) = &self.beside_rx
            && let Ok(r) = rx.try_recv()
        {
            self.beside_rx = None;
            match r {
                Ok(tree) => self.add_beside(tree),
                Err(e) => self.status = format!("Could not open the case: {e}"),
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

    /// A report archive (folder, or .txt/.xml/.csv file) or an index for the AI panel's library, chosen
    /// in a dialog off the GUI thread.
    pub(super) fn pick_archive(&mut self, ctx: &egui::Context, folder: bool) {
        self.archive_rx = spawn_job("radclip-dialog", ctx, move || {
            let d = rfd::FileDialog::new().set_title("Report archive or index");
            if folder {
                d.pick_folder()
            } else {
                d.pick_file()
            }
        })
        .ok();
    }

    /// Asks for a folder of cases to index for "Similar cases", in a dialog off the GUI thread.
    pub(super) fn pick_cases(&mut self, ctx: &egui::Context) {
        self.cases_rx = folder_dialog(ctx, "Folder of cases");
    }

    /// Asks for a second model's folder (maps side by side from two models), off the GUI thread.
    pub(super) fn pick_second_model(&mut self, ctx: &egui::Context) {
        self.second_rx = folder_dialog(ctx, "Second model folder");
    }

    /// Reads `path` (a similar case) on a worker and shows it beside the image on screen, in a 1×2
    /// layout; the studies already open stay.
    pub fn open_beside(&mut self, ctx: &egui::Context, path: PathBuf) {
        match spawn_job("radclip-scan", ctx, move || {
            dicom::scan(&path).map_err(|e| e.to_string())
        }) {
            Ok(rx) => {
                self.beside_rx = Some(rx);
                self.status = "Reading the case…".into();
            }
            Err(e) => self.status = format!("Could not start reading: {e}"),
        }
    }

    /// Adds a case's image series to those open and shows the first beside the active viewport.
    fn add_beside(&mut self, tree: StudyTree) {
        let first = self.series.len();
        self.series.extend(series_entries(&tree));
        if self.series.len() == first {
            self.status = "The case has no images to show.".into();
            return;
        }
        // Maps side by side keep both viewports on one image; a case beside it ends that comparison.
        if let Some(ai) = &mut self.ai {
            ai.compare = None;
        }
        let on_screen = self.viewports.get(self.active).cloned();
        if self.layout.count() < 2 {
            self.set_layout(Layout::OneByTwo);
        }
        // The image on screen goes to the left, the case to the right.
        if let (Some(v), Some(left)) = (on_screen, self.viewports.get_mut(0)) {
            *left = v;
        }
        self.show_series_in(1, first);
        self.active = 0;
        self.status = "The similar case is on the right.".into();
    }

    pub(super) fn pick(&mut self, ctx: &egui::Context, folder: bool) {
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
}

/// The image series of a tree, with their patient and study context.
fn series_entries(tree: &StudyTree) -> Vec<SeriesEntry> {
    let mut out = Vec::new();
    for p in &tree.patients {
        for st in &p.studies {
            for se in st.series.iter().filter(|s| s.is_image()) {
                out.push(SeriesEntry {
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
    out
}

/// A folder dialog titled `title`, on a thread of its own; the choice comes in the returned channel.
fn folder_dialog(ctx: &egui::Context, title: &'static str) -> Option<Receiver<Option<PathBuf>>> {
    spawn_job("radclip-dialog", ctx, move || {
        rfd::FileDialog::new().set_title(title).pick_folder()
    })
    .ok()
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
