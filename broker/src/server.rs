//! The accept loop: one task per connection, at most `max.connections` at once.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{BrokerContext, Caller};
use crate::net::connection;

/// Where connection tasks go and how they are told to stop.
pub(crate) struct Connections {
    /// Tracks every connection task (shutdown waits for them).
    pub(crate) tracker: TaskTracker,
    /// Stop accepting, and stop reading new requests; requests in progress finish.
    pub(crate) drain: CancellationToken,
    /// Abandon requests in progress (after the grace period).
    pub(crate) abort: CancellationToken,
    /// `max.connections`, shared by every listener.
    pub(crate) limit: Arc<Semaphore>,
}

/// Accepts connections on the listener named `name` until `conns.drain` fires.
pub(crate) async fn accept_loop(listener: TcpListener, name: Arc<str>, ctx: Arc<BrokerContext>, conns: Connections) {
    loop {
        let permit = tokio::select! {
            p = conns.limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = conns.drain.cancelled() => return,
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
            _ = conns.drain.cancelled() => return,
        };
        let ctx = ctx.clone();
        let (drain, abort) = (conns.drain.clone(), conns.abort.clone());
        let caller = Caller { peer, listener: name.clone() };
        conns.tracker.spawn(async move {
            connection::serve(stream, caller, ctx, drain, abort).await;
            drop(permit);
        });
    }
}
