//! CreateAcls, DescribeAcls and DeleteAcls (`kafka-acls --bootstrap-server`, AdminClient):
//! ACLs in Kafka's znodes through `tributary_common::zk::update_acls`, which announces each
//! change so every broker's watch takes it up. Without `authorizer.class.name` they answer
//! SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tributary_common::acl::{
    self, AclEntry, EntryFilter, Operation, PatternFilter, PatternType, Permission, ResourcePattern, ResourceType,
};

use super::{s, BrokerContext, Caller};

/// Kafka's words for a broker without an authorizer.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker; set authorizer.class.name to use ACLs";

/// The filters of a DescribeAcls request or a DeleteAcls filter (the same fields).
macro_rules! filters_of {
    ($f:expr) => {
        filters(
            $f.resource_type_filter,
            &$f.resource_name_filter,
            $f.pattern_type_filter,
            &$f.principal_filter,
            &$f.host_filter,
            $f.operation,
            $f.permission_type,
        )
    };
}

fn filters(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<(PatternFilter, EntryFilter), String> {
    let rt = ResourceType::from_code(resource_type).ok_or("unknown resource type in the filter")?;
    let pt = PatternType::from_code(pattern_type).ok_or("unknown pattern type in the filter")?;
    let op = Operation::from_code(operation).ok_or("unknown operation in the filter")?;
    let perm = Permission::from_code(permission).ok_or("unknown permission type in the filter")?;
    Ok((
        PatternFilter { resource_type: rt, name: name.as_ref().map(|n| n.as_str().to_string()), pattern_type: pt },
        EntryFilter {
            principal: principal.as_ref().map(|p| p.as_str().to_string()),
            host: host.as_ref().map(|h| h.as_str().to_string()),
            operation: op,
            permission: perm,
        },
    ))
}

pub(super) fn describe_acls(ctx: &BrokerContext, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut out = DescribeAclsResponse::default();
    if ctx.authorizer.is_none() {
        out.error_code = ResponseError::SecurityDisabled.code();
        out.error_message = Some(s(NO_AUTHORIZER));
        return out;
    }
    let (patterns, entries) = match filters_of!(r) {
        Ok(f) => f,
        Err(e) => {
            out.error_code = ResponseError::InvalidRequest.code();
            out.error_message = Some(s(e));
            return out;
        }
    };
    let cluster = ctx.cluster();
    out.resources = cluster
        .acls
        .iter()
        .filter(|(p, _)| patterns.matches(p))
        .filter_map(|(p, list)| {
            let acls: Vec<AclDescription> = list
                .iter()
                .filter(|e| entries.matches(e))
                .map(|e| {
                    let mut d = AclDescription::default();
                    d.principal = s(e.principal.clone());
                    d.host = s(e.host.clone());
                    d.operation = e.operation.code();
                    d.permission_type = e.permission.code();
                    d
                })
                .collect();
            (!acls.is_empty()).then(|| {
                let mut res = DescribeAclsResource::default();
                res.resource_type = p.resource_type.code();
                res.resource_name = s(p.name.clone());
                res.pattern_type = p.pattern_type.code();
                res.acls = acls;
                res
            })
        })
        .collect();
    out
}

pub(super) async fn create_acls(ctx: &BrokerContext, caller: &Caller, r: CreateAclsRequest) -> CreateAclsResponse {
    let mut out = CreateAclsResponse::default();
    let fail = |code: ResponseError, message: String| {
        let mut x = AclCreationResult::default();
        x.error_code = code.code();
        x.error_message = Some(s(message));
        x
    };
    if ctx.authorizer.is_none() {
        out.results = r.creations.iter().map(|_| fail(ResponseError::SecurityDisabled, NO_AUTHORIZER.into())).collect();
        return out;
    }
    // One write per pattern, with every entry the request adds to it.
    let mut by_pattern: BTreeMap<ResourcePattern, Vec<(usize, AclEntry)>> = BTreeMap::new();
    let mut results: Vec<Option<AclCreationResult>> = vec![None; r.creations.len()];
    for (i, c) in r.creations.iter().enumerate() {
        let parsed = (|| {
            let pattern = ResourcePattern {
                resource_type: ResourceType::from_code(c.resource_type).ok_or("Invalid ACL: unknown resource type")?,
                name: c.resource_name.as_str().to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type).ok_or("Invalid ACL: unknown pattern type")?,
            };
            let entry = AclEntry {
                principal: c.principal.as_str().to_string(),
                host: c.host.as_str().to_string(),
                operation: Operation::from_code(c.operation).ok_or("Invalid ACL: unknown operation")?,
                permission: Permission::from_code(c.permission_type).ok_or("Invalid ACL: unknown permission type")?,
            };
            Ok::<_, String>((pattern, entry))
        })();
        match parsed.and_then(|(p, e)| acl::validate_binding(&p, &e).map(|()| (p, e))) {
            Ok((p, e)) => by_pattern.entry(p).or_default().push((i, e)),
            Err(e) => results[i] = Some(fail(ResponseError::InvalidRequest, e)),
        }
    }
    let client = match ctx.zk.client() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write ACLs: no ZooKeeper session");
            None
        }
    };
    let mut added: Vec<(ResourcePattern, AclEntry)> = Vec::new();
    for (pattern, adds) in by_pattern {
        let written = match &client {
            None => Err("no ZooKeeper session; retry".to_string()),
            Some(client) => {
                let new: Vec<AclEntry> = adds.iter().map(|(_, e)| e.clone()).collect();
                tributary_common::zk::update_acls(client, &pattern, |current| {
                    current.iter().cloned().chain(new.iter().cloned()).collect()
                })
                .await
                .map_err(|e| format!("{e}; retry"))
            }
        };
        match &written {
            Ok(_) => {
                for (_, e) in &adds {
                    added.push((pattern.clone(), e.clone()));
                    tracing::info!(by = %caller.principal, resource = %pattern, principal = e.principal, host = e.host, operation = e.operation.name(), permission = e.permission.name(), "ACL added");
                }
            }
            Err(e) => tracing::warn!(resource = %pattern, error = %e, "adding ACLs failed"),
        }
        for (i, _) in adds {
            results[i] = Some(match &written {
                Ok(_) => {
                    let mut x = AclCreationResult::default();
                    x.error_message = None;
                    x
                }
                Err(e) => fail(ResponseError::UnknownServerError, e.clone()),
            });
        }
    }
    out.results = results.into_iter().map(|r| r.unwrap_or_default()).collect();
    wait_for_view(ctx, |m| added.iter().all(|(p, e)| m.acls.get(p).is_some_and(|list| list.contains(e)))).await;
    out
}

pub(super) async fn delete_acls(ctx: &BrokerContext, caller: &Caller, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut out = DeleteAclsResponse::default();
    let failed = |code: ResponseError, message: String| {
        let mut x = DeleteAclsFilterResult::default();
        x.error_code = code.code();
        x.error_message = Some(s(message));
        x
    };
    if ctx.authorizer.is_none() {
        out.filter_results = r.filters.iter().map(|_| failed(ResponseError::SecurityDisabled, NO_AUTHORIZER.into())).collect();
        return out;
    }
    let client = match ctx.zk.client() {
        Ok(c) => c,
        Err(_) => {
            out.filter_results =
                r.filters.iter().map(|_| failed(ResponseError::UnknownServerError, "no ZooKeeper session; retry".into())).collect();
            return out;
        }
    };
    let cluster = ctx.cluster();
    for f in &r.filters {
        let (patterns, entries) = match filters_of!(f) {
            Ok(x) => x,
            Err(e) => {
                out.filter_results.push(failed(ResponseError::InvalidRequest, e));
                continue;
            }
        };
        let mut result = DeleteAclsFilterResult::default();
        result.error_message = None;
        let touched: Vec<ResourcePattern> = cluster.acls.keys().filter(|p| patterns.matches(p)).cloned().collect();
        for pattern in touched {
            match tributary_common::zk::update_acls(&client, &pattern, |current| {
                current.iter().filter(|e| !entries.matches(e)).cloned().collect()
            })
            .await
            {
                Ok((before, after)) => {
                    for e in before.iter().filter(|e| !after.contains(e)) {
                        tracing::info!(by = %caller.principal, resource = %pattern, principal = e.principal, host = e.host, operation = e.operation.name(), permission = e.permission.name(), "ACL removed");
                        let mut m = DeleteAclsMatchingAcl::default();
                        m.error_message = None;
                        m.resource_type = pattern.resource_type.code();
                        m.resource_name = s(pattern.name.clone());
                        m.pattern_type = pattern.pattern_type.code();
                        m.principal = s(e.principal.clone());
                        m.host = s(e.host.clone());
                        m.operation = e.operation.code();
                        m.permission_type = e.permission.code();
                        result.matching_acls.push(m);
                    }
                }
                Err(e) => {
                    result.error_code = ResponseError::UnknownServerError.code();
                    result.error_message = Some(s(format!("{e}; retry")));
                }
            }
        }
        out.filter_results.push(result);
    }
    // Answer once this broker's view holds the change, as Kafka's authorizer does for its own.
    let gone = |m: &crate::metadata::ClusterMetadata| {
        r.filters.iter().all(|f| {
            filters_of!(f)
                .is_ok_and(|(p, e)| !m.acls.iter().any(|(pattern, list)| p.matches(pattern) && list.iter().any(|x| e.matches(x))))
        })
    };
    wait_for_view(ctx, gone).await;
    out
}

/// Waits (up to 5 s) until this broker's metadata shows an ACL change it wrote.
async fn wait_for_view(ctx: &BrokerContext, done: impl Fn(&crate::metadata::ClusterMetadata) -> bool) {
    if !ctx.wait_for_metadata(std::time::Duration::from_secs(5), done).await {
        tracing::warn!("an ACL change was written but this broker has not seen it after 5 s; is its ZooKeeper session healthy?");
    }
}
