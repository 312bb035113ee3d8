//! Preprocessing against transformers' CLIPImageProcessorPil (`tests/fixtures/clip/make_preprocess_refs.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use candle_core::Device;
use radclip_clip::preprocess::{Preprocess, Rgb8};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip/preprocess")
}

#[test]
fn pixel_values_match_the_pil_processor() {
    let refs =
        candle_core::safetensors::load(dir().join("reference.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(refs.len(), 5);
    for (key, want) in &refs {
        let (name, size) = key.rsplit_once('_').unwrap();
        let size: usize = size.parse().unwrap();
        let img = Rgb8::open(&dir().join(format!("{name}.png"))).unwrap();
        let (got, placement) = Preprocess::openai(size).apply(&img, &Device::Cpu).unwrap();
        assert_eq!(got.dims(), want.dims(), "{key}");
        let d = (&got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        println!("{key}: max |Δ| = {d:.2e}, placement {placement:?}");
        // One 8-bit level is 1/255/std ≈ 0.015; float rounding is ~1e-6.
        assert!(d < 1e-5, "{key}: differs by {d}");
    }
}
