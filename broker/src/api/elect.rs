//! ElectLeaders (`kafka-leader-election`, the AdminClient's `electLeaders`): preferred and
//! unclean elections. The controller (the coordinator) elects; this broker checks each
//! partition, asks through ZooKeeper (`/admin/preferred_replica_election`, as Kafka's tools
//! write it, or `/admin/unclean_leader_election`) and answers once the new leaders show in
//! its metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use tributary_common::ids::BrokerId;
use tributary_common::znode::{self, NO_LEADER};

use super::{by_topic, s, BrokerContext};
use crate::metadata::{ClusterMetadata, PartitionMetadata};

/// ElectLeaders' election types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Election {
    /// The first assigned replica leads again (it must be live and in sync).
    Preferred,
    /// A partition without a live leader gets any live replica, in sync or not.
    Unclean,
}

/// What an election request means for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Ask the controller.
    Elect,
    /// Refused or unnecessary: Kafka's code and a sentence.
    Answer(ResponseError, String),
}

/// Kafka's rules for one partition (`PreferredReplicaPartitionLeaderElectionStrategy`,
/// `OfflinePartitionLeaderElectionStrategy` with unclean allowed).
pub(crate) fn decide(kind: Election, name: &str, p: &PartitionMetadata, live: &BTreeSet<BrokerId>) -> Decision {
    let leader_live = p.leader != NO_LEADER && live.contains(&p.leader);
    match kind {
        Election::Preferred => {
            let Some(preferred) = p.replicas.first().copied() else {
                return Decision::Answer(ResponseError::UnknownTopicOrPartition, format!("{name} has no replicas"));
            };
            if p.leader == preferred && leader_live {
                Decision::Answer(
                    ResponseError::ElectionNotNeeded,
                    format!("{name}: the preferred replica {preferred} already leads"),
                )
            } else if !live.contains(&preferred) || !p.isr.contains(&preferred) {
                Decision::Answer(
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("Failed to elect leader for partition {name} under strategy PreferredReplicaPartitionLeaderElectionStrategy: the preferred replica {preferred} is not live and in sync (ISR {:?})", p.isr),
                )
            } else {
                Decision::Elect
            }
        }
        Election::Unclean => {
            if leader_live {
                Decision::Answer(ResponseError::ElectionNotNeeded, format!("{name}: broker {} leads it", p.leader))
            } else if !p.replicas.iter().any(|r| live.contains(r)) {
                Decision::Answer(
                    ResponseError::EligibleLeadersNotAvailable,
                    format!("Failed to elect leader for partition {name} under strategy OfflinePartitionLeaderElectionStrategy(true): none of its replicas {:?} is live", p.replicas),
                )
            } else {
                Decision::Elect
            }
        }
    }
}

/// Whether the election asked for shows in `m`.
fn elected(kind: Election, m: &ClusterMetadata, topic: &str, partition: i32) -> bool {
    let Some(p) = m.topics.get(topic).and_then(|t| t.partitions.get(&partition)) else { return true };
    match kind {
        Election::Preferred => p.replicas.first() == Some(&p.leader),
        Election::Unclean => p.leader != NO_LEADER && m.brokers.contains_key(&p.leader),
    }
}

pub(super) async fn elect_leaders(
    ctx: &BrokerContext,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let kind = match (version, request.election_type) {
        (0, _) | (_, 0) => Some(Election::Preferred),
        (_, 1) => Some(Election::Unclean),
        _ => None,
    };
    let cluster = ctx.cluster();
    let live: BTreeSet<BrokerId> = cluster.brokers.keys().copied().collect();
    let all = request.topic_partitions.is_none();
    let wanted: Vec<(String, i32)> = match &request.topic_partitions {
        Some(list) => {
            list.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.as_str().to_string(), *p))).collect()
        }
        None => cluster
            .topics
            .iter()
            .filter(|(_, t)| !t.deleting)
            .flat_map(|(name, t)| t.partitions.keys().map(|p| (name.clone(), *p)))
            .collect(),
    };
    // Per partition: elected, or Kafka's code and a sentence.
    let mut answers: BTreeMap<(String, i32), Result<(), (ResponseError, String)>> = BTreeMap::new();
    let mut to_elect = Vec::new();
    for (topic, partition) in wanted {
        let name = format!("{topic}-{partition}");
        let decision = match (kind, cluster.topics.get(&topic).and_then(|t| t.partitions.get(&partition))) {
            (None, _) => Decision::Answer(
                ResponseError::InvalidRequest,
                format!("unknown election type {} (0 preferred, 1 unclean)", request.election_type),
            ),
            (_, None) => Decision::Answer(ResponseError::UnknownTopicOrPartition, format!("{name} does not exist")),
            (Some(kind), Some(p)) => decide(kind, &name, p, &live),
        };
        match decision {
            Decision::Elect => to_elect.push((topic, partition)),
            // Electing every partition, Kafka leaves out those that need nothing.
            Decision::Answer(ResponseError::ElectionNotNeeded, _) if all => {}
            Decision::Answer(code, message) => {
                answers.insert((topic, partition), Err((code, message)));
            }
        }
    }
    if let (Some(kind), false) = (kind, to_elect.is_empty()) {
        let path = match kind {
            Election::Preferred => znode::PREFERRED_REPLICA_ELECTION,
            Election::Unclean => znode::UNCLEAN_LEADER_ELECTION,
        };
        let timeout = Duration::from_millis(request.timeout_ms.clamp(0, 600_000) as u64);
        let outcome = match ctx.zk.request_election(path, &to_elect, timeout).await {
            Err(e) => Err(format!("the election request could not be written to {path}: {e}")),
            Ok(()) => {
                tracing::info!(?kind, partitions = to_elect.len(), "leader election requested of the controller");
                let done =
                    ctx.wait_for_metadata(timeout, |m| to_elect.iter().all(|(t, p)| elected(kind, m, t, *p))).await;
                if done {
                    Ok(())
                } else {
                    Err("the controller had not elected the new leaders when the request timed out; is a coordinator running?".to_string())
                }
            }
        };
        let latest = ctx.cluster();
        for (topic, partition) in to_elect {
            let result = match &outcome {
                Ok(()) => Ok(()),
                Err(_) if elected(kind, &latest, &topic, partition) => Ok(()),
                Err(e) => Err((ResponseError::RequestTimedOut, e.clone())),
            };
            answers.insert((topic, partition), result);
        }
    }
    let results = answers.into_iter().map(|((topic, partition), result)| {
        let mut r = PartitionResult::default();
        r.partition_id = partition;
        r.error_message = None;
        if let Err((code, message)) = result {
            r.error_code = code.code();
            r.error_message = Some(s(message));
        }
        (topic, r)
    });
    response.replica_election_results = by_topic(results, |topic, partition_result| {
        let mut t = ReplicaElectionResult::default();
        t.topic = TopicName(s(topic));
        t.partition_result = partition_result;
        t
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(replicas: &[BrokerId], leader: BrokerId, isr: &[BrokerId]) -> PartitionMetadata {
        PartitionMetadata {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 1,
            isr: isr.to_vec(),
            state_version: 0,
            controller_epoch: 1,
        }
    }

    #[test]
    fn elections_follow_kafkas_strategies() {
        let live: BTreeSet<BrokerId> = [1, 2].into();
        // (kind, partition, expected code or None for "elect")
        let cases = [
            (Election::Preferred, p(&[1, 2], 2, &[1, 2]), None),
            (Election::Preferred, p(&[1, 2], 1, &[1, 2]), Some(ResponseError::ElectionNotNeeded)),
            (Election::Preferred, p(&[1, 2], 2, &[2]), Some(ResponseError::PreferredLeaderNotAvailable)),
            (Election::Preferred, p(&[3, 2], 2, &[2, 3]), Some(ResponseError::PreferredLeaderNotAvailable)),
            (Election::Unclean, p(&[1, 2], 2, &[2]), Some(ResponseError::ElectionNotNeeded)),
            (Election::Unclean, p(&[3, 2], 3, &[3]), None),
            (Election::Unclean, p(&[3, 2], NO_LEADER, &[3]), None),
            (Election::Unclean, p(&[3, 4], NO_LEADER, &[3]), Some(ResponseError::EligibleLeadersNotAvailable)),
        ];
        for (kind, partition, want) in cases {
            let got = match decide(kind, "t-0", &partition, &live) {
                Decision::Elect => None,
                Decision::Answer(code, _) => Some(code),
            };
            assert_eq!(got, want, "{kind:?} {partition:?}");
        }
    }
}
