//! The demo list's words on the phantom reports of the held-out seed: the labeler must read back the
//! findings each report was written from (the truth of the case, not our own output).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use radclip_phantom::cxr::{Kind, Side};
use radclip_report::Sides;

/// The phantom kind of each finding of the labeler's list, in its order.
fn kinds_of(labeler: &radclip_report::Labeler) -> Vec<Kind> {
    labeler
        .names()
        .iter()
        .map(|n| {
            *Kind::ALL
                .iter()
                .find(|k| k.name().eq_ignore_ascii_case(n))
                .unwrap()
        })
        .collect()
}

#[test]
fn phantom_reports_are_read_back_as_written() {
    let labeler = common::demo_labeler();
    let kinds = kinds_of(&labeler);
    let n = 1000u64;
    let (mut findings_ok, mut text_ok) = (0u64, 0u64);
    let mut wrong = Vec::new();
    for i in 0..n {
        let s = radclip_phantom::cxr_sample(1000, i);
        let truth: Vec<bool> = kinds.iter().map(|k| s.case.has(*k)).collect();
        let got = labeler.stated(&s.report.findings);
        if got == truth {
            findings_ok += 1;
        } else if wrong.len() < 5 {
            wrong.push(s.report.findings.clone());
        }
        text_ok += u64::from(labeler.stated(&s.report.text()) == truth);
    }
    eprintln!("phantom reports read back: findings {findings_ok}/{n}, whole text {text_ok}/{n}");
    assert_eq!(findings_ok, n, "misread: {wrong:#?}");
    assert_eq!(text_ok, n);
}

#[test]
fn phantom_reports_name_each_finding_on_its_side() {
    let labeler = common::demo_labeler();
    let kinds = kinds_of(&labeler);
    let n = 1000u64;
    let (mut checked, mut right) = (0u64, 0u64);
    let mut wrong = Vec::new();
    for i in 0..n {
        let s = radclip_phantom::cxr_sample(1000, i);
        let got = labeler.sides(&s.report.text());
        for (k, sides) in kinds.iter().zip(&got) {
            // The truth's sides of this kind (cardiomegaly has none).
            let want = s
                .case
                .findings
                .iter()
                .filter(|f| f.kind == *k)
                .filter_map(|f| f.side)
                .fold(Sides::default(), |acc, side| {
                    acc.union(match side {
                        Side::Left => Sides::LEFT,
                        Side::Right => Sides::RIGHT,
                    })
                });
            if !s.case.has(*k) {
                continue;
            }
            checked += 1;
            if *sides == want {
                right += 1;
            } else if wrong.len() < 5 {
                wrong.push((k.name(), want, *sides, s.report.text()));
            }
        }
    }
    eprintln!("phantom findings on their side: {right}/{checked}");
    assert!(checked > 500);
    assert_eq!(right, checked, "misread: {wrong:#?}");
}
