//! `radclip bench`: timings printed as JSON lines, to be run side by side with
//! `tests/fixtures/bench_pydicom.py` on the same files (see docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Instant;

use radclip_dicom as dicom;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Full decode (file read + codec + pipeline up to modality-ready samples) of each file, `repeat` times.
pub fn decode(files: &[PathBuf], repeat: usize) -> anyhow::Result<()> {
    for f in files {
        let mut times = Vec::with_capacity(repeat);
        let mut ts = String::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let obj = dicom::pixel::open_full(f)?;
            let frames = dicom::pixel::decode_all(&obj, f)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            ts = obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string();
            std::hint::black_box(frames);
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{}",
            serde_json::json!({"path": f.display().to_string(), "transfer_syntax": ts,
                "median_ms": median(times), "min_ms": min})
        );
    }
    Ok(())
}

/// One window/level change on a `size`² 16-bit frame as the viewer does it on the CPU: VOI LUT through the
/// lookup table, then conversion to the egui image that is uploaded as a texture.
pub fn window_level(size: u32, repeat: usize) -> anyhow::Result<()> {
    let n = size as usize * size as usize;
    let mut seed: u32 = 12345;
    let samples: Vec<u16> = (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 20) as u16
        })
        .collect();
    let frame = dicom::Frame {
        rows: size,
        cols: size,
        color: dicom::ColorModel::Mono { invert: false },
        samples: dicom::Samples::U16(samples),
        modality: dicom::ModalityLut::Rescale {
            slope: 1.0,
            intercept: -1024.0,
        },
        windows: vec![],
        voi_function: dicom::VoiFunction::Linear,
        stored_range: (0, 4095),
    };
    let mut times = Vec::with_capacity(repeat);
    for i in 0..repeat.max(1) {
        let w = dicom::Window {
            center: 40.0 + i as f64,
            width: 400.0 + 2.0 * i as f64,
        };
        let t = Instant::now();
        let img =
            radclip_viewer::app::color_image(&frame, Some((w, dicom::VoiFunction::Linear)), false);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(img);
    }
    let med = median(times);
    println!(
        "{}",
        serde_json::json!({"bench": "window_level_cpu", "size": size, "median_ms": med, "fps_bound": 1e3 / med})
    );
    Ok(())
}
