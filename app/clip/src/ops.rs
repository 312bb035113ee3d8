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

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> CResult<&'a [f32]> {
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
    dst.par_chunks_mut(rows).enumerate().for_each(|(c, out)| {
        let start = c * rows;
        let a = &src[start..start + out.len()];
        let b = src2.map(|s| &s[start..start + out.len()]);
        for (r, o) in out.chunks_mut(n).enumerate() {
            let range = r * n..(r + 1) * n;
            f(&a[range.clone()], b.map(|b| &b[range]), o);
        }
    });
    dst
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
            let mut sum = 0f32;
            for (d, &s) in y.iter_mut().zip(x) {
                *d = (s - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
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
    1.0 / (1.0 + (-1.702 * v).exp())
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
    let gauss = (-z * z).exp();
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
