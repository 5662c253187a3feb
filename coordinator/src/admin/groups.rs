//! `/groups` endpoints: consumer groups as their coordinating brokers report them
//! (ListGroups, FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets, DeleteGroups),
//! with each committed offset's lag behind the partition's end.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Buf;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest, DescribeGroupsRequest,
    DescribeLogDirsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, ListOffsetsRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{json, Value};
use tributary_common::ids::BrokerId as Id;

use super::{AdminState, ApiError};
use crate::brokers::Brokers;
use tributary_common::kafka_client::Connection;

/// Connects to broker `id` as `client.config` says (see [`crate::brokers::BrokerClients`]).
async fn connect(snapshot: Brokers<'_>, id: Id) -> Result<Connection, ApiError> {
    snapshot.clients.connect(snapshot.snapshot, id).await.map_err(ApiError::Unavailable)
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

/// The broker coordinating `group`, asked of any live broker.
async fn coordinator_of(snapshot: Brokers<'_>, group: &str) -> Result<Id, ApiError> {
    let mut last = String::from("no live broker is registered in ZooKeeper; start a broker");
    for id in snapshot.brokers.keys() {
        let mut conn = match connect(snapshot, *id).await {
            Ok(c) => c,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let mut req = FindCoordinatorRequest::default();
        req.key = StrBytes::from_string(group.to_string());
        match conn.call(3, &req).await {
            Ok(r) if r.error_code == 0 => return Ok(r.node_id.0),
            Ok(r) => {
                let why = r.error_message.map(|m| m.to_string()).unwrap_or_default();
                last = format!("no coordinator for group {group}: {} {why}", error_name(r.error_code));
            }
            Err(e) => last = e,
        }
    }
    Err(ApiError::Unavailable(last))
}

/// `GET /groups`: every group, from every live broker.
/// One group as `ListGroups` reports it.
pub(super) struct ListedGroup {
    pub(super) group_id: String,
    pub(super) state: String,
    pub(super) protocol_type: String,
    pub(super) coordinator: Id,
}

/// Every group, asked of every live broker, with the brokers that could not answer.
pub(super) async fn list_groups(snapshot: Brokers<'_>) -> (Vec<ListedGroup>, Vec<Value>) {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for id in snapshot.brokers.keys() {
        let result = async {
            let mut conn = connect(snapshot, *id).await?;
            conn.call(4, &ListGroupsRequest::default()).await.map_err(ApiError::Unavailable)
        }
        .await;
        match result {
            Ok(r) => {
                if r.error_code != 0 {
                    errors.push(json!({ "broker": id, "error": error_name(r.error_code) }));
                }
                for g in r.groups {
                    groups.push(ListedGroup {
                        group_id: g.group_id.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        coordinator: *id,
                    });
                }
            }
            Err(e) => errors.push(json!({ "broker": id, "error": e.to_string() })),
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    (groups, errors)
}

/// `GET /groups`.
pub(super) async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let (_, owned) = state.snapshot().await?;
    let snapshot = state.brokers(&owned);
    let (groups, errors) = list_groups(snapshot).await;
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "group_id": g.group_id,
                "state": g.state,
                "protocol_type": g.protocol_type,
                "coordinator": g.coordinator,
            })
        })
        .collect();
    Ok(Json(json!({ "groups": groups, "errors": errors })).into_response())
}

fn decode_versioned<T: Decodable>(raw: &bytes::Bytes) -> Option<T> {
    let mut buf = raw.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    T::decode(&mut buf, version.clamp(0, 3)).ok()
}

/// A committed offset of a group, with the partition's end and the lag behind it.
pub(super) struct CommittedOffset {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) committed: i64,
    /// The partition's high watermark (`None`: its leader could not be asked).
    pub(super) log_end: Option<i64>,
    pub(super) metadata: String,
}

impl CommittedOffset {
    /// How far the group is behind the end (never negative).
    pub(super) fn lag(&self) -> Option<i64> {
        self.log_end.map(|e| (e - self.committed).max(0))
    }
}

/// A group as its coordinator describes it, with its committed offsets.
pub(super) struct GroupView {
    pub(super) group_id: String,
    pub(super) state: String,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) coordinator: Id,
    /// Members as JSON (id, client, subscription, assignment).
    pub(super) members: Vec<Value>,
    pub(super) offsets: Vec<CommittedOffset>,
}

/// Describes `group` (DescribeGroups and OffsetFetch at its coordinator, ListOffsets at
/// the partitions' leaders): what `GET /groups/{id}` and the lag metrics show.
pub(super) async fn describe_group(snapshot: Brokers<'_>, group: &str) -> Result<GroupView, ApiError> {
    let coordinator = coordinator_of(snapshot, group).await?;
    let mut conn = connect(snapshot, coordinator).await?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let described = conn.call(5, &req).await.map_err(ApiError::Unavailable)?;
    let Some(d) = described.groups.into_iter().next() else {
        return Err(ApiError::Unavailable(format!("broker {coordinator} returned no description of group {group}")));
    };
    if d.error_code != 0 {
        return Err(ApiError::Unavailable(format!("describing group {group}: {}", error_name(d.error_code))));
    }
    if d.group_state.as_str() == "Dead" {
        return Err(ApiError::NotFound(format!("no consumer group {group}")));
    }
    let consumer = d.protocol_type.as_str() == "consumer";
    let members: Vec<Value> = d
        .members
        .iter()
        .map(|m| {
            let assignment: Vec<Value> = if consumer {
                decode_versioned::<ConsumerProtocolAssignment>(&m.member_assignment)
                    .map(|a| {
                        a.assigned_partitions
                            .iter()
                            .flat_map(|t| {
                                t.partitions.iter().map(move |p| json!({ "topic": t.topic.as_str(), "partition": p }))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let subscription: Vec<String> = if consumer {
                decode_versioned::<ConsumerProtocolSubscription>(&m.member_metadata)
                    .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            json!({
                "member_id": m.member_id.as_str(),
                "group_instance_id": m.group_instance_id.as_ref().map(|x| x.as_str()),
                "client_id": m.client_id.as_str(),
                "client_host": m.client_host.as_str(),
                "subscription": subscription,
                "assignment": assignment,
            })
        })
        .collect();

    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(StrBytes::from_string(group.to_string()));
    fetch.topics = None;
    let fetched = conn.call(7, &fetch).await.map_err(ApiError::Unavailable)?;
    if fetched.error_code != 0 {
        return Err(ApiError::Unavailable(format!("fetching offsets of {group}: {}", error_name(fetched.error_code))));
    }
    let mut offsets = Vec::new();
    for t in &fetched.topics {
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                offsets.push(CommittedOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    committed: p.committed_offset,
                    log_end: None,
                    metadata: p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                });
            }
        }
    }
    let ends = log_end_offsets(snapshot, offsets.iter().map(|o| (o.topic.clone(), o.partition))).await;
    for o in &mut offsets {
        o.log_end = ends.get(&(o.topic.clone(), o.partition)).copied();
    }
    Ok(GroupView {
        group_id: group.to_string(),
        state: d.group_state.to_string(),
        protocol_type: d.protocol_type.to_string(),
        protocol: d.protocol_data.to_string(),
        coordinator,
        members,
        offsets,
    })
}

/// `GET /groups/{id}`: state, members with their assignments, committed offsets and lag.
pub(super) async fn describe(State(state): State<AdminState>, Path(group): Path<String>) -> Result<Response, ApiError> {
    let (_, owned) = state.snapshot().await?;
    let snapshot = state.brokers(&owned);
    let g = describe_group(snapshot, &group).await?;
    let total_lag: i64 = g.offsets.iter().filter_map(CommittedOffset::lag).sum();
    let offsets: Vec<Value> = g
        .offsets
        .iter()
        .map(|o| {
            json!({
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": o.committed,
                "log_end_offset": o.log_end,
                "lag": o.lag(),
                "metadata": o.metadata,
            })
        })
        .collect();
    Ok(Json(json!({
        "group_id": g.group_id,
        "state": g.state,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "coordinator": g.coordinator,
        "members": g.members,
        "offsets": offsets,
        "total_lag": total_lag,
    }))
    .into_response())
}

/// The high watermark of each partition, asked of its leader (absent when unreachable).
pub(super) async fn log_end_offsets(
    snapshot: Brokers<'_>,
    partitions: impl Iterator<Item = (String, i32)>,
) -> BTreeMap<(String, i32), i64> {
    let mut by_leader: BTreeMap<Id, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let leader = snapshot
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.get(&partition))
            .and_then(|p| p.state.as_ref())
            .map(|(s, _)| s.leader);
        if let Some(leader) = leader.filter(|l| *l >= 0) {
            by_leader.entry(leader).or_default().push((topic, partition));
        }
    }
    latest_offsets(snapshot, by_leader, CONSUMER_REPLICA_ID)
        .await
        .into_iter()
        .map(|((_, topic, partition), offset)| ((topic, partition), offset))
        .collect()
}

/// ListOffsets replica id of consumers: "latest" is the high watermark, leaders only.
pub(super) const CONSUMER_REPLICA_ID: i32 = -1;
/// ListOffsets replica id of debugging tools: "latest" is the replica's log end offset, any replica.
pub(super) const DEBUGGING_REPLICA_ID: i32 = -2;

/// Asks each broker for the latest offset of its listed partitions, as `replica_id` sees
/// it; brokers that cannot be reached and partitions answered with an error are left out.
pub(super) async fn latest_offsets(
    snapshot: Brokers<'_>,
    by_broker: BTreeMap<Id, Vec<(String, i32)>>,
    replica_id: i32,
) -> BTreeMap<(Id, String, i32), i64> {
    offsets_at(snapshot, by_broker, replica_id, LATEST).await
}

/// ListOffsets timestamps: the end (as `replica_id` sees it) and the log start.
pub(super) const LATEST: i64 = -1;
/// See [`LATEST`].
pub(super) const EARLIEST: i64 = -2;

/// Asks each broker for the offset at `timestamp` ([`LATEST`], [`EARLIEST`]) of its listed
/// partitions; brokers that cannot be reached and partitions answered with an error are
/// left out.
pub(super) async fn offsets_at(
    snapshot: Brokers<'_>,
    by_broker: BTreeMap<Id, Vec<(String, i32)>>,
    replica_id: i32,
    timestamp: i64,
) -> BTreeMap<(Id, String, i32), i64> {
    let mut out = BTreeMap::new();
    for (broker, partitions) in by_broker {
        let Ok(mut conn) = connect(snapshot, broker).await else { continue };
        let topics = partitions_by_topic(partitions);
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(replica_id);
        req.topics = topics
            .iter()
            .map(|(t, parts)| {
                let mut lt = ListOffsetsTopic::default();
                lt.name = TopicName(StrBytes::from_string(t.clone()));
                lt.partitions = parts
                    .iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = *p;
                        lp.current_leader_epoch = -1;
                        lp.timestamp = timestamp;
                        lp
                    })
                    .collect();
                lt
            })
            .collect();
        if let Ok(r) = conn.call(5, &req).await {
            for t in r.topics {
                for p in t.partitions {
                    if p.error_code == 0 {
                        out.insert((broker, t.name.to_string(), p.partition_index), p.offset);
                    }
                }
            }
        }
    }
    out
}

/// (topic, partition) pairs as topic -> partitions, the shape requests take them in.
fn partitions_by_topic(partitions: Vec<(String, i32)>) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(partition);
    }
    topics
}

/// What each broker in `by_broker` reports of its replicas of the listed partitions
/// (DescribeLogDirs): size in bytes, and for compacted topics the log cleaner's view
/// (Tributary's tagged field). Brokers that do not answer are left out.
pub(super) async fn log_dirs(
    snapshot: Brokers<'_>,
    by_broker: BTreeMap<Id, Vec<(String, i32)>>,
) -> BTreeMap<(Id, String, i32), (i64, Option<Value>)> {
    let mut out = BTreeMap::new();
    for (broker, partitions) in by_broker {
        let Ok(mut conn) = connect(snapshot, broker).await else { continue };
        let topics = partitions_by_topic(partitions);
        let mut req = DescribeLogDirsRequest::default();
        req.topics = Some(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    let mut dt = DescribableLogDirTopic::default();
                    dt.topic = TopicName(StrBytes::from_string(t));
                    dt.partitions = parts;
                    dt
                })
                .collect(),
        );
        let Ok(r) = conn.call(2, &req).await else { continue };
        for dir in r.results {
            for t in dir.topics {
                for p in t.partitions {
                    let cleaner = p
                        .unknown_tagged_fields
                        .get(&tributary_common::kafka_client::CLEANER_STATUS_TAG)
                        .and_then(|raw| serde_json::from_slice(raw).ok());
                    out.insert((broker, t.name.to_string(), p.partition_index), (p.partition_size, cleaner));
                }
            }
        }
    }
    out
}

/// `DELETE /groups/{id}`: only a group without members (as Kafka's DeleteGroups).
pub(super) async fn delete(State(state): State<AdminState>, Path(group): Path<String>) -> Result<Response, ApiError> {
    let (_, owned) = state.snapshot().await?;
    let snapshot = state.brokers(&owned);
    let coordinator = coordinator_of(snapshot, &group).await?;
    let mut conn = connect(snapshot, coordinator).await?;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![GroupId(StrBytes::from_string(group.clone()))];
    let r = conn.call(2, &req).await.map_err(ApiError::Unavailable)?;
    let code = r.results.first().map_or(0, |x| x.error_code);
    match ResponseError::try_from_code(code) {
        None => Ok(Json(json!({ "deleted": group })).into_response()),
        Some(ResponseError::GroupIdNotFound) => Err(ApiError::NotFound(format!("no consumer group {group}"))),
        Some(ResponseError::NonEmptyGroup) => Err(ApiError::Conflict(format!(
            "group {group} still has members; stop its consumers (or wait for their sessions to expire) first"
        ))),
        Some(ResponseError::InvalidGroupId) => Err(ApiError::BadRequest(format!("invalid group id {group:?}"))),
        Some(e) => Err(ApiError::Unavailable(format!("deleting group {group}: {e:?}"))),
    }
}

/// Where `POST /groups/{id}/offsets/reset` moves a group.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetRequest {
    /// `earliest`, `latest`, `timestamp` or `offset`.
    to: String,
    /// The topic to reset (default: every topic the group has committed offsets for).
    topic: Option<String>,
    /// With `to: "timestamp"`: milliseconds since the epoch or an RFC 3339 time.
    timestamp: Option<Value>,
    /// With `to: "offset"`: the offset (each partition's is kept within its log).
    offset: Option<i64>,
}

/// What a reset asks for, parsed (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResetTo {
    Earliest,
    Latest,
    Timestamp(i64),
    Offset(i64),
}

pub(super) fn reset_target(r: &ResetRequest) -> Result<ResetTo, ApiError> {
    match r.to.as_str() {
        "earliest" => Ok(ResetTo::Earliest),
        "latest" => Ok(ResetTo::Latest),
        "timestamp" => {
            let ms = match &r.timestamp {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => s.parse::<i64>().ok().or_else(|| tributary_common::time::parse_rfc3339_ms(s)),
                _ => None,
            };
            ms.map(ResetTo::Timestamp).ok_or_else(|| {
                ApiError::BadRequest(
                    "\"to\": \"timestamp\" needs \"timestamp\": milliseconds since the epoch or an RFC 3339 time"
                        .into(),
                )
            })
        }
        "offset" => match r.offset {
            Some(o) if o >= 0 => Ok(ResetTo::Offset(o)),
            _ => Err(ApiError::BadRequest("\"to\": \"offset\" needs \"offset\": 0 or more".into())),
        },
        other => Err(ApiError::BadRequest(format!("\"to\" is {other:?}; use earliest, latest, timestamp or offset"))),
    }
}

/// The offset a partition is reset to (pure): `found` is the offset ListOffsets gave for
/// a timestamp (`None` or -1: no record that late, so the end); offsets are kept within
/// `[start, end]` as kafka-consumer-groups keeps them.
pub(super) fn reset_offset(to: ResetTo, start: i64, end: i64, found: Option<i64>) -> i64 {
    match to {
        ResetTo::Earliest => start,
        ResetTo::Latest => end,
        ResetTo::Timestamp(_) => found.filter(|o| *o >= 0).unwrap_or(end),
        ResetTo::Offset(o) => o.clamp(start, end),
    }
}

/// `POST /groups/{id}/offsets/reset`: moves an inactive group's committed offsets, as
/// `kafka-consumer-groups --reset-offsets --execute` does; refused (409) while the group
/// has members, as Kafka refuses it.
pub(super) async fn reset(
    State(state): State<AdminState>,
    Path(group): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: ResetRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be {{\"to\": \"earliest\"|\"latest\"|\"timestamp\"|\"offset\", \"topic\"?, \"timestamp\"?, \"offset\"?}}: {e}"
        ))
    })?;
    let to = reset_target(&request)?;
    let (_, owned) = state.snapshot().await?;
    let snapshot = state.brokers(&owned);
    let view = describe_group(snapshot, &group).await?;
    if !matches!(view.state.as_str(), "Empty" | "Dead") {
        return Err(ApiError::Conflict(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {} with {} member(s); stop its consumers first",
            view.state,
            view.members.len()
        )));
    }
    let partitions: Vec<(String, i32)> = match &request.topic {
        Some(topic) => {
            let t = snapshot
                .topics
                .get(topic)
                .ok_or_else(|| ApiError::NotFound(format!("topic {topic:?} does not exist")))?;
            t.partitions.keys().map(|p| (topic.clone(), *p)).collect()
        }
        None => view.offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect(),
    };
    if partitions.is_empty() {
        return Err(ApiError::BadRequest(format!("group {group} has no committed offsets; name a \"topic\" to reset")));
    }
    let mut by_leader: BTreeMap<Id, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, p) in &partitions {
        let leader = snapshot
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(p))
            .and_then(|ps| ps.state.as_ref())
            .map(|(s, _)| s.leader)
            .filter(|l| *l >= 0 && snapshot.brokers.contains_key(l))
            .ok_or_else(|| ApiError::Unavailable(format!("{topic}-{p} has no live leader; retry once it has one")))?;
        by_leader.entry(leader).or_default().push((topic.clone(), *p));
    }
    let strip = |m: BTreeMap<(Id, String, i32), i64>| -> BTreeMap<(String, i32), i64> {
        m.into_iter().map(|((_, t, p), o)| ((t, p), o)).collect()
    };
    let starts = strip(offsets_at(snapshot, by_leader.clone(), CONSUMER_REPLICA_ID, EARLIEST).await);
    let ends = strip(offsets_at(snapshot, by_leader.clone(), CONSUMER_REPLICA_ID, LATEST).await);
    let found = match to {
        ResetTo::Timestamp(ms) => strip(offsets_at(snapshot, by_leader, CONSUMER_REPLICA_ID, ms).await),
        _ => BTreeMap::new(),
    };
    let mut targets = Vec::new();
    for key in &partitions {
        let (Some(start), Some(end)) = (starts.get(key), ends.get(key)) else {
            return Err(ApiError::Unavailable(format!("the leader of {}-{} did not answer; retry", key.0, key.1)));
        };
        targets.push((key.clone(), reset_offset(to, *start, *end, found.get(key).copied())));
    }
    let coordinator = coordinator_of(snapshot, &group).await?;
    let mut conn = connect(snapshot, coordinator).await?;
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.clone()));
    req.generation_id_or_member_epoch = -1;
    req.member_id = StrBytes::from_static_str("");
    let mut topics: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, p), offset) in &targets {
        let mut part = OffsetCommitRequestPartition::default();
        part.partition_index = *p;
        part.committed_offset = *offset;
        part.committed_leader_epoch = -1;
        topics.entry(topic.clone()).or_default().push(part);
    }
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(StrBytes::from_string(name));
            t.partitions = partitions;
            t
        })
        .collect();
    let r = conn.call(7, &req).await.map_err(ApiError::Unavailable)?;
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(match ResponseError::try_from_code(p.error_code) {
                    Some(
                        ResponseError::UnknownMemberId
                        | ResponseError::IllegalGeneration
                        | ResponseError::RebalanceInProgress,
                    ) => ApiError::Conflict(format!(
                        "group {group} gained members while its offsets were being reset; stop its consumers and retry"
                    )),
                    _ => ApiError::Unavailable(format!(
                        "committing {}-{}: {}",
                        t.name.as_str(),
                        p.partition_index,
                        error_name(p.error_code)
                    )),
                });
            }
        }
    }
    tracing::info!(group, ?to, partitions = targets.len(), "reset a consumer group's offsets");
    let offsets: Vec<Value> =
        targets.iter().map(|((t, p), o)| json!({ "topic": t, "partition": p, "offset": o })).collect();
    Ok(Json(json!({ "group_id": group, "offsets": offsets })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ResetRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reset_requests_are_read_and_offsets_kept_within_the_log() {
        assert_eq!(reset_target(&req(json!({"to": "earliest"}))).unwrap(), ResetTo::Earliest);
        assert_eq!(reset_target(&req(json!({"to": "timestamp", "timestamp": 5}))).unwrap(), ResetTo::Timestamp(5));
        assert_eq!(
            reset_target(&req(json!({"to": "timestamp", "timestamp": "1970-01-01T00:00:01Z"}))).unwrap(),
            ResetTo::Timestamp(1000)
        );
        assert_eq!(reset_target(&req(json!({"to": "offset", "offset": 3}))).unwrap(), ResetTo::Offset(3));
        for bad in [json!({"to": "middle"}), json!({"to": "timestamp"}), json!({"to": "offset", "offset": -1})] {
            assert!(matches!(reset_target(&req(bad.clone())), Err(ApiError::BadRequest(_))), "{bad}");
        }
        // (to, start, end, found) -> offset
        let cases = [
            (ResetTo::Earliest, 5, 20, None, 5),
            (ResetTo::Latest, 5, 20, None, 20),
            (ResetTo::Timestamp(1), 5, 20, Some(9), 9),
            (ResetTo::Timestamp(1), 5, 20, Some(-1), 20),
            (ResetTo::Timestamp(1), 5, 20, None, 20),
            (ResetTo::Offset(2), 5, 20, None, 5),
            (ResetTo::Offset(12), 5, 20, None, 12),
            (ResetTo::Offset(99), 5, 20, None, 20),
        ];
        for (to, start, end, found, want) in cases {
            assert_eq!(reset_offset(to, start, end, found), want, "{to:?} {start} {end} {found:?}");
        }
    }
}
