//! The Hugging Face `CLIPConfig` (`config.json`), read field by field with HF's own defaults for
//! anything the file leaves out. Nothing about a model is hard-coded elsewhere.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Activation of the MLP blocks, as named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: the original OpenAI checkpoints.
    QuickGelu,
    /// Exact erf GELU (`gelu`).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Activation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
}

#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per side at the trained input size.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Debug, Clone)]
pub struct ClipConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub projection_dim: usize,
}

// Raw JSON shapes; every field optional so HF's defaults apply to what a file omits.
#[derive(Deserialize, Default)]
struct RawText {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<i64>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<i64>,
}

#[derive(Deserialize, Default)]
struct RawVision {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_channels: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
}

#[derive(Deserialize)]
struct RawClip {
    text_config: Option<RawText>,
    vision_config: Option<RawVision>,
    projection_dim: Option<usize>,
}

fn act(path: &Path, s: Option<String>) -> Result<Activation> {
    let s = s.unwrap_or_else(|| "quick_gelu".into());
    Activation::parse(&s).ok_or_else(|| Error::Config {
        path: path.to_path_buf(),
        message: format!("hidden_act \"{s}\" is not supported (quick_gelu, gelu, gelu_new, relu)"),
    })
}

impl ClipConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &text)
    }

    /// `path` only names the source in error messages.
    pub fn from_json(path: &Path, json: &str) -> Result<Self> {
        let raw: RawClip = serde_json::from_str(json).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a CLIP config.json: {e}"),
        })?;
        let t = raw.text_config.unwrap_or_default();
        let v = raw.vision_config.unwrap_or_default();
        // Defaults are those of transformers' CLIPTextConfig / CLIPVisionConfig.
        let cfg = ClipConfig {
            text: TextConfig {
                vocab_size: t.vocab_size.unwrap_or(49408),
                hidden_size: t.hidden_size.unwrap_or(512),
                intermediate_size: t.intermediate_size.unwrap_or(2048),
                num_hidden_layers: t.num_hidden_layers.unwrap_or(12),
                num_attention_heads: t.num_attention_heads.unwrap_or(8),
                max_position_embeddings: t.max_position_embeddings.unwrap_or(77),
                hidden_act: act(path, t.hidden_act)?,
                layer_norm_eps: t.layer_norm_eps.unwrap_or(1e-5),
                pad_token_id: t.pad_token_id.unwrap_or(1),
                bos_token_id: t.bos_token_id.unwrap_or(49406),
                eos_token_id: t.eos_token_id.unwrap_or(49407),
            },
            vision: VisionConfig {
                hidden_size: v.hidden_size.unwrap_or(768),
                intermediate_size: v.intermediate_size.unwrap_or(3072),
                num_hidden_layers: v.num_hidden_layers.unwrap_or(12),
                num_attention_heads: v.num_attention_heads.unwrap_or(12),
                num_channels: v.num_channels.unwrap_or(3),
                image_size: v.image_size.unwrap_or(224),
                patch_size: v.patch_size.unwrap_or(32),
                hidden_act: act(path, v.hidden_act)?,
                layer_norm_eps: v.layer_norm_eps.unwrap_or(1e-5),
            },
            projection_dim: raw.projection_dim.unwrap_or(512),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Config {
                path: path.to_path_buf(),
                message,
            })
        };
        let (t, v) = (&self.text, &self.vision);
        for (name, hidden, heads) in [
            ("text", t.hidden_size, t.num_attention_heads),
            ("vision", v.hidden_size, v.num_attention_heads),
        ] {
            if heads == 0 || hidden == 0 || hidden % heads != 0 {
                return bad(format!(
                    "{name} hidden_size {hidden} is not divisible by num_attention_heads {heads}"
                ));
            }
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return bad(format!(
                "vision image_size {} and patch_size {} do not make a patch grid",
                v.image_size, v.patch_size
            ));
        }
        if t.max_position_embeddings < 2 || t.vocab_size == 0 || self.projection_dim == 0 {
            return bad("text context, vocabulary and projection sizes must be positive".into());
        }
        Ok(())
    }
}
