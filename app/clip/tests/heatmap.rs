//! Heatmaps against independent PyTorch implementations of each method on the tiny HF models
//! (`tests/fixtures/clip/make_heatmap_refs.py`), plus the geometry of placing a map on its source image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use radclip_clip::engine::{Engine, Prepared};
use radclip_clip::heatmap::{EncodedImage, Heatmap, Method};
use radclip_clip::preprocess::{Placement, Rgb8};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/clip")
        .join(name)
}

type Refs = std::collections::HashMap<String, Tensor>;

/// A reference file of a tiny model's fixture folder.
fn reference(cfg: &str, file: &str) -> Refs {
    candle_core::safetensors::load(fixture(cfg).join(file), &Device::Cpu).unwrap()
}

/// A tiny model's engine, its reference outputs, and its reference image encoded.
fn encoded(cfg: &str) -> (Engine, Refs, EncodedImage) {
    let dir = fixture(cfg);
    let r =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let engine = Engine::load(dir.to_str().unwrap(), &Device::Cpu).unwrap();
    let s = r["pixel_values"].dim(2).unwrap();
    let prepared = Prepared {
        pixel_values: r["pixel_values"].i(0).unwrap(),
        placement: Placement {
            source: (s, s),
            resized: (s, s),
            crop_offset: (0, 0),
            crop: (s, s),
        },
        image: Rgb8 {
            width: s,
            height: s,
            data: vec![0; s * s * 3],
        },
    };
    let enc = EncodedImage::new(&engine, &prepared).unwrap();
    (engine, r, enc)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn every_method_matches_its_pytorch_reference() {
    for cfg in ["tiny-quickgelu", "tiny-gelu", "tiny-p14-legacy-eos"] {
        let (engine, r, enc) = encoded(cfg);
        let h = reference(cfg, "heatmap_reference.safetensors");
        let feats_diff = (&enc.features - &h["image_embeds0"])
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(feats_diff.to_scalar::<f32>().unwrap() < 1e-4);
        let text = r["text_embeds"].i(0).unwrap();
        let empty = r["text_embeds"].i(1).unwrap();
        for (method, key) in [
            (Method::MaskClip, "maskclip"),
            (Method::ClipSurgery, "clip_surgery"),
            (Method::Rollout, "rollout"),
            (Method::GradCam, "gradcam"),
        ] {
            let map = enc.heatmap(&engine, method, &text, &empty).unwrap();
            let want = h[key]
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let d = max_abs_diff(&map.values, &want);
            println!("{cfg:>22} {key:<13} max |Δ| = {d:.2e} (scale {scale:.2e})");
            assert!(
                d <= 1e-4 * scale.max(1e-3),
                "{cfg} {key}: {d} (relative to {scale})"
            );
        }
    }
}

/// PAMR (`radclip_clip::refine`) against an independent conv2d formulation in PyTorch
/// (`tests/fixtures/clip/make_refine_refs.py`), with the default settings and with others, on each tiny
/// model's MaskCLIP map; the upsampling to input pixels against `F.interpolate`.
#[test]
fn refinement_matches_pytorch_pamr() {
    use radclip_clip::refine::Refinement;
    for cfg in ["tiny-quickgelu", "tiny-gelu", "tiny-p14-legacy-eos"] {
        let (engine, r, enc) = encoded(cfg);
        let f = reference(cfg, "refine_reference.safetensors");
        let want = |k: &str| f[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (text, empty) = (
            r["text_embeds"].i(0).unwrap(),
            r["text_embeds"].i(1).unwrap(),
        );
        let map = enc
            .heatmap(&engine, Method::MaskClip, &text, &empty)
            .unwrap();
        let none = Refinement {
            iterations: 0,
            ..Refinement::default()
        };
        let up = enc.refine(&map, &none).unwrap();
        let (gh, gw) = map.grid;
        assert_eq!(up.grid, (gh * map.patch_size, gw * map.patch_size));
        assert!(up.refined && up.patch_size == 1);
        let scale = want("upsampled").iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&up.values, &want("upsampled"));
        assert!(d <= 1e-5 * scale.max(1e-3), "{cfg} upsampled: {d}");
        for (name, settings) in [
            ("refined_default", Refinement::default()),
            (
                "refined_other",
                Refinement {
                    dilations: vec![1, 3],
                    iterations: 3,
                    sharpness: 0.3,
                },
            ),
        ] {
            let refined = enc.refine(&map, &settings).unwrap();
            let d = max_abs_diff(&refined.values, &want(name));
            println!("{cfg:>22} {name:<16} max |Δ| = {d:.2e} (scale {scale:.2e})");
            assert!(d <= 1e-4 * scale.max(1e-3), "{cfg} {name}: {d}");
            // It changed the map (else the comparison above proves nothing).
            assert!(max_abs_diff(&refined.values, &up.values) > 1e-3 * scale);
        }
        // A refined map lies on the source image where its patch grid did.
        for (x, y) in [(0, 0), (5, 9), (up.grid.1 - 1, up.grid.0 - 1)] {
            let a = map.sample(&map.values, x, y).unwrap();
            let b = up.sample(&up.values, x, y).unwrap();
            assert!((a - b).abs() <= 1e-5 * scale.max(1e-3), "{cfg} ({x}, {y})");
        }
    }
}

#[test]
fn a_map_lands_on_the_source_pixels_it_came_from() {
    // 300 × 200 source, resized to 48 × 32 (scale 6.25), cropped to 32 × 32 at x offset 8: 4 × 4 patches of 8.
    let placement = Placement {
        source: (300, 200),
        resized: (48, 32),
        crop_offset: (8, 0),
        crop: (32, 32),
    };
    let mut values = vec![0f32; 16];
    values[2 * 4 + 3] = 1.0; // row 2, column 3
    let map = Heatmap {
        method: Method::Rollout,
        grid: (4, 4),
        values,
        placement,
        patch_size: 8,
        refined: false,
    };
    let (x0, y0, x1, y1) = placement.source_rect();
    assert_eq!((x0, y0, x1, y1), (50.0, 0.0, 250.0, 200.0));
    let norm = map.normalized();
    // Patch (2, 3) centre in model input: (28, 20) → resized (36, 20) → source (225, 125).
    let peak = map.sample(&norm, 225, 125).unwrap();
    assert!((peak - 1.0).abs() < 0.05, "{peak}");
    assert!(map.sample(&norm, 60, 20).unwrap() < 0.01);
    // Outside the crop: nothing.
    assert!(map.sample(&norm, 10, 100).is_none());
    assert!(map.sample(&norm, 290, 100).is_none());
    let img = Rgb8 {
        width: 300,
        height: 200,
        data: vec![40; 300 * 200 * 3],
    };
    let over = map.overlay(&img, 0.5);
    assert_eq!(
        over.data[(100 * 300 + 10) * 3],
        40,
        "outside the crop stays as it was"
    );
    assert_ne!(over.data[(125 * 300 + 225) * 3], 40);
}

#[test]
fn grad_cam_gradients_reach_the_tokens() {
    let dir = fixture("tiny-gelu");
    let engine = Engine::load(dir.to_str().unwrap(), &Device::Cpu).unwrap();
    // Deterministic inputs (no unseeded randomness in tests).
    let px = (Tensor::arange(0f32, (3 * 48 * 48) as f32, &Device::Cpu).unwrap() * 0.37)
        .unwrap()
        .sin()
        .unwrap()
        .reshape((3, 48, 48))
        .unwrap();
    let prepared = Prepared {
        pixel_values: px,
        placement: Placement {
            source: (48, 48),
            resized: (48, 48),
            crop_offset: (0, 0),
            crop: (48, 48),
        },
        image: Rgb8 {
            width: 48,
            height: 48,
            data: vec![0; 48 * 48 * 3],
        },
    };
    let enc = EncodedImage::new(&engine, &prepared).unwrap();
    let t = (Tensor::arange(0f32, 20.0, &Device::Cpu).unwrap() * 1.3)
        .unwrap()
        .cos()
        .unwrap();
    // cos(f, −t) = −cos(f, t), so the channel weights flip sign and, after the ReLU, the two maps cannot
    // both be zero unless no gradient reached the tokens.
    let pos = enc.heatmap(&engine, Method::GradCam, &t, &t).unwrap();
    let neg = enc
        .heatmap(&engine, Method::GradCam, &t.neg().unwrap(), &t)
        .unwrap();
    for map in [&pos, &neg] {
        assert_eq!(map.values.len(), 9);
        assert!(map.values.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    assert!(
        pos.values.iter().chain(&neg.values).any(|v| *v > 0.0),
        "no gradient reached the tokens"
    );
    // Where one map is positive the other is zero.
    assert!(
        pos.values
            .iter()
            .zip(&neg.values)
            .all(|(a, b)| *a == 0.0 || *b == 0.0)
    );
}
