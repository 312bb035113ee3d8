//! Exact search against a full sort, errors, and a save/load round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use radclip_index::{Index, IndexError};

/// A fixed pseudo-random stream (splitmix64), so the test data is the same on every run.
fn stream(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

#[test]
fn top_k_is_the_full_sort_by_cosine() {
    let mut r = stream(7);
    let dim = 37;
    let mut idx = Index::new(dim);
    let mut raw = Vec::new();
    for i in 0..2000 {
        let v: Vec<f32> = (0..dim).map(|_| r()).collect();
        idx.add(&v, i).unwrap();
        raw.push(v);
    }
    for _ in 0..20 {
        let q: Vec<f32> = (0..dim).map(|_| r() * 3.0).collect();
        let cos = |v: &[f32]| {
            let dot: f64 = v
                .iter()
                .zip(&q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let n = |x: &[f32]| x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            dot / (n(v) * n(&q))
        };
        let mut want: Vec<(usize, f64)> =
            raw.iter().enumerate().map(|(i, v)| (i, cos(v))).collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        let got = idx.search(&q, 10).unwrap();
        assert_eq!(got.len(), 10);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(*g.item, w.0);
            assert!((f64::from(g.score) - w.1).abs() < 1e-5);
        }
    }
    // k larger than the index returns everything, best first.
    assert_eq!(idx.search(&raw[3], 5000).unwrap().len(), 2000);
    assert_eq!(*idx.search(&raw[3], 1).unwrap()[0].item, 3);
}

#[test]
fn ties_keep_insertion_order_and_errors_are_typed() {
    let mut idx = Index::new(2);
    for i in 0..5 {
        idx.add(&[1.0, 0.0], i).unwrap();
    }
    let hits: Vec<i32> = idx
        .search(&[2.0, 0.0], 3)
        .unwrap()
        .iter()
        .map(|h| *h.item)
        .collect();
    assert_eq!(hits, [0, 1, 2]);
    assert!(matches!(
        idx.add(&[1.0], 9),
        Err(IndexError::Dimension { got: 1, want: 2 })
    ));
    assert!(matches!(
        idx.add(&[0.0, 0.0], 9),
        Err(IndexError::Degenerate)
    ));
    assert!(matches!(
        idx.add(&[f32::NAN, 1.0], 9),
        Err(IndexError::Degenerate)
    ));
    assert!(matches!(
        idx.search(&[1.0, 2.0, 3.0], 1),
        Err(IndexError::Dimension { .. })
    ));
    assert!(
        Index::<i32>::new(2)
            .search(&[1.0, 0.0], 3)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn save_and_load_round_trip_and_reject_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.idx");
    let mut r = stream(11);
    let mut idx = Index::new(8);
    for i in 0..50 {
        let v: Vec<f32> = (0..8).map(|_| r()).collect();
        idx.add(&v, format!("report {i}")).unwrap();
    }
    idx.save(&path).unwrap();
    let back: Index<String> = Index::load(&path).unwrap();
    assert_eq!(back.len(), 50);
    assert_eq!(back.items(), idx.items());
    let q: Vec<f32> = (0..8).map(|_| r()).collect();
    let (a, b) = (idx.search(&q, 5).unwrap(), back.search(&q, 5).unwrap());
    assert_eq!(
        a.iter().map(|h| (h.position, h.score)).collect::<Vec<_>>(),
        b.iter().map(|h| (h.position, h.score)).collect::<Vec<_>>()
    );
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 5, 20, bytes.len() - 3] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = Index::<String>::load(&path).unwrap_err();
        assert!(matches!(e, IndexError::Read { .. }), "{e}");
    }
}
