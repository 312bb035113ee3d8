//! Parity with Hugging Face transformers on small random-weight CLIP models.
//! References come from `tests/fixtures/clip/make_refs.py` (transformers 5.23, PyTorch CPU, eager attention).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use radclip_clip::model::{Fwd, TextBatch};
use radclip_clip::{ClipModel, Error};

const TOL: f32 = 1e-4;
const CONFIGS: &[&str] = &["tiny-quickgelu", "tiny-gelu", "tiny-p14-legacy-eos"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/clip")
        .join(name)
}

fn refs(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as u32).collect())
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check(what: &str, cfg: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_diff(ours, theirs);
    println!("{cfg:>22} {what:<24} max |Δ| = {d:.2e}");
    assert!(d <= TOL, "{cfg}: {what} differs by {d}");
}

#[test]
fn every_output_matches_transformers() {
    for cfg in CONFIGS {
        let r = refs(cfg);
        let model = ClipModel::from_dir(&fixture(cfg), &Device::Cpu, DType::F32).unwrap();
        let batch = TextBatch {
            ids: rows(&r["input_ids"]),
            mask: Some(rows(&r["attention_mask"])),
        };
        let nomask = TextBatch {
            ids: batch.ids.clone(),
            mask: None,
        };
        let px = &r["pixel_values"];

        let img = model.image_features(px).unwrap();
        let txt = model.text_features(&batch).unwrap();
        check("image_embeds", cfg, &img, &r["image_embeds"]);
        check("text_embeds", cfg, &txt, &r["text_embeds"]);
        check(
            "text_embeds_nomask",
            cfg,
            &model.text_features(&nomask).unwrap(),
            &r["text_embeds_nomask"],
        );
        check(
            "logits_per_image",
            cfg,
            &model.logits_per_image(&img, &txt).unwrap(),
            &r["logits_per_image"],
        );

        let all = Fwd {
            hidden_states: true,
            attentions: true,
            ..Fwd::default()
        };
        let v = model.vision.forward(px, all).unwrap();
        let hs = Tensor::stack(&v.encoder.hidden_states, 0).unwrap();
        check("vision_hidden_states", cfg, &hs, &r["vision_hidden_states"]);
        check(
            "vision_last_attn",
            cfg,
            v.encoder.attentions.last().unwrap(),
            &r["vision_last_attn"],
        );
        check("vision_pooled", cfg, &v.pooled, &r["vision_pooled"]);

        let t = model.text.forward(&batch, all).unwrap();
        check(
            "text_last_hidden",
            cfg,
            &t.last_hidden_state,
            &r["text_last_hidden"],
        );
        check(
            "text_last_attn",
            cfg,
            t.encoder.attentions.last().unwrap(),
            &r["text_last_attn"],
        );
        let tn = model.text.forward(&nomask, Fwd::default()).unwrap();
        check(
            "text_last_hidden_nomask",
            cfg,
            &tn.last_hidden_state,
            &r["text_last_hidden_nomask"],
        );

        if let Some(large) = r.get("pixel_values_large") {
            let e = model.image_features(large).unwrap();
            check("image_embeds_large", cfg, &e, &r["image_embeds_large"]);
        }
    }
}

/// The composed ops used for autograd give the same numbers as the fused inference kernels.
#[test]
fn grad_mode_matches_inference_mode() {
    let cfg = "tiny-gelu";
    let r = refs(cfg);
    let model = ClipModel::from_dir(&fixture(cfg), &Device::Cpu, DType::F32).unwrap();
    let v = model
        .vision
        .forward(
            &r["pixel_values"],
            Fwd {
                grad: true,
                ..Fwd::default()
            },
        )
        .unwrap();
    check(
        "vision_pooled (grad ops)",
        cfg,
        &v.pooled,
        &r["vision_pooled"],
    );
}

fn copy_fixture(cfg: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(cfg).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &std::path::Path) -> String {
    match ClipModel::from_dir(dir, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("loaded a broken checkpoint"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_checkpoints_give_one_clear_error() {
    // Truncated weights.
    let d = copy_fixture("tiny-quickgelu");
    let st = d.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a readable safetensors"),
        "{e}"
    );

    // Garbage instead of weights.
    std::fs::write(&st, b"this is not a checkpoint").unwrap();
    let e = load_err(d.path());
    assert!(e.contains("model.safetensors"), "{e}");

    // Weights of another config: a shape mismatch names the tensor.
    let d = copy_fixture("tiny-quickgelu");
    std::fs::copy(
        fixture("tiny-gelu").join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let e = load_err(d.path());
    assert!(e.contains("tensor \"") && e.contains("shape"), "{e}");

    // A config the loader cannot honour.
    let d = copy_fixture("tiny-quickgelu");
    let cfg = std::fs::read_to_string(d.path().join("config.json")).unwrap();
    std::fs::write(
        d.path().join("config.json"),
        cfg.replacen("quick_gelu", "swish_glu", 1),
    )
    .unwrap();
    let e = load_err(d.path());
    assert!(e.contains("hidden_act") && e.contains("swish_glu"), "{e}");

    // No weights at all.
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-quickgelu").join("config.json"),
        d.path().join("config.json"),
    )
    .unwrap();
    assert!(matches!(
        ClipModel::from_dir(d.path(), &Device::Cpu, DType::F32),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn hf_cache_layout_resolves_offline() {
    let cache = tempfile::tempdir().unwrap();
    let entry = cache.path().join("models--radclip--tiny-clip");
    let snap = entry.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(entry.join("refs")).unwrap();
    std::fs::write(entry.join("refs/main"), "0123abcd\n").unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-quickgelu").join(f), snap.join(f)).unwrap();
    }
    // SAFETY of set_var: this is the only test in this binary that reads HF_HUB_CACHE.
    unsafe { std::env::set_var("HF_HUB_CACHE", cache.path()) };
    let dir = radclip_clip::hub::resolve("radclip/tiny-clip").unwrap();
    assert_eq!(dir, snap);
    assert_eq!(
        radclip_clip::hub::resolve(entry.to_str().unwrap()).unwrap(),
        snap
    );
    assert!(ClipModel::from_dir(&dir, &Device::Cpu, DType::F32).is_ok());
    assert!(radclip_clip::hub::resolve("radclip/not-there").is_err());
}

/// An OpenAI-format state dict (as CheXzero ships, saved with torch.save) converted by radclip gives the
/// transformers outputs of the HF model it was made from (`make_openai_format.py`).
#[test]
fn openai_format_checkpoint_converts_to_the_same_model() {
    use radclip_clip::convert::{ConvertOptions, convert_openai};
    let out = tempfile::tempdir().unwrap();
    let dir = convert_openai(
        &fixture("tiny-openai").join("model.pt"),
        out.path(),
        &ConvertOptions {
            vision_heads: Some(4),
            text_heads: Some(4),
        },
    )
    .unwrap();
    let r = refs("tiny-quickgelu");
    let model = ClipModel::from_dir(&dir, &Device::Cpu, DType::F32).unwrap();
    let batch = TextBatch {
        ids: rows(&r["input_ids"]),
        mask: Some(rows(&r["attention_mask"])),
    };
    let img = model.image_features(&r["pixel_values"]).unwrap();
    let txt = model.text_features(&batch).unwrap();
    check(
        "image_embeds (converted)",
        "tiny-openai",
        &img,
        &r["image_embeds"],
    );
    check(
        "text_embeds (converted)",
        "tiny-openai",
        &txt,
        &r["text_embeds"],
    );
    check(
        "logits (converted)",
        "tiny-openai",
        &model.logits_per_image(&img, &txt).unwrap(),
        &r["logits_per_image"],
    );

    // Not a checkpoint: one sentence naming the file.
    let junk = out.path().join("junk.pt");
    std::fs::write(&junk, b"PK\x03\x04 definitely not a zip").unwrap();
    let e = convert_openai(
        &junk,
        &out.path().join("x"),
        &ConvertOptions {
            vision_heads: None,
            text_heads: None,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("junk.pt"), "{e}");
    assert!(!out.path().join("x/model.safetensors").exists());
}

/// Half precision (the GPU path) runs the same code: checked here on the CPU against the f32 references.
#[test]
fn half_precision_follows_the_same_path() {
    let cfg = "tiny-quickgelu";
    let r = refs(cfg);
    let model = ClipModel::from_dir(&fixture(cfg), &Device::Cpu, DType::F16).unwrap();
    let batch = TextBatch {
        ids: rows(&r["input_ids"]),
        mask: Some(rows(&r["attention_mask"])),
    };
    let img = model
        .image_features(&r["pixel_values"])
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let txt = model
        .text_features(&batch)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let di = max_diff(&img, &r["image_embeds"]);
    let dt = max_diff(&txt, &r["text_embeds"]);
    println!("f16: image {di:.2e}, text {dt:.2e}");
    assert!(di < 2e-2 && dt < 2e-2, "f16 drifted: image {di}, text {dt}");
    let large = model
        .image_features(&r["pixel_values_large"])
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert!(max_diff(&large, &r["image_embeds_large"]) < 2e-2);
}
