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
    // Rows are stored as f16: each value within half a unit in the last place of f16 (2^-11 relative).
    for i in 0..50 {
        let (a, b) = (idx.row(i).unwrap(), back.row(i).unwrap());
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                (x - y).abs() <= x.abs() * 2f32.powi(-11) + 1e-7,
                "{x} vs {y}"
            );
        }
    }
    let q: Vec<f32> = (0..8).map(|_| r()).collect();
    let (a, b) = (idx.search(&q, 50).unwrap(), back.search(&q, 50).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.score - y.score).abs() < 2e-3,
            "{} vs {}",
            x.score,
            y.score
        );
    }
    // The loaded index's order is the exact order of its own (f16) rows, by an f64 cosine.
    let mut want: Vec<(usize, f64)> = (0..50)
        .map(|i| (i, cosine(&back.row(i).unwrap(), &q)))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(
        b.iter().map(|h| h.position).collect::<Vec<_>>(),
        want.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    // A loaded index grows: its rows are copied to memory.
    let mut grown: Index<String> = Index::load(&path).unwrap();
    grown.add(&q, "query".into()).unwrap();
    assert_eq!(grown.search(&q, 1).unwrap()[0].item, "query");
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

#[test]
fn an_index_saved_by_the_first_format_still_loads() {
    // Format 1 (an earlier radclip): the header, then f32 rows, unaligned.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.idx");
    let header = br#"{"format":"radclip-index-1","dim":2,"items":["a","b"]}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    for x in [1f32, 0.0, 0.6, 0.8] {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let old: Index<String> = Index::load(&path).unwrap();
    let hits = old.search(&[0.0, 1.0], 2).unwrap();
    assert_eq!(hits[0].item, "b");
    assert!((hits[0].score - 0.8).abs() < 1e-6);
    assert!((hits[1].score - 0.0).abs() < 1e-6);
}

/// `n` unit-ish vectors of `dim` near `clusters` random centres: embedding-like data, on which a
/// graph search is meaningful (on uniform noise in high dimension every neighbour is as far).
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = stream(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| r()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % clusters];
            c.iter().map(|x| x + 0.3 * r()).collect()
        })
        .collect()
}

#[test]
fn the_graph_finds_what_the_scan_finds_and_is_saved_with_the_rows() {
    let (dim, n) = (48, 6_000);
    let data = clustered(n, dim, 60, 21);
    let mut idx = Index::new(dim);
    for (i, v) in data.iter().enumerate() {
        idx.add(v, i).unwrap();
    }
    assert_eq!(idx.approximate(), None);
    idx.build_approximate(radclip_index::Approximate::default())
        .unwrap();
    let queries = clustered(50, dim, 60, 22);
    let (mut found, mut total) = (0usize, 0usize);
    for q in &queries {
        let exact: Vec<usize> = idx
            .search_exact(q, 10)
            .unwrap()
            .iter()
            .map(|h| h.position)
            .collect();
        let approx = idx.search(q, 10).unwrap();
        assert_eq!(approx.len(), 10);
        // Scores are the cosine of the row (f16 in the graph), best first.
        for (h, next) in approx.iter().zip(approx.iter().skip(1)) {
            assert!(h.score >= next.score);
            assert!((f64::from(h.score) - cosine(&data[h.position], q)).abs() < 2e-3);
        }
        found += approx
            .iter()
            .filter(|h| exact.contains(&h.position))
            .count();
        total += 10;
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    // Only the kept items, by graph and by scan.
    let even = |i: &usize| i.is_multiple_of(2);
    let hits = idx.search_filtered(&queries[0], 10, even).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.position.is_multiple_of(2)));
    let hits = idx.search_exact_filtered(&queries[0], 10, even).unwrap();
    assert!(hits.iter().all(|h| h.position.is_multiple_of(2)));
    // Saved and loaded with its graph: the same hits.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.idx");
    idx.save(&path).unwrap();
    let back: Index<usize> = Index::load(&path).unwrap();
    assert_eq!(back.approximate(), idx.approximate());
    for q in queries.iter().take(10) {
        let (a, b) = (idx.search(q, 10).unwrap(), back.search(q, 10).unwrap());
        assert_eq!(
            a.iter().map(|h| (h.position, h.score)).collect::<Vec<_>>(),
            b.iter().map(|h| (h.position, h.score)).collect::<Vec<_>>()
        );
    }
    // A damaged graph is refused with a sentence, not a crash.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    assert!(matches!(
        Index::<usize>::load(&path),
        Err(IndexError::Read { .. })
    ));
    // Adding a row drops the graph (it no longer covers every row).
    let mut grown = back;
    grown.add(&queries[0], n).unwrap();
    assert_eq!(grown.approximate(), None);
    assert_eq!(*grown.search(&queries[0], 1).unwrap()[0].item, n);
}

#[test]
fn a_loaded_index_scores_its_f16_rows_exactly() {
    // Several parallel blocks, and a dimension that is not a multiple of 16 (the vector loop's tail).
    let (n, dim) = (700, 37);
    let mut r = stream(31);
    let mut idx = Index::new(dim);
    for i in 0..n {
        let v: Vec<f32> = (0..dim).map(|_| r()).collect();
        idx.add(&v, i).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f16.idx");
    idx.save(&path).unwrap();
    let back: Index<usize> = Index::load(&path).unwrap();
    for _ in 0..5 {
        let q: Vec<f32> = (0..dim).map(|_| r()).collect();
        let got = back.search_exact(&q, n).unwrap();
        // The score is the stored (f16) row's dot product with the unit query (an f16 row's norm is
        // 1 only to f16's precision).
        let qn = q.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        for h in &got {
            let row = back.row(h.position).unwrap();
            let want: f64 = row
                .iter()
                .zip(&q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
                / qn;
            assert!(
                (f64::from(h.score) - want).abs() < 1e-5,
                "{} vs {want}",
                h.score
            );
        }
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
    }
}
