//! An embedding store with cosine nearest-neighbour search, for similar reports and images.
//!
//! Exact search is brute force over L2-normalised rows, split across threads: at the sizes a viewer
//! holds (a study archive's reports, a series' slices: 10²–10⁵ rows of 128–768 dims) a few
//! milliseconds. Past [`APPROXIMATE_FROM`] rows a saved index also carries an HNSW graph (USearch), and
//! [`Index::search`] walks it; [`Index::search_exact`] always scans, to measure the graph's recall.
//!
//! On disk (written atomically): a JSON header with the items, then the rows as little-endian f16,
//! then the graph, each 64-byte aligned. [`Index::load`] memory-maps the file, so a million rows of
//! 512 dims cost 1 GB of page cache, not 2 GB of heap, and the graph is viewed in place.
//!
//! [`Index::search_diverse`] re-ranks the nearest rows by maximal marginal relevance, so a short list
//! shows different reports instead of five rewordings of the best match; [`first_per_key`] keeps the
//! nearest of each kind (e.g. each set of findings a report states).

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use rayon::prelude::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("an embedding has {got} dimensions where the index holds {want}")]
    Dimension { got: usize, want: usize },
    #[error("an embedding is zero or not finite, so it has no direction")]
    Degenerate,
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("the approximate index failed: {0}")]
    Approximate(String),
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// One search result: the item, its position in the index, and the cosine similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a, T> {
    pub position: usize,
    pub score: f32,
    pub item: &'a T,
}

/// How [`Index::search_diverse`] trades similarity to the query against similarity to what is
/// already listed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diversity {
    /// Weight of the similarity to the query (1: plain nearest neighbours).
    pub lambda: f32,
    /// How many nearest rows are re-ranked.
    pub pool: usize,
}

impl Default for Diversity {
    /// Chosen on the demo model's calibration phantoms (seed 999), not on its held-out set; λ 0.7 kept
    /// its recall for pools of 20 to all rows there, where λ 0.5 lost it for large pools
    /// (`docs/benchmarks.md`).
    fn default() -> Self {
        Diversity {
            lambda: 0.7,
            pool: 100,
        }
    }
}

/// Rows scored per parallel task: 256 rows of 512 floats (512 KB) stay in cache while every query of a
/// batch is scored against them.
const ROWS_PER_TASK: usize = 256;

/// The dot product of `q` with each row of `rows` (rows of `q.len()`), into `out`: sixteen partial sums,
/// so the compiler keeps them in vector registers.
#[inline(always)]
fn dots(rows: &[f32], q: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(q.len().max(1)).zip(out.iter_mut()) {
        let mut acc = [0f32; 16];
        let (ra, qa) = (row.chunks_exact(16), q.chunks_exact(16));
        let tail: f32 = ra
            .remainder()
            .iter()
            .zip(qa.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (r, v) in ra.zip(qa) {
            for i in 0..16 {
                acc[i] += r[i] * v[i];
            }
        }
        *o = acc.iter().sum::<f32>() + tail;
    }
}

/// [`dots`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(rows: &[f32], q: &[f32], out: &mut [f32]) {
    dots(rows, q, out)
}

/// The dot product of `q` with each row of f16 `rows` (as bits), widened 8 lanes at a time in
/// registers (F16C) and multiplied-added there: no f32 copy of the rows is written and read back.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_f16_avx2(rows: &[u16], q: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::{
        __m128i, _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps, _mm_loadu_si128, _mm256_add_ps,
        _mm256_castps256_ps128, _mm256_cvtph_ps, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps,
    };
    let dim = q.len();
    if dim == 0 {
        return;
    }
    let wide = dim / 16 * 16;
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < wide {
            // SAFETY: i + 16 <= wide <= dim = row.len() = q.len(); unaligned loads.
            unsafe {
                let h0 = _mm_loadu_si128(row.as_ptr().add(i).cast::<__m128i>());
                let h1 = _mm_loadu_si128(row.as_ptr().add(i + 8).cast::<__m128i>());
                a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), _mm256_loadu_ps(q.as_ptr().add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_cvtph_ps(h1),
                    _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                    a1,
                );
            }
            i += 16;
        }
        let a = _mm256_add_ps(a0, a1);
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_hadd_ps(s, s);
        let s = _mm_hadd_ps(s, s);
        let tail: f32 = row
            .get(wide..)
            .unwrap_or_default()
            .iter()
            .zip(q.get(wide..).unwrap_or_default())
            .map(|(h, x)| f16::from_bits(*h).to_f32() * x)
            .sum();
        *o = _mm_cvtss_f32(s) + tail;
    }
}

fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows of unit vectors, each with an item (a report, an image reference…).
#[derive(Debug, Clone)]
pub struct Index<T> {
    dim: usize,
    rows: Rows,
    items: Vec<T>,
    /// The HNSW graph over the rows, when built or loaded; dropped by [`Index::add`].
    ann: Option<Arc<Ann>>,
}

/// The stored rows: built in memory as f32, or memory-mapped f16 from a saved index.
#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    F16(Arc<Mapped>),
}

/// A saved index's file, mapped read-only.
#[derive(Debug)]
struct Mapped {
    map: memmap2::Mmap,
    /// Byte range of the f16 rows.
    rows: std::ops::Range<usize>,
}

impl Mapped {
    fn halves(&self) -> &[f16] {
        let bytes = self.map.get(self.rows.clone()).unwrap_or_default();
        // The rows start 64-byte aligned in a page-aligned map, so the cast cannot fail; an empty
        // slice (no rows) if it ever did.
        bytemuck::try_cast_slice::<u8, u16>(bytes)
            .unwrap_or_default()
            .reinterpret_cast::<f16>()
    }
}

/// How the HNSW graph is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Approximate {
    /// Neighbours kept per node (HNSW's M).
    pub connectivity: usize,
    /// Candidates considered while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidates considered while searching (ef); raised to k when k is larger.
    pub expansion_search: usize,
}

impl Default for Approximate {
    /// Chosen with `radclip bench index --approximate` (recall@10 against exact search,
    /// `docs/benchmarks.md`): a search width of 256 kept recall@10 at 0.99 or more from 100,000 to
    /// 1,000,000 rows of embedding-like vectors, 128 did not at a million.
    fn default() -> Self {
        Approximate {
            connectivity: 32,
            expansion_add: 128,
            expansion_search: 256,
        }
    }
}

/// Rows from which a saved index carries an HNSW graph: below it an exact scan takes a few ms.
pub const APPROXIMATE_FROM: usize = 100_000;

/// The HNSW graph, and the mapped file it is viewed from (kept alive as long as the graph).
struct Ann {
    graph: usearch::Index,
    params: Approximate,
    _file: Option<Arc<Mapped>>,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann")
            .field("size", &self.graph.size())
            .field("params", &self.params)
            .finish()
    }
}

fn ann_options(dim: usize, p: &Approximate) -> usearch::IndexOptions {
    usearch::IndexOptions {
        dimensions: dim,
        // Rows are unit vectors, so the inner product is the cosine (distance 1 − cos).
        metric: usearch::MetricKind::IP,
        quantization: usearch::ScalarKind::F16,
        connectivity: p.connectivity,
        expansion_add: p.expansion_add,
        expansion_search: p.expansion_search,
        multi: false,
    }
}

fn ann_err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Approximate(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Header<T> {
    format: String,
    dim: usize,
    items: Vec<T>,
    /// "f16" (format 2); absent in format 1, whose rows are f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vectors: Option<String>,
    /// The graph's parameters and its length in bytes, after the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approximate: Option<(Approximate, usize)>,
}

const FORMAT_1: &str = "radclip-index-1";
const FORMAT: &str = "radclip-index-2";
const ALIGN: usize = 64;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

fn unit(v: &[f32]) -> Result<Vec<f32>> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(IndexError::Degenerate);
    }
    Ok(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

impl<T> Index<T> {
    pub fn new(dim: usize) -> Self {
        Index {
            dim,
            rows: Rows::F32(Vec::new()),
            items: Vec::new(),
            ann: None,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The HNSW graph's parameters, when the index has one.
    pub fn approximate(&self) -> Option<Approximate> {
        self.ann.as_ref().map(|a| a.params)
    }

    fn check(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(IndexError::Dimension {
                got: v.len(),
                want: self.dim,
            });
        }
        unit(v)
    }

    /// Adds an embedding (any scale: it is normalised) with its item. A loaded index's rows are
    /// copied to memory first, and an HNSW graph is dropped (build it again once all are added).
    pub fn add(&mut self, embedding: &[f32], item: T) -> Result<()> {
        let u = self.check(embedding)?;
        self.ann = None;
        if let Rows::F16(m) = &self.rows {
            let mut owned = vec![0f32; m.halves().len()];
            m.halves().convert_to_f32_slice(&mut owned);
            self.rows = Rows::F32(owned);
        }
        if let Rows::F32(rows) = &mut self.rows {
            rows.extend_from_slice(&u);
        }
        self.items.push(item);
        Ok(())
    }

    /// The `k` rows most similar to `query` by cosine, best first; equal scores keep insertion order.
    /// Walks the HNSW graph when the index has one (approximate), else scans every row (exact).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        self.search_filtered(query, k, |_| true)
    }

    /// [`Index::search`] among the items `keep` accepts.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(&T) -> bool + Sync,
    ) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        match &self.ann {
            Some(ann) => self.search_graph(ann, query, k, &keep),
            None => self.search_exact_filtered(query, k, keep),
        }
    }

    /// The exact `k` nearest rows, scanning every row even when the index has an HNSW graph.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        self.search_exact_filtered(query, k, |_| true)
    }

    /// [`Index::search_exact`] among the items `keep` accepts.
    pub fn search_exact_filtered(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(&T) -> bool + Sync,
    ) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        let q = self.check(query)?;
        let scores = self.scores(std::slice::from_ref(&q));
        Ok(self.select(&scores, 1, 0, k, &keep))
    }

    /// [`Index::search_exact`] for several queries at once: the rows are read once for all of them
    /// (a block of rows stays in cache while every query is scored against it).
    pub fn search_many(&self, queries: &[&[f32]], k: usize) -> Result<Vec<Vec<Hit<'_, T>>>>
    where
        T: Sync,
    {
        let qs = queries
            .iter()
            .map(|q| self.check(q))
            .collect::<Result<Vec<_>>>()?;
        let nq = qs.len();
        let scores = self.scores(&qs);
        Ok((0..nq)
            .map(|qi| self.select(&scores, nq, qi, k, &|_| true))
            .collect())
    }

    /// The best `k` kept rows for query `qi` of `nq`, from scores laid out [row × query].
    fn select(
        &self,
        scores: &[f32],
        nq: usize,
        qi: usize,
        k: usize,
        keep: &(dyn Fn(&T) -> bool + Sync),
    ) -> Vec<Hit<'_, T>> {
        let score = |i: usize| scores.get(i * nq + qi).copied().unwrap_or(f32::MIN);
        let mut order: Vec<usize> = (0..self.len())
            .filter(|&i| self.items.get(i).is_some_and(keep))
            .collect();
        let k = k.min(order.len());
        if k == 0 {
            return Vec::new();
        }
        let better = |a: &usize, b: &usize| score(*b).total_cmp(&score(*a)).then(a.cmp(b));
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, better);
            order.truncate(k);
        }
        order.sort_by(better);
        order
            .into_iter()
            .filter_map(|i| {
                Some(Hit {
                    position: i,
                    score: score(i),
                    item: self.items.get(i)?,
                })
            })
            .collect()
    }

    fn search_graph(
        &self,
        ann: &Ann,
        query: &[f32],
        k: usize,
        keep: &(dyn Fn(&T) -> bool + Sync),
    ) -> Result<Vec<Hit<'_, T>>> {
        let q = self.check(query)?;
        let k = k.min(self.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        // ef below k cannot return k rows.
        if ann.graph.expansion_search() < k {
            ann.graph.change_expansion_search(k);
        }
        let keep_key = |key: u64| {
            usize::try_from(key)
                .ok()
                .and_then(|i| self.items.get(i))
                .is_some_and(keep)
        };
        let found = ann
            .graph
            .filtered_search(&q, k, keep_key)
            .map_err(ann_err)?;
        let mut hits: Vec<Hit<'_, T>> = found
            .keys
            .iter()
            .zip(&found.distances)
            .filter_map(|(&key, &d)| {
                let position = usize::try_from(key).ok()?;
                Some(Hit {
                    position,
                    score: 1.0 - d,
                    item: self.items.get(position)?,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.position.cmp(&b.position))
        });
        Ok(hits)
    }

    /// Builds the HNSW graph over the rows (on all cores); [`Index::search`] then walks it, and
    /// [`Index::save`] stores it.
    pub fn build_approximate(&mut self, params: Approximate) -> Result<()>
    where
        T: Sync,
    {
        let graph = usearch::Index::new(&ann_options(self.dim, &params)).map_err(ann_err)?;
        graph
            .reserve_capacity_and_threads(self.len(), rayon::current_num_threads())
            .map_err(ann_err)?;
        (0..self.len())
            .into_par_iter()
            .try_for_each(|i| match self.row(i) {
                Some(r) => graph.add(i as u64, &r).map_err(ann_err),
                None => Ok(()),
            })?;
        self.ann = Some(Arc::new(Ann {
            graph,
            params,
            _file: None,
        }));
        Ok(())
    }

    /// Sets how many candidates the HNSW graph considers per search (more: better recall, slower).
    pub fn set_expansion_search(&mut self, n: usize) {
        if let Some(ann) = &self.ann {
            ann.graph.change_expansion_search(n.max(1));
        }
    }

    /// The cosine of every row to each unit vector of `qs`, [rows × queries], blocks of rows on all
    /// cores (the scan is memory-bound: each row is read once, 8 lanes at a time where the CPU has
    /// AVX2; f16 rows are widened a block at a time, with F16C where the CPU has it).
    fn scores(&self, qs: &[Vec<f32>]) -> Vec<f32> {
        let (dim, nq) = (self.dim.max(1), qs.len().max(1));
        let mut scores = vec![0f32; self.items.len() * nq];
        let avx2 = has_avx2_fma();
        // Each query's dot products with a block of `n` rows (by `dot`), into the block's scores.
        let per_query =
            |n: usize, out: &mut [f32], one: &mut Vec<f32>, dot: &dyn Fn(&[f32], &mut [f32])| {
                one.resize(n, 0.0);
                for (qi, q) in qs.iter().enumerate() {
                    dot(q, one);
                    for (r, v) in one.iter().enumerate() {
                        if let Some(o) = out.get_mut(r * nq + qi) {
                            *o = *v;
                        }
                    }
                }
            };
        let block = |rows: &[f32], out: &mut [f32], one: &mut Vec<f32>| {
            per_query(rows.len() / dim, out, one, &|q, one| {
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time by `has_avx2_fma`).
                    unsafe { dots_avx2(rows, q, one) };
                } else {
                    dots(rows, q, one);
                }
                #[cfg(not(target_arch = "x86_64"))]
                dots(rows, q, one);
            })
        };
        match &self.rows {
            Rows::F32(rows) => scores
                .par_chunks_mut(ROWS_PER_TASK * nq)
                .zip(rows.par_chunks(ROWS_PER_TASK * dim))
                .for_each_init(Vec::new, |one, (out, rows)| block(rows, out, one)),
            Rows::F16(m) => {
                let fused = avx2 && has_f16c();
                scores
                    .par_chunks_mut(ROWS_PER_TASK * nq)
                    .zip(m.halves().par_chunks(ROWS_PER_TASK * dim))
                    .for_each_init(
                        || (Vec::new(), Vec::new()),
                        |(one, wide), (out, halves)| {
                            #[cfg(target_arch = "x86_64")]
                            if fused {
                                let bits: &[u16] = halves.reinterpret_cast();
                                per_query(halves.len() / dim, out, one, &|q, one| {
                                    // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                                    unsafe { dots_f16_avx2(bits, q, one) };
                                });
                                return;
                            }
                            wide.resize(halves.len(), 0.0);
                            halves.convert_to_f32_slice(wide);
                            block(wide, out, one);
                        },
                    )
            }
        }
        scores
    }

    /// The unit embedding stored at `position` (widened to f32 for a loaded index).
    pub fn row(&self, position: usize) -> Option<Cow<'_, [f32]>> {
        if position >= self.len() {
            return None;
        }
        let range = position * self.dim..(position + 1) * self.dim;
        match &self.rows {
            Rows::F32(rows) => rows.get(range).map(Cow::Borrowed),
            Rows::F16(m) => m
                .halves()
                .get(range)
                .map(|h| Cow::Owned(h.iter().map(|x| x.to_f32()).collect())),
        }
    }
    /// The `k` rows chosen by maximal marginal relevance among the `diversity.pool` nearest to `query`;
    /// each hit keeps its cosine to the query as its score.
    pub fn search_diverse(
        &self,
        query: &[f32],
        k: usize,
        diversity: Diversity,
    ) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        let pool = self.search(query, diversity.pool.max(k))?;
        Ok(self.rerank(pool, k, diversity.lambda))
    }

    /// Maximal marginal relevance (Carbonell & Goldstein, 1998) over `candidates`: greedily the one
    /// maximising `lambda · cos(query, c) − (1 − lambda) · max cos(c, chosen)`, `k` times. `lambda` 1 keeps
    /// the order by similarity; ties go to the earlier candidate.
    pub fn rerank<'a>(
        &'a self,
        candidates: Vec<Hit<'a, T>>,
        k: usize,
        lambda: f32,
    ) -> Vec<Hit<'a, T>> {
        let lambda = lambda.clamp(0.0, 1.0);
        let mut left = candidates;
        // Per candidate left, its largest cosine to one already chosen (none chosen: no penalty).
        let mut redundancy = vec![f32::NEG_INFINITY; left.len()];
        let mut chosen: Vec<Hit<'a, T>> = Vec::with_capacity(k.min(left.len()));
        while chosen.len() < k && !left.is_empty() {
            let penalty = |i: usize| {
                if chosen.is_empty() {
                    0.0
                } else {
                    redundancy[i]
                }
            };
            let value = |i: usize| lambda * left[i].score - (1.0 - lambda) * penalty(i);
            let mut best = 0;
            for i in 1..left.len() {
                if value(i) > value(best) {
                    best = i;
                }
            }
            let hit = left.remove(best);
            redundancy.remove(best);
            if let Some(picked) = self.row(hit.position) {
                for (c, r) in left.iter().zip(redundancy.iter_mut()) {
                    if let Some(row) = self.row(c.position) {
                        *r = r.max(row.iter().zip(picked.iter()).map(|(a, b)| a * b).sum());
                    }
                }
            }
            chosen.push(hit);
        }
        chosen
    }

    /// Writes the index to `path` atomically (a temporary file in the same folder, then a rename):
    /// rows as f16, and the HNSW graph when the index has one.
    pub fn save(&self, path: &Path) -> Result<()>
    where
        T: Serialize + Clone,
    {
        let err = |e: &dyn std::fmt::Display| IndexError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let graph = match &self.ann {
            Some(ann) => {
                let mut buf = vec![0u8; ann.graph.serialized_length()];
                ann.graph.save_to_buffer(&mut buf).map_err(|e| err(&e))?;
                Some((ann.params, buf))
            }
            None => None,
        };
        let header = serde_json::to_vec(&Header {
            format: FORMAT.into(),
            dim: self.dim,
            items: self.items.clone(),
            vectors: Some("f16".into()),
            approximate: graph.as_ref().map(|(p, b)| (*p, b.len())),
        })
        .map_err(|e| err(&e))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(&e))?;
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let start = align(8 + header.len());
        let end = start + self.len() * self.dim * 2;
        let mut put = |bytes: &[u8]| w.write_all(bytes).map_err(|e| err(&e));
        put(&(header.len() as u64).to_le_bytes())?;
        put(&header)?;
        put(&vec![0u8; start - 8 - header.len()])?;
        let mut halves = vec![0u16; self.dim * ROWS_PER_TASK];
        for first in (0..self.len()).step_by(ROWS_PER_TASK) {
            let n = ROWS_PER_TASK.min(self.len() - first);
            let rows: Vec<f32> = (first..first + n)
                .filter_map(|i| self.row(i))
                .flat_map(|r| r.into_owned())
                .collect();
            let out = halves.get_mut(..rows.len()).unwrap_or_default();
            out.reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(&rows);
            let bytes: Vec<u8> = out.iter().flat_map(|h| h.to_le_bytes()).collect();
            put(&bytes)?;
        }
        if let Some((_, buf)) = &graph {
            put(&vec![0u8; align(end) - end])?;
            put(buf)?;
        }
        w.flush().map_err(|e| err(&e))?;
        drop(w);
        tmp.persist(path).map_err(|e| err(&e.error))?;
        Ok(())
    }

    /// Reads an index written by [`Index::save`]: the file is memory-mapped, its rows and graph used
    /// in place (format 1, with f32 rows, is read into memory).
    pub fn load(path: &Path) -> Result<Self>
    where
        T: DeserializeOwned,
    {
        let err = |reason: String| IndexError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: the map is read-only; radclip replaces index files by rename, never rewrites
        // them in place, so the mapped bytes do not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(e.to_string()))?;
        let (len, rest) = map
            .split_first_chunk::<8>()
            .ok_or_else(|| err("the file is too short".into()))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| err(e.to_string()))?;
        let head = rest
            .get(..len)
            .ok_or_else(|| err("the header runs past the end of the file".into()))?;
        let h: Header<T> = serde_json::from_slice(head).map_err(|e| err(e.to_string()))?;
        let n = h.items.len();
        let values = n
            .checked_mul(h.dim)
            .ok_or_else(|| err("the header's sizes overflow".into()))?;
        if h.format == FORMAT_1 {
            let rows = rest.get(len..).unwrap_or_default();
            if rows.len() != values * 4 {
                return Err(err(format!(
                    "{} bytes of embeddings for {n} items of {} dimensions",
                    rows.len(),
                    h.dim
                )));
            }
            return Ok(Index {
                dim: h.dim,
                rows: Rows::F32(
                    rows.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                items: h.items,
                ann: None,
            });
        }
        if h.format != FORMAT || h.vectors.as_deref() != Some("f16") {
            return Err(err(format!("unknown format {:?}", h.format)));
        }
        let start = align(8 + len);
        let end = start + values * 2;
        let graph_at = h.approximate.map(|(p, glen)| (p, align(end), glen));
        let want = graph_at.map_or(end, |(_, at, glen)| at + glen);
        if map.len() != want {
            return Err(err(format!(
                "{} bytes where {n} items of {} dimensions need {want}",
                map.len(),
                h.dim
            )));
        }
        let mapped = Arc::new(Mapped {
            map,
            rows: start..end,
        });
        if mapped.halves().len() != values {
            return Err(err("the rows are not aligned".into()));
        }
        let ann = match graph_at {
            Some((params, at, glen)) => {
                let graph = usearch::Index::new(&ann_options(h.dim, &params))
                    .map_err(|e| err(e.to_string()))?;
                let bytes = mapped
                    .map
                    .get(at..at + glen)
                    .ok_or_else(|| err("the graph runs past the end of the file".into()))?;
                // SAFETY: the graph views bytes of `mapped`, which the `Ann` keeps alive (its
                // `_file`) for as long as the graph exists.
                unsafe { graph.view_from_buffer(bytes) }.map_err(|e| err(e.to_string()))?;
                if graph.size() != n {
                    return Err(err(format!(
                        "a graph of {} rows for {n} items",
                        graph.size()
                    )));
                }
                graph.change_expansion_search(params.expansion_search);
                Some(Arc::new(Ann {
                    graph,
                    params,
                    _file: Some(mapped.clone()),
                }))
            }
            None => None,
        };
        Ok(Index {
            dim: h.dim,
            rows: Rows::F16(mapped),
            items: h.items,
            ann,
        })
    }
}

/// The first of each distinct `key` among `candidates` (best first), in their order, until `k` are
/// chosen; when there are fewer keys than `k`, the rest are the best of those left. For similar
/// reports keyed by the findings they state, the list then shows the nearest report of each of the
/// nearest readings, where plain similarity may show five reports that say the same.
pub fn first_per_key<'a, T, K: PartialEq>(
    candidates: Vec<Hit<'a, T>>,
    k: usize,
    key: impl Fn(&Hit<'a, T>) -> K,
) -> Vec<Hit<'a, T>> {
    let mut seen: Vec<K> = Vec::new();
    let mut chosen = Vec::with_capacity(k.min(candidates.len()));
    let mut rest = Vec::new();
    for hit in candidates {
        let kk = key(&hit);
        if chosen.len() < k && !seen.contains(&kk) {
            seen.push(kk);
            chosen.push(hit);
        } else {
            rest.push(hit);
        }
    }
    let missing = k.saturating_sub(chosen.len());
    chosen.extend(rest.into_iter().take(missing));
    // Best first again, whichever way each was chosen.
    chosen.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.position.cmp(&b.position))
    });
    chosen
}
