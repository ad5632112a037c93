//! How sure the emulated model is: token log-probabilities, and whether
//! two samples of one prompt agree.
//!
//! Both are deterministic and set from the prompt, like faults:
//!
//! - `[[emulator:confidence=0.2]]`: every generated token's probability is
//!   about 0.2 (the log-probabilities' mean is `ln 0.2`). Without it the
//!   model is sure: token probabilities between about 0.94 and 1.
//! - `[[emulator:unstable]]`: the answer depends on the request's seed and
//!   temperature, so two samples differ; without it the answer depends on
//!   the conversation alone, so samples agree.
//! - `[[emulator:reply=TEXT]]`: the answer is exactly `TEXT` (a judge
//!   model's verdict, say), in one token.
//!
//! Either may be addressed to some emulators only, as faults are:
//! `[[emulator:confidence=0.2@ollama,vllm]]`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::DIRECTIVE_PREFIX;
use crate::flavor::ProviderFlavor;
use crate::text::{Answer, Conversation, fnv1a};

/// The sampling directives a request carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    /// The probability every token is generated with, about; `None`: sure.
    pub confidence: Option<f64>,
    /// Whether the answer varies with the seed and temperature.
    pub unstable: bool,
    /// The answer, verbatim.
    pub reply: Option<String>,
}

impl Sampling {
    /// The directives in a request body, for an emulator of `flavor`.
    pub fn from_body(text: &str, flavor: ProviderFlavor) -> Self {
        let mut sampling = Sampling::default();
        for (name, value) in settings(text, flavor) {
            match (name, value) {
                ("confidence", Some(v)) => {
                    if let Ok(p) = v.trim().parse::<f64>() {
                        if p.is_finite() {
                            sampling.confidence = Some(p.clamp(1e-6, 1.0));
                        }
                    }
                }
                ("unstable", None) => sampling.unstable = true,
                ("reply", Some(v)) => sampling.reply = Some(v.to_owned()),
                _ => {}
            }
        }
        sampling
    }

    /// The answer to `conv` for a request with `seed` and `temperature`:
    /// the conversation's own answer unless the model is unstable.
    pub fn answer(
        &self,
        conv: &Conversation,
        max_tokens: Option<u64>,
        seed: Option<u64>,
        temperature: Option<f64>,
    ) -> Answer {
        if let Some(reply) = &self.reply {
            return Answer {
                pieces: vec![reply.clone()],
                finish: crate::text::Finish::Stop,
            };
        }
        if !self.unstable {
            return conv.answer(max_tokens);
        }
        let key = format!(
            "{}\u{0}seed={}\u{0}temperature={}",
            conv.key(),
            seed.unwrap_or(0),
            temperature.unwrap_or(1.0)
        );
        crate::text::answer(&key, max_tokens)
    }

    /// The natural-log probability of each of `answer`'s tokens, a
    /// deterministic function of `key` (the conversation) and the piece.
    pub fn logprobs(&self, key: &str, answer: &Answer) -> Vec<TokenLogprob> {
        let mut rng = StdRng::seed_from_u64(fnv1a(key.as_bytes()) ^ 0x0109_b0b5);
        answer
            .pieces
            .iter()
            .map(|piece| {
                let u: f64 = rng.random_range(0.0..1.0);
                let logprob = match self.confidence {
                    None => -(0.002 + 0.06 * u),
                    Some(p) => (p.ln() * (0.8 + 0.4 * u)).min(0.0),
                };
                TokenLogprob {
                    token: piece.clone(),
                    logprob,
                }
            })
            .collect()
    }
}

/// One generated token and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f64,
}

impl TokenLogprob {
    /// `n` alternatives to this token, most likely first, with
    /// probabilities that leave the chosen token's own in place.
    pub fn alternatives(&self, n: usize) -> Vec<TokenLogprob> {
        let rest = (1.0 - self.logprob.exp()).max(1e-9);
        (0..n)
            .map(|k| TokenLogprob {
                token: format!(" alt{k}"),
                logprob: (rest
                    / f64::from(2u32.saturating_pow(u32::try_from(k).unwrap_or(30) + 1)))
                .ln(),
            })
            .collect()
    }
}

/// The `[[emulator:NAME]]` and `[[emulator:NAME=VALUE]]` directives of
/// `text` addressed to `flavor`.
fn settings(text: &str, flavor: ProviderFlavor) -> Vec<(&str, Option<&str>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(DIRECTIVE_PREFIX) {
        let after = &rest[start + DIRECTIVE_PREFIX.len()..];
        let Some(end) = after.find("]]") else {
            break;
        };
        let inner = &after[..end];
        rest = &after[end..];
        let (setting, target) = match inner.split_once('@') {
            Some((setting, target)) => (setting, Some(target)),
            None => (inner, None),
        };
        let addressed = target.is_none_or(|t| {
            t.split(',')
                .any(|name| name.parse::<ProviderFlavor>().is_ok_and(|f| f == flavor))
        });
        if addressed {
            match setting.split_once('=') {
                Some((name, value)) => found.push((name.trim(), Some(value))),
                None => found.push((setting.trim(), None)),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(text: &str) -> Conversation {
        let mut c = Conversation::default();
        c.push("user", text);
        c
    }

    fn mean(lps: &[TokenLogprob]) -> f64 {
        lps.iter().map(|t| t.logprob).sum::<f64>() / lps.len() as f64
    }

    #[test]
    fn directives_set_confidence_and_instability() {
        let body = r#"{"content":"hi [[emulator:confidence=0.2@ollama]] [[emulator:unstable]]"}"#;
        let ollama = Sampling::from_body(body, ProviderFlavor::Ollama);
        assert_eq!(ollama.confidence, Some(0.2));
        assert!(ollama.unstable);
        let groq = Sampling::from_body(body, ProviderFlavor::Groq);
        assert_eq!(groq.confidence, None);
        assert!(groq.unstable);
        assert_eq!(
            Sampling::from_body("[[emulator:rate_limit]]", ProviderFlavor::Groq),
            Sampling::default()
        );
        let judge = Sampling::from_body("[[emulator:reply=0.15@ollama]]", ProviderFlavor::Ollama);
        assert_eq!(
            judge.answer(&conv("grade this"), None, None, None).text(),
            "0.15"
        );
    }

    #[test]
    fn logprobs_follow_the_confidence_and_are_deterministic() {
        let c = conv("why is the sky blue?");
        let answer = c.answer(None);
        let sure = Sampling::default().logprobs(&c.key(), &answer);
        assert_eq!(sure.len(), answer.pieces.len());
        assert!(mean(&sure).exp() > 0.93, "{}", mean(&sure));
        assert_eq!(sure, Sampling::default().logprobs(&c.key(), &answer));
        let unsure = Sampling {
            confidence: Some(0.2),
            ..Sampling::default()
        }
        .logprobs(&c.key(), &answer);
        let m = mean(&unsure).exp();
        assert!((0.15..0.26).contains(&m), "{m}");
        let alts = unsure[0].alternatives(3);
        let total: f64 = std::iter::once(&unsure[0])
            .chain(&alts)
            .map(|t| t.logprob.exp())
            .sum();
        assert!(total <= 1.0 + 1e-9, "{total}");
    }

    #[test]
    fn only_an_unstable_model_varies_with_the_seed() {
        let c = conv("name a colour");
        let stable = Sampling::default();
        assert_eq!(
            stable.answer(&c, None, Some(1), Some(0.7)),
            stable.answer(&c, None, None, None)
        );
        let unstable = Sampling {
            unstable: true,
            ..Sampling::default()
        };
        assert_ne!(
            unstable.answer(&c, None, Some(1), Some(0.7)),
            unstable.answer(&c, None, None, None)
        );
        assert_eq!(
            unstable.answer(&c, None, Some(1), Some(0.7)),
            unstable.answer(&c, None, Some(1), Some(0.7))
        );
    }
}
