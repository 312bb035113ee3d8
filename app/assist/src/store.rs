//! What `radclip index` writes and `radclip search` reads: reports and images with their embeddings, each
//! with its source and the SHA-256 of what was embedded, so re-indexing a grown folder embeds only what
//! is new or changed. On disk as a `radclip_index::Index` (JSON header, f16 rows, an HNSW graph for a
//! large one; written atomically), with the model's provenance beside it. [`build`] makes one from
//! files and folders: the CLI's `radclip index` and the viewer's "Similar cases" both call it.

use radclip_index::Index;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::library::LibraryReport;

/// One indexed report or image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// A file's path, or "file.csv#row".
    pub source: String,
    /// SHA-256 of what was embedded: a report's embedded text, an image file's bytes.
    pub sha256: String,
    /// The report, for a report; `None` for an image.
    pub report: Option<LibraryReport>,
}

impl Entry {
    pub fn is_report(&self) -> bool {
        self.report.is_some()
    }
}

/// An index of entries.
pub type Store = Index<Entry>;

/// The SHA-256 of each weights file an index was made with, from the provenance beside it.
pub fn made_with(index: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(crate::provenance::sidecar(index)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(
        v["model"]["weights"]
            .as_array()?
            .iter()
            .filter_map(|w| w["sha256"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Whether `model`'s weights made the index at `index` (its provenance says so).
pub fn made_by(index: &std::path::Path, model: &crate::ModelProvenance) -> bool {
    let ours: Vec<String> = model.weights.iter().map(|w| w.sha256.clone()).collect();
    made_with(index).as_deref() == Some(ours.as_slice())
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// When [`build`] gives an index an HNSW graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Graph {
    /// From [`radclip_index::APPROXIMATE_FROM`] entries.
    #[default]
    Auto,
    Always,
    Never,
}

/// How [`build`] reads its inputs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The frame of multi-frame DICOM files that is embedded.
    pub frame: u32,
    pub batch_size: usize,
    pub graph: Graph,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            frame: 0,
            batch_size: 8,
            graph: Graph::Auto,
        }
    }
}

/// What [`build`] is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Reports,
    Images,
    Graph,
}

/// An index [`build`] made, with what it did.
#[derive(Debug)]
pub struct Built {
    pub store: Store,
    pub model: crate::ModelProvenance,
    /// Entries embedded by this run, and taken from the previous index unchanged.
    pub embedded: usize,
    pub reused: usize,
    /// Entries of the previous index no longer found.
    pub removed: usize,
    /// Files that are not images (segmentations, SR documents) skipped.
    pub not_images: usize,
    /// The previous index was made with other weights, so everything was embedded again.
    pub other_weights: bool,
    pub seconds: f64,
}

/// Reports embedded per batch (one padded batch of thousands would be mostly padding).
const REPORT_BATCH: usize = 64;

/// The reports (archive files) and images under `inputs`, reports kept to what they assert.
fn gather(
    inputs: &[std::path::PathBuf],
    labeler: Option<&radclip_report::Labeler>,
) -> crate::Result<(Vec<Entry>, Vec<std::path::PathBuf>)> {
    let report_entry = |mut r: crate::archive::ArchiveReport| {
        if let Some(l) = labeler {
            crate::archive::assert_only(&mut r.report, l);
        }
        Entry {
            source: r.source,
            sha256: sha256(r.report.embedded.as_bytes()),
            report: Some(r.report),
        }
    };
    let (mut reports, mut images) = (Vec::new(), Vec::new());
    for input in inputs {
        if input.is_dir() {
            let found = crate::archive::read_reports(input)?;
            reports.extend(found.into_iter().map(report_entry));
            images.extend(crate::frame::files_under(input)?.0);
        } else if input.is_file() && crate::archive::is_archive_file(input) {
            let found = crate::archive::read_reports(input)?;
            reports.extend(found.into_iter().map(report_entry));
        } else if input.is_file() {
            images.push(input.clone());
        } else {
            return Err(crate::AssistError::Input(format!(
                "{} is not a file or folder",
                input.display()
            )));
        }
    }
    Ok((reports, images))
}

/// Embeds the reports and images under `inputs` into an index: what `radclip index` writes and the
/// viewer's "Similar cases" builds. With `previous` (an index made by the same weights), entries whose
/// source and content are unchanged keep their embedding. `progress(stage, done, total)` is called
/// after each batch; `cancel` set ends the run with [`crate::AssistError::Cancelled`].
pub fn build(
    engine: &radclip_clip::engine::Engine,
    inputs: &[std::path::PathBuf],
    previous: Option<&std::path::Path>,
    options: &BuildOptions,
    progress: &mut dyn FnMut(Stage, usize, usize),
    cancel: &std::sync::atomic::AtomicBool,
) -> crate::Result<Built> {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    let cancelled = || {
        if cancel.load(Ordering::Relaxed) {
            Err(crate::AssistError::Cancelled)
        } else {
            Ok(())
        }
    };
    let t = std::time::Instant::now();
    // Reports are indexed by what they assert, read with the model's finding list's words.
    let list = radclip_clip::zeroshot::FindingList::for_engine(engine)?;
    let labeler = crate::library::labeler(&list)?;
    let (reports, image_files) = gather(inputs, labeler.as_ref())?;
    if reports.is_empty() && image_files.is_empty() {
        return Err(crate::AssistError::Input(
            "no reports (.txt, .xml, .csv, DICOM SR) or images (DICOM, PNG, JPEG) to index".into(),
        ));
    }
    let model = crate::provenance::model_provenance(engine)?;
    let mut known: HashMap<(String, String), Vec<f32>> = HashMap::new();
    let (mut before, mut other_weights) = (0usize, false);
    if let Some(prev) = previous.filter(|p| p.is_file()) {
        let old = Store::load(prev)?;
        before = old.len();
        if made_by(prev, &model) {
            for (i, e) in old.items().iter().enumerate() {
                if let Some(row) = old.row(i) {
                    known.insert((e.source.clone(), e.sha256.clone()), row.into_owned());
                }
            }
        } else {
            other_weights = true;
        }
    }
    let reuse = |e: &Entry| known.get(&(e.source.clone(), e.sha256.clone())).cloned();
    let mut rows: Vec<(Entry, Option<Vec<f32>>)> = reports
        .into_iter()
        .map(|e| {
            let row = reuse(&e);
            (e, row)
        })
        .collect();
    let todo: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].1.is_none()).collect();
    let (mut embedded, mut reused) = (0usize, rows.len() - todo.len());
    for (n, chunk) in todo.chunks(REPORT_BATCH).enumerate() {
        cancelled()?;
        let batch: Vec<_> = chunk
            .iter()
            .filter_map(|&i| rows[i].0.report.clone())
            .collect();
        let feats = crate::library::embed_reports(engine, &batch)?;
        for (&i, f) in chunk.iter().zip(feats) {
            rows[i].1 = Some(f);
        }
        embedded += chunk.len();
        progress(
            Stage::Reports,
            (n * REPORT_BATCH + chunk.len()).min(todo.len()),
            todo.len(),
        );
    }
    // Images: hashed, and embedded when new or changed.
    let mut image_rows: Vec<(Entry, Option<Vec<f32>>)> = Vec::new();
    for p in &image_files {
        cancelled()?;
        let bytes = std::fs::read(p).map_err(|source| crate::AssistError::Read {
            path: p.clone(),
            source,
        })?;
        let e = Entry {
            source: p.display().to_string(),
            sha256: sha256(&bytes),
            report: None,
        };
        let row = reuse(&e);
        image_rows.push((e, row));
    }
    let todo: Vec<std::path::PathBuf> = image_rows
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(e, _)| std::path::PathBuf::from(&e.source))
        .collect();
    reused += image_rows.len() - todo.len();
    let mut not_images = 0usize;
    let mut got: HashMap<std::path::PathBuf, Vec<f32>> = HashMap::new();
    let batch = options.batch_size.max(1);
    for (n, chunk) in todo.chunks(batch).enumerate() {
        cancelled()?;
        let (paths, feats) =
            crate::frame::encode_files(engine, chunk, options.frame, batch, |_| {
                not_images += 1;
                Ok(())
            })?;
        embedded += paths.len();
        got.extend(paths.into_iter().zip(feats));
        progress(
            Stage::Images,
            (n * batch + chunk.len()).min(todo.len()),
            todo.len(),
        );
    }
    for (e, row) in &mut image_rows {
        if row.is_none() {
            *row = got.remove(std::path::Path::new(&e.source));
        }
    }
    let mut store: Option<Store> = None;
    for (e, row) in rows.into_iter().chain(image_rows) {
        let Some(row) = row else { continue };
        store
            .get_or_insert_with(|| Store::new(row.len()))
            .add(&row, e)?;
    }
    let Some(mut store) = store else {
        return Err(crate::AssistError::Input(
            "nothing could be embedded".into(),
        ));
    };
    let graph = match options.graph {
        Graph::Auto => store.len() >= radclip_index::APPROXIMATE_FROM,
        Graph::Always => true,
        Graph::Never => false,
    };
    if graph {
        cancelled()?;
        progress(Stage::Graph, 0, store.len());
        store.build_approximate(radclip_index::Approximate::default())?;
        progress(Stage::Graph, store.len(), store.len());
    }
    let removed = (before + embedded).saturating_sub(store.len()).min(before);
    Ok(Built {
        store,
        model,
        embedded,
        reused,
        removed,
        not_images,
        other_weights,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Writes a built index to `out` atomically, with its provenance beside it.
pub fn write(built: &Built, out: &std::path::Path) -> crate::Result<crate::Provenance> {
    built.store.save(out)?;
    let p = crate::Provenance::new(&built.model, "index", Vec::new(), built.seconds * 1e3);
    let side = crate::provenance::sidecar(out);
    radclip_dicom::export::write_atomic(&side, p.text().as_bytes())
        .map_err(|source| crate::AssistError::Write { path: side, source })?;
    Ok(p)
}
