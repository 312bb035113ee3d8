//! CLIP-family encoders on candle: checkpoints from disk (Hugging Face layout, or the HF cache), the CLIP
//! tokenizer, preprocessing of images and DICOM frames, and the model itself with every internal reachable.

pub mod bert;
pub mod blas;
pub mod card;
pub mod config;
pub mod convert;
pub mod device;
pub mod engine;
pub mod error;
pub mod heatmap;
pub mod hub;
pub mod model;
pub mod openclip;
pub mod ops;
pub mod preprocess;
pub mod refine;
pub mod tokenizer;
pub mod train;
pub mod weights;
pub mod zeroshot;

pub use config::{Activation, ClipConfig};
pub use error::{Error, Result};
pub use model::{ClipModel, Fwd, TextBatch};
