//! Lookup tables of the pixel pipeline that are data rather than formulas: VOI LUT Sequence tables
//! (PS3.3 C.11.2.1.1) and segmented PALETTE COLOR tables (PS3.3 C.7.9.2).

use dicom_dictionary_std::tags;

use crate::attrs::{self, Obj};

/// One item of the VOI LUT Sequence: a modality value indexes a table of `bits`-bit display values.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiLut {
    /// The modality value mapped to the first entry; smaller values take the first entry too.
    pub first_mapped: i64,
    /// Bits of each entry as the descriptor declares them (8 or 10–16): the output range.
    pub bits: u16,
    pub entries: Vec<u16>,
    /// LUT Explanation (0028,3003), e.g. the vendor's name for this view.
    pub explanation: Option<String>,
}

impl VoiLut {
    /// Reads every item of the VOI LUT Sequence that has a usable descriptor and data.
    pub fn read_all(obj: &Obj) -> Vec<VoiLut> {
        attrs::items(obj, tags::VOILUT_SEQUENCE)
            .iter()
            .filter_map(VoiLut::read)
            .collect()
    }

    fn read(item: &Obj) -> Option<VoiLut> {
        let (first, bits, entries) = read_table(item)?;
        let bits = u16::try_from(bits).ok().filter(|b| (1..=16).contains(b))?;
        Some(VoiLut {
            first_mapped: first,
            bits,
            entries,
            explanation: attrs::string(item, tags::LUT_EXPLANATION),
        })
    }

    /// Maps a modality value to [0, 1]: clamped into the table, then scaled by the declared output range.
    pub fn apply(&self, x: f64) -> f64 {
        let Some(last) = self.entries.len().checked_sub(1) else {
            return 0.0;
        };
        // The table is indexed by whole input values; fractional modality values fall to the lower one.
        let i = (x.floor() - self.first_mapped as f64).clamp(0.0, last as f64) as usize;
        let max = f64::from((1u32 << self.bits) - 1);
        self.entries.get(i).map_or(0.0, |&v| f64::from(v) / max)
    }

    /// The modality values the table spans, as a window: the starting point when the user drags W/L away
    /// from the table.
    pub fn input_range(&self) -> (f64, f64) {
        let lo = self.first_mapped as f64;
        (lo, lo + self.entries.len().saturating_sub(1) as f64)
    }
}

/// A LUT item's descriptor and data (Modality and VOI LUT Sequences): the first mapped value, the
/// declared bits per entry, and exactly as many entries as the descriptor says; `None` when the data is
/// shorter than that.
pub fn read_table(item: &Obj) -> Option<(i64, i64, Vec<u16>)> {
    let desc = item.get(tags::LUT_DESCRIPTOR)?.to_multi_int::<i64>().ok()?;
    let (n, first, bits) = (*desc.first()?, *desc.get(1)?, *desc.get(2)?);
    // A zero count means 65,536 entries (PS3.3 C.11.1.1, C.11.2.1.1).
    let n = if n == 0 {
        65536
    } else {
        usize::try_from(n).ok()?
    };
    let mut entries = lut_words(item.get(tags::LUT_DATA)?)?;
    if entries.len() < n {
        return None;
    }
    entries.truncate(n);
    Some((first, bits, entries))
}

/// The words of a LUT Data element: US values, or OW bytes read little-endian (dicom-rs has already
/// swapped big-endian files into native order for US; OW is kept as stored).
pub fn lut_words(elem: &dicom_object::mem::InMemElement) -> Option<Vec<u16>> {
    if let Ok(v) = elem.to_multi_int::<u16>()
        && !v.is_empty()
    {
        return Some(v);
    }
    let bytes = elem.to_bytes().ok()?;
    Some(
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Why a segmented table could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentError(pub &'static str);

/// The most entries a table can have; expansion stops there so that a malformed file cannot make it grow
/// without bound.
const MAX_ENTRIES: usize = 65536;

/// Expands segmented palette data (PS3.3 C.7.9.2): discrete (0), linear (1) and indirect (2) segments.
/// Linear segments round as numpy's `around` does (half to even), which is what pydicom returns.
pub fn expand_segmented(data: &[u16]) -> Result<Vec<u16>, SegmentError> {
    let mut out = Vec::new();
    expand_into(data, None, &mut out, 0)?;
    Ok(out)
}

fn expand_into(
    data: &[u16],
    max_segments: Option<usize>,
    out: &mut Vec<u16>,
    depth: u32,
) -> Result<(), SegmentError> {
    // An indirect segment may point at other indirect segments; real tables nest once at most.
    if depth > 4 {
        return Err(SegmentError("indirect segments nest too deeply"));
    }
    let mut at = 0usize;
    let mut segments = 0usize;
    // `at + 1 < len`: the data may end in one padding word.
    while at + 1 < data.len() {
        if max_segments.is_some_and(|m| segments >= m) {
            break;
        }
        let (op, len) = (data[at], usize::from(data[at + 1]));
        at += 2;
        match op {
            0 => {
                let seg = data
                    .get(at..at + len)
                    .ok_or(SegmentError("a discrete segment runs past the data"))?;
                out.extend_from_slice(seg);
                at += len;
            }
            1 => {
                let y0 = *out
                    .last()
                    .ok_or(SegmentError("the table starts with a linear segment"))?;
                let y1 = *data
                    .get(at)
                    .ok_or(SegmentError("a linear segment has no end value"))?;
                at += 1;
                let (a, b) = (f64::from(y0), f64::from(y1));
                let step = (b - a) / len.max(1) as f64;
                // Same points as numpy's linspace(y0 + step, y1, len).
                out.extend((1..=len).map(|k| {
                    let v = if k == len {
                        b
                    } else {
                        (a + step) + (k - 1) as f64 * ((b - (a + step)) / (len - 1).max(1) as f64)
                    };
                    v.round_ties_even().clamp(0.0, 65535.0) as u16
                }));
            }
            2 => {
                if out.is_empty() {
                    return Err(SegmentError("the table starts with an indirect segment"));
                }
                let (lo, hi) = match (data.get(at), data.get(at + 1)) {
                    (Some(&lo), Some(&hi)) => (lo, hi),
                    _ => return Err(SegmentError("an indirect segment has no offset")),
                };
                at += 2;
                let offset = (usize::from(hi) << 16) | usize::from(lo);
                let rest = data
                    .get(offset..)
                    .ok_or(SegmentError("an indirect segment points past the data"))?;
                expand_into(rest, Some(len), out, depth + 1)?;
            }
            _ => return Err(SegmentError("unknown segment type")),
        }
        if out.len() > MAX_ENTRIES {
            return Err(SegmentError("the table expands past 65,536 entries"));
        }
        segments += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_and_linear_segments() {
        // 0: discrete [10, 20]; 1: linear 4 steps to 60; 0: discrete [7].
        let data = [0, 2, 10, 20, 1, 4, 60, 0, 1, 7];
        assert_eq!(expand_segmented(&data), Ok(vec![10, 20, 30, 40, 50, 60, 7]));
    }

    #[test]
    fn linear_rounds_half_to_even_like_numpy() {
        // From 0 to 5 in 2 steps: 2.5 → 2 (numpy.around), then 5.
        assert_eq!(expand_segmented(&[0, 1, 0, 1, 2, 5]), Ok(vec![0, 2, 5]));
        // A flat run repeats the end value.
        assert_eq!(expand_segmented(&[0, 1, 9, 1, 3, 9]), Ok(vec![9, 9, 9, 9]));
    }

    #[test]
    fn indirect_segment_replays_earlier_segments() {
        // Word 0: discrete [1, 2]; word 4: linear 2 steps to 4; word 7: indirect, 2 segments from word 0.
        let data = [0, 2, 1, 2, 1, 2, 4, 2, 2, 0, 0];
        assert_eq!(expand_segmented(&data), Ok(vec![1, 2, 3, 4, 1, 2, 3, 4]));
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        assert!(expand_segmented(&[1, 4, 60]).is_err());
        assert!(expand_segmented(&[0, 9, 1]).is_err());
        assert!(expand_segmented(&[0, 1, 1, 2, 1, 0xffff, 0xffff]).is_err());
        assert!(expand_segmented(&[0, 1, 1, 7, 1, 0]).is_err());
        // An indirect segment pointing at itself stops at the nesting limit.
        assert_eq!(
            expand_segmented(&[0, 1, 5, 2, 1, 7, 0, 2, 1, 0, 0]),
            Err(SegmentError("indirect segments nest too deeply"))
        );
        assert_eq!(expand_segmented(&[]), Ok(vec![]));
    }

    #[test]
    fn voi_lut_clamps_and_scales_by_declared_bits() {
        let lut = VoiLut {
            first_mapped: -2,
            bits: 8,
            entries: vec![0, 51, 255],
            explanation: None,
        };
        assert_eq!(lut.apply(-100.0), 0.0);
        assert_eq!(lut.apply(-1.0), 0.2);
        assert_eq!(lut.apply(-0.5), 0.2);
        assert_eq!(lut.apply(1e9), 1.0);
        assert_eq!(lut.input_range(), (-2.0, 0.0));
    }
}
