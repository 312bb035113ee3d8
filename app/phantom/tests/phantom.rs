//! The phantom generator against its own truth: deterministic bytes, DICOM that reads back as written,
//! masks that match what is drawn, reports that state exactly the truth, and CT values in Hounsfield units.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use dicom_dictionary_std::tags;
use radclip_phantom::{CxrCase, Kind, Side, cxr_sample, study_rng};

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for (k, v) in files(&p) {
                out.insert(
                    format!("{}/{k}", p.file_name().unwrap().to_string_lossy()),
                    v,
                );
            }
        } else {
            out.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
    out
}

/// A text element's value without DICOM's padding.
fn text(o: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    o.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

#[test]
fn same_seed_same_bytes_other_index_other_study() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    radclip_phantom::write_cxr_set(a.path(), 7, 0, 6, 128).unwrap();
    radclip_phantom::write_cxr_set(b.path(), 7, 0, 6, 128).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.len() > 6 * 4);
    assert_eq!(fa, fb, "a rerun must write identical files");
    // A study depends on (seed, index) only, not on what else is generated.
    let c = tempfile::tempdir().unwrap();
    radclip_phantom::write_cxr_set(c.path(), 7, 4, 1, 128).unwrap();
    let fc = files(c.path());
    let k = "PHANTOM-CXR-7-0004/image.dcm";
    assert_eq!(fc[k], fa[k]);
    assert_ne!(
        fa["PHANTOM-CXR-7-0004/image.dcm"],
        fa["PHANTOM-CXR-7-0005/image.dcm"]
    );
}

#[test]
fn dicom_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let t = radclip_phantom::write_cxr_study(dir.path(), 3, 11, 256).unwrap();
    let study = dir.path().join(&t.patient_id);

    // The image: our decoder gives back exactly the rendered pixels.
    let frames = radclip_dicom::pixel::decode_file(&study.join("image.dcm")).unwrap();
    assert_eq!(frames.len(), 1);
    let img = cxr_sample(3, 11).case.render(256);
    let f = &frames[0];
    for (i, &want) in img.pixels.iter().enumerate().step_by(97) {
        let got = f.value_at((i / 256) as u32, (i % 256) as u32).unwrap();
        assert_eq!(got, f64::from(want));
    }
    // What training renders in memory is what inference gets from the file: same 8-bit image.
    assert!(
        radclip_dicom::render(f, None)
            == radclip_dicom::render(&radclip_phantom::as_frame(&img), None),
        "the in-memory frame renders differently from the file"
    );
    let obj = radclip_dicom::pixel::open_full(&study.join("image.dcm")).unwrap();
    assert_eq!(text(&obj, tags::MODALITY), "DX");
    assert_eq!(text(&obj, tags::VIEW_POSITION), "PA");
    assert!(text(&obj, tags::PATIENT_NAME).starts_with("SYNTHETIC^"));
    let spacing = text(&obj, tags::PIXEL_SPACING);
    assert!(
        (spacing.split('\\').next().unwrap().parse::<f64>().unwrap() - t.pixel_spacing_mm).abs()
            < 1e-3
    );

    // The report: a Basic Text SR in the same study, its two texts those of report.txt, its evidence the image.
    let sr = radclip_dicom::pixel::open_full(&study.join("report.dcm")).unwrap();
    assert_eq!(
        text(&sr, tags::SOP_CLASS_UID),
        "1.2.840.10008.5.1.4.1.1.88.11"
    );
    assert_eq!(
        text(&sr, tags::STUDY_INSTANCE_UID),
        text(&obj, tags::STUDY_INSTANCE_UID)
    );
    let items = sr.element(tags::CONTENT_SEQUENCE).unwrap().items().unwrap();
    let texts: Vec<String> = items
        .iter()
        .map(|it| {
            it.element(tags::TEXT_VALUE)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect();
    let report = std::fs::read_to_string(study.join("report.txt")).unwrap();
    assert_eq!(texts.len(), 2);
    for t in &texts {
        assert!(report.contains(t.as_str()), "{t} not in report.txt");
    }
    let ev = sr
        .element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let series = ev[0]
        .element(tags::REFERENCED_SERIES_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let sops = series[0]
        .element(tags::REFERENCED_SOP_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(
        sops[0]
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0'),
        text(&obj, tags::SOP_INSTANCE_UID)
    );

    // Each finding's mask file is the rendered mask.
    for (fi, ft) in t.findings.iter().enumerate() {
        let png = image::open(study.join(&ft.mask)).unwrap().to_luma8();
        let on = png.pixels().filter(|p| p.0[0] == 255).count();
        assert_eq!(on, ft.area_px);
        assert_eq!(on, img.masks[fi].iter().filter(|m| **m).count());
    }
}

fn mean(px: &[u16], sel: impl Fn(usize) -> bool) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for (i, &v) in px.iter().enumerate() {
        if sel(i) {
            s += f64::from(v);
            n += 1;
        }
    }
    s / n.max(1) as f64
}

#[test]
fn findings_are_drawn_where_the_truth_says() {
    let n = 128;
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut normal = 0;
    let cases = 300;
    for i in 0..cases {
        let s = cxr_sample(42, i);
        let img = s.case.render(n);
        if s.case.findings.is_empty() {
            normal += 1;
        }
        let ctr = s.case.anatomy.ctr;
        assert_eq!(
            s.case.has(Kind::Cardiomegaly),
            ctr > 0.55,
            "case {i}: ctr {ctr}"
        );
        for (f, mask) in s.case.findings.iter().zip(&img.masks) {
            *counts.entry(f.kind).or_default() += 1;
            let area = mask.iter().filter(|m| **m).count();
            assert!(area > 0, "case {i}: empty {:?} mask", f.kind);
            let st = radclip_phantom::cxr::mask_stats(mask, n);
            let (_, col) = st.centroid.unwrap();
            // Patient's right is the image's left.
            match f.side {
                Some(Side::Right) => assert!(
                    col < n as f64 * 0.55,
                    "case {i}: {:?} right at col {col}",
                    f.kind
                ),
                Some(Side::Left) => assert!(
                    col > n as f64 * 0.45,
                    "case {i}: {:?} left at col {col}",
                    f.kind
                ),
                None => {}
            }
            let inside = mean(&img.pixels, |k| mask[k]);
            // Compare with the same lung away from the finding: a box around the mask, minus the mask.
            let (r0, c0, r1, c1) = st.bbox.unwrap();
            let pad = 4;
            let ring = |k: usize| {
                let (r, c) = (k / n, k % n);
                !mask[k] && r + pad >= r0 && r <= r1 + pad && c + pad >= c0 && c <= c1 + pad
            };
            let around = mean(&img.pixels, ring);
            match f.kind {
                Kind::Nodule | Kind::Mass | Kind::Consolidation => {
                    let d = (f.size / 2.0 * n as f64 * s.case.anatomy.scale).powi(2)
                        * std::f64::consts::PI;
                    if f.kind == Kind::Nodule {
                        assert!(
                            (area as f64) > 0.5 * d && (area as f64) < 1.6 * d,
                            "case {i}: nodule area {area} vs {d}"
                        );
                    }
                    assert!(
                        inside > around + 50.0,
                        "case {i}: {:?} not brighter ({inside} vs {around})",
                        f.kind
                    );
                }
                Kind::Pneumothorax => {
                    assert!(
                        inside < around,
                        "case {i}: pneumothorax not darker ({inside} vs {around})"
                    );
                }
                Kind::PleuralEffusion => {
                    assert!(f.zone == Some(radclip_phantom::Zone::Lower));
                }
                Kind::Cardiomegaly => {}
            }
        }
    }
    for k in Kind::ALL {
        let c = counts.get(&k).copied().unwrap_or(0);
        assert!(
            c >= cases as usize / 20 && c <= cases as usize / 2,
            "{k:?}: {c} of {cases}"
        );
    }
    assert!(
        normal >= cases as usize / 10,
        "only {normal} normal studies"
    );
}

/// Keywords that mark a sentence as being about a kind.
fn about(sentence: &str, kind: Kind) -> bool {
    let s = sentence.to_lowercase();
    match kind {
        Kind::Nodule => s.contains("nodul"),
        Kind::Mass => s.contains("mass"),
        Kind::PleuralEffusion => s.contains("effusion") || s.contains("costophrenic"),
        Kind::Pneumothorax => s.contains("pneumothorax"),
        Kind::Consolidation => s.contains("consolidation"),
        Kind::Cardiomegaly => s.contains("heart") || s.contains("cardi"),
    }
}

fn negated(sentence: &str) -> bool {
    let s = sentence.to_lowercase();
    s.starts_with("no ")
        || s.contains("there is no")
        || s.contains(" not ")
        || s.contains("normal")
        || s.contains("sharp")
        || s.contains("without")
}

#[test]
fn reports_state_the_truth_and_negate_the_rest() {
    let mut negations = 0;
    for i in 0..300 {
        let s = cxr_sample(5, i);
        let text = &s.report.findings;
        let sentences: Vec<&str> = text
            .split_inclusive('.')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .collect();
        for k in Kind::ALL {
            let on: Vec<&&str> = sentences.iter().filter(|x| about(x, k)).collect();
            if s.case.has(k) {
                assert!(
                    on.iter().any(|x| !negated(x)),
                    "case {i}: {k:?} present but not reported: {text}"
                );
                for f in s.case.findings.iter().filter(|f| f.kind == k) {
                    if let Some(side) = f.side {
                        assert!(
                            on.iter().any(|x| x.to_lowercase().contains(side.name())),
                            "case {i}: {k:?} without its side {side:?}: {text}"
                        );
                    }
                }
            } else {
                for x in &on {
                    assert!(negated(x), "case {i}: {k:?} absent but stated: {x:?}");
                    negations += 1;
                }
            }
        }
        let normal_impression = s.report.impression.to_lowercase();
        assert_eq!(
            s.case.findings.is_empty(),
            normal_impression.contains("no acute") || normal_impression.contains("normal chest"),
            "case {i}: {normal_impression}"
        );
    }
    assert!(negations > 500, "too few pertinent negatives ({negations})");
}

#[test]
fn every_kind_can_be_asked_for() {
    for k in Kind::ALL {
        let mut ok = 0;
        for i in 0..10 {
            let case = CxrCase::with_findings(&mut study_rng(9, i, 0), &[k]);
            ok += usize::from(case.has(k));
        }
        assert!(ok >= 8, "{k:?}: {ok} of 10");
    }
}

/// A CT phantom written to a temporary folder, with its lesions and the folder's study tree.
struct CtPhantom {
    dir: tempfile::TempDir,
    opts: radclip_phantom::ct::CtOptions,
    lesions: Vec<radclip_phantom::ct::Lesion>,
    tree: radclip_dicom::StudyTree,
}

impl CtPhantom {
    fn new(size: usize, pixel_mm: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = radclip_phantom::ct::CtOptions {
            size,
            pixel_mm,
            ..Default::default()
        };
        let lesions = radclip_phantom::ct::write_ct_series(dir.path(), &opts).unwrap();
        let tree = radclip_dicom::scan(dir.path()).unwrap();
        CtPhantom {
            dir,
            opts,
            lesions,
            tree,
        }
    }

    /// The CT series (the folder also holds the lesions' SEG).
    fn ct(&self) -> &radclip_dicom::Series {
        self.tree.patients[0].studies[0]
            .series
            .iter()
            .find(|s| s.modality == "CT")
            .unwrap()
    }
}

#[test]
fn ct_series_has_hounsfield_units_and_its_lesions() {
    let p = CtPhantom::new(128, 2.8);
    let (dir, opts, lesions) = (&p.dir, p.opts, &p.lesions);
    let series = p.ct();
    assert_eq!(series.instances.len(), 64);
    // HU at a patient point: the slice nearest z, the pixel nearest (x, y).
    let hu_at = |p: [f64; 3]| -> f64 {
        let s = ((opts.slices as f64 / 2.0 - p[2] / opts.slice_mm - 0.5).round() as usize)
            .min(opts.slices - 1);
        let path = dir.path().join(format!("CT{:04}.dcm", s + 1));
        let f = &radclip_dicom::pixel::decode_file(&path).unwrap()[0];
        let (mut sum, mut k) = (0.0, 0);
        let half = opts.size as f64 / 2.0;
        let (c, r) = (
            (p[0] / opts.pixel_mm + half) as i64,
            (p[1] / opts.pixel_mm + half) as i64,
        );
        for dr in -1..=1 {
            for dc in -1..=1 {
                sum += f.value_at((r + dr) as u32, (c + dc) as u32).unwrap();
                k += 1;
            }
        }
        sum / f64::from(k)
    };
    for l in lesions {
        let v = hu_at(l.center_mm);
        assert!(
            (v - l.hu).abs() < 25.0,
            "{} in {}: {v} HU, expected {}",
            l.kind,
            l.location,
            l.hu
        );
    }
    assert!(
        (hu_at([-80.0, 40.0, 30.0]) + 850.0).abs() < 60.0,
        "right lung"
    );
    assert!((hu_at([-170.0, -170.0, 0.0]) + 1000.0).abs() < 25.0, "air");
    assert!(hu_at([0.0, 70.0, 0.0]) > 200.0, "vertebral body");
    assert!((hu_at([-45.0, 0.0, -110.0]) - 60.0).abs() < 25.0, "liver");
}

/// The CT's lesion masks as a SEG: one frame for every slice a lesion's sphere crosses (from the truth's
/// centre and diameter), each referencing that slice, covering the lesion's disc in that plane, and
/// holding only pixels whose decoded HU is the lesion's (uniform, with ±24 HU of noise).
#[test]
fn ct_lesions_are_a_dicom_segmentation_of_their_slices() {
    let p = CtPhantom::new(128, 2.8);
    let (dir, opts, lesions) = (&p.dir, p.opts, &p.lesions);
    let ct = p.ct();
    assert_eq!(ct.instances.len(), 64);
    let seg = radclip_dicom::seg::Segmentation::read(&dir.path().join("seg.dcm")).unwrap();
    assert_eq!((seg.rows, seg.cols), (128, 128));
    assert_eq!(seg.segments.len(), lesions.len());
    let mut expected_frames = 0;
    for inst in &ct.instances {
        let geometry = inst.frame_geometry[0].as_ref().unwrap();
        let z = geometry.position[2];
        let frame = &radclip_dicom::pixel::decode_file(&inst.path).unwrap()[0];
        let mine: Vec<_> = seg.frames_for(&inst.sop_instance_uid).collect();
        for (li, l) in lesions.iter().enumerate() {
            let r = l.diameter_mm / 2.0;
            // A sphere crossing this slice's plane by more than a pixel has a frame here.
            let crosses = (z - l.center_mm[2]).abs() < r - opts.pixel_mm;
            let found = mine
                .iter()
                .find(|(_, s, _)| usize::from(s.number) == li + 1);
            if crosses {
                expected_frames += 1;
                assert!(found.is_some(), "{} has no frame at z = {z}", l.kind);
            }
            if (z - l.center_mm[2]).abs() > r {
                assert!(found.is_none(), "{} has a frame at z = {z}", l.kind);
            }
            let Some((_, _, f)) = found else { continue };
            // The lesion's disc in this plane, less a pixel at its rim, must be in the mask.
            let rho = (r * r - (z - l.center_mm[2]).powi(2)).max(0.0).sqrt();
            let (mut inside, mut missed) = (0, 0);
            for (i, &m) in f.mask.iter().enumerate() {
                let hu = frame.value_at((i / 128) as u32, (i % 128) as u32).unwrap();
                if m {
                    inside += 1;
                    assert!((hu - l.hu).abs() <= 25.0, "{}: {hu} HU in its mask", l.kind);
                }
                let (y, x) = (
                    ((i / 128) as f64 + 0.5 - 64.0) * opts.pixel_mm,
                    ((i % 128) as f64 + 0.5 - 64.0) * opts.pixel_mm,
                );
                let d = ((x - l.center_mm[0]).powi(2) + (y - l.center_mm[1]).powi(2)).sqrt();
                missed += usize::from(!m && d < rho - opts.pixel_mm);
            }
            assert!(inside > 0, "{}: empty mask at z = {z}", l.kind);
            assert_eq!(
                missed, 0,
                "{}: lesion pixels outside its mask at z = {z}",
                l.kind
            );
        }
    }
    assert!(expected_frames >= lesions.len());
    assert!(seg.frames.len() >= expected_frames);
    // Every frame is on a slice of the series.
    for f in &seg.frames {
        let src = f.source.as_deref().unwrap();
        assert!(ct.instances.iter().any(|i| i.sop_instance_uid == src));
    }
    let obj = radclip_dicom::pixel::open_full(&dir.path().join("seg.dcm")).unwrap();
    let ct0 = radclip_dicom::pixel::open_full(&ct.instances[0].path).unwrap();
    assert_eq!(
        text(&obj, tags::FRAME_OF_REFERENCE_UID),
        text(&ct0, tags::FRAME_OF_REFERENCE_UID)
    );
}

/// A SEG whose frames name no source image (some tools write only plane positions) is laid over the
/// slices by frame of reference, orientation and position: the CT SEG with its source references removed
/// gives each slice the frames the references gave.
#[test]
fn seg_frames_without_sources_are_placed_by_position() {
    use dicom_core::value::{DataSetSequence, Value};
    use dicom_object::mem::InMemElement;
    let p = CtPhantom::new(64, 5.6);
    let path = p.dir.path().join("seg.dcm");
    let mut obj = radclip_dicom::pixel::open_full(&path).unwrap();
    let items: Vec<_> = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .iter()
        .cloned()
        .map(|mut it| {
            assert!(it.remove_element(tags::DERIVATION_IMAGE_SEQUENCE));
            it
        })
        .collect();
    obj.put(InMemElement::new(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        dicom_core::VR::SQ,
        Value::Sequence(DataSetSequence::from(items)),
    ));
    assert!(obj.remove_element(tags::REFERENCED_SERIES_SEQUENCE));
    let bare = p.dir.path().join("bare.seg");
    obj.write_to_file(&bare).unwrap();

    let with = radclip_dicom::seg::Segmentation::read(&path).unwrap();
    let without = radclip_dicom::seg::Segmentation::read(&bare).unwrap();
    assert!(with.frames.len() >= 4, "{} frames", with.frames.len());
    assert!(without.frames.iter().all(|f| f.source.is_none()));
    let ct = p.ct();
    let for_uid = ct.frame_of_reference.as_deref().unwrap();
    let mut placed = 0;
    for inst in &ct.instances {
        let g = inst.frame_geometry[0].as_ref().unwrap();
        let plane = Some((for_uid, g.position, g.orientation));
        let a: Vec<usize> = with
            .frames_for(&inst.sop_instance_uid)
            .map(|f| f.0)
            .collect();
        let b: Vec<usize> = without
            .frames_over(&inst.sop_instance_uid, plane)
            .map(|f| f.0)
            .collect();
        assert_eq!(a, b, "slice at z = {}", g.position[2]);
        // Without the plane, nothing is placed; another frame of reference places nothing either.
        assert_eq!(without.frames_for(&inst.sop_instance_uid).count(), 0);
        let other = Some(("1.2.3", g.position, g.orientation));
        assert_eq!(
            without.frames_over(&inst.sop_instance_uid, other).count(),
            0
        );
        placed += b.len();
    }
    assert_eq!(placed, with.frames.len());
}

#[test]
fn held_out_paraphrases_are_never_generated() {
    use radclip_phantom::report;
    let held: Vec<String> = Kind::ALL
        .iter()
        .flat_map(|k| report::held_out_paraphrases(*k))
        .flat_map(|(p, n)| [p.to_string(), n.to_string()])
        .collect();
    let norm = |s: &str| s.trim().trim_end_matches('.').to_lowercase();
    let mut rng = study_rng(11, 0, 9);
    let mut generated = std::collections::HashSet::new();
    for i in 0..2000 {
        let s = cxr_sample(11, i);
        for sent in s.report.findings.split_inclusive(". ") {
            generated.insert(norm(sent));
        }
        for line in s.report.impression.lines() {
            generated.insert(norm(line));
        }
        for f in &s.case.findings {
            generated.insert(norm(&report::sentence(&s.case, f, &mut rng)));
        }
        for k in Kind::ALL {
            generated.insert(norm(&report::generic_positive(k, &mut rng)));
            generated.insert(norm(report::negation(k, &mut rng)));
            let (p, n) = report::statement_pair(k, &mut rng);
            generated.insert(norm(&p));
            generated.insert(norm(&n));
        }
    }
    assert!(generated.len() > 500);
    for h in &held {
        assert!(!generated.contains(&norm(h)), "{h:?} is generated");
    }
}

#[test]
fn masks_are_a_dicom_segmentation_of_the_image() {
    let seed = 3;
    let index = (0..200)
        .find(|&i| cxr_sample(seed, i).case.findings.len() >= 2)
        .expect("a study with two findings");
    let dir = tempfile::tempdir().unwrap();
    let t = radclip_phantom::write_cxr_study(dir.path(), seed, index, 128).unwrap();
    let study = dir.path().join(&t.patient_id);
    assert!(t.files.iter().any(|f| f == "seg.dcm"));
    let img = cxr_sample(seed, index).case.render(128);
    let image = radclip_dicom::pixel::open_full(&study.join("image.dcm")).unwrap();
    let seg = radclip_dicom::pixel::open_full(&study.join("seg.dcm")).unwrap();
    let uint =
        |o: &dicom_object::InMemDicomObject, tag| o.element(tag).unwrap().to_int::<u32>().unwrap();
    assert_eq!(
        text(&seg, tags::SOP_CLASS_UID),
        "1.2.840.10008.5.1.4.1.1.66.4"
    );
    assert_eq!(text(&seg, tags::MODALITY), "SEG");
    assert_eq!(text(&seg, tags::SEGMENTATION_TYPE), "BINARY");
    for tag in [tags::STUDY_INSTANCE_UID, tags::PATIENT_ID] {
        assert_eq!(text(&seg, tag), text(&image, tag));
    }
    assert_ne!(
        text(&seg, tags::SERIES_INSTANCE_UID),
        text(&image, tags::SERIES_INSTANCE_UID)
    );
    let n = t.findings.len();
    assert_eq!(text(&seg, tags::NUMBER_OF_FRAMES), n.to_string());
    let segments = seg
        .element(tags::SEGMENT_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(segments.len(), n);
    let frames = seg
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(frames.len(), n);
    // PS3.5 8.1.1: 1-bit pixels are packed in frame order, least significant bit first.
    let bits = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(bits.len(), (n * 128 * 128).div_ceil(8).next_multiple_of(2));
    let source_uid = text(&image, tags::SOP_INSTANCE_UID);
    for (fi, ft) in t.findings.iter().enumerate() {
        let number = ft.segment as u32;
        let segment = &segments[fi];
        assert_eq!(uint(segment, tags::SEGMENT_NUMBER), number);
        let label = segment
            .element(tags::SEGMENT_LABEL)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(label.contains(ft.kind.name()), "{label}");
        let frame = &frames[fi];
        let ident = &frame
            .element(tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(uint(ident, tags::REFERENCED_SEGMENT_NUMBER), number);
        let derivation = &frame
            .element(tags::DERIVATION_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        let source = &derivation
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            source
                .element(tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            source_uid
        );
        let on: Vec<bool> = (0..128 * 128)
            .map(|p| {
                let i = fi * 128 * 128 + p;
                bits[i / 8] >> (i % 8) & 1 == 1
            })
            .collect();
        assert_eq!(
            on,
            img.masks[fi],
            "frame {fi} is not the {} mask",
            ft.kind.name()
        );
        assert_eq!(on.iter().filter(|v| **v).count(), ft.area_px);
    }

    // The engine's reader gives back the same masks, each tied to the image it was derived from; a file
    // that is not a segmentation is an error, not a panic.
    let read = radclip_dicom::seg::Segmentation::read(&study.join("seg.dcm")).unwrap();
    assert_eq!((read.rows, read.cols, read.frames.len()), (128, 128, n));
    let over: Vec<_> = read.frames_for(&source_uid).collect();
    assert_eq!(over.len(), n);
    for ((_, info, frame), (fi, ft)) in over.into_iter().zip(t.findings.iter().enumerate()) {
        assert_eq!(info.number, ft.segment);
        assert_eq!(frame.mask, img.masks[fi]);
    }
    assert!(radclip_dicom::seg::Segmentation::read(&study.join("image.dcm")).is_err());

    // The viewer's study engine lists it with the study, as an object it does not render.
    let tree = radclip_dicom::study::scan(&study).unwrap();
    assert!(tree.problems.is_empty(), "{:?}", tree.problems);
    let seg_series: Vec<_> = tree.series().filter(|s| s.modality == "SEG").collect();
    assert_eq!(seg_series.len(), 1);
    assert!(!seg_series[0].is_image());
    assert_eq!(tree.image_series().count(), 1);
}
