//! DeleteRecords and DescribeProducers: partition-level admin calls answered by the
//! partition's leader (`kafka-delete-records`, Kafka UI's "clear messages" and producer
//! views, `kafka-transactions describe-producers`).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};
use tributary_common::topic::is_internal;

use super::{by_topic, replica_error_code, s, tp, BrokerContext};
use crate::replica::DeleteRecordsError;

pub(super) async fn delete_records(ctx: &BrokerContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    // One deadline for the whole request: the leader moves each partition's log start at
    // once, and the waits for the followers share the request's timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.timeout_ms.clamp(0, 600_000) as u64);
    let mut results = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let tp = tp(&topic.name.0, p.partition_index);
            let offset = p.offset;
            if is_internal(&tp.topic) {
                tracing::info!(%tp, "DeleteRecords refused: the topic is internal");
                results.push((tp, -1, ResponseError::InvalidTopicException.code()));
                continue;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ctx.replicas.delete_records(&tp, offset, left).await {
                Ok(low) => results.push((tp, low, 0)),
                Err(e) => {
                    let code = match &e {
                        DeleteRecordsError::Replica(r) => replica_error_code(r),
                        DeleteRecordsError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
                        DeleteRecordsError::Storage(_) => ResponseError::KafkaStorageError.code(),
                        DeleteRecordsError::Timeout { .. } => ResponseError::RequestTimedOut.code(),
                    };
                    tracing::info!(%tp, offset, error = %e, "DeleteRecords refused");
                    results.push((tp, -1, code));
                }
            }
        }
    }
    let results = results.into_iter().map(|(tp, low, code)| {
        let mut r = DeleteRecordsPartitionResult::default();
        r.partition_index = tp.partition;
        r.low_watermark = low;
        r.error_code = code;
        (tp.topic, r)
    });
    let mut response = DeleteRecordsResponse::default();
    response.topics = by_topic(results, |name, partitions| {
        let mut t = DeleteRecordsTopicResult::default();
        t.name = kafka_protocol::messages::TopicName(s(name));
        t.partitions = partitions;
        t
    });
    response
}

pub(super) fn describe_producers(ctx: &BrokerContext, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let mut t = TopicResponse::default();
        t.name = topic.name.clone();
        for index in topic.partition_indexes {
            let mut p = PartitionResponse::default();
            p.partition_index = index;
            match ctx.replicas.leader_partition(&tp(&topic.name.0, index), -1) {
                Err(e) => {
                    p.error_code = replica_error_code(&e);
                    p.error_message = Some(s(e.to_string()));
                }
                Ok(partition) => {
                    p.active_producers = partition
                        .producers()
                        .into_iter()
                        .map(|a| {
                            let mut state = ProducerState::default();
                            state.producer_id = ProducerId(a.producer_id);
                            state.producer_epoch = i32::from(a.epoch);
                            state.last_sequence = a.last_sequence;
                            state.last_timestamp = a.last_timestamp;
                            state.coordinator_epoch = -1;
                            state.current_txn_start_offset = a.txn_start_offset;
                            state
                        })
                        .collect();
                }
            }
            t.partitions.push(p);
        }
        response.topics.push(t);
    }
    response
}
