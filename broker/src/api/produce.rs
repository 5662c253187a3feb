//! Produce: validate each partition's record batch, check idempotent producer sequences,
//! append it to the leader's log, and answer per acks (0: no response; 1: after the
//! append; -1/all: once the whole ISR has it and `min.insync.replicas` holds).
//!
//! acks=all also waits for the local group-commit flush while the leader is the only
//! in-sync replica, so that `kill -9` of a lone broker never loses an acknowledged record.
//! With another in-sync replica holding the batch, replication is the durability, as in
//! Kafka (which never waits for an fsync): the flush follows within
//! `log.flush.interval.ms`. `log.flush.interval.messages=1` (or a topic's
//! `flush.messages=1`) makes acks=all wait for the flush anyway.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use std::sync::Arc;
use std::time::Duration;

use super::{now_ms, replica_error_code, s, tp, BrokerContext};
use crate::log::batch::{self, BatchError};
use crate::replica::producer_state::SequenceError;
use crate::replica::{AppendError, Appended, Partition, ReplicationWaitError};

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = code;
    r.base_offset = -1;
    r.log_append_time_ms = -1;
    r.log_start_offset = -1;
    r.error_message = message.map(s);
    r
}

pub(super) async fn handle(ctx: &BrokerContext, _version: i16, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks = request.acks;
    let cluster = ctx.cluster();
    let mut response = ProduceResponse::default();
    let mut appended_any = false;
    // log.flush.interval.messages=1, or flush.messages=1 on a topic written here: acks=all
    // waits for the flush even with other in-sync replicas (every message flushed, as in Kafka).
    let mut always_flush = ctx.config.log_flush_interval_messages <= 1;
    // acks=all: (topic index, partition index in response, partition, demotions at append, last offset)
    let mut to_replicate: Vec<(usize, usize, Arc<Partition>, u64, i64)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.clone();
        let topic_meta = cluster.topics.get(name.as_str());
        let max_bytes = topic_meta
            .and_then(|t| t.config.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.config.message_max_bytes as usize);
        let log_append_time =
            topic_meta.and_then(|t| t.config.get("message.timestamp.type")).is_some_and(|v| v == "LogAppendTime");
        let topic_flushes_every_message = topic_meta
            .and_then(|t| t.config.get("flush.messages"))
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| n <= 1);
        let mut out = TopicProduceResponse::default();
        out.name = topic.name.clone();
        out.topic_id = topic.topic_id;
        for data in topic.partition_data {
            let tp = tp(&name, data.index);
            if !(-1..=1).contains(&acks) {
                out.partition_responses.push(partition_error(
                    data.index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks={acks} is not one of 0, 1, -1")),
                ));
                continue;
            }
            if name.as_str() == tributary_common::topic::CONSUMER_OFFSETS {
                out.partition_responses.push(partition_error(
                    data.index,
                    ResponseError::InvalidTopicException.code(),
                    Some(format!("{name} is internal: only the group coordinator writes to it")),
                ));
                continue;
            }
            let partition = match ctx.replicas.leader_partition(&tp, -1) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%tp, error = %e, "produce refused");
                    let mut r = partition_error(data.index, replica_error_code(&e), Some(e.to_string()));
                    if let Some(pm) = topic_meta.and_then(|t| t.partitions.get(&data.index)) {
                        r.current_leader.leader_id = kafka_protocol::messages::BrokerId(pm.leader);
                        r.current_leader.leader_epoch = pm.leader_epoch;
                    }
                    out.partition_responses.push(r);
                    continue;
                }
            };
            let role = partition.role();
            if acks == -1 && role.isr.len() < role.min_insync_replicas {
                let msg = format!(
                    "{tp}: the ISR {:?} has fewer than min.insync.replicas={} replicas; nothing was written",
                    role.isr, role.min_insync_replicas
                );
                tracing::debug!(%tp, "{msg}");
                out.partition_responses.push(partition_error(
                    data.index,
                    ResponseError::NotEnoughReplicas.code(),
                    Some(msg),
                ));
                continue;
            }
            let records = data.records.unwrap_or_default();
            let batches = match batch::validate(&records, max_bytes) {
                Ok(b) if b.len() == 1 => b,
                Ok(b) => {
                    let msg = format!("produce v3+ carries exactly one record batch per partition, got {}", b.len());
                    out.partition_responses.push(partition_error(
                        data.index,
                        ResponseError::InvalidRecord.code(),
                        Some(msg),
                    ));
                    continue;
                }
                Err(e) => {
                    let code = match &e {
                        BatchError::Corrupt(_) => ResponseError::CorruptMessage.code(),
                        BatchError::Invalid(_) => ResponseError::InvalidRecord.code(),
                        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
                    };
                    tracing::warn!(%tp, error = %e, "refused a record batch; nothing was written");
                    out.partition_responses.push(partition_error(data.index, code, Some(e.to_string())));
                    continue;
                }
            };
            let record_count: u64 = batches.iter().map(|(h, _)| h.record_count as u64).sum();
            let demotions = partition.demotions();
            match partition.append_as_leader(&batches, log_append_time.then(now_ms)) {
                Ok(appended) => {
                    let (base_offset, last_offset, append_time) = match appended {
                        Appended::New(info) => {
                            appended_any = true;
                            always_flush |= topic_flushes_every_message;
                            ctx.replicas.store().note_appended(record_count);
                            partition.maybe_advance_high_watermark();
                            (info.base_offset, info.last_offset, info.log_append_time)
                        }
                        Appended::Duplicate { base_offset, last_offset } => {
                            tracing::debug!(%tp, base_offset, "a retried batch was already written; answering with its offsets");
                            (base_offset, last_offset, None)
                        }
                    };
                    let mut r = partition_error(data.index, 0, None);
                    r.base_offset = base_offset;
                    r.log_append_time_ms = append_time.unwrap_or(-1);
                    r.log_start_offset = partition.log.offsets().log_start_offset;
                    if acks == -1 {
                        let index = response.responses.len();
                        to_replicate.push((
                            index,
                            out.partition_responses.len(),
                            partition.clone(),
                            demotions,
                            last_offset,
                        ));
                    }
                    out.partition_responses.push(r);
                }
                Err(e) => {
                    let code = match &e {
                        AppendError::Replica(r) => replica_error_code(r),
                        AppendError::Sequence(SequenceError::InvalidEpoch { .. }) => {
                            ResponseError::InvalidProducerEpoch.code()
                        }
                        AppendError::Sequence(SequenceError::OutOfOrder { .. }) => {
                            ResponseError::OutOfOrderSequenceNumber.code()
                        }
                        AppendError::Log(_) => {
                            tracing::error!(%tp, error = %e, "append failed; the producer will retry; check the data directory's disk");
                            ResponseError::KafkaStorageError.code()
                        }
                    };
                    if let AppendError::Sequence(_) = &e {
                        tracing::debug!(%tp, error = %e, "refused a batch from an idempotent producer");
                    }
                    out.partition_responses.push(partition_error(data.index, code, Some(e.to_string())));
                }
            }
        }
        response.responses.push(out);
    }
    if appended_any {
        ctx.replicas.appended.notify_waiters();
    }
    if acks == 0 {
        return None;
    }
    if acks == -1 && !to_replicate.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let flush_needed =
            || appended_any && (always_flush || to_replicate.iter().any(|(_, _, p, _, _)| p.role().isr.len() < 2));
        let flush_first = flush_needed();
        let flush = async {
            if flush_first {
                ctx.replicas.store().flush().await
            } else {
                Ok(())
            }
        };
        let replicated = async {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut failures = Vec::new();
            for (t, i, partition, demotions, last_offset) in &to_replicate {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Err(e) = ctx.replicas.wait_replicated(partition, *demotions, *last_offset, left).await {
                    failures.push((*t, *i, e));
                }
            }
            failures
        };
        let (mut flushed, failures) = tokio::join!(flush, replicated);
        // An ISR that shrank to this leader alone during the wait leaves its copy the only one.
        if flushed.is_ok() && !flush_first && flush_needed() {
            flushed = ctx.replicas.store().flush().await;
        }
        for (t, i, e) in failures {
            let tp_name = response.responses[t].name.0.to_string();
            let p = &mut response.responses[t].partition_responses[i];
            let code = match &e {
                ReplicationWaitError::NotEnoughReplicasAfterAppend { .. } => {
                    ResponseError::NotEnoughReplicasAfterAppend.code()
                }
                ReplicationWaitError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
                ReplicationWaitError::TimedOut { .. } => ResponseError::RequestTimedOut.code(),
            };
            tracing::debug!(topic = tp_name, partition = p.index, error = %e, "acks=all produce not confirmed");
            *p = partition_error(p.index, code, Some(e.to_string()));
        }
        if let Err(e) = flushed {
            // Nothing appended in this request can be called durable.
            for topic in &mut response.responses {
                for p in &mut topic.partition_responses {
                    if p.error_code == 0 {
                        *p = partition_error(p.index, ResponseError::KafkaStorageError.code(), Some(e.to_string()));
                    }
                }
            }
        }
    }
    Some(response)
}
