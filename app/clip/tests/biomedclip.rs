//! BiomedCLIP's format (open_clip: timm ViT + Hugging Face BERT text tower, WordPiece, published as a
//! PyTorch pickle) against open_clip 3.3 itself on a tiny random-weight model made by
//! `tests/fixtures/clip/make_biomedclip_refs.py`: conversion, every output, tokenisation, preprocessing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use radclip_clip::engine::Engine;
use radclip_clip::heatmap::{EncodedImage, Method};
use radclip_clip::model::{Fwd, TextBatch};
use radclip_clip::preprocess::Rgb8;
use radclip_clip::{ClipModel, Error};

const TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip/tiny-biomedclip")
}

fn refs() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("reference.safetensors"), &Device::Cpu).unwrap()
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

fn check(what: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_diff(ours, theirs);
    println!("tiny-biomedclip {what:<24} max |Δ| = {d:.2e}");
    assert!(d <= TOL, "{what} differs by {d}");
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Converts the committed pickle into a temporary folder (the fixture folder is never written).
fn converted() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let before = listing(&fixture());
    radclip_clip::convert::convert_open_clip(&fixture(), tmp.path()).unwrap();
    assert_eq!(listing(&fixture()), before, "the input folder was modified");
    for f in [
        "open_clip_model.safetensors",
        "open_clip_config.json",
        "vocab.txt",
    ] {
        assert!(tmp.path().join(f).is_file(), "{f} missing after conversion");
    }
    tmp
}

fn id_rows(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as u32).collect())
        .collect()
}

#[test]
fn every_output_matches_open_clip() {
    let tmp = converted();
    let r = refs();
    let model = ClipModel::from_open_clip_dir(tmp.path(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.vision.encoder.layers[0].self_attn.heads, 2);
    assert!(model.vision.pre_layrnorm.is_none());
    assert_eq!(model.text.context_length(), 32);

    let pix = &r["pixel_values"];
    // open_clip's rule: the padding mask is `ids != pad`; given explicitly or not, the same result.
    let ids = id_rows(&r["input_ids"]);
    let implicit = TextBatch {
        ids: ids.clone(),
        mask: None,
    };
    let explicit = TextBatch {
        mask: Some(
            ids.iter()
                .map(|row| row.iter().map(|&t| u32::from(t != 0)).collect())
                .collect(),
        ),
        ids,
    };
    let img = model.image_features(pix).unwrap();
    check("image_embeds", &img, &r["image_embeds"]);
    for (name, batch) in [
        ("text_embeds", &implicit),
        ("text_embeds (mask)", &explicit),
    ] {
        check(
            name,
            &model.text_features(batch).unwrap(),
            &r["text_embeds"],
        );
    }
    let txt = model.text_features(&implicit).unwrap();
    check(
        "logits_per_image",
        &model.logits_per_image(&img, &txt).unwrap(),
        &r["logits_per_image"],
    );

    for grad in [false, true] {
        let fwd = Fwd {
            grad,
            hidden_states: true,
            attentions: true,
        };
        let v = model.vision.forward(pix, fwd).unwrap();
        let hs = Tensor::stack(&v.encoder.hidden_states, 0).unwrap();
        check("vision_hidden_states", &hs, &r["vision_hidden_states"]);
        check(
            "vision_last_attn",
            v.encoder.attentions.last().unwrap(),
            &r["vision_last_attn"],
        );
        check("vision_pooled", &v.pooled, &r["vision_pooled"]);
        let t = model.text.forward(&implicit, fwd).unwrap();
        check(
            "text_last_hidden",
            &t.last_hidden_state,
            &r["text_last_hidden"],
        );
    }
}

#[test]
fn engine_tokenises_and_preprocesses_as_open_clip() {
    let tmp = converted();
    let r = refs();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("meta.json")).unwrap())
            .unwrap();
    let engine = Engine::load(tmp.path().to_str().unwrap(), &Device::Cpu).unwrap();
    let texts: Vec<String> = serde_json::from_value(meta["texts"].clone()).unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(meta["token_ids"].clone()).unwrap();
    for (text, want) in texts.iter().zip(&want) {
        assert_eq!(&engine.tokenizer.encode(text).unwrap(), want, "{text}");
    }
    // The long report is cut to the context of 32, ending in [SEP] as HF truncation does.
    assert_eq!(want[3].len(), 32);

    let feats = engine.encode_texts(&texts).unwrap();
    check("engine text_embeds", &feats, &r["text_embeds"]);

    let rgb = Rgb8::open(&fixture().join("../preprocess/rgb.png")).unwrap();
    let prepared = engine.prepare(rgb).unwrap();
    check(
        "preprocessed rgb.png",
        &prepared.pixel_values,
        &r["pixel_values"].i(0).unwrap(),
    );
    let img = engine.encode_images(&[&prepared], 4).unwrap();
    check(
        "engine image_embeds",
        &img,
        &r["image_embeds"].i(0..1).unwrap(),
    );

    // Every heatmap method runs on the timm tower (its parity is that of the shared layers above).
    let enc = EncodedImage::new(&engine, &prepared).unwrap();
    let text = feats.i(1).unwrap();
    let empty = engine.encode_texts(&[""]).unwrap().i(0).unwrap();
    for method in [
        Method::MaskClip,
        Method::ClipSurgery,
        Method::Rollout,
        Method::GradCam,
    ] {
        let map = enc.heatmap(&engine, method, &text, &empty).unwrap();
        assert_eq!(map.values.len(), 16, "{method:?}: a 4×4 patch grid");
        assert!(map.values.iter().all(|v| v.is_finite()), "{method:?}");
        let spread = map.values.iter().fold(f32::MIN, |m, &v| m.max(v))
            - map.values.iter().fold(f32::MAX, |m, &v| m.min(v));
        assert!(spread > 0.0, "{method:?} gave a flat map");
    }
}

#[test]
fn pickles_and_damaged_files_give_one_clear_error() {
    // The published format is refused with the command that converts it.
    let err = Engine::load(fixture().to_str().unwrap(), &Device::Cpu)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("convert-open-clip") && msg.contains("open_clip_pytorch_model.bin"),
        "{msg}"
    );

    // Converting into the input folder is refused.
    let err = radclip_clip::convert::convert_open_clip(&fixture(), &fixture())
        .err()
        .unwrap();
    assert!(err.to_string().contains("new folder"), "{err}");

    // A truncated safetensors file names itself.
    let tmp = converted();
    let st = tmp.path().join("open_clip_model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = Engine::load(tmp.path().to_str().unwrap(), &Device::Cpu)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("open_clip_model.safetensors"),
        "{err}"
    );

    // A missing vocabulary is named, not a panic.
    let tmp = converted();
    std::fs::remove_file(tmp.path().join("vocab.txt")).unwrap();
    let err = Engine::load(tmp.path().to_str().unwrap(), &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("vocab.txt"), "{err}");
}
