//! `radclip reslice` on the demo CT: the plane it prints follows DICOM's conventions (the first pixel's
//! centre, unit row and column axes), its raw values are HU where the truth says (a lesion's centre),
//! and a tilted or unknown plane is refused with a sentence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::npy_f32;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn radclip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radclip"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_coronal_plane_through_a_lesion_reads_its_hu_at_its_centre() {
    let dir = tempfile::tempdir().unwrap();
    let (png, raw) = (dir.path().join("c.png"), dir.path().join("c.npy"));
    // The solid nodule of truth.json: centre (-70, -10, 62) mm, 30 HU, in lung.
    let o = radclip(&[
        "reslice",
        root().join("assets/demo").to_str().unwrap(),
        "--plane",
        "coronal",
        "--through=-70,-10,62",
        "--out",
        png.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (origin, row, col, sp) = (
        f("origin_mm"),
        f("row_axis"),
        f("column_axis"),
        f("pixel_spacing_mm"),
    );
    // Coronal, viewed from the front: rows run to the patient's left (+x), columns to the feet (−z).
    assert_eq!(row, [1.0, 0.0, 0.0]);
    assert_eq!(col, [0.0, 0.0, -1.0]);
    assert_eq!(sp, [1.4, 1.4]);
    let (rows, cols) = (
        v["rows"].as_u64().unwrap() as usize,
        v["columns"].as_u64().unwrap() as usize,
    );
    let (shape, values) = npy_f32(&raw);
    assert_eq!(shape, [rows, cols]);
    // The lesion's centre is a pixel: (x − x0) / spacing along the row, (z0 − z) down the column.
    let c = ((-70.0 - origin[0]) / sp[1]).round() as usize;
    let r = ((origin[2] - 62.0) / sp[0]).round() as usize;
    assert!((origin[1] + 10.0).abs() < 1e-9, "the plane is at y = −10");
    let hu = values[r * cols + c];
    assert!((hu - 30.0).abs() < 25.0, "{hu} HU at the nodule's centre");
    // Lung beside it (15 mm to the patient's right): air-like.
    let lung = values[r * cols + c - 11];
    assert!(lung < -600.0, "{lung} HU in the lung");
    // The PNG is the same size.
    let bytes = std::fs::read(&png).unwrap();
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((be(20) as usize, be(16) as usize), (rows, cols));

    let bad = radclip(&[
        "reslice",
        root().join("assets/demo").to_str().unwrap(),
        "--plane",
        "diagonal",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("axial, coronal or sagittal"));
}
