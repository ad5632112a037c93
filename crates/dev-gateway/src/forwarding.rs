//! Pure rules of the `/function/<name>` route: how the path is stripped and
//! which headers are added or removed on the way to the function and back
//! (CE gateway `callid_middleware.go`, faas-provider `proxy/proxy.go`).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Request id header; generated when absent.
pub const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
/// Arrival time at the gateway in Unix nanoseconds.
pub const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
/// Names the gateway that answered.
pub const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// Value of [`X_SERVED_BY`].
pub const SERVED_BY: &str = "dev-gateway";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that only describe one connection and must not be forwarded
/// (RFC 9110 §7.6.1, plus the legacy ones Go's reverse proxy also drops).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A `/function/...` request split into function name and upstream target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRoute<'a> {
    /// The function name from the path (may carry a `.namespace` suffix).
    pub name: &'a str,
    /// Path and raw query to request from the function: `/function/<name>` is
    /// removed, the bare form becomes `/`, percent-encoding is kept.
    pub upstream: String,
}

/// Matches `/function/{name}`, `/function/{name}/` and `/function/{name}/{rest}`
/// with `name` matching `[-a-zA-Z_0-9.]+`; anything else is `None`.
pub fn parse_function_route<'a>(path: &'a str, query: Option<&str>) -> Option<FunctionRoute<'a>> {
    let after = path.strip_prefix("/function/")?;
    let (name, rest) = match after.find('/') {
        Some(slash) => (&after[..slash], &after[slash + 1..]),
        None => (after, ""),
    };
    if !crate::is_valid_function_name(name) {
        return None;
    }
    let mut upstream = format!("/{rest}");
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        upstream.push('?');
        upstream.push_str(query);
    }
    Some(FunctionRoute { name, upstream })
}

/// The call headers chosen for one request when it enters the gateway.
#[derive(Debug, Clone)]
pub struct CallHeaders {
    /// The id generated because the client sent none; `None` when the client's
    /// id is passed through (and then not echoed).
    pub generated_call_id: Option<HeaderValue>,
    /// `X-Start-Time`, Unix nanoseconds.
    pub start_time: HeaderValue,
}

impl CallHeaders {
    /// Decides the call headers for a request with `headers` arriving at `now`.
    pub fn for_request(headers: &HeaderMap, now: SystemTime) -> Self {
        let generated_call_id = match headers.get(&X_CALL_ID) {
            Some(existing) if !existing.is_empty() => None,
            _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok(),
        };
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        CallHeaders {
            generated_call_id,
            start_time: HeaderValue::from(u64::try_from(nanos).unwrap_or(u64::MAX)),
        }
    }

    /// Rewrites the headers of the request sent to the function: hop-by-hop
    /// headers and `Host` removed (the client sets the function's address),
    /// `X-Call-Id` set when generated, `X-Start-Time` added, `X-Forwarded-Host`
    /// and `X-Forwarded-For` set when the client did not send them.
    pub fn apply_to_request(&self, headers: &mut HeaderMap, client_ip: IpAddr) {
        strip_hop_by_hop(headers);
        let original_host = headers.remove(header::HOST);
        if let Some(call_id) = &self.generated_call_id {
            headers.insert(X_CALL_ID, call_id.clone());
        }
        headers.append(X_START_TIME, self.start_time.clone());
        if let Some(host) = original_host
            && !headers.contains_key(&X_FORWARDED_HOST)
        {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if !headers.contains_key(&X_FORWARDED_FOR)
            && let Ok(ip) = HeaderValue::from_str(&client_ip.to_string())
        {
            headers.insert(X_FORWARDED_FOR, ip);
        }
    }

    /// Rewrites the headers of the function's response: hop-by-hop headers
    /// removed, `X-Call-Id` echoed only when generated, `X-Start-Time` and
    /// `X-Served-By` added, and a `Content-Type` always present (the function's,
    /// else the request's, else `text/plain`, as faas-provider does).
    pub fn apply_to_response(
        &self,
        headers: &mut HeaderMap,
        request_content_type: Option<&HeaderValue>,
    ) {
        strip_hop_by_hop(headers);
        self.apply_to_gateway_response(headers);
        if !headers.contains_key(header::CONTENT_TYPE) {
            let content_type = request_content_type
                .cloned()
                .unwrap_or(HeaderValue::from_static("text/plain"));
            headers.insert(header::CONTENT_TYPE, content_type);
        }
    }

    /// Adds the call headers to a response the gateway produced itself (errors).
    pub fn apply_to_gateway_response(&self, headers: &mut HeaderMap) {
        if let Some(call_id) = &self.generated_call_id {
            headers.insert(X_CALL_ID, call_id.clone());
        }
        headers.append(X_START_TIME, self.start_time.clone());
        headers.insert(X_SERVED_BY, HeaderValue::from_static(SERVED_BY));
    }
}

/// Removes hop-by-hop headers, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn route(path: &str, query: Option<&str>) -> Option<(String, String)> {
        parse_function_route(path, query).map(|r| (r.name.to_owned(), r.upstream))
    }

    #[test]
    fn strips_the_function_prefix() {
        assert_eq!(route("/function/x", None), Some(("x".into(), "/".into())));
        assert_eq!(route("/function/x/", None), Some(("x".into(), "/".into())));
        assert_eq!(
            route("/function/x/a/b", Some("q=1")),
            Some(("x".into(), "/a/b?q=1".into()))
        );
        assert_eq!(
            route("/function/x", Some("q=1&r=%20")),
            Some(("x".into(), "/?q=1&r=%20".into()))
        );
        assert_eq!(
            route("/function/x/a%2Fb/", Some("")),
            Some(("x".into(), "/a%2Fb/".into()))
        );
        assert_eq!(
            route("/function/embed.openfaas-fn/v1", None),
            Some(("embed.openfaas-fn".into(), "/v1".into()))
        );
    }

    #[test]
    fn rejects_paths_without_a_valid_name() {
        assert_eq!(route("/function/", None), None);
        assert_eq!(route("/function", None), None);
        assert_eq!(route("/function//a", None), None);
        assert_eq!(route("/function/a%20b", None), None);
        assert_eq!(route("/functions/x", None), None);
        assert_eq!(route("/async-function/x", None), None);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn generates_a_call_id_for_request_and_response_when_absent() {
        let now = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut request = headers(&[("host", "gw:8080")]);
        let call = CallHeaders::for_request(&request, now);
        call.apply_to_request(&mut request, CLIENT);
        let id = request.get(X_CALL_ID).unwrap().to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(request.get(X_START_TIME).unwrap(), "1700000000123456789");

        let mut response = headers(&[("content-type", "application/json")]);
        call.apply_to_response(&mut response, None);
        assert_eq!(response.get(X_CALL_ID).unwrap(), id.as_str());
        assert_eq!(response.get(X_START_TIME).unwrap(), "1700000000123456789");
        assert_eq!(response.get(X_SERVED_BY).unwrap(), "dev-gateway");
        assert_eq!(response.get("content-type").unwrap(), "application/json");
    }

    #[test]
    fn passes_a_client_call_id_through_without_echoing_it() {
        let mut request = headers(&[("x-call-id", "chain-123")]);
        let call = CallHeaders::for_request(&request, SystemTime::now());
        call.apply_to_request(&mut request, CLIENT);
        assert_eq!(
            request.get_all(X_CALL_ID).iter().collect::<Vec<_>>(),
            ["chain-123"]
        );
        let mut response = HeaderMap::new();
        call.apply_to_response(&mut response, None);
        assert!(response.get(X_CALL_ID).is_none());
        assert!(response.get(X_START_TIME).is_some());
    }

    #[test]
    fn sets_forwarded_headers_only_when_absent_and_drops_host() {
        let mut request = headers(&[("host", "gw:8080")]);
        CallHeaders::for_request(&request, SystemTime::now())
            .apply_to_request(&mut request, CLIENT);
        assert_eq!(request.get("x-forwarded-host").unwrap(), "gw:8080");
        assert_eq!(request.get("x-forwarded-for").unwrap(), "10.1.2.3");
        assert!(request.get("host").is_none());

        let mut request = headers(&[
            ("host", "gw"),
            ("x-forwarded-host", "edge"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        CallHeaders::for_request(&request, SystemTime::now())
            .apply_to_request(&mut request, CLIENT);
        assert_eq!(request.get("x-forwarded-host").unwrap(), "edge");
        assert_eq!(request.get("x-forwarded-for").unwrap(), "1.1.1.1");
    }

    #[test]
    fn strips_hop_by_hop_headers_both_ways() {
        let mut request = headers(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "secret"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("content-length", "3"),
            ("authorization", "Bearer t"),
        ]);
        CallHeaders::for_request(&request, SystemTime::now())
            .apply_to_request(&mut request, CLIENT);
        for gone in [
            "connection",
            "keep-alive",
            "x-hop",
            "transfer-encoding",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(request.get(gone).is_none(), "{gone} should be stripped");
        }
        assert_eq!(request.get("content-length").unwrap(), "3");
        assert_eq!(request.get("authorization").unwrap(), "Bearer t");

        let mut response = headers(&[
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ]);
        CallHeaders::for_request(&HeaderMap::new(), SystemTime::now())
            .apply_to_response(&mut response, None);
        assert!(
            response.get("connection").is_none() && response.get("transfer-encoding").is_none()
        );
        assert_eq!(response.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn start_time_is_added_not_replaced() {
        let mut request = headers(&[("x-start-time", "1")]);
        let call = CallHeaders::for_request(&request, UNIX_EPOCH + Duration::from_nanos(2));
        call.apply_to_request(&mut request, CLIENT);
        assert_eq!(
            request.get_all(X_START_TIME).iter().collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

    #[test]
    fn content_type_falls_back_to_request_then_text_plain() {
        let call = CallHeaders::for_request(&HeaderMap::new(), SystemTime::now());
        let mut response = HeaderMap::new();
        call.apply_to_response(
            &mut response,
            Some(&HeaderValue::from_static("application/json")),
        );
        assert_eq!(response.get("content-type").unwrap(), "application/json");
        let mut response = HeaderMap::new();
        call.apply_to_response(&mut response, None);
        assert_eq!(response.get("content-type").unwrap(), "text/plain");
    }
}
