//! `radclip bench`: timings printed as JSON lines, to be run side by side with
//! `tests/fixtures/bench_pydicom.py` on the same files (see docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

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
pub fn window_level(size: u32, repeat: usize, gpu: bool) -> anyhow::Result<()> {
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
        voi_luts: Vec::new(),
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
    if gpu {
        window_level_frames(&frame, repeat)?;
    }
    Ok(())
}

/// Whole frames after a W/L change on a wgpu device (the first adapter egui picks; lavapipe on a machine
/// without a GPU), both ways into the same 1024² target, each waited for until the device is idle:
/// the CPU path as the viewer's egui renderer does it (VOI → RGBA image → texture upload → textured
/// quad), and the GPU path (display table → 64 KB upload → the VOI shader).
fn window_level_frames(frame: &dicom::Frame, repeat: usize) -> anyhow::Result<()> {
    use radclip_viewer::gpu::{GpuFrame, GpuImage, GpuTable, VoiPipeline, egui_wgpu, wgpu};
    let setup = egui_wgpu::WgpuSetup::without_display_handle();
    let instance = pollster::block_on(setup.new_instance());
    let config = egui_wgpu::WgpuConfiguration {
        wgpu_setup: setup,
        ..Default::default()
    };
    let rs = pollster::block_on(egui_wgpu::RenderState::create(
        &config,
        &instance,
        None,
        egui_wgpu::RendererOptions::default(),
    ))
    .map_err(|e| anyhow::anyhow!("no wgpu device for the GPU benchmark: {e}"))?;
    let adapter = rs.adapter.get_info();
    let (device, queue) = (&rs.device, &rs.queue);
    let target_size = 1024u32;
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("bench_target"),
        size: wgpu::Extent3d {
            width: target_size,
            height: target_size,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: rs.target_format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        view_formats: &[],
    });
    let view = target.create_view(&wgpu::TextureViewDescriptor::default());
    let window = |i: usize| dicom::Window {
        center: 40.0 + i as f64,
        width: 400.0 + 2.0 * i as f64,
    };
    let full = egui::Rect::from_min_size(
        egui::Pos2::ZERO,
        egui::vec2(target_size as f32, target_size as f32),
    );
    let corners = [
        full.left_top(),
        full.right_top(),
        full.right_bottom(),
        full.left_bottom(),
    ];
    let screen = egui_wgpu::ScreenDescriptor {
        size_in_pixels: [target_size, target_size],
        pixels_per_point: 1.0,
    };
    let run_pass = |encoder: &mut wgpu::CommandEncoder,
                    draw: &mut dyn FnMut(&mut wgpu::RenderPass<'static>)| {
        let mut pass = encoder
            .begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("bench_pass"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            })
            .forget_lifetime();
        draw(&mut pass);
    };
    let wait = || device.poll(wgpu::PollType::wait_indefinitely());

    // CPU path through egui's own renderer.
    let mut renderer = rs.renderer.write();
    let tex = egui::TextureId::Managed(1);
    let mut mesh = egui::Mesh::with_texture(tex);
    mesh.add_rect_with_uv(
        full,
        egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
        egui::Color32::WHITE,
    );
    let jobs = [egui::epaint::ClippedPrimitive {
        clip_rect: full,
        primitive: egui::epaint::Primitive::Mesh(mesh),
    }];
    // egui's textured quad into the target, waited for.
    let draw_quad = |renderer: &mut egui_wgpu::Renderer| -> anyhow::Result<()> {
        let mut encoder = device.create_command_encoder(&Default::default());
        let extra = renderer.update_buffers(device, queue, &mut encoder, &jobs, &screen);
        run_pass(&mut encoder, &mut |pass| {
            renderer.render(pass, &jobs, &screen)
        });
        queue.submit(extra.into_iter().chain([encoder.finish()]));
        wait()?;
        Ok(())
    };
    let mut cpu_times = Vec::with_capacity(repeat);
    for i in 0..repeat.max(1) + 1 {
        let t = Instant::now();
        let img = radclip_viewer::app::color_image(
            frame,
            Some((window(i), dicom::VoiFunction::Linear)),
            false,
        );
        let delta = egui::epaint::ImageDelta::full(img, egui::TextureOptions::LINEAR);
        renderer.update_texture(device, queue, tex, &delta);
        draw_quad(&mut renderer)?;
        // The first round allocates the texture; it is not a W/L change.
        if i > 0 {
            cpu_times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    // The same quad redrawn with the texture unchanged: egui's own cost per frame on this device.
    let mut tex_redraw_times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        draw_quad(&mut renderer)?;
        tex_redraw_times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(renderer);

    // GPU path: the frame's indices once (a new slice), then one table per change.
    let pipeline = VoiPipeline::new(device, rs.target_format);
    let indices =
        dicom::lut_indices(frame).ok_or_else(|| anyhow::anyhow!("frame has no indices"))?;
    let t = Instant::now();
    let gpu_frame = GpuFrame::new(frame.cols, frame.rows, indices);
    let table0 = dicom::display_lut(frame, None)
        .map(|l| l.table)
        .unwrap_or_default();
    let mut image = GpuImage::new(device, queue, &pipeline, &gpu_frame, &GpuTable::new(table0));
    queue.submit([]);
    wait()?;
    let slice_ms = t.elapsed().as_secs_f64() * 1e3;
    // The GPU path's image placed and drawn into the target, waited for.
    let draw_image = |image: &GpuImage| -> anyhow::Result<()> {
        image.place(queue, &pipeline, corners, [target_size as f32; 2]);
        let mut encoder = device.create_command_encoder(&Default::default());
        run_pass(&mut encoder, &mut |pass| image.draw(&pipeline, pass));
        queue.submit([encoder.finish()]);
        wait()?;
        Ok(())
    };
    let mut gpu_times = Vec::with_capacity(repeat);
    for i in 0..repeat.max(1) {
        let t = Instant::now();
        let voi = dicom::Voi::Window(window(i), dicom::VoiFunction::Linear);
        let table = dicom::display_lut(frame, Some(&voi))
            .map(|l| l.table)
            .unwrap_or_default();
        image.upload_table(queue, &GpuTable::new(table));
        draw_image(&image)?;
        gpu_times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // The same draw with nothing changed: what any frame costs on this device (on a software
    // rasteriser, its fill of the target), so a W/L change's own cost is the difference.
    let mut redraw_times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        draw_image(&image)?;
        redraw_times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (cpu, gpu, redraw) = (median(cpu_times), median(gpu_times), median(redraw_times));
    let tex_redraw = median(tex_redraw_times);
    println!(
        "{}",
        serde_json::json!({"bench": "window_level_frame", "size": frame.cols, "adapter": adapter.name,
            "device_type": format!("{:?}", adapter.device_type), "target": target_size,
            "cpu_path_ms": cpu, "gpu_path_ms": gpu, "gpu_path_new_slice_ms": slice_ms,
            "gpu_redraw_ms": redraw, "gpu_path_change_over_redraw_ms": gpu - redraw,
            "texture_redraw_ms": tex_redraw,
            "cpu_path_fps": 1e3 / cpu, "gpu_path_fps": 1e3 / gpu, "redraw_fps": 1e3 / redraw})
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
        .largest_image_series()
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

/// A random-weight CLIP of OpenAI's ViT-B/32 or ViT-B/16 shape (quick_gelu, 224 px, text 512 × 12),
/// written as a model folder in f32.
pub fn make_model(shape: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use radclip_clip::config::Activation;
    let patch = match shape {
        "b32" => 32,
        "b16" => 16,
        other => anyhow::bail!("unknown shape \"{other}\" (b32, b16)"),
    };
    let mut config = crate::train::demo_config();
    let (v, t) = (&mut config.vision, &mut config.text);
    (
        v.hidden_size,
        v.intermediate_size,
        v.num_hidden_layers,
        v.num_attention_heads,
    ) = (768, 3072, 12, 12);
    (v.image_size, v.patch_size, v.hidden_act) = (224, patch, Activation::QuickGelu);
    (
        t.hidden_size,
        t.intermediate_size,
        t.num_hidden_layers,
        t.num_attention_heads,
    ) = (512, 2048, 12, 8);
    t.hidden_act = Activation::QuickGelu;
    config.projection_dim = 512;
    let net = radclip_clip::train::Trainable::init(config, 7, None, &candle_core::Device::Cpu)?;
    net.save(out, candle_core::DType::F32)?;
    eprintln!(
        "radclip: wrote a random ViT-{} CLIP to {}",
        shape.to_uppercase(),
        out.display()
    );
    Ok(())
}

/// CLIP encode and heatmap timings on a model folder (random weights of a real shape, made by
/// `tests/fixtures/clip/bench_torch.py`, which times PyTorch on the same files, or `bench make-model`).
/// Each timed encode reads its features back, so on a GPU the time includes the work queued.
pub fn clip(
    model: &str,
    batches: &[usize],
    repeat: usize,
    only: &[String],
    device: &str,
) -> anyhow::Result<()> {
    let part = |p: &str| only.iter().any(|o| o == p);
    use radclip_clip::engine::Engine;
    use radclip_clip::heatmap::{EncodedImage, Method};
    let (dev, note) = radclip_clip::device::select(device);
    if let Some(n) = note {
        eprintln!("radclip: {n}");
    }
    let engine = Engine::load(model, &dev)?;
    let on = radclip_clip::device::describe(&dev);
    let sync = |t: candle_core::Tensor| -> anyhow::Result<()> {
        std::hint::black_box(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?);
        Ok(())
    };
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
        // Drawn whichever parts run, so the inputs are the same.
        let px: Vec<f32> = (0..b * 3 * s * s).map(|_| rnd()).collect();
        if part("image") {
            let px = candle_core::Tensor::from_vec(px, (b, 3, s, s), engine.model.device())?;
            let ms = time(&mut || sync(engine.model.image_features(&px)?))?;
            println!(
                "{}",
                serde_json::json!({"bench": "clip_image", "model": name, "batch": b, "median_ms": ms,
                    "images_per_s": 1e3 * b as f64 / ms, "device": on.place, "kernels": on.kernels})
            );
        }
        if !part("text") {
            continue;
        }
        let texts: Vec<String> = (0..b)
            .map(|i| format!("small left pleural effusion with adjacent atelectasis, case {i}"))
            .collect();
        let batch = engine.tokenizer.batch(&texts)?;
        let ms = time(&mut || sync(engine.model.text_features(&batch)?))?;
        println!(
            "{}",
            serde_json::json!({"bench": "clip_text", "model": name, "batch": b, "median_ms": ms,
                "tokens": batch.ids.first().map_or(0, Vec::len), "device": on.place})
        );
    }
    let img: Vec<u8> = (0..512 * 512 * 3).map(|i| (i % 251) as u8).collect();
    let img = radclip_clip::preprocess::Rgb8 {
        width: 512,
        height: 512,
        data: img,
    };
    if part("attention") {
        // The inspector once the image is encoded: every layer's and head's map from the class token,
        // and with one tiled image per layer as the panel and `radclip attention` draw them.
        use radclip_assist::attention::{AttentionMaps, Query};
        let e = EncodedImage::new(&engine, &engine.prepare(img.clone())?)?;
        let ms_maps = time(&mut || {
            std::hint::black_box(AttentionMaps::of(&e, Query::ClassToken)?);
            Ok(())
        })?;
        let ms_images = time(&mut || {
            let m = AttentionMaps::of(&e, Query::ClassToken)?;
            for layer in 0..m.layers {
                std::hint::black_box(m.layer_image(layer, 16));
            }
            Ok(())
        })?;
        let m = AttentionMaps::of(&e, Query::ClassToken)?;
        println!(
            "{}",
            serde_json::json!({"bench": "attention_maps", "model": name, "layers": m.layers,
                "heads": m.heads, "grid": [m.grid.0, m.grid.1], "maps_ms": ms_maps,
                "maps_and_layer_images_ms": ms_images, "device": on.place})
        );
    }
    if !part("heatmap") {
        return Ok(());
    }
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
        // Edge refinement at the model's input pixels: for a new prompt (the image's neighbour weights
        // already made), and whole (weights and iterations, as for a new image).
        let map = engine.heatmap(&e, method, "pleural effusion")?;
        let settings = radclip_clip::refine::Refinement::default();
        let ms_refine = time(&mut || {
            std::hint::black_box(e.refine(&map, &settings)?);
            Ok(())
        })?;
        let (rh, rw) = (map.grid.0 * map.patch_size, map.grid.1 * map.patch_size);
        let guide: Vec<f32> = (0..rh * rw).map(|_| rnd()).collect();
        let up: Vec<f32> = (0..rh * rw).map(|_| rnd()).collect();
        let ms_refine_whole = time(&mut || {
            std::hint::black_box(radclip_clip::refine::pamr(&guide, rw, rh, &up, &settings));
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({"bench": "clip_heatmap", "model": name, "method": method.name(),
                "new_image_ms": ms_new_image, "new_prompt_ms": ms_new_prompt,
                "refine_new_prompt_ms": ms_refine, "refine_new_image_ms": ms_refine_whole})
        );
    }
    Ok(())
}

pub struct IndexBench {
    pub rows: usize,
    pub dim: usize,
    pub intrinsic: usize,
    pub queries: usize,
    pub k: usize,
    pub approximate: bool,
    pub write: Option<std::path::PathBuf>,
}

fn vm_kb(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
}

/// `radclip bench index`: exact top-k over `rows` seeded random vectors of `dim`, `queries`
/// single-vector searches, first on the index built in memory (f32 rows), then on it saved and
/// memory-mapped (f16 rows); with `approximate`, the HNSW graph's build time, and its recall@k and
/// speed against the mapped exact scan at several search widths. With `write`, the vectors and
/// queries as raw little-endian f32 (for `tests/fixtures/bench_faiss.py`).
pub fn index(b: IndexBench) -> anyhow::Result<()> {
    use std::io::Write;
    let IndexBench {
        rows,
        dim,
        intrinsic,
        queries,
        k,
        ..
    } = b;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: uniform in [-1, 1).
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    // With `intrinsic` latents: a fixed random map of them (sums of uniforms, near Gaussian), plus
    // noise of a tenth of the signal in every dimension.
    let map: Vec<f32> = (0..dim * intrinsic).map(|_| next()).collect();
    let mut z = vec![0f32; intrinsic];
    let mut sample = |row: &mut [f32]| {
        if intrinsic == 0 {
            row.iter_mut().for_each(|x| *x = next());
            return;
        }
        z.iter_mut()
            .for_each(|x| *x = (0..4).map(|_| next()).sum::<f32>());
        for (d, x) in row.iter_mut().enumerate() {
            let m = map
                .get(d * intrinsic..(d + 1) * intrinsic)
                .unwrap_or_default();
            let signal: f32 = m.iter().zip(&z).map(|(a, b)| a * b).sum();
            *x = signal + 0.1 * (intrinsic as f32).sqrt() * next();
        }
    };
    let mut out = match &b.write {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p.with_extension("vectors.f32"))
                .with_context(|| format!("cannot write beside {}", p.display()))?,
        )),
        None => None,
    };
    let t = Instant::now();
    let mut index: radclip_index::Index<()> = radclip_index::Index::new(dim);
    let mut row = vec![0f32; dim];
    for _ in 0..rows {
        sample(&mut row);
        index.add(&row, ())?;
        if let Some(o) = &mut out {
            // The stored (normalised) row, so both sides search the same vectors.
            if let Some(r) = index.row(index.len() - 1) {
                for x in r.iter() {
                    o.write_all(&x.to_le_bytes())?;
                }
            }
        }
    }
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let qs: Vec<Vec<f32>> = (0..queries)
        .map(|_| {
            let mut q = vec![0f32; dim];
            sample(&mut q);
            q
        })
        .collect();
    if let Some(p) = &b.write {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(p.with_extension("queries.f32"))?);
        for q in &qs {
            for x in q {
                f.write_all(&x.to_le_bytes())?;
            }
        }
    }
    let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
    let timed = |index: &radclip_index::Index<()>| -> anyhow::Result<_> {
        let mut times = Vec::new();
        let mut top = Vec::new();
        for q in &qs {
            let t0 = Instant::now();
            let hits = index.search_exact(q, k)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            top.push(hits.iter().map(|h| h.position).collect::<Vec<_>>());
        }
        // All the queries in one call: the rows read once for all of them.
        let t0 = Instant::now();
        let batch = index.search_many(&refs, k)?;
        let batch_ms = t0.elapsed().as_secs_f64() * 1e3;
        let batch_same = batch
            .iter()
            .zip(&top)
            .all(|(b, t)| b.iter().map(|h| h.position).eq(t.iter().copied()));
        Ok((times, top, batch_ms, batch_same))
    };
    let (times, top, batch_ms, batch_same) = timed(&index)?;
    let rss_in_memory = vm_kb("VmRSS:").map(|k| k * 1024);
    // Saved (f16 rows), the f32 index dropped, then searched memory-mapped.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.idx");
    let t0 = Instant::now();
    index.save(&path)?;
    let save_ms = t0.elapsed().as_secs_f64() * 1e3;
    let file_bytes = std::fs::metadata(&path)?.len();
    drop(index);
    let rss_dropped = vm_kb("VmRSS:").map(|k| k * 1024);
    let t0 = Instant::now();
    let mapped: radclip_index::Index<()> = radclip_index::Index::load(&path)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (mtimes, mtop, mbatch_ms, mbatch_same) = timed(&mapped)?;
    let rss_mapped = vm_kb("VmRSS:").map(|k| k * 1024);
    let same = top
        .iter()
        .zip(&mtop)
        .map(|(a, b)| a.iter().filter(|p| b.contains(p)).count())
        .sum::<usize>();
    let f16_agreement = same as f64 / (k * qs.len()).max(1) as f64;
    let mut approximate = serde_json::Value::Null;
    if b.approximate {
        let mut graph = mapped;
        let params = radclip_index::Approximate::default();
        let t0 = Instant::now();
        graph.build_approximate(params)?;
        let graph_build_s = t0.elapsed().as_secs();
        let t0 = Instant::now();
        graph.save(&path)?;
        let graph_save_ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(graph);
        let mut graph: radclip_index::Index<()> = radclip_index::Index::load(&path)?;
        let mut widths = Vec::new();
        for ef in [16usize, 32, 64, 128, 256] {
            graph.set_expansion_search(ef);
            let (mut found, mut at) = (0usize, Vec::new());
            for (q, exact) in qs.iter().zip(&mtop) {
                let t0 = Instant::now();
                let hits = graph.search(q, k)?;
                at.push(t0.elapsed().as_secs_f64() * 1e3);
                found += hits.iter().filter(|h| exact.contains(&h.position)).count();
            }
            let ms = median(at);
            widths.push(
                serde_json::json!({"expansion_search": ef, "search_median_ms": ms,
                "recall_at_k": found as f64 / (k * qs.len()).max(1) as f64,
                "speed_over_exact": median(mtimes.clone()) / ms.max(1e-9)}),
            );
        }
        approximate = serde_json::json!({"params": params, "build_s": graph_build_s,
            "save_ms": graph_save_ms, "file_bytes": std::fs::metadata(&path)?.len(),
            "widths": widths, "peak_rss_bytes": vm_kb("VmHWM:").map(|k| k * 1024)});
    }
    println!(
        "{}",
        serde_json::json!({"bench": "index_exact", "rows": rows, "dim": dim,
            "intrinsic": intrinsic, "k": k,
            "threads": rayon::current_num_threads(), "build_ms": build_ms,
            "search_median_ms": median(times.clone()), "search_ms": times,
            "batch_of_queries_ms": batch_ms, "batch_same_as_single": batch_same,
            "vector_bytes": rows * dim * 4, "rss_in_memory_bytes": rss_in_memory,
            "mapped": {"save_ms": save_ms, "load_ms": load_ms,
                "file_bytes": file_bytes,
                "search_median_ms": median(mtimes), "batch_of_queries_ms": mbatch_ms,
                "batch_same_as_single": mbatch_same,
                "top_k_agreement_with_f32": f16_agreement,
                "rss_before_load_bytes": rss_dropped, "rss_after_search_bytes": rss_mapped},
            "approximate": approximate,
            "peak_rss_bytes": vm_kb("VmHWM:").map(|k| k * 1024),
            "top": top})
    );
    Ok(())
}

/// MPR on a series (`radclip bench mpr DIR`): decoding alone against decoding into the volume (the
/// volume is ready when the last slice is written), peak RSS over the raw voxel bytes, and a
/// `size`² reslice (thin and a 10-mm MIP slab, four planes) on the CPU and with the GPU reslicer on
/// the first wgpu adapter (lavapipe without a GPU), with the largest grey difference between them.
/// `part`: all, decode (decoding alone, frames kept) or volume (decoding into the volume).
/// `--write PREFIX` writes the volume (PREFIX.volume.npy, int16 [slices, rows, columns]), each plane
/// (PREFIX.planes.json) and the CPU values (PREFIX.<plane>.npy) for tests/fixtures/bench_mpr_scipy.py.
pub fn mpr(
    dir: &std::path::Path,
    part: &str,
    size: usize,
    repeat: usize,
    write: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use dicom::volume::{self, Plane, PlaneKind, Slab, SlabMode, Volume};
    use rayon::prelude::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, RwLock};

    let tree = dicom::study::scan(dir)?;
    let series = tree
        .largest_image_series()
        .ok_or_else(|| anyhow::anyhow!("no image series in {}", dir.display()))?;
    let n = series.frames.len();
    // Decoding every frame and keeping them all, as the viewer's frame cache does (`keep`), or
    // dropping each at once (`!keep`: only warms the page cache).
    let decode_all = |keep: bool| -> anyhow::Result<f64> {
        let t = Instant::now();
        let frames = (0..n)
            .into_par_iter()
            .map(|k| -> anyhow::Result<_> {
                let (inst, _) = series
                    .instance_of(k)
                    .ok_or_else(|| anyhow::anyhow!("frame {k} past the series"))?;
                let f = dicom::pixel::decode_image_file(&inst.path)?;
                Ok(if keep { Some(f) } else { None })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        drop(std::hint::black_box(frames));
        Ok(ms)
    };
    decode_all(false)?;
    if part == "decode" {
        let ms = decode_all(true)?;
        println!(
            "{}",
            serde_json::json!({"bench": "mpr_decode", "frames": n,
                "threads": rayon::current_num_threads(), "decode_keep_ms": ms})
        );
        return Ok(());
    }
    // The peak from here on: Linux resets VmHWM to the current RSS on "5" in clear_refs.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = vm_kb("VmRSS:").map(|k| k * 1024);
    let cell = RwLock::new(Volume::for_series(series)?);
    let t = Instant::now();
    let filled = volume::fill(series, &cell, &AtomicBool::new(false), &|_| {});
    let volume_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_after = peak_rss();
    if let Some((k, why)) = filled.failed.first() {
        anyhow::bail!("slice {k} failed: {why}");
    }
    // For the ratio, in this process; a fresh process per part (`--part decode`, `--part volume`)
    // keeps the allocator's reuse of freed memory out of it.
    let decode_ms = if part == "all" {
        Some(decode_all(true)?)
    } else {
        None
    };
    let vol = cell
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a decoding thread failed"))?;
    let raw = vol.byte_len() as f64;
    let extra = match (rss_before, rss_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
        _ => None,
    };
    println!(
        "{}",
        serde_json::json!({"bench": "mpr_volume", "dims": vol.geometry.dims,
            "threads": rayon::current_num_threads(),
            "decode_keep_ms": decode_ms, "volume_ready_ms": volume_ms,
            "volume_over_decode": decode_ms.map(|d| volume_ms / d),
            "raw_voxel_bytes": raw, "peak_rss_growth_bytes": extra,
            "peak_over_raw": extra.map(|e| e / raw)})
    );
    if part == "volume" {
        return Ok(());
    }

    let g = vol.geometry.clone();
    let c = vol.centre();
    let planes: Vec<(&str, Plane)> = {
        let sized = |p: Plane, make: &dyn Fn(f64) -> Option<Plane>| -> Option<Plane> {
            let scale = p.rows.max(p.columns) as f64 / size as f64;
            make(p.pixel_spacing_mm[1] * scale)
        };
        let std_plane = |kind| {
            sized(Plane::standard(kind, &g, c, 0.0), &|s| {
                Some(Plane::standard(kind, &g, c, s))
            })
        };
        let normal = [0.3, -0.4, 0.87];
        let oblique = Plane::oblique(normal, &g, c, 0.0)
            .and_then(|p| sized(p, &|s| Plane::oblique(normal, &g, c, s)));
        [
            ("axial", std_plane(PlaneKind::Axial)),
            ("coronal", std_plane(PlaneKind::Coronal)),
            ("sagittal", std_plane(PlaneKind::Sagittal)),
            ("oblique", oblique),
        ]
        .into_iter()
        .filter_map(|(name, p)| Some((name, p?)))
        .collect()
    };
    let window = (
        dicom::Window {
            center: 40.0,
            width: 400.0,
        },
        dicom::VoiFunction::Linear,
    );
    let slabs = [
        ("thin", Slab::default()),
        (
            "mip10",
            Slab {
                thickness_mm: 10.0,
                mode: SlabMode::Mip,
            },
        ),
    ];
    let time = |f: &mut dyn FnMut()| {
        let mut v = Vec::with_capacity(repeat);
        f();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            f();
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        median(v)
    };
    // The GPU side: a headless device as egui would pick it, the volume uploaded once.
    let gpu = {
        use radclip_viewer::gpu::egui_wgpu;
        let setup = egui_wgpu::WgpuSetup::without_display_handle();
        let instance = pollster::block_on(setup.new_instance());
        let config = egui_wgpu::WgpuConfiguration {
            wgpu_setup: setup,
            ..Default::default()
        };
        pollster::block_on(egui_wgpu::RenderState::create(
            &config,
            &instance,
            None,
            egui_wgpu::RendererOptions::default(),
        ))
        .ok()
    };
    let shared = Arc::new(RwLock::new(vol));
    let mut renderer = gpu.as_ref().map(|rs| {
        let mut r = radclip_viewer::gpu_mpr::MprRenderer::new(
            &rs.device,
            radclip_viewer::gpu::wgpu::TextureFormat::Rgba8Unorm,
        );
        let t = Instant::now();
        r.sync(&rs.device, &rs.queue, &shared, usize::MAX);
        let _ = rs
            .device
            .poll(radclip_viewer::gpu::wgpu::PollType::wait_indefinitely());
        (
            r,
            t.elapsed().as_secs_f64() * 1e3,
            rs.adapter.get_info().name,
        )
    });
    if let Some((_, upload_ms, adapter)) = &renderer {
        println!(
            "{}",
            serde_json::json!({"bench": "mpr_upload", "adapter": adapter, "upload_ms": upload_ms})
        );
    }
    let vol = shared
        .read()
        .map_err(|_| anyhow::anyhow!("volume lock poisoned"))?;
    let mut written = Vec::new();
    for (name, plane) in &planes {
        for (slab_name, slab) in slabs {
            let params = radclip_viewer::gpu_mpr::MprParams {
                plane: plane.clone(),
                slab,
                window,
                invert: false,
            };
            let cpu_ms = time(&mut || {
                std::hint::black_box(vol.reslice(plane, slab));
            });
            let values = vol.reslice(plane, slab).values;
            let grey = match dicom::render_values(
                &values,
                plane.rows as u32,
                plane.columns as u32,
                window,
                false,
            ) {
                dicom::Rendered::Grey { data, .. } => data,
                dicom::Rendered::Rgb { data, .. } => data,
            };
            let (gpu_ms, worst) = match (&mut renderer, &gpu) {
                (Some((r, _, _)), Some(rs)) => {
                    let ms = time(&mut || {
                        std::hint::black_box(r.render_offscreen(&rs.device, &rs.queue, &params));
                    });
                    let worst = r.render_offscreen(&rs.device, &rs.queue, &params).map(|g| {
                        g.iter()
                            .zip(&grey)
                            .map(|(a, b)| a.abs_diff(*b))
                            .max()
                            .unwrap_or(0)
                    });
                    (Some(ms), worst)
                }
                _ => (None, None),
            };
            println!(
                "{}",
                serde_json::json!({"bench": "mpr_reslice", "plane": name, "slab": slab_name,
                    "rows": plane.rows, "columns": plane.columns,
                    "cpu_ms": cpu_ms, "gpu_ms_with_readback": gpu_ms,
                    "cpu_over_gpu": gpu_ms.map(|g| cpu_ms / g),
                    "max_grey_difference": worst})
            );
            if slab_name == "thin"
                && let Some(prefix) = write
            {
                let path = prefix.with_extension(format!("{name}.npy"));
                let npy = radclip_clip::heatmap::npy_f32(&[plane.rows, plane.columns], &values);
                dicom::export::write_atomic(&path, &npy)?;
                let mut p = serde_json::to_value(plane)?;
                p["name"] = serde_json::json!(name);
                p["values"] = serde_json::json!(path);
                p["cpu_ms"] = serde_json::json!(cpu_ms);
                written.push(p);
            }
        }
    }
    if let Some(prefix) = write {
        let [cols, rows, slices] = vol.geometry.dims;
        let mut voxels = Vec::with_capacity(cols * rows * slices);
        for k in 0..slices {
            voxels.extend_from_slice(
                vol.slice_i16(k)
                    .ok_or_else(|| anyhow::anyhow!("--write takes 16-bit volumes"))?,
            );
        }
        let header = format!(
            "{{'descr': '<i2', 'fortran_order': False, 'shape': ({slices}, {rows}, {cols}), }}"
        );
        let mut bytes = npy_header(&header);
        bytes.extend(voxels.iter().flat_map(|v| v.to_le_bytes()));
        dicom::export::write_atomic(&prefix.with_extension("volume.npy"), &bytes)?;
        let meta = serde_json::json!({"geometry": {
            "origin": vol.geometry.origin, "row_dir": vol.geometry.row_dir,
            "col_dir": vol.geometry.col_dir, "normal": vol.geometry.normal,
            "spacing": vol.geometry.spacing, "dims": vol.geometry.dims},
            "volume": prefix.with_extension("volume.npy"), "planes": written});
        dicom::export::write_atomic(
            &prefix.with_extension("planes.json"),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
    }
    Ok(())
}

/// An .npy version-1 header for `dict`, padded so the data starts on a 64-byte boundary.
fn npy_header(dict: &str) -> Vec<u8> {
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out
}
