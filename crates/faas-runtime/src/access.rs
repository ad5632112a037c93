//! The access line: at `info`, one line per request per function, carrying
//! what the request was and what it cost.
//!
//! The runtime writes the line when the request ends ("request completed",
//! with status and duration) inside the request's span, whose fields it
//! carries. A handler adds what only it knows with [`record`]: the tenant,
//! task, rule, provider, model, tokens, cost and error class. Everything else
//! a handler logs about a request belongs at `debug`. Prompts and secrets are
//! never recorded.
//!
//! `LOG_SAMPLE_OK` keeps the access lines of only a share of successful
//! requests; failures are always logged. The choice is a hash of the call
//! id, so every function in a chain keeps or drops the same call's lines.

/// A field of the access line a handler may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The tenant the call is billed to.
    Tenant,
    /// `embed`, `classify`, `generate` or `reason`.
    Task,
    /// The policy rule that decided the route.
    Rule,
    /// The provider that answered.
    Provider,
    /// The model that answered.
    Model,
    /// Prompt tokens reported by the provider.
    InputTokens,
    /// Completion tokens reported by the provider.
    OutputTokens,
    /// The call's cost in USD.
    CostUsd,
    /// The failure class, when the request failed.
    Error,
}

impl Field {
    /// The field's name in the log line.
    pub fn name(self) -> &'static str {
        match self {
            Field::Tenant => "tenant",
            Field::Task => "task",
            Field::Rule => "rule",
            Field::Provider => "provider",
            Field::Model => "model",
            Field::InputTokens => "input_tokens",
            Field::OutputTokens => "output_tokens",
            Field::CostUsd => "cost_usd",
            Field::Error => "error",
        }
    }
}

/// Sets a field of the current request's access line (a no-op outside a
/// request).
pub fn record(field: Field, value: impl tracing::Value) {
    tracing::Span::current().record(field.name(), value);
}

/// Whether a successful call's access line is kept: the same answer for the
/// same call id in every process (FNV-1a, not the process-seeded std hasher).
pub(crate) fn sampled(call_id: &str, per_million: u32) -> bool {
    if per_million >= 1_000_000 {
        return true;
    }
    let hash = call_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    hash % 1_000_000 < u64::from(per_million)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_about_the_share_asked_and_agrees_across_calls() {
        let kept = (0..100_000)
            .filter(|i| sampled(&format!("call-{i}"), 100_000))
            .count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        assert!(sampled("anything", 1_000_000));
        assert!(!(0..1000).any(|i| sampled(&format!("call-{i}"), 0)));
        let id = "0f8e1d4c-9a7b-4c3d-8e2f-1a0b9c8d7e6f";
        assert_eq!(sampled(id, 500_000), sampled(id, 500_000));
    }
}
