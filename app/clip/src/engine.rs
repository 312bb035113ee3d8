//! A loaded model with everything needed to use it: tokenizer, preprocessing, model card; plus turning
//! 8-bit images into model input, and batched encoding. DICOM frames become such images in
//! `radclip-assist` (`frame`), so this crate needs no DICOM code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use crate::card::ModelCard;
use crate::error::{Error, Result};
use crate::hub;
use crate::model::ClipModel;
use crate::openclip::{self, OpenClipConfig};
use crate::preprocess::{Placement, Preprocess, Rgb8};
use crate::tokenizer::{ClipTokenizer, TextTokenizer, WordPieceTokenizer};

pub struct Engine {
    pub dir: PathBuf,
    /// The weights files the model was read from (for provenance).
    pub weights: Vec<PathBuf>,
    pub model: ClipModel,
    pub tokenizer: TextTokenizer,
    pub preprocess: Preprocess,
    pub card: ModelCard,
    /// Text features by prompt, so a new heatmap or finding list re-encodes only new prompts.
    text_cache: Mutex<HashMap<String, Tensor>>,
}

/// A file turned into model input.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub pixel_values: Tensor,
    pub placement: Placement,
    /// The 8-bit image the model saw before resizing (the rendered DICOM frame).
    pub image: Rgb8,
}

impl Engine {
    /// `spec`: a model folder, a cache entry, or `org/name` in the local Hugging Face cache.
    /// f32 on the CPU; f16 on a GPU, where half precision is the fast path.
    pub fn load(spec: &str, device: &Device) -> Result<Engine> {
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::F16
        };
        Self::load_with(spec, device, dtype)
    }

    /// Loads a Hugging Face `CLIPModel` folder, or an open_clip folder (`open_clip_config.json`).
    pub fn load_with(spec: &str, device: &Device, dtype: DType) -> Result<Engine> {
        let dir = hub::resolve(spec)?;
        let open_clip = dir.join(openclip::CONFIG_FILE).is_file();
        let weights = if open_clip {
            vec![openclip::weight_file(&dir)?]
        } else {
            crate::weights::weight_files(&dir)?
        };
        let (model, preprocess, tokenizer) = if open_clip {
            let cfg = OpenClipConfig::from_dir(&dir)?;
            let model = ClipModel::from_open_clip_dir(&dir, device, dtype)?;
            let mut pre = Preprocess::openai(model.vision.config.image_size);
            pre.mean = cfg.mean.unwrap_or(pre.mean);
            pre.std = cfg.std.unwrap_or(pre.std);
            let tok = wordpiece_for(&dir, &cfg, model.text.context_length())?;
            (model, pre, TextTokenizer::WordPiece(Box::new(tok)))
        } else {
            let model = ClipModel::from_dir(&dir, device, dtype)?;
            let pre = Preprocess::for_model(&dir, model.vision.config.image_size)?;
            let tok = ClipTokenizer::openai(model.text.context_length());
            (model, pre, TextTokenizer::Clip(tok))
        };
        let card = ModelCard::for_model(&dir)?;
        Ok(Engine {
            dir,
            weights,
            model,
            tokenizer,
            preprocess,
            card,
            text_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn prepare(&self, image: Rgb8) -> Result<Prepared> {
        let (pixel_values, placement) = self.preprocess.apply(&image, self.model.device())?;
        Ok(Prepared {
            pixel_values,
            placement,
            image,
        })
    }

    /// Image features [N, P] in batches of `batch_size`.
    pub fn encode_images(&self, inputs: &[&Prepared], batch_size: usize) -> Result<Tensor> {
        let mut out = Vec::new();
        for chunk in inputs.chunks(batch_size.max(1)) {
            let px: Vec<Tensor> = chunk.iter().map(|p| p.pixel_values.clone()).collect();
            out.push(self.model.image_features(&Tensor::stack(&px, 0)?)?);
        }
        if out.is_empty() {
            return Err(Error::Input("no images to encode".into()));
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// Text features [N, P], cached per prompt.
    pub fn encode_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        let mut cache = self.text_cache.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<&str> = texts
            .iter()
            .map(AsRef::as_ref)
            .filter(|t| !cache.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            let feats = self.model.text_features(&self.tokenizer.batch(&missing)?)?;
            for (i, t) in missing.iter().enumerate() {
                cache.insert((*t).to_string(), feats.get(i)?);
            }
        }
        let rows = texts
            .iter()
            .map(|t| {
                cache
                    .get(t.as_ref())
                    .cloned()
                    .ok_or_else(|| Error::Input("text cache lost an entry".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Err(Error::Input("no text to encode".into()));
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// The WordPiece files of an open_clip model: in its folder (BiomedCLIP's repository has them), else in
/// the local Hugging Face cache entry of `hf_tokenizer_name`.
fn wordpiece_for(dir: &Path, cfg: &OpenClipConfig, context: usize) -> Result<WordPieceTokenizer> {
    match WordPieceTokenizer::from_dir(dir, context) {
        Ok(t) => Ok(t),
        Err(e) => {
            let cached = cfg
                .tokenizer_name
                .as_deref()
                .and_then(|n| hub::resolve_any(n).ok());
            match cached {
                Some(d) => WordPieceTokenizer::from_dir(&d, context),
                None => Err(e),
            }
        }
    }
}
