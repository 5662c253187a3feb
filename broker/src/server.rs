//! The accept loop: one task per connection, at most `max.connections` at once; and the
//! metrics listener, which answers Prometheus' scrapes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{BrokerContext, Caller};
use crate::metrics::{self, Hosted, PartitionFigures, METRICS};
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
        let caller = Caller { peer, listener: name.clone(), principal: crate::security::Principal::anonymous() };
        let open = METRICS.connections(&name);
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        conns.tracker.spawn(async move {
            connection::serve(stream, caller, ctx, drain, abort).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// What the metrics scrape reads from the replica manager and the metadata.
fn hosted(ctx: &BrokerContext) -> Hosted {
    let partitions = ctx
        .replicas
        .all()
        .into_iter()
        .map(|(tp, partition)| {
            let role = partition.role();
            let offsets = partition.log().offsets();
            PartitionFigures {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                leader: role.leader,
                isr: role.isr.len(),
                replicas: role.replicas.len(),
                min_insync_replicas: role.min_isr(),
                size_bytes: offsets.size_bytes,
                log_start_offset: offsets.log_start_offset,
                log_end_offset: offsets.log_end_offset,
                high_watermark: partition.high_watermark(),
            }
        })
        .collect();
    Hosted {
        broker_id: ctx.config.broker_id,
        topics: ctx.cluster().topics.keys().cloned().collect(),
        partitions,
        opening: ctx.replicas.opening_count(),
        disk_bytes: ctx.replicas.store().size_on_disk(),
    }
}

async fn scrape(State(ctx): State<Arc<BrokerContext>>) -> impl IntoResponse {
    // Reading every partition takes locks the request path takes, and sled's size walks
    // its files: off the async workers.
    let text = tokio::task::spawn_blocking(move || metrics::render(&hosted(&ctx))).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, tributary_common::metrics::CONTENT_TYPE)], text)
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub(crate) async fn serve_metrics(listener: TcpListener, ctx: Arc<BrokerContext>, stop: CancellationToken) {
    tracing::info!(address = ?listener.local_addr().ok(), "serving Prometheus metrics at /metrics");
    let app = Router::new().route("/metrics", get(scrape)).with_state(ctx);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::error!(error = %e, "the metrics listener failed; Prometheus cannot scrape this broker until it restarts");
    }
}
