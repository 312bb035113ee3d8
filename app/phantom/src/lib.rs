//! Synthetic phantom studies with ground truth, deterministic from a seed: PA chest radiographs with
//! findings (a pixel mask each), their radiology reports, and a CT series; written as real DICOM with a
//! documented sidecar of the truth. Every name and institution in them says they are synthetic.
//!
//! A study is addressed by `(seed, index)`: the same pair always gives the same case, report and bytes,
//! whatever else is generated, so training, evaluation and the demo study can share one generator.

pub mod ct;
pub mod cxr;
pub mod dicom_out;
pub mod error;
pub mod report;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

pub use cxr::{CxrCase, CxrImage, Finding, Kind, Side, Zone};
pub use error::{Error, Result};
pub use report::Report;

use dicom_out::{DxImage, StudyIds, TextSr, uid};

/// Version of the generator's output, recorded in every truth file; bumped when pixels or reports change.
pub const GENERATOR_VERSION: u32 = 1;

/// The random stream of one study (`stream` separates case, report and identity draws, so a change to
/// one does not shift the others).
pub fn study_rng(seed: u64, index: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(&stream.to_le_bytes());
    key[24..].copy_from_slice(b"radclip!");
    ChaCha8Rng::from_seed(key)
}

/// One chest radiograph case and its report.
#[derive(Debug, Clone)]
pub struct CxrSample {
    pub case: CxrCase,
    pub report: Report,
}

/// The case and report of study `index` of `seed`.
pub fn cxr_sample(seed: u64, index: u64) -> CxrSample {
    let case = CxrCase::sample(&mut study_rng(seed, index, 0));
    let report = report::write(&case, &mut study_rng(seed, index, 1));
    CxrSample { case, report }
}

/// The display window a technologist would set for a radiograph: its pixels' 2nd to 99.5th percentile
/// (center, width).
pub fn display_window(pixels: &[u16]) -> (f64, f64) {
    let mut sorted = pixels.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return (2048.0, 4096.0);
    }
    let q = |p: f64| f64::from(sorted[((sorted.len() - 1) as f64 * p) as usize]);
    let (lo, hi) = (q(0.02), q(0.995));
    // Whole numbers, as the file stores them (DS "{:.0}"), so memory and file agree.
    (((lo + hi) / 2.0).round(), (hi - lo).max(1.0).round())
}

/// The rendered radiograph as a decoded DICOM frame (what the viewer and the CLIP engine see when they
/// read `image.dcm`), with its display window.
pub fn as_frame(img: &CxrImage) -> radclip_dicom::Frame {
    let (c, w) = display_window(&img.pixels);
    let lo = img.pixels.iter().copied().min().unwrap_or(0);
    let hi = img.pixels.iter().copied().max().unwrap_or(0);
    radclip_dicom::Frame {
        rows: img.size as u32,
        cols: img.size as u32,
        color: radclip_dicom::ColorModel::Mono { invert: false },
        samples: radclip_dicom::Samples::U16(img.pixels.clone()),
        modality: radclip_dicom::ModalityLut::Rescale {
            slope: 1.0,
            intercept: 0.0,
        },
        windows: vec![radclip_dicom::Window {
            center: c,
            width: w,
        }],
        voi_function: radclip_dicom::VoiFunction::Linear,
        voi_luts: Vec::new(),
        stored_range: (i64::from(lo), i64::from(hi)),
    }
}

/// A finding as the truth file records it, in pixels of the written image.
#[derive(Debug, Clone, Serialize)]
pub struct FindingTruth {
    pub kind: Kind,
    pub side: Option<Side>,
    pub zone: Option<Zone>,
    pub severity: Option<&'static str>,
    /// Nodule/mass diameter, effusion height, pneumothorax rim: in mm. Cardiomegaly: the ratio × 100.
    pub size: f64,
    pub mask: String,
    /// Its segment number in `seg.dcm`.
    pub segment: u16,
    pub area_px: usize,
    /// (row0, col0, row1, col1), inclusive.
    pub bbox: Option<(usize, usize, usize, usize)>,
    /// (row, column) of the mask's centroid.
    pub centroid: Option<(f64, f64)>,
}

/// The sidecar `truth.json` of a radiograph study.
#[derive(Debug, Clone, Serialize)]
pub struct CxrTruth {
    pub generator: &'static str,
    pub generator_version: u32,
    pub seed: u64,
    pub index: u64,
    pub patient_id: String,
    pub study_uid: String,
    pub rows: usize,
    pub columns: usize,
    pub pixel_spacing_mm: f64,
    pub cardiothoracic_ratio: f64,
    /// 1 where the study has the finding, 0 where not, for every kind.
    pub labels: std::collections::BTreeMap<&'static str, u8>,
    pub findings: Vec<FindingTruth>,
    pub report: String,
    pub files: Vec<String>,
}

fn identity(seed: u64, index: u64, kind: &str) -> StudyIds {
    let mut rng = study_rng(seed, index, 2);
    let year = rng.random_range(1940..2001);
    let month = rng.random_range(1..13);
    let day = rng.random_range(1..29);
    StudyIds {
        patient_name: format!("SYNTHETIC^PHANTOM {kind} {seed}-{index:04}"),
        patient_id: format!("PHANTOM-{kind}-{seed}-{index:04}"),
        sex: if rng.random_bool(0.5) { "F" } else { "M" },
        birth_date: format!("{year:04}{month:02}{day:02}"),
        study_uid: uid(&[seed, index, 1]),
        study_date: format!(
            "2026{:02}{:02}",
            rng.random_range(1..13),
            rng.random_range(1..29)
        ),
        accession: format!("SYN{seed:04}{index:05}"),
    }
}

/// Writes study `index` of `seed` at `size`² into `root/<patient id>/`: `image.dcm` (DX), `report.dcm`
/// (Basic Text SR), `report.txt`, one `mask-<finding>.png` per finding, `seg.dcm` (the masks as a DICOM
/// Segmentation, when there are findings) and `truth.json`.
pub fn write_cxr_study(root: &Path, seed: u64, index: u64, size: usize) -> Result<CxrTruth> {
    if !(64..=4096).contains(&size) {
        return Err(Error::Input(format!(
            "image size {size} is outside 64–4096 pixels"
        )));
    }
    let sample = cxr_sample(seed, index);
    let img = sample.case.render(size);
    let ids = identity(seed, index, "CXR");
    let dir = dicom_out::ensure_dir(&root.join(&ids.patient_id))?;
    let pixel_mm = report::FIELD_MM / size as f64;
    let series = uid(&[seed, index, 2]);
    let sop = uid(&[seed, index, 3]);
    let window = display_window(&img.pixels);
    dicom_out::write_dx(
        &dir.join("image.dcm"),
        &ids,
        &DxImage {
            pixels: &img.pixels,
            size,
            pixel_mm,
            series_uid: series.clone(),
            sop_uid: sop.clone(),
            window,
        },
    )?;
    dicom_out::write_sr(
        &dir.join("report.dcm"),
        &ids,
        &TextSr {
            findings: &sample.report.findings,
            impression: &sample.report.impression,
            series_uid: uid(&[seed, index, 4]),
            sop_uid: uid(&[seed, index, 5]),
            evidence: (
                series.clone(),
                dicom_dictionary_std::uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION
                    .to_string(),
                sop.clone(),
            ),
        },
    )?;
    let text = sample.report.text();
    dicom_out::write_text(&dir.join("report.txt"), &text)?;
    let mut files = vec![
        "image.dcm".to_string(),
        "report.dcm".to_string(),
        "report.txt".to_string(),
    ];
    let mut findings = Vec::new();
    let mut seen: std::collections::HashMap<Kind, usize> = Default::default();
    for (f, mask) in sample.case.findings.iter().zip(&img.masks) {
        let k = seen.entry(f.kind).or_default();
        *k += 1;
        let name = if *k == 1 {
            format!("mask-{}.png", f.kind.slug())
        } else {
            format!("mask-{}-{k}.png", f.kind.slug())
        };
        dicom_out::write_mask_png(&dir.join(&name), mask, size)?;
        let st = cxr::mask_stats(mask, size);
        let scale_mm = sample.case.anatomy.scale * report::FIELD_MM;
        findings.push(FindingTruth {
            kind: f.kind,
            side: f.side,
            zone: f.zone,
            severity: f.severity,
            size: if f.kind == Kind::Cardiomegaly {
                (f.size * 100.0).round()
            } else {
                (f.size * scale_mm * 10.0).round() / 10.0
            },
            mask: name.clone(),
            segment: findings.len() as u16 + 1,
            area_px: st.area_px,
            bbox: st.bbox,
            centroid: st.centroid,
        });
        files.push(name);
    }
    if !findings.is_empty() {
        let segments = sample
            .case
            .findings
            .iter()
            .map(|f| {
                let (category, property) = dicom_out::segment_codes(f.kind);
                let side = f.side.map_or(String::new(), |s| format!("{} ", s.name()));
                dicom_out::Segment {
                    label: format!("{side}{}", f.kind.name()),
                    description: format!("Ground truth: {side}{}", f.kind.name()),
                    category,
                    property,
                }
            })
            .collect();
        let source = (
            dicom_dictionary_std::uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION.to_string(),
            sop.clone(),
        );
        let frames = img
            .masks
            .iter()
            .enumerate()
            .map(|(i, mask)| dicom_out::SegFrame {
                segment: i as u16 + 1,
                source: source.clone(),
                position: None,
                mask,
            })
            .collect();
        dicom_out::write_seg(
            &dir.join("seg.dcm"),
            &ids,
            &dicom_out::SegObject {
                size,
                pixel_mm,
                series_uid: uid(&[seed, index, 6]),
                sop_uid: uid(&[seed, index, 7]),
                source_series: series.clone(),
                volume: None,
                segments,
                frames,
            },
        )?;
        files.push("seg.dcm".into());
    }
    files.push("truth.json".into());
    let truth = CxrTruth {
        generator: "radclip phantom cxr",
        generator_version: GENERATOR_VERSION,
        seed,
        index,
        patient_id: ids.patient_id.clone(),
        study_uid: ids.study_uid.clone(),
        rows: size,
        columns: size,
        pixel_spacing_mm: pixel_mm,
        cardiothoracic_ratio: (sample.case.anatomy.ctr * 1000.0).round() / 1000.0,
        labels: Kind::ALL
            .iter()
            .map(|k| (k.slug(), u8::from(sample.case.has(*k))))
            .collect(),
        findings,
        report: text,
        files,
    };
    let json = serde_json::to_string_pretty(&truth).map_err(|e| Error::Write {
        path: dir.join("truth.json"),
        reason: e.to_string(),
    })?;
    dicom_out::write_text(&dir.join("truth.json"), &(json + "\n"))?;
    Ok(truth)
}

/// Writes studies `first..first + count` of `seed` in parallel, then `root/index.jsonl` (one line per
/// study: folder, labels, report) in index order.
pub fn write_cxr_set(
    root: &Path,
    seed: u64,
    first: u64,
    count: u64,
    size: usize,
) -> Result<Vec<CxrTruth>> {
    dicom_out::ensure_dir(root)?;
    let truths = (first..first + count)
        .into_par_iter()
        .map(|i| write_cxr_study(root, seed, i, size))
        .collect::<Result<Vec<_>>>()?;
    let mut lines = String::new();
    for t in &truths {
        let line = serde_json::json!({
            "folder": t.patient_id,
            "labels": t.labels,
            "report": t.report,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    dicom_out::write_text(&root.join("index.jsonl"), &lines)?;
    Ok(truths)
}

/// The folder a study of `seed`/`index` is written to under `root`.
pub fn cxr_study_dir(root: &Path, seed: u64, index: u64) -> PathBuf {
    root.join(format!("PHANTOM-CXR-{seed}-{index:04}"))
}
