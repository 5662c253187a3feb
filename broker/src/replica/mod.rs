//! Partition replicas hosted by this broker: which logs are open, in which role, at which
//! leader epoch, and replication progress. The assignment comes from ZooKeeper (through the
//! metadata snapshot); [`ReplicaManager::reconcile`] opens, re-roles and deletes local logs
//! to match it.
//!
//! As leader, a partition tracks each follower's fetch position ([`isr::FollowerState`]),
//! advances the high watermark over the ISR, and proposes ISR changes that the broker
//! writes to the partition state znode ([`ReplicaManager::isr_updates`]). As follower, the
//! [`fetcher`] pulls batches from the leader and appends them unchanged. Both keep the
//! idempotent producers' state ([`producer_state`]) from what they store.

pub mod fetcher;
pub mod isr;
pub mod producer_state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;
use tributary_common::ids::{BrokerId, TopicId, TopicPartition};
use tributary_common::znode::PartitionState;

use self::isr::FollowerState;
use self::producer_state::ProducerStates;
use crate::log::batch::BatchHeader;
use crate::log::{self, AppendInfo, LogStore, PartitionLog, ReplicaAppendError};
use crate::metadata::ClusterMetadata;

/// Leadership of one partition as this broker knows it (from the state znode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// Current leader (-1 when none).
    pub leader: BrokerId,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<BrokerId>,
    /// Assigned replicas.
    pub replicas: Vec<BrokerId>,
    /// zkVersion of the state znode (the partition epoch), for conditional ISR writes.
    pub state_version: i32,
    /// Controller epoch recorded in the state znode.
    pub controller_epoch: i32,
    /// `min.insync.replicas` of the topic.
    pub min_insync_replicas: usize,
}

impl Role {
    fn same_leadership(&self, other: &Role) -> bool {
        self.leader == other.leader && self.leader_epoch == other.leader_epoch
    }
}

/// A partition replica hosted here.
pub struct Partition {
    /// Its log.
    pub log: Arc<PartitionLog>,
    /// Topic id it was created for.
    pub topic_id: Option<TopicId>,
    tp: TopicPartition,
    broker_id: BrokerId,
    role: Mutex<Role>,
    high_watermark: AtomicI64,
    /// Counts leader → follower transitions: an acks=all wait spanning one must fail, as
    /// the record it waits for may have been truncated and replaced.
    demotions: AtomicU64,
    followers: Mutex<BTreeMap<BrokerId, FollowerState>>,
    producers: Mutex<ProducerStates>,
}

/// A produce append's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Written at these offsets.
    New(AppendInfo),
    /// A retry of a batch already written (idempotent producer): its original offsets.
    Duplicate {
        /// First offset.
        base_offset: i64,
        /// Last offset.
        last_offset: i64,
    },
}

/// Why a produce append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Leadership moved: NOT_LEADER_OR_FOLLOWER.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Idempotence rules: OUT_OF_ORDER_SEQUENCE_NUMBER or INVALID_PRODUCER_EPOCH.
    #[error(transparent)]
    Sequence(#[from] producer_state::SequenceError),
    /// Storage failed: KAFKA_STORAGE_ERROR.
    #[error(transparent)]
    Log(#[from] log::Error),
}

impl Partition {
    fn new(
        tp: TopicPartition,
        broker_id: BrokerId,
        log: Arc<PartitionLog>,
        topic_id: Option<TopicId>,
        role: Role,
        producers: ProducerStates,
    ) -> Self {
        let high_watermark = AtomicI64::new(log.checkpointed_high_watermark());
        Partition {
            log,
            topic_id,
            tp,
            broker_id,
            role: Mutex::new(role),
            high_watermark,
            demotions: AtomicU64::new(0),
            followers: Mutex::new(BTreeMap::new()),
            producers: Mutex::new(producers),
        }
    }

    fn role_lock(&self) -> MutexGuard<'_, Role> {
        self.role.lock().expect("role lock")
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role_lock().clone()
    }

    /// How many times this replica stopped leading; see [`ReplicaManager::wait_replicated`].
    pub fn demotions(&self) -> u64 {
        self.demotions.load(Ordering::Acquire)
    }

    /// The high watermark: what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The last stable offset: the high watermark, as there are no open transactions.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }

    /// Sets a follower's high watermark from the leader's (capped at the local log end).
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let end = self.log.offsets().log_end_offset;
        self.high_watermark.store(leader_high_watermark.min(end), Ordering::Release);
    }

    /// Recomputes the leader's high watermark; returns whether it moved.
    fn advance_high_watermark(&self, role: &Role, followers: &BTreeMap<BrokerId, FollowerState>) -> bool {
        if role.leader != self.broker_id {
            return false;
        }
        let current = self.high_watermark();
        let end = self.log.offsets().log_end_offset;
        let hw =
            isr::high_watermark(current, self.broker_id, end, &role.isr, followers, role.min_insync_replicas).min(end);
        if hw > current {
            self.high_watermark.store(hw, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Recomputes the high watermark after a local change; returns whether it moved.
    pub fn maybe_advance_high_watermark(&self) -> bool {
        let role = self.role_lock();
        let followers = self.followers.lock().expect("followers lock");
        self.advance_high_watermark(&role, &followers)
    }

    /// Records a follower's fetch at `fetch_offset` (its log end). Returns whether the high
    /// watermark moved.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] when this broker does not lead the partition, and
    /// [`ReplicaError::UnknownPartition`] when `replica` is not assigned to it.
    pub fn record_follower_fetch(
        &self,
        replica: BrokerId,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<bool, ReplicaError> {
        let role = self.role_lock();
        if role.leader != self.broker_id {
            return Err(ReplicaError::NotLeader { tp: self.tp.clone(), leader: role.leader });
        }
        if !role.replicas.contains(&replica) {
            return Err(ReplicaError::UnknownPartition(self.tp.clone()));
        }
        let mut followers = self.followers.lock().expect("followers lock");
        let end = self.log.offsets().log_end_offset;
        followers.entry(replica).or_insert_with(|| FollowerState::new(now_ms)).on_fetch(fetch_offset, end, now_ms);
        Ok(self.advance_high_watermark(&role, &followers))
    }

    /// Appends a producer's batch as leader at `leader_epoch`, applying the idempotent
    /// producer checks.
    ///
    /// # Errors
    /// [`AppendError`] as documented on its variants.
    pub fn append_as_leader(
        &self,
        batches: &[(BatchHeader, Bytes)],
        log_append_time: Option<i64>,
    ) -> Result<Appended, AppendError> {
        let role = self.role_lock();
        if role.leader != self.broker_id {
            return Err(ReplicaError::NotLeader { tp: self.tp.clone(), leader: role.leader }.into());
        }
        let mut producers = self.producers.lock().expect("producers lock");
        for (h, _) in batches {
            if let producer_state::Check::Duplicate(meta) = producers.check(h)? {
                return Ok(Appended::Duplicate { base_offset: meta.first_offset, last_offset: meta.last_offset });
            }
        }
        let info = self.log.append(batches, role.leader_epoch, log_append_time)?;
        let mut offset = info.base_offset;
        for (h, _) in batches {
            producers.update(h, offset);
            offset += i64::from(h.last_offset_delta) + 1;
        }
        Ok(Appended::New(info))
    }

    /// Appends batches fetched from `leader` at `leader_epoch`, if that is still this
    /// replica's view; `Ok(None)` when leadership changed meanwhile and they were dropped.
    ///
    /// # Errors
    /// Log errors (including batches that do not follow the log end).
    pub fn append_as_follower(
        &self,
        leader: BrokerId,
        leader_epoch: i32,
        batches: &[(BatchHeader, Bytes)],
    ) -> Result<Option<AppendInfo>, ReplicaAppendError> {
        let role = self.role_lock();
        if role.leader != leader || role.leader_epoch != leader_epoch || leader == self.broker_id {
            return Ok(None);
        }
        let info = self.log.append_replicated(batches)?;
        let mut producers = self.producers.lock().expect("producers lock");
        for (h, _) in batches {
            producers.update(h, h.base_offset);
        }
        Ok(Some(info))
    }

    /// Truncates the log (a follower diverging from its leader) and rebuilds producer state.
    ///
    /// # Errors
    /// Storage errors.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, log::Error> {
        let _role = self.role_lock();
        let end = self.log.truncate_to(offset)?;
        self.after_truncation(end)?;
        Ok(end)
    }

    /// Empties the log and restarts it at `offset`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), log::Error> {
        let _role = self.role_lock();
        self.log.truncate_fully_and_start_at(offset)?;
        self.after_truncation(offset)
    }

    fn after_truncation(&self, end: i64) -> Result<(), log::Error> {
        let headers = self.log.headers_from(self.log.offsets().log_start_offset)?;
        *self.producers.lock().expect("producers lock") = ProducerStates::rebuild(&headers);
        let hw = self.high_watermark().min(end);
        self.high_watermark.store(hw, Ordering::Release);
        Ok(())
    }

    /// The ISR this leader wants now (shrunk and expanded), with the state to write, or
    /// `None` when it is right (or this broker does not lead).
    fn wanted_isr(&self, now_ms: i64, lag_time_max_ms: i64) -> Option<(PartitionState, i32)> {
        let role = self.role_lock();
        if role.leader != self.broker_id {
            return None;
        }
        let followers = self.followers.lock().expect("followers lock");
        let shrunk = isr::shrink(&role.isr, self.broker_id, &followers, now_ms, lag_time_max_ms);
        let base = shrunk.clone().unwrap_or_else(|| role.isr.clone());
        let epoch_start = self.log.epoch_start_offset(role.leader_epoch).unwrap_or(0);
        let expanded = isr::expand(&base, &role.replicas, &followers, self.high_watermark(), epoch_start);
        let next = expanded.or(shrunk)?;
        Some((PartitionState::new(self.broker_id, role.leader_epoch, role.controller_epoch, next), role.state_version))
    }

    /// Adopts an ISR this broker wrote at `new_version`, unless the state moved on meanwhile.
    /// Returns whether the high watermark moved.
    pub fn isr_written(&self, state: &PartitionState, expected_version: i32, new_version: i32) -> bool {
        let mut role = self.role_lock();
        if role.state_version != expected_version || role.leader_epoch != state.leader_epoch {
            return false;
        }
        role.isr = state.isr.clone();
        role.state_version = new_version;
        let followers = self.followers.lock().expect("followers lock");
        self.advance_high_watermark(&role, &followers)
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
    /// Woken on every append and high-watermark move, so parked fetches re-check.
    pub appended: Notify,
    /// Woken when a high watermark moves or leadership changes (acks=all waiters).
    pub replicated: Notify,
    /// `min.insync.replicas` of the broker, for topics without their own.
    pub default_min_insync_replicas: usize,
}

impl ReplicaManager {
    /// An empty manager over `store`.
    pub fn new(broker_id: BrokerId, store: LogStore, default_min_insync_replicas: usize) -> Self {
        Self {
            broker_id,
            store,
            partitions: RwLock::new(HashMap::new()),
            appended: Notify::new(),
            replicated: Notify::new(),
            default_min_insync_replicas,
        }
    }

    /// This broker's id.
    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
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

    /// Wakes everyone waiting on replication progress and parked fetches.
    pub fn notify_progress(&self) {
        self.replicated.notify_waiters();
        self.appended.notify_waiters();
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

    /// Waits until the high watermark of `partition` passes `last_offset` (acks=all), or
    /// `timeout`. `demotions` is [`Partition::demotions`] read when the record was appended:
    /// leader epoch bumps that keep this broker leader (the controller removing a dead
    /// follower from the ISR) do not fail the wait; losing leadership in between does.
    ///
    /// # Errors
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR fell below `min.insync.replicas`,
    /// NOT_LEADER_OR_FOLLOWER when leadership moved, REQUEST_TIMED_OUT at the deadline; each
    /// as a [`ReplicationWaitError`].
    pub async fn wait_replicated(
        &self,
        partition: &Partition,
        demotions: u64,
        last_offset: i64,
        timeout: std::time::Duration,
    ) -> Result<(), ReplicationWaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.replicated.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let role = partition.role();
            if role.leader != self.broker_id || partition.demotions() != demotions {
                return Err(ReplicationWaitError::NotLeader { leader: role.leader });
            }
            if partition.high_watermark() > last_offset {
                if role.isr.len() < role.min_insync_replicas {
                    return Err(ReplicationWaitError::NotEnoughReplicasAfterAppend {
                        isr: role.isr.len(),
                        min: role.min_insync_replicas,
                    });
                }
                return Ok(());
            }
            tokio::select! {
                _ = notified => {},
                _ = tokio::time::sleep_until(deadline) => return Err(ReplicationWaitError::TimedOut { isr: role.isr }),
            }
        }
    }

    /// Brings local replicas in line with the cluster metadata: opens logs for partitions
    /// assigned here, updates roles, and deletes logs of partitions no longer assigned here
    /// (deleted topics, or a topic re-created under a new id).
    pub fn reconcile(&self, meta: &ClusterMetadata) {
        let now = tributary_common::time::now_ms();
        let mut wanted: HashMap<TopicPartition, (Option<TopicId>, Role)> = HashMap::new();
        for (topic, t) in &meta.topics {
            let min_isr = t
                .config
                .get("min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(self.default_min_insync_replicas)
                .max(1);
            for (p, pm) in &t.partitions {
                if pm.replicas.contains(&self.broker_id) {
                    wanted.insert(
                        TopicPartition::new(topic.clone(), *p),
                        (
                            t.id,
                            Role {
                                leader: pm.leader,
                                leader_epoch: pm.leader_epoch,
                                isr: pm.isr.clone(),
                                replicas: pm.replicas.clone(),
                                state_version: pm.state_version,
                                controller_epoch: pm.controller_epoch,
                                min_insync_replicas: min_isr,
                            },
                        ),
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
            let partition = match partitions.get(&tp) {
                Some(existing) => existing.clone(),
                None => {
                    // Idempotent producers' state is rebuilt from the batches recovery walks.
                    let mut producers = ProducerStates::default();
                    let opened =
                        self.store.open_partition_observing(&tp, topic_id, &mut |h| producers.update(h, h.base_offset));
                    match opened {
                        Ok(log) => {
                            tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, log_end_offset = log.offsets().log_end_offset, high_watermark = log.checkpointed_high_watermark(), "opened local replica");
                            let placeholder = Role { leader: -1, leader_epoch: -1, ..role.clone() };
                            let p = Arc::new(Partition::new(
                                tp.clone(),
                                self.broker_id,
                                log,
                                topic_id,
                                placeholder,
                                producers,
                            ));
                            partitions.insert(tp.clone(), p.clone());
                            p
                        }
                        Err(e) => {
                            tracing::error!(%tp, error = %e, "cannot open the partition's log; it stays offline on this broker; check the data directory");
                            continue;
                        }
                    }
                }
            };
            self.apply_role(&tp, &partition, role, now);
        }
        drop(partitions);
        self.notify_progress();
    }

    fn apply_role(&self, tp: &TopicPartition, partition: &Partition, role: Role, now: i64) {
        let mut current = partition.role_lock();
        if !current.same_leadership(&role) {
            if role.leader == self.broker_id {
                tracing::info!(target: "state_change", %tp, leader_epoch = role.leader_epoch, isr = ?role.isr, log_end_offset = partition.log.offsets().log_end_offset, high_watermark = partition.high_watermark(), "became leader");
                if role.leader_epoch >= 0 {
                    if let Err(e) = partition.log.assign_epoch(role.leader_epoch) {
                        tracing::warn!(%tp, error = %e, "could not record the new leader epoch");
                    }
                }
                // Follower positions are unknown to a new leader until they fetch from it.
                let mut followers = partition.followers.lock().expect("followers lock");
                *followers = role
                    .replicas
                    .iter()
                    .filter(|r| **r != self.broker_id)
                    .map(|r| (*r, FollowerState::new(now)))
                    .collect();
            } else {
                tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, "following");
                if current.leader == self.broker_id {
                    partition.demotions.fetch_add(1, Ordering::AcqRel);
                }
                partition.followers.lock().expect("followers lock").clear();
            }
            *current = role;
        } else if role.state_version >= current.state_version {
            // Same leadership: adopt ISR and configuration changes (our own ISR writes come back this way too).
            *current = role;
        } else {
            current.min_insync_replicas = role.min_insync_replicas;
            current.replicas = role.replicas;
        }
        let followers = partition.followers.lock().expect("followers lock");
        partition.advance_high_watermark(&current, &followers);
    }

    /// ISR changes the partitions led here need (followers that fell behind or caught up):
    /// for each, the state to write and the zkVersion it replaces.
    pub fn isr_updates(
        &self,
        now_ms: i64,
        lag_time_max_ms: i64,
    ) -> Vec<(TopicPartition, Arc<Partition>, PartitionState, i32)> {
        self.all()
            .into_iter()
            .filter_map(|(tp, p)| {
                let (state, version) = p.wanted_isr(now_ms, lag_time_max_ms)?;
                Some((tp, p, state, version))
            })
            .collect()
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

    /// Checkpoints every partition's high watermark.
    pub fn checkpoint_high_watermarks(&self) {
        for (tp, p) in self.all() {
            if let Err(e) = p.log.checkpoint_high_watermark(p.high_watermark()) {
                tracing::warn!(%tp, error = %e, "could not checkpoint the high watermark");
            }
        }
    }
}

/// One ISR maintenance pass: writes every wanted ISR change to its state znode
/// (conditional on the zkVersion this leader last saw) and announces them in
/// `/isr_change_notification`. A lost race means the controller changed the partition:
/// this broker drops its proposal and waits for the new state through its watch.
pub async fn maintain_isr(replicas: &ReplicaManager, zk: &crate::zk::ZkHandle, now_ms: i64, lag_time_max_ms: i64) {
    let updates = replicas.isr_updates(now_ms, lag_time_max_ms);
    if updates.is_empty() {
        return;
    }
    let mut changed = Vec::new();
    let mut moved = false;
    for (tp, partition, state, expected_version) in updates {
        let old = partition.role().isr;
        match zk.write_isr(&tp.topic, tp.partition, &state, expected_version).await {
            Ok(new_version) => {
                let removed: Vec<BrokerId> = old.iter().copied().filter(|r| !state.isr.contains(r)).collect();
                let added: Vec<BrokerId> = state.isr.iter().copied().filter(|r| !old.contains(r)).collect();
                if removed.is_empty() {
                    tracing::info!(target: "state_change", %tp, leader_epoch = state.leader_epoch, isr = ?state.isr, added = ?added, "ISR expanded: caught-up followers rejoined");
                } else {
                    tracing::warn!(target: "state_change", %tp, leader_epoch = state.leader_epoch, isr = ?state.isr, removed = ?removed, added = ?added, "ISR shrank: followers did not keep up within replica.lag.time.max.ms; check those brokers (alive? disk or network slow?)");
                }
                moved |= partition.isr_written(&state, expected_version, new_version);
                changed.push((tp.topic.clone(), tp.partition));
            }
            Err(crate::zk::Error::BadVersion(_)) => {
                tracing::info!(%tp, expected_version, "partition state changed in ZooKeeper before this leader's ISR update; waiting for the new state");
            }
            Err(e) => {
                tracing::warn!(%tp, error = %e, "could not write an ISR change to ZooKeeper; retrying");
            }
        }
    }
    if moved {
        replicas.notify_progress();
    }
    if !changed.is_empty() {
        if let Err(e) = zk.notify_isr_change(changed).await {
            tracing::warn!(error = %e, "could not announce ISR changes in /isr_change_notification; the controller sees the state znodes anyway");
        }
    }
}

/// Why an acks=all produce could not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationWaitError {
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    #[error("written, but the ISR shrank to {isr}, below min.insync.replicas={min}")]
    NotEnoughReplicasAfterAppend {
        /// ISR size.
        isr: usize,
        /// The minimum.
        min: usize,
    },
    /// NOT_LEADER_OR_FOLLOWER.
    #[error("leadership moved to broker {leader} before the write was replicated")]
    NotLeader {
        /// New leader.
        leader: BrokerId,
    },
    /// REQUEST_TIMED_OUT.
    #[error("not replicated to the whole ISR {isr:?} in time")]
    TimedOut {
        /// The ISR waited for.
        isr: Vec<BrokerId>,
    },
}

/// Re-export for API handlers.
pub use log::Error as LogError;
