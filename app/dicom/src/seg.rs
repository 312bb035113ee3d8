//! DICOM Segmentation objects (PS3.3 A.51): their segments and, per frame, which segment it is and which
//! image it was derived from (or, when a frame names none, where it lies in its frame of reference), so a
//! viewer can lay each mask over the image it belongs to.
//!
//! Binary segmentations (1-bit, packed across frames) and fractional ones (8-bit, a pixel is in the
//! segment when its value is more than half the maximum) in native transfer syntaxes.

use std::path::Path;

use dicom_dictionary_std::tags;

use crate::attrs::{self, Obj};
use crate::error::{Error, Result};

pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// One segment: its number, label and what it is (the property type's code meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    pub number: u16,
    pub label: String,
    pub property: String,
}

/// One frame of the segmentation: the segment it shows, the image it was derived from, its pixels.
#[derive(Debug, Clone)]
pub struct SegFrame {
    pub segment: u16,
    /// The SOP Instance UID of the source image, when the frame or the object names exactly one.
    pub source: Option<String>,
    /// The frame's ImagePositionPatient (Plane Position Sequence), for volumes.
    pub position: Option<[f64; 3]>,
    /// Row-major, `rows × cols`.
    pub mask: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct Segmentation {
    pub rows: u32,
    pub cols: u32,
    pub frame_of_reference: Option<String>,
    /// ImageOrientationPatient of the frames (Plane Orientation Sequence, shared or the first frame's).
    pub orientation: Option<[f64; 6]>,
    pub segments: Vec<SegmentInfo>,
    pub frames: Vec<SegFrame>,
}

impl Segmentation {
    pub fn read(path: &Path) -> Result<Self> {
        let obj = crate::pixel::open_full(path)?;
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        Self::from_object(&obj, &ts).map_err(|reason| Error::Decode {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn from_object(obj: &Obj, ts: &str) -> std::result::Result<Self, String> {
        if attrs::string(obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
            return Err("not a DICOM Segmentation".into());
        }
        if !matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1") {
            return Err(format!(
                "segmentations in transfer syntax {ts} are not supported (only native little endian)"
            ));
        }
        let rows = attrs::int(obj, tags::ROWS).unwrap_or(0);
        let cols = attrs::int(obj, tags::COLUMNS).unwrap_or(0);
        let frames = attrs::int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
        if rows <= 0 || cols <= 0 || frames <= 0 || rows > 65535 || cols > 65535 {
            return Err("the segmentation has no valid size".into());
        }
        let (rows, cols, frames) = (rows as u32, cols as u32, frames as usize);
        let fractional = match attrs::string(obj, tags::SEGMENTATION_TYPE).as_deref() {
            Some("BINARY") => false,
            Some("FRACTIONAL") => true,
            other => {
                return Err(format!(
                    "segmentation type {} is not supported",
                    other.unwrap_or("(missing)")
                ));
            }
        };
        let segments: Vec<SegmentInfo> = attrs::items(obj, tags::SEGMENT_SEQUENCE)
            .iter()
            .filter_map(|it| {
                let number = u16::try_from(attrs::int(it, tags::SEGMENT_NUMBER)?).ok()?;
                let property = attrs::item(it, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
                    .and_then(|c| attrs::string(c, tags::CODE_MEANING))
                    .unwrap_or_default();
                Some(SegmentInfo {
                    number,
                    label: attrs::string(it, tags::SEGMENT_LABEL)
                        .unwrap_or_else(|| format!("Segment {number}")),
                    property,
                })
            })
            .collect();
        if segments.is_empty() {
            return Err("the segmentation lists no segments".into());
        }
        let bytes = obj
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.to_bytes().ok())
            .ok_or("the segmentation has no pixel data")?;
        let pixels = rows as usize * cols as usize;
        let need = if fractional {
            pixels * frames
        } else {
            (pixels * frames).div_ceil(8)
        };
        if bytes.len() < need {
            return Err(format!(
                "the pixel data has {} bytes where {frames} frame(s) of {cols}×{rows} need {need}",
                bytes.len()
            ));
        }
        let max = attrs::int(obj, tags::MAXIMUM_FRACTIONAL_VALUE).unwrap_or(255);
        let threshold = max.max(1) as f64 / 2.0;
        // A single referenced image stands for every frame that does not name its own.
        let only_source = only_reference(
            attrs::items(obj, tags::REFERENCED_SERIES_SEQUENCE),
            tags::REFERENCED_INSTANCE_SEQUENCE,
        );
        let shared = attrs::item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let per_frame = attrs::items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
        let segment_of = |group: Option<&Obj>| {
            group
                .and_then(|g| attrs::item(g, tags::SEGMENT_IDENTIFICATION_SEQUENCE))
                .and_then(|it| attrs::int(it, tags::REFERENCED_SEGMENT_NUMBER))
                .and_then(|n| u16::try_from(n).ok())
        };
        let source_of = |group: Option<&Obj>| {
            only_reference(
                attrs::items(group?, tags::DERIVATION_IMAGE_SEQUENCE),
                tags::SOURCE_IMAGE_SEQUENCE,
            )
        };
        let plane = |group: Option<&Obj>, seq, tag| {
            attrs::item(group?, seq).and_then(|it| attrs::floats(it, tag))
        };
        let position_of = |group: Option<&Obj>| {
            plane(
                group,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            )
            .and_then(|v| <[f64; 3]>::try_from(v.as_slice()).ok())
        };
        let orientation = [shared, per_frame.first()]
            .into_iter()
            .find_map(|g| {
                plane(
                    g,
                    tags::PLANE_ORIENTATION_SEQUENCE,
                    tags::IMAGE_ORIENTATION_PATIENT,
                )
            })
            .and_then(|v| <[f64; 6]>::try_from(v.as_slice()).ok());
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            let group = per_frame.get(f);
            let segment = segment_of(group)
                .or_else(|| segment_of(shared))
                .ok_or_else(|| format!("frame {} names no segment", f + 1))?;
            let mask: Vec<bool> = if fractional {
                bytes[f * pixels..(f + 1) * pixels]
                    .iter()
                    .map(|&v| f64::from(v) > threshold)
                    .collect()
            } else {
                // PS3.5 8.1.1: 1-bit pixels are packed across frames, least significant bit first.
                (f * pixels..(f + 1) * pixels)
                    .map(|i| bytes[i / 8] >> (i % 8) & 1 == 1)
                    .collect()
            };
            out.push(SegFrame {
                segment,
                source: source_of(group)
                    .or_else(|| source_of(shared))
                    .or_else(|| only_source.clone()),
                position: position_of(group).or_else(|| position_of(shared)),
                mask,
            });
        }
        Ok(Segmentation {
            rows,
            cols,
            frame_of_reference: attrs::string(obj, tags::FRAME_OF_REFERENCE_UID),
            orientation,
            segments,
            frames: out,
        })
    }

    /// The frames laid over image `sop_instance_uid`, with their segment.
    pub fn frames_for<'a>(
        &'a self,
        sop_instance_uid: &'a str,
    ) -> impl Iterator<Item = (usize, &'a SegmentInfo, &'a SegFrame)> + 'a {
        self.frames_over(sop_instance_uid, None)
    }

    /// The frames laid over image `sop_instance_uid`, with their segment: those derived from it, and
    /// with `plane` (the image's frame of reference, position and orientation) also those that name no
    /// source but lie in its plane (same frame of reference and orientation, position within 0.01 mm).
    pub fn frames_over<'a>(
        &'a self,
        sop_instance_uid: &'a str,
        plane: Option<(&'a str, [f64; 3], [f64; 6])>,
    ) -> impl Iterator<Item = (usize, &'a SegmentInfo, &'a SegFrame)> + 'a {
        let in_plane = move |f: &SegFrame| {
            let (Some((for_uid, position, orientation)), Some(p), Some(o)) =
                (plane, f.position, self.orientation)
            else {
                return false;
            };
            self.frame_of_reference.as_deref() == Some(for_uid)
                && o.iter().zip(orientation).all(|(a, b)| (a - b).abs() < 1e-4)
                && p.iter().zip(position).all(|(a, b)| (a - b).abs() < 0.01)
        };
        self.frames
            .iter()
            .enumerate()
            .filter(move |(_, f)| match f.source.as_deref() {
                Some(src) => src == sop_instance_uid,
                None => in_plane(f),
            })
            .filter_map(|(i, f)| {
                let s = self.segments.iter().find(|s| s.number == f.segment)?;
                Some((i, s, f))
            })
    }
}

/// The SOP Instance UID referenced by the `inner` sequences of `outer`'s items, when there is exactly one.
fn only_reference(outer: &[Obj], inner: dicom_core::Tag) -> Option<String> {
    let refs: Vec<String> = outer
        .iter()
        .flat_map(|o| attrs::items(o, inner))
        .filter_map(|r| attrs::string(r, tags::REFERENCED_SOP_INSTANCE_UID))
        .collect();
    match refs.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}
