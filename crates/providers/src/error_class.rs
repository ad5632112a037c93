//! Which [`ProviderError`] class a failure falls in: the rules shared by the
//! clients' `map_error` functions.

use std::time::Duration;

use super::ProviderError;

/// Whether a provider message says the prompt does not fit the context
/// window (OpenAI, vLLM, Ollama, Anthropic, Gemini, Bedrock wordings).
pub(crate) fn is_context_length_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context length is only",
        "context window",
        "exceeds the context length",
        "input length exceeds",
        "prompt is too long",
        "input is too long",
        "input token count",
        "too many input tokens",
        "reduce the length of the messages",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Whether a provider message says its content filter refused the prompt
/// (OpenAI and Azure, Gemini safety blocks, Bedrock guardrails, Anthropic).
pub(crate) fn is_content_filter_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "content_filter",
        "content filter",
        "content management policy",
        "content_policy_violation",
        "blocked due to safety",
        "prohibited_content",
        "blockedreason",
        "guardrail intervened",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The classification of a status when the body says nothing more
/// specific.
pub(crate) fn by_status(
    status: u16,
    message: String,
    retry_after: Option<Duration>,
) -> ProviderError {
    match status {
        400 | 404 | 405 | 413 | 415 | 422 if is_context_length_message(&message) => {
            ProviderError::ContextTooLong { message }
        }
        401 | 403 => ProviderError::Auth { message },
        402 => ProviderError::QuotaExhausted { message },
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        503 | 529 => ProviderError::Overloaded {
            retry_after,
            message,
        },
        408 | 409 | 500..=599 => ProviderError::Upstream { status, message },
        _ => ProviderError::BadRequest { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_classes() {
        let m = || "m".to_owned();
        assert!(matches!(
            by_status(401, m(), None),
            ProviderError::Auth { .. }
        ));
        assert!(matches!(
            by_status(402, m(), None),
            ProviderError::QuotaExhausted { .. }
        ));
        assert!(matches!(
            by_status(429, m(), Some(Duration::from_secs(1))),
            ProviderError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            by_status(529, m(), None),
            ProviderError::Overloaded { .. }
        ));
        assert!(matches!(
            by_status(502, m(), None),
            ProviderError::Upstream { status: 502, .. }
        ));
        assert!(matches!(
            by_status(404, m(), None),
            ProviderError::BadRequest { .. }
        ));
        assert!(matches!(
            by_status(
                400,
                "This model's maximum context length is 4097 tokens".into(),
                None
            ),
            ProviderError::ContextTooLong { .. }
        ));
    }
}
