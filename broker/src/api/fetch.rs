//! Fetch with long polling: a request that finds fewer than `min_bytes` parks until an
//! append wakes it (then re-reads at once) or `max_wait_ms` passes. Sessions (KIP-227)
//! are not kept: every answer has session id 0, which tells clients to send full fetches.
//!
//! A fetch with a replica id is a follower replicating: it reads up to the log end rather
//! than the high watermark, and its fetch offset tells the leader how far that follower
//! has got (which moves the high watermark and the ISR).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use tributary_common::ids::TopicId;

use super::{replica_error_code, s, tp, BrokerContext};
use crate::log::Error as LogError;

const READ_COMMITTED: i8 = 1;
/// Fetch v13+ names topics by id.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

fn empty_partition(index: i32, code: i16) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = index;
    p.error_code = code;
    p.high_watermark = -1;
    p.last_stable_offset = -1;
    p.log_start_offset = -1;
    p.records = Some(Bytes::new());
    p
}

/// One pass over the requested partitions; returns the response and the bytes it carries.
fn read_once(ctx: &BrokerContext, version: i16, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let cluster = ctx.cluster();
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    let now = super::now_ms();
    let mut progressed = false;
    let mut response = FetchResponse::default();
    let mut total = 0usize;
    let mut any_error = false;
    let max_bytes = request.max_bytes.max(0) as usize;
    for topic in &request.topics {
        let name = if version >= FIRST_TOPIC_ID_VERSION {
            cluster.topic_by_id(&TopicId(topic.topic_id)).map(|(n, _)| n.clone())
        } else {
            Some(topic.topic.0.as_str().to_string())
        };
        let mut out = FetchableTopicResponse::default();
        out.topic = topic.topic.clone();
        out.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let Some(name) = &name else {
                any_error = true;
                out.partitions.push(empty_partition(fp.partition, ResponseError::UnknownTopicId.code()));
                continue;
            };
            let tp = tp(&s(name.clone()), fp.partition);
            let partition = match ctx.replicas.leader_partition(&tp, fp.current_leader_epoch) {
                Ok(p) => p,
                Err(e) => {
                    any_error = true;
                    let mut p = empty_partition(fp.partition, replica_error_code(&e));
                    if version >= 12 {
                        if let Some(pm) =
                            cluster.topics.get(name.as_str()).and_then(|t| t.partitions.get(&fp.partition))
                        {
                            p.current_leader.leader_id = kafka_protocol::messages::BrokerId(pm.leader);
                            p.current_leader.leader_epoch = pm.leader_epoch;
                        }
                    }
                    out.partitions.push(p);
                    continue;
                }
            };
            if replica_id >= 0 {
                match partition.record_follower_fetch(replica_id, fp.fetch_offset, now) {
                    Ok(moved) => progressed |= moved,
                    Err(e) => {
                        any_error = true;
                        out.partitions.push(empty_partition(fp.partition, replica_error_code(&e)));
                        continue;
                    }
                }
            }
            let high_watermark = partition.high_watermark();
            let last_stable = partition.last_stable_offset();
            let upper = if replica_id >= 0 {
                partition.log.offsets().log_end_offset
            } else if request.isolation_level == READ_COMMITTED {
                last_stable
            } else {
                high_watermark
            };
            let remaining = max_bytes.saturating_sub(total);
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let mut p = empty_partition(fp.partition, 0);
            p.high_watermark = high_watermark;
            p.last_stable_offset = last_stable;
            p.log_start_offset = partition.log.offsets().log_start_offset;
            p.aborted_transactions = if request.isolation_level == READ_COMMITTED { Some(Vec::new()) } else { None };
            // KIP-74: with nothing yet in the response, the first batch goes out even when larger than the limits.
            let read_limit = if total == 0 { limit.max(1) } else { limit };
            if read_limit == 0 {
                out.partitions.push(p);
                continue;
            }
            if fp.last_fetched_epoch >= 0 {
                // Fetch v12+: the fetcher's last epoch must end at or after its fetch offset
                // in our log, or it diverged and must truncate first.
                match partition.log.end_offset_for_epoch(fp.last_fetched_epoch) {
                    Some((epoch, end)) if epoch == fp.last_fetched_epoch && end >= fp.fetch_offset => {}
                    found => {
                        let (epoch, end) = found.unwrap_or((-1, -1));
                        p.diverging_epoch.epoch = epoch;
                        p.diverging_epoch.end_offset = end;
                        out.partitions.push(p);
                        continue;
                    }
                }
            }
            match partition.log.read(fp.fetch_offset, read_limit, upper) {
                Ok(records) => {
                    if total > 0 && records.len() > limit {
                        // Only the first batch of the response may exceed the limits.
                    } else {
                        total += records.len();
                        p.records = Some(records);
                    }
                }
                Err(LogError::OffsetOutOfRange { .. }) => {
                    // High watermark and log start stay filled in: a follower uses them to
                    // decide whether to truncate or restart its log.
                    any_error = true;
                    p.error_code = ResponseError::OffsetOutOfRange.code();
                }
                Err(e) => {
                    any_error = true;
                    tracing::error!(%tp, error = %e, "reading the log failed");
                    p.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            out.partitions.push(p);
        }
        if version >= FIRST_TOPIC_ID_VERSION {
            out.topic = TopicName::default();
        }
        response.responses.push(out);
    }
    if progressed {
        ctx.replicas.notify_progress();
    }
    (response, total, any_error)
}

pub(super) async fn handle(ctx: &BrokerContext, version: i16, request: FetchRequest) -> FetchResponse {
    if request.session_epoch > 0 {
        // An incremental fetch for a session we never created.
        let mut r = FetchResponse::default();
        r.error_code = ResponseError::FetchSessionIdNotFound.code();
        return r;
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let appended = ctx.replicas.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let (response, total, any_error) = read_once(ctx, version, &request);
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            _ = appended => continue,
            _ = tokio::time::sleep_until(deadline) => return read_once(ctx, version, &request).0,
        }
    }
}
