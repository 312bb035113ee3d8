//! The pixel pipeline, in one place (PS3.3 C.7.6.3, C.11.1, C.11.2):
//! stored values → modality LUT → VOI LUT → presentation. Decoding of compressed transfer syntaxes is
//! delegated to dicom-pixeldata's codecs; everything after the codec (bit masking, sign extension, colour
//! conversion, rescale, windowing, MONOCHROME1 inversion) happens here, so the GUI, the CLI, export and CLIP
//! preprocessing all see the same numbers.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::attrs::{self, Obj};
use crate::error::{Error, Result};
use crate::lut::{self, VoiLut};

/// Stored sample values of one frame, after bit masking and sign extension; colour data interleaved.
#[derive(Debug, Clone)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::I16(v) => v.len(),
            Samples::U32(v) => v.len(),
            Samples::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample at `i` widened to i64; `None` past the end.
    pub fn get(&self, i: usize) -> Option<i64> {
        match self {
            Samples::U8(v) => v.get(i).map(|&x| i64::from(x)),
            Samples::U16(v) => v.get(i).map(|&x| i64::from(x)),
            Samples::I16(v) => v.get(i).map(|&x| i64::from(x)),
            Samples::U32(v) => v.get(i).map(|&x| i64::from(x)),
            Samples::I32(v) => v.get(i).map(|&x| i64::from(x)),
        }
    }

    /// Calls `f` with every sample widened to i64, in order.
    pub fn for_each(&self, mut f: impl FnMut(i64)) {
        match self {
            Samples::U8(v) => v.iter().for_each(|&x| f(i64::from(x))),
            Samples::U16(v) => v.iter().for_each(|&x| f(i64::from(x))),
            Samples::I16(v) => v.iter().for_each(|&x| f(i64::from(x))),
            Samples::U32(v) => v.iter().for_each(|&x| f(i64::from(x))),
            Samples::I32(v) => v.iter().for_each(|&x| f(i64::from(x))),
        }
    }

    /// Bytes held by the samples, for the cache's memory accounting.
    pub fn byte_len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len() * 2,
            Samples::I16(v) => v.len() * 2,
            Samples::U32(v) => v.len() * 4,
            Samples::I32(v) => v.len() * 4,
        }
    }

    fn min_max(&self) -> (i64, i64) {
        // In the samples' own type: those reductions vectorise, i64 ones do not on AVX2.
        fn mm<T: Copy + Ord + Into<i64>>(v: &[T]) -> (i64, i64) {
            match (v.iter().copied().min(), v.iter().copied().max()) {
                (Some(lo), Some(hi)) => (lo.into(), hi.into()),
                _ => (0, 0),
            }
        }
        match self {
            Samples::U8(v) => mm(v),
            Samples::U16(v) => mm(v),
            Samples::I16(v) => mm(v),
            Samples::U32(v) => mm(v),
            Samples::I32(v) => mm(v),
        }
    }
}

/// Modality LUT (PS3.3 C.11.1): stored values to meaningful units (HU for CT).
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityLut {
    Identity,
    Rescale {
        slope: f64,
        intercept: f64,
    },
    Table {
        first_mapped: i64,
        entries: Vec<u16>,
    },
}

impl ModalityLut {
    pub fn apply(&self, stored: f64) -> f64 {
        match self {
            ModalityLut::Identity => stored,
            ModalityLut::Rescale { slope, intercept } => stored * slope + intercept,
            ModalityLut::Table {
                first_mapped,
                entries,
            } => {
                let Some(last) = entries.len().checked_sub(1) else {
                    return stored;
                };
                let idx = (stored as i64 - first_mapped).clamp(0, last as i64) as usize;
                entries.get(idx).map_or(stored, |&v| f64::from(v))
            }
        }
    }
}

/// A VOI window as center and width, in modality units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    /// The window spanning `lo..=hi`, used when a file carries none.
    pub fn from_range(lo: f64, hi: f64) -> Self {
        Window {
            center: (lo + hi) / 2.0,
            width: (hi - lo).max(1.0),
        }
    }
}

/// VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    /// Maps a modality value to [0, 1] per PS3.3 C.11.2.1.2 (output range normalised).
    pub fn apply(self, x: f64, w: Window) -> f64 {
        match self {
            VoiFunction::Linear => {
                let c = w.center - 0.5;
                let width = (w.width - 1.0).max(f64::EPSILON);
                if x <= c - width / 2.0 {
                    0.0
                } else if x > c + width / 2.0 {
                    1.0
                } else {
                    (x - c) / width + 0.5
                }
            }
            VoiFunction::LinearExact => {
                let width = w.width.max(f64::EPSILON);
                if x <= w.center - width / 2.0 {
                    0.0
                } else if x > w.center + width / 2.0 {
                    1.0
                } else {
                    (x - w.center) / width + 0.5
                }
            }
            VoiFunction::Sigmoid => {
                1.0 / (1.0 + (-4.0 * (x - w.center) / w.width.max(f64::EPSILON)).exp())
            }
        }
    }
}

/// The VOI stage of one frame: a window with its function, or a table from the VOI LUT Sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    Window(Window, VoiFunction),
    Table(Arc<VoiLut>),
}

impl Voi {
    /// Maps a modality value to [0, 1].
    pub fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Window(w, f) => f.apply(x, *w),
            Voi::Table(t) => t.apply(x),
        }
    }
}

/// A PALETTE COLOR lookup table: stored index → 16-bit RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    pub first_mapped: i64,
    /// Bits per entry (8 or 16); the entries are scaled to 8 bits for display.
    pub bits: u16,
    pub red: Vec<u16>,
    pub green: Vec<u16>,
    pub blue: Vec<u16>,
}

impl Palette {
    pub fn rgb8(&self, index: i64) -> [u8; 3] {
        let last = self.red.len().min(self.green.len()).min(self.blue.len());
        let Some(last) = last.checked_sub(1) else {
            return [0; 3];
        };
        let i = (index - self.first_mapped).clamp(0, last as i64) as usize;
        let shift = if self.bits > 8 { 8 } else { 0 };
        let c = |v: &[u16]| v.get(i).map_or(0, |&x| (x >> shift).min(255) as u8);
        [c(&self.red), c(&self.green), c(&self.blue)]
    }
}

/// How the samples of a frame become colours.
#[derive(Debug, Clone, PartialEq)]
pub enum ColorModel {
    /// One sample per pixel; `invert` for MONOCHROME1 (low values bright).
    Mono { invert: bool },
    /// Three interleaved samples per pixel, already RGB (YBR is converted while decoding).
    Rgb,
    /// One index per pixel into a palette.
    Palette(Arc<Palette>),
}

/// One decoded frame: stored samples plus what is needed to turn them into modality values and display.
#[derive(Debug, Clone)]
pub struct Frame {
    pub rows: u32,
    pub cols: u32,
    pub color: ColorModel,
    pub samples: Samples,
    pub modality: ModalityLut,
    /// Windows from the file for this frame, first one is the default when there is no VOI LUT table.
    pub windows: Vec<Window>,
    pub voi_function: VoiFunction,
    /// VOI LUT Sequence tables; the first is the file's default view (as in pydicom and most viewers,
    /// a table wins over a window when a file carries both).
    pub voi_luts: Vec<Arc<VoiLut>>,
    /// Min and max of the stored samples.
    pub stored_range: (i64, i64),
}

impl Frame {
    pub fn is_color(&self) -> bool {
        !matches!(self.color, ColorModel::Mono { .. })
    }

    /// The value in modality units (HU for CT) of the pixel at (`row`, `col`); mono frames only.
    pub fn value_at(&self, row: u32, col: u32) -> Option<f64> {
        if row >= self.rows || col >= self.cols || self.is_color() {
            return None;
        }
        let i = row as usize * self.cols as usize + col as usize;
        self.samples.get(i).map(|s| self.modality.apply(s as f64))
    }

    /// Range of the modality values of this frame.
    pub fn modality_range(&self) -> (f64, f64) {
        let (lo, hi) = self.stored_range;
        match &self.modality {
            ModalityLut::Table { .. } => {
                let mut out = (f64::INFINITY, f64::NEG_INFINITY);
                for s in lo..=hi.min(lo + 65535) {
                    let v = self.modality.apply(s as f64);
                    out = (out.0.min(v), out.1.max(v));
                }
                out
            }
            m => {
                let (a, b) = (m.apply(lo as f64), m.apply(hi as f64));
                (a.min(b), a.max(b))
            }
        }
    }

    /// The VOI used when the user has chosen none: the file's first VOI LUT table, else its first window,
    /// else the frame's min/max.
    pub fn default_voi(&self) -> Voi {
        if let Some(t) = self.voi_luts.first() {
            return Voi::Table(t.clone());
        }
        let (w, f) = self.default_window();
        Voi::Window(w, f)
    }

    /// The window the user's W/L starts from: the file's first window, else the span of its VOI LUT
    /// table, else the frame's min/max.
    pub fn default_window(&self) -> (Window, VoiFunction) {
        if let Some(w) = self.windows.first() {
            return (*w, self.voi_function);
        }
        let (lo, hi) = match self.voi_luts.first() {
            Some(t) => t.input_range(),
            None => self.modality_range(),
        };
        (Window::from_range(lo, hi), VoiFunction::LinearExact)
    }

    pub fn byte_len(&self) -> usize {
        self.samples.byte_len()
    }
}

/// Description of an instance's pixel data, read from its header.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PixelFormat {
    pub rows: u32,
    pub cols: u32,
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: String,
    pub planar_configuration: u16,
}

impl PixelFormat {
    pub fn read(obj: &Obj) -> Option<Self> {
        let rows = attrs::int(obj, tags::ROWS)?;
        let cols = attrs::int(obj, tags::COLUMNS)?;
        let bits_allocated = attrs::int(obj, tags::BITS_ALLOCATED).unwrap_or(16) as u16;
        Some(PixelFormat {
            rows: u32::try_from(rows).ok()?,
            cols: u32::try_from(cols).ok()?,
            frames: attrs::int(obj, tags::NUMBER_OF_FRAMES)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1)
                .max(1),
            samples_per_pixel: attrs::int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
            bits_allocated,
            bits_stored: attrs::int(obj, tags::BITS_STORED).map_or(bits_allocated, |b| b as u16),
            signed: attrs::int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
            photometric: attrs::string(obj, tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap_or_else(|| "MONOCHROME2".into()),
            planar_configuration: attrs::int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) as u16,
        })
    }
}

/// Modality LUT for one frame: functional groups of enhanced objects first, then the root attributes.
pub fn modality_lut(obj: &Obj, frame: u32, color: bool) -> ModalityLut {
    if color {
        return ModalityLut::Identity;
    }
    if let Some((first_mapped, _, entries)) =
        attrs::item(obj, tags::MODALITY_LUT_SEQUENCE).and_then(lut::read_table)
    {
        return ModalityLut::Table {
            first_mapped,
            entries,
        };
    }
    let read = |o: &Obj| {
        let slope = attrs::float(o, tags::RESCALE_SLOPE);
        let intercept = attrs::float(o, tags::RESCALE_INTERCEPT);
        (slope.is_some() || intercept.is_some()).then(|| ModalityLut::Rescale {
            slope: slope.unwrap_or(1.0),
            intercept: intercept.unwrap_or(0.0),
        })
    };
    attrs::frame_attr(obj, frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, read)
        .unwrap_or(ModalityLut::Identity)
}

/// Windows for one frame (Frame VOI LUT macro of enhanced objects first).
pub fn windows(obj: &Obj, frame: u32) -> (Vec<Window>, VoiFunction) {
    let read = |o: &Obj| {
        let centers = attrs::floats(o, tags::WINDOW_CENTER)?;
        let widths = attrs::floats(o, tags::WINDOW_WIDTH)?;
        let function = match attrs::string(o, tags::VOILUT_FUNCTION).as_deref() {
            Some("LINEAR_EXACT") => VoiFunction::LinearExact,
            Some("SIGMOID") => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        };
        let ws: Vec<Window> = centers
            .iter()
            .zip(&widths)
            .filter(|(_, w)| **w > 0.0)
            .map(|(&center, &width)| Window { center, width })
            .collect();
        (!ws.is_empty()).then_some((ws, function))
    };
    attrs::frame_attr(obj, frame, tags::FRAME_VOILUT_SEQUENCE, read).unwrap_or_default()
}

fn palette(obj: &Obj, path: &Path) -> Result<Palette> {
    let unsupported = |what: String| Error::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    let segmented = obj
        .get(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)
        .is_some();
    let channel = |desc_tag, data_tag, seg_tag| -> Result<Option<(i64, u16, Vec<u16>)>> {
        let Some(desc) = obj.get(desc_tag).and_then(|d| d.to_multi_int::<i64>().ok()) else {
            return Ok(None);
        };
        let (Some(&n), Some(&first), Some(&bits)) = (desc.first(), desc.get(1), desc.get(2)) else {
            return Ok(None);
        };
        let bits = bits as u16;
        let n = if n == 0 { 65536 } else { n.max(0) as usize };
        let mut words = if segmented {
            let Some(elem) = obj.get(seg_tag) else {
                return Ok(None);
            };
            // 8-bit tables carry one segment word per byte (as pydicom reads them).
            let raw = if bits == 8 {
                elem.to_bytes()
                    .ok()
                    .map(|b| b.iter().map(|&x| u16::from(x)).collect())
            } else {
                lut::lut_words(elem)
            };
            let Some(raw) = raw else { return Ok(None) };
            lut::expand_segmented(&raw).map_err(|e| {
                unsupported(format!(
                    "a segmented PALETTE COLOR table that is malformed ({})",
                    e.0
                ))
            })?
        } else {
            let Some(elem) = obj.get(data_tag) else {
                return Ok(None);
            };
            let words = if bits == 8 {
                // 8-bit entries may be packed two per word; expand when the data is exactly that size.
                match elem.to_bytes() {
                    Ok(bytes) if bytes.len() == n => bytes.iter().map(|&b| u16::from(b)).collect(),
                    _ => lut::lut_words(elem).unwrap_or_default(),
                }
            } else {
                lut::lut_words(elem).unwrap_or_default()
            };
            if words.is_empty() {
                return Ok(None);
            }
            words
        };
        words.truncate(n);
        Ok(Some((first, bits, words)))
    };
    let (r, g, b) = (
        channel(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?,
        channel(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?,
        channel(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?,
    );
    match (r, g, b) {
        (Some(r), Some(g), Some(b)) => Ok(Palette {
            first_mapped: r.0,
            bits: r.1,
            red: r.2,
            green: g.2,
            blue: b.2,
        }),
        _ => Err(unsupported(
            "a PALETTE COLOR image without complete lookup tables".into(),
        )),
    }
}

/// Opens a whole file (pixel data included).
pub fn open_full(path: &Path) -> Result<DefaultDicomObject> {
    open_object(path, false).map_err(|e| Error::NotDicom {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The data set read as implicit VR little endian, whatever the file meta says. Only the data set's
/// encoding comes from here: the meta (and so the pixel codec) keeps the file's own syntax, and
/// encapsulated pixel data is recognised by its undefined length, not by the syntax.
struct ImplicitVrIndex;

static IMPLICIT_VR_LE: dicom_encoding::TransferSyntax = dicom_encoding::TransferSyntax::new(
    "1.2.840.10008.1.2",
    "Implicit VR Little Endian",
    dicom_encoding::transfer_syntax::Endianness::Little,
    false,
    dicom_encoding::transfer_syntax::Codec::EncapsulatedPixelData(None, None),
);

impl dicom_encoding::TransferSyntaxIndex for ImplicitVrIndex {
    fn get(&self, _uid: &str) -> Option<&dicom_encoding::TransferSyntax> {
        Some(&IMPLICIT_VR_LE)
    }
}

/// Opens `path` (up to the pixel data with `header_only`). Some writers label an implicit VR data set
/// with an explicit syntax; as pydicom does, such a file is read as implicit VR when the explicit read
/// fails and the first data element has no VR where an explicit one would.
pub(crate) fn open_object(
    path: &Path,
    header_only: bool,
) -> std::result::Result<DefaultDicomObject, dicom_object::ReadError> {
    let explicit = open_with(path, header_only, TransferSyntaxRegistry);
    match explicit {
        Err(e) if first_element_lacks_vr(path) => open_with(path, header_only, ImplicitVrIndex)
            .inspect(|_| {
                tracing::debug!("data set read as implicit VR: its meta says an explicit syntax")
            })
            .map_err(|_| e),
        other => other,
    }
}

fn open_with<T: dicom_encoding::TransferSyntaxIndex>(
    path: &Path,
    header_only: bool,
    index: T,
) -> std::result::Result<DefaultDicomObject, dicom_object::ReadError> {
    let options = OpenFileOptions::new().transfer_syntax_index(index);
    if header_only {
        options.read_until(tags::PIXEL_DATA).open_file(path)
    } else {
        options.open_file(path)
    }
}

/// Whether the data set's first element, after the preamble and the file meta group, has two bytes
/// that are not an upper-case VR where explicit VR puts one.
fn first_element_lacks_vr(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    if read.is_err() || head.get(128..132) != Some(b"DICM".as_slice()) {
        return false;
    }
    // (0002,0000) UL, 4 bytes: the length of the rest of the meta group.
    let Some(len) = head
        .get(140..144)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
    else {
        return false;
    };
    let start = 144 + len as usize;
    head.get(start + 4..start + 6)
        .is_some_and(|vr| !vr.iter().all(u8::is_ascii_uppercase))
}

/// Decodes every frame of the instance at `path`.
pub fn decode_file(path: &Path) -> Result<Vec<Frame>> {
    let obj = open_full(path)?;
    decode_all(&obj, path)
}

/// Decodes every frame of a file that is an image to look at: a segmentation (or another object whose
/// pixel data is not a picture of the patient) is refused with [`Error::NoImage`].
pub fn decode_image_file(path: &Path) -> Result<Vec<Frame>> {
    let obj = open_full(path)?;
    let class = crate::attrs::string(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if crate::study::NOT_RENDERED_SOP_CLASSES.contains(&class.as_str()) {
        return Err(Error::NoImage {
            path: path.to_path_buf(),
            reason: format!("it is a segmentation or directory object (SOP class {class})"),
        });
    }
    decode_all(&obj, path)
}

/// Decodes every frame of an opened instance.
pub fn decode_all(obj: &DefaultDicomObject, path: &Path) -> Result<Vec<Frame>> {
    let fmt = check_decodable(obj, path)?;
    let color_model = color_model(obj, &fmt, path)?;
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let decode_error = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let owned;
    let decoded;
    let borrowed;
    let native_le = matches!(ts.as_str(), "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1");
    let data: &[u8] = if native_le
        && matches!(fmt.bits_allocated, 8 | 16 | 32)
        && let Some(bytes) = obj.get(tags::PIXEL_DATA).and_then(|e| e.to_bytes().ok())
    {
        // Native little-endian samples are used where the file put them: no codec, no copy.
        borrowed = bytes;
        &borrowed
    } else if ts == RLE_LOSSLESS && matches!(fmt.bits_allocated, 8 | 16 | 32) {
        owned = decode_rle(obj, &fmt).map_err(decode_error)?;
        &owned
    } else if is_j2k(&ts) && matches!(fmt.bits_allocated, 8 | 16) {
        owned = decode_j2k(obj, &fmt).map_err(decode_error)?;
        &owned
    } else if let Some(fragments) = untransformed_rgb_jpeg(obj, &fmt, &ts) {
        owned = decode_rgb_jpeg(&fragments, &fmt).map_err(decode_error)?;
        &owned
    } else {
        // The codecs are third-party code (some of it C) fed with untrusted bytes: a panic in one of them
        // becomes this file's error instead of taking down the worker pool.
        decoded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
                .map_err(|_| decode_error("the codec failed on malformed data".into()))?
                .map_err(|e| decode_error(e.to_string()))?;
        decoded.data()
    };
    let frame_bytes = frame_bytes(&fmt, &ts);
    // Big-endian native data reaches us as byte-swapped 16-bit words; 32-bit samples need their halves
    // swapped back.
    let swapped;
    let data = if ts == "1.2.840.10008.1.2.2" && fmt.bits_allocated == 32 {
        swapped = data
            .chunks_exact(4)
            .flat_map(|c| [c[2], c[3], c[0], c[1]])
            .collect::<Vec<u8>>();
        &swapped[..]
    } else {
        data
    };
    // Decoders of encapsulated syntaxes emit interleaved samples; native data keeps its planar configuration.
    let planar = is_native_planar(&ts, &fmt);
    (0..fmt.frames)
        .map(|f| {
            let start = f as usize * frame_bytes;
            let bytes = data
                .get(start..start + frame_bytes)
                .ok_or_else(|| Error::Decode {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the pixel data is too short for frame {} of {}",
                        f + 1,
                        fmt.frames
                    ),
                })?;
            build_frame(obj, &fmt, f, bytes, &color_model, &ts, planar, path)
        })
        .collect()
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// RLE Lossless by our own codec (`rle.rs`): dicom-rs's reads a byte at a time (slower than pydicom's
/// on a 512² CT), indexes the header unchecked, and has no 32-bit samples.
fn decode_rle(obj: &DefaultDicomObject, fmt: &PixelFormat) -> Result<Vec<u8>, String> {
    use rayon::prelude::*;
    let pixels = fmt.rows as usize * fmt.cols as usize;
    let bytes = usize::from(fmt.bits_allocated / 8);
    let frames = frame_fragments(obj, fmt.frames)?;
    let decoded = frames
        .par_iter()
        .map(|f| crate::rle::decode_frame(f, pixels, usize::from(fmt.samples_per_pixel), bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.0)?;
    Ok(decoded.concat())
}

fn is_j2k(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91")
}

/// JPEG 2000 through OpenJPEG (the `jpeg2k` binding dicom-rs uses too), with the samples written straight
/// into the interleaved little-endian layout `build_frame` reads: dicom-rs's adapter copies the codestream
/// and then each sample byte by byte, a third of a lossy 512² slice's time in `perf`. Values are
/// truncated to the allocated bits as dicom-rs does, so both paths give the same bytes.
fn decode_j2k(obj: &DefaultDicomObject, fmt: &PixelFormat) -> Result<Vec<u8>, String> {
    let pixels = fmt.rows as usize * fmt.cols as usize;
    let spp = usize::from(fmt.samples_per_pixel);
    let bytes = usize::from(fmt.bits_allocated / 8);
    let frames = frame_fragments(obj, fmt.frames)?;
    let mut out = vec![0u8; frames.len() * pixels * spp * bytes];
    for (i, (data, dst)) in frames
        .iter()
        .zip(out.chunks_exact_mut(pixels * spp * bytes))
        .enumerate()
    {
        let which = || {
            if frames.len() > 1 {
                format!("JPEG 2000 frame {}", i + 1)
            } else {
                "the JPEG 2000 frame".to_string()
            }
        };
        // OpenJPEG is C fed with untrusted bytes: a panic in the binding becomes this file's error.
        let image = std::panic::catch_unwind(|| jpeg2k::Image::from_bytes(data))
            .map_err(|_| format!("{} made the codec fail", which()))?
            .map_err(|e| format!("{}: {e}", which()))?;
        let components = image.components();
        if components.len() < spp {
            return Err(format!(
                "{} has {} component(s), the file says {spp}",
                which(),
                components.len()
            ));
        }
        for (c, comp) in components.iter().take(spp).enumerate() {
            let samples = comp.data();
            if samples.len() != pixels {
                return Err(format!(
                    "{} is {}×{} where the file says {}×{}",
                    which(),
                    comp.width(),
                    comp.height(),
                    fmt.cols,
                    fmt.rows
                ));
            }
            match (bytes, spp) {
                (2, 1) => {
                    for (d, &v) in dst.chunks_exact_mut(2).zip(samples) {
                        d.copy_from_slice(&(v as u16).to_le_bytes());
                    }
                }
                (1, 1) => {
                    for (d, &v) in dst.iter_mut().zip(samples) {
                        *d = v as u8;
                    }
                }
                _ => {
                    for (px, &v) in dst.chunks_exact_mut(spp * bytes).zip(samples) {
                        let le = (v as u16).to_le_bytes();
                        px[c * bytes..(c + 1) * bytes].copy_from_slice(&le[..bytes]);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The encapsulated bytes of each frame: all fragments for a single frame, else split by the basic
/// offset table, else one fragment per frame.
fn frame_fragments(obj: &DefaultDicomObject, frames: u32) -> Result<Vec<Cow<'_, [u8]>>, String> {
    let value = obj
        .get(tags::PIXEL_DATA)
        .map(|e| e.value())
        .ok_or("there is no pixel data")?;
    let fragments = value
        .fragments()
        .ok_or("the pixel data is not encapsulated")?;
    let frames = frames as usize;
    if frames == 1 {
        return Ok(vec![match fragments {
            [one] => Cow::Borrowed(one.as_slice()),
            many => Cow::Owned(many.concat()),
        }]);
    }
    let table = value.offset_table().unwrap_or(&[]);
    if table.len() == frames {
        // Offsets count from the first fragment's item header; each item adds an 8-byte header.
        let mut starts = Vec::with_capacity(fragments.len());
        let mut at = 0u64;
        for f in fragments {
            starts.push(at);
            at += 8 + f.len() as u64;
        }
        let mut out = vec![Vec::new(); frames];
        for (f, start) in fragments.iter().zip(starts) {
            let frame = table
                .iter()
                .rposition(|&o| u64::from(o) <= start)
                .unwrap_or(0);
            out[frame].extend_from_slice(f);
        }
        return Ok(out.into_iter().map(Cow::Owned).collect());
    }
    if fragments.len() == frames {
        return Ok(fragments
            .iter()
            .map(|f| Cow::Borrowed(f.as_slice()))
            .collect());
    }
    Err(format!(
        "the pixel data has {} fragment(s) for {frames} frames and no usable offset table",
        fragments.len()
    ))
}

/// DICOM says an RGB (not YBR) JPEG was compressed without the colour transform (PS3.5 8.2.1), but
/// jpeg-decoder assumes YCbCr for three components unless an Adobe marker says otherwise. Such frames
/// are decoded here with the transform off, unless a JFIF marker (which implies YCbCr) says otherwise.
fn untransformed_rgb_jpeg<'a>(
    obj: &'a DefaultDicomObject,
    fmt: &PixelFormat,
    ts: &str,
) -> Option<Vec<Cow<'a, [u8]>>> {
    let lossy_jpeg = matches!(ts, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51");
    if !lossy_jpeg
        || fmt.samples_per_pixel != 3
        || fmt.photometric != "RGB"
        || fmt.bits_allocated != 8
    {
        return None;
    }
    let frames = frame_fragments(obj, fmt.frames).ok()?;
    let jfif = frames
        .first()
        .is_some_and(|f| f.windows(5).take(64).any(|w| w == b"JFIF\0"));
    (!jfif).then_some(frames)
}

fn decode_rgb_jpeg(frames: &[Cow<'_, [u8]>], fmt: &PixelFormat) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (i, data) in frames.iter().enumerate() {
        let mut d = jpeg_decoder::Decoder::new(&data[..]);
        d.set_color_transform(jpeg_decoder::ColorTransform::RGB);
        let px = d
            .decode()
            .map_err(|e| format!("JPEG frame {}: {e}", i + 1))?;
        let want = fmt.rows as usize * fmt.cols as usize * 3;
        if px.len() != want {
            return Err(format!(
                "JPEG frame {} decodes to {} bytes, {want} expected",
                i + 1,
                px.len()
            ));
        }
        out.extend_from_slice(&px);
    }
    Ok(out)
}

fn is_native_planar(ts: &str, fmt: &PixelFormat) -> bool {
    fmt.samples_per_pixel == 3 && fmt.planar_configuration == 1 && !is_encapsulated(ts)
}

fn is_encapsulated(ts: &str) -> bool {
    !matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
    )
}

fn frame_bytes(fmt: &PixelFormat, ts: &str) -> usize {
    if fmt.photometric == "YBR_FULL_422" && !is_encapsulated(ts) && fmt.bits_allocated == 8 {
        // Two chroma samples are shared by each pair of pixels.
        return fmt.rows as usize * fmt.cols as usize * 2;
    }
    let per_sample = if fmt.bits_allocated == 1 {
        // dicom-pixeldata expands 1-bit data to one byte per sample.
        1
    } else {
        usize::from(fmt.bits_allocated).div_ceil(8)
    };
    fmt.rows as usize * fmt.cols as usize * usize::from(fmt.samples_per_pixel) * per_sample
}

fn check_decodable(obj: &Obj, path: &Path) -> Result<PixelFormat> {
    let no_image = |reason: &str| Error::NoImage {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if obj.get(tags::FLOAT_PIXEL_DATA).is_some() || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
    {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: "floating-point pixel data".into(),
        });
    }
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(no_image("it carries no pixel data"));
    }
    let fmt = PixelFormat::read(obj).ok_or_else(|| no_image("Rows or Columns is missing"))?;
    if fmt.rows == 0 || fmt.cols == 0 {
        return Err(no_image("Rows or Columns is zero"));
    }
    if !matches!(fmt.bits_allocated, 1 | 8 | 16 | 32) || !matches!(fmt.samples_per_pixel, 1 | 3) {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "{} bits allocated with {} samples per pixel",
                fmt.bits_allocated, fmt.samples_per_pixel
            ),
        });
    }
    Ok(fmt)
}

fn color_model(obj: &Obj, fmt: &PixelFormat, path: &Path) -> Result<ColorModel> {
    // Presentation LUT Shape INVERSE turns MONOCHROME2 over (some mammography and CR); for MONOCHROME1
    // it restates that inversion (DX, PS3.3 C.8.11.1.1.1) rather than adding a second one.
    let inverse_shape = attrs::string(obj, tags::PRESENTATION_LUT_SHAPE)
        .is_some_and(|s| s.eq_ignore_ascii_case("INVERSE"));
    Ok(match (fmt.samples_per_pixel, fmt.photometric.as_str()) {
        (1, "MONOCHROME1") => ColorModel::Mono { invert: true },
        (1, "MONOCHROME2") => ColorModel::Mono {
            invert: inverse_shape,
        },
        (1, "PALETTE COLOR") => ColorModel::Palette(Arc::new(palette(obj, path)?)),
        (1, _) => ColorModel::Mono { invert: false },
        (3, "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_RCT" | "YBR_ICT" | "YBR_PARTIAL_420") => {
            ColorModel::Rgb
        }
        (_, other) => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: format!("the photometric interpretation {other}"),
            });
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn build_frame(
    obj: &Obj,
    fmt: &PixelFormat,
    frame: u32,
    bytes: &[u8],
    color: &ColorModel,
    ts: &str,
    planar: bool,
    path: &Path,
) -> Result<Frame> {
    let samples = if fmt.samples_per_pixel == 3 {
        color_samples(fmt, bytes, ts, planar, path)?
    } else {
        mono_samples(fmt, bytes)
    };
    let stored_range = samples.min_max();
    let is_mono = matches!(color, ColorModel::Mono { .. });
    let (windows, voi_function) = if is_mono {
        windows(obj, frame)
    } else {
        Default::default()
    };
    let voi_luts = if is_mono {
        VoiLut::read_all(obj).into_iter().map(Arc::new).collect()
    } else {
        Vec::new()
    };
    Ok(Frame {
        rows: fmt.rows,
        cols: fmt.cols,
        color: color.clone(),
        samples,
        modality: modality_lut(obj, frame, !is_mono),
        windows,
        voi_function,
        voi_luts,
        stored_range,
    })
}

/// Keeps the low `bits_stored` bits and sign-extends them for signed data (PS3.5 8.1.1).
fn mono_samples(fmt: &PixelFormat, bytes: &[u8]) -> Samples {
    let bits = u32::from(fmt.bits_stored.clamp(1, fmt.bits_allocated.max(1)));
    match fmt.bits_allocated {
        1 => Samples::U8(bytes.iter().map(|&b| u8::from(b != 0)).collect()),
        // Sign extension by shifting the stored bits to the top and back (arithmetic shift): branch-free,
        // so the loops vectorise.
        8 if fmt.signed => {
            let sh = 8 - bits;
            Samples::I16(
                bytes
                    .iter()
                    .map(|&b| i16::from(((b << sh) as i8) >> sh))
                    .collect(),
            )
        }
        8 => {
            let mask = low_mask(bits) as u8;
            Samples::U8(bytes.iter().map(|&b| b & mask).collect())
        }
        16 => {
            // A plain copy into the word buffer, then one in-place pass: both vectorise (an iterator
            // over two-byte chunks did not, and was 40 % of a native slice's decode).
            let n = bytes.len() / 2;
            let mut words = vec![0u16; n];
            bytemuck::cast_slice_mut::<u16, u8>(&mut words).copy_from_slice(&bytes[..n * 2]);
            if cfg!(target_endian = "big") {
                words.iter_mut().for_each(|w| *w = u16::from_le(*w));
            }
            if fmt.signed {
                let sh = 16 - bits;
                let mut signed: Vec<i16> = bytemuck::allocation::cast_vec(words);
                signed.iter_mut().for_each(|w| *w = (*w << sh) >> sh);
                Samples::I16(signed)
            } else {
                let mask = low_mask(bits) as u16;
                words.iter_mut().for_each(|w| *w &= mask);
                Samples::U16(words)
            }
        }
        _ => {
            let n = bytes.len() / 4;
            let mut words = vec![0u32; n];
            bytemuck::cast_slice_mut::<u32, u8>(&mut words).copy_from_slice(&bytes[..n * 4]);
            if cfg!(target_endian = "big") {
                words.iter_mut().for_each(|w| *w = u32::from_le(*w));
            }
            if fmt.signed {
                let sh = 32 - bits;
                let mut signed: Vec<i32> = bytemuck::allocation::cast_vec(words);
                signed.iter_mut().for_each(|w| *w = (*w << sh) >> sh);
                Samples::I32(signed)
            } else {
                let mask = low_mask(bits) as u32;
                words.iter_mut().for_each(|w| *w &= mask);
                Samples::U32(words)
            }
        }
    }
}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Interleaved RGB samples; native YBR_FULL(_422) is converted to RGB as pydicom does (ITU-R BT.601 full range).
fn color_samples(
    fmt: &PixelFormat,
    bytes: &[u8],
    ts: &str,
    planar: bool,
    path: &Path,
) -> Result<Samples> {
    if fmt.bits_allocated == 32 {
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok(Samples::U32(if planar {
            interleave(&words)
        } else {
            words
        }));
    }
    if fmt.bits_allocated != 8 {
        // 16-bit colour is rare; keep it exact and let the display scale it.
        let words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return Ok(Samples::U16(if planar {
            interleave(&words)
        } else {
            words
        }));
    }
    let mut rgb = if planar {
        interleave(bytes)
    } else {
        bytes.to_vec()
    };
    let needs_ybr_conversion = match fmt.photometric.as_str() {
        // Lossy JPEG and JPEG 2000 decoders already return RGB; native and RLE data keep YBR.
        "YBR_FULL" | "YBR_FULL_422" => !is_encapsulated(ts) || ts == "1.2.840.10008.1.2.5",
        _ => false,
    };
    if needs_ybr_conversion {
        if fmt.photometric == "YBR_FULL_422" && !is_encapsulated(ts) {
            rgb = upsample_422(bytes, fmt, path)?;
        }
        ybr_to_rgb(&mut rgb);
    }
    Ok(Samples::U8(rgb))
}

fn interleave<T: Copy>(planes: &[T]) -> Vec<T> {
    let n = planes.len() / 3;
    let (r, rest) = planes.split_at(n);
    let (g, b) = rest.split_at(n);
    r.iter()
        .zip(g)
        .zip(b)
        .flat_map(|((&r, &g), &b)| [r, g, b])
        .collect()
}

/// Native YBR_FULL_422 stores Y1 Y2 Cb Cr per pixel pair.
fn upsample_422(bytes: &[u8], fmt: &PixelFormat, path: &Path) -> Result<Vec<u8>> {
    let n = fmt.rows as usize * fmt.cols as usize;
    let packed = bytes.get(..n * 2).ok_or_else(|| Error::Decode {
        path: path.to_path_buf(),
        reason: "the YBR_FULL_422 data is too short".into(),
    })?;
    let mut out = Vec::with_capacity(n * 3);
    for q in packed.chunks_exact(4) {
        out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
    }
    out.resize(n * 3, 0);
    Ok(out)
}

fn ybr_to_rgb(px: &mut [u8]) {
    for p in px.chunks_exact_mut(3) {
        let (y, cb, cr) = (
            f64::from(p[0]),
            f64::from(p[1]) - 128.0,
            f64::from(p[2]) - 128.0,
        );
        let r = y + 1.402 * cr;
        let g = y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr;
        let b = y + 1.772 * cb;
        let q = |v: f64| (v + 0.5).floor().clamp(0.0, 255.0) as u8;
        p[0] = q(r);
        p[1] = q(g);
        p[2] = q(b);
    }
}
