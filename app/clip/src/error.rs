use std::path::PathBuf;

/// Everything that can go wrong between a model folder on disk and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error(
        "no model at {0}: expected a folder with config.json and model.safetensors, or a Hugging Face cache entry"
    )]
    NotFound(String),
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The first line of an error: candle and parser errors carry backtraces and context the user need not see.
pub(crate) fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
