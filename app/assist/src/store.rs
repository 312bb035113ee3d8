//! What `radclip index` writes and `radclip search` reads: reports and images with their embeddings, each
//! with its source and the SHA-256 of what was embedded, so re-indexing a grown folder embeds only what
//! is new or changed. On disk as a `radclip_index::Index` (JSON header, little-endian f32 rows, written
//! atomically), with the model's provenance beside it.

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
