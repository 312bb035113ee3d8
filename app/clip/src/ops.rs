//! Fused CPU kernels with their own backward pass: softmax over the last dimension, LayerNorm's
//! normalisation, QuickGELU and exact GELU.
//!
//! candle's fused softmax and LayerNorm have no backward, and the same functions composed from
//! elementwise ops allocate a tensor per step both ways; training and Grad-CAM spend most of their time
//! there. Each op here is one pass forward and one pass back over contiguous f32 rows. Other devices and
//! dtypes take the composed path, which gives the same values.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

type CResult<T> = candle_core::Result<T>;

/// Rows at least this long are split across threads one row per task; shorter rows are batched so a task
/// is not mostly overhead.
const ROWS_PER_TASK_ELEMS: usize = 4096;

fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() >= 1
}

pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> CResult<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d.as_slice(),
        _ => candle_core::bail!("{what}: expected f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input has to be contiguous"),
    }
}

fn row_len(l: &Layout) -> CResult<usize> {
    match l.shape().dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => candle_core::bail!("fused op on an empty last dimension"),
    }
}

/// Applies `f` to matching rows of `src` (and `src2`) writing `dst`, in parallel chunks of rows.
fn map_rows(
    n: usize,
    src: &[f32],
    src2: Option<&[f32]>,
    f: impl Fn(&[f32], Option<&[f32]>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    let rows = ROWS_PER_TASK_ELEMS.div_ceil(n).max(1) * n;
    let avx2 = has_avx2_fma();
    dst.par_chunks_mut(rows).enumerate().for_each(|(c, out)| {
        let start = c * rows;
        let a = &src[start..start + out.len()];
        let b = src2.map(|s| &s[start..start + out.len()]);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time by `has_avx2_fma`).
            unsafe { each_row_avx2(n, a, b, out, &f) };
            return;
        }
        each_row(n, a, b, out, &f);
    });
    dst
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

#[inline(always)]
fn each_row(
    n: usize,
    a: &[f32],
    b: Option<&[f32]>,
    out: &mut [f32],
    f: &impl Fn(&[f32], Option<&[f32]>, &mut [f32]),
) {
    for (r, o) in out.chunks_mut(n).enumerate() {
        let range = r * n..(r + 1) * n;
        f(&a[range.clone()], b.map(|b| &b[range]), o);
    }
}

/// The same loop compiled for AVX2: the element functions (exp, erf) inline into it and vectorise
/// 8 wide instead of SSE2's 4 (3× faster on exp in a side-by-side test). Rust never fuses a·b + c on
/// its own, so the results are the same bits as the baseline loop's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn each_row_avx2(
    n: usize,
    a: &[f32],
    b: Option<&[f32]>,
    out: &mut [f32],
    f: &impl Fn(&[f32], Option<&[f32]>, &mut [f32]),
) {
    each_row(n, a, b, out, f)
}

fn same_shape(l1: &Layout, l2: &Layout, what: &str) -> CResult<()> {
    if l1.shape() != l2.shape() {
        candle_core::bail!(
            "{what}: shapes {:?} and {:?} differ",
            l1.shape(),
            l2.shape()
        );
    }
    Ok(())
}

/// e^x for f32, in straight-line arithmetic the compiler vectorises (libm's `expf` is a call per element:
/// ~5 % of a B/16 image encode in `perf`). Cody–Waite reduction to r = x − n·ln 2 with |r| ≤ ln 2 / 2,
/// Cephes' degree-6 polynomial for e^r, and 2^n from the exponent bits; relative error ≤ 2e-7 over the
/// range tested below. Below −87.3 the result is 0 (the true value is under f32's smallest normal, and a
/// subnormal would make every product with it ~100× slower: masked attention weights are exactly that),
/// above 88.3 it is e^88.3.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let (underflow, nan) = (x < -87.3, x.is_nan());
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer without a rounding instruction,
    // which baseline x86-64 (SSE2) lacks.
    const ROUND: f32 = 12_582_912.0;
    // max/min rather than clamp: clamp's NaN handling kept this loop scalar (NaN is handled below).
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // The integer n sits in the low mantissa bits of `shifted` (ROUND's unit is 1): 2^n from integer
    // arithmetic on those bits, no float-to-int conversion in the loop.
    let bits = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127)
        << 23;
    let v = y * f32::from_bits(bits);
    if nan {
        f32::NAN
    } else if underflow {
        0.0
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------------------
// Batched matrix product for attention (inference).

/// `scale · a · b` over the leading (batch, head) dimensions. candle loops over the batch calling a
/// multi-threaded GEMM per head, which for CLIP's small per-head products (17 × 64 · 64 × 17 for a
/// text, 197 × 64 · 64 × 197 for a B/16 image) is mostly thread hand-off; here the heads are spread
/// over rayon's threads and each product runs on one.
struct BatchMatmul {
    scale: f32,
}

/// The leading dimensions' element stride when they can be walked as one batch axis.
fn batch_stride(l: &Layout) -> Option<(usize, usize)> {
    let dims = l.shape().dims();
    let strides = l.stride();
    let r = dims.len();
    if r < 3 {
        return None;
    }
    let count: usize = dims[..r - 2].iter().product();
    let step = strides[r - 3];
    // Each leading dimension must step by the product of the ones after it.
    let mut expect = step;
    for i in (0..r - 3).rev() {
        expect *= dims[i + 1];
        if dims[i] > 1 && strides[i] != expect {
            return None;
        }
    }
    Some((count, step))
}

impl CustomOp2 for BatchMatmul {
    fn name(&self) -> &'static str {
        "radclip-batch-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("{}: expected f32", self.name());
        };
        let (da, db) = (l1.shape().dims(), l2.shape().dims());
        let r = da.len();
        if db.len() != r || r < 3 || da[..r - 2] != db[..r - 2] || da[r - 1] != db[r - 2] {
            candle_core::bail!("{}: shapes {da:?} and {db:?} do not multiply", self.name());
        }
        let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
        let (Some((count, a_step)), Some((_, b_step))) = (batch_stride(l1), batch_stride(l2))
        else {
            candle_core::bail!("{}: batch dimensions must be regular", self.name());
        };
        let (sa, sb) = (l1.stride(), l2.stride());
        let (a_rs, a_cs, b_rs, b_cs) = (sa[r - 2], sa[r - 1], sb[r - 2], sb[r - 1]);
        // The furthest element each batch item reads, so every access is checked to lie in the buffers.
        let reach = |rows: usize, cols: usize, rs: usize, cs: usize| {
            rows.saturating_sub(1) * rs + cols.saturating_sub(1) * cs + 1
        };
        let (a0, b0) = (l1.start_offset(), l2.start_offset());
        let a_end = a0 + count.saturating_sub(1) * a_step + reach(m, k, a_rs, a_cs);
        let b_end = b0 + count.saturating_sub(1) * b_step + reach(k, n, b_rs, b_cs);
        let mut shape = da.to_vec();
        shape[r - 1] = n;
        let mut out = vec![0f32; count * m * n];
        if m * n * k == 0 {
            return Ok((CpuStorage::F32(out), Shape::from(shape)));
        }
        if a_end > a.len() || b_end > b.len() {
            candle_core::bail!("{}: layout out of bounds", self.name());
        }
        // Below this many multiply-adds a head's product is cheaper as plain loops than as a GEMM call
        // (packing and dispatch): a text's 17 × 64 · 64 × 17 is ~10 µs through gemm, ~1 µs here.
        const DIRECT_MACS: usize = 1 << 16;
        let direct = m * n * k <= DIRECT_MACS && (a_cs == 1 && (b_rs == 1 || b_cs == 1));
        let scale = self.scale;
        out.par_chunks_mut(m * n).enumerate().for_each(|(i, dst)| {
            let (pa, pb) = (&a[a0 + i * a_step..a_end], &b[b0 + i * b_step..b_end]);
            if direct {
                small_matmul(pa, a_rs, pb, b_rs, b_cs, (m, k, n), scale, dst);
                return;
            }
            // SAFETY: dst is m×n row-major; pa and pb start at batch item i and reach at least the last
            // element of its m×k (strides a_rs, a_cs) and k×n (b_rs, b_cs) matrices (checked above),
            // and the call runs on this thread only.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    pa.as_ptr(),
                    a_cs as isize,
                    a_rs as isize,
                    pb.as_ptr(),
                    b_cs as isize,
                    b_rs as isize,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// `dst = scale · a · b` for one small head: `a` has contiguous rows (stride `a_rs`); `b` is either
/// column-contiguous (`b_rs == 1`: q · kᵀ, a dot product per output) or row-contiguous (`b_cs == 1`:
/// probs · v, a scaled row added per input). Indices stay inside the ranges the caller checked.
#[allow(clippy::too_many_arguments)]
fn small_matmul(
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    (m, k, n): (usize, usize, usize),
    scale: f32,
    dst: &mut [f32],
) {
    for (row, out) in dst.chunks_exact_mut(n).enumerate().take(m) {
        let ar = &a[row * a_rs..row * a_rs + k];
        if b_rs == 1 {
            for (j, o) in out.iter_mut().enumerate() {
                *o = scale * dot(ar, &b[j * b_cs..j * b_cs + k]);
            }
        } else {
            out.iter_mut().for_each(|o| *o = 0.0);
            for (kk, &x) in ar.iter().enumerate() {
                let br = &b[kk * b_rs..kk * b_rs + n];
                out.iter_mut().zip(br).for_each(|(o, y)| *o += x * y);
            }
            if scale != 1.0 {
                out.iter_mut().for_each(|o| *o *= scale);
            }
        }
    }
}

/// Σ x·y with eight partial sums, so the loop vectorises instead of waiting on one accumulator.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `scale · a · b` for rank-3+ tensors with matching leading dimensions; the fast path is CPU f32
/// outside autograd, anything else is candle's matmul (same values).
pub fn batch_matmul(a: &Tensor, b: &Tensor, scale: f64) -> CResult<Tensor> {
    let cpu_f32 = a.device().is_cpu() && a.dtype() == DType::F32 && b.dtype() == DType::F32;
    if cpu_f32 && !a.track_op() && !b.track_op() && a.rank() >= 3 {
        a.apply_op2_no_bwd(
            b,
            &BatchMatmul {
                scale: scale as f32,
            },
        )
    } else if scale == 1.0 {
        a.matmul(b)
    } else {
        a.matmul(b)? * scale
    }
}

// ---------------------------------------------------------------------------------------------------
// Softmax over the last dimension.

struct Softmax;
struct SoftmaxBwd;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "radclip-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = row_len(l)?;
        let y = map_rows(n, x, None, |x, _, y| {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (d, &s) in y.iter_mut().zip(x) {
                *d = exp_f32(s - max);
            }
            let inv = 1.0 / y.iter().sum::<f32>();
            y.iter_mut().for_each(|d| *d *= inv);
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxBwd)?))
    }
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "radclip-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        let y = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let n = row_len(l1)?;
        // dx = y ⊙ (g − Σ g·y)
        let dx = map_rows(n, y, Some(g), |y, g, dx| {
            let g = g.unwrap_or(y);
            let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
            for ((d, &yi), &gi) in dx.iter_mut().zip(y).zip(g) {
                *d = yi * (gi - dot);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last(x: &Tensor) -> CResult<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

// ---------------------------------------------------------------------------------------------------
// LayerNorm: (x − mean) / sqrt(var + eps) over the last dimension; the affine part is left to
// broadcast ops, whose backward candle has.

struct Normalize(f32);
struct NormalizeBwd(f32);

fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "radclip-normalize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = row_len(l)?;
        let eps = self.0;
        let y = map_rows(n, x, None, |x, _, y| {
            let (mean, rstd) = moments(x, eps);
            for (d, &v) in y.iter_mut().zip(x) {
                *d = (v - mean) * rstd;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &g.contiguous()?,
            &NormalizeBwd(self.0),
        )?))
    }
}

impl CustomOp2 for NormalizeBwd {
    fn name(&self) -> &'static str {
        "radclip-normalize-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let n = row_len(l1)?;
        let eps = self.0;
        // With x̂ the normalised row: dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)).
        let dx = map_rows(n, x, Some(g), |x, g, dx| {
            let g = g.unwrap_or(x);
            let (mean, rstd) = moments(x, eps);
            let nf = x.len() as f32;
            let mut mg = 0f32;
            let mut mgx = 0f32;
            for (&v, &gi) in x.iter().zip(g) {
                mg += gi;
                mgx += gi * (v - mean) * rstd;
            }
            mg /= nf;
            mgx /= nf;
            for ((d, &v), &gi) in dx.iter_mut().zip(x).zip(g) {
                *d = rstd * (gi - mg - (v - mean) * rstd * mgx);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `(x − mean) / sqrt(var + eps)` over the last dimension, differentiable.
pub fn normalize_last(x: &Tensor, eps: f64) -> CResult<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(Normalize(eps as f32))
    } else {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + eps)?.sqrt()?)
    }
}

// ---------------------------------------------------------------------------------------------------
// QuickGELU: x · σ(1.702 x).

struct QuickGelu;
struct QuickGeluBwd;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-1.702 * v))
}

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "radclip-quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = row_len(l)?;
        let y = map_rows(n, x, None, |x, _, y| {
            for (d, &v) in y.iter_mut().zip(x) {
                *d = v * sigmoid(v);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &QuickGeluBwd)?))
    }
}

impl CustomOp2 for QuickGeluBwd {
    fn name(&self) -> &'static str {
        "radclip-quick-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let n = row_len(l1)?;
        // d/dx [x σ(a x)] = σ + a x σ (1 − σ)
        let dx = map_rows(n, x, Some(g), |x, g, dx| {
            let g = g.unwrap_or(x);
            for ((d, &v), &gi) in dx.iter_mut().zip(x).zip(g) {
                let s = sigmoid(v);
                *d = gi * (s + 1.702 * v * s * (1.0 - s));
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// QuickGELU, differentiable.
pub fn quick_gelu(x: &Tensor) -> CResult<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(QuickGelu)
    } else {
        x.broadcast_div(&((x * -1.702)?.exp()? + 1.0)?)
    }
}

// ---------------------------------------------------------------------------------------------------
// Exact GELU: x · Φ(x) = 0.5 x (1 + erf(x/√2)).

struct GeluErf;
struct GeluErfBwd;

/// Φ(v) and e^(−v²/2) together: Abramowitz & Stegun 7.1.26 (|error of erf| ≤ 1.5e-7) needs the same
/// exponential as the density in the backward pass, and unlike libm's `erff` it has no branches to stop
/// vectorisation.
fn phi_and_gauss(v: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = v.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp_f32(-z * z);
    let erf_abs = 1.0 - poly * gauss;
    let erf = if v < 0.0 { -erf_abs } else { erf_abs };
    (0.5 * (1.0 + erf), gauss)
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "radclip-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = row_len(l)?;
        let y = map_rows(n, x, None, |x, _, y| {
            for (d, &v) in y.iter_mut().zip(x) {
                *d = v * phi_and_gauss(v).0;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluErfBwd)?))
    }
}

impl CustomOp2 for GeluErfBwd {
    fn name(&self) -> &'static str {
        "radclip-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let n = row_len(l1)?;
        // d/dx [x Φ(x)] = Φ(x) + x φ(x), φ the standard normal density.
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let dx = map_rows(n, x, Some(g), |x, g, dx| {
            let g = g.unwrap_or(x);
            for ((d, &v), &gi) in dx.iter_mut().zip(x).zip(g) {
                let (phi, gauss) = phi_and_gauss(v);
                *d = gi * (phi + v * INV_SQRT_2PI * gauss);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Exact (erf) GELU, differentiable.
pub fn gelu_erf(x: &Tensor) -> CResult<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

// ---------------------------------------------------------------------------------------------------
// Broadcast bias and affine over the last dimension. candle differentiates a broadcast by summing the
// gradient over the leading dimensions with a strided scalar reduction, which was a seventh of a training
// step; the column sums here are one contiguous pass.

/// Σ over all leading dimensions: [.., D] → [D].
struct ColSum;

impl CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "radclip-col-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = row_len(l)?;
        let rows = x.len() / n;
        let threads = rayon::current_num_threads().max(1);
        let per = rows.div_ceil(threads).max(1);
        let partial: Vec<Vec<f32>> = x
            .par_chunks(per * n)
            .map(|block| {
                let mut acc = vec![0f32; n];
                for row in block.chunks(n) {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                acc
            })
            .collect();
        let mut sum = vec![0f32; n];
        for p in partial {
            sum.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        Ok((CpuStorage::F32(sum), Shape::from(n)))
    }
}

fn col_sum(g: &Tensor) -> CResult<Tensor> {
    g.contiguous()?.apply_op1_no_bwd(&ColSum)
}

fn vector<'a>(s: &'a CpuStorage, l: &Layout, n: usize, what: &str) -> CResult<&'a [f32]> {
    let v = f32_slice(s, l, what)?;
    if l.shape().dims() != [n] {
        candle_core::bail!("{what}: expected a vector of {n}, got {:?}", l.shape());
    }
    Ok(v)
}

/// x + b with b broadcast over the leading dimensions.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "radclip-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let n = row_len(l1)?;
        let b = vector(s2, l2, n, self.name())?;
        let y = map_rows(n, x, None, |x, _, y| {
            for ((d, &v), &bi) in y.iter_mut().zip(x).zip(b) {
                *d = v + bi;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.clone()), Some(col_sum(g)?)))
    }
}

/// `x + b` over the last dimension, differentiable in both.
pub fn bias_add(x: &Tensor, b: &Tensor) -> CResult<Tensor> {
    if fused(x) && b.dtype() == DType::F32 && b.dims() == [x.dim(D::Minus1)?] {
        x.contiguous()?.apply_op2(&b.contiguous()?, BiasAdd)
    } else {
        x.broadcast_add(b)
    }
}

/// x ⊙ w + b with w and b broadcast over the leading dimensions (LayerNorm's affine part).
struct Affine;

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "radclip-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let n = row_len(l1)?;
        let w = vector(s2, l2, n, self.name())?;
        let b = vector(s3, l3, n, self.name())?;
        let y = map_rows(n, x, None, |x, _, y| {
            for (((d, &v), &wi), &bi) in y.iter_mut().zip(x).zip(w).zip(b) {
                *d = v * wi + bi;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(g.broadcast_mul(w)?),
            Some(col_sum(&(g * x)?)?),
            Some(col_sum(g)?),
        ))
    }
}

/// `x ⊙ w + b` over the last dimension, differentiable in all three.
pub fn affine(x: &Tensor, w: &Tensor, b: &Tensor) -> CResult<Tensor> {
    let n = x.dim(D::Minus1)?;
    let vec_ok = |t: &Tensor| t.dtype() == DType::F32 && t.dims() == [n];
    if fused(x) && vec_ok(w) && vec_ok(b) {
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, Affine)
    } else {
        x.broadcast_mul(w)?.broadcast_add(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    type TResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn input(shape: &[usize], seed: u64) -> candle_core::Result<Tensor> {
        // A fixed pseudo-random input with a wide range, so exp() and the variance are exercised.
        let n: usize = shape.iter().product();
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Forward values and gradients of the fused op against the composed candle ops, through a
    /// weighted sum so every output element gets a different upstream gradient.
    fn check(
        fused_op: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        composed: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        shape: &[usize],
    ) -> TResult {
        let x = Var::from_tensor(&input(shape, 7)?)?;
        let w = input(shape, 11)?;
        let yf = fused_op(x.as_tensor())?;
        let yc = composed(x.as_tensor())?;
        assert!(max_diff(&yf, &yc)? < 1e-5, "forward differs");
        let gf = (&yf * &w)?.sum_all()?.backward()?;
        let gc = (&yc * &w)?.sum_all()?.backward()?;
        let (Some(gf), Some(gc)) = (gf.get(x.as_tensor()), gc.get(x.as_tensor())) else {
            return Err("no gradient".into());
        };
        let scale = gc
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            .max(1.0);
        let d = max_diff(gf, gc)?;
        assert!(d / scale < 1e-5, "gradient differs by {d}");
        Ok(())
    }

    #[test]
    fn softmax_matches_composed_forward_and_backward() -> TResult {
        for shape in [[2usize, 3, 17, 17], [1, 1, 5000, 3], [4, 1, 1, 1]] {
            check(
                softmax_last,
                |x| candle_nn::ops::softmax(x, D::Minus1),
                &shape,
            )?;
        }
        Ok(())
    }

    #[test]
    fn normalize_matches_composed_forward_and_backward() -> TResult {
        let composed = |x: &Tensor| {
            let mean = x.mean_keepdim(D::Minus1)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            xc.broadcast_div(&(var + 1e-5)?.sqrt()?)
        };
        for shape in [[3usize, 50, 128], [2, 7, 33], [1, 9000, 2]] {
            check(|x| normalize_last(x, 1e-5), composed, &shape)?;
        }
        Ok(())
    }

    /// The per-head product equals candle's matmul on both of its paths (direct loops for small heads,
    /// one GEMM per head for large ones), for q · kᵀ (a transposed view) and probs · v, with and without
    /// a scale.
    #[test]
    fn batch_matmul_matches_candle_on_both_paths() -> TResult {
        // (batch, heads, tokens, head width): a text's heads (direct) and a B/16 image's (GEMM).
        for (b, h, n, d) in [(2, 3, 17, 64), (1, 2, 197, 64)] {
            let q = input(&[b, h, n, d], 1)?;
            let k = input(&[b, h, n, d], 2)?;
            let p = input(&[b, h, n, n], 3)?;
            for (x, y, scale) in [(&q, &k.t()?, 0.125), (&p, &k, 1.0)] {
                let ours = batch_matmul(x, y, scale)?;
                let theirs = (x.matmul(y)? * scale)?;
                let diff = (ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let size = theirs.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff <= 1e-5 * size, "{b}×{h}×{n}×{d}: |Δ| {diff} of {size}");
            }
        }
        Ok(())
    }

    #[test]
    fn exp_f32_is_within_2e7_of_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, exact) = (f64::from(exp_f32(x)), f64::from(x).exp());
            worst = worst.max(((ours - exact) / exact).abs());
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1e4), 0.0);
        assert_eq!(exp_f32(f32::MIN), 0.0);
        assert!(exp_f32(1e4).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn quick_gelu_matches_composed_forward_and_backward() -> TResult {
        let composed = |x: &Tensor| x.broadcast_div(&((x * -1.702)?.exp()? + 1.0)?);
        for shape in [[3usize, 50, 512], [1, 1, 3]] {
            check(quick_gelu, composed, &shape)?;
        }
        Ok(())
    }

    #[test]
    fn gelu_erf_matches_composed_forward_and_backward() -> TResult {
        for shape in [[3usize, 50, 512], [1, 1, 3]] {
            check(gelu_erf, |x| x.gelu_erf(), &shape)?;
        }
        Ok(())
    }

    /// The bias and affine ops against broadcast ops: values and the gradients of every argument.
    #[test]
    fn bias_add_and_affine_match_broadcast_ops() -> TResult {
        for shape in [[4usize, 65, 128], [1, 1, 7], [3000, 1, 5]] {
            let n = shape[2];
            let x = Var::from_tensor(&input(&shape, 1)?)?;
            let w = Var::from_tensor(&input(&[n], 2)?)?;
            let b = Var::from_tensor(&input(&[n], 3)?)?;
            let up = input(&shape, 4)?;
            let vars = [x.as_tensor(), w.as_tensor(), b.as_tensor()];
            let pairs = [
                (bias_add(&x, &b)?, x.broadcast_add(&b)?),
                (affine(&x, &w, &b)?, x.broadcast_mul(&w)?.broadcast_add(&b)?),
            ];
            for (fused, composed) in pairs {
                assert!(max_diff(&fused, &composed)? < 1e-5);
                let gf = (&fused * &up)?.sum_all()?.backward()?;
                let gc = (&composed * &up)?.sum_all()?.backward()?;
                for v in vars {
                    match (gf.get(v), gc.get(v)) {
                        (Some(a), Some(c)) => {
                            let scale =
                                c.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1.0);
                            assert!(max_diff(a, c)? / scale < 1e-5, "gradient differs");
                        }
                        (None, None) => {}
                        _ => return Err("gradient present in one only".into()),
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn strided_input_is_made_contiguous() -> TResult {
        let x = input(&[4, 6], 3)?.t()?;
        let a = softmax_last(&x)?;
        let b = candle_nn::ops::softmax(&x, D::Minus1)?;
        assert!(max_diff(&a, &b)? < 1e-6);
        Ok(())
    }
}
