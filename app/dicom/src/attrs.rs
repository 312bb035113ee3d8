//! Small, forgiving readers of DICOM attributes. A missing or malformed optional attribute reads as `None`,
//! never as an error: real files are messy and one odd value must not stop a study from opening.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;

pub type Obj = InMemDicomObject;

/// An element some writer stored with VR UN: its bytes, and the VR the dictionary gives the tag. Its
/// value is then read as that VR (as pydicom does), not as raw bytes: "1 " as a slope of 49 would
/// silently change every pixel value.
fn unknown_vr(obj: &Obj, tag: Tag) -> Option<(Vec<u8>, VR)> {
    let e = obj.get(tag)?;
    if e.vr() != VR::UN {
        return None;
    }
    let vr = StandardDataDictionary.by_tag(tag)?.vr().relaxed();
    Some((e.to_bytes().ok()?.into_owned(), vr))
}

/// The text values of a UN element whose dictionary VR is a text VR (DS, IS, CS…).
fn unknown_text(obj: &Obj, tag: Tag) -> Option<Vec<String>> {
    let (bytes, vr) = unknown_vr(obj, tag)?;
    if !matches!(
        vr,
        VR::DS
            | VR::IS
            | VR::CS
            | VR::LO
            | VR::SH
            | VR::LT
            | VR::ST
            | VR::UT
            | VR::UI
            | VR::DA
            | VR::TM
    ) {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    Some(
        text.split('\\')
            .map(|v| v.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
            .collect(),
    )
}

/// The numbers of a UN element whose dictionary VR is a binary integer VR (little endian).
fn unknown_binary_int(obj: &Obj, tag: Tag) -> Option<i64> {
    let (b, vr) = unknown_vr(obj, tag)?;
    match (vr, b.as_slice()) {
        (VR::US, [a, c, ..]) => Some(i64::from(u16::from_le_bytes([*a, *c]))),
        (VR::SS, [a, c, ..]) => Some(i64::from(i16::from_le_bytes([*a, *c]))),
        (VR::UL, [a, c, d, e, ..]) => Some(i64::from(u32::from_le_bytes([*a, *c, *d, *e]))),
        (VR::SL, [a, c, d, e, ..]) => Some(i64::from(i32::from_le_bytes([*a, *c, *d, *e]))),
        _ => None,
    }
}

pub fn string(obj: &Obj, tag: Tag) -> Option<String> {
    let s = match unknown_text(obj, tag) {
        Some(v) => v.join("\\"),
        None => obj.get(tag)?.to_str().ok()?.into_owned(),
    };
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0').to_string();
    (!s.is_empty()).then_some(s)
}

pub fn int(obj: &Obj, tag: Tag) -> Option<i64> {
    if let Some(v) = unknown_text(obj, tag) {
        return v.first()?.parse().ok();
    }
    if let Some(v) = unknown_binary_int(obj, tag) {
        return Some(v);
    }
    obj.get(tag)?.to_int::<i64>().ok()
}

pub fn float(obj: &Obj, tag: Tag) -> Option<f64> {
    floats(obj, tag)?.first().copied()
}

pub fn floats(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    let v = match unknown_text(obj, tag) {
        Some(text) => text
            .iter()
            .map(|t| t.parse::<f64>().ok())
            .collect::<Option<Vec<f64>>>()?,
        None => obj.get(tag)?.to_multi_float64().ok()?,
    };
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

pub fn items(obj: &Obj, tag: Tag) -> &[Obj] {
    obj.get(tag).and_then(|e| e.value().items()).unwrap_or(&[])
}

/// The first item of a sequence, if any.
pub fn item(obj: &Obj, tag: Tag) -> Option<&Obj> {
    items(obj, tag).first()
}

/// Looks up a functional-group macro (e.g. Pixel Value Transformation) for one frame of an enhanced
/// multi-frame object: the per-frame group wins over the shared group (PS3.3 C.7.6.16).
pub fn functional_group(obj: &Obj, frame: u32, macro_tag: Tag) -> Option<&Obj> {
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .get(frame as usize)
        .and_then(|fg| item(fg, macro_tag));
    per_frame.or_else(|| {
        item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|fg| item(fg, macro_tag))
    })
}

/// An attribute that may sit at the root of the data set or inside a functional-group macro.
pub fn frame_attr<'a, T>(
    obj: &'a Obj,
    frame: u32,
    macro_tag: Tag,
    read: impl Fn(&'a Obj) -> Option<T>,
) -> Option<T> {
    functional_group(obj, frame, macro_tag)
        .and_then(&read)
        .or_else(|| read(obj))
}
