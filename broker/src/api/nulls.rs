//! Kafka's null-or-empty rule for the strings of a response, in one place.
//!
//! kafka-protocol's `Default` gives many nullable strings `Some("")`, where Kafka sends
//! null when there is nothing to say; clients tell them apart (aiokafka's admin client
//! checks a created topic's `error_message` for `None`). Every response passes through
//! [`normalize`] as it is encoded (`net::codec::encode_response`), so no handler has to
//! remember it:
//! an empty error message, chosen protocol name, group instance id or config documentation
//! is null. Strings where `""` can mean something (a client id or user named `""`, a
//! config set to `""`, committed offset metadata) are left as the handler built them.

use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

/// `Some("")` becomes `None`.
fn nullify(s: &mut Option<StrBytes>) {
    if s.as_ref().is_some_and(|v| v.is_empty()) {
        *s = None;
    }
}

/// Applies the rule to `response`; see the module doc.
pub(crate) fn normalize(response: &mut ResponseKind) {
    match response {
        ResponseKind::CreateTopics(r) => r.topics.iter_mut().for_each(|t| nullify(&mut t.error_message)),
        ResponseKind::AlterConfigs(r) => r.responses.iter_mut().for_each(|x| nullify(&mut x.error_message)),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter_mut().for_each(|x| nullify(&mut x.error_message)),
        ResponseKind::DescribeConfigs(r) => {
            for result in &mut r.results {
                nullify(&mut result.error_message);
                result.configs.iter_mut().for_each(|c| nullify(&mut c.documentation));
            }
        }
        ResponseKind::AlterClientQuotas(r) => r.entries.iter_mut().for_each(|e| nullify(&mut e.error_message)),
        ResponseKind::DescribeClientQuotas(r) => nullify(&mut r.error_message),
        ResponseKind::AlterPartitionReassignments(r) => {
            nullify(&mut r.error_message);
            r.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()).for_each(|p| nullify(&mut p.error_message));
        }
        ResponseKind::ListPartitionReassignments(r) => nullify(&mut r.error_message),
        ResponseKind::AlterUserScramCredentials(r) => r.results.iter_mut().for_each(|x| nullify(&mut x.error_message)),
        ResponseKind::DescribeUserScramCredentials(r) => {
            nullify(&mut r.error_message);
            r.results.iter_mut().for_each(|x| nullify(&mut x.error_message));
        }
        ResponseKind::CreateAcls(r) => r.results.iter_mut().for_each(|x| nullify(&mut x.error_message)),
        ResponseKind::DeleteAcls(r) => {
            for f in &mut r.filter_results {
                nullify(&mut f.error_message);
                f.matching_acls.iter_mut().for_each(|m| nullify(&mut m.error_message));
            }
        }
        ResponseKind::DescribeAcls(r) => nullify(&mut r.error_message),
        ResponseKind::ElectLeaders(r) => r
            .replica_election_results
            .iter_mut()
            .flat_map(|t| t.partition_result.iter_mut())
            .for_each(|p| nullify(&mut p.error_message)),
        ResponseKind::FindCoordinator(r) => {
            nullify(&mut r.error_message);
            r.coordinators.iter_mut().for_each(|c| nullify(&mut c.error_message));
        }
        ResponseKind::SaslAuthenticate(r) => nullify(&mut r.error_message),
        ResponseKind::JoinGroup(r) => {
            nullify(&mut r.protocol_name);
            nullify(&mut r.protocol_type);
            r.members.iter_mut().for_each(|m| nullify(&mut m.group_instance_id));
        }
        ResponseKind::LeaveGroup(r) => r.members.iter_mut().for_each(|m| nullify(&mut m.group_instance_id)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    /// What a handler builds from defaults: every nullable string the rule covers is
    /// `Some("")`; after the rule, none is (checked through the Debug form, so a field
    /// added to the rule's list but spelled wrong elsewhere still shows).
    #[test]
    fn defaults_left_empty_are_sent_as_null() {
        let mut topic = create_topics_response::CreatableTopicResult::default();
        topic.name = TopicName(s("t"));
        let mut config = describe_configs_response::DescribeConfigsResourceResult::default();
        config.value = Some(s(""));
        let mut described = describe_configs_response::DescribeConfigsResult::default();
        described.configs = vec![config];
        let responses = vec![
            ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(vec![topic])),
            ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(vec![described])),
            ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default()
                    .with_coordinators(vec![find_coordinator_response::Coordinator::default()]),
            ),
            ResponseKind::SaslAuthenticate(SaslAuthenticateResponse::default()),
            ResponseKind::DescribeAcls(DescribeAclsResponse::default()),
            ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(vec![
                delete_acls_response::DeleteAclsFilterResult::default()
                    .with_matching_acls(vec![delete_acls_response::DeleteAclsMatchingAcl::default()]),
            ])),
            ResponseKind::ElectLeaders(ElectLeadersResponse::default().with_replica_election_results(vec![
                elect_leaders_response::ReplicaElectionResult::default()
                    .with_partition_result(vec![elect_leaders_response::PartitionResult::default()]),
            ])),
            ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_members(vec![join_group_response::JoinGroupResponseMember::default()]),
            ),
            ResponseKind::DescribeUserScramCredentials(DescribeUserScramCredentialsResponse::default()),
            ResponseKind::AlterPartitionReassignments(AlterPartitionReassignmentsResponse::default()),
            ResponseKind::ListPartitionReassignments(ListPartitionReassignmentsResponse::default()),
            ResponseKind::DescribeClientQuotas(DescribeClientQuotasResponse::default()),
        ];
        for mut r in responses {
            normalize(&mut r);
            let shown = format!("{r:?}");
            for field in ["error_message", "documentation", "protocol_name", "group_instance_id"] {
                assert!(!shown.contains(&format!("{field}: Some(\"\")")), "{field} left empty in {shown}");
            }
            if let ResponseKind::DescribeConfigs(d) = &r {
                assert_eq!(d.results[0].configs[0].value.as_deref(), Some(""), "a config's value \"\" is a value");
            }
        }
        // A message that says something is kept.
        let mut r = ResponseKind::SaslAuthenticate(SaslAuthenticateResponse::default().with_error_message(Some(s("no"))));
        normalize(&mut r);
        assert!(format!("{r:?}").contains("\"no\""));
    }
}
