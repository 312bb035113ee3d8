//! Decoded values of the ~235 real files shipped in the `pydicom` and `pydicom-data` wheels, compared
//! with what pydicom 3.0.2 (+ pylibjpeg) decodes. Expected values come from `tests/fixtures/make_manifest.py`
//! (committed manifest); the files themselves are fetched by `tests/fixtures/fetch.sh` at test set-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use radclip_dicom::{Frame, Samples, pixel};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Files pydicom decodes that radclip does not match yet, each with the reason. Every entry is checked to
/// still fail: a fixed file must be removed from this list.
const KNOWN_GAPS: &[(&str, &str)] = &[(
    "pydicom/data/test_files/JPGExtended.dcm",
    "12-bit lossy JPEG (process 2/4): the jpeg-decoder codec of dicom-rs decodes 8-bit only",
)];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    let root = std::env::var_os("RADCLIP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"));
    assert!(
        root.join("pydicom").is_dir(),
        "test fixtures missing at {}: run `bash tests/fixtures/fetch.sh` (the README's test command does)",
        root.display()
    );
    root
}

fn manifest() -> Vec<Value> {
    let text =
        std::fs::read_to_string(workspace().join("tests/fixtures/pydicom_manifest.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["files"].as_array().unwrap().clone()
}

fn stored_sha(f: &Frame) -> String {
    let mut h = Sha256::new();
    let mut buf = Vec::with_capacity(f.samples.len() * 4);
    match &f.samples {
        // pydicom's `astype('<i4')` wraps unsigned 32-bit values; `as i32` does the same.
        Samples::U32(v) => v
            .iter()
            .for_each(|&x| buf.extend_from_slice(&(x as i32).to_le_bytes())),
        s => s.for_each(|x| buf.extend_from_slice(&(x as i32).to_le_bytes())),
    }
    h.update(&buf);
    format!("{:x}", h.finalize())
}

/// Post-modality values of every sample (all channels for colour), as pydicom's manifest computes them.
fn modality_values(f: &Frame) -> Vec<f64> {
    let mut out = Vec::with_capacity(f.samples.len());
    f.samples.for_each(|x| out.push(f.modality.apply(x as f64)));
    out
}

fn grid(f: &Frame, values: &[f64]) -> Vec<Option<f64>> {
    let (rows, cols) = (f.rows as usize, f.cols as usize);
    grid_of(rows, cols, values.len() / (rows * cols).max(1), values)
}

/// Compares one file; `Err` says how it differs.
fn compare(root: &Path, entry: &Value) -> Result<&'static str, String> {
    let path = root.join(entry["path"].as_str().unwrap());
    let frames = pixel::decode_file(&path).map_err(|e| format!("decode failed: {e}"))?;
    let expected = entry["frames_stats"].as_array().unwrap();
    let lossy = entry["lossy"].as_bool().unwrap_or(false);
    if frames.len() != entry["frames"].as_u64().unwrap() as usize {
        return Err(format!(
            "{} frames, pydicom {}",
            frames.len(),
            entry["frames"]
        ));
    }
    let mut exact = true;
    for (i, (f, e)) in frames.iter().zip(expected).enumerate() {
        let sha_ok = stored_sha(f) == e["sha256"].as_str().unwrap();
        exact &= sha_ok;
        let values = modality_values(f);
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, &v| {
                (a.0.min(v), a.1.max(v))
            });
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let (elo, ehi, emean) = (
            e["min"].as_f64().unwrap(),
            e["max"].as_f64().unwrap(),
            e["mean"].as_f64().unwrap(),
        );
        if !lossy {
            if !sha_ok {
                return Err(format!(
                    "frame {i}: stored values differ (min {lo} max {hi} mean {mean:.4}; pydicom {elo} {ehi} {emean:.4})"
                ));
            }
            let tol = 1e-9 * (1.0 + elo.abs().max(ehi.abs()));
            if (lo - elo).abs() > tol
                || (hi - ehi).abs() > tol
                || (mean - emean).abs() > 1e-6 * (1.0 + emean.abs())
            {
                return Err(format!(
                    "frame {i}: modality values differ: min/max/mean {lo} {hi} {mean} vs {elo} {ehi} {emean}"
                ));
            }
        } else {
            // Lossy codecs may round differently: every 4×4 block mean and the frame mean within 1.
            if (mean - emean).abs() > 1.0 {
                return Err(format!("frame {i}: mean {mean:.3} vs pydicom {emean:.3}"));
            }
            for (k, (g, eg)) in grid(f, &values)
                .iter()
                .zip(e["grid"].as_array().unwrap())
                .enumerate()
            {
                if let (Some(g), Some(eg)) = (g, eg.as_f64())
                    && (g - eg).abs() > 1.0
                {
                    return Err(format!(
                        "frame {i}: block {k} mean {g:.3} vs pydicom {eg:.3}"
                    ));
                }
            }
        }
    }
    Ok(if exact { "exact" } else { "within 1 (lossy)" })
}

#[test]
fn decoded_values_match_pydicom() {
    let root = fixtures();
    let files = manifest();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let (mut exact, mut close, mut decodable) = (0, 0, 0);
    for entry in files.iter().filter(|e| e["status"] == "ok") {
        decodable += 1;
        let p = entry["path"].as_str().unwrap();
        let gap = KNOWN_GAPS.iter().find(|(g, _)| *g == p);
        match (compare(&root, entry), gap) {
            (Ok(kind), None) => {
                if kind == "exact" {
                    exact += 1
                } else {
                    close += 1
                }
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{p}: now matches; remove it from KNOWN_GAPS"))
            }
            (Err(e), Some((_, why))) => report.push(format!("known gap {p}: {why} ({e})")),
            (Err(e), None) => failures.push(format!("{p} [{}]: {e}", entry["transfer_syntax"])),
        }
    }
    let summary = format!(
        "{decodable} files pydicom decodes: {exact} exact, {close} within 1 (lossy), {} known gaps, {} failures",
        report.len(),
        failures.len()
    );
    let text = [vec![summary.clone()], report, failures.clone()]
        .concat()
        .join("\n");
    let _ = std::fs::write(workspace().join("target/pydicom-parity.txt"), &text);
    println!("{text}");
    assert!(failures.is_empty(), "{summary}\n{}", failures.join("\n"));
}

/// The default display of every file for which pydicom defines one (its VOI stage with the file's
/// first VOI LUT table or window, MONOCHROME1 and Presentation LUT Shape inversion; PALETTE COLOR
/// through its tables, segmented ones included), against `render(frame, None)`. Exact, or within
/// rounding: pydicom computes the window in a different order of floating-point operations, so a value
/// on a rounding boundary may land one level apart.
///
/// pydicom 3.0.2 misreads the 16-bit palettes of the big-endian copies of OBXXXX1A (its display of
/// them is all but black while the little-endian, RLE and 2-frame copies of the same image agree), so
/// those two are held to the little-endian file's reference.
const DISPLAY_TWINS: &[(&str, &str)] = &[
    (
        "data_store/data/OBXXXX1A_expb.dcm",
        "data_store/data/OBXXXX1A.dcm",
    ),
    (
        "data_store/data/OBXXXX1A_expb_2frame.dcm",
        "data_store/data/OBXXXX1A_2frame.dcm",
    ),
];

#[test]
fn default_display_matches_pydicom() {
    let root = fixtures();
    let (mut exact, mut near, mut checked) = (0, 0, 0);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    let all = manifest();
    let by_path = |p: &str| all.iter().find(|e| e["path"] == p).cloned();
    for entry in all.iter().filter(|e| e["display"].is_object()) {
        let p = entry["path"].as_str().unwrap();
        if KNOWN_GAPS.iter().any(|(g, _)| *g == p) {
            continue;
        }
        let reference = match DISPLAY_TWINS.iter().find(|(f, _)| *f == p) {
            Some((_, twin)) => by_path(twin).expect("twin in the manifest")["display"].clone(),
            None => entry["display"].clone(),
        };
        checked += 1;
        *kinds
            .entry(reference["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
        let frames = match pixel::decode_file(&root.join(p)) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{p}: {e}"));
                continue;
            }
        };
        let mut all_exact = true;
        let mut problem = None;
        for (i, (f, e)) in frames
            .iter()
            .zip(reference["frames"].as_array().unwrap())
            .enumerate()
        {
            let (data, spp) = match radclip_dicom::render(f, None) {
                radclip_dicom::Rendered::Grey { data, .. } => (data, 1),
                radclip_dicom::Rendered::Rgb { data, .. } => (data, 3),
            };
            let sha = format!("{:x}", Sha256::digest(&data));
            if sha == e["sha256"].as_str().unwrap() {
                continue;
            }
            all_exact = false;
            let values: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
            let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
            let emean = e["mean"].as_f64().unwrap();
            let g = grid_of(f.rows as usize, f.cols as usize, spp, &values);
            let worst = g
                .iter()
                .zip(e["grid"].as_array().unwrap())
                .filter_map(|(a, b)| Some((a.as_ref()? - b.as_f64()?).abs()))
                .fold(0.0f64, f64::max);
            if (mean - emean).abs() > 0.02 || worst > 0.1 {
                problem = Some(format!(
                    "frame {i}: display mean {mean:.4} vs pydicom {emean:.4}, worst block {worst:.3}"
                ));
                break;
            }
        }
        match problem {
            Some(msg) => failures.push(format!("{p}: {msg}")),
            None if all_exact => exact += 1,
            None => near += 1,
        }
    }
    let summary = format!(
        "default display of {checked} files ({kinds:?}): {exact} identical, {near} within rounding, {} failures",
        failures.len()
    );
    println!("{summary}");
    let _ = std::fs::write(
        workspace().join("target/pydicom-display-parity.txt"),
        [vec![summary.clone()], failures.clone()]
            .concat()
            .join("\n"),
    );
    assert!(
        checked >= 60,
        "{summary}: the display references are missing"
    );
    assert!(failures.is_empty(), "{summary}\n{}", failures.join("\n"));
}

fn grid_of(rows: usize, cols: usize, spp: usize, values: &[f64]) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for by in 0..4 {
        for bx in 0..4 {
            let (r0, r1) = (by * rows / 4, (by + 1) * rows / 4);
            let (c0, c1) = (bx * cols / 4, (bx + 1) * cols / 4);
            let (mut sum, mut n) = (0.0, 0usize);
            for r in r0..r1 {
                for c in c0..c1 {
                    for s in 0..spp {
                        sum += values[(r * cols + c) * spp + s];
                        n += 1;
                    }
                }
            }
            out.push((n > 0).then(|| sum / n as f64));
        }
    }
    out
}

/// Every file of the sets, broken ones included, opens through the scanner and the decoder with a result
/// or an error message, never a panic; files pydicom cannot read are rejected or decoded, not crashed on.
#[test]
fn every_file_opens_without_panic() {
    let root = fixtures();
    let mut with_message = 0;
    for entry in manifest() {
        let path = root.join(entry["path"].as_str().unwrap());
        let scanned = radclip_dicom::scan(&path);
        let decoded = pixel::decode_file(&path);
        match &decoded {
            Ok(frames) => assert!(
                !frames.is_empty(),
                "{}: decoded to no frames",
                path.display()
            ),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && !msg.contains('\n'),
                    "{}: bad message {msg:?}",
                    path.display()
                );
                with_message += 1;
            }
        }
        if let Err(e) = scanned {
            assert!(!e.to_string().is_empty());
        }
        // pydicom drops this file's truncated pixel element; dicom-rs keeps it and openjpeg decodes it.
        let truncated_but_decodable =
            entry["path"] == "data_store/data/emri_small_jpeg_2k_lossless_too_short.dcm";
        if (entry["status"] == "no_pixels" || entry["status"] == "unreadable")
            && !truncated_but_decodable
        {
            // These must not produce an image out of nothing.
            if let Ok(frames) = &decoded {
                assert!(
                    entry["status"] == "unreadable",
                    "{}: pydicom sees no pixels, radclip decoded {} frame(s)",
                    path.display(),
                    frames.len()
                );
            }
        }
    }
    assert!(
        with_message > 60,
        "only {with_message} files gave an error: the broken/non-image files are not being exercised"
    );
}
