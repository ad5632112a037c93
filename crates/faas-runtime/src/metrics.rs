//! The runtime's own Prometheus families and the `/metrics` exposition.

use std::time::Duration;

use http::header::HeaderValue;
use http::{Method, Response, StatusCode};
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::Error;
use crate::body::Body;
use crate::response::{json_error, with_content_type};

/// Requests answered by the function's handler, by method and status class.
pub const REQUESTS_TOTAL: &str = "function_http_requests_total";
/// Time from receiving a request until its response head is ready, by method.
pub const REQUEST_DURATION_SECONDS: &str = "function_http_request_duration_seconds";
/// Requests currently inside the runtime (reading the body, waiting for init, in the handler).
pub const REQUESTS_IN_FLIGHT: &str = "function_http_requests_in_flight";

/// Buckets reaching minutes: model calls are slow, health checks are not counted.
const DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Registers a newly made metric family in `registry` and returns it, for
/// the caller to keep: `register_metric(&registry, IntCounterVec::new(opts,
/// &["label"]))?`. Fails when the family could not be made (`family` is an
/// error) or when `registry` already holds a family of that name.
pub fn register_metric<C>(
    registry: &Registry,
    family: prometheus::Result<C>,
) -> prometheus::Result<C>
where
    C: Collector + Clone + 'static,
{
    let family = family?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// The runtime's metric families, registered in the function's registry.
///
/// Only requests that reach the handler path are counted; `/_/health`, `/_/ready` and `/metrics`
/// are not, so probes and scrapes do not drown the traffic.
#[derive(Clone)]
pub(crate) struct RuntimeMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl RuntimeMetrics {
    /// Creates the families, labelled `function=<function_name>`, and registers them.
    pub(crate) fn register(registry: &Registry, function_name: &str) -> Result<Self, Error> {
        let requests = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    REQUESTS_TOTAL,
                    "Requests answered, by method and status class.",
                )
                .const_label("function", function_name),
                &["method", "status_class"],
            ),
        )?;
        let duration = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    REQUEST_DURATION_SECONDS,
                    "Seconds from receiving a request to its response head, by method.",
                )
                .const_label("function", function_name)
                .buckets(DURATION_BUCKETS.to_vec()),
                &["method"],
            ),
        )?;
        let in_flight = register_metric(
            registry,
            IntGauge::with_opts(
                Opts::new(REQUESTS_IN_FLIGHT, "Requests being handled now.")
                    .const_label("function", function_name),
            ),
        )?;
        Ok(Self {
            requests,
            duration,
            in_flight,
        })
    }

    /// Counts a request as in flight until the returned guard is dropped (also when the request
    /// is cancelled by a disconnecting client).
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a completed request.
    pub(crate) fn observe(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, status_class(status)])
            .inc();
        self.duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }
}

/// Decrements the in-flight gauge when dropped.
pub(crate) struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The registry's families in the Prometheus text format.
pub(crate) fn exposition(registry: &Registry) -> Response<Body> {
    let encoder = TextEncoder::new();
    let mut buffer = Vec::new();
    match encoder.encode(&registry.gather(), &mut buffer) {
        Ok(()) => match HeaderValue::from_str(encoder.format_type()) {
            Ok(content_type) => with_content_type(StatusCode::OK, content_type, buffer),
            Err(err) => encoding_failed(&err),
        },
        Err(err) => encoding_failed(&err),
    }
}

fn encoding_failed(err: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %err, "cannot encode the metrics");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "cannot encode the metrics",
        None,
    )
}

/// The method as a label value from a closed set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The status as a label value from a closed set.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(registry: &Registry) -> String {
        use http_body_util::BodyExt;
        let response = exposition(registry);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "text/plain; version=0.0.4"
        );
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn records_requests_by_closed_label_sets() {
        let registry = Registry::new();
        let metrics = RuntimeMetrics::register(&registry, "embed").expect("registers");
        metrics.observe(&Method::POST, StatusCode::OK, Duration::from_millis(20));
        metrics.observe(
            &Method::POST,
            StatusCode::CREATED,
            Duration::from_millis(20),
        );
        let purge = Method::from_bytes(b"PURGE").expect("extension method");
        metrics.observe(&purge, StatusCode::PAYLOAD_TOO_LARGE, Duration::ZERO);
        let out = text(&registry).await;
        assert!(
            out.contains(r#"function_http_requests_total{function="embed",method="POST",status_class="2xx"} 2"#),
            "{out}"
        );
        assert!(
            out.contains(r#"function_http_requests_total{function="embed",method="OTHER",status_class="4xx"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"function_http_request_duration_seconds_count{function="embed",method="POST"} 2"#
            ),
            "{out}"
        );
    }

    #[test]
    fn in_flight_guard_decrements_on_drop() {
        let registry = Registry::new();
        let metrics = RuntimeMetrics::register(&registry, "embed").expect("registers");
        let first = metrics.in_flight();
        let second = metrics.in_flight();
        assert_eq!(metrics.in_flight.get(), 2);
        drop(first);
        assert_eq!(metrics.in_flight.get(), 1);
        drop(second);
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[test]
    fn register_metric_registers_and_returns_the_family() {
        let registry = Registry::new();
        let counter = register_metric(
            &registry,
            IntCounterVec::new(Opts::new("things_total", "Things."), &["kind"]),
        )
        .expect("registers");
        counter.with_label_values(&["a"]).inc();
        let families = registry.gather();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "things_total");
        assert!(
            register_metric(
                &registry,
                IntCounterVec::new(Opts::new("things_total", "Again."), &["kind"]),
            )
            .is_err(),
            "a second family of the same name is refused"
        );
        assert!(
            register_metric(
                &registry,
                IntCounterVec::new(Opts::new("bad name", "Invalid."), &["kind"]),
            )
            .is_err(),
            "a family that cannot be made is an error"
        );
    }

    #[test]
    fn registering_twice_in_one_registry_is_an_error() {
        let registry = Registry::new();
        RuntimeMetrics::register(&registry, "embed").expect("first registration");
        assert!(matches!(
            RuntimeMetrics::register(&registry, "embed"),
            Err(Error::Metrics(_))
        ));
    }

    #[test]
    fn status_classes() {
        let table = [
            (101, "1xx"),
            (200, "2xx"),
            (304, "3xx"),
            (413, "4xx"),
            (500, "5xx"),
            (599, "5xx"),
        ];
        for (code, class) in table {
            let status = StatusCode::from_u16(code).expect("valid status");
            assert_eq!(status_class(status), class);
        }
    }
}
