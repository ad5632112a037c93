//! Access tokens, the token-endpoint response, and the refreshing cache.

use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::GoogleAuthError;
use secrets::Secret;

/// Refresh when less than this much validity is left (google-auth's
/// `REFRESH_THRESHOLD`).
pub const REFRESH_THRESHOLD: Duration = Duration::from_secs(3 * 60 + 45);

/// An access token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// When the provider stops accepting it.
    pub expires_at: Instant,
}

impl AccessToken {
    /// Whether the token is still good for more than [`REFRESH_THRESHOLD`].
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.expires_at.saturating_duration_since(now) > REFRESH_THRESHOLD
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Float(f64),
    Text(String),
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Parses a token-endpoint or metadata-server answer received at `now`.
///
/// `expires_in` may be a number or a string; a missing one counts as one
/// hour.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    now: Instant,
) -> Result<AccessToken, GoogleAuthError> {
    let parsed: Result<TokenBody, _> = serde_json::from_slice(body);
    if !(200..300).contains(&status) {
        let (error, description) = match parsed {
            Ok(b) => (
                b.error.unwrap_or_else(|| "unknown".to_owned()),
                b.error_description.unwrap_or_default(),
            ),
            Err(_) => ("unknown".to_owned(), String::new()),
        };
        return Err(GoogleAuthError::TokenEndpoint {
            status,
            error,
            description,
        });
    }
    let body = parsed.map_err(|e| GoogleAuthError::Decode(e.to_string()))?;
    let token = body
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GoogleAuthError::Decode("no access_token in the response".into()))?;
    let expires_in = match body.expires_in {
        None => 3600,
        Some(Seconds::Number(n)) => n,
        Some(Seconds::Float(f)) if f.is_finite() && f >= 0.0 => f as u64,
        Some(Seconds::Float(_)) => 0,
        Some(Seconds::Text(s)) => s
            .trim()
            .parse()
            .map_err(|_| GoogleAuthError::Decode(format!("expires_in {s:?} is not a number")))?,
    };
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at: now + Duration::from_secs(expires_in),
    })
}

/// Holds the current token; refreshes it single-flight.
#[derive(Debug, Default)]
pub struct TokenCache {
    current: RwLock<Option<AccessToken>>,
    refresh: tokio::sync::Mutex<()>,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh(&self) -> Option<Secret> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|t| t.is_fresh(Instant::now()))
            .map(|t| t.token.clone())
    }

    /// The cached token while fresh; otherwise runs `fetch` once, even when
    /// many callers ask at the same time, and caches its result.
    pub async fn get_or_refresh<F, Fut, E>(&self, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, E>>,
    {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _flight = self.refresh.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let token = fetch().await?;
        let value = token.token.clone();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        let now = Instant::now();
        let t = parse_token_response(
            200,
            br#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.token.expose(), "ya29.a");
        assert_eq!(t.expires_at, now + Duration::from_secs(3599));
        let t =
            parse_token_response(200, br#"{"access_token":"b","expires_in":"120"}"#, now).unwrap();
        assert_eq!(t.expires_at, now + Duration::from_secs(120));
        assert!(
            parse_token_response(200, br#"{"access_token":"b","expires_in":"x"}"#, now).is_err()
        );
        assert!(parse_token_response(200, br#"{"expires_in":1}"#, now).is_err());
    }

    #[test]
    fn endpoint_errors_are_classified() {
        let now = Instant::now();
        let err = parse_token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            now,
        )
        .unwrap_err();
        assert_eq!(
            err,
            GoogleAuthError::TokenEndpoint {
                status: 400,
                error: "invalid_grant".into(),
                description: "Invalid JWT Signature.".into()
            }
        );
        assert!(!err.is_retryable());
        let err =
            parse_token_response(400, br#"{"error":"temporarily_unavailable"}"#, now).unwrap_err();
        assert!(err.is_retryable());
        let err = parse_token_response(503, b"<html>", now).unwrap_err();
        assert!(err.is_retryable());
    }

    fn token(value: &str, lifetime: Duration) -> AccessToken {
        AccessToken {
            token: Secret::new(value),
            expires_at: Instant::now() + lifetime,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_only_when_less_than_the_threshold_is_left() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, GoogleAuthError>(token(&format!("t{n}"), Duration::from_secs(3600)))
        };
        assert_eq!(cache.get_or_refresh(fetch).await.unwrap().expose(), "t0");
        tokio::time::advance(Duration::from_secs(3600 - 226)).await;
        assert_eq!(cache.get_or_refresh(fetch).await.unwrap().expose(), "t0");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get_or_refresh(fetch).await.unwrap().expose(), "t1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(8);
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let cache = Arc::clone(&cache);
            let fetches = Arc::clone(&fetches);
            let mut release = release_rx.clone();
            let started = started_tx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = started.send(()).await;
                cache
                    .get_or_refresh(|| async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        Ok::<_, GoogleAuthError>(token("shared", Duration::from_secs(3600)))
                    })
                    .await
            }));
        }
        for _ in 0..5 {
            started_rx.recv().await.unwrap();
        }
        release_tx.send(true).unwrap();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().expose(), "shared");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_cached() {
        let cache = TokenCache::new();
        let failed: Result<Secret, GoogleAuthError> = cache
            .get_or_refresh(|| async { Err(GoogleAuthError::Transport("down".into())) })
            .await;
        assert!(failed.is_err());
        let ok = cache
            .get_or_refresh(|| async {
                Ok::<_, GoogleAuthError>(token("after", Duration::from_secs(3600)))
            })
            .await
            .unwrap();
        assert_eq!(ok.expose(), "after");
    }
}
