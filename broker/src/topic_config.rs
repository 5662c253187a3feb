//! Topic-level configuration on this broker (the keys, types and validation live in
//! `tributary_common::topic`). A topic's overrides are parsed once per metadata snapshot
//! into a typed [`TopicConfig`] that every partition of the topic carries; nothing else
//! reads config strings. Tributary enforces `retention.ms`, `retention.bytes`,
//! `cleanup.policy` (delete, compact or both), the compaction settings
//! (`min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
//! `delete.retention.ms`), `segment.bytes` and `segment.ms` (when a partition's open chunk
//! closes), `max.message.bytes`, `message.timestamp.type`, `min.insync.replicas` and
//! `flush.messages`; the other keys are stored and described so that tools that set them
//! keep working.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::log::cleaner::Compaction;
use crate::log::Roll;

#[cfg(test)]
use tributary_common::config::ConfigType as Kind;
pub(crate) use tributary_common::topic::TOPIC_CONFIGS as DEFS;

/// The settings of one topic that the broker acts on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopicConfig {
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`, `after.max.ms` and `difference.max.ms` as set.
    pub timestamp_limits: TimestampLimits,
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
    /// `cleanup.policy` includes `compact`: the log cleaner keeps each key's latest record,
    /// and records without a key are refused.
    pub compact: bool,
    /// The compaction settings.
    pub compaction: Compaction,
    /// `segment.bytes` and `segment.ms` (for compacted topics at most
    /// `max.compaction.lag.ms`): when the open chunk closes.
    pub roll: Roll,
    /// `leader.replication.throttled.replicas`: leader replicas whose serving of
    /// out-of-sync followers counts against `leader.replication.throttled.rate`.
    pub leader_throttled: Throttled,
    /// `follower.replication.throttled.replicas`: follower replicas whose catching up counts
    /// against `follower.replication.throttled.rate`.
    pub follower_throttled: Throttled,
}

/// How far from the broker's clock a CreateTime record's timestamp may lie, as the three
/// settings hold them (topic, else broker default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimestampLimits {
    /// `message.timestamp.before.max.ms`.
    pub before_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub after_ms: i64,
    /// `message.timestamp.difference.max.ms` (deprecated by KIP-937).
    pub difference_ms: i64,
}

impl TimestampLimits {
    /// The bound in force (Kafka 3.6-3.9): a before/after value left at its default
    /// (`i64::MAX`) gives way to `difference.max.ms`.
    fn in_force(value: i64, difference: i64) -> i64 {
        if value == i64::MAX {
            difference
        } else {
            value
        }
    }

    /// (before, after) bounds in force.
    pub(crate) fn bounds(&self) -> (i64, i64) {
        (Self::in_force(self.before_ms, self.difference_ms), Self::in_force(self.after_ms, self.difference_ms))
    }
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
            log_append_time: c.log_message_timestamp_type == "LogAppendTime",
            timestamp_limits: TimestampLimits {
                before_ms: c.log_message_timestamp_before_max_ms,
                after_ms: c.log_message_timestamp_after_max_ms,
                difference_ms: c.log_message_timestamp_difference_max_ms,
            },
            flush_every_message: c.log_flush_interval_messages <= 1,
            min_insync_replicas: (c.min_insync_replicas.max(1)) as usize,
            retention_ms: c.log_retention_ms,
            retention_bytes: c.log_retention_bytes,
            delete_retention: policy_has(&c.log_cleanup_policy, "delete"),
            compact: policy_has(&c.log_cleanup_policy, "compact"),
            compaction: Compaction {
                min_cleanable_ratio: c.log_cleaner_min_cleanable_ratio,
                min_lag_ms: c.log_cleaner_min_compaction_lag_ms,
                max_lag_ms: c.log_cleaner_max_compaction_lag_ms,
                delete_retention_ms: c.log_cleaner_delete_retention_ms,
            },
            roll: Roll { bytes: c.log_segment_bytes.max(14) as u64, ms: c.log_roll_ms.max(1) },
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
        let policy = get("cleanup.policy");
        let d = &defaults.compaction;
        let d_limits = defaults.timestamp_limits;
        let compaction = Compaction {
            min_cleanable_ratio: get("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(d.min_cleanable_ratio),
            min_lag_ms: parsed("min.compaction.lag.ms").map_or(d.min_lag_ms, |v| v.max(0)),
            max_lag_ms: parsed("max.compaction.lag.ms").map_or(d.max_lag_ms, |v| v.max(1)),
            delete_retention_ms: parsed("delete.retention.ms").map_or(d.delete_retention_ms, |v| v.max(0)),
        };
        let compact = policy.map_or(defaults.compact, |v| policy_has(v, "compact"));
        let segment_ms = parsed("segment.ms").map_or(defaults.roll.ms, |v| v.max(1));
        let roll = Roll {
            bytes: parsed("segment.bytes").map_or(defaults.roll.bytes, |v| v.max(14) as u64),
            // KIP-354: a compacted topic's open chunk closes by max.compaction.lag.ms at the latest.
            ms: if compact { segment_ms.min(compaction.max_lag_ms) } else { segment_ms },
        };
        TopicConfig {
            max_message_bytes: parsed("max.message.bytes").map_or(defaults.max_message_bytes, |v| v.max(0) as usize),
            log_append_time: get("message.timestamp.type").map_or(defaults.log_append_time, |v| v == "LogAppendTime"),
            timestamp_limits: TimestampLimits {
                before_ms: parsed("message.timestamp.before.max.ms").map_or(d_limits.before_ms, |v| v.max(0)),
                after_ms: parsed("message.timestamp.after.max.ms").map_or(d_limits.after_ms, |v| v.max(0)),
                difference_ms: parsed("message.timestamp.difference.max.ms").map_or(d_limits.difference_ms, |v| v.max(0)),
            },
            flush_every_message: parsed("flush.messages").map_or(defaults.flush_every_message, |n| n <= 1),
            min_insync_replicas: parsed("min.insync.replicas")
                .map_or(defaults.min_insync_replicas, |n| n.max(1) as usize),
            retention_ms: parsed("retention.ms").unwrap_or(defaults.retention_ms),
            retention_bytes: parsed("retention.bytes").unwrap_or(defaults.retention_bytes),
            delete_retention: policy.map_or(defaults.delete_retention, |v| policy_has(v, "delete")),
            compact,
            compaction,
            roll,
            leader_throttled: get("leader.replication.throttled.replicas")
                .map_or_else(|| defaults.leader_throttled.clone(), Throttled::parse),
            follower_throttled: get("follower.replication.throttled.replicas")
                .map_or_else(|| defaults.follower_throttled.clone(), Throttled::parse),
        }
    }
}

/// Whether a `cleanup.policy` value names `policy`.
fn policy_has(value: &str, policy: &str) -> bool {
    value.split(',').any(|p| p.trim() == policy)
}

/// The default of `name` on a broker configured as `c`, as DescribeConfigs shows it.
pub(crate) fn default_value(c: &BrokerConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => c.log_cleanup_policy.clone(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => c.log_cleaner_delete_retention_ms.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => c.log_flush_interval_messages.min(i64::MAX as u64).to_string(),
        "flush.ms" => c.log_flush_interval_ms.to_string(),
        "index.interval.bytes" => "4096".into(),
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "max.compaction.lag.ms" => c.log_cleaner_max_compaction_lag_ms.to_string(),
        "message.timestamp.after.max.ms" => c.log_message_timestamp_after_max_ms.to_string(),
        "message.timestamp.before.max.ms" => c.log_message_timestamp_before_max_ms.to_string(),
        "message.timestamp.difference.max.ms" => c.log_message_timestamp_difference_max_ms.to_string(),
        "max.message.bytes" => c.message_max_bytes.to_string(),
        "message.downconversion.enable" => "true".into(),
        "message.format.version" => "3.0-IV1".into(),
        "message.timestamp.type" => c.log_message_timestamp_type.clone(),
        "min.cleanable.dirty.ratio" => c.log_cleaner_min_cleanable_ratio.to_string(),
        "min.compaction.lag.ms" => c.log_cleaner_min_compaction_lag_ms.to_string(),
        "segment.jitter.ms" => "0".into(),
        "min.insync.replicas" => c.min_insync_replicas.to_string(),
        "preallocate" | "remote.storage.enable" | "unclean.leader.election.enable" => "false".into(),
        "retention.bytes" => c.log_retention_bytes.to_string(),
        "retention.ms" => c.log_retention_ms.to_string(),
        "segment.bytes" => c.log_segment_bytes.to_string(),
        "segment.index.bytes" => "10485760".into(),
        "segment.ms" => c.log_roll_ms.to_string(),
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
            ("cleanup.policy", "compact", |t| !t.delete_retention && t.compact),
            ("cleanup.policy", "compact,delete", |t| t.delete_retention && t.compact),
            ("cleanup.policy", "delete", |t| t.delete_retention && !t.compact),
            ("min.cleanable.dirty.ratio", "0.1", |t| t.compaction.min_cleanable_ratio == 0.1),
            ("min.cleanable.dirty.ratio", "7", |t| t.compaction.min_cleanable_ratio == 0.5),
            ("delete.retention.ms", "100", |t| t.compaction.delete_retention_ms == 100),
            ("min.compaction.lag.ms", "5", |t| t.compaction.min_lag_ms == 5),
            ("segment.ms", "100", |t| t.roll.ms == 100),
            ("segment.bytes", "4096", |t| t.roll.bytes == 4096),
            ("min.insync.replicas", "not a number", |t| t.min_insync_replicas == 1),
            ("message.timestamp.before.max.ms", "100", |t| t.timestamp_limits.bounds() == (100, i64::MAX)),
            ("message.timestamp.after.max.ms", "200", |t| t.timestamp_limits.bounds() == (i64::MAX, 200)),
            ("message.timestamp.difference.max.ms", "300", |t| t.timestamp_limits.bounds() == (300, 300)),
        ];
        for (key, value, holds) in cases {
            let t = TopicConfig::with_overrides(&d, &BTreeMap::from([(key.to_string(), value.to_string())]));
            assert!(holds(&t), "{key}={value} gave {t:?}");
        }
        assert_eq!(TopicConfig::with_overrides(&d, &BTreeMap::new()), d);
    }

    #[test]
    fn difference_max_ms_stands_in_for_the_bounds_left_at_their_default() {
        const MAX: i64 = i64::MAX;
        // (before, after, difference) -> (before, after) in force
        let cases = [
            ((MAX, MAX, MAX), (MAX, MAX)),
            ((MAX, MAX, 500), (500, 500)),
            ((100, MAX, 500), (100, 500)),
            ((MAX, 200, 500), (500, 200)),
            ((100, 200, 500), (100, 200)),
            ((0, MAX, MAX), (0, MAX)),
        ];
        for ((before_ms, after_ms, difference_ms), expected) in cases {
            let limits = TimestampLimits { before_ms, after_ms, difference_ms };
            assert_eq!(limits.bounds(), expected, "{limits:?}");
        }
        // The broker's settings are the topic defaults; a topic's own win.
        let c = BrokerConfig { log_message_timestamp_difference_max_ms: 60_000, log_message_timestamp_type: "LogAppendTime".into(), ..BrokerConfig::default() };
        let d = TopicConfig::defaults(&c);
        assert_eq!(d.timestamp_limits.bounds(), (60_000, 60_000));
        assert!(d.log_append_time);
        assert_eq!(default_value(&c, "message.timestamp.difference.max.ms"), "60000");
        let t = TopicConfig::with_overrides(&d, &BTreeMap::from([("message.timestamp.after.max.ms".to_string(), "5".to_string())]));
        assert_eq!(t.timestamp_limits.bounds(), (60_000, 5));
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
