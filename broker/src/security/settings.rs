//! The security settings as Kafka names them, global (`ssl.keystore.location`) or for one
//! listener (`listener.name.<listener>.ssl.keystore.location`, and
//! `listener.name.<listener>.<mechanism>.sasl.jaas.config` for SASL), taken from the
//! properties file and the `KAFKA_*` environment before unknown keys are refused.
//!
//! They hold secrets (passwords, keys, JAAS texts), so they stay out of the declared
//! settings table, whose values are logged at start-up.

use std::collections::BTreeMap;

use tributary_common::config::Properties;

/// Settings read (each may also be given per listener).
pub(crate) const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.server.max.receive.size",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
];

/// Settings a JVM broker reads that mean nothing with rustls: accepted, and logged once.
pub(crate) const INERT_KEYS: &[&str] = &[
    "ssl.protocol",
    "ssl.cipher.suites",
    "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm",
    "ssl.secure.random.implementation",
    "ssl.provider",
    "ssl.engine.factory.class",
    "sasl.kerberos.service.name",
];

/// The security settings given, by their full key.
#[derive(Clone, Default)]
pub struct SecurityProps {
    values: BTreeMap<String, String>,
    /// Keys set that have no effect here (JVM TLS tuning).
    inert: Vec<String>,
    /// The ZooKeeper login and `zookeeper.set.acl`.
    pub zookeeper: tributary_common::zk::ZkSecurity,
}

impl std::fmt::Debug for SecurityProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold passwords and keys: only the names are printed.
        f.debug_struct("SecurityProps").field("keys", &self.values.keys().collect::<Vec<_>>()).finish()
    }
}

/// The part of a key after `listener.name.<listener>.`, and the listener, if prefixed.
fn split_listener(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("listener.name.")?;
    let (listener, setting) = rest.split_once('.')?;
    Some((listener, setting))
}

fn is_jaas_key(setting: &str) -> bool {
    setting
        .strip_suffix(".sasl.jaas.config")
        .is_some_and(|mechanism| !mechanism.is_empty() && !mechanism.contains('.'))
}

impl SecurityProps {
    /// Takes every security setting out of `props`.
    pub fn take(props: &mut Properties) -> SecurityProps {
        let mut out = SecurityProps::default();
        for key in props.keys() {
            let setting = split_listener(&key).map_or(key.as_str(), |(_, s)| s);
            let known = KEYS.contains(&setting) || (setting != key && is_jaas_key(setting));
            let inert = INERT_KEYS.contains(&setting);
            if known || inert {
                if let Some(value) = props.take(&key) {
                    if inert {
                        out.inert.push(key.clone());
                    } else {
                        out.values.insert(key, value);
                    }
                }
            }
        }
        out
    }

    /// Keys set that have no effect here (JVM TLS tuning), for the start-up log.
    pub fn inert(&self) -> &[String] {
        &self.inert
    }

    /// A setting for `listener`: `listener.name.<listener lower-cased>.<key>`, else `<key>`.
    pub(crate) fn get(&self, listener: &str, key: &str) -> Option<&str> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.values.get(&prefixed).or_else(|| self.values.get(key)).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// A listener's JAAS text for `mechanism` (`listener.name.<l>.<mechanism lower>.sasl.jaas.config`).
    pub(crate) fn jaas(&self, listener: &str, mechanism: &str) -> Option<&str> {
        let key = format!(
            "listener.name.{}.{}.sasl.jaas.config",
            listener.to_ascii_lowercase(),
            mechanism.to_ascii_lowercase()
        );
        self.values.get(&key).map(String::as_str)
    }

    /// Listener names that have settings of their own, lower-cased.
    pub(crate) fn prefixed_listeners(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.values.keys().filter_map(|k| split_listener(k).map(|(l, _)| l.to_string())).collect();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_settings_override_global_ones() {
        let mut props = Properties::parse(
            "t",
            "ssl.keystore.location=/global.pem\nlistener.name.internal.ssl.keystore.location=/internal.pem\n\
             listener.name.client.scram-sha-256.sasl.jaas.config=x required;\nssl.cipher.suites=TLS_AES\n\
             listener.name.client.bogus.key=1\nlog.dirs=/d\n",
        );
        let s = SecurityProps::take(&mut props);
        assert_eq!(s.get("INTERNAL", "ssl.keystore.location"), Some("/internal.pem"));
        assert_eq!(s.get("EXTERNAL", "ssl.keystore.location"), Some("/global.pem"));
        assert_eq!(s.jaas("CLIENT", "SCRAM-SHA-256"), Some("x required;"));
        assert_eq!(s.inert, vec!["ssl.cipher.suites".to_string()]);
        // What is not a security setting stays, to be refused as unknown or read elsewhere.
        assert!(props.contains("listener.name.client.bogus.key"));
        assert!(props.contains("log.dirs"));
        assert!(!format!("{s:?}").contains("x required"));
    }
}
