//! From paths to the patient → study → series tree. Only headers are read here (parsing stops before the
//! pixel data), in parallel; pixels are decoded later, on demand, by the loader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use rayon::prelude::*;
use serde::Serialize;

use crate::attrs::{self, Obj};
use crate::error::{Error, Result};
use crate::geometry::{FrameGeometry, SpacingSource};
use crate::pixel::PixelFormat;

/// SOP classes that carry pixel data but are not images to show (they are listed, not rendered).
pub(crate) const NOT_RENDERED_SOP_CLASSES: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.66.4", // Segmentation
    "1.2.840.10008.1.3.10",         // Media Storage Directory (DICOMDIR)
];

/// What the browser needs to know about one file, read without its pixel data.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub path: Arc<Path>,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    /// Present for image instances.
    pub pixel: Option<PixelFormat>,
    /// Geometry per frame (one entry for single-frame instances), when the file has it.
    pub frame_geometry: Vec<Option<FrameGeometry>>,
    /// Pixel spacing of the first frame and where it came from (present also without a position).
    pub spacing: Option<([f64; 2], SpacingSource)>,
    pub acquisition_time: Option<String>,
    /// Patient Orientation (0020,0020) as direction vectors along a row and down a column, for images
    /// without a position in space (radiographs): "L\\F" is ([1, 0, 0], [0, 0, -1]).
    pub patient_orientation: Option<([f64; 3], [f64; 3])>,
}

impl Instance {
    pub fn frames(&self) -> u32 {
        self.pixel.as_ref().map_or(0, |p| p.frames)
    }

    pub fn is_image(&self) -> bool {
        self.pixel.is_some() && !NOT_RENDERED_SOP_CLASSES.contains(&self.sop_class_uid.as_str())
    }
}

/// One displayable frame of a series: which instance, which frame in it, and where it lies.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRef {
    pub instance: usize,
    pub frame: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub uid: String,
    pub number: Option<i64>,
    pub modality: String,
    pub description: String,
    pub frame_of_reference: Option<String>,
    pub instances: Vec<Instance>,
    /// The frames in display order: by position along the slice normal when every frame has one,
    /// else by instance number and frame index.
    pub frames: Vec<FrameRef>,
}

impl Series {
    pub fn is_image(&self) -> bool {
        !self.frames.is_empty()
    }

    pub fn instance_of(&self, frame_index: usize) -> Option<(&Instance, u32)> {
        let fr = self.frames.get(frame_index)?;
        Some((self.instances.get(fr.instance)?, fr.frame))
    }

    pub fn geometry_of(&self, frame_index: usize) -> Option<&FrameGeometry> {
        let (inst, f) = self.instance_of(frame_index)?;
        inst.frame_geometry.get(f as usize)?.as_ref()
    }

    /// The frame whose plane passes nearest to patient point `p` (mm), and its distance from that
    /// plane; `None` when no frame has a position.
    pub fn nearest_frame(&self, p: [f64; 3]) -> Option<(usize, f64)> {
        (0..self.frames.len())
            .filter_map(|j| {
                let g = self.geometry_of(j)?;
                let d = crate::geometry::dot(g.normal(), p) - g.distance_along_normal();
                Some((j, d.abs()))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// A short human label: "CT 3: Chest 1.25 mm (120 images)".
    pub fn label(&self) -> String {
        let num = self.number.map(|n| format!(" {n}")).unwrap_or_default();
        let desc = if self.description.is_empty() {
            String::new()
        } else {
            format!(": {}", self.description)
        };
        if self.is_image() {
            format!(
                "{}{num}{desc} ({} images)",
                self.modality,
                self.frames.len()
            )
        } else {
            format!(
                "{}{num}{desc} ({} objects, not rendered)",
                self.modality,
                self.instances.len()
            )
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Study {
    pub uid: String,
    pub date: Option<String>,
    pub description: String,
    pub accession: Option<String>,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    pub id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub studies: Vec<Study>,
}

/// A file that could not be included, with the reason (no PHI: path and parser message only).
#[derive(Debug, Clone, Serialize)]
pub struct FileProblem {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StudyTree {
    pub patients: Vec<Patient>,
    /// DICOM files (by their "DICM" magic or a .dcm name) that could not be read, with the reason.
    pub problems: Vec<FileProblem>,
    /// Files in the scanned folders that are not DICOM at all (reports, masks, notes): not listed,
    /// as other viewers do, only counted.
    pub other_files: usize,
}

impl StudyTree {
    pub fn series(&self) -> impl Iterator<Item = &Series> {
        self.patients
            .iter()
            .flat_map(|p| &p.studies)
            .flat_map(|s| &s.series)
    }

    pub fn image_series(&self) -> impl Iterator<Item = &Series> {
        self.series().filter(|s| s.is_image())
    }

    /// The image series with the most frames: the one a folder of one study is for (what `radclip
    /// reslice`, `radclip find` and the benchmarks read).
    pub fn largest_image_series(&self) -> Option<&Series> {
        self.image_series().max_by_key(|s| s.frames.len())
    }
}

/// Scans a file, a folder (recursively) or a DICOMDIR into a study tree.
pub fn scan(path: &Path) -> Result<StudyTree> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files);
        files.sort();
        files
    } else if is_dicomdir(path) {
        dicomdir_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            reason: "the folder contains no files".into(),
        });
    }
    let read: Vec<std::result::Result<(Obj, Instance), FileProblem>> =
        files.par_iter().map(|p| read_header(p)).collect();
    let single = files.len() == 1;
    let mut headers = Vec::new();
    let mut problems = Vec::new();
    let mut other_files = 0;
    for r in read {
        match r {
            Ok(h) => headers.push(h),
            Err(p) if !single && !looks_like_dicom(&p.path) => other_files += 1,
            Err(p) => problems.push(p),
        }
    }
    if headers.is_empty() {
        let reason = match (single, problems.first()) {
            (true, Some(p)) => p.message.clone(),
            _ => format!("none of its {} files is a readable DICOM file", files.len()),
        };
        return Err(Error::NotDicom {
            path: path.to_path_buf(),
            reason,
        });
    }
    Ok(StudyTree {
        patients: group(headers),
        problems,
        other_files,
    })
}

/// The "DICM" magic after the 128-byte preamble, or a .dcm name (files without a preamble exist).
pub fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    let magic = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..] == b"DICM";
    magic
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() && !is_dicomdir(&p) => out.push(p),
            _ => {}
        }
    }
}

fn is_dicomdir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
}

/// The image files a DICOMDIR references (ReferencedFileID, relative to the DICOMDIR's folder).
fn dicomdir_files(path: &Path) -> Result<Vec<PathBuf>> {
    let obj = crate::pixel::open_object(path, false).map_err(|e| Error::NotDicom {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = attrs::items(&obj, tags::DIRECTORY_RECORD_SEQUENCE)
        .iter()
        .filter_map(|rec| {
            let parts = rec.get(tags::REFERENCED_FILE_ID)?.to_multi_str().ok()?;
            let mut p = base.to_path_buf();
            for part in parts.iter() {
                p.push(part.trim());
            }
            Some(resolve_case(p))
        })
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            reason: "the DICOMDIR references no files".into(),
        });
    }
    Ok(files)
}

/// DICOMDIR file IDs are upper case; media copied to case-sensitive file systems may be lower case.
fn resolve_case(p: PathBuf) -> PathBuf {
    if p.exists() {
        return p;
    }
    let lower = PathBuf::from(p.to_string_lossy().to_lowercase());
    if lower.exists() { lower } else { p }
}

fn read_header(path: &Path) -> std::result::Result<(Obj, Instance), FileProblem> {
    let problem = |message: String| FileProblem {
        path: path.to_path_buf(),
        message,
    };
    let file = crate::pixel::open_object(path, true)
        .map_err(|e| problem(format!("not a readable DICOM file: {e}")))?;
    let transfer_syntax = file
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let sop_class_uid = attrs::string(&file, tags::SOP_CLASS_UID).unwrap_or_else(|| {
        file.meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string()
    });
    let sop_instance_uid = attrs::string(&file, tags::SOP_INSTANCE_UID).unwrap_or_else(|| {
        file.meta()
            .media_storage_sop_instance_uid()
            .trim_end_matches('\0')
            .to_string()
    });
    let obj: Obj = file.into_inner();
    let pixel = PixelFormat::read(&obj);
    let frame_geometry = match &pixel {
        Some(p) => (0..p.frames)
            .map(|f| FrameGeometry::read(&obj, f))
            .collect(),
        None => Vec::new(),
    };
    let inst = Instance {
        path: Arc::from(path),
        sop_class_uid,
        sop_instance_uid,
        instance_number: attrs::int(&obj, tags::INSTANCE_NUMBER),
        transfer_syntax,
        pixel,
        frame_geometry,
        spacing: crate::geometry::pixel_spacing(&obj, 0),
        acquisition_time: attrs::string(&obj, tags::ACQUISITION_TIME),
        patient_orientation: attrs::string(&obj, tags::PATIENT_ORIENTATION).and_then(|s| {
            let mut parts = s.split('\\');
            let row = crate::geometry::direction_of_letters(parts.next()?)?;
            let col = crate::geometry::direction_of_letters(parts.next()?)?;
            Some((row, col))
        }),
    };
    Ok((obj, inst))
}

/// Groups instances into patients, studies and series, and orders each series' frames.
fn group(headers: Vec<(Obj, Instance)>) -> Vec<Patient> {
    let unknown = || "(unknown)".to_string();
    // patient id → study uid → series uid
    let mut patients: BTreeMap<String, Patient> = BTreeMap::new();
    let mut studies: BTreeMap<(String, String), Study> = BTreeMap::new();
    let mut series: BTreeMap<(String, String, String), Series> = BTreeMap::new();
    for (obj, inst) in headers {
        let pid = attrs::string(&obj, tags::PATIENT_ID).unwrap_or_default();
        let study_uid = attrs::string(&obj, tags::STUDY_INSTANCE_UID).unwrap_or_else(unknown);
        let series_uid = attrs::string(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_else(unknown);
        patients.entry(pid.clone()).or_insert_with(|| Patient {
            id: pid.clone(),
            name: attrs::string(&obj, tags::PATIENT_NAME).unwrap_or_default(),
            birth_date: attrs::string(&obj, tags::PATIENT_BIRTH_DATE),
            sex: attrs::string(&obj, tags::PATIENT_SEX),
            studies: Vec::new(),
        });
        studies
            .entry((pid.clone(), study_uid.clone()))
            .or_insert_with(|| Study {
                uid: study_uid.clone(),
                date: attrs::string(&obj, tags::STUDY_DATE),
                description: attrs::string(&obj, tags::STUDY_DESCRIPTION).unwrap_or_default(),
                accession: attrs::string(&obj, tags::ACCESSION_NUMBER),
                series: Vec::new(),
            });
        series
            .entry((pid, study_uid, series_uid.clone()))
            .or_insert_with(|| Series {
                uid: series_uid,
                number: attrs::int(&obj, tags::SERIES_NUMBER),
                modality: attrs::string(&obj, tags::MODALITY).unwrap_or_else(|| "OT".into()),
                description: attrs::string(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
                frame_of_reference: attrs::string(&obj, tags::FRAME_OF_REFERENCE_UID),
                instances: Vec::new(),
                frames: Vec::new(),
            })
            .instances
            .push(inst);
    }
    for ((pid, study_uid, _), mut s) in series {
        order_frames(&mut s);
        if let Some(st) = studies.get_mut(&(pid, study_uid)) {
            st.series.push(s);
        }
    }
    for ((pid, _), mut st) in studies {
        st.series
            .sort_by_key(|s| (!s.is_image(), s.number.unwrap_or(i64::MAX)));
        if let Some(p) = patients.get_mut(&pid) {
            p.studies.push(st);
        }
    }
    let mut out: Vec<Patient> = patients.into_values().collect();
    for p in &mut out {
        p.studies.sort_by(|a, b| b.date.cmp(&a.date));
    }
    out
}

/// Sorts frames along the slice normal when all share one orientation and have a position (PS3.3
/// C.7.6.2.1.1), else by instance number then frame index.
fn order_frames(s: &mut Series) {
    s.instances.sort_by_key(|i| {
        (
            i.instance_number.unwrap_or(i64::MAX),
            i.sop_instance_uid.clone(),
        )
    });
    let mut frames: Vec<(FrameRef, Option<&FrameGeometry>)> = s
        .instances
        .iter()
        .enumerate()
        .filter(|(_, inst)| inst.is_image())
        .flat_map(|(i, inst)| {
            (0..inst.frames()).map(move |f| {
                (
                    FrameRef {
                        instance: i,
                        frame: f,
                    },
                    inst.frame_geometry.get(f as usize).and_then(Option::as_ref),
                )
            })
        })
        .collect();
    let first = frames.first().and_then(|f| f.1).map(|g| g.orientation);
    let sortable = frames.len() > 1
        && first.is_some_and(|o| {
            frames.iter().all(|(_, g)| {
                g.is_some_and(|g| {
                    g.orientation
                        .iter()
                        .zip(o)
                        .all(|(a, b)| (a - b).abs() < 1e-3)
                })
            })
        });
    if sortable {
        frames.sort_by(|a, b| {
            let da = a.1.map_or(0.0, FrameGeometry::distance_along_normal);
            let db = b.1.map_or(0.0, FrameGeometry::distance_along_normal);
            da.total_cmp(&db)
        });
    }
    s.frames = frames.into_iter().map(|(f, _)| f).collect();
}

/// Where a series' pixel spacing came from, for measurement labels.
pub fn spacing_label(src: SpacingSource) -> &'static str {
    match src {
        SpacingSource::Patient => "PixelSpacing",
        SpacingSource::Detector => "ImagerPixelSpacing (at detector)",
    }
}
