//! Images as a model reads them: a DICOM frame through the pixel pipeline (modality LUT, the VOI window
//! the model card names, presentation) as 8-bit RGB, or a PNG/JPEG file as it is.

use std::path::Path;

use radclip_clip::card::{WindowChoice, WindowSpec};
use radclip_clip::engine::{Engine, Prepared};
use radclip_clip::preprocess::Rgb8;
use radclip_clip::{Error, Result};
use radclip_dicom::{self as dicom, Frame, Rendered, VoiFunction, Window};

/// Whether a file is DICOM: the "DICM" magic at 128, or a .dcm name.
pub fn is_dicom(path: &Path) -> bool {
    dicom::study::looks_like_dicom(path)
}

/// The pixel pipeline's display output as the model's 8-bit RGB (grey replicated to three channels).
pub fn rgb(r: &Rendered) -> Rgb8 {
    match r {
        Rendered::Grey { rows, cols, data } => {
            Rgb8::from_grey(*cols as usize, *rows as usize, data)
        }
        Rendered::Rgb { rows, cols, data } => Rgb8 {
            width: *cols as usize,
            height: *rows as usize,
            data: data.clone(),
        },
    }
}

/// A decoded frame as the model's 8-bit input, windowed as the card says; `viewer` is the window on
/// screen, used when the card asks for it (the file's default otherwise).
pub fn render(f: &Frame, window: &WindowSpec, viewer: Option<(Window, VoiFunction)>) -> Rgb8 {
    let w = match window {
        WindowSpec::Named(WindowChoice::Viewer) => viewer,
        WindowSpec::Named(WindowChoice::File) => None,
        WindowSpec::Named(WindowChoice::MinMax) => {
            let (lo, hi) = f.modality_range();
            Some((Window::from_range(lo, hi), VoiFunction::Linear))
        }
        WindowSpec::Fixed([c, w]) => Some((
            Window {
                center: *c,
                width: *w,
            },
            VoiFunction::Linear,
        )),
    };
    rgb(&dicom::render(f, w))
}

/// Renders frame `frame` of a DICOM file with the card's window, or reads an image file.
pub fn load_image(path: &Path, frame: u32, window: &WindowSpec) -> Result<Rgb8> {
    if !is_dicom(path) {
        return Rgb8::open(path);
    }
    let frames = dicom::pixel::decode_image_file(path)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let f = frames.get(frame as usize).ok_or_else(|| {
        Error::Input(format!(
            "{}: frame {frame} does not exist ({} frames)",
            path.display(),
            frames.len()
        ))
    })?;
    Ok(render(f, window, None))
}

/// Frame `frame` of a file as `engine`'s input.
pub fn prepare_file(engine: &Engine, path: &Path, frame: u32) -> Result<Prepared> {
    engine.prepare(load_image(path, frame, &engine.card.preprocess.window)?)
}

/// The DICOM and PNG/JPEG files under `dir` (hidden entries skipped), sorted, and how many PNG/JPEG
/// files were left out as sidecars: in a folder that holds DICOM files, pictures beside them are masks,
/// thumbnails or exports of those files (the phantoms' `mask-*.png`), not more images of the series.
pub fn files_under(dir: &Path) -> crate::Result<(Vec<std::path::PathBuf>, usize)> {
    let read_err = |path: &Path, source| crate::AssistError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut sidecars = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let (mut dicom, mut pictures) = (Vec::new(), Vec::new());
        for e in std::fs::read_dir(&d).map_err(|e| read_err(&d, e))? {
            let p = e.map_err(|e| read_err(&d, e))?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| {
                ["png", "jpg", "jpeg"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            }) {
                pictures.push(p);
            } else if is_dicom(&p) {
                dicom.push(p);
            }
        }
        if dicom.is_empty() {
            out.extend(pictures);
        } else {
            sidecars += pictures.len();
            out.extend(dicom);
        }
    }
    out.sort();
    Ok((out, sidecars))
}

/// Image features of `files`, prepared and encoded `batch_size` at a time (so a large folder is never
/// held decoded in memory at once), with the files they came from. A file that cannot be read as an
/// image goes to `skip` with its error (which names the file); `skip` may end the run by returning one.
pub fn encode_files(
    engine: &Engine,
    files: &[std::path::PathBuf],
    frame: u32,
    batch_size: usize,
    mut skip: impl FnMut(Error) -> crate::Result<()>,
) -> crate::Result<(Vec<std::path::PathBuf>, Vec<Vec<f32>>)> {
    let (mut paths, mut feats) = (Vec::new(), Vec::new());
    for chunk in files.chunks(batch_size.max(1)) {
        let mut prepared: Vec<Prepared> = Vec::new();
        for f in chunk {
            match prepare_file(engine, f, frame) {
                Ok(p) => {
                    prepared.push(p);
                    paths.push(f.clone());
                }
                Err(e) => skip(e)?,
            }
        }
        if prepared.is_empty() {
            continue;
        }
        let refs: Vec<&Prepared> = prepared.iter().collect();
        let t = engine.encode_images(&refs, batch_size)?;
        feats.extend(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?);
    }
    Ok((paths, feats))
}
