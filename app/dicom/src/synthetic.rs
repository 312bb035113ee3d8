//! A small synthetic CT phantom written as real DICOM, so radclip ships a demo study it may redistribute.
//! Deterministic: the same arguments give byte-identical files. (The full phantom generator with findings
//! and reports is a separate, later crate.)

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::error::{Error, Result};

pub struct CtPhantom {
    pub size: u16,
    pub slices: u16,
    pub pixel_mm: f64,
    pub slice_mm: f64,
}

impl Default for CtPhantom {
    fn default() -> Self {
        CtPhantom {
            size: 256,
            slices: 32,
            pixel_mm: 1.4,
            slice_mm: 5.0,
        }
    }
}

const UID_ROOT: &str = "2.25.4711";

/// Hounsfield units of the phantom at (x, y, z) in mm from the volume centre.
fn hu(x: f64, y: f64, z: f64) -> f64 {
    let inside = |cx: f64, cy: f64, rx: f64, ry: f64| {
        ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0
    };
    if !inside(0.0, 0.0, 160.0, 110.0) {
        return -1000.0;
    }
    if inside(0.0, 0.0, 154.0, 104.0) {
        // A nodule in the right lung (image left), present on the middle slices only.
        if ((x + 70.0).powi(2) + (y + 20.0).powi(2) + (z - 5.0).powi(2)).sqrt() < 12.0 {
            return 30.0;
        }
        if inside(-70.0, -10.0, 55.0, 80.0) || inside(70.0, -10.0, 55.0, 80.0) {
            return -850.0;
        }
        if inside(0.0, 80.0, 18.0, 16.0) {
            return if inside(0.0, 80.0, 10.0, 9.0) {
                300.0
            } else {
                900.0
            };
        }
        if inside(15.0, -5.0, 45.0, 40.0) {
            return 45.0;
        }
        return 20.0;
    }
    -100.0 // subcutaneous fat
}

/// Writes the phantom series into `dir` as `CT0001.dcm`… (explicit VR little endian, unsigned with a
/// rescale intercept of −1024 as most scanners store CT).
pub fn write_ct_phantom(dir: &Path, p: &CtPhantom) -> Result<()> {
    let err = |reason: String| Error::Export {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let study_uid = format!("{UID_ROOT}.1");
    let series_uid = format!("{UID_ROOT}.1.1");
    let for_uid = format!("{UID_ROOT}.1.2");
    let n = f64::from(p.size);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for s in 0..p.slices {
        let z = (f64::from(s) - f64::from(p.slices) / 2.0) * p.slice_mm;
        let mut px = Vec::with_capacity(usize::from(p.size) * usize::from(p.size));
        for r in 0..p.size {
            for c in 0..p.size {
                let x = (f64::from(c) + 0.5 - n / 2.0) * p.pixel_mm;
                let y = (f64::from(r) + 0.5 - n / 2.0) * p.pixel_mm;
                // xorshift noise, about ±10 HU
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let noise = (seed % 21) as f64 - 10.0;
                px.push((hu(x, y, z) + noise + 1024.0).clamp(0.0, 4095.0) as u16);
            }
        }
        let sop_uid = format!("{UID_ROOT}.1.1.{}", s + 1);
        let origin = [
            -n / 2.0 * p.pixel_mm + p.pixel_mm / 2.0,
            -n / 2.0 * p.pixel_mm + p.pixel_mm / 2.0,
            z,
        ];
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, v: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, v));
        };
        let s_ = |v: &str| PrimitiveValue::from(v.to_string());
        put(tags::SPECIFIC_CHARACTER_SET, VR::CS, s_("ISO_IR 192"));
        put(tags::SOP_CLASS_UID, VR::UI, s_(uids::CT_IMAGE_STORAGE));
        put(tags::SOP_INSTANCE_UID, VR::UI, s_(&sop_uid));
        put(tags::STUDY_DATE, VR::DA, s_("20260101"));
        put(tags::MODALITY, VR::CS, s_("CT"));
        put(tags::MANUFACTURER, VR::LO, s_("radclip synthetic phantom"));
        put(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            s_("SYNTHETIC CHEST PHANTOM"),
        );
        put(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            s_("Axial 5 mm (synthetic, not a patient)"),
        );
        put(tags::PATIENT_NAME, VR::PN, s_("SYNTHETIC^PHANTOM"));
        put(tags::PATIENT_ID, VR::LO, s_("RADCLIP-DEMO-0001"));
        put(tags::PATIENT_BIRTH_DATE, VR::DA, s_("19700101"));
        put(tags::PATIENT_SEX, VR::CS, s_("O"));
        put(
            tags::SLICE_THICKNESS,
            VR::DS,
            s_(&format!("{}", p.slice_mm)),
        );
        put(tags::STUDY_INSTANCE_UID, VR::UI, s_(&study_uid));
        put(tags::SERIES_INSTANCE_UID, VR::UI, s_(&series_uid));
        put(tags::STUDY_ID, VR::SH, s_("1"));
        put(tags::SERIES_NUMBER, VR::IS, s_("1"));
        put(tags::INSTANCE_NUMBER, VR::IS, s_(&format!("{}", s + 1)));
        put(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            s_(&format!(
                "{:.3}\\{:.3}\\{:.3}",
                origin[0], origin[1], origin[2]
            )),
        );
        put(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            s_("1\\0\\0\\0\\1\\0"),
        );
        put(tags::FRAME_OF_REFERENCE_UID, VR::UI, s_(&for_uid));
        put(tags::SLICE_LOCATION, VR::DS, s_(&format!("{z:.3}")));
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, s_("MONOCHROME2"));
        put(tags::ROWS, VR::US, PrimitiveValue::from(p.size));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(p.size));
        put(
            tags::PIXEL_SPACING,
            VR::DS,
            s_(&format!("{}\\{}", p.pixel_mm, p.pixel_mm)),
        );
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16));
        put(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
        put(tags::WINDOW_CENTER, VR::DS, s_("40\\-600"));
        put(tags::WINDOW_WIDTH, VR::DS, s_("400\\1500"));
        put(tags::RESCALE_INTERCEPT, VR::DS, s_("-1024"));
        put(tags::RESCALE_SLOPE, VR::DS, s_("1"));
        put(tags::RESCALE_TYPE, VR::LO, s_("HU"));
        put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(px.into()));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(sop_uid.as_str());
        let file = obj.with_meta(meta).map_err(|e| err(e.to_string()))?;
        let path = dir.join(format!("CT{:04}.dcm", s + 1));
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).map_err(|e| err(e.to_string()))?;
        crate::export::write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}
