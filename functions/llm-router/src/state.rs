//! Where the router's learned state lives, chosen once from the
//! environment: call records for feedback, calibration windows, the
//! bandit's statistics and tenant spend, in this process's memory (`STATE_URL` unset) or in
//! a Redis server every replica shares (see the `state` crate).

use std::time::Duration;

use faas_runtime::register_metric;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use routing_core::calls::{
    DEFAULT_CALL_RECORDS_CAPACITY, DEFAULT_CALL_RECORDS_TTL_SECS, ENV_CALL_RECORDS_CAPACITY,
    ENV_CALL_RECORDS_TTL_SECS,
};
use routing_core::env::Env;
use state::{Backend, CallRecordLimits, StateMetrics, Stores};

/// Every operation a shared store counts failures of.
const OPS: [&str; 10] = [
    "calls_put",
    "calls_claim",
    "windows_merge",
    "windows_get",
    "windows_evict",
    "arms_get",
    "arms_add",
    "budgets_record",
    "budgets_refresh",
    "ping",
];

/// The stores the environment asks for, with their failures counted in
/// `llm_router_state_errors_total{op}`.
pub(crate) fn open(env: &Env, registry: &Registry) -> Result<Stores, String> {
    let capacity = env
        .parse_or(ENV_CALL_RECORDS_CAPACITY, DEFAULT_CALL_RECORDS_CAPACITY)
        .map_err(|e| e.to_string())?;
    let ttl_secs = env
        .parse_or(ENV_CALL_RECORDS_TTL_SECS, DEFAULT_CALL_RECORDS_TTL_SECS)
        .map_err(|e| e.to_string())?;
    let errors = register_metric(
        registry,
        IntCounterVec::new(
            Opts::new(
                "llm_router_state_errors_total",
                "Shared state store calls that failed (the request routed on without them), \
                 by operation.",
            ),
            &["op"],
        ),
    )
    .map_err(|e| e.to_string())?;
    let backend = Backend::from_env(env).map_err(|e| e.to_string())?;
    let up = IntGauge::new(
        "llm_router_state_up",
        "1 while the shared state store answers, 0 after a connection failure.",
    )
    .map_err(|e| e.to_string())?;
    if matches!(backend, Backend::Redis(_)) {
        for op in OPS {
            errors.with_label_values(&[op]);
        }
        registry
            .register(Box::new(up.clone()))
            .map_err(|e| e.to_string())?;
    }
    let stores = Stores::open(
        &backend,
        CallRecordLimits {
            capacity,
            ttl: Duration::from_secs(ttl_secs),
        },
        StateMetrics { errors, up },
    )
    .map_err(|e| e.to_string())?;
    match &stores.redis {
        Some(redis) => tracing::info!(
            backend = "redis",
            store = redis.target(),
            "learned state, call records and calibration windows are shared"
        ),
        None => tracing::info!(
            backend = "memory",
            "learned state, call records and calibration windows are kept in this replica"
        ),
    }
    Ok(stores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_the_default_and_a_bad_url_is_refused_by_name() {
        let registry = Registry::new();
        let stores = open(&Env::from_pairs([("STATE_URL", "")]), &registry).unwrap_or_else(|e| {
            panic!("memory stores: {e}");
        });
        assert_eq!(stores.backend(), "memory");
        // No shared store: neither its errors nor its reachability show.
        assert!(
            !registry
                .gather()
                .iter()
                .any(|f| f.name().starts_with("llm_router_state"))
        );

        let Err(message) = open(
            &Env::from_pairs([("STATE_URL", "rediss://cache:6380/0")]),
            &Registry::new(),
        ) else {
            panic!("TLS is refused");
        };
        assert!(message.contains("STATE_URL"), "{message}");
    }
}
