//! The real GUI, rendered with wgpu (lavapipe on CI) by egui_kittest: open the demo study, scroll, change
//! the window, measure a line, and compare snapshots. Regenerate snapshots with UPDATE_SNAPSHOTS=1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{Event, Key, Modifiers, PointerButton, vec2};
use egui_kittest::Harness;
use radclip_viewer::ViewerApp;
use radclip_viewer::state::MeasurementKind;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

fn harness(path: PathBuf) -> Harness<'static, ViewerApp> {
    let ctx = egui::Context::default();
    let app = ViewerApp::new(&ctx, Some(path)).unwrap();
    Harness::builder()
        .with_size(vec2(1100.0, 720.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
}

/// The same viewer with its VOI stage on the GPU (`gpu.rs`), on the harness's own wgpu device.
fn gpu_harness(path: PathBuf) -> Harness<'static, ViewerApp> {
    let rs = egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    let ctx = egui::Context::default();
    let mut app = ViewerApp::new(&ctx, Some(path)).unwrap();
    app.enable_gpu_voi(&rs);
    Harness::builder()
        .with_size(vec2(1100.0, 720.0))
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(rs))
        .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
}

/// Steps until the background scan and all decoding are done (workers run on other threads), so the
/// status bar (cache size) is the same on every run.
/// Presses S (segmentation masks on/off) and waits for the frame.
fn toggle_segmentations(h: &mut Harness<'_, ViewerApp>) {
    h.key_press(Key::S);
    h.step();
    settle(h);
}

fn settle(h: &mut Harness<'_, ViewerApp>) {
    let start = Instant::now();
    loop {
        h.step();
        if h.state().is_idle() && !h.state().series.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the viewer did not settle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // One more frame so the decoded image is drawn.
    h.step();
    h.step();
}

#[test]
fn demo_study_opens_scrolls_windows_and_measures() {
    let mut h = harness(demo());
    settle(&mut h);
    let v = &h.state().viewports[0];
    assert_eq!(
        (v.slice_count, v.slice),
        (64, 32),
        "the demo CT opens in its middle slice"
    );
    h.snapshot("demo_open");

    for _ in 0..3 {
        h.key_press(Key::ArrowDown);
    }
    h.step();
    settle(&mut h);
    assert_eq!(h.state().viewports[0].slice, 35);

    h.key_press(Key::Num2); // CT preset 2: lung
    h.step();
    settle(&mut h);
    let (w, _) = h.state().viewports[0].window.unwrap();
    assert_eq!((w.center, w.width), (-600.0, 1500.0));
    h.snapshot("demo_lung_window");

    // Measure a horizontal line of 200 screen points with the line tool.
    h.key_press(Key::L);
    h.step();
    let t = *h.state().transforms.get(&0).unwrap();
    let a = t.rect.center() - vec2(100.0, 0.0);
    let b = a + vec2(200.0, 0.0);
    h.event(Event::PointerMoved(a));
    h.step();
    h.event(Event::PointerButton {
        pos: a,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.step();
    for k in 1..=10 {
        h.event(Event::PointerMoved(a + (b - a) * (k as f32 / 10.0)));
        h.step();
    }
    h.event(Event::PointerButton {
        pos: b,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.step();
    h.step();
    let m = *h.state().viewports[0]
        .measurements
        .last()
        .expect("a line was measured");
    assert_eq!(m.kind, MeasurementKind::Line);
    // The demo's PixelSpacing is 1.4 mm and the image is fitted to the viewport: 200 points on screen are
    // 200 / scale pixels, so the line is 1.4 × 200 / scale mm long.
    let expected_mm = 1.4 * 200.0 / f64::from(t.scale());
    let len = radclip_dicom::measure::line_length(
        m.a,
        m.b,
        Some(([1.4, 1.4], radclip_dicom::SpacingSource::Patient)),
    );
    assert!(
        (len.mm.unwrap() - expected_mm).abs() < 0.05,
        "{:?} vs {expected_mm}",
        len.mm
    );
    let spacing = h.state().series[0].series.instances[0].spacing.unwrap();
    assert_eq!(spacing.0, [1.4, 1.4], "spacing read from the file");
    h.snapshot("demo_line_measured");
}

#[test]
fn the_model_label_is_always_on_screen() {
    use egui_kittest::kittest::Queryable;
    let mut h = harness(demo());
    h.state_mut().model_label = Some(
        "AI: radclip-demo — demo and research on synthetic data — not for clinical use".into(),
    );
    settle(&mut h);
    h.get_by_label_contains("not for clinical use");
}

#[test]
fn broken_file_shows_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.dcm");
    // A DICOM preamble and magic followed by garbage.
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(&[0xff; 64]);
    std::fs::write(&bad, bytes).unwrap();
    let mut h = harness(bad);
    let start = Instant::now();
    while !h.state().status.starts_with("Could not open") {
        h.step();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status: {}",
            h.state().status
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
    assert!(h.state().series.is_empty());
}

/// Pixels of two renders that differ by more than one level in any channel, and the largest difference.
fn differing_pixels(a: &image::RgbaImage, b: &image::RgbaImage) -> (usize, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    a.pixels()
        .zip(b.pixels())
        .fold((0, 0), |(n, worst), (p, q)| {
            let d =
                p.0.iter()
                    .zip(q.0)
                    .map(|(x, y)| x.abs_diff(y))
                    .max()
                    .unwrap_or(0);
            (n + usize::from(d > 1), worst.max(d))
        })
}

/// The GPU VOI path shows what the CPU path shows: the same study, then the same window, zoom,
/// rotation and inversion in both, rendered and compared pixel by pixel.
#[test]
fn gpu_voi_path_matches_the_cpu_path() {
    let mut cpu = harness(demo());
    let mut gpu = gpu_harness(demo());
    settle(&mut cpu);
    settle(&mut gpu);
    assert!(
        gpu.state().is_gpu_drawn(0),
        "the demo CT takes the GPU path"
    );
    assert!(!cpu.state().is_gpu_drawn(0));
    let steps: [(&str, Option<Key>); 5] = [
        ("file window", None),
        ("lung preset", Some(Key::Num2)),
        ("bone preset", Some(Key::Num3)),
        ("rotated", Some(Key::R)),
        ("inverted", Some(Key::I)),
    ];
    for (what, key) in steps {
        for h in [&mut cpu, &mut gpu] {
            if let Some(k) = key {
                h.key_press(k);
            }
            h.step();
            settle(h);
        }
        let (a, b) = (cpu.render().unwrap(), gpu.render().unwrap());
        let (n, worst) = differing_pixels(&a, &b);
        // Both filter bilinearly in display space; only float rounding may differ (by one level).
        assert!(
            n == 0,
            "{what}: {n} pixels differ by more than one level (worst {worst})"
        );
    }
    // A window drag changes only the table: the frame's indices are re-used.
    let before = gpu.render().unwrap();
    gpu.key_press(Key::Num1);
    gpu.step();
    settle(&mut gpu);
    let (n, _) = differing_pixels(&before, &gpu.render().unwrap());
    assert!(
        n > 10_000,
        "a new window must change the picture ({n} pixels)"
    );
}

/// A study's DICOM Segmentation (the phantom's ground truth) is read after the scan and, with S, its
/// masks are drawn over the image they were derived from, in the segment's colour, and nowhere else.
#[test]
fn segmentation_masks_are_drawn_over_their_image() {
    let seed = 7;
    let index = (0..300)
        .find(|&i| {
            let c = radclip_phantom::cxr_sample(seed, i).case;
            c.findings.len() == 1 && c.findings[0].kind == radclip_phantom::Kind::Mass
        })
        .expect("a study with one mass");
    let dir = tempfile::tempdir().unwrap();
    let truth = radclip_phantom::write_cxr_study(dir.path(), seed, index, 256).unwrap();
    let mask = &radclip_phantom::cxr_sample(seed, index)
        .case
        .render(256)
        .masks[0];
    let mut h = harness(dir.path().to_path_buf());
    settle(&mut h);
    assert_eq!(h.state().segmentations.len(), 1, "{}", h.state().status);
    assert!(
        h.state().status.contains("segmentation"),
        "{}",
        h.state().status
    );
    let off = h.render().unwrap();
    toggle_segmentations(&mut h);
    assert!(h.state().show_segmentations);
    let on = h.render().unwrap();

    // Image pixels deep inside the mask (their 5×5 neighbourhood is all mask) and far outside it.
    let t = h.state().transforms[&0];
    let inside = |x: usize, y: usize| {
        (y.saturating_sub(2)..=(y + 2).min(255))
            .all(|yy| (x.saturating_sub(2)..=(x + 2).min(255)).all(|xx| mask[yy * 256 + xx]))
    };
    let (cy, cx) = truth.findings[0].centroid.unwrap();
    let (cx, cy) = (cx.round() as usize, cy.round() as usize);
    assert!(inside(cx, cy), "the mass's centroid is inside its mask");
    let far = (0..256 * 256)
        .map(|i: usize| (i % 256, i / 256))
        .find(|&(x, y)| {
            (x.abs_diff(cx) > 80 || y.abs_diff(cy) > 80)
                && (y.saturating_sub(8)..(y + 8).min(256)).all(|yy| {
                    (x.saturating_sub(8)..(x + 8).min(256)).all(|xx| !mask[yy * 256 + xx])
                })
                && x > 40
                && y > 40
        })
        .unwrap();
    let screen = |x: usize, y: usize| {
        let p = t.screen_from_image(egui::pos2(x as f32 + 0.5, y as f32 + 0.5));
        (p.x as u32, p.y as u32)
    };
    let px = |img: &image::RgbaImage, (x, y): (u32, u32)| img.get_pixel(x, y).0;
    let (a, b) = (px(&off, screen(cx, cy)), px(&on, screen(cx, cy)));
    // A grey image; segment 1 is drawn in translucent red over it.
    let red_over_green = |p: [u8; 4]| i32::from(p[0]) - i32::from(p[1]);
    assert!(
        red_over_green(a).abs() <= 2 && red_over_green(b) > 40,
        "inside the mask: {a:?} → {b:?}"
    );
    assert_eq!(
        px(&off, screen(far.0, far.1)),
        px(&on, screen(far.0, far.1)),
        "outside the mask nothing changes"
    );
    h.snapshot("segmentation_overlay");
}

/// The demo CT's lesion SEG (one frame per lesion and slice, each referencing its slice): on a slice
/// through the left lower lobe nodule, S colours the nodule's centre and leaves the far lung alone;
/// on a slice no lesion crosses, S changes nothing.
#[test]
fn ct_lesion_masks_are_drawn_on_their_slices() {
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("truth.json")).unwrap()).unwrap();
    let lesion = truth["lesions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "left lower lobe")
        .unwrap();
    let slices: Vec<u64> = lesion["slices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let middle = format!("CT{:04}.dcm", slices[slices.len() / 2]);
    let c: Vec<f64> = lesion["center_mm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mm = truth["pixel_spacing_mm"].as_f64().unwrap();
    let half = truth["columns"].as_f64().unwrap() / 2.0;
    // Image pixel (column, row) of the nodule's centre: columns run to the patient's left, rows posterior.
    let centre = (c[0] / mm + half, c[1] / mm + half);

    let mut h = harness(demo());
    settle(&mut h);
    assert_eq!(h.state().segmentations.len(), 1, "{}", h.state().status);
    let series = h.state().viewports[0].series.unwrap();
    let index_of = |h: &Harness<'_, ViewerApp>, name: &str| {
        let s = &h.state().series[series].series;
        (0..s.frames.len())
            .find(|&j| {
                s.instance_of(j)
                    .is_some_and(|(i, _)| i.path.ends_with(name))
            })
            .unwrap()
    };
    let go_to = |h: &mut Harness<'_, ViewerApp>, target: usize| {
        while h.state().viewports[0].slice != target {
            let key = if h.state().viewports[0].slice < target {
                Key::ArrowDown
            } else {
                Key::ArrowUp
            };
            h.key_press(key);
            h.step();
        }
        settle(h);
    };
    let target = index_of(&h, &middle);
    go_to(&mut h, target);
    let off = h.render().unwrap();
    toggle_segmentations(&mut h);
    assert!(h.state().show_segmentations);
    let on = h.render().unwrap();
    let t = h.state().transforms[&0];
    let screen = |x: f64, y: f64| {
        let p = t.screen_from_image(egui::pos2(x as f32, y as f32));
        (p.x as u32, p.y as u32)
    };
    let px = |img: &image::RgbaImage, (x, y): (u32, u32)| img.get_pixel(x, y).0;
    let diff = |a: [u8; 4], b: [u8; 4]| (0..3).map(|i| a[i].abs_diff(b[i]) as u32).sum::<u32>();
    let (a, b) = (
        px(&off, screen(centre.0, centre.1)),
        px(&on, screen(centre.0, centre.1)),
    );
    assert!(diff(a, b) > 40, "the nodule's centre: {a:?} → {b:?}");
    // The right lung, mirrored across the midline: no lesion there on this slice.
    let far = screen(2.0 * half - centre.0, centre.1);
    assert_eq!(
        px(&off, far),
        px(&on, far),
        "outside the masks nothing changes"
    );
    h.snapshot("ct_lesion_overlay");

    // A slice no lesion crosses.
    let clear = (1..=64)
        .find(|s| {
            truth["lesions"].as_array().unwrap().iter().all(|l| {
                l["slices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x.as_u64() != Some(*s))
            })
        })
        .unwrap();
    let target = index_of(&h, &format!("CT{clear:04}.dcm"));
    go_to(&mut h, target);
    let shown = h.render().unwrap();
    toggle_segmentations(&mut h);
    assert!(!h.state().show_segmentations);
    assert_eq!(shown.as_raw(), h.render().unwrap().as_raw());
}
