//! The classifier's features: a few dense structural measurements followed by
//! signed, hashed word, word-pair and character n-grams, as one sparse vector.
//!
//! This is the only implementation of the features. The training script reads
//! them from `cargo run -p routing-core --example classifier-features`, so
//! training and serving cannot drift apart; [`fingerprint`] summarises the
//! extractor so that a model trained on other features is refused at load.
//!
//! Layout of a vector of [`DIM`] entries:
//! - `0..DENSE_NAMES.len()`: the dense features named in [`DENSE_NAMES`];
//! - the rest: [`HASH_DIM`] buckets of hashed n-grams, each namespace (word
//!   unigrams, word bigrams, character 4-grams, opening and closing words, and
//!   the words of the first and last lines of a text of several lines, where
//!   instructions usually sit) L2-normalised on its own before the buckets are
//!   summed.
//!
//! Only the first [`HEAD_BYTES`] and the last [`TAIL_BYTES`] of a longer text
//! are read (the byte length itself is measured on the whole text), which
//! bounds the cost per prompt whatever its size.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Version of the feature definition; bump it whenever a feature changes.
pub const FEATURE_VERSION: u32 = 2;

/// Number of hashed buckets (a power of two).
pub const HASH_DIM: usize = 1 << 13;

/// Bytes read from the start of a long text.
pub const HEAD_BYTES: usize = 6 * 1024;
/// Bytes read from the end of a long text.
pub const TAIL_BYTES: usize = 2 * 1024;

/// Names of the dense features, in vector order.
pub const DENSE_NAMES: [&str; 32] = [
    "log_bytes",
    "log_words",
    "log_lines",
    "mean_word_len",
    "digit_frac",
    "upper_frac",
    "punct_frac",
    "non_ascii_frac",
    "long_word_frac",
    "log_question_marks",
    "ends_with_question",
    "starts_with_wh_word",
    "starts_with_auxiliary",
    "starts_with_imperative",
    "log_option_lines",
    "has_answer_cue",
    "has_code_fence",
    "log_code_marks",
    "log_math_marks",
    "has_latex",
    "log_classify_cues",
    "log_reason_cues",
    "log_generate_cues",
    "log_simple_cues",
    "log_hard_cues",
    "log_colons",
    "has_quotes",
    "log_sentences",
    "mid_capital_frac",
    "has_label_list",
    "log_short_list_items",
    "log_or_choices",
];

/// Number of dense features.
pub const DENSE_DIM: usize = DENSE_NAMES.len();

/// Length of a feature vector.
pub const DIM: usize = DENSE_DIM + HASH_DIM;

/// A sparse feature vector: strictly increasing indices below [`DIM`] and
/// their finite values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseFeatures {
    /// Indices, strictly increasing.
    pub indices: Vec<u32>,
    /// Values, one per index.
    pub values: Vec<f32>,
}

impl SparseFeatures {
    /// Number of stored (non-zero) entries.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// `(index, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.indices
            .iter()
            .zip(&self.values)
            .map(|(&i, &v)| (i as usize, v))
    }

    /// Dot product with a dense row of [`DIM`] weights (missing weights count
    /// as zero).
    pub fn dot(&self, row: &[f32]) -> f32 {
        self.iter()
            .map(|(i, v)| row.get(i).copied().unwrap_or(0.0) * v)
            .sum()
    }
}

const WH_WORDS: &[&str] = &[
    "how", "what", "when", "where", "which", "who", "whom", "whose", "why",
];
const AUXILIARIES: &[&str] = &[
    "am", "are", "can", "could", "did", "do", "does", "has", "have", "is", "may", "might", "shall",
    "should", "was", "were", "will", "would",
];
const IMPERATIVES: &[&str] = &[
    "analyse",
    "analyze",
    "assign",
    "calculate",
    "categorise",
    "categorize",
    "classify",
    "compare",
    "compose",
    "compute",
    "create",
    "define",
    "derive",
    "describe",
    "detect",
    "determine",
    "draft",
    "estimate",
    "evaluate",
    "explain",
    "find",
    "generate",
    "give",
    "identify",
    "label",
    "list",
    "make",
    "name",
    "paraphrase",
    "please",
    "prove",
    "rewrite",
    "show",
    "solve",
    "suggest",
    "summarise",
    "summarize",
    "tag",
    "tell",
    "translate",
    "write",
];
const CLASSIFY_CUES: &[&str] = &[
    "categorise",
    "categorize",
    "categories",
    "category",
    "class",
    "classes",
    "classification",
    "classify",
    "detect",
    "intent",
    "intents",
    "label",
    "labels",
    "sentiment",
    "spam",
    "tag",
    "tags",
    "topic",
    "topics",
];
const REASON_CUES: &[&str] = &[
    "analyse",
    "analyze",
    "because",
    "calculate",
    "compute",
    "conclude",
    "derive",
    "deduce",
    "determine",
    "evaluate",
    "hence",
    "if",
    "implies",
    "infer",
    "justify",
    "optimal",
    "probability",
    "proof",
    "prove",
    "reasoning",
    "solve",
    "statement",
    "therefore",
    "theorem",
    "true",
    "false",
];
const GENERATE_CUES: &[&str] = &[
    "blog",
    "compose",
    "draft",
    "email",
    "essay",
    "haiku",
    "letter",
    "paraphrase",
    "poem",
    "reply",
    "rewrite",
    "song",
    "story",
    "summarise",
    "summarize",
    "summary",
    "translate",
    "tweet",
    "write",
];
const SIMPLE_CUES: &[&str] = &[
    "basic", "briefly", "easy", "eli5", "quick", "quickly", "short", "simple", "simply",
];
const HARD_CUES: &[&str] = &[
    "asymptotic",
    "complexity",
    "derivative",
    "eigenvalue",
    "equilibrium",
    "integral",
    "lemma",
    "matrix",
    "polynomial",
    "rigorous",
    "rigorously",
    "theorem",
    "vector",
];

/// Each cue word with a bit per cue list it is in (in the order of the
/// `log_*_cues` dense features).
static CUES: LazyLock<HashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for (slot, list) in [
        CLASSIFY_CUES,
        REASON_CUES,
        GENERATE_CUES,
        SIMPLE_CUES,
        HARD_CUES,
    ]
    .iter()
    .enumerate()
    {
        for word in *list {
            *map.entry(*word).or_insert(0u8) |= 1 << slot;
        }
    }
    map
});

/// The namespaces of hashed features; the tag byte keeps equal strings in
/// different namespaces apart.
#[derive(Clone, Copy)]
enum Namespace {
    Word = 1,
    Bigram = 2,
    Char4 = 3,
    First = 4,
    FirstPair = 5,
    Last = 6,
    EdgeLine = 7,
}

/// 64-bit FNV-1a.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new(ns: Namespace) -> Self {
        let mut h = Self(Self::OFFSET);
        h.byte(ns as u8);
        h
    }

    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(Self::PRIME);
    }

    /// Feeds a token, with every ASCII digit read as `0`.
    fn token(&mut self, token: &str) {
        for &b in token.as_bytes() {
            self.byte(if b.is_ascii_digit() { b'0' } else { b });
        }
    }

    /// A bucket in `0..HASH_DIM` and a sign, from a final avalanche of the
    /// state (FNV's low bits alone mix poorly).
    fn bucket(self) -> (usize, f32) {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let index = (z as usize) & (HASH_DIM - 1);
        let sign = if z >> 63 == 1 { -1.0 } else { 1.0 };
        (index, sign)
    }
}

/// Hashed counts of one namespace, merged and L2-normalised.
#[derive(Default)]
struct Bucketed(Vec<(usize, f32)>);

impl Bucketed {
    fn push(&mut self, h: Fnv) {
        self.0.push(h.bucket());
    }

    /// Sums duplicates and scales to unit L2 norm.
    fn normalised(mut self) -> Vec<(usize, f32)> {
        let merged = merge(&mut self.0);
        let norm = merged.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            merged.into_iter().map(|(i, v)| (i, v / norm)).collect()
        } else {
            Vec::new()
        }
    }
}

/// Sorts by index and sums the values of equal indices, dropping zeros.
fn merge(entries: &mut [(usize, f32)]) -> Vec<(usize, f32)> {
    entries.sort_unstable_by_key(|e| e.0);
    let mut out: Vec<(usize, f32)> = Vec::with_capacity(entries.len());
    for &(i, v) in entries.iter() {
        match out.last_mut() {
            Some(last) if last.0 == i => last.1 += v,
            _ => out.push((i, v)),
        }
    }
    out.retain(|e| e.1 != 0.0);
    out
}

/// The part of `text` that is read: all of it, or its head and tail.
pub(crate) fn window(text: &str) -> (&str, &str) {
    if text.len() <= HEAD_BYTES + TAIL_BYTES {
        return (text, "");
    }
    let mut head = HEAD_BYTES;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - TAIL_BYTES;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    (&text[..head], &text[tail..])
}

fn ln1p(n: usize) -> f32 {
    (n as f32).ln_1p()
}

fn flag(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

fn frac(part: usize, whole: usize) -> f32 {
    if whole == 0 {
        0.0
    } else {
        part as f32 / whole as f32
    }
}

fn is_option_line(line: &str) -> bool {
    let t = line.trim_start();
    let mut chars = t.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(letter), Some('.' | ')' | ':'), Some(' ' | '\t') | None) => {
            letter.is_ascii_alphabetic() && letter.to_ascii_lowercase() <= 'j'
        }
        (Some('('), Some(letter), Some(')')) => {
            letter.is_ascii_alphabetic() && letter.to_ascii_lowercase() <= 'j'
        }
        _ => false,
    }
}

/// Counts over the characters, lines and words read.
#[derive(Default)]
struct Counts {
    words: usize,
    word_chars: usize,
    long_words: usize,
    chars: usize,
    digits: usize,
    letters: usize,
    uppers: usize,
    puncts: usize,
    non_ascii: usize,
    questions: usize,
    colons: usize,
    quotes: bool,
    sentences: usize,
    code_marks: usize,
    math_marks: usize,
    lines: usize,
    option_lines: usize,
    mid_capitals: usize,
    cues: [usize; 5],
    short_list_items: usize,
    or_choices: usize,
}

/// The hashed features, one namespace each.
#[derive(Default)]
struct Grams {
    unigrams: Bucketed,
    bigrams: Bucketed,
    char4: Bucketed,
    firsts: Bucketed,
    lasts: Bucketed,
    edges: Bucketed,
}

/// The first two tokens of the head and the last token read.
#[derive(Default)]
struct EdgeTokens<'t> {
    first: Vec<&'t str>,
    last: Option<&'t str>,
}

/// Extracts the feature vector of `text`. Never panics; any text, including
/// an empty one, gives a vector of finite values.
pub fn extract(text: &str) -> SparseFeatures {
    let (head, tail) = window(text);
    let lower_head = head.to_lowercase();
    let lower_tail = tail.to_lowercase();
    let parts: [(&str, &str); 2] = [(head, &lower_head), (tail, &lower_tail)];

    let mut counts = Counts::default();
    let mut grams = Grams::default();
    let mut tokens = EdgeTokens::default();
    for (part, (original, lower)) in parts.into_iter().enumerate() {
        if original.is_empty() {
            continue;
        }
        count_chars(&mut counts, original);
        read_lines(&mut counts, &mut grams.edges, part, original, lower);
        count_mid_capitals(&mut counts, original);
        read_tokens(&mut counts, &mut grams, &mut tokens, part, lower);
    }
    position_grams(&mut grams, &tokens);

    let first = tokens.first.first().copied();
    let dense = dense_features(
        text,
        (head, tail),
        (&lower_head, &lower_tail),
        &counts,
        first,
    );
    assemble(dense, grams)
}

/// Character classes and marks.
fn count_chars(counts: &mut Counts, original: &str) {
    for c in original.chars() {
        counts.chars += 1;
        if c.is_ascii_digit() {
            counts.digits += 1;
        }
        if c.is_alphabetic() {
            counts.letters += 1;
            if c.is_uppercase() {
                counts.uppers += 1;
            }
        }
        if c.is_ascii_punctuation() {
            counts.puncts += 1;
        }
        if !c.is_ascii() {
            counts.non_ascii += 1;
        }
        match c {
            '?' => counts.questions += 1,
            ':' => counts.colons += 1,
            '"' | '“' | '”' | '«' | '»' => counts.quotes = true,
            '.' | '!' => counts.sentences += 1,
            '{' | '}' | ';' | '<' | '>' | '[' | ']' | '_' | '|' | '`' => counts.code_marks += 1,
            '=' | '+' | '*' | '/' | '^' | '√' | '∑' | '∫' | '≤' | '≥' | '≠' | '±' | '×' | '÷'
            | 'π' => counts.math_marks += 1,
            _ => {}
        }
    }
}

/// Lines, option lines and short lists; the words of the first (head only)
/// and last non-empty lines of a multi-line part.
fn read_lines(counts: &mut Counts, edges: &mut Bucketed, part: usize, original: &str, lower: &str) {
    let mut part_lines = 0usize;
    for line in original.lines() {
        counts.lines += 1;
        part_lines += 1;
        if is_option_line(line) {
            counts.option_lines += 1;
        }
        counts.short_list_items = counts.short_list_items.max(short_items(line));
    }
    if part_lines > 1 {
        let non_empty = || lower.lines().filter(|l| !l.trim().is_empty());
        let edge_lines = [
            if part == 0 { non_empty().next() } else { None },
            non_empty().next_back(),
        ];
        for line in edge_lines.into_iter().flatten() {
            for token in line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|t| !t.is_empty())
            {
                let mut h = Fnv::new(Namespace::EdgeLine);
                h.token(token);
                edges.push(h);
            }
        }
    }
}

/// Capitalised words that do not open a sentence: names and terms.
fn count_mid_capitals(counts: &mut Counts, original: &str) {
    let mut after_stop = true;
    for w in original.split_whitespace() {
        if !after_stop && w.chars().next().is_some_and(char::is_uppercase) {
            counts.mid_capitals += 1;
        }
        after_stop = w.ends_with(['.', '!', '?', ':']);
    }
}

/// Word counts, cue words, and the word, bigram and character 4-gram
/// hashes; remembers the first and last tokens.
fn read_tokens<'t>(
    counts: &mut Counts,
    grams: &mut Grams,
    tokens: &mut EdgeTokens<'t>,
    part: usize,
    lower: &'t str,
) {
    let mut previous: Option<&str> = None;
    for token in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        counts.words += 1;
        if token == "or" {
            counts.or_choices += 1;
        }
        let n = token.chars().count();
        counts.word_chars += n;
        if n >= 9 {
            counts.long_words += 1;
        }
        if let Some(mask) = CUES.get(token) {
            for (slot, count) in counts.cues.iter_mut().enumerate() {
                if mask & (1 << slot) != 0 {
                    *count += 1;
                }
            }
        }
        let mut h = Fnv::new(Namespace::Word);
        h.token(token);
        grams.unigrams.push(h);
        if let Some(p) = previous {
            let mut h = Fnv::new(Namespace::Bigram);
            h.token(p);
            h.byte(b' ');
            h.token(token);
            grams.bigrams.push(h);
        }
        char_grams(token, &mut grams.char4);
        if part == 0 && tokens.first.len() < 2 {
            tokens.first.push(token);
        }
        tokens.last = Some(token);
        previous = Some(token);
    }
}

/// The first token, first pair and last token hashes.
fn position_grams(grams: &mut Grams, tokens: &EdgeTokens<'_>) {
    if let Some(f) = tokens.first.first().copied() {
        let mut h = Fnv::new(Namespace::First);
        h.token(f);
        grams.firsts.push(h);
        if let Some(s) = tokens.first.get(1) {
            let mut h = Fnv::new(Namespace::FirstPair);
            h.token(f);
            h.byte(b' ');
            h.token(s);
            grams.firsts.push(h);
        }
    }
    if let Some(l) = tokens.last {
        let mut h = Fnv::new(Namespace::Last);
        h.token(l);
        grams.lasts.push(h);
    }
}

/// The dense features, in their fixed order.
fn dense_features(
    text: &str,
    (head, tail): (&str, &str),
    (lower_head, lower_tail): (&str, &str),
    c: &Counts,
    first: Option<&str>,
) -> [f32; DENSE_DIM] {
    let trimmed_end = if tail.is_empty() { head } else { tail }.trim_end();
    let lower_all_end = if tail.is_empty() {
        lower_head
    } else {
        lower_tail
    };
    let starts_with = |list: &[&str]| first.is_some_and(|f| list.contains(&f));
    let has_latex = head.contains("\\frac")
        || head.contains("\\sum")
        || head.contains("\\int")
        || head.contains("$$")
        || head.contains("\\(");
    let has_answer_cue = lower_all_end.trim_end().ends_with("answer:")
        || lower_head.contains("\nanswer:")
        || lower_head.contains("answer with");
    let has_label_list = lower_head.contains("options:")
        || lower_head.contains("labels:")
        || lower_head.contains("categories:")
        || lower_head.contains("one of:")
        || lower_head.contains("one of the following");
    [
        ((text.len() as f32).ln_1p()) / 8.0,
        ln1p(c.words) / 6.0,
        ln1p(c.lines) / 4.0,
        frac(c.word_chars, c.words) / 10.0,
        frac(c.digits, c.chars),
        frac(c.uppers, c.letters),
        frac(c.puncts, c.chars),
        frac(c.non_ascii, c.chars),
        frac(c.long_words, c.words),
        ln1p(c.questions),
        flag(trimmed_end.ends_with('?')),
        flag(starts_with(WH_WORDS)),
        flag(starts_with(AUXILIARIES)),
        flag(starts_with(IMPERATIVES)),
        ln1p(c.option_lines),
        flag(has_answer_cue),
        flag(head.contains("```")),
        ln1p(c.code_marks),
        ln1p(c.math_marks),
        flag(has_latex),
        ln1p(c.cues[0]),
        ln1p(c.cues[1]),
        ln1p(c.cues[2]),
        ln1p(c.cues[3]),
        ln1p(c.cues[4]),
        ln1p(c.colons),
        flag(c.quotes),
        ln1p(c.sentences),
        frac(c.mid_capitals, c.words),
        flag(has_label_list),
        ln1p(c.short_list_items),
        ln1p(c.or_choices),
    ]
}

/// The dense features, then each namespace's hashes normalised and merged,
/// zeros and non-finite values left out.
fn assemble(dense: [f32; DENSE_DIM], grams: Grams) -> SparseFeatures {
    let mut hashed: Vec<(usize, f32)> = Vec::new();
    for ns in [
        grams.unigrams,
        grams.bigrams,
        grams.char4,
        grams.firsts,
        grams.lasts,
        grams.edges,
    ] {
        hashed.extend(ns.normalised());
    }
    let hashed = merge(&mut hashed);

    let mut out = SparseFeatures {
        indices: Vec::with_capacity(DENSE_DIM + hashed.len()),
        values: Vec::with_capacity(DENSE_DIM + hashed.len()),
    };
    for (i, v) in dense.into_iter().enumerate() {
        if v != 0.0 && v.is_finite() {
            out.indices.push(i as u32);
            out.values.push(v);
        }
    }
    for (i, v) in hashed {
        if v.is_finite() {
            out.indices.push((DENSE_DIM + i) as u32);
            out.values.push(v);
        }
    }
    out
}

/// The number of items in the longest run of short comma-separated items
/// (one to three words each, the last possibly joined by "or"/"and") on a
/// line: how label lists are usually written. Zero below three items.
fn short_items(line: &str) -> usize {
    let mut best = 0usize;
    let mut run = 0usize;
    for segment in line.split([',', '(', ')', ':', ';']) {
        let words = segment.split_whitespace().count();
        let joined = segment.contains(" or ") || segment.contains(" and ");
        if (1..=3).contains(&words) || (joined && words <= 7) {
            run += if joined { 2 } else { 1 };
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    if best >= 3 { best } else { 0 }
}

/// Hashes the character 4-grams of `<token>` (the whole of it when shorter).
fn char_grams(token: &str, out: &mut Bucketed) {
    let mut buf = ['\0'; 4];
    let padded = std::iter::once('<')
        .chain(token.chars())
        .chain(std::iter::once('>'));
    let mut seen = 0usize;
    for c in padded {
        buf.rotate_left(1);
        buf[3] = c;
        seen += 1;
        if seen >= 4 {
            out.push(gram_hash(&buf));
        }
    }
    if seen < 4 {
        out.push(gram_hash(&buf[4 - seen..]));
    }
}

fn gram_hash(chars: &[char]) -> Fnv {
    let mut h = Fnv::new(Namespace::Char4);
    let mut utf8 = [0u8; 4];
    for &c in chars {
        if c.is_ascii() {
            h.byte(if c.is_ascii_digit() { b'0' } else { c as u8 });
        } else {
            c.encode_utf8(&mut utf8).bytes().for_each(|b| h.byte(b));
        }
    }
    h
}

/// Texts whose features make up the [`fingerprint`].
const PROBES: &[&str] = &[
    "",
    "hi",
    "Classify the sentiment of this review: great phone, awful battery.",
    "Prove that the square root of 2 is irrational, step by step.",
    "Write a haiku about autumn leaves",
    "What is 17 * 23?\nA. 391\nB. 401\nC. 381\nD. 371\nAnswer:",
    "```rust\nfn main() { println!(\"{}\", 1 + 2); }\n```",
    "Où est la gare ? Ünïcödé — 東京 42 ∑ √x ≤ π",
    "I am still waiting on my card?",
];

/// A summary of the extractor: FNV-1a over [`FEATURE_VERSION`], [`DIM`], the
/// dense names and the exact feature vectors of a fixed set of probe texts
/// (values rounded to 1e-5). A model file records the fingerprint of the
/// features it was trained on; a different one means the model is stale.
pub fn fingerprint() -> String {
    let mut h = Fnv(Fnv::OFFSET);
    let mut feed = |bytes: &[u8]| bytes.iter().for_each(|&b| h.byte(b));
    feed(&FEATURE_VERSION.to_le_bytes());
    feed(&(DIM as u64).to_le_bytes());
    for name in DENSE_NAMES {
        feed(name.as_bytes());
        feed(b"\0");
    }
    for probe in PROBES {
        for (i, v) in extract(probe).iter() {
            feed(&(i as u64).to_le_bytes());
            feed(&((f64::from(v) * 1e5).round() as i64).to_le_bytes());
        }
        feed(b"\n");
    }
    format!("fnv1a64:{:016x}", h.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dense(text: &str, name: &str) -> f32 {
        let at = DENSE_NAMES.iter().position(|n| *n == name).unwrap();
        extract(text)
            .iter()
            .find(|(i, _)| *i == at)
            .map_or(0.0, |(_, v)| v)
    }

    #[test]
    fn structural_features_see_what_they_name() {
        let mc = "Which is prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:";
        assert!((dense(mc, "log_option_lines") - 4f32.ln_1p()).abs() < 1e-6);
        assert_eq!(dense(mc, "has_answer_cue"), 1.0);
        assert_eq!(dense(mc, "starts_with_wh_word"), 1.0);
        assert_eq!(dense("Is it raining?", "ends_with_question"), 1.0);
        assert_eq!(dense("Is it raining?", "starts_with_auxiliary"), 1.0);
        assert_eq!(dense("It is raining.", "ends_with_question"), 0.0);
        assert_eq!(dense("Write a poem", "starts_with_imperative"), 1.0);
        assert_eq!(dense("```py\nx=1\n```", "has_code_fence"), 1.0);
        assert_eq!(dense("no digits here", "digit_frac"), 0.0);
        assert!((dense("ab12", "digit_frac") - 0.5).abs() < 1e-6);
    }

    #[test]
    fn each_hashed_namespace_has_unit_norm_before_collisions() {
        // One word: one unigram, no bigram, its char grams; opening and
        // closing word. Squared hashed mass is at most 4 (one per namespace
        // plus first/last), and well above 1.
        let f = extract("hello");
        let mass: f32 = f
            .iter()
            .filter(|(i, _)| *i >= DENSE_DIM)
            .map(|(_, v)| v * v)
            .sum();
        assert!(mass > 1.5 && mass < 5.0, "{mass}");
    }

    #[test]
    fn digits_are_read_as_zero() {
        assert_eq!(extract("room 12 please"), extract("room 47 please"));
        assert_ne!(extract("room 12 please"), extract("room 123 please"));
    }

    #[test]
    fn long_texts_are_read_in_a_bounded_window() {
        let long = "word ".repeat(100_000);
        let f = extract(&long);
        assert!(!f.is_empty());
        // Same window, different middle: same hashed part.
        let other = format!(
            "{}{}{}",
            &long[..HEAD_BYTES],
            "zzz ".repeat(5000),
            &long[long.len() - TAIL_BYTES..]
        );
        let hashed = |f: &SparseFeatures| {
            f.iter()
                .filter(|(i, _)| *i >= DENSE_DIM)
                .collect::<Vec<_>>()
        };
        assert_eq!(hashed(&f), hashed(&extract(&other)));
    }

    #[test]
    fn the_fingerprint_is_stable_within_a_build() {
        assert_eq!(fingerprint(), fingerprint());
        assert!(fingerprint().starts_with("fnv1a64:"));
    }

    proptest! {
        #[test]
        fn any_text_gives_sorted_finite_in_range_features(text in "\\PC{0,300}") {
            let f = extract(&text);
            prop_assert_eq!(f.indices.len(), f.values.len());
            prop_assert!(f.indices.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(f.indices.iter().all(|&i| (i as usize) < DIM));
            prop_assert!(f.values.iter().all(|v| v.is_finite() && *v != 0.0));
        }

        #[test]
        fn multibyte_text_around_the_window_edges_never_panics(
            unit in "[é東😀a ]{1,4}",
            reps in (HEAD_BYTES / 4)..(HEAD_BYTES + TAIL_BYTES),
        ) {
            let text = unit.repeat(reps);
            let f = extract(&text);
            prop_assert!(f.values.iter().all(|v| v.is_finite()));
        }
    }
}
