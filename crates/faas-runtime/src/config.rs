//! Runtime settings, read from environment variables through a lookup function.
//!
//! Variable names follow their owners: the watchdog's own lower-case names (`upstream_url`,
//! `write_timeout`, `healthcheck_interval`), which the function process inherits from the watchdog,
//! Knative's `PORT`, and the runtime's own upper-case `LISTEN_ADDR` and `MAX_BODY_BYTES`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrets::{INTERNAL_TOKEN, Secret, SecretStore};

use crate::Error;
use crate::duration;

/// Explicit listen address (`host:port`); overrides everything else.
const LISTEN_ADDR: &str = "LISTEN_ADDR";
/// Knative's port for the user container; the runtime then listens on all interfaces.
const PORT: &str = "PORT";
/// of-watchdog's upstream URL; `http_upstream_url` wins over `upstream_url`, as in the watchdog.
const UPSTREAM_URLS: [&str; 2] = ["http_upstream_url", "upstream_url"];
/// Request body limit in bytes.
const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
/// of-watchdog's write timeout: the drain budget at shutdown.
const WRITE_TIMEOUT: &str = "write_timeout";
/// of-watchdog's grace period between SIGTERM and the drain.
const HEALTHCHECK_INTERVAL: &str = "healthcheck_interval";
/// The share of successful requests whose access line is logged.
const LOG_SAMPLE_OK: &str = "LOG_SAMPLE_OK";
/// `off` lets an internal function answer callers without the internal token.
const INTERNAL_AUTH: &str = "INTERNAL_AUTH";
/// Where OpenFaaS mounts secrets.
const SECRETS_DIR: &str = "SECRETS_DIR";
const DEFAULT_SECRETS_DIR: &str = "/var/openfaas/secrets";

/// Where the runtime listens when nothing says otherwise: of-watchdog's usual upstream.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);
/// Default request body limit: 2 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Default `write_timeout`, the same as of-watchdog 0.11's.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runtime settings for one function process.
///
/// Read with [`RuntimeConfig::from_lookup`] (tests pass a closure over a map) or
/// [`RuntimeConfig::from_process_env`]. The variables, all optional (an empty value counts as unset):
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `LISTEN_ADDR` | `host:port` to listen on (`127.0.0.1:3000`, `[::1]:3000`, `localhost:3000`, `:3000`) | see below |
/// | `PORT` | Knative's port: listen on `0.0.0.0:$PORT` | |
/// | `http_upstream_url`, `upstream_url` | of-watchdog's upstream, `http://host[:port]` without a path: listen there | |
/// | `MAX_BODY_BYTES` | request body limit in bytes | 2 MiB |
/// | `write_timeout` | drain budget at shutdown; whole seconds or a Go duration; must be over 0 | `30s` |
/// | `healthcheck_interval` | grace between the shutdown signal and the drain | `write_timeout` |
/// | `LOG_SAMPLE_OK` | share (0 to 1) of successful requests with an access line; failures always have one | `1` |
///
/// The listen address comes from the first of `LISTEN_ADDR`, the upstream URL, `PORT`, and
/// `127.0.0.1:3000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The function's name, used in log lines and as the `function` label of the runtime's metrics.
    pub function_name: String,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The largest request body accepted; larger ones get a 413.
    pub max_body_bytes: usize,
    /// After the shutdown signal: how long to keep serving (with `/_/health` answering 503) before
    /// the listener closes.
    pub healthcheck_interval: Duration,
    /// After the grace period: how long in-flight requests may take to finish.
    pub write_timeout: Duration,
    /// Successful requests with an access line, per million (failures always have one).
    pub log_sample_ok_per_million: u32,
    /// When set, function requests must carry this token in
    /// [`secrets::INTERNAL_TOKEN_HEADER`] (401 otherwise); the runtime's own
    /// routes (health, readiness, metrics) stay open. See
    /// [`RuntimeConfig::internal`].
    pub internal_token: Option<Secret>,
}

impl RuntimeConfig {
    /// Reads the settings through `lookup`, which returns a variable's value or `None`.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] naming the variable and its value when a value cannot be used.
    pub fn from_lookup(
        function_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());

        let listen = listen_addr(&get)?;

        let max_body_bytes = match get(MAX_BODY_BYTES) {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(value) => value
                .parse::<usize>()
                .map_err(|_| invalid(MAX_BODY_BYTES, &value, "expected a whole number of bytes"))?,
        };

        let write_timeout = match get(WRITE_TIMEOUT) {
            None => DEFAULT_WRITE_TIMEOUT,
            Some(value) => {
                let timeout = duration_var(WRITE_TIMEOUT, &value)?;
                if timeout.is_zero() {
                    return Err(invalid(
                        WRITE_TIMEOUT,
                        &value,
                        "must be over 0s (the watchdog refuses it too)",
                    ));
                }
                timeout
            }
        };

        let healthcheck_interval = match get(HEALTHCHECK_INTERVAL) {
            None => write_timeout,
            Some(value) => duration_var(HEALTHCHECK_INTERVAL, &value)?,
        };

        let log_sample_ok_per_million = match get(LOG_SAMPLE_OK) {
            None => 1_000_000,
            Some(value) => match value.trim().parse::<f64>() {
                // In range, so the product fits a u32.
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "0 ≤ share ≤ 1"
                )]
                Ok(share) if (0.0..=1.0).contains(&share) => (share * 1e6).round() as u32,
                _ => {
                    return Err(invalid(
                        LOG_SAMPLE_OK,
                        &value,
                        "expected a share between 0 and 1",
                    ));
                }
            },
        };

        Ok(Self {
            function_name: function_name.to_owned(),
            listen,
            max_body_bytes,
            healthcheck_interval,
            write_timeout,
            log_sample_ok_per_million,
            internal_token: None,
        })
    }

    /// Makes this an internal function: its requests must carry the fleet's
    /// internal token, read from the `internal-token` secret in `SECRETS_DIR`
    /// (default `/var/openfaas/secrets`). `INTERNAL_AUTH=off` turns the check
    /// off, for local development only.
    ///
    /// # Errors
    /// [`Error::InternalToken`] when the secret is missing or unreadable;
    /// [`Error::InvalidEnv`] when `INTERNAL_AUTH` is neither `required` nor
    /// `off`.
    pub fn internal(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        match get(INTERNAL_AUTH).as_deref().map(str::trim) {
            None | Some("required") => {}
            Some("off") => {
                tracing::warn!(
                    function = %self.function_name,
                    "INTERNAL_AUTH=off: any caller that reaches this function is served"
                );
                self.internal_token = None;
                return Ok(self);
            }
            Some(other) => {
                return Err(invalid(INTERNAL_AUTH, other, "expected required or off"));
            }
        }
        let dir = get(SECRETS_DIR).unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_owned());
        let token = SecretStore::new(dir)
            .read(INTERNAL_TOKEN)
            .map_err(|e| Error::InternalToken(e.to_string()))?;
        self.internal_token = Some(token);
        Ok(self)
    }

    /// Reads the settings from the process environment. A variable whose value is not valid
    /// Unicode counts as unset.
    ///
    /// # Errors
    /// As [`RuntimeConfig::from_lookup`].
    pub fn from_process_env(function_name: &str) -> Result<Self, Error> {
        Self::from_lookup(function_name, |name| std::env::var(name).ok())
    }
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidEnv {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn duration_var(variable: &'static str, value: &str) -> Result<Duration, Error> {
    duration::parse(value).map_err(|reason| invalid(variable, value, reason))
}

fn listen_addr(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, Error> {
    if let Some(value) = get(LISTEN_ADDR) {
        return parse_host_port(&value).map_err(|reason| invalid(LISTEN_ADDR, &value, reason));
    }
    // Behind the watchdog its upstream URL says where to listen, even on Knative, where PORT is
    // the watchdog's own port; PORT alone means the function is the container's server.
    for variable in UPSTREAM_URLS {
        if let Some(value) = get(variable) {
            return parse_upstream_url(&value).map_err(|reason| invalid(variable, &value, reason));
        }
    }
    if let Some(value) = get(PORT) {
        let port = value
            .parse::<u16>()
            .map_err(|_| invalid(PORT, &value, "expected a port number (0-65535)"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    Ok(DEFAULT_LISTEN)
}

/// `ip:port`, `[ipv6]:port`, `localhost:port` or Go's `:port` (all interfaces).
fn parse_host_port(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or("expected host:port, for example 127.0.0.1:3000")?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| format!("{other:?} is not an IP address or localhost"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `http://host[:port]`, the form of-watchdog's `upstream_url` takes. The watchdog appends the
/// request URI verbatim, so a path (even a lone `/`) would corrupt every forwarded path.
fn parse_upstream_url(value: &str) -> Result<SocketAddr, String> {
    let scheme_end = value.find("://").ok_or("expected http://host:port")?;
    let scheme = &value[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "scheme {scheme:?} is not supported: the watchdog talks plain http to the function"
        ));
    }
    let authority = &value[scheme_end + 3..];
    if let Some(index) = authority.find(['/', '?', '#']) {
        return Err(format!(
            "must not have a path, query or trailing slash ({:?}): the watchdog appends the request path to it verbatim",
            &authority[index..]
        ));
    }
    if authority.contains('@') {
        return Err("must not carry user information".to_owned());
    }
    let has_port = match authority.rfind(':') {
        // `[::1]` has colons but no port; a port follows the closing bracket.
        Some(index) => !authority[..index].starts_with('[') || authority[..index].ends_with(']'),
        None => false,
    };
    if has_port {
        parse_host_port(authority)
    } else {
        parse_host_port(&format!("{authority}:80"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<RuntimeConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RuntimeConfig::from_lookup("embed", |name| map.get(name).cloned())
    }

    fn listen(vars: &[(&str, &str)]) -> SocketAddr {
        match config(vars) {
            Ok(cfg) => cfg.listen,
            Err(err) => panic!("{vars:?}: {err}"),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn defaults_match_the_watchdog() {
        let cfg = config(&[]).expect("defaults are valid");
        assert_eq!(
            cfg,
            RuntimeConfig {
                function_name: "embed".to_owned(),
                listen: addr("127.0.0.1:3000"),
                max_body_bytes: 2 * 1024 * 1024,
                healthcheck_interval: Duration::from_secs(30),
                write_timeout: Duration::from_secs(30),
                log_sample_ok_per_million: 1_000_000,
                internal_token: None,
            }
        );
    }

    #[test]
    fn an_internal_function_needs_its_token_unless_auth_is_off() {
        let dir = tempfile_dir();
        let secrets = dir.display().to_string();
        let internal = |vars: &[(&str, &str)]| {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            config(&[])
                .expect("defaults")
                .internal(|name| map.get(name).cloned())
        };
        let missing = internal(&[("SECRETS_DIR", &secrets)]).expect_err("no token yet");
        assert!(matches!(missing, Error::InternalToken(_)), "{missing}");
        assert!(missing.to_string().contains("internal-token"), "{missing}");
        let off = internal(&[("SECRETS_DIR", &secrets), ("INTERNAL_AUTH", "off")]).expect("off");
        assert_eq!(off.internal_token, None);
        assert!(internal(&[("INTERNAL_AUTH", "maybe")]).is_err());
        std::fs::write(dir.join("internal-token"), "s3cret\n").expect("write token");
        let on = internal(&[("SECRETS_DIR", &secrets)]).expect("token present");
        assert_eq!(on.internal_token, Some(Secret::new("s3cret")));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    /// A fresh folder under the system temp dir.
    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("faas-runtime-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn log_sampling_is_a_share_between_0_and_1() {
        let sample =
            |value: &str| config(&[("LOG_SAMPLE_OK", value)]).map(|c| c.log_sample_ok_per_million);
        assert_eq!(sample("0.01").ok(), Some(10_000));
        assert_eq!(sample("0").ok(), Some(0));
        assert_eq!(sample("1").ok(), Some(1_000_000));
        for bad in ["1.5", "-0.1", "NaN", "half"] {
            let err = sample(bad).expect_err(bad).to_string();
            assert!(err.contains("LOG_SAMPLE_OK"), "{err}");
        }
    }

    #[test]
    fn listen_address_precedence() {
        let all = [
            ("LISTEN_ADDR", "127.0.0.2:4000"),
            ("PORT", "8080"),
            ("http_upstream_url", "http://127.0.0.3:5000"),
            ("upstream_url", "http://127.0.0.4:6000"),
        ];
        assert_eq!(listen(&all), addr("127.0.0.2:4000"));
        assert_eq!(listen(&all[1..]), addr("127.0.0.3:5000"));
        assert_eq!(listen(&all[3..]), addr("127.0.0.4:6000"));
        assert_eq!(listen(&all[1..2]), addr("0.0.0.0:8080"));
        assert_eq!(listen(&[]), addr("127.0.0.1:3000"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let vars = [
            ("LISTEN_ADDR", ""),
            ("PORT", ""),
            ("http_upstream_url", ""),
            ("upstream_url", "http://127.0.0.1:3001"),
            ("MAX_BODY_BYTES", ""),
            ("write_timeout", ""),
            ("healthcheck_interval", ""),
        ];
        let cfg = config(&vars).expect("valid");
        assert_eq!(cfg.listen, addr("127.0.0.1:3001"));
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(cfg.write_timeout, DEFAULT_WRITE_TIMEOUT);
        assert_eq!(cfg.healthcheck_interval, DEFAULT_WRITE_TIMEOUT);
    }

    #[test]
    fn listen_addr_forms() {
        let table = [
            ("127.0.0.1:3000", "127.0.0.1:3000"),
            ("[::1]:3000", "[::1]:3000"),
            ("localhost:3000", "127.0.0.1:3000"),
            (":3000", "0.0.0.0:3000"),
            ("0.0.0.0:0", "0.0.0.0:0"),
        ];
        for (value, expected) in table {
            assert_eq!(listen(&[("LISTEN_ADDR", value)]), addr(expected), "{value}");
        }
    }

    #[test]
    fn upstream_url_forms() {
        let table = [
            ("http://127.0.0.1:3000", "127.0.0.1:3000"),
            ("HTTP://127.0.0.1:3000", "127.0.0.1:3000"),
            ("http://localhost:8082", "127.0.0.1:8082"),
            ("http://127.0.0.1", "127.0.0.1:80"),
            ("http://[::1]:3000", "[::1]:3000"),
            ("http://[::1]", "[::1]:80"),
        ];
        for (value, expected) in table {
            assert_eq!(
                listen(&[("upstream_url", value)]),
                addr(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn http_upstream_url_wins_over_upstream_url_as_in_the_watchdog() {
        let vars = [
            ("upstream_url", "http://127.0.0.1:3000"),
            ("http_upstream_url", "http://127.0.0.1:3001"),
        ];
        assert_eq!(listen(&vars), addr("127.0.0.1:3001"));
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_value() {
        let table: &[(&str, &str, &str)] = &[
            ("LISTEN_ADDR", "3000", "expected host:port"),
            ("LISTEN_ADDR", "example.com:3000", "not an IP address"),
            ("LISTEN_ADDR", "127.0.0.1:70000", "not a port"),
            ("PORT", "http", "expected a port"),
            ("upstream_url", "127.0.0.1:3000", "expected http://"),
            ("upstream_url", "https://127.0.0.1:3000", "not supported"),
            (
                "upstream_url",
                "http://127.0.0.1:3000/",
                "must not have a path",
            ),
            (
                "upstream_url",
                "http://127.0.0.1:3000/fn",
                "must not have a path",
            ),
            (
                "upstream_url",
                "http://user@127.0.0.1:3000",
                "user information",
            ),
            ("MAX_BODY_BYTES", "2MiB", "whole number of bytes"),
            ("MAX_BODY_BYTES", "-1", "whole number of bytes"),
            ("write_timeout", "10x", "unknown unit"),
            ("write_timeout", "0", "must be over 0s"),
            ("write_timeout", "0s", "must be over 0s"),
            ("healthcheck_interval", "-5s", "negative"),
        ];
        for (variable, value, reason) in table {
            match config(&[(variable, value)]) {
                Ok(cfg) => panic!("{variable}={value} should be rejected, got {cfg:?}"),
                Err(err) => {
                    let message = err.to_string();
                    assert!(
                        message.contains(variable)
                            && message.contains(&format!("{value:?}"))
                            && message.contains(reason),
                        "{variable}={value}: unexpected message {message:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn durations_and_limits_are_read() {
        let cfg = config(&[
            ("MAX_BODY_BYTES", "1024"),
            ("write_timeout", "1m5s"),
            ("healthcheck_interval", "5"),
        ])
        .expect("valid");
        assert_eq!(cfg.max_body_bytes, 1024);
        assert_eq!(cfg.write_timeout, Duration::from_secs(65));
        assert_eq!(cfg.healthcheck_interval, Duration::from_secs(5));
    }

    #[test]
    fn healthcheck_interval_defaults_to_write_timeout_and_may_be_zero() {
        let cfg = config(&[("write_timeout", "500ms")]).expect("valid");
        assert_eq!(cfg.healthcheck_interval, Duration::from_millis(500));
        let cfg = config(&[("healthcheck_interval", "0")]).expect("valid");
        assert_eq!(cfg.healthcheck_interval, Duration::ZERO);
    }
}
