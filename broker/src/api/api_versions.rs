//! ApiVersions: exactly what is implemented, with Kafka's fallback for a too-new request.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// Every implemented API and its version range. Floors follow Kafka 4.0 (KIP-896), which
/// every supported client meets; ceilings are what the handlers implement.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    // librdkafka before 2.x takes SASL as unsupported unless v0 is in range; the tokens
    // that follow must come in SaslAuthenticate (which every client that sees it uses),
    // not raw as v0 clients of Kafka 0.10 sent them.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The version settings of a Kafka 3.9 broker left at its defaults, which DescribeConfigs
/// reports for a broker: tools read them to tell which features the cluster has.
pub(crate) const VERSION_CONFIGS: [(&str, &str); 2] =
    [("inter.broker.protocol.version", "3.9-IV0"), ("log.message.format.version", "3.0-IV1")];

/// The advertised range for `key`, if implemented.
pub(crate) fn supported_range(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|(_, min, max)| VersionRange { min: *min, max: *max })
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect()
}

/// The answer to a supported ApiVersions request.
pub(super) fn handle(_version: i16, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_keys();
    r.finalized_features_epoch = -1;
    r
}

/// The answer to an ApiVersions request newer than we know (KIP-511): UNSUPPORTED_VERSION
/// with our ranges, to be encoded as v0 so the client can read it and retry.
pub(crate) fn v0_unsupported_version_response() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = kafka_protocol::error::ResponseError::UnsupportedVersion.code();
    r.api_keys = api_keys();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_lie_within_what_the_codec_can_decode() {
        for (key, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(codec.min <= *min && *max <= codec.max, "{key:?} {min}..={max} outside {codec:?}");
        }
    }

    #[test]
    fn kafka_python_infers_a_broker_of_at_least_2_4() {
        // kafka-python gates idempotence, zstd and -1 partitions on the inferred version;
        // Produce v8 (2.4) and ListOffsets v7 (3.0) are among its probes.
        assert!(supported_range(ApiKey::Produce).unwrap().max >= 8);
        assert!(supported_range(ApiKey::ListOffsets).unwrap().max >= 7);
    }
}
