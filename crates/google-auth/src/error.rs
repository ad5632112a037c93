//! Why an access token could not be had.

/// A failure to obtain a Google access token. Never carries key material
/// or token values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleAuthError {
    /// The service-account JSON or its private key is unusable.
    #[error("invalid service account key: {0}")]
    InvalidServiceAccount(String),
    /// Signing the JWT failed.
    #[error("could not sign the token request")]
    Signing,
    /// The token endpoint or metadata server could not be reached.
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    /// The token endpoint answered with an error.
    #[error("token endpoint returned {status}: {error} {description}")]
    TokenEndpoint {
        /// HTTP status.
        status: u16,
        /// OAuth2 `error`, e.g. `invalid_grant`.
        error: String,
        /// OAuth2 `error_description`.
        description: String,
    },
    /// The token response could not be parsed.
    #[error("undecodable token response: {0}")]
    Decode(String),
}

impl GoogleAuthError {
    /// Whether asking again may succeed (google-auth's `_can_retry`).
    pub fn is_retryable(&self) -> bool {
        match self {
            GoogleAuthError::Transport(_) => true,
            GoogleAuthError::TokenEndpoint { status, error, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        error.as_str(),
                        "internal_failure" | "server_error" | "temporarily_unavailable"
                    )
            }
            _ => false,
        }
    }
}
