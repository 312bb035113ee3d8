//! `radclip info`: the study tree of a folder, or the image description of one file.

use std::path::Path;

use radclip_dicom as dicom;
use serde::Serialize;

#[derive(Serialize)]
struct FileInfo {
    path: String,
    modality: Option<String>,
    sop_class_uid: String,
    transfer_syntax: String,
    transfer_syntax_name: Option<String>,
    rows: Option<u32>,
    columns: Option<u32>,
    frames: Option<u32>,
    samples_per_pixel: Option<u16>,
    bits_allocated: Option<u16>,
    bits_stored: Option<u16>,
    signed: Option<bool>,
    photometric_interpretation: Option<String>,
    pixel_spacing_mm: Option<[f64; 2]>,
    pixel_spacing_source: Option<&'static str>,
    /// Why the image cannot be shown, if it cannot (decoding is attempted).
    image_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<dicom::dump::TagRow>>,
}

pub fn run(path: &Path, json: bool, tags: bool) -> anyhow::Result<()> {
    if path.is_file() && !is_dicomdir(path) {
        let info = file_info(path, tags)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            print_file(&info);
        }
        return Ok(());
    }
    let tree = dicom::scan(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tree_json(&tree))?);
    } else {
        print_tree(&tree);
    }
    Ok(())
}

fn is_dicomdir(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
}

fn file_info(path: &Path, with_tags: bool) -> anyhow::Result<FileInfo> {
    let obj = dicom::pixel::open_full(path)?;
    let px = dicom::pixel::PixelFormat::read(&obj);
    let spacing = dicom::geometry::pixel_spacing(&obj, 0);
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let ts_name = dicom_transfer_syntax_name(&ts);
    let image_error = match dicom::pixel::decode_all(&obj, path) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    Ok(FileInfo {
        path: path.display().to_string(),
        modality: dicom::attrs::string(&obj, dicom_dictionary_std::tags::MODALITY),
        sop_class_uid: obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string(),
        transfer_syntax: ts,
        transfer_syntax_name: ts_name,
        rows: px.as_ref().map(|p| p.rows),
        columns: px.as_ref().map(|p| p.cols),
        frames: px.as_ref().map(|p| p.frames),
        samples_per_pixel: px.as_ref().map(|p| p.samples_per_pixel),
        bits_allocated: px.as_ref().map(|p| p.bits_allocated),
        bits_stored: px.as_ref().map(|p| p.bits_stored),
        signed: px.as_ref().map(|p| p.signed),
        photometric_interpretation: px.as_ref().map(|p| p.photometric.clone()),
        pixel_spacing_mm: spacing.map(|s| s.0),
        pixel_spacing_source: spacing.map(|s| dicom::study::spacing_label(s.1)),
        image_error,
        tags: with_tags.then(|| dicom::dump::rows(&obj)),
    })
}

fn dicom_transfer_syntax_name(uid: &str) -> Option<String> {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
}

fn print_file(i: &FileInfo) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("file:            {}", i.path);
    println!("modality:        {}", opt(i.modality.clone()));
    println!(
        "transfer syntax: {} ({})",
        i.transfer_syntax,
        opt(i.transfer_syntax_name.clone())
    );
    println!(
        "size:            {} x {} (columns x rows), {} frame(s)",
        opt(i.columns.map(|v| v.to_string())),
        opt(i.rows.map(|v| v.to_string())),
        opt(i.frames.map(|v| v.to_string()))
    );
    println!(
        "bits:            {} allocated, {} stored, {}",
        opt(i.bits_allocated.map(|v| v.to_string())),
        opt(i.bits_stored.map(|v| v.to_string())),
        match i.signed {
            Some(true) => "signed",
            Some(false) => "unsigned",
            None => "-",
        }
    );
    println!(
        "photometric:     {} ({} sample(s) per pixel)",
        opt(i.photometric_interpretation.clone()),
        opt(i.samples_per_pixel.map(|v| v.to_string()))
    );
    println!(
        "pixel spacing:   {}",
        match (i.pixel_spacing_mm, i.pixel_spacing_source) {
            (Some([r, c]), Some(src)) => format!("{r} x {c} mm (row x column, from {src})"),
            _ => "-".into(),
        }
    );
    if let Some(e) = &i.image_error {
        println!("image:           cannot be shown: {e}");
    }
    if let Some(tags) = &i.tags {
        for t in tags {
            println!(
                "{}{} {:2} {:40} {}",
                "  ".repeat(t.depth),
                t.tag,
                t.vr,
                t.name,
                t.value
            );
        }
    }
}

#[derive(Serialize)]
struct TreeJson<'a> {
    patients: Vec<PatientJson<'a>>,
    problems: &'a [dicom::study::FileProblem],
    other_files: usize,
}

#[derive(Serialize)]
struct PatientJson<'a> {
    id: &'a str,
    name: &'a str,
    studies: Vec<StudyJson<'a>>,
}

#[derive(Serialize)]
struct StudyJson<'a> {
    uid: &'a str,
    date: Option<&'a str>,
    description: &'a str,
    series: Vec<SeriesJson<'a>>,
}

#[derive(Serialize)]
struct SeriesJson<'a> {
    uid: &'a str,
    number: Option<i64>,
    modality: &'a str,
    description: &'a str,
    instances: usize,
    frames: usize,
    rendered: bool,
    volume: Option<dicom::VolumeGeometry>,
}

fn tree_json(t: &dicom::StudyTree) -> TreeJson<'_> {
    TreeJson {
        patients: t
            .patients
            .iter()
            .map(|p| PatientJson {
                id: &p.id,
                name: &p.name,
                studies: p
                    .studies
                    .iter()
                    .map(|s| StudyJson {
                        uid: &s.uid,
                        date: s.date.as_deref(),
                        description: &s.description,
                        series: s
                            .series
                            .iter()
                            .map(|se| SeriesJson {
                                uid: &se.uid,
                                number: se.number,
                                modality: &se.modality,
                                description: &se.description,
                                instances: se.instances.len(),
                                frames: se.frames.len(),
                                rendered: se.is_image(),
                                volume: dicom::VolumeGeometry::from_series(se).ok(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        problems: &t.problems,
        other_files: t.other_files,
    }
}

fn print_tree(t: &dicom::StudyTree) {
    for p in &t.patients {
        println!("Patient {} [{}]", p.name, p.id);
        for s in &p.studies {
            println!(
                "  Study {} {}",
                s.date.as_deref().unwrap_or("(no date)"),
                s.description
            );
            for se in &s.series {
                let vol = match dicom::VolumeGeometry::from_series(se) {
                    Ok(v) => format!(
                        ", volume {}x{}x{} at {:.3}x{:.3}x{:.3} mm",
                        v.dims[0], v.dims[1], v.dims[2], v.spacing[0], v.spacing[1], v.spacing[2]
                    ),
                    Err(_) => String::new(),
                };
                println!("    Series {}{vol}", se.label());
            }
        }
    }
    if t.other_files > 0 {
        println!("{} other (non-DICOM) file(s) ignored", t.other_files);
    }
    if !t.problems.is_empty() {
        println!("{} file(s) skipped:", t.problems.len());
        for p in &t.problems {
            println!("  {}: {}", p.path.display(), p.message);
        }
    }
}
