//! The marker writer: for each prepared transaction ([`MarkerJob`]), WriteTxnMarkers to
//! the leader of each of its partitions over the inter-broker listener (this broker
//! included, through the same path), retrying with backoff until every partition has its
//! marker (a deleted partition needs none), then the coordinator stores the completion.
//! A job whose transaction moved on (new coordinator, newer state) is dropped: whoever
//! owns it now finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_common::kafka_client::Connection;

use super::state::TxnState;
use super::MarkerJob;
use crate::api::{s, BrokerContext};

/// Runs until `stop`: each job in a task of its own.
pub(crate) async fn run(
    ctx: Arc<BrokerContext>,
    mut jobs: mpsc::UnboundedReceiver<MarkerJob>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    let ctx = ctx.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move { write(&ctx, job, &stop).await });
                }
                None => return,
            },
            () = stop.cancelled() => return,
        }
    }
}

async fn write(ctx: &BrokerContext, job: MarkerJob, stop: &CancellationToken) {
    let commit = job.meta.state == TxnState::PrepareCommit;
    let mut remaining: BTreeSet<(String, i32)> = job.meta.partitions.clone();
    let mut backoff = Duration::from_millis(50);
    let listener = ctx.config.inter_broker_listener();
    while !remaining.is_empty() {
        if stop.is_cancelled() || !ctx.txns.still_prepared(&job) {
            return;
        }
        let cluster = ctx.cluster();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        remaining.retain(|(t, p)| {
            let Some(pm) = cluster.topics.get(t).and_then(|topic| topic.partitions.get(p)) else {
                return false; // deleted: nothing to mark
            };
            by_leader.entry(pm.leader).or_default().push((t.clone(), *p));
            true
        });
        for (leader, parts) in by_leader {
            let Some(e) = cluster.brokers.get(&leader).and_then(|b| b.endpoint(&listener)) else { continue };
            let mut conn = match Connection::connect_secured(&e.host, e.port, "tributary-txn-markers", &ctx.security.inter_broker).await {
                Ok(c) => c,
                Err(err) => {
                    tracing::debug!(leader, error = %err, "cannot reach a partition leader for transaction markers; retrying");
                    continue;
                }
            };
            let mut marker = WritableTxnMarker::default();
            marker.producer_id = ProducerId(job.meta.producer_id);
            marker.producer_epoch = job.meta.producer_epoch;
            marker.transaction_result = commit;
            marker.coordinator_epoch = job.coordinator_epoch;
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &parts {
                topics.entry(t.as_str()).or_default().push(*p);
            }
            marker.topics = topics
                .into_iter()
                .map(|(t, ps)| {
                    let mut wt = WritableTxnMarkerTopic::default();
                    wt.name = TopicName(s(t));
                    wt.partition_indexes = ps;
                    wt
                })
                .collect();
            let mut req = WriteTxnMarkersRequest::default();
            req.markers = vec![marker];
            match conn.call(1, &req).await {
                Ok(r) => {
                    for m in r.markers {
                        for t in m.topics {
                            for p in t.partitions {
                                let key = (t.name.to_string(), p.partition_index);
                                if p.error_code == 0 {
                                    remaining.remove(&key);
                                } else if p.error_code == ResponseError::InvalidProducerEpoch.code() {
                                    // The partition already saw a newer epoch: this marker is moot there.
                                    remaining.remove(&key);
                                } else {
                                    tracing::debug!(topic = %key.0, partition = key.1, error = p.error_code, "a transaction marker was not written; retrying");
                                }
                            }
                        }
                    }
                }
                Err(err) => tracing::debug!(leader, error = %err, "WriteTxnMarkers failed; retrying"),
            }
        }
        if !remaining.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
    ctx.txns.complete(&job).await;
}
