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

/// Steps until the background scan and all decoding are done (workers run on other threads), so the
/// status bar (cache size) is the same on every run.
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
