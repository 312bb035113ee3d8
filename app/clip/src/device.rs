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
