//! Google OAuth2 access tokens for Vertex AI: from a service-account key
//! (an RS256 JWT exchanged at the key's `token_uri`, RFC 7523) or from the
//! GCE/GKE metadata server, cached and refreshed single-flight.

mod error;
mod jwt;
mod metadata;
mod service_account;
mod token;

pub use error::GoogleAuthError;
pub use jwt::{DecodedJwt, decode_jwt, verify_rs256};
pub use metadata::{
    DEFAULT_METADATA_HOST, ENV_GCE_METADATA_HOST, METADATA_FLAVOR, metadata_base_url,
    metadata_token_url,
};
pub use service_account::{JwtClaims, ServiceAccountKey};
pub use token::{AccessToken, REFRESH_THRESHOLD, TokenCache, parse_token_response};

use std::time::SystemTime;

use secrets::Secret;

/// The OAuth2 scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The `grant_type` of a JWT-bearer token exchange.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Where access tokens come from.
#[derive(Debug)]
pub enum TokenSource {
    /// A service-account key, exchanged at `token_uri`.
    ServiceAccount {
        /// The parsed key.
        key: ServiceAccountKey,
        /// Where the JWT is posted; also the JWT's `aud`.
        token_uri: String,
    },
    /// The metadata server at `base_url` (e.g. `http://metadata.google.internal`).
    Metadata {
        /// Scheme and host of the metadata server.
        base_url: String,
    },
}

/// Access tokens from one source, cached until 3m45s before expiry.
#[derive(Debug)]
pub struct GoogleAuth {
    source: TokenSource,
    http: reqwest::Client,
    cache: TokenCache,
}

impl GoogleAuth {
    /// A token provider that fetches through `http`.
    pub fn new(source: TokenSource, http: reqwest::Client) -> Self {
        Self {
            source,
            http,
            cache: TokenCache::new(),
        }
    }

    /// The source tokens come from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// A valid access token, fetching a new one when the cached one is
    /// missing or close to expiry. Concurrent callers share one fetch.
    pub async fn access_token(&self) -> Result<Secret, GoogleAuthError> {
        self.cache.get_or_refresh(|| self.fetch()).await
    }

    async fn fetch(&self) -> Result<AccessToken, GoogleAuthError> {
        match &self.source {
            TokenSource::ServiceAccount { key, token_uri } => {
                let claims = key.claims(token_uri, CLOUD_PLATFORM_SCOPE, SystemTime::now());
                let assertion = key.sign_jwt(&claims)?;
                let response = self
                    .http
                    .post(token_uri)
                    .form(&token_request_form(&assertion))
                    .send()
                    .await
                    .map_err(|e| GoogleAuthError::Transport(e.without_url().to_string()))?;
                read_token_response(response).await
            }
            TokenSource::Metadata { base_url } => {
                let response = self
                    .http
                    .get(metadata_token_url(base_url))
                    .query(&[("scopes", CLOUD_PLATFORM_SCOPE)])
                    .header(METADATA_FLAVOR.0, METADATA_FLAVOR.1)
                    .timeout(metadata::METADATA_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| GoogleAuthError::Transport(e.without_url().to_string()))?;
                read_token_response(response).await
            }
        }
    }
}

/// The form fields of a JWT-bearer token request.
pub fn token_request_form(assertion: &str) -> [(&'static str, &str); 2] {
    [("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)]
}

async fn read_token_response(response: reqwest::Response) -> Result<AccessToken, GoogleAuthError> {
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| GoogleAuthError::Transport(e.without_url().to_string()))?;
    parse_token_response(status, &body, tokio::time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_form_is_a_jwt_bearer_grant() {
        let form = token_request_form("a.b.c");
        assert_eq!(form[0], ("grant_type", JWT_BEARER_GRANT));
        assert_eq!(form[1], ("assertion", "a.b.c"));
    }
}
