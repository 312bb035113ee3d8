//! Exact search against a full sort, maximal marginal relevance against its definition, one per key,
//! errors, and a save/load round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use radclip_index::{Diversity, Index, IndexError, first_per_key};

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

/// Cosine of two raw vectors, in f64.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |x: &[f32]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn diverse_search_follows_the_mmr_definition() {
    let mut r = stream(11);
    let dim = 16;
    let mut idx = Index::new(dim);
    let mut raw: Vec<Vec<f32>> = Vec::new();
    // Clusters of near-duplicates, as rewordings of a few reports are.
    let centres: Vec<Vec<f32>> = (0..6).map(|_| (0..dim).map(|_| r()).collect()).collect();
    for i in 0..300 {
        let c = &centres[i % centres.len()];
        let v: Vec<f32> = c.iter().map(|x| x + 0.15 * r()).collect();
        idx.add(&v, i).unwrap();
        raw.push(v);
    }
    for lambda in [0.3f32, 0.6, 0.9] {
        for _ in 0..10 {
            let q: Vec<f32> = (0..dim).map(|_| r()).collect();
            let d = Diversity { lambda, pool: 30 };
            let got = idx.search_diverse(&q, 5, d).unwrap();
            // The definition, written out: the pool is the 30 nearest by cosine, then greedily
            // argmax λ·cos(q, c) − (1 − λ)·max over chosen s of cos(c, s).
            let mut pool: Vec<usize> = (0..raw.len()).collect();
            pool.sort_by(|a, b| cosine(&raw[*b], &q).total_cmp(&cosine(&raw[*a], &q)));
            pool.truncate(30);
            let mut want: Vec<usize> = Vec::new();
            while want.len() < 5 {
                let value = |c: usize| {
                    let red = want
                        .iter()
                        .map(|s| cosine(&raw[c], &raw[*s]))
                        .fold(f64::NEG_INFINITY, f64::max);
                    let red = if want.is_empty() { 0.0 } else { red };
                    f64::from(lambda) * cosine(&raw[c], &q) - f64::from(1.0 - lambda) * red
                };
                let best = pool
                    .iter()
                    .copied()
                    .filter(|c| !want.contains(c))
                    .max_by(|a, b| value(*a).total_cmp(&value(*b)))
                    .unwrap();
                want.push(best);
            }
            let got_items: Vec<usize> = got.iter().map(|h| *h.item).collect();
            assert_eq!(got_items, want, "lambda {lambda}");
            for h in &got {
                assert!((f64::from(h.score) - cosine(&raw[*h.item], &q)).abs() < 1e-5);
            }
        }
    }
    // λ = 1 is the plain search. A query between two clusters, nearer the first: the plain top 5 is the
    // first cluster only, and a lower λ also lists the second.
    let q: Vec<f32> = centres[0]
        .iter()
        .zip(&centres[1])
        .map(|(a, b)| a + 0.8 * b)
        .collect();
    let plain: Vec<usize> = idx.search(&q, 5).unwrap().iter().map(|h| *h.item).collect();
    let same = idx
        .search_diverse(
            &q,
            5,
            Diversity {
                lambda: 1.0,
                pool: 40,
            },
        )
        .unwrap();
    assert_eq!(same.iter().map(|h| *h.item).collect::<Vec<_>>(), plain);
    let clusters = |items: &[usize]| {
        let mut c: Vec<usize> = items.iter().map(|i| i % centres.len()).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    let diverse: Vec<usize> = idx
        .search_diverse(&q, 5, Diversity::default())
        .unwrap()
        .iter()
        .map(|h| *h.item)
        .collect();
    assert_eq!(diverse[0], plain[0]);
    assert_eq!(clusters(&plain), 1);
    assert!(clusters(&diverse) > 1, "{diverse:?}");
}

#[test]
fn first_per_key_keeps_the_nearest_of_each_key_then_fills_by_similarity() {
    let mut r = stream(11);
    let dim = 16;
    let mut idx = Index::new(dim);
    for i in 0..300usize {
        let v: Vec<f32> = (0..dim).map(|_| r()).collect();
        // Seven keys.
        idx.add(&v, (i, (i / 3) % 7)).unwrap();
    }
    let q: Vec<f32> = (0..dim).map(|_| r()).collect();
    let pool = idx.search(&q, 300).unwrap();
    let got = first_per_key(pool.clone(), 5, |h| h.item.1);
    // Brute force: walk the full sort and keep each key's first row.
    let mut want = Vec::new();
    let mut keys = Vec::new();
    for h in &pool {
        if !keys.contains(&h.item.1) && want.len() < 5 {
            keys.push(h.item.1);
            want.push(h.position);
        }
    }
    assert_eq!(got.iter().map(|h| h.position).collect::<Vec<_>>(), want);
    assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
    // Fewer keys than asked for: one of each, then the best of the rest.
    let two = first_per_key(pool.clone(), 4, |h| h.item.1 % 2);
    let firsts: Vec<usize> = [0usize, 1]
        .iter()
        .map(|k| pool.iter().find(|h| h.item.1 % 2 == *k).unwrap().position)
        .collect();
    let rest: Vec<usize> = pool
        .iter()
        .map(|h| h.position)
        .filter(|p| !firsts.contains(p))
        .take(2)
        .collect();
    let mut expect: Vec<usize> = firsts.iter().chain(&rest).copied().collect();
    expect.sort_by(|a, b| {
        let s = |p: &usize| pool.iter().find(|h| h.position == *p).unwrap().score;
        s(b).total_cmp(&s(a))
    });
    assert_eq!(two.iter().map(|h| h.position).collect::<Vec<_>>(), expect);
    assert!(first_per_key(pool, 0, |h| h.item.1).is_empty());
}

#[test]
fn a_batch_of_queries_finds_what_each_finds_alone() {
    // Enough rows for several parallel blocks, and a dimension that is not a multiple of 16.
    let (n, dim) = (1_000usize, 37usize);
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let mut index = radclip_index::Index::new(dim);
    for i in 0..n {
        let v: Vec<f32> = (0..dim).map(|_| next()).collect();
        index.add(&v, i).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..7).map(|_| (0..dim).map(|_| next()).collect()).collect();
    let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let batch = index.search_many(&refs, 10).unwrap();
    assert_eq!(batch.len(), queries.len());
    for (q, hits) in queries.iter().zip(&batch) {
        let alone = index.search(q, 10).unwrap();
        assert_eq!(hits, &alone);
        // Against a brute-force cosine in f64.
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let mut want: Vec<(usize, f64)> = (0..n)
            .map(|i| {
                let r = index.row(i).unwrap();
                let dot: f64 = r
                    .iter()
                    .zip(q)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                (i, dot / norm(q))
            })
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        let got: Vec<usize> = hits.iter().map(|h| h.position).collect();
        let top: Vec<usize> = want.iter().take(10).map(|w| w.0).collect();
        assert_eq!(got, top);
    }
}
