//! The attention inspector against Hugging Face `transformers`: every layer's attention probabilities of a
//! tiny CLIP vision tower, from real image files through HF's own PIL processor
//! (`tests/fixtures/clip/make_attention_refs.py`), equal radclip's from the same files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use radclip_assist::attention::{AttentionMaps, Query};
use radclip_clip::engine::Engine;
use radclip_clip::heatmap::EncodedImage;
use radclip_clip::preprocess::Rgb8;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("tiny-quickgelu/attention_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_layer_and_head_equals_transformers() {
    let engine = Engine::load(
        &fixtures().join("tiny-quickgelu").display().to_string(),
        &Device::Cpu,
    )
    .unwrap();
    let r = reference();
    for (i, file) in ["preprocess/rgb.png", "preprocess/grey.png"]
        .iter()
        .enumerate()
    {
        let image = Rgb8::open(&fixtures().join(file)).unwrap();
        let encoded = EncodedImage::new(&engine, &engine.prepare(image).unwrap()).unwrap();
        // The whole probability matrices, layer by layer.
        let all = Tensor::stack(
            &encoded
                .attentions
                .iter()
                .map(|a| a.get(0).unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let want = &r[&format!("image{i}_all")];
        assert_eq!(all.dims(), want.dims());
        let d = max_diff(&values(&all), &values(want));
        assert!(d < 1e-5, "{file}: attentions differ by {d}");

        // The inspector's maps: the class token's row, and a patch's, to the patch grid.
        let cls = AttentionMaps::of(&encoded, Query::ClassToken).unwrap();
        assert_eq!((cls.layers, cls.heads, cls.grid), (2, 4, (4, 4)));
        let d = max_diff(&cls.values, &values(&r[&format!("image{i}_cls")]));
        assert!(d < 1e-5, "{file}: class-token maps differ by {d}");
        let patch = AttentionMaps::of(&encoded, Query::Patch { row: 1, col: 2 }).unwrap();
        let d = max_diff(&patch.values, &values(&r[&format!("image{i}_patch")]));
        assert!(d < 1e-5, "{file}: patch maps differ by {d}");

        // The per-layer mean is the mean of its heads; a patch off the grid is refused.
        let mean = cls.layer_mean(1).unwrap();
        let by_hand: Vec<f32> = (0..16)
            .map(|k| (0..4).map(|h| cls.map(1, h).unwrap()[k]).sum::<f32>() / 4.0)
            .collect();
        assert!(max_diff(&mean, &by_hand) < 1e-7);
        assert!(AttentionMaps::of(&encoded, Query::Patch { row: 4, col: 0 }).is_err());

        // Rollout through each layer, by hand from transformers' probabilities: heads averaged, the
        // identity added, rows normalised, multiplied layer on layer; the query token's row.
        let p = values(want);
        let (layers, heads, n) = (want.dims()[0], want.dims()[1], want.dims()[2]);
        let mut joint: Vec<f64> = (0..n * n)
            .map(|k| f64::from(u8::from(k / n == k % n)))
            .collect();
        for l in 0..layers {
            let mut a = vec![0f64; n * n];
            for h in 0..heads {
                for k in 0..n * n {
                    a[k] += f64::from(p[((l * heads + h) * n * n) + k]) / heads as f64;
                }
            }
            for r in 0..n {
                a[r * n + r] += 1.0;
                let sum: f64 = a[r * n..(r + 1) * n].iter().sum();
                a[r * n..(r + 1) * n].iter_mut().for_each(|x| *x /= sum);
            }
            let mut next = vec![0f64; n * n];
            for r in 0..n {
                for c in 0..n {
                    next[r * n + c] = (0..n).map(|k| a[r * n + k] * joint[k * n + c]).sum();
                }
            }
            joint = next;
            for (maps, q) in [(&cls, 0usize), (&patch, 1 + 4 + 2)] {
                let want_row: Vec<f32> = (1..n).map(|c| joint[q * n + c] as f32).collect();
                let d = max_diff(maps.rollout(l).unwrap(), &want_row);
                assert!(
                    d < 1e-5,
                    "{file}: rollout of layer {l} from token {q} differs by {d}"
                );
            }
        }
    }
}
