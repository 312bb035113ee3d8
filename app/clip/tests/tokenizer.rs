//! Token ids against Hugging Face's CLIPTokenizerFast on OpenAI's vocabulary
//! (`tests/fixtures/clip/make_tokenizer_refs.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use radclip_clip::tokenizer::ClipTokenizer;

#[test]
fn ids_match_hugging_face_on_medical_phrases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/clip/tokenizer_reference.json"
    );
    let refs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(refs.len() >= 40);
    let tok = ClipTokenizer::openai(77);
    let mut bad = Vec::new();
    for r in &refs {
        let text = r["text"].as_str().unwrap();
        let want: Vec<u32> = r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text);
        if got != want {
            bad.push(format!("{text:?}\n  ours {got:?}\n  HF   {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        refs.len(),
        bad.join("\n")
    );
}

#[test]
fn batch_pads_and_masks() {
    let tok = ClipTokenizer::openai(77);
    let b = tok.batch(&["no pneumothorax", "a"]);
    assert_eq!(b.ids[0].len(), b.ids[1].len());
    let m = b.mask.unwrap();
    assert_eq!(m[1].iter().sum::<u32>() as usize, tok.encode("a").len());
    assert_eq!(b.ids[1][2], tok.eos());
    assert_eq!(b.ids[1][3], 0);
}
