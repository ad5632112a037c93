//! The process signals that start a graceful shutdown.

/// Resolves on the first SIGTERM (sent by the watchdog, Kubernetes and Knative) or SIGINT
/// (Ctrl-C), logging which arrived. The handlers are installed when the future is first polled.
///
/// If a handler cannot be installed this is logged, and that signal simply never resolves the
/// future.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::SignalKind;
        tokio::select! {
            () = wait_for(SignalKind::terminate(), "SIGTERM") => {}
            () = wait_for(SignalKind::interrupt(), "SIGINT") => {}
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("received Ctrl-C; shutting down"),
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(unix)]
async fn wait_for(kind: tokio::signal::unix::SignalKind, name: &'static str) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut signal) => {
            if signal.recv().await.is_some() {
                tracing::info!(signal = name, "received a shutdown signal");
            } else {
                // The signal driver is gone (the runtime is shutting down): never resolve.
                std::future::pending::<()>().await;
            }
        }
        Err(err) => {
            tracing::error!(signal = name, error = %err, "cannot listen for the signal");
            std::future::pending::<()>().await;
        }
    }
}
