//! The crate's one error type.

/// Everything that can go wrong while configuring or running an emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed (binding, accepting, address lookup).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A provider flavor name was not recognised.
    #[error("unknown provider flavor {0:?}")]
    UnknownFlavor(String),
    /// A fault name was not recognised.
    #[error("unknown fault {0:?}")]
    UnknownFault(String),
    /// A configuration value was out of range or malformed.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Generating or using key material failed.
    #[error("key material error: {0}")]
    Crypto(String),
    /// JSON encoding or decoding failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// The connection was dropped on purpose (a fault, or the emulator shutting down).
    #[error("connection dropped by the emulator")]
    ConnectionDropped,
    /// Reading a request body failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
}
