//! A consistent-enough read of the cluster state in ZooKeeper (brokers, topic
//! assignments, partition states with their zkVersions, topic configs, pending deletions),
//! shared by the broker's metadata view and the coordinator's controller and admin API.

use std::collections::{BTreeMap, BTreeSet};

use zookeeper_client::Client;

use crate::ids::BrokerId;
use crate::znode::{
    self, BrokerRegistration, ClusterIdZNode, ConfigEntity, EntityConfig, PartitionState, TopicAssignment,
};

/// A live broker's registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSnapshot {
    /// Its payload.
    pub registration: BrokerRegistration,
    /// Broker epoch (czxid of the ephemeral).
    pub epoch: i64,
}

/// One partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// Assigned replicas.
    pub replicas: Vec<BrokerId>,
    /// Leader/ISR state and its zkVersion, once the controller has written one.
    pub state: Option<(PartitionState, i32)>,
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSnapshot {
    /// `/brokers/topics/<t>`.
    pub assignment: TopicAssignment,
    /// Its zkVersion.
    pub assignment_version: i32,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionSnapshot>,
    /// `/config/topics/<t>` overrides.
    pub config: BTreeMap<String, String>,
}

/// The cluster as stored in ZooKeeper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// `/cluster/id`, if created.
    pub cluster_id: Option<String>,
    /// Live brokers.
    pub brokers: BTreeMap<BrokerId, BrokerSnapshot>,
    /// Topics.
    pub topics: BTreeMap<String, TopicSnapshot>,
    /// Children of `/admin/delete_topics`.
    pub pending_deletions: BTreeSet<String>,
    /// Dynamic configs of brokers, clients and users (`/config/brokers/*`,
    /// `/config/clients/*`, `/config/users/*[/clients/*]`); topics keep theirs in
    /// [`TopicSnapshot::config`]. Entities without settings are left out.
    pub entity_configs: BTreeMap<ConfigEntity, BTreeMap<String, String>>,
}

/// Reading failed for a reason other than a node vanishing mid-read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("reading {path} from ZooKeeper failed: {source}")]
pub struct LoadError {
    /// The node.
    pub path: String,
    /// The client error.
    pub source: zookeeper_client::Error,
}

fn err(path: impl Into<String>) -> impl FnOnce(zookeeper_client::Error) -> LoadError {
    let path = path.into();
    move |source| LoadError { path, source }
}

async fn get_optional(client: &Client, path: &str) -> Result<Option<(Vec<u8>, zookeeper_client::Stat)>, LoadError> {
    match client.get_data(path).await {
        Ok(found) => Ok(Some(found)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(err(path)(e)),
    }
}

async fn children(client: &Client, path: &str) -> Result<Vec<String>, LoadError> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(err(path)(e)),
    }
}

/// Reads the whole cluster state. Nodes that vanish while being read (a topic being
/// deleted, a broker stopping) are skipped; unreadable payloads are logged and skipped.
///
/// # Errors
/// [`LoadError`] for ZooKeeper failures (connection loss, ...).
pub async fn load(client: &Client) -> Result<ClusterSnapshot, LoadError> {
    let mut snapshot = ClusterSnapshot::default();
    if let Some((data, _)) = get_optional(client, znode::CLUSTER_ID).await? {
        snapshot.cluster_id = ClusterIdZNode::decode(&data).ok().map(|c| c.id);
    }
    for id in children(client, znode::BROKER_IDS).await? {
        let Ok(broker_id) = id.parse::<BrokerId>() else { continue };
        let Some((data, stat)) = get_optional(client, &znode::broker_path(broker_id)).await? else { continue };
        match BrokerRegistration::decode(broker_id, &data) {
            Ok(registration) => {
                snapshot.brokers.insert(broker_id, BrokerSnapshot { registration, epoch: stat.czxid });
            }
            Err(e) => tracing::warn!(broker_id, error = %e, "skipping a broker registration that is not Kafka's JSON"),
        }
    }
    snapshot.pending_deletions = children(client, znode::DELETE_TOPICS).await?.into_iter().collect();
    for topic in children(client, znode::BROKER_TOPICS).await? {
        let Some((data, stat)) = get_optional(client, &znode::topic_path(&topic)).await? else { continue };
        let assignment = match TopicAssignment::decode(&topic, &data) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(topic, error = %e, "skipping a topic whose assignment cannot be read");
                continue;
            }
        };
        let mut partitions = BTreeMap::new();
        for (partition, replicas) in assignment.replicas() {
            let state = match get_optional(client, &znode::partition_state_path(&topic, partition)).await? {
                Some((data, stat)) => match PartitionState::decode(&topic, partition, &data) {
                    Ok(s) => Some((s, stat.version)),
                    Err(e) => {
                        tracing::warn!(topic, partition, error = %e, "unreadable partition state; treating it as absent");
                        None
                    }
                },
                None => None,
            };
            partitions.insert(partition, PartitionSnapshot { replicas, state });
        }
        let config_path = znode::topic_config_path(&topic);
        let config = match get_optional(client, &config_path).await? {
            Some((data, _)) => EntityConfig::decode(&config_path, &data).map(|c| c.config).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        snapshot
            .topics
            .insert(topic, TopicSnapshot { assignment, assignment_version: stat.version, partitions, config });
    }
    let mut entities = Vec::new();
    for (root, parent) in
        [(znode::CONFIG_BROKERS, "brokers"), (znode::CONFIG_CLIENTS, "clients"), (znode::CONFIG_USERS, "users")]
    {
        for name in children(client, root).await? {
            entities.push(format!("{parent}/{name}"));
            if parent == "users" {
                for c in children(client, &format!("{root}/{name}/clients")).await? {
                    entities.push(format!("users/{name}/clients/{c}"));
                }
            }
        }
    }
    for entity_path in entities {
        let Some(entity) = ConfigEntity::from_entity_path(&entity_path) else {
            tracing::warn!(
                znode = format!("/config/{entity_path}"),
                "skipping a config znode whose name Kafka would not write"
            );
            continue;
        };
        let path = entity.path();
        let Some((data, _)) = get_optional(client, &path).await? else { continue };
        if data.is_empty() {
            continue;
        }
        match EntityConfig::decode(&path, &data) {
            Ok(c) if !c.config.is_empty() => {
                snapshot.entity_configs.insert(entity, c.config);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable config"),
        }
    }
    Ok(snapshot)
}
