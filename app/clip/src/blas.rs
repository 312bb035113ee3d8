//! OpenBLAS for the matrix products of inference on the CPU, when the system has it.
//!
//! candle's CPU matmul (the `gemm` crate) ran the B/16 image tower at ~73 GFLOP/s on this project's
//! 2-core AVX-512 machine, where OpenBLAS's SkylakeX kernels reach ~210 GFLOP/s on the same shapes
//! (docs/benchmarks.md). OpenBLAS is loaded at run time (`libopenblas.so.0`, Debian's `libopenblas0`),
//! not linked, so a machine without it still runs, on candle's own kernels; `RADCLIP_BLAS=off` forces
//! that, and `RADCLIP_BLAS=<file or path>` loads another CBLAS instead (Intel MKL was faster still on
//! small products). Training takes it too: the linear op's backward is two more products.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// `cblas_sgemm` (CBLAS's standard signature).
type Sgemm = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

struct Blas {
    sgemm: Sgemm,
    core: String,
    // Keeps the library mapped for as long as `sgemm` may be called (the whole process).
    _lib: libloading::Library,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();

/// The OpenBLAS kernel family this CPU can run, for `OPENBLAS_CORETYPE`: OpenBLAS 0.3.21 (Debian 12)
/// does not recognise newer Xeons and falls back to its slowest kernels ("Prescott") on them.
pub fn core_type_for_this_cpu() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Some("SkylakeX");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("Haswell");
        }
    }
    None
}

/// Points OpenBLAS at this CPU's kernel family unless the user chose one. Call it first thing in
/// `main`, before any thread exists: OpenBLAS reads `OPENBLAS_CORETYPE` when it is loaded, and the
/// environment may only be changed while the process is single-threaded.
pub fn prefer_native_kernels() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_none()
        && let Some(core) = core_type_for_this_cpu()
    {
        // SAFETY: called before any other thread is started (see above), so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("OPENBLAS_CORETYPE", core) };
    }
}

/// Runs candle's element-wise ops on the calling thread unless the user chose (`CANDLE_NUM_THREADS`).
/// Its own spinning pool competes with the BLAS threads and rayon's for the same cores: on two cores
/// that cost B/32 text encoding at batch 8 a quarter of its time (docs/benchmarks.md); the element-wise
/// ops it serves in inference (residual and mask adds) are a few per cent of the work. Same contract
/// as [`prefer_native_kernels`]: call before any thread exists.
pub fn prefer_one_elementwise_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called before any other thread is started, as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Kernel families OpenBLAS falls back to when it does not know the CPU; on a CPU with AVX2 they
/// would be slower than candle's own kernels.
const FALLBACK_CORES: &[&str] = &[
    "prescott",
    "katmai",
    "core2",
    "penryn",
    "dunnington",
    "nehalem",
];

/// The libraries to try, in order, and whether the user named them: `RADCLIP_BLAS` names one (a file
/// name on the library path or a path, e.g. MKL's `libmkl_rt.so` from PyPI's `mkl` wheel), `off` none;
/// by default Debian's OpenBLAS.
fn candidates() -> (Vec<std::ffi::OsString>, bool) {
    match std::env::var_os("RADCLIP_BLAS") {
        Some(v) if v.eq_ignore_ascii_case("off") => (Vec::new(), false),
        Some(v) if !v.is_empty() => (vec![v], true),
        _ => (
            vec!["libopenblas.so.0".into(), "libopenblas.so".into()],
            false,
        ),
    }
}

fn load() -> Option<Blas> {
    let (names, named) = candidates();
    // SAFETY: loading a shared library runs its initialisers; a CBLAS's only set up its thread pool
    // and kernel table.
    let Some((name, lib)) = names.iter().find_map(|name| {
        unsafe { libloading::Library::new(name) }
            .ok()
            .map(|lib| (name.to_string_lossy().into_owned(), lib))
    }) else {
        if named {
            tracing::warn!(
                "RADCLIP_BLAS names a library that does not load; using candle's kernels"
            );
        }
        return None;
    };
    if let Err(e) = prepare_mkl(&lib, &name) {
        tracing::warn!("{e}");
        return None;
    }
    // SAFETY: the symbols have the standard CBLAS / OpenBLAS signatures written above.
    let (sgemm, openblas_core) = unsafe {
        let sgemm: Sgemm = *lib.get::<Sgemm>(b"cblas_sgemm\0").ok()?;
        let corename = lib
            .get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_corename\0")
            .ok()
            .map(|f| f())
            .filter(|p| !p.is_null())
            .map(|p| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
        (sgemm, corename)
    };
    let core = match openblas_core {
        Some(core) => {
            if core_type_for_this_cpu().is_some()
                && FALLBACK_CORES.contains(&core.to_lowercase().as_str())
            {
                tracing::debug!(
                    "OpenBLAS picked its {core} kernels on this CPU; using candle's (set OPENBLAS_CORETYPE)"
                );
                return None;
            }
            format!("OpenBLAS {core}")
        }
        // Another CBLAS (MKL, BLIS): named by its file.
        None => name,
    };
    tracing::debug!("{core} for CPU matrix products");
    Some(Blas {
        sgemm,
        core,
        _lib: lib,
    })
}

/// MKL's threaded layer needs Intel's OpenMP runtime already loaded (its `omp_*` symbols are not
/// linked in), else the first product ends the process with a symbol lookup error. The PyPI wheels
/// put `libiomp5.so` beside `libmkl_rt`: load it from there or the library path, else make MKL run
/// sequentially. A library that is not MKL passes unchanged.
fn prepare_mkl(lib: &libloading::Library, name: &str) -> Result<(), String> {
    type SetLayer = unsafe extern "C" fn(c_int) -> c_int;
    // SAFETY: MKL_Set_Threading_Layer has this signature in MKL's mkl_service.h.
    let Ok(set_layer) = (unsafe { lib.get::<SetLayer>(b"MKL_Set_Threading_Layer\0") }) else {
        return Ok(());
    };
    const INTEL: c_int = 0;
    const SEQUENTIAL: c_int = 1;
    let path = std::path::Path::new(name);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    // libmkl_rt loads its layers from its own folder at the first product and ends the process when
    // one is missing ("Intel oneMKL FATAL ERROR"): check them first when it was named by path.
    if let (Some(dir), Some(file)) = (dir, path.file_name().and_then(|f| f.to_str())) {
        let suffix = file.find(".so").map_or("", |i| &file[i..]);
        if let Some(part) = ["libmkl_core", "libmkl_intel_lp64"]
            .iter()
            .map(|part| format!("{part}{suffix}"))
            .find(|part| !dir.join(part).exists())
        {
            return Err(format!(
                "MKL is incomplete ({part} is not beside {file}); using candle's kernels"
            ));
        }
    }
    let beside = dir.map(|d| d.join("libiomp5.so").into_os_string());
    let omp = beside
        .into_iter()
        .chain(["libiomp5.so".into()])
        .find_map(|path| {
            // SAFETY: loading Intel's OpenMP runtime runs only its initialisers. RTLD_GLOBAL puts its
            // symbols where MKL's threading layer looks them up.
            unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .ok()
        });
    let layer = match omp {
        Some(omp) => {
            // Stays loaded for the process's life, as MKL's threads call into it.
            std::mem::forget(omp);
            INTEL
        }
        None => {
            tracing::warn!(
                "MKL without Intel's OpenMP runtime (libiomp5.so): one thread for products"
            );
            SEQUENTIAL
        }
    };
    // SAFETY: called before any MKL computation, as MKL requires.
    if unsafe { set_layer(layer) } < 0 {
        return Err("MKL refused its threading layer; using candle's kernels".into());
    }
    Ok(())
}

fn blas() -> Option<&'static Blas> {
    BLAS.get_or_init(load).as_ref()
}

/// The library in use ("OpenBLAS SkylakeX", or the file `RADCLIP_BLAS` named), or `None` when
/// candle's kernels are.
pub fn active() -> Option<&'static str> {
    blas().map(|b| b.core.as_str())
}

/// `op(a) · op(b)` for row-major, contiguous f32 matrices on the CPU, `op` transposing where asked:
/// the forward product of a linear layer (`b` transposed) and both products of its backward pass.
struct Gemm {
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    fn run(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let fail = |m: &str| candle_core::Error::Msg(format!("openblas-gemm: {m}"));
        let blas = blas().ok_or_else(|| fail("OpenBLAS is not loaded"))?;
        let a = crate::ops::f32_slice(s1, l1, "openblas-gemm")?;
        let b = crate::ops::f32_slice(s2, l2, "openblas-gemm")?;
        let ((ra, ca), (rb, cb)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let (m, k) = if self.trans_a { (ca, ra) } else { (ra, ca) };
        let (k2, n) = if self.trans_b { (cb, rb) } else { (rb, cb) };
        if k != k2 {
            return Err(fail("inner dimensions differ"));
        }
        if a.len() != ra * ca || b.len() != rb * cb {
            return Err(fail("bad layout"));
        }
        let dim = |v: usize| c_int::try_from(v).map_err(|_| fail("matrix too large"));
        let (mi, ni, ki) = (dim(m)?, dim(n)?, dim(k)?);
        let (lda, ldb) = (dim(ca)?, dim(cb)?);
        if m == 0 || n == 0 || k == 0 {
            return Ok((CpuStorage::F32(vec![0f32; m * n]), Shape::from((m, n))));
        }
        // Not zeroed first: with beta = 0 a BLAS writes every element of C without reading it (the
        // reference BLAS: "when beta is zero, C need not be set on input"; OpenBLAS and MKL clear it
        // themselves). memset was 2 % of a B/16 encode's samples in `perf`, this among them.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let t = |yes: bool| if yes { TRANS } else { NO_TRANS };
        // SAFETY: a is ra×ca and b is rb×cb, row-major and exactly that long (checked above), read with
        // leading dimensions ca and cb as op(a) m×k and op(b) k×n; out is m×n with leading dimension n.
        // cblas_sgemm reads and writes only those and returns when done (its own threads included).
        unsafe {
            (blas.sgemm)(
                ROW_MAJOR,
                t(self.trans_a),
                t(self.trans_b),
                mi,
                ni,
                ki,
                1.0,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ldb,
                0.0,
                out.as_mut_ptr(),
                ni,
            );
            // SAFETY: the product above has written all m×n elements (see the comment on `out`).
            out.set_len(m * n);
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

impl CustomOp2 for Gemm {
    fn name(&self) -> &'static str {
        "openblas-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(s1, l1, s2, l2)
    }
}

/// `x · wᵀ`, differentiable: the gradients are OpenBLAS products too (dx = g·w, dw = gᵀ·x).
struct LinearOp;

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "openblas-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Gemm {
            trans_a: false,
            trans_b: true,
        }
        .run(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = g.apply_op2_no_bwd(
            w,
            &Gemm {
                trans_a: false,
                trans_b: false,
            },
        )?;
        let dw = g.apply_op2_no_bwd(
            x,
            &Gemm {
                trans_a: true,
                trans_b: false,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `x · wᵀ` through OpenBLAS when it is loaded and the operands qualify (CPU, f32, 2-D), else `None`
/// and the caller uses candle's matmul. Differentiable: training takes this path too.
pub fn linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let qualifies = x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32
        && x.rank() == 2
        && w.rank() == 2;
    if !qualifies || blas().is_none() {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, LinearOp).map(Some)
    } else {
        x.apply_op2_no_bwd(&w, &LinearOp).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The OpenBLAS product equals candle's on shapes that are not multiples of any kernel's block,
    /// including views with an offset (the q/k/v views of a fused projection). `tests/run.sh` installs
    /// OpenBLAS and sets RADCLIP_EXPECT_BLAS=1, so there this test cannot pass without comparing.
    #[test]
    fn openblas_linear_matches_candle_matmul() -> candle_core::Result<()> {
        if std::env::var("RADCLIP_EXPECT_BLAS").is_ok_and(|v| v == "1") {
            assert!(
                active().is_some(),
                "OpenBLAS was expected (RADCLIP_EXPECT_BLAS=1) but is not in use"
            );
        }
        if active().is_none() {
            return Ok(());
        }
        let dev = Device::Cpu;
        for (m, k, n) in [(1, 7, 5), (17, 64, 33), (197, 96, 130), (3, 300, 1)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (2 * n, k), &dev)?;
            let w = w.narrow(0, n, n)?;
            let ours = linear(&x, &w)?.ok_or_else(|| candle_core::Error::Msg("no BLAS".into()))?;
            let theirs = x.matmul(&w.t()?)?;
            let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "{m}×{k}×{n}: max |Δ| {diff}");
        }
        // Gradients through the OpenBLAS path equal candle's.
        let xv = candle_core::Var::randn(0f32, 1.0, (9, 13), &dev)?;
        let wv = candle_core::Var::randn(0f32, 1.0, (7, 13), &dev)?;
        let target = Tensor::randn(0f32, 1.0, (9, 7), &dev)?;
        let loss = |y: Tensor| (y - &target)?.sqr()?.sum_all();
        let y = linear(xv.as_tensor(), wv.as_tensor())?
            .ok_or_else(|| candle_core::Error::Msg("no BLAS".into()))?;
        let ours = loss(y)?.backward()?;
        let theirs = loss(xv.as_tensor().matmul(&wv.as_tensor().t()?)?)?.backward()?;
        for v in [&xv, &wv] {
            let (Some(a), Some(b)) = (ours.get(v.as_tensor()), theirs.get(v.as_tensor())) else {
                return Err(candle_core::Error::Msg("a gradient is missing".into()));
            };
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-3, "gradient differs by {diff}");
        }
        Ok(())
    }
}
