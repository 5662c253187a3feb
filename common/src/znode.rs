//! ZooKeeper paths and payloads in Apache Kafka's layout (the model is Kafka's `ZkData.scala`).
//!
//! Operators inspect these with `zkCli.sh`, so every path and JSON field matches what a
//! ZooKeeper-mode Kafka cluster writes. Readers are lenient (unknown fields are ignored);
//! writers emit exactly Kafka's current version of each payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{BrokerId, TopicId};

/// `/cluster/id`: the cluster id, created by the first broker.
pub const CLUSTER_ID: &str = "/cluster/id";
/// `/controller`: ephemeral, held by the active controller.
pub const CONTROLLER: &str = "/controller";
/// `/controller_epoch`: decimal text; its zkVersion is the controller fencing token.
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
/// `/brokers/ids`: one ephemeral child per live broker.
pub const BROKER_IDS: &str = "/brokers/ids";
/// `/brokers/topics`: one child per topic, holding its replica assignment.
pub const BROKER_TOPICS: &str = "/brokers/topics";
/// `/brokers/seqid`: used by Kafka for generated broker ids.
pub const BROKER_SEQID: &str = "/brokers/seqid";
/// `/config/topics`: per-topic configuration overrides.
pub const CONFIG_TOPICS: &str = "/config/topics";
/// `/config/changes`: sequential change notifications for configuration.
pub const CONFIG_CHANGES: &str = "/config/changes";
/// `/admin/delete_topics`: a child per topic waiting to be deleted by the controller.
pub const DELETE_TOPICS: &str = "/admin/delete_topics";
/// `/admin/reassign_partitions`: partitions to move to new replicas, as
/// `kafka-reassign-partitions` (ZooKeeper mode) writes it; the controller starts the moves
/// and deletes the request.
pub const REASSIGN_PARTITIONS: &str = "/admin/reassign_partitions";
/// `/admin/preferred_replica_election`: partitions an operator wants moved back to their
/// preferred (first assigned) replica; the controller acts on it and deletes it.
pub const PREFERRED_REPLICA_ELECTION: &str = "/admin/preferred_replica_election";
/// `/admin/unclean_leader_election`: Tributary's request for unclean elections of the
/// partitions listed (same payload as [`PREFERRED_REPLICA_ELECTION`]). Kafka's controller
/// took ElectLeaders(UNCLEAN) in-process; Tributary's runs elsewhere, so the broker asks
/// through ZooKeeper, and the controller deletes the request when done.
pub const UNCLEAN_LEADER_ELECTION: &str = "/admin/unclean_leader_election";
/// `/latest_producer_id_block`: the last producer-id block handed out.
pub const LATEST_PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";

/// `/isr_change_notification`: leaders announce ISR changes they wrote; the controller reads and deletes them.
pub const ISR_CHANGE_NOTIFICATION: &str = "/isr_change_notification";
/// Prefix of the persistent-sequential children of [`ISR_CHANGE_NOTIFICATION`].
pub const ISR_CHANGE_PREFIX: &str = "/isr_change_notification/isr_change_";

/// Persistent paths that Kafka brokers create at start-up when they are missing.
pub const PERSISTENT_PATHS: &[&str] = &[
    "/consumers",
    BROKER_IDS,
    BROKER_TOPICS,
    BROKER_SEQID,
    CONFIG_CHANGES,
    CONFIG_TOPICS,
    CONFIG_CLIENTS,
    CONFIG_USERS,
    CONFIG_BROKERS,
    "/config/ips",
    DELETE_TOPICS,
    ISR_CHANGE_NOTIFICATION,
    LATEST_PRODUCER_ID_BLOCK,
    "/log_dir_event_notification",
];

/// `/brokers/ids/<id>`.
pub fn broker_path(id: BrokerId) -> String {
    format!("{BROKER_IDS}/{id}")
}

/// `/brokers/topics/<topic>`.
pub fn topic_path(topic: &str) -> String {
    format!("{BROKER_TOPICS}/{topic}")
}

/// `/brokers/topics/<topic>/partitions`.
pub fn topic_partitions_path(topic: &str) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions")
}

/// `/brokers/topics/<topic>/partitions/<partition>`.
pub fn partition_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions/{partition}")
}

/// `/brokers/topics/<topic>/partitions/<partition>/state`.
pub fn partition_state_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions/{partition}/state")
}

/// `/config/topics/<topic>`.
pub fn topic_config_path(topic: &str) -> String {
    format!("{CONFIG_TOPICS}/{topic}")
}

/// `/config/brokers`: dynamic broker settings, per broker id and `<default>`.
pub const CONFIG_BROKERS: &str = "/config/brokers";
/// `/config/clients`: quotas per client id (and `<default>`).
pub const CONFIG_CLIENTS: &str = "/config/clients";
/// `/config/users`: quotas and SCRAM credentials per user (quotas also for `<default>`),
/// with `<user>/clients/<id>` below.
pub const CONFIG_USERS: &str = "/config/users";
/// Prefix of the persistent-sequential children of [`CONFIG_CHANGES`].
pub const CONFIG_CHANGE_PREFIX: &str = "/config/changes/config_change_";
/// The name Kafka gives the cluster-wide default of an entity type.
pub const DEFAULT_ENTITY: &str = "<default>";

/// One `/config/<type>/<name>` entity, as Kafka's `ConfigType` and `ZkAdminManager` name
/// them. `None` names are the type's `<default>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigEntity {
    /// `topics/<t>`.
    Topic(String),
    /// `brokers/<id>` or `brokers/<default>`.
    Broker(Option<BrokerId>),
    /// `clients/<id>` or `clients/<default>`.
    Client(Option<String>),
    /// `users/<user>` or `users/<default>`.
    User(Option<String>),
    /// `users/<user>/clients/<id>`, either side possibly `<default>`.
    UserClient(Option<String>, Option<String>),
}

/// Kafka's `Sanitizer.sanitize`: user and client names are URL-encoded in znode names
/// (with `*` as `%2A`), so that any name is a legal path element.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`sanitize`]; `None` when the escapes are malformed or not UTF-8.
pub fn desanitize(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn entity_name(name: Option<&str>) -> String {
    name.map_or_else(|| DEFAULT_ENTITY.to_string(), sanitize)
}

impl ConfigEntity {
    /// The path below `/config/` (`topics/t`, `brokers/<default>`, `users/u/clients/c`): the
    /// `entity_path` of a change notification.
    pub fn entity_path(&self) -> String {
        match self {
            ConfigEntity::Topic(t) => format!("topics/{t}"),
            ConfigEntity::Broker(id) => {
                format!("brokers/{}", id.map_or_else(|| DEFAULT_ENTITY.to_string(), |i| i.to_string()))
            }
            ConfigEntity::Client(c) => format!("clients/{}", entity_name(c.as_deref())),
            ConfigEntity::User(u) => format!("users/{}", entity_name(u.as_deref())),
            ConfigEntity::UserClient(u, c) => {
                format!("users/{}/clients/{}", entity_name(u.as_deref()), entity_name(c.as_deref()))
            }
        }
    }

    /// The znode holding the entity's config.
    pub fn path(&self) -> String {
        format!("/config/{}", self.entity_path())
    }

    /// Parses an `entity_path` (the inverse of [`Self::entity_path`]).
    pub fn from_entity_path(path: &str) -> Option<ConfigEntity> {
        let name = |n: &str| if n == DEFAULT_ENTITY { Some(None) } else { desanitize(n).map(Some) };
        let parts: Vec<&str> = path.split('/').collect();
        Some(match parts.as_slice() {
            ["topics", t] if !t.is_empty() => ConfigEntity::Topic((*t).to_string()),
            ["brokers", b] if *b == DEFAULT_ENTITY => ConfigEntity::Broker(None),
            ["brokers", b] => ConfigEntity::Broker(Some(b.parse().ok()?)),
            ["clients", c] => ConfigEntity::Client(name(c)?),
            ["users", u] => ConfigEntity::User(name(u)?),
            ["users", u, "clients", c] => ConfigEntity::UserClient(name(u)?, name(c)?),
            _ => return None,
        })
    }
}

/// `/admin/delete_topics/<topic>`.
pub fn delete_topic_path(topic: &str) -> String {
    format!("{DELETE_TOPICS}/{topic}")
}

/// Errors reading a znode payload.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is not the JSON (or text) Kafka writes there.
    #[error("znode {path} holds an unreadable payload: {reason}")]
    Malformed {
        /// The znode.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn decode_json<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(data).map_err(|e| DecodeError::Malformed { path: path.to_string(), reason: e.to_string() })
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("znode payloads are plain JSON values")
}

/// `/cluster/id`: `{"version":"1","id":"..."}` (the version is a JSON string, as Kafka writes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdZNode {
    /// Always "1".
    pub version: String,
    /// 22-character base64url id.
    pub id: String,
}

impl ClusterIdZNode {
    /// A payload for `id`.
    pub fn new(id: String) -> Self {
        Self { version: "1".into(), id }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(CLUSTER_ID, data)
    }
}

/// `/controller`: `{"version":1,"brokerid":N,"timestamp":"<ms>"}`.
///
/// Tributary's controller is the coordinator process, which is not a broker; it writes
/// its own `--controller-id` (by default 3000 + a small number, well away from broker ids)
/// so that operators can tell which coordinator is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerZNode {
    /// Payload version (1).
    pub version: i32,
    /// Id of the active controller.
    pub brokerid: i32,
    /// Election time in ms since the epoch, as a string.
    pub timestamp: String,
}

impl ControllerZNode {
    /// A payload for controller `id` elected at `now_ms`.
    pub fn new(id: i32, now_ms: i64) -> Self {
        Self { version: 1, brokerid: id, timestamp: now_ms.to_string() }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(CONTROLLER, data)
    }
}

/// Parses `/controller_epoch`, which is plain decimal text.
///
/// # Errors
/// [`DecodeError::Malformed`] when the text is not a number.
pub fn decode_controller_epoch(data: &[u8]) -> Result<i32, DecodeError> {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| DecodeError::Malformed { path: CONTROLLER_EPOCH.into(), reason: "not a decimal number".into() })
}

/// One advertised endpoint of a broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub listener: String,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
}

impl Endpoint {
    /// Parses `LISTENER://host:port` (an IPv6 host is written in brackets).
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (listener, rest) = text.split_once("://")?;
        let (host, port) = rest.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Endpoint { listener: listener.to_string(), host: host.to_string(), port: port.parse().ok()? })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.listener, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.listener, self.host, self.port)
        }
    }
}

/// `/brokers/ids/<id>`: broker registration, version 5.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Payload version (5).
    pub version: i32,
    /// First PLAINTEXT host, for old readers.
    pub host: Option<String>,
    /// First PLAINTEXT port, or -1.
    pub port: i32,
    /// Always -1 (no JMX).
    pub jmx_port: i32,
    /// Registration time in ms, as a string.
    pub timestamp: String,
    /// `LISTENER://host:port` per advertised listener.
    pub endpoints: Vec<String>,
    /// Listener name → security protocol.
    #[serde(default)]
    pub listener_security_protocol_map: BTreeMap<String, String>,
    /// Rack, only when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Supported features; Tributary advertises none.
    #[serde(default)]
    pub features: BTreeMap<String, serde_json::Value>,
}

impl BrokerRegistration {
    /// The v5 payload for a broker advertising `endpoints`, every listener PLAINTEXT
    /// (see [`Self::with_protocols`] for others): `host`/`port` are the first endpoint's, as
    /// Kafka writes the first PLAINTEXT-protocol endpoint there for readers that predate
    /// named listeners.
    pub fn new(endpoints: &[Endpoint], rack: Option<String>, now_ms: i64) -> Self {
        let plaintext = endpoints.first();
        Self {
            version: 5,
            host: plaintext.map(|e| e.host.clone()),
            port: plaintext.map(|e| i32::from(e.port)).unwrap_or(-1),
            jmx_port: -1,
            timestamp: now_ms.to_string(),
            endpoints: endpoints.iter().map(Endpoint::to_string).collect(),
            listener_security_protocol_map: endpoints
                .iter()
                .map(|e| (e.listener.clone(), "PLAINTEXT".to_string()))
                .collect(),
            rack,
            features: BTreeMap::new(),
        }
    }
    /// The same with each listener's security protocol (`listener.security.protocol.map`;
    /// a listener `protocol_of` does not know is PLAINTEXT): the map names them, and
    /// `host`/`port` are the first PLAINTEXT-protocol endpoint's (none: null and -1), as
    /// Kafka writes them.
    #[must_use]
    pub fn with_protocols(mut self, protocol_of: impl Fn(&str) -> Option<String>) -> Self {
        let endpoints = self.parsed_endpoints();
        self.listener_security_protocol_map = endpoints
            .iter()
            .map(|e| (e.listener.clone(), protocol_of(&e.listener).unwrap_or_else(|| "PLAINTEXT".into())))
            .collect();
        let plaintext = endpoints
            .iter()
            .find(|e| self.listener_security_protocol_map.get(&e.listener).is_some_and(|p| p == "PLAINTEXT"));
        self.host = plaintext.map(|e| e.host.clone());
        self.port = plaintext.map_or(-1, |e| i32::from(e.port));
        self
    }

    /// The endpoints, parsed; unparseable entries are skipped.
    pub fn parsed_endpoints(&self) -> Vec<Endpoint> {
        let mut parsed: Vec<Endpoint> = self.endpoints.iter().filter_map(|e| Endpoint::parse(e)).collect();
        if parsed.is_empty() {
            if let (Some(host), Ok(port)) = (&self.host, u16::try_from(self.port)) {
                parsed.push(Endpoint { listener: "PLAINTEXT".into(), host: host.clone(), port });
            }
        }
        parsed
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload of broker `id`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(id: BrokerId, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(&broker_path(id), data)
    }
}

/// `/brokers/topics/<topic>`: replica assignment, version 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    /// Payload version (3).
    pub version: i32,
    /// Topic id (absent in payloads written by Kafka before 2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<TopicId>,
    /// Partition (as a decimal string) → replicas; the first replica is the preferred leader.
    pub partitions: BTreeMap<String, Vec<BrokerId>>,
    /// Replicas being added by a reassignment.
    #[serde(default)]
    pub adding_replicas: BTreeMap<String, Vec<BrokerId>>,
    /// Replicas being removed by a reassignment.
    #[serde(default)]
    pub removing_replicas: BTreeMap<String, Vec<BrokerId>>,
}

impl TopicAssignment {
    /// A v3 payload from partition → replicas. `topic_id` is `None` only when rewriting a
    /// topic created by a Kafka older than 2.8, which keeps its (absent) id.
    pub fn new(topic_id: Option<TopicId>, replicas: &BTreeMap<i32, Vec<BrokerId>>) -> Self {
        Self {
            version: 3,
            topic_id,
            partitions: replicas.iter().map(|(p, r)| (p.to_string(), r.clone())).collect(),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
        }
    }
    /// Partition → replicas with numeric keys; keys that are not numbers are skipped.
    pub fn replicas(&self) -> BTreeMap<i32, Vec<BrokerId>> {
        self.partitions.iter().filter_map(|(p, r)| Some((p.parse().ok()?, r.clone()))).collect()
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload of `topic`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(topic: &str, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(&topic_path(topic), data)
    }
}

/// Leader value while a partition has no leader.
pub const NO_LEADER: BrokerId = -1;

/// `/brokers/topics/<t>/partitions/<p>/state`: leader and ISR, version 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Payload version (1).
    pub version: i32,
    /// Leader broker, or -1 when there is none.
    pub leader: BrokerId,
    /// Incremented on every leader change.
    pub leader_epoch: i32,
    /// Epoch of the controller that made the decision.
    pub controller_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<BrokerId>,
}

impl PartitionState {
    /// A v1 payload.
    pub fn new(leader: BrokerId, leader_epoch: i32, controller_epoch: i32, isr: Vec<BrokerId>) -> Self {
        Self { version: 1, leader, leader_epoch, controller_epoch, isr }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the state of `topic`/`partition`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(topic: &str, partition: i32, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(&partition_state_path(topic, partition), data)
    }
}

/// One partition of a reassignment request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The replicas it should have; empty cancels a reassignment in progress (Tributary's
    /// spelling of the AlterPartitionReassignments cancel, which Kafka's controller took
    /// in-process).
    pub replicas: Vec<BrokerId>,
    /// Log directories (Kafka's tool writes `"any"` per replica); kept, not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_dirs: Vec<String>,
}

/// `/admin/reassign_partitions`: `{"version":1,"partitions":[{"topic","partition","replicas"}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignPartitions {
    /// Payload version (1).
    pub version: i32,
    /// The partitions to move.
    pub partitions: Vec<ReassignedPartition>,
}

impl ReassignPartitions {
    /// A v1 payload.
    pub fn new(partitions: Vec<ReassignedPartition>) -> Self {
        Self { version: 1, partitions }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload at `path`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(path: &str, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(path, data)
    }
}

/// One partition named in an ISR change notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// `{"version":1,"partitions":[{"topic","partition"}]}`: the payload Kafka uses both for
/// `/isr_change_notification/isr_change_<seq>` (partitions whose ISR a leader changed) and
/// for `/admin/preferred_replica_election` (partitions to move back to their preferred
/// replica; an empty list, as Tributary's HTTP API writes for "all", means every partition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionList {
    /// Payload version (1).
    pub version: i32,
    /// The partitions.
    pub partitions: Vec<NotifiedPartition>,
}

/// `/isr_change_notification/isr_change_<seq>`.
pub type IsrChangeNotification = PartitionList;
/// `/admin/preferred_replica_election`.
pub type PreferredReplicaElection = PartitionList;

impl PartitionList {
    /// A v1 payload for `partitions`.
    pub fn new(partitions: impl IntoIterator<Item = (String, i32)>) -> Self {
        let partitions =
            partitions.into_iter().map(|(topic, partition)| NotifiedPartition { topic, partition }).collect();
        Self { version: 1, partitions }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses a payload stored at `path`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(path: &str, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(path, data)
    }
}

/// `/config/<type>/<name>`: `{"version":1,"config":{...}}`, every value a string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityConfig {
    /// Payload version (1).
    pub version: i32,
    /// Overrides.
    pub config: BTreeMap<String, String>,
}

impl EntityConfig {
    /// A v1 payload.
    pub fn new(config: BTreeMap<String, String>) -> Self {
        Self { version: 1, config }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload at `path`.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(path: &str, data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(path, data)
    }
}

/// `/config/changes/config_change_<seq>`: `{"version":2,"entity_path":"topics/<t>"}`.
pub fn config_change_notification(entity_path: &str) -> Vec<u8> {
    encode_json(&serde_json::json!({"version": 2, "entity_path": entity_path}))
}

/// `/latest_producer_id_block`: numbers are strings, as Kafka writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    /// Payload version (1).
    pub version: i32,
    /// Broker that took the block.
    pub broker: BrokerId,
    /// First id of the block.
    pub block_start: String,
    /// Last id of the block (inclusive).
    pub block_end: String,
}

impl ProducerIdBlock {
    /// Size of a block, as in Kafka.
    pub const SIZE: i64 = 1000;

    /// The block after `previous` (or the first block), taken by `broker`.
    pub fn next(previous: Option<&ProducerIdBlock>, broker: BrokerId) -> Self {
        let start = previous.and_then(|p| p.block_end.parse::<i64>().ok()).map(|end| end + 1).unwrap_or(0);
        Self { version: 1, broker, block_start: start.to_string(), block_end: (start + Self::SIZE - 1).to_string() }
    }
    /// First and last id.
    pub fn range(&self) -> Option<(i64, i64)> {
        Some((self.block_start.parse().ok()?, self.block_end.parse().ok()?))
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Parses the payload.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when it is not Kafka's JSON.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        decode_json(LATEST_PRODUCER_ID_BLOCK, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassignment_requests_read_what_kafkas_tool_writes() {
        let kafka =
            br#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3],"log_dirs":["any","any"]}]}"#;
        let r = ReassignPartitions::decode("/admin/reassign_partitions", kafka).unwrap();
        assert_eq!(
            (r.partitions[0].topic.as_str(), r.partitions[0].partition, r.partitions[0].replicas.clone()),
            ("t", 0, vec![2, 3])
        );
        let ours: serde_json::Value = serde_json::from_slice(
            &ReassignPartitions::new(vec![ReassignedPartition {
                topic: "t".into(),
                partition: 1,
                replicas: vec![1],
                log_dirs: vec![],
            }])
            .encode(),
        )
        .unwrap();
        assert_eq!(ours, serde_json::json!({"version":1,"partitions":[{"topic":"t","partition":1,"replicas":[1]}]}));
    }

    #[test]
    fn config_entities_are_named_as_kafka_names_them() {
        let cases: &[(ConfigEntity, &str)] = &[
            (ConfigEntity::Topic("t".into()), "topics/t"),
            (ConfigEntity::Broker(Some(3)), "brokers/3"),
            (ConfigEntity::Broker(None), "brokers/<default>"),
            (ConfigEntity::Client(Some("app-1".into())), "clients/app-1"),
            (ConfigEntity::Client(None), "clients/<default>"),
            (ConfigEntity::User(Some("CN=alice,O=x".into())), "users/CN%3Dalice%2CO%3Dx"),
            (ConfigEntity::User(Some("*".into())), "users/%2A"),
            (ConfigEntity::UserClient(Some("bob".into()), None), "users/bob/clients/<default>"),
            (ConfigEntity::UserClient(None, Some("a b".into())), "users/<default>/clients/a%20b"),
        ];
        for (entity, path) in cases {
            assert_eq!(entity.entity_path(), *path);
            assert_eq!(entity.path(), format!("/config/{path}"));
            assert_eq!(ConfigEntity::from_entity_path(path).as_ref(), Some(entity), "{path}");
        }
        for bad in ["", "topics", "brokers/x", "users/%zz", "users/a/clients", "ips/1.2.3.4"] {
            assert_eq!(ConfigEntity::from_entity_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn broker_registration_reads_kafkas_own_v5_json() {
        let kafka = br#"{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://h1:9092"],"jmx_port":-1,"port":9092,"host":"h1","version":5,"timestamp":"1700000000000"}"#;
        let reg = BrokerRegistration::decode(1, kafka).unwrap();
        assert_eq!(
            reg.parsed_endpoints(),
            vec![Endpoint { listener: "PLAINTEXT".into(), host: "h1".into(), port: 9092 }]
        );
    }

    #[test]
    fn broker_registration_writes_the_fields_kafka_tools_read() {
        let endpoints = [Endpoint { listener: "PLAINTEXT".into(), host: "localhost".into(), port: 9092 }];
        let json: serde_json::Value =
            serde_json::from_slice(&BrokerRegistration::new(&endpoints, None, 5).encode()).unwrap();
        assert_eq!(json["version"], 5);
        assert_eq!(json["host"], "localhost");
        assert_eq!(json["port"], 9092);
        assert_eq!(json["timestamp"], "5");
        assert_eq!(json["endpoints"][0], "PLAINTEXT://localhost:9092");
        assert_eq!(json["listener_security_protocol_map"]["PLAINTEXT"], "PLAINTEXT");
        assert!(json.get("rack").is_none());

        // Named listeners, as the confluent tutorial's compose file advertises them.
        let named = [
            Endpoint { listener: "PLAINTEXT".into(), host: "kafka-1".into(), port: 9092 },
            Endpoint { listener: "PLAINTEXT_HOST".into(), host: "localhost".into(), port: 29092 },
        ];
        let json: serde_json::Value =
            serde_json::from_slice(&BrokerRegistration::new(&named, None, 5).encode()).unwrap();
        assert_eq!(
            json["endpoints"],
            serde_json::json!(["PLAINTEXT://kafka-1:9092", "PLAINTEXT_HOST://localhost:29092"])
        );
        assert_eq!(
            json["listener_security_protocol_map"],
            serde_json::json!({"PLAINTEXT": "PLAINTEXT", "PLAINTEXT_HOST": "PLAINTEXT"})
        );
        assert_eq!((json["host"].as_str(), json["port"].as_i64()), (Some("kafka-1"), Some(9092)));

        // Secured listeners: the map says so, and host/port name the PLAINTEXT one.
        let secured = [
            Endpoint { listener: "EXTERNAL".into(), host: "kafka.example".into(), port: 9093 },
            Endpoint { listener: "INTERNAL".into(), host: "kafka-1".into(), port: 9092 },
        ];
        let protocols = |l: &str| (l == "EXTERNAL").then(|| "SASL_SSL".to_string());
        let json: serde_json::Value =
            serde_json::from_slice(&BrokerRegistration::new(&secured, None, 5).with_protocols(protocols).encode()).unwrap();
        assert_eq!(
            json["listener_security_protocol_map"],
            serde_json::json!({"EXTERNAL": "SASL_SSL", "INTERNAL": "PLAINTEXT"})
        );
        assert_eq!((json["host"].as_str(), json["port"].as_i64()), (Some("kafka-1"), Some(9092)));
        let only_tls = BrokerRegistration::new(&secured[..1], None, 5).with_protocols(protocols);
        assert_eq!((only_tls.host.as_deref(), only_tls.port), (None, -1));
        assert_eq!(only_tls.parsed_endpoints(), secured[..1].to_vec());
    }

    #[test]
    fn topic_assignment_reads_v1_and_v3_payloads() {
        let v1 = br#"{"version":1,"partitions":{"0":[1,2],"1":[2,1]}}"#;
        let a = TopicAssignment::decode("t", v1).unwrap();
        assert_eq!(a.topic_id, None);
        assert_eq!(a.replicas()[&1], vec![2, 1]);
        let id = TopicId::random();
        let v3 = TopicAssignment::new(Some(id), &BTreeMap::from([(0, vec![1])]));
        let json: serde_json::Value = serde_json::from_slice(&v3.encode()).unwrap();
        assert_eq!(json["version"], 3);
        assert_eq!(json["topic_id"], id.to_string());
        assert_eq!(json["partitions"]["0"], serde_json::json!([1]));
        assert_eq!(TopicAssignment::decode("t", &v3.encode()).unwrap(), v3);
    }

    #[test]
    fn partition_state_matches_kafkas_json() {
        let s = PartitionState::new(1, 4, 7, vec![1, 2]);
        assert_eq!(
            String::from_utf8(s.encode()).unwrap(),
            r#"{"version":1,"leader":1,"leader_epoch":4,"controller_epoch":7,"isr":[1,2]}"#
        );
    }

    #[test]
    fn cluster_id_version_is_a_string() {
        assert_eq!(
            String::from_utf8(ClusterIdZNode::new("abc".into()).encode()).unwrap(),
            r#"{"version":"1","id":"abc"}"#
        );
    }

    #[test]
    fn controller_epoch_is_decimal_text() {
        assert_eq!(decode_controller_epoch(b"17"), Ok(17));
        assert!(decode_controller_epoch(b"{}").is_err());
    }

    #[test]
    fn producer_id_blocks_follow_on_in_thousands() {
        let first = ProducerIdBlock::next(None, 1);
        assert_eq!(first.range(), Some((0, 999)));
        let second = ProducerIdBlock::next(Some(&first), 2);
        assert_eq!(second.range(), Some((1000, 1999)));
        assert!(String::from_utf8(second.encode()).unwrap().contains(r#""block_start":"1000""#));
    }

    #[test]
    fn endpoints_parse_ipv6_and_reject_garbage() {
        assert_eq!(Endpoint::parse("PLAINTEXT://[::1]:9092").unwrap().host, "::1");
        assert_eq!(Endpoint::parse("PLAINTEXT://[::1]:9092").unwrap().to_string(), "PLAINTEXT://[::1]:9092");
        assert!(Endpoint::parse("localhost:9092").is_none());
        assert!(Endpoint::parse("PLAINTEXT://host:notaport").is_none());
    }
}
