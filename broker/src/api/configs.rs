//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, brokers (per
//! broker and the cluster-wide `<default>`) and broker loggers, as a ZooKeeper-mode Kafka
//! broker answers them. Topic and broker changes are written to `/config/<type>/<name>`
//! with a change notification (`tributary_common::zk::write_entity_config`, the one path
//! for config writes) and reach every broker through its metadata watch; logger levels are
//! this broker's alone and held in memory, as Kafka holds them.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use tributary_common::config::{alter_overrides, AlterOp, ConfigType};
use tributary_common::ids::BrokerId;
use tributary_common::telemetry;
use tributary_common::topic::{topic_config_def, validate_config};
use tributary_common::zk::{update_entity_config, ConfigUpdateError};
use tributary_common::znode::ConfigEntity;

use super::admin::{admin_err, zk_err, AdminError};
use super::{s, BrokerContext};
use crate::dynamic_config::{self, source, Dynamic};
use crate::topic_config::{self, DEFS};

/// Config resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

/// The loggers a BROKER_LOGGER resource lists besides `root`: this binary's module targets
/// and the state-change log.
const LOGGERS: &[&str] = &[
    "broker",
    "state_change",
    "tributary_broker",
    "tributary_broker::api",
    "tributary_broker::group",
    "tributary_broker::log",
    "tributary_broker::net",
    "tributary_broker::replica",
    "tributary_broker::replica::fetcher",
    "tributary_broker::zk",
    "tributary_common",
    "zookeeper_client",
];

/// The effective topic configuration for `overrides`, as CreateTopics v5+ and
/// DescribeConfigs report it: key, value and source (the override, else the broker
/// setting it inherits with that setting's own source, else Kafka's default).
pub(super) fn topic_configs(
    ctx: &BrokerContext,
    overrides: &BTreeMap<String, String>,
) -> Vec<(&'static str, String, i8)> {
    let effective = ctx.effective();
    DEFS.iter()
        .map(|d| match overrides.get(d.name) {
            Some(v) => (d.name, v.clone(), source::DYNAMIC_TOPIC_CONFIG),
            None => {
                let inherited = d
                    .broker_synonym
                    .and_then(|b| effective.sources(b, None).first().map(|(_, _, src)| *src))
                    .unwrap_or(source::DEFAULT_CONFIG);
                (d.name, topic_config::default_value(&effective.config, d.name), inherited)
            }
        })
        .collect()
}

fn config_entry(
    name: &str,
    value: Option<String>,
    source: i8,
    read_only: bool,
    kind: i8,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = s(name);
    e.value = value.map(s);
    e.read_only = read_only;
    e.config_source = source;
    e.config_type = kind;
    e
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    let mut syn = DescribeConfigsSynonym::default();
    syn.name = s(name);
    syn.value = value.map(s);
    syn.source = source;
    syn
}

/// Kafka's words for a broker resource naming another broker.
fn unexpected_broker(ctx: &BrokerContext, name: &str) -> AdminError {
    admin_err(
        ResponseError::InvalidRequest,
        format!("Unexpected broker id, expected {} or empty string, but received {name}", ctx.config.broker_id),
    )
}

/// This broker's settings as DescribeConfigs reports them: every setting with the value in
/// force, its source and synonyms (per broker, cluster default, static, default), whether it
/// can change without a restart, plus dynamic keys stored without effect and the version keys
/// tools read to tell which Kafka this is.
fn describe_this_broker(
    ctx: &BrokerContext,
    version: i16,
    synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    let effective = ctx.effective();
    let c = &effective.config;
    let advertised = || c.advertised().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut out = Vec::new();
    let mut push = |key: &str, value: Option<String>, kind: ConfigType, levels: Vec<(String, Option<String>, i8)>| {
        if !wanted(key) {
            return;
        }
        let read_only = !matches!(dynamic_config::dynamic(key), Some(Dynamic::Live | Dynamic::Inert));
        let source = levels.first().map_or(source::DEFAULT_CONFIG, |l| l.2);
        let mut entry = config_entry(key, value, source, read_only, if version >= 3 { kind as i8 } else { 0 });
        if synonyms {
            entry.synonyms = levels.into_iter().map(|(k, v, src)| synonym(&k, v, src)).collect();
        }
        out.push(entry);
    };
    let statics = ctx.config.values();
    for (key, value, kind) in c.values() {
        let value = match (key, value) {
            ("advertised.listeners", None) => Some(advertised()),
            (_, value) => value,
        };
        let static_value = statics.iter().find(|(k, _, _)| *k == key).and_then(|(_, v, _)| v.clone());
        push(key, value, kind, effective.sources(key, static_value));
    }
    // Dynamic keys Kafka has that are stored here without effect (thread pools, segment
    // sizes) and retention's other spellings, when an operator set them.
    let declared: HashSet<&str> = c.values().iter().map(|(k, _, _)| *k).collect();
    let mut extra: Vec<&String> = effective
        .this_broker
        .keys()
        .chain(effective.cluster_default.keys())
        .filter(|k| !declared.contains(k.as_str()))
        .collect();
    extra.sort();
    extra.dedup();
    for key in extra {
        let levels: Vec<_> =
            effective.sources(key, None).into_iter().filter(|l| l.0 == *key && l.1.is_some()).collect();
        let value = levels.first().and_then(|l| l.1.clone());
        push(key, value, ConfigType::String, levels);
    }
    // Kafka UI reads inter.broker.protocol.version to decide which features the cluster
    // has; these are the values of a Kafka 3.9 broker left at its defaults.
    for (key, value) in super::api_versions::VERSION_CONFIGS {
        push(
            key,
            Some(value.to_string()),
            ConfigType::String,
            vec![(key.to_string(), Some(value.to_string()), source::DEFAULT_CONFIG)],
        );
    }
    out
}

pub(super) fn describe_configs(
    ctx: &BrokerContext,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let cluster = ctx.cluster();
    let me = ctx.config.broker_id.to_string();
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.as_str().to_string();
        let mut result = DescribeConfigsResult::default();
        result.error_message = None;
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let wanted =
            |key: &str| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == key));
        let kind = |k: ConfigType| if version >= 3 { k as i8 } else { 0 };
        let outcome: Result<Vec<DescribeConfigsResourceResult>, AdminError> = match resource.resource_type {
            TOPIC => match cluster.topics.get(&name) {
                None => Err(admin_err(ResponseError::UnknownTopicOrPartition, format!("Topic {name} does not exist"))),
                Some(t) => {
                    let effective = ctx.effective();
                    Ok(topic_configs(ctx, &t.config)
                        .into_iter()
                        .filter(|(key, _, _)| wanted(key))
                        .map(|(key, value, src)| {
                            let def = DEFS.iter().find(|d| d.name == key).expect("topic configs come from DEFS");
                            let mut entry = config_entry(key, Some(value), src, false, kind(def.kind));
                            if request.include_synonyms {
                                if let Some(v) = t.config.get(key) {
                                    entry.synonyms.push(synonym(key, Some(v.clone()), source::DYNAMIC_TOPIC_CONFIG));
                                }
                                if let Some(broker_key) = def.broker_synonym {
                                    let static_value = Some(topic_config::default_value(&ctx.config, key));
                                    for (k, v, src) in effective.sources(broker_key, static_value) {
                                        entry.synonyms.push(synonym(&k, v, src));
                                    }
                                }
                            }
                            entry
                        })
                        .collect())
                }
            },
            BROKER if name.is_empty() => {
                // Kafka describes the cluster-wide resource as its dynamic defaults only.
                let effective = ctx.effective();
                Ok(effective
                    .cluster_default
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| {
                        let mut e = config_entry(
                            k,
                            Some(v.clone()),
                            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                            false,
                            kind(ConfigType::String),
                        );
                        if request.include_synonyms {
                            e.synonyms.push(synonym(k, Some(v.clone()), source::DYNAMIC_DEFAULT_BROKER_CONFIG));
                        }
                        e
                    })
                    .collect())
            }
            BROKER if name == me => Ok(describe_this_broker(ctx, version, request.include_synonyms, &wanted)),
            BROKER | BROKER_LOGGER if name != me => Err(unexpected_broker(ctx, &name)),
            BROKER_LOGGER => Ok(telemetry::logger_levels(LOGGERS)
                .into_iter()
                .filter(|(logger, _)| wanted(logger))
                .map(|(logger, level)| {
                    let src = if telemetry::logger_changed(&logger) {
                        source::DYNAMIC_BROKER_LOGGER_CONFIG
                    } else {
                        source::DEFAULT_CONFIG
                    };
                    config_entry(&logger, Some(level), src, false, kind(ConfigType::String))
                })
                .collect()),
            other => Err(admin_err(
                ResponseError::InvalidRequest,
                format!("config resource type {other} is not supported (topics: 2, brokers: 4, broker loggers: 8)"),
            )),
        };
        match outcome {
            Ok(configs) => result.configs = configs,
            Err(e) => {
                result.error_code = e.code;
                result.error_message = Some(s(e.message));
            }
        }
        response.results.push(result);
    }
    response
}

/// What a request asks of one resource's stored overrides.
enum Change {
    /// AlterConfigs: the overrides become exactly these.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: these operations on the stored overrides.
    Ops(Vec<(String, AlterOp)>),
}

impl Change {
    fn apply(
        &self,
        current: &BTreeMap<String, String>,
        list_default: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, String> {
        match self {
            Change::Replace(m) => Ok(m.clone()),
            Change::Ops(ops) => alter_overrides(current, ops, list_default),
        }
    }

    fn describe(&self) -> String {
        match self {
            Change::Replace(m) => format!("replaced with {m:?}"),
            Change::Ops(ops) => ops
                .iter()
                .map(|(k, op)| match op {
                    AlterOp::Set(v) => format!("{k}={v}"),
                    AlterOp::Delete => format!("-{k}"),
                    AlterOp::Append(v) => format!("{k}+=[{v}]"),
                    AlterOp::Subtract(v) => format!("{k}-=[{v}]"),
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn resource_label(resource_type: i8, name: &str) -> String {
    let kind = match resource_type {
        TOPIC => "TOPIC",
        BROKER => "BROKER",
        BROKER_LOGGER => "BROKER_LOGGER",
        _ => "UNKNOWN",
    };
    format!("ConfigResource(type={kind}, name='{name}')")
}

/// Kafka's answer to a value that does not validate: INVALID_REQUEST, naming the resource.
fn invalid_value(resource_type: i8, name: &str, reason: impl std::fmt::Display) -> AdminError {
    admin_err(
        ResponseError::InvalidRequest,
        format!("Invalid config value for resource {}: {reason}", resource_label(resource_type, name)),
    )
}

/// Reads, changes, checks and (unless `validate_only`) writes one entity's overrides
/// (`update_entity_config`), then waits until this broker's own view holds the change.
pub(super) async fn read_modify_write(
    ctx: &BrokerContext,
    entity: ConfigEntity,
    validate_only: bool,
    next: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
) -> Result<(), AdminError> {
    let client = ctx.zk.client().map_err(zk_err)?;
    let wanted = update_entity_config(&client, &entity, validate_only, next).await.map_err(|e| match e {
        ConfigUpdateError::Refused(e) => e,
        ConfigUpdateError::Zk(e) => admin_err(ResponseError::UnknownServerError, format!("{e}; retry")),
        ConfigUpdateError::KeptChanging(path) => admin_err(
            ResponseError::RequestTimedOut,
            format!("{path} kept changing while this change was applied; retry"),
        ),
    })?;
    if validate_only {
        return Ok(());
    }
    // Read-your-writes on this broker, as Kafka's (which describes from ZooKeeper): answer
    // once this broker's own view holds the change. Other brokers take it up from their
    // watches moments later.
    let seen = |m: &crate::metadata::ClusterMetadata| match &entity {
        ConfigEntity::Topic(t) => m.topics.get(t).is_none_or(|t| t.config == wanted),
        other => m.entity_config(other) == wanted,
    };
    if !ctx.wait_for_metadata(std::time::Duration::from_secs(5), seen).await {
        tracing::warn!(
            znode = entity.path(),
            "a config change was written but this broker has not seen it after 5 s; is its ZooKeeper session healthy?"
        );
    }
    Ok(())
}

async fn alter_topic(ctx: &BrokerContext, name: &str, change: &Change, validate_only: bool) -> Result<(), AdminError> {
    match ctx.cluster().topics.get(name) {
        None => return Err(admin_err(ResponseError::UnknownTopicOrPartition, format!("Topic {name} does not exist"))),
        Some(t) if t.deleting => {
            return Err(admin_err(ResponseError::UnknownTopicOrPartition, format!("Topic {name} is being deleted")))
        }
        Some(_) => {}
    }
    let effective = ctx.effective();
    let list_default = |key: &str| {
        topic_config_def(key)
            .filter(|d| d.kind == ConfigType::List)
            .map(|d| topic_config::default_value(&effective.config, d.name))
    };
    read_modify_write(ctx, ConfigEntity::Topic(name.to_string()), validate_only, |current| {
        let next = change.apply(current, list_default).map_err(|e| admin_err(ResponseError::InvalidRequest, e))?;
        if let Some(unknown) = next.keys().find(|k| topic_config_def(k).is_none()) {
            return Err(admin_err(ResponseError::InvalidConfig, format!("Unknown topic config name: {unknown}")));
        }
        validate_config(&next).map_err(|e| invalid_value(TOPIC, name, e))?;
        Ok(next)
    })
    .await
}

async fn alter_broker(ctx: &BrokerContext, name: &str, change: &Change, validate_only: bool) -> Result<(), AdminError> {
    let me = ctx.config.broker_id;
    let target: Option<BrokerId> = if name.is_empty() {
        None
    } else {
        let id: BrokerId = name.parse().map_err(|_| {
            admin_err(ResponseError::InvalidRequest, format!("Broker id must be an integer, but it is: {name}"))
        })?;
        if id != me {
            return Err(admin_err(
                ResponseError::InvalidRequest,
                format!("Unexpected broker id, expected {me}, but received {name}"),
            ));
        }
        Some(id)
    };
    let effective = ctx.effective();
    read_modify_write(ctx, ConfigEntity::Broker(target), validate_only, |current| {
        let next = change.apply(current, |_| None).map_err(|e| admin_err(ResponseError::InvalidRequest, e))?;
        let layers = match target {
            None => [&next, &effective.this_broker],
            Some(_) => [&effective.cluster_default, &next],
        };
        dynamic_config::check(&ctx.config, layers).map_err(|e| invalid_value(BROKER, name, e))?;
        Ok(next)
    })
    .await
}

fn alter_loggers(
    ctx: &BrokerContext,
    name: &str,
    ops: &[(String, AlterOp)],
    validate_only: bool,
) -> Result<(), AdminError> {
    if name != ctx.config.broker_id.to_string() {
        return Err(admin_err(
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {}, but received {name}", ctx.config.broker_id),
        ));
    }
    let known: Vec<String> = telemetry::logger_levels(LOGGERS).into_iter().map(|(l, _)| l).collect();
    for (logger, op) in ops {
        if !known.contains(logger) {
            return Err(admin_err(ResponseError::InvalidConfig, format!("Logger {logger} does not exist!")));
        }
        match op {
            AlterOp::Set(level) => {
                telemetry::kafka_level(logger, level).map_err(|e| admin_err(ResponseError::InvalidConfig, e))?;
            }
            AlterOp::Delete if logger == telemetry::ROOT_LOGGER => {
                return Err(admin_err(
                    ResponseError::InvalidRequest,
                    "Removing the log level of the root logger is not allowed",
                ));
            }
            AlterOp::Delete => {}
            AlterOp::Append(_) | AlterOp::Subtract(_) => {
                return Err(admin_err(
                    ResponseError::InvalidRequest,
                    format!(
                        "APPEND and SUBTRACT are not allowed on broker loggers (logger {logger}); use SET or DELETE"
                    ),
                ));
            }
        }
    }
    if validate_only {
        return Ok(());
    }
    for (logger, op) in ops {
        let level = match op {
            AlterOp::Set(level) => Some(level.as_str()),
            _ => None,
        };
        telemetry::set_logger_level(logger, level).map_err(|e| admin_err(ResponseError::InvalidRequest, e))?;
        tracing::info!(logger, level = level.unwrap_or("(inherited)"), "log level changed through BROKER_LOGGER");
    }
    Ok(())
}

/// The resources named more than once in one request: Kafka refuses each of them.
fn repeated<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    resources.filter(|(t, n)| !seen.insert((*t, n.to_string()))).map(|(t, n)| (t, n.to_string())).collect()
}

async fn alter_one(
    ctx: &BrokerContext,
    resource_type: i8,
    name: &str,
    change: Change,
    validate_only: bool,
    incremental: bool,
) -> Result<(), AdminError> {
    let outcome = match (resource_type, &change) {
        (TOPIC, _) => alter_topic(ctx, name, &change, validate_only).await,
        (BROKER, _) => alter_broker(ctx, name, &change, validate_only).await,
        (BROKER_LOGGER, Change::Ops(ops)) if incremental => alter_loggers(ctx, name, ops, validate_only),
        (other, _) => Err(admin_err(
            ResponseError::InvalidRequest,
            format!(
                "{} is only supported for topics{}, but resource type is {other}",
                if incremental { "IncrementalAlterConfigs" } else { "AlterConfigs" },
                if incremental { ", brokers and broker loggers" } else { " and brokers" }
            ),
        )),
    };
    match &outcome {
        Ok(()) if !validate_only && resource_type != BROKER_LOGGER => {
            tracing::info!(
                resource = resource_label(resource_type, name),
                change = change.describe(),
                "config changed in ZooKeeper; brokers apply it from their watch"
            );
        }
        Ok(()) => {}
        Err(e) => {
            tracing::info!(resource = resource_label(resource_type, name), code = e.code, error = %e.message, "config change refused")
        }
    }
    outcome
}

pub(super) async fn alter_configs(ctx: &BrokerContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let twice = repeated(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.as_str().to_string();
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        // Null unless there is an error, as Kafka sends it (the codec's default is "").
        r.error_message = None;
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        let outcome = if twice.contains(&(resource.resource_type, name.clone())) {
            Err(admin_err(
                ResponseError::InvalidRequest,
                format!("{} appears more than once in the request", resource_label(resource.resource_type, &name)),
            ))
        } else {
            // Kafka's legacy AlterConfigs ignores entries without a value.
            let wanted: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|c| Some((c.name.as_str().to_string(), c.value.as_ref()?.as_str().to_string())))
                .collect();
            alter_one(ctx, resource.resource_type, &name, Change::Replace(wanted), request.validate_only, false).await
        };
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = Some(s(e.message));
        }
        response.responses.push(r);
    }
    response
}

pub(super) async fn incremental_alter_configs(
    ctx: &BrokerContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let twice = repeated(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.as_str().to_string();
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.error_message = None;
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        let ops: Result<Vec<(String, AlterOp)>, String> = resource
            .configs
            .iter()
            .map(|c| {
                let key = c.name.as_str();
                AlterOp::from_wire(key, c.config_operation, c.value.as_ref().map(|v| v.as_str()))
                    .map(|op| (key.to_string(), op))
            })
            .collect();
        let outcome = if twice.contains(&(resource.resource_type, name.clone())) {
            Err(admin_err(
                ResponseError::InvalidRequest,
                format!("{} appears more than once in the request", resource_label(resource.resource_type, &name)),
            ))
        } else {
            match ops {
                Err(e) => Err(admin_err(ResponseError::InvalidRequest, e)),
                Ok(ops) => {
                    alter_one(ctx, resource.resource_type, &name, Change::Ops(ops), request.validate_only, true).await
                }
            }
        };
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = Some(s(e.message));
        }
        response.responses.push(r);
    }
    response
}
