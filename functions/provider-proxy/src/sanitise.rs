//! Provider error text made fit for callers: providers put account
//! details in their messages (a GCP project or organisation id, an AWS
//! account, a key's prefix, an internal URL), which stay in our logs and
//! must not reach whoever sent the request.

/// The longest message a caller is shown.
const MAX_CHARS: usize = 240;

/// What stands in for a redacted word.
const REDACTED: &str = "[redacted]";

/// `message` with every word that may identify an account, a project, a
/// key or an internal address replaced, on one line, cut to a bounded
/// length.
pub(crate) fn sanitise(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_CHARS));
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(if is_identifying(word) { REDACTED } else { word });
    }
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS).collect();
        out.push('…');
    }
    out
}

/// Whether a word may identify an account, project, key or host.
fn is_identifying(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    let markers = [
        "projects/",
        "organizations/",
        "organisations/",
        "folders/",
        "locations/",
        "serviceaccount",
        "gserviceaccount",
        "arn:",
        "://",
        "org-",
        "org_",
        "acct_",
        "sk-",
        "gsk_",
        "key=",
        "token=",
    ];
    if markers.iter().any(|m| w.contains(m)) || w.contains('@') {
        return true;
    }
    // Long digit runs: project numbers, organisation and account ids.
    let mut run = 0;
    for b in w.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 6 {
            return true;
        }
    }
    // Long opaque tokens (keys, request ids).
    w.len() >= 32
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_details_are_redacted() {
        let message = "Permission 'aiplatform.endpoints.predict' denied on resource \
                       '//aiplatform.googleapis.com/projects/acme-prod-4411/locations/us-central1' \
                       of organization 812345678901 (user svc@acme-prod.iam.gserviceaccount.com)";
        let clean = sanitise(message);
        for secret in [
            "acme-prod-4411",
            "812345678901",
            "svc@acme",
            "googleapis.com/",
        ] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert!(clean.starts_with("Permission"), "{clean}");
        let groq = "Rate limit reached for model `llama` in organization `org_01abc` service tier";
        assert!(!sanitise(groq).contains("org_01abc"), "{}", sanitise(groq));
    }

    #[test]
    fn useful_messages_survive_on_one_line() {
        let message = "This model's maximum context length is 8192 tokens.\nPlease reduce it.";
        assert_eq!(
            sanitise(message),
            "This model's maximum context length is 8192 tokens. Please reduce it."
        );
        assert!(sanitise(&"word ".repeat(200)).chars().count() <= MAX_CHARS + 1);
    }
}
