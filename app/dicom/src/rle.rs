//! RLE Lossless (PS3.5 Annex G), 8-, 16- and 32-bit samples. Output is the layout dicom-pixeldata
//! gives for other syntaxes: every frame's samples little-endian, colour by pixel.

/// Why a fragment could not be decoded; one phrase for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RleError(pub String);

/// Decodes one frame (one fragment) with `samples` samples of `bytes_per_sample` bytes per pixel.
pub fn decode_frame(
    fragment: &[u8],
    pixels: usize,
    samples: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, RleError> {
    let err = |s: String| Err(RleError(s));
    let word = |at: usize| -> Option<usize> {
        let b = fragment.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(count) = word(0) else {
        return err("the RLE header is truncated".into());
    };
    let expected = samples * bytes_per_sample;
    if count != expected || count > 15 {
        return err(format!(
            "the RLE header lists {count} segments where {expected} are expected"
        ));
    }
    let mut offsets = Vec::with_capacity(count + 1);
    for i in 0..count {
        match word(4 + 4 * i) {
            Some(o) if o >= 64 && o <= fragment.len() => offsets.push(o),
            _ => return err(format!("RLE segment {} starts outside the fragment", i + 1)),
        }
    }
    offsets.push(fragment.len());
    // Segments are independent: decode them on all cores (a 16-bit CT slice has two).
    use rayon::prelude::*;
    let planes = (0..count)
        .into_par_iter()
        .map(|seg| {
            let (start, end) = (offsets[seg], offsets[seg + 1].max(offsets[seg]));
            let mut plane = Vec::with_capacity(pixels);
            unpack_bits(&fragment[start..end], pixels, &mut plane);
            if plane.len() < pixels {
                return Err(RleError(format!(
                    "RLE segment {} decodes to {} of {pixels} bytes",
                    seg + 1,
                    plane.len()
                )));
            }
            Ok(plane)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Segments are ordered by sample, then by byte from the most significant one; the output is
    // little-endian samples, colour by pixel.
    let at = |seg: usize| {
        let (sample, byte) = (seg / bytes_per_sample, seg % bytes_per_sample);
        sample * bytes_per_sample + (bytes_per_sample - 1 - byte)
    };
    let mut out = vec![0u8; pixels * expected];
    match planes.as_slice() {
        [only] => out.copy_from_slice(&only[..pixels]),
        [hi, lo] if bytes_per_sample == 2 => {
            for ((o, &h), &l) in out.chunks_exact_mut(2).zip(hi).zip(lo) {
                o[0] = l;
                o[1] = h;
            }
        }
        _ => {
            for (seg, plane) in planes.iter().enumerate() {
                let k = at(seg);
                for (o, &b) in out.chunks_exact_mut(expected).zip(plane) {
                    o[k] = b;
                }
            }
        }
    }
    Ok(out)
}

/// PackBits, stopping once `want` bytes are out (segments may carry a padding byte).
fn unpack_bits(src: &[u8], want: usize, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() && out.len() < want {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let n = h as usize + 1;
            let end = (i + n).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if h != -128 {
            let n = 1 - h as isize;
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, n as usize));
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut body = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            let off = 64 + body.len() as u32;
            head[4 + 4 * i..8 + 4 * i].copy_from_slice(&off.to_le_bytes());
            body.extend_from_slice(s);
        }
        [head, body].concat()
    }

    #[test]
    fn four_byte_samples_most_significant_segment_first() {
        // Two pixels 0x01020304 and 0x01020305: a literal run in each segment, one repeat run.
        let segs = vec![
            vec![0xff, 0x01],       // repeat 2× 0x01
            vec![1, 0x02, 0x02],    // literal
            vec![1, 0x03, 0x03],    // literal
            vec![1, 0x04, 0x05, 0], // literal + padding byte
        ];
        let out = decode_frame(&fragment(&segs), 2, 1, 4).unwrap_or_default();
        assert_eq!(out, [0x04, 0x03, 0x02, 0x01, 0x05, 0x03, 0x02, 0x01]);
    }

    #[test]
    fn truncated_or_inconsistent_fragments_are_errors() {
        assert!(decode_frame(&[1, 0], 4, 1, 4).is_err());
        let segs = vec![vec![0xff, 1]; 4];
        assert!(
            decode_frame(&fragment(&segs), 4, 1, 4).is_err(),
            "too short"
        );
        assert!(
            decode_frame(&fragment(&segs[..3]), 2, 1, 4).is_err(),
            "segments"
        );
        let mut bad = fragment(&segs);
        bad[4] = 200;
        assert!(decode_frame(&bad, 2, 1, 4).is_err(), "offset");
    }
}
