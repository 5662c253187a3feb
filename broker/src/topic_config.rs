//! Topic-level configuration on this broker (the keys, types and validation live in
//! `tributary_common::topic`). A topic's overrides are parsed once per metadata snapshot
//! into a typed [`TopicConfig`] that every partition of the topic carries; nothing else
//! reads config strings. Tributary enforces `retention.ms`, `retention.bytes`,
//! `cleanup.policy` (delete or not), `max.message.bytes`, `message.timestamp.type`,
//! `min.insync.replicas` and `flush.messages`; the other keys are stored and described so
//! that tools that set them keep working.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

#[cfg(test)]
use tributary_common::config::ConfigType as Kind;
pub(crate) use tributary_common::topic::TOPIC_CONFIGS as DEFS;

/// The settings of one topic that the broker acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicConfig {
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches.
    pub log_append_time: bool,
    /// `flush.messages <= 1`: every acks=all write waits for the flush.
    pub flush_every_message: bool,
    /// `min.insync.replicas` (at least 1).
    pub min_insync_replicas: usize,
    /// `retention.ms` (negative: no limit).
    pub retention_ms: i64,
    /// `retention.bytes` per partition (negative: no limit).
    pub retention_bytes: i64,
    /// `cleanup.policy` includes `delete`: time and size retention apply.
    pub delete_retention: bool,
    /// `leader.replication.throttled.replicas`: leader replicas whose serving of
    /// out-of-sync followers counts against `leader.replication.throttled.rate`.
    pub leader_throttled: Throttled,
    /// `follower.replication.throttled.replicas`: follower replicas whose catching up counts
    /// against `follower.replication.throttled.rate`.
    pub follower_throttled: Throttled,
}

/// A `*.replication.throttled.replicas` value: none, every replica (`*`), or
/// `partition:broker` pairs, as `kafka-reassign-partitions --throttle` writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// Nothing throttled.
    #[default]
    None,
    /// `*`.
    All,
    /// The listed (partition, broker) replicas.
    Replicas(Vec<(i32, i32)>),
}

impl Throttled {
    /// Parses Kafka's value; entries that do not parse are left out.
    pub(crate) fn parse(value: &str) -> Throttled {
        let value = value.trim();
        if value == "*" {
            return Throttled::All;
        }
        let pairs: Vec<(i32, i32)> = value
            .split(',')
            .filter_map(|e| {
                let (p, b) = e.trim().split_once(':')?;
                Some((p.trim().parse().ok()?, b.trim().parse().ok()?))
            })
            .collect();
        if pairs.is_empty() {
            Throttled::None
        } else {
            Throttled::Replicas(pairs)
        }
    }

    /// Whether the replica of `partition` on `broker` is throttled.
    pub(crate) fn includes(&self, partition: i32, broker: i32) -> bool {
        match self {
            Throttled::None => false,
            Throttled::All => true,
            Throttled::Replicas(r) => r.contains(&(partition, broker)),
        }
    }
}

impl TopicConfig {
    /// A topic without overrides on a broker configured as `c`.
    pub(crate) fn defaults(c: &BrokerConfig) -> TopicConfig {
        TopicConfig {
            max_message_bytes: c.message_max_bytes.max(0) as usize,
            log_append_time: false,
            flush_every_message: c.log_flush_interval_messages <= 1,
            min_insync_replicas: (c.min_insync_replicas.max(1)) as usize,
            retention_ms: c.log_retention_ms,
            retention_bytes: c.log_retention_bytes,
            delete_retention: true,
            leader_throttled: Throttled::None,
            follower_throttled: Throttled::None,
        }
    }

    /// `defaults` with a topic's overrides applied. Values were validated when they were
    /// written (CreateTopics, AlterConfigs, the HTTP API); one that does not parse keeps
    /// the default.
    pub(crate) fn with_overrides(defaults: &TopicConfig, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let get = |key: &str| overrides.get(key).map(|v| v.trim());
        let parsed = |key: &str| get(key).and_then(|v| v.parse::<i64>().ok());
        TopicConfig {
            max_message_bytes: parsed("max.message.bytes").map_or(defaults.max_message_bytes, |v| v.max(0) as usize),
            log_append_time: get("message.timestamp.type").map_or(defaults.log_append_time, |v| v == "LogAppendTime"),
            flush_every_message: parsed("flush.messages").map_or(defaults.flush_every_message, |n| n <= 1),
            min_insync_replicas: parsed("min.insync.replicas")
                .map_or(defaults.min_insync_replicas, |n| n.max(1) as usize),
            retention_ms: parsed("retention.ms").unwrap_or(defaults.retention_ms),
            retention_bytes: parsed("retention.bytes").unwrap_or(defaults.retention_bytes),
            delete_retention: get("cleanup.policy")
                .map_or(defaults.delete_retention, |v| v.split(',').any(|p| p.trim() == "delete")),
            leader_throttled: get("leader.replication.throttled.replicas")
                .map_or_else(|| defaults.leader_throttled.clone(), Throttled::parse),
            follower_throttled: get("follower.replication.throttled.replicas")
                .map_or_else(|| defaults.follower_throttled.clone(), Throttled::parse),
        }
    }
}

/// The default of `name` on a broker configured as `c`, as DescribeConfigs shows it.
pub(crate) fn default_value(c: &BrokerConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => c.log_flush_interval_messages.min(i64::MAX as u64).to_string(),
        "flush.ms" => c.log_flush_interval_ms.to_string(),
        "index.interval.bytes" => "4096".into(),
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "max.compaction.lag.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => i64::MAX.to_string(),
        "max.message.bytes" => c.message_max_bytes.to_string(),
        "message.downconversion.enable" => "true".into(),
        "message.format.version" => "3.0-IV1".into(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" | "segment.jitter.ms" => "0".into(),
        "min.insync.replicas" => c.min_insync_replicas.to_string(),
        "preallocate" | "remote.storage.enable" | "unclean.leader.election.enable" => "false".into(),
        "retention.bytes" => c.log_retention_bytes.to_string(),
        "retention.ms" => c.log_retention_ms.to_string(),
        "segment.bytes" => "1073741824".into(),
        "segment.index.bytes" => "10485760".into(),
        "segment.ms" => "604800000".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_broker_settings() {
        let c = BrokerConfig { log_retention_ms: 1234, ..BrokerConfig::default() };
        assert_eq!(default_value(&c, "retention.ms"), "1234");
        for d in DEFS {
            assert!(!default_value(&c, d.name).is_empty() || d.kind == Kind::List, "{} has no default", d.name);
        }
        let t = TopicConfig::defaults(&c);
        assert_eq!(t.retention_ms, 1234);
        assert_eq!(t.max_message_bytes, c.message_max_bytes as usize);
        assert!(t.delete_retention && !t.log_append_time);
    }

    #[test]
    fn overrides_are_parsed_once_into_the_typed_config() {
        let d = TopicConfig::defaults(&BrokerConfig::default());
        // (key, value, what changes)
        type Holds = fn(&TopicConfig) -> bool;
        let cases: &[(&str, &str, Holds)] = &[
            ("max.message.bytes", "100", |t| t.max_message_bytes == 100),
            ("message.timestamp.type", "LogAppendTime", |t| t.log_append_time),
            ("message.timestamp.type", "CreateTime", |t| !t.log_append_time),
            ("flush.messages", "1", |t| t.flush_every_message),
            ("flush.messages", "2", |t| !t.flush_every_message),
            ("min.insync.replicas", "2", |t| t.min_insync_replicas == 2),
            ("min.insync.replicas", "0", |t| t.min_insync_replicas == 1),
            ("retention.ms", "-1", |t| t.retention_ms == -1),
            ("retention.bytes", "4096", |t| t.retention_bytes == 4096),
            ("cleanup.policy", "compact", |t| !t.delete_retention),
            ("cleanup.policy", "compact,delete", |t| t.delete_retention),
            ("cleanup.policy", "delete", |t| t.delete_retention),
            ("min.insync.replicas", "not a number", |t| t.min_insync_replicas == 1),
        ];
        for (key, value, holds) in cases {
            let t = TopicConfig::with_overrides(&d, &BTreeMap::from([(key.to_string(), value.to_string())]));
            assert!(holds(&t), "{key}={value} gave {t:?}");
        }
        assert_eq!(TopicConfig::with_overrides(&d, &BTreeMap::new()), d);
    }

    #[test]
    fn throttled_replica_lists_read_kafkas_format() {
        // (value, partition, broker, throttled)
        let cases = [
            ("*", 3, 9, true),
            ("0:1,0:2,1:3", 0, 2, true),
            ("0:1, 0:2 ,1:3", 1, 3, true),
            ("0:1,0:2", 1, 1, false),
            ("", 0, 1, false),
            ("garbage", 0, 1, false),
        ];
        for (value, partition, broker, want) in cases {
            assert_eq!(Throttled::parse(value).includes(partition, broker), want, "{value:?} {partition}:{broker}");
        }
    }
}
