//! The pipeline's last stages on files the pydicom corpus lacks: Presentation LUT Shape INVERSE, and a
//! file with both a VOI LUT table and a window (the table is the default view; W/L starts from the
//! window). Files are written with dicom-object and read back through the normal path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use radclip_dicom::{Rendered, Voi, pixel, render};

/// A 4×4 8-bit image with values 0, 16, …, 240 and the extra elements `extra`.
fn write(
    dir: &std::path::Path,
    name: &str,
    extra: Vec<DataElement<InMemDicomObject>>,
) -> std::path::PathBuf {
    let mut obj = InMemDicomObject::new_empty();
    let s = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v.to_string()));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    for e in [
        s(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        s(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1"),
        s(tags::MODALITY, VR::CS, "OT"),
        us(tags::SAMPLES_PER_PIXEL, 1),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 4),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from((0u8..16).map(|v| v * 16).collect::<Vec<u8>>()),
        ),
    ]
    .into_iter()
    .chain(extra)
    {
        obj.put(e);
    }
    if obj.get(tags::PHOTOMETRIC_INTERPRETATION).is_none() {
        obj.put(s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1"),
        )
        .unwrap();
    let path = dir.join(name);
    file.write_to_file(&path).unwrap();
    path
}

fn grey(path: &std::path::Path) -> Vec<u8> {
    let frames = pixel::decode_file(path).unwrap();
    match render(&frames[0], None) {
        Rendered::Grey { data, .. } => data,
        other => panic!("not grey: {other:?}"),
    }
}

fn cs(tag: dicom_core::Tag, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::CS, PrimitiveValue::from(v.to_string()))
}

#[test]
fn presentation_lut_shape_inverse() {
    let dir = tempfile::tempdir().unwrap();
    let plain = grey(&write(dir.path(), "m2.dcm", vec![]));
    let identity = grey(&write(
        dir.path(),
        "m2-identity.dcm",
        vec![cs(tags::PRESENTATION_LUT_SHAPE, "IDENTITY")],
    ));
    let inverse = grey(&write(
        dir.path(),
        "m2-inverse.dcm",
        vec![cs(tags::PRESENTATION_LUT_SHAPE, "INVERSE")],
    ));
    let mono1 = grey(&write(
        dir.path(),
        "m1.dcm",
        vec![cs(tags::PHOTOMETRIC_INTERPRETATION, "MONOCHROME1")],
    ));
    // DX writes INVERSE with MONOCHROME1 to restate the inversion, not to undo it.
    let mono1_inverse = grey(&write(
        dir.path(),
        "m1-inverse.dcm",
        vec![
            cs(tags::PHOTOMETRIC_INTERPRETATION, "MONOCHROME1"),
            cs(tags::PRESENTATION_LUT_SHAPE, "INVERSE"),
        ],
    ));
    assert_eq!(plain, identity);
    assert_eq!(plain.first(), Some(&0));
    assert_eq!(plain.last(), Some(&255));
    let flipped: Vec<u8> = plain.iter().map(|&v| 255 - v).collect();
    assert_eq!(inverse, flipped);
    assert_eq!(mono1, flipped);
    assert_eq!(mono1_inverse, flipped);
}

#[test]
fn voi_lut_table_is_the_default_and_window_starts_the_drag() {
    let dir = tempfile::tempdir().unwrap();
    // A 16-bit table over inputs 100..=163 rising 0 → 64,512; a window that would show 0..=255.
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::LUT_DESCRIPTOR,
        VR::US,
        PrimitiveValue::U16(vec![64u16, 100, 16].into()),
    ));
    item.put(DataElement::new(
        tags::LUT_DATA,
        VR::US,
        PrimitiveValue::U16((0u16..64).map(|v| v * 1024).collect()),
    ));
    let ds = |tag, v: &str| DataElement::new(tag, VR::DS, PrimitiveValue::from(v.to_string()));
    let path = write(
        dir.path(),
        "voi.dcm",
        vec![
            DataElement::new(
                tags::VOILUT_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            ds(tags::WINDOW_CENTER, "128"),
            ds(tags::WINDOW_WIDTH, "256"),
        ],
    );
    let frame = &pixel::decode_file(&path).unwrap()[0];
    assert!(matches!(frame.default_voi(), Voi::Table(_)));
    assert_eq!(frame.default_window().0.center, 128.0);
    let data = grey(&path);
    // Inputs below 100 take the first entry, above 163 the last (63 · 1024 / 65535 · 255 = 251).
    let expected: Vec<u8> = (0u16..16)
        .map(|i| {
            let idx = (i * 16).saturating_sub(100).min(63);
            (f64::from(idx * 1024) / 65535.0 * 255.0).round() as u8
        })
        .collect();
    assert_eq!(data, expected);
    // The user's window replaces the table.
    let windowed = match render(frame, Some(frame.default_window())) {
        Rendered::Grey { data, .. } => data,
        _ => unreachable!(),
    };
    assert_ne!(windowed, data);
    assert_eq!(windowed.last(), Some(&240));
}
