//! `config.json`: the BERT hyper-parameters, checked against what this crate runs.

use std::path::Path;

use serde::Deserialize;

use crate::DIMENSIONS;
use crate::Error;

/// The fields of a Hugging Face BERT `config.json` the forward pass needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: BertConfig = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        config.check().map_err(|reason| Error::Config {
            path: path.to_owned(),
            reason,
        })?;
        Ok(config)
    }

    /// Refuses what the forward pass does not implement.
    fn check(&self) -> Result<(), String> {
        if self.hidden_size != DIMENSIONS {
            return Err(format!(
                "hidden_size {} is not {DIMENSIONS}: not all-MiniLM-L6-v2",
                self.hidden_size
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.num_hidden_layers == 0 || self.type_vocab_size == 0 || self.vocab_size == 0 {
            return Err("num_hidden_layers, type_vocab_size and vocab_size must be over 0".into());
        }
        // Far above this model's sizes; they keep tensor sizes from overflowing.
        if self.vocab_size > 1 << 20
            || self.max_position_embeddings > 1 << 16
            || self.intermediate_size > 1 << 16
            || self.num_hidden_layers > 256
            || self.type_vocab_size > 1 << 10
        {
            return Err("a size is implausibly large for a BERT model".into());
        }
        if self.max_position_embeddings < crate::MAX_TOKENS {
            return Err(format!(
                "max_position_embeddings {} is under the {} tokens a text may have",
                self.max_position_embeddings,
                crate::MAX_TOKENS
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub(crate) fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> BertConfig {
        serde_json::from_str(
            r#"{"vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,
                "num_attention_heads":12,"intermediate_size":1536,"hidden_act":"gelu",
                "max_position_embeddings":512,"type_vocab_size":2,"layer_norm_eps":1e-12}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_minilm_config_is_accepted() {
        let config = minilm();
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.head_dim(), 32);
        assert_eq!(config.position_embedding_type, "absolute");
    }

    #[test]
    fn other_models_are_refused() {
        let mut wide = minilm();
        wide.hidden_size = 768;
        assert!(wide.check().unwrap_err().contains("768"));
        let mut relu = minilm();
        relu.hidden_act = "relu".into();
        assert!(relu.check().unwrap_err().contains("relu"));
        let mut heads = minilm();
        heads.num_attention_heads = 5;
        assert!(heads.check().is_err());
        let mut huge = minilm();
        huge.vocab_size = usize::MAX;
        assert!(huge.check().unwrap_err().contains("implausibly large"));
        let mut short = minilm();
        short.max_position_embeddings = 128;
        assert!(short.check().is_err());
    }
}
