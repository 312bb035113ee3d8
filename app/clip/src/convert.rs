//! OpenAI-format CLIP checkpoints (OpenAI's own state dicts, CheXzero) → the Hugging Face layout radclip loads.
//!
//! PyTorch `.pt` files are read with candle's restricted unpickler, which rebuilds tensors and never runs
//! code from the file. The config is inferred from tensor shapes; heads default to OpenAI's width / 64.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result, first_line};

pub struct ConvertOptions {
    pub vision_heads: Option<usize>,
    pub text_heads: Option<usize>,
}

fn bad(path: &Path, message: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let is_st = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let list: Vec<(String, Tensor)> = if is_st {
        candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| {
                bad(
                    path,
                    format!("not a readable safetensors file ({})", first_line(&e)),
                )
            })?
            .into_iter()
            .collect()
    } else {
        candle_core::pickle::read_all(path).map_err(|e| {
            bad(
                path,
                format!("not a readable PyTorch state dict ({})", first_line(&e)),
            )
        })?
    };
    // DataParallel and Lightning leave prefixes; OpenAI's names start at `visual.` / `transformer.`.
    Ok(list
        .into_iter()
        .map(|(k, t)| {
            let k = k
                .strip_prefix("module.")
                .or_else(|| k.strip_prefix("model."))
                .unwrap_or(&k)
                .to_string();
            (k, t)
        })
        .collect())
}

fn count_blocks(sd: &HashMap<String, Tensor>, prefix: &str) -> usize {
    (0..)
        .take_while(|i| sd.contains_key(&format!("{prefix}.resblocks.{i}.attn.in_proj_weight")))
        .count()
}

/// Converts `input` (.pt state dict or .safetensors with OpenAI names) into `out_dir/config.json` and
/// `out_dir/model.safetensors`. Returns the folder.
pub fn convert_openai(input: &Path, out_dir: &Path, opts: &ConvertOptions) -> Result<PathBuf> {
    let sd = read_tensors(input)?;
    let get = |name: &str| -> Result<Tensor> {
        sd.get(name)
            .map(|t| t.to_dtype(DType::F32))
            .transpose()?
            .ok_or_else(|| {
                bad(
                    input,
                    format!("tensor \"{name}\" is missing (not an OpenAI-format CLIP)"),
                )
            })
    };
    let conv = get("visual.conv1.weight")?;
    let (vw, _, patch, _) = conv.dims4()?;
    let vpos = get("visual.positional_embedding")?.dim(0)?;
    let grid = ((vpos.saturating_sub(1)) as f64).sqrt().round() as usize;
    if grid * grid + 1 != vpos {
        return Err(bad(
            input,
            format!("{vpos} vision positions are not a square grid plus one"),
        ));
    }
    let tok = get("token_embedding.weight")?;
    let (vocab, tw) = tok.dims2()?;
    let context = get("positional_embedding")?.dim(0)?;
    let proj = get("text_projection")?.dim(1)?;
    let v_layers = count_blocks(&sd, "visual.transformer");
    let t_layers = count_blocks(&sd, "transformer");
    let v_inter = get("visual.transformer.resblocks.0.mlp.c_fc.weight")?.dim(0)?;
    let t_inter = get("transformer.resblocks.0.mlp.c_fc.weight")?.dim(0)?;
    let vh = opts.vision_heads.unwrap_or(vw / 64).max(1);
    let th = opts.text_heads.unwrap_or(tw / 64).max(1);

    let mut out: HashMap<String, Tensor> = HashMap::new();
    let mut put = |k: String, t: Tensor| {
        out.insert(k, t);
    };
    let blocks = |put: &mut dyn FnMut(String, Tensor),
                  oa: &str,
                  hf: &str,
                  n: usize,
                  d: usize|
     -> Result<()> {
        for i in 0..n {
            let (o, h) = (format!("{oa}.resblocks.{i}"), format!("{hf}.layers.{i}"));
            let w = get(&format!("{o}.attn.in_proj_weight"))?;
            let b = get(&format!("{o}.attn.in_proj_bias"))?;
            for (j, p) in ["q", "k", "v"].iter().enumerate() {
                put(
                    format!("{h}.self_attn.{p}_proj.weight"),
                    w.narrow(0, j * d, d)?.contiguous()?,
                );
                put(
                    format!("{h}.self_attn.{p}_proj.bias"),
                    b.narrow(0, j * d, d)?.contiguous()?,
                );
            }
            for (a, z) in [
                ("attn.out_proj", "self_attn.out_proj"),
                ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ] {
                put(format!("{h}.{z}.weight"), get(&format!("{o}.{a}.weight"))?);
                put(format!("{h}.{z}.bias"), get(&format!("{o}.{a}.bias"))?);
            }
        }
        Ok(())
    };
    let v = "vision_model";
    put(format!("{v}.embeddings.patch_embedding.weight"), conv);
    put(
        format!("{v}.embeddings.class_embedding"),
        get("visual.class_embedding")?,
    );
    put(
        format!("{v}.embeddings.position_embedding.weight"),
        get("visual.positional_embedding")?,
    );
    for (a, z) in [("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")] {
        put(
            format!("{v}.{z}.weight"),
            get(&format!("visual.{a}.weight"))?,
        );
        put(format!("{v}.{z}.bias"), get(&format!("visual.{a}.bias"))?);
    }
    blocks(
        &mut put,
        "visual.transformer",
        &format!("{v}.encoder"),
        v_layers,
        vw,
    )?;
    put(
        "visual_projection.weight".into(),
        get("visual.proj")?.t()?.contiguous()?,
    );
    let t = "text_model";
    put(format!("{t}.embeddings.token_embedding.weight"), tok);
    put(
        format!("{t}.embeddings.position_embedding.weight"),
        get("positional_embedding")?,
    );
    blocks(
        &mut put,
        "transformer",
        &format!("{t}.encoder"),
        t_layers,
        tw,
    )?;
    put(
        format!("{t}.final_layer_norm.weight"),
        get("ln_final.weight")?,
    );
    put(format!("{t}.final_layer_norm.bias"), get("ln_final.bias")?);
    put(
        "text_projection.weight".into(),
        get("text_projection")?.t()?.contiguous()?,
    );
    put("logit_scale".into(), get("logit_scale")?.reshape(())?);

    // OpenAI's text tower pools at the highest id (its end token): the last two ids are BOS and EOS.
    let config = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": proj,
        "text_config": {
            "vocab_size": vocab, "hidden_size": tw, "intermediate_size": t_inter,
            "num_hidden_layers": t_layers, "num_attention_heads": th, "max_position_embeddings": context,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": 0,
            "projection_dim": proj
        },
        "vision_config": {
            "hidden_size": vw, "intermediate_size": v_inter, "num_hidden_layers": v_layers,
            "num_attention_heads": vh, "image_size": grid * patch, "patch_size": patch,
            "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": proj
        },
        "radclip_converted_from": input.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    let io = |path: &Path, source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    // Written under temporary names, then renamed, so a failed conversion leaves no half model behind.
    let tmp_st = out_dir.join(".model.safetensors.partial");
    candle_core::safetensors::save(&out, &tmp_st)?;
    let tmp_cfg = out_dir.join(".config.json.partial");
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Input(e.to_string()))?;
    std::fs::write(&tmp_cfg, text).map_err(|e| io(&tmp_cfg, e))?;
    let st = out_dir.join("model.safetensors");
    std::fs::rename(&tmp_st, &st).map_err(|e| io(&st, e))?;
    let cfg = out_dir.join("config.json");
    std::fs::rename(&tmp_cfg, &cfg).map_err(|e| io(&cfg, e))?;
    Ok(out_dir.to_path_buf())
}

/// Files of an open_clip folder that travel with its weights.
const OPEN_CLIP_SIDE_FILES: [&str; 7] = [
    crate::openclip::CONFIG_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "radclip.toml",
    "findings.toml",
];

/// Converts an open_clip folder published with a PyTorch pickle (`open_clip_pytorch_model.bin`, as
/// BiomedCLIP is) into `out_dir` with `open_clip_model.safetensors` and the folder's config and tokenizer
/// files. The result is loaded once before it is kept, so a checkpoint radclip cannot use fails here.
/// The input folder is only read.
pub fn convert_open_clip(input: &Path, out_dir: &Path) -> Result<PathBuf> {
    let (dir, weights) = if input.is_dir() {
        let w = ["open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth"]
            .iter()
            .map(|n| input.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::NotFound(input.display().to_string()))?;
        (input.to_path_buf(), w)
    } else {
        let parent = input.parent().unwrap_or(Path::new(".")).to_path_buf();
        (parent, input.to_path_buf())
    };
    let cfg = crate::openclip::OpenClipConfig::from_dir(&dir)?;
    if same_folder(&dir, out_dir) {
        return Err(Error::Input(format!(
            "{}: write the converted model to a new folder (--out), not into the input",
            out_dir.display()
        )));
    }
    let sd = read_tensors(&weights)?;
    let io = |path: &Path, source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let tmp_st = out_dir.join(".open_clip_model.safetensors.partial");
    candle_core::safetensors::save(&sd, &tmp_st)?;
    let check =
        crate::weights::Weights::open(std::slice::from_ref(&tmp_st), DType::F32, &Device::Cpu)
            .and_then(|w| crate::model::ClipModel::load_open_clip(&cfg, &w));
    if let Err(e) = check {
        let _ = std::fs::remove_file(&tmp_st);
        return Err(e);
    }
    for name in OPEN_CLIP_SIDE_FILES {
        let src = dir.join(name);
        if src.is_file() {
            let tmp = out_dir.join(format!(".{name}.partial"));
            std::fs::copy(&src, &tmp).map_err(|e| io(&src, e))?;
            let dst = out_dir.join(name);
            std::fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))?;
        }
    }
    let st = out_dir.join("open_clip_model.safetensors");
    std::fs::rename(&tmp_st, &st).map_err(|e| io(&st, e))?;
    Ok(out_dir.to_path_buf())
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
