//! Memory-mapped safetensors with errors that name the file and the tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result, first_line};

pub struct Weights {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// Tensors given directly (training: the variables themselves, so gradients reach them).
    memory: HashMap<String, Tensor>,
    routing: HashMap<String, usize>,
    dtype: DType,
    device: Device,
}

impl Weights {
    /// Maps every file; `dtype` is what tensors are converted to on load.
    pub fn open(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut files = Vec::new();
        let mut routing = HashMap::new();
        for p in paths {
            // SAFETY: the mapping is read-only; like every mmap reader we rely on nobody truncating the
            // file while it is mapped (the model folder is the user's, opened read-only).
            let st = unsafe { MmapedSafetensors::new(p) }.map_err(|e| Error::Checkpoint {
                path: p.clone(),
                message: format!("not a readable safetensors file ({})", first_line(&e)),
            })?;
            for (name, _) in st.tensors() {
                routing.insert(name, files.len());
            }
            files.push((p.clone(), st));
        }
        Ok(Weights {
            files,
            memory: HashMap::new(),
            routing,
            dtype,
            device: device.clone(),
        })
    }

    /// Weights from tensors in memory, used as they are (same dtype and device, no copy), so a model
    /// built from them computes with those very tensors: with `Var`s, gradients reach the variables.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, device: &Device) -> Self {
        let dtype = tensors.values().next().map_or(DType::F32, Tensor::dtype);
        Weights {
            files: Vec::new(),
            memory: tensors,
            routing: HashMap::new(),
            dtype,
            device: device.clone(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name) || self.memory.contains_key(name)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The stored shape of `name`, if the checkpoint has it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(t) = self.memory.get(name) {
            return Some(t.dims().to_vec());
        }
        let (_, st) = self.files.get(*self.routing.get(name)?)?;
        st.get(name).ok().map(|v| v.shape().to_vec())
    }

    /// Tensor names that start with `prefix`.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .routing
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
    }

    /// The error for a tensor the model needs and the checkpoint lacks.
    pub fn missing(&self, name: &str) -> Error {
        self.bad(&format!("tensor \"{name}\" is missing"))
    }

    /// An error about this checkpoint.
    pub fn bad(&self, message: &str) -> Error {
        Error::Checkpoint {
            path: self.first_path(),
            message: message.to_string(),
        }
    }

    fn first_path(&self) -> PathBuf {
        self.files.first().map(|f| f.0.clone()).unwrap_or_default()
    }

    /// Loads `name`, checking it has `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Some(t) = self.memory.get(name) {
            if t.dims() != shape {
                return Err(self.bad(&format!(
                    "tensor \"{name}\" has shape {:?} but the config implies {shape:?}",
                    t.dims()
                )));
            }
            return Ok(t.clone());
        }
        let Some(&i) = self.routing.get(name) else {
            return Err(Error::Checkpoint {
                path: self.first_path(),
                message: format!(
                    "tensor \"{name}\" is missing (is this a CLIP checkpoint in the Hugging Face layout?)"
                ),
            });
        };
        let Some((path, st)) = self.files.get(i) else {
            return Err(Error::Checkpoint {
                path: self.first_path(),
                message: format!("tensor \"{name}\" is missing"),
            });
        };
        let fail = |message: String| Error::Checkpoint {
            path: path.clone(),
            message,
        };
        let view = st
            .get(name)
            .map_err(|e| fail(format!("tensor \"{name}\": {}", first_line(&e))))?;
        if view.shape() != shape {
            return Err(fail(format!(
                "tensor \"{name}\" has shape {:?} but config.json implies {shape:?}",
                view.shape()
            )));
        }
        let t = st.load(name, &self.device).map_err(|e| {
            fail(format!(
                "tensor \"{name}\" cannot be read ({})",
                first_line(&e)
            ))
        })?;
        if !t.dtype().is_float() {
            return Err(fail(format!(
                "tensor \"{name}\" has integer type {:?}",
                t.dtype()
            )));
        }
        Ok(t.to_dtype(self.dtype)?)
    }
}

/// The safetensors files of a model folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: index.clone(),
            message: format!("not a safetensors index: {e}"),
        })?;
        let mut files: Vec<String> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(Error::Checkpoint {
                path: index,
                message: "weight_map lists no files".into(),
            });
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::Checkpoint {
            path: dir.join("pytorch_model.bin"),
            message: "PyTorch pickles are not loaded here (they can run code); save the model as \
                      model.safetensors (transformers: save_pretrained with safe_serialization=True)"
                .into(),
        });
    }
    Err(Error::NotFound(dir.display().to_string()))
}
