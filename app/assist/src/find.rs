//! Text search over a series: every slice embedded once (cached on disk per model, SOP Instance UID and
//! frame, in the user's cache directory, never beside the study), then scored against a phrase by
//! cosine similarity. `radclip find` and the viewer's "Find in series" call these.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use radclip_clip::engine::Engine;
use radclip_dicom::Series;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::provenance::{ModelProvenance, cache_dir};
use crate::{AssistError, Result};

/// One slice's score against a phrase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceScore {
    /// The slice's place in the series (display order).
    #[serde(skip)]
    pub index: usize,
    pub instance_number: Option<i64>,
    pub sop_instance_uid: String,
    /// The frame in its file (0 for single-frame files).
    pub frame: u32,
    /// Cosine similarity of the slice's image features and the phrase's text features.
    pub score: f32,
}

/// Slice embeddings on disk: one small file per (SOP Instance UID, frame) in a folder per model
/// (its weights' digests and preprocessing window), written atomically.
#[derive(Debug, Clone)]
pub struct SliceCache {
    dir: Option<PathBuf>,
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl SliceCache {
    /// The cache for `model` under radclip's cache directory; none (every slice embedded) when there is
    /// no cache directory.
    pub fn for_model(model: &ModelProvenance) -> Self {
        let mut h = Sha256::new();
        for w in &model.weights {
            h.update(w.sha256.as_bytes());
        }
        h.update(model.window.as_bytes());
        SliceCache {
            dir: cache_dir().map(|d| d.join("slices").join(hex16(&h.finalize()))),
        }
    }

    pub fn in_dir(dir: PathBuf) -> Self {
        SliceCache { dir: Some(dir) }
    }

    /// Where this cache keeps its entries.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, sop: &str, frame: u32) -> Option<PathBuf> {
        let key = Sha256::digest(format!("{sop}\0{frame}"));
        Some(self.dir.as_ref()?.join(format!("{}.f32", hex16(&key))))
    }

    /// The cached embedding of a slice, when there is one of `dim` values.
    pub fn get(&self, sop: &str, frame: u32, dim: usize) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.entry(sop, frame)?).ok()?;
        (bytes.len() == dim * 4).then(|| {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Keeps a slice's embedding. A cache that cannot be written only costs embedding it again.
    pub fn put(&self, sop: &str, frame: u32, v: &[f32]) {
        let Some(path) = self.entry(sop, frame) else {
            return;
        };
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| radclip_dicom::export::write_atomic(&path, &bytes));
        if let Err(e) = written {
            tracing::debug!("slice cache not written: {e}");
        }
    }
}

/// A slice's unit-length image features; `None` where the slice could not be read (or is not yet).
pub type Embedding = Option<Vec<f32>>;

/// Slice indices from `first` outward (first, first+1, first−1, …): the slice on screen and its
/// neighbours before the rest.
pub fn outward(n: usize, first: usize) -> Vec<usize> {
    let first = first.min(n.saturating_sub(1));
    let mut out = Vec::with_capacity(n);
    for d in 0..n {
        for k in [first.checked_add(d), first.checked_sub(d)]
            .into_iter()
            .flatten()
        {
            if k < n && !out.contains(&k) {
                out.push(k);
            }
        }
        if out.len() == n {
            break;
        }
    }
    out
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Unit-length image features of every slice of `series`, from `cache` or encoded `batch` at a time, the
/// slice `first` and its neighbours first; refused, in a sentence, for a modality the model's card
/// does not list. `progress(done, total, so far)` after each batch; `cancel` stops
/// between batches (what is done stays cached). A slice that cannot be read is `None`, with its error
/// logged.
pub fn embed_series(
    engine: &Engine,
    series: &Series,
    cache: &SliceCache,
    first: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize, &[Embedding]),
    cancel: &AtomicBool,
) -> Result<Vec<Embedding>> {
    if !engine.card.reads_modality(&series.modality) {
        return Err(AssistError::Input(format!(
            "the model reads {} images, not {}",
            engine.card.modalities.join("/"),
            if series.modality.is_empty() {
                "images of unknown modality"
            } else {
                series.modality.as_str()
            }
        )));
    }
    let n = series.frames.len();
    let dim = engine.model.projection_dim;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut todo = Vec::new();
    for k in outward(n, first) {
        let Some((inst, f)) = series.instance_of(k) else {
            continue;
        };
        match cache.get(&inst.sop_instance_uid, f, dim) {
            Some(v) => out[k] = Some(v),
            None => todo.push(k),
        }
    }
    let mut done = n - todo.len();
    progress(done, n, &out);
    for chunk in todo.chunks(batch.max(1)) {
        if cancel.load(Ordering::Relaxed) {
            return Err(AssistError::Cancelled);
        }
        let mut prepared = Vec::new();
        let mut which: Vec<(usize, String, u32)> = Vec::new();
        for &k in chunk {
            let Some((inst, f)) = series.instance_of(k) else {
                continue;
            };
            match crate::frame::prepare_file(engine, &inst.path, f) {
                Ok(p) => {
                    prepared.push(p);
                    which.push((k, inst.sop_instance_uid.to_string(), f));
                }
                Err(e) => tracing::warn!("slice {} not embedded: {e}", k + 1),
            }
        }
        if !prepared.is_empty() {
            let refs: Vec<_> = prepared.iter().collect();
            let feats = engine
                .encode_images(&refs, batch)?
                .to_dtype(candle_core::DType::F32)?
                .to_vec2::<f32>()?;
            for ((k, sop, f), v) in which.into_iter().zip(feats) {
                let v = unit(v);
                cache.put(&sop, f, &v);
                out[k] = Some(v);
            }
        }
        done += chunk.len();
        progress(done, n, &out);
    }
    Ok(out)
}

/// The unit-length text features of `text`.
pub fn phrase(engine: &Engine, text: &str) -> Result<Vec<f32>> {
    let t = engine
        .encode_texts(&[text])?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?;
    t.into_iter()
        .next()
        .map(unit)
        .ok_or_else(|| AssistError::Input("the text encoder returned nothing".into()))
}

/// Each embedded slice's cosine similarity to `phrase`, in series order.
pub fn scores(series: &Series, slices: &[Option<Vec<f32>>], phrase: &[f32]) -> Vec<SliceScore> {
    slices
        .iter()
        .enumerate()
        .filter_map(|(k, v)| {
            let v = v.as_ref()?;
            let (inst, frame) = series.instance_of(k)?;
            Some(SliceScore {
                index: k,
                instance_number: inst.instance_number,
                sop_instance_uid: inst.sop_instance_uid.clone(),
                frame,
                score: v.iter().zip(phrase).map(|(a, b)| a * b).sum(),
            })
        })
        .collect()
}

/// A finding over a whole series: its highest probability among the slices, and that slice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesFinding {
    pub name: String,
    pub probability: f64,
    /// The slice it comes from (display order).
    pub index: usize,
}

/// Per finding of `prompts`, the probability over the series (the maximum over its slices, as the
/// panel reads one image) and the slice it comes from, most probable first.
pub fn series_findings(
    prompts: &radclip_clip::zeroshot::PromptSet,
    slices: &[Embedding],
) -> Vec<SeriesFinding> {
    let mut best: Vec<SeriesFinding> = Vec::new();
    for (k, v) in slices.iter().enumerate() {
        let Some(v) = v else {
            continue;
        };
        for f in prompts.score_row(v) {
            match best.iter_mut().find(|b| b.name == f.name) {
                Some(b) if b.probability >= f.probability => {}
                Some(b) => {
                    b.probability = f.probability;
                    b.index = k;
                }
                None => best.push(SeriesFinding {
                    name: f.name,
                    probability: f.probability,
                    index: k,
                }),
            }
        }
    }
    best.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    best
}

/// The `k` best of `scores`, best first.
pub fn top(scores: &[SliceScore], k: usize) -> Vec<SliceScore> {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.score.total_cmp(&a.score));
    s.truncate(k);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outward_visits_every_slice_once_nearest_first() {
        assert_eq!(outward(5, 2), [2, 3, 1, 4, 0]);
        assert_eq!(outward(4, 0), [0, 1, 2, 3]);
        assert_eq!(outward(3, 9), [2, 1, 0]);
        assert!(outward(0, 0).is_empty());
    }
}
