//! Dynamic broker settings, as Kafka's `DynamicBrokerConfig` has them: overrides stored in
//! ZooKeeper at `/config/brokers/<default>` (cluster-wide) and `/config/brokers/<id>` (this
//! broker), layered over the static configuration (flags, environment, file) in Kafka's
//! order of precedence: per-broker, then cluster default, then static, then the built-in
//! default. Every broker recomputes its [`EffectiveConfig`] from each metadata snapshot,
//! so a change applies without a restart.
//!
//! Which keys may change follows Kafka's table (`tributary_common::dynamic`), narrowed to what
//! Tributary honours: a key Kafka makes dynamic is either applied live, accepted with no
//! effect (as at start-up, for thread pools and segment sizes Tributary does not have), or
//! refused as needing a restart here (listeners). Every other setting is static.

use std::collections::BTreeMap;

use tributary_common::dynamic::{check_overrides, dynamic_key};
pub(crate) use tributary_common::dynamic::{Dynamic, DynamicError};

use crate::config::BrokerConfig;

/// How `key` may change dynamically; `None` for static and unknown keys.
pub(crate) fn dynamic(key: &str) -> Option<Dynamic> {
    dynamic_key(key).map(|d| d.effect)
}

/// DescribeConfigs `config_source` values.
pub(crate) mod source {
    pub(crate) const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub(crate) const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub(crate) const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub(crate) const STATIC_BROKER_CONFIG: i8 = 4;
    pub(crate) const DEFAULT_CONFIG: i8 = 5;
    pub(crate) const DYNAMIC_BROKER_LOGGER_CONFIG: i8 = 6;
}

/// The static configuration with the dynamic overrides in force applied.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EffectiveConfig {
    /// What the broker acts on.
    pub(crate) config: BrokerConfig,
    /// `/config/brokers/<default>`, as stored.
    pub(crate) cluster_default: BTreeMap<String, String>,
    /// `/config/brokers/<id>` of this broker, as stored.
    pub(crate) this_broker: BTreeMap<String, String>,
}

impl EffectiveConfig {
    /// No dynamic overrides.
    pub(crate) fn from_static(config: BrokerConfig) -> EffectiveConfig {
        EffectiveConfig { config, cluster_default: BTreeMap::new(), this_broker: BTreeMap::new() }
    }

    /// Where `key`'s value comes from, with the value at each level, in precedence order
    /// (DescribeConfigs' synonyms): per-broker, cluster default, static, built-in default.
    pub(crate) fn sources(&self, key: &str, static_value: Option<String>) -> Vec<(String, Option<String>, i8)> {
        let mut out = Vec::new();
        for synonym in synonyms(key) {
            if let Some(v) = self.this_broker.get(*synonym) {
                out.push((synonym.to_string(), Some(v.clone()), source::DYNAMIC_BROKER_CONFIG));
            }
        }
        for synonym in synonyms(key) {
            if let Some(v) = self.cluster_default.get(*synonym) {
                out.push((synonym.to_string(), Some(v.clone()), source::DYNAMIC_DEFAULT_BROKER_CONFIG));
            }
        }
        let given = self.config.given.contains(key);
        out.push((
            key.to_string(),
            static_value,
            if given { source::STATIC_BROKER_CONFIG } else { source::DEFAULT_CONFIG },
        ));
        out
    }
}

/// Kafka's synonyms of a broker key, in its order of precedence.
pub(crate) fn synonyms(key: &str) -> &'static [&'static str] {
    const RETENTION: &[&str] = &["log.retention.ms", "log.retention.minutes", "log.retention.hours"];
    match key {
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => RETENTION,
        _ => dynamic_key(key).map_or(&[], |d| std::slice::from_ref(&d.key)),
    }
}

/// Checks overrides about to be stored for a broker or the cluster default: every key
/// dynamic and every value valid once layered over the static configuration (`layers`:
/// cluster default, then this broker, one of them the new overrides).
///
/// # Errors
/// [`DynamicError`] naming the offending keys.
pub(crate) fn check(static_config: &BrokerConfig, layers: [&BTreeMap<String, String>; 2]) -> Result<(), DynamicError> {
    let is_setting = |k: &str| BrokerConfig::SETTINGS.iter().any(|s| s.key == k);
    for layer in layers {
        check_overrides(layer, is_setting)?;
    }
    apply(static_config, layers).map(|_| ())
}

/// The static configuration with `layers` applied, lowest precedence first (cluster
/// default, then this broker). Only live keys change anything; retention is resolved
/// across its synonyms as Kafka does (ms, then minutes, then hours).
///
/// # Errors
/// [`DynamicError::Invalid`] for a value that does not parse or leaves the configuration
/// out of range.
pub(crate) fn apply(
    static_config: &BrokerConfig,
    layers: [&BTreeMap<String, String>; 2],
) -> Result<BrokerConfig, DynamicError> {
    let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
    for layer in layers {
        for (k, v) in layer {
            if dynamic(k) == Some(Dynamic::Live) {
                merged.insert(k.as_str(), v.as_str());
            }
        }
    }
    let mut config = static_config.clone();
    let invalid = |e: tributary_common::config::ConfigError| DynamicError::Invalid(e.to_string());
    let retention = [("log.retention.ms", 1i64), ("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)]
        .into_iter()
        .find_map(|(k, factor)| merged.get(k).map(|v| (k, *v, factor)));
    if let Some((key, value, factor)) = retention {
        let n: i64 = value.trim().parse().map_err(|e| {
            DynamicError::Invalid(format!(
                "Invalid value {value} for configuration {key}: Not a number of type LONG ({e})"
            ))
        })?;
        config.log_retention_ms = if n < 0 { -1 } else { n.saturating_mul(factor) };
    }
    for (key, value) in merged {
        if synonyms("log.retention.ms").contains(&key) {
            continue;
        }
        config.set_key(key, value).map_err(invalid)?;
    }
    config.validate().map_err(invalid)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use tributary_common::dynamic::DYNAMIC_BROKER_KEYS as DYNAMIC_KEYS;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn base() -> BrokerConfig {
        let mut c = BrokerConfig { zookeeper_connect: "zk:2181".into(), ..BrokerConfig::default() };
        c.set_key("listeners", "PLAINTEXT://:9092").unwrap();
        c
    }

    #[test]
    fn every_live_key_is_a_declared_setting_or_a_retention_synonym() {
        for d in DYNAMIC_KEYS {
            let key = &d.key;
            let declared = BrokerConfig::SETTINGS.iter().any(|s| s.key == *key);
            match d.effect {
                Dynamic::Live | Dynamic::Restart => {
                    assert!(declared || synonyms("log.retention.ms").contains(key), "{key}")
                }
                Dynamic::Inert => assert!(!declared, "{key} is declared, so it is not inert"),
            }
        }
    }

    #[test]
    fn per_broker_wins_over_the_cluster_default_which_wins_over_static() {
        let mut s = base();
        s.log_retention_ms = 1000;
        s.given.insert("log.retention.ms");
        // (cluster default, this broker, expected retention ms, expected message.max.bytes)
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, Pairs, i64, i32)] = &[
            (&[], &[], 1000, 1048588),
            (&[("log.retention.ms", "5")], &[], 5, 1048588),
            (&[("log.retention.ms", "5")], &[("log.retention.ms", "7")], 7, 1048588),
            (&[("log.retention.minutes", "2")], &[], 120_000, 1048588),
            (&[("log.retention.hours", "1"), ("log.retention.minutes", "2")], &[], 120_000, 1048588),
            (&[("log.retention.ms", "-5")], &[], -1, 1048588),
            (&[("message.max.bytes", "2000")], &[("message.max.bytes", "3000")], 1000, 3000),
            // Stored keys that are not live change nothing (a Kafka tool may have written them).
            (&[("num.io.threads", "16"), ("broker.id", "9")], &[], 1000, 1048588),
        ];
        for (default, mine, retention, max_bytes) in cases {
            let c = apply(&s, [&map(default), &map(mine)]).unwrap();
            assert_eq!((c.log_retention_ms, c.message_max_bytes), (*retention, *max_bytes), "{default:?} {mine:?}");
            assert_eq!(c.broker_id, s.broker_id);
        }
    }

    #[test]
    fn static_restart_unknown_and_invalid_changes_are_refused() {
        let s = base();
        let empty = BTreeMap::new();
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        type Holds = fn(&DynamicError) -> bool;
        let cases: &[(Pairs, Holds)] = &[
            (&[("broker.id", "3")], |e| matches!(e, DynamicError::Static(k) if k == &["broker.id"])),
            (&[("zookeeper.connect", "x")], |e| matches!(e, DynamicError::Static(_))),
            (&[("advertised.listeners", "PLAINTEXT://h:1")], |e| matches!(e, DynamicError::NeedsRestart(_))),
            (&[("no.such.key", "1")], |e| matches!(e, DynamicError::Unknown(k) if k == &["no.such.key"])),
            (
                &[("log.retention.ms", "soon")],
                |e| matches!(e, DynamicError::Invalid(m) if m.contains("log.retention.ms")),
            ),
            (
                &[("min.insync.replicas", "0")],
                |e| matches!(e, DynamicError::Invalid(m) if m.contains("min.insync.replicas")),
            ),
            (&[("message.max.bytes", "big")], |e| matches!(e, DynamicError::Invalid(_))),
        ];
        for (pairs, holds) in cases {
            let e = check(&s, [&empty, &map(pairs)]).unwrap_err();
            assert!(holds(&e), "{pairs:?}: {e}");
        }
        assert_eq!(check(&s, [&empty, &map(&[("log.retention.bytes", "100"), ("num.io.threads", "4")])]), Ok(()));
    }

    #[test]
    fn sources_list_every_level_in_precedence_order() {
        let mut s = base();
        s.given.insert("log.retention.ms");
        let e = EffectiveConfig {
            config: s,
            cluster_default: map(&[("log.retention.hours", "2")]),
            this_broker: map(&[("log.retention.ms", "5")]),
        };
        let got: Vec<(String, i8)> =
            e.sources("log.retention.ms", Some("9".into())).into_iter().map(|(k, _, s)| (k, s)).collect();
        assert_eq!(
            got,
            vec![
                ("log.retention.ms".into(), source::DYNAMIC_BROKER_CONFIG),
                ("log.retention.hours".into(), source::DYNAMIC_DEFAULT_BROKER_CONFIG),
                ("log.retention.ms".into(), source::STATIC_BROKER_CONFIG),
            ]
        );
    }
}
