//! CLIP's byte-level BPE, as Hugging Face's `CLIPTokenizerFast` applies it: NFC, whitespace runs to one
//! space, lower case, `<|startoftext|>`/`<|endoftext|>` as special tokens, and truncation to
//! BOS + (context − 2) tokens + EOS. The BPE itself and OpenAI's vocabulary come from
//! `instant-clip-tokenizer`.

use instant_clip_tokenizer::{Token, Tokenizer};
use unicode_normalization::UnicodeNormalization;

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
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t.as_ref())).collect();
        let len = encoded.iter().map(Vec::len).max().unwrap_or(2);
        let mut ids = Vec::with_capacity(encoded.len());
        let mut mask = Vec::with_capacity(encoded.len());
        for mut e in encoded {
            let n = e.len();
            e.resize(len, 0);
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
}
