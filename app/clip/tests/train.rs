//! Training support: every weight of a `Trainable` gets a gradient through the three training losses,
//! a few optimiser steps lower the loss, and a saved model loads back through the ordinary loader with
//! the same outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use radclip_clip::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use radclip_clip::model::{Fwd, TextBatch, l2_normalize};
use radclip_clip::train::{Trainable, pair_loss, patch_loss, soft_clip_loss};
use radclip_clip::{ClipModel, heatmap};

fn tiny() -> ClipConfig {
    ClipConfig {
        text: TextConfig {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            max_position_embeddings: 12,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            pad_token_id: 0,
            bos_token_id: 62,
            eos_token_id: 63,
        },
        vision: VisionConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_channels: 3,
            image_size: 32,
            patch_size: 8,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 16,
    }
}

fn batch() -> TextBatch {
    let rows = [
        vec![62, 5, 9, 63, 0, 0],
        vec![62, 7, 63, 0, 0, 0],
        vec![62, 11, 12, 13, 14, 63],
        vec![62, 20, 63, 0, 0, 0],
    ];
    TextBatch {
        mask: Some(
            rows.iter()
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .map(|(i, &t)| u32::from(i == 0 || t != 0))
                        .collect()
                })
                .collect(),
        ),
        ids: rows.to_vec(),
    }
}

fn loss(net: &Trainable, px: &Tensor) -> Tensor {
    let dev = Device::Cpu;
    let m = &net.model;
    let fwd = Fwd {
        grad: true,
        hidden_states: true,
        attentions: false,
    };
    let t = m.text.forward(&batch(), fwd).unwrap();
    let tf = l2_normalize(&m.text_projection.forward(&t.pooled).unwrap()).unwrap();
    let v = m.vision.forward(px, fwd).unwrap();
    let vf = l2_normalize(&m.visual_projection.forward(&v.pooled).unwrap()).unwrap();
    let scale = m.logit_scale.exp().unwrap();
    let target = Tensor::eye(4, DType::F32, &dev).unwrap();
    let l1 = soft_clip_loss(&vf, &tf, &scale, &target).unwrap();
    let idx = Tensor::new(&[1u32, 0, 3, 2], &dev).unwrap();
    let y = Tensor::new(&[1f32, 0.0, 1.0, 0.0], &dev).unwrap();
    let l2 = pair_loss(&vf, &tf, &tf.index_select(&idx, 0).unwrap(), &scale, &y).unwrap();
    let last = &v.encoder.hidden_states[1];
    let patches = l2_normalize(&heatmap::maskclip_features(m, last, fwd).unwrap()).unwrap();
    let mut cov = vec![0f32; 4 * 16];
    for (b, p) in [(0, 3), (1, 5), (2, 10), (3, 15)] {
        cov[b * 16 + p] = 1.0;
    }
    let cov = Tensor::from_vec(cov, (4, 16), &dev).unwrap();
    let l3 = patch_loss(&patches, &tf, &scale, &cov).unwrap();
    ((l1 + l2).unwrap() + l3).unwrap()
}

fn pixels() -> Tensor {
    let data: Vec<f32> = (0..4 * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    Tensor::from_vec(data, (4, 3, 32, 32), &Device::Cpu).unwrap()
}

#[test]
fn every_weight_gets_a_gradient() {
    let net = Trainable::init(tiny(), 3, None, &Device::Cpu).unwrap();
    let grads = loss(&net, &pixels()).backward().unwrap();
    assert!(net.vars.len() > 60);
    let mut missing = Vec::new();
    for (name, var) in &net.vars {
        match grads.get(var.as_tensor()) {
            Some(g) => {
                let n = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                if !(n > 0.0 && n.is_finite()) {
                    missing.push(format!("{name} (|g|² = {n})"));
                }
            }
            None => missing.push(name.clone()),
        }
    }
    assert!(missing.is_empty(), "no gradient for: {missing:?}");
}

#[test]
fn adamw_lowers_the_loss_and_the_saved_model_loads_back() {
    let net = Trainable::init(tiny(), 4, None, &Device::Cpu).unwrap();
    let px = pixels();
    let mut opt = candle_nn::AdamW::new_lr(net.var_list(), 3e-3).unwrap();
    let first = loss(&net, &px).to_scalar::<f32>().unwrap();
    for _ in 0..30 {
        opt.backward_step(&loss(&net, &px)).unwrap();
    }
    let last = loss(&net, &px).to_scalar::<f32>().unwrap();
    assert!(last < 0.8 * first, "loss {first} → {last}");

    let dir = tempfile::tempdir().unwrap();
    net.save(dir.path(), DType::F32).unwrap();
    let loaded = ClipModel::from_dir(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let a = net.model.image_features(&px).unwrap();
    let b = loaded.image_features(&px).unwrap();
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-6, "saved model differs by {d}");
    let ta = net.model.text_features(&batch()).unwrap();
    let tb = loaded.text_features(&batch()).unwrap();
    let d = (ta - tb)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-6, "saved text tower differs by {d}");
}
