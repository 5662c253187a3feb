//! Kafka's dynamic broker settings that Tributary knows (Kafka's `DynamicBrokerConfig`
//! table, narrowed to what Tributary honours), shared by the broker (which applies them)
//! and the coordinator's HTTP API (which writes them).

use std::collections::BTreeMap;

use crate::config::ConfigType;

/// What a change to a dynamic key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dynamic {
    /// Applied as soon as brokers see the change.
    Live,
    /// Accepted and stored, with no effect (as the same key at start-up).
    Inert,
    /// Dynamic in Kafka, but Tributary applies it only at start-up.
    Restart,
}

/// One dynamic key.
#[derive(Clone, Copy, Debug)]
pub struct DynamicKey {
    /// The setting.
    pub key: &'static str,
    /// What a change does.
    pub effect: Dynamic,
    /// Its type.
    pub kind: ConfigType,
    /// Smallest value allowed (numbers).
    pub min: Option<i64>,
}

const fn key(key: &'static str, effect: Dynamic, kind: ConfigType, min: Option<i64>) -> DynamicKey {
    DynamicKey { key, effect, kind, min }
}

/// Kafka's dynamic broker keys that Tributary knows, and what a change does.
pub const DYNAMIC_BROKER_KEYS: &[DynamicKey] = &[
    key("log.retention.ms", Dynamic::Live, ConfigType::Long, None),
    key("log.retention.minutes", Dynamic::Live, ConfigType::Int, None),
    key("log.retention.hours", Dynamic::Live, ConfigType::Int, None),
    key("log.retention.bytes", Dynamic::Live, ConfigType::Long, None),
    key("log.flush.interval.messages", Dynamic::Live, ConfigType::Long, Some(1)),
    key("log.flush.interval.ms", Dynamic::Live, ConfigType::Long, Some(1)),
    key("message.max.bytes", Dynamic::Live, ConfigType::Int, Some(64)),
    key("min.insync.replicas", Dynamic::Live, ConfigType::Int, Some(1)),
    key("log.segment.bytes", Dynamic::Live, ConfigType::Int, Some(14)),
    key("log.roll.ms", Dynamic::Live, ConfigType::Long, Some(1)),
    key("log.cleanup.policy", Dynamic::Live, ConfigType::List, None),
    key("log.cleaner.threads", Dynamic::Live, ConfigType::Int, Some(0)),
    key("log.cleaner.io.max.bytes.per.second", Dynamic::Live, ConfigType::Double, None),
    key("log.cleaner.dedupe.buffer.size", Dynamic::Live, ConfigType::Long, Some(1 << 20)),
    key("log.cleaner.io.buffer.load.factor", Dynamic::Live, ConfigType::Double, None),
    key("log.cleaner.backoff.ms", Dynamic::Live, ConfigType::Long, Some(0)),
    key("log.cleaner.min.cleanable.ratio", Dynamic::Live, ConfigType::Double, None),
    key("log.cleaner.delete.retention.ms", Dynamic::Live, ConfigType::Long, Some(0)),
    key("log.cleaner.min.compaction.lag.ms", Dynamic::Live, ConfigType::Long, Some(0)),
    key("log.cleaner.max.compaction.lag.ms", Dynamic::Live, ConfigType::Long, Some(1)),
    key("num.io.threads", Dynamic::Inert, ConfigType::Int, Some(1)),
    key("num.network.threads", Dynamic::Inert, ConfigType::Int, Some(1)),
    key("num.recovery.threads.per.data.dir", Dynamic::Inert, ConfigType::Int, Some(1)),
    // kafka-reassign-partitions --throttle sets these on every broker.
    key("leader.replication.throttled.rate", Dynamic::Live, ConfigType::Long, Some(0)),
    key("follower.replication.throttled.rate", Dynamic::Live, ConfigType::Long, Some(0)),
    key("replica.alter.log.dirs.io.max.bytes.per.second", Dynamic::Inert, ConfigType::Long, Some(0)),
    key("listeners", Dynamic::Restart, ConfigType::String, None),
    key("advertised.listeners", Dynamic::Restart, ConfigType::String, None),
    key("listener.security.protocol.map", Dynamic::Restart, ConfigType::String, None),
    key("max.connections", Dynamic::Restart, ConfigType::Int, Some(1)),
];

/// The dynamic key `name`, if it is one.
pub fn dynamic_key(name: &str) -> Option<&'static DynamicKey> {
    DYNAMIC_BROKER_KEYS.iter().find(|k| k.key == name)
}

/// Why a set of dynamic overrides cannot be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DynamicError {
    /// Static in Kafka too.
    #[error("Cannot update these configs dynamically: [{}]; set them in the broker's configuration (server.properties, KAFKA_* or TRIBUTARY_* variables) and restart it", .0.join(", "))]
    Static(Vec<String>),
    /// Dynamic in Kafka, applied only at start-up by Tributary.
    #[error("Tributary applies these configs only at start-up: [{}]; set them in the broker's configuration and restart it", .0.join(", "))]
    NeedsRestart(Vec<String>),
    /// Not a broker setting.
    #[error("Unknown broker configs: [{}]", .0.join(", "))]
    Unknown(Vec<String>),
    /// A value does not parse or is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Checks overrides by the table alone: every key dynamic (`is_setting` tells a static
/// setting from an unknown key) and every value of its type and at least its minimum.
///
/// # Errors
/// [`DynamicError`] naming the offending keys, the first bad value.
pub fn check_overrides(
    overrides: &BTreeMap<String, String>,
    is_setting: impl Fn(&str) -> bool,
) -> Result<(), DynamicError> {
    let pick = |want: &dyn Fn(&str) -> bool| -> Vec<String> { overrides.keys().filter(|k| want(k)).cloned().collect() };
    let unknown = pick(&|k| dynamic_key(k).is_none() && !is_setting(k));
    if !unknown.is_empty() {
        return Err(DynamicError::Unknown(unknown));
    }
    let fixed = pick(&|k| dynamic_key(k).is_none());
    if !fixed.is_empty() {
        return Err(DynamicError::Static(fixed));
    }
    let restart = pick(&|k| dynamic_key(k).is_some_and(|d| d.effect == Dynamic::Restart));
    if !restart.is_empty() {
        return Err(DynamicError::NeedsRestart(restart));
    }
    for (name, value) in overrides {
        let d = dynamic_key(name).expect("checked above");
        let number = match d.kind {
            ConfigType::Int | ConfigType::Short => value.trim().parse::<i32>().map(i64::from).map_err(|_| "INT"),
            ConfigType::Long => value.trim().parse::<i64>().map_err(|_| "LONG"),
            _ => continue,
        };
        let n = number.map_err(|kind| {
            DynamicError::Invalid(format!(
                "Invalid value {value} for configuration {name}: Not a number of type {kind}"
            ))
        })?;
        if let Some(min) = d.min.filter(|m| n < *m) {
            return Err(DynamicError::Invalid(format!(
                "Invalid value {value} for configuration {name}: Value must be at least {min}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_against_the_table() {
        let is_setting = |k: &str| k == "broker.id";
        // (overrides, accepted, words in the error)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[("log.retention.ms", "5")], None),
            (&[("num.io.threads", "8")], None),
            (&[("broker.id", "2")], Some("Cannot update these configs dynamically: [broker.id]")),
            (&[("nope", "2")], Some("Unknown broker configs: [nope]")),
            (&[("listeners", "PLAINTEXT://:1")], Some("only at start-up")),
            (&[("message.max.bytes", "10")], Some("at least 64")),
            (&[("log.retention.ms", "soon")], Some("Not a number of type LONG")),
            (&[("min.insync.replicas", "0")], Some("at least 1")),
        ];
        for (pairs, error) in cases {
            let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            match (check_overrides(&map, is_setting), error) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => assert!(e.to_string().contains(words), "{pairs:?}: {e}"),
                (got, want) => panic!("{pairs:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}
