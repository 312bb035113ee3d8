//! radclip's DICOM study engine: files, folders and DICOMDIRs become a patient → study → series tree
//! (headers only), frames are decoded lazily on worker threads into a bounded cache, and one pixel pipeline
//! (modality LUT → VOI LUT → presentation) serves display, export and AI preprocessing. No GUI here.

pub mod attrs;
pub mod dump;
pub mod error;
pub mod export;
pub mod geometry;
pub mod loader;
pub mod measure;
pub mod pixel;
pub mod render;
pub mod study;

pub use error::{Error, Result};
pub use geometry::{FrameGeometry, SpacingSource, VolumeGeometry};
pub use loader::{FrameCache, FrameKey, LoadEvent, Loader};
pub use pixel::{ColorModel, Frame, ModalityLut, Samples, VoiFunction, Window};
pub use render::{Rendered, render};
pub use study::{Instance, Patient, Series, Study, StudyTree, scan};
