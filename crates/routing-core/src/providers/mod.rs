//! Provider clients behind one normalised interface.

mod error;
mod types;

pub use error::ProviderError;
pub use types::{
    ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, FinishReason, Locality,
    Message, Role, Usage,
};
