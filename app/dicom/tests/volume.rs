//! Volumes and reformatting: the demo CT's lesions (spheres of known centre and diameter, `truth.json`)
//! measure their diameter on axial, coronal and sagittal planes through their centres within one voxel
//! spacing; an analytic volume with anisotropic voxels (0.7 × 0.7 × 2.5 mm) resamples a linear ramp
//! exactly; slabs combine as their mode says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use radclip_dicom::geometry::VolumeGeometry;
use radclip_dicom::pixel::{ColorModel, Frame, ModalityLut, Samples, VoiFunction};
use radclip_dicom::volume::{Plane, PlaneKind, Slab, SlabMode, Volume};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A lesion of the demo CT's truth.json.
struct Lesion {
    centre: [f64; 3],
    diameter: f64,
    hu: f64,
    /// The slices it crosses, numbered as the files are.
    slices: Vec<u64>,
    kind: String,
}

fn lesions() -> Vec<Lesion> {
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("assets/demo/truth.json")).unwrap(),
    )
    .unwrap();
    let num = |v: &serde_json::Value| v.as_f64().unwrap();
    truth["lesions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let c: Vec<f64> = l["center_mm"].as_array().unwrap().iter().map(num).collect();
            let slices = l["slices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap());
            Lesion {
                centre: [c[0], c[1], c[2]],
                diameter: num(&l["diameter_mm"]),
                hu: num(&l["hu"]),
                slices: slices.collect(),
                kind: l["kind"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// The demo CT as a volume, every slice decoded.
fn demo_ct() -> Volume {
    let tree = radclip_dicom::scan(&workspace().join("assets/demo")).unwrap();
    let series = tree
        .series()
        .find(|s| s.modality == "CT" && s.frames.len() > 10)
        .unwrap();
    let mut v = Volume::for_series(series).unwrap();
    for k in 0..series.frames.len() {
        let (inst, f) = series.instance_of(k).unwrap();
        let frames = radclip_dicom::pixel::decode_image_file(&inst.path).unwrap();
        v.set_slice(k, &frames[f as usize]).unwrap();
    }
    assert!(v.is_complete());
    // Whole HU values: kept as 16-bit, the raw voxel bytes.
    assert_eq!(v.byte_len(), 256 * 256 * 64 * 2);
    v
}

/// Where a profile through the centre (samples every 0.5 mm) crosses, on each side, halfway between
/// the lesion's value and what lies beyond its edge on that side (a lesion may touch a vessel or the
/// heart), linear between samples; the distance between the two crossings in mm. `spacing`: the
/// volume's voxel spacing along the profile.
fn width(profile: &[(f64, f32)], lesion_hu: f64, spacing: f64) -> f64 {
    let centre = profile
        .iter()
        .position(|(t, _)| t.abs() < 1e-6)
        .expect("a sample at the centre");
    let value = |i: isize| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.get(i))
            .map_or(f64::NAN, |p| f64::from(p.1))
    };
    let crossing = |step: isize| {
        // The edge: the first sample clearly off the lesion's value (the phantom's noise is a few HU).
        let mut e = centre as isize;
        while (value(e) - lesion_hu).abs() < 25.0 {
            e += step;
        }
        // Beyond it by two voxels: the neighbour's value.
        let beyond = e + step * (2.0 * spacing / 0.5).ceil() as isize;
        let half = (lesion_hu + value(beyond)) / 2.0;
        let inside = |v: f64| (v - half) * (lesion_hu - half).signum() > 0.0;
        let mut i = centre as isize;
        loop {
            let j = i + step;
            if !inside(value(j)) {
                let f = (value(i) - half) / (value(i) - value(j));
                return (i as f64 + f * step as f64 - centre as f64) * 0.5;
            }
            i = j;
        }
    };
    crossing(1) - crossing(-1)
}

#[test]
fn the_demo_lesions_measure_their_diameter_on_every_plane() {
    let v = demo_ct();
    let mut measured = 0;
    for Lesion {
        centre: c,
        diameter: d,
        hu,
        kind: name,
        ..
    } in lesions()
    {
        for kind in [PlaneKind::Axial, PlaneKind::Coronal, PlaneKind::Sagittal] {
            let plane = Plane::standard(kind, &v.geometry, c, 0.5);
            let out = v.reslice(&plane, Slab::default());
            // The centre is on a pixel of the plane; profiles along its row and its column.
            let at = |p: [f64; 3]| {
                let d = [
                    p[0] - plane.origin_mm[0],
                    p[1] - plane.origin_mm[1],
                    p[2] - plane.origin_mm[2],
                ];
                let dot = |a: [f64; 3]| d[0] * a[0] + d[1] * a[1] + d[2] * a[2];
                (
                    (dot(plane.column_axis) / plane.pixel_spacing_mm[0]).round() as usize,
                    (dot(plane.row_axis) / plane.pixel_spacing_mm[1]).round() as usize,
                )
            };
            let (r0, c0) = at(c);
            let reach = (d / 2.0 + 12.0) / 0.5;
            for (axis, dir) in [(0, plane.row_axis), (1, plane.column_axis)] {
                let profile: Vec<(f64, f32)> = (-(reach as isize)..=reach as isize)
                    .map(|s| {
                        let (r, cc) = if axis == 0 {
                            (r0 as isize, c0 as isize + s)
                        } else {
                            (r0 as isize + s, c0 as isize)
                        };
                        let inside = (0..plane.rows as isize).contains(&r)
                            && (0..plane.columns as isize).contains(&cc);
                        let v = if inside {
                            out.values[r as usize * plane.columns + cc as usize]
                        } else {
                            f32::NAN
                        };
                        (s as f64 * 0.5, v)
                    })
                    .collect();
                // One voxel spacing along that direction: 4 mm across slices, 1.4 mm in plane.
                let g = &v.geometry;
                let spacing: f64 = [g.row_dir, g.col_dir, g.normal]
                    .iter()
                    .zip(g.spacing)
                    .map(|(axis, sp)| {
                        axis.iter().zip(dir).map(|(x, y)| x * y).sum::<f64>().abs() * sp
                    })
                    .sum();
                let got = width(&profile, hu, spacing);
                eprintln!(
                    "{name} on the {kind:?} plane along {dir:?}: {got:.2} mm for {d} (spacing {spacing:.2})"
                );
                assert!(
                    (got - d).abs() <= spacing,
                    "{name} on the {kind:?} plane along {dir:?}: {got:.2} mm for {d}"
                );
                measured += 1;
            }
        }
    }
    assert_eq!(measured, 4 * 3 * 2);
}

/// A linear function of patient position: trilinear interpolation reproduces it exactly.
fn ramp(p: [f64; 3]) -> f64 {
    2.0 * p[0] - 3.0 * p[1] + 5.0 * p[2] + 100.0
}

#[test]
fn anisotropic_voxels_resample_a_ramp_exactly_on_any_plane() {
    // 0.7 × 0.7 × 2.5 mm, slices running towards the feet as in the demo CT.
    let g = VolumeGeometry {
        dims: [20, 16, 12],
        spacing: [0.7, 0.7, 2.5],
        origin: [-5.0, -3.0, 10.0],
        row_dir: [1.0, 0.0, 0.0],
        col_dir: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, -1.0],
    };
    let mut v = Volume::new(g.clone());
    // Stored values through a rescale of 0.5 and -10, so modality values have halves (f32 voxels).
    for k in 0..12 {
        let mut stored = Vec::new();
        for j in 0..16 {
            for i in 0..20 {
                let p = [
                    -5.0 + 0.7 * i as f64,
                    -3.0 + 0.7 * j as f64,
                    10.0 - 2.5 * k as f64,
                ];
                stored.push(((ramp(p) + 10.0) / 0.5).round() as i16);
            }
        }
        let frame = Frame {
            rows: 16,
            cols: 20,
            color: ColorModel::Mono { invert: false },
            samples: Samples::I16(stored),
            modality: ModalityLut::Rescale {
                slope: 0.5,
                intercept: -10.0,
            },
            windows: Vec::new(),
            voi_function: VoiFunction::Linear,
            voi_luts: Vec::new(),
            stored_range: (0, 0),
        };
        assert!(!v.is_complete());
        v.set_slice(k, &frame).unwrap();
    }
    assert!(v.is_complete());
    // Rounding the stored values to whole halves: within 0.25 at the voxels, so anywhere between them.
    let centre = v.centre();
    for normal in [
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 1.0],
        [0.3, -0.8, 0.5],
    ] {
        let plane = Plane::oblique(normal, &g, centre, 0.5).unwrap();
        let out = v.reslice(&plane, Slab::default());
        let mut inside = 0;
        for r in 0..plane.rows {
            for c in 0..plane.columns {
                let got = out.values[r * plane.columns + c];
                if got.is_nan() {
                    continue;
                }
                inside += 1;
                let want = ramp(plane.point(r as f64, c as f64));
                assert!((f64::from(got) - want).abs() <= 0.26, "{got} vs {want}");
            }
        }
        assert!(inside > 100, "{normal:?}: {inside} pixels inside");
        // Unit, orthogonal axes, the normal as asked.
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        assert!(dot(plane.row_axis, plane.column_axis).abs() < 1e-9);
        let n = plane.normal();
        let len = dot(normal, normal).sqrt();
        assert!((dot(n, normal).abs() / len - 1.0).abs() < 1e-9);
    }
    // A slab along a ramp: MIP is its top, MinIP its bottom, the mean its middle.
    let plane = Plane::standard(PlaneKind::Axial, &g, centre, 0.7);
    let (r, c) = (plane.rows / 2, plane.columns / 2);
    let at = |mode| {
        let out = v.reslice(
            &plane,
            Slab {
                thickness_mm: 10.0,
                mode,
            },
        );
        f64::from(out.values[r * plane.columns + c])
    };
    let p = plane.point(r as f64, c as f64);
    let centre_value = ramp(p);
    // The axial normal is +z here or -z; the ramp rises 5 per mm of z: ± 25 over 5 mm.
    assert!((at(SlabMode::Mip) - (centre_value + 25.0)).abs() <= 0.26);
    assert!((at(SlabMode::MinIp) - (centre_value - 25.0)).abs() <= 0.26);
    assert!((at(SlabMode::Mean) - centre_value).abs() <= 0.26);
    assert!(v.byte_len() == 20 * 16 * 12 * 4, "halves are kept as f32");
}

#[test]
fn the_nearest_slice_to_a_point_is_the_one_its_plane_passes_closest_to() {
    let tree = radclip_dicom::scan(&workspace().join("assets/demo")).unwrap();
    let series = tree.series().find(|s| s.modality == "CT").unwrap();
    for Lesion {
        centre: c, slices, ..
    } in lesions()
    {
        let (k, d) = series.nearest_frame(c).unwrap();
        assert!(d <= 2.0, "{d} mm from the nearest slice (4 mm apart)");
        // truth.json numbers slices as the files are (CT0001.dcm, the most superior, is 1).
        let (inst, _) = series.instance_of(k).unwrap();
        let name = inst.path.file_stem().unwrap().to_str().unwrap();
        let number: u64 = name.trim_start_matches("CT").parse().unwrap();
        assert!(slices.contains(&number), "{name} for slices {slices:?}");
    }
}

#[test]
fn a_sagittal_series_reslices_as_scipy_samples_it() {
    // A sagittally acquired series, slices stepping against the orientation's normal, 0.8 × 0.6 × 2 mm
    // voxels; the reference is scipy's map_coordinates (order 1) on the same values
    // (`tests/fixtures/make_reslice_refs.py`).
    let dir = workspace().join("tests/fixtures/reslice");
    let tree = radclip_dicom::scan(&dir.join("series")).unwrap();
    let series = tree.series().next().unwrap();
    let mut v = Volume::for_series(series).unwrap();
    for k in 0..series.frames.len() {
        let (inst, f) = series.instance_of(k).unwrap();
        let frames = radclip_dicom::pixel::decode_image_file(&inst.path).unwrap();
        v.set_slice(k, &frames[f as usize]).unwrap();
    }
    // Slice k + 1 lies one slice step along the volume's normal from slice k, whichever way the
    // series is shown.
    let g = &v.geometry;
    let last = series
        .geometry_of(series.frames.len() - 1)
        .unwrap()
        .position;
    for (a, want) in last.iter().enumerate() {
        let reached = g.origin[a] + g.normal[a] * g.spacing[2] * (g.dims[2] - 1) as f64;
        assert!((reached - want).abs() < 1e-6, "{reached} vs {want}");
    }
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let v3 = |x: &serde_json::Value| -> [f64; 3] {
        let a: Vec<f64> = x
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        [a[0], a[1], a[2]]
    };
    for p in reference["planes"].as_array().unwrap() {
        let sp: Vec<f64> = p["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let plane = Plane {
            origin_mm: v3(&p["origin"]),
            row_axis: v3(&p["row_axis"]),
            column_axis: v3(&p["column_axis"]),
            pixel_spacing_mm: [sp[0], sp[1]],
            rows: p["rows"].as_u64().unwrap() as usize,
            columns: p["columns"].as_u64().unwrap() as usize,
        };
        let out = v.reslice(&plane, Slab::default());
        let want = p["values"].as_array().unwrap();
        assert_eq!(want.len(), out.values.len());
        let (mut both, mut disagree, mut worst) = (0, 0, 0f64);
        for (w, g) in want.iter().zip(&out.values) {
            match (w.as_f64(), g.is_nan()) {
                (Some(w), false) => {
                    both += 1;
                    worst = worst.max((w - f64::from(*g)).abs());
                }
                (None, true) => {}
                _ => disagree += 1,
            }
        }
        eprintln!(
            "{both} pixels compared, {disagree} inside for one side only, max difference {worst}"
        );
        assert!(both > 50, "{both} pixels inside");
        assert!(worst < 1e-3, "max difference {worst} HU");
        // Only at the volume's faces may the two disagree on inside (scipy's edge handling).
        assert!(
            disagree * 50 <= out.values.len(),
            "{disagree} of {}",
            out.values.len()
        );
    }
}

/// Slices become modality values exactly on every path: the 16-bit fast paths (slope 1 as an add,
/// an integer slope, unsigned stored samples), values past 16 bits and fractional rescales (the
/// volume turns to f32, keeping the slices already there).
#[test]
fn slices_keep_their_exact_modality_values_on_every_conversion_path() {
    let geometry = VolumeGeometry {
        dims: [2, 2, 4],
        spacing: [1.0, 1.0, 1.0],
        origin: [0.0, 0.0, 0.0],
        row_dir: [1.0, 0.0, 0.0],
        col_dir: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, 1.0],
    };
    let frame = |samples: Samples, slope: f64, intercept: f64| {
        let all: Vec<i64> = (0..samples.len()).filter_map(|i| samples.get(i)).collect();
        let stored_range = (
            all.iter().copied().min().unwrap(),
            all.iter().copied().max().unwrap(),
        );
        Frame {
            rows: 2,
            cols: 2,
            color: ColorModel::Mono { invert: false },
            samples,
            modality: ModalityLut::Rescale { slope, intercept },
            windows: Vec::new(),
            voi_function: VoiFunction::Linear,
            voi_luts: Vec::new(),
            stored_range,
        }
    };
    let values = |v: &Volume, k: usize| -> Vec<f32> {
        (0..4).map(|i| v.voxel(i % 2, i / 2, k).unwrap()).collect()
    };
    let mut v = Volume::new(geometry);
    v.set_slice(
        0,
        &frame(Samples::I16(vec![-2000, 0, 100, 32767]), 1.0, -1000.0),
    )
    .unwrap();
    assert_eq!(values(&v, 0), [-3000.0, -1000.0, -900.0, 31767.0]);
    // An intercept past 16 bits still adds exactly when the results fit.
    v.set_slice(
        1,
        &frame(
            Samples::I16(vec![-32000, -20000, -7233, -7000]),
            1.0,
            40000.0,
        ),
    )
    .unwrap();
    assert_eq!(values(&v, 1), [8000.0, 20000.0, 32767.0, 33000.0]);
    assert!(
        !v.is_16bit(),
        "33,000 does not fit 16 bits: the volume went to f32"
    );
    assert_eq!(
        values(&v, 0),
        [-3000.0, -1000.0, -900.0, 31767.0],
        "slice 0 kept"
    );
    v.set_slice(
        2,
        &frame(Samples::U16(vec![0, 10, 100, 65535]), 2.0, -1024.0),
    )
    .unwrap();
    assert_eq!(values(&v, 2), [-1024.0, -1004.0, -824.0, 130046.0]);
    v.set_slice(3, &frame(Samples::U16(vec![1, 2, 3, 4]), 0.5, 0.0))
        .unwrap();
    assert_eq!(values(&v, 3), [0.5, 1.0, 1.5, 2.0]);

    let mut w = Volume::new(v.geometry.clone());
    // Unsigned samples past 32,767 read back as unsigned in the in-place path.
    w.set_slice(
        0,
        &frame(Samples::U16(vec![0, 1000, 40000, 64000]), 1.0, -32000.0),
    )
    .unwrap();
    assert!(w.is_16bit());
    assert_eq!(values(&w, 0), [-32000.0, -31000.0, 8000.0, 32000.0]);
}

/// The demo CT's segmentation (seg.dcm, the truth's lesions) laid on the volume and resliced: on the
/// coronal and sagittal planes through each lesion's centre, its segment covers the disc of its
/// diameter (area within 25 %: nearest voxels of 4-mm slices), and nothing else there carries it.
#[test]
fn the_demo_segmentation_reslices_onto_any_plane() {
    let dir = workspace().join("assets/demo");
    let tree = radclip_dicom::scan(&dir).unwrap();
    let series = tree
        .series()
        .find(|s| s.modality == "CT" && s.frames.len() > 10)
        .unwrap();
    let seg =
        std::sync::Arc::new(radclip_dicom::seg::Segmentation::read(&dir.join("seg.dcm")).unwrap());
    let (g, plan) = radclip_dicom::geometry::slice_plan(series).unwrap();
    let labels =
        radclip_dicom::volume::LabelVolume::from_segmentations(series, &g, &plan, &[seg]).unwrap();
    assert_eq!(labels.names.len(), 4, "{:?}", labels.names);
    for (number, lesion) in (1u16..).zip(lesions()) {
        for kind in [PlaneKind::Coronal, PlaneKind::Sagittal, PlaneKind::Axial] {
            let plane = Plane::standard(kind, &g, lesion.centre, 0.5);
            let on = labels.reslice(&plane);
            let px = on.iter().filter(|n| **n == number).count() as f64;
            let area = px * 0.25;
            let disc = std::f64::consts::PI * (lesion.diameter / 2.0).powi(2);
            assert!(
                (area / disc - 1.0).abs() < 0.25,
                "segment {number} ({}) on the {kind:?} plane: {area:.0} mm² for a {disc:.0} mm² disc",
                lesion.kind
            );
        }
    }
}

/// Copies of the demo CT's slices into `dir`, leaving out `skip` (file numbers) and moving those whose
/// position is below `z_below` by `dz` mm along z.
fn demo_copy(dir: &Path, skip: &[u32], z_below: f64, dz: f64) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    for n in 1..=64u32 {
        if skip.contains(&n) {
            continue;
        }
        let name = format!("CT{n:04}.dcm");
        let mut obj = dicom_object::open_file(workspace().join("assets/demo").join(&name)).unwrap();
        let p = obj
            .element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        if p[2] < z_below {
            let moved = format!("{}\\{}\\{}", p[0], p[1], p[2] + dz);
            obj.put(DataElement::new(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                PrimitiveValue::from(moved),
            ));
        }
        obj.write_to_file(dir.join(&name)).unwrap();
    }
}

fn only_series(dir: &Path) -> radclip_dicom::Series {
    let tree = radclip_dicom::scan(dir).unwrap();
    tree.series().find(|s| s.is_image()).unwrap().clone()
}

fn filled(series: &radclip_dicom::Series) -> Volume {
    let cell = std::sync::RwLock::new(Volume::for_series(series).unwrap());
    let f = radclip_dicom::volume::fill(
        series,
        &cell,
        &std::sync::atomic::AtomicBool::new(false),
        &|_| {},
    );
    assert!(f.failed.is_empty(), "{:?}", f.failed);
    cell.into_inner().unwrap()
}

/// A series with two files missing keeps its 4-mm grid: the two slices are blank and listed as gaps,
/// every other slice holds its own frame's values. One with uneven spacing (a 6-mm step in 4-mm
/// slices) is resampled by position at 4 mm: slices on a frame are that frame, the others the linear
/// blend of the frames either side, rounded to whole HU.
#[test]
fn missing_slices_stay_blank_and_uneven_spacing_is_resampled_by_position() {
    let full = demo_ct();
    let tmp = tempfile::tempdir().unwrap();
    let gap = tmp.path().join("gap");
    std::fs::create_dir_all(&gap).unwrap();
    demo_copy(&gap, &[30, 31], f64::NEG_INFINITY, 0.0);
    let v = filled(&only_series(&gap));
    assert_eq!(
        v.geometry.dims, full.geometry.dims,
        "the grid keeps its 64 slices"
    );
    assert_eq!(v.geometry.spacing, full.geometry.spacing);
    let gaps = v.gaps();
    assert_eq!(gaps.len(), 2);
    assert_eq!(gaps[1], gaps[0] + 1);
    assert_eq!(v.missing_slices(), gaps, "only the gaps are blank");
    for z in 0..64 {
        let same = (0..256).step_by(7).all(|j| {
            (0..256)
                .step_by(5)
                .all(|i| v.voxel(i, j, z) == full.voxel(i, j, z))
        });
        assert_eq!(same, !gaps.contains(&z), "slice {z}");
    }

    let uneven = tmp.path().join("uneven");
    std::fs::create_dir_all(&uneven).unwrap();
    // The lower half 2 mm further down: one 6-mm step between the halves.
    let z_mid = full.centre()[2];
    demo_copy(&uneven, &[], z_mid, -2.0);
    let series = only_series(&uneven);
    let v = filled(&series);
    assert_eq!(v.geometry.spacing[2], 4.0);
    assert_eq!(v.geometry.dims[2], 64, "254 mm at 4 mm");
    assert!(v.is_complete(), "every slice filled, no gaps");
    let frames: Vec<radclip_dicom::Frame> = (0..series.frames.len())
        .map(|k| {
            let (inst, f) = series.instance_of(k).unwrap();
            radclip_dicom::pixel::decode_image_file(&inst.path)
                .unwrap()
                .swap_remove(f as usize)
        })
        .collect();
    let hu = |k: usize, i: u32, j: u32| frames[k].value_at(j, i).unwrap();
    let mut between = 0;
    for (z, src) in v.plan().iter().enumerate() {
        for (i, j) in [(128u32, 128u32), (60, 120), (200, 90), (30, 200)] {
            let got = f64::from(v.voxel(i as usize, j as usize, z).unwrap());
            let want = match *src {
                radclip_dicom::geometry::SliceSource::Frame(k) => hu(k, i, j),
                radclip_dicom::geometry::SliceSource::Between { below, above, t } => {
                    (hu(below, i, j) + (hu(above, i, j) - hu(below, i, j)) * t).round()
                }
                radclip_dicom::geometry::SliceSource::Missing => panic!("no gap here"),
            };
            assert_eq!(got, want, "slice {z} ({src:?}) at ({i}, {j})");
        }
        between += usize::from(matches!(
            src,
            radclip_dicom::geometry::SliceSource::Between { .. }
        ));
    }
    assert!(between >= 30, "{between} slices interpolated");
}

/// An Enhanced CT (one file, per-frame positions in its functional groups: pydicom-data's
/// eCT_Supplemental.dcm, frames at z = −159 and −149 mm) makes a volume of its frames, 10 mm apart,
/// each slice its own frame's HU.
#[test]
fn an_enhanced_multiframe_ct_makes_a_volume_from_its_per_frame_positions() {
    let root = std::env::var_os("RADCLIP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"));
    let file = root.join("data_store/data/eCT_Supplemental.dcm");
    assert!(file.is_file(), "run `bash tests/fixtures/fetch.sh`");
    let tree = radclip_dicom::scan(&file).unwrap();
    let series = tree.series().find(|s| s.is_image()).unwrap();
    assert_eq!(series.frames.len(), 2);
    let v = filled(series);
    assert_eq!(v.geometry.dims, [512, 512, 2]);
    assert!((v.geometry.spacing[2] - 10.0).abs() < 1e-9);
    // Display order (head first): slice 0 is the frame at −149 mm, and the volume runs toward the feet.
    assert_eq!(v.geometry.origin[2], -149.0);
    assert!((v.geometry.normal[2] + 1.0).abs() < 1e-9);
    let frames = radclip_dicom::pixel::decode_image_file(&file).unwrap();
    for k in 0..2 {
        let f = &frames[series.instance_of(k).unwrap().1 as usize];
        for (i, j) in [(256u32, 256u32), (100, 300), (400, 50)] {
            assert_eq!(
                v.voxel(i as usize, j as usize, k).map(f64::from),
                f.value_at(j, i),
                "frame {k} at ({i}, {j})"
            );
        }
    }
    // Halfway between the two frames, a voxel is their mean.
    let mid = v.geometry.point_of([256.0, 256.0, 0.5]);
    let want =
        (frames[0].value_at(256, 256).unwrap() + frames[1].value_at(256, 256).unwrap()) / 2.0;
    assert!((f64::from(v.sample(mid).unwrap()) - want).abs() < 1e-3);
}
