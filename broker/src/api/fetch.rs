//! Fetch: translates the request into [`FetchSpec`]s for
//! [`crate::replica::ReplicaManager::fetch_messages`] (which reads and long-polls) and its
//! results back into the wire response. Sessions (KIP-227) are not kept: every answer has
//! session id 0, which tells clients to send full fetches.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tributary_common::ids::TopicId;

use super::{replica_error_code, s, tp, BrokerContext};
use crate::metrics::METRICS;
use crate::replica::{FetchSpec, Fetched, ReadError, Reader};

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

fn partition_data(index: i32, fetched: Fetched, read_committed: bool) -> PartitionData {
    let mut p = empty_partition(index, 0);
    p.high_watermark = fetched.high_watermark;
    p.last_stable_offset = fetched.last_stable_offset;
    p.log_start_offset = fetched.log_start_offset;
    p.aborted_transactions = read_committed.then(|| {
        fetched
            .aborted
            .iter()
            .map(|(producer_id, first_offset)| {
                let mut t = AbortedTransaction::default();
                t.producer_id = ProducerId(*producer_id);
                t.first_offset = *first_offset;
                t
            })
            .collect()
    });
    if let Some((epoch, end)) = fetched.diverging_epoch {
        p.diverging_epoch.epoch = epoch;
        p.diverging_epoch.end_offset = end;
    }
    p.error_code = match fetched.error {
        None => 0,
        Some(ReadError::OffsetOutOfRange) => ResponseError::OffsetOutOfRange.code(),
        Some(ReadError::Storage(_)) => ResponseError::KafkaStorageError.code(),
    };
    p.records = Some(fetched.records);
    p
}

pub(super) async fn handle(ctx: &BrokerContext, version: i16, request: FetchRequest) -> FetchResponse {
    if request.session_epoch > 0 {
        // An incremental fetch for a session we never created.
        let mut r = FetchResponse::default();
        r.error_code = ResponseError::FetchSessionIdNotFound.code();
        return r;
    }
    let cluster = ctx.cluster();
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    let read_committed = request.isolation_level == READ_COMMITTED;
    let reader = if replica_id >= 0 { Reader::Follower(replica_id) } else { Reader::Consumer { read_committed } };
    // Topic names (v13+ resolves ids; an unknown id is answered without reading).
    let names: Vec<Option<String>> = request
        .topics
        .iter()
        .map(|t| {
            if version >= FIRST_TOPIC_ID_VERSION {
                cluster.topic_by_id(&TopicId(t.topic_id)).map(|(n, _)| n.clone())
            } else {
                Some(t.topic.0.as_str().to_string())
            }
        })
        .collect();
    let mut specs = Vec::new();
    for (topic, name) in request.topics.iter().zip(&names) {
        let Some(name) = name else { continue };
        for fp in &topic.partitions {
            specs.push(FetchSpec {
                tp: tp(&s(name.clone()), fp.partition),
                fetch_offset: fp.fetch_offset,
                current_leader_epoch: fp.current_leader_epoch,
                max_bytes: fp.partition_max_bytes.max(0) as usize,
                last_fetched_epoch: fp.last_fetched_epoch,
                log_start_offset: fp.log_start_offset,
            });
        }
    }
    let unknown_id = names.iter().any(Option::is_none);
    let results = ctx
        .replicas
        .fetch_messages(
            reader,
            &specs,
            request.max_bytes.max(0) as usize,
            // An unknown topic id is an error to report now, as any other.
            if unknown_id { 0 } else { request.min_bytes.max(0) as usize },
            Duration::from_millis(request.max_wait_ms.max(0) as u64),
        )
        .await;
    let mut results = results.into_iter();
    let mut response = FetchResponse::default();
    for (topic, name) in request.topics.iter().zip(&names) {
        let mut out = FetchableTopicResponse::default();
        out.topic = if version >= FIRST_TOPIC_ID_VERSION { TopicName::default() } else { topic.topic.clone() };
        out.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let Some(name) = name else {
                out.partitions.push(empty_partition(fp.partition, ResponseError::UnknownTopicId.code()));
                continue;
            };
            let p = match results.next().expect("one result per spec") {
                Ok(fetched) => partition_data(fp.partition, fetched, read_committed),
                Err(e) => {
                    let mut p = empty_partition(fp.partition, replica_error_code(&e));
                    if version >= 12 {
                        if let Some(pm) =
                            cluster.topics.get(name.as_str()).and_then(|t| t.partitions.get(&fp.partition))
                        {
                            p.current_leader.leader_id = kafka_protocol::messages::BrokerId(pm.leader);
                            p.current_leader.leader_epoch = pm.leader_epoch;
                        }
                    }
                    p
                }
            };
            if matches!(reader, Reader::Consumer { .. }) && cluster.topics.contains_key(name.as_str()) {
                let records = p.records.as_deref().unwrap_or_default();
                METRICS.fetched(
                    name.as_str(),
                    crate::record::data_record_count(records),
                    records.len() as u64,
                    p.error_code,
                );
            }
            out.partitions.push(p);
        }
        response.responses.push(out);
    }
    response
}
