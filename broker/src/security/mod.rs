//! Authentication on the listeners, as Kafka's `listener.security.protocol.map` assigns it:
//! TLS for `SSL` and `SASL_SSL` ([`tls`]), SASL PLAIN and SCRAM for `SASL_PLAINTEXT` and
//! `SASL_SSL` ([`sasl`]), and the principal each connection acts as. Built once at start-up
//! from the settings ([`settings`]); certificates reload when their files change.
//!
//! Called by `net::connection` (per connection) and the replica fetcher and transaction
//! clients (the inter-broker [`ClientSecurity`]); calls nothing of the request layer.

pub(crate) mod sasl;
pub mod settings;
pub(crate) mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tributary_common::jaas;
use tributary_common::kafka_client::{ClientSecurity, SaslLogin};
use tributary_common::tls::{PrincipalMapper, TlsSettings};

use crate::config::BrokerConfig;
pub use settings::SecurityProps;

/// Who a connection acts as: Kafka's `KafkaPrincipal` (`User:alice`, `User:ANONYMOUS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Principal {
    /// The principal type, `User` for every built-in authentication.
    pub(crate) kind: &'static str,
    /// The name.
    pub(crate) name: Arc<str>,
}

impl Principal {
    /// `User:ANONYMOUS`: PLAINTEXT connections, and TLS ones without a client certificate.
    pub(crate) fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `User:<name>`.
    pub(crate) fn user(name: &str) -> Principal {
        Principal { kind: "User", name: name.into() }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The SASL mechanisms a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mechanism {
    /// `PLAIN`, against the users of the listener's JAAS configuration.
    Plain,
    /// `SCRAM-SHA-256` / `SCRAM-SHA-512`, against the credentials in ZooKeeper.
    Scram(tributary_common::scram::Mechanism),
}

impl Mechanism {
    /// The SASL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => tributary_common::scram::Mechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// A listener's SASL settings.
#[derive(Clone)]
pub(crate) struct SaslServer {
    /// Offered mechanisms, in the order configured.
    pub(crate) mechanisms: Vec<Mechanism>,
    /// PLAIN users and passwords (`user_<name>` of the listener's PLAIN JAAS entry).
    pub(crate) plain_users: BTreeMap<String, String>,
}

/// How one listener authenticates its connections.
#[derive(Clone)]
pub(crate) struct ListenerSecurity {
    /// The security protocol (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub(crate) protocol: String,
    /// TLS, for `SSL` and `SASL_SSL`.
    pub(crate) tls: Option<Arc<tls::ReloadingServerConfig>>,
    /// The principal of a client certificate, for `SSL` with client authentication.
    pub(crate) principal_mapper: PrincipalMapper,
    /// SASL, for `SASL_PLAINTEXT` and `SASL_SSL`.
    pub(crate) sasl: Option<SaslServer>,
}

impl ListenerSecurity {
    fn plaintext() -> ListenerSecurity {
        ListenerSecurity {
            protocol: "PLAINTEXT".into(),
            tls: None,
            principal_mapper: PrincipalMapper::default(),
            sasl: None,
        }
    }
}

/// Every listener's authentication, and how this broker authenticates to the others.
pub struct Security {
    listeners: BTreeMap<String, ListenerSecurity>,
    /// How followers, transaction markers and verification reach other brokers.
    pub(crate) inter_broker: ClientSecurity,
    /// `connections.max.reauth.ms` (0: sessions do not expire; KIP-368).
    pub(crate) max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: a failed authentication is answered
    /// this much later, and the connection closed (slows password guessing).
    pub(crate) failed_authentication_delay: Duration,
    /// `sasl.server.max.receive.size`: largest frame before a SASL connection authenticates.
    pub(crate) sasl_max_receive_size: usize,
    /// Key for the stand-in credentials of unknown SCRAM users (random per process).
    pub(crate) stand_in_secret: Vec<u8>,
    /// How the broker logs in to ZooKeeper and protects the znodes it creates.
    pub(crate) zookeeper: tributary_common::zk::ZkSecurity,
    /// Users (with passwords) of bitnami's variables that get SCRAM credentials in
    /// ZooKeeper at start, as the image creates them.
    pub(crate) image_scram_users: Vec<(String, String)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("listeners", &self.listeners.iter().map(|(k, v)| (k, &v.protocol)).collect::<Vec<_>>())
            .field("inter_broker", &self.inter_broker)
            .finish_non_exhaustive()
    }
}

/// How long a new connection has for its TLS handshake and SASL authentication.
pub(crate) const AUTHENTICATION_DEADLINE: Duration = Duration::from_secs(30);

fn parse_num<T: std::str::FromStr>(key: &str, value: Option<&str>, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| format!("{key}={v} is not a number")),
    }
}

impl Security {
    /// Everything PLAINTEXT (tests and brokers without security settings).
    pub fn plaintext() -> Security {
        Security {
            listeners: BTreeMap::new(),
            inter_broker: ClientSecurity::default(),
            max_reauth_ms: 0,
            failed_authentication_delay: Duration::from_millis(100),
            sasl_max_receive_size: 524_288,
            stand_in_secret: tributary_common::scram::random_salt(),
            zookeeper: tributary_common::zk::ZkSecurity::default(),
            image_scram_users: Vec::new(),
        }
    }

    /// Reads and checks the security of every served listener and of the inter-broker
    /// listener; loads keys and certificates.
    ///
    /// # Errors
    /// The first thing missing or wrong, naming the listener and the setting to fix.
    pub fn build(config: &BrokerConfig, props: &SecurityProps) -> Result<Security, String> {
        let mut security = Security::plaintext();
        security.zookeeper = props.zookeeper.clone();
        let global = "";
        security.max_reauth_ms = parse_num("connections.max.reauth.ms", props.get(global, "connections.max.reauth.ms"), 0)?;
        let delay: u64 = parse_num(
            "connection.failed.authentication.delay.ms",
            props.get(global, "connection.failed.authentication.delay.ms"),
            100,
        )?;
        security.failed_authentication_delay = Duration::from_millis(delay);
        security.sasl_max_receive_size =
            parse_num("sasl.server.max.receive.size", props.get(global, "sasl.server.max.receive.size"), 524_288)?;
        let served = config.served_listeners();
        for name in props.prefixed_listeners() {
            if !served.iter().any(|l| l.listener.eq_ignore_ascii_case(&name)) {
                tracing::warn!(listener = name, "listener.name.{name}.* settings are given for a listener this broker does not serve; check the spelling against listeners");
            }
        }
        for l in &served {
            let protocol = config.listener_security_protocol_map.protocol(&l.listener).unwrap_or("PLAINTEXT");
            let built = listener_security(&l.listener, protocol, props)?;
            security.listeners.insert(l.listener.clone(), built);
        }
        security.inter_broker = inter_broker_client(config, props)?;
        // bitnami creates SCRAM credentials for its users when SCRAM is on (the
        // inter-broker user when brokers log in with SCRAM).
        let scram_served = security
            .listeners
            .values()
            .any(|l| l.sasl.as_ref().is_some_and(|s| s.mechanisms.iter().any(|m| matches!(m, Mechanism::Scram(_)))));
        if scram_served {
            security.image_scram_users = props.image_client_users.clone();
        }
        if let (Some(inter), Some(login)) = (&props.image_inter_broker_user, &security.inter_broker.sasl) {
            if login.mechanism.starts_with("SCRAM") {
                security.image_scram_users.push(inter.clone());
            }
        }
        Ok(security)
    }

    /// The security of a served listener (PLAINTEXT for one not configured: tests).
    pub(crate) fn listener(&self, name: &str) -> ListenerSecurity {
        self.listeners.get(name).cloned().unwrap_or_else(ListenerSecurity::plaintext)
    }

    /// One line per listener for the start-up log (no secrets).
    pub fn describe(&self) -> Vec<String> {
        self.listeners
            .iter()
            .map(|(name, l)| {
                let mut parts = vec![format!("{name}={}", l.protocol)];
                if let Some(sasl) = &l.sasl {
                    let names: Vec<&str> = sasl.mechanisms.iter().map(|m| m.name()).collect();
                    parts.push(format!("mechanisms {}", names.join(",")));
                }
                if let Some(tls) = &l.tls {
                    parts.push(format!("client auth {:?}", tls.client_auth()));
                }
                parts.join(" ")
            })
            .collect()
    }
}

fn tls_settings(listener: &str, props: &SecurityProps) -> Result<TlsSettings, String> {
    TlsSettings::from_lookup(|k| props.get(listener, k).map(str::to_string))
}

fn listener_security(name: &str, protocol: &str, props: &SecurityProps) -> Result<ListenerSecurity, String> {
    let in_listener = |e: String| format!("listener {name} ({protocol}): {e}");
    let mut out = ListenerSecurity::plaintext();
    out.protocol = protocol.to_string();
    let (tls, sasl) = tributary_common::config::protocol_layers(protocol).ok_or_else(|| {
        in_listener(format!("unknown security protocol {protocol}; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))
    })?;
    if tls {
        let settings = tls_settings(name, props).map_err(in_listener)?;
        let reloading = tls::ReloadingServerConfig::load(name, settings).map_err(in_listener)?;
        out.tls = Some(Arc::new(reloading));
        if let Some(rules) = props.get(name, "ssl.principal.mapping.rules") {
            out.principal_mapper = rules.parse().map_err(|e| in_listener(format!("ssl.principal.mapping.rules: {e}")))?;
        }
    }
    if sasl {
        // Kafka's default is GSSAPI (Kerberos), which Tributary does not implement.
        let enabled = props.get(name, "sasl.enabled.mechanisms").unwrap_or("GSSAPI");
        let mut mechanisms = Vec::new();
        let mut skipped = Vec::new();
        for m in enabled.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match Mechanism::from_name(&m.to_ascii_uppercase()) {
                Some(m) if !mechanisms.contains(&m) => mechanisms.push(m),
                Some(_) => {}
                None => skipped.push(m.to_string()),
            }
        }
        if mechanisms.is_empty() {
            return Err(in_listener(format!(
                "sasl.enabled.mechanisms is {enabled}{}, and Tributary offers PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; set sasl.enabled.mechanisms (KAFKA_CFG_SASL_ENABLED_MECHANISMS) to some of them",
                if props.get(name, "sasl.enabled.mechanisms").is_none() { " (Kafka's default)" } else { "" }
            )));
        }
        if !skipped.is_empty() {
            tracing::warn!(listener = name, mechanisms = ?skipped, "these SASL mechanisms are not implemented and are not offered on this listener");
        }
        let mut plain_users = BTreeMap::new();
        if mechanisms.contains(&Mechanism::Plain) {
            let key = format!("listener.name.{}.plain.sasl.jaas.config", name.to_ascii_lowercase());
            let key = match props.server_jaas_origin() {
                Some(origin) if !props.has(&key) => origin.to_string(),
                _ => key,
            };
            let text = props.jaas(name, "PLAIN").ok_or_else(|| {
                in_listener(format!("PLAIN is enabled but {key} is not set; give it org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\" ...; (or a KafkaServer section in the JAAS file KAFKA_OPTS names, or bitnami's KAFKA_CLIENT_USERS and KAFKA_CLIENT_PASSWORDS)"))
            })?;
            let modules = jaas::parse(text).map_err(|e| in_listener(format!("{key}: {e}")))?;
            plain_users = modules.iter().flat_map(jaas::LoginModule::plain_users).collect();
            if plain_users.is_empty() {
                return Err(in_listener(format!("{key} names no user (user_<name>=\"<password>\"); no client could log in with PLAIN")));
            }
        }
        out.sasl = Some(SaslServer { mechanisms, plain_users });
    }
    Ok(out)
}

/// How this broker connects to the others: the inter-broker listener's protocol, with its
/// trust store and key store for TLS and `sasl.mechanism.inter.broker.protocol` with the
/// `username`/`password` of that listener's JAAS entry for SASL, as Kafka does.
fn inter_broker_client(config: &BrokerConfig, props: &SecurityProps) -> Result<ClientSecurity, String> {
    let name = config.inter_broker_listener();
    let protocol = config.listener_security_protocol_map.protocol(&name).unwrap_or("PLAINTEXT");
    let in_listener = |e: String| format!("inter-broker listener {name} ({protocol}): {e}");
    let mut out = ClientSecurity::default();
    let (tls, sasl) = tributary_common::config::protocol_layers(protocol).unwrap_or_default();
    if tls {
        let settings = tls_settings(&name, props).map_err(in_listener)?;
        // The broker's key store doubles as its client certificate (for ssl.client.auth=required).
        out.tls = Some(tributary_common::tls::client_config(&settings).map_err(in_listener)?);
    }
    if sasl {
        let mechanism = props.get(&name, "sasl.mechanism.inter.broker.protocol").unwrap_or("GSSAPI").trim().to_ascii_uppercase();
        if Mechanism::from_name(&mechanism).is_none() {
            return Err(in_listener(format!(
                "sasl.mechanism.inter.broker.protocol is {mechanism}; set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (one the listener enables)"
            )));
        }
        let key = format!("listener.name.{}.{}.sasl.jaas.config", name.to_ascii_lowercase(), mechanism.to_ascii_lowercase());
        let text = props.jaas(&name, &mechanism).ok_or_else(|| {
            in_listener(format!("{key} is not set; followers log in to other brokers with its username and password"))
        })?;
        let modules = jaas::parse(text).map_err(|e| in_listener(format!("{key}: {e}")))?;
        let (username, password) = jaas::login_for(&modules, &mechanism)
            .ok_or_else(|| in_listener(format!("{key} has no username and password for inter-broker connections")))?;
        out.sasl = Some(SaslLogin { mechanism, username, password });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
