//! Every AI output says where it came from: the weights' SHA-256 (checked against coreutils'
//! `sha256sum`), the method, the prompts and the device; digests are cached in the user's cache
//! directory and nothing is written into the model folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo_image() -> PathBuf {
    root().join("assets/demo-cxr/PHANTOM-CXR-2026-0000/image.dcm")
}

fn model() -> PathBuf {
    root().join("models/radclip-demo")
}

fn radclip(cache: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_radclip"))
        .env("RADCLIP_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Names, sizes and modification times of a folder's files.
fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn zero_shot_names_its_weights_by_sha256_and_caches_the_digest_outside_the_model() {
    let cache = tempfile::tempdir().unwrap();
    let before = listing(&model());
    let image = demo_image();
    let model_dir = model();
    let args = [
        "zero-shot",
        image.to_str().unwrap(),
        "--model",
        model_dir.to_str().unwrap(),
        "--json",
    ];
    let v = radclip(cache.path(), &args);
    let p = &v["provenance"];
    let weights = model().join("model.safetensors");
    let w = &p["model"]["weights"][0];
    assert_eq!(w["sha256"].as_str().unwrap(), sha256sum(&weights));
    assert_eq!(
        w["bytes"].as_u64().unwrap(),
        std::fs::metadata(&weights).unwrap().len()
    );
    assert_eq!(p["model"]["weights"].as_array().unwrap().len(), 1);
    assert_eq!(p["method"], "zero-shot");
    assert_eq!(p["model"]["device"], "the CPU");
    assert_eq!(p["model"]["window"], "file");
    assert!(
        p["model"]["intended_use"]
            .as_str()
            .unwrap()
            .contains("not for clinical use")
    );
    // Every prompt of the list, positives and negatives.
    let prompts: Vec<&str> = p["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(prompts.contains(&"pleural effusion") && prompts.contains(&"no pneumothorax"));
    assert!(p["ms"].as_f64().unwrap() > 0.0);
    assert_eq!(listing(&model()), before, "the model folder was written to");

    // The digest is kept in the cache directory, one entry per file.
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.path().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&entries[0]).unwrap().trim(),
        sha256sum(&weights)
    );
    // A second run reads it from there (a planted digest shows it is not recomputed).
    let planted = "a".repeat(64);
    std::fs::write(&entries[0], &planted).unwrap();
    let again = radclip(cache.path(), &args);
    assert_eq!(
        again["provenance"]["model"]["weights"][0]["sha256"],
        planted
    );
}

#[test]
fn a_heatmap_writes_its_provenance_beside_each_file() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("map.png");
    let npy = out.path().join("map.npy");
    let image = demo_image();
    let model_dir = model();
    let v = radclip(
        cache.path(),
        &[
            "heatmap",
            image.to_str().unwrap(),
            "--model",
            model_dir.to_str().unwrap(),
            "--prompt",
            "pneumothorax",
            "--method",
            "maskclip",
            "--refine",
            "--out",
            png.to_str().unwrap(),
            "--raw",
            npy.to_str().unwrap(),
            "--json",
        ],
    );
    let p = &v["provenance"];
    assert_eq!(p["method"], "maskclip + pamr");
    assert_eq!(p["prompts"], serde_json::json!(["pneumothorax"]));
    assert_eq!(
        p["model"]["weights"][0]["sha256"].as_str().unwrap(),
        sha256sum(&model().join("model.safetensors"))
    );
    for side in ["map.png.provenance.json", "map.npy.provenance.json"] {
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(side)).unwrap()).unwrap();
        assert_eq!(&written, p);
    }
}
