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
