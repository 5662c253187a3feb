//! Partition replicas hosted by this broker: which logs are open, in which role, at which
//! leader epoch, and the high watermark. The assignment comes from ZooKeeper (through the
//! metadata snapshot); [`ReplicaManager::reconcile`] opens, re-roles and deletes local logs
//! to match it.
//!
//! Until follower fetching lands, a leader's high watermark is its log end offset: it is
//! exact for single-replica partitions and documented as such for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tributary_common::ids::{BrokerId, TopicId, TopicPartition};

use crate::log::{self, LogStore, PartitionLog};
use crate::metadata::ClusterMetadata;

/// Leadership of one partition as this broker knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// Current leader (-1 when none).
    pub leader: BrokerId,
    /// Current leader epoch.
    pub leader_epoch: i32,
}

/// A partition replica hosted here.
pub struct Partition {
    /// Its log.
    pub log: Arc<PartitionLog>,
    /// Topic id it was created for.
    pub topic_id: Option<TopicId>,
    role: Mutex<Role>,
}

impl Partition {
    /// Current role.
    pub fn role(&self) -> Role {
        self.role.lock().expect("role lock").clone()
    }

    /// The high watermark: what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.log.offsets().log_end_offset
    }

    /// The last stable offset: the high watermark, as there are no open transactions.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }
}

/// Why a partition cannot serve a request; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// Not hosted here, or not a known topic: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("{0} is not hosted on this broker")]
    UnknownPartition(TopicPartition),
    /// Hosted but led elsewhere (or leaderless): NOT_LEADER_OR_FOLLOWER.
    #[error("this broker is not the leader of {tp} (leader is {leader})")]
    NotLeader {
        /// Partition.
        tp: TopicPartition,
        /// Current leader, -1 if none.
        leader: BrokerId,
    },
    /// The client knows a newer epoch than we do: UNKNOWN_LEADER_EPOCH.
    #[error("{tp}: client leader epoch {requested} is newer than ours ({current})")]
    UnknownLeaderEpoch {
        /// Partition.
        tp: TopicPartition,
        /// Client's epoch.
        requested: i32,
        /// Ours.
        current: i32,
    },
    /// The client's epoch is stale: FENCED_LEADER_EPOCH.
    #[error("{tp}: client leader epoch {requested} is older than ours ({current})")]
    FencedLeaderEpoch {
        /// Partition.
        tp: TopicPartition,
        /// Client's epoch.
        requested: i32,
        /// Ours.
        current: i32,
    },
}

/// The replicas this broker hosts.
pub struct ReplicaManager {
    broker_id: BrokerId,
    store: LogStore,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Woken on every append, so parked fetches re-check.
    pub appended: Notify,
}

impl ReplicaManager {
    /// An empty manager over `store`.
    pub fn new(broker_id: BrokerId, store: LogStore) -> Self {
        Self { broker_id, store, partitions: RwLock::new(HashMap::new()), appended: Notify::new() }
    }

    /// The log store.
    pub fn store(&self) -> &LogStore {
        &self.store
    }

    /// A hosted partition.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").get(tp).cloned()
    }

    /// All hosted partitions.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<Partition>)> {
        self.partitions.read().expect("partitions lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The partition if this broker leads it, checking the client's leader epoch
    /// (-1 means the client does not know one).
    ///
    /// # Errors
    /// [`ReplicaError`] as documented on each variant.
    pub fn leader_partition(&self, tp: &TopicPartition, client_epoch: i32) -> Result<Arc<Partition>, ReplicaError> {
        let partition = self.get(tp).ok_or_else(|| ReplicaError::UnknownPartition(tp.clone()))?;
        let role = partition.role();
        if role.leader != self.broker_id {
            return Err(ReplicaError::NotLeader { tp: tp.clone(), leader: role.leader });
        }
        if client_epoch >= 0 && client_epoch > role.leader_epoch {
            return Err(ReplicaError::UnknownLeaderEpoch {
                tp: tp.clone(),
                requested: client_epoch,
                current: role.leader_epoch,
            });
        }
        if client_epoch >= 0 && client_epoch < role.leader_epoch {
            return Err(ReplicaError::FencedLeaderEpoch {
                tp: tp.clone(),
                requested: client_epoch,
                current: role.leader_epoch,
            });
        }
        Ok(partition)
    }

    /// Brings local replicas in line with the cluster metadata: opens logs for partitions
    /// assigned here, updates roles, and deletes logs of partitions no longer assigned here
    /// (deleted topics, or a topic re-created under a new id).
    pub fn reconcile(&self, meta: &ClusterMetadata) {
        let mut wanted: HashMap<TopicPartition, (Option<TopicId>, Role)> = HashMap::new();
        for (topic, t) in &meta.topics {
            for (p, pm) in &t.partitions {
                if pm.replicas.contains(&self.broker_id) {
                    wanted.insert(
                        TopicPartition::new(topic.clone(), *p),
                        (t.id, Role { leader: pm.leader, leader_epoch: pm.leader_epoch }),
                    );
                }
            }
        }
        let mut partitions = self.partitions.write().expect("partitions lock");
        partitions.retain(|tp, partition| {
            let keep = wanted.get(tp).is_some_and(|(id, _)| id.is_none() || *id == partition.topic_id);
            if !keep {
                if let Err(e) = self.store.delete_partition(tp) {
                    tracing::error!(%tp, error = %e, "deleting the log of a removed partition failed; its data stays on disk");
                } else {
                    tracing::info!(target: "state_change", %tp, "deleted local replica: the partition is no longer assigned to this broker");
                }
            }
            keep
        });
        for (tp, _) in self.store.local_partitions() {
            if !wanted.contains_key(&tp) && !partitions.contains_key(&tp) {
                match self.store.delete_partition(&tp) {
                    Ok(()) => {
                        tracing::info!(target: "state_change", %tp, "deleted a local log whose partition no longer exists in ZooKeeper")
                    }
                    Err(e) => {
                        tracing::error!(%tp, error = %e, "deleting an orphaned log failed; its data stays on disk")
                    }
                }
            }
        }
        for (tp, (topic_id, role)) in wanted {
            match partitions.get(&tp) {
                Some(existing) => {
                    let mut current = existing.role.lock().expect("role lock");
                    if *current != role {
                        tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, "leadership changed");
                        self.assign_epoch_if_leader(&tp, &existing.log, &role);
                        *current = role;
                    }
                }
                None => match self.store.open_partition(&tp, topic_id) {
                    Ok(log) => {
                        tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, log_end_offset = log.offsets().log_end_offset, "opened local replica");
                        self.assign_epoch_if_leader(&tp, &log, &role);
                        partitions.insert(tp, Arc::new(Partition { log, topic_id, role: Mutex::new(role) }));
                    }
                    Err(e) => {
                        tracing::error!(%tp, error = %e, "cannot open the partition's log; it stays offline on this broker; check the data directory");
                    }
                },
            }
        }
    }

    fn assign_epoch_if_leader(&self, tp: &TopicPartition, log: &PartitionLog, role: &Role) {
        if role.leader == self.broker_id && role.leader_epoch >= 0 {
            if let Err(e) = log.assign_epoch(role.leader_epoch) {
                tracing::warn!(%tp, error = %e, "could not record the new leader epoch");
            }
        }
    }

    /// Applies retention to every partition; returns the batches deleted.
    pub fn apply_retention(&self, now_ms: i64, default_ms: i64, default_bytes: i64, meta: &ClusterMetadata) -> usize {
        let mut deleted = 0;
        for (tp, partition) in self.all() {
            let config = meta.topics.get(&tp.topic).map(|t| &t.config);
            // Compacted topics (__consumer_offsets) keep every key's latest value; time and
            // size retention apply only when the policy also says "delete".
            let policy = config.and_then(|c| c.get("cleanup.policy")).map_or("delete", String::as_str);
            if !policy.split(',').any(|p| p.trim() == "delete") {
                continue;
            }
            let get = |key: &str, default: i64| {
                config.and_then(|c| c.get(key)).and_then(|v| v.parse().ok()).unwrap_or(default)
            };
            let retention_ms = get("retention.ms", default_ms);
            let retention_bytes = get("retention.bytes", default_bytes);
            match partition.log.apply_retention(now_ms, retention_ms, retention_bytes, partition.high_watermark()) {
                Ok(n) if n > 0 => {
                    tracing::info!(%tp, batches = n, log_start_offset = partition.log.offsets().log_start_offset, "retention deleted old record batches");
                    deleted += n;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(%tp, error = %e, "retention failed on this partition"),
            }
        }
        deleted
    }

    /// Marks everything appended before the last flush as recovered (checkpoint).
    pub fn checkpoint(&self, end_offsets: &[(TopicPartition, i64)]) {
        for (tp, offset) in end_offsets {
            if let Some(p) = self.get(tp) {
                if let Err(e) = p.log.set_recovery_point(*offset) {
                    tracing::warn!(%tp, error = %e, "could not record the recovery point");
                }
            }
        }
    }

    /// Log end offsets of every partition (taken before a flush, for [`Self::checkpoint`]).
    pub fn end_offsets(&self) -> Vec<(TopicPartition, i64)> {
        self.all().into_iter().map(|(tp, p)| (tp, p.log.offsets().log_end_offset)).collect()
    }
}

/// Re-export for API handlers.
pub use log::Error as LogError;
