//! Logging to stdout, where the watchdog (with `prefix_logs=false`) and Kubernetes collect it.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// One JSON object per line (the default).
    Json,
    /// Human-readable lines, for local runs.
    Text,
}

impl LogFormat {
    /// Reads `LOG_FORMAT`: `json` (default) or `text`, any case. Anything else is returned as the
    /// error so it can be reported once logging works.
    fn from_value(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Json),
            Some(text) if text.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(text) if text.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(other) => Err(other.to_owned()),
        }
    }
}

/// Installs the global tracing subscriber: stdout, filtered by `RUST_LOG` (default `info`), in the
/// format `LOG_FORMAT` names (`json`, the default, or `text`). Invalid values fall back to the
/// defaults with a warning. Safe to call more than once: later calls change nothing.
pub fn init_tracing() {
    let log_format = std::env::var("LOG_FORMAT").ok();
    let rust_log = std::env::var("RUST_LOG").ok();

    let (format, bad_format) = match LogFormat::from_value(log_format.as_deref()) {
        Ok(format) => (format, None),
        Err(value) => (LogFormat::Json, Some(value)),
    };
    let (filter, bad_filter) = match rust_log.as_deref().filter(|v| !v.trim().is_empty()) {
        None => (EnvFilter::new("info"), None),
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new("info"), Some(err.to_string())),
        },
    };

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        if let Some(value) = bad_format {
            tracing::warn!(LOG_FORMAT = %value, "unknown LOG_FORMAT (use json or text); using json");
        }
        if let Some(err) = bad_filter {
            tracing::warn!(error = %err, "invalid RUST_LOG; using info");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::from_value(None), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_value(Some("")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_value(Some("JSON")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_value(Some("text")), Ok(LogFormat::Text));
        assert_eq!(
            LogFormat::from_value(Some("pretty")),
            Err("pretty".to_owned())
        );
    }
}
