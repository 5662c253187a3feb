//! CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs. Kafka's ZooKeeper-mode
//! brokers apply the first three by writing ZooKeeper themselves (AdminZkClient); the
//! controller (here: the coordinator) then elects leaders or deletes data.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};
use tributary_common::ids::{BrokerId, TopicId};
use tributary_common::topic::{
    assign_new_topic, place, rack_alternated, random_below, validate_new_topic, AssignmentError, NewTopicError,
};

use super::{s, BrokerContext};
use crate::metadata::TopicMetadata;
use crate::zk;

/// A refused admin operation: the Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminError {
    pub(crate) code: i16,
    pub(crate) message: String,
}

pub(super) fn admin_err(code: ResponseError, message: impl Into<String>) -> AdminError {
    AdminError { code: code.code(), message: message.into() }
}

pub(super) fn zk_err(e: zk::Error) -> AdminError {
    match e {
        zk::Error::NodeExists(_) => admin_err(ResponseError::TopicAlreadyExists, "topic already exists"),
        zk::Error::NotConnected => {
            admin_err(ResponseError::RequestTimedOut, "this broker has no ZooKeeper session right now; retry")
        }
        other => admin_err(ResponseError::UnknownServerError, other.to_string()),
    }
}

fn check_assignment(live: &[BrokerId], replicas: &[BrokerId], expected_len: Option<usize>) -> Result<(), AdminError> {
    let distinct: HashSet<_> = replicas.iter().collect();
    if replicas.is_empty() || distinct.len() != replicas.len() {
        return Err(admin_err(
            ResponseError::InvalidReplicaAssignment,
            format!("replica list {replicas:?} is empty or repeats a broker"),
        ));
    }
    if let Some(unknown) = replicas.iter().find(|r| !live.contains(r)) {
        return Err(admin_err(
            ResponseError::InvalidReplicaAssignment,
            format!("broker {unknown} in {replicas:?} is not live"),
        ));
    }
    if expected_len.is_some_and(|n| n != replicas.len()) {
        return Err(admin_err(
            ResponseError::InvalidReplicaAssignment,
            format!("replica list {replicas:?} does not match the topic's replication factor"),
        ));
    }
    Ok(())
}

/// Validates a new topic and computes its assignment, without writing anything.
pub(crate) fn plan_topic(
    ctx: &BrokerContext,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
    assignment: Option<BTreeMap<i32, Vec<BrokerId>>>,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AdminError> {
    let cluster = ctx.cluster();
    validate_new_topic(name, configs, cluster.topics.keys()).map_err(|e| {
        let code = match e {
            NewTopicError::Exists(_) => ResponseError::TopicAlreadyExists,
            NewTopicError::InvalidName(_) | NewTopicError::Collides { .. } => ResponseError::InvalidTopicException,
            NewTopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        };
        admin_err(code, e.to_string())
    })?;
    let live = cluster.live_brokers();
    if let Some(assignment) = assignment {
        let expected_len = assignment.values().next().map(Vec::len);
        for (i, (p, replicas)) in assignment.iter().enumerate() {
            if *p != i as i32 {
                return Err(admin_err(
                    ResponseError::InvalidReplicaAssignment,
                    "partitions in a manual assignment must be numbered 0, 1, 2, ...",
                ));
            }
            check_assignment(&live, replicas, expected_len)?;
        }
        return Ok(assignment);
    }
    assign_new_topic(&cluster.placement_brokers(), partitions, i32::from(replication_factor)).map_err(|e| match e {
        AssignmentError::PartialRackInfo { .. } => admin_err(ResponseError::InvalidReplicaAssignment, e.to_string()),
        AssignmentError::NotEnoughBrokers { .. } => admin_err(
            ResponseError::InvalidReplicationFactor,
            format!("{e}; start more brokers or lower the replication factor"),
        ),
        AssignmentError::NonPositive { what: "number of partitions", .. } => {
            admin_err(ResponseError::InvalidPartitions, e.to_string())
        }
        AssignmentError::NonPositive { .. } => admin_err(ResponseError::InvalidReplicationFactor, e.to_string()),
    })
}

/// Validates and writes a new topic. Shared by CreateTopics and Metadata auto-creation.
pub(crate) async fn create_topic(
    ctx: &BrokerContext,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    assignment: Option<BTreeMap<i32, Vec<BrokerId>>>,
) -> Result<(TopicId, BTreeMap<i32, Vec<BrokerId>>), AdminError> {
    let replicas = plan_topic(ctx, name, partitions, replication_factor, &configs, assignment)?;
    let topic_id = TopicId::random();
    ctx.zk.create_topic(name, topic_id, &replicas, configs).await.map_err(zk_err)?;
    Ok((topic_id, replicas))
}

fn wait_timeout(timeout_ms: i32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(0, 600_000) as u64)
}

pub(super) async fn create_topics(
    ctx: &BrokerContext,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> =
        request.topics.iter().map(|t| t.name.0.as_str().to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let mut created = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| Some((c.name.as_str().to_string(), c.value.as_ref()?.as_str().to_string())))
            .collect();
        let assignment: Option<BTreeMap<i32, Vec<BrokerId>>> = (!topic.assignments.is_empty()).then(|| {
            topic.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect()
        });
        let partitions = if topic.num_partitions == -1 { ctx.config.num_partitions } else { topic.num_partitions };
        let rf = if topic.replication_factor == -1 {
            ctx.config.default_replication_factor
        } else {
            topic.replication_factor
        };
        let outcome = if duplicates.contains(&name) {
            Err(admin_err(
                ResponseError::InvalidRequest,
                format!("topic {name:?} appears more than once in the request"),
            ))
        } else if assignment.is_some() && (topic.num_partitions != -1 || topic.replication_factor != -1) {
            Err(admin_err(
                ResponseError::InvalidRequest,
                "give either a replica assignment or partitions and replication factor, not both",
            ))
        } else if request.validate_only {
            plan_topic(ctx, &name, partitions, rf, &configs, assignment).map(|r| (None, r))
        } else {
            create_topic(ctx, &name, partitions, rf, configs.clone(), assignment).await.map(|(id, r)| (Some(id), r))
        };
        match outcome {
            Ok((id, replicas)) => {
                if let Some(id) = id {
                    result.topic_id = id.0;
                    created.push(name.clone());
                    tracing::info!(topic = %name, partitions, replication_factor = rf, "created topic");
                }
                let (count, factor) = replicas
                    .values()
                    .next()
                    .map(|r| (replicas.len() as i32, r.len() as i16))
                    .unwrap_or((partitions, rf));
                result.num_partitions = count;
                result.replication_factor = factor;
                if version >= 5 {
                    result.configs = Some(
                        super::configs::topic_configs(ctx, &configs)
                            .into_iter()
                            .map(|(k, v, source)| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(k);
                                c.value = Some(s(v));
                                c.config_source = source;
                                c
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                tracing::info!(topic = %name, code = e.code, error = %e.message, "CreateTopics refused");
                result.error_code = e.code;
                result.error_message = Some(s(e.message));
            }
        }
        response.topics.push(result);
    }
    if !created.is_empty() && request.timeout_ms > 0 {
        let led = ctx
            .wait_for_metadata(wait_timeout(request.timeout_ms), |m| {
                created.iter().all(|n| m.topics.get(n).is_some_and(TopicMetadata::fully_led))
            })
            .await;
        if !led {
            for r in &mut response.topics {
                if created.contains(&r.name.0.as_str().to_string()) {
                    r.error_code = ResponseError::RequestTimedOut.code();
                    r.error_message = Some(s(
                        "the topic was created but its leaders were not elected in time; is a coordinator running?",
                    ));
                }
            }
        }
    }
    response
}

pub(super) async fn delete_topics(
    ctx: &BrokerContext,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let cluster = ctx.cluster();
    let mut response = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.as_str().to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil())).collect()
    };
    let mut marked = Vec::new();
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        let resolved = match &name {
            Some(n) => cluster.topics.get(n).map(|t| (n.clone(), t)),
            None => cluster.topic_by_id(&TopicId(id)).map(|(n, t)| (n.clone(), t)),
        };
        r.name = name.clone().or_else(|| resolved.as_ref().map(|(n, _)| n.clone())).map(|n| TopicName(s(n)));
        match resolved {
            None => {
                r.error_code = if name.is_some() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::UnknownTopicId.code()
                };
                r.error_message = Some(s("no such topic"));
            }
            Some((n, t)) => {
                r.topic_id = t.id.map(|i| i.0).unwrap_or_default();
                match ctx.zk.mark_topic_for_deletion(&n).await {
                    Ok(()) => {
                        tracing::info!(topic = %n, "marked topic for deletion in /admin/delete_topics");
                        marked.push(n);
                    }
                    Err(e) => {
                        let e = zk_err(e);
                        r.error_code = e.code;
                        r.error_message = Some(s(e.message));
                    }
                }
            }
        }
        response.responses.push(r);
    }
    if !marked.is_empty() && request.timeout_ms > 0 {
        let gone = ctx
            .wait_for_metadata(wait_timeout(request.timeout_ms), |m| marked.iter().all(|n| !m.topics.contains_key(n)))
            .await;
        if !gone {
            for r in &mut response.responses {
                if r.name.as_ref().is_some_and(|n| marked.contains(&n.0.as_str().to_string())) {
                    r.error_code = ResponseError::RequestTimedOut.code();
                    r.error_message =
                        Some(s("deletion was requested but not completed in time; is a coordinator running?"));
                }
            }
        }
    }
    response
}

pub(super) async fn create_partitions(
    ctx: &BrokerContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    let mut grown: Vec<(String, i32)> = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = topic.name.clone();
        let outcome = grow_topic(
            ctx,
            &name,
            topic.count,
            topic.assignments.map(|a| a.into_iter().map(|x| x.broker_ids.into_iter().map(|b| b.0).collect()).collect()),
            request.validate_only,
        )
        .await;
        match outcome {
            Ok(()) => {
                if !request.validate_only {
                    grown.push((name, topic.count));
                }
            }
            Err(e) => {
                r.error_code = e.code;
                r.error_message = Some(s(e.message));
            }
        }
        response.results.push(r);
    }
    if !grown.is_empty() && request.timeout_ms > 0 {
        let done = ctx
            .wait_for_metadata(wait_timeout(request.timeout_ms), |m| {
                grown.iter().all(|(n, count)| {
                    m.topics.get(n).is_some_and(|t| t.partitions.len() as i32 >= *count && t.fully_led())
                })
            })
            .await;
        if !done {
            for r in &mut response.results {
                if grown.iter().any(|(n, _)| n == r.name.0.as_str()) {
                    r.error_code = ResponseError::RequestTimedOut.code();
                    r.error_message = Some(s(
                        "partitions were added but their leaders were not elected in time; is a coordinator running?",
                    ));
                }
            }
        }
    }
    response
}

async fn grow_topic(
    ctx: &BrokerContext,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<BrokerId>>>,
    validate_only: bool,
) -> Result<(), AdminError> {
    let cluster = ctx.cluster();
    let topic = cluster
        .topics
        .get(name)
        .ok_or_else(|| admin_err(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")))?;
    if topic.deleting {
        return Err(admin_err(ResponseError::InvalidTopicException, format!("topic {name:?} is being deleted")));
    }
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(admin_err(
            ResponseError::InvalidPartitions,
            format!("topic {name:?} has {current} partitions; the new count {count} must be larger"),
        ));
    }
    let rf = topic.partitions.values().next().map(|p| p.replicas.len()).unwrap_or(1);
    let live = cluster.live_brokers();
    let added: BTreeMap<i32, Vec<BrokerId>> = match assignments {
        Some(list) => {
            if list.len() as i32 != count - current {
                return Err(admin_err(
                    ResponseError::InvalidReplicaAssignment,
                    format!("{} assignments given for {} new partitions", list.len(), count - current),
                ));
            }
            for replicas in &list {
                check_assignment(&live, replicas, Some(rf))?;
            }
            list.into_iter().enumerate().map(|(i, r)| (current + i as i32, r)).collect()
        }
        None => {
            // Kafka continues from partition 0's first replica in the (rack-alternated) order.
            let placement = cluster.placement_brokers();
            let sorted: Vec<BrokerId> = if placement.iter().all(|(_, r)| r.is_some()) {
                rack_alternated(
                    &placement.iter().map(|(id, r)| (*id, r.clone().unwrap_or_default())).collect::<Vec<_>>(),
                )
            } else {
                let mut ids = live.clone();
                ids.sort_unstable();
                ids
            };
            let start = topic
                .partitions
                .get(&0)
                .and_then(|p| p.replicas.first())
                .and_then(|b| sorted.iter().position(|x| x == b))
                .unwrap_or(0);
            place(&placement, count - current, rf as i32, current, start, random_below(sorted.len())).map_err(|e| {
                match e {
                    AssignmentError::PartialRackInfo { .. } => {
                        admin_err(ResponseError::InvalidReplicaAssignment, e.to_string())
                    }
                    e => admin_err(ResponseError::InvalidReplicationFactor, format!("{e}; start more brokers")),
                }
            })?
        }
    };
    if validate_only {
        return Ok(());
    }
    let mut all: BTreeMap<i32, Vec<BrokerId>> =
        topic.partitions.iter().map(|(p, m)| (*p, m.replicas.clone())).collect();
    all.extend(added);
    ctx.zk.set_assignment(name, topic.id, &all, topic.assignment_version).await.map_err(|e| match e {
        zk::Error::BadVersion(_) => {
            admin_err(ResponseError::RequestTimedOut, format!("topic {name:?} changed while adding partitions; retry"))
        }
        other => zk_err(other),
    })?;
    tracing::info!(topic = %name, from = current, to = count, "added partitions");
    Ok(())
}
