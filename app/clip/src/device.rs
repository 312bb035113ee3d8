//! Choosing where the model runs, with a sentence when the wish cannot be met.

use candle_core::Device;

/// `want`: "cpu", "cuda" or "auto". Returns the device and, on fallback, why.
pub fn select(want: &str) -> (Device, Option<String>) {
    match want {
        "cpu" => (Device::Cpu, None),
        "cuda" | "auto" | "gpu" => match cuda() {
            Ok(d) => (d, None),
            // "auto" asked for nothing in particular: the CPU is a normal outcome, not a fallback.
            Err(_) if want == "auto" => (Device::Cpu, None),
            Err(why) => (Device::Cpu, Some(format!("{why}; running on the CPU"))),
        },
        other => (
            Device::Cpu,
            Some(format!(
                "unknown device \"{other}\" (cpu, cuda, auto); running on the CPU"
            )),
        ),
    }
}

/// Where a model runs, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsOn {
    /// "the CPU" or "NVIDIA GPU 0".
    pub place: String,
    /// What serves its matrix products ("matrix products on OpenBLAS SkylakeX", candle's kernels…).
    pub kernels: String,
}

/// Where a model on `device` runs; for the CPU, with the library serving its matrix products.
pub fn describe(device: &Device) -> RunsOn {
    let (place, kernels) = match device {
        Device::Cpu => (
            "the CPU".to_string(),
            crate::blas::active()
                .map(|b| format!("matrix products on {b}"))
                .unwrap_or_else(|| "matrix products on candle's kernels".into()),
        ),
        Device::Cuda(_) => ("NVIDIA GPU 0".into(), "candle's CUDA kernels".into()),
        Device::Metal(_) => ("the Metal GPU".into(), "candle's Metal kernels".into()),
    };
    RunsOn { place, kernels }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, String> {
    // With cudarc's dynamic loading, a machine without libcuda panics inside new_cuda instead of erring.
    match std::panic::catch_unwind(|| Device::new_cuda(0)) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!(
            "no usable NVIDIA GPU ({})",
            crate::error::first_line(&e)
        )),
        Err(_) => Err("no NVIDIA driver (libcuda) found".into()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, String> {
    Err(
        "this radclip was built without the `cuda` feature (docs/cuda.md tells how to build it)"
            .into(),
    )
}
