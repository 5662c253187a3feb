//! Authorization of each request, on the resources Kafka's `KafkaApis` checks, with the
//! ACLs of the metadata snapshot and the decision rule of `tributary_common::acl`.
//!
//! [`before`] runs ahead of the handler: it answers a request refused as a whole, or takes
//! out the topics, groups or resources the principal may not touch (so the handler never
//! sees them) and remembers them in a [`Merge`]; [`after`] puts them back into the
//! response with Kafka's authorization errors, and filters what a listing may show.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tributary_common::acl::{self, AuthorizerConfig, Operation, ResourceType, CLUSTER_NAME};

use super::{s, BrokerContext, Caller};
use crate::metadata::ClusterMetadata;

/// One request's view of the authorizer.
pub(super) struct Check {
    config: AuthorizerConfig,
    meta: Arc<ClusterMetadata>,
    principal: String,
    host: String,
    api: String,
}

impl Check {
    /// `None` without an authorizer (`authorizer.class.name` unset): everything is allowed.
    pub(super) fn new(ctx: &BrokerContext, caller: &Caller, api: String) -> Option<Check> {
        let config = ctx.authorizer.clone()?;
        Some(Check {
            config,
            meta: ctx.cluster(),
            principal: caller.principal.to_string(),
            host: caller.peer.ip().to_string(),
            api,
        })
    }

    /// Whether the principal may; a denial is logged as Kafka's authorizer logs it.
    pub(super) fn allows(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let ok = self.quietly(op, rt, name);
        if !ok {
            tracing::info!(
                principal = self.principal,
                host = self.host,
                operation = op.name(),
                resource = format!("{}:LITERAL:{name}", rt.name()),
                request = self.api,
                "authorization denied; grant it with kafka-acls --add --allow-principal {} --operation {} --{} {name}",
                self.principal,
                op.name(),
                match rt {
                    ResourceType::Topic => "topic",
                    ResourceType::Group => "group",
                    ResourceType::TransactionalId => "transactional-id",
                    _ => "cluster",
                }
            );
        }
        ok
    }

    /// Whether the principal may, without a log line (listings and authorized operations).
    pub(super) fn quietly(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        acl::authorize(&self.meta.acls, &self.config, &self.principal, &self.host, op, rt, name)
    }

    fn cluster(&self, op: Operation) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's idempotent-producer rule (KIP-679): IDEMPOTENT_WRITE on the cluster, or
    /// WRITE on some topic.
    fn may_write_somewhere(&self) -> bool {
        if self.quietly(Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER_NAME)
            || self.config.super_users.contains(&self.principal)
        {
            return true;
        }
        let names: Vec<String> = self
            .meta
            .acls
            .keys()
            .filter(|p| p.resource_type == ResourceType::Topic)
            .map(|p| if p.pattern_type == acl::PatternType::Prefixed { format!("{}x", p.name) } else { p.name.clone() })
            .chain(self.meta.topics.keys().cloned())
            .collect();
        names.iter().any(|n| self.quietly(Operation::Write, ResourceType::Topic, n))
            || self.cluster(Operation::IdempotentWrite)
    }

    /// The bit set of operations allowed on a resource (Metadata, DescribeGroups,
    /// DescribeCluster). The cluster's are 0 without DESCRIBE on it, as Kafka answers.
    pub(super) fn authorized_operations(&self, rt: ResourceType, name: &str) -> i32 {
        if rt == ResourceType::Cluster && !self.quietly(Operation::Describe, rt, name) {
            return 0;
        }
        supported_operations(rt).iter().filter(|op| self.quietly(**op, rt, name)).fold(0, |bits, op| bits | (1 << op.code()))
    }
}

/// The operations Kafka reports in authorized-operations fields for a resource type
/// (`AclEntry.supportedOperations`).
fn supported_operations(rt: ResourceType) -> &'static [Operation] {
    match rt {
        ResourceType::Topic => &[
            Operation::Read,
            Operation::Write,
            Operation::Create,
            Operation::Delete,
            Operation::Alter,
            Operation::Describe,
            Operation::DescribeConfigs,
            Operation::AlterConfigs,
        ],
        ResourceType::Group => &[Operation::Read, Operation::Describe, Operation::Delete],
        _ => &[
            Operation::Create,
            Operation::ClusterAction,
            Operation::DescribeConfigs,
            Operation::AlterConfigs,
            Operation::IdempotentWrite,
            Operation::Alter,
            Operation::Describe,
        ],
    }
}

/// Every operation of a resource type, as a bit set: what a broker without an authorizer
/// reports when a client asks for authorized operations.
pub(super) fn all_operations(rt: ResourceType) -> i32 {
    supported_operations(rt).iter().fold(0, |bits, op| bits | (1 << op.code()))
}

/// What [`before`] took out of a request, to be answered in [`after`].
#[derive(Default)]
pub(super) enum Merge {
    /// Nothing.
    #[default]
    None,
    /// Produce: (topic, partitions, error).
    Produce(Vec<(TopicName, Vec<i32>, i16)>),
    /// Fetch: (topic, id, partitions).
    Fetch(Vec<(TopicName, uuid::Uuid, Vec<i32>)>),
    /// ListOffsets: (topic, partitions).
    ListOffsets(Vec<(TopicName, Vec<i32>)>),
    /// OffsetForLeaderEpoch: (topic, partitions).
    LeaderEpoch(Vec<(TopicName, Vec<i32>)>),
    /// DescribeCluster asked for the cluster's authorized operations.
    ClusterOperations,
    /// Metadata: topics asked for and refused; whether every topic was asked for.
    Metadata { denied: Vec<TopicName>, all: bool, topic_ops: bool, cluster_ops: bool },
    /// OffsetCommit: (topic, partitions, error).
    OffsetCommit(Vec<(TopicName, Vec<i32>, i16)>),
    /// TxnOffsetCommit: (topic, partitions, error).
    TxnOffsetCommit(Vec<(TopicName, Vec<i32>, i16)>),
    /// DescribeGroups, ListGroups and the transaction listings: filtered on the way out.
    Filter,
    /// OffsetFetch before v8: its one group, checked on the way out.
    OffsetFetch(GroupId),
    /// DeleteGroups: refused groups.
    DeleteGroups(Vec<GroupId>),
    /// CreateTopics: refused topics.
    CreateTopics(Vec<TopicName>),
    /// DeleteTopics: refused names and ids.
    DeleteTopics(Vec<(Option<TopicName>, uuid::Uuid)>),
    /// CreatePartitions: refused topics.
    CreatePartitions(Vec<TopicName>),
    /// DescribeConfigs, AlterConfigs, IncrementalAlterConfigs: refused (type, name, error).
    Configs(Vec<(i8, StrBytes, i16)>),
}

/// The request to run (with what was taken out), or the whole answer.
pub(super) enum Gate {
    Pass(RequestKind, Merge),
    Answer(ResponseKind),
}

const TOPIC_DENIED: i16 = 29; // TOPIC_AUTHORIZATION_FAILED
const GROUP_DENIED: i16 = 30; // GROUP_AUTHORIZATION_FAILED
const CLUSTER_DENIED: i16 = 31; // CLUSTER_AUTHORIZATION_FAILED
const TXN_DENIED: i16 = 53; // TRANSACTIONAL_ID_AUTHORIZATION_FAILED

fn cluster_denied_message() -> Option<StrBytes> {
    Some(s("Cluster authorization failed."))
}

/// Splits `items` into those `allowed` and the rest.
fn split<T>(items: Vec<T>, allowed: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|i| allowed(i))
}

/// Checks `request` before its handler.
///
/// Responses built here set only fields that exist at `version` (the codec refuses others).
pub(super) fn before(ctx: &BrokerContext, check: &Check, version: i16, request: RequestKind) -> Gate {
    use Operation as Op;
    use ResourceType as Rt;
    let topic = |op: Op, name: &str| check.allows(op, Rt::Topic, name);
    match request {
        RequestKind::Produce(mut r) => {
            if let Some(id) = r.transactional_id.as_ref().filter(|id| !id.is_empty()) {
                if !check.allows(Op::Write, Rt::TransactionalId, id.as_str()) {
                    let all = std::mem::take(&mut r.topic_data)
                        .into_iter()
                        .map(|t| (t.name, t.partition_data.iter().map(|p| p.index).collect(), TXN_DENIED))
                        .collect();
                    return Gate::Pass(RequestKind::Produce(r), Merge::Produce(all));
                }
            }
            let (ok, denied) = split(std::mem::take(&mut r.topic_data), |t| topic(Op::Write, t.name.as_str()));
            r.topic_data = ok;
            let denied = denied
                .into_iter()
                .map(|t| (t.name, t.partition_data.iter().map(|p| p.index).collect(), TOPIC_DENIED))
                .collect();
            Gate::Pass(RequestKind::Produce(r), Merge::Produce(denied))
        }
        RequestKind::Fetch(mut r) => {
            let follower = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            let by_id = |id: &uuid::Uuid| ctx.cluster().topic_name(id).unwrap_or_default();
            let name_of = |t: &fetch_request::FetchTopic| {
                if t.topic.is_empty() { by_id(&t.topic_id) } else { t.topic.as_str().to_string() }
            };
            let allowed_all = follower && check.cluster(Op::ClusterAction);
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| {
                allowed_all || (!follower && topic(Op::Read, &name_of(t)))
            });
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| (t.topic.clone(), t.topic_id, t.partitions.iter().map(|p| p.partition).collect()))
                .collect();
            Gate::Pass(RequestKind::Fetch(r), Merge::Fetch(denied))
        }
        RequestKind::ListOffsets(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| topic(Op::Describe, t.name.as_str()));
            r.topics = ok;
            let denied = denied.into_iter().map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect())).collect();
            Gate::Pass(RequestKind::ListOffsets(r), Merge::ListOffsets(denied))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let follower = r.replica_id.0 >= 0;
            let all = follower && check.cluster(Op::ClusterAction);
            let (ok, denied) =
                split(std::mem::take(&mut r.topics), |t| all || (!follower && topic(Op::Describe, t.topic.as_str())));
            r.topics = ok;
            let denied = denied.into_iter().map(|t| (t.topic, t.partitions.iter().map(|p| p.partition).collect())).collect();
            Gate::Pass(RequestKind::OffsetForLeaderEpoch(r), Merge::LeaderEpoch(denied))
        }
        RequestKind::Metadata(mut r) => {
            let all = r.topics.is_none();
            let mut denied = Vec::new();
            if let Some(topics) = r.topics.take() {
                let cluster = ctx.cluster();
                let (ok, refused) = split(topics, |t| match &t.name {
                    Some(n) => topic(Op::Describe, n.as_str()),
                    None => cluster.topic_name(&t.topic_id).is_some_and(|n| topic(Op::Describe, &n)),
                });
                denied = refused.into_iter().filter_map(|t| t.name).collect();
                // Auto-creation needs CREATE on the cluster or on the topic.
                if r.allow_auto_topic_creation
                    && ok.iter().filter_map(|t| t.name.as_ref()).any(|n| {
                        !cluster.topics.contains_key(n.as_str())
                            && !check.quietly(Op::Create, Rt::Cluster, CLUSTER_NAME)
                            && !check.quietly(Op::Create, Rt::Topic, n.as_str())
                    })
                {
                    r.allow_auto_topic_creation = false;
                }
                r.topics = Some(ok);
            }
            let merge = Merge::Metadata {
                denied,
                all,
                topic_ops: r.include_topic_authorized_operations,
                cluster_ops: r.include_cluster_authorized_operations,
            };
            Gate::Pass(RequestKind::Metadata(r), merge)
        }
        RequestKind::FindCoordinator(r) => {
            let keys: Vec<String> = if r.coordinator_keys.is_empty() {
                vec![r.key.as_str().to_string()]
            } else {
                r.coordinator_keys.iter().map(|k| k.as_str().to_string()).collect()
            };
            let (rt, code) = if r.key_type == 1 { (Rt::TransactionalId, TXN_DENIED) } else { (Rt::Group, GROUP_DENIED) };
            if keys.iter().all(|k| check.allows(Op::Describe, rt, k)) {
                return Gate::Pass(RequestKind::FindCoordinator(r), Merge::None);
            }
            let mut resp = FindCoordinatorResponse::default();
            if version < 4 {
                resp.error_code = code;
                resp.node_id = BrokerId(-1);
                resp.error_message = None;
                return Gate::Answer(ResponseKind::FindCoordinator(resp));
            }
            resp.coordinators = keys
                .iter()
                .map(|k| {
                    let mut c = find_coordinator_response::Coordinator::default();
                    c.key = s(k.clone());
                    c.node_id = BrokerId(-1);
                    c.error_code = if check.quietly(Op::Describe, rt, k) { 0 } else { code };
                    c
                })
                .collect();
            Gate::Answer(ResponseKind::FindCoordinator(resp))
        }
        RequestKind::JoinGroup(r) => {
            if check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                return Gate::Pass(RequestKind::JoinGroup(r), Merge::None);
            }
            let mut resp = JoinGroupResponse::default();
            resp.error_code = GROUP_DENIED;
            resp.generation_id = -1;
            resp.member_id = r.member_id.clone();
            Gate::Answer(ResponseKind::JoinGroup(resp))
        }
        RequestKind::SyncGroup(r) => {
            if check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                return Gate::Pass(RequestKind::SyncGroup(r), Merge::None);
            }
            let mut resp = SyncGroupResponse::default();
            resp.error_code = GROUP_DENIED;
            Gate::Answer(ResponseKind::SyncGroup(resp))
        }
        RequestKind::Heartbeat(r) => {
            if check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                return Gate::Pass(RequestKind::Heartbeat(r), Merge::None);
            }
            let mut resp = HeartbeatResponse::default();
            resp.error_code = GROUP_DENIED;
            Gate::Answer(ResponseKind::Heartbeat(resp))
        }
        RequestKind::LeaveGroup(r) => {
            if check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                return Gate::Pass(RequestKind::LeaveGroup(r), Merge::None);
            }
            let mut resp = LeaveGroupResponse::default();
            resp.error_code = GROUP_DENIED;
            Gate::Answer(ResponseKind::LeaveGroup(resp))
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_ok = check.allows(Op::Read, Rt::Group, r.group_id.as_str());
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| group_ok && topic(Op::Read, t.name.as_str()));
            r.topics = ok;
            let code = if group_ok { TOPIC_DENIED } else { GROUP_DENIED };
            let denied =
                denied.into_iter().map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect(), code)).collect();
            Gate::Pass(RequestKind::OffsetCommit(r), Merge::OffsetCommit(denied))
        }
        RequestKind::OffsetFetch(r) => {
            let group = r.group_id.clone();
            Gate::Pass(RequestKind::OffsetFetch(r), Merge::OffsetFetch(group))
        }
        RequestKind::DescribeGroups(r) => Gate::Pass(RequestKind::DescribeGroups(r), Merge::Filter),
        RequestKind::ListGroups(r) => Gate::Pass(RequestKind::ListGroups(r), Merge::Filter),
        RequestKind::DeleteGroups(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.groups_names), |g| check.allows(Op::Delete, Rt::Group, g.as_str()));
            r.groups_names = ok;
            Gate::Pass(RequestKind::DeleteGroups(r), Merge::DeleteGroups(denied))
        }
        RequestKind::CreateTopics(mut r) => {
            let cluster_create = check.quietly(Op::Create, Rt::Cluster, CLUSTER_NAME);
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| cluster_create || topic(Op::Create, t.name.as_str()));
            r.topics = ok;
            Gate::Pass(RequestKind::CreateTopics(r), Merge::CreateTopics(denied.into_iter().map(|t| t.name).collect()))
        }
        RequestKind::DeleteTopics(mut r) => {
            let cluster = ctx.cluster();
            let name_of = |t: &delete_topics_request::DeleteTopicState| match &t.name {
                Some(n) => n.as_str().to_string(),
                None => cluster.topic_name(&t.topic_id).unwrap_or_default(),
            };
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| topic(Op::Delete, &name_of(t)));
            r.topics = ok;
            let (ok_names, denied_names) = split(std::mem::take(&mut r.topic_names), |n| topic(Op::Delete, n.as_str()));
            r.topic_names = ok_names;
            let denied = denied
                .into_iter()
                .map(|t| (t.name, t.topic_id))
                .chain(denied_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())))
                .collect();
            Gate::Pass(RequestKind::DeleteTopics(r), Merge::DeleteTopics(denied))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| topic(Op::Alter, t.name.as_str()));
            r.topics = ok;
            Gate::Pass(RequestKind::CreatePartitions(r), Merge::CreatePartitions(denied.into_iter().map(|t| t.name).collect()))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| config_allowed(check, Op::DescribeConfigs, c.resource_type, &c.resource_name));
            r.resources = ok;
            let denied = denied.into_iter().map(|c| (c.resource_type, c.resource_name.clone(), config_error(c.resource_type))).collect();
            Gate::Pass(RequestKind::DescribeConfigs(r), Merge::Configs(denied))
        }
        RequestKind::AlterConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| config_allowed(check, Op::AlterConfigs, c.resource_type, &c.resource_name));
            r.resources = ok;
            let denied = denied.into_iter().map(|c| (c.resource_type, c.resource_name.clone(), config_error(c.resource_type))).collect();
            Gate::Pass(RequestKind::AlterConfigs(r), Merge::Configs(denied))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| config_allowed(check, Op::AlterConfigs, c.resource_type, &c.resource_name));
            r.resources = ok;
            let denied = denied.into_iter().map(|c| (c.resource_type, c.resource_name.clone(), config_error(c.resource_type))).collect();
            Gate::Pass(RequestKind::IncrementalAlterConfigs(r), Merge::Configs(denied))
        }
        RequestKind::InitProducerId(r) => {
            let ok = match r.transactional_id.as_ref().filter(|id| !id.is_empty()) {
                Some(id) => check.allows(Op::Write, Rt::TransactionalId, id.as_str()),
                None => check.may_write_somewhere(),
            };
            if ok {
                return Gate::Pass(RequestKind::InitProducerId(r), Merge::None);
            }
            let mut resp = InitProducerIdResponse::default();
            resp.error_code = if r.transactional_id.is_some() { TXN_DENIED } else { CLUSTER_DENIED };
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
            Gate::Answer(ResponseKind::InitProducerId(resp))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let ok = r.transactions.iter().all(|t| {
                check.allows(Op::Write, Rt::TransactionalId, t.transactional_id.as_str())
                    && t.topics.iter().all(|tp| topic(Op::Write, tp.name.as_str()))
            }) && r.v3_and_below_transactional_id.is_empty()
                || (!r.v3_and_below_transactional_id.is_empty()
                    && check.allows(Op::Write, Rt::TransactionalId, r.v3_and_below_transactional_id.as_str())
                    && r.v3_and_below_topics.iter().all(|tp| topic(Op::Write, tp.name.as_str())));
            if ok {
                return Gate::Pass(RequestKind::AddPartitionsToTxn(r), Merge::None);
            }
            Gate::Answer(ResponseKind::AddPartitionsToTxn(add_partitions_denied(check, &r)))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !check.allows(Op::Write, Rt::TransactionalId, r.transactional_id.as_str()) {
                TXN_DENIED
            } else if !check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                GROUP_DENIED
            } else {
                return Gate::Pass(RequestKind::AddOffsetsToTxn(r), Merge::None);
            };
            let mut resp = AddOffsetsToTxnResponse::default();
            resp.error_code = code;
            Gate::Answer(ResponseKind::AddOffsetsToTxn(resp))
        }
        RequestKind::EndTxn(r) => {
            if check.allows(Op::Write, Rt::TransactionalId, r.transactional_id.as_str()) {
                return Gate::Pass(RequestKind::EndTxn(r), Merge::None);
            }
            let mut resp = EndTxnResponse::default();
            resp.error_code = TXN_DENIED;
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
            Gate::Answer(ResponseKind::EndTxn(resp))
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let code = if !check.allows(Op::Write, Rt::TransactionalId, r.transactional_id.as_str()) {
                Some(TXN_DENIED)
            } else if !check.allows(Op::Read, Rt::Group, r.group_id.as_str()) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| code.is_none() && topic(Op::Read, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect(), code.unwrap_or(TOPIC_DENIED)))
                .collect();
            Gate::Pass(RequestKind::TxnOffsetCommit(r), Merge::TxnOffsetCommit(denied))
        }
        RequestKind::DeleteRecords(r) => {
            if r.topics.iter().all(|t| topic(Op::Delete, t.name.as_str())) {
                return Gate::Pass(RequestKind::DeleteRecords(r), Merge::None);
            }
            let mut resp = DeleteRecordsResponse::default();
            resp.topics = r
                .topics
                .iter()
                .map(|t| {
                    let code = if check.quietly(Op::Delete, Rt::Topic, t.name.as_str()) { 0 } else { TOPIC_DENIED };
                    let mut tr = delete_records_response::DeleteRecordsTopicResult::default();
                    tr.name = t.name.clone();
                    tr.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut pr = delete_records_response::DeleteRecordsPartitionResult::default();
                            pr.partition_index = p.partition_index;
                            pr.low_watermark = -1;
                            // The whole request is refused: the others are not attempted.
                            pr.error_code = if code == 0 { ResponseError::InvalidRequest.code() } else { code };
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
            Gate::Answer(ResponseKind::DeleteRecords(resp))
        }
        // The cluster's own resource.
        RequestKind::CreateAcls(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::CreateAcls(r), Merge::None);
            }
            let mut resp = CreateAclsResponse::default();
            resp.results = r
                .creations
                .iter()
                .map(|_| {
                    let mut c = create_acls_response::AclCreationResult::default();
                    c.error_code = CLUSTER_DENIED;
                    c.error_message = cluster_denied_message();
                    c
                })
                .collect();
            Gate::Answer(ResponseKind::CreateAcls(resp))
        }
        RequestKind::DeleteAcls(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::DeleteAcls(r), Merge::None);
            }
            let mut resp = DeleteAclsResponse::default();
            resp.filter_results = r
                .filters
                .iter()
                .map(|_| {
                    let mut f = delete_acls_response::DeleteAclsFilterResult::default();
                    f.error_code = CLUSTER_DENIED;
                    f.error_message = cluster_denied_message();
                    f
                })
                .collect();
            Gate::Answer(ResponseKind::DeleteAcls(resp))
        }
        RequestKind::DescribeAcls(r) => {
            if check.cluster(Op::Describe) {
                return Gate::Pass(RequestKind::DescribeAcls(r), Merge::None);
            }
            let mut resp = DescribeAclsResponse::default();
            resp.error_code = CLUSTER_DENIED;
            resp.error_message = cluster_denied_message();
            Gate::Answer(ResponseKind::DescribeAcls(resp))
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            if check.cluster(Op::Describe) {
                return Gate::Pass(RequestKind::DescribeUserScramCredentials(r), Merge::None);
            }
            let mut resp = DescribeUserScramCredentialsResponse::default();
            resp.error_code = CLUSTER_DENIED;
            resp.error_message = cluster_denied_message();
            Gate::Answer(ResponseKind::DescribeUserScramCredentials(resp))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::AlterUserScramCredentials(r), Merge::None);
            }
            let mut resp = AlterUserScramCredentialsResponse::default();
            let users: std::collections::BTreeSet<String> = r
                .deletions
                .iter()
                .map(|d| d.name.as_str().to_string())
                .chain(r.upsertions.iter().map(|u| u.name.as_str().to_string()))
                .collect();
            resp.results = users
                .into_iter()
                .map(|u| {
                    let mut res = alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                    res.user = s(u);
                    res.error_code = CLUSTER_DENIED;
                    res.error_message = cluster_denied_message();
                    res
                })
                .collect();
            Gate::Answer(ResponseKind::AlterUserScramCredentials(resp))
        }
        RequestKind::DescribeClientQuotas(r) => {
            if check.cluster(Op::DescribeConfigs) {
                return Gate::Pass(RequestKind::DescribeClientQuotas(r), Merge::None);
            }
            let mut resp = DescribeClientQuotasResponse::default();
            resp.error_code = CLUSTER_DENIED;
            resp.error_message = cluster_denied_message();
            Gate::Answer(ResponseKind::DescribeClientQuotas(resp))
        }
        RequestKind::AlterClientQuotas(r) => {
            if check.cluster(Op::AlterConfigs) {
                return Gate::Pass(RequestKind::AlterClientQuotas(r), Merge::None);
            }
            let mut resp = AlterClientQuotasResponse::default();
            resp.entries = r
                .entries
                .iter()
                .map(|e| {
                    let mut out = alter_client_quotas_response::EntryData::default();
                    out.error_code = CLUSTER_DENIED;
                    out.error_message = cluster_denied_message();
                    out.entity = e
                        .entity
                        .iter()
                        .map(|x| {
                            let mut d = alter_client_quotas_response::EntityData::default();
                            d.entity_type = x.entity_type.clone();
                            d.entity_name = x.entity_name.clone();
                            d
                        })
                        .collect();
                    out
                })
                .collect();
            Gate::Answer(ResponseKind::AlterClientQuotas(resp))
        }
        RequestKind::ElectLeaders(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::ElectLeaders(r), Merge::None);
            }
            let mut resp = ElectLeadersResponse::default();
            if version >= 1 {
                resp.error_code = CLUSTER_DENIED;
            }
            resp.replica_election_results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    let mut er = elect_leaders_response::ReplicaElectionResult::default();
                    er.topic = t.topic.clone();
                    er.partition_result = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut pr = elect_leaders_response::PartitionResult::default();
                            pr.partition_id = *p;
                            pr.error_code = CLUSTER_DENIED;
                            pr.error_message = cluster_denied_message();
                            pr
                        })
                        .collect();
                    er
                })
                .collect();
            Gate::Answer(ResponseKind::ElectLeaders(resp))
        }
        RequestKind::AlterPartitionReassignments(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::AlterPartitionReassignments(r), Merge::None);
            }
            let mut resp = AlterPartitionReassignmentsResponse::default();
            resp.error_code = CLUSTER_DENIED;
            resp.error_message = cluster_denied_message();
            Gate::Answer(ResponseKind::AlterPartitionReassignments(resp))
        }
        RequestKind::ListPartitionReassignments(r) => {
            if check.cluster(Op::Describe) {
                return Gate::Pass(RequestKind::ListPartitionReassignments(r), Merge::None);
            }
            let mut resp = ListPartitionReassignmentsResponse::default();
            resp.error_code = CLUSTER_DENIED;
            resp.error_message = cluster_denied_message();
            Gate::Answer(ResponseKind::ListPartitionReassignments(resp))
        }
        RequestKind::DescribeLogDirs(r) => {
            if check.cluster(Op::Describe) {
                return Gate::Pass(RequestKind::DescribeLogDirs(r), Merge::None);
            }
            // Before v3 there is no error code: Kafka answers with no log dirs.
            let mut resp = DescribeLogDirsResponse::default();
            if version >= 3 {
                resp.error_code = CLUSTER_DENIED;
            }
            Gate::Answer(ResponseKind::DescribeLogDirs(resp))
        }
        RequestKind::AlterReplicaLogDirs(r) => {
            if check.cluster(Op::Alter) {
                return Gate::Pass(RequestKind::AlterReplicaLogDirs(r), Merge::None);
            }
            let mut resp = AlterReplicaLogDirsResponse::default();
            resp.results = r
                .dirs
                .iter()
                .flat_map(|d| d.topics.iter())
                .map(|t| {
                    let mut tr = alter_replica_log_dirs_response::AlterReplicaLogDirTopicResult::default();
                    tr.topic_name = t.name.clone();
                    tr.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut pr = alter_replica_log_dirs_response::AlterReplicaLogDirPartitionResult::default();
                            pr.partition_index = *p;
                            pr.error_code = CLUSTER_DENIED;
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
            Gate::Answer(ResponseKind::AlterReplicaLogDirs(resp))
        }
        RequestKind::WriteTxnMarkers(r) => {
            if check.cluster(Op::ClusterAction) {
                return Gate::Pass(RequestKind::WriteTxnMarkers(r), Merge::None);
            }
            let mut resp = WriteTxnMarkersResponse::default();
            resp.markers = r
                .markers
                .iter()
                .map(|m| {
                    let mut mr = write_txn_markers_response::WritableTxnMarkerResult::default();
                    mr.producer_id = m.producer_id;
                    mr.topics = m
                        .topics
                        .iter()
                        .map(|t| {
                            let mut tr = write_txn_markers_response::WritableTxnMarkerTopicResult::default();
                            tr.name = t.name.clone();
                            tr.partitions = t
                                .partition_indexes
                                .iter()
                                .map(|p| {
                                    let mut pr = write_txn_markers_response::WritableTxnMarkerPartitionResult::default();
                                    pr.partition_index = *p;
                                    pr.error_code = CLUSTER_DENIED;
                                    pr
                                })
                                .collect();
                            tr
                        })
                        .collect();
                    mr
                })
                .collect();
            Gate::Answer(ResponseKind::WriteTxnMarkers(resp))
        }
        RequestKind::DescribeProducers(r) => Gate::Pass(RequestKind::DescribeProducers(r), Merge::Filter),
        RequestKind::DescribeTransactions(r) => Gate::Pass(RequestKind::DescribeTransactions(r), Merge::Filter),
        RequestKind::ListTransactions(r) => Gate::Pass(RequestKind::ListTransactions(r), Merge::Filter),
        RequestKind::DescribeTopicPartitions(r) => Gate::Pass(RequestKind::DescribeTopicPartitions(r), Merge::Filter),
        RequestKind::OffsetDelete(r) => {
            if check.allows(Op::Delete, Rt::Group, r.group_id.as_str())
                && r.topics.iter().all(|t| topic(Op::Read, t.name.as_str()))
            {
                return Gate::Pass(RequestKind::OffsetDelete(r), Merge::None);
            }
            let mut resp = OffsetDeleteResponse::default();
            resp.error_code = if check.quietly(Op::Delete, Rt::Group, r.group_id.as_str()) { TOPIC_DENIED } else { GROUP_DENIED };
            Gate::Answer(ResponseKind::OffsetDelete(resp))
        }
        RequestKind::DescribeCluster(r) => {
            let merge = if r.include_cluster_authorized_operations { Merge::ClusterOperations } else { Merge::None };
            Gate::Pass(RequestKind::DescribeCluster(r), merge)
        }
        // ApiVersions and the SASL requests need no permission.
        other => Gate::Pass(other, Merge::None),
    }
}

fn config_allowed(check: &Check, op: Operation, resource_type: i8, name: &StrBytes) -> bool {
    match resource_type {
        2 => check.allows(op, ResourceType::Topic, name.as_str()),
        _ => check.allows(op, ResourceType::Cluster, CLUSTER_NAME),
    }
}

fn config_error(resource_type: i8) -> i16 {
    if resource_type == 2 { TOPIC_DENIED } else { CLUSTER_DENIED }
}

fn add_partitions_denied(check: &Check, r: &AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    use add_partitions_to_txn_response::*;
    let topic_results = |txn_ok: bool, topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic]| -> Vec<AddPartitionsToTxnTopicResult> {
        topics
            .iter()
            .map(|t| {
                let code = if !txn_ok {
                    TXN_DENIED
                } else if check.quietly(Operation::Write, ResourceType::Topic, t.name.as_str()) {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    TOPIC_DENIED
                };
                let mut tr = AddPartitionsToTxnTopicResult::default();
                tr.name = t.name.clone();
                tr.results_by_partition = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut pr = AddPartitionsToTxnPartitionResult::default();
                        pr.partition_index = *p;
                        pr.partition_error_code = code;
                        pr
                    })
                    .collect();
                tr
            })
            .collect()
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    if !r.v3_and_below_transactional_id.is_empty() {
        let ok = check.quietly(Operation::Write, ResourceType::TransactionalId, r.v3_and_below_transactional_id.as_str());
        resp.results_by_topic_v3_and_below = topic_results(ok, &r.v3_and_below_topics);
    } else {
        resp.results_by_transaction = r
            .transactions
            .iter()
            .map(|t| {
                let ok = check.quietly(Operation::Write, ResourceType::TransactionalId, t.transactional_id.as_str());
                let mut tr = AddPartitionsToTxnResult::default();
                tr.transactional_id = t.transactional_id.clone();
                tr.topic_results = topic_results(ok, &t.topics);
                tr
            })
            .collect();
    }
    resp
}

/// Puts back what [`before`] took out, and filters listings.
pub(super) fn after(check: &Check, version: i16, merge: Merge, response: &mut ResponseKind) {
    use Operation as Op;
    use ResourceType as Rt;
    match (merge, response) {
        (Merge::None, _) => {}
        (Merge::Produce(denied), ResponseKind::Produce(r)) => {
            for (name, partitions, code) in denied {
                let mut t = produce_response::TopicProduceResponse::default();
                t.name = name;
                t.partition_responses = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = produce_response::PartitionProduceResponse::default();
                        p.index = index;
                        p.error_code = code;
                        p.base_offset = -1;
                        p.log_append_time_ms = -1;
                        p.log_start_offset = -1;
                        p
                    })
                    .collect();
                r.responses.push(t);
            }
        }
        (Merge::Fetch(denied), ResponseKind::Fetch(r)) => {
            for (name, id, partitions) in denied {
                let mut t = fetch_response::FetchableTopicResponse::default();
                t.topic = name;
                t.topic_id = id;
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = fetch_response::PartitionData::default();
                        p.partition_index = index;
                        p.error_code = TOPIC_DENIED;
                        p.high_watermark = -1;
                        p.last_stable_offset = -1;
                        p.log_start_offset = -1;
                        p.records = Some(Default::default());
                        p
                    })
                    .collect();
                r.responses.push(t);
            }
        }
        (Merge::ListOffsets(denied), ResponseKind::ListOffsets(r)) => {
            for (name, partitions) in denied {
                let mut t = list_offsets_response::ListOffsetsTopicResponse::default();
                t.name = name;
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = list_offsets_response::ListOffsetsPartitionResponse::default();
                        p.partition_index = index;
                        p.error_code = TOPIC_DENIED;
                        p.timestamp = -1;
                        p.offset = -1;
                        p.leader_epoch = -1;
                        p
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        (Merge::LeaderEpoch(denied), ResponseKind::OffsetForLeaderEpoch(r)) => {
            for (name, partitions) in denied {
                let mut t = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
                t.topic = name;
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = offset_for_leader_epoch_response::EpochEndOffset::default();
                        p.partition = index;
                        p.error_code = TOPIC_DENIED;
                        p.leader_epoch = -1;
                        p.end_offset = -1;
                        p
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        (Merge::Metadata { denied, all, topic_ops, cluster_ops }, ResponseKind::Metadata(r)) => {
            if all {
                // Kafka lists only the topics the principal may describe.
                r.topics.retain(|t| t.name.as_ref().is_some_and(|n| check.quietly(Op::Describe, Rt::Topic, n.as_str())));
            }
            for name in denied {
                let mut t = metadata_response::MetadataResponseTopic::default();
                t.name = Some(name);
                t.error_code = TOPIC_DENIED;
                t.topic_authorized_operations = i32::MIN;
                r.topics.push(t);
            }
            if topic_ops {
                for t in r.topics.iter_mut().filter(|t| t.error_code != TOPIC_DENIED) {
                    if let Some(n) = &t.name {
                        t.topic_authorized_operations = check.authorized_operations(Rt::Topic, n.as_str());
                    }
                }
            }
            if cluster_ops {
                r.cluster_authorized_operations = check.authorized_operations(Rt::Cluster, CLUSTER_NAME);
            }
        }
        (Merge::ClusterOperations, ResponseKind::DescribeCluster(r)) if r.error_code == 0 => {
            r.cluster_authorized_operations = check.authorized_operations(Rt::Cluster, CLUSTER_NAME);
        }
        (Merge::OffsetCommit(denied), ResponseKind::OffsetCommit(r)) => {
            for (name, partitions, code) in denied {
                let mut t = offset_commit_response::OffsetCommitResponseTopic::default();
                t.name = name;
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = offset_commit_response::OffsetCommitResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = code;
                        p
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        (Merge::TxnOffsetCommit(denied), ResponseKind::TxnOffsetCommit(r)) => {
            for (name, partitions, code) in denied {
                let mut t = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                t.name = name;
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = code;
                        p
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        (Merge::OffsetFetch(group), ResponseKind::OffsetFetch(r)) => {
            let group_ok = |g: &str| check.allows(Op::Describe, Rt::Group, g);
            // v0-7: one group, at the top level; v8: per group.
            if version < 8 && !group_ok(group.as_str()) {
                r.topics.clear();
                if version >= 2 {
                    r.error_code = GROUP_DENIED;
                }
                return;
            }
            for g in r.groups.iter_mut() {
                if !group_ok(g.group_id.as_str()) {
                    g.error_code = GROUP_DENIED;
                    g.topics.clear();
                } else {
                    g.topics.retain(|t| check.quietly(Op::Describe, Rt::Topic, t.name.as_str()));
                }
            }
            r.topics.retain(|t| check.quietly(Op::Describe, Rt::Topic, t.name.as_str()));
        }
        (Merge::Filter, ResponseKind::DescribeGroups(r)) => {
            for g in r.groups.iter_mut() {
                if !check.allows(Op::Describe, Rt::Group, g.group_id.as_str()) {
                    *g = {
                        let mut d = describe_groups_response::DescribedGroup::default();
                        d.group_id = g.group_id.clone();
                        d.error_code = GROUP_DENIED;
                        d.authorized_operations = i32::MIN;
                        d
                    };
                } else if g.authorized_operations != i32::MIN {
                    g.authorized_operations = check.authorized_operations(Rt::Group, g.group_id.as_str());
                }
            }
        }
        (Merge::Filter, ResponseKind::ListGroups(r)) if !check.quietly(Op::Describe, Rt::Cluster, CLUSTER_NAME) => {
            r.groups.retain(|g| check.quietly(Op::Describe, Rt::Group, g.group_id.as_str()));
        }
        (Merge::Filter, ResponseKind::DescribeProducers(r)) => {
            for t in r.topics.iter_mut() {
                if !check.allows(Op::Read, Rt::Topic, t.name.as_str()) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                        p.active_producers.clear();
                    }
                }
            }
        }
        (Merge::Filter, ResponseKind::DescribeTransactions(r)) => {
            for t in r.transaction_states.iter_mut() {
                if !check.allows(Op::Describe, Rt::TransactionalId, t.transactional_id.as_str()) {
                    let id = t.transactional_id.clone();
                    *t = Default::default();
                    t.transactional_id = id;
                    t.error_code = TXN_DENIED;
                }
            }
        }
        (Merge::Filter, ResponseKind::ListTransactions(r)) => {
            r.transaction_states.retain(|t| check.quietly(Op::Describe, Rt::TransactionalId, t.transactional_id.as_str()));
        }
        (Merge::Filter, ResponseKind::DescribeTopicPartitions(r)) => {
            for t in r.topics.iter_mut() {
                if let Some(n) = t.name.clone() {
                    if !check.allows(Op::Describe, Rt::Topic, n.as_str()) {
                        *t = Default::default();
                        t.name = Some(n);
                        t.error_code = TOPIC_DENIED;
                    }
                }
            }
        }
        (Merge::DeleteGroups(denied), ResponseKind::DeleteGroups(r)) => {
            for g in denied {
                let mut d = delete_groups_response::DeletableGroupResult::default();
                d.group_id = g;
                d.error_code = GROUP_DENIED;
                r.results.push(d);
            }
        }
        (Merge::CreateTopics(denied), ResponseKind::CreateTopics(r)) => {
            for name in denied {
                let mut t = create_topics_response::CreatableTopicResult::default();
                t.name = name;
                t.error_code = TOPIC_DENIED;
                t.error_message = Some(s("Authorization failed."));
                t.num_partitions = -1;
                t.replication_factor = -1;
                r.topics.push(t);
            }
        }
        (Merge::DeleteTopics(denied), ResponseKind::DeleteTopics(r)) => {
            for (name, id) in denied {
                let mut t = delete_topics_response::DeletableTopicResult::default();
                t.name = name;
                t.topic_id = id;
                t.error_code = TOPIC_DENIED;
                if version >= 5 {
                    t.error_message = Some(s("Authorization failed."));
                }
                r.responses.push(t);
            }
        }
        (Merge::CreatePartitions(denied), ResponseKind::CreatePartitions(r)) => {
            for name in denied {
                let mut t = create_partitions_response::CreatePartitionsTopicResult::default();
                t.name = name;
                t.error_code = TOPIC_DENIED;
                t.error_message = Some(s("Authorization failed."));
                r.results.push(t);
            }
        }
        (Merge::Configs(denied), response) => {
            for (resource_type, name, code) in denied {
                let message = Some(s(if code == TOPIC_DENIED { "Authorization failed." } else { "Cluster authorization failed." }));
                match response {
                    ResponseKind::DescribeConfigs(r) => {
                        let mut x = describe_configs_response::DescribeConfigsResult::default();
                        x.resource_type = resource_type;
                        x.resource_name = name;
                        x.error_code = code;
                        x.error_message = message;
                        r.results.push(x);
                    }
                    ResponseKind::AlterConfigs(r) => {
                        let mut x = alter_configs_response::AlterConfigsResourceResponse::default();
                        x.resource_type = resource_type;
                        x.resource_name = name;
                        x.error_code = code;
                        x.error_message = message;
                        r.responses.push(x);
                    }
                    ResponseKind::IncrementalAlterConfigs(r) => {
                        let mut x = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                        x.resource_type = resource_type;
                        x.resource_name = name;
                        x.error_code = code;
                        x.error_message = message;
                        r.responses.push(x);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}
