//! Metadata: brokers, topics and partition leadership from the ZooKeeper-fed view, with
//! topic auto-creation (`auto.create.topics.enable`).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    self, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use tributary_common::ids::TopicId;
use tributary_common::topic::validate_topic_name;
use tributary_common::znode::NO_LEADER;

use super::{admin, s, BrokerContext};
use crate::metadata::{ClusterMetadata, PartitionMetadata, TopicMetadata};

/// How long an auto-creating Metadata request waits for the new topic's leaders before
/// answering LEADER_NOT_AVAILABLE (the client then retries, as it would with Kafka).
const AUTO_CREATE_WAIT: Duration = Duration::from_millis(1500);

pub(super) async fn handle(
    ctx: &BrokerContext,
    listener: &str,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let topic_ops = request.include_topic_authorized_operations;
    let cluster_ops = request.include_cluster_authorized_operations;
    let mut response = answer(ctx, listener, version, request).await;
    // Asked for: what a Kafka broker answers without an authorizer, every operation; with
    // one, `authz::after` narrows them to the principal's.
    if topic_ops {
        for t in response.topics.iter_mut().filter(|t| t.error_code == 0) {
            t.topic_authorized_operations = super::authz::all_operations(tributary_common::acl::ResourceType::Topic);
        }
    }
    if cluster_ops {
        response.cluster_authorized_operations = super::authz::all_operations(tributary_common::acl::ResourceType::Cluster);
    }
    response
}

async fn answer(ctx: &BrokerContext, listener: &str, version: i16, request: MetadataRequest) -> MetadataResponse {
    let all_topics = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let requested: Vec<(Option<String>, uuid::Uuid)> = request
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.name.map(|n| n.0.as_str().to_string()), t.topic_id))
        .collect();
    let may_create = ctx.config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);

    // Auto-create first, then answer from one consistent view.
    let mut created = Vec::new();
    if !all_topics && may_create {
        let cluster = ctx.cluster();
        for (name, _) in &requested {
            let Some(name) = name else { continue };
            if cluster.topics.contains_key(name) || validate_topic_name(name).is_err() || created.contains(name) {
                continue;
            }
            let d = &ctx.config;
            match admin::create_topic(
                ctx,
                name,
                d.num_partitions,
                d.default_replication_factor,
                Default::default(),
                None,
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(topic = %name, partitions = d.num_partitions, replication_factor = d.default_replication_factor, "auto-created topic on a Metadata request");
                    created.push(name.clone());
                }
                Err(e) => tracing::warn!(topic = %name, error = %e.message, "auto-creating topic failed"),
            }
        }
        if !created.is_empty() {
            ctx.wait_for_metadata(AUTO_CREATE_WAIT, |m| {
                created.iter().all(|n| m.topics.get(n).is_some_and(TopicMetadata::fully_led))
            })
            .await;
        }
    }

    let cluster = ctx.cluster();
    let mut response = MetadataResponse::default();
    // Each broker's address on the listener this request arrived on.
    response.brokers = cluster
        .brokers_on(listener)
        .map(|(id, endpoint, b)| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(id);
            broker.host = s(endpoint.host.clone());
            broker.port = i32::from(endpoint.port);
            broker.rack = b.rack.clone().map(s);
            broker
        })
        .collect();
    let view = View { cluster: &cluster, listener, version };
    response.cluster_id = Some(s(cluster.cluster_id.clone()));
    response.controller_id = BrokerId(cluster.controller_id());
    response.cluster_authorized_operations = i32::MIN;

    if all_topics {
        response.topics = cluster.topics.iter().map(|(name, t)| topic_entry(&view, name, t)).collect();
        return response;
    }
    for (name, topic_id) in requested {
        let entry = match name {
            None if !topic_id.is_nil() => match cluster.topic_by_id(&TopicId(topic_id)) {
                Some((name, t)) => topic_entry(&view, name, t),
                None => error_entry(None, topic_id, ResponseError::UnknownTopicId.code()),
            },
            None => error_entry(None, topic_id, ResponseError::InvalidTopicException.code()),
            Some(name) => match cluster.topics.get(&name) {
                Some(t) => topic_entry(&view, &name, t),
                None if validate_topic_name(&name).is_err() => {
                    error_entry(Some(name), topic_id, ResponseError::InvalidTopicException.code())
                }
                None if created.contains(&name) => {
                    error_entry(Some(name), topic_id, ResponseError::LeaderNotAvailable.code())
                }
                None => error_entry(Some(name), topic_id, ResponseError::UnknownTopicOrPartition.code()),
            },
        };
        response.topics.push(entry);
    }
    response
}

fn error_entry(name: Option<String>, topic_id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = code;
    t.name = name.map(|n| TopicName(s(n)));
    t.topic_id = topic_id;
    t.topic_authorized_operations = i32::MIN;
    t
}

/// What a topic entry is answered from: the cluster, the listener the request came on,
/// and the request's version.
struct View<'a> {
    cluster: &'a ClusterMetadata,
    listener: &'a str,
    version: i16,
}

/// A partition's leader as the client on `listener` may use it: Kafka's
/// `MetadataCache.getPartitionMetadata` rule. No leader, or a leader that is not live:
/// LEADER_NOT_AVAILABLE. A live leader without an endpoint on this listener:
/// LISTENER_NOT_FOUND from v6 (LEADER_NOT_AVAILABLE before). Either way the leader id is
/// -1, so that the client does not dial an address it was not given.
fn leader_for(leader: i32, cluster: &ClusterMetadata, listener: &str, version: i16) -> (i16, i32) {
    match cluster.brokers.get(&leader) {
        _ if leader == NO_LEADER => (ResponseError::LeaderNotAvailable.code(), NO_LEADER),
        None => (ResponseError::LeaderNotAvailable.code(), NO_LEADER),
        Some(b) if b.endpoint(listener).is_none() => {
            let error = if version >= 6 { ResponseError::ListenerNotFound } else { ResponseError::LeaderNotAvailable };
            (error.code(), NO_LEADER)
        }
        Some(_) => (0, leader),
    }
}

fn topic_entry(view: &View<'_>, name: &str, topic: &TopicMetadata) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(s(name)));
    t.topic_id = topic.id.map(|id| id.0).unwrap_or_default();
    t.is_internal = tributary_common::topic::is_internal(name);
    t.topic_authorized_operations = i32::MIN;
    t.partitions = topic.partitions.iter().map(|(index, pm)| partition_entry(view, *index, pm)).collect();
    t
}

/// One partition as Metadata describes it (DescribeTopicPartitions copies the same fields).
fn partition_entry(view: &View<'_>, index: i32, pm: &PartitionMetadata) -> MetadataResponsePartition {
    let cluster = view.cluster;
    let mut p = MetadataResponsePartition::default();
    p.partition_index = index;
    let (error, leader) = leader_for(pm.leader, cluster, view.listener, view.version);
    p.error_code = error;
    p.leader_id = BrokerId(leader);
    p.leader_epoch = pm.leader_epoch;
    p.replica_nodes = pm.replicas.iter().map(|r| BrokerId(*r)).collect();
    p.isr_nodes = pm.isr.iter().map(|r| BrokerId(*r)).collect();
    p.offline_replicas =
        pm.replicas.iter().filter(|r| !cluster.brokers.contains_key(r)).map(|r| BrokerId(*r)).collect();
    p
}

/// A page: each topic with the partitions it contributes (`None`: unknown topic), and the
/// cursor of the first partition left out.
pub(crate) type Page = (Vec<(String, Option<std::ops::Range<i32>>)>, Option<(String, i32)>);

/// The most partitions one DescribeTopicPartitions answer carries (Kafka's
/// `max.request.partition.size.limit` default).
const PARTITION_PAGE_LIMIT: i32 = 2000;

/// One page of DescribeTopicPartitions (KIP-966): the topics (sorted by name) with the
/// range of partitions each contributes, from `cursor`, at most `limit` partitions in all,
/// and the cursor of the first partition left out. `topics` holds each name with its
/// partition count (`None`: unknown, answered with an error and counting nothing).
pub(crate) fn page(topics: &[(String, Option<i32>)], cursor: Option<(&str, i32)>, limit: i32) -> Page {
    let mut left = limit.clamp(1, PARTITION_PAGE_LIMIT);
    let mut out = Vec::new();
    for (name, count) in topics {
        let first = match cursor {
            Some((c, _)) if name.as_str() < c => continue,
            Some((c, p)) if name == c => p.max(0),
            _ => 0,
        };
        let Some(count) = count else {
            out.push((name.clone(), None));
            continue;
        };
        if first >= *count {
            continue;
        }
        if left == 0 {
            return (out, Some((name.clone(), first)));
        }
        let end = (first + left).min(*count);
        left -= end - first;
        out.push((name.clone(), Some(first..end)));
        if end < *count {
            return (out, Some((name.clone(), end)));
        }
    }
    (out, None)
}

/// DescribeTopicPartitions (v0, what `kafka-topics --describe` uses when advertised): topic
/// and partition details as Metadata gives them, paged with a cursor.
pub(super) fn describe_topic_partitions(
    ctx: &BrokerContext,
    listener: &str,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let cluster = ctx.cluster();
    let mut names: Vec<String> = if request.topics.is_empty() {
        cluster.topics.keys().cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.0.as_str().to_string()).collect()
    };
    names.sort();
    names.dedup();
    let mut response = DescribeTopicPartitionsResponse::default();
    let cursor = request.cursor.as_ref().map(|c| (c.topic_name.0.as_str(), c.partition_index));
    if let Some((topic, _)) = cursor.filter(|(t, _)| !request.topics.is_empty() && !names.iter().any(|n| n == t)) {
        // Kafka refuses a cursor outside the topics asked for; every topic carries the error.
        response.topics = names
            .into_iter()
            .map(|n| {
                let mut t = DescribeTopicPartitionsResponseTopic::default();
                t.name = Some(TopicName(s(n)));
                t.error_code = ResponseError::InvalidRequest.code();
                t.topic_authorized_operations = i32::MIN;
                t
            })
            .collect();
        tracing::debug!(
            cursor_topic = topic,
            "DescribeTopicPartitions refused: the cursor names a topic not asked for"
        );
        return response;
    }
    let counts: Vec<(String, Option<i32>)> =
        names.into_iter().map(|n| (n.clone(), cluster.topics.get(&n).map(|t| t.partitions.len() as i32))).collect();
    let (chosen, next) = page(&counts, cursor, request.response_partition_limit);
    let view = View { cluster: &cluster, listener, version: 12 };
    for (name, range) in chosen {
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(TopicName(s(name.clone())));
        t.topic_authorized_operations = i32::MIN;
        match (range, cluster.topics.get(&name)) {
            (Some(range), Some(topic)) => {
                t.topic_id = topic.id.map(|id| id.0).unwrap_or_default();
                t.is_internal = tributary_common::topic::is_internal(&name);
                // Only the page's partitions are built.
                t.partitions = topic
                    .partitions
                    .range(range)
                    .map(|(index, pm)| {
                        let p = partition_entry(&view, *index, pm);
                        let mut d = DescribeTopicPartitionsResponsePartition::default();
                        d.error_code = p.error_code;
                        d.partition_index = p.partition_index;
                        d.leader_id = p.leader_id;
                        d.leader_epoch = p.leader_epoch;
                        d.replica_nodes = p.replica_nodes;
                        d.isr_nodes = p.isr_nodes;
                        d.offline_replicas = p.offline_replicas;
                        // KIP-966's eligible leader replicas are a KRaft feature.
                        d.eligible_leader_replicas = None;
                        d.last_known_elr = None;
                        d
                    })
                    .collect();
            }
            _ => t.error_code = ResponseError::UnknownTopicOrPartition.code(),
        }
        response.topics.push(t);
    }
    response.next_cursor = next.map(|(topic, partition)| {
        let mut c = describe_topic_partitions_response::Cursor::default();
        c.topic_name = TopicName(s(topic));
        c.partition_index = partition;
        c
    });
    response
}

#[cfg(test)]
mod tests {
    use tributary_common::znode::Endpoint;

    use super::*;
    use crate::metadata::BrokerInfo;

    #[test]
    fn pages_follow_the_cursor_and_the_limit() {
        let topics = vec![("a".to_string(), Some(3)), ("b".to_string(), None), ("c".to_string(), Some(2))];
        let p = |v: &[(&str, Option<std::ops::Range<i32>>)], next: Option<(&str, i32)>| -> Page {
            (v.iter().map(|(n, r)| (n.to_string(), r.clone())).collect(), next.map(|(n, i)| (n.to_string(), i)))
        };
        // (cursor, limit) -> page
        type Ask<'a> = (Option<(&'a str, i32)>, i32);
        let cases: Vec<(Ask, Page)> = vec![
            ((None, 100), p(&[("a", Some(0..3)), ("b", None), ("c", Some(0..2))], None)),
            ((None, 2), p(&[("a", Some(0..2))], Some(("a", 2)))),
            ((Some(("a", 2)), 2), p(&[("a", Some(2..3)), ("b", None), ("c", Some(0..1))], Some(("c", 1)))),
            ((Some(("c", 1)), 2), p(&[("c", Some(1..2))], None)),
            ((None, 3), p(&[("a", Some(0..3)), ("b", None)], Some(("c", 0)))),
            ((None, 0), p(&[("a", Some(0..1))], Some(("a", 1)))),
        ];
        for ((cursor, limit), want) in cases {
            assert_eq!(page(&topics, cursor, limit), want, "cursor {cursor:?} limit {limit}");
        }
    }

    #[test]
    fn a_leader_is_given_only_on_a_listener_it_has() {
        let mut cluster = ClusterMetadata::default();
        let endpoint = |listener: &str| Endpoint { listener: listener.into(), host: "h".into(), port: 1 };
        let both = vec![endpoint("PLAINTEXT"), endpoint("PLAINTEXT_HOST")];
        cluster.brokers.insert(1, BrokerInfo { endpoints: both, rack: None, epoch: 1 });
        cluster.brokers.insert(2, BrokerInfo { endpoints: vec![endpoint("PLAINTEXT")], rack: None, epoch: 1 });
        let (lnf, lna) = (ResponseError::ListenerNotFound.code(), ResponseError::LeaderNotAvailable.code());
        // (leader, listener, version) -> (error, leader id)
        let cases = [
            ((1, "PLAINTEXT_HOST", 9), (0, 1)),
            ((1, "PLAINTEXT", 1), (0, 1)),
            ((2, "PLAINTEXT_HOST", 6), (lnf, -1)),
            ((2, "PLAINTEXT_HOST", 5), (lna, -1)),
            ((3, "PLAINTEXT", 9), (lna, -1)),
            ((NO_LEADER, "PLAINTEXT", 9), (lna, -1)),
        ];
        for ((leader, listener, version), want) in cases {
            assert_eq!(leader_for(leader, &cluster, listener, version), want, "{leader} {listener} v{version}");
        }
    }
}
