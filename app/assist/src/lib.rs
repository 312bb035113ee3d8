//! radclip's assistant pipeline: what the AI panel, the CLI and `radclip eval` all call, so that what is
//! measured is what users see. Today it holds images as a model reads them (`frame`: a DICOM frame
//! rendered with the card's window) and the report library (`library`: embedded a batch at a time,
//! each report labelled with the findings it states, similar reports listed one per set of findings),
//! the side of the body the image shows each finding on (`sides`), text search over a series' slices
//! (`find`), the attention inspector's maps
//! (`attention`), the user's report archives (`archive`) and indexes of reports and images (`store`),
//! and the provenance every output carries (`provenance`).

pub mod archive;
pub mod attention;
pub mod draft;
pub mod find;
pub mod frame;
pub mod library;
pub mod provenance;
pub mod sides;
pub mod store;

pub use library::{LibraryReport, Listing, ReportLibrary, SimilarReport};
pub use provenance::{ModelProvenance, Provenance};
pub use radclip_report::Sides;

#[derive(Debug, thiserror::Error)]
pub enum AssistError {
    #[error(transparent)]
    Clip(#[from] radclip_clip::Error),
    #[error("the embedding index: {0}")]
    Index(#[from] radclip_index::IndexError),
    #[error("the finding list's report words: {0}")]
    Words(#[from] radclip_report::ReportError),
    #[error(transparent)]
    Provenance(#[from] provenance::ProvenanceError),
    #[error("a tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, AssistError>;
