//! Produce: validate each partition's record batch, append it to the leader's log, and
//! answer per acks (0: no response; 1: after the append; -1/all: after a group-commit flush).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{now_ms, replica_error_code, s, tp, BrokerContext};
use crate::log::batch::{self, BatchError};

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
    for topic in request.topic_data {
        let name = topic.name.0.clone();
        let topic_meta = cluster.topics.get(name.as_str());
        let max_bytes = topic_meta
            .and_then(|t| t.config.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.config.message_max_bytes as usize);
        let log_append_time =
            topic_meta.and_then(|t| t.config.get("message.timestamp.type")).is_some_and(|v| v == "LogAppendTime");
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
                    out.partition_responses.push(partition_error(
                        data.index,
                        replica_error_code(&e),
                        Some(e.to_string()),
                    ));
                    continue;
                }
            };
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
            let leader_epoch = partition.role().leader_epoch;
            match partition.log.append(&batches, leader_epoch, log_append_time.then(now_ms)) {
                Ok(info) => {
                    appended_any = true;
                    ctx.replicas.store().note_appended(record_count);
                    let mut r = partition_error(data.index, 0, None);
                    r.base_offset = info.base_offset;
                    r.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                    r.log_start_offset = partition.log.offsets().log_start_offset;
                    out.partition_responses.push(r);
                }
                Err(e) => {
                    tracing::error!(%tp, error = %e, "append failed; the producer will retry; check the data directory's disk");
                    out.partition_responses.push(partition_error(
                        data.index,
                        ResponseError::KafkaStorageError.code(),
                        Some(e.to_string()),
                    ));
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
    if acks == -1 && appended_any {
        if let Err(e) = ctx.replicas.store().flush().await {
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
