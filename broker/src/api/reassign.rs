//! AlterPartitionReassignments and ListPartitionReassignments (`kafka-reassign-partitions
//! --bootstrap-server`, the AdminClients' `alterPartitionReassignments`): this broker checks
//! each partition and hands the moves to the controller through
//! `/admin/reassign_partitions`; the controller adds the new replicas, waits for them to
//! join the ISR, moves leadership if the leader is leaving, then removes the old ones
//! (KIP-455's `adding_replicas` / `removing_replicas` in the topic znode show progress).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId as WireBrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use tributary_common::ids::BrokerId;
use tributary_common::znode::ReassignedPartition;

use super::{by_topic, s, BrokerContext};
use crate::metadata::ClusterMetadata;

/// Checks one requested move against the cluster: `None` cancels.
pub(crate) fn check_move(
    m: &ClusterMetadata,
    topic: &str,
    partition: i32,
    replicas: Option<&[BrokerId]>,
) -> Result<(), (ResponseError, String)> {
    let Some(p) = m.topics.get(topic).filter(|t| !t.deleting).and_then(|t| t.partitions.get(&partition)) else {
        return Err((ResponseError::UnknownTopicOrPartition, format!("{topic}-{partition} does not exist")));
    };
    let moving = m.topics[topic].reassigning.contains_key(&partition);
    let Some(replicas) = replicas else {
        return if moving {
            Ok(())
        } else {
            Err((
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {topic}-{partition} is in progress"),
            ))
        };
    };
    let distinct: BTreeSet<_> = replicas.iter().collect();
    if replicas.is_empty() || distinct.len() != replicas.len() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("the replica list {replicas:?} for {topic}-{partition} is empty or repeats a broker"),
        ));
    }
    if let Some(dead) = replicas.iter().find(|b| !m.brokers.contains_key(b) && !p.replicas.contains(b)) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("broker {dead} in the replica list {replicas:?} for {topic}-{partition} is not live; start it or choose live brokers"),
        ));
    }
    Ok(())
}

/// Whether the controller has taken a requested move up (or finished it).
fn taken(m: &ClusterMetadata, r: &ReassignedPartition) -> bool {
    let Some(t) = m.topics.get(&r.topic) else { return true };
    let replicas = t.partitions.get(&r.partition).map(|p| p.replicas.clone()).unwrap_or_default();
    match t.reassigning.get(&r.partition) {
        None => r.replicas.is_empty() || replicas == r.replicas,
        Some((_, removing)) => {
            let target: Vec<BrokerId> = replicas.iter().filter(|b| !removing.contains(b)).copied().collect();
            !r.replicas.is_empty() && target == r.replicas
        }
    }
}

pub(super) async fn alter_partition_reassignments(
    ctx: &BrokerContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let cluster = ctx.cluster();
    let mut results: BTreeMap<(String, i32), Result<(), (ResponseError, String)>> = BTreeMap::new();
    let mut moves = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        for p in &topic.partitions {
            let replicas: Option<Vec<BrokerId>> = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let outcome = check_move(&cluster, name, p.partition_index, replicas.as_deref());
            if outcome.is_ok() {
                moves.push(ReassignedPartition {
                    topic: name.to_string(),
                    partition: p.partition_index,
                    replicas: replicas.unwrap_or_default(),
                    log_dirs: Vec::new(),
                });
            }
            results.insert((name.to_string(), p.partition_index), outcome);
        }
    }
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.error_message = None;
    if !moves.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.clamp(0, 600_000) as u64);
        let outcome = match ctx.zk.request_reassignment(moves.clone(), timeout).await {
            Err(e) => Err(format!("the reassignment could not be written to /admin/reassign_partitions: {e}")),
            Ok(()) => {
                for m in &moves {
                    tracing::info!(topic = m.topic, partition = m.partition, replicas = ?m.replicas, "partition reassignment requested of the controller (empty replicas: cancel)");
                }
                if ctx.wait_for_metadata(timeout, |m| moves.iter().all(|r| taken(m, r))).await {
                    Ok(())
                } else {
                    Err("the controller had not started the reassignment when the request timed out; is a coordinator running?".to_string())
                }
            }
        };
        if let Err(message) = outcome {
            let latest = ctx.cluster();
            for m in &moves {
                if !taken(&latest, m) {
                    results
                        .insert((m.topic.clone(), m.partition), Err((ResponseError::RequestTimedOut, message.clone())));
                }
            }
        }
    }
    let results = results.into_iter().map(|((topic, partition), result)| {
        let mut r = ReassignablePartitionResponse::default();
        r.partition_index = partition;
        r.error_message = None;
        if let Err((code, message)) = result {
            r.error_code = code.code();
            r.error_message = Some(s(message));
        }
        (topic, r)
    });
    response.responses = by_topic(results, |name, partitions| {
        let mut t = ReassignableTopicResponse::default();
        t.name = TopicName(s(name));
        t.partitions = partitions;
        t
    });
    response
}

pub(super) fn list_partition_reassignments(
    ctx: &BrokerContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let cluster = ctx.cluster();
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.as_ref().map(|topics| {
        topics.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.0.as_str().to_string(), *p))).collect()
    });
    let mut response = ListPartitionReassignmentsResponse::default();
    response.error_message = None;
    for (name, t) in &cluster.topics {
        let mut partitions = Vec::new();
        for (partition, (adding, removing)) in &t.reassigning {
            if wanted.as_ref().is_some_and(|w| !w.contains(&(name.clone(), *partition))) {
                continue;
            }
            let mut p = OngoingPartitionReassignment::default();
            p.partition_index = *partition;
            p.replicas = t
                .partitions
                .get(partition)
                .map(|m| m.replicas.iter().map(|b| WireBrokerId(*b)).collect())
                .unwrap_or_default();
            p.adding_replicas = adding.iter().map(|b| WireBrokerId(*b)).collect();
            p.removing_replicas = removing.iter().map(|b| WireBrokerId(*b)).collect();
            partitions.push(p);
        }
        if !partitions.is_empty() {
            let mut topic = OngoingTopicReassignment::default();
            topic.name = TopicName(s(name.clone()));
            topic.partitions = partitions;
            response.topics.push(topic);
        }
    }
    response
}
