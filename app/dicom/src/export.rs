//! Writing rendered frames to disk. Files are written to a temporary sibling and renamed into place, so a
//! reader never sees a half-written export and an interrupted export leaves nothing behind.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::render::Rendered;

/// Writes `img` as an 8-bit PNG (grey or RGB), atomically.
pub fn write_png(img: &Rendered, out: &Path) -> Result<()> {
    let err = |reason: String| Error::Export {
        path: out.to_path_buf(),
        reason,
    };
    let png = png_bytes(img).map_err(err)?;
    write_atomic(out, &png).map_err(|e| err(e.to_string()))
}

/// A rendered image encoded as PNG (8-bit grey or RGB).
pub fn png_bytes(img: &Rendered) -> std::result::Result<Vec<u8>, String> {
    let (rows, cols) = img.size();
    let (data, color) = match img {
        Rendered::Grey { data, .. } => (data, image::ExtendedColorType::L8),
        Rendered::Rgb { data, .. } => (data, image::ExtendedColorType::Rgb8),
    };
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        data,
        cols,
        rows,
        color,
    )
    .map_err(|e| e.to_string())?;
    Ok(png)
}

/// Writes `bytes` to `out` through a temporary file in the same folder and a rename.
pub fn write_atomic(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
