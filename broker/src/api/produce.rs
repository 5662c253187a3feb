//! Produce: translates each partition's records into a write through
//! [`crate::replica::ReplicaManager::append_to_leader`] (the one write path: validation,
//! leadership, `min.insync.replicas`, idempotent sequences) and answers once
//! [`crate::replica::ReplicaManager::complete`] says each write holds under its acks
//! (0: no response; 1: after the append; -1/all: the whole ISR has it, and the flush when
//! the rule in `replica::durability` asks for one).

use std::time::Duration;

use bytes::Bytes;
use tributary_common::ids::TopicPartition;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{replica_error_code, s, tp, BrokerContext};
use crate::metrics::METRICS;
use crate::record::{BatchError, BatchHeader};
use crate::replica::durability::Acks;
use crate::replica::producer_state::SequenceError;
use crate::replica::{AppendError, Appended, CompletionError, Origin};
use crate::txn::state::Caller;

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

/// KIP-467's per-record errors (sent from Produce v8; older versions leave them out).
fn record_errors(errors: &[(i32, String)]) -> Vec<kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage> {
    errors
        .iter()
        .map(|(index, message)| {
            let mut e = kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default();
            e.batch_index = *index;
            e.batch_index_error_message = Some(s(message.clone()));
            e
        })
        .collect()
}

pub(super) fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Replica(r) => replica_error_code(r),
        AppendError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
        AppendError::Batch(BatchError::Corrupt(_)) => ResponseError::CorruptMessage.code(),
        AppendError::Batch(BatchError::Records { timestamps: true, .. }) => ResponseError::InvalidTimestamp.code(),
        AppendError::Batch(BatchError::Invalid(_) | BatchError::Records { .. }) | AppendError::BatchCount(_) => {
            ResponseError::InvalidRecord.code()
        }
        AppendError::Batch(BatchError::TooLarge { .. }) => ResponseError::MessageTooLarge.code(),
        AppendError::InternalTopic(_) => ResponseError::InvalidTopicException.code(),
        AppendError::Sequence(SequenceError::InvalidEpoch { .. }) => ResponseError::InvalidProducerEpoch.code(),
        AppendError::Sequence(SequenceError::OutOfOrder { .. }) => ResponseError::OutOfOrderSequenceNumber.code(),
        AppendError::Log(_) => ResponseError::KafkaStorageError.code(),
    }
}

pub(super) fn completion_error_code(e: &CompletionError) -> i16 {
    match e {
        CompletionError::NotEnoughReplicasAfterAppend { .. } => ResponseError::NotEnoughReplicasAfterAppend.code(),
        CompletionError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
        CompletionError::TimedOut { .. } => ResponseError::RequestTimedOut.code(),
        CompletionError::Storage(_) => ResponseError::KafkaStorageError.code(),
    }
}

/// KIP-890 (part 1): a transactional batch that would open its producer's transaction on
/// this partition is written only if the coordinator has the partition in that
/// transaction. Refused: INVALID_TXN_STATE (not in the transaction), INVALID_PRODUCER_EPOCH
/// (fenced); NOT_ENOUGH_REPLICAS (retriable) while the coordinator cannot be asked, as
/// Kafka answers.
async fn verify_transaction(
    ctx: &BrokerContext,
    transactional_id: Option<&str>,
    tp: &TopicPartition,
    records: &Bytes,
) -> Option<(i16, String)> {
    let h = BatchHeader::parse(records)?;
    if !h.is_transactional() || h.is_control() || h.producer_id < 0 {
        return None;
    }
    let partition = ctx.replicas.get(tp)?; // not hosted here: the append answers why
    if partition.in_transaction(h.producer_id) {
        return None; // the transaction's first batch here was verified
    }
    let Some(id) = transactional_id.filter(|id| !id.is_empty()) else {
        return Some((
            ResponseError::InvalidTxnState.code(),
            format!("a transactional batch for {tp} without a transactional id"),
        ));
    };
    let caller = Caller { producer_id: h.producer_id, producer_epoch: h.producer_epoch };
    match ctx.txn_verifier.verify(ctx, id, caller, tp).await {
        Ok(true) => None,
        Ok(false) => Some((
            ResponseError::InvalidTxnState.code(),
            format!("{tp} is not in an ongoing transaction of {id:?}: add it (AddPartitionsToTxn) before producing"),
        )),
        Err(e @ (ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)) => {
            Some((ResponseError::InvalidProducerEpoch.code(), format!("transactional id {id:?}: {e:?}")))
        }
        Err(e @ ResponseError::InvalidProducerIdMapping) => Some((e.code(), format!("transactional id {id:?}: {e:?}"))),
        Err(e) => Some((
            ResponseError::NotEnoughReplicas.code(),
            format!("could not verify the transaction of {id:?} with its coordinator ({e:?}); retry"),
        )),
    }
}

pub(super) async fn handle(
    ctx: &BrokerContext,
    _version: i16,
    request: ProduceRequest,
    release: &super::Release,
) -> Option<ProduceResponse> {
    let acks = Acks::from_wire(request.acks);
    let cluster = ctx.cluster();
    let mut response = ProduceResponse::default();
    // Writes to complete: (topic index, partition index in the response, pending write).
    let mut written = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.clone();
        let mut out = TopicProduceResponse::default();
        out.name = topic.name.clone();
        out.topic_id = topic.topic_id;
        for data in topic.partition_data {
            let tp = tp(&name, data.index);
            let Some(acks) = acks else {
                let msg = format!("acks={} is not one of 0, 1, -1", request.acks);
                out.partition_responses.push(partition_error(
                    data.index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(msg),
                ));
                continue;
            };
            let records = data.records.unwrap_or_default();
            if let Some((code, message)) =
                verify_transaction(ctx, request.transactional_id.as_ref().map(|id| id.as_str()), &tp, &records).await
            {
                tracing::debug!(%tp, code, message, "transactional batch refused");
                out.partition_responses.push(partition_error(data.index, code, Some(message)));
                continue;
            }
            let known_topic = cluster.topics.contains_key(name.as_str());
            if known_topic {
                METRICS.produce_requested(name.as_str());
            }
            match ctx.replicas.append_to_leader(&tp, Origin::Client, &records, acks) {
                Ok(w) => {
                    let mut r = partition_error(data.index, 0, None);
                    match &w.appended {
                        Appended::New(info) => {
                            METRICS.produced(
                                name.as_str(),
                                (info.last_offset - info.base_offset + 1).max(0) as u64,
                                records.len() as u64,
                            );
                            r.base_offset = info.base_offset;
                            r.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                        }
                        Appended::Duplicate { base_offset, .. } => {
                            tracing::debug!(%tp, base_offset, "a retried batch was already written; answering with its offsets");
                            r.base_offset = *base_offset;
                        }
                    }
                    r.log_start_offset = w.log_start_offset;
                    written.push((response.responses.len(), out.partition_responses.len(), w.pending));
                    out.partition_responses.push(r);
                }
                Err(e) => {
                    match &e {
                        AppendError::Log(_) => {
                            tracing::error!(%tp, error = %e, "append failed; the producer will retry; check the data directory's disk")
                        }
                        AppendError::Batch(BatchError::Records { timestamps: true, .. }) => super::refused(
                            &tp,
                            &e,
                            "refused a record batch holding records stamped outside the topic's message.timestamp.before.max.ms / after.max.ms; nothing was written (check the producer's clock and the timestamps it sets, or widen the topic's bounds)",
                        ),
                        AppendError::Batch(BatchError::Records { .. }) => super::refused(
                            &tp,
                            &e,
                            "refused a record batch of a compacted topic holding records without a key; nothing was written (the producer must give every record a key, or the topic needs cleanup.policy=delete)",
                        ),
                        AppendError::Batch(_) => super::refused(&tp, &e, "refused a record batch; nothing was written"),
                        _ => tracing::debug!(%tp, error = %e, "produce refused"),
                    }
                    let mut r = partition_error(data.index, append_error_code(&e), Some(e.to_string()));
                    if let AppendError::Batch(BatchError::Records { errors, .. }) = &e {
                        r.record_errors = record_errors(errors);
                    }
                    if known_topic {
                        METRICS.produce_failed(name.as_str(), r.error_code);
                    }
                    if matches!(e, AppendError::Replica(_)) {
                        if let Some(pm) = cluster.topics.get(name.as_str()).and_then(|t| t.partitions.get(&data.index))
                        {
                            r.current_leader.leader_id = kafka_protocol::messages::BrokerId(pm.leader);
                            r.current_leader.leader_epoch = pm.leader_epoch;
                        }
                    }
                    out.partition_responses.push(r);
                }
            }
        }
        response.responses.push(out);
    }
    if acks == Some(Acks::None) {
        // Nobody waits for an answer, but the connection reads no further request until
        // the store's write backlog is within its bound.
        ctx.replicas.pace().await;
        return None;
    }
    let pending: Vec<_> = written.iter().map(|(_, _, p)| p.clone()).collect();
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    if pending.iter().any(crate::replica::Pending::waits) {
        // The backlog's pacing holds the connection; the flush or the ISR does not: the
        // producer's next request may append meanwhile and share this one's flush.
        ctx.replicas.pace().await;
        release.release();
    }
    let results = ctx.replicas.complete(&pending, timeout).await;
    for ((t, i, _), result) in written.iter().zip(results) {
        if let Err(e) = result {
            let topic = &mut response.responses[*t];
            let p = &mut topic.partition_responses[*i];
            tracing::debug!(topic = topic.name.0.as_str(), partition = p.index, error = %e, "produce not confirmed");
            *p = partition_error(p.index, completion_error_code(&e), Some(e.to_string()));
            METRICS.produce_failed(topic.name.0.as_str(), p.error_code);
        }
    }
    Some(response)
}
