//! Reading the wait a provider asks for: `retry-after-ms`, `retry-after`,
//! `x-ratelimit-reset-*` (Go durations), Google `retryDelay`, and the
//! "try again in 5.3s" hint in OpenAI/Groq messages.

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
use std::time::Duration;

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
use http::HeaderMap;

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
/// The longest wait taken from a provider hint; longer hints are clamped.
const MAX_HINT: Duration = Duration::from_secs(24 * 3600);

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
/// `retry-after-ms` (milliseconds), else `retry-after` (seconds). HTTP-date
/// values are ignored; non-positive values count as absent.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(parse_number) {
        return positive(ms / 1000.0);
    }
    header("retry-after")
        .and_then(parse_number)
        .and_then(positive)
}

#[cfg(feature = "openai")]
/// `x-ratelimit-reset-tokens` / `-requests` for whichever limit is spent
/// (remaining = 0); the longer one when both are.
pub(crate) fn from_ratelimit_reset(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    ["tokens", "requests"]
        .iter()
        .filter(|kind| header(&format!("x-ratelimit-remaining-{kind}")).map(str::trim) == Some("0"))
        .filter_map(|kind| header(&format!("x-ratelimit-reset-{kind}")).and_then(parse_go_duration))
        .max()
}

#[cfg(feature = "openai")]
/// "Please try again in 5.289s" / "in 300ms" / "in 1m2.5s" inside a message.
pub(crate) fn from_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("try again in ")? + "try again in ".len();
    let rest = &lower[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(rest.len());
    parse_go_duration(rest[..end].trim_end_matches('.'))
}

#[cfg(any(feature = "openai", feature = "google"))]
/// A Go-style duration: `12ms`, `1s`, `6m0s`, `2m59.56s`, `1h2m`. Also a
/// protobuf JSON duration such as `37s` or `1.5s`.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    if total.is_finite() && total >= 0.0 {
        Some(Duration::from_secs_f64(total).min(MAX_HINT))
    } else {
        None
    }
}

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
fn positive(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds).min(MAX_HINT))
}

#[cfg(all(
    test,
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic"
))]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let h = headers(&[("retry-after-ms", "250"), ("retry-after", "3")]);
        assert_eq!(from_headers(&h), Some(Duration::from_millis(250)));
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(from_headers(&h), Some(Duration::from_secs(3)));
        let h = headers(&[("retry-after", "0")]);
        assert_eq!(from_headers(&h), None);
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(from_headers(&h), None);
    }

    #[test]
    fn go_durations_parse() {
        for (text, ms) in [
            ("12ms", 12),
            ("1s", 1000),
            ("6m0s", 360_000),
            ("7.66s", 7660),
            ("2m59.56s", 179_560),
            ("1h2m", 3_720_000),
            ("37s", 37_000),
        ] {
            assert_eq!(
                parse_go_duration(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "s", "12", "1x", "-1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn reset_headers_count_only_for_a_spent_limit() {
        let h = headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "7.66s"),
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
        ]);
        assert_eq!(from_ratelimit_reset(&h), Some(Duration::from_millis(7660)));
        let h = headers(&[("x-ratelimit-reset-tokens", "7.66s")]);
        assert_eq!(from_ratelimit_reset(&h), None);
    }

    #[test]
    fn hints_in_messages_are_found() {
        assert_eq!(
            from_message("... Requested 4351. Please try again in 5.289s. Need more tokens?"),
            Some(Duration::from_millis(5289))
        );
        assert_eq!(
            from_message("Please try again in 300ms."),
            Some(Duration::from_millis(300))
        );
        assert_eq!(from_message("no hint here"), None);
    }
}
