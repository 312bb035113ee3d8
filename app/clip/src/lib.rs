//! CLIP-family encoders on candle: checkpoints from disk (Hugging Face layout, or the HF cache), the CLIP
//! tokenizer, preprocessing of images and DICOM frames, and the model itself with every internal reachable.

pub mod config;
pub mod error;
pub mod hub;
pub mod model;
pub mod preprocess;
pub mod tokenizer;
pub mod weights;

pub use config::{Activation, ClipConfig};
pub use error::{Error, Result};
pub use model::{ClipModel, Fwd, TextBatch};
