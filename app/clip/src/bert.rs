//! A BERT encoder as Hugging Face's `BertModel` computes it (post-norm layers, absolute positions, token
//! types, key-padding mask): the text tower of BiomedCLIP and other open_clip models with a Hugging Face
//! text encoder.

use candle_core::{IndexOp, Tensor};

use crate::config::Activation;
use crate::error::{Error, Result};
use crate::model::{Attention, EncoderOutput, Fwd, LayerNorm, Linear, Mlp, TextBatch, TextOutput};
use crate::weights::Weights;

/// `prefix.name`, or `name` for weights saved without a prefix (a bare `BertModel`).
fn at(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// How the sequence is reduced to one vector (open_clip's `hf_pooler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The `[CLS]` token's last hidden state (`cls_last_hidden_state_pooler`, BiomedCLIP).
    Cls,
    /// BERT's own pooler: dense + tanh over `[CLS]` (`cls_pooler`).
    ClsPooler,
    /// Mean over real tokens (`mean_pooler`).
    Mean,
}

impl Pooling {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cls_last_hidden_state_pooler" => Pooling::Cls,
            "cls_pooler" => Pooling::ClsPooler,
            "mean_pooler" => Pooling::Mean,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    pub pooling: Pooling,
}

impl BertConfig {
    /// The shape read off the weights under `prefix` (`…embeddings.word_embeddings.weight` and so on),
    /// with `BertConfig`'s defaults for what weights cannot tell: exact GELU, eps 1e-12, pad id 0, and
    /// 64-wide heads (every BERT base/large and PubMedBERT).
    pub fn infer(w: &Weights, prefix: &str, pooling: Pooling) -> Result<Self> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            w.shape(&at(prefix, name))
                .ok_or_else(|| w.missing(&at(prefix, name)))
        };
        let word = shape("embeddings.word_embeddings.weight")?;
        let pos = shape("embeddings.position_embeddings.weight")?;
        let types = shape("embeddings.token_type_embeddings.weight")?;
        let inter = shape("encoder.layer.0.intermediate.dense.weight")?;
        let (&[vocab, hidden], &[max_pos, _], &[type_vocab, _], &[intermediate, _]) = (
            word.as_slice(),
            pos.as_slice(),
            types.as_slice(),
            inter.as_slice(),
        ) else {
            return Err(w.bad(&format!(
                "{prefix}: the BERT embedding or layer tensors are not matrices"
            )));
        };
        let layers = (0..)
            .take_while(|i| {
                w.contains(&at(
                    prefix,
                    &format!("encoder.layer.{i}.attention.self.query.weight"),
                ))
            })
            .count();
        Ok(BertConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: (hidden / 64).max(1),
            max_position_embeddings: max_pos,
            type_vocab_size: type_vocab,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            pooling,
        })
    }

    /// A Hugging Face `BertConfig` (`config.json` of a BERT model), with its defaults.
    pub fn from_hf_json(path: &std::path::Path, json: &str, pooling: Pooling) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a BERT config.json: {e}"),
        })?;
        let n = |k: &str, d: usize| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map_or(d, |x| x as usize)
        };
        let act = v
            .get("hidden_act")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("gelu");
        let hidden_act = Activation::parse(act).ok_or_else(|| Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "hidden_act \"{act}\" is not supported (gelu, gelu_new, quick_gelu, relu)"
            ),
        })?;
        let cfg = BertConfig {
            vocab_size: n("vocab_size", 30522),
            hidden_size: n("hidden_size", 768),
            intermediate_size: n("intermediate_size", 3072),
            num_hidden_layers: n("num_hidden_layers", 12),
            num_attention_heads: n("num_attention_heads", 12),
            max_position_embeddings: n("max_position_embeddings", 512),
            type_vocab_size: n("type_vocab_size", 2),
            hidden_act,
            layer_norm_eps: v
                .get("layer_norm_eps")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(1e-12),
            pad_token_id: n("pad_token_id", 0) as u32,
            pooling,
        };
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    cfg.hidden_size, cfg.num_attention_heads
                ),
            });
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone)]
pub struct BertLayer {
    pub attention: Attention,
    /// After attention + residual (`attention.output.LayerNorm`).
    pub norm1: LayerNorm,
    pub mlp: Mlp,
    /// After MLP + residual (`output.LayerNorm`).
    pub norm2: LayerNorm,
}

impl BertLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        fwd: Fwd,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (a, probs) = self.attention.forward(x, mask, fwd)?;
        let x = self.norm1.forward(&(x + a)?, fwd)?;
        let m = self.mlp.forward(&x)?;
        Ok((self.norm2.forward(&(x + m)?, fwd)?, probs))
    }
}

#[derive(Debug, Clone)]
pub struct BertText {
    pub config: BertConfig,
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Tensor,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    /// BERT's pooler (dense + tanh), only for [`Pooling::ClsPooler`].
    pub pooler: Option<Linear>,
    /// Tokens the tokenizer produces at most (open_clip's `context_length`; ≤ the position table).
    pub context_length: usize,
}

impl BertText {
    pub fn load(w: &Weights, prefix: &str, c: &BertConfig, context_length: usize) -> Result<Self> {
        let h = c.hidden_size;
        let ln = |name: &str| LayerNorm::load(w, &at(prefix, name), h, c.layer_norm_eps);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = at(prefix, &format!("encoder.layer.{i}"));
                Ok(BertLayer {
                    attention: Attention::from_parts(
                        Linear::load(w, &format!("{p}.attention.self.query"), h, h, true)?,
                        Linear::load(w, &format!("{p}.attention.self.key"), h, h, true)?,
                        Linear::load(w, &format!("{p}.attention.self.value"), h, h, true)?,
                        Linear::load(w, &format!("{p}.attention.output.dense"), h, h, true)?,
                        c.num_attention_heads,
                    ),
                    norm1: LayerNorm::load(
                        w,
                        &format!("{p}.attention.output.LayerNorm"),
                        h,
                        c.layer_norm_eps,
                    )?,
                    mlp: Mlp {
                        fc1: Linear::load(
                            w,
                            &format!("{p}.intermediate.dense"),
                            h,
                            c.intermediate_size,
                            true,
                        )?,
                        fc2: Linear::load(
                            w,
                            &format!("{p}.output.dense"),
                            c.intermediate_size,
                            h,
                            true,
                        )?,
                        act: c.hidden_act,
                    },
                    norm2: LayerNorm::load(
                        w,
                        &format!("{p}.output.LayerNorm"),
                        h,
                        c.layer_norm_eps,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pooler = if c.pooling == Pooling::ClsPooler {
            Some(Linear::load(w, &at(prefix, "pooler.dense"), h, h, true)?)
        } else {
            None
        };
        Ok(BertText {
            word_embeddings: w.get(
                &at(prefix, "embeddings.word_embeddings.weight"),
                &[c.vocab_size, h],
            )?,
            position_embeddings: w.get(
                &at(prefix, "embeddings.position_embeddings.weight"),
                &[c.max_position_embeddings, h],
            )?,
            token_type_embeddings: w.get(
                &at(prefix, "embeddings.token_type_embeddings.weight"),
                &[c.type_vocab_size, h],
            )?,
            embeddings_norm: ln("embeddings.LayerNorm")?,
            layers,
            pooler,
            context_length: context_length.clamp(2, c.max_position_embeddings),
            config: c.clone(),
        })
    }

    pub fn forward(&self, batch: &TextBatch, fwd: Fwd) -> Result<TextOutput> {
        let (b, l) = batch.check(self.config.max_position_embeddings, self.config.vocab_size)?;
        let dev = self.word_embeddings.device();
        let dtype = self.word_embeddings.dtype();
        let d = self.config.hidden_size;
        let flat: Vec<u32> = batch.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * l, dev)?;
        let x = self
            .word_embeddings
            .index_select(&ids, 0)?
            .reshape((b, l, d))?
            .broadcast_add(&self.position_embeddings.narrow(0, 0, l)?)?
            .broadcast_add(&self.token_type_embeddings.i(0)?)?;
        let x = self.embeddings_norm.forward(&x, fwd)?;

        // Real tokens: the batch's mask, else open_clip's rule (id != pad).
        let real: Vec<Vec<bool>> = match &batch.mask {
            Some(m) => m
                .iter()
                .map(|r| r.iter().map(|&v| v != 0).collect())
                .collect(),
            None => batch
                .ids
                .iter()
                .map(|r| r.iter().map(|&t| t != self.config.pad_token_id).collect())
                .collect(),
        };
        let mut m = vec![0f32; b * l];
        for (bi, row) in real.iter().enumerate() {
            for (j, &keep) in row.iter().enumerate().take(l) {
                if !keep {
                    m[bi * l + j] = f32::MIN;
                }
            }
        }
        let mask = Tensor::from_vec(m, (b, 1, 1, l), dev)?.to_dtype(dtype)?;

        let mut x = x;
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        for layer in &self.layers {
            if fwd.hidden_states {
                hidden_states.push(x.clone());
            }
            let (y, probs) = layer.forward(&x, Some(&mask), fwd)?;
            if fwd.attentions {
                attentions.push(probs);
            }
            x = y;
        }
        if fwd.hidden_states {
            hidden_states.push(x.clone());
        }
        let pooled = match self.config.pooling {
            Pooling::Cls => x.i((.., 0))?,
            Pooling::ClsPooler => match &self.pooler {
                Some(p) => p.forward(&x.i((.., 0))?)?.tanh()?,
                None => x.i((.., 0))?,
            },
            Pooling::Mean => {
                let keep: Vec<f32> = real
                    .iter()
                    .flat_map(|r| r.iter().map(|&k| if k { 1.0 } else { 0.0 }))
                    .collect();
                let keep = Tensor::from_vec(keep, (b, l, 1), dev)?.to_dtype(dtype)?;
                let sum = x.broadcast_mul(&keep)?.sum(1)?;
                sum.broadcast_div(&keep.sum(1)?)?
            }
        };
        Ok(TextOutput {
            last_hidden_state: x.clone(),
            pooled,
            encoder: EncoderOutput {
                last_hidden_state: x,
                hidden_states,
                attentions,
            },
        })
    }
}
