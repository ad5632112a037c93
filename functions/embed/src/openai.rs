//! OpenAI's `POST /v1/embeddings`, in and out.

use routing_core::api::{EmbedFunctionResponse, parse_json};
use serde::{Deserialize, Serialize};

use crate::error::EmbedError;

/// An OpenAI embeddings request. Fields OpenAI defines but this function has no use for (such
/// as `user`) are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    /// The model the caller wants; absent means the served one.
    #[serde(default)]
    pub model: Option<String>,
    /// A string or an array of strings.
    #[serde(default, deserialize_with = "routing_core::api::one_or_many")]
    pub input: Option<Vec<String>>,
    /// Only `float` is served.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// When present, must be the model's own length.
    #[serde(default)]
    pub dimensions: Option<u64>,
}

impl EmbeddingsRequest {
    /// Parses a body.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, EmbedError> {
        Ok(parse_json(body)?)
    }

    /// Refuses what this function cannot answer: another model, another encoding, another
    /// length. `serves_model` tells whether a model name is the served one.
    pub(crate) fn check(
        &self,
        serves_model: impl Fn(&str) -> bool,
        served: &str,
        dimensions: Option<usize>,
    ) -> Result<(), EmbedError> {
        if let Some(model) = self.model.as_deref().filter(|m| !serves_model(m)) {
            return Err(EmbedError::invalid(
                "model",
                format!("model {model:?} is not served here; this function serves {served:?}"),
            ));
        }
        if let Some(format) = self.encoding_format.as_deref().filter(|f| *f != "float") {
            return Err(EmbedError::invalid(
                "encoding_format",
                format!("encoding_format {format:?} is not supported; use \"float\""),
            ));
        }
        if let Some(wanted) = self
            .dimensions
            .filter(|&w| dimensions.is_none_or(|d| d as u64 != w))
        {
            let have = dimensions.map_or("no fixed length".to_owned(), |d| d.to_string());
            return Err(EmbedError::invalid(
                "dimensions",
                format!("dimensions {wanted} is not supported; the model's vectors have {have}"),
            ));
        }
        Ok(())
    }
}

/// One vector in the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EmbeddingObject {
    /// Always `embedding`.
    pub object: String,
    /// Position of its input.
    pub index: usize,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// Token usage in OpenAI's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EmbeddingsUsage {
    /// Tokens in the inputs.
    pub prompt_tokens: u64,
    /// The same: embeddings produce no tokens.
    pub total_tokens: u64,
}

/// An OpenAI embeddings answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in order.
    pub data: Vec<EmbeddingObject>,
    /// The model that computed them.
    pub model: String,
    /// Token usage.
    pub usage: EmbeddingsUsage,
}

impl From<EmbedFunctionResponse> for EmbeddingsResponse {
    fn from(answer: EmbedFunctionResponse) -> Self {
        let tokens = answer.usage.input_tokens;
        Self {
            object: "list".to_owned(),
            data: answer
                .embeddings
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| EmbeddingObject {
                    object: "embedding".to_owned(),
                    index,
                    embedding,
                })
                .collect(),
            model: answer.model,
            usage: EmbeddingsUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing_core::chat::Usage;

    fn serves(name: &str) -> bool {
        name == "all-MiniLM-L6-v2"
    }

    #[test]
    fn a_string_or_an_array_is_accepted_and_unknown_fields_ignored() {
        let one =
            EmbeddingsRequest::parse(br#"{"model":"all-MiniLM-L6-v2","input":"hi","user":"u1"}"#)
                .unwrap();
        assert_eq!(one.input, Some(vec!["hi".to_owned()]));
        let many =
            EmbeddingsRequest::parse(br#"{"input":["a","b"],"encoding_format":"float"}"#).unwrap();
        assert_eq!(many.input.as_deref().map(<[String]>::len), Some(2));
        assert!(many.check(serves, "all-MiniLM-L6-v2", Some(384)).is_ok());
    }

    #[test]
    fn token_arrays_and_bad_json_are_400s() {
        for body in [&br#"{"input":[[1,2,3]]}"#[..], b"{\"input\":", b"[]", b""] {
            let err = EmbeddingsRequest::parse(body).unwrap_err();
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn another_model_encoding_or_length_is_refused() {
        let check = |body: &[u8]| {
            EmbeddingsRequest::parse(body)
                .unwrap()
                .check(serves, "all-MiniLM-L6-v2", Some(384))
                .unwrap_err()
                .detail()
                .param
        };
        assert_eq!(
            check(br#"{"model":"text-embedding-3-small","input":"a"}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            check(br#"{"input":"a","encoding_format":"base64"}"#).as_deref(),
            Some("encoding_format")
        );
        assert_eq!(
            check(br#"{"input":"a","dimensions":256}"#).as_deref(),
            Some("dimensions")
        );
        let exact = EmbeddingsRequest::parse(br#"{"input":"a","dimensions":384}"#).unwrap();
        assert!(exact.check(serves, "all-MiniLM-L6-v2", Some(384)).is_ok());
    }

    #[test]
    fn the_answer_has_openai_s_shape() {
        let answer = EmbeddingsResponse::from(EmbedFunctionResponse {
            provider: "local".into(),
            model: "all-MiniLM-L6-v2".into(),
            embeddings: vec![vec![0.5, 0.5], vec![1.0, 0.0]],
            usage: Usage {
                input_tokens: 7,
                ..Usage::default()
            },
        });
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, 0.5]},
                    {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
                ],
                "model": "all-MiniLM-L6-v2",
                "usage": {"prompt_tokens": 7, "total_tokens": 7},
            })
        );
    }
}
