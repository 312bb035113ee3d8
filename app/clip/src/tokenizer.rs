//! CLIP's byte-level BPE, as Hugging Face's `CLIPTokenizerFast` applies it: NFC, whitespace runs to one
//! space, lower case, `<|startoftext|>`/`<|endoftext|>` as special tokens, and truncation to
//! BOS + (context − 2) tokens + EOS. The BPE itself and OpenAI's vocabulary come from
//! `instant-clip-tokenizer`.

use std::path::Path;

use instant_clip_tokenizer::{Token, Tokenizer};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result, first_line};
use crate::model::TextBatch;

pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

const BOS_TEXT: &str = "<|startoftext|>";
const EOS_TEXT: &str = "<|endoftext|>";
// instant-clip-tokenizer's own spelling of the special tokens; in HF they are plain text.
const INNER_SPECIALS: [&str; 2] = ["<start_of_text>", "<end_of_text>"];

impl ClipTokenizer {
    /// OpenAI's vocabulary (49,408 tokens: BOS 49406, EOS 49407), sequences of `context_length` ids.
    pub fn openai(context_length: usize) -> Self {
        ClipTokenizer {
            inner: Tokenizer::new(),
            context_length: context_length.max(2),
        }
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn bos(&self) -> u32 {
        u32::from(self.inner.start_of_text().to_u16())
    }

    pub fn eos(&self) -> u32 {
        u32::from(self.inner.end_of_text().to_u16())
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<Token>) {
        // Break the inner tokenizer's marker strings after their first character: the pre-tokenizer
        // splits "<" from letters anyway, so the ids are those of plain text, as in HF.
        let mut rest = text;
        while let Some((pos, _)) = INNER_SPECIALS
            .iter()
            .filter_map(|s| rest.find(s).map(|p| (p, s)))
            .min()
        {
            self.inner.encode(&rest[..pos + 1], out);
            rest = &rest[pos + 1..];
        }
        self.inner.encode(rest, out);
    }

    /// Ids of one text with BOS and EOS, truncated to the context length, not padded.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let clean: String = text.nfc().collect::<String>();
        let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut tokens: Vec<Token> = Vec::new();
        let mut rest = clean.as_str();
        loop {
            let next = [
                (BOS_TEXT, self.inner.start_of_text()),
                (EOS_TEXT, self.inner.end_of_text()),
            ]
            .into_iter()
            .filter_map(|(s, t)| rest.find(s).map(|p| (p, s.len(), t)))
            .min_by_key(|x| x.0);
            match next {
                Some((pos, len, tok)) => {
                    self.encode_plain(&rest[..pos], &mut tokens);
                    tokens.push(tok);
                    rest = &rest[pos + len..];
                }
                None => {
                    self.encode_plain(rest, &mut tokens);
                    break;
                }
            }
        }
        let mut ids = Vec::with_capacity(self.context_length);
        ids.push(self.bos());
        ids.extend(
            tokens
                .iter()
                .take(self.context_length - 2)
                .map(|t| u32::from(t.to_u16())),
        );
        ids.push(self.eos());
        ids
    }

    /// A padded batch (pad id 0, as OpenAI's tokenizer; the mask marks real tokens).
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> TextBatch {
        pad_batch(texts.iter().map(|t| self.encode(t.as_ref())).collect(), 0)
    }
}

/// BERT's WordPiece as Hugging Face's `BertTokenizerFast` applies it (BiomedCLIP and other models with a
/// BERT text tower), from the `tokenizers` crate: a `tokenizer.json`, or a `vocab.txt` with BERT's
/// normaliser (clean text, split CJK characters, strip accents and lower-case when uncased) and
/// `[CLS] … [SEP]` framing. Truncated to the context length; batches are padded with `[PAD]`.
pub struct WordPieceTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    pad_id: u32,
}

impl WordPieceTokenizer {
    /// Reads `tokenizer.json` if the folder has one, else `vocab.txt` (+ `do_lower_case` from
    /// `tokenizer_config.json`, default true).
    pub fn from_dir(dir: &Path, context_length: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&json, context_length);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            let lowercase = std::fs::read_to_string(dir.join("tokenizer_config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("do_lower_case").and_then(serde_json::Value::as_bool))
                .unwrap_or(true);
            return Self::from_vocab(&vocab, lowercase, context_length);
        }
        Err(Error::Config {
            path: dir.to_path_buf(),
            message: "no tokenizer.json or vocab.txt for the BERT text tower".into(),
        })
    }

    pub fn from_tokenizer_json(path: &Path, context_length: usize) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a readable tokenizer.json ({})", first_line(&e)),
        })?;
        Self::finish(inner, path, context_length)
    }

    pub fn from_vocab(path: &Path, lowercase: bool, context_length: usize) -> Result<Self> {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::bert::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let bad = |m: String| Error::Config {
            path: path.to_path_buf(),
            message: m,
        };
        let wp = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| bad(format!("not a WordPiece vocabulary ({})", first_line(&e))))?;
        let mut inner = tokenizers::Tokenizer::new(wp);
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| bad(format!("the vocabulary has no {t} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(|e| bad(first_line(&e)))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        // As in HF, special tokens typed in the text are those tokens, not words.
        let specials: Vec<tokenizers::AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .into_iter()
            .filter(|t| inner.token_to_id(t).is_some())
            .map(|t| tokenizers::AddedToken::from(t, true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| bad(first_line(&e)))?;
        Self::finish(inner, path, context_length)
    }

    fn finish(
        mut inner: tokenizers::Tokenizer,
        path: &Path,
        context_length: usize,
    ) -> Result<Self> {
        let context_length = context_length.max(2);
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        inner
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: context_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Config {
                path: path.to_path_buf(),
                message: first_line(&e),
            })?;
        inner.with_padding(None);
        Ok(WordPieceTokenizer {
            inner,
            context_length,
            pad_id,
        })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Ids of one text with `[CLS]`/`[SEP]`, truncated, not padded. open_clip collapses whitespace
    /// first; BERT's pre-tokeniser makes that a no-op, so it is not repeated here.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Input(format!("cannot tokenise text ({})", first_line(&e))))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The tokenizer a model's text tower reads.
pub enum TextTokenizer {
    Clip(ClipTokenizer),
    WordPiece(Box<WordPieceTokenizer>),
}

impl TextTokenizer {
    pub fn context_length(&self) -> usize {
        match self {
            TextTokenizer::Clip(t) => t.context_length(),
            TextTokenizer::WordPiece(t) => t.context_length(),
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextTokenizer::Clip(t) => Ok(t.encode(text)),
            TextTokenizer::WordPiece(t) => t.encode(text),
        }
    }

    /// A batch padded to its longest row, with the mask of real tokens.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TextBatch> {
        match self {
            TextTokenizer::Clip(t) => Ok(t.batch(texts)),
            TextTokenizer::WordPiece(t) => {
                let rows = texts
                    .iter()
                    .map(|s| t.encode(s.as_ref()))
                    .collect::<Result<Vec<_>>>()?;
                Ok(pad_batch(rows, t.pad_id()))
            }
        }
    }
}

/// Rows padded with `pad` to the longest, with the mask of real tokens.
pub fn pad_batch(encoded: Vec<Vec<u32>>, pad: u32) -> TextBatch {
    let len = encoded.iter().map(Vec::len).max().unwrap_or(2);
    let mut ids = Vec::with_capacity(encoded.len());
    let mut mask = Vec::with_capacity(encoded.len());
    for mut e in encoded {
        let n = e.len();
        e.resize(len, pad);
        let mut m = vec![1u32; n];
        m.resize(len, 0);
        ids.push(e);
        mask.push(m);
    }
    TextBatch {
        ids,
        mask: Some(mask),
    }
}
