//! Every advertised API at every advertised version, against an in-process broker
//! context (a real sled store, a synthetic metadata snapshot, no ZooKeeper): each
//! response must encode at the request's version, and the data paths must agree.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use tokio::sync::watch;
use tributary_common::ids::TopicId;
use tributary_common::znode::Endpoint;

use super::*;
use crate::log::{FlushPolicy, LogStore};
use crate::metadata::{BrokerInfo, PartitionMetadata, TopicMetadata};
use crate::record as batch;

struct Fixture {
    ctx: BrokerContext,
    topic_id: TopicId,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fixture(name: &str) -> Fixture {
    fixture_with_acls(name, None).await
}

/// A fixture whose broker has an authorizer with these ACLs (`None`: no authorizer).
async fn fixture_with_acls(name: &str, acls: Option<tributary_common::acl::AclMap>) -> Fixture {
    fixture_with(name, acls, |_| {}).await
}

/// A fixture whose metadata `edit` changes first.
async fn fixture_with(
    name: &str,
    acls: Option<tributary_common::acl::AclMap>,
    edit: impl FnOnce(&mut ClusterMetadata),
) -> Fixture {
    let dir = std::env::temp_dir().join(format!("tributary-api-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = LogStore::open(&dir, FlushPolicy { interval_ms: Some(1000), interval_messages: u64::MAX }).unwrap();
    let topic_id = TopicId::random();
    let mut meta = ClusterMetadata { cluster_id: "test-cluster".into(), ..Default::default() };
    meta.brokers.insert(
        1,
        BrokerInfo {
            endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 }],
            rack: None,
            epoch: 1,
        },
    );
    let mut topic = TopicMetadata { id: Some(topic_id), ..Default::default() };
    topic.partitions.insert(
        0,
        PartitionMetadata {
            replicas: vec![1],
            leader: 1,
            leader_epoch: 3,
            isr: vec![1],
            state_version: 0,
            controller_epoch: 1,
        },
    );
    meta.topics.insert("t".into(), topic);
    meta.topic_names.insert(topic_id, "t".into());
    let offsets_id = TopicId::random();
    let mut offsets = TopicMetadata { id: Some(offsets_id), ..Default::default() };
    offsets.partitions.insert(
        0,
        PartitionMetadata {
            replicas: vec![1],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1],
            state_version: 0,
            controller_epoch: 1,
        },
    );
    meta.topics.insert(tributary_common::topic::CONSUMER_OFFSETS.into(), offsets);
    meta.topic_names.insert(offsets_id, tributary_common::topic::CONSUMER_OFFSETS.into());
    edit(&mut meta);
    let mut config = BrokerConfig { broker_id: 1, ..BrokerConfig::default() };
    if let Some(acls) = acls {
        config.authorizer_class_name = Some("kafka.security.authorizer.AclAuthorizer".into());
        meta.acls = acls;
    }
    let replicas = ReplicaManager::new(1, store, crate::topic_config::TopicConfig::defaults(&config));
    replicas.reconcile(&meta);
    // Without timers, so that paused time does not jump while the storage thread works.
    while replicas.opening_count() > 0 {
        replicas.partitions_opened().await;
    }
    let groups = crate::group::GroupCoordinator::new(1, crate::group::GroupConfig::default(), replicas.clone());
    for (p, epoch, local) in groups.on_metadata(&meta) {
        groups.load(p, epoch, &local, now_ms());
    }
    let (_tx, rx) = watch::channel(Some(Arc::new(meta)));
    std::mem::forget(_tx);
    let txns = crate::txn::TransactionCoordinator::new(
        1,
        config.txn_config(),
        replicas.clone(),
        tokio::sync::mpsc::unbounded_channel().0,
    );
    let ctx = BrokerContext::new(
        config,
        replicas,
        groups,
        txns,
        rx,
        ZkHandle::new(1),
        Arc::new(crate::security::Security::plaintext()),
    );
    Fixture { ctx, topic_id, _dir: TempDir(dir) }
}

fn peer() -> Caller {
    Caller {
        peer: "127.0.0.1:50000".parse().unwrap(),
        listener: "PLAINTEXT".into(),
        principal: crate::security::Principal::anonymous(),
    }
}

fn name(n: &str) -> TopicName {
    TopicName(s(n))
}

fn produce(records: Bytes, acks: i16) -> RequestKind {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = name("t");
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 1000;
    r.topic_data = vec![t];
    RequestKind::Produce(r)
}

fn request_for(key: ApiKey, version: i16, topic_id: TopicId) -> Option<RequestKind> {
    Some(match key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::Metadata => {
            let mut t = MetadataRequestTopic::default();
            t.name = Some(name("t"));
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![t]);
            RequestKind::Metadata(r)
        }
        ApiKey::Produce => produce(batch::build(0, 1, &[(None, Some(b"x"))]), 1),
        ApiKey::Fetch => {
            let mut p = FetchPartition::default();
            p.partition_max_bytes = 1 << 20;
            let mut t = FetchTopic::default();
            if version >= 13 {
                t.topic_id = topic_id.0;
            } else {
                t.topic = name("t");
            }
            t.partitions = vec![p];
            let mut r = FetchRequest::default();
            r.max_bytes = 1 << 20;
            r.topics = vec![t];
            RequestKind::Fetch(r)
        }
        ApiKey::ListOffsets => {
            let mut p = ListOffsetsPartition::default();
            p.timestamp = -1;
            let mut t = ListOffsetsTopic::default();
            t.name = name("t");
            t.partitions = vec![p];
            let mut r = ListOffsetsRequest::default();
            r.topics = vec![t];
            RequestKind::ListOffsets(r)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut p = OffsetForLeaderPartition::default();
            p.leader_epoch = 3;
            let mut t = OffsetForLeaderTopic::default();
            t.topic = name("t");
            t.partitions = vec![p];
            let mut r = OffsetForLeaderEpochRequest::default();
            r.topics = vec![t];
            RequestKind::OffsetForLeaderEpoch(r)
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if version >= 4 {
                r.coordinator_keys = vec![s("g")];
            } else {
                r.key = s("g");
            }
            RequestKind::FindCoordinator(r)
        }
        ApiKey::DescribeConfigs => {
            let mut res = describe_configs_request::DescribeConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = s("t");
            let mut r = DescribeConfigsRequest::default();
            r.resources = vec![res];
            r.include_synonyms = true;
            RequestKind::DescribeConfigs(r)
        }
        ApiKey::DescribeCluster => {
            let mut r = DescribeClusterRequest::default();
            r.endpoint_type = 1;
            RequestKind::DescribeCluster(r)
        }
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        // Another broker's resource: refused before ZooKeeper is needed.
        ApiKey::AlterConfigs => alter_configs(4, "99", false),
        ApiKey::IncrementalAlterConfigs => alter_configs(4, "99", true),
        // Partitions that do not exist: answered from metadata, without ZooKeeper.
        ApiKey::DeleteRecords => {
            let mut p = delete_records_request::DeleteRecordsPartition::default();
            p.partition_index = 9;
            p.offset = 1;
            let mut t = delete_records_request::DeleteRecordsTopic::default();
            t.name = name("t");
            t.partitions = vec![p];
            let mut r = DeleteRecordsRequest::default();
            r.topics = vec![t];
            RequestKind::DeleteRecords(r)
        }
        ApiKey::DescribeProducers => {
            let mut t = describe_producers_request::TopicRequest::default();
            t.name = name("t");
            t.partition_indexes = vec![0, 9];
            let mut r = DescribeProducersRequest::default();
            r.topics = vec![t];
            RequestKind::DescribeProducers(r)
        }
        ApiKey::ElectLeaders => {
            let mut t = elect_leaders_request::TopicPartitions::default();
            t.topic = name("t");
            t.partitions = vec![9];
            let mut r = ElectLeadersRequest::default();
            r.topic_partitions = Some(vec![t]);
            RequestKind::ElectLeaders(r)
        }
        ApiKey::AlterPartitionReassignments => {
            let mut p = alter_partition_reassignments_request::ReassignablePartition::default();
            p.partition_index = 9;
            p.replicas = Some(vec![BrokerId(1)]);
            let mut t = alter_partition_reassignments_request::ReassignableTopic::default();
            t.name = name("t");
            t.partitions = vec![p];
            let mut r = AlterPartitionReassignmentsRequest::default();
            r.topics = vec![t];
            RequestKind::AlterPartitionReassignments(r)
        }
        ApiKey::AlterReplicaLogDirs => {
            let mut t = alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default();
            t.name = name("t");
            t.partitions = vec![0];
            let mut d = alter_replica_log_dirs_request::AlterReplicaLogDir::default();
            d.path = s("/no/such/dir");
            d.topics = vec![t];
            let mut r = AlterReplicaLogDirsRequest::default();
            r.dirs = vec![d];
            RequestKind::AlterReplicaLogDirs(r)
        }
        ApiKey::ListPartitionReassignments => {
            RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default())
        }
        ApiKey::CreateAcls => {
            let mut r = CreateAclsRequest::default();
            r.creations = vec![create_acls_request::AclCreation::default()];
            RequestKind::CreateAcls(r)
        }
        ApiKey::DeleteAcls => {
            let mut r = DeleteAclsRequest::default();
            r.filters = vec![delete_acls_request::DeleteAclsFilter::default()];
            RequestKind::DeleteAcls(r)
        }
        // Admin writes need ZooKeeper; validate_only exercises the same validation.
        ApiKey::CreateTopics => {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = name("new-topic");
            t.num_partitions = 2;
            t.replication_factor = 1;
            let mut r = CreateTopicsRequest::default();
            r.topics = vec![t];
            r.validate_only = true;
            RequestKind::CreateTopics(r)
        }
        ApiKey::CreatePartitions => {
            let mut t = create_partitions_request::CreatePartitionsTopic::default();
            t.name = name("t");
            t.count = 3;
            let mut r = CreatePartitionsRequest::default();
            r.topics = vec![t];
            r.validate_only = true;
            RequestKind::CreatePartitions(r)
        }
        ApiKey::DeleteTopics => {
            let mut r = DeleteTopicsRequest::default();
            if version >= 6 {
                let mut t = delete_topics_request::DeleteTopicState::default();
                t.name = Some(name("missing"));
                r.topics = vec![t];
            } else {
                r.topic_names = vec![name("missing")];
            }
            RequestKind::DeleteTopics(r)
        }
        ApiKey::InitProducerId => return None, // needs ZooKeeper for its id block
        // Group calls for an unknown member: answered at once, at every version.
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default();
            r.group_id = GroupId(s("g"));
            r.member_id = s("nobody");
            r.session_timeout_ms = 10_000;
            r.rebalance_timeout_ms = 10_000;
            r.protocol_type = s("consumer");
            let mut p = join_group_request::JoinGroupRequestProtocol::default();
            p.name = s("range");
            r.protocols = vec![p];
            RequestKind::JoinGroup(r)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default();
            r.group_id = GroupId(s("g"));
            r.member_id = s("nobody");
            RequestKind::SyncGroup(r)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = GroupId(s("g"));
            r.member_id = s("nobody");
            RequestKind::Heartbeat(r)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = GroupId(s("g"));
            if version >= 3 {
                let mut m = leave_group_request::MemberIdentity::default();
                m.member_id = s("nobody");
                r.members = vec![m];
            } else {
                r.member_id = s("nobody");
            }
            RequestKind::LeaveGroup(r)
        }
        ApiKey::OffsetCommit => {
            let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
            p.committed_offset = 5;
            p.committed_metadata = Some(s("meta"));
            let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
            t.name = name("t");
            t.partitions = vec![p];
            let mut r = OffsetCommitRequest::default();
            r.group_id = GroupId(s("simple"));
            r.generation_id_or_member_epoch = -1;
            r.topics = vec![t];
            RequestKind::OffsetCommit(r)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if version >= 8 {
                let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                g.group_id = GroupId(s("simple"));
                g.topics = None;
                r.groups = vec![g];
            } else {
                r.group_id = GroupId(s("simple"));
                let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
                t.name = name("t");
                t.partition_indexes = vec![0, 7];
                r.topics = Some(vec![t]);
            }
            RequestKind::OffsetFetch(r)
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![GroupId(s("simple")), GroupId(s("nope"))];
            RequestKind::DescribeGroups(r)
        }
        ApiKey::DeleteGroups => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![GroupId(s("nope"))];
            RequestKind::DeleteGroups(r)
        }
        ApiKey::OffsetDelete => {
            let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
            p.partition_index = 0;
            let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
            t.name = name("t");
            t.partitions = vec![p];
            let mut r = OffsetDeleteRequest::default();
            r.group_id = GroupId(s("nope"));
            r.topics = vec![t];
            RequestKind::OffsetDelete(r)
        }
        _ => return None,
    })
}

/// One (Incremental)AlterConfigs request setting log.retention.ms=1 on a resource.
fn alter_configs(resource_type: i8, resource_name: &str, incremental: bool) -> RequestKind {
    if incremental {
        let mut c = incremental_alter_configs_request::AlterableConfig::default();
        c.name = s("log.retention.ms");
        c.value = Some(s("1"));
        let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = s(resource_name);
        res.configs = vec![c];
        let mut r = IncrementalAlterConfigsRequest::default();
        r.resources = vec![res];
        RequestKind::IncrementalAlterConfigs(r)
    } else {
        let mut c = alter_configs_request::AlterableConfig::default();
        c.name = s("log.retention.ms");
        c.value = Some(s("1"));
        let mut res = alter_configs_request::AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = s(resource_name);
        res.configs = vec![c];
        let mut r = AlterConfigsRequest::default();
        r.resources = vec![res];
        RequestKind::AlterConfigs(r)
    }
}

#[tokio::test]
async fn config_changes_for_other_brokers_and_unknown_types_are_refused_as_kafka_refuses_them() {
    let f = fixture("alter-configs").await;
    // (resource type, name, incremental, error code, words in the message)
    let cases: &[(i8, &str, bool, ResponseError, &str)] = &[
        (4, "99", true, ResponseError::InvalidRequest, "Unexpected broker id, expected 1, but received 99"),
        (4, "99", false, ResponseError::InvalidRequest, "Unexpected broker id"),
        (4, "one", true, ResponseError::InvalidRequest, "Broker id must be an integer, but it is: one"),
        (8, "2", true, ResponseError::InvalidRequest, "Unexpected broker id"),
        (8, "1", false, ResponseError::InvalidRequest, "only supported for topics and brokers"),
        (16, "x", true, ResponseError::InvalidRequest, "only supported for topics"),
        (8, "1", true, ResponseError::InvalidConfig, "Logger log.retention.ms does not exist"),
        (2, "no-such-topic", true, ResponseError::UnknownTopicOrPartition, "does not exist"),
    ];
    for (resource_type, resource_name, incremental, code, words) in cases {
        let request = alter_configs(*resource_type, resource_name, *incremental);
        let (got_code, message) = match handle(&f.ctx, &peer(), &header(ApiKey::AlterConfigs, 1), request).await {
            Ok(Some(ResponseKind::AlterConfigs(r))) => {
                (r.responses[0].error_code, r.responses[0].error_message.clone())
            }
            Ok(Some(ResponseKind::IncrementalAlterConfigs(r))) => {
                (r.responses[0].error_code, r.responses[0].error_message.clone())
            }
            other => panic!("{other:?}"),
        };
        let message = message.map(|m| m.to_string()).unwrap_or_default();
        assert_eq!(got_code, code.code(), "{resource_type} {resource_name}: {message}");
        assert!(message.contains(words), "{resource_type} {resource_name}: {message}");
    }
    // The same resource twice in one request: both refused.
    let RequestKind::IncrementalAlterConfigs(mut twice) = alter_configs(4, "1", true) else { unreachable!() };
    twice.resources.push(twice.resources[0].clone());
    let Ok(Some(ResponseKind::IncrementalAlterConfigs(r))) = handle(
        &f.ctx,
        &peer(),
        &header(ApiKey::IncrementalAlterConfigs, 1),
        RequestKind::IncrementalAlterConfigs(twice),
    )
    .await
    else {
        panic!()
    };
    assert!(r.responses.iter().all(|x| x.error_code == ResponseError::InvalidRequest.code()), "{r:?}");
}

fn header(key: ApiKey, version: i16) -> RequestHeader {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 1;
    h
}

#[tokio::test]
async fn every_advertised_api_answers_at_every_advertised_version() {
    let f = fixture("versions").await;
    for (key, min, max) in SUPPORTED {
        for version in *min..=*max {
            let Some(request) = request_for(*key, version, f.topic_id) else { continue };
            let h = header(*key, version);
            let mut response = handle(&f.ctx, &peer(), &h, request)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{key:?} v{version} gave no response"));
            crate::net::codec::encode_response(&h, &mut response).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        }
    }
}

/// Runs a group request to its answer, ticking the group clock past the initial rebalance
/// delay (3 s) but inside the session timeout (10 s) while it is parked.
async fn answered(ctx: &BrokerContext, key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let h = header(key, version);
    let caller = peer();
    let call = handle(ctx, &caller, &h, request);
    tokio::pin!(call);
    let mut response = loop {
        tokio::select! {
            biased;
            r = &mut call => break r.unwrap().unwrap(),
            () = tokio::task::yield_now() => ctx.groups.tick(now_ms() + 5_000),
        }
    };
    crate::net::codec::encode_response(&h, &mut response).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    response
}

/// The happy path the unknown-member requests above do not reach: at every advertised
/// version, a member joins (asked for a member id first from v4), leads the group, syncs an
/// assignment and gets it back; each answer encodes at its version.
#[tokio::test]
async fn a_successful_join_and_sync_encode_at_every_advertised_version() {
    let f = fixture("join-sync").await;
    let range = |key: ApiKey| SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|(_, lo, hi)| *lo..=*hi).unwrap();
    let sync_versions = range(ApiKey::SyncGroup);
    for version in range(ApiKey::JoinGroup) {
        let group = GroupId(s(format!("happy-v{version}")));
        let join = |member_id: &str| {
            let mut r = JoinGroupRequest::default();
            r.group_id = group.clone();
            r.member_id = s(member_id);
            r.session_timeout_ms = 10_000;
            r.rebalance_timeout_ms = 10_000;
            r.protocol_type = s("consumer");
            let mut p = join_group_request::JoinGroupRequestProtocol::default();
            p.name = s("range");
            p.metadata = Bytes::from_static(b"subscription");
            r.protocols = vec![p];
            RequestKind::JoinGroup(r)
        };
        let ResponseKind::JoinGroup(mut joined) = answered(&f.ctx, ApiKey::JoinGroup, version, join("")).await else {
            panic!("JoinGroup v{version}: not a JoinGroup response")
        };
        if version >= 4 {
            assert_eq!(joined.error_code, 79, "JoinGroup v{version}: MEMBER_ID_REQUIRED first");
            let member = joined.member_id.to_string();
            let ResponseKind::JoinGroup(again) = answered(&f.ctx, ApiKey::JoinGroup, version, join(&member)).await
            else {
                panic!()
            };
            joined = again;
        }
        assert_eq!(joined.error_code, 0, "JoinGroup v{version}");
        assert_eq!(joined.leader, joined.member_id, "JoinGroup v{version}: the only member leads");
        assert_eq!(joined.members.len(), 1, "JoinGroup v{version}: the leader sees the members");
        assert_eq!(joined.members[0].metadata.as_ref(), b"subscription");

        let sync_version = version.clamp(*sync_versions.start(), *sync_versions.end());
        let mut r = SyncGroupRequest::default();
        r.group_id = group.clone();
        r.member_id = joined.member_id.clone();
        r.generation_id = joined.generation_id;
        r.protocol_type = Some(s("consumer"));
        r.protocol_name = joined.protocol_name.clone();
        let mut a = sync_group_request::SyncGroupRequestAssignment::default();
        a.member_id = joined.member_id.clone();
        a.assignment = Bytes::from_static(b"assignment");
        r.assignments = vec![a];
        let ResponseKind::SyncGroup(synced) =
            answered(&f.ctx, ApiKey::SyncGroup, sync_version, RequestKind::SyncGroup(r)).await
        else {
            panic!()
        };
        assert_eq!(synced.error_code, 0, "SyncGroup v{sync_version} after JoinGroup v{version}");
        assert_eq!(synced.assignment.as_ref(), b"assignment");
    }
}

/// What Kafka UI and the Java AdminClient ask first: the cluster on this listener, the
/// broker's settings with their sources and Kafka's version keys, and ACLs (answered as a
/// broker without an authorizer answers).
#[tokio::test]
async fn cluster_description_configs_and_acls_answer_as_kafka_does() {
    let mut f = fixture("cluster").await;
    let Ok(Some(ResponseKind::DescribeCluster(c))) = handle(
        &f.ctx,
        &peer(),
        &header(ApiKey::DescribeCluster, 1),
        request_for(ApiKey::DescribeCluster, 1, f.topic_id).unwrap(),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(c.error_code, 0);
    assert_eq!(c.brokers.iter().map(|b| (b.broker_id.0, b.port)).collect::<Vec<_>>(), vec![(1, 9092)]);
    let mut controllers = DescribeClusterRequest::default();
    controllers.endpoint_type = 2;
    let Ok(Some(ResponseKind::DescribeCluster(c))) =
        handle(&f.ctx, &peer(), &header(ApiKey::DescribeCluster, 1), RequestKind::DescribeCluster(controllers)).await
    else {
        panic!()
    };
    assert_eq!(c.error_code, ResponseError::UnsupportedEndpointType.code());

    let describe = |names: &[&str]| {
        let mut res = describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = 4;
        res.resource_name = s("1");
        res.configuration_keys = Some(names.iter().map(|n| s(*n)).collect());
        let mut r = DescribeConfigsRequest::default();
        r.resources = vec![res];
        r.include_synonyms = true;
        RequestKind::DescribeConfigs(r)
    };
    // (key, expected value, expected source): 5 DEFAULT_CONFIG, 4 STATIC_BROKER_CONFIG.
    f.ctx.config.given.insert("num.partitions");
    f.ctx.config.num_partitions = 3;
    f.ctx.effective =
        std::sync::RwLock::new(Arc::new(crate::dynamic_config::EffectiveConfig::from_static(f.ctx.config.clone())));
    let Ok(Some(ResponseKind::DescribeConfigs(r))) = handle(
        &f.ctx,
        &peer(),
        &header(ApiKey::DescribeConfigs, 4),
        describe(&["inter.broker.protocol.version", "log.retention.ms", "num.partitions"]),
    )
    .await
    else {
        panic!()
    };
    let got: Vec<(String, String, i8)> = r.results[0]
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string(), c.config_source))
        .collect();
    assert_eq!(
        got,
        vec![
            ("num.partitions".into(), "3".into(), 4),
            ("log.retention.ms".into(), "604800000".into(), 5),
            ("inter.broker.protocol.version".into(), "3.9-IV0".into(), 5),
        ]
    );
    assert!(r.results[0].configs.iter().all(|c| c.synonyms.len() == 1), "each setting is its own synonym");

    f.ctx.config.data_dir = std::env::temp_dir();
    let mut all_dirs = DescribeLogDirsRequest::default();
    all_dirs.topics = None;
    let Ok(Some(ResponseKind::DescribeLogDirs(dirs))) =
        handle(&f.ctx, &peer(), &header(ApiKey::DescribeLogDirs, 4), RequestKind::DescribeLogDirs(all_dirs)).await
    else {
        panic!()
    };
    let dir = &dirs.results[0];
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0, "{dir:?}");
    let topics: Vec<&str> = dir.topics.iter().map(|t| t.name.0.as_str()).collect();
    assert!(topics.contains(&"t"), "every hosted partition is listed: {topics:?}");

    let Ok(Some(ResponseKind::DescribeAcls(acls))) = handle(
        &f.ctx,
        &peer(),
        &header(ApiKey::DescribeAcls, 3),
        RequestKind::DescribeAcls(DescribeAclsRequest::default()),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(acls.error_code, ResponseError::SecurityDisabled.code());
}

#[tokio::test]
async fn produce_then_fetch_returns_the_batch_with_assigned_offsets() {
    let f = fixture("produce-fetch").await;
    for expected_base in [0, 2] {
        let records = batch::build(0, 1, &[(Some(b"k"), Some(b"a")), (None, Some(b"b"))]);
        let Ok(Some(ResponseKind::Produce(r))) =
            handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), produce(records, -1)).await
        else {
            panic!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, expected_base));
    }
    let Some(RequestKind::Fetch(fetch)) = request_for(ApiKey::Fetch, 12, f.topic_id) else { panic!() };
    let Ok(Some(ResponseKind::Fetch(r))) =
        handle(&f.ctx, &peer(), &header(ApiKey::Fetch, 12), RequestKind::Fetch(fetch)).await
    else {
        panic!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark, p.last_stable_offset), (0, 4, 4));
    let records = p.records.clone().unwrap();
    let batches = batch::validate(&records, usize::MAX).unwrap();
    assert_eq!(
        batches.iter().map(|(h, _)| (h.base_offset, h.partition_leader_epoch)).collect::<Vec<_>>(),
        vec![(0, 3), (2, 3)]
    );
}

#[tokio::test]
async fn produce_errors_carry_kafkas_codes_and_write_nothing() {
    let f = fixture("produce-errors").await;
    let good = batch::build(0, 1, &[(None, Some(b"x"))]);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let cases: Vec<(RequestKind, i16)> = vec![
        (produce(Bytes::from(corrupt), 1), 2),             // CORRUPT_MESSAGE
        (produce(good.clone(), 5), 21),                    // INVALID_REQUIRED_ACKS
        (produce(Bytes::from(vec![0u8; 700_000]), 1), 87), // garbage (magic 0): INVALID_RECORD
    ];
    for (request, code) in cases {
        let Ok(Some(ResponseKind::Produce(r))) = handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), request).await
        else {
            panic!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, code);
    }
    // Too large for message.max.bytes.
    let big_value = vec![7u8; 2_000_000];
    let big = batch::build(0, 1, &[(None, Some(&big_value))]);
    let Ok(Some(ResponseKind::Produce(r))) =
        handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), produce(big, 1)).await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    // Unknown topic and partition.
    let mut req = produce(good.clone(), 1);
    if let RequestKind::Produce(p) = &mut req {
        p.topic_data[0].name = name("nope");
    }
    let Ok(Some(ResponseKind::Produce(r))) = handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), req).await else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    assert_eq!(
        f.ctx.replicas.get(&tributary_common::ids::TopicPartition::new("t", 0)).unwrap().log().offsets().log_end_offset,
        0,
        "nothing was written"
    );
    // acks=0 sends no response at all.
    assert!(handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), produce(good, 0)).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_parked_fetch_answers_as_soon_as_data_arrives() {
    let f = Arc::new(fixture("long-poll").await);
    let Some(RequestKind::Fetch(mut fetch)) = request_for(ApiKey::Fetch, 12, f.topic_id) else { panic!() };
    fetch.min_bytes = 1;
    fetch.max_wait_ms = 60_000;
    let waiter = {
        let f = f.clone();
        tokio::spawn(
            async move { handle(&f.ctx, &peer(), &header(ApiKey::Fetch, 12), RequestKind::Fetch(fetch)).await },
        )
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "nothing to read yet: the fetch parks");
    let started = tokio::time::Instant::now();
    handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), produce(batch::build(0, 1, &[(None, Some(b"x"))]), 1))
        .await
        .unwrap();
    let Ok(Some(ResponseKind::Fetch(r))) = waiter.await.unwrap() else { panic!() };
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "answered at the append, not at max_wait_ms");
    assert!(!r.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn metadata_reports_leaders_and_unknown_topics() {
    let f = fixture("metadata").await;
    let mut unknown = MetadataRequestTopic::default();
    unknown.name = Some(name("absent"));
    let mut bad = MetadataRequestTopic::default();
    bad.name = Some(name("bad name!"));
    let mut known = MetadataRequestTopic::default();
    known.name = Some(name("t"));
    let mut r = MetadataRequest::default();
    r.topics = Some(vec![known, unknown, bad]);
    r.allow_auto_topic_creation = false;
    let Ok(Some(ResponseKind::Metadata(m))) =
        handle(&f.ctx, &peer(), &header(ApiKey::Metadata, 12), RequestKind::Metadata(r)).await
    else {
        panic!()
    };
    assert_eq!(m.controller_id.0, 1);
    let codes: Vec<i16> = m.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 3, 17]);
    assert_eq!(m.topics[0].partitions[0].leader_epoch, 3);
    assert_eq!(m.topics[0].topic_id, f.topic_id.0);
}

#[tokio::test]
async fn list_offsets_and_epochs_agree_with_the_log() {
    let f = fixture("offsets").await;
    handle(
        &f.ctx,
        &peer(),
        &header(ApiKey::Produce, 9),
        produce(batch::build(0, 1, &[(None, Some(b"x")), (None, Some(b"y"))]), 1),
    )
    .await
    .unwrap();
    for (timestamp, expected) in [(-1i64, 2i64), (-2, 0)] {
        let Some(RequestKind::ListOffsets(mut r)) = request_for(ApiKey::ListOffsets, 7, f.topic_id) else { panic!() };
        r.topics[0].partitions[0].timestamp = timestamp;
        let Ok(Some(ResponseKind::ListOffsets(resp))) =
            handle(&f.ctx, &peer(), &header(ApiKey::ListOffsets, 7), RequestKind::ListOffsets(r)).await
        else {
            panic!()
        };
        assert_eq!(resp.topics[0].partitions[0].offset, expected, "timestamp {timestamp}");
    }
    let Some(req) = request_for(ApiKey::OffsetForLeaderEpoch, 4, f.topic_id) else { panic!() };
    let Ok(Some(ResponseKind::OffsetForLeaderEpoch(r))) =
        handle(&f.ctx, &peer(), &header(ApiKey::OffsetForLeaderEpoch, 4), req).await
    else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 3, 2));
}

#[tokio::test]
async fn committed_offsets_are_replayed_by_a_new_coordinator() {
    let f = fixture("offsets-replay").await;
    let Some(RequestKind::OffsetCommit(commit)) = request_for(ApiKey::OffsetCommit, 8, f.topic_id) else { panic!() };
    let Ok(Some(ResponseKind::OffsetCommit(r))) =
        handle(&f.ctx, &peer(), &header(ApiKey::OffsetCommit, 8), RequestKind::OffsetCommit(commit)).await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // A coordinator taking the partition over (a restart, or a new leader) replays it.
    let fresh = crate::group::GroupCoordinator::new(1, crate::group::GroupConfig::default(), f.ctx.replicas.clone());
    for (p, epoch, local) in fresh.on_metadata(&f.ctx.cluster()) {
        fresh.load(p, epoch, &local, now_ms());
    }
    let fetched = fresh.fetch_offsets("simple", None).unwrap();
    assert_eq!(fetched.len(), 1);
    let (topic, parts) = &fetched[0];
    assert_eq!(topic, "t");
    let (partition, value) = &parts[0];
    assert_eq!(*partition, 0);
    let value = value.as_ref().expect("the offset survived");
    assert_eq!((value.offset, value.metadata.as_str()), (5, "meta"));
    // An unknown group has no offsets, not an error.
    assert_eq!(fresh.fetch_offsets("other", Some(vec![("t".into(), vec![0])])).unwrap()[0].1[0].1, None);
}

#[tokio::test]
async fn the_authorizer_takes_out_what_a_principal_may_not_touch_and_answers_for_it() {
    use tributary_common::acl::{AclEntry, AclMap, Operation, PatternType, Permission, ResourcePattern, ResourceType};
    let mut acls = AclMap::new();
    acls.insert(
        ResourcePattern { resource_type: ResourceType::Topic, name: "t".into(), pattern_type: PatternType::Literal },
        vec![AclEntry { principal: "User:alice".into(), host: "*".into(), operation: Operation::Write, permission: Permission::Allow }],
    );
    let f = fixture_with_acls("authz", Some(acls)).await;
    let alice = Caller { principal: crate::security::Principal::user("alice"), ..peer() };
    // Produce to t (allowed) and u (no ACL): t is written, u answered TOPIC_AUTHORIZATION_FAILED.
    let RequestKind::Produce(mut request) = produce(batch::build(0, 1, &[(None, Some(b"x"))]), 1) else { unreachable!() };
    let mut other = request.topic_data[0].clone();
    other.name = name("u");
    request.topic_data.push(other);
    let Ok(Some(ResponseKind::Produce(r))) = handle(&f.ctx, &alice, &header(ApiKey::Produce, 9), RequestKind::Produce(request)).await else {
        panic!("no produce response")
    };
    let codes: Vec<(String, i16)> =
        r.responses.iter().map(|t| (t.name.as_str().to_string(), t.partition_responses[0].error_code)).collect();
    assert_eq!(codes, vec![("t".to_string(), 0), ("u".to_string(), ResponseError::TopicAuthorizationFailed.code())]);
    // Metadata for every topic lists only what alice may describe (WRITE implies DESCRIBE).
    let mut m = MetadataRequest::default();
    m.topics = None;
    let Ok(Some(ResponseKind::Metadata(md))) = handle(&f.ctx, &alice, &header(ApiKey::Metadata, 12), RequestKind::Metadata(m)).await else {
        panic!("no metadata response")
    };
    let names: Vec<String> = md.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_string())).collect();
    assert_eq!(names, vec!["t".to_string()]);
    // ANONYMOUS has no ACL at all: its join is refused as a whole.
    let mut j = JoinGroupRequest::default();
    j.group_id = GroupId(s("g"));
    j.protocol_type = s("consumer");
    let Ok(Some(ResponseKind::JoinGroup(jr))) = handle(&f.ctx, &peer(), &header(ApiKey::JoinGroup, 5), RequestKind::JoinGroup(j)).await else {
        panic!("no join response")
    };
    assert_eq!(jr.error_code, ResponseError::GroupAuthorizationFailed.code());
}

/// Authorized operations when a client asks for them (Metadata, DescribeGroups,
/// DescribeCluster): every operation without an authorizer, as Kafka answers; with one,
/// the principal's, and 0 on the cluster without DESCRIBE on it.
#[tokio::test]
async fn authorized_operations_are_answered_when_asked() {
    use tributary_common::acl::{AclEntry, AclMap, Operation as Op, PatternType, Permission, ResourcePattern, ResourceType as Rt};
    let bits = |ops: &[Op]| ops.iter().fold(0i32, |b, op| b | (1 << op.code()));
    let open = fixture("ops-open").await;
    let all_topic = bits(&[Op::Read, Op::Write, Op::Create, Op::Delete, Op::Alter, Op::Describe, Op::DescribeConfigs, Op::AlterConfigs]);
    let all_cluster = bits(&[Op::Create, Op::ClusterAction, Op::DescribeConfigs, Op::AlterConfigs, Op::IdempotentWrite, Op::Alter, Op::Describe]);
    let all_group = bits(&[Op::Read, Op::Describe, Op::Delete]);
    assert_eq!(authorized_ops(&open.ctx, &peer()).await, (all_topic, all_cluster, all_group, all_cluster));

    let allow = |op| AclEntry { principal: "User:alice".into(), host: "*".into(), operation: op, permission: Permission::Allow };
    let pattern = |rt, n: &str| ResourcePattern { resource_type: rt, name: n.into(), pattern_type: PatternType::Literal };
    let mut acls = AclMap::new();
    acls.insert(pattern(Rt::Topic, "t"), vec![allow(Op::Write)]);
    acls.insert(pattern(Rt::Group, "g"), vec![allow(Op::Read)]);
    acls.insert(pattern(Rt::Cluster, "kafka-cluster"), vec![allow(Op::IdempotentWrite)]);
    let guarded = fixture_with_acls("ops-acl", Some(acls)).await;
    let alice = Caller { principal: crate::security::Principal::user("alice"), ..peer() };
    // WRITE implies DESCRIBE on the topic, READ implies DESCRIBE on the group; on the
    // cluster IDEMPOTENT_WRITE alone is not DESCRIBE, so Kafka reports 0 there.
    assert_eq!(
        authorized_ops(&guarded.ctx, &alice).await,
        (bits(&[Op::Write, Op::Describe]), 0, bits(&[Op::Read, Op::Describe]), 0)
    );
}

/// (Metadata topic, Metadata cluster, DescribeGroups, DescribeCluster) authorized operations
/// for `caller`, asked for topic `t`, group `g` and the cluster.
async fn authorized_ops(ctx: &BrokerContext, caller: &Caller) -> (i32, i32, i32, i32) {
    let mut m = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name("t"));
    m.topics = Some(vec![t]);
    m.include_topic_authorized_operations = true;
    m.include_cluster_authorized_operations = true;
    let Ok(Some(ResponseKind::Metadata(md))) = handle(ctx, caller, &header(ApiKey::Metadata, 8), RequestKind::Metadata(m)).await else {
        panic!("no metadata response")
    };
    let mut g = DescribeGroupsRequest::default();
    g.groups = vec![GroupId(s("g"))];
    g.include_authorized_operations = true;
    let Ok(Some(ResponseKind::DescribeGroups(dg))) = handle(ctx, caller, &header(ApiKey::DescribeGroups, 5), RequestKind::DescribeGroups(g)).await else {
        panic!("no describe groups response")
    };
    let mut c = DescribeClusterRequest::default();
    c.include_cluster_authorized_operations = true;
    let Ok(Some(ResponseKind::DescribeCluster(dc))) = handle(ctx, caller, &header(ApiKey::DescribeCluster, 1), RequestKind::DescribeCluster(c)).await else {
        panic!("no describe cluster response")
    };
    (md.topics[0].topic_authorized_operations, md.cluster_authorized_operations, dg.groups[0].authorized_operations, dc.cluster_authorized_operations)
}

#[tokio::test]
async fn a_fetch_session_answers_only_what_changed_and_refuses_replays() {
    let f = fixture("fetch-session").await;
    for version in [12, 13] {
        let fetch = |session_id: i32, epoch: i32, with_partition: bool, offset: i64| {
            let Some(RequestKind::Fetch(mut r)) = request_for(ApiKey::Fetch, version, f.topic_id) else { panic!() };
            r.session_id = session_id;
            r.session_epoch = epoch;
            r.max_wait_ms = 0;
            r.topics[0].partitions[0].fetch_offset = offset;
            if !with_partition {
                r.topics.clear();
            }
            RequestKind::Fetch(r)
        };
        let run = |request: RequestKind| {
            let ctx = &f.ctx;
            async move {
                let Ok(Some(ResponseKind::Fetch(r))) = handle(ctx, &peer(), &header(ApiKey::Fetch, version), request).await
                else {
                    panic!()
                };
                r
            }
        };
        let partitions = |r: &FetchResponse| r.responses.iter().map(|t| t.partitions.len()).sum::<usize>();
        let end = |r: &FetchResponse| r.responses[0].partitions[0].high_watermark;
        // A full fetch with epoch 0 opens a session and answers the partition.
        let full = run(fetch(0, 0, true, 0)).await;
        assert_eq!((full.error_code, partitions(&full)), (0, 1), "v{version}");
        let id = full.session_id;
        assert_ne!(id, 0, "v{version}: a session was opened");
        let hw = end(&full);
        // Nothing changed: the incremental answer is empty.
        let quiet = run(fetch(id, 1, true, hw)).await;
        assert_eq!((quiet.error_code, quiet.session_id, partitions(&quiet)), (0, id, 0), "v{version}");
        // New records: the partition is answered though the request did not name it.
        let Ok(Some(ResponseKind::Produce(p))) =
            handle(&f.ctx, &peer(), &header(ApiKey::Produce, 9), produce(batch::build(0, 1, &[(None, Some(b"n"))]), 1))
                .await
        else {
            panic!()
        };
        assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
        let moved = run(fetch(id, 2, false, 0)).await;
        assert_eq!((moved.error_code, partitions(&moved)), (0, 1), "v{version}");
        assert_eq!(end(&moved), hw + 1);
        assert!(!moved.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
        if version >= 13 {
            assert_eq!(moved.responses[0].topic_id, f.topic_id.0);
        } else {
            assert_eq!(moved.responses[0].topic.as_str(), "t");
        }
        // A replayed epoch and an unknown session get Kafka's session errors.
        assert_eq!(run(fetch(id, 2, false, 0)).await.error_code, ResponseError::InvalidFetchSessionEpoch.code());
        assert_eq!(run(fetch(id ^ 1, 1, false, 0)).await.error_code, ResponseError::FetchSessionIdNotFound.code());
        // Forgetting the partition closes the session.
        let Some(RequestKind::Fetch(mut forget)) = request_for(ApiKey::Fetch, version, f.topic_id) else { panic!() };
        let mut gone = kafka_protocol::messages::fetch_request::ForgottenTopic::default();
        if version >= 13 {
            gone.topic_id = f.topic_id.0;
        } else {
            gone.topic = name("t");
        }
        gone.partitions = vec![0];
        forget.topics.clear();
        forget.forgotten_topics_data = vec![gone];
        forget.session_id = id;
        forget.session_epoch = 3;
        forget.max_wait_ms = 0;
        let closed = run(RequestKind::Fetch(forget)).await;
        assert_eq!((closed.error_code, closed.session_id), (0, 0), "v{version}");
        assert_eq!(run(fetch(id, 4, false, 0)).await.error_code, ResponseError::FetchSessionIdNotFound.code());
    }
}

/// A request frame as a client sends it: size, header, body.
fn request_frame(key: ApiKey, version: i16, correlation_id: i32, body: &impl kafka_protocol::protocol::Encodable) -> Vec<u8> {
    let mut h = header(key, version);
    h.correlation_id = correlation_id;
    let mut buf = bytes::BytesMut::new();
    kafka_protocol::protocol::encode_request_header_into_buffer(&mut buf, &h).unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// One response frame: its correlation id and the Produce v7 body.
async fn read_produce_response<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (i32, ProduceResponse) {
    use kafka_protocol::protocol::Decodable;
    use tokio::io::AsyncReadExt;
    let size = r.read_i32().await.unwrap();
    let mut buf = vec![0u8; size as usize];
    r.read_exact(&mut buf).await.unwrap();
    let mut b = Bytes::from(buf);
    let correlation_id = bytes::Buf::get_i32(&mut b);
    (correlation_id, ProduceResponse::decode(&mut b, 7).unwrap())
}

/// A produce waiting for its ISR releases the connection: the producer's next request is
/// read and appended meanwhile, and the answers still go out in the order the requests came.
#[tokio::test]
async fn a_produce_waiting_for_its_isr_lets_the_next_one_append_and_answers_keep_their_order() {
    use tokio::io::AsyncWriteExt;
    let f = fixture_with("pipelined", None, |meta| {
        // Broker 2 follows "slow" but never fetches: acks=all there waits for its timeout.
        let id = TopicId::random();
        let mut topic = TopicMetadata { id: Some(id), ..Default::default() };
        topic.partitions.insert(
            0,
            PartitionMetadata {
                replicas: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
                isr: vec![1, 2],
                state_version: 0,
                controller_epoch: 1,
            },
        );
        meta.topics.insert("slow".into(), topic);
        meta.topic_names.insert(id, "slow".into());
    })
    .await;
    let Fixture { ctx, _dir, .. } = f;
    let ctx = Arc::new(ctx);
    let (client, server) = tokio::io::duplex(1 << 20);
    let (sr, sw) = tokio::io::split(server);
    let drain = tokio_util::sync::CancellationToken::new();
    let abort = tokio_util::sync::CancellationToken::new();
    let security = ctx.security.listener("PLAINTEXT");
    tokio::spawn(crate::net::connection::serve_in_span(sr, sw, peer(), security, ctx.clone(), drain, abort));
    let (mut cr, mut cw) = tokio::io::split(client);

    let RequestKind::Produce(mut slow) = produce(batch::build(0, 1, &[(None, Some(b"slow"))]), -1) else { panic!() };
    slow.topic_data[0].name = name("slow");
    slow.timeout_ms = 2_000;
    let RequestKind::Produce(quick) = produce(batch::build(0, 1, &[(None, Some(b"quick"))]), 1) else { panic!() };
    let mut frames = request_frame(ApiKey::Produce, 7, 1, &slow);
    frames.extend(request_frame(ApiKey::Produce, 7, 2, &quick));
    cw.write_all(&frames).await.unwrap();

    let t0 = tributary_common::ids::TopicPartition::new("t", 0);
    let appended = async {
        while ctx.replicas.get(&t0).unwrap().log().offsets().log_end_offset < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), appended)
        .await
        .expect("the second produce was appended while the first waited for its ISR");
    let mut nothing = [0u8; 1];
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), tokio::io::AsyncReadExt::read(&mut cr, &mut nothing))
            .await
            .is_err(),
        "no answer before the first request's"
    );

    let (first, r1) = tokio::time::timeout(std::time::Duration::from_secs(10), read_produce_response(&mut cr)).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(r1.responses[0].partition_responses[0].error_code, ResponseError::RequestTimedOut.code(), "{r1:?}");
    let (second, r2) = tokio::time::timeout(std::time::Duration::from_secs(10), read_produce_response(&mut cr)).await.unwrap();
    assert_eq!(second, 2);
    assert_eq!(r2.responses[0].partition_responses[0].error_code, 0, "{r2:?}");
    assert_eq!(r2.responses[0].partition_responses[0].base_offset, 0);
}
