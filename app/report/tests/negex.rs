//! The labeler on sentences whose reading any radiologist agrees on (negation, doubt, scope,
//! look-alikes), with a small list written here rather than the demo model's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use radclip_report::{Assertion, Concept, Labeler, ReportError};

fn concept(name: &str, mentions: &[&str], not_mentions: &[&str]) -> Concept {
    Concept {
        name: name.into(),
        mentions: mentions.iter().map(|s| s.to_string()).collect(),
        not_mentions: not_mentions.iter().map(|s| s.to_string()).collect(),
    }
}

fn labeler() -> Labeler {
    Labeler::new([
        concept(
            "effusion",
            &[
                "pleural effusion",
                "effusion",
                "blunting * costophrenic angle",
            ],
            &["pericardial effusion"],
        ),
        concept("pneumothorax", &["pneumothorax"], &[]),
        concept("cardiomegaly", &["cardiomegaly", "heart * enlarged"], &[]),
        concept("mass", &["mass"], &["mass effect"]),
        concept("nodule", &["nodule"], &[]),
        concept("opacity", &["opacity"], &[]),
    ])
    .unwrap()
}

use Assertion::{Absent as A, Present as P, Uncertain as U};

/// `text` labelled as (effusion, pneumothorax, cardiomegaly, mass, nodule, opacity).
fn check(text: &str, want: [Option<Assertion>; 6]) {
    assert_eq!(labeler().label(text), want.to_vec(), "{text:?}");
}

#[test]
fn plain_statements_and_negations() {
    check(
        "Small left pleural effusion.",
        [Some(P), None, None, None, None, None],
    );
    check("No pneumothorax.", [None, Some(A), None, None, None, None]);
    check("NO PNEUMOTHORAX.", [None, Some(A), None, None, None, None]);
    check(
        "There is no pneumothorax or pleural effusion.",
        [Some(A), Some(A), None, None, None, None],
    );
    check(
        "No focal consolidation, pleural effusion, or pneumothorax.",
        [Some(A), Some(A), None, None, None, None],
    );
    check(
        "Negative for pneumothorax.",
        [None, Some(A), None, None, None, None],
    );
    check(
        "The lungs are free of nodules.",
        [None, None, None, None, Some(A), None],
    );
    check(
        "Left pleural effusion has resolved.",
        [Some(A), None, None, None, None, None],
    );
    check(
        "Pneumothorax is not seen.",
        [None, Some(A), None, None, None, None],
    );
}

#[test]
fn a_negation_ends_with_its_clause_or_a_turn_of_the_sentence() {
    check(
        "No pneumothorax. Small left effusion.",
        [Some(P), Some(A), None, None, None, None],
    );
    check(
        "No pneumothorax, but there is a small left effusion.",
        [Some(P), Some(A), None, None, None, None],
    );
    check(
        "No effusion; a 2.5 cm mass in the right upper lobe.",
        [Some(A), None, None, Some(P), None, None],
    );
    // A decimal point does not end the clause: the negation reaches the nodule.
    check(
        "No 1.5 cm nodule is seen.",
        [None, None, None, None, Some(A), None],
    );
}

#[test]
fn doubt_is_its_own_answer() {
    check(
        "Pneumothorax cannot be excluded.",
        [None, Some(U), None, None, None, None],
    );
    check(
        "Can't exclude a small pneumothorax.",
        [None, Some(U), None, None, None, None],
    );
    check(
        "Possible small right effusion.",
        [Some(U), None, None, None, None, None],
    );
    check(
        "Rounded opacity in the left lower zone, likely a nodule.",
        [None, None, None, None, Some(U), Some(P)],
    );
    check(
        "Nodule versus vessel end-on.",
        [None, None, None, None, Some(U), None],
    );
}

#[test]
fn pseudo_negations_do_not_negate() {
    check(
        "No interval change in the left pleural effusion.",
        [Some(P), None, None, None, None, None],
    );
    check(
        "No change in cardiomegaly.",
        [None, None, Some(P), None, None, None],
    );
    check(
        "The nodule is not significantly changed.",
        [None, None, None, None, Some(P), None],
    );
}

#[test]
fn gaps_carry_their_negation() {
    check(
        "The heart is mildly enlarged.",
        [None, None, Some(P), None, None, None],
    );
    check(
        "The heart is not enlarged.",
        [None, None, Some(A), None, None, None],
    );
    check(
        "Blunting of the left costophrenic angle.",
        [Some(P), None, None, None, None, None],
    );
    // A gap does not reach across a comma, or further than three words.
    check("Heart size normal, aorta enlarged.", [None; 6]);
    check(
        "The heart is normal in size and the aorta is enlarged.",
        [None; 6],
    );
}

#[test]
fn look_alikes_and_plurals() {
    check("Small pericardial effusion.", [None; 6]);
    check("No mass effect on the trachea.", [None; 6]);
    check(
        "Nodules in both lungs.",
        [None, None, None, None, Some(P), None],
    );
    check(
        "Patchy bibasilar opacities.",
        [None, None, None, None, None, Some(P)],
    );
}

#[test]
fn the_strongest_mention_wins() {
    check(
        "No right pleural effusion. Small left pleural effusion.",
        [Some(P), None, None, None, None, None],
    );
    check(
        "No pneumothorax. Pneumothorax cannot be excluded on this supine film.",
        [None, Some(U), None, None, None, None],
    );
}

#[test]
fn mentions_point_into_the_text() {
    let text = "FINDINGS: There is a small left pleural effusion.";
    let m = labeler().mentions(text);
    assert_eq!(m.len(), 1);
    assert_eq!(&text[m[0].range.clone()], "pleural effusion");
    assert_eq!(m[0].concept, 0);
    assert_eq!(m[0].assertion, P);
    assert_eq!(
        labeler().stated("Possible nodule. No effusion."),
        vec![false, false, false, false, true, false]
    );
}

#[test]
fn phrases_must_have_words_at_both_ends() {
    for (phrase, loose) in [
        ("* effusion", true),
        ("effusion *", true),
        ("  ", false),
        ("--", false),
    ] {
        let err = Labeler::new([concept("x", &[phrase], &[])]).unwrap_err();
        match err {
            ReportError::LooseGap { .. } => assert!(loose, "{phrase:?}"),
            ReportError::EmptyPhrase { .. } => assert!(!loose, "{phrase:?}"),
        }
    }
    assert!(
        !Labeler::new([concept("x", &[], &[])])
            .unwrap()
            .has_mentions()
    );
}

#[test]
fn each_stated_mention_takes_the_side_named_nearest_to_it() {
    use radclip_report::Sides;
    let l = labeler();
    let sides = |text: &str| {
        let s = l.sides(text);
        (s[0], s[1])
    };
    let none = Sides::default();
    // Before the mention, inside a phrase's gap, after it.
    assert_eq!(sides("Small right pleural effusion."), (Sides::RIGHT, none));
    assert_eq!(
        sides("Blunting of the left costophrenic angle."),
        (Sides::LEFT, none)
    );
    assert_eq!(sides("Pneumothorax on the left."), (none, Sides::LEFT));
    // Two findings, two sides: each takes its nearest.
    assert_eq!(
        sides("Large right pneumothorax with a small left effusion."),
        (Sides::LEFT, Sides::RIGHT)
    );
    assert_eq!(
        sides("Bilateral pleural effusions. No pneumothorax on the right."),
        (Sides::BOTH, none)
    );
    // A side in another sentence, or across a turn, is not this mention's.
    assert_eq!(
        sides("The left lung is clear. Pneumothorax."),
        (none, Sides::default())
    );
    assert_eq!(
        sides("Left lung clear but pneumothorax present."),
        (none, none)
    );
    // Negated or unmentioned findings have no side; mentions of one finding on both sides add up.
    assert_eq!(sides("No left pleural effusion."), (none, none));
    assert_eq!(
        sides("Right effusion. Small left effusion."),
        (Sides::BOTH, none)
    );
    assert_eq!(Sides::BOTH.name(), "bilateral");
}
