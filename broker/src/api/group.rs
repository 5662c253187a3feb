//! Consumer-group APIs: FindCoordinator (creating `__consumer_offsets` on first use),
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
//! DescribeGroups, DeleteGroups and OffsetDelete. Wire types are converted here; the
//! decisions live in [`crate::group`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, SyncGroupRequest, SyncGroupResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use tributary_common::topic::{CONSUMER_OFFSETS, TRANSACTION_STATE};

use super::{admin, now_ms, s, BrokerContext};
use crate::group::coordinator::{Commit, FetchedPartition};
use crate::group::records::OffsetValue;
use crate::group::state::{Code, GroupState, JoinRequest, MemberRef};
use crate::group::GroupCoordinator;
use crate::metadata::TopicMetadata;

/// Group ids are stored as int16-length strings in `__consumer_offsets` keys.
const MAX_GROUP_ID_BYTES: usize = i16::MAX as usize;

/// How long FindCoordinator waits for a just-created `__consumer_offsets` to get leaders.
const OFFSETS_TOPIC_WAIT: Duration = Duration::from_millis(3000);

fn code(e: ResponseError) -> Code {
    e.code()
}

/// Kafka's rule: Join/Sync/Heartbeat/Leave need a non-empty id; commits, fetches and admin
/// calls accept "" (old simple consumers used it).
fn check_group_id(id: &str, may_be_empty: bool) -> Result<(), Code> {
    if (id.is_empty() && !may_be_empty) || id.len() > MAX_GROUP_ID_BYTES {
        return Err(code(ResponseError::InvalidGroupId));
    }
    Ok(())
}

fn opt(v: &Option<StrBytes>) -> Option<&str> {
    v.as_ref().map(|x| x.as_str())
}

/// The coordinator answer for one key: node, or error with a message.
struct Found {
    error: Code,
    message: Option<String>,
    node_id: i32,
    host: String,
    port: i32,
}

impl Found {
    fn error(error: ResponseError, message: impl Into<String>) -> Found {
        Found { error: error.code(), message: Some(message.into()), node_id: -1, host: String::new(), port: -1 }
    }
}

static LAST_RF_WARNING: AtomicI64 = AtomicI64::new(0);

/// An internal topic a coordinator keeps its state in.
struct Internal {
    name: &'static str,
    partitions: i32,
    replication_factor: i16,
    /// The broker setting that sets the replication factor.
    rf_setting: &'static str,
    configs: BTreeMap<String, String>,
    /// What it is for, for messages.
    purpose: &'static str,
}

/// An internal topic, created on first use as Kafka does.
async fn internal_topic(ctx: &BrokerContext, t: Internal) -> Result<TopicMetadata, Found> {
    let cluster = ctx.cluster();
    if let Some(existing) = cluster.topics.get(t.name) {
        return Ok(existing.clone());
    }
    let (name, rf, setting) = (t.name, t.replication_factor, t.rf_setting);
    let live = cluster.brokers.len();
    if live < rf as usize {
        let message = format!(
            "{name} needs {rf} live brokers ({setting}={rf}) but {live} are live; start more brokers, or set {setting}={} on the brokers",
            live.max(1)
        );
        let now = now_ms();
        if now - LAST_RF_WARNING.swap(now, Ordering::Relaxed) > 60_000 {
            tracing::warn!("{message}; {} are unavailable until then", t.purpose);
        }
        return Err(Found::error(ResponseError::CoordinatorNotAvailable, message));
    }
    match admin::create_topic(ctx, name, t.partitions, rf, t.configs, None).await {
        Ok(_) => tracing::info!(partitions = t.partitions, replication_factor = rf, "created {name} for {}", t.purpose),
        Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {}
        Err(e) => {
            tracing::warn!(error = %e.message, "could not create {name}");
            return Err(Found::error(ResponseError::CoordinatorNotAvailable, e.message));
        }
    }
    ctx.wait_for_metadata(OFFSETS_TOPIC_WAIT, |m| m.topics.get(name).is_some_and(TopicMetadata::fully_led)).await;
    ctx.cluster()
        .topics
        .get(name)
        .cloned()
        .ok_or_else(|| Found::error(ResponseError::CoordinatorNotAvailable, format!("{name} is being created")))
}

/// The offsets topic, created on first use.
async fn offsets_topic(ctx: &BrokerContext) -> Result<TopicMetadata, Found> {
    internal_topic(
        ctx,
        Internal {
            name: CONSUMER_OFFSETS,
            partitions: ctx.config.offsets_topic_num_partitions,
            replication_factor: ctx.config.offsets_topic_replication_factor,
            rf_setting: "offsets.topic.replication.factor",
            configs: BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("compression.type".to_string(), "producer".to_string()),
                ("segment.bytes".to_string(), "104857600".to_string()),
            ]),
            purpose: "consumer groups",
        },
    )
    .await
}

/// The transaction state topic, created on first use.
async fn transaction_topic(ctx: &BrokerContext) -> Result<TopicMetadata, Found> {
    let c = &ctx.config;
    internal_topic(
        ctx,
        Internal {
            name: TRANSACTION_STATE,
            partitions: c.transaction_state_log_num_partitions,
            replication_factor: c.transaction_state_log_replication_factor,
            rf_setting: "transaction.state.log.replication.factor",
            configs: BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("compression.type".to_string(), "uncompressed".to_string()),
                ("min.insync.replicas".to_string(), c.transaction_state_log_min_isr.to_string()),
                ("segment.bytes".to_string(), "104857600".to_string()),
            ]),
            purpose: "transactions",
        },
    )
    .await
}

async fn find(ctx: &BrokerContext, listener: &str, key_type: i8, key: &str) -> Found {
    let (topic, p) = match key_type {
        0 => match offsets_topic(ctx).await {
            Ok(t) => {
                let p = GroupCoordinator::partition_for(key, t.partitions.len() as i32);
                (t, p)
            }
            Err(f) => return f,
        },
        1 => match transaction_topic(ctx).await {
            Ok(t) => {
                let p = crate::txn::partition_for(key, t.partitions.len() as i32);
                (t, p)
            }
            Err(f) => return f,
        },
        other => return Found::error(ResponseError::InvalidRequest, format!("unknown coordinator key type {other}")),
    };
    let leader = topic.partitions.get(&p).map_or(-1, |pm| pm.leader);
    match ctx.cluster().brokers.get(&leader).map(|b| b.endpoint(listener)) {
        Some(Some(e)) => {
            Found { error: 0, message: None, node_id: leader, host: e.host.clone(), port: i32::from(e.port) }
        }
        Some(None) => Found::error(
            ResponseError::CoordinatorNotAvailable,
            format!(
                "the coordinator (broker {leader}) has no endpoint on the {listener} listener this request came on"
            ),
        ),
        None => Found::error(
            ResponseError::CoordinatorNotAvailable,
            format!("the coordinator's partition {p} has no live leader"),
        ),
    }
}

pub(super) async fn find_coordinator(
    ctx: &BrokerContext,
    listener: &str,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in request.coordinator_keys {
            let f = find(ctx, listener, request.key_type, key.as_str()).await;
            let mut c = Coordinator::default();
            c.key = key;
            c.node_id = BrokerId(f.node_id);
            c.host = s(f.host);
            c.port = f.port;
            c.error_code = f.error;
            c.error_message = f.message.map(s);
            response.coordinators.push(c);
        }
    } else {
        let f = find(ctx, listener, if version >= 1 { request.key_type } else { 0 }, request.key.as_str()).await;
        response.error_code = f.error;
        if version >= 1 {
            response.error_message = f.message.map(s);
        }
        response.node_id = BrokerId(f.node_id);
        response.host = s(f.host);
        response.port = f.port;
    }
    response
}

pub(super) async fn join_group(
    ctx: &BrokerContext,
    peer: SocketAddr,
    header: &RequestHeader,
    version: i16,
    r: JoinGroupRequest,
) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    response.member_id = r.member_id.clone();
    if version < 7 {
        response.protocol_name = Some(StrBytes::default());
    }
    if let Err(e) = check_group_id(r.group_id.as_str(), false) {
        response.error_code = e;
        return response;
    }
    let client_id = header.client_id.as_ref().map(|c| c.as_str().to_string()).unwrap_or_default();
    let id_prefix: String = client_id.chars().take(200).collect();
    let req = JoinRequest {
        member_id: r.member_id.as_str().to_string(),
        instance_id: if version >= 5 { opt(&r.group_instance_id).map(str::to_string) } else { None },
        client_id,
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { r.rebalance_timeout_ms } else { r.session_timeout_ms },
        protocol_type: r.protocol_type.as_str().to_string(),
        protocols: r.protocols.iter().map(|p| (p.name.as_str().to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        new_member_id: format!("{id_prefix}-{}", uuid::Uuid::new_v4()),
    };
    let out = ctx.groups.join(r.group_id.as_str(), req, now_ms()).await;
    response.error_code = out.error;
    response.member_id = s(out.member_id);
    response.generation_id = out.generation;
    if version >= 7 {
        response.protocol_type = out.protocol_type.map(s);
        response.protocol_name = out.protocol.map(s);
    } else {
        response.protocol_name = Some(s(out.protocol.unwrap_or_default()));
    }
    response.leader = s(out.leader);
    response.skip_assignment = version >= 9 && out.skip_assignment;
    response.members = out
        .members
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = s(m.member_id);
            if version >= 5 {
                jm.group_instance_id = m.instance_id.map(s);
            }
            jm.metadata = m.metadata;
            jm
        })
        .collect();
    response
}

pub(super) async fn sync_group(ctx: &BrokerContext, version: i16, r: SyncGroupRequest) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    if let Err(e) = check_group_id(r.group_id.as_str(), false) {
        response.error_code = e;
        return response;
    }
    let assignments = r.assignments.iter().map(|a| (a.member_id.as_str().to_string(), a.assignment.clone())).collect();
    let instance = if version >= 3 { opt(&r.group_instance_id) } else { None };
    let (ptype, pname) = if version >= 5 { (opt(&r.protocol_type), opt(&r.protocol_name)) } else { (None, None) };
    let out = ctx
        .groups
        .sync(
            r.group_id.as_str(),
            MemberRef::new(r.member_id.as_str(), instance, r.generation_id),
            ptype,
            pname,
            assignments,
            now_ms(),
        )
        .await;
    response.error_code = out.error;
    response.assignment = out.assignment;
    if version >= 5 {
        response.protocol_type = out.protocol_type.map(s);
        response.protocol_name = out.protocol.map(s);
    }
    response
}

pub(super) fn heartbeat(ctx: &BrokerContext, version: i16, r: HeartbeatRequest) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    response.error_code = match check_group_id(r.group_id.as_str(), false) {
        Err(e) => e,
        Ok(()) => {
            let instance = if version >= 3 { opt(&r.group_instance_id) } else { None };
            let who = MemberRef::new(r.member_id.as_str(), instance, r.generation_id);
            ctx.groups.heartbeat(r.group_id.as_str(), who, now_ms())
        }
    };
    response
}

pub(super) fn leave_group(ctx: &BrokerContext, version: i16, r: LeaveGroupRequest) -> LeaveGroupResponse {
    let mut response = LeaveGroupResponse::default();
    if let Err(e) = check_group_id(r.group_id.as_str(), false) {
        response.error_code = e;
        return response;
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.as_str().to_string(), opt(&m.group_instance_id).map(str::to_string)))
            .collect()
    } else {
        vec![(r.member_id.as_str().to_string(), None)]
    };
    match ctx.groups.leave(r.group_id.as_str(), &members, now_ms()) {
        Err(e) => response.error_code = e,
        Ok(codes) if version >= 3 => {
            response.members = members
                .into_iter()
                .zip(codes)
                .map(|((member, instance), c)| {
                    let mut m = MemberResponse::default();
                    m.member_id = s(member);
                    m.group_instance_id = instance.map(s);
                    m.error_code = c;
                    m
                })
                .collect();
        }
        Ok(codes) => response.error_code = codes.first().copied().unwrap_or(0),
    }
    response
}

/// Partitions with the error found before the group was asked (None: ask the group).
type PartitionCodes = Vec<(i32, Option<Code>)>;

/// One partition of a commit: (index, offset, leader epoch, metadata).
type Offered<'a> = (i32, i64, i32, Option<&'a str>);

/// A commit's partitions checked one by one (group id, topic and partition, metadata
/// size), as OffsetCommit and TxnOffsetCommit both do: each partition's early error, and
/// the offsets the group is to decide on together.
fn check_commits<'a>(
    ctx: &BrokerContext,
    group_error: Option<Code>,
    topics: impl Iterator<Item = (&'a TopicName, Vec<Offered<'a>>)>,
    now: i64,
) -> (Vec<(TopicName, PartitionCodes)>, Vec<Commit>) {
    let cluster = ctx.cluster();
    let max_metadata = ctx.config.offset_metadata_max_bytes.max(0) as usize;
    let mut results = Vec::new();
    let mut commits = Vec::new();
    for (topic, partitions) in topics {
        let name = topic.as_str();
        let known = cluster.topics.get(name);
        let mut parts = Vec::new();
        for (index, offset, leader_epoch, metadata) in partitions {
            let metadata = metadata.unwrap_or("");
            let early = if let Some(e) = group_error {
                Some(e)
            } else if known.is_none_or(|t| !t.partitions.contains_key(&index)) {
                Some(code(ResponseError::UnknownTopicOrPartition))
            } else if metadata.len() > max_metadata {
                Some(code(ResponseError::OffsetMetadataTooLarge))
            } else {
                let value = OffsetValue { offset, leader_epoch, metadata: metadata.to_string(), commit_timestamp: now };
                commits.push(((name.to_string(), index), value));
                None
            };
            parts.push((index, early));
        }
        results.push((topic.clone(), parts));
    }
    (results, commits)
}

pub(super) async fn offset_commit(ctx: &BrokerContext, version: i16, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_error = check_group_id(r.group_id.as_str(), true).err();
    let now = now_ms();
    // Per-partition checks first; the group decides for the rest together.
    let topics = r.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let epoch = if version >= 6 { p.committed_leader_epoch } else { -1 };
            (p.partition_index, p.committed_offset, epoch, opt(&p.committed_metadata))
        });
        (&t.name, parts.collect())
    });
    let (results, commits) = check_commits(ctx, group_error, topics, now);
    let instance = if version >= 7 { opt(&r.group_instance_id) } else { None };
    // The group writes the commit through the one write path (acks=all: the whole ISR of
    // its __consumer_offsets partition has it, flushed while the leader is alone in it) and
    // answers once it holds, so a coordinator failover or a kill -9 keeps it.
    let group_result = if group_error.is_some() {
        Ok(())
    } else {
        ctx.groups
            .commit(
                r.group_id.as_str(),
                MemberRef::new(r.member_id.as_str(), instance, r.generation_id_or_member_epoch),
                commits,
                now,
            )
            .await
    };
    let mut response = OffsetCommitResponse::default();
    response.topics = results
        .into_iter()
        .map(|(name, parts)| {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = name;
            t.partitions = parts
                .into_iter()
                .map(|(index, early)| {
                    let mut p = OffsetCommitResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = early.unwrap_or_else(|| group_result.err().unwrap_or(0));
                    p
                })
                .collect();
            t
        })
        .collect();
    response
}

type WantedTopics = Option<Vec<(String, Vec<i32>)>>;

fn fetch_one(
    ctx: &BrokerContext,
    group: &str,
    topics: WantedTopics,
) -> Result<Vec<(String, Vec<FetchedPartition>)>, Code> {
    check_group_id(group, true)?;
    ctx.groups.fetch_offsets(group, topics)
}

/// A committed offset as OffsetFetch answers it: (offset, leader epoch, metadata), or
/// (-1, -1, "") when there is none.
fn committed(v: Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, s(v.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

/// OffsetFetch v1-7 topics (one group per request), each partition with `error_code`.
fn topics_v1_to_7(
    topics: Vec<(String, Vec<FetchedPartition>)>,
    version: i16,
    error_code: i16,
) -> Vec<OffsetFetchResponseTopic> {
    topics
        .into_iter()
        .map(|(t, parts)| {
            let mut rt = OffsetFetchResponseTopic::default();
            rt.name = TopicName(s(t));
            rt.partitions = parts
                .into_iter()
                .map(|(p, v)| {
                    let (offset, leader_epoch, metadata) = committed(v);
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.committed_offset = offset;
                    if version >= 5 {
                        rp.committed_leader_epoch = leader_epoch;
                    }
                    rp.metadata = Some(metadata);
                    rp.error_code = error_code;
                    rp
                })
                .collect();
            rt
        })
        .collect()
}

pub(super) fn offset_fetch(ctx: &BrokerContext, version: i16, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for g in r.groups {
            let wanted: WantedTopics =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.as_str().to_string(), t.partition_indexes)).collect());
            let mut out = OffsetFetchResponseGroup::default();
            let group = g.group_id.as_str().to_string();
            match fetch_one(ctx, &group, wanted) {
                Ok(topics) => {
                    out.topics = topics
                        .into_iter()
                        .map(|(t, parts)| {
                            let mut rt = OffsetFetchResponseTopics::default();
                            rt.partitions = parts
                                .into_iter()
                                .map(|(p, v)| {
                                    let (offset, leader_epoch, metadata) = committed(v);
                                    let mut rp = OffsetFetchResponsePartitions::default();
                                    rp.partition_index = p;
                                    rp.committed_offset = offset;
                                    rp.committed_leader_epoch = leader_epoch;
                                    rp.metadata = Some(metadata);
                                    // KIP-447: a commit waiting in an open transaction is not stable yet.
                                    if r.require_stable && ctx.groups.unstable(&group, &t, p) {
                                        rp.error_code = ResponseError::UnstableOffsetCommit.code();
                                    }
                                    rp
                                })
                                .collect();
                            rt.name = TopicName(s(t));
                            rt
                        })
                        .collect();
                }
                Err(e) => out.error_code = e,
            }
            out.group_id = g.group_id;
            response.groups.push(out);
        }
        return response;
    }
    let wanted: WantedTopics =
        r.topics.map(|ts| ts.into_iter().map(|t| (t.name.as_str().to_string(), t.partition_indexes)).collect());
    let requested = wanted.clone();
    match fetch_one(ctx, r.group_id.as_str(), wanted) {
        Ok(topics) => {
            response.topics = topics_v1_to_7(topics, version, 0);
            if version >= 7 && r.require_stable {
                for t in &mut response.topics {
                    for p in &mut t.partitions {
                        if ctx.groups.unstable(r.group_id.as_str(), t.name.as_str(), p.partition_index) {
                            p.error_code = ResponseError::UnstableOffsetCommit.code();
                        }
                    }
                }
            }
        }
        Err(e) if version >= 2 => response.error_code = e,
        Err(e) => {
            // v1 has no top-level error: every requested partition carries it.
            let none = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, parts)| (t, parts.into_iter().map(|p| (p, None)).collect()))
                .collect();
            response.topics = topics_v1_to_7(none, version, e);
        }
    }
    response
}

pub(super) fn list_groups(ctx: &BrokerContext, version: i16, r: ListGroupsRequest) -> ListGroupsResponse {
    let (error, groups) = ctx.groups.list();
    let states: Vec<String> =
        if version >= 4 { r.states_filter.iter().map(|x| x.as_str().to_lowercase()).collect() } else { Vec::new() };
    let types: Vec<String> =
        if version >= 5 { r.types_filter.iter().map(|x| x.as_str().to_lowercase()).collect() } else { Vec::new() };
    let mut response = ListGroupsResponse::default();
    response.error_code = error;
    let mut groups: Vec<_> = groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    response.groups = groups
        .into_iter()
        .map(|g| {
            let mut l = ListedGroup::default();
            l.group_id = GroupId(s(g.group_id));
            l.protocol_type = s(g.protocol_type);
            if version >= 4 {
                l.group_state = s(g.state.name());
            }
            if version >= 5 {
                l.group_type = s("classic");
            }
            l
        })
        .collect();
    response
}

pub(super) fn describe_groups(ctx: &BrokerContext, version: i16, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    // Asked for: every operation, as Kafka without an authorizer; `authz::after` narrows them.
    let operations = if r.include_authorized_operations {
        super::authz::all_operations(tributary_common::acl::ResourceType::Group)
    } else {
        i32::MIN
    };
    for id in r.groups {
        let mut d = DescribedGroup::default();
        d.authorized_operations = operations;
        d.group_state = s(GroupState::Dead.name());
        match check_group_id(id.as_str(), true).and_then(|()| ctx.groups.describe(id.as_str())) {
            Err(e) => d.error_code = e,
            Ok(None) => {}
            Ok(Some(g)) => {
                d.group_state = s(g.state.name());
                d.protocol_type = s(g.protocol_type.clone().unwrap_or_default());
                d.protocol_data = s(g.protocol.clone().unwrap_or_default());
                let stable = g.state == GroupState::Stable;
                d.members = g
                    .members
                    .values()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = s(m.member_id.clone());
                        if version >= 4 {
                            dm.group_instance_id = m.instance_id.clone().map(s);
                        }
                        dm.client_id = s(m.client_id.clone());
                        dm.client_host = s(m.client_host.clone());
                        if stable {
                            dm.member_metadata = m.metadata(g.protocol.as_deref());
                            dm.member_assignment = m.assignment.clone();
                        }
                        dm
                    })
                    .collect();
            }
        }
        d.group_id = id;
        response.groups.push(d);
    }
    response
}

pub(super) async fn delete_groups(ctx: &BrokerContext, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for id in r.groups_names {
        let mut out = DeletableGroupResult::default();
        out.error_code = match check_group_id(id.as_str(), true) {
            Err(e) => e,
            Ok(()) => ctx.groups.delete(id.as_str()).await,
        };
        out.group_id = id;
        response.results.push(out);
    }
    response
}

pub(super) async fn offset_delete(ctx: &BrokerContext, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let wanted: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str().to_string(), p.partition_index)))
        .collect();
    let result = match check_group_id(r.group_id.as_str(), true) {
        Ok(()) => ctx.groups.delete_offsets(r.group_id.as_str(), &wanted).await,
        Err(e) => Err(e),
    };
    match result {
        Err(e) => response.error_code = e,
        Ok(codes) => {
            let mut codes = codes.into_iter();
            response.topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let mut rt = OffsetDeleteResponseTopic::default();
                    rt.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut rp = OffsetDeleteResponsePartition::default();
                            rp.partition_index = p.partition_index;
                            rp.error_code = codes.next().unwrap_or(0);
                            rp
                        })
                        .collect();
                    rt.name = t.name;
                    rt
                })
                .collect();
        }
    }
    response
}

/// TxnOffsetCommit (KIP-98, KIP-447): offsets committed inside a producer's transaction,
/// visible to OffsetFetch only once the transaction commits.
pub(super) async fn txn_offset_commit(
    ctx: &BrokerContext,
    version: i16,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_error = check_group_id(r.group_id.as_str(), false).err();
    let now = now_ms();
    let topics = r.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let epoch = if version >= 2 { p.committed_leader_epoch } else { -1 };
            (p.partition_index, p.committed_offset, epoch, opt(&p.committed_metadata))
        });
        (&t.name, parts.collect())
    });
    let (results, commits) = check_commits(ctx, group_error, topics, now);
    // KIP-447 (v3+): the member's generation is checked like a plain commit's.
    let who = if version >= 3 {
        MemberRef::new(r.member_id.as_str(), opt(&r.group_instance_id), r.generation_id)
    } else {
        MemberRef::new("", None, -1)
    };
    let group_result = if group_error.is_some() {
        Ok(())
    } else {
        ctx.groups.txn_commit(r.group_id.as_str(), who, (r.producer_id.0, r.producer_epoch), commits, now).await
    };
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = results
        .into_iter()
        .map(|(name, parts)| {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = name;
            t.partitions = parts
                .into_iter()
                .map(|(index, early)| {
                    let mut p = TxnOffsetCommitResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = early.unwrap_or_else(|| group_result.err().unwrap_or(0));
                    p
                })
                .collect();
            t
        })
        .collect();
    response
}
