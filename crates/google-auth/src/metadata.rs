//! The GCE/GKE metadata server as a token source.

use std::time::Duration;

/// `GCE_METADATA_HOST`: overrides the metadata server host (host[:port],
/// or a full `http://` URL).
pub const ENV_GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
/// The metadata server's host name.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The header every metadata request must carry.
pub const METADATA_FLAVOR: (&str, &str) = ("Metadata-Flavor", "Google");
/// How long a metadata request may take (google-auth's default).
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// The base URL for a `GCE_METADATA_HOST` value (or the default host).
pub fn metadata_base_url(host: Option<&str>) -> String {
    let host = host.unwrap_or(DEFAULT_METADATA_HOST).trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

/// The default service account's token URL under `base_url`.
pub fn metadata_token_url(base_url: &str) -> String {
    format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        base_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_override_builds_the_token_url() {
        assert_eq!(
            metadata_token_url(&metadata_base_url(None)),
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(
            metadata_base_url(Some("127.0.0.1:8089")),
            "http://127.0.0.1:8089"
        );
        assert_eq!(metadata_base_url(Some("http://emu:1/")), "http://emu:1");
    }
}
