//! open_clip's hub layout (`open_clip_config.json` + `open_clip_model.safetensors`) for models made of a
//! timm ViT image tower and a Hugging Face BERT text tower, such as BiomedCLIP
//! (`microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`).
//!
//! open_clip names a timm architecture and a Hugging Face text model instead of giving their shapes, and
//! the text model's config is not in the repository; so widths, depths and sizes are read off the weights,
//! and what weights cannot tell takes the defaults of those libraries (timm ViT: exact GELU, eps 1e-6,
//! 64-wide heads unless the timm name says otherwise; BERT: see [`BertConfig::infer`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::Deserialize;

use crate::bert::{BertConfig, BertText, Pooling};
use crate::config::{Activation, VisionConfig};
use crate::error::{Error, Result};
use crate::model::{ClipModel, Linear, Projection, TextTower, VisionTransformer};
use crate::weights::Weights;

pub const CONFIG_FILE: &str = "open_clip_config.json";

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Size {
    One(usize),
    Two([usize; 2]),
}

#[derive(Deserialize, Default)]
struct RawVision {
    timm_model_name: Option<String>,
    timm_pool: Option<String>,
    timm_proj: Option<String>,
    image_size: Option<Size>,
}

#[derive(Deserialize, Default)]
struct RawText {
    hf_model_name: Option<String>,
    hf_tokenizer_name: Option<String>,
    hf_proj_type: Option<String>,
    hf_pooler_type: Option<String>,
    context_length: Option<usize>,
}

#[derive(Deserialize)]
struct RawModel {
    embed_dim: usize,
    #[serde(default)]
    vision_cfg: RawVision,
    #[serde(default)]
    text_cfg: RawText,
}

#[derive(Deserialize, Default)]
struct RawPreprocess {
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_cfg: RawModel,
    #[serde(default)]
    preprocess_cfg: RawPreprocess,
}

/// What radclip takes from `open_clip_config.json`.
#[derive(Debug, Clone)]
pub struct OpenClipConfig {
    pub path: PathBuf,
    pub embed_dim: usize,
    pub timm_model_name: String,
    pub image_size: usize,
    pub text_model_name: Option<String>,
    pub tokenizer_name: Option<String>,
    pub pooling: Pooling,
    pub mlp_projection: bool,
    pub context_length: usize,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

impl OpenClipConfig {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json(&path, &text)
    }

    pub fn from_json(path: &Path, json: &str) -> Result<Self> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig =
            serde_json::from_str(json).map_err(|e| bad(format!("not an open_clip config: {e}")))?;
        let m = raw.model_cfg;
        let Some(timm) = m.vision_cfg.timm_model_name else {
            return Err(bad(
                "this open_clip model has open_clip's own ViT, whose tensors use OpenAI's names: \
                 convert it with `radclip convert-openai open_clip_model.safetensors --out DIR`"
                    .into(),
            ));
        };
        if !timm.starts_with("vit_") {
            return Err(bad(format!(
                "timm image tower \"{timm}\" is not supported (timm ViTs are)"
            )));
        }
        // open_clip's default timm pool is "avg"; BiomedCLIP sets "" (timm's own class-token pooling).
        let pool = m.vision_cfg.timm_pool.unwrap_or_else(|| "avg".into());
        if !matches!(pool.as_str(), "" | "token") {
            return Err(bad(format!(
                "timm_pool \"{pool}\" is not supported (class-token pooling is)"
            )));
        }
        let proj = m.vision_cfg.timm_proj.unwrap_or_else(|| "linear".into());
        if proj != "linear" {
            return Err(bad(format!(
                "timm_proj \"{proj}\" is not supported (linear is)"
            )));
        }
        let image_size = match m.vision_cfg.image_size {
            None => 224,
            Some(Size::One(s)) => s,
            Some(Size::Two([h, w])) if h == w => h,
            Some(Size::Two([h, w])) => {
                return Err(bad(format!(
                    "non-square image size {h}×{w} is not supported"
                )));
            }
        };
        if m.text_cfg.hf_model_name.is_none() {
            return Err(bad(
                "only open_clip models with a Hugging Face (BERT) text tower are read in this layout"
                    .into(),
            ));
        }
        // open_clip's defaults for Hugging Face text towers.
        let pooler = m
            .text_cfg
            .hf_pooler_type
            .unwrap_or_else(|| "mean_pooler".into());
        let pooling = Pooling::parse(&pooler).ok_or_else(|| {
            bad(format!(
                "hf_pooler_type \"{pooler}\" is not supported (cls_last_hidden_state_pooler, cls_pooler, mean_pooler)"
            ))
        })?;
        let proj_type = m.text_cfg.hf_proj_type.unwrap_or_else(|| "mlp".into());
        let mlp_projection = match proj_type.as_str() {
            "mlp" => true,
            "linear" => false,
            other => {
                return Err(bad(format!(
                    "hf_proj_type \"{other}\" is not supported (mlp, linear)"
                )));
            }
        };
        let three = |v: Option<Vec<f32>>, name: &str| -> Result<Option<[f32; 3]>> {
            v.map(|v| {
                <[f32; 3]>::try_from(v.as_slice())
                    .map_err(|_| bad(format!("preprocess_cfg.{name} must have 3 values")))
            })
            .transpose()
        };
        Ok(OpenClipConfig {
            path: path.to_path_buf(),
            embed_dim: m.embed_dim,
            timm_model_name: timm,
            image_size,
            text_model_name: m.text_cfg.hf_model_name,
            tokenizer_name: m.text_cfg.hf_tokenizer_name,
            pooling,
            mlp_projection,
            context_length: m.text_cfg.context_length.unwrap_or(77),
            mean: three(raw.preprocess_cfg.mean, "mean")?,
            std: three(raw.preprocess_cfg.std, "std")?,
        })
    }
}

/// Heads of a timm ViT: the head count of its named size when the width is that size's, else timm's
/// 64-wide heads.
pub fn timm_heads(name: &str, width: usize) -> usize {
    let named = [
        ("tiny", 192, 3),
        ("small", 384, 6),
        ("base", 768, 12),
        ("large", 1024, 16),
        ("huge", 1280, 16),
    ];
    named
        .iter()
        .find(|(size, w, _)| *w == width && name.split('_').any(|p| p == *size))
        .map_or((width / 64).max(1), |&(_, _, h)| h)
}

/// The weights file of an open_clip folder.
pub fn weight_file(dir: &Path) -> Result<PathBuf> {
    for name in [
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.safetensors",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    for name in ["open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth"] {
        let p = dir.join(name);
        if p.is_file() {
            return Err(Error::Checkpoint {
                path: p,
                message: "PyTorch pickles are not loaded directly; convert once with \
                          `radclip convert-open-clip <folder> --out <new folder>`"
                    .into(),
            });
        }
    }
    Err(Error::NotFound(dir.display().to_string()))
}

/// Reads the vision tower's shape off the weights under `visual.trunk`.
fn vision_config(w: &Weights, cfg: &OpenClipConfig) -> Result<VisionConfig> {
    let p = "visual.trunk";
    let shape = |name: &str| {
        w.shape(&format!("{p}.{name}"))
            .ok_or_else(|| w.missing(&format!("{p}.{name}")))
    };
    let conv = shape("patch_embed.proj.weight")?;
    let fc1 = shape("blocks.0.mlp.fc1.weight")?;
    let (&[width, channels, patch, patch_w], &[inter, _]) = (conv.as_slice(), fc1.as_slice())
    else {
        return Err(w.bad("visual.trunk: patch embedding or MLP tensors have unexpected ranks"));
    };
    if patch != patch_w || patch == 0 {
        return Err(w.bad(&format!(
            "non-square {patch}×{patch_w} patches are not supported"
        )));
    }
    if w.contains(&format!("{p}.fc_norm.weight")) {
        return Err(w.bad("timm ViTs with average pooling (fc_norm) are not supported"));
    }
    let layers = (0..)
        .take_while(|i| w.contains(&format!("{p}.blocks.{i}.attn.qkv.weight")))
        .count();
    Ok(VisionConfig {
        hidden_size: width,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: timm_heads(&cfg.timm_model_name, width),
        num_channels: channels,
        image_size: cfg.image_size,
        patch_size: patch,
        hidden_act: Activation::Gelu,
        layer_norm_eps: 1e-6,
    })
}

impl ClipModel {
    /// Loads an open_clip folder (see the module docs).
    pub fn from_open_clip_dir(dir: &Path, device: &Device, dtype: DType) -> Result<ClipModel> {
        let cfg = OpenClipConfig::from_dir(dir)?;
        let w = Weights::open(&[weight_file(dir)?], dtype, device)?;
        Self::load_open_clip(&cfg, &w)
    }

    pub fn load_open_clip(cfg: &OpenClipConfig, w: &Weights) -> Result<ClipModel> {
        let vc = vision_config(w, cfg)?;
        let bc = BertConfig::infer(w, "text.transformer", cfg.pooling)?;
        let e = cfg.embed_dim;
        let text_projection = if cfg.mlp_projection {
            let hidden = (bc.hidden_size + e) / 2;
            Projection::Mlp(
                Linear::load(w, "text.proj.0", bc.hidden_size, hidden, false)?,
                Linear::load(w, "text.proj.2", hidden, e, false)?,
            )
        } else {
            Projection::Linear(Linear::load(w, "text.proj", bc.hidden_size, e, false)?)
        };
        Ok(ClipModel {
            vision: VisionTransformer::load_timm(w, "visual.trunk", &vc)?,
            visual_projection: Linear::load(w, "visual.head.proj", vc.hidden_size, e, false)?,
            text: TextTower::Bert(BertText::load(
                w,
                "text.transformer",
                &bc,
                cfg.context_length,
            )?),
            text_projection,
            logit_scale: w.get("logit_scale", &[])?,
            projection_dim: e,
        })
    }
}
