//! Which model ids a provider accepts, checked before any call: an id that
//! is spliced into a URL path (Bedrock, Vertex and Gemini) must not be able
//! to leave its path segment, and no id may carry control characters into
//! a request or a log line.

use crate::ProviderKind;

/// The longest model id accepted (Bedrock ARNs are the longest real ids).
const MAX_LEN: usize = 2048;

/// Checks `model` for a provider of `kind`; the error says what is wrong.
pub fn check_model_id(kind: ProviderKind, model: &str) -> Result<(), String> {
    if model.is_empty() {
        return Err("model must not be empty".to_owned());
    }
    if model.len() > MAX_LEN {
        return Err(format!("model is longer than {MAX_LEN} bytes"));
    }
    if model.contains("..") {
        return Err(format!("model {model:?} must not contain \"..\""));
    }
    let allowed: fn(u8) -> bool = match kind {
        // `{base}/model/{id}/converse`: foundation-model ids, inference
        // profiles and ARNs.
        ProviderKind::Bedrock => |b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b),
        // `.../models/{id}:generateContent`, optionally `models/`-prefixed.
        ProviderKind::Vertex | ProviderKind::Gemini => {
            |b| b.is_ascii_alphanumeric() || b"._-@/".contains(&b)
        }
        // Carried in the JSON body: any visible ASCII.
        ProviderKind::Ollama | ProviderKind::OpenAiCompatible | ProviderKind::Anthropic => {
            |b| b.is_ascii_graphic()
        }
    };
    if let Some(bad) = model.bytes().find(|b| !allowed(*b)) {
        return Err(format!(
            "model {model:?} has a character {} models do not use: {:?}",
            kind_name(kind),
            char::from(bad)
        ));
    }
    if matches!(kind, ProviderKind::Vertex | ProviderKind::Gemini)
        && model.strip_prefix("models/").unwrap_or(model).contains('/')
    {
        return Err(format!(
            "model {model:?} must be a model name, optionally prefixed with models/"
        ));
    }
    if model.split('/').any(|segment| segment == ".") {
        return Err(format!("model {model:?} must not contain a \".\" segment"));
    }
    Ok(())
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ollama => "Ollama",
        ProviderKind::OpenAiCompatible => "OpenAI-compatible",
        ProviderKind::Vertex => "Vertex",
        ProviderKind::Gemini => "Gemini",
        ProviderKind::Anthropic => "Anthropic",
        ProviderKind::Bedrock => "Bedrock",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_pass() {
        for (kind, id) in [
            (
                ProviderKind::Bedrock,
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
            ),
            (ProviderKind::Bedrock, "us.meta.llama3-1-8b-instruct-v1:0"),
            (
                ProviderKind::Bedrock,
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
            ),
            (ProviderKind::Vertex, "gemini-2.5-flash"),
            (ProviderKind::Gemini, "models/gemini-2.5-pro"),
            (ProviderKind::Vertex, "claude-3-5-sonnet@20240620"),
            (
                ProviderKind::OpenAiCompatible,
                "meta-llama/llama-3.1-8b-instruct:free",
            ),
            (ProviderKind::Ollama, "llama3.2:latest"),
        ] {
            assert_eq!(check_model_id(kind, id), Ok(()), "{kind:?} {id}");
        }
    }

    #[test]
    fn ids_that_escape_their_path_or_carry_control_characters_fail() {
        for (kind, id) in [
            (ProviderKind::Bedrock, ".."),
            (ProviderKind::Bedrock, "../../admin"),
            (ProviderKind::Bedrock, "."),
            (ProviderKind::Bedrock, "a/./b"),
            (ProviderKind::Bedrock, "model?x=1"),
            (ProviderKind::Bedrock, "model%2e%2e"),
            (ProviderKind::Vertex, "gemini/../../x"),
            (ProviderKind::Vertex, "publishers/x/models/y"),
            (ProviderKind::Gemini, "gemini#frag"),
            (ProviderKind::OpenAiCompatible, "gpt\n4"),
            (ProviderKind::Anthropic, "claude 3"),
            (ProviderKind::Ollama, ""),
        ] {
            assert!(check_model_id(kind, id).is_err(), "{kind:?} {id:?}");
        }
    }
}
