//! The MPR layout in the real GUI (egui_kittest, wgpu on lavapipe) on the bundled demo CT: it opens with
//! M, clicks move the crosshair to a lesion of the phantom's truth, the wheel moves a plane by one
//! slice, Shift+drag turns the other planes (oblique), a slab shows as MIP; snapshots of each; and the
//! GPU reslicer draws what the CPU path draws. Regenerate snapshots with UPDATE_SNAPSHOTS=1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{Event, Key, Modifiers, MouseWheelUnit, PointerButton, Pos2, pos2, vec2};
use egui_kittest::Harness;
use radclip_dicom::volume::{Slab, SlabMode};
use radclip_viewer::ViewerApp;
use radclip_viewer::mpr::MprCommand;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

fn harness(gpu: bool) -> Harness<'static, ViewerApp> {
    let ctx = egui::Context::default();
    let mut app = ViewerApp::new(&ctx, Some(demo())).unwrap();
    let b = Harness::builder().with_size(vec2(1100.0, 720.0));
    if gpu {
        let rs = egui_kittest::wgpu::create_render_state(
            egui_kittest::wgpu::default_wgpu_setup(),
            eframe::egui_wgpu::RendererOptions::PREDICTABLE,
        );
        app.enable_gpu_voi(&rs);
        b.renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(rs))
            .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
    } else {
        b.wgpu()
            .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
    }
}

fn settle(h: &mut Harness<'_, ViewerApp>) {
    let start = Instant::now();
    loop {
        h.step();
        if h.state().is_idle() && !h.state().series.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the viewer did not settle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
    h.step();
}

fn open_mpr(gpu: bool) -> Harness<'static, ViewerApp> {
    let mut h = harness(gpu);
    settle(&mut h);
    h.key_press(Key::M);
    h.step();
    settle(&mut h);
    h
}

/// Where patient point `p` is on screen in MPR view `view`.
fn on_screen(h: &Harness<'_, ViewerApp>, view: usize, p: [f64; 3]) -> Pos2 {
    let m = &h.state().mpr.as_ref().unwrap().state;
    let plane = m.plane(view).unwrap();
    let [r, c] = plane.pixel_of(p);
    let t = h.state().transforms[&(100 + view)];
    t.screen_from_image(pos2(c as f32 + 0.5, r as f32 + 0.5))
}

fn click(h: &mut Harness<'_, ViewerApp>, at: Pos2) {
    h.event(Event::PointerMoved(at));
    h.step();
    for pressed in [true, false] {
        h.event(Event::PointerButton {
            pos: at,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        });
        h.step();
    }
    h.remove_cursor();
    settle(h);
}

fn drag(h: &mut Harness<'_, ViewerApp>, from: Pos2, to: Pos2) {
    h.event(Event::PointerMoved(from));
    h.step();
    h.event(Event::PointerButton {
        pos: from,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.step();
    for k in 1..=10 {
        h.event(Event::PointerMoved(from + (to - from) * (k as f32 / 10.0)));
        h.step();
    }
    h.event(Event::PointerButton {
        pos: to,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.step();
    h.remove_cursor();
    settle(h);
}

/// A command to the MPR state, as the GUI's widgets give it.
fn mpr_do(h: &mut Harness<'_, ViewerApp>, cmd: MprCommand) {
    h.state_mut().mpr.as_mut().unwrap().state.apply(cmd);
}

fn point(h: &Harness<'_, ViewerApp>) -> [f64; 3] {
    h.state().mpr.as_ref().unwrap().state.point
}

/// The phantom's left-lower-lobe nodule (truth.json: 20 mm, 40 HU).
const LESION: [f64; 3] = [78.0, 25.0, -22.0];

#[test]
fn mpr_follows_clicks_wheel_rotation_and_slabs_on_the_demo_ct() {
    let mut h = open_mpr(false);
    {
        let s = h.state().mpr.as_ref().expect("M opens the MPR layout");
        assert_eq!(s.progress(), (64, 64), "every slice decoded");
        assert_eq!(
            s.state.views.iter().map(|v| v.name).collect::<Vec<_>>(),
            ["Axial", "Coronal", "Sagittal"]
        );
    }
    h.snapshot("mpr_open");

    // A click in the coronal view puts the crosshair at the nodule's x and z; one in the axial view
    // then at its y.
    let at = on_screen(&h, 1, [LESION[0], point(&h)[1], LESION[2]]);
    click(&mut h, at);
    let p = point(&h);
    assert!(
        (p[0] - LESION[0]).abs() < 0.5 && (p[2] - LESION[2]).abs() < 0.5,
        "{p:?}"
    );
    let at = on_screen(&h, 0, LESION);
    click(&mut h, at);
    let p = point(&h);
    assert!(
        (0..3).all(|k| (p[k] - LESION[k]).abs() < 0.5),
        "crosshair {p:?} vs nodule {LESION:?}"
    );
    let hu = h
        .state()
        .mpr
        .as_ref()
        .unwrap()
        .value_at_crosshair()
        .unwrap();
    assert!((hu - 40.0).abs() < 40.0, "{hu} HU at the nodule's centre");

    // Measured on the reformatted planes: a 30-mm line across the nodule on the coronal view (patient
    // x), and an ellipse inside it on the sagittal view, whose mean is the nodule's 40 HU.
    h.key_press(Key::L);
    h.step();
    let from = on_screen(&h, 1, [LESION[0] - 15.0, LESION[1], LESION[2]]);
    let to = on_screen(&h, 1, [LESION[0] + 15.0, LESION[1], LESION[2]]);
    drag(&mut h, from, to);
    h.key_press(Key::E);
    h.step();
    let from = on_screen(&h, 2, [LESION[0], LESION[1] - 6.0, LESION[2] + 6.0]);
    let to = on_screen(&h, 2, [LESION[0], LESION[1] + 6.0, LESION[2] - 6.0]);
    drag(&mut h, from, to);
    h.key_press(Key::W);
    h.step();
    settle(&mut h);
    {
        let ms = &h.state().mpr.as_ref().unwrap().measurements;
        assert_eq!(ms.len(), 2);
        let line = ms[0].label.clone().unwrap();
        let mm: f64 = line.trim_end_matches(" mm").parse().unwrap();
        assert!((mm - 30.0).abs() < 0.2, "{line}");
        let roi = ms[1].label.clone().expect("ROI statistics computed");
        let mean: f64 = roi
            .split_whitespace()
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap();
        assert!((mean - 40.0).abs() < 15.0, "{roi}");
        assert_eq!(point(&h), p, "measuring does not move the crosshair");
    }
    h.snapshot("mpr_on_nodule");

    // One wheel notch over the axial view: one 4-mm slice toward the feet.
    let over = on_screen(&h, 0, LESION) + vec2(30.0, 30.0);
    h.event(Event::PointerMoved(over));
    h.step();
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: vec2(0.0, -1.0),
        modifiers: Modifiers::NONE,
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
    });
    h.step();
    settle(&mut h);
    assert!(
        (point(&h)[2] - (LESION[2] + 4.0)).abs() < 1e-3,
        "{:?}",
        point(&h)
    );

    // Shift+drag in the axial view a quarter of the way round: the coronal and sagittal planes turn
    // with the pointer about the axial normal.
    let c = on_screen(&h, 0, point(&h));
    let radius = 60.0;
    let at_angle = |deg: f32| {
        let a = deg.to_radians();
        c + vec2(radius * a.cos(), radius * a.sin())
    };
    h.event(Event::ModifiersChanged(Modifiers::SHIFT));
    h.event(Event::PointerMoved(at_angle(0.0)));
    h.step();
    h.event(Event::PointerButton {
        pos: at_angle(0.0),
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::SHIFT,
    });
    h.step();
    for k in 1..=10 {
        h.event(Event::PointerMoved(at_angle(3.0 * k as f32)));
        h.step();
    }
    h.event(Event::PointerButton {
        pos: at_angle(30.0),
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::SHIFT,
    });
    h.event(Event::ModifiersChanged(Modifiers::NONE));
    h.step();
    h.remove_cursor();
    settle(&mut h);
    let n = h.state().mpr.as_ref().unwrap().state.views[1].normal();
    let turned = n[1].abs().acos().to_degrees();
    // Egui starts a drag only after a few points of movement, so a little of the turn is lost.
    assert!(
        (turned - 30.0).abs() < 4.0,
        "the coronal plane turned {turned}° for a 30° drag"
    );
    assert!(n[2].abs() < 1e-9, "still perpendicular to the axial plane");
    h.snapshot("mpr_oblique");

    // R: back to the standard planes; a 20-mm MIP slab on the coronal view.
    h.key_press(Key::R);
    h.step();
    mpr_do(
        &mut h,
        MprCommand::SetSlab {
            view: 1,
            slab: Slab {
                thickness_mm: 20.0,
                mode: SlabMode::Mip,
            },
        },
    );
    h.step();
    settle(&mut h);
    assert_eq!(
        h.state().mpr.as_ref().unwrap().state.views[1].normal(),
        [0.0, 1.0, 0.0]
    );
    h.snapshot("mpr_coronal_mip");

    // S: the demo's segmentation (its lesions), resliced with every view, and its legend.
    mpr_do(&mut h, MprCommand::SetPoint(LESION));
    h.key_press(Key::S);
    h.step();
    settle(&mut h);
    {
        let s = h.state().mpr.as_ref().unwrap();
        let labels = s.labels.as_ref().expect("the SEG laid on the volume");
        assert_eq!(labels.names.len(), 4);
    }
    h.snapshot("mpr_segmentations");

    // M again: back to the 2D viewport.
    h.key_press(Key::M);
    h.step();
    settle(&mut h);
    assert!(h.state().mpr.is_none());
    // The 2D view shows the acquired slice through the crosshair (the nodule's centre).
    let v = &h.state().viewports[0];
    let g = h.state().series[0].series.geometry_of(v.slice).unwrap();
    assert!((g.position[2] - LESION[2]).abs() < 1e-6, "{:?}", g.position);
}

/// The GPU reslicer draws the MPR views as the CPU path does: the same study, crosshair and window,
/// compared on screen. The CPU path's picture is one texel per plane pixel, magnified bilinearly; the
/// GPU samples the volume at every screen pixel, so the two differ along edges by a few levels only.
#[test]
fn mpr_gpu_views_match_the_cpu_views() {
    let mut cpu = open_mpr(false);
    let mut gpu = open_mpr(true);
    for h in [&mut cpu, &mut gpu] {
        mpr_do(h, MprCommand::SetPoint(LESION));
        h.step();
        settle(h);
    }
    let (a, b) = (cpu.render().unwrap(), gpu.render().unwrap());
    assert_eq!(a.dimensions(), b.dimensions());
    let mut far = 0usize;
    let mut lit = 0usize;
    for (p, q) in a.pixels().zip(b.pixels()) {
        let d =
            p.0.iter()
                .zip(q.0)
                .map(|(x, y)| x.abs_diff(y))
                .max()
                .unwrap_or(0);
        far += usize::from(d > 24);
        lit += usize::from(q.0[0] > 40);
    }
    let n = (a.width() * a.height()) as usize;
    assert!(
        lit > n / 10,
        "the GPU views show the body ({lit} bright pixels)"
    );
    assert!(
        far < n / 100,
        "{far} of {n} pixels differ by more than 24 levels"
    );
}
