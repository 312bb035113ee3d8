//! Device choice: a wish that cannot be met falls back to the CPU with one sentence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use radclip_clip::device::select;

#[test]
fn cpu_is_always_available_and_unknown_names_fall_back() {
    let (d, note) = select("cpu");
    assert!(d.is_cpu() && note.is_none());
    let (d, note) = select("tpu");
    assert!(d.is_cpu());
    assert!(note.unwrap().contains("unknown device"));
    let (_, note) = select("auto");
    assert!(note.is_none());
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_get_it() {
    let (d, note) = select("cuda");
    assert!(d.is_cpu());
    let note = note.unwrap();
    assert!(
        note.contains("cuda") && note.contains("running on the CPU"),
        "{note}"
    );
    assert_eq!(note.lines().count(), 1);
}
