//! Typed errors of the study engine. Messages are one sentence a user can act on and never contain PHI.

use std::path::PathBuf;

/// Everything that can go wrong between a path on disk and pixels on screen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable DICOM file: {reason}")]
    NotDicom { path: PathBuf, reason: String },
    #[error("{path} has no image: {reason}")]
    NoImage { path: PathBuf, reason: String },
    #[error("{path}: cannot decode the pixel data: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: {what} is not supported yet")]
    Unsupported { path: PathBuf, what: String },
    #[error("frame {frame} is out of range: the image has {frames} frame(s)")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error("nothing to open at {path}: {reason}")]
    Empty { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Export { path: PathBuf, reason: String },
    #[error("the series has no consistent geometry: {0}")]
    Geometry(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
