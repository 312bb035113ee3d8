//! What a radiology report says of each finding of a list: stated, hedged, negated, or not mentioned.
//!
//! A rule-based labeler in the manner of NegEx (Chapman et al., 2001) and the CheXpert labeler (Irvin et
//! al., 2019): each finding has mention phrases ("pleural effusion", "blunting * costophrenic angle")
//! and phrases that look like a mention but are not one ("pericardial effusion"); a mention is then
//! negated by a cue before it in its clause ("no", "without", "negative for"…) or just after it ("…
//! has resolved"), hedged by an uncertainty cue ("possible", "cannot be excluded"…), or else stated.
//! Clauses end at sentence punctuation and at words that turn the sentence ("but", "which"…).
//!
//! Rules, not a model, because the viewer labels an archive on the CPU in milliseconds, the rules can
//! be read and corrected by the radiologist who disagrees, and a finding list brings its own words.
//! The cost is what rules always miss (long-range syntax, typos); `tests/openi.rs` measures it on real
//! reports.

/// Why a finding's phrases cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("finding \"{finding}\": the phrase \"{phrase}\" has no words")]
    EmptyPhrase { finding: String, phrase: String },
    #[error("finding \"{finding}\": the phrase \"{phrase}\" starts or ends with a gap (*)")]
    LooseGap { finding: String, phrase: String },
}

pub type Result<T> = std::result::Result<T, ReportError>;

/// What a report says of a finding it mentions. Ordered so that the strongest statement wins when a
/// report mentions a finding more than once (CheXpert's rule: any positive mention makes it positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assertion {
    /// "No pneumothorax."
    Absent,
    /// "Possible small left effusion." / "Pneumothorax cannot be excluded."
    Uncertain,
    /// "Small left pleural effusion."
    Present,
}

impl Assertion {
    /// Present or hedged: what a reader would look for in the image.
    pub fn is_stated(self) -> bool {
        self != Assertion::Absent
    }
}

/// A finding's words: `mentions` name it, `not_mentions` look like a mention but are not one (a
/// mention overlapping one is dropped). In a phrase, `*` stands for up to three words ("heart * enlarged"
/// matches "heart is mildly enlarged"); a negation among them negates the mention ("heart is not
/// enlarged"). Words match case-insensitively and in their plural (-s, -es, -y → -ies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concept {
    pub name: String,
    pub mentions: Vec<String>,
    pub not_mentions: Vec<String>,
}

/// The side of the body a mention is on, as the report says it (the patient's left and right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Sides {
    pub left: bool,
    pub right: bool,
}

impl Sides {
    pub const LEFT: Sides = Sides {
        left: true,
        right: false,
    };
    pub const RIGHT: Sides = Sides {
        left: false,
        right: true,
    };
    pub const BOTH: Sides = Sides {
        left: true,
        right: true,
    };

    /// No side named.
    pub fn is_none(self) -> bool {
        !self.left && !self.right
    }

    /// Whether the two name a side in common.
    pub fn shares(self, other: Sides) -> bool {
        (self.left && other.left) || (self.right && other.right)
    }

    pub fn union(self, other: Sides) -> Sides {
        Sides {
            left: self.left || other.left,
            right: self.right || other.right,
        }
    }

    /// "left", "right", "bilateral" or "" (none named).
    pub fn name(self) -> &'static str {
        match (self.left, self.right) {
            (true, true) => "bilateral",
            (true, false) => "left",
            (false, true) => "right",
            (false, false) => "",
        }
    }
}

/// One mention found in a report: which concept, where (byte range in the text), what is said, and on
/// which side (the side word nearest to it in its clause: "small left pleural effusion", "effusion on
/// the right", "bilateral effusions").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub concept: usize,
    pub range: std::ops::Range<usize>,
    pub assertion: Assertion,
    pub sides: Sides,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Word(String),
    Gap,
}

#[derive(Debug, Clone)]
struct Phrase(Vec<Part>);

#[derive(Debug, Clone)]
struct Compiled {
    mentions: Vec<Phrase>,
    not_mentions: Vec<Phrase>,
}

/// Labels reports against a list of concepts.
#[derive(Debug, Clone)]
pub struct Labeler {
    names: Vec<String>,
    concepts: Vec<Compiled>,
}

/// Most words a `*` in a phrase stands for.
const GAP: usize = 3;
/// How far before a mention an uncertainty cue reaches, and after it a negation or uncertainty cue.
const UNCERTAIN_BEFORE: usize = 6;
const AFTER: usize = 3;

/// Cues that negate what follows them in the clause.
const PRE_NEGATION: &[&[&str]] = &[
    &["no"],
    &["not"],
    &["without"],
    &["nor"],
    &["neither"],
    &["never"],
    &["negative", "for"],
    &["free", "of"],
    &["clear", "of"],
    &["absence", "of"],
    &["resolution", "of"],
    &["resolved"],
    &["isnt"],
    &["arent"],
    &["doesnt"],
];
/// Cues that negate the mention just before them ("pneumothorax has resolved").
const POST_NEGATION: &[&[&str]] = &[
    &["not"],
    &["absent"],
    &["resolved"],
    &["negative"],
    &["no", "longer"],
    &["isnt"],
    &["arent"],
];
/// Look like negations but are not ("no change in the effusion").
const PSEUDO_NEGATION: &[&[&str]] = &[
    &["no", "change"],
    &["no", "interval", "change"],
    &["no", "significant", "change"],
    &["no", "significant", "interval", "change"],
    &["no", "definite", "change"],
    &["no", "increase"],
    &["no", "decrease"],
    &["not", "only"],
    &["not", "changed"],
    &["not", "significantly", "changed"],
    &["not", "significantly", "different"],
    &["not", "increased"],
    &["not", "decreased"],
    &["not", "previously"],
    &["without", "change"],
    &["without", "interval", "change"],
    &["without", "significant", "change"],
];
/// Whole phrases of doubt, found first because they contain "not" ("cannot be excluded").
const UNCERTAIN_PHRASE: &[&[&str]] = &[
    &["cannot", "be", "excluded"],
    &["cannot", "be", "ruled", "out"],
    &["cannot", "rule", "out"],
    &["cannot", "exclude"],
    &["cant", "be", "excluded"],
    &["cant", "exclude"],
    &["can", "not", "be", "excluded"],
    &["can", "not", "exclude"],
    &["not", "be", "excluded"],
    &["not", "excluded"],
    &["not", "be", "ruled", "out"],
    &["not", "ruled", "out"],
    &["not", "entirely", "excluded"],
    &["rule", "out"],
];
/// Cues of doubt before a mention ("possible nodule", "likely a nodule").
const PRE_UNCERTAIN: &[&str] = &[
    "possible",
    "possibly",
    "probable",
    "probably",
    "likely",
    "may",
    "might",
    "could",
    "questionable",
    "question",
    "questionably",
    "suspicious",
    "suspect",
    "suspected",
    "suspicion",
    "concerning",
    "concern",
    "suggest",
    "suggests",
    "suggestive",
    "suggesting",
    "equivocal",
    "versus",
    "vs",
    "borderline",
    "presumed",
    "presumably",
    "differential",
    "worrisome",
    "indeterminate",
];
/// Cues of doubt just after a mention ("nodule versus vessel", "effusion, possibly").
const POST_UNCERTAIN: &[&str] = &[
    "possible",
    "possibly",
    "questionable",
    "suspected",
    "versus",
    "vs",
];
/// Words that end the scope of a cue before them: the sentence turns.
const TERMINATOR: &[&str] = &[
    "but",
    "however",
    "although",
    "though",
    "except",
    "which",
    "whereas",
    "while",
    "otherwise",
    "aside",
    "apart",
    "besides",
    "yet",
    "there",
];
/// Words that name a side, and the side.
const SIDE_WORDS: &[(&str, Sides)] = &[
    ("left", Sides::LEFT),
    ("right", Sides::RIGHT),
    ("bilateral", Sides::BOTH),
    ("bilaterally", Sides::BOTH),
    ("both", Sides::BOTH),
    ("biapical", Sides::BOTH),
    ("bibasilar", Sides::BOTH),
    ("bibasal", Sides::BOTH),
];
/// How many words from a mention its side word may be.
const SIDE_REACH: usize = 10;

/// The side named nearest to the mention at `span` in its clause (before it first on a tie; inside the
/// mention counts), not across a word that turns the sentence.
fn side_of(tokens: &[Token], span: std::ops::Range<usize>) -> Sides {
    let side_at = |at: usize| {
        tokens.get(at).and_then(|t| {
            SIDE_WORDS
                .iter()
                .find(|(w, _)| *w == t.text)
                .map(|(_, s)| *s)
        })
    };
    if let Some(s) = span.clone().find_map(side_at) {
        return s;
    }
    for d in 1..=SIDE_REACH {
        let before = span.start.checked_sub(d);
        let after = span.end + d - 1;
        let blocked_before =
            before.is_none_or(|b| (b..span.start).any(|k| is_terminator(tokens, k)));
        if !blocked_before && let Some(s) = before.and_then(side_at) {
            return s;
        }
        let blocked_after = (span.end..=after).any(|k| is_terminator(tokens, k));
        if !blocked_after && let Some(s) = side_at(after) {
            return s;
        }
    }
    Sides::default()
}

/// Words that, inside a phrase's gap, negate its mention ("the heart is not enlarged").
const GAP_NEGATION: &[&str] = &["no", "not", "without", "never", "isnt", "arent"];

#[derive(Debug, Clone)]
struct Token {
    text: String,
    range: std::ops::Range<usize>,
    /// A comma, parenthesis or the like stands between this token and the previous one.
    broken: bool,
}

/// Lower-case words of `text`, split into clauses at sentence punctuation (a point between digits,
/// as in "2.5 cm", is not one). Apostrophes inside words are dropped ("can't" → "cant").
fn clauses(text: &str) -> Vec<Vec<Token>> {
    let mut out: Vec<Vec<Token>> = vec![Vec::new()];
    let mut word = String::new();
    let mut start = 0usize;
    let mut broken = false;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let flush = |out: &mut Vec<Vec<Token>>,
                 word: &mut String,
                 start: usize,
                 end: usize,
                 broken: &mut bool| {
        if !word.is_empty() {
            if let Some(c) = out.last_mut() {
                c.push(Token {
                    text: std::mem::take(word),
                    range: start..end,
                    broken: *broken,
                });
            }
            *broken = false;
        }
    };
    for (i, &(at, c)) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            if word.is_empty() {
                start = at;
            }
            word.extend(c.to_lowercase());
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j].1);
        let next = chars.get(i + 1).map(|p| p.1);
        if (c == '\'' || c == '’')
            && prev.is_some_and(char::is_alphanumeric)
            && next.is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        if c == '.'
            && prev.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            word.push('.');
            continue;
        }
        flush(&mut out, &mut word, start, at, &mut broken);
        match c {
            '.' | ';' | ':' | '?' | '!' | '\n' | '\r' => {
                if out.last().is_some_and(|c| !c.is_empty()) {
                    out.push(Vec::new());
                }
                broken = false;
            }
            ',' | '(' | ')' | '[' | ']' | '"' => broken = true,
            _ => {}
        }
    }
    flush(&mut out, &mut word, start, text.len(), &mut broken);
    out.retain(|c| !c.is_empty());
    out
}

fn word_matches(pattern: &str, token: &str) -> bool {
    if token == pattern {
        return true;
    }
    if let Some(rest) = token.strip_prefix(pattern)
        && (rest == "s" || rest == "es")
    {
        return true;
    }
    pattern
        .strip_suffix('y')
        .is_some_and(|stem| token.strip_prefix(stem) == Some("ies"))
}

fn seq_at(tokens: &[Token], at: usize, seq: &[&str]) -> bool {
    seq.iter()
        .enumerate()
        .all(|(k, w)| tokens.get(at + k).is_some_and(|t| t.text == *w))
}

impl Phrase {
    fn parse(finding: &str, phrase: &str) -> Result<Phrase> {
        let mut parts: Vec<Part> = Vec::new();
        for raw in phrase.split_whitespace() {
            if raw == "*" {
                if parts.last() != Some(&Part::Gap) {
                    parts.push(Part::Gap);
                }
                continue;
            }
            // The same words as the report's tokenizer makes ("well-defined" → "well", "defined").
            for clause in clauses(raw) {
                parts.extend(clause.into_iter().map(|t| Part::Word(t.text)));
            }
        }
        let err_empty = || ReportError::EmptyPhrase {
            finding: finding.to_string(),
            phrase: phrase.to_string(),
        };
        match (parts.first(), parts.last()) {
            (None, _) | (_, None) => Err(err_empty()),
            (Some(Part::Gap), _) | (_, Some(Part::Gap)) => Err(ReportError::LooseGap {
                finding: finding.to_string(),
                phrase: phrase.to_string(),
            }),
            _ => Ok(Phrase(parts)),
        }
    }

    /// Where the phrase matching from `start` ends (exclusive), the shortest gaps first, and whether a
    /// gap held a negation.
    fn match_at(&self, tokens: &[Token], start: usize) -> Option<(usize, bool)> {
        fn go(
            parts: &[Part],
            tokens: &[Token],
            at: usize,
            first: bool,
            negated: bool,
        ) -> Option<(usize, bool)> {
            let Some((part, rest)) = parts.split_first() else {
                return Some((at, negated));
            };
            match part {
                Part::Word(w) => {
                    let t = tokens.get(at)?;
                    if (!first && t.broken) || !word_matches(w, &t.text) {
                        return None;
                    }
                    go(rest, tokens, at + 1, false, negated)
                }
                Part::Gap => (0..=GAP).find_map(|n| {
                    let gap = tokens.get(at..at + n)?;
                    if gap.iter().any(|t| t.broken) {
                        return None;
                    }
                    let neg =
                        negated || gap.iter().any(|t| GAP_NEGATION.contains(&t.text.as_str()));
                    go(rest, tokens, at + n, false, neg)
                }),
            }
        }
        go(&self.0, tokens, start, true, false)
    }
}

fn compile(finding: &str, phrases: &[String]) -> Result<Vec<Phrase>> {
    phrases.iter().map(|p| Phrase::parse(finding, p)).collect()
}

/// Spans (token ranges) of uncertainty phrases in a clause.
fn uncertain_spans(tokens: &[Token]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match UNCERTAIN_PHRASE.iter().find(|p| seq_at(tokens, i, p)) {
            Some(p) => {
                spans.push(i..i + p.len());
                i += p.len();
            }
            None => i += 1,
        }
    }
    spans
}

fn is_terminator(tokens: &[Token], at: usize) -> bool {
    tokens
        .get(at)
        .is_some_and(|t| TERMINATOR.contains(&t.text.as_str()))
}

/// What the clause `tokens` says of the mention at `span`; `doubt`: the clause's uncertainty phrases.
fn assess(
    tokens: &[Token],
    doubt: &[std::ops::Range<usize>],
    span: std::ops::Range<usize>,
    gap_negated: bool,
) -> Assertion {
    let near = |r: &std::ops::Range<usize>| {
        (r.end <= span.start && span.start - r.end <= UNCERTAIN_BEFORE)
            || (r.start >= span.end && r.start - span.end <= AFTER)
    };
    if doubt.iter().any(near) {
        return Assertion::Uncertain;
    }
    if gap_negated {
        return Assertion::Absent;
    }
    let in_doubt = |at: usize| doubt.iter().any(|r| r.contains(&at));
    // Before: back to the clause start or a terminator.
    let mut before = span.start;
    while before > 0 && !is_terminator(tokens, before - 1) {
        before -= 1;
    }
    for at in before..span.start {
        if in_doubt(at) || PSEUDO_NEGATION.iter().any(|p| seq_at(tokens, at, p)) {
            continue;
        }
        if PRE_NEGATION
            .iter()
            .any(|p| at + p.len() <= span.start && seq_at(tokens, at, p))
        {
            return Assertion::Absent;
        }
    }
    // After: a few words, up to a terminator.
    let mut after = span.end;
    // "with" starts what the mention has, not what is said of it ("pneumothorax with absent markings").
    while after < tokens.len()
        && after < span.end + AFTER
        && !is_terminator(tokens, after)
        && tokens[after].text != "with"
    {
        after += 1;
    }
    for at in span.end..after {
        if in_doubt(at) || PSEUDO_NEGATION.iter().any(|p| seq_at(tokens, at, p)) {
            continue;
        }
        if POST_NEGATION.iter().any(|p| seq_at(tokens, at, p)) {
            return Assertion::Absent;
        }
        if POST_UNCERTAIN.contains(&tokens[at].text.as_str()) {
            return Assertion::Uncertain;
        }
    }
    // Before the mention, or inside it ("heart size is borderline").
    let from = before.max(span.start.saturating_sub(UNCERTAIN_BEFORE));
    if tokens[from..span.end]
        .iter()
        .any(|t| PRE_UNCERTAIN.contains(&t.text.as_str()))
    {
        return Assertion::Uncertain;
    }
    Assertion::Present
}

impl Labeler {
    /// A labeler for `concepts`, in their order.
    pub fn new(concepts: impl IntoIterator<Item = Concept>) -> Result<Self> {
        let mut names = Vec::new();
        let mut compiled = Vec::new();
        for c in concepts {
            compiled.push(Compiled {
                mentions: compile(&c.name, &c.mentions)?,
                not_mentions: compile(&c.name, &c.not_mentions)?,
            });
            names.push(c.name);
        }
        Ok(Labeler {
            names,
            concepts: compiled,
        })
    }

    /// The concepts' names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether any concept has a mention phrase (a list without words labels nothing).
    pub fn has_mentions(&self) -> bool {
        self.concepts.iter().any(|c| !c.mentions.is_empty())
    }

    /// Every mention in `text`, in order of position.
    pub fn mentions(&self, text: &str) -> Vec<Mention> {
        let mut out = Vec::new();
        for clause in clauses(text) {
            let clause = clause.as_slice();
            let doubt = uncertain_spans(clause);
            for (ci, c) in self.concepts.iter().enumerate() {
                let blocked: Vec<std::ops::Range<usize>> = (0..clause.len())
                    .flat_map(|s| {
                        c.not_mentions
                            .iter()
                            .filter_map(move |p| p.match_at(clause, s).map(|(e, _)| s..e))
                    })
                    .collect();
                let mut s = 0;
                while s < clause.len() {
                    // The longest phrase matching here, so "pleural effusion" is one mention.
                    let best = c
                        .mentions
                        .iter()
                        .filter_map(|p| p.match_at(clause, s))
                        .max_by_key(|(e, _)| *e);
                    let Some((e, negated)) = best else {
                        s += 1;
                        continue;
                    };
                    if !blocked.iter().any(|b| b.start < e && s < b.end) {
                        out.push(Mention {
                            concept: ci,
                            range: clause[s].range.start..clause[e - 1].range.end,
                            assertion: assess(clause, &doubt, s..e, negated),
                            sides: side_of(clause, s..e),
                        });
                    }
                    s = e;
                }
            }
        }
        out.sort_by_key(|m| (m.range.start, m.concept));
        out
    }

    /// Per concept, what `text` says of it (`None`: not mentioned); several mentions: the strongest.
    pub fn label(&self, text: &str) -> Vec<Option<Assertion>> {
        let mut out = vec![None; self.concepts.len()];
        for m in self.mentions(text) {
            if let Some(slot) = out.get_mut(m.concept) {
                *slot = (*slot).max(Some(m.assertion));
            }
        }
        out
    }

    /// Per concept, the sides on which `text` states it (present or hedged): the union over its
    /// stated mentions; none named, or not stated: [`Sides::default`].
    pub fn sides(&self, text: &str) -> Vec<Sides> {
        let mut out = vec![Sides::default(); self.concepts.len()];
        for m in self.mentions(text) {
            if m.assertion.is_stated()
                && let Some(slot) = out.get_mut(m.concept)
            {
                *slot = slot.union(m.sides);
            }
        }
        out
    }

    /// Per concept, whether `text` states it (present or hedged).
    pub fn stated(&self, text: &str) -> Vec<bool> {
        self.label(text)
            .into_iter()
            .map(|a| a.is_some_and(Assertion::is_stated))
            .collect()
    }
}
