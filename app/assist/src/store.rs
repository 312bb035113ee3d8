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

/// SHA-256 of bytes, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
