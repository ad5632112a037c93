//! Deterministic answers, token counts and embeddings.
//!
//! The answer is a function of the prompt alone (not of the provider or
//! the emulator's seed), so the same conversation gets the same words from
//! every emulator and on every run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Output length when the request sets no limit and the provider has none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Tokens added per message for role and formatting, as chat templates do.
const PER_MESSAGE_OVERHEAD: u64 = 3;

const WORDS: &[&str] = &[
    "the", "model", "answer", "light", "river", "system", "signal", "simple", "because", "across",
    "value", "stable", "router", "request", "quiet", "blue", "garden", "measure", "careful",
    "result", "engine", "token", "window", "bright", "context", "follows", "small", "large",
    "several", "clearly", "useful", "pattern", "reason", "water", "stone", "travel", "number",
    "balance", "latency", "cluster", "provider", "function", "useful", "north", "winter", "summer",
    "library", "detail", "example", "rather", "within", "between", "often", "always", "mostly",
    "short", "longer", "question", "history", "season", "morning", "evening", "paper",
];

/// 64-bit FNV-1a: a stable hash (unlike `std`'s, which may change).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Tokens in a piece of text: about one per four characters.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Prompt tokens of a conversation: its text plus a small per-message
/// overhead, like a chat template adds.
pub fn prompt_tokens<'a>(messages: impl IntoIterator<Item = &'a str>) -> u64 {
    messages
        .into_iter()
        .map(|m| estimate_tokens(m) + PER_MESSAGE_OVERHEAD)
        .sum::<u64>()
        .max(1)
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The answer is complete.
    Stop,
    /// Cut at the token limit.
    Length,
}

/// A generated answer, one piece per output token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text pieces; concatenated they form the answer.
    pub pieces: Vec<String>,
    /// Why it ended.
    pub finish: Finish,
}

impl Answer {
    /// The full text.
    pub fn text(&self) -> String {
        self.pieces.concat()
    }

    /// Output tokens (one per piece).
    pub fn tokens(&self) -> u64 {
        self.pieces.len() as u64
    }
}

/// The answer to a prompt, at most `max_tokens` tokens long. The natural
/// length (16 to 111 tokens) and the words depend only on `prompt`.
pub fn answer(prompt: &str, max_tokens: Option<u64>) -> Answer {
    let mut rng = StdRng::seed_from_u64(fnv1a(prompt.as_bytes()));
    let natural = 16 + rng.random_range(0..96u64);
    let limit = max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let (count, finish) = if natural > limit {
        (limit, Finish::Length)
    } else {
        (natural, Finish::Stop)
    };
    let mut pieces = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut sentence_left = 0u64;
    for i in 0..count {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        let mut piece = String::with_capacity(word.len() + 2);
        if i > 0 {
            piece.push(' ');
        }
        if sentence_left == 0 {
            sentence_left = rng.random_range(6..15u64);
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                piece.extend(first.to_uppercase());
                piece.push_str(chars.as_str());
            }
        } else {
            piece.push_str(word);
        }
        sentence_left -= 1;
        if sentence_left == 0 || (i + 1 == count && finish == Finish::Stop) {
            piece.push('.');
            sentence_left = 0;
        }
        pieces.push(piece);
    }
    Answer { pieces, finish }
}

/// A deterministic, L2-normalised embedding of `text` with `dims`
/// dimensions. Built by feature hashing of lowercased words, so texts that
/// share words are closer than texts that do not.
pub fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut acc = vec![0f64; dims];
    let mut any = false;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        any = true;
        add_word_vector(&mut acc, &word.to_lowercase());
    }
    if !any {
        add_word_vector(&mut acc, text);
    }
    let norm = acc.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        acc.iter().map(|v| (v / norm) as f32).collect()
    } else {
        acc.iter().map(|v| *v as f32).collect()
    }
}

fn add_word_vector(acc: &mut [f64], word: &str) {
    let mut rng = StdRng::seed_from_u64(fnv1a(word.as_bytes()));
    for slot in acc.iter_mut() {
        *slot += rng.random_range(-1.0..1.0);
    }
}

/// A request-unique alphanumeric id of `len` characters.
pub fn random_id(rng: &mut impl Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A lowercase hex id of `len` characters.
pub fn random_hex(rng: &mut impl Rng, len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(HEX[rng.random_range(0..HEX.len())]))
        .collect()
}

/// A conversation in provider-neutral form: what decides the answer and
/// the prompt token count, whatever the wire format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// (role, text) pairs; roles normalised to `system`, `user`, `assistant`.
    pub messages: Vec<(String, String)>,
}

impl Conversation {
    /// Adds a turn; `developer` counts as `system`, `model` as `assistant`.
    pub fn push(&mut self, role: &str, text: impl Into<String>) {
        let role = match role {
            "system" | "developer" => "system",
            "assistant" | "model" => "assistant",
            "tool" | "function" => "tool",
            _ => "user",
        };
        self.messages.push((role.to_owned(), text.into()));
    }

    /// Whether there is no turn at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The text the answer is derived from.
    pub fn key(&self) -> String {
        let mut key = String::new();
        for (role, text) in &self.messages {
            key.push_str(role);
            key.push('\n');
            key.push_str(text);
            key.push_str("\n\n");
        }
        key
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> u64 {
        prompt_tokens(self.messages.iter().map(|(_, t)| t.as_str()))
    }

    /// The deterministic answer.
    pub fn answer(&self, max_tokens: Option<u64>) -> Answer {
        answer(&self.key(), max_tokens)
    }
}

/// The text of a message `content` in any provider's shape: a string, an
/// array of parts (`{"type":"text","text":..}`, `{"text":..}` or strings),
/// or one part object. Non-text parts are skipped.
pub fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .map(content_text)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::Value::Object(map) => map
            .get("text")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn answers_are_deterministic_and_bounded() {
        let a = answer("why is the sky blue?", None);
        assert_eq!(a, answer("why is the sky blue?", None));
        assert_ne!(a.text(), answer("why is grass green?", None).text());
        assert!((16..112).contains(&a.tokens()));
        assert_eq!(a.finish, Finish::Stop);
        assert!(a.text().ends_with('.'));
        let cut = answer("why is the sky blue?", Some(5));
        assert_eq!(cut.tokens(), 5);
        assert_eq!(cut.finish, Finish::Length);
        assert!(a.text().starts_with(&cut.text()));
    }

    #[test]
    fn token_estimates_are_about_a_quarter_of_the_characters() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(prompt_tokens(["Hello!"]), 5);
    }

    #[test]
    fn conversations_normalise_roles_and_content_shapes() {
        let mut a = Conversation::default();
        a.push("developer", "Be brief.");
        a.push(
            "user",
            content_text(&serde_json::json!([{"type":"text","text":"Hi"}])),
        );
        let mut b = Conversation::default();
        b.push("system", content_text(&serde_json::json!("Be brief.")));
        b.push("user", content_text(&serde_json::json!({"text":"Hi"})));
        assert_eq!(a.key(), b.key());
        assert_eq!(a.answer(None), b.answer(None));
        assert!(a.prompt_tokens() >= 6);
    }

    #[test]
    fn embeddings_are_unit_length_and_word_sensitive() {
        let a = embed("The sky is blue today", 384);
        assert_eq!(a.len(), 384);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(a, embed("The sky is blue today", 384));
        let near = embed("the sky is blue", 384);
        let far = embed("quarterly revenue forecast spreadsheet", 384);
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.3);
        assert_eq!(embed("", 8).len(), 8);
    }
}
