//! The security settings as Kafka names them, global (`ssl.keystore.location`) or for one
//! listener (`listener.name.<listener>.ssl.keystore.location`, and
//! `listener.name.<listener>.<mechanism>.sasl.jaas.config` for SASL), taken from the
//! properties file and the `KAFKA_*` environment before unknown keys are refused.
//!
//! They hold secrets (passwords, keys, JAAS texts), so they stay out of the declared
//! settings table, whose values are logged at start-up.

use std::collections::BTreeMap;

use tributary_common::config::Properties;
use tributary_common::jaas;

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
    /// JAAS sections for listeners without a `sasl.jaas.config` of their own, by section
    /// name (`KafkaServer`, `<listener>.KafkaServer`), as `sasl.jaas.config` text: from the
    /// file `KAFKA_OPTS` names, or written from bitnami's user variables.
    server_jaas: BTreeMap<String, String>,
    /// Where [`Self::server_jaas`] came from, for messages.
    server_jaas_origin: String,
    /// bitnami's `KAFKA_CLIENT_USERS` with their passwords.
    pub(crate) image_client_users: Vec<(String, String)>,
    /// bitnami's `KAFKA_INTER_BROKER_USER` with its password.
    pub(crate) image_inter_broker_user: Option<(String, String)>,
}

/// A user and its password.
pub type UserPassword = (String, String);

/// bitnami's client users and its inter-broker user.
pub type ImageUsers = (Vec<UserPassword>, Option<UserPassword>);

const PLAIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
const SCRAM_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";

/// bitnami's SASL users: `KAFKA_CLIENT_USERS` / `KAFKA_CLIENT_PASSWORDS` (or their older
/// names `KAFKA_BROKER_USER` / `KAFKA_BROKER_PASSWORD`), lists separated by `,` or `;`,
/// and `KAFKA_INTER_BROKER_USER` / `KAFKA_INTER_BROKER_PASSWORD`. Returns the client users
/// and the inter-broker user.
///
/// # Errors
/// Lists of different lengths, or a user without a password, as the image refuses them.
pub fn bitnami_users(env: &[(String, String)]) -> Result<ImageUsers, String> {
    let var = |names: &[&str]| {
        names.iter().find_map(|n| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.trim().to_string())).filter(|v| !v.is_empty())
    };
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|v| v.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let users = list(var(&["KAFKA_CLIENT_USERS", "KAFKA_BROKER_USER"]));
    let passwords = list(var(&["KAFKA_CLIENT_PASSWORDS", "KAFKA_BROKER_PASSWORD"]));
    if users.len() != passwords.len() {
        return Err(format!(
            "KAFKA_CLIENT_USERS names {} user(s) and KAFKA_CLIENT_PASSWORDS has {} password(s); give one password per user, in the same order",
            users.len(),
            passwords.len()
        ));
    }
    let inter = match (var(&["KAFKA_INTER_BROKER_USER"]), var(&["KAFKA_INTER_BROKER_PASSWORD"])) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => return Err("KAFKA_INTER_BROKER_USER is set without KAFKA_INTER_BROKER_PASSWORD".into()),
        (None, Some(_)) => return Err("KAFKA_INTER_BROKER_PASSWORD is set without KAFKA_INTER_BROKER_USER".into()),
    };
    Ok((users.into_iter().zip(passwords).collect(), inter))
}

/// The `KafkaServer` JAAS section bitnami's image writes for these users: a PLAIN module
/// accepting every user (and logging in as the inter-broker one), and a SCRAM module
/// logging in as the inter-broker user.
pub fn bitnami_server_jaas(clients: &[(String, String)], inter: Option<&(String, String)>) -> String {
    let mut plain = BTreeMap::new();
    let mut scram = BTreeMap::new();
    if let Some((user, password)) = inter {
        for options in [&mut plain, &mut scram] {
            options.insert("username".to_string(), user.clone());
            options.insert("password".to_string(), password.clone());
        }
        plain.insert(format!("user_{user}"), password.clone());
    }
    for (user, password) in clients {
        plain.insert(format!("user_{user}"), password.clone());
    }
    let module = |class: &str, options| jaas::LoginModule { class: class.into(), flag: "required".into(), options };
    format!("{} {}", module(PLAIN_MODULE, plain).to_text(), module(SCRAM_MODULE, scram).to_text())
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

    /// A listener's JAAS text for `mechanism`: `listener.name.<l>.<mechanism lower>.sasl.jaas.config`,
    /// else, as Kafka's `JaasContext`, the JAAS file's `<l>.KafkaServer` section, else its
    /// `KafkaServer` section.
    pub(crate) fn jaas(&self, listener: &str, mechanism: &str) -> Option<&str> {
        let listener = listener.to_ascii_lowercase();
        let key = format!("listener.name.{listener}.{}.sasl.jaas.config", mechanism.to_ascii_lowercase());
        self.values
            .get(&key)
            .or_else(|| self.server_jaas.get(&format!("{listener}.KafkaServer")))
            .or_else(|| self.server_jaas.get("KafkaServer"))
            .map(String::as_str)
    }

    /// Where JAAS text a listener has no setting for comes from, for messages; none when
    /// there is no such source.
    pub(crate) fn server_jaas_origin(&self) -> Option<&str> {
        (!self.server_jaas.is_empty()).then_some(self.server_jaas_origin.as_str())
    }

    /// Reads what the images keep outside `server.properties`: the `KafkaServer` sections of
    /// the JAAS file `KAFKA_OPTS` names (`-Djava.security.auth.login.config`), or, without
    /// such sections, bitnami's user variables (see [`bitnami_users`]), which then give the
    /// same JAAS text the image would write.
    ///
    /// # Errors
    /// The file unreadable or malformed, or the variables inconsistent.
    pub fn read_environment(&mut self, env: &[(String, String)]) -> Result<(), tributary_common::config::ConfigError> {
        let invalid = |key: &str, value: String, reason: String| tributary_common::config::ConfigError::Invalid {
            key: key.into(),
            value,
            reason,
        };
        let file = match tributary_common::zk::kafka_opts(env) {
            Some(options) => tributary_common::zk::kafka_opts_jaas(&options)?,
            None => None,
        };
        if let Some((path, sections)) = file {
            for (name, modules) in sections {
                if name == "KafkaServer" || name.ends_with(".KafkaServer") {
                    let text: Vec<String> = modules.iter().map(jaas::LoginModule::to_text).collect();
                    self.server_jaas.insert(name, text.join(" "));
                }
            }
            if !self.server_jaas.is_empty() {
                self.server_jaas_origin = format!("the KafkaServer section of {}", path.display());
                // bitnami too ignores its user variables when given a JAAS file.
                return Ok(());
            }
        }
        let (clients, inter) = bitnami_users(env).map_err(|e| invalid("KAFKA_CLIENT_USERS", String::new(), e))?;
        if !clients.is_empty() || inter.is_some() {
            self.server_jaas.insert("KafkaServer".into(), bitnami_server_jaas(&clients, inter.as_ref()));
            self.server_jaas_origin = "KAFKA_CLIENT_USERS / KAFKA_INTER_BROKER_USER".into();
            self.image_client_users = clients;
            self.image_inter_broker_user = inter;
        }
        Ok(())
    }

    /// Whether `key` is set.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bitnami_user_variables_read_as_the_image_reads_them() {
        let pair = |u: &str, p: &str| (u.to_string(), p.to_string());
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<ImageUsers, &'a str>);
        let cases: &[Case] = &[
            (&[], Ok((vec![], None))),
            (
                &[("KAFKA_CLIENT_USERS", "alice, bob;carol"), ("KAFKA_CLIENT_PASSWORDS", "a,b,c")],
                Ok((vec![pair("alice", "a"), pair("bob", "b"), pair("carol", "c")], None)),
            ),
            (&[("KAFKA_BROKER_USER", "old"), ("KAFKA_BROKER_PASSWORD", "o")], Ok((vec![pair("old", "o")], None))),
            (
                &[("KAFKA_INTER_BROKER_USER", "broker"), ("KAFKA_INTER_BROKER_PASSWORD", "s")],
                Ok((vec![], Some(pair("broker", "s")))),
            ),
            (&[("KAFKA_CLIENT_USERS", "a,b"), ("KAFKA_CLIENT_PASSWORDS", "x")], Err("2 user(s) and KAFKA_CLIENT_PASSWORDS has 1")),
            (&[("KAFKA_INTER_BROKER_USER", "broker")], Err("without KAFKA_INTER_BROKER_PASSWORD")),
        ];
        for (vars, want) in cases {
            let got = bitnami_users(&env(vars));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{vars:?}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{vars:?}: {e}"),
                (got, want) => panic!("{vars:?}: {got:?} but wanted {want:?}"),
            }
        }
    }

    #[test]
    fn the_jaas_bitnami_would_write_accepts_its_users_and_logs_in_as_the_inter_broker_one() {
        let clients = vec![("alice".to_string(), "a\"pw".to_string())];
        let inter = ("broker".to_string(), "b".to_string());
        let modules = jaas::parse(&bitnami_server_jaas(&clients, Some(&inter))).unwrap();
        assert_eq!(modules.len(), 2);
        let users = modules[0].plain_users();
        assert_eq!((users["alice"].as_str(), users["broker"].as_str()), ("a\"pw", "b"));
        assert_eq!(modules[0].login(), Some(inter.clone()));
        assert_eq!((modules[1].class.as_str(), modules[1].login()), (SCRAM_MODULE, Some(inter)));
        let only_clients = jaas::parse(&bitnami_server_jaas(&clients, None)).unwrap();
        assert_eq!(only_clients[0].login(), None);
    }

    #[test]
    fn listeners_without_jaas_settings_fall_back_to_the_jaas_file_as_kafka_does() {
        let dir = std::env::temp_dir().join(format!("tributary-server-jaas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jaas.conf");
        std::fs::write(
            &file,
            "KafkaServer { x.PlainLoginModule required user_a=\"1\"; };\n\
             external.KafkaServer { x.PlainLoginModule required user_e=\"2\"; };\n\
             Client { x.DigestLoginModule required username=\"z\" password=\"p\"; };\n",
        )
        .unwrap();
        let mut props = Properties::parse("t", "listener.name.own.plain.sasl.jaas.config=x.PlainLoginModule required user_o=\"3\";\n");
        let mut s = SecurityProps::take(&mut props);
        let opts = format!("-Djava.security.auth.login.config={}", file.display());
        s.read_environment(&env(&[("KAFKA_OPTS", &opts), ("KAFKA_CLIENT_USERS", "ignored"), ("KAFKA_CLIENT_PASSWORDS", "x")]))
            .unwrap();
        let users = |listener: &str| {
            jaas::parse(s.jaas(listener, "PLAIN").unwrap()).unwrap()[0].plain_users().into_keys().collect::<Vec<_>>()
        };
        assert_eq!(users("OWN"), ["o"]);
        assert_eq!(users("EXTERNAL"), ["e"]);
        assert_eq!(users("CLIENT"), ["a"]);
        assert!(s.image_client_users.is_empty(), "a JAAS file wins over the variables");
        assert!(s.server_jaas_origin().unwrap().contains("jaas.conf"));
        // Without KafkaServer sections, bitnami's variables write one.
        let mut s = SecurityProps::default();
        s.read_environment(&env(&[("KAFKA_CLIENT_USERS", "u"), ("KAFKA_CLIENT_PASSWORDS", "p")])).unwrap();
        assert_eq!(jaas::parse(s.jaas("ANY", "PLAIN").unwrap()).unwrap()[0].plain_users().len(), 1);
        assert_eq!(s.image_client_users, vec![("u".to_string(), "p".to_string())]);
        let mut s = SecurityProps::default();
        let e = s.read_environment(&env(&[("KAFKA_OPTS", "-Djava.security.auth.login.config=/nonexistent/j")])).unwrap_err();
        assert!(e.to_string().contains("cannot read the JAAS file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
