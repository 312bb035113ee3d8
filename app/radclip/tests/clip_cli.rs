//! `radclip embed`, `zero-shot` and `heatmap` from files to numbers. The embeddings are compared with
//! Hugging Face's own pipeline (PIL processor + tokenizer + CLIPModel) on a tiny random float16 model with
//! OpenAI's full vocabulary (`tests/fixtures/clip/make_cli_model.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::npy_f32;

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_radclip"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip")
}

fn model() -> PathBuf {
    fixtures().join("tiny-fullvocab")
}

/// `radclip <args> --model <tiny model> --json <paths>`.
fn json_command(args: &[&str], paths: &[&Path]) -> Command {
    json_command_with(&model(), args, paths)
}

/// `radclip <args> --model <model> --json <paths>`.
fn json_command_with(model: &Path, args: &[&str], paths: &[&Path]) -> Command {
    let mut c = bin();
    c.args(args).arg("--model").arg(model).arg("--json");
    for p in paths {
        c.arg(p);
    }
    c
}

fn run_json(args: &[&str], paths: &[&Path]) -> serde_json::Value {
    run_json_with(&model(), args, paths)
}

fn run_json_with(model: &Path, args: &[&str], paths: &[&Path]) -> serde_json::Value {
    let out = json_command_with(model, args, paths).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn vec_of(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A one-tensor f32 safetensors file: its header (names, shape, offsets) and its values.
fn safetensors_f32(path: &Path) -> (String, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let values = bytes[8 + n..]
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    (header, values)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(model().join("cli_reference.json")).unwrap())
        .unwrap()
}

#[test]
fn embed_images_and_texts_match_hugging_face_end_to_end() {
    let r = reference();
    for img in r["images"].as_array().unwrap() {
        let file = fixtures().join(img["file"].as_str().unwrap());
        let v = run_json(&["embed"], &[&file]);
        let d = max_diff(&vec_of(&v["embedding"]), &vec_of(&img["embedding"]));
        assert!(d < 1e-4, "{}: {d}", file.display());
    }
    for t in r["texts"].as_array().unwrap() {
        let v = run_json(&["embed", "--text", t["text"].as_str().unwrap()], &[]);
        let d = max_diff(&vec_of(&v["embedding"]), &vec_of(&t["embedding"]));
        assert!(d < 1e-4, "{:?}: {d}", t["text"]);
    }
}

/// MKL's CBLAS from PyPI's wheels, unpacked by `tests/fixtures/fetch.sh` (x86-64 only).
fn mkl() -> Option<PathBuf> {
    let root = std::env::var_os("RADCLIP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    let lib = root.join("mkl/lib/libmkl_rt.so.3");
    lib.is_file().then_some(lib)
}

/// The embeddings match Hugging Face's whichever library serves the products, and the log says which
/// one did: candle's own kernels (`RADCLIP_BLAS=off`), MKL named by path, and a path that does not
/// load (a warning, then candle's kernels, never a crash). OpenBLAS, the default, is the other tests'.
#[test]
fn embeddings_match_hugging_face_with_each_cblas() {
    let r = reference();
    let img = &r["images"][0];
    let file = fixtures().join(img["file"].as_str().unwrap());
    let text = &r["texts"][0];
    let mut cases = vec![
        ("off".to_string(), None),
        (
            "/nonexistent/libcblas.so".to_string(),
            Some("names a library that does not load"),
        ),
    ];
    match mkl() {
        Some(lib) => cases.push((
            lib.display().to_string(),
            Some("libmkl_rt.so.3 for CPU matrix products"),
        )),
        // tests/run.sh fetches MKL on x86-64, where this part must not be skipped.
        None => assert!(
            !(cfg!(target_arch = "x86_64")
                && std::env::var("RADCLIP_EXPECT_BLAS").is_ok_and(|v| v == "1")),
            "MKL fixtures missing: run `bash tests/fixtures/fetch.sh`"
        ),
    }
    for (blas, log) in cases {
        for (args, paths, expected) in [
            (vec!["embed"], vec![file.as_path()], &img["embedding"]),
            (
                vec!["embed", "--text", text["text"].as_str().unwrap()],
                vec![],
                &text["embedding"],
            ),
        ] {
            let out = json_command(&args, &paths)
                .env("RADCLIP_BLAS", &blas)
                .env("RADCLIP_LOG", "radclip_clip=debug")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "RADCLIP_BLAS={blas}: {stderr}");
            match log {
                Some(line) => assert!(stderr.contains(line), "RADCLIP_BLAS={blas}: {stderr}"),
                None => assert!(
                    !stderr.contains("for CPU matrix products"),
                    "RADCLIP_BLAS=off still loaded a BLAS: {stderr}"
                ),
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let d = max_diff(&vec_of(&v["embedding"]), &vec_of(expected));
            assert!(d < 1e-4, "RADCLIP_BLAS={blas} {args:?}: {d}");
        }
    }
}

#[test]
fn embed_a_folder_gives_one_row_per_file_in_path_order() {
    let r = reference();
    let v = run_json(
        &["embed", "--batch-size", "2"],
        &[&fixtures().join("preprocess")],
    );
    let paths: Vec<&str> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(
        paths[0].ends_with("grey.png")
            && paths[1].ends_with("rgb.png")
            && paths[2].ends_with("small.png")
    );
    let rows = v["embedding"].as_array().unwrap();
    let want_rgb = vec_of(&r["images"][0]["embedding"]);
    let want_grey = vec_of(&r["images"][1]["embedding"]);
    assert!(max_diff(&vec_of(&rows[1]), &want_rgb) < 1e-4);
    assert!(max_diff(&vec_of(&rows[0]), &want_grey) < 1e-4);
}

#[test]
fn a_dicom_frame_embeds_as_its_rendered_png() {
    let dcm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo/CT0016.dcm");
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("ct.png");
    let st = bin()
        .arg("export")
        .arg(&dcm)
        .arg("--out")
        .arg(&png)
        .status()
        .unwrap();
    assert!(st.success());
    let a = run_json(&["embed"], &[&dcm]);
    let b = run_json(&["embed"], &[&png]);
    let d = max_diff(&vec_of(&a["embedding"]), &vec_of(&b["embedding"]));
    assert!(d < 1e-6, "{d}");
}

#[test]
fn zero_shot_is_symmetric_in_its_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("findings.toml");
    std::fs::write(
        &f,
        "[[finding]]\nname = \"Effusion\"\npositive = [\"pleural effusion\", \"fluid in the pleural space\"]\n\
         negative = [\"no pleural effusion\", \"sharp costophrenic angles\"]\n\n\
         [[finding]]\nname = \"Swapped\"\npositive = [\"no pleural effusion\", \"sharp costophrenic angles\"]\n\
         negative = [\"pleural effusion\", \"fluid in the pleural space\"]\n\n\
         [[finding]]\nname = \"Same\"\npositive = [\"pleural effusion\"]\nnegative = [\"pleural effusion\"]\n",
    )
    .unwrap();
    let img = fixtures().join("preprocess/rgb.png");
    let v = run_json(&["zero-shot", "--findings", f.to_str().unwrap()], &[&img]);
    let fs = v["findings"].as_array().unwrap();
    let p = |i: usize| fs[i]["probability"].as_f64().unwrap();
    assert!((p(0) + p(1) - 1.0).abs() < 1e-6, "{} {}", p(0), p(1));
    assert!((p(2) - 0.5).abs() < 1e-9);
    assert_eq!(fs[2]["spread"].as_f64().unwrap(), 0.0);
    assert_eq!(fs[0]["pair_probabilities"].as_array().unwrap().len(), 2);

    // The shipped CheXpert-14 list is the default.
    let v = run_json(&["zero-shot"], &[&img]);
    assert_eq!(v["findings"].as_array().unwrap().len(), 14);
    assert_eq!(v["findings"][2]["name"], "Cardiomegaly");
}

#[test]
fn heatmap_writes_overlay_and_raw_map_for_every_method() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixtures().join("preprocess/rgb.png");
    for method in ["clip-surgery", "maskclip", "rollout", "gradcam"] {
        let out = tmp.path().join(format!("{method}.png"));
        let raw = tmp.path().join(format!("{method}.npy"));
        let v = run_json(
            &[
                "heatmap",
                "--prompt",
                "pleural effusion",
                "--method",
                method,
                "--out",
                out.to_str().unwrap(),
                "--raw",
                raw.to_str().unwrap(),
            ],
            &[&img],
        );
        assert_eq!(v["grid"], serde_json::json!([4, 4]), "{method}");
        let png = std::fs::read(&out).unwrap();
        // PNG IHDR: the overlay has the source image's size (301 × 217).
        assert_eq!(&png[16..24], &[0, 0, 1, 45, 0, 0, 0, 217]);
        let npy = std::fs::read(&raw).unwrap();
        assert_eq!(&npy[..6], b"\x93NUMPY");
        let header = String::from_utf8_lossy(&npy[10..npy.len() - 64]);
        assert!(header.contains("'shape': (4, 4)"), "{header}");
        assert_eq!(
            (npy.len() - (10 + u16::from_le_bytes([npy[8], npy[9]]) as usize)) / 4,
            16
        );
        // Refined along the image's edges: one value per model input pixel, within the patch map's
        // range (each refinement step is an average).
        let refined = run_json(
            &[
                "heatmap",
                "--prompt",
                "pleural effusion",
                "--method",
                method,
                "--refine",
                "--out",
                out.to_str().unwrap(),
            ],
            &[&img],
        );
        assert_eq!(refined["refined"], true);
        assert_eq!(v["refined"], false);
        let side = refined["grid"][0].as_u64().unwrap();
        assert!(side > 4 && side.is_multiple_of(4), "{}", refined["grid"]);
        let (coarse, fine) = (vec_of(&v["values"]), vec_of(&refined["values"]));
        assert_eq!(fine.len() as u64, side * side);
        let lo = coarse.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = coarse.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            fine.iter().all(|x| *x >= lo - 1e-5 && *x <= hi + 1e-5),
            "{method}"
        );
    }
    let out = bin()
        .args([
            "heatmap",
            "--prompt",
            "x",
            "--method",
            "magic",
            "--out",
            "/tmp/x.png",
            "--model",
        ])
        .arg(model())
        .arg(&img)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown method"), "{err}");
}

#[test]
fn a_missing_or_broken_model_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
    for m in [tmp.path().to_path_buf(), tmp.path().join("nope")] {
        let out = bin()
            .args(["embed", "--text", "x", "--model"])
            .arg(&m)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `radclip reference` on phantom radiographs, then zero-shot with and without it on the demo model:
/// the ensemble's probabilities stay as they were, the single pairs move onto its scale, and a broken
/// reference file is one sentence naming it.
#[test]
fn a_reference_set_calibrates_single_pairs_only() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/radclip-demo");
    let m = tmp.path().join("model");
    std::fs::create_dir(&m).unwrap();
    for f in ["config.json", "model.safetensors", "findings.toml"] {
        std::fs::copy(demo.join(f), m.join(f)).unwrap();
    }
    let card = std::fs::read_to_string(demo.join("radclip.toml")).unwrap();
    let raw_card: String = card
        .lines()
        .filter(|l| !l.starts_with("reference"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(m.join("radclip.toml"), &raw_card).unwrap();

    let ph = tmp.path().join("ph");
    let out = bin()
        .args(["phantom", "cxr", "--seed", "7", "--count", "24", "--out"])
        .arg(&ph)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut images: Vec<PathBuf> = std::fs::read_dir(&ph)
        .unwrap()
        .map(|e| e.unwrap().path().join("image.dcm"))
        .filter(|p| p.is_file())
        .collect();
    images.sort();
    assert_eq!(images.len(), 24);
    let out = bin()
        .arg("reference")
        .args(&images)
        .args(["--model"])
        .arg(&m)
        .args(["--out"])
        .arg(m.join("ref.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("wrote 24 reference image features"), "{err}");
    // The phantoms' folder itself: its reports, SEGs and mask PNGs are not images of the domain, so the
    // same 24 radiographs make the same features (to rounding: the BLAS threads may split the batch
    // products differently when the tests run side by side).
    let from_dir = tmp.path().join("dir.safetensors");
    let out = bin()
        .arg("reference")
        .arg(&ph)
        .args(["--model"])
        .arg(&m)
        .args(["--out"])
        .arg(&from_dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("wrote 24 reference image features"), "{err}");
    assert!(!err.contains(" 0 PNG/JPEG files beside DICOM"), "{err}");
    let (dir_header, dir_rows) = safetensors_f32(&from_dir);
    let (files_header, files_rows) = safetensors_f32(&m.join("ref.safetensors"));
    assert_eq!(dir_header, files_header);
    assert!(max_diff(&dir_rows, &files_rows) <= 1e-5);

    let zero_shot = || run_json_with(&m, &["zero-shot"], &[&images[0]]);
    let raw = zero_shot();
    assert!(raw["reference"].is_null());
    std::fs::write(
        m.join("radclip.toml"),
        raw_card.replace(
            "findings = \"findings.toml\"",
            "findings = \"findings.toml\"\nreference = \"ref.safetensors\"",
        ),
    )
    .unwrap();
    let cal = zero_shot();
    assert_eq!(cal["reference"], "ref.safetensors");
    let (a, b) = (
        raw["findings"].as_array().unwrap(),
        cal["findings"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 6);
    let mut moved = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["name"], y["name"]);
        let (px, py) = (
            x["probability"].as_f64().unwrap(),
            y["probability"].as_f64().unwrap(),
        );
        assert!((px - py).abs() < 1e-9, "{}: {px} vs {py}", x["name"]);
        moved = moved.max(max_diff(
            &vec_of(&x["pair_probabilities"]),
            &vec_of(&y["pair_probabilities"]),
        ));
    }
    assert!(moved > 1e-3, "no single pair moved ({moved})");

    // A truncated reference file: one sentence naming it, no panic.
    let bytes = std::fs::read(m.join("ref.safetensors")).unwrap();
    std::fs::write(m.join("ref.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    let out = bin()
        .args(["zero-shot", "--model"])
        .arg(&m)
        .arg(&images[0])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ref.safetensors") && err.contains("not a readable reference file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Nothing to embed: one sentence.
    let out = bin()
        .arg("reference")
        .arg(images[0].with_file_name("report.txt"))
        .args(["--model"])
        .arg(&m)
        .args(["--out"])
        .arg(tmp.path().join("none.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("two or more images"), "{err}");
    assert!(!tmp.path().join("none.safetensors").exists());
}

#[test]
fn attention_writes_every_layer_and_head_as_transformers_computes_them() {
    let model = fixtures().join("tiny-quickgelu");
    let reference = candle_core::safetensors::load(
        model.join("attention_reference.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let image = fixtures().join("preprocess/grey.png");
    for (from, key) in [(None, "image1_cls"), (Some("1,2"), "image1_patch")] {
        let out = tempfile::tempdir().unwrap();
        let mut c = bin();
        c.arg("attention")
            .arg(&image)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(out.path())
            .arg("--json");
        if let Some(f) = from {
            c.args(["--from-patch", f]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["shape"], serde_json::json!([2, 4, 4, 4]));
        let (shape, got) = npy_f32(&out.path().join("attention.npy"));
        assert_eq!(shape, [2, 4, 4, 4]);
        let want: Vec<f32> = reference[key].flatten_all().unwrap().to_vec1().unwrap();
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-5, "{key}: differs from transformers by {d}");
        // One PNG per layer, and the provenance beside the maps.
        for layer in ["layer-00.png", "layer-01.png"] {
            assert!(out.path().join(layer).is_file(), "{layer}");
        }
        let p: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("attention.npy.provenance.json")).unwrap(),
        )
        .unwrap();
        assert!(
            p["method"]
                .as_str()
                .unwrap()
                .starts_with("attention from the")
        );
    }
    // A patch off the grid is one sentence, not a panic.
    let out = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("attention")
        .arg(&image)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .args(["--from-patch", "9,0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the 4×4 patch grid"));
}

#[test]
fn attention_reads_a_timm_vision_tower_too() {
    // The tiny BiomedCLIP-shaped open_clip pickle, converted as a user would.
    let converted = tempfile::tempdir().unwrap();
    let model = converted.path().join("model");
    let o = bin()
        .arg("convert-open-clip")
        .arg(fixtures().join("tiny-biomedclip"))
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("attention")
        .arg(fixtures().join("preprocess/rgb.png"))
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let (npy_shape, values) = npy_f32(&out.path().join("attention.npy"));
    assert_eq!(npy_shape, shape);
    // Softmax rows: each head's attention to the patches is positive and, with the class token's own
    // share left out, sums to at most 1.
    let per_map = shape[2] * shape[3];
    for m in values.chunks(per_map) {
        let s: f32 = m.iter().sum();
        assert!(
            m.iter().all(|x| *x >= 0.0) && s <= 1.0 + 1e-5 && s > 0.0,
            "{s}"
        );
    }
}

#[test]
fn a_draft_states_the_demo_findings_on_their_side_with_its_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("models/radclip-demo");
    let words = radclip_assist::library::labeler(
        &radclip_clip::zeroshot::FindingList::load(&model.join("findings.toml")).unwrap(),
    )
    .unwrap()
    .unwrap();
    for (study, finding) in [
        ("PHANTOM-CXR-2026-0000", "Pneumothorax"),
        ("PHANTOM-CXR-2026-0001", "Nodule"),
    ] {
        let dir = root.join("assets/demo-cxr").join(study);
        let v = run_json_with(&model, &["draft"], &[&dir.join("image.dcm")]);
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("FINDINGS: ") && text.contains("\nIMPRESSION: "),
            "{text}"
        );
        // What the truth says, read back from the draft by the labeler: the finding, on its side,
        // and nothing else stated.
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap())
                .unwrap();
        let side = truth["findings"][0]["side"].as_str().unwrap();
        let i = words.names().iter().position(|n| n == finding).unwrap();
        let stated = words.stated(text);
        assert!(stated[i], "{finding} not stated in {text}");
        assert_eq!(stated.iter().filter(|s| **s).count(), 1, "{text}");
        assert_eq!(words.sides(text)[i].name(), side, "{text}");
        // Every sentence names the archive report it came from and its score.
        for s in v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["impression"].as_array().unwrap())
        {
            assert!(
                s["source"].as_str().unwrap().starts_with("Archive study "),
                "{s}"
            );
            assert!(s["score"].as_f64().unwrap() > 0.0);
            assert!(text.contains(s["text"].as_str().unwrap()));
        }
        assert!(
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["negative"] == true)
        );
        assert_eq!(
            v["provenance"]["method"],
            "drafted report (sentence retrieval)"
        );
    }
}
