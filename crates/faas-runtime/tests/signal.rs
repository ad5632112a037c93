//! `shutdown_signal` and a real SIGTERM. In its own test binary: the signal goes to the whole
//! test process.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

#[tokio::test]
async fn sigterm_resolves_shutdown_signal() {
    let mut signal = pin!(faas_runtime::shutdown_signal());
    // The first poll installs the handlers; before that a SIGTERM would end the test process.
    let first = std::future::poll_fn(|cx| Poll::Ready(signal.as_mut().poll(cx))).await;
    assert!(first.is_pending());

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    signal.await;
}
