//! `radclip reslice`: a series as a volume, reformatted along a plane through a point, as PNG and raw
//! modality values. Wiring only; the volume and reslicing are in `radclip_dicom::volume`.

use std::path::PathBuf;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use radclip_dicom::volume::{Plane, PlaneKind, Slab, SlabMode, Volume};

pub struct ResliceArgs {
    pub input: PathBuf,
    pub plane: String,
    pub normal: Option<String>,
    pub through: Option<String>,
    pub slab: f64,
    pub mode: String,
    pub spacing: Option<f64>,
    pub out: PathBuf,
    pub raw: Option<PathBuf>,
    pub json: bool,
}

/// "X,Y,Z" as three numbers.
fn triple(s: &str, what: &str) -> anyhow::Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{what} takes X,Y,Z in mm, not \"{s}\""))?;
    match v.as_slice() {
        [x, y, z] => Ok([*x, *y, *z]),
        _ => bail!("{what} takes three numbers X,Y,Z, not \"{s}\""),
    }
}

pub fn reslice(a: ResliceArgs) -> anyhow::Result<()> {
    let kind = PlaneKind::parse(&a.plane).with_context(|| {
        format!(
            "--plane takes axial, coronal or sagittal, not \"{}\"",
            a.plane
        )
    })?;
    let mode = SlabMode::parse(&a.mode)
        .with_context(|| format!("--mode takes mip, minip or mean, not \"{}\"", a.mode))?;
    let tree = radclip_dicom::scan(&a.input)?;
    // The image series with the most frames: the volume a folder of one study is for.
    let Some(series) = tree.largest_image_series() else {
        bail!("no image series in {}", a.input.display());
    };
    let t = Instant::now();
    let volume = RwLock::new(
        Volume::for_series(series)
            .with_context(|| format!("{} cannot be reformatted", series.label()))?,
    );
    let filled = radclip_dicom::volume::fill(series, &volume, &AtomicBool::new(false), &|_| {});
    if let Some((k, why)) = filled.failed.first() {
        bail!("slice {k} of {} could not be read: {why}", series.label());
    }
    let volume = volume
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a decoding thread failed"))?;
    let volume_ms = t.elapsed().as_secs_f64() * 1e3;
    let through = match &a.through {
        Some(s) => triple(s, "--through")?,
        None => volume.centre(),
    };
    let spacing = a.spacing.unwrap_or(0.0);
    let plane = match &a.normal {
        Some(n) => Plane::oblique(triple(n, "--normal")?, &volume.geometry, through, spacing)
            .context("--normal must not be zero")?,
        None => Plane::standard(kind, &volume.geometry, through, spacing),
    };
    let slab = Slab {
        thickness_mm: a.slab.max(0.0),
        mode,
    };
    let t = Instant::now();
    let out = volume.reslice(&plane, slab);
    let reslice_ms = t.elapsed().as_secs_f64() * 1e3;
    // Rendered with the series' own window (the first slice's); outside the volume black.
    let window = filled.window.unwrap_or((
        radclip_dicom::Window::from_range(-1000.0, 1000.0),
        radclip_dicom::VoiFunction::Linear,
    ));
    let rendered = radclip_dicom::render_values(
        &out.values,
        plane.rows as u32,
        plane.columns as u32,
        window,
        false,
    );
    radclip_dicom::export::write_png(&rendered, &a.out)?;
    if let Some(raw) = &a.raw {
        let npy = radclip_clip::heatmap::npy_f32(&[plane.rows, plane.columns], &out.values);
        radclip_dicom::export::write_atomic(raw, &npy)
            .with_context(|| format!("cannot write {}", raw.display()))?;
    }
    if a.json {
        let mut v = serde_json::to_value(&plane)?;
        v["slab"] = serde_json::to_value(slab)?;
        v["through_mm"] = serde_json::json!(through);
        v["series"] = serde_json::json!(series.label());
        let interpolated = volume
            .plan()
            .iter()
            .filter(|p| matches!(p, radclip_dicom::geometry::SliceSource::Between { .. }))
            .count();
        v["volume"] = serde_json::json!({"dims": volume.geometry.dims,
            "spacing_mm": volume.geometry.spacing, "bytes": volume.byte_len(), "ms": volume_ms,
            "gaps": volume.gaps(), "interpolated_slices": interpolated});
        v["reslice_ms"] = serde_json::json!(reslice_ms);
        v["out"] = serde_json::json!(a.out.display().to_string());
        println!("{v}");
    } else {
        eprintln!(
            "radclip: {} × {} at {:.2} mm through ({:.1}, {:.1}, {:.1}) written to {}",
            plane.rows,
            plane.columns,
            plane.pixel_spacing_mm[0],
            through[0],
            through[1],
            through[2],
            a.out.display()
        );
    }
    Ok(())
}
