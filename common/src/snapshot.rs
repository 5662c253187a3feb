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
/// A process that watches the cluster reads it whole once and then keeps it current with
/// [`refresh`], which reads only what its watch events name.
///
/// # Errors
/// [`LoadError`] for ZooKeeper failures (connection loss, ...).
pub async fn load(client: &Client) -> Result<ClusterSnapshot, LoadError> {
    let mut snapshot = ClusterSnapshot::default();
    if let Some((data, _)) = get_optional(client, znode::CLUSTER_ID).await? {
        snapshot.cluster_id = ClusterIdZNode::decode(&data).ok().map(|c| c.id);
    }
    snapshot.brokers = load_brokers(client).await?;
    snapshot.pending_deletions = children(client, znode::DELETE_TOPICS).await?.into_iter().collect();
    let names = children(client, znode::BROKER_TOPICS).await?;
    for (name, topic) in load_topics(client, names).await? {
        if let Some(topic) = topic {
            snapshot.topics.insert(name, topic);
        }
    }
    snapshot.entity_configs = load_entity_configs(client).await?;
    Ok(snapshot)
}

/// Every live broker's registration.
async fn load_brokers(client: &Client) -> Result<BTreeMap<BrokerId, BrokerSnapshot>, LoadError> {
    let broker_ids: Vec<BrokerId> =
        children(client, znode::BROKER_IDS).await?.iter().filter_map(|id| id.parse().ok()).collect();
    let paths: Vec<String> = broker_ids.iter().map(|id| znode::broker_path(*id)).collect();
    let mut brokers = BTreeMap::new();
    for (broker_id, found) in broker_ids.into_iter().zip(get_many(client, &paths).await?) {
        if let Some(broker) = found.and_then(|(data, stat)| broker_snapshot(broker_id, &data, &stat)) {
            brokers.insert(broker_id, broker);
        }
    }
    Ok(brokers)
}

fn broker_snapshot(broker_id: BrokerId, data: &[u8], stat: &zookeeper_client::Stat) -> Option<BrokerSnapshot> {
    match BrokerRegistration::decode(broker_id, data) {
        Ok(registration) => Some(BrokerSnapshot { registration, epoch: stat.czxid }),
        Err(e) => {
            tracing::warn!(broker_id, error = %e, "skipping a broker registration that is not Kafka's JSON");
            None
        }
    }
}

fn partition_state(topic: &str, partition: i32, found: Option<(Vec<u8>, zookeeper_client::Stat)>) -> Option<(PartitionState, i32)> {
    let (data, stat) = found?;
    match PartitionState::decode(topic, partition, &data) {
        Ok(s) => Some((s, stat.version)),
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "unreadable partition state; treating it as absent");
            None
        }
    }
}

fn topic_config(topic: &str, found: Option<(Vec<u8>, zookeeper_client::Stat)>) -> BTreeMap<String, String> {
    match found {
        Some((data, _)) => EntityConfig::decode(&znode::topic_config_path(topic), &data).map(|c| c.config).unwrap_or_default(),
        None => BTreeMap::new(),
    }
}

/// The named topics, each `None` when it is gone (or its assignment unreadable): the
/// assignments, then every partition state and topic config in one pipelined pass.
async fn load_topics(client: &Client, names: Vec<String>) -> Result<Vec<(String, Option<TopicSnapshot>)>, LoadError> {
    let paths: Vec<String> = names.iter().map(|t| znode::topic_path(t)).collect();
    let mut topics = Vec::new();
    for (topic, found) in names.into_iter().zip(get_many(client, &paths).await?) {
        let assignment = found.and_then(|(data, stat)| match TopicAssignment::decode(&topic, &data) {
            Ok(assignment) => Some((assignment, stat.version)),
            Err(e) => {
                tracing::warn!(topic, error = %e, "skipping a topic whose assignment cannot be read");
                None
            }
        });
        topics.push((topic, assignment));
    }
    let mut paths = Vec::new();
    for (topic, assignment) in &topics {
        if let Some((assignment, _)) = assignment {
            paths.extend(assignment.replicas().keys().map(|partition| znode::partition_state_path(topic, *partition)));
            paths.push(znode::topic_config_path(topic));
        }
    }
    let mut found = get_many(client, &paths).await?.into_iter();
    let mut out = Vec::with_capacity(topics.len());
    for (topic, assignment) in topics {
        let Some((assignment, assignment_version)) = assignment else {
            out.push((topic, None));
            continue;
        };
        let partitions = assignment
            .replicas()
            .into_iter()
            .map(|(partition, replicas)| {
                let state = partition_state(&topic, partition, found.next().flatten());
                (partition, PartitionSnapshot { replicas, state })
            })
            .collect();
        let config = topic_config(&topic, found.next().flatten());
        out.push((topic, Some(TopicSnapshot { assignment, assignment_version, partitions, config })));
    }
    Ok(out)
}

/// The dynamic configs of brokers, clients and users.
async fn load_entity_configs(client: &Client) -> Result<BTreeMap<ConfigEntity, BTreeMap<String, String>>, LoadError> {
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
    let mut configs = BTreeMap::new();
    for ((entity, path), found) in named.into_iter().zip(&paths).zip(get_many(client, &paths).await?) {
        let Some((data, _)) = found else { continue };
        if data.is_empty() {
            continue;
        }
        match EntityConfig::decode(path, &data) {
            Ok(c) if !c.config.is_empty() => {
                configs.insert(entity, c.config);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable config"),
        }
    }
    Ok(configs)
}

/// The part of a [`ClusterSnapshot`] a change to one znode can make stale.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stale {
    /// A change the finer rules do not cover (a root created or removed): read it all.
    All,
    /// The set of live brokers (`/brokers/ids` itself).
    Brokers,
    /// One broker's registration.
    Broker(BrokerId),
    /// A topic: its assignment, every partition state and its config.
    Topic(String),
    /// One partition's leader and ISR.
    PartitionState(String, i32),
    /// A topic's config overrides.
    TopicConfig(String),
    /// Broker, client and user configs.
    EntityConfigs,
    /// The topics marked for deletion.
    Deletions,
}

/// What a session state reported by a `StateWatcher` means for watches set earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewatch {
    /// Nothing: the watches still stand (a disconnection: wait for the reconnect).
    Keep,
    /// Connected again: set the watches again and re-read everything.
    Again,
    /// The session ended.
    Ended,
}

/// The rule. Persistent watches can lose events across a reconnect (ZOOKEEPER-4698) or be
/// gone after moving to another server, so every report of a connected state after the
/// watches were set calls for setting them again: the watcher reports only the latest
/// state, so a disconnection while its owner was busy (a pass blocked on the lost server)
/// shows up as nothing but `SyncConnected`.
pub fn rewatch(state: zookeeper_client::SessionState) -> Rewatch {
    use zookeeper_client::SessionState as S;
    match state {
        S::SyncConnected | S::ConnectedReadOnly => Rewatch::Again,
        s if s.is_terminated() => Rewatch::Ended,
        _ => Rewatch::Keep,
    }
}

/// What a change to `path` (as a persistent recursive watch on `/brokers`, `/config` or
/// `/admin/delete_topics` reports it) makes stale; `None` for znodes the snapshot does not
/// hold (a partition's parent node, config change notifications, `/brokers/seqid`). Kafka's
/// controller reacts to the same znodes one by one instead of re-reading the cluster.
pub fn stale(path: &str) -> Option<Stale> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["brokers", "ids"] => Some(Stale::Brokers),
        ["brokers", "ids", id] => id.parse().ok().map(Stale::Broker),
        ["brokers", "topics", topic] => Some(Stale::Topic((*topic).to_string())),
        ["brokers", "topics", _, "partitions"] | ["brokers", "topics", _, "partitions", _] => None,
        ["brokers", "topics", topic, "partitions", partition, "state"] => match partition.parse() {
            Ok(p) => Some(Stale::PartitionState((*topic).to_string(), p)),
            Err(_) => None,
        },
        ["brokers", "seqid"] => None,
        ["config", "topics", topic] => Some(Stale::TopicConfig((*topic).to_string())),
        ["config", "brokers" | "clients" | "users", ..] => Some(Stale::EntityConfigs),
        ["config", "changes", ..] => None,
        ["admin", "delete_topics", ..] => Some(Stale::Deletions),
        _ => Some(Stale::All),
    }
}

/// Brings `snapshot` (read by [`load`] on the same session, and kept by [`refresh`] since)
/// up to date with the changes `stale` names, reading only those znodes: a topic created
/// among 10,000 costs its own reads, not the cluster's. Every read follows the watch event
/// that named it, so it sees that change or a later one (whose own event follows); a
/// partition state for a topic or partition this snapshot does not know reads the topic.
///
/// # Errors
/// [`LoadError`] for ZooKeeper failures; the snapshot may then be partly updated, so the
/// caller reads it whole again ([`load`]) once connected.
pub async fn refresh(client: &Client, snapshot: &mut ClusterSnapshot, stale: BTreeSet<Stale>) -> Result<(), LoadError> {
    if stale.contains(&Stale::All) {
        *snapshot = load(client).await?;
        return Ok(());
    }
    let mut topics = BTreeSet::new();
    let mut states = Vec::new();
    let mut configs = Vec::new();
    let mut brokers = Vec::new();
    for s in stale {
        match s {
            Stale::All => unreachable!("handled above"),
            Stale::Brokers => snapshot.brokers = load_brokers(client).await?,
            Stale::Broker(id) => brokers.push(id),
            Stale::Topic(t) => {
                topics.insert(t);
            }
            Stale::PartitionState(t, p) => states.push((t, p)),
            Stale::TopicConfig(t) => configs.push(t),
            Stale::EntityConfigs => snapshot.entity_configs = load_entity_configs(client).await?,
            Stale::Deletions => {
                snapshot.pending_deletions = children(client, znode::DELETE_TOPICS).await?.into_iter().collect();
            }
        }
    }
    let paths: Vec<String> = brokers.iter().map(|id| znode::broker_path(*id)).collect();
    for (id, found) in brokers.into_iter().zip(get_many(client, &paths).await?) {
        match found.and_then(|(data, stat)| broker_snapshot(id, &data, &stat)) {
            Some(broker) => snapshot.brokers.insert(id, broker),
            None => snapshot.brokers.remove(&id),
        };
    }
    // A state or config of a topic read whole below, or of one this snapshot does not
    // hold yet (its topic's own event reads it), needs no read of its own.
    for (t, p) in &states {
        if !snapshot.topics.get(t).is_some_and(|topic| topic.partitions.contains_key(p)) {
            topics.insert(t.clone());
        }
    }
    states.retain(|(t, _)| !topics.contains(t));
    configs.retain(|t| !topics.contains(t) && snapshot.topics.contains_key(t));
    let paths: Vec<String> = states.iter().map(|(t, p)| znode::partition_state_path(t, *p)).collect();
    for ((t, p), found) in states.into_iter().zip(get_many(client, &paths).await?) {
        if let Some(partition) = snapshot.topics.get_mut(&t).and_then(|topic| topic.partitions.get_mut(&p)) {
            partition.state = partition_state(&t, p, found);
        }
    }
    let paths: Vec<String> = configs.iter().map(|t| znode::topic_config_path(t)).collect();
    for (t, found) in configs.into_iter().zip(get_many(client, &paths).await?) {
        if let Some(topic) = snapshot.topics.get_mut(&t) {
            topic.config = topic_config(&t, found);
        }
    }
    for (name, topic) in load_topics(client, topics.into_iter().collect()).await? {
        match topic {
            Some(topic) => snapshot.topics.insert(name, topic),
            None => snapshot.topics.remove(&name),
        };
    }
    Ok(())
}

/// A snapshot kept current from watch events: read whole once (and again after a failed
/// read, or when its owner forgets it after a reconnect), then only what the events since
/// name ([`refresh`]).
#[derive(Debug, Default)]
pub struct Tracker {
    snapshot: Option<ClusterSnapshot>,
    stale: BTreeSet<Stale>,
}

impl Tracker {
    /// Notes a change reported by a watch on `/brokers`, `/config` or `/admin/delete_topics`;
    /// whether it touched the snapshot.
    pub fn note(&mut self, path: &str) -> bool {
        let Some(s) = stale(path) else { return false };
        self.stale.insert(s);
        true
    }

    /// Forgets the snapshot: the next [`Tracker::current`] reads the cluster whole (after a
    /// reconnect, when watch events may have been lost).
    pub fn reset(&mut self) {
        self.snapshot = None;
        self.stale.clear();
    }

    /// The snapshot with every change noted so far read in.
    ///
    /// # Errors
    /// [`LoadError`] for ZooKeeper failures; the snapshot is then forgotten, and read whole
    /// next time.
    pub async fn current(&mut self, client: &Client) -> Result<&ClusterSnapshot, LoadError> {
        let stale = std::mem::take(&mut self.stale);
        let read = match self.snapshot.take() {
            Some(mut snapshot) => refresh(client, &mut snapshot, stale).await.map(|()| snapshot),
            None => load(client).await,
        };
        match read {
            Ok(snapshot) => Ok(self.snapshot.insert(snapshot)),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connected_report_sets_the_watches_again() {
        use zookeeper_client::SessionState as S;
        let cases = [
            (S::SyncConnected, Rewatch::Again),
            (S::ConnectedReadOnly, Rewatch::Again),
            (S::Disconnected, Rewatch::Keep),
            (S::Expired, Rewatch::Ended),
            (S::Closed, Rewatch::Ended),
            (S::AuthFailed, Rewatch::Ended),
        ];
        for (state, want) in cases {
            assert_eq!(rewatch(state), want, "{state:?}");
        }
    }

    #[test]
    fn a_change_makes_stale_only_what_its_znode_holds() {
        let cases: &[(&str, Option<Stale>)] = &[
            ("/brokers/ids", Some(Stale::Brokers)),
            ("/brokers/ids/3", Some(Stale::Broker(3))),
            ("/brokers/ids/not-a-number", None),
            ("/brokers/topics/orders", Some(Stale::Topic("orders".into()))),
            ("/brokers/topics/orders/partitions", None),
            ("/brokers/topics/orders/partitions/7", None),
            ("/brokers/topics/orders/partitions/7/state", Some(Stale::PartitionState("orders".into(), 7))),
            ("/brokers/topics/orders/partitions/x/state", None),
            ("/brokers/seqid", None),
            ("/config/topics/orders", Some(Stale::TopicConfig("orders".into()))),
            ("/config/brokers/1", Some(Stale::EntityConfigs)),
            ("/config/brokers/<default>", Some(Stale::EntityConfigs)),
            ("/config/clients/app", Some(Stale::EntityConfigs)),
            ("/config/users/alice/clients/app", Some(Stale::EntityConfigs)),
            ("/config/changes/config_change_0000000001", None),
            ("/config/changes", None),
            ("/admin/delete_topics", Some(Stale::Deletions)),
            ("/admin/delete_topics/orders", Some(Stale::Deletions)),
            // Roots created or removed, and anything unforeseen: read everything.
            ("/brokers", Some(Stale::All)),
            ("/brokers/topics", Some(Stale::All)),
            ("/config/topics", Some(Stale::All)),
            ("/config", Some(Stale::All)),
            ("/brokers/topics/orders/extra/node", Some(Stale::All)),
        ];
        for (path, want) in cases {
            assert_eq!(&stale(path), want, "{path}");
        }
    }
}
