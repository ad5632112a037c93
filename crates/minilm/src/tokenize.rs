//! WordPiece tokenisation with the settings sentence-transformers uses for this model.
//!
//! The bundled `tokenizer.json` truncates and pads every text to 128 tokens; sentence-transformers
//! overrides both (`max_seq_length` 256, padding to the longest text of a batch). Here truncation
//! is set to [`MAX_TOKENS`](crate::MAX_TOKENS) word pieces, special tokens included, and padding is
//! turned off: batches are padded later, by [`crate::batching`], to their own longest text.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::{Error, MAX_TOKENS};

/// The model's tokenizer, configured to match sentence-transformers.
pub(crate) struct WordPieces {
    tokenizer: Tokenizer,
}

impl WordPieces {
    /// Loads `tokenizer.json` from `path`; refuses one whose vocabulary does not fit the model's.
    pub(crate) fn load(path: &Path, vocab_size: usize) -> Result<Self, Error> {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > vocab_size {
            return Err(Error::Tokenizer(format!(
                "{}: {vocab} tokens do not fit the model's {vocab_size} embeddings",
                path.display()
            )));
        }
        Ok(Self { tokenizer })
    }

    /// The token ids of each text, `[CLS]` and `[SEP]` included, at most
    /// [`MAX_TOKENS`](crate::MAX_TOKENS) each.
    pub(crate) fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, Error> {
        let encodings = match texts {
            [] => Vec::new(),
            [one] => vec![
                self.tokenizer
                    .encode_fast(*one, true)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?,
            ],
            many => self
                .tokenizer
                .encode_batch_fast(many.to_vec(), true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?,
        };
        Ok(encodings
            .into_iter()
            .map(|encoding| encoding.get_ids().to_vec())
            .collect())
    }
}
