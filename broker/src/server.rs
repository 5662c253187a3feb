//! The accept loop: one task per connection, at most `max.connections` at once.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::BrokerContext;
use crate::net::connection;

/// Accepts connections until `shutdown` fires; connection tasks go to `tracker`.
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<BrokerContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed; raise the open-files limit if this repeats");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                },
            },
            _ = shutdown.cancelled() => return,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            connection::serve(stream, peer, ctx, shutdown).await;
            drop(permit);
        });
    }
}
