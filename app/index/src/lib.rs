//! An embedding store with exact cosine nearest-neighbour search, for similar reports and images.
//!
//! Search is brute force over L2-normalised rows, split across threads: exact, and at the sizes a viewer
//! holds (a study archive's reports, a series' slices: 10²–10⁵ rows of 128–768 dims) a few milliseconds,
//! so an approximate index (HNSW) would trade recall for nothing yet. Saved as a small JSON header plus
//! little-endian f32 rows, written atomically.
//!
//! [`Index::search_diverse`] re-ranks the nearest rows by maximal marginal relevance, so a short list
//! shows different reports instead of five rewordings of the best match; [`first_per_key`] keeps the
//! nearest of each kind (e.g. each set of findings a report states).

use std::io::Write;
use std::path::{Path, PathBuf};

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
    rows: Vec<f32>,
    items: Vec<T>,
}

#[derive(Serialize, Deserialize)]
struct Header<T> {
    format: String,
    dim: usize,
    items: Vec<T>,
}

const FORMAT: &str = "radclip-index-1";

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
            rows: Vec::new(),
            items: Vec::new(),
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

    fn check(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(IndexError::Dimension {
                got: v.len(),
                want: self.dim,
            });
        }
        unit(v)
    }

    /// Adds an embedding (any scale: it is normalised) with its item.
    pub fn add(&mut self, embedding: &[f32], item: T) -> Result<()> {
        let u = self.check(embedding)?;
        self.rows.extend_from_slice(&u);
        self.items.push(item);
        Ok(())
    }

    /// The `k` rows most similar to `query` by cosine, best first; equal scores keep insertion order.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit<'_, T>>>
    where
        T: Sync,
    {
        Ok(self.search_many(&[query], k)?.pop().unwrap_or_default())
    }

    /// [`Index::search`] for several queries at once: the rows are read once for all of them (a block
    /// of rows stays in cache while every query is scored against it).
    pub fn search_many(&self, queries: &[&[f32]], k: usize) -> Result<Vec<Vec<Hit<'_, T>>>>
    where
        T: Sync,
    {
        let qs = queries
            .iter()
            .map(|q| self.check(q))
            .collect::<Result<Vec<_>>>()?;
        let k = k.min(self.len());
        if k == 0 {
            return Ok(qs.iter().map(|_| Vec::new()).collect());
        }
        // Scores row-major by row: scores[row * nq + query].
        let nq = qs.len();
        let scores = self.scores(&qs);
        Ok((0..nq)
            .map(|qi| {
                let score = |i: usize| scores.get(i * nq + qi).copied().unwrap_or(f32::MIN);
                let mut order: Vec<usize> = (0..self.len()).collect();
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
            })
            .collect())
    }

    /// The cosine of every row to each unit vector of `qs`, [rows × queries], blocks of rows on all
    /// cores (the scan is memory-bound: each row is read once, 8 lanes at a time where the CPU has AVX2).
    fn scores(&self, qs: &[Vec<f32>]) -> Vec<f32> {
        let (dim, nq) = (self.dim.max(1), qs.len().max(1));
        let mut scores = vec![0f32; self.items.len() * nq];
        let avx2 = has_avx2_fma();
        scores
            .par_chunks_mut(ROWS_PER_TASK * nq)
            .zip(self.rows.par_chunks(ROWS_PER_TASK * dim))
            .for_each(|(out, rows)| {
                let mut one = vec![0f32; rows.len() / dim];
                for (qi, q) in qs.iter().enumerate() {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: the CPU has AVX2 and FMA (checked at run time by `has_avx2_fma`).
                        unsafe { dots_avx2(rows, q, &mut one) };
                    } else {
                        dots(rows, q, &mut one);
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    dots(rows, q, &mut one);
                    for (r, v) in one.iter().enumerate() {
                        if let Some(o) = out.get_mut(r * nq + qi) {
                            *o = *v;
                        }
                    }
                }
            });
        scores
    }

    /// The unit embedding stored at `position`.
    pub fn row(&self, position: usize) -> Option<&[f32]> {
        self.rows
            .get(position * self.dim..(position + 1) * self.dim)
            .filter(|_| position < self.len())
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
                        *r = r.max(row.iter().zip(picked).map(|(a, b)| a * b).sum());
                    }
                }
            }
            chosen.push(hit);
        }
        chosen
    }

    /// Writes the index to `path` atomically (a temporary file in the same folder, then a rename).
    pub fn save(&self, path: &Path) -> Result<()>
    where
        T: Serialize + Clone,
    {
        let err = |e: &dyn std::fmt::Display| IndexError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let header = serde_json::to_vec(&Header {
            format: FORMAT.into(),
            dim: self.dim,
            items: self.items.clone(),
        })
        .map_err(|e| err(&e))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(&e))?;
        let mut body = Vec::with_capacity(8 + header.len() + self.rows.len() * 4);
        body.extend_from_slice(&(header.len() as u64).to_le_bytes());
        body.extend_from_slice(&header);
        for x in &self.rows {
            body.extend_from_slice(&x.to_le_bytes());
        }
        tmp.write_all(&body).map_err(|e| err(&e))?;
        tmp.persist(path).map_err(|e| err(&e.error))?;
        Ok(())
    }

    /// Reads an index written by [`Index::save`].
    pub fn load(path: &Path) -> Result<Self>
    where
        T: DeserializeOwned,
    {
        let err = |reason: String| IndexError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| err("the file is too short".into()))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| err(e.to_string()))?;
        let (head, rows) = (rest.get(..len), rest.get(len..));
        let (Some(head), Some(rows)) = (head, rows) else {
            return Err(err("the header runs past the end of the file".into()));
        };
        let h: Header<T> = serde_json::from_slice(head).map_err(|e| err(e.to_string()))?;
        if h.format != FORMAT {
            return Err(err(format!("unknown format {:?}", h.format)));
        }
        if rows.len() != h.items.len() * h.dim * 4 {
            return Err(err(format!(
                "{} bytes of embeddings for {} items of {} dimensions",
                rows.len(),
                h.items.len(),
                h.dim
            )));
        }
        Ok(Index {
            dim: h.dim,
            rows: rows
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            items: h.items,
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
