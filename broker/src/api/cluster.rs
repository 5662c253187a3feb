//! DescribeCluster, DescribeLogDirs, and the ACL APIs answered as a Kafka broker without an authorizer
//! answers them (SECURITY_DISABLED), so that tools probing for ACLs switch their ACL views
//! off instead of failing.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};

use super::{by_topic, s, BrokerContext};

/// DescribeCluster `endpoint_type`: brokers (1), as opposed to KRaft controllers (2).
const BROKER_ENDPOINTS: i8 = 1;

/// The live brokers with their addresses on the listener the request came on (as
/// Metadata gives them), the cluster id and the controller.
pub(super) fn describe_cluster(
    ctx: &BrokerContext,
    listener: &str,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.endpoint_type = BROKER_ENDPOINTS;
    r.cluster_authorized_operations = i32::MIN;
    if version >= 1 && request.endpoint_type != BROKER_ENDPOINTS {
        r.error_code = ResponseError::UnsupportedEndpointType.code();
        r.error_message = Some(s(format!(
            "endpoint type {} was asked of a broker, which describes broker endpoints (type 1) only",
            request.endpoint_type
        )));
        return r;
    }
    if request.include_cluster_authorized_operations {
        // Every operation, as Kafka without an authorizer; `authz::after` narrows them.
        r.cluster_authorized_operations = super::authz::all_operations(tributary_common::acl::ResourceType::Cluster);
    }
    let cluster = ctx.cluster();
    r.cluster_id = s(cluster.cluster_id.clone());
    r.controller_id = BrokerId(cluster.controller_id());
    r.brokers = cluster
        .brokers_on(listener)
        .map(|(id, e, b)| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(id);
            broker.host = s(e.host.clone());
            broker.port = i32::from(e.port);
            broker.rack = b.rack.clone().map(s);
            broker
        })
        .collect();
    r
}

/// Where AlterReplicaLogDirs may move a replica: Tributary has one data directory, so a
/// replica hosted here is already in it (`None`: no error); another path is
/// LOG_DIR_NOT_FOUND, and a partition not hosted here REPLICA_NOT_AVAILABLE.
pub(crate) fn log_dir_move(data_dir: &std::path::Path, path: &str, hosted: bool) -> Option<ResponseError> {
    let same = std::path::Path::new(path.trim_end_matches('/')) == data_dir
        || std::fs::canonicalize(path).ok().zip(std::fs::canonicalize(data_dir).ok()).is_some_and(|(a, b)| a == b);
    match (same, hosted) {
        (false, _) => Some(ResponseError::LogDirNotFound),
        (true, false) => Some(ResponseError::ReplicaNotAvailable),
        (true, true) => None,
    }
}

/// AlterReplicaLogDirs (`kafka-reassign-partitions` with log directories,
/// `kafka-log-dirs`' moves): with one data directory there is nowhere else to go.
pub(super) fn alter_replica_log_dirs(
    ctx: &BrokerContext,
    request: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let mut results = Vec::new();
    for dir in &request.dirs {
        for topic in &dir.topics {
            for partition in &topic.partitions {
                let hosted = ctx.replicas.get(&super::tp(&topic.name.0, *partition)).is_some();
                let mut r = AlterReplicaLogDirPartitionResult::default();
                r.partition_index = *partition;
                r.error_code = log_dir_move(&ctx.config.data_dir, dir.path.as_str(), hosted).map_or(0, |e| e.code());
                results.push((topic.name.0.as_str().to_string(), r));
            }
        }
    }
    let mut response = AlterReplicaLogDirsResponse::default();
    response.results = by_topic(results, |name, partitions| {
        let mut t = AlterReplicaLogDirTopicResult::default();
        t.topic_name = TopicName(s(name));
        t.partitions = partitions;
        t
    });
    response
}

/// DescribeLogDirs: the one data directory, its partitions with their sizes, and the
/// file system's total and usable bytes (Kafka UI shows topic sizes from this).
pub(super) fn describe_log_dirs(ctx: &BrokerContext, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics.iter().any(|t| t.topic.as_str() == topic && t.partitions.contains(&partition)),
    };
    let mut hosted = Vec::new();
    for (tp, partition) in ctx.replicas.all() {
        if !wanted(&tp.topic, tp.partition) {
            continue;
        }
        let offsets = partition.log().offsets();
        let mut p = DescribeLogDirsPartition::default();
        p.partition_index = tp.partition;
        p.partition_size = i64::try_from(offsets.size_bytes).unwrap_or(i64::MAX);
        // Kafka: how far the log end is behind the high watermark (a catching-up follower).
        p.offset_lag = (partition.high_watermark() - offsets.log_end_offset).max(0);
        if partition.role().config.compact {
            if let Some(view) = partition.log().cleaner_view() {
                let json = serde_json::to_vec(&view).expect("the cleaner view is plain JSON");
                p.unknown_tagged_fields.insert(tributary_common::kafka_client::CLEANER_STATUS_TAG, json.into());
            }
        }
        hosted.push((tp.topic, p));
    }
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = s(ctx.config.data_dir.display().to_string());
    dir.topics = by_topic(hosted, |name, partitions| {
        let mut t = DescribeLogDirsTopic::default();
        t.name = TopicName(s(name));
        t.partitions = partitions;
        t
    });
    // -1, as Kafka reports, when the file system cannot tell.
    match rustix::fs::statvfs(&ctx.config.data_dir) {
        Ok(fs) => {
            let block = i64::try_from(fs.f_frsize).unwrap_or(0);
            dir.total_bytes = i64::try_from(fs.f_blocks).unwrap_or(0).saturating_mul(block);
            dir.usable_bytes = i64::try_from(fs.f_bavail).unwrap_or(0).saturating_mul(block);
        }
        Err(_) => {
            dir.total_bytes = -1;
            dir.usable_bytes = -1;
        }
    }
    let mut r = DescribeLogDirsResponse::default();
    r.results = vec![dir];
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_can_only_stay_in_the_one_data_directory() {
        let dir = std::env::temp_dir();
        let here = dir.display().to_string();
        // (path, hosted) -> error
        let cases = [
            ((here.as_str(), true), None),
            ((&*format!("{here}/"), true), None),
            ((here.as_str(), false), Some(ResponseError::ReplicaNotAvailable)),
            (("/no/such/dir", true), Some(ResponseError::LogDirNotFound)),
        ];
        for ((path, hosted), want) in cases {
            assert_eq!(log_dir_move(&dir, path, hosted), want, "{path} hosted {hosted}");
        }
    }
}
