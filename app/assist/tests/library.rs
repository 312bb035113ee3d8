//! The report library against an independent reading: the demo model's text features encoded another
//! way (`Engine::encode_texts`, all at once) and ranked by hand, and each report's findings read by the
//! labeler directly. What the viewer lists and `radclip eval` measures is [`ReportLibrary::list`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use candle_core::{DType, Device};
use radclip_assist::library::{ReportLibrary, labeler};
use radclip_assist::{LibraryReport, Listing};
use radclip_clip::engine::Engine;
use radclip_clip::zeroshot::FindingList;

fn engine() -> Engine {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/radclip-demo");
    Engine::load(&model.display().to_string(), &Device::Cpu).unwrap()
}

/// Phantom reports of a seed the demo model never trained on.
fn reports(n: u64) -> Vec<LibraryReport> {
    (0..n)
        .map(|i| {
            let r = radclip_phantom::cxr_sample(7, i).report;
            LibraryReport {
                title: format!("study {i}"),
                summary: r.impression.clone(),
                text: r.text(),
                embedded: r.findings.clone(),
            }
        })
        .collect()
}

/// Image features of held-out phantom `i` (seed 1000), as a query.
fn query(engine: &Engine, i: u64) -> Vec<f32> {
    let img = radclip_phantom::cxr_sample(1000, i).case.render(512);
    let frame = radclip_phantom::as_frame(&img);
    let rgb = radclip_assist::frame::rgb(&radclip_dicom::render(&frame, None));
    let p = engine.prepare(rgb).unwrap();
    engine
        .encode_images(&[&p], 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .remove(0)
}

/// Positions by cosine to `q`, best first, with the cosine, from text features encoded in one batch.
fn ranked_by_hand(engine: &Engine, reports: &[LibraryReport], q: &[f32]) -> Vec<(usize, f64)> {
    let texts: Vec<&str> = reports.iter().map(|r| r.embedded.as_str()).collect();
    let t = engine
        .encode_texts(&texts)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let mut r: Vec<(usize, f64)> = t
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let dot: f64 = row
                .iter()
                .zip(q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (i, dot / (norm(row) * norm(q)))
        })
        .collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1));
    r
}

fn library(engine: &Engine, reports: &[LibraryReport], words: bool) -> ReportLibrary {
    let list = FindingList::for_engine(engine).unwrap();
    let mut lib = ReportLibrary::new(if words { labeler(&list).unwrap() } else { None });
    for batch in reports.chunks(64) {
        lib.add(engine, batch.to_vec()).unwrap();
    }
    lib
}

#[test]
fn by_similarity_is_the_exact_cosine_ranking() {
    let engine = engine();
    let reports = reports(150);
    let lib = library(&engine, &reports, true);
    assert_eq!(lib.len(), 150);
    for qi in 0..3 {
        let q = query(&engine, qi);
        let want = ranked_by_hand(&engine, &reports, &q);
        let got = lib.list(&q, &[], 5, Listing::Similarity, |_| true).unwrap();
        assert_eq!(got.len(), 5);
        for (g, (pos, cos)) in got.iter().zip(&want) {
            assert_eq!(g.position, *pos, "query {qi}");
            assert!(
                (f64::from(g.score) - cos).abs() < 1e-4,
                "{} vs {cos}",
                g.score
            );
            assert_eq!(g.report, reports[*pos]);
        }
        // `keep` leaves a report out, as eval leaves out the query's own.
        let first = want[0].0;
        let without = lib
            .list(&q, &[], 5, Listing::Similarity, |p| p != first)
            .unwrap();
        assert_eq!(without[0].position, want[1].0);
    }
}

#[test]
fn shown_is_the_nearest_report_of_each_set_of_stated_findings() {
    let engine = engine();
    let reports = reports(150);
    let lib = library(&engine, &reports, true);
    assert!(lib.by_findings());
    let list = FindingList::for_engine(&engine).unwrap();
    let words = labeler(&list).unwrap().unwrap();
    let sets: Vec<Vec<bool>> = reports.iter().map(|r| words.stated(&r.text)).collect();
    for qi in 0..3 {
        let q = query(&engine, qi);
        let ranked = ranked_by_hand(&engine, &reports, &q);
        // By hand: walk the ranking, keep the first report of each set not yet listed.
        let mut want: Vec<usize> = Vec::new();
        for (pos, _) in &ranked {
            if want.len() < 5 && !want.iter().any(|w| sets[*w] == sets[*pos]) {
                want.push(*pos);
            }
        }
        let shown = lib.similar(&q, &[], 5).unwrap();
        let got: Vec<usize> = shown.iter().map(|s| s.position).collect();
        assert_eq!(got, want, "query {qi}");
        for s in &shown {
            let names: Vec<String> = list
                .finding
                .iter()
                .zip(&sets[s.position])
                .filter(|(_, on)| **on)
                .map(|(f, _)| f.name.clone())
                .collect();
            assert_eq!(s.stated.as_ref(), Some(&names));
        }
    }
}

#[test]
fn without_words_the_list_is_diverse_and_states_nothing() {
    let engine = engine();
    let reports = reports(100);
    let lib = library(&engine, &reports, false);
    assert!(!lib.by_findings());
    let q = query(&engine, 0);
    let shown = lib.similar(&q, &[], 5).unwrap();
    let diverse = lib.list(&q, &[], 5, Listing::Diverse, |_| true).unwrap();
    let plain = lib.list(&q, &[], 5, Listing::Similarity, |_| true).unwrap();
    let pos =
        |l: &[radclip_assist::SimilarReport]| l.iter().map(|s| s.position).collect::<Vec<_>>();
    assert_eq!(pos(&shown), pos(&diverse));
    // Maximal marginal relevance starts with the nearest report.
    assert_eq!(shown[0].position, plain[0].position);
    assert!(shown.iter().all(|s| s.stated.is_none()));
}

#[test]
fn reports_on_the_image_sides_are_listed_before_nearer_ones_on_the_other_side() {
    use radclip_assist::Sides;
    let engine = engine();
    let report = |title: &str, text: &str| LibraryReport {
        title: title.into(),
        summary: text.into(),
        text: text.into(),
        embedded: text.into(),
    };
    let reports = vec![
        report("left", "Small left pneumothorax."),
        report("right", "Small right pneumothorax."),
        report("effusion", "Small right pleural effusion."),
    ];
    let lib = library(&engine, &reports, true);
    let list = FindingList::for_engine(&engine).unwrap();
    let ptx = list
        .finding
        .iter()
        .position(|f| f.name == "Pneumothorax")
        .unwrap();
    // A query nearest to the left report, for an image that shows its pneumothorax on the right.
    let q = engine
        .encode_texts(&["Small left pneumothorax."])
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .remove(0);
    let blind = lib.list(&q, &[], 3, Listing::ByFindings, |_| true).unwrap();
    assert_eq!(blind[0].report.title, "left");
    let mut sides = vec![Sides::default(); list.finding.len()];
    sides[ptx] = Sides::RIGHT;
    let shown = lib.similar(&q, &sides, 3).unwrap();
    assert_eq!(shown[0].report.title, "right", "{shown:#?}");
    // The left report still comes, once the other sets are listed (it shares the right one's set).
    let titles: Vec<&str> = shown.iter().map(|s| s.report.title.as_str()).collect();
    assert_eq!(titles, ["right", "effusion", "left"]);
    // Unknown sides: as blind.
    let unknown = lib.similar(&q, &[], 3).unwrap();
    assert_eq!(unknown[0].report.title, "left");
}

#[test]
fn sides_contradict_only_where_both_name_one_and_share_none() {
    use radclip_assist::Sides;
    use radclip_assist::sides::contradicts;
    let n = Sides::default();
    assert!(contradicts(&[Sides::LEFT, n], &[Sides::RIGHT, n]));
    assert!(!contradicts(
        &[Sides::LEFT, n],
        &[Sides::LEFT, Sides::RIGHT]
    ));
    assert!(!contradicts(&[Sides::BOTH], &[Sides::RIGHT]));
    assert!(!contradicts(&[n], &[Sides::RIGHT]));
    assert!(!contradicts(&[Sides::LEFT], &[n]));
    assert!(!contradicts(&[Sides::LEFT], &[]));
}
