//! Structured Reports read as text, against what pydicom reads from the same files
//! (`tests/fixtures/make_sr_reference.py`, committed as `sr_reference.json`), and the demo studies' SR
//! reports against the plain-text reports written beside them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use radclip_dicom::sr::{SrDocument, is_sr_file};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    std::env::var_os("RADCLIP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"))
}

fn normal(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim()
        .to_string()
}

#[test]
fn every_text_pydicom_reads_is_in_the_report_in_order() {
    let text =
        std::fs::read_to_string(workspace().join("tests/fixtures/sr_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, want) in reference.as_object().unwrap() {
        let path = fixtures().join(name);
        assert!(path.is_file(), "run bash tests/fixtures/fetch.sh ({name})");
        assert!(is_sr_file(&path));
        let doc = SrDocument::read(&path).unwrap();
        assert_eq!(doc.title, want["title"].as_str().unwrap(), "{name}");
        let all = doc.text();
        let mut at = 0;
        for t in want["texts"].as_array().unwrap() {
            let t = normal(t.as_str().unwrap());
            let found = all[at..]
                .find(&t)
                .unwrap_or_else(|| panic!("{t:?} not after {at} in {all:?}"));
            at += found + t.len();
        }
    }
}

#[test]
fn the_demo_reports_say_in_sr_what_their_text_says() {
    let demo = workspace().join("assets/demo-cxr");
    let mut studies = 0;
    for e in std::fs::read_dir(&demo).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        studies += 1;
        let doc = SrDocument::read(&dir.join("report.dcm")).unwrap();
        let txt = std::fs::read_to_string(dir.join("report.txt")).unwrap();
        let headings: Vec<&str> = doc.sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["Findings", "Impression"]);
        for s in &doc.sections {
            assert!(txt.contains(&s.text), "{:?} not in {txt:?}", s.text);
        }
        // An image is not a report.
        assert!(!is_sr_file(&dir.join("image.dcm")));
        assert!(SrDocument::read(&dir.join("image.dcm")).is_err());
    }
    assert!(studies >= 4);
}
