//! The AI panel in the real GUI (egui_kittest, wgpu on lavapipe) with the bundled demo model: the demo
//! radiographs' findings against their ground truth (`truth.json` next to each study), the heatmap drawn
//! over the image, similar reports from a phantom report library, a click on a finding, and a series the
//! model does not read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::vec2;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use radclip_viewer::ViewerApp;
use radclip_viewer::ai::{AiSetup, LibraryReport};
use radclip_viewer::ai_panel::ModelStatus;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The findings written in a demo study's ground truth.
fn truth(study: &str) -> Vec<String> {
    let text = std::fs::read_to_string(
        root()
            .join("assets/demo-cxr")
            .join(study)
            .join("truth.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The demo model with an archive of `reports` phantom reports (seed 1, past the model's training
/// indices) as its library.
fn demo_setup(reports: u64) -> AiSetup {
    let library = Box::new(move || {
        (20_000..20_000 + reports)
            .map(|i| {
                let r = radclip_phantom::cxr_sample(1, i).report;
                LibraryReport {
                    title: format!("Archive study {i}"),
                    summary: r.impression.clone(),
                    text: r.text(),
                    embedded: r.findings.clone(),
                }
            })
            .collect()
    });
    AiSetup {
        model: root().join("models/radclip-demo").display().to_string(),
        device: "cpu".into(),
        library: Some(radclip_viewer::ai::LibrarySource::Reports(library)),
    }
}

fn harness() -> Harness<'static, ViewerApp> {
    // A small archive of phantom reports.
    harness_with(demo_setup(300))
}

fn harness_with(setup: AiSetup) -> Harness<'static, ViewerApp> {
    let ctx = egui::Context::default();
    let mut app = ViewerApp::new(&ctx, None).unwrap();
    app.open_all(
        &ctx,
        vec![root().join("assets/demo-cxr"), root().join("assets/demo")],
    );
    app.enable_ai(&ctx, setup);
    Harness::builder()
        .with_size(vec2(1280.0, 800.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
}

/// Steps until `done` holds (workers run on other threads).
fn step_until(h: &mut Harness<'_, ViewerApp>, what: &str, done: impl Fn(&ViewerApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        h.step();
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

fn current_key(app: &ViewerApp) -> Option<radclip_dicom::FrameKey> {
    let v = app.viewports.get(app.active)?;
    let s = &app.series.get(v.series?)?.series;
    let (inst, frame) = s.instance_of(v.slice)?;
    Some(radclip_dicom::FrameKey {
        path: inst.path.clone(),
        frame,
    })
}

fn top_finding(app: &ViewerApp) -> Option<(String, f64)> {
    let key = current_key(app)?;
    let f = app.ai.as_ref()?.findings_for(&key)?;
    f.first().map(|s| (s.name.clone(), s.probability))
}

#[test]
fn ai_panel_reads_the_demo_radiographs() {
    let mut h = harness();
    step_until(&mut h, "the model and the first findings", |a| {
        top_finding(a).is_some()
    });
    let ai = h.state().ai.as_ref().unwrap();
    assert!(matches!(ai.status, ModelStatus::Ready { .. }));
    h.get_by_label_contains("not for clinical use");
    h.get_by_label("Runs on the CPU.");

    // The four demo studies: each positive study's top finding is its true finding, called present;
    // the normal study has no finding called present.
    let studies = [
        "PHANTOM-CXR-2026-0000",
        "PHANTOM-CXR-2026-0001",
        "PHANTOM-CXR-2026-0002",
        "PHANTOM-CXR-2026-0003",
    ];
    for (i, study) in studies.iter().enumerate() {
        h.state_mut().show_series_in(0, i);
        step_until(&mut h, "findings of the next study", |a| {
            top_finding(a).is_some()
        });
        let key = current_key(h.state()).unwrap();
        assert!(key.path.to_string_lossy().contains(study), "{key:?}");
        let (name, p) = top_finding(h.state()).unwrap();
        match truth(study).as_slice() {
            [kind] => {
                assert_eq!(name.to_lowercase(), kind.replace('_', " "), "{study}");
                assert!(p > 0.5, "{study}: {name} at {p}");
            }
            [] => assert!(p < 0.5, "{study} is normal but {name} is at {p}"),
            more => panic!("{study}: expected one finding, truth has {more:?}"),
        }
    }

    // Back on the pneumothorax study: the top finding is mapped at once, and the most similar reports
    // of the library state a pneumothorax.
    h.state_mut().show_series_in(0, 0);
    step_until(&mut h, "the automatic heatmap and similar reports", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        let similar = ai
            .analysis
            .as_ref()
            .is_some_and(|(k, an)| *k == key && an.similar.is_some() && an.draft.is_some());
        ai.overlay_for(&key).is_some() && similar
    });
    let ai = h.state().ai.as_ref().unwrap();
    let similar = ai.analysis.as_ref().unwrap().1.similar.clone().unwrap();
    assert_eq!(similar.len(), 5);
    let ptx = similar
        .iter()
        .filter(|r| r.report.text.to_lowercase().contains("pneumothorax"))
        .filter(|r| !r.report.text.to_lowercase().contains("no pneumothorax"))
        .count();
    assert!(
        ptx >= 3,
        "only {ptx} of 5 similar reports state a pneumothorax"
    );
    // The study's pneumothorax is on the patient's right: the first report listed says so (the
    // nearest report by similarity alone is a left one).
    let truth_side = {
        let text = std::fs::read_to_string(
            root().join("assets/demo-cxr/PHANTOM-CXR-2026-0000/truth.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["findings"][0]["side"].as_str().unwrap().to_string()
    };
    let first = &similar[0];
    let at = first
        .stated
        .as_ref()
        .unwrap()
        .iter()
        .position(|n| n == "Pneumothorax")
        .unwrap();
    assert_eq!(first.stated_sides.as_ref().unwrap()[at].name(), truth_side);
    // The drafted report, editable in the panel, states the pneumothorax on its side.
    let (draft_key, draft) = h.state().ai.as_ref().unwrap().draft_text.clone().unwrap();
    assert_eq!(Some(draft_key), current_key(h.state()));
    assert!(
        draft.contains(&format!("{truth_side} pleural space"))
            || draft.contains(&format!("{truth_side} pneumothorax")),
        "{draft}"
    );
    h.snapshot("ai_panel_pneumothorax");

    // "Copy provenance": what is shown for this image, with the weights' SHA-256 as sha256sum reads it.
    let ai = h.state().ai.as_ref().unwrap();
    let text = ai.provenance_text(current_key(h.state()).as_ref()).unwrap();
    let mapped = ai.overlay.as_ref().unwrap().prompt.clone();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let weights = root().join("models/radclip-demo/model.safetensors");
    let out = std::process::Command::new("sha256sum")
        .arg(&weights)
        .output()
        .unwrap();
    let digest = String::from_utf8(out.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap();
    for part in ["findings", "heatmap", "similar_reports"] {
        assert_eq!(
            v[part]["model"]["weights"][0]["sha256"], digest,
            "{part} in {text}"
        );
    }
    assert_eq!(v["findings"]["method"], "zero-shot");
    assert_eq!(v["heatmap"]["prompts"][0], mapped);
    assert_eq!(v["similar_reports"]["listed"][0], similar[0].report.title);
    h.get_by_label("Copy provenance").click();

    // A click on a finding maps its prompt instead.
    h.get_by_label("Nodule").click();
    step_until(&mut h, "the nodule map", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        ai.overlay.as_ref().is_some_and(|o| {
            o.key == key && o.prompt.contains("nodule") && ai.overlay_for(&key).is_some()
        })
    });

    // The demo CT: the model says why it does not read it.
    h.state_mut().show_series_in(0, 4);
    step_until(&mut h, "the CT verdict", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        ai.analysis
            .as_ref()
            .is_some_and(|(k, an)| *k == key && an.not_applicable.is_some())
    });
    h.get_by_label_contains("this series is CT");
}

/// The demo pneumothorax radiograph's frame, decoded, with its key.
fn demo_pneumothorax_frame() -> (radclip_dicom::FrameKey, radclip_dicom::Frame) {
    let path = root().join("assets/demo-cxr/PHANTOM-CXR-2026-0000/image.dcm");
    let frame = radclip_dicom::pixel::decode_file(&path)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let key = radclip_dicom::FrameKey {
        path: path.as_path().into(),
        frame: 0,
    };
    (key, frame)
}

/// A worker for `setup`, asked at once to read the demo pneumothorax radiograph (the request waits in
/// the queue while the model loads), and the frame's key.
fn read_demo_frame(setup: AiSetup) -> (radclip_viewer::ai::AiWorker, radclip_dicom::FrameKey) {
    let (key, frame) = demo_pneumothorax_frame();
    let worker = radclip_viewer::ai::AiWorker::start(setup, || {}).unwrap();
    worker.analyze(radclip_viewer::ai::AiFrame {
        key: key.clone(),
        frame: std::sync::Arc::new(frame),
        window: None,
        modality: "DX".into(),
    });
    (worker, key)
}

/// The worker reads a frame asked for while the report library is still being embedded before it
/// finishes the library, then sends that frame its similar reports once the library is complete.
#[test]
fn findings_do_not_wait_for_the_report_library() {
    use radclip_viewer::ai::AiEvent;
    // Enough reports that embedding them takes many batches.
    let (worker, key) = read_demo_frame(demo_setup(2_000));
    let start = Instant::now();
    let mut order = Vec::new();
    while !order.contains(&"similar") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "events so far: {order:?}"
        );
        for e in worker.poll() {
            match e {
                AiEvent::Findings { key: k, .. } if k == key => order.push("findings"),
                AiEvent::LibraryReady {
                    reports,
                    by_findings,
                } => {
                    assert_eq!(reports, 2_000);
                    assert!(by_findings, "the demo list has words to read reports with");
                    order.push("library");
                }
                AiEvent::Similar { key: k, reports } if k == key => {
                    assert_eq!(reports.len(), radclip_viewer::ai::SIMILAR);
                    // One per set of stated findings, each set what the archive study was written from.
                    let mut sets = Vec::new();
                    for r in &reports {
                        let stated = r.stated.clone().unwrap();
                        let i: u64 = r
                            .report
                            .title
                            .trim_start_matches("Archive study ")
                            .parse()
                            .unwrap();
                        let case = radclip_phantom::cxr_sample(1, i).case;
                        let mut truth: Vec<String> = radclip_phantom::Kind::ALL
                            .iter()
                            .filter(|k| case.has(**k))
                            .map(|k| k.name().to_lowercase())
                            .collect();
                        let mut got: Vec<String> =
                            stated.iter().map(|s| s.to_lowercase()).collect();
                        truth.sort();
                        got.sort();
                        assert_eq!(got, truth, "{}", r.report.text);
                        assert!(!sets.contains(&got), "{got:?} listed twice");
                        sets.push(got);
                    }
                    order.push("similar");
                }
                AiEvent::LoadFailed(m) | AiEvent::LibraryFailed(m) => panic!("{m}"),
                AiEvent::Failed { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(order, ["findings", "library", "similar"]);
}

/// A device the user asked for and cannot have is said in the panel, in a sentence, and the model
/// runs on the CPU instead.
#[test]
fn a_device_that_cannot_be_had_is_said_in_the_panel() {
    let mut setup = demo_setup(0);
    setup.device = "tpu".into();
    setup.library = None;
    let mut h = harness_with(setup);
    step_until(&mut h, "the model", |a| {
        a.ai.as_ref()
            .is_some_and(|ai| matches!(ai.status, ModelStatus::Ready { .. }))
    });
    h.get_by_label("Runs on the CPU.");
    h.get_by_label_contains("Unknown device \"tpu\" (cpu, cuda, auto); running on the CPU.");
}

/// Runs a worker with `setup` on the demo pneumothorax radiograph until it lists similar reports (or the
/// library fails: `Err` with the sentence shown).
fn similar_from(setup: AiSetup) -> Result<Vec<radclip_viewer::ai::SimilarReport>, String> {
    use radclip_viewer::ai::AiEvent;
    let (worker, key) = read_demo_frame(setup);
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120));
        for e in worker.poll() {
            match e {
                AiEvent::Similar { key: k, reports } if k == key => return Ok(reports),
                AiEvent::LibraryFailed(m) => return Err(m),
                AiEvent::LoadFailed(m) => panic!("{m}"),
                AiEvent::Failed { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A user's own archive is the library, for any model: here plain-text reports in a folder, each
/// listed by its file name, the pneumothorax reports ahead of the others.
#[test]
fn a_users_report_archive_is_the_library() {
    use radclip_viewer::ai::LibrarySource;
    let archive = tempfile::tempdir().unwrap();
    let reports = [
        (
            "ptx-right.txt",
            "FINDINGS: Small right pneumothorax. No pleural effusion.",
        ),
        ("ptx-left.txt", "FINDINGS: Large left pneumothorax."),
        ("effusion.txt", "FINDINGS: Moderate left pleural effusion."),
        (
            "heart.txt",
            "FINDINGS: The heart is enlarged. Cardiomegaly.",
        ),
        (
            "nodule.txt",
            "FINDINGS: 12 mm right upper zone pulmonary nodule.",
        ),
        (
            "normal.txt",
            "FINDINGS: The lungs are clear. No pneumothorax.",
        ),
    ];
    for (name, text) in reports {
        std::fs::write(archive.path().join(name), text).unwrap();
    }
    let mut setup = demo_setup(0);
    setup.library = Some(LibrarySource::Path(archive.path().to_path_buf()));
    let similar = similar_from(setup).unwrap();
    assert_eq!(similar.len(), radclip_viewer::ai::SIMILAR);
    // The study is a right pneumothorax: the right one first.
    assert_eq!(similar[0].report.title, "ptx-right.txt", "{similar:#?}");
    // Nothing was written into the archive.
    assert_eq!(
        std::fs::read_dir(archive.path()).unwrap().count(),
        reports.len()
    );

    // The same archive as an index made with this model's weights (as `radclip index` writes one):
    // loaded whole, nothing embedded again, the same first report.
    {
        use radclip_assist::store::{Entry, Store, sha256};
        let engine = radclip_clip::engine::Engine::load(
            &root().join("models/radclip-demo").display().to_string(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let words = radclip_assist::library::labeler(
            &radclip_clip::zeroshot::FindingList::for_engine(&engine).unwrap(),
        )
        .unwrap()
        .unwrap();
        let mut read: Vec<_> = radclip_assist::archive::read_reports(archive.path())
            .unwrap()
            .into_iter()
            .map(|mut r| {
                radclip_assist::archive::assert_only(&mut r.report, &words);
                r
            })
            .collect();
        read.sort_by(|a, b| a.source.cmp(&b.source));
        let reports: Vec<_> = read.iter().map(|r| r.report.clone()).collect();
        let feats = radclip_assist::library::embed_reports(&engine, &reports).unwrap();
        let mut store = Store::new(feats[0].len());
        for (r, f) in read.into_iter().zip(feats) {
            let entry = Entry {
                source: r.source,
                sha256: sha256(r.report.embedded.as_bytes()),
                report: Some(r.report),
            };
            store.add(&f, entry).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let idx = out.path().join("archive.idx");
        store.save(&idx).unwrap();
        let p = radclip_assist::Provenance::new(
            &radclip_assist::provenance::model_provenance(&engine).unwrap(),
            "index",
            Vec::new(),
            0.0,
        );
        std::fs::write(radclip_assist::provenance::sidecar(&idx), p.text()).unwrap();
        let mut setup = demo_setup(0);
        setup.library = Some(LibrarySource::Path(idx));
        let from_index = similar_from(setup).unwrap();
        assert_eq!(from_index[0].report.title, "ptx-right.txt");
        assert_eq!(from_index.len(), similar.len());
    }

    // An index made with other weights is refused in a sentence, not used.
    let idx = archive.path().join("other.idx");
    std::fs::write(&idx, b"not an index").unwrap();
    let mut setup = demo_setup(0);
    setup.library = Some(LibrarySource::Path(idx));
    let e = similar_from(setup).unwrap_err();
    assert!(e.contains("not indexed with this model's weights"), "{e}");
}

/// N opens the attention inspector: every layer's and head's map of the image on screen as a
/// thumbnail; a click lays one over the image, with the patch grid on demand.
#[test]
fn the_attention_inspector_lays_a_map_over_the_image() {
    use radclip_assist::attention::Query;
    use radclip_viewer::attention_panel::Column;
    let mut h = harness();
    step_until(&mut h, "the first findings", |a| top_finding(a).is_some());
    h.key_press(egui::Key::N);
    step_until(&mut h, "the attention maps", |a| {
        a.ai.as_ref()
            .and_then(|ai| ai.attention.view.as_ref())
            .is_some_and(|v| Some(&v.key) == current_key(a).as_ref())
    });
    let v = h
        .state()
        .ai
        .as_ref()
        .unwrap()
        .attention
        .view
        .as_ref()
        .unwrap();
    // The demo model: 4 layers of 4 heads on a 12×12 patch grid; class-token rows of softmax
    // probabilities.
    assert_eq!((v.maps.layers, v.maps.heads, v.maps.grid), (4, 4, (12, 12)));
    assert!(v.maps.values.iter().all(|x| (0.0..=1.0).contains(x)));
    let key = current_key(h.state()).unwrap();
    assert!(
        h.state()
            .ai
            .as_ref()
            .unwrap()
            .attention
            .overlay_for(&key)
            .is_none()
    );
    h.get_by_label("layer 3 mean").click();
    h.get_by_label("Patch grid").click();
    h.step();
    h.step();
    // A still panel for the snapshot: the library embedded, the image's similar reports and draft in.
    step_until(&mut h, "the similar reports and the draft", |a| {
        a.ai.as_ref().is_some_and(|ai| {
            ai.analysis
                .as_ref()
                .is_some_and(|(_, an)| an.similar.is_some() && an.draft.is_some())
        })
    });
    h.step();
    let ai = h.state().ai.as_ref().unwrap();
    assert_eq!(ai.attention.selected, Some((3, Column::Mean)));
    assert!(ai.attention.show_grid);
    assert!(ai.attention.overlay_for(&key).is_some());
    h.snapshot("attention_inspector");

    // Rollout through each layer is a column too; "Pick a patch" then a click on the image shows
    // that patch's attention: the patch under the click, on the grid the model saw.
    h.get_by_label("layer 3 rollout").click();
    h.step();
    let sel = h.state().ai.as_ref().unwrap().attention.selected;
    assert_eq!(sel, Some((3, Column::Rollout)));
    h.get_by_label("Pick a patch").click();
    h.step();
    let (rect, (x0, y0, x1, y1)) = {
        let app = h.state();
        let t = app.transforms[&app.active];
        (
            t,
            app.ai
                .as_ref()
                .unwrap()
                .attention
                .view
                .as_ref()
                .unwrap()
                .source_rect,
        )
    };
    // The centre of the patch at row 2, column 9 of the 12×12 grid, in screen coordinates.
    let (px, py) = (x0 + (x1 - x0) * 9.5 / 12.0, y0 + (y1 - y0) * 2.5 / 12.0);
    let at = rect.screen_from_image(egui::pos2(px as f32, py as f32));
    h.event(egui::Event::PointerMoved(at));
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    step_until(&mut h, "the picked patch's maps", |a| {
        a.ai.as_ref()
            .and_then(|ai| ai.attention.view.as_ref())
            .is_some_and(|v| v.maps.query == Query::Patch { row: 2, col: 9 })
    });
    let v = h
        .state()
        .ai
        .as_ref()
        .unwrap()
        .attention
        .view
        .as_ref()
        .unwrap();
    assert_eq!(v.maps.rollout.len(), 4 * 12 * 12);
    assert!(!h.state().ai.as_ref().unwrap().attention.picking);
}

/// "Side by side with" lays two maps of the same prompt in a 1 × 2 layout, each labelled with its
/// method and model, the two viewports' zoom and slice linked.
#[test]
fn two_maps_side_by_side_follow_one_view() {
    let mut h = harness();
    step_until(&mut h, "the automatic map", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        ai.overlay_for(&key).is_some()
    });
    h.get_by_label("Side by side with").click();
    step_until(
        &mut h,
        "the second map, the similar reports and the draft",
        |a| {
            let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
                return false;
            };
            ai.overlay_b_for(&key).is_some()
                && ai
                    .analysis
                    .as_ref()
                    .is_some_and(|(_, an)| an.similar.is_some() && an.draft.is_some())
        },
    );
    let app = h.state();
    assert_eq!(app.layout, radclip_viewer::state::Layout::OneByTwo);
    let ai = app.ai.as_ref().unwrap();
    let b = ai.compare.unwrap();
    assert_ne!(b.method, ai.method, "the second map is another method");
    let labels = ai.compare_labels().unwrap();
    assert!(labels[0].starts_with("maskclip") && labels[1].starts_with(b.method.name()));
    assert!(labels.iter().all(|l| l.ends_with("radclip-demo")));
    // One view: a zoom of the first viewport is the second's too.
    h.state_mut()
        .command(0, radclip_viewer::state::Command::ZoomBy(1.5));
    h.step();
    h.step();
    let (v0, v1) = (&h.state().viewports[0], &h.state().viewports[1]);
    assert_eq!(
        (v0.zoom, v0.slice, v0.series),
        (v1.zoom, v1.slice, v1.series)
    );
    assert!((v0.zoom - 1.5).abs() < 1e-6 || v0.zoom > 1.0);
    h.snapshot("maps_side_by_side");
}

/// An archive chosen while the viewer runs replaces the library: the frame on screen gets its similar
/// reports from it.
#[test]
fn an_archive_chosen_later_replaces_the_library() {
    use radclip_viewer::ai::{AiEvent, LibrarySource};
    let archive = tempfile::tempdir().unwrap();
    std::fs::write(archive.path().join("mine.txt"), "Small right pneumothorax.").unwrap();
    std::fs::write(archive.path().join("other.txt"), "Moderate cardiomegaly.").unwrap();
    let (worker, key) = read_demo_frame(demo_setup(50));
    let start = Instant::now();
    let mut libraries = Vec::new();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120), "{libraries:?}");
        for e in worker.poll() {
            match e {
                AiEvent::LibraryReady { reports, .. } => {
                    libraries.push(reports);
                    if reports == 50 {
                        worker.library(LibrarySource::Path(archive.path().to_path_buf()));
                    }
                }
                AiEvent::Similar { key: k, reports } if k == key && libraries == [50, 2] => {
                    assert_eq!(reports[0].report.title, "mine.txt");
                    return;
                }
                AiEvent::LoadFailed(m) | AiEvent::LibraryFailed(m) => panic!("{m}"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn similar_cases_from_an_indexed_folder_open_beside_the_image() {
    use radclip_viewer::cases_panel::CasesStatus;
    let tmp = tempfile::tempdir().unwrap();
    // A fixed folder name: the panel names it, and the snapshot shows the panel.
    let cases = tmp.path().join("cases");
    for i in 0..10 {
        radclip_phantom::write_cxr_study(&cases, 1000, i, 256).unwrap();
    }
    let mut h = harness_with(demo_setup(50));
    step_until(&mut h, "the first findings", |app| {
        top_finding(app).is_some()
    });
    let ctx = h.ctx.clone();
    h.state_mut()
        .ai
        .as_mut()
        .unwrap()
        .index_cases(cases.clone(), &ctx);
    step_until(&mut h, "the cases of the image on screen", |app| {
        let ai = app.ai.as_ref().unwrap();
        matches!(ai.cases.status, CasesStatus::Ready { images: 10, .. })
            && ai
                .cases
                .shown
                .as_ref()
                .is_some_and(|(k, c)| Some(k) == current_key(app).as_ref() && !c.is_empty())
    });
    let (key, shown) = {
        let ai = h.state().ai.as_ref().unwrap();
        let (k, c) = ai.cases.shown.as_ref().unwrap();
        let list: Vec<(PathBuf, f32, bool)> = c
            .iter()
            .map(|c| (c.hit.source.clone(), c.hit.score, c.texture.is_some()))
            .collect();
        (k.clone(), list)
    };
    assert_eq!(shown.len(), radclip_viewer::ai::CASES);
    assert!(shown.windows(2).all(|w| w[0].1 >= w[1].1), "{shown:?}");
    assert!(
        shown.iter().all(|(p, _, pictured)| p.starts_with(&cases)
            && *pictured
            && p.as_path() != &*key.path)
    );
    // The index went to radclip's cache, nothing beside the cases.
    let beside: Vec<_> = walk_files(&cases)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| {
                e == "idx" || e == "json" && p.to_string_lossy().contains("provenance")
            })
        })
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    // The section is below the fold of the panel: scrolled to, then clicked.
    h.get_by_label("Similar case 1").scroll_to_me();
    h.run();
    h.get_by_label("Similar case 1").click();
    step_until(&mut h, "the case beside the image", |app| {
        app.layout == radclip_viewer::state::Layout::OneByTwo
            && app
                .viewports
                .get(1)
                .and_then(|v| v.series)
                .is_some_and(|s| {
                    app.series[s]
                        .series
                        .instances
                        .iter()
                        .any(|i| *i.path == *shown[0].0)
                })
    });
    assert_eq!(
        current_key(h.state()).unwrap(),
        key,
        "the image on screen stays on the left"
    );
    step_until(&mut h, "a still panel", |app| {
        let ai = app.ai.as_ref().unwrap();
        ai.analysis
            .as_ref()
            .is_some_and(|(k, a)| *k == key && a.similar.is_some() && a.draft.is_some())
            && app.is_idle()
    });
    h.get_by_label("Similar case 1").scroll_to_me();
    h.run();
    h.snapshot("similar_cases");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Maps side by side from two models: a second model folder (the tiny full-vocabulary CLIP of the CLI
/// fixtures) maps
/// the same prompt by the same method on its own worker, and its map goes beside the demo model's,
/// each labelled with its model.
#[test]
fn maps_of_two_models_side_by_side() {
    use radclip_viewer::ai_panel::ModelStatus;
    let mut h = harness_with(demo_setup(20));
    step_until(&mut h, "the automatic map", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        ai.overlay_for(&key).is_some()
    });
    let second = root().join("tests/fixtures/clip/tiny-fullvocab");
    let ctx = h.ctx.clone();
    h.state_mut()
        .ai
        .as_mut()
        .unwrap()
        .set_second_model(second.clone(), &ctx);
    step_until(&mut h, "the second model's map", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        if let Some(ModelStatus::Failed(m)) = ai.second.as_ref().map(|s| &s.status) {
            panic!("{m}");
        }
        ai.overlay_b_for(&key).is_some()
    });
    let app = h.state();
    assert_eq!(app.layout, radclip_viewer::state::Layout::OneByTwo);
    let ai = app.ai.as_ref().unwrap();
    // The same prompt and method from each model.
    assert_eq!(ai.compare, Some(ai.overlay.as_ref().unwrap().style));
    let key = current_key(app).unwrap();
    let a = ai.overlay_for(&key).unwrap().0.size();
    let b = ai.overlay_b_for(&key).unwrap().0.size();
    assert_eq!(a, b, "both maps cover the same frame");
    assert_ne!(
        ai.overlay_for(&key).unwrap().0.id(),
        ai.overlay_b_for(&key).unwrap().0.id()
    );
    let labels = ai.compare_labels().unwrap();
    assert!(labels[0].ends_with("radclip-demo"), "{labels:?}");
    assert!(!labels[1].ends_with("radclip-demo"), "{labels:?}");
    assert_eq!(ai.second.as_ref().unwrap().path, second);
    // "Copy provenance" names each map's weights: the second map's are the second model's.
    let p: serde_json::Value =
        serde_json::from_str(&ai.provenance_text(Some(&key)).unwrap()).unwrap();
    let (a, b) = (&p["heatmap"]["model"], &p["heatmap_beside"]["model"]);
    assert!(a["path"].as_str().unwrap().ends_with("radclip-demo"), "{p}");
    assert!(
        b["path"].as_str().unwrap().ends_with("tiny-fullvocab"),
        "{p}"
    );
    assert_ne!(a["weights"], b["weights"]);
}

/// The tiny full-vocabulary CLIP of the CLI fixtures: its card names no modality, so it reads CT.
fn tiny_model() -> PathBuf {
    root().join("tests/fixtures/clip/tiny-fullvocab")
}

/// The viewer on the demo CT with the tiny CLIP in the AI panel.
fn tiny_on_demo_ct() -> Harness<'static, ViewerApp> {
    let ctx = egui::Context::default();
    let mut app = ViewerApp::new(&ctx, Some(root().join("assets/demo"))).unwrap();
    app.enable_ai(
        &ctx,
        AiSetup {
            model: tiny_model().display().to_string(),
            device: "cpu".into(),
            library: None,
        },
    );
    Harness::builder()
        .with_size(vec2(1280.0, 800.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut ViewerApp| app.ui(ui), app)
}

/// In MPR an AI map stays on the image the model read: with a model that reads CT (the tiny
/// full-vocabulary CLIP of the CLI fixtures, which names no modality), the map of the acquired slice
/// under the crosshair is drawn on the axial view, which lies on that slice, and on no reformat; once
/// the axial plane is tilted, on no view at all.
#[test]
fn an_ai_map_stays_on_the_acquired_slice_in_mpr() {
    let mut h = tiny_on_demo_ct();
    step_until(&mut h, "the CT open", |a| current_key(a).is_some());
    h.key_press(egui::Key::M);
    h.step();
    step_until(&mut h, "the MPR volume", |a| {
        a.mpr.as_ref().is_some_and(|m| m.is_settled())
    });
    h.state_mut().ai.as_mut().unwrap().map_prompt("nodule");
    step_until(&mut h, "the map on the axial view", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        if let ModelStatus::Failed(m) = &ai.status {
            panic!("{m}");
        }
        ai.overlay_for(&key).is_some() && a.mpr_ai_views == [0]
    });
    // Tilt the axial plane (turn the crosshair in the coronal view): the map is on no view.
    h.state_mut()
        .mpr
        .as_mut()
        .unwrap()
        .state
        .apply(radclip_viewer::mpr::MprCommand::Rotate {
            view: 1,
            angle: 0.2,
        });
    h.step();
    h.step();
    assert!(h.state().mpr_ai_views.is_empty());
}

/// Clicks a widget of the AI panel, scrolled into view first (the panel scrolls, and a slice being read
/// keeps a spinner turning, so the harness steps rather than runs to a standstill).
fn click_label(h: &mut Harness<'_, ViewerApp>, label: &str) {
    h.get_by_label(label).click();
    h.step();
    h.step();
}

/// "Find in series" on the demo CT with a model that reads CT (the tiny CLIP fixture): every slice gets
/// its score, as `radclip find` computes it (`radclip_assist::find`), filling a heat track beside the
/// scrollbar; "Best match" and "Next match" go to the first and second slices of the ranking; the
/// phrase is mapped on the slice shown.
#[test]
fn find_in_series_scores_every_slice_and_jumps_to_the_best() {
    let mut h = tiny_on_demo_ct();
    let model = tiny_model();
    step_until(&mut h, "the CT open", |a| current_key(a).is_some());
    // The panel shows its sections once its own model is in.
    step_until(&mut h, "the panel's model", |a| {
        matches!(a.ai.as_ref().unwrap().status, ModelStatus::Ready { .. })
    });
    // A stack the model reads is read in the background as soon as it is on screen: its findings
    // come without asking.
    step_until(&mut h, "the series read by itself", |a| {
        let ai = a.ai.as_ref().unwrap();
        ai.find.findings.as_ref().map(|(uid, _)| uid) == Some(&a.series[0].series.uid)
    });
    let phrase = "solid nodule in the left lower lobe";
    {
        let ai = h.state_mut().ai.as_mut().unwrap();
        ai.find.phrase = phrase.into();
        ai.find.wants_search = true;
    }
    step_until(&mut h, "every slice scored", |a| {
        let ai = a.ai.as_ref().unwrap();
        if let Some(e) = &ai.find.error {
            panic!("{e}");
        }
        // Every score, and the series' findings (they arrive last: the panel's layout is then still).
        ai.find
            .result
            .as_ref()
            .is_some_and(|r| r.done == 64 && r.scores.iter().all(Option::is_some))
            && ai.find.findings.is_some()
    });
    // The same scores as the library computes them for `radclip find`.
    let series = h.state().series[0].series.clone();
    let engine =
        radclip_clip::engine::Engine::load(&model.display().to_string(), &candle_core::Device::Cpu)
            .unwrap();
    let cache = radclip_assist::find::SliceCache::in_dir(tempfile::tempdir().unwrap().keep());
    let slices = radclip_assist::find::embed_series(
        &engine,
        &series,
        &cache,
        0,
        8,
        &mut |_, _, _| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    let want = radclip_assist::find::scores(
        &series,
        &slices,
        &radclip_assist::find::phrase(&engine, phrase).unwrap(),
    );
    let r = h.state().ai.as_ref().unwrap().find.result.clone().unwrap();
    for w in &want {
        let got = r.scores[w.index].unwrap();
        assert!(
            (got - w.score).abs() < 1e-5,
            "slice {}: {got} vs {}",
            w.index,
            w.score
        );
    }
    let ranked = r.ranked();
    click_label(&mut h, "Best match");
    assert_eq!(h.state().viewports[0].slice, ranked[0]);
    click_label(&mut h, "Next match");
    assert_eq!(h.state().viewports[0].slice, ranked[1]);
    // The series' findings: each one's highest slice probability, as the library reads the slices; a
    // click on one goes to its slice.
    let (uid, findings) = h
        .state()
        .ai
        .as_ref()
        .unwrap()
        .find
        .findings
        .clone()
        .unwrap();
    assert_eq!(uid, series.uid);
    let list = radclip_clip::zeroshot::FindingList::for_engine(&engine).unwrap();
    let prompts = radclip_clip::zeroshot::PromptSet::new(&engine, &list).unwrap();
    // The same findings, each at the same slice; probabilities to float rounding (the panel embeds
    // in other batches).
    let want = radclip_assist::find::series_findings(&prompts, &slices);
    assert_eq!(findings.len(), want.len());
    for f in &findings {
        let w = want.iter().find(|w| w.name == f.name).unwrap();
        assert!(
            (f.probability - w.probability).abs() < 1e-4,
            "{f:?} vs {w:?}"
        );
        let at = prompts.score_row(slices[f.index].as_ref().unwrap());
        let p = at.iter().find(|s| s.name == f.name).unwrap().probability;
        assert!((p - f.probability).abs() < 1e-4, "{f:?}: {p} on its slice");
    }
    let f = &findings[0];
    let label = format!(
        "{:<22} {:>3.0} %  slice {}",
        f.name,
        f.probability * 100.0,
        f.index + 1
    );
    click_label(&mut h, &label);
    assert_eq!(h.state().viewports[0].slice, f.index);
    // The phrase is mapped on the slice shown.
    step_until(&mut h, "the phrase's map", |a| {
        let (Some(ai), Some(key)) = (a.ai.as_ref(), current_key(a)) else {
            return false;
        };
        ai.overlay.as_ref().is_some_and(|o| o.prompt == phrase) && ai.overlay_for(&key).is_some()
    });
}
