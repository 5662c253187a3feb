//! DescribeCluster, and the ACL APIs answered as a Kafka broker without an authorizer
//! answers them (SECURITY_DISABLED), so that tools probing for ACLs switch their ACL views
//! off instead of failing.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeClusterRequest, DescribeClusterResponse,
};

use super::{s, BrokerContext};

/// DescribeCluster `endpoint_type`: brokers (1), as opposed to KRaft controllers (2).
const BROKER_ENDPOINTS: i8 = 1;

/// Kafka's words for a broker without an authorizer.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker (Tributary has no ACLs yet)";

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
    let cluster = ctx.cluster();
    r.cluster_id = s(cluster.cluster_id.clone());
    r.controller_id = BrokerId(cluster.controller_id());
    r.brokers = cluster
        .brokers
        .iter()
        .filter_map(|(id, b)| {
            let e = b.endpoint(listener)?;
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(*id);
            broker.host = s(e.host.clone());
            broker.port = i32::from(e.port);
            broker.rack = b.rack.clone().map(s);
            Some(broker)
        })
        .collect();
    r
}

pub(super) fn describe_acls(_request: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut r = DescribeAclsResponse::default();
    r.error_code = ResponseError::SecurityDisabled.code();
    r.error_message = Some(s(NO_AUTHORIZER));
    r
}

pub(super) fn create_acls(request: CreateAclsRequest) -> CreateAclsResponse {
    let mut r = CreateAclsResponse::default();
    r.results = request
        .creations
        .iter()
        .map(|_| {
            let mut result = AclCreationResult::default();
            result.error_code = ResponseError::SecurityDisabled.code();
            result.error_message = Some(s(NO_AUTHORIZER));
            result
        })
        .collect();
    r
}

pub(super) fn delete_acls(request: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut r = DeleteAclsResponse::default();
    r.filter_results = request
        .filters
        .iter()
        .map(|_| {
            let mut result = DeleteAclsFilterResult::default();
            result.error_code = ResponseError::SecurityDisabled.code();
            result.error_message = Some(s(NO_AUTHORIZER));
            result
        })
        .collect();
    r
}
