//! Finding a model on disk: a folder, or an entry of the Hugging Face cache (never the network).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::ClipConfig;
use crate::error::{Error, Result};
use crate::model::ClipModel;
use crate::weights::{Weights, weight_files};

/// The hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// The snapshot folder of a `models--org--name` cache entry: the one `refs/main` names, else the only
/// (or newest) snapshot.
fn snapshot_of(entry: &Path) -> Option<PathBuf> {
    let snaps = entry.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(entry.join("refs/main")) {
        let p = snaps.join(rev.trim());
        if p.is_dir() {
            return Some(p);
        }
    }
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snaps)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// Resolves what the user typed: a model folder, a `models--org--name` cache entry, or a repo id
/// `org/name` looked up in the local Hugging Face cache. A model folder has `config.json` (Hugging Face
/// `CLIPModel`) or `open_clip_config.json` (open_clip).
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let dir = resolve_any(spec)?;
    if dir.join("config.json").is_file() || dir.join(crate::openclip::CONFIG_FILE).is_file() {
        Ok(dir)
    } else {
        Err(Error::NotFound(spec.to_string()))
    }
}

/// Like [`resolve`], for any folder (a tokenizer's, say).
pub fn resolve_any(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_dir() && !p.join("snapshots").is_dir() {
        return Ok(p.to_path_buf());
    }
    if p.join("snapshots").is_dir()
        && let Some(s) = snapshot_of(p)
    {
        return Ok(s);
    }
    if !p.exists()
        && let Some((org, name)) = spec.split_once('/')
        && !org.is_empty()
        && !name.is_empty()
        && !name.contains('/')
        && let Some(cache) = hf_cache_dir()
        && let Some(s) = snapshot_of(&cache.join(format!("models--{org}--{name}")))
    {
        return Ok(s);
    }
    Err(Error::NotFound(spec.to_string()))
}

impl ClipModel {
    /// Loads `config.json` and the safetensors weights of a model folder (see [`resolve`]).
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<ClipModel> {
        let config = ClipConfig::from_file(&dir.join("config.json"))?;
        let files = weight_files(dir)?;
        let weights = Weights::open(&files, dtype, device)?;
        ClipModel::load(config, &weights)
    }
}
