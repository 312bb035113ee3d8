//! The GPU reslicer (`gpu_mpr.rs`, on lavapipe in CI) against the CPU reference
//! (`Volume::reslice` + `render_values`) on the demo CT: standard and oblique planes, thin and thick
//! slabs in every mode, every window function, inverted, and a volume with slices missing. They must
//! agree within one grey level at every pixel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use radclip_dicom::volume::{self, Plane, PlaneKind, Slab, SlabMode, Volume};
use radclip_dicom::{Rendered, VoiFunction, Window, render_values};
use radclip_viewer::gpu::wgpu;
use radclip_viewer::gpu_mpr::{MprParams, MprRenderer, stride_for};

fn device() -> (wgpu::Device, wgpu::Queue) {
    let rs = egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    (rs.device, rs.queue)
}

fn demo_volume(skip: &[usize]) -> Volume {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo");
    let tree = radclip_dicom::scan(&dir).unwrap();
    let series = tree.largest_image_series().unwrap();
    let v = RwLock::new(Volume::for_series(series).unwrap());
    let filled = volume::fill(series, &v, &AtomicBool::new(false), &|_| {});
    assert!(filled.failed.is_empty());
    let full = v.into_inner().unwrap();
    if skip.is_empty() {
        return full;
    }
    // The same volume with some slices never decoded.
    let mut partial = Volume::new(full.geometry.clone());
    for k in 0..series.frames.len() {
        if skip.contains(&k) {
            continue;
        }
        let (inst, f) = series.instance_of(k).unwrap();
        let frames = radclip_dicom::pixel::decode_image_file(&inst.path).unwrap();
        partial.set_slice(k, &frames[f as usize]).unwrap();
    }
    partial
}

const SOFT_TISSUE: (Window, VoiFunction) = (
    Window {
        center: 40.0,
        width: 400.0,
    },
    VoiFunction::Linear,
);

fn cpu(v: &Volume, p: &MprParams) -> Vec<u8> {
    let out = v.reslice(&p.plane, p.slab);
    match render_values(
        &out.values,
        p.plane.rows as u32,
        p.plane.columns as u32,
        p.window,
        p.invert,
    ) {
        Rendered::Grey { data, .. } => data,
        Rendered::Rgb { .. } => unreachable!(),
    }
}

fn compare(what: &str, gpu: &[u8], cpu: &[u8]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: sizes");
    let (mut worst, mut off) = (0u8, 0usize);
    for (a, b) in gpu.iter().zip(cpu) {
        let d = a.abs_diff(*b);
        worst = worst.max(d);
        off += usize::from(d > 0);
    }
    // Not a blank picture agreeing with a blank picture.
    let lit = cpu.iter().filter(|g| **g > 0).count();
    assert!(lit > cpu.len() / 10, "{what}: only {lit} pixels lit");
    assert!(
        worst <= 1,
        "{what}: worst difference {worst} grey levels ({off} pixels differ)"
    );
}

#[test]
fn gpu_reslice_matches_the_cpu_reference_within_one_grey_level() {
    let (dev, queue) = device();
    let v = Arc::new(RwLock::new(demo_volume(&[])));
    let mut r = MprRenderer::new(&dev, wgpu::TextureFormat::Rgba8Unorm);
    assert_eq!(r.sync(&dev, &queue, &v, usize::MAX), Some(0));
    let vol = v.read().unwrap();
    let g = &vol.geometry;
    let c = vol.centre();
    let soft = SOFT_TISSUE;
    let cases = [
        (
            "axial",
            Plane::standard(PlaneKind::Axial, g, c, 0.0),
            Slab::default(),
            soft,
            false,
        ),
        (
            "coronal",
            Plane::standard(PlaneKind::Coronal, g, c, 0.0),
            Slab::default(),
            soft,
            false,
        ),
        (
            "sagittal, 0.9 mm pixels, inverted",
            Plane::standard(PlaneKind::Sagittal, g, c, 0.9),
            Slab::default(),
            soft,
            true,
        ),
        (
            "double oblique",
            Plane::oblique([0.3, -0.4, 0.87], g, c, 0.0).unwrap(),
            Slab::default(),
            (
                Window {
                    center: 0.0,
                    width: 700.0,
                },
                VoiFunction::LinearExact,
            ),
            false,
        ),
        (
            "axial MIP 20 mm",
            Plane::standard(PlaneKind::Axial, g, c, 0.0),
            Slab {
                thickness_mm: 20.0,
                mode: SlabMode::Mip,
            },
            soft,
            false,
        ),
        (
            "coronal MinIP 12 mm, sigmoid",
            Plane::standard(PlaneKind::Coronal, g, c, 0.0),
            Slab {
                thickness_mm: 12.0,
                mode: SlabMode::MinIp,
            },
            (
                Window {
                    center: -300.0,
                    width: 1200.0,
                },
                VoiFunction::Sigmoid,
            ),
            false,
        ),
        (
            "oblique mean 9 mm",
            Plane::oblique([0.0, 0.5, 0.86], g, c, 0.0).unwrap(),
            Slab {
                thickness_mm: 9.0,
                mode: SlabMode::Mean,
            },
            soft,
            false,
        ),
    ];
    for (what, plane, slab, window, invert) in cases {
        let p = MprParams {
            plane,
            slab,
            window,
            invert,
        };
        let gpu = r.render_offscreen(&dev, &queue, &p).expect("rendered");
        compare(what, &gpu, &cpu(&vol, &p));
    }
}

#[test]
fn slices_not_yet_decoded_are_blank_on_both_paths() {
    let (dev, queue) = device();
    let skip = [20, 21, 40];
    let v = Arc::new(RwLock::new(demo_volume(&skip)));
    let mut r = MprRenderer::new(&dev, wgpu::TextureFormat::Rgba8Unorm);
    assert_eq!(
        r.sync(&dev, &queue, &v, usize::MAX),
        Some(3),
        "3 slices to come"
    );
    let vol = v.read().unwrap();
    assert_eq!(vol.missing_slices(), skip);
    let p = MprParams {
        plane: Plane::standard(PlaneKind::Coronal, &vol.geometry, vol.centre(), 0.0),
        slab: Slab::default(),
        window: SOFT_TISSUE,
        invert: true,
    };
    let gpu = r.render_offscreen(&dev, &queue, &p).unwrap();
    let reference = cpu(&vol, &p);
    compare("coronal with gaps", &gpu, &reference);
    // Inverted, so the body is mostly bright: the gaps are whole black rows across it.
    let cols = p.plane.columns;
    let black_rows = reference
        .chunks(cols)
        .filter(|row| row.iter().all(|g| *g == 0))
        .count();
    assert!(
        black_rows >= 2 * 3,
        "{black_rows} black rows for 3 missing 4-mm slices"
    );
}

#[test]
fn a_volume_past_the_texture_limit_is_thinned_not_refused() {
    assert_eq!(stride_for([512, 512, 500], 2048), [1, 1, 1]);
    assert_eq!(stride_for([512, 512, 3000], 2048), [1, 1, 2]);
    assert_eq!(stride_for([4100, 300, 10], 2048), [3, 1, 1]);
    let (dev, queue) = device();
    let v = Arc::new(RwLock::new(demo_volume(&[])));
    let mut r = MprRenderer::new(&dev, wgpu::TextureFormat::Rgba8Unorm).with_max_side(40);
    assert_eq!(r.sync(&dev, &queue, &v, usize::MAX), Some(0));
    assert!(r.is_strided());
    let vol = v.read().unwrap();
    let p = MprParams {
        plane: Plane::standard(PlaneKind::Axial, &vol.geometry, vol.centre(), 0.0),
        slab: Slab::default(),
        window: SOFT_TISSUE,
        invert: false,
    };
    let gpu = r.render_offscreen(&dev, &queue, &p).unwrap();
    let reference = cpu(&vol, &p);
    let mean_diff = gpu
        .iter()
        .zip(&reference)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / gpu.len() as f64;
    // A coarser picture of the same anatomy.
    assert!(mean_diff < 25.0, "mean difference {mean_diff}");
}
