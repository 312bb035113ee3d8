//! Phantom studies written as real DICOM: the radiograph as a DX image (For Presentation), the report as
//! a Basic Text SR in the same study, the finding masks as a DICOM Segmentation, and the truth as a sidecar
//! (masks as PNG too, facts as JSON).

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
        self.mono(n, 16, 12, VR::OW, PrimitiveValue::U16(pixels.into()))
    }

    /// The Image Pixel module of an n×n unsigned MONOCHROME2 image of `stored` bits in `allocated`.
    pub(crate) fn mono(
        &mut self,
        n: u16,
        allocated: u16,
        stored: u16,
        vr: VR,
        pixels: PrimitiveValue,
    ) -> &mut Self {
        self.us(tags::SAMPLES_PER_PIXEL, 1)
            .s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
            .us(tags::ROWS, n)
            .us(tags::COLUMNS, n)
            .us(tags::BITS_ALLOCATED, allocated)
            .us(tags::BITS_STORED, stored)
            .us(tags::HIGH_BIT, stored - 1)
            .us(tags::PIXEL_REPRESENTATION, 0)
            .put(DataElement::new(tags::PIXEL_DATA, vr, pixels))
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
        // Viewed as a PA radiograph is read: the patient's right on the viewer's left, so along a row
        // is toward the patient's left.
        .s(tags::PATIENT_ORIENTATION, VR::CS, "L\\F")
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

/// A coded concept: (code value, coding scheme, meaning).
pub type Code = (&'static str, &'static str, &'static str);

/// One segment of a SEG: a finding's label and coded meaning.
pub struct Segment {
    pub label: String,
    pub description: String,
    pub category: Code,
    pub property: Code,
}

/// One frame of a SEG: a segment's mask on one source image.
pub struct SegFrame<'a> {
    /// Segment number, from 1.
    pub segment: u16,
    /// (SOP class, SOP instance) of the segmented image.
    pub source: (String, String),
    /// The source image's ImagePositionPatient, for the frames of a volume.
    pub position: Option<[f64; 3]>,
    pub mask: &'a [bool],
}

/// What a SEG of a volume also carries: the images' frame of reference, orientation and thickness.
pub struct SegVolume {
    pub frame_of_reference: String,
    pub orientation: [f64; 6],
    pub slice_mm: f64,
}

/// The segmentation category of lesions and findings (SNOMED CT).
pub const MORPHOLOGICALLY_ABNORMAL: Code =
    ("49755003", "SCT", "Morphologically Abnormal Structure");

/// The coded meaning of a finding's mask (SNOMED CT, as DICOM's segmentation property contexts use):
/// (category, property type).
pub fn segment_codes(kind: crate::Kind) -> (Code, Code) {
    use crate::Kind;
    let abnormal = MORPHOLOGICALLY_ABNORMAL;
    match kind {
        Kind::Nodule => (abnormal, ("27925004", "SCT", "Nodule")),
        Kind::Mass => (abnormal, ("4147007", "SCT", "Mass")),
        Kind::PleuralEffusion => (abnormal, ("60046008", "SCT", "Pleural effusion")),
        Kind::Pneumothorax => (abnormal, ("36118008", "SCT", "Pneumothorax")),
        Kind::Consolidation => (abnormal, ("95436008", "SCT", "Lung consolidation")),
        // The mask is the enlarged heart's silhouette: an anatomical structure, described as cardiomegaly.
        Kind::Cardiomegaly => (
            ("91723000", "SCT", "Anatomical Structure"),
            ("80891009", "SCT", "Heart"),
        ),
    }
}

/// The masks as a DICOM Segmentation (binary) in the images' study, each frame referencing its source
/// image, so other viewers (OHIF, Weasis, 3D Slicer) overlay them.
pub struct SegObject<'a> {
    pub size: usize,
    pub pixel_mm: f64,
    pub series_uid: String,
    pub sop_uid: String,
    /// The segmented images' series.
    pub source_series: String,
    pub volume: Option<SegVolume>,
    pub segments: Vec<Segment>,
    pub frames: Vec<SegFrame<'a>>,
}

/// Bits of `frames` packed as DICOM's 1-bit pixel data wants them: pixel i of the concatenated frames is
/// bit i % 8 (least significant first) of byte i / 8, padded to an even length.
pub fn pack_bits<'a>(frames: impl Iterator<Item = &'a [bool]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0usize;
    for frame in frames {
        for &v in frame {
            if i.is_multiple_of(8) {
                out.push(0u8);
            }
            if v && let Some(b) = out.last_mut() {
                *b |= 1 << (i % 8);
            }
            i += 1;
        }
    }
    if !out.len().is_multiple_of(2) {
        out.push(0);
    }
    out
}

pub fn write_seg(path: &Path, ids: &StudyIds, seg: &SegObject) -> Result<()> {
    let err = |reason: String| Error::Write {
        path: path.to_path_buf(),
        reason,
    };
    let n = u16::try_from(seg.size).map_err(|_| err("image too large".into()))?;
    if seg.segments.is_empty() || seg.frames.is_empty() {
        return Err(err(
            "a segmentation needs at least one segment and one frame".into(),
        ));
    }
    if seg
        .frames
        .iter()
        .any(|f| f.mask.len() != seg.size * seg.size)
    {
        return Err(err("a mask does not match the image size".into()));
    }
    if seg
        .frames
        .iter()
        .any(|f| f.segment == 0 || usize::from(f.segment) > seg.segments.len())
    {
        return Err(err("a frame names a segment that does not exist".into()));
    }
    if seg.volume.is_some() && seg.frames.iter().any(|f| f.position.is_none()) {
        return Err(err("a frame of a volume has no position".into()));
    }
    let coded = |c: Code| code(c.0, c.1, c.2);
    let segments: Vec<InMemDicomObject> = seg
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut algo = Builder::new();
            algo.s(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION"));
            let mut b = Builder::new();
            b.us(tags::SEGMENT_NUMBER, (i + 1) as u16)
                .s(tags::SEGMENT_LABEL, VR::LO, &s.label)
                .s(tags::SEGMENT_DESCRIPTION, VR::ST, &s.description)
                // The masks are the generator's ground truth, computed, not drawn.
                .s(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC")
                .s(
                    tags::SEGMENT_ALGORITHM_NAME,
                    VR::LO,
                    "radclip phantom generator",
                )
                .seq(
                    tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                    vec![coded(s.category)],
                )
                .seq(
                    tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
                    vec![coded(s.property)],
                );
            b.done()
        })
        .collect();
    let source_ref = |source: &(String, String)| {
        let mut b = Builder::new();
        b.s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &source.0).s(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &source.1,
        );
        b
    };
    // A volume's second dimension is the slice: its rank along the positions' z, from 1.
    let mut zs: Vec<f64> = seg
        .frames
        .iter()
        .filter_map(|f| f.position.map(|p| p[2]))
        .collect();
    zs.sort_by(f64::total_cmp);
    zs.dedup();
    let per_frame: Vec<InMemDicomObject> = seg
        .frames
        .iter()
        .map(|f| {
            let number = f.segment;
            let mut index = vec![u32::from(number)];
            if let (Some(_), Some(p)) = (&seg.volume, f.position) {
                let rank = zs.iter().position(|z| *z == p[2]).unwrap_or(0);
                index.push(rank as u32 + 1);
            }
            let mut content = Builder::new();
            content.put(DataElement::new(
                tags::DIMENSION_INDEX_VALUES,
                VR::UL,
                PrimitiveValue::U32(index.into()),
            ));
            let mut ident = Builder::new();
            ident.us(tags::REFERENCED_SEGMENT_NUMBER, number);
            let mut source = source_ref(&f.source);
            // Each mask pixel is its source pixel (no resampling).
            source.s(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES");
            source.seq(
                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                vec![code(
                    "121322",
                    "DCM",
                    "Source image for image processing operation",
                )],
            );
            let mut derivation = Builder::new();
            derivation
                .seq(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![code("113076", "DCM", "Segmentation")],
                )
                .seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source.done()]);
            let mut frame = Builder::new();
            frame
                .seq(tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation.done()])
                .seq(tags::FRAME_CONTENT_SEQUENCE, vec![content.done()]);
            if let Some(p) = f.position {
                let mut plane = Builder::new();
                plane.s(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds3(p));
                frame.seq(tags::PLANE_POSITION_SEQUENCE, vec![plane.done()]);
            }
            frame.seq(tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![ident.done()]);
            frame.done()
        })
        .collect();
    let shared = {
        let spacing = format!("{:.4}\\{:.4}", seg.pixel_mm, seg.pixel_mm);
        let thickness = seg.volume.as_ref().map_or(1.0, |v| v.slice_mm);
        let mut measures = Builder::new();
        measures.s(tags::PIXEL_SPACING, VR::DS, &spacing).s(
            tags::SLICE_THICKNESS,
            VR::DS,
            &format!("{thickness}"),
        );
        let mut b = Builder::new();
        b.seq(tags::PIXEL_MEASURES_SEQUENCE, vec![measures.done()]);
        if let Some(v) = &seg.volume {
            let o: Vec<String> = v.orientation.iter().map(|x| format!("{x}")).collect();
            let mut plane = Builder::new();
            plane.s(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &o.join("\\"));
            b.seq(tags::PLANE_ORIENTATION_SEQUENCE, vec![plane.done()]);
        }
        b.done()
    };
    let dimension_org = format!("{}.1", seg.sop_uid);
    let dimension = |pointer, group, label: &str| {
        let mut b = Builder::new();
        b.s(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_org)
            .put(DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![pointer].into()),
            ))
            .put(DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![group].into()),
            ))
            .s(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        b.done()
    };
    let mut dimensions = vec![dimension(
        tags::REFERENCED_SEGMENT_NUMBER,
        tags::SEGMENT_IDENTIFICATION_SEQUENCE,
        "Segment number",
    )];
    if seg.volume.is_some() {
        dimensions.push(dimension(
            tags::IMAGE_POSITION_PATIENT,
            tags::PLANE_POSITION_SEQUENCE,
            "Image position",
        ));
    }
    let organization = {
        let mut b = Builder::new();
        b.s(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_org);
        b.done()
    };
    let referenced_series = {
        let mut sources: Vec<&(String, String)> = Vec::new();
        for f in &seg.frames {
            if !sources.contains(&&f.source) {
                sources.push(&f.source);
            }
        }
        let mut b = Builder::new();
        b.s(tags::SERIES_INSTANCE_UID, VR::UI, &seg.source_series)
            .seq(
                tags::REFERENCED_INSTANCE_SEQUENCE,
                sources.into_iter().map(|s| source_ref(s).done()).collect(),
            );
        b.done()
    };
    let pixels = pack_bits(seg.frames.iter().map(|f| f.mask));
    let mut b = Builder::new();
    b.patient_study(ids)
        .s(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE)
        .s(tags::SOP_INSTANCE_UID, VR::UI, &seg.sop_uid)
        .s(tags::MODALITY, VR::CS, "SEG")
        .s(tags::SERIES_INSTANCE_UID, VR::UI, &seg.series_uid)
        .s(tags::SERIES_NUMBER, VR::IS, "3")
        .s(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            "Ground-truth finding masks (synthetic)",
        )
        .seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![])
        .s(tags::MANUFACTURER_MODEL_NAME, VR::LO, "radclip phantom")
        .s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0")
        .s(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION"))
        .s(tags::INSTANCE_NUMBER, VR::IS, "1")
        .s(tags::CONTENT_DATE, VR::DA, &ids.study_date)
        .s(tags::CONTENT_TIME, VR::TM, "091500")
        .s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY")
        .s(tags::CONTENT_LABEL, VR::CS, "GROUND_TRUTH")
        .s(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            "Masks of the phantom's findings",
        )
        .s(tags::CONTENT_CREATOR_NAME, VR::PN, "radclip^phantom")
        .s(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
        .s(tags::SEGMENTATION_TYPE, VR::CS, "BINARY")
        .s(tags::SEGMENTS_OVERLAP, VR::CS, "UNDEFINED")
        .seq(tags::SEGMENT_SEQUENCE, segments)
        .seq(tags::DIMENSION_ORGANIZATION_SEQUENCE, vec![organization])
        .seq(tags::DIMENSION_INDEX_SEQUENCE, dimensions)
        .seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared])
        .seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame)
        .seq(tags::REFERENCED_SERIES_SEQUENCE, vec![referenced_series])
        .s(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &seg.frames.len().to_string(),
        )
        // 1-bit binary segments (PS3.3 C.8.20.2).
        .mono(n, 1, 1, VR::OB, PrimitiveValue::U8(pixels.into()));
    if let Some(v) = &seg.volume {
        b.s(tags::FRAME_OF_REFERENCE_UID, VR::UI, &v.frame_of_reference)
            .s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    }
    write_file(path, b.done(), uids::SEGMENTATION_STORAGE, &seg.sop_uid)
}

/// A position as a DS triple.
fn ds3(p: [f64; 3]) -> String {
    format!("{:.3}\\{:.3}\\{:.3}", p[0], p[1], p[2])
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
