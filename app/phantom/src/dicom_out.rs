//! Phantom studies written as real DICOM: the radiograph as a DX image (For Presentation), the report as
//! a Basic Text SR in the same study, and the truth as a sidecar (masks as PNG, facts as JSON).

use std::path::{Path, PathBuf};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::error::{Error, Result};

/// A deterministic DICOM UID under the UUID-derived root 2.25 (a 128-bit number from the inputs).
pub fn uid(parts: &[u64]) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &p in parts {
        for b in p.to_le_bytes() {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }
    // 2.25 roots carry a UUID: keep it below 2^122 like a random UUID's payload.
    format!("2.25.{}", h >> 6)
}

/// Who and what a phantom study is; every name says it is synthetic.
#[derive(Debug, Clone)]
pub struct StudyIds {
    pub patient_name: String,
    pub patient_id: String,
    pub sex: &'static str,
    pub birth_date: String,
    pub study_uid: String,
    pub study_date: String,
    pub accession: String,
}

pub(crate) struct Builder(InMemDicomObject);

impl Builder {
    pub(crate) fn new() -> Self {
        Builder(InMemDicomObject::new_empty())
    }

    pub(crate) fn s(&mut self, tag: dicom_core::Tag, vr: VR, v: &str) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(v.to_string()),
        ));
        self
    }

    pub(crate) fn us(&mut self, tag: dicom_core::Tag, v: u16) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        self
    }

    pub(crate) fn seq(&mut self, tag: dicom_core::Tag, items: Vec<InMemDicomObject>) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
        self
    }

    pub(crate) fn put(&mut self, e: DataElement<InMemDicomObject>) -> &mut Self {
        self.0.put(e);
        self
    }

    /// The Image Pixel module of an n×n, 12-bits-in-16, unsigned MONOCHROME2 image, with its pixels.
    pub(crate) fn mono12(&mut self, n: u16, pixels: Vec<u16>) -> &mut Self {
        self.us(tags::SAMPLES_PER_PIXEL, 1)
            .s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
            .us(tags::ROWS, n)
            .us(tags::COLUMNS, n)
            .us(tags::BITS_ALLOCATED, 16)
            .us(tags::BITS_STORED, 12)
            .us(tags::HIGH_BIT, 11)
            .us(tags::PIXEL_REPRESENTATION, 0)
            .put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(pixels.into()),
            ))
    }

    pub(crate) fn done(self) -> InMemDicomObject {
        self.0
    }

    pub(crate) fn patient_study(&mut self, ids: &StudyIds) -> &mut Self {
        self.s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192")
            .s(tags::PATIENT_NAME, VR::PN, &ids.patient_name)
            .s(tags::PATIENT_ID, VR::LO, &ids.patient_id)
            .s(tags::PATIENT_BIRTH_DATE, VR::DA, &ids.birth_date)
            .s(tags::PATIENT_SEX, VR::CS, ids.sex)
            .s(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES")
            .s(tags::STUDY_INSTANCE_UID, VR::UI, &ids.study_uid)
            .s(tags::STUDY_DATE, VR::DA, &ids.study_date)
            .s(tags::STUDY_TIME, VR::TM, "090000")
            .s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "")
            .s(tags::STUDY_ID, VR::SH, "1")
            .s(tags::ACCESSION_NUMBER, VR::SH, &ids.accession)
            .s(tags::MANUFACTURER, VR::LO, "radclip phantom generator")
            .s(
                tags::INSTITUTION_NAME,
                VR::LO,
                "SYNTHETIC DATA - NOT A PATIENT",
            )
    }
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut b = Builder::new();
    b.s(tags::CODE_VALUE, VR::SH, value)
        .s(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme)
        .s(tags::CODE_MEANING, VR::LO, meaning);
    b.done()
}

pub(crate) fn write_file(
    path: &Path,
    obj: InMemDicomObject,
    sop_class: &str,
    sop_uid: &str,
) -> Result<()> {
    let err = |reason: String| Error::Write {
        path: path.to_path_buf(),
        reason,
    };
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_uid)
        .implementation_class_uid("2.25.240011522372843771931457139546217325377")
        .implementation_version_name("RADCLIP_PHANTOM");
    let file = obj.with_meta(meta).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| err(e.to_string()))?;
    radclip_dicom::export::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

/// The radiograph: DX Image Storage, For Presentation, 12 bits in 16, MONOCHROME2.
pub struct DxImage<'a> {
    pub pixels: &'a [u16],
    pub size: usize,
    pub pixel_mm: f64,
    pub series_uid: String,
    pub sop_uid: String,
    pub window: (f64, f64),
}

pub fn write_dx(path: &Path, ids: &StudyIds, img: &DxImage) -> Result<()> {
    let mut b = Builder::new();
    let spacing = format!("{:.4}\\{:.4}", img.pixel_mm, img.pixel_mm);
    let n = u16::try_from(img.size).map_err(|_| Error::Write {
        path: path.to_path_buf(),
        reason: "image too large".into(),
    })?;
    b.patient_study(ids)
        .s(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        )
        .s(tags::SOP_INSTANCE_UID, VR::UI, &img.sop_uid)
        .s(tags::MODALITY, VR::CS, "DX")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &img.series_uid)
        .s(tags::SERIES_NUMBER, VR::IS, "1")
        .s(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            "Chest PA (synthetic phantom)",
        )
        .s(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "SYNTHETIC CHEST RADIOGRAPH",
        )
        .s(tags::BODY_PART_EXAMINED, VR::CS, "CHEST")
        .s(tags::VIEW_POSITION, VR::CS, "PA")
        .s(tags::PATIENT_ORIENTATION, VR::CS, "R\\F")
        .s(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION")
        .s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY")
        .s(tags::INSTANCE_NUMBER, VR::IS, "1")
        .s(tags::CONTENT_DATE, VR::DA, &ids.study_date)
        .s(tags::CONTENT_TIME, VR::TM, "090000")
        .s(tags::BURNED_IN_ANNOTATION, VR::CS, "NO")
        .s(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
        .s(tags::IMAGER_PIXEL_SPACING, VR::DS, &spacing)
        .s(tags::PIXEL_SPACING, VR::DS, &spacing)
        .s(tags::PIXEL_SPACING_CALIBRATION_TYPE, VR::CS, "GEOMETRY")
        .s(tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR")
        .mono12(n, img.pixels.to_vec())
        .s(tags::RESCALE_INTERCEPT, VR::DS, "0")
        .s(tags::RESCALE_SLOPE, VR::DS, "1")
        .s(tags::RESCALE_TYPE, VR::LO, "US")
        .s(tags::WINDOW_CENTER, VR::DS, &format!("{:.0}", img.window.0))
        .s(tags::WINDOW_WIDTH, VR::DS, &format!("{:.0}", img.window.1))
        .s(tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
    write_file(
        path,
        b.done(),
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        &img.sop_uid,
    )
}

/// The report: Basic Text SR with a FINDINGS and an IMPRESSION text item, referencing the image.
pub struct TextSr<'a> {
    pub findings: &'a str,
    pub impression: &'a str,
    pub series_uid: String,
    pub sop_uid: String,
    /// (series, SOP class, SOP instance) of the image it reports on.
    pub evidence: (String, String, String),
}

pub fn write_sr(path: &Path, ids: &StudyIds, sr: &TextSr) -> Result<()> {
    let text_item = |concept: InMemDicomObject, text: &str| {
        let mut b = Builder::new();
        b.s(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS")
            .s(tags::VALUE_TYPE, VR::CS, "TEXT")
            .seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![concept])
            .s(tags::TEXT_VALUE, VR::UT, text);
        b.done()
    };
    let evidence = {
        let mut sop = Builder::new();
        sop.s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &sr.evidence.1)
            .s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &sr.evidence.2);
        let mut series = Builder::new();
        series
            .s(tags::SERIES_INSTANCE_UID, VR::UI, &sr.evidence.0)
            .seq(tags::REFERENCED_SOP_SEQUENCE, vec![sop.done()]);
        let mut study = Builder::new();
        study
            .s(tags::STUDY_INSTANCE_UID, VR::UI, &ids.study_uid)
            .seq(tags::REFERENCED_SERIES_SEQUENCE, vec![series.done()]);
        study.done()
    };
    let mut b = Builder::new();
    b.patient_study(ids)
        .s(tags::SOP_CLASS_UID, VR::UI, uids::BASIC_TEXT_SR_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &sr.sop_uid)
        .s(tags::MODALITY, VR::CS, "SR")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &sr.series_uid)
        .s(tags::SERIES_NUMBER, VR::IS, "2")
        .s(tags::SERIES_DESCRIPTION, VR::LO, "Report (synthetic)")
        .seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![])
        .s(tags::INSTANCE_NUMBER, VR::IS, "1")
        .s(tags::CONTENT_DATE, VR::DA, &ids.study_date)
        .s(tags::CONTENT_TIME, VR::TM, "093000")
        .s(tags::COMPLETION_FLAG, VR::CS, "COMPLETE")
        .s(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED")
        .seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![])
        .seq(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence],
        )
        .s(tags::VALUE_TYPE, VR::CS, "CONTAINER")
        .seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code("18748-4", "LN", "Diagnostic Imaging Report")],
        )
        .s(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE")
        .seq(
            tags::CONTENT_SEQUENCE,
            vec![
                text_item(code("121070", "DCM", "Findings"), sr.findings),
                text_item(code("121073", "DCM", "Impression"), sr.impression),
            ],
        );
    write_file(path, b.done(), uids::BASIC_TEXT_SR_STORAGE, &sr.sop_uid)
}

/// Writes a mask as an 8-bit PNG (255 inside), atomically.
pub fn write_mask_png(path: &Path, mask: &[bool], size: usize) -> Result<()> {
    let data: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    let err = |reason: String| Error::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut png = Vec::new();
    let n = u32::try_from(size).map_err(|_| err("mask too large".into()))?;
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &data,
        n,
        n,
        image::ExtendedColorType::L8,
    )
    .map_err(|e| err(e.to_string()))?;
    radclip_dicom::export::write_atomic(path, &png).map_err(|e| err(e.to_string()))
}

pub fn write_text(path: &Path, text: &str) -> Result<()> {
    radclip_dicom::export::write_atomic(path, text.as_bytes()).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(dir.to_path_buf())
}
