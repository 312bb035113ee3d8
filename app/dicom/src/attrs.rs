//! Small, forgiving readers of DICOM attributes. A missing or malformed optional attribute reads as `None`,
//! never as an error: real files are messy and one odd value must not stop a study from opening.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub type Obj = InMemDicomObject;

pub fn string(obj: &Obj, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0').to_string();
    (!s.is_empty()).then_some(s)
}

pub fn int(obj: &Obj, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

pub fn float(obj: &Obj, tag: Tag) -> Option<f64> {
    obj.get(tag)?.to_float64().ok().filter(|v| v.is_finite())
}

pub fn floats(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
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
