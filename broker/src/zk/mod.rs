//! Everything the broker does in ZooKeeper: its session, its ephemeral registration, the
//! metadata it watches, and the admin writes (topics, partitions, producer-id blocks) that
//! Kafka's brokers also make themselves. Paths and payloads come from `common::znode`.

pub(crate) mod session;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tributary_common::ids::{BrokerId, TopicId};
use tributary_common::zk::{ephemeral, persistent, persistent_sequential, TopicWriteError};
use tributary_common::znode::{
    self, BrokerRegistration, ClusterIdZNode, IsrChangeNotification, PartitionState, ProducerIdBlock, TopicAssignment,
};
use zookeeper_client::Client;

use crate::metadata::{BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata};

/// ZooKeeper failures, as the broker reports them.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// No session right now (starting, or re-connecting after expiry).
    #[error("not connected to ZooKeeper")]
    NotConnected,
    /// Another live session holds `/brokers/ids/<id>`.
    #[error("broker id {broker_id} is already registered in ZooKeeper by another live broker (session {owner:#x}); give this broker a different broker.id, or stop the other one")]
    DuplicateBrokerId {
        /// The contested id.
        broker_id: BrokerId,
        /// Session owning the ephemeral.
        owner: i64,
        /// The endpoints that registration advertises (empty if unreadable).
        endpoints: Vec<String>,
    },
    /// The node already exists (topic already created, ...).
    #[error("znode {0} already exists")]
    NodeExists(String),
    /// A conditional write lost a race.
    #[error("znode {0} changed concurrently")]
    BadVersion(String),
    /// A payload could not be read.
    #[error(transparent)]
    Decode(#[from] znode::DecodeError),
    /// Any other client error.
    #[error("ZooKeeper operation on {path} failed: {source}")]
    Client {
        /// The path involved.
        path: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
}

fn client_err(path: impl Into<String>) -> impl FnOnce(zookeeper_client::Error) -> Error {
    let path = path.into();
    move |source| match source {
        zookeeper_client::Error::NodeExists => Error::NodeExists(path),
        zookeeper_client::Error::BadVersion => Error::BadVersion(path),
        source => Error::Client { path, source },
    }
}

/// A cloneable handle on the broker's current ZooKeeper session.
#[derive(Clone)]
pub(crate) struct ZkHandle {
    broker_id: BrokerId,
    current: Arc<RwLock<Option<Client>>>,
}

impl ZkHandle {
    /// A handle with no session yet.
    pub(crate) fn new(broker_id: BrokerId) -> Self {
        Self { broker_id, current: Arc::new(RwLock::new(None)) }
    }

    fn set(&self, client: Option<Client>) {
        *self.current.write().expect("zk handle lock") = client;
    }

    /// The live session.
    ///
    /// # Errors
    /// [`Error::NotConnected`] while there is none.
    pub(crate) fn client(&self) -> Result<Client, Error> {
        self.current.read().expect("zk handle lock").clone().ok_or(Error::NotConnected)
    }

    /// Writes a new topic (config + assignment); the controller then elects leaders.
    ///
    /// # Errors
    /// [`Error::NodeExists`] if the topic exists; other ZooKeeper errors.
    pub(crate) async fn create_topic(
        &self,
        topic: &str,
        topic_id: TopicId,
        replicas: &BTreeMap<i32, Vec<BrokerId>>,
        config: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let client = self.client()?;
        tributary_common::zk::create_topic(&client, topic, topic_id, replicas, config).await.map_err(|e| match e {
            TopicWriteError::Exists(t) => Error::NodeExists(znode::topic_path(&t)),
            TopicWriteError::Zk { topic, source } => client_err(znode::topic_path(&topic))(source),
        })
    }

    /// Replaces a topic's assignment (CreatePartitions), conditional on its zkVersion.
    ///
    /// # Errors
    /// [`Error::BadVersion`] if it changed meanwhile; other ZooKeeper errors.
    pub(crate) async fn set_assignment(
        &self,
        topic: &str,
        topic_id: Option<TopicId>,
        replicas: &BTreeMap<i32, Vec<BrokerId>>,
        expected_version: i32,
    ) -> Result<(), Error> {
        let client = self.client()?;
        let path = znode::topic_path(topic);
        let assignment = TopicAssignment::new(topic_id, replicas);
        client.set_data(&path, &assignment.encode(), Some(expected_version)).await.map_err(client_err(&path))?;
        Ok(())
    }

    /// Marks a topic for deletion (`/admin/delete_topics/<t>`); the controller does the rest.
    ///
    /// # Errors
    /// ZooKeeper errors; an existing mark is not an error.
    pub(crate) async fn mark_topic_for_deletion(&self, topic: &str) -> Result<(), Error> {
        let client = self.client()?;
        tributary_common::zk::mark_topic_for_deletion(&client, topic)
            .await
            .map_err(client_err(znode::delete_topic_path(topic)))
    }

    /// Asks the controller to move partitions (`/admin/reassign_partitions`; an empty
    /// replica list cancels), waiting up to `patience` for an earlier request to be taken.
    ///
    /// # Errors
    /// [`Error::NodeExists`] when the earlier request outlasts `patience`; ZooKeeper errors.
    pub(crate) async fn request_reassignment(
        &self,
        partitions: Vec<znode::ReassignedPartition>,
        patience: std::time::Duration,
    ) -> Result<(), Error> {
        let client = self.client()?;
        tributary_common::zk::request_reassignment(&client, partitions, patience)
            .await
            .map_err(client_err(znode::REASSIGN_PARTITIONS))
    }

    /// Asks the controller for an election by creating `path` (Kafka's
    /// `/admin/preferred_replica_election`, or `/admin/unclean_leader_election`) listing the
    /// partitions. While an earlier request is still there (being worked on), waits for it
    /// to go, up to `patience`.
    ///
    /// # Errors
    /// [`Error::NodeExists`] when the earlier request outlasts `patience`; ZooKeeper errors.
    pub(crate) async fn request_election(
        &self,
        path: &str,
        partitions: &[(String, i32)],
        patience: std::time::Duration,
    ) -> Result<(), Error> {
        let client = self.client()?;
        let payload = znode::PartitionList::new(partitions.iter().cloned()).encode();
        tributary_common::zk::create_request_node(&client, path, &payload, patience).await.map_err(client_err(path))
    }

    /// Writes an ISR change as the partition's leader (Kafka's legacy path): a conditional
    /// setData on the state znode at the zkVersion the leader last saw, keeping leader
    /// epoch and controller epoch. Returns the new zkVersion.
    ///
    /// # Errors
    /// [`Error::BadVersion`] when the state changed meanwhile (the controller elected
    /// someone else, or bumped the epoch): the leader must not act on its stale view.
    pub(crate) async fn write_isr(
        &self,
        topic: &str,
        partition: i32,
        state: &PartitionState,
        expected_version: i32,
    ) -> Result<i32, Error> {
        let client = self.client()?;
        let path = znode::partition_state_path(topic, partition);
        let stat = client.set_data(&path, &state.encode(), Some(expected_version)).await.map_err(client_err(&path))?;
        Ok(stat.version)
    }

    /// Announces ISR changes in `/isr_change_notification` for the controller.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub(crate) async fn notify_isr_change(&self, partitions: Vec<(String, i32)>) -> Result<(), Error> {
        let client = self.client()?;
        let payload = IsrChangeNotification::new(partitions).encode();
        client
            .create(znode::ISR_CHANGE_PREFIX, &payload, &persistent_sequential(znode::ISR_CHANGE_PREFIX))
            .await
            .map_err(client_err(znode::ISR_CHANGE_PREFIX))?;
        Ok(())
    }

    /// Takes the next block of 1000 producer ids through `/latest_producer_id_block`,
    /// with a conditional write so two brokers never get the same block.
    ///
    /// # Errors
    /// ZooKeeper errors after repeated races.
    pub(crate) async fn next_producer_id_block(&self) -> Result<(i64, i64), Error> {
        let client = self.client()?;
        let path = znode::LATEST_PRODUCER_ID_BLOCK;
        for _ in 0..20 {
            let (data, stat) = match client.get_data(path).await {
                Ok(found) => found,
                Err(zookeeper_client::Error::NoNode) => {
                    let _ = client.create(path, &[], &persistent(path)).await;
                    continue;
                }
                Err(e) => return Err(client_err(path)(e)),
            };
            let previous = if data.is_empty() { None } else { Some(ProducerIdBlock::decode(&data)?) };
            let next = ProducerIdBlock::next(previous.as_ref(), self.broker_id);
            match client.set_data(path, &next.encode(), Some(stat.version)).await {
                Ok(_) => return Ok(next.range().expect("a block we built has numeric bounds")),
                Err(zookeeper_client::Error::BadVersion) => continue,
                Err(e) => return Err(client_err(path)(e)),
            }
        }
        Err(Error::BadVersion(path.to_string()))
    }
}

/// Reads or creates `/cluster/id`; a new cluster gets `wanted` (`cluster.id`) or a random id.
///
/// # Errors
/// ZooKeeper or payload errors.
pub(crate) async fn get_or_create_cluster_id(client: &Client, wanted: Option<&str>) -> Result<String, Error> {
    loop {
        match client.get_data(znode::CLUSTER_ID).await {
            Ok((data, _)) => return Ok(ClusterIdZNode::decode(&data)?.id),
            Err(zookeeper_client::Error::NoNode) => {
                let id = wanted.map_or_else(|| TopicId::random().to_string(), str::to_string);
                let _ = client.mkdir("/cluster", &persistent("/cluster")).await;
                match client.create(znode::CLUSTER_ID, &ClusterIdZNode::new(id).encode(), &persistent(znode::CLUSTER_ID)).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => continue,
                    Err(e) => return Err(client_err(znode::CLUSTER_ID)(e)),
                }
            }
            Err(e) => return Err(client_err(znode::CLUSTER_ID)(e)),
        }
    }
}

/// Creates the ephemeral `/brokers/ids/<id>`; returns the broker epoch (czxid).
/// A node owned by this same session counts as success (KAFKA-7165).
///
/// # Errors
/// [`Error::DuplicateBrokerId`] when another live session holds the id.
pub(crate) async fn register_broker(
    client: &Client,
    id: BrokerId,
    registration: &BrokerRegistration,
) -> Result<i64, Error> {
    let path = znode::broker_path(id);
    loop {
        match client.create(&path, &registration.encode(), &ephemeral(&path)).await {
            Ok((stat, _)) => return Ok(stat.czxid),
            Err(zookeeper_client::Error::NodeExists) => match client.get_data(&path).await {
                Ok((_, stat)) if stat.ephemeral_owner == client.session_id().0 => return Ok(stat.czxid),
                Ok((data, stat)) => {
                    let endpoints = BrokerRegistration::decode(id, &data).map(|r| r.endpoints).unwrap_or_default();
                    return Err(Error::DuplicateBrokerId { broker_id: id, owner: stat.ephemeral_owner, endpoints });
                }
                // The other session expired between our create and our read: try again.
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(client_err(&path)(e)),
            },
            Err(e) => return Err(client_err(path)(e)),
        }
    }
}

/// The broker's view of the cluster: the snapshot read from ZooKeeper (and kept current
/// from watch events) with the ACLs.
pub(crate) fn metadata_from(
    snapshot: &tributary_common::snapshot::ClusterSnapshot,
    acls: &tributary_common::acl::AclMap,
    cluster_id: &str,
) -> ClusterMetadata {
    let snapshot = snapshot.clone();
    let mut meta = ClusterMetadata {
        cluster_id: cluster_id.to_string(),
        entity_configs: snapshot.entity_configs,
        acls: acls.clone(),
        ..Default::default()
    };
    for (id, b) in snapshot.brokers {
        let endpoints = b.registration.parsed_endpoints();
        meta.brokers.insert(id, BrokerInfo { endpoints, rack: b.registration.rack, epoch: b.epoch });
    }
    for (name, t) in snapshot.topics {
        let partitions = t
            .partitions
            .into_iter()
            .map(|(p, ps)| {
                let (leader, leader_epoch, isr, state_version, controller_epoch) = match ps.state {
                    Some((s, version)) => (s.leader, s.leader_epoch, s.isr, version, s.controller_epoch),
                    None => (znode::NO_LEADER, -1, Vec::new(), -1, -1),
                };
                (
                    p,
                    PartitionMetadata {
                        replicas: ps.replicas,
                        leader,
                        leader_epoch,
                        isr,
                        state_version,
                        controller_epoch,
                    },
                )
            })
            .collect();
        let reassigning = t
            .assignment
            .partitions
            .keys()
            .filter_map(|key| {
                let adding = t.assignment.adding_replicas.get(key).cloned().unwrap_or_default();
                let removing = t.assignment.removing_replicas.get(key).cloned().unwrap_or_default();
                (!adding.is_empty() || !removing.is_empty()).then(|| Some((key.parse().ok()?, (adding, removing))))?
            })
            .collect();
        let topic = TopicMetadata {
            id: t.assignment.topic_id,
            reassigning,
            partitions,
            config: t.config,
            assignment_version: t.assignment_version,
            deleting: snapshot.pending_deletions.contains(&name),
        };
        if let Some(id) = topic.id {
            meta.topic_names.insert(id, name.clone());
        }
        meta.topics.insert(name, topic);
    }
    meta
}

/// The iteration counts bitnami's image gives the SCRAM credentials it creates
/// (`kafka-configs --add-config 'SCRAM-SHA-256=[iterations=8192,...],SCRAM-SHA-512=[...]'`).
const IMAGE_SCRAM_ITERATIONS: [(tributary_common::scram::Mechanism, u32); 2] =
    [(tributary_common::scram::Mechanism::Sha256, 8192), (tributary_common::scram::Mechanism::Sha512, 4096)];

/// The SCRAM entries to write so that `config` (a user's `/config/users/<u>`) lets
/// `password` log in with both mechanisms; empty when it already does. CPU-heavy (PBKDF2):
/// call it off the async workers.
pub(crate) fn scram_entries_for(config: &BTreeMap<String, String>, password: &str) -> BTreeMap<String, String> {
    use tributary_common::scram::{constant_time_eq, random_salt, Credential};
    let mut out = BTreeMap::new();
    for (mechanism, iterations) in IMAGE_SCRAM_ITERATIONS {
        let stored = config.get(mechanism.name()).and_then(|v| Credential::from_config_value(v).ok());
        let verifies = stored.is_some_and(|c| {
            let again = Credential::from_password(mechanism, password, c.salt.clone(), c.iterations);
            constant_time_eq(&again.stored_key, &c.stored_key)
        });
        if !verifies {
            let fresh = Credential::from_password(mechanism, password, random_salt(), iterations);
            out.insert(mechanism.name().to_string(), fresh.to_config_value());
        }
    }
    out
}

/// Gives each of bitnami's users (`KAFKA_CLIENT_USERS`, and the inter-broker user when
/// brokers log in with SCRAM) SCRAM-SHA-256 and SCRAM-SHA-512 credentials for its password,
/// as the image does at start; credentials that already match the password are left alone,
/// so restarts write nothing. Failures are logged, not fatal: the listener still serves
/// the users it can verify.
pub(crate) async fn ensure_image_scram_users(client: &Client, users: &[(String, String)]) {
    use tributary_common::zk::{read_entity_config, update_entity_config, ConfigUpdateError};
    use tributary_common::znode::ConfigEntity;
    for (user, password) in users {
        let entity = ConfigEntity::User(Some(user.clone()));
        let current = match read_entity_config(client, &entity).await {
            Ok((config, _)) => config,
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot read the SCRAM credentials of this KAFKA_CLIENT_USERS user; it cannot log in with SCRAM until they are written (check the ZooKeeper login's ACLs)");
                continue;
            }
        };
        let password = password.clone();
        let Ok(entries) = tokio::task::spawn_blocking(move || scram_entries_for(&current, &password)).await else {
            continue;
        };
        if entries.is_empty() {
            continue;
        }
        let written = update_entity_config(client, &entity, false, |config| {
            let mut next = config.clone();
            next.extend(entries.clone());
            Ok::<_, std::convert::Infallible>(next)
        })
        .await;
        match written {
            Ok(_) => tracing::info!(user, mechanisms = ?entries.keys().collect::<Vec<_>>(), "created the SCRAM credentials of a user named by KAFKA_CLIENT_USERS / KAFKA_INTER_BROKER_USER, as the bitnami image does"),
            Err(ConfigUpdateError::Zk(e)) => tracing::warn!(user, error = %e, "cannot write the SCRAM credentials of a KAFKA_CLIENT_USERS user; it cannot log in with SCRAM (check the ZooKeeper login's ACLs)"),
            Err(ConfigUpdateError::KeptChanging(path)) => tracing::warn!(user, path, "the SCRAM credentials of a KAFKA_CLIENT_USERS user kept changing while written (other brokers starting); they hold whatever was written last"),
            Err(ConfigUpdateError::Refused(never)) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_users_get_credentials_once_and_again_only_for_a_new_password() {
        let empty = BTreeMap::new();
        let written = scram_entries_for(&empty, "pw");
        assert_eq!(written.keys().collect::<Vec<_>>(), ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
        assert!(written["SCRAM-SHA-256"].ends_with("iterations=8192"));
        assert!(written["SCRAM-SHA-512"].ends_with("iterations=4096"));
        assert!(scram_entries_for(&written, "pw").is_empty(), "matching credentials are left alone");
        assert_eq!(scram_entries_for(&written, "new").len(), 2);
        let mut one = written.clone();
        one.insert("SCRAM-SHA-512".into(), "garbage".into());
        assert_eq!(scram_entries_for(&one, "pw").keys().collect::<Vec<_>>(), ["SCRAM-SHA-512"]);
    }
}
