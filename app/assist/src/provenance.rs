//! Provenance of every AI output: which weights (SHA-256 of each file), which method and prompts, which
//! preprocessing window, where it ran and how long it took. A weights file is hashed once; the digest
//! is kept in the user's cache directory under the file's path, size and modification time, never in
//! the model folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use radclip_clip::card::{WindowChoice, WindowSpec};
use radclip_clip::engine::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("cannot read {path} to hash it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One weights file as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightsFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The model an output came from, and how it read the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelProvenance {
    pub name: String,
    pub path: String,
    pub intended_use: String,
    pub weights: Vec<WeightsFile>,
    /// The preprocessing window the model card names ("viewer", "file", "min/max" or "C,W").
    pub window: String,
    /// Where it runs ("the CPU", "NVIDIA GPU 0").
    pub device: String,
}

/// What one output carries: the model, the method, the prompts and the time it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    pub radclip: &'static str,
    pub model: ModelProvenance,
    pub method: String,
    pub prompts: Vec<String>,
    pub ms: f64,
}

impl Provenance {
    pub fn new(model: &ModelProvenance, method: &str, prompts: Vec<String>, ms: f64) -> Self {
        Provenance {
            radclip: env!("CARGO_PKG_VERSION"),
            model: model.clone(),
            method: method.to_string(),
            prompts,
            ms,
        }
    }

    /// As pasted into a notebook or a ticket: pretty JSON.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Every prompt of a finding list, positives then negatives per finding.
pub fn prompts_of(list: &radclip_clip::zeroshot::FindingList) -> Vec<String> {
    list.finding
        .iter()
        .flat_map(|f| f.positive.iter().chain(&f.negative).cloned())
        .collect()
}

/// Where an output's provenance is written beside it: `x.png` → `x.png.provenance.json`.
pub fn sidecar(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map_or_else(|| std::ffi::OsString::from("output"), |s| s.to_os_string());
    name.push(".provenance.json");
    out.with_file_name(name)
}

fn window_name(w: &WindowSpec) -> String {
    match w {
        WindowSpec::Named(WindowChoice::Viewer) => "viewer".into(),
        WindowSpec::Named(WindowChoice::File) => "file".into(),
        WindowSpec::Named(WindowChoice::MinMax) => "min/max".into(),
        WindowSpec::Fixed([c, w]) => format!("{c},{w}"),
    }
}

/// The provenance of `engine`'s outputs, its weights hashed (or their digests read from the cache).
pub fn model_provenance(engine: &Engine) -> Result<ModelProvenance, ProvenanceError> {
    let cache = HashCache::default();
    let weights = engine
        .weights
        .iter()
        .map(|p| cache.file(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ModelProvenance {
        name: engine.card.name.clone().unwrap_or_else(|| "model".into()),
        path: engine.dir.display().to_string(),
        intended_use: engine.card.intended_use.clone(),
        weights,
        window: window_name(&engine.card.preprocess.window),
        device: radclip_clip::device::describe(engine.model.device()).place,
    })
}

/// radclip's folder in the user's cache directory: `$RADCLIP_CACHE_DIR`, else the platform's
/// (`$XDG_CACHE_HOME/radclip` or `~/.cache/radclip` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("RADCLIP_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("radclip")))
}

/// SHA-256 digests of files by path, size and modification time, one small file per entry (so two
/// processes never rewrite a shared table).
#[derive(Debug, Clone)]
pub struct HashCache {
    dir: Option<PathBuf>,
}

impl Default for HashCache {
    fn default() -> Self {
        HashCache {
            dir: cache_dir().map(|d| d.join("sha256")),
        }
    }
}

impl HashCache {
    pub fn in_dir(dir: PathBuf) -> Self {
        HashCache { dir: Some(dir) }
    }

    /// The file's size and digest: from the cache when its path, size and time are unchanged.
    pub fn file(&self, path: &Path) -> Result<WeightsFile, ProvenanceError> {
        let read = |source| ProvenanceError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let full = std::fs::canonicalize(path).map_err(read)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = hex(&Sha256::digest(format!(
            "{}\0{}\0{mtime}",
            full.display(),
            meta.len()
        )));
        let entry = self.dir.as_ref().map(|d| d.join(&key));
        let cached = entry
            .as_ref()
            .and_then(|e| std::fs::read_to_string(e).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let sha256 = match cached {
            Some(s) => s,
            None => {
                let digest = sha256_file(path).map_err(read)?;
                // A cache that cannot be written only costs a second hash next time.
                if let Some(e) = &entry
                    && let Err(err) = write_entry(e, &digest)
                {
                    tracing::debug!("hash cache not written: {err}");
                }
                digest
            }
        };
        Ok(WeightsFile {
            path: path.display().to_string(),
            bytes: meta.len(),
            sha256,
        })
    }
}

fn write_entry(entry: &Path, digest: &str) -> std::io::Result<()> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, digest.as_bytes())?;
    tmp.persist(entry).map_err(|e| e.error)?;
    Ok(())
}

/// The SHA-256 of a file's bytes, lower-case hex (as `sha256sum` prints it).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
