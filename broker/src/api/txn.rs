//! Transaction APIs (KIP-98): InitProducerId with a transactional id, AddPartitionsToTxn
//! (v4+ batched and verify-only too), AddOffsetsToTxn, EndTxn, DescribeTransactions and
//! ListTransactions go to the transaction coordinator ([`crate::txn`]). WriteTxnMarkers
//! (sent by a transaction coordinator to each leader of a transaction's partitions): the
//! COMMIT or ABORT control batch is appended through the one write path, acks=all, and
//! each partition answers once its marker is replicated (or why not).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    describe_transactions_response, list_transactions_response, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse,
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use tributary_common::ids::TopicPartition;
use tributary_common::topic::CONSUMER_OFFSETS;

use super::produce::{append_error_code, completion_error_code};
use super::{by_topic, now_ms, s, tp, BrokerContext};
use crate::record::control::{marker_batch, Marker};
use crate::replica::durability::Acks;
use crate::replica::Origin;
use crate::txn::state::Caller;

/// How long a marker waits to be replicated before the partition answers REQUEST_TIMED_OUT.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

fn partition_result(partition: i32, code: i16) -> WritableTxnMarkerPartitionResult {
    let mut r = WritableTxnMarkerPartitionResult::default();
    r.partition_index = partition;
    r.error_code = code;
    r
}

pub(super) async fn write_txn_markers(ctx: &BrokerContext, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut response = WriteTxnMarkersResponse::default();
    for m in request.markers {
        let marker = if m.transaction_result { Marker::Commit } else { Marker::Abort };
        let batch = marker_batch(m.producer_id.0, m.producer_epoch, m.coordinator_epoch, marker, now_ms());
        // Append to every partition first, then wait for all of them together.
        let mut answers: Vec<(TopicPartition, i16)> = Vec::new();
        let mut waiting = Vec::new();
        for topic in &m.topics {
            for &p in &topic.partition_indexes {
                let tp = tp(&topic.name.0, p);
                match ctx.replicas.append_to_leader(&tp, Origin::Coordinator, &batch, Acks::All) {
                    Ok(written) => waiting.push((tp, written.pending)),
                    Err(e) => {
                        tracing::warn!(%tp, producer_id = m.producer_id.0, ?marker, error = %e, "could not write a transaction marker; the coordinator retries");
                        answers.push((tp, append_error_code(&e)));
                    }
                }
            }
        }
        let pending: Vec<_> = waiting.iter().map(|(_, p)| p.clone()).collect();
        let done = ctx.replicas.complete(&pending, MARKER_TIMEOUT).await;
        for ((tp, written), result) in waiting.into_iter().zip(done) {
            if result.is_ok() && tp.topic == CONSUMER_OFFSETS {
                // Offsets committed in the transaction join (or leave) their groups now.
                ctx.groups.end_txn(
                    tp.partition,
                    m.producer_id.0,
                    m.transaction_result,
                    written.last_offset(),
                    now_ms(),
                );
            }
            answers.push((tp, result.as_ref().map_or_else(completion_error_code, |_| 0)));
        }
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = ProducerId(m.producer_id.0);
        result.topics = by_topic(
            answers.into_iter().map(|(tp, code)| (tp.topic, partition_result(tp.partition, code))),
            |name, partitions| {
                let mut t = WritableTxnMarkerTopicResult::default();
                t.name = TopicName(s(name));
                t.partitions = partitions;
                t
            },
        );
        response.markers.push(result);
    }
    response
}

/// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH to clients older than the version that knows it.
fn fenced_for(e: ResponseError, version: i16, knows_fenced_from: i16) -> i16 {
    if e == ResponseError::ProducerFenced && version < knows_fenced_from {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        e.code()
    }
}

/// InitProducerId with a transactional id (the idempotent case is in `misc`).
pub(super) async fn init_transactional(
    ctx: &BrokerContext,
    version: i16,
    request: InitProducerIdRequest,
    id: &str,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let new_id = match ctx.producer_ids.next(ctx).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "could not allocate a producer id");
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
            return response;
        }
    };
    let expected = (request.producer_id.0 >= 0)
        .then_some(Caller { producer_id: request.producer_id.0, producer_epoch: request.producer_epoch });
    match ctx.txns.init_producer_id(id, request.transaction_timeout_ms, expected, new_id).await {
        Ok((pid, epoch)) => {
            response.producer_id = ProducerId(pid);
            response.producer_epoch = epoch;
        }
        Err(e) => response.error_code = fenced_for(e, version, 4),
    }
    response
}

/// A (topic, partition) with its error code.
type PartitionCode = (String, i32, i16);

/// The partitions in `topics` that exist, and an error per partition otherwise: Kafka
/// answers UNKNOWN_TOPIC_OR_PARTITION for those and OPERATION_NOT_ATTEMPTED for the rest.
fn check_partitions(
    ctx: &BrokerContext,
    topics: &[AddPartitionsToTxnTopic],
) -> Result<Vec<(String, i32)>, Vec<PartitionCode>> {
    let cluster = ctx.cluster();
    let mut all = Vec::new();
    let mut unknown = false;
    for t in topics {
        for p in &t.partitions {
            let known = cluster.topics.get(t.name.as_str()).is_some_and(|topic| topic.partitions.contains_key(p));
            unknown |= !known;
            all.push((t.name.to_string(), *p, known));
        }
    }
    if unknown {
        return Err(all
            .into_iter()
            .map(|(t, p, known)| {
                let code =
                    if known { ResponseError::OperationNotAttempted } else { ResponseError::UnknownTopicOrPartition };
                (t, p, code.code())
            })
            .collect());
    }
    Ok(all.into_iter().map(|(t, p, _)| (t, p)).collect())
}

fn topic_results(results: Vec<PartitionCode>) -> Vec<AddPartitionsToTxnTopicResult> {
    by_topic(
        results.into_iter().map(|(t, p, code)| {
            let mut r = AddPartitionsToTxnPartitionResult::default();
            r.partition_index = p;
            r.partition_error_code = code;
            (t, r)
        }),
        |name, results_by_partition| {
            let mut t = AddPartitionsToTxnTopicResult::default();
            t.name = TopicName(s(name));
            t.results_by_partition = results_by_partition;
            t
        },
    )
}

/// One transaction's AddPartitionsToTxn: a code per partition.
async fn add_one(
    ctx: &BrokerContext,
    version: i16,
    id: &str,
    caller: Caller,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<(String, i32, i16)> {
    let partitions = match check_partitions(ctx, topics) {
        Ok(p) => p,
        Err(errors) => return errors,
    };
    let everywhere = |code: i16| partitions.iter().map(|(t, p)| (t.clone(), *p, code)).collect();
    if verify_only {
        return match ctx.txns.verify(id, caller, &partitions) {
            Ok(found) => partitions
                .iter()
                .zip(found)
                .map(|((t, p), ok)| (t.clone(), *p, if ok { 0 } else { ResponseError::InvalidTxnState.code() }))
                .collect(),
            Err(e) => everywhere(fenced_for(e, version, 2)),
        };
    }
    match ctx.txns.add_partitions(id, caller, &partitions).await {
        Ok(()) => everywhere(0),
        Err(e) => everywhere(fenced_for(e, version, 2)),
    }
}

pub(super) async fn add_partitions_to_txn(
    ctx: &BrokerContext,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let caller = Caller {
            producer_id: request.v3_and_below_producer_id.0,
            producer_epoch: request.v3_and_below_producer_epoch,
        };
        let id = request.v3_and_below_transactional_id.to_string();
        let results = add_one(ctx, version, &id, caller, &request.v3_and_below_topics, false).await;
        response.results_by_topic_v3_and_below = topic_results(results);
        return response;
    }
    // v4+: brokers verifying (and, if asked, adding) several transactions at once.
    for t in request.transactions {
        let caller = Caller { producer_id: t.producer_id.0, producer_epoch: t.producer_epoch };
        let results = add_one(ctx, version, t.transactional_id.as_str(), caller, &t.topics, t.verify_only).await;
        let mut r = AddPartitionsToTxnResult::default();
        r.transactional_id = t.transactional_id;
        r.topic_results = topic_results(results);
        response.results_by_transaction.push(r);
    }
    response
}

pub(super) async fn add_offsets_to_txn(
    ctx: &BrokerContext,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    let count = ctx
        .cluster()
        .topics
        .get(CONSUMER_OFFSETS)
        .map_or(ctx.config.offsets_topic_num_partitions, |t| t.partitions.len() as i32);
    let partition = crate::group::GroupCoordinator::partition_for(request.group_id.as_str(), count);
    let caller = Caller { producer_id: request.producer_id.0, producer_epoch: request.producer_epoch };
    let add = [(CONSUMER_OFFSETS.to_string(), partition)];
    if let Err(e) = ctx.txns.add_partitions(request.transactional_id.as_str(), caller, &add).await {
        response.error_code = fenced_for(e, version, 2);
    }
    response
}

pub(super) async fn end_txn(ctx: &BrokerContext, version: i16, request: EndTxnRequest) -> EndTxnResponse {
    let mut response = EndTxnResponse::default();
    let caller = Caller { producer_id: request.producer_id.0, producer_epoch: request.producer_epoch };
    if let Err(e) = ctx.txns.end_txn(request.transactional_id.as_str(), caller, request.committed).await {
        response.error_code = fenced_for(e, version, 2);
    }
    response
}

pub(super) fn describe_transactions(
    ctx: &BrokerContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let mut st = describe_transactions_response::TransactionState::default();
        match ctx.txns.describe(id.as_str()) {
            Ok(meta) => {
                st.transaction_state = s(meta.state.name());
                st.transaction_timeout_ms = meta.timeout_ms;
                st.transaction_start_time_ms = meta.started_ms;
                st.producer_id = ProducerId(meta.producer_id);
                st.producer_epoch = meta.producer_epoch;
                let mut topics: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
                topics.sort();
                st.topics = by_topic(topics, |name, partitions| {
                    let mut t = describe_transactions_response::TopicData::default();
                    t.topic = TopicName(s(name));
                    t.partitions = partitions;
                    t
                });
            }
            Err(e) => st.error_code = e.code(),
        }
        st.transactional_id = id;
        response.transaction_states.push(st);
    }
    response
}

pub(super) fn list_transactions(ctx: &BrokerContext, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    const STATES: &[&str] = &[
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    response.unknown_state_filters =
        request.state_filters.iter().filter(|f| !STATES.contains(&f.as_str())).cloned().collect();
    let now = now_ms();
    for t in ctx.txns.list() {
        let state_ok =
            request.state_filters.is_empty() || request.state_filters.iter().any(|f| f.as_str() == t.meta.state.name());
        let pid_ok = request.producer_id_filters.is_empty()
            || request.producer_id_filters.iter().any(|p| p.0 == t.meta.producer_id);
        // v1: only transactions running longer than the filter.
        let duration_ok = request.duration_filter < 0
            || (t.meta.started_ms >= 0 && now - t.meta.started_ms > request.duration_filter);
        if state_ok && pid_ok && duration_ok {
            let mut st = list_transactions_response::TransactionState::default();
            st.transactional_id = TransactionalId(s(t.transactional_id));
            st.producer_id = ProducerId(t.meta.producer_id);
            st.transaction_state = s(t.meta.state.name());
            response.transaction_states.push(st);
        }
    }
    response
}
