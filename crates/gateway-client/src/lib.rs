//! Calls to other functions through the OpenFaaS gateway
//! (`$OPENFAAS_GATEWAY_URL/function/<name>`), carrying the call id and a
//! deadline derived from the caller's remaining budget.

use std::time::Duration;

use std::pin::Pin;

use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use routing_core::api::{ErrorBody, ErrorDetail, ProxyStreamEvent};
use routing_core::env::{
    DEFAULT_GATEWAY_URL, DEFAULT_SECRETS_DIR, ENV_GATEWAY_URL, ENV_SECRETS_DIR, Env,
};
use routing_core::failure::{FAILURE_CLASS_HEADER, Failure, FailureClass};
use secrets::{INTERNAL_TOKEN, INTERNAL_TOKEN_HEADER, Secret, SecretError, SecretStore};

/// The header that carries the call id through the fleet.
pub const CALL_ID_HEADER: &str = "X-Call-Id";
/// of-watchdog lowers its `exec_timeout` for one request to this value.
pub const WATCHDOG_TIMEOUT_HEADER: &str = "X-Timeout";

/// A failed call to another function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// No answer before the deadline.
    #[error("{function} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The function called.
        function: String,
        /// The time it was given.
        timeout_ms: u64,
    },
    /// The gateway or the function could not be reached.
    #[error("{function} is unreachable: {message}")]
    Unreachable {
        /// The function called.
        function: String,
        /// What the HTTP client said.
        message: String,
    },
    /// The function (or the gateway) answered with an error status.
    #[error("{function} answered {status}: {}", detail.message)]
    Failed {
        /// The function called.
        function: String,
        /// HTTP status.
        status: u16,
        /// The error body, or one made up from the status when the body was
        /// not JSON (the gateway answers 502 with an empty body).
        detail: Box<ErrorDetail>,
        /// The wait the function asked for (`Retry-After`, whole seconds,
        /// at most `u16::MAX`), if any.
        retry_after_secs: Option<u16>,
    },
    /// A success status with a body that does not parse.
    #[error("{function} answered with an unreadable body: {message}")]
    Decode {
        /// The function called.
        function: String,
        /// The parse error.
        message: String,
    },
}

/// The events of a streamed function answer.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ProxyStreamEvent, InvokeError>> + Send>>;

/// Calls functions through the gateway.
#[derive(Debug, Clone)]
pub struct FunctionClient {
    base_url: String,
    http: reqwest::Client,
    /// The fleet's internal token, sent on every call when present.
    token: Option<Secret>,
}

impl FunctionClient {
    /// A client for the gateway at `base_url` (no trailing slash needed).
    pub fn new(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Self {
            base_url,
            http,
            token: None,
        }
    }

    /// Sends `token` in [`INTERNAL_TOKEN_HEADER`] on every call, so that the
    /// fleet's internal functions answer.
    #[must_use]
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// Reads `OPENFAAS_GATEWAY_URL` (default `http://gateway.openfaas:8080`)
    /// and the `internal-token` secret from `SECRETS_DIR`, when mounted.
    ///
    /// # Errors
    /// When the secret exists but cannot be read.
    pub fn from_env(env: &Env, http: reqwest::Client) -> Result<Self, SecretError> {
        let client = Self::new(env.get_or(ENV_GATEWAY_URL, DEFAULT_GATEWAY_URL), http);
        let secrets = SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        Ok(match secrets.read_optional(INTERNAL_TOKEN)? {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// A POST to `function` at `path`, with the fleet's headers.
    fn post(&self, function: &str, path: &str, call_id: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(self.function_url(function, path))
            .header(CALL_ID_HEADER, call_id);
        match &self.token {
            Some(token) => request.header(INTERNAL_TOKEN_HEADER, token.expose()),
            None => request,
        }
    }

    /// The gateway base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<gateway>/function/<name><path>`.
    pub fn function_url(&self, function: &str, path: &str) -> String {
        format!("{}/function/{function}{path}", self.base_url)
    }

    /// POSTs `body` as JSON to `function` at `path` and decodes the answer.
    pub async fn invoke<B, R>(
        &self,
        function: &str,
        path: &str,
        body: &B,
        call_id: &str,
        timeout: Duration,
    ) -> Result<R, InvokeError>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = self
            .post(function, path, call_id)
            .header(WATCHDOG_TIMEOUT_HEADER, format!("{}ms", timeout_ms.max(1)))
            .json(body)
            .timeout(timeout);
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(function, timeout_ms, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let class = failure_class_header(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(function, timeout_ms, &e))?;
        if !status.is_success() {
            return Err(failure(function, status, class, retry_after, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| InvokeError::Decode {
            function: function.to_owned(),
            message: e.to_string(),
        })
    }
}

impl FunctionClient {
    /// POSTs `body` as JSON asking for server-sent events (`Accept:
    /// text/event-stream`, which makes the watchdog and gateway stream) and
    /// yields the decoded events. `timeout` bounds the whole stream.
    pub async fn invoke_stream<B>(
        &self,
        function: &str,
        path: &str,
        body: &B,
        call_id: &str,
        timeout: Duration,
    ) -> Result<EventStream, InvokeError>
    where
        B: Serialize + ?Sized,
    {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let response = self
            .post(function, path, call_id)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(function, timeout_ms, &e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let class = failure_class_header(response.headers());
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport_error(function, timeout_ms, &e))?;
            return Err(failure(function, status, class, retry_after, &bytes));
        }
        let name = function.to_owned();
        let events = response.bytes_stream().eventsource().map(move |event| {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => {
                    transport_error(&name, timeout_ms, &e)
                }
                other => InvokeError::Decode {
                    function: name.clone(),
                    message: other.to_string(),
                },
            })?;
            serde_json::from_str::<ProxyStreamEvent>(&event.data).map_err(|e| InvokeError::Decode {
                function: name.clone(),
                message: e.to_string(),
            })
        });
        Ok(Box::pin(events))
    }
}

/// A call that got no (complete) answer: out of time, or unreachable.
fn transport_error(function: &str, timeout_ms: u64, e: &reqwest::Error) -> InvokeError {
    if e.is_timeout() {
        InvokeError::Timeout {
            function: function.to_owned(),
            timeout_ms,
        }
    } else {
        InvokeError::Unreachable {
            function: function.to_owned(),
            message: http_client::error_chain(e),
        }
    }
}

/// `Retry-After` in whole seconds (the form the fleet's functions send),
/// capped at `u16::MAX` (18 hours).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u16> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(u16::try_from(secs).unwrap_or(u16::MAX))
}

/// The failure class a function named in its `X-Failure-Class` header.
fn failure_class_header(headers: &reqwest::header::HeaderMap) -> Option<FailureClass> {
    headers
        .get(FAILURE_CLASS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(FailureClass::from_name)
}

/// A failed call's error: the JSON body when there is one, with the class
/// from the header when the body has none.
fn failure(
    function: &str,
    status: reqwest::StatusCode,
    class: Option<FailureClass>,
    retry_after_secs: Option<u16>,
    bytes: &[u8],
) -> InvokeError {
    let mut detail = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| Box::new(b.error))
        .unwrap_or_else(|_| {
            Box::new(ErrorDetail {
                message: format!(
                    "{function} answered {status} through the gateway{}",
                    if bytes.is_empty() {
                        ""
                    } else {
                        " with a non-JSON body"
                    }
                ),
                kind: "upstream_error".to_owned(),
                param: None,
                code: None,
                failure: None,
            })
        });
    if detail.failure.is_none() {
        detail.failure = class.map(Failure::new);
    }
    InvokeError::Failed {
        function: function.to_owned(),
        status: status.as_u16(),
        detail,
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_urls_follow_the_gateway_layout() {
        let http = http_client::client().expect("an HTTP client");
        let client = FunctionClient::new("http://127.0.0.1:8080/", http.clone());
        assert_eq!(
            client.function_url("classify", "/"),
            "http://127.0.0.1:8080/function/classify/"
        );
        let default =
            FunctionClient::from_env(&Env::default(), http).expect("no secrets are mounted here");
        assert_eq!(default.base_url(), DEFAULT_GATEWAY_URL);
    }
}
