//! How the coordinator reaches brokers with its own Kafka connections: the admin API's
//! group, offset and log-dir queries, and the REST API's librdkafka producer and consumers.
//! `client.config` is a Kafka client properties file (what `kafka-topics --command-config`
//! takes: `security.protocol`, `sasl.mechanism`, `sasl.jaas.config`, `ssl.*`);
//! `client.listener.name` picks the broker listener. Without either: PLAINTEXT, on whichever
//! advertised endpoint answers.

use std::ops::Deref;

use tributary_common::ids::BrokerId;
use tributary_common::kafka_client::{ClientProperties, Connection};
use tributary_common::snapshot::ClusterSnapshot;
use tributary_common::znode::{BrokerRegistration, Endpoint};

/// The coordinator's client settings; see the module doc.
#[derive(Debug, Clone)]
pub struct BrokerClients {
    properties: ClientProperties,
    listener: Option<String>,
}

impl Default for BrokerClients {
    fn default() -> Self {
        BrokerClients { properties: ClientProperties::plaintext(), listener: None }
    }
}

impl BrokerClients {
    /// From `client.config` (read now) and `client.listener.name`.
    ///
    /// # Errors
    /// The file unreadable, or a setting in it wrong (named, never a password).
    pub fn new(config_file: Option<&std::path::Path>, listener: Option<&str>) -> Result<BrokerClients, String> {
        let properties = match config_file {
            None => ClientProperties::plaintext(),
            Some(path) => {
                let mut props = tributary_common::config::Properties::load(Some(path)).map_err(|e| e.to_string())?;
                // Other client settings (client.id, timeouts, ...) are not the coordinator's to apply.
                let values: std::collections::BTreeMap<String, String> =
                    props.keys().into_iter().filter_map(|k| props.take(&k).map(|v| (k, v))).collect();
                ClientProperties::from_lookup(|k| values.get(k).filter(|v| !v.trim().is_empty()).cloned())
                    .map_err(|e| format!("client.config {}: {e}", path.display()))?
            }
        };
        Ok(BrokerClients { properties, listener: listener.map(str::to_string) })
    }

    /// `security.protocol` of the coordinator's connections.
    pub fn protocol(&self) -> &str {
        &self.properties.protocol
    }

    /// The endpoints of `registration` to try, in order.
    pub fn endpoints(&self, registration: &BrokerRegistration) -> Vec<Endpoint> {
        endpoints_for(registration, self.listener.as_deref(), &self.properties.protocol)
    }

    /// A connection to broker `id`, through the first of its endpoints that answers and
    /// lets the coordinator in.
    ///
    /// # Errors
    /// The broker unknown, or every endpoint failing (the last failure, named).
    pub async fn connect(&self, snapshot: &ClusterSnapshot, id: BrokerId) -> Result<Connection, String> {
        let b = snapshot.brokers.get(&id).ok_or_else(|| format!("broker {id} is not registered in ZooKeeper"))?;
        let mut last = match &self.listener {
            Some(l) => format!("broker {id} advertises no endpoint on listener {l} (client.listener.name)"),
            None => format!("broker {id} advertises no {} endpoint (set client.listener.name)", self.protocol()),
        };
        for e in self.endpoints(&b.registration) {
            match Connection::connect_secured(&e.host, e.port, "tributary-coordinator", &self.properties.security).await {
                Ok(conn) => return Ok(conn),
                Err(err) => last = format!("{e}: {err}"),
            }
        }
        Err(last)
    }

    /// `bootstrap.servers` for librdkafka: every broker's endpoints to try.
    pub fn bootstrap(&self, snapshot: &ClusterSnapshot) -> Option<String> {
        let endpoints: Vec<String> = snapshot
            .brokers
            .values()
            .flat_map(|b| self.endpoints(&b.registration))
            .map(|e| format!("{}:{}", e.host, e.port))
            .collect();
        (!endpoints.is_empty()).then(|| endpoints.join(","))
    }

    /// The connection settings in librdkafka's names (security protocol, SASL, TLS files).
    pub fn librdkafka_settings(&self) -> Vec<(&'static str, String)> {
        self.properties.librdkafka_settings()
    }
}

/// Which endpoints of a registration a client with `protocol` tries, in the order
/// advertised: those of `listener` when one is named; else those whose protocol in the
/// registration's `listener_security_protocol_map` is the client's (a listener missing
/// from the map counts as PLAINTEXT, as in registrations that predate the map).
pub fn endpoints_for(registration: &BrokerRegistration, listener: Option<&str>, protocol: &str) -> Vec<Endpoint> {
    registration
        .parsed_endpoints()
        .into_iter()
        .filter(|e| match listener {
            Some(l) => e.listener.eq_ignore_ascii_case(l),
            None => {
                registration.listener_security_protocol_map.get(&e.listener).map_or("PLAINTEXT", String::as_str)
                    == protocol
            }
        })
        .collect()
}

/// A cluster snapshot with the way to reach its brokers: what every query of the brokers
/// takes. Reads as the snapshot.
#[derive(Clone, Copy)]
pub struct Brokers<'a> {
    /// The cluster as ZooKeeper describes it.
    pub snapshot: &'a ClusterSnapshot,
    /// How to connect.
    pub clients: &'a BrokerClients,
}

impl Deref for Brokers<'_> {
    type Target = ClusterSnapshot;
    fn deref(&self) -> &ClusterSnapshot {
        self.snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_listener_or_the_protocol() {
        let endpoint = |l: &str, port| Endpoint { listener: l.into(), host: "h".into(), port };
        let registration = BrokerRegistration::new(
            &[endpoint("INTERNAL", 9092), endpoint("EXTERNAL", 9093), endpoint("TLS", 9094)],
            None,
            0,
        )
        .with_protocols(|l| match l {
            "EXTERNAL" => Some("SASL_SSL".into()),
            "TLS" => Some("SSL".into()),
            _ => None,
        });
        let ports = |listener, protocol| {
            endpoints_for(&registration, listener, protocol).iter().map(|e| e.port).collect::<Vec<_>>()
        };
        assert_eq!(ports(None, "PLAINTEXT"), [9092]);
        assert_eq!(ports(None, "SASL_SSL"), [9093]);
        assert_eq!(ports(None, "SASL_PLAINTEXT"), Vec::<u16>::new());
        assert_eq!(ports(Some("tls"), "SSL"), [9094]);
        assert_eq!(ports(Some("EXTERNAL"), "PLAINTEXT"), [9093], "a named listener is taken as it is");
        // A registration without the map (older writers): every listener is PLAINTEXT.
        let mut old = registration.clone();
        old.listener_security_protocol_map.clear();
        assert_eq!(endpoints_for(&old, None, "PLAINTEXT").len(), 3);
    }

    #[test]
    fn client_config_files_are_read_as_kafka_tools_read_them() {
        let dir = std::env::temp_dir().join(format!("tributary-client-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("client.properties");
        std::fs::write(
            &file,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"s3cret\";\n",
        )
        .unwrap();
        let clients = BrokerClients::new(Some(&file), Some("CLIENT")).unwrap();
        assert_eq!(clients.protocol(), "SASL_PLAINTEXT");
        let settings = clients.librdkafka_settings();
        assert!(settings.contains(&("sasl.mechanisms", "SCRAM-SHA-512".into())));
        assert!(settings.contains(&("sasl.username", "admin".into())));
        assert!(!format!("{clients:?}").contains("s3cret"));
        std::fs::write(&file, "security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n").unwrap();
        let e = BrokerClients::new(Some(&file), None).unwrap_err();
        assert!(e.contains("client.config") && e.contains("trust store"), "{e}");
        std::fs::write(&file, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n").unwrap();
        let e = BrokerClients::new(Some(&file), None).unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
        assert!(BrokerClients::new(Some(&dir.join("missing")), None).unwrap_err().contains("cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
