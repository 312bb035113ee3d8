//! radclip's DICOM study engine: files, folders and DICOMDIRs become a patient → study → series tree
//! (headers only), frames are decoded lazily on worker threads into a bounded cache, and one pixel pipeline
//! (modality LUT → VOI LUT → presentation) serves display, export and AI preprocessing. No GUI here.

pub mod attrs;
pub mod dump;
pub mod error;
pub mod export;
pub mod geometry;
pub mod loader;
pub mod lut;
pub mod measure;
pub mod pixel;
pub mod render;
mod rle;
pub mod seg;
pub mod sr;
pub mod study;
pub mod volume;

pub use error::{Error, Result};
pub use geometry::{FrameGeometry, SpacingSource, VolumeGeometry};
pub use loader::{FrameCache, FrameKey, LoadEvent, Loader};
pub use lut::VoiLut;
pub use pixel::{ColorModel, Frame, ModalityLut, Samples, Voi, VoiFunction, Window};
pub use render::{
    DisplayLut, Rendered, display_lut, lut_indices, render, render_values, render_voi,
};
pub use study::{Instance, Patient, Series, Study, StudyTree, scan};
