//! DescribeClientQuotas and AlterClientQuotas (KIP-546; `kafka-configs --entity-type users
//! / clients`, Kafka UI's quota page): user and client-id quotas stored in
//! `/config/users/...` and `/config/clients/...` through the one config write, and
//! enforced by every broker ([`crate::quota`]).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest, AlterClientQuotasResponse,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use tributary_common::znode::ConfigEntity;

use super::admin::{admin_err, AdminError};
use super::configs::read_modify_write;
use super::{s, BrokerContext};
use crate::quota::QUOTA_KEYS;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";

/// An entity's parts: absent, the default (`Some(None)`), or named.
type Part = Option<Option<String>>;

/// The config entity for a request's (type, name) pairs.
pub(crate) fn entity_of(parts: &[(String, Option<String>)]) -> Result<ConfigEntity, String> {
    let (mut user, mut client): (Part, Part) = (None, None);
    for (kind, name) in parts {
        let slot = match kind.as_str() {
            USER => &mut user,
            CLIENT_ID => &mut client,
            "ip" => return Err("IP quotas (connection_creation_rate) are not supported by Tributary".into()),
            other => return Err(format!("unknown quota entity type {other:?}; use user or client-id")),
        };
        if slot.is_some() {
            return Err(format!("entity type {kind} appears twice"));
        }
        *slot = Some(name.clone());
    }
    match (user, client) {
        (Some(u), Some(c)) => Ok(ConfigEntity::UserClient(u, c)),
        (Some(u), None) => Ok(ConfigEntity::User(u)),
        (None, Some(c)) => Ok(ConfigEntity::Client(c)),
        (None, None) => Err("a quota entity needs a user or a client-id".into()),
    }
}

fn parts_of(entity: &ConfigEntity) -> (Part, Part) {
    match entity {
        ConfigEntity::User(u) => (Some(u.clone()), None),
        ConfigEntity::Client(c) => (None, Some(c.clone())),
        ConfigEntity::UserClient(u, c) => (Some(u.clone()), Some(c.clone())),
        _ => (None, None),
    }
}

/// Applies quota operations to stored values, as Kafka checks them: known keys only,
/// positive values, whole numbers for byte rates.
pub(crate) fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, Option<f64>)],
) -> Result<BTreeMap<String, String>, String> {
    let mut next = current.clone();
    for (key, value) in ops {
        let Some((_, whole)) = QUOTA_KEYS.iter().find(|(k, _)| k == key) else {
            return Err(format!("Unrecognized quota key {key}; use one of producer_byte_rate, consumer_byte_rate, request_percentage, controller_mutation_rate"));
        };
        match value {
            None => {
                next.remove(key);
            }
            Some(v) if !v.is_finite() || *v <= 0.0 => {
                return Err(format!("Quota {key} must be a positive number, not {v}"))
            }
            Some(v) if *whole && (v.fract().abs() > 1e-6 || *v > i64::MAX as f64) => {
                return Err(format!("Quota {key} must be a whole number of bytes per second, not {v}"))
            }
            Some(v) if *whole => {
                next.insert(key.clone(), (v.round() as i64).to_string());
            }
            Some(v) => {
                next.insert(key.clone(), v.to_string());
            }
        }
    }
    Ok(next)
}

/// Whether `entity` passes a DescribeClientQuotas filter: each component names a type the
/// entity has, matching exactly (0), the default (1) or any name (2); `strict` also
/// excludes entities with types the filter does not name.
pub(crate) fn matches(entity: &ConfigEntity, components: &[(String, i8, Option<String>)], strict: bool) -> bool {
    let (user, client) = parts_of(entity);
    let mut named = (false, false);
    for (kind, match_type, name) in components {
        let part = match kind.as_str() {
            USER => {
                named.0 = true;
                &user
            }
            CLIENT_ID => {
                named.1 = true;
                &client
            }
            _ => return false,
        };
        let ok = match (part, match_type) {
            (None, _) => false,
            (Some(n), 0) => n.as_ref() == name.as_ref(),
            (Some(n), 1) => n.is_none(),
            (Some(_), _) => true,
        };
        if !ok {
            return false;
        }
    }
    !strict || ((user.is_none() || named.0) && (client.is_none() || named.1))
}

pub(super) fn describe_client_quotas(
    ctx: &BrokerContext,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let mut response = DescribeClientQuotasResponse::default();
    response.error_message = None;
    let components: Vec<(String, i8, Option<String>)> = request
        .components
        .iter()
        .map(|c| (c.entity_type.as_str().to_string(), c.match_type, c._match.as_ref().map(|m| m.as_str().to_string())))
        .collect();
    if let Some((kind, _, _)) = components.iter().find(|(k, _, _)| k != USER && k != CLIENT_ID) {
        response.error_code = ResponseError::InvalidRequest.code();
        response.error_message = Some(s(format!("unknown quota entity type {kind:?}; use user or client-id")));
        return response;
    }
    let cluster = ctx.cluster();
    let entries = cluster
        .entity_configs
        .iter()
        .filter(|(e, _)| matches!(e, ConfigEntity::User(_) | ConfigEntity::Client(_) | ConfigEntity::UserClient(..)))
        .filter(|(e, _)| matches(e, &components, request.strict))
        .filter_map(|(entity, config)| {
            let values: Vec<describe_client_quotas_response::ValueData> = config
                .iter()
                .filter(|(k, _)| QUOTA_KEYS.iter().any(|(q, _)| q == k))
                .filter_map(|(k, v)| {
                    let mut value = describe_client_quotas_response::ValueData::default();
                    value.key = s(k.clone());
                    value.value = v.trim().parse().ok()?;
                    Some(value)
                })
                .collect();
            if values.is_empty() {
                return None;
            }
            let (user, client) = parts_of(entity);
            let mut entry = describe_client_quotas_response::EntryData::default();
            for (kind, part) in [(USER, user), (CLIENT_ID, client)] {
                if let Some(name) = part {
                    let mut e = describe_client_quotas_response::EntityData::default();
                    e.entity_type = s(kind);
                    e.entity_name = name.map(s);
                    entry.entity.push(e);
                }
            }
            entry.values = values;
            Some(entry)
        })
        .collect();
    response.entries = Some(entries);
    response
}

pub(super) async fn alter_client_quotas(
    ctx: &BrokerContext,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut response = AlterClientQuotasResponse::default();
    for entry in request.entries {
        let parts: Vec<(String, Option<String>)> = entry
            .entity
            .iter()
            .map(|e| (e.entity_type.as_str().to_string(), e.entity_name.as_ref().map(|n| n.as_str().to_string())))
            .collect();
        let ops: Vec<(String, Option<f64>)> =
            entry.ops.iter().map(|o| (o.key.as_str().to_string(), (!o.remove).then_some(o.value))).collect();
        let outcome: Result<(), AdminError> = match entity_of(&parts) {
            Err(e) => Err(admin_err(ResponseError::InvalidRequest, e)),
            Ok(entity) => {
                let label = entity.entity_path();
                let result = read_modify_write(ctx, entity, request.validate_only, |current| {
                    apply_ops(current, &ops).map_err(|e| admin_err(ResponseError::InvalidRequest, e))
                })
                .await;
                match &result {
                    Ok(()) if !request.validate_only => {
                        tracing::info!(entity = label, ops = ?ops, "client quota changed")
                    }
                    Ok(()) => {}
                    Err(e) => tracing::info!(entity = label, error = %e.message, "client quota change refused"),
                }
                result
            }
        };
        let mut r = alter_client_quotas_response::EntryData::default();
        r.error_message = None;
        r.entity = entry
            .entity
            .iter()
            .map(|e| {
                let mut d = alter_client_quotas_response::EntityData::default();
                d.entity_type = e.entity_type.clone();
                d.entity_name = e.entity_name.clone();
                d
            })
            .collect();
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = Some(s(e.message));
        }
        response.entries.push(r);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_map_to_kafkas_znodes() {
        let p = |v: &[(&str, Option<&str>)]| {
            v.iter().map(|(k, n)| (k.to_string(), n.map(str::to_string))).collect::<Vec<_>>()
        };
        type Parts = Vec<(String, Option<String>)>;
        let cases: &[(Parts, Result<&str, &str>)] = &[
            (p(&[("user", Some("alice"))]), Ok("users/alice")),
            (p(&[("client-id", None)]), Ok("clients/<default>")),
            (p(&[("client-id", Some("app")), ("user", None)]), Ok("users/<default>/clients/app")),
            (p(&[("user", Some("a")), ("user", Some("b"))]), Err("twice")),
            (p(&[("ip", Some("1.2.3.4"))]), Err("IP quotas")),
            (p(&[("group", Some("g"))]), Err("unknown quota entity type")),
            (p(&[]), Err("needs a user or a client-id")),
        ];
        for (parts, want) in cases {
            match (entity_of(parts), want) {
                (Ok(e), Ok(path)) => assert_eq!(e.entity_path(), *path),
                (Err(e), Err(words)) => assert!(e.contains(words), "{e}"),
                (got, want) => panic!("{parts:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn quota_values_are_checked_as_kafka_checks_them() {
        let current = BTreeMap::from([("consumer_byte_rate".to_string(), "5".to_string())]);
        let ops = |v: &[(&str, Option<f64>)]| v.iter().map(|(k, x)| (k.to_string(), *x)).collect::<Vec<_>>();
        let ok = apply_ops(
            &current,
            &ops(&[
                ("producer_byte_rate", Some(1024.0)),
                ("consumer_byte_rate", None),
                ("request_percentage", Some(12.5)),
            ]),
        )
        .unwrap();
        assert_eq!(
            ok,
            BTreeMap::from([
                ("producer_byte_rate".to_string(), "1024".to_string()),
                ("request_percentage".to_string(), "12.5".to_string())
            ])
        );
        for (bad, words) in [
            (ops(&[("producer_byte_rate", Some(-1.0))]), "positive"),
            (ops(&[("producer_byte_rate", Some(0.0))]), "positive"),
            (ops(&[("producer_byte_rate", Some(1.5))]), "whole number"),
            (ops(&[("bytes_please", Some(1.0))]), "Unrecognized"),
        ] {
            assert!(apply_ops(&current, &bad).unwrap_err().contains(words), "{bad:?}");
        }
    }

    #[test]
    fn filters_match_exact_default_and_any_names() {
        let alice = ConfigEntity::User(Some("alice".into()));
        let default_user = ConfigEntity::User(None);
        let alice_app = ConfigEntity::UserClient(Some("alice".into()), Some("app".into()));
        let c = |k: &str, t: i8, n: Option<&str>| (k.to_string(), t, n.map(str::to_string));
        // (entity, components, strict) -> matches
        let cases = [
            (&alice, vec![c("user", 0, Some("alice"))], true, true),
            (&alice, vec![c("user", 0, Some("bob"))], false, false),
            (&default_user, vec![c("user", 1, None)], true, true),
            (&alice, vec![c("user", 1, None)], false, false),
            (&alice, vec![c("user", 2, None)], true, true),
            (&alice_app, vec![c("user", 0, Some("alice"))], false, true),
            (&alice_app, vec![c("user", 0, Some("alice"))], true, false),
            (&alice, vec![c("client-id", 2, None)], false, false),
            (&alice, vec![], false, true),
            (&alice, vec![], true, false),
        ];
        for (entity, components, strict, want) in cases {
            assert_eq!(matches(entity, &components, strict), want, "{entity:?} {components:?} strict {strict}");
        }
    }
}
