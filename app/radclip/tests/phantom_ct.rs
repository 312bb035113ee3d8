//! `radclip phantom ct --count N`: a cohort of chest CT phantoms, each its own build and findings.
//! Checked against its own truth through the DICOM reader: every nodule's HU at its centre, lung
//! around it, the images it spans; an effusion's, pneumothorax's, consolidation's or emphysema's HU
//! where its SEG frame marks it;
//! the SEG's frames and the report's sentences; normal cases carry no SEG; the same seed writes the
//! same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn phantom(out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_radclip"))
        .args([
            "phantom",
            "ct",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "7",
            "--count",
            "12",
            "--size",
            "128",
            "--slices",
            "48",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The HU of the pixel nearest patient (x, y) on the slice numbered `instance`.
fn hu_at(dir: &Path, instance: u64, x: f64, y: f64) -> f64 {
    let path = dir.join(format!("CT{instance:04}.dcm"));
    let frame = radclip_dicom::pixel::decode_image_file(&path)
        .unwrap()
        .swap_remove(0);
    let tree = radclip_dicom::scan(&path).unwrap();
    let series = tree.series().next().unwrap();
    let g = series.geometry_of(0).unwrap();
    let ([row_mm, col_mm], _) = g.spacing.unwrap();
    let c = ((x - g.position[0]) / col_mm).round() as u32;
    let r = ((y - g.position[1]) / row_mm).round() as u32;
    frame.value_at(r, c).unwrap()
}

#[test]
fn a_ct_cohort_matches_its_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    phantom(&a);
    phantom(&b);
    let mut normal = 0;
    let mut nodules = 0;
    let mut others = 0;
    for case in std::fs::read_dir(&a).unwrap() {
        let dir = case.unwrap().path();
        let name = dir.file_name().unwrap().to_owned();
        for f in ["truth.json", "report.txt", "CT0024.dcm"] {
            assert_eq!(
                std::fs::read(dir.join(f)).unwrap(),
                std::fs::read(b.join(&name).join(f)).unwrap(),
                "{f} of {name:?} differs between two runs"
            );
        }
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap())
                .unwrap();
        let report = std::fs::read_to_string(dir.join("report.txt")).unwrap();
        let lesions = truth["lesions"].as_array().unwrap();
        if lesions.is_empty() {
            normal += 1;
            assert!(truth["segmentation"].is_null());
            assert!(!dir.join("seg.dcm").exists());
            assert!(report.contains("No pulmonary nodule"), "{report}");
            continue;
        }
        let seg = radclip_dicom::seg::Segmentation::read(&dir.join("seg.dcm")).unwrap();
        let mut spanned = 0;
        let tree = radclip_dicom::scan(&dir).unwrap();
        let series = tree.series().find(|s| s.is_image()).unwrap();
        for (k, l) in lesions.iter().enumerate() {
            let slices: Vec<u64> = l["slices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            spanned += slices.len();
            assert!(slices.windows(2).all(|w| w[1] == w[0] + 1), "{slices:?}");
            let kind = l["kind"].as_str().unwrap();
            let location = l["location"].as_str().unwrap();
            let want = l["hu"].as_f64().unwrap();
            if !kind.contains("nodule") {
                others += 1;
                let side = l["side"].as_str().unwrap();
                assert!(location.starts_with(side));
                if kind == "pleural effusion" || kind == "pneumothorax" {
                    assert!(l["lobe"].is_null());
                    assert!(l["depth_mm"].as_f64().unwrap() > 0.0);
                    assert!(
                        report.contains(&format!("{side} {kind}.")),
                        "{kind} not in {report}"
                    );
                } else {
                    let lobe = l["lobe"].as_str().unwrap();
                    assert_eq!(format!("{side} {lobe} lobe"), location);
                    let capital = format!("{}{}", kind[..1].to_uppercase(), &kind[1..]);
                    let sentence = format!("{capital} in the {location}");
                    assert!(report.contains(&sentence), "{sentence:?} not in {report}");
                }
                // The image holds the finding's HU where its SEG frame says it is.
                let frame = seg
                    .frames
                    .iter()
                    .filter(|f| usize::from(f.segment) == k + 1)
                    .nth(slices.len() / 2)
                    .unwrap();
                let at = frame.mask.iter().position(|m| *m).unwrap();
                let inst = series
                    .instances
                    .iter()
                    .find(|i| Some(&*i.sop_instance_uid) == frame.source.as_deref())
                    .unwrap();
                let image = radclip_dicom::pixel::decode_image_file(&inst.path)
                    .unwrap()
                    .swap_remove(0);
                let got = image
                    .value_at((at / 128) as u32, (at % 128) as u32)
                    .unwrap();
                assert!(
                    (got - want).abs() < 45.0,
                    "{name:?}: {got} HU in a {want} HU {kind}"
                );
                continue;
            }
            nodules += 1;
            let c: Vec<f64> = l["center_mm"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let d = l["diameter_mm"].as_f64().unwrap();
            // As many images as a sphere of this size crosses 4-mm slices.
            let expect = d / 4.0;
            assert!(
                (slices.len() as f64 - expect).abs() <= 1.5,
                "{d} mm over {} slices",
                slices.len()
            );
            // Its HU at the centre, on its middle image; lung a few mm beyond its edge.
            let mid = slices[slices.len() / 2];
            let got = hu_at(&dir, mid, c[0], c[1]);
            assert!(
                (got - want).abs() < 45.0,
                "{name:?}: {got} HU at the centre of a {want} HU nodule"
            );
            let out = d / 2.0 + 4.0;
            let lung = [(out, 0.0), (-out, 0.0), (0.0, out), (0.0, -out)]
                .iter()
                .filter(|(dx, dy)| hu_at(&dir, mid, c[0] + dx, c[1] + dy) < -400.0)
                .count();
            assert!(lung >= 3, "{name:?}: lung on {lung} of 4 sides of a nodule");
            // Side and lobe as the location says; the report states size, kind and lobe.
            assert_eq!(
                format!(
                    "{} {} lobe",
                    l["side"].as_str().unwrap(),
                    l["lobe"].as_str().unwrap()
                ),
                location
            );
            let sentence = format!("{d:.0} mm {kind} in the {location}");
            assert!(report.contains(&sentence), "{sentence:?} not in {report}");
        }
        assert_eq!(
            seg.frames.len(),
            spanned,
            "one SEG frame per finding and image"
        );
        assert_eq!(seg.segments.len(), lesions.len());
    }
    assert!(
        normal >= 1 && nodules >= 5 && others >= 4,
        "{normal} normal cases, {nodules} nodules, {others} other findings"
    );
}
