//! The model card radclip reads next to the weights (`radclip.toml`): how DICOM frames become model input,
//! the temperature that calibrates shown probabilities, the findings list, and the intended-use label.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, first_line};

/// Which window turns a DICOM frame into the model's 8-bit input.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WindowChoice {
    /// The window on screen (the file's first window in the CLI).
    #[default]
    Viewer,
    /// The file's first window, else min/max.
    File,
    /// The frame's full modality range.
    MinMax,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum WindowSpec {
    Named(WindowChoice),
    /// [center, width] in modality units.
    Fixed([f64; 2]),
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec::Named(WindowChoice::Viewer)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessCard {
    /// "natural" (photographs: the pixels as they are) or "medical" (DICOM windowed by `window`).
    pub path: Option<String>,
    pub window: WindowSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZeroShotCard {
    /// Logits are divided by this before the softmax (fitted on held-out data; 1 = uncalibrated).
    pub temperature: f64,
    /// Findings list, relative to the model folder.
    pub findings: Option<PathBuf>,
    /// Reference image features (`radclip reference`), relative to the model folder: single prompt
    /// pairs are put on their finding's scale over these images (zeroshot.rs). None: raw pairs.
    pub reference: Option<PathBuf>,
}

impl Default for ZeroShotCard {
    fn default() -> Self {
        ZeroShotCard {
            temperature: 1.0,
            findings: None,
            reference: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelCard {
    pub name: Option<String>,
    /// Shown in the GUI next to every AI output.
    pub intended_use: String,
    /// DICOM modalities the model was made for (e.g. ["DX", "CR"]); empty = any. The viewer runs the
    /// model only on series of these modalities and says why for the others.
    pub modalities: Vec<String>,
    pub preprocess: PreprocessCard,
    pub zero_shot: ZeroShotCard,
}

impl ModelCard {
    /// Whether the card allows a series of `modality`.
    pub fn reads_modality(&self, modality: &str) -> bool {
        self.modalities.is_empty()
            || self
                .modalities
                .iter()
                .any(|m| m.eq_ignore_ascii_case(modality.trim()))
    }
}

impl Default for ModelCard {
    fn default() -> Self {
        ModelCard {
            name: None,
            intended_use: "research use only — not for clinical use".into(),
            modalities: Vec::new(),
            preprocess: PreprocessCard::default(),
            zero_shot: ZeroShotCard::default(),
        }
    }
}

pub const CARD_FILE: &str = "radclip.toml";

impl ModelCard {
    /// `radclip.toml` in `dir`, or the defaults when there is none.
    pub fn for_model(dir: &Path) -> Result<Self> {
        let path = dir.join(CARD_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(ModelCard::default());
        };
        let card: ModelCard = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: first_line(&e),
        })?;
        if !(card.zero_shot.temperature.is_finite() && card.zero_shot.temperature > 0.0) {
            return Err(Error::Config {
                path,
                message: "zero_shot.temperature must be a positive number".into(),
            });
        }
        Ok(card)
    }
}
