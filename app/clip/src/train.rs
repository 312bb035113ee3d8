//! Training a CLIP with candle autograd: parameters are `Var`s under Hugging Face `CLIPModel` names, the
//! model is the crate's own (run with `Fwd { grad: true }`, whose ops all have a backward pass), and a
//! trained model is saved in the layout the loader reads, so it loads like any checkpoint.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var};

use crate::config::{Activation, ClipConfig};
use crate::error::{Error, Result};
use crate::model::ClipModel;
use crate::weights::Weights;

/// A model whose every weight is a variable.
pub struct Trainable {
    pub config: ClipConfig,
    pub vars: Vec<(String, Var)>,
    pub model: ClipModel,
}

/// splitmix64 + Box–Muller: a seeded normal stream for initialisation (reproducible across platforms).
struct Normal(u64);

impl Normal {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f32 {
        let (u1, u2) = (self.unit(), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_new",
        Activation::Relu => "relu",
    }
}

/// The Hugging Face `config.json` of `c`.
pub fn config_json(c: &ClipConfig) -> serde_json::Value {
    let (t, v) = (&c.text, &c.vision);
    serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": c.projection_dim,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "vocab_size": t.vocab_size, "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size, "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": act_name(t.hidden_act), "layer_norm_eps": t.layer_norm_eps,
            "pad_token_id": t.pad_token_id, "bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id,
            "projection_dim": c.projection_dim
        },
        "vision_config": {
            "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers, "num_attention_heads": v.num_attention_heads,
            "num_channels": v.num_channels, "image_size": v.image_size, "patch_size": v.patch_size,
            "hidden_act": act_name(v.hidden_act), "layer_norm_eps": v.layer_norm_eps,
            "projection_dim": c.projection_dim
        }
    })
}

/// Every tensor of a `CLIPModel` with its shape and initial standard deviation (0 = LayerNorm-style:
/// weights 1, biases 0; negative = zeros).
fn layout(c: &ClipConfig) -> Vec<(String, Vec<usize>, f32)> {
    let mut out: Vec<(String, Vec<usize>, f32)> = Vec::new();
    let encoder = |p: &str, d: usize, inter: usize, layers: usize, out: &mut Vec<_>| {
        let std_attn = (d as f32).powf(-0.5) * (2.0 * layers as f32).powf(-0.5);
        for i in 0..layers {
            let l = format!("{p}.encoder.layers.{i}");
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push((format!("{l}.self_attn.{proj}.weight"), vec![d, d], std_attn));
                out.push((format!("{l}.self_attn.{proj}.bias"), vec![d], -1.0));
            }
            for ln in ["layer_norm1", "layer_norm2"] {
                out.push((format!("{l}.{ln}.weight"), vec![d], 0.0));
                out.push((format!("{l}.{ln}.bias"), vec![d], -1.0));
            }
            out.push((
                format!("{l}.mlp.fc1.weight"),
                vec![inter, d],
                (2.0 * d as f32).powf(-0.5),
            ));
            out.push((format!("{l}.mlp.fc1.bias"), vec![inter], -1.0));
            out.push((format!("{l}.mlp.fc2.weight"), vec![d, inter], std_attn));
            out.push((format!("{l}.mlp.fc2.bias"), vec![d], -1.0));
        }
    };
    let (t, v) = (&c.text, &c.vision);
    out.push((
        "text_model.embeddings.token_embedding.weight".into(),
        vec![t.vocab_size, t.hidden_size],
        0.02,
    ));
    out.push((
        "text_model.embeddings.position_embedding.weight".into(),
        vec![t.max_position_embeddings, t.hidden_size],
        0.01,
    ));
    encoder(
        "text_model",
        t.hidden_size,
        t.intermediate_size,
        t.num_hidden_layers,
        &mut out,
    );
    out.push((
        "text_model.final_layer_norm.weight".into(),
        vec![t.hidden_size],
        0.0,
    ));
    out.push((
        "text_model.final_layer_norm.bias".into(),
        vec![t.hidden_size],
        -1.0,
    ));
    let g = v.grid();
    let d = v.hidden_size;
    out.push((
        "vision_model.embeddings.class_embedding".into(),
        vec![d],
        (d as f32).powf(-0.5),
    ));
    out.push((
        "vision_model.embeddings.patch_embedding.weight".into(),
        vec![d, v.num_channels, v.patch_size, v.patch_size],
        0.02,
    ));
    out.push((
        "vision_model.embeddings.position_embedding.weight".into(),
        vec![g * g + 1, d],
        0.02,
    ));
    for ln in ["pre_layrnorm", "post_layernorm"] {
        out.push((format!("vision_model.{ln}.weight"), vec![d], 0.0));
        out.push((format!("vision_model.{ln}.bias"), vec![d], -1.0));
    }
    encoder(
        "vision_model",
        d,
        v.intermediate_size,
        v.num_hidden_layers,
        &mut out,
    );
    out.push((
        "visual_projection.weight".into(),
        vec![c.projection_dim, d],
        (d as f32).powf(-0.5),
    ));
    out.push((
        "text_projection.weight".into(),
        vec![c.projection_dim, t.hidden_size],
        (t.hidden_size as f32).powf(-0.5),
    ));
    out
}

impl Trainable {
    /// A freshly initialised model (seeded). Token embedding rows outside `used_tokens` start at zero:
    /// they never receive a gradient, and zeros keep the saved file small.
    pub fn init(
        config: ClipConfig,
        seed: u64,
        used_tokens: Option<&[u32]>,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = Normal(seed);
        let mut vars = Vec::new();
        let mut map = HashMap::new();
        let used: Option<std::collections::HashSet<usize>> =
            used_tokens.map(|u| u.iter().map(|&t| t as usize).collect());
        for (name, shape, std) in layout(&config) {
            let n: usize = shape.iter().product();
            let mut data: Vec<f32> = if std > 0.0 {
                (0..n).map(|_| rng.sample() * std).collect()
            } else if std == 0.0 {
                vec![1.0; n]
            } else {
                vec![0.0; n]
            };
            if name.ends_with("token_embedding.weight")
                && let Some(used) = &used
            {
                let w = shape[1];
                for (row, chunk) in data.chunks_mut(w).enumerate() {
                    if !used.contains(&row) {
                        chunk.fill(0.0);
                    }
                }
            }
            let var = Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?;
            map.insert(name.clone(), var.as_tensor().clone());
            vars.push((name, var));
        }
        let ls = Var::from_tensor(&Tensor::new((1.0f32 / 0.07).ln(), device)?)?;
        map.insert("logit_scale".into(), ls.as_tensor().clone());
        vars.push(("logit_scale".into(), ls));
        let model = ClipModel::load(config.clone(), &Weights::from_tensors(map, device))?;
        Ok(Trainable {
            config,
            vars,
            model,
        })
    }

    pub fn var_list(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Writes `config.json` and `model.safetensors` (in `dtype`) into `dir`, each through a temporary
    /// file and a rename.
    pub fn save(&self, dir: &Path, dtype: DType) -> Result<()> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tensors: HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().to_dtype(dtype)?)))
            .collect::<Result<_>>()?;
        let tmp = dir.join(".model.safetensors.partial");
        candle_core::safetensors::save(&tensors, &tmp)?;
        let st = dir.join("model.safetensors");
        std::fs::rename(&tmp, &st).map_err(|e| io(&st, e))?;
        let cfg = serde_json::to_string_pretty(&config_json(&self.config))
            .map_err(|e| Error::Input(e.to_string()))?;
        let tmp = dir.join(".config.json.partial");
        std::fs::write(&tmp, cfg + "\n").map_err(|e| io(&tmp, e))?;
        let path = dir.join("config.json");
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(())
    }
}

/// CLIP's symmetric contrastive loss with soft targets: `target` [B, B] gives, per image row, how much
/// each text is a match (rows sum to 1). With the identity it is CLIP's loss; with label-equality it
/// stops penalising the other studies that have the same findings (MedCLIP's semantic matching).
pub fn soft_clip_loss(
    image: &Tensor,
    text: &Tensor,
    scale: &Tensor,
    target: &Tensor,
) -> Result<Tensor> {
    let logits = image.matmul(&text.t()?)?.broadcast_mul(scale)?;
    let li = (target * candle_nn::ops::log_softmax(&logits, D::Minus1)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    let col_target = target.t()?;
    let col_target = col_target.broadcast_div(&col_target.sum_keepdim(D::Minus1)?)?;
    let lt = (col_target * candle_nn::ops::log_softmax(&logits.t()?, D::Minus1)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    Ok(((li + lt)? * -0.5)?)
}

/// Binary cross-entropy of the CheXzero pair decision: z = scale · (cos(image, positive) −
/// cos(image, negative)); `labels` 1 where the positive statement is true. Inputs are unit rows.
pub fn pair_loss(
    image: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    scale: &Tensor,
    labels: &Tensor,
) -> Result<Tensor> {
    let sp = (image * positive)?.sum(D::Minus1)?;
    let sn = (image * negative)?.sum(D::Minus1)?;
    let z = (sp - sn)?.broadcast_mul(scale)?;
    // softplus(-z) for y = 1, softplus(z) for y = 0: softplus(x) = relu(x) + log(1 + exp(-|x|)).
    let sign = ((labels * -2.0)? + 1.0)?; // y=1 → −1, y=0 → +1
    let x = (z * sign)?;
    let sp = (x.relu()? + ((x.abs()? * -1.0)?.exp()? + 1.0)?.log()?)?;
    Ok(sp.mean_all()?)
}

/// Localisation: per image, a softmax over its patches of scale · cos(patch, text) against the
/// finding's mask coverage (rows of `coverage` sum to 1; all-zero rows are ignored).
pub fn patch_loss(
    patches: &Tensor,
    text: &Tensor,
    scale: &Tensor,
    coverage: &Tensor,
) -> Result<Tensor> {
    // [B, N, P] · [B, P, 1] → [B, N]
    let s = patches
        .matmul(&text.unsqueeze(D::Minus1)?)?
        .squeeze(D::Minus1)?
        .broadcast_mul(scale)?;
    let ll = (coverage * candle_nn::ops::log_softmax(&s, D::Minus1)?)?.sum(D::Minus1)?;
    let rows = coverage
        .sum(D::Minus1)?
        .sum_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    Ok((ll.sum_all()? * (-1.0 / f64::from(rows.max(1.0))))?)
}
