//! In-process fixtures for the middle tier of tests: a real sled store in a temporary
//! directory, a [`ReplicaManager`] over it, and metadata snapshots built by hand, so that
//! tests drive the replica manager and the group coordinator without sockets or ZooKeeper.

use std::sync::Arc;

use bytes::Bytes;
use tributary_common::ids::{BrokerId, TopicId, TopicPartition};
use tributary_common::znode::Endpoint;

use crate::config::BrokerConfig;
use crate::log::{FlushPolicy, LogStore};
use crate::metadata::{BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata};
use crate::record;
use crate::replica::ReplicaManager;
use crate::topic_config::TopicConfig;

/// A temporary directory removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tributary-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker's replica manager over a fresh store, as broker `broker_id`.
pub(crate) struct Node {
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) _dir: TempDir,
}

impl Node {
    pub(crate) fn new(name: &str, broker_id: BrokerId) -> Node {
        let dir = TempDir::new(name);
        let store = LogStore::open(&dir.0, FlushPolicy { interval_ms: Some(1000), interval_messages: u64::MAX })
            .expect("open store");
        let config = BrokerConfig { broker_id, ..BrokerConfig::default() };
        let replicas = ReplicaManager::new(broker_id, store, TopicConfig::defaults(&config));
        Node { replicas, _dir: dir }
    }

    /// Takes up `meta` and waits (without timers, so paused time does not jump) until
    /// every partition it assigns here is open.
    pub(crate) async fn apply(&self, meta: &ClusterMetadata) {
        self.replicas.reconcile(meta);
        while self.replicas.opening_count() > 0 {
            self.replicas.partitions_opened().await;
        }
    }
}

/// A cluster snapshot with brokers 1..=`brokers`.
pub(crate) fn cluster(brokers: i32) -> ClusterMetadata {
    let mut meta = ClusterMetadata { cluster_id: "test-cluster".into(), ..Default::default() };
    for id in 1..=brokers {
        meta.brokers.insert(
            id,
            BrokerInfo {
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9090 + id as u16,
                }],
                rack: None,
                epoch: 1,
            },
        );
    }
    meta
}

/// Sets one partition's state (creating the topic with a fresh id if needed).
pub(crate) fn set_partition(
    meta: &mut ClusterMetadata,
    topic: &str,
    partition: i32,
    replicas: &[BrokerId],
    leader: BrokerId,
    leader_epoch: i32,
    isr: &[BrokerId],
) {
    let t = meta
        .topics
        .entry(topic.to_string())
        .or_insert_with(|| TopicMetadata { id: Some(TopicId::random()), ..Default::default() });
    let id = t.id.expect("set above");
    let version = t.partitions.get(&partition).map_or(0, |p| p.state_version + 1);
    t.partitions.insert(
        partition,
        PartitionMetadata {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch,
            isr: isr.to_vec(),
            state_version: version,
            controller_epoch: 1,
        },
    );
    meta.topic_names.insert(id, topic.to_string());
}

/// One uncompressed batch holding `values`.
pub(crate) fn batch(values: &[&[u8]]) -> Bytes {
    let kvs: Vec<record::KeyValue<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
    record::build(0, tributary_common::time::now_ms(), &kvs)
}

pub(crate) fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}
