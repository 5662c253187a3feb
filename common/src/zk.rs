//! Opening a ZooKeeper session the way Kafka does: a connect string with an optional chroot
//! (`host:2181,host2:2181/kafka`), created if missing, and a bounded wait for the ensemble
//! (`zookeeper.connection.timeout.ms`) with a log line per failed attempt.

use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode};

use crate::znode::{ConfigEntity, PERSISTENT_PATHS};

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered in time.
    #[error("could not open a ZooKeeper session with {hosts} within {waited_ms} ms (last error: {last}); check that ZooKeeper is running and that zookeeper.connect is right")]
    Unreachable {
        /// The hosts part of the connect string.
        hosts: String,
        /// How long we tried.
        waited_ms: u128,
        /// The last client error.
        last: zookeeper_client::Error,
    },
    /// The chroot could not be created or entered.
    #[error("could not use chroot {chroot} on ZooKeeper {hosts}: {reason}")]
    Chroot {
        /// Hosts.
        hosts: String,
        /// The chroot path.
        chroot: String,
        /// What went wrong.
        reason: String,
    },
}

/// Splits `hosts[/chroot]`.
pub fn split_connect_string(connect: &str) -> (&str, Option<&str>) {
    match connect.find('/') {
        Some(i) if i + 1 < connect.len() => (&connect[..i], Some(&connect[i..])),
        Some(i) => (&connect[..i], None),
        None => (connect, None),
    }
}

/// Opens a session, retrying until `connection_timeout` has passed.
///
/// # Errors
/// [`ConnectError`] when no server answered in time or the chroot is unusable.
pub async fn connect(
    connect: &str,
    session_timeout: Duration,
    connection_timeout: Duration,
) -> Result<Client, ConnectError> {
    let (hosts, chroot) = split_connect_string(connect);
    let started = Instant::now();
    let client = loop {
        let attempt = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(Duration::from_secs(2).min(connection_timeout))
            .connect(hosts)
            .await;
        match attempt {
            Ok(client) => break client,
            Err(err) if started.elapsed() < connection_timeout => {
                tracing::warn!(zookeeper = hosts, error = %err, "ZooKeeper not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(last) => {
                return Err(ConnectError::Unreachable {
                    hosts: hosts.to_string(),
                    waited_ms: started.elapsed().as_millis(),
                    last,
                })
            }
        }
    };
    let Some(chroot) = chroot else { return Ok(client) };
    let chroot_err = |reason: String| ConnectError::Chroot { hosts: hosts.into(), chroot: chroot.into(), reason };
    client
        .mkdir(chroot, &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .map_err(|e| chroot_err(e.to_string()))?;
    client.chroot(chroot.to_string()).map_err(|_| chroot_err("not a valid path".into()))
}

/// Creates the persistent paths Kafka brokers create at start-up (`/brokers/ids`, ...).
///
/// # Errors
/// The ZooKeeper error of the first path that could not be created.
pub async fn ensure_persistent_paths(client: &Client) -> Result<(), zookeeper_client::Error> {
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for path in PERSISTENT_PATHS {
        client.mkdir(path, &options).await?;
    }
    Ok(())
}

/// Options for persistent znodes with open ACLs (Kafka's default, `zookeeper.set.acl=false`).
pub fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Options for persistent-sequential znodes (notifications) with open ACLs.
pub fn persistent_sequential() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(Acls::anyone_all())
}

/// Options for ephemeral znodes with open ACLs.
pub fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_split_at_the_chroot() {
        assert_eq!(split_connect_string("a:1,b:2/kafka"), ("a:1,b:2", Some("/kafka")));
        assert_eq!(split_connect_string("a:1"), ("a:1", None));
        assert_eq!(split_connect_string("a:1/"), ("a:1", None));
    }
}

/// Why a topic write failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TopicWriteError {
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// ZooKeeper failed.
    #[error("writing topic {topic:?} to ZooKeeper failed: {source}")]
    Zk {
        /// The topic.
        topic: String,
        /// The client error.
        source: zookeeper_client::Error,
    },
}

/// Writes a new topic as Kafka's AdminZkClient does: its config and its assignment, in one
/// multi. The controller then creates the partition states and elects leaders.
///
/// # Errors
/// [`TopicWriteError::Exists`] if `/brokers/topics/<t>` exists; ZooKeeper errors.
pub async fn create_topic(
    client: &Client,
    topic: &str,
    topic_id: crate::ids::TopicId,
    replicas: &std::collections::BTreeMap<i32, Vec<crate::ids::BrokerId>>,
    config: std::collections::BTreeMap<String, String>,
) -> Result<(), TopicWriteError> {
    use crate::znode::{topic_config_path, topic_path, EntityConfig, TopicAssignment};
    let zk = |source| TopicWriteError::Zk { topic: topic.to_string(), source };
    let topic_node = topic_path(topic);
    if client.check_stat(&topic_node).await.map_err(zk)?.is_some() {
        return Err(TopicWriteError::Exists(topic.to_string()));
    }
    let config_node = topic_config_path(topic);
    let config_data = EntityConfig::new(config).encode();
    let assignment = TopicAssignment::new(Some(topic_id), replicas).encode();
    let options = persistent();
    let mut multi = client.new_multi_writer();
    // A config left by an earlier, half-finished creation is overwritten.
    match client.check_stat(&config_node).await.map_err(zk)? {
        Some(stat) => multi.add_set_data(&config_node, &config_data, Some(stat.version)),
        None => multi.add_create(&config_node, &config_data, &options),
    }
    .map_err(zk)?;
    multi.add_create(&topic_node, &assignment, &options).map_err(zk)?;
    match multi.commit().await {
        Ok(_) => Ok(()),
        Err(e) => match zookeeper_client::Error::from(e) {
            zookeeper_client::Error::NodeExists => Err(TopicWriteError::Exists(topic.to_string())),
            other => Err(zk(other)),
        },
    }
}

/// Marks a topic for deletion (`/admin/delete_topics/<t>`); an existing mark is fine.
///
/// # Errors
/// ZooKeeper errors.
pub async fn mark_topic_for_deletion(client: &Client, topic: &str) -> Result<(), zookeeper_client::Error> {
    match client.create(&crate::znode::delete_topic_path(topic), &[], &persistent()).await {
        Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a config write failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigWriteError {
    /// The entity's config changed since it was read: read it again and retry.
    #[error("{0} changed concurrently")]
    Conflict(String),
    /// ZooKeeper failed.
    #[error("writing {path} failed: {source}")]
    Zk {
        /// The node.
        path: String,
        /// The client error.
        source: zookeeper_client::Error,
    },
}

/// An entity's config and its zkVersion (`None` while the znode does not exist).
///
/// # Errors
/// ZooKeeper errors; an unreadable payload reads as empty, as Kafka treats it.
pub async fn read_entity_config(
    client: &Client,
    entity: &crate::znode::ConfigEntity,
) -> Result<(std::collections::BTreeMap<String, String>, Option<i32>), ConfigWriteError> {
    let path = entity.path();
    match client.get_data(&path).await {
        Ok((data, stat)) => {
            let config = if data.is_empty() {
                Default::default()
            } else {
                crate::znode::EntityConfig::decode(&path, &data).map(|c| c.config).unwrap_or_default()
            };
            Ok((config, Some(stat.version)))
        }
        Err(zookeeper_client::Error::NoNode) => Ok((Default::default(), None)),
        Err(source) => Err(ConfigWriteError::Zk { path, source }),
    }
}

/// The one way a config is written, as Kafka's `AdminZkClient.changeConfigs` writes it:
/// `/config/<type>/<name>` replaced (conditional on `expected_version`, the zkVersion
/// [`read_entity_config`] gave, `None` meaning the node must not exist yet), then a
/// `/config/changes/config_change_<seq>` notification naming the entity. Brokers pick the
/// change up from their watch on `/config`.
///
/// # Errors
/// [`ConfigWriteError::Conflict`] when the node changed since it was read; ZooKeeper errors.
pub async fn write_entity_config(
    client: &Client,
    entity: &crate::znode::ConfigEntity,
    config: std::collections::BTreeMap<String, String>,
    expected_version: Option<i32>,
) -> Result<(), ConfigWriteError> {
    use crate::znode::{config_change_notification, EntityConfig, CONFIG_CHANGE_PREFIX};
    let path = entity.path();
    let data = EntityConfig::new(config).encode();
    let zk = |path: &str| {
        let path = path.to_string();
        move |source| match source {
            zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists => {
                ConfigWriteError::Conflict(path.clone())
            }
            source => ConfigWriteError::Zk { path: path.clone(), source },
        }
    };
    match expected_version {
        Some(version) => {
            client.set_data(&path, &data, Some(version)).await.map_err(zk(&path))?;
        }
        None => {
            // users/<u>/clients/<c> needs users/<u>; Kafka creates such parents empty.
            if let ConfigEntity::UserClient(user, _) = entity {
                let parent = ConfigEntity::User(user.clone()).path();
                match client.create(&parent, &[], &persistent()).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(source) => return Err(ConfigWriteError::Zk { path: parent, source }),
                }
                let clients = format!("{parent}/clients");
                match client.create(&clients, &[], &persistent()).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(source) => return Err(ConfigWriteError::Zk { path: clients, source }),
                }
            }
            client.create(&path, &data, &persistent()).await.map_err(zk(&path))?;
        }
    }
    client
        .create(CONFIG_CHANGE_PREFIX, &config_change_notification(&entity.entity_path()), &persistent_sequential())
        .await
        .map_err(zk(CONFIG_CHANGE_PREFIX))?;
    Ok(())
}

/// Creates a request znode the controller consumes and deletes
/// (`/admin/reassign_partitions`, `/admin/preferred_replica_election`,
/// `/admin/unclean_leader_election`). While an earlier request is still there, waits for it
/// to go, up to `patience`.
///
/// # Errors
/// `NodeExists` when the earlier request outlasts `patience`; other ZooKeeper errors.
pub async fn create_request_node(
    client: &Client,
    path: &str,
    payload: &[u8],
    patience: Duration,
) -> Result<(), zookeeper_client::Error> {
    let deadline = Instant::now() + patience;
    loop {
        match client.create(path, payload, &persistent()).await {
            Ok(_) => return Ok(()),
            Err(zookeeper_client::Error::NodeExists) if Instant::now() < deadline => {
                // Woken when the controller deletes the earlier request.
                if let (Some(_), watcher) = client.check_and_watch_stat(path).await? {
                    let _ = tokio::time::timeout_at(deadline, watcher.changed()).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Asks the controller to move partitions (Kafka's `/admin/reassign_partitions`; an empty
/// replica list cancels a move in progress).
///
/// # Errors
/// As [`create_request_node`].
pub async fn request_reassignment(
    client: &Client,
    partitions: Vec<crate::znode::ReassignedPartition>,
    patience: Duration,
) -> Result<(), zookeeper_client::Error> {
    let payload = crate::znode::ReassignPartitions::new(partitions).encode();
    create_request_node(client, crate::znode::REASSIGN_PARTITIONS, &payload, patience).await
}

/// Why [`update_entity_config`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdateError<E> {
    /// The caller's `change` refused the result.
    Refused(E),
    /// ZooKeeper failed.
    Zk(ConfigWriteError),
    /// Other writers changed the entity on every one of five tries (its znode path).
    KeptChanging(String),
}

/// A read-modify-write of an entity's config: reads it, lets `change` compute the new
/// config from the stored one (or refuse), and writes it through [`write_entity_config`]
/// conditional on the version read, reading again when another writer got there first.
/// With `validate_only` nothing is written. Returns the config written (or that would be).
///
/// # Errors
/// [`ConfigUpdateError`] as documented on each variant.
pub async fn update_entity_config<E>(
    client: &Client,
    entity: &ConfigEntity,
    validate_only: bool,
    change: impl Fn(&std::collections::BTreeMap<String, String>) -> Result<std::collections::BTreeMap<String, String>, E>,
) -> Result<std::collections::BTreeMap<String, String>, ConfigUpdateError<E>> {
    for _ in 0..5 {
        let (current, version) = read_entity_config(client, entity).await.map_err(ConfigUpdateError::Zk)?;
        let next = change(&current).map_err(ConfigUpdateError::Refused)?;
        if validate_only {
            return Ok(next);
        }
        match write_entity_config(client, entity, next.clone(), version).await {
            Ok(()) => return Ok(next),
            Err(ConfigWriteError::Conflict(_)) => continue,
            Err(e) => return Err(ConfigUpdateError::Zk(e)),
        }
    }
    Err(ConfigUpdateError::KeptChanging(entity.path()))
}

/// Every ACL under `/kafka-acl` and `/kafka-acl-extended/prefixed`, as Kafka's authorizer
/// loads them. An unreadable node is logged and skipped.
///
/// # Errors
/// ZooKeeper errors other than a node vanishing mid-read.
pub async fn read_acls(client: &Client) -> Result<crate::acl::AclMap, zookeeper_client::Error> {
    use crate::acl::{PatternType, ResourcePattern, ResourceType, LITERAL_ROOT, PREFIXED_ROOT};
    let mut out = crate::acl::AclMap::new();
    for (root, pattern_type) in [(LITERAL_ROOT, PatternType::Literal), (PREFIXED_ROOT, PatternType::Prefixed)] {
        let types = match client.list_children(root).await {
            Ok(t) => t,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        for type_name in types {
            let Some(resource_type) = ResourceType::from_name(&type_name) else { continue };
            let dir = format!("{root}/{type_name}");
            let names = match client.list_children(&dir).await {
                Ok(n) => n,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            for name in names {
                let path = format!("{dir}/{name}");
                let data = match client.get_data(&path).await {
                    Ok((data, _)) => data,
                    Err(zookeeper_client::Error::NoNode) => continue,
                    Err(e) => return Err(e),
                };
                match crate::acl::decode_acls(&data) {
                    Ok(entries) if !entries.is_empty() => {
                        out.insert(ResourcePattern { resource_type, name, pattern_type }, entries);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(znode = path, error = %e, "skipping an ACL znode that does not parse; fix or delete it with kafka-acls"),
                }
            }
        }
    }
    Ok(out)
}

/// Changes the ACLs of one pattern as Kafka's authorizer does: reads the node, applies
/// `change`, writes the result conditionally (deleting the node when no entry is left) and
/// announces the change on `/kafka-acl-changes` or `/kafka-acl-extended-changes`; retries
/// when another writer got there first. Returns the entries before and after.
///
/// # Errors
/// ZooKeeper errors, or other writers changing the node on every one of five tries.
pub async fn update_acls(
    client: &Client,
    pattern: &crate::acl::ResourcePattern,
    change: impl Fn(&[crate::acl::AclEntry]) -> Vec<crate::acl::AclEntry>,
) -> Result<(Vec<crate::acl::AclEntry>, Vec<crate::acl::AclEntry>), ConfigWriteError> {
    let path = pattern.path();
    let zk = |source| ConfigWriteError::Zk { path: path.clone(), source };
    for _ in 0..5 {
        let (current, version) = match client.get_data(&path).await {
            Ok((data, stat)) => (crate::acl::decode_acls(&data).unwrap_or_default(), Some(stat.version)),
            Err(zookeeper_client::Error::NoNode) => (Vec::new(), None),
            Err(e) => return Err(zk(e)),
        };
        let mut next = change(&current);
        next.sort();
        next.dedup();
        if next == current {
            return Ok((current, next));
        }
        let written = match (version, next.is_empty()) {
            (None, true) => Ok(()),
            (Some(v), true) => client.delete(&path, Some(v)).await,
            (Some(v), false) => client.set_data(&path, &crate::acl::encode_acls(&next), Some(v)).await.map(|_| ()),
            (None, false) => {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    ensure_path(client, parent).await.map_err(zk)?;
                }
                client.create(&path, &crate::acl::encode_acls(&next), &persistent()).await.map(|_| ())
            }
        };
        match written {
            Ok(()) => {
                let (changes, payload) = pattern.change_notification();
                ensure_path(client, changes).await.map_err(zk)?;
                let seq = format!("{changes}/{}", crate::acl::CHANGE_PREFIX);
                client.create(&seq, &payload, &persistent_sequential()).await.map_err(zk)?;
                return Ok((current, next));
            }
            Err(zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists | zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(zk(e)),
        }
    }
    Err(ConfigWriteError::Conflict(path))
}

/// Creates `path` and its missing parents, empty.
async fn ensure_path(client: &Client, path: &str) -> Result<(), zookeeper_client::Error> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client.create(&at, &[], &persistent()).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
