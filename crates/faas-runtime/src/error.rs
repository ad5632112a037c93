//! The crate's single error type.

use std::net::SocketAddr;

/// Everything that can stop a function from configuring itself or serving.
///
/// Request-level failures (body too large, a panicking handler, …) never surface here: the runtime
/// answers them with a JSON error response and keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string is neither a Go duration (`"500ms"`, `"1m5s"`) nor a whole number of seconds.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An environment variable holds a value the runtime cannot use.
    #[error("invalid {variable}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable's name, as read.
        variable: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },

    /// An internal function has no internal token to check callers against.
    #[error(
        "{0}; an internal function answers only the fleet: create the secret \
         (faas-cli secret create internal-token --from-literal=\"$(openssl rand -hex 32)\"), \
         or set INTERNAL_AUTH=off for local development"
    )]
    InternalToken(String),

    /// The runtime's metric families could not be registered (for example because the registry
    /// already holds families of the same names).
    #[error("cannot register the runtime metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// The function's own initialisation (the `init` future given to [`serve`](crate::serve))
    /// failed; the message is the function's error, displayed.
    #[error("function initialisation failed: {0}")]
    Init(String),
}
