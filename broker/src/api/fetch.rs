//! Fetch: translates the request into [`FetchSpec`]s for
//! [`crate::replica::ReplicaManager::fetch_messages`] (which reads and long-polls) and its
//! results back into the wire response, through an incremental fetch session (KIP-227,
//! [`super::fetch_session`]) when the client asks for one: a full fetch with epoch 0
//! opens one, later fetches name only what changed and are answered only what changed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tributary_common::ids::TopicId;

use super::fetch_session::{self, Ask, Begun, Seen, Wanted};
use super::{replica_error_code, s, BrokerContext};
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

/// How this fetch relates to a session.
enum Plan {
    /// Answer every partition; `open`: then open a session over them (epoch 0).
    Full { open: bool },
    /// Answer the session's partitions that changed; `epoch`: the session's next one.
    Incremental { id: i32, epoch: i32 },
}

fn session_error(code: i16) -> FetchResponse {
    let mut r = FetchResponse::default();
    r.error_code = code;
    r.session_id = fetch_session::INVALID_SESSION_ID;
    r
}

pub(super) async fn handle(ctx: &BrokerContext, version: i16, request: FetchRequest) -> FetchResponse {
    let cluster = ctx.cluster();
    let now = super::now_ms();
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    let read_committed = request.isolation_level == READ_COMMITTED;
    let reader = if replica_id >= 0 { Reader::Follower(replica_id) } else { Reader::Consumer { read_committed } };
    let by_id = version >= FIRST_TOPIC_ID_VERSION;
    // One shared name per topic of the request: sessions and answers hand it out per partition.
    let name_of = |name: &TopicName, id: &uuid::Uuid| -> Option<Arc<str>> {
        if by_id {
            cluster.topic_by_id(&TopicId(*id)).map(|(n, _)| Arc::from(n.as_str()))
        } else {
            Some(Arc::from(name.0.as_str()))
        }
    };
    // The partitions the request names; those of unknown topic ids are answered without reading.
    let mut named = Vec::new();
    let mut unknown: Vec<(TopicName, uuid::Uuid, i32)> = Vec::new();
    for topic in &request.topics {
        let name = name_of(&topic.topic, &topic.topic_id);
        for fp in &topic.partitions {
            match &name {
                None => unknown.push((topic.topic.clone(), topic.topic_id, fp.partition)),
                Some(name) => named.push(Wanted {
                    topic: name.clone(),
                    topic_id: topic.topic_id,
                    partition: fp.partition,
                    fetch_offset: fp.fetch_offset,
                    max_bytes: fp.partition_max_bytes,
                    current_leader_epoch: fp.current_leader_epoch,
                    last_fetched_epoch: fp.last_fetched_epoch,
                    log_start_offset: fp.log_start_offset,
                }),
            }
        }
    }
    // Sessions exist from Fetch v7.
    let ask = if version >= 7 {
        fetch_session::ask(request.session_id, request.session_epoch)
    } else {
        Ask::Sessionless { close: None }
    };
    let sessions = &ctx.fetch_sessions;
    let (plan, wanted) = match ask {
        Ask::Sessionless { close } | Ask::Open { close } => {
            if let Some(id) = close {
                sessions.close(id);
            }
            (Plan::Full { open: matches!(ask, Ask::Open { .. }) }, named)
        }
        Ask::Incremental { id, epoch } => {
            let forget: Vec<(Arc<str>, i32)> = request
                .forgotten_topics_data
                .iter()
                .filter_map(|t| name_of(&t.topic, &t.topic_id).map(|n| (n, &t.partitions)))
                .flat_map(|(n, ps)| ps.iter().map(move |p| (n.clone(), *p)))
                .collect();
            match sessions.begin(id, epoch, named.clone(), &forget, now) {
                Err(e) => {
                    tracing::debug!(session = id, epoch, error = ?e, "incremental fetch refused; the client starts a new session");
                    return session_error(e.code());
                }
                Ok(Begun::Closed) => (Plan::Full { open: false }, named),
                Ok(Begun::Session { epoch, partitions }) => (Plan::Incremental { id, epoch }, partitions),
            }
        }
    };
    let specs: Vec<FetchSpec> = wanted
        .iter()
        .map(|w| FetchSpec {
            tp: tributary_common::ids::TopicPartition::new(&*w.topic, w.partition),
            fetch_offset: w.fetch_offset,
            current_leader_epoch: w.current_leader_epoch,
            max_bytes: w.max_bytes.max(0) as usize,
            last_fetched_epoch: w.last_fetched_epoch,
            log_start_offset: w.log_start_offset,
        })
        .collect();
    let results = ctx
        .replicas
        .fetch_messages(
            reader,
            &specs,
            request.max_bytes.max(0) as usize,
            // An unknown topic id is an error to report now, as any other.
            if unknown.is_empty() { request.min_bytes.max(0) as usize } else { 0 },
            Duration::from_millis(request.max_wait_ms.max(0) as u64),
        )
        .await;
    let answers: Vec<PartitionData> = wanted
        .iter()
        .zip(results)
        .map(|(w, result)| match result {
            Ok(fetched) => partition_data(w.partition, fetched, read_committed),
            Err(e) => {
                let mut p = empty_partition(w.partition, replica_error_code(&e));
                if version >= 12 {
                    if let Some(pm) = cluster.topics.get(&*w.topic).and_then(|t| t.partitions.get(&w.partition)) {
                        p.current_leader.leader_id = kafka_protocol::messages::BrokerId(pm.leader);
                        p.current_leader.leader_epoch = pm.leader_epoch;
                    }
                }
                p
            }
        })
        .collect();
    let seen = |p: &PartitionData| Seen {
        records: p.records.as_ref().map_or(0, Bytes::len),
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
        error_code: p.error_code,
        diverging: p.diverging_epoch.epoch >= 0,
    };
    let mut response = FetchResponse::default();
    let carried: Vec<bool> = match plan {
        Plan::Full { open } => {
            if open {
                let partitions = wanted.iter().cloned().zip(answers.iter().map(seen)).collect();
                response.session_id = sessions.open(matches!(reader, Reader::Follower(_)), partitions, now);
            }
            vec![true; answers.len()]
        }
        Plan::Incremental { id, epoch } => {
            let seen: Vec<_> = wanted.iter().zip(&answers).map(|(w, p)| (w.topic.clone(), w.partition, seen(p))).collect();
            match sessions.finish(id, epoch, &seen) {
                Ok(carried) => {
                    response.session_id = id;
                    carried
                }
                Err(e) => {
                    tracing::debug!(session = id, error = ?e, "fetch session moved by another request meanwhile");
                    return session_error(e.code());
                }
            }
        }
    };
    // One topic entry per run of partitions of the same topic, in answer order.
    for ((w, p), _) in wanted.iter().zip(answers).zip(carried).filter(|(_, c)| *c) {
        if matches!(reader, Reader::Consumer { .. }) && cluster.topics.contains_key(&*w.topic) {
            let records = p.records.as_deref().unwrap_or_default();
            METRICS.fetched(&w.topic, crate::record::data_record_count(records), records.len() as u64, p.error_code);
        }
        let same = response.responses.last().is_some_and(|t: &FetchableTopicResponse| {
            if by_id { t.topic_id == w.topic_id } else { t.topic.0.as_str() == &*w.topic }
        });
        if !same {
            let mut out = FetchableTopicResponse::default();
            if by_id {
                out.topic_id = w.topic_id;
            } else {
                out.topic = TopicName(s(w.topic.to_string()));
            }
            response.responses.push(out);
        }
        response.responses.last_mut().expect("pushed above").partitions.push(p);
    }
    for (name, id, partition) in unknown {
        let mut out = FetchableTopicResponse::default();
        out.topic = if by_id { TopicName::default() } else { name };
        out.topic_id = id;
        out.partitions.push(empty_partition(partition, ResponseError::UnknownTopicId.code()));
        response.responses.push(out);
    }
    response
}
