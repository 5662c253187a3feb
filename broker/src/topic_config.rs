//! Topic-level configuration defaults on this broker (the keys, types and validation live
//! in `tributary_common::topic`). Tributary enforces `retention.ms`, `retention.bytes`,
//! `max.message.bytes` and `message.timestamp.type`; the other keys are stored and
//! described so that tools that set them keep working.

use crate::config::BrokerConfig;

pub use tributary_common::topic::{validate_config as validate, ConfigKind as Kind, TOPIC_CONFIGS as DEFS};

/// The default of `name` on a broker configured as `c`.
pub fn default_value(c: &BrokerConfig, name: &str) -> String {
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
    }
}
