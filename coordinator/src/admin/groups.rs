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
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest, DescribeGroupsRequest,
    DescribeLogDirsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{json, Value};
use tributary_common::ids::BrokerId as Id;
use tributary_common::snapshot::ClusterSnapshot;

use super::{AdminState, ApiError};
use tributary_common::kafka_client::Connection;

/// Connects to a broker through the first of its advertised endpoints that answers: with
/// named listeners some addresses (`localhost:29092` for the host) may not be reachable
/// from where the coordinator runs. Requests on a connection are then answered with
/// addresses on that endpoint's listener.
async fn connect(snapshot: &ClusterSnapshot, id: Id) -> Result<Connection, ApiError> {
    let b = snapshot
        .brokers
        .get(&id)
        .ok_or_else(|| ApiError::Unavailable(format!("broker {id} is not registered in ZooKeeper")))?;
    let mut last = format!("broker {id} advertises no endpoint");
    for e in b.registration.parsed_endpoints() {
        match Connection::connect(&e.host, e.port, "tributary-coordinator").await {
            Ok(conn) => return Ok(conn),
            Err(err) => last = format!("{e}: {err}"),
        }
    }
    Err(ApiError::Unavailable(last))
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

/// The broker coordinating `group`, asked of any live broker.
async fn coordinator_of(snapshot: &ClusterSnapshot, group: &str) -> Result<Id, ApiError> {
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
pub(super) async fn list_groups(snapshot: &ClusterSnapshot) -> (Vec<ListedGroup>, Vec<Value>) {
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
    let (_, snapshot) = state.snapshot().await?;
    let (groups, errors) = list_groups(&snapshot).await;
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
pub(super) async fn describe_group(snapshot: &ClusterSnapshot, group: &str) -> Result<GroupView, ApiError> {
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
    let (_, snapshot) = state.snapshot().await?;
    let g = describe_group(&snapshot, &group).await?;
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
    snapshot: &ClusterSnapshot,
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
    snapshot: &ClusterSnapshot,
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
    snapshot: &ClusterSnapshot,
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
    snapshot: &ClusterSnapshot,
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
    let (_, snapshot) = state.snapshot().await?;
    let coordinator = coordinator_of(&snapshot, &group).await?;
    let mut conn = connect(&snapshot, coordinator).await?;
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
