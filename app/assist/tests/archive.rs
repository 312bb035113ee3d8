//! Report archives with DICOM Structured Reports: a folder of SRs is read as reports, and a text report
//! kept beside the SR it was exported from is one report, not two.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use radclip_assist::archive::{is_archive_file, read_reports};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo-cxr")
}

#[test]
fn structured_reports_are_reports_and_their_text_exports_are_not_counted_twice() {
    let reports = read_reports(&demo()).unwrap();
    let studies: Vec<PathBuf> = std::fs::read_dir(demo())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(reports.len(), studies.len());
    for r in &reports {
        assert!(r.source.ends_with("report.dcm"), "{}", r.source);
        let txt =
            std::fs::read_to_string(Path::new(&r.source).with_file_name("report.txt")).unwrap();
        assert!(
            txt.contains(r.report.embedded.trim()),
            "{:?}",
            r.report.embedded
        );
        assert!(
            txt.contains(r.report.summary.trim()),
            "{:?}",
            r.report.summary
        );
    }
    // One SR file alone is an archive too; an image is not.
    let study = &studies[0];
    assert!(is_archive_file(&study.join("report.dcm")));
    assert!(!is_archive_file(&study.join("image.dcm")));
    let one = read_reports(&study.join("report.dcm")).unwrap();
    assert_eq!(one.len(), 1);
    assert!(read_reports(&study.join("image.dcm")).is_err());
    // A text report that differs from its folder's SR is kept beside it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(study.join("report.dcm"), dir.path().join("report.dcm")).unwrap();
    std::fs::write(
        dir.path().join("addendum.txt"),
        "FINDINGS:\nNew left effusion.\n",
    )
    .unwrap();
    std::fs::copy(study.join("report.txt"), dir.path().join("report.txt")).unwrap();
    let both = read_reports(dir.path()).unwrap();
    let mut names: Vec<&str> = both
        .iter()
        .map(|r| Path::new(&r.source).file_name().unwrap().to_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["addendum.txt", "report.dcm"]);
}
