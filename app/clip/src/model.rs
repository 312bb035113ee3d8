//! CLIP written out from candle ops, with the weight names of Hugging Face `CLIPModel`.
//!
//! Our own rather than candle-transformers' `clip`: that one has only QuickGELU, a fixed LayerNorm eps, no
//! padding mask and private internals, and its fused LayerNorm/softmax have no backward. Here every
//! attention map, value and hidden state is reachable (heatmaps need them), and `Fwd { grad: true }` swaps
//! candle's fused kernels for ours in `ops`, which have a backward pass (Grad-CAM, training).

use candle_core::{D, DType, Device, IndexOp, Tensor};

use crate::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::weights::Weights;

type CResult<T> = candle_core::Result<T>;

/// How to run a forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fwd {
    /// Use only ops with a backward pass (slower).
    pub grad: bool,
    /// Keep every layer's input hidden state.
    pub hidden_states: bool,
    /// Keep every layer's attention probabilities.
    pub attentions: bool,
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(Linear {
            weight: w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
            bias: if bias {
                Some(w.get(&format!("{prefix}.bias"), &[out_dim])?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dims = x.dims();
        let in_dim = x.dim(D::Minus1)?;
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((lead, in_dim))?;
        let y = match crate::blas::linear(&x2, &self.weight)? {
            Some(y) => y,
            None => x2.matmul(&self.weight.t()?)?,
        };
        let y = match &self.bias {
            Some(b) => crate::ops::bias_add(&y, b)?,
            None => y,
        };
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(out)
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: w.get(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get(&format!("{prefix}.bias"), &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor, fwd: Fwd) -> CResult<Tensor> {
        if fwd.grad {
            crate::ops::affine(
                &crate::ops::normalize_last(x, self.eps)?,
                &self.weight,
                &self.bias,
            )
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

pub fn softmax_last(x: &Tensor, fwd: Fwd) -> CResult<Tensor> {
    // On the CPU ours is also the faster forward (vectorised exp); elsewhere candle's fused kernel.
    if fwd.grad || (x.device().is_cpu() && x.dtype() == candle_core::DType::F32) {
        crate::ops::softmax_last(x)
    } else {
        candle_nn::ops::softmax_last_dim(&x.contiguous()?)
    }
}

pub fn activate(x: &Tensor, act: Activation) -> CResult<Tensor> {
    match act {
        Activation::QuickGelu => crate::ops::quick_gelu(x),
        Activation::Gelu => crate::ops::gelu_erf(x),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
    pub head_dim: usize,
    /// q, k and v as one [3·D, D] projection, for inference: one larger product runs faster than three,
    /// and `q_proj`/`k_proj`/`v_proj` are views into it. `None` for parameters under training.
    pub qkv: Option<Linear>,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, dim: usize, heads: usize) -> Result<Self> {
        Ok(Attention::from_parts(
            Linear::load(w, &format!("{prefix}.q_proj"), dim, dim, true)?,
            Linear::load(w, &format!("{prefix}.k_proj"), dim, dim, true)?,
            Linear::load(w, &format!("{prefix}.v_proj"), dim, dim, true)?,
            Linear::load(w, &format!("{prefix}.out_proj"), dim, dim, true)?,
            heads,
        ))
    }

    pub fn from_parts(
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
        out_proj: Linear,
        heads: usize,
    ) -> Self {
        let dim = q_proj.weight.dims().first().copied().unwrap_or(0);
        let mut a = Attention {
            q_proj,
            k_proj,
            v_proj,
            out_proj,
            heads,
            head_dim: dim / heads.max(1),
            qkv: None,
        };
        // Loaded weights (not training variables): fuse; if that fails the three stay separate.
        let trained = [&a.q_proj, &a.k_proj, &a.v_proj]
            .iter()
            .any(|l| l.weight.track_op() || l.bias.as_ref().is_some_and(|b| b.track_op()));
        if !trained && let Ok(f) = a.fused() {
            a = f;
        }
        a
    }

    /// The same attention with q, k and v stored as one projection and viewed from it.
    fn fused(&self) -> CResult<Attention> {
        let ws = [&self.q_proj, &self.k_proj, &self.v_proj];
        let weight = Tensor::cat(&ws.map(|l| &l.weight), 0)?;
        let bias = match ws.map(|l| l.bias.as_ref()) {
            [Some(q), Some(k), Some(v)] => Some(Tensor::cat(&[q, k, v], 0)?),
            [None, None, None] => None,
            _ => candle_core::bail!("q, k and v disagree on having a bias"),
        };
        let d = self.q_proj.weight.dim(0)?;
        let part = |i: usize| -> CResult<Linear> {
            Ok(Linear {
                weight: weight.narrow(0, i * d, d)?,
                bias: bias.as_ref().map(|b| b.narrow(0, i * d, d)).transpose()?,
            })
        };
        Ok(Attention {
            q_proj: part(0)?,
            k_proj: part(1)?,
            v_proj: part(2)?,
            out_proj: self.out_proj.clone(),
            heads: self.heads,
            head_dim: self.head_dim,
            qkv: Some(Linear { weight, bias }),
        })
    }

    /// timm's fused `qkv` projection ([3·D, D], rows q then k then v) and its `proj`.
    fn load_fused(w: &Weights, prefix: &str, dim: usize, heads: usize) -> Result<Self> {
        let qkv = Linear::load(w, &format!("{prefix}.qkv"), dim, 3 * dim, true)?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear {
                weight: qkv.weight.narrow(0, i * dim, dim)?.contiguous()?,
                bias: match &qkv.bias {
                    Some(b) => Some(b.narrow(0, i * dim, dim)?.contiguous()?),
                    None => None,
                },
            })
        };
        Ok(Attention::from_parts(
            part(0)?,
            part(1)?,
            part(2)?,
            Linear::load(w, &format!("{prefix}.proj"), dim, dim, true)?,
            heads,
        ))
    }

    pub fn scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }

    /// [B, N, D] → [B, heads, N, head_dim].
    pub fn split_heads(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        x.reshape((b, n, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// [B, heads, N, head_dim] → [B, N, D].
    pub fn merge_heads(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, h, n, hd) = x.dims4()?;
        x.transpose(1, 2)?.reshape((b, n, h * hd))
    }

    /// Returns the output (before the residual) and the attention probabilities [B, heads, N, N].
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        fwd: Fwd,
    ) -> CResult<(Tensor, Tensor)> {
        let (q, k, v) = match (&self.qkv, fwd.grad) {
            (Some(qkv), false) => {
                // [B, N, 3·D] → [3, B, heads, N, head_dim] in one copy.
                let (b, n, _) = x.dims3()?;
                let t = qkv
                    .forward(x)?
                    .reshape((b, n, 3, self.heads, self.head_dim))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?;
                (t.get(0)?, t.get(1)?, t.get(2)?)
            }
            _ => (
                self.split_heads(&self.q_proj.forward(x)?)?,
                self.split_heads(&self.k_proj.forward(x)?)?,
                self.split_heads(&self.v_proj.forward(x)?)?,
            ),
        };
        let scores = crate::ops::batch_matmul(&q, &k.t()?, self.scale())?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = softmax_last(&scores, fwd)?;
        let ctx = self.merge_heads(&crate::ops::batch_matmul(&probs, &v, 1.0)?)?;
        Ok((self.out_proj.forward(&ctx)?, probs))
    }
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        self.fc2
            .forward(&activate(&self.fc1.forward(x)?, self.act)?)
    }
}

#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

impl EncoderLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        fwd: Fwd,
    ) -> CResult<(Tensor, Tensor)> {
        let (a, probs) = self
            .self_attn
            .forward(&self.layer_norm1.forward(x, fwd)?, mask, fwd)?;
        let x = (x + a)?;
        let m = self.mlp.forward(&self.layer_norm2.forward(&x, fwd)?)?;
        Ok(((x + m)?, probs))
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

/// An encoder's outputs; the lists are empty unless asked for in [`Fwd`].
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    pub last_hidden_state: Tensor,
    /// The input of every layer, then the last output: `layers + 1` entries.
    pub hidden_states: Vec<Tensor>,
    /// Per layer, [B, heads, N, N].
    pub attentions: Vec<Tensor>,
}

/// Tensor names of an encoder's layers: Hugging Face CLIP's, or timm's (fused qkv).
#[derive(Clone, Copy)]
enum Naming {
    Clip,
    Timm,
}

pub(crate) struct EncoderShape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    act: Activation,
    eps: f64,
}

impl Encoder {
    /// CLIP's layers (`layers.{i}.layer_norm1/self_attn/layer_norm2/mlp`).
    fn load(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self> {
        Self::load_named(w, prefix, s, Naming::Clip)
    }

    /// timm's ViT blocks (`{i}.norm1/attn/norm2/mlp`): the same pre-norm layer as CLIP's.
    fn load_timm(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self> {
        Self::load_named(w, prefix, s, Naming::Timm)
    }

    fn load_named(w: &Weights, prefix: &str, s: &EncoderShape, naming: Naming) -> Result<Self> {
        let (layer, ln1, attn, ln2) = match naming {
            Naming::Clip => ("layers.", "layer_norm1", "self_attn", "layer_norm2"),
            Naming::Timm => ("", "norm1", "attn", "norm2"),
        };
        let layers = (0..s.layers)
            .map(|i| {
                let p = format!("{prefix}.{layer}{i}");
                let a = format!("{p}.{attn}");
                Ok(EncoderLayer {
                    layer_norm1: LayerNorm::load(w, &format!("{p}.{ln1}"), s.hidden, s.eps)?,
                    self_attn: match naming {
                        Naming::Clip => Attention::load(w, &a, s.hidden, s.heads)?,
                        Naming::Timm => Attention::load_fused(w, &a, s.hidden, s.heads)?,
                    },
                    layer_norm2: LayerNorm::load(w, &format!("{p}.{ln2}"), s.hidden, s.eps)?,
                    mlp: Mlp {
                        fc1: Linear::load(
                            w,
                            &format!("{p}.mlp.fc1"),
                            s.hidden,
                            s.intermediate,
                            true,
                        )?,
                        fc2: Linear::load(
                            w,
                            &format!("{p}.mlp.fc2"),
                            s.intermediate,
                            s.hidden,
                            true,
                        )?,
                        act: s.act,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { layers })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, fwd: Fwd) -> CResult<EncoderOutput> {
        let mut x = x.clone();
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        for layer in &self.layers {
            if fwd.hidden_states {
                hidden_states.push(x.clone());
            }
            let (y, probs) = layer.forward(&x, mask, fwd)?;
            if fwd.attentions {
                attentions.push(probs);
            }
            x = y;
        }
        if fwd.hidden_states {
            hidden_states.push(x.clone());
        }
        Ok(EncoderOutput {
            last_hidden_state: x,
            hidden_states,
            attentions,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TextTransformer {
    pub config: TextConfig,
    pub token_embedding: Tensor,
    pub position_embedding: Tensor,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct TextOutput {
    /// After the final LayerNorm, [B, L, D].
    pub last_hidden_state: Tensor,
    /// The end-of-text token's state, [B, D].
    pub pooled: Tensor,
    pub encoder: EncoderOutput,
}

/// Token ids of a batch, with their padding mask (1 = real token).
#[derive(Debug, Clone)]
pub struct TextBatch {
    pub ids: Vec<Vec<u32>>,
    pub mask: Option<Vec<Vec<u32>>>,
}

impl TextBatch {
    /// (rows, length) of a batch fit for a text tower with `max_positions` positions and `vocab` tokens:
    /// not empty, rows of one length, ids inside the vocabulary.
    pub fn check(&self, max_positions: usize, vocab: usize) -> Result<(usize, usize)> {
        let b = self.ids.len();
        let l = self.ids.first().map_or(0, Vec::len);
        if b == 0 || l == 0 {
            return Err(Error::Input("no text to encode".into()));
        }
        if l > max_positions {
            return Err(Error::Input(format!(
                "{l} tokens exceed the model's context of {max_positions}"
            )));
        }
        if self.ids.iter().any(|r| r.len() != l) {
            return Err(Error::Input("token rows of different lengths".into()));
        }
        if self.ids.iter().flatten().any(|&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "a token id is outside the vocabulary of {vocab}"
            )));
        }
        Ok((b, l))
    }
}

impl TextTransformer {
    fn load(w: &Weights, c: &TextConfig) -> Result<Self> {
        let p = "text_model";
        Ok(TextTransformer {
            token_embedding: w.get(
                &format!("{p}.embeddings.token_embedding.weight"),
                &[c.vocab_size, c.hidden_size],
            )?,
            position_embedding: w.get(
                &format!("{p}.embeddings.position_embedding.weight"),
                &[c.max_position_embeddings, c.hidden_size],
            )?,
            encoder: Encoder::load(
                w,
                &format!("{p}.encoder"),
                &EncoderShape {
                    hidden: c.hidden_size,
                    intermediate: c.intermediate_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    act: c.hidden_act,
                    eps: c.layer_norm_eps,
                },
            )?,
            final_layer_norm: LayerNorm::load(
                w,
                &format!("{p}.final_layer_norm"),
                c.hidden_size,
                c.layer_norm_eps,
            )?,
            config: c.clone(),
        })
    }

    /// Where each sequence is pooled, as transformers does it: with the legacy `eos_token_id == 2` the
    /// largest id (the end token has the highest id in CLIP's vocabulary), else the first `eos_token_id`.
    pub fn pool_positions(&self, ids: &[Vec<u32>]) -> Vec<usize> {
        ids.iter()
            .map(|row| {
                if self.config.eos_token_id == 2 {
                    // First maximum, like torch.argmax.
                    let mut best = 0;
                    for (i, &t) in row.iter().enumerate() {
                        if row.get(best).is_some_and(|&b| t > b) {
                            best = i;
                        }
                    }
                    best
                } else {
                    row.iter()
                        .position(|&t| i64::from(t) == self.config.eos_token_id)
                        .unwrap_or(0)
                }
            })
            .collect()
    }

    pub fn forward(&self, batch: &TextBatch, fwd: Fwd) -> Result<TextOutput> {
        let (b, l) = batch.check(self.config.max_position_embeddings, self.config.vocab_size)?;
        let dev = self.token_embedding.device();
        let dtype = self.token_embedding.dtype();
        let flat: Vec<u32> = batch.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * l, dev)?;
        let d = self.config.hidden_size;
        let tok = self
            .token_embedding
            .index_select(&ids, 0)?
            .reshape((b, l, d))?;
        let pos = self.position_embedding.narrow(0, 0, l)?;
        let x = tok.broadcast_add(&pos)?;

        // Causal mask plus padding mask as one additive [B, 1, L, L] tensor.
        let mut m = vec![0f32; b * l * l];
        for bi in 0..b {
            let pad = batch.mask.as_ref().and_then(|mm| mm.get(bi));
            for i in 0..l {
                for j in 0..l {
                    let masked = j > i || pad.is_some_and(|p| p.get(j) == Some(&0));
                    if masked {
                        m[(bi * l + i) * l + j] = f32::MIN;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(m, (b, 1, l, l), dev)?.to_dtype(dtype)?;
        let enc = self.encoder.forward(&x, Some(&mask), fwd)?;
        let last = self.final_layer_norm.forward(&enc.last_hidden_state, fwd)?;
        let idx: Vec<u32> = self
            .pool_positions(&batch.ids)
            .into_iter()
            .enumerate()
            .map(|(bi, p)| (bi * l + p) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, b, dev)?;
        let pooled = last.reshape((b * l, d))?.index_select(&idx, 0)?;
        Ok(TextOutput {
            last_hidden_state: last,
            pooled,
            encoder: enc,
        })
    }
}

#[derive(Debug, Clone)]
pub struct VisionTransformer {
    pub config: VisionConfig,
    pub class_embedding: Tensor,
    /// The patch convolution as a matrix [D, C·p·p] (stride = kernel, so a conv is a matmul).
    pub patch_weight: Tensor,
    /// The patch convolution's bias (timm has one, CLIP has none).
    pub patch_bias: Option<Tensor>,
    pub position_embedding: Tensor,
    /// CLIP's `pre_layrnorm` (timm's `norm_pre`; plain timm ViTs have none).
    pub pre_layrnorm: Option<LayerNorm>,
    pub encoder: Encoder,
    /// CLIP's `post_layernorm` (timm's final `norm`), applied per token.
    pub post_layernorm: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// Encoder output, before `post_layernorm`, [B, 1 + gh·gw, D].
    pub last_hidden_state: Tensor,
    /// `post_layernorm` of the class token, [B, D].
    pub pooled: Tensor,
    pub encoder: EncoderOutput,
    /// The patch grid (rows, columns) of this input.
    pub grid: (usize, usize),
}

/// PyTorch's bicubic interpolation weights (A = -0.75, align_corners=False, edge clamped) from `n_in`
/// to `n_out` samples, as an [n_out, n_in] matrix.
pub fn bicubic_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let a = -0.75f64;
    let cubic1 = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let cubic2 = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    let scale = n_in as f64 / n_out as f64;
    let mut m = vec![0f32; n_out * n_in];
    for o in 0..n_out {
        let src = (o as f64 + 0.5) * scale - 0.5;
        let i0 = src.floor();
        let t = src - i0;
        let w = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
        for (k, wk) in w.iter().enumerate() {
            let idx = (i0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += *wk as f32;
        }
    }
    m
}

impl VisionTransformer {
    fn load(w: &Weights, c: &VisionConfig) -> Result<Self> {
        let p = "vision_model";
        let d = c.hidden_size;
        let g = c.grid();
        let conv = w.get(
            &format!("{p}.embeddings.patch_embedding.weight"),
            &[d, c.num_channels, c.patch_size, c.patch_size],
        )?;
        Ok(VisionTransformer {
            class_embedding: w.get(&format!("{p}.embeddings.class_embedding"), &[d])?,
            patch_weight: conv.reshape((d, c.num_channels * c.patch_size * c.patch_size))?,
            patch_bias: None,
            position_embedding: w.get(
                &format!("{p}.embeddings.position_embedding.weight"),
                &[g * g + 1, d],
            )?,
            pre_layrnorm: Some(LayerNorm::load(
                w,
                &format!("{p}.pre_layrnorm"),
                d,
                c.layer_norm_eps,
            )?),
            encoder: Encoder::load(
                w,
                &format!("{p}.encoder"),
                &EncoderShape {
                    hidden: d,
                    intermediate: c.intermediate_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    act: c.hidden_act,
                    eps: c.layer_norm_eps,
                },
            )?,
            post_layernorm: LayerNorm::load(
                w,
                &format!("{p}.post_layernorm"),
                d,
                c.layer_norm_eps,
            )?,
            config: c.clone(),
        })
    }

    /// A timm `VisionTransformer` under `prefix` (open_clip's `visual.trunk`) with class-token pooling.
    pub(crate) fn load_timm(w: &Weights, prefix: &str, c: &VisionConfig) -> Result<Self> {
        let p = prefix;
        let d = c.hidden_size;
        let g = c.grid();
        let conv = w.get(
            &format!("{p}.patch_embed.proj.weight"),
            &[d, c.num_channels, c.patch_size, c.patch_size],
        )?;
        let norm_pre = format!("{p}.norm_pre.weight");
        Ok(VisionTransformer {
            class_embedding: w.get(&format!("{p}.cls_token"), &[1, 1, d])?.reshape(d)?,
            patch_weight: conv.reshape((d, c.num_channels * c.patch_size * c.patch_size))?,
            patch_bias: Some(w.get(&format!("{p}.patch_embed.proj.bias"), &[d])?),
            position_embedding: w
                .get(&format!("{p}.pos_embed"), &[1, g * g + 1, d])?
                .reshape((g * g + 1, d))?,
            pre_layrnorm: if w.contains(&norm_pre) {
                Some(LayerNorm::load(
                    w,
                    &format!("{p}.norm_pre"),
                    d,
                    c.layer_norm_eps,
                )?)
            } else {
                None
            },
            encoder: Encoder::load_timm(
                w,
                &format!("{p}.blocks"),
                &EncoderShape {
                    hidden: d,
                    intermediate: c.intermediate_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    act: c.hidden_act,
                    eps: c.layer_norm_eps,
                },
            )?,
            post_layernorm: LayerNorm::load(w, &format!("{p}.norm"), d, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    /// Position embeddings for a gh × gw grid: the trained ones, or bicubically resized as transformers'
    /// `interpolate_pos_encoding` does.
    pub fn position_embeddings(&self, gh: usize, gw: usize) -> CResult<Tensor> {
        let g = self.config.grid();
        if gh == g && gw == g {
            return Ok(self.position_embedding.clone());
        }
        let d = self.config.hidden_size;
        let dev = self.position_embedding.device();
        let dtype = self.position_embedding.dtype();
        let cls = self.position_embedding.narrow(0, 0, 1)?;
        let grid = self
            .position_embedding
            .narrow(0, 1, g * g)?
            .to_dtype(DType::F32)?;
        let my = Tensor::from_vec(bicubic_matrix(g, gh), (gh, g), dev)?;
        let mx = Tensor::from_vec(bicubic_matrix(g, gw), (gw, g), dev)?;
        // Rows: [gh, g] @ [g, g·D] → [gh, g, D]; columns: per row, [gw, g] @ [g, D].
        let rows = my.matmul(&grid.reshape((g, g * d))?)?.reshape((gh, g, d))?;
        let cols = mx
            .unsqueeze(0)?
            .broadcast_as((gh, gw, g))?
            .contiguous()?
            .matmul(&rows)?;
        let patch = cols.reshape((gh * gw, d))?.to_dtype(dtype)?;
        Tensor::cat(&[&cls, &patch], 0)
    }

    /// Patch + class + position embeddings, after `pre_layrnorm` if any: the encoder's input.
    pub fn embed(&self, pixel_values: &Tensor, fwd: Fwd) -> Result<(Tensor, (usize, usize))> {
        let (b, c, h, w) = pixel_values.dims4()?;
        let p = self.config.patch_size;
        if c != self.config.num_channels {
            return Err(Error::Input(format!(
                "image has {c} channels, the model expects {}",
                self.config.num_channels
            )));
        }
        let (gh, gw) = (h / p, w / p);
        if gh == 0 || gw == 0 {
            return Err(Error::Input(format!(
                "image of {h}×{w} is smaller than one {p}×{p} patch"
            )));
        }
        let d = self.config.hidden_size;
        // Inputs arrive in f32 whatever the model's precision.
        let pixel_values = &pixel_values.to_dtype(self.patch_weight.dtype())?;
        // A stride-p conv leaves the remainder rows/columns out, as here.
        let px = pixel_values
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let patches = px.matmul(&self.patch_weight.t()?)?;
        let patches = match &self.patch_bias {
            Some(bias) => patches.broadcast_add(bias)?,
            None => patches,
        }
        .reshape((b, gh * gw, d))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        let x = x.broadcast_add(&self.position_embeddings(gh, gw)?)?;
        let x = match &self.pre_layrnorm {
            Some(ln) => ln.forward(&x, fwd)?,
            None => x,
        };
        Ok((x, (gh, gw)))
    }

    pub fn forward(&self, pixel_values: &Tensor, fwd: Fwd) -> Result<VisionOutput> {
        let (x, grid) = self.embed(pixel_values, fwd)?;
        let enc = self.encoder.forward(&x, None, fwd)?;
        let pooled = self
            .post_layernorm
            .forward(&enc.last_hidden_state.i((.., 0))?, fwd)?;
        Ok(VisionOutput {
            last_hidden_state: enc.last_hidden_state.clone(),
            pooled,
            encoder: enc,
            grid,
        })
    }
}

/// A text encoder: CLIP's causal transformer, or a BERT (open_clip models with a Hugging Face text tower).
#[derive(Debug, Clone)]
pub enum TextTower {
    Clip(TextTransformer),
    Bert(crate::bert::BertText),
}

impl TextTower {
    pub fn forward(&self, batch: &TextBatch, fwd: Fwd) -> Result<TextOutput> {
        match self {
            TextTower::Clip(t) => t.forward(batch, fwd),
            TextTower::Bert(t) => t.forward(batch, fwd),
        }
    }

    /// The longest token sequence the tokenizer should produce.
    pub fn context_length(&self) -> usize {
        match self {
            TextTower::Clip(t) => t.config.max_position_embeddings,
            TextTower::Bert(t) => t.context_length,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            TextTower::Clip(t) => t.config.hidden_size,
            TextTower::Bert(t) => t.config.hidden_size,
        }
    }
}

/// From a tower's pooled output to the joint embedding space.
#[derive(Debug, Clone)]
pub enum Projection {
    /// One matrix without bias (CLIP, timm `head.proj`).
    Linear(Linear),
    /// open_clip's `mlp` projection of Hugging Face text towers: Linear, exact GELU, Linear.
    Mlp(Linear, Linear),
}

impl Projection {
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Projection::Linear(l) => l.forward(x),
            Projection::Mlp(a, b) => b.forward(&a.forward(x)?.gelu_erf()?),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClipModel {
    pub text: TextTower,
    pub vision: VisionTransformer,
    pub visual_projection: Linear,
    pub text_projection: Projection,
    /// log of the logit scale (a scalar tensor).
    pub logit_scale: Tensor,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
}

impl ClipModel {
    /// A Hugging Face `CLIPModel`.
    pub fn load(config: ClipConfig, w: &Weights) -> Result<Self> {
        let p = config.projection_dim;
        Ok(ClipModel {
            text: TextTower::Clip(TextTransformer::load(w, &config.text)?),
            vision: VisionTransformer::load(w, &config.vision)?,
            visual_projection: Linear::load(
                w,
                "visual_projection",
                config.vision.hidden_size,
                p,
                false,
            )?,
            text_projection: Projection::Linear(Linear::load(
                w,
                "text_projection",
                config.text.hidden_size,
                p,
                false,
            )?),
            logit_scale: w.get("logit_scale", &[])?,
            projection_dim: p,
        })
    }

    pub fn device(&self) -> &Device {
        self.logit_scale.device()
    }

    pub fn dtype(&self) -> DType {
        self.logit_scale.dtype()
    }

    /// Projected, un-normalised image features [B, P], as HF `get_image_features`.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let out = self.vision.forward(pixel_values, Fwd::default())?;
        Ok(self.visual_projection.forward(&out.pooled)?)
    }

    /// Projected, un-normalised text features [B, P], as HF `get_text_features`.
    pub fn text_features(&self, batch: &TextBatch) -> Result<Tensor> {
        let out = self.text.forward(batch, Fwd::default())?;
        Ok(self.text_projection.forward(&out.pooled)?)
    }

    /// exp(logit_scale) as a number.
    pub fn logit_scale_value(&self) -> Result<f32> {
        Ok(self
            .logit_scale
            .to_dtype(DType::F32)?
            .exp()?
            .to_scalar::<f32>()?)
    }

    /// Cosine similarities times exp(logit_scale): [images, texts], as HF `logits_per_image`.
    pub fn logits_per_image(
        &self,
        image_features: &Tensor,
        text_features: &Tensor,
    ) -> Result<Tensor> {
        let i = l2_normalize(image_features)?;
        let t = l2_normalize(text_features)?;
        Ok(i.matmul(&t.t()?)?.broadcast_mul(&self.logit_scale.exp()?)?)
    }
}

/// Rows scaled to unit length.
pub fn l2_normalize(x: &Tensor) -> CResult<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
