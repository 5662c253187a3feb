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

/// Reads in flight at once in [`get_many`]: enough that a snapshot of 10,000 partitions
/// costs a few round trips' worth of waiting instead of 10,000, few enough that the
/// session's pings are never queued long behind them.
const PIPELINE: usize = 512;

/// Reads `paths` (each `None` where the node is gone), with up to [`PIPELINE`] requests in
/// flight: the client sends each request when it is issued and ZooKeeper answers one
/// session's requests in order, so a window costs about one round trip.
async fn get_many(client: &Client, paths: &[String]) -> Result<Vec<Option<(Vec<u8>, zookeeper_client::Stat)>>, LoadError> {
    let mut out = Vec::with_capacity(paths.len());
    for window in paths.chunks(PIPELINE) {
        let pending: Vec<_> = window.iter().map(|path| client.get_data(path)).collect();
        for (path, reply) in window.iter().zip(pending) {
            out.push(match reply.await {
                Ok(found) => Some(found),
                Err(zookeeper_client::Error::NoNode) => None,
                Err(e) => return Err(err(path.as_str())(e)),
            });
        }
    }
    Ok(out)
}

/// Reads the whole cluster state. Nodes that vanish while being read (a topic being
/// deleted, a broker stopping) are skipped; unreadable payloads are logged and skipped.
/// Reads are pipelined ([`get_many`]): the cost is bytes, not one round trip per znode.
///
/// # Errors
/// [`LoadError`] for ZooKeeper failures (connection loss, ...).
pub async fn load(client: &Client) -> Result<ClusterSnapshot, LoadError> {
    let mut snapshot = ClusterSnapshot::default();
    if let Some((data, _)) = get_optional(client, znode::CLUSTER_ID).await? {
        snapshot.cluster_id = ClusterIdZNode::decode(&data).ok().map(|c| c.id);
    }
    let broker_ids: Vec<BrokerId> =
        children(client, znode::BROKER_IDS).await?.iter().filter_map(|id| id.parse().ok()).collect();
    let paths: Vec<String> = broker_ids.iter().map(|id| znode::broker_path(*id)).collect();
    for (broker_id, found) in broker_ids.into_iter().zip(get_many(client, &paths).await?) {
        let Some((data, stat)) = found else { continue };
        match BrokerRegistration::decode(broker_id, &data) {
            Ok(registration) => {
                snapshot.brokers.insert(broker_id, BrokerSnapshot { registration, epoch: stat.czxid });
            }
            Err(e) => tracing::warn!(broker_id, error = %e, "skipping a broker registration that is not Kafka's JSON"),
        }
    }
    snapshot.pending_deletions = children(client, znode::DELETE_TOPICS).await?.into_iter().collect();
    // Topic assignments, then every partition state and topic config in one pipelined pass.
    let names = children(client, znode::BROKER_TOPICS).await?;
    let paths: Vec<String> = names.iter().map(|t| znode::topic_path(t)).collect();
    let mut topics = Vec::new();
    for (topic, found) in names.into_iter().zip(get_many(client, &paths).await?) {
        let Some((data, stat)) = found else { continue };
        match TopicAssignment::decode(&topic, &data) {
            Ok(assignment) => {
                let replicas = assignment.replicas();
                topics.push((topic, assignment, replicas, stat.version));
            }
            Err(e) => tracing::warn!(topic, error = %e, "skipping a topic whose assignment cannot be read"),
        }
    }
    let mut paths = Vec::new();
    for (topic, _, replicas, _) in &topics {
        paths.extend(replicas.keys().map(|partition| znode::partition_state_path(topic, *partition)));
        paths.push(znode::topic_config_path(topic));
    }
    let mut found = get_many(client, &paths).await?.into_iter();
    for (topic, assignment, replicas, assignment_version) in topics {
        let mut partitions = BTreeMap::new();
        for (partition, replicas) in replicas {
            let state = match found.next().flatten() {
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
        let config = match found.next().flatten() {
            Some((data, _)) => EntityConfig::decode(&config_path, &data).map(|c| c.config).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        snapshot.topics.insert(topic, TopicSnapshot { assignment, assignment_version, partitions, config });
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
    let mut named = Vec::new();
    for entity_path in entities {
        match ConfigEntity::from_entity_path(&entity_path) {
            Some(entity) => named.push(entity),
            None => tracing::warn!(
                znode = format!("/config/{entity_path}"),
                "skipping a config znode whose name Kafka would not write"
            ),
        }
    }
    let paths: Vec<String> = named.iter().map(ConfigEntity::path).collect();
    for ((entity, path), found) in named.into_iter().zip(&paths).zip(get_many(client, &paths).await?) {
        let Some((data, _)) = found else { continue };
        if data.is_empty() {
            continue;
        }
        match EntityConfig::decode(path, &data) {
            Ok(c) if !c.config.is_empty() => {
                snapshot.entity_configs.insert(entity, c.config);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable config"),
        }
    }
    Ok(snapshot)
}
