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

/// Peak resident set size of this process so far, in bytes (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Opening a folder as the viewer does: header scan, then the loader with the middle slice first (the one
/// the viewer shows) and the rest by distance from it. Reports the time to the first rendered frame, to the
/// whole largest series decoded, and peak RSS against the raw voxel bytes of that series.
pub fn open(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::sync::Arc;
    let rss_before = peak_rss();
    let t0 = Instant::now();
    let tree = dicom::study::scan(dir)?;
    let scan_ms = t0.elapsed().as_secs_f64() * 1e3;
    let series = tree
        .image_series()
        .max_by_key(|s| s.frames.len())
        .ok_or_else(|| anyhow::anyhow!("no image series in {}", dir.display()))?;
    let n = series.frames.len();
    let mid = n / 2;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|&j| j.abs_diff(mid));
    let mut order: Vec<Arc<std::path::Path>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for j in idx {
        if let Some((inst, _)) = series.instance_of(j)
            && seen.insert(inst.path.clone())
        {
            order.push(inst.path.clone());
        }
    }
    let raw_bytes: u64 = series
        .instances
        .iter()
        .filter_map(|i| i.pixel.as_ref())
        .map(|p| {
            u64::from(p.rows)
                * u64::from(p.cols)
                * u64::from(p.frames)
                * u64::from(p.samples_per_pixel)
                * u64::from(p.bits_allocated.div_ceil(8))
        })
        .sum();
    let first_path = order
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty series"))?;
    // Cache large enough for the whole series, as the viewer's default cap is for a study of this size.
    let (loader, rx) = dicom::loader::Loader::new(usize::MAX / 2, Arc::new(|| {}))?;
    loader.request(order.iter().cloned());
    let mut first_ms = None;
    let mut done = 0usize;
    let mut failed = 0usize;
    while done < order.len() {
        let ev = rx.recv()?;
        done += 1;
        match ev {
            dicom::loader::LoadEvent::Decoded { path, .. } => {
                if first_ms.is_none() && path == first_path {
                    let key = dicom::loader::FrameKey { path, frame: 0 };
                    if let Some(f) = loader.cache().get(&key) {
                        std::hint::black_box(radclip_viewer::app::color_image(&f, None, false));
                    }
                    first_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            dicom::loader::LoadEvent::Failed { .. } => failed += 1,
        }
    }
    let all_ms = t0.elapsed().as_secs_f64() * 1e3;
    let peak = peak_rss();
    println!(
        "{}",
        serde_json::json!({"bench": "open_folder", "slices": n, "files": order.len(), "failed": failed,
            "scan_ms": scan_ms, "first_pixels_ms": first_ms, "all_decoded_ms": all_ms,
            "raw_voxel_bytes": raw_bytes, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
            "peak_rss_over_raw": peak.map(|p| p as f64 / raw_bytes.max(1) as f64),
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get())})
    );
    Ok(())
}

/// CLIP encode and heatmap timings on a model folder (random weights of a real shape, made by
/// `tests/fixtures/clip/bench_torch.py`, which times PyTorch on the same files).
pub fn clip(model: &str, batches: &[usize], repeat: usize) -> anyhow::Result<()> {
    use radclip_clip::engine::Engine;
    use radclip_clip::heatmap::{EncodedImage, Method};
    let engine = Engine::load(model, &candle_core::Device::Cpu)?;
    let s = engine.model.vision.config.image_size;
    let mut seed: u32 = 7;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((seed >> 8) as f32 / (1 << 24) as f32) * 2.0 - 1.0
    };
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        f()?; // warm-up
        let mut t = Vec::new();
        for _ in 0..repeat.max(1) {
            let t0 = Instant::now();
            f()?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(median(t))
    };
    let name = engine
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for &b in batches {
        let px: Vec<f32> = (0..b * 3 * s * s).map(|_| rnd()).collect();
        let px = candle_core::Tensor::from_vec(px, (b, 3, s, s), &candle_core::Device::Cpu)?;
        let ms = time(&mut || {
            std::hint::black_box(engine.model.image_features(&px)?);
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({"bench": "clip_image", "model": name, "batch": b, "median_ms": ms})
        );
        let texts: Vec<String> = (0..b)
            .map(|i| format!("small left pleural effusion with adjacent atelectasis, case {i}"))
            .collect();
        let batch = engine.tokenizer.batch(&texts)?;
        let ms = time(&mut || {
            std::hint::black_box(engine.model.text_features(&batch)?);
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({"bench": "clip_text", "model": name, "batch": b, "median_ms": ms, "tokens": batch.ids.first().map_or(0, Vec::len)})
        );
    }
    let img: Vec<u8> = (0..512 * 512 * 3).map(|i| (i % 251) as u8).collect();
    let img = radclip_clip::preprocess::Rgb8 {
        width: 512,
        height: 512,
        data: img,
    };
    for method in Method::ALL {
        let ms_new_image = time(&mut || {
            let p = engine.prepare(img.clone())?;
            let e = EncodedImage::new(&engine, &p)?;
            std::hint::black_box(engine.heatmap(&e, method, "pleural effusion")?);
            Ok(())
        })?;
        let p = engine.prepare(img.clone())?;
        let e = EncodedImage::new(&engine, &p)?;
        let mut k = 0;
        let ms_new_prompt = time(&mut || {
            k += 1;
            // A prompt not seen before, so its text encoding is part of the time.
            std::hint::black_box(engine.heatmap(
                &e,
                method,
                &format!("{} finding {k}", method.name()),
            )?);
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({"bench": "clip_heatmap", "model": name, "method": method.name(),
                "new_image_ms": ms_new_image, "new_prompt_ms": ms_new_prompt})
        );
    }
    Ok(())
}
