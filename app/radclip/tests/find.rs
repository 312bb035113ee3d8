//! `radclip find` on the demo CT with a model that reads CT (the tiny full-vocabulary CLIP fixture, which
//! names no modality): a score for every slice, named by InstanceNumber and SOP Instance UID as the files
//! say; the top slices best first; each score the cosine of what `radclip embed` gives for the slice and
//! the phrase (the HF-parity path); slice embeddings cached in the cache directory, never beside the
//! study, and reused; each finding's series probability the highest `radclip zero-shot` gives a slice;
//! a model that does not read CT refused with a sentence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny() -> PathBuf {
    root().join("tests/fixtures/clip/tiny-fullvocab")
}

fn radclip(cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radclip"))
        .env("RADCLIP_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn embedding(v: &serde_json::Value) -> Vec<f64> {
    v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_slice_is_scored_against_a_phrase_and_the_best_come_first() {
    let cache = tempfile::tempdir().unwrap();
    let demo = root().join("assets/demo");
    let before = listing(&demo);
    let phrase = "solid nodule in the left lower lobe";
    let model = tiny();
    let args = [
        "find",
        demo.to_str().unwrap(),
        "--text",
        phrase,
        "--model",
        model.to_str().unwrap(),
        "--top",
        "5",
        "--json",
    ];
    let v = json(&radclip(cache.path(), &args));
    let slices = v["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 64);
    // Named as the files name themselves.
    let tree = radclip_dicom::scan(&demo).unwrap();
    let series = tree.series().find(|s| s.is_image()).unwrap();
    let files: BTreeSet<(i64, String)> = series
        .instances
        .iter()
        .map(|i| (i.instance_number.unwrap(), i.sop_instance_uid.to_string()))
        .collect();
    let listed: BTreeSet<(i64, String)> = slices
        .iter()
        .map(|s| {
            (
                s["instance_number"].as_i64().unwrap(),
                s["sop_instance_uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, files);
    // The top five, best first, are the five highest scores.
    let mut scores: Vec<f64> = slices
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let top: Vec<f64> = v["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert_eq!(top, scores[..5]);
    // Each score is the cosine of `radclip embed`'s image and text features.
    let text = embedding(&json(&radclip(
        cache.path(),
        &[
            "embed",
            "--text",
            phrase,
            "--model",
            tiny().to_str().unwrap(),
            "--json",
        ],
    )));
    let worst = slices
        .iter()
        .min_by(|a, b| {
            a["score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["score"].as_f64().unwrap())
        })
        .unwrap();
    for s in [&v["top"][0], worst] {
        let uid = s["sop_instance_uid"].as_str().unwrap();
        let inst = series
            .instances
            .iter()
            .find(|i| &*i.sop_instance_uid == uid)
            .unwrap();
        let image = embedding(&json(&radclip(
            cache.path(),
            &[
                "embed",
                inst.path.to_str().unwrap(),
                "--model",
                tiny().to_str().unwrap(),
                "--json",
            ],
        )));
        let want = cosine(&image, &text);
        let got = s["score"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-4, "{uid}: {got} vs {want}");
    }
    // Cached per slice under the cache directory, never beside the study; a second run reads them.
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache.path().join("slices"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one folder for the one model");
    assert_eq!(listing(&dirs[0]).len(), 64);
    assert_eq!(listing(&demo), before, "nothing written beside the study");
    let again = json(&radclip(cache.path(), &args));
    assert_eq!(again, v);

    // Series-level findings: each finding's probability is its highest over the slices, as
    // `radclip zero-shot` reads each slice alone; checked on the slice named and three others.
    let findings = v["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    let top_finding = &findings[0];
    let name = top_finding["name"].as_str().unwrap();
    let zero_shot = |uid: &str| -> f64 {
        let inst = series
            .instances
            .iter()
            .find(|i| &*i.sop_instance_uid == uid)
            .unwrap();
        let z = json(&radclip(
            cache.path(),
            &[
                "zero-shot",
                inst.path.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--json",
            ],
        ));
        z["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["probability"]
            .as_f64()
            .unwrap()
    };
    let p = top_finding["probability"].as_f64().unwrap();
    let at = zero_shot(top_finding["sop_instance_uid"].as_str().unwrap());
    assert!((p - at).abs() < 1e-5, "{name}: {p} vs {at} on its slice");
    for s in slices.iter().step_by(21) {
        let other = zero_shot(s["sop_instance_uid"].as_str().unwrap());
        assert!(
            other <= p + 1e-9,
            "{name}: {other} on another slice above the series' {p}"
        );
    }
}

#[test]
fn a_model_that_does_not_read_the_modality_is_refused_in_a_sentence() {
    let cache = tempfile::tempdir().unwrap();
    // The bundled demo model reads DX/CR.
    let o = radclip(
        cache.path(),
        &[
            "find",
            root().join("assets/demo").to_str().unwrap(),
            "--text",
            "nodule",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reads DX/CR images, not CT"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
