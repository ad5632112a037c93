//! `init_tracing` installs the global subscriber: in its own test binary, so that the other
//! tests' logs stay out of the output.

#[test]
fn init_tracing_installs_a_subscriber_and_tolerates_a_second_call() {
    assert!(!tracing::dispatcher::has_been_set());
    faas_runtime::init_tracing();
    assert!(tracing::dispatcher::has_been_set());
    faas_runtime::init_tracing();
    assert!(tracing::dispatcher::has_been_set());
}
