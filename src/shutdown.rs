//! The one shutdown signal every task listens to: a watch channel that turns
//! true once, when shutdown begins.

use tokio::sync::watch;

/// Resolves once shutdown has been requested (or its sender is gone).
pub async fn requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here, not in callers.
    let _ = stop.wait_for(|s| *s).await;
}
