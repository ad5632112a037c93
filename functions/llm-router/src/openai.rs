//! The answers of the OpenAI-compatible surface (`POST /v1/chat/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`) in OpenAI's shapes; requests are
//! parsed in [`crate::openai_request`], failures in [`crate::openai_error`].

use routing_core::api::RouteResponse;
use routing_core::chat::{FinishReason, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// OpenAI's `usage` object.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct OpenAiUsage {
    /// Prompt tokens, cached included.
    pub prompt_tokens: u64,
    /// Generated tokens, reasoning included.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
    /// Cached prompt tokens.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Reasoning tokens.
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct CompletionTokensDetails {
    /// Hidden reasoning tokens.
    pub reasoning_tokens: u64,
}

impl From<&Usage> for OpenAiUsage {
    fn from(u: &Usage) -> Self {
        OpenAiUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_input_tokens,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
        }
    }
}

/// OpenAI's `finish_reason` for ours.
pub(crate) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// The non-streamed answer.
pub(crate) fn completion(answer: &RouteResponse, created: u64, extension: Value) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{}", answer.id),
        "object": "chat.completion",
        "created": created,
        "model": catalogue_id(&answer.provider, &answer.model),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.output.clone().unwrap_or_default(), "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(answer.finish_reason.unwrap_or(FinishReason::Stop)),
        }],
        "usage": OpenAiUsage::from(&answer.usage),
        "x_route": extension,
    })
}

/// One streamed chunk (`chat.completion.chunk`).
pub(crate) fn chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    finish: Option<&str>,
) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null,
    })
}

/// The usage chunk sent before `[DONE]` when `include_usage` is set.
pub(crate) fn usage_chunk(
    id: &str,
    created: u64,
    model: &str,
    usage: &Usage,
    extension: Value,
) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": OpenAiUsage::from(usage),
        "x_route": extension,
    })
}

/// `provider/model`, the id the catalogue and `/v1/models` use.
pub(crate) fn catalogue_id(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// The embeddings answer in OpenAI's shape; with `base64`, each vector is
/// its little-endian `f32` bytes in base64, as OpenAI encodes them.
pub(crate) fn embeddings(answer: &RouteResponse, base64: bool, extension: Value) -> Value {
    use base64::Engine as _;
    let data: Vec<Value> = answer
        .embeddings
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    serde_json::json!({
        "object": "list",
        "data": data,
        "model": answer.model,
        "usage": {"prompt_tokens": answer.usage.input_tokens, "total_tokens": answer.usage.input_tokens},
        "x_route": extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        use base64::Engine as _;
        let answer: RouteResponse = serde_json::from_value(serde_json::json!({
            "id": "x", "task": "embed", "provider": "local", "model": "m",
            "embeddings": [[1.0, -0.5]], "usage": {"input_tokens": 1, "output_tokens": 0},
            "cost_usd": 0.0, "latency_ms": 1, "route": {"rule": "r", "reason": "r"}
        }))
        .unwrap();
        let body = embeddings(&answer, true, Value::Null);
        let text = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![1.0, -0.5]);
        assert_eq!(
            embeddings(&answer, false, Value::Null)["data"][0]["embedding"][1],
            -0.5
        );
    }
}
