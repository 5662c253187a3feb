//! One partition replica hosted here: its log, its role (leader or follower, at which
//! leader epoch), replication progress, idempotent producer state, and the purgatory keys
//! that wake operations parked on it.
//!
//! Lock order, always taken in this order and never held across an `.await`:
//! `role` → `followers` → `producers` → the log's own state lock (inside
//! [`PartitionLog`]). Every write to the log goes through a method here that holds `role`,
//! so a write is checked against the leadership it is made under.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tributary_common::ids::{BrokerId, TopicId, TopicPartition};
use tributary_common::znode::PartitionState;

use super::isr::{self, FollowerState};
use super::producer_state::{self, ProducerStates};
use super::purgatory::Progress;
use crate::log::{self, AppendInfo, PartitionLog, Rebuild, ReplicaAppendError};
use crate::record::control::{marker_of, Marker};
use crate::record::BatchHeader;
use crate::topic_config::TopicConfig;

/// Leadership of one partition as this broker knows it (from the state znode), with the
/// topic's configuration from the same metadata snapshot.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Role {
    /// Current leader (-1 when none).
    pub(crate) leader: BrokerId,
    /// Current leader epoch.
    pub(crate) leader_epoch: i32,
    /// In-sync replicas.
    pub(crate) isr: Vec<BrokerId>,
    /// Assigned replicas.
    pub(crate) replicas: Vec<BrokerId>,
    /// zkVersion of the state znode (the partition epoch), for conditional ISR writes.
    pub(crate) state_version: i32,
    /// Controller epoch recorded in the state znode.
    pub(crate) controller_epoch: i32,
    /// The topic's settings.
    pub(crate) config: Arc<TopicConfig>,
}

impl Role {
    /// The `min.insync.replicas` this partition is held to
    /// ([`tributary_common::topic::effective_min_isr`]).
    pub(crate) fn min_isr(&self) -> usize {
        tributary_common::topic::effective_min_isr(self.config.min_insync_replicas, self.replicas.len())
    }

    fn same_leadership(&self, other: &Role) -> bool {
        self.leader == other.leader && self.leader_epoch == other.leader_epoch
    }
}

/// Which purgatory key of a partition an operation waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    /// The log end moved (follower fetches).
    LogEnd,
    /// The high watermark moved, or leadership or the ISR changed (consumer fetches,
    /// acks=all writes).
    HighWatermark,
}

/// A partition replica hosted here.
pub(crate) struct Partition {
    log: Arc<PartitionLog>,
    topic_id: Option<TopicId>,
    tp: TopicPartition,
    broker_id: BrokerId,
    role: Mutex<Role>,
    high_watermark: AtomicI64,
    /// Counts leader → follower transitions: an acks=all wait spanning one must fail, as
    /// the record it waits for may have been truncated and replaced.
    demotions: AtomicU64,
    followers: Mutex<BTreeMap<BrokerId, FollowerState>>,
    producers: Mutex<ProducerStates>,
    /// The log end at the producer-state snapshot stored last (none yet: `i64::MIN`).
    snapshot_at: AtomicI64,
    log_end_moved: Progress,
    high_watermark_moved: Progress,
}

/// What a leader append wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Appended {
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

impl Appended {
    /// The last offset the write covers.
    pub(crate) fn last_offset(&self) -> i64 {
        match self {
            Appended::New(info) => info.last_offset,
            Appended::Duplicate { last_offset, .. } => *last_offset,
        }
    }
}

/// Why a leader append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppendError {
    /// Leadership: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, ...
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// acks=all with the ISR below `min.insync.replicas`: NOT_ENOUGH_REPLICAS, nothing written.
    #[error("{tp}: the ISR {isr:?} has fewer than min.insync.replicas={min} replicas; nothing was written")]
    NotEnoughReplicas {
        /// Partition.
        tp: TopicPartition,
        /// The ISR.
        isr: Vec<BrokerId>,
        /// The minimum.
        min: usize,
    },
    /// The records do not pass validation (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE).
    #[error(transparent)]
    Batch(#[from] crate::record::BatchError),
    /// Produce v3+ carries exactly one batch per partition: INVALID_RECORD.
    #[error("produce v3+ carries exactly one record batch per partition, got {0}")]
    BatchCount(usize),
    /// A client writing to an internal topic: INVALID_TOPIC_EXCEPTION.
    #[error("{0} is internal: only the broker's coordinators write to it")]
    InternalTopic(String),
    /// Idempotence rules: OUT_OF_ORDER_SEQUENCE_NUMBER or INVALID_PRODUCER_EPOCH.
    #[error(transparent)]
    Sequence(#[from] producer_state::SequenceError),
    /// Storage failed: KAFKA_STORAGE_ERROR.
    #[error(transparent)]
    Log(#[from] log::Error),
}

/// Why a partition cannot serve a request; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplicaError {
    /// Not hosted here, or not a known topic: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("{0} is not hosted on this broker")]
    UnknownPartition(TopicPartition),
    /// Assigned here but its log is still being opened (recovered): NOT_LEADER_OR_FOLLOWER,
    /// which clients retry, as Kafka answers for a replica it has not brought online yet.
    #[error("{0} is still being opened on this broker (its log is recovering); retry shortly")]
    Opening(TopicPartition),
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

impl Partition {
    pub(super) fn new(
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
            snapshot_at: AtomicI64::new(i64::MIN),
            log_end_moved: Progress::default(),
            high_watermark_moved: Progress::default(),
        }
    }

    fn role_lock(&self) -> MutexGuard<'_, Role> {
        self.role.lock().expect("role lock")
    }

    /// The partition's log, for reads. Writes go through this type's methods.
    pub(crate) fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Hands `f` every batch of the local log, in offset order, from the log start to the
    /// log end as they are when called (a coordinator loading its state). Blocking for a
    /// long log: call it off the async workers.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn replay(&self, f: &mut dyn FnMut(&BatchHeader, &Bytes)) -> Result<(), log::Error> {
        let o = self.log.offsets();
        let (mut next, end) = (o.log_start_offset, o.log_end_offset);
        while next < end {
            let chunk = self.log.read(next, 1 << 20, end)?;
            if chunk.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < chunk.len() {
                let Some(h) = BatchHeader::parse(&chunk[pos..]) else { break };
                let raw = chunk.slice(pos..pos + h.total_len());
                pos += h.total_len();
                next = h.last_offset() + 1;
                f(&h, &raw);
            }
        }
        Ok(())
    }

    /// Whether the leader's serving of `follower` counts against the leader replication
    /// throttle: this replica is listed in `leader.replication.throttled.replicas` and the
    /// follower is catching up (not in the ISR), as Kafka's `shouldLeaderThrottle`.
    pub(crate) fn leader_throttled_for(&self, follower: BrokerId) -> bool {
        let role = self.role_lock();
        role.config.leader_throttled.includes(self.tp.partition, self.broker_id) && !role.isr.contains(&follower)
    }

    /// Whether this follower's fetching counts against the follower replication throttle:
    /// listed in `follower.replication.throttled.replicas` and not in the ISR.
    pub(crate) fn follower_throttled(&self) -> bool {
        let role = self.role_lock();
        role.config.follower_throttled.includes(self.tp.partition, self.broker_id)
            && !role.isr.contains(&self.broker_id)
    }

    /// Whether `producer_id` has a transaction open on this partition.
    pub(crate) fn in_transaction(&self, producer_id: i64) -> bool {
        self.producers.lock().expect("producers lock").in_transaction(producer_id)
    }

    /// Forgets aborted transactions that retention removed from the log.
    pub(crate) fn forget_aborted_before(&self, log_start: i64) {
        self.producers.lock().expect("producers lock").forget_before(log_start);
    }

    /// The aborted transactions known here (the log cleaner drops their records).
    pub(crate) fn aborted_ranges(&self) -> Vec<producer_state::AbortedTxn> {
        self.producers.lock().expect("producers lock").aborted().to_vec()
    }

    /// Whether the batch ending at `last_offset` is the last one `producer_id` wrote here.
    pub(crate) fn is_last_batch_of(&self, producer_id: i64, last_offset: i64) -> bool {
        self.producers.lock().expect("producers lock").is_last_batch(producer_id, last_offset)
    }

    /// The log end, with the producer state there if the log moved since the snapshot
    /// stored last (see [`Self::snapshot_stored`]). Every write holds the role lock, so the
    /// two agree.
    pub(crate) fn checkpoint_point(&self) -> (log::Point, Option<ProducerStates>) {
        let _role = self.role_lock();
        let producers = self.producers.lock().expect("producers lock");
        let end = self.log.end_point();
        (end, (end.offset != self.snapshot_at.load(Ordering::Acquire)).then(|| producers.clone()))
    }

    /// Records that the snapshot taken at `end` is stored.
    pub(crate) fn snapshot_stored(&self, end: i64) {
        self.snapshot_at.store(end, Ordering::Release);
    }

    /// The idempotent producers that wrote here: id, epoch, last sequence, last timestamp.
    pub(crate) fn producers(&self) -> Vec<producer_state::ActiveProducer> {
        self.producers.lock().expect("producers lock").active()
    }

    /// The partition.
    pub(crate) fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    /// The topic id this replica was created for.
    pub(crate) fn topic_id(&self) -> Option<TopicId> {
        self.topic_id
    }

    /// Current role.
    pub(crate) fn role(&self) -> Role {
        self.role_lock().clone()
    }

    /// The topic's settings, without copying the rest of the role.
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.role_lock().config.clone()
    }

    /// The current (leader, leader epoch), without copying the rest of the role (read
    /// for every partition of every fetch and produce).
    pub(crate) fn leadership(&self) -> (BrokerId, i32) {
        let role = self.role_lock();
        (role.leader, role.leader_epoch)
    }

    /// (leader, ISR size, `min.insync.replicas` held to): what an acks=all wait checks each
    /// time the high watermark moves, without cloning the role.
    pub(crate) fn isr_view(&self) -> (BrokerId, usize, usize) {
        let role = self.role_lock();
        (role.leader, role.isr.len(), role.min_isr())
    }

    /// The purgatory key for `key`.
    pub(crate) fn progress(&self, key: Key) -> &Progress {
        match key {
            Key::LogEnd => &self.log_end_moved,
            Key::HighWatermark => &self.high_watermark_moved,
        }
    }

    /// How many times this replica stopped leading; see [`super::ReplicaManager::complete`].
    pub(crate) fn demotions(&self) -> u64 {
        self.demotions.load(Ordering::Acquire)
    }

    /// The high watermark: what consumers may read.
    pub(crate) fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The last stable offset: where read_committed consumers stop (the start of the
    /// earliest transaction still open or whose marker is not replicated yet, at most the
    /// high watermark).
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.watermarks().1
    }

    /// The high watermark and the last stable offset, read together (the one never above
    /// the other).
    pub(crate) fn watermarks(&self) -> (i64, i64) {
        let hw = self.high_watermark();
        let unstable = self.producers.lock().expect("producers lock").first_unstable_offset(hw);
        (hw, unstable.map_or(hw, |u| u.min(hw)))
    }

    /// The aborted transactions a read_committed fetch of `[from, upper)` must skip:
    /// (producer id, first offset).
    pub(crate) fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.producers.lock().expect("producers lock").aborted_between(from, upper)
    }

    fn store_high_watermark(&self, hw: i64) {
        if self.high_watermark.swap(hw, Ordering::AcqRel) != hw {
            self.high_watermark_moved.bump();
        }
    }

    /// Sets a follower's high watermark from the leader's (capped at the local log end).
    pub(crate) fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let end = self.log.offsets().log_end_offset;
        self.store_high_watermark(leader_high_watermark.min(end));
    }

    /// Recomputes the leader's high watermark; returns whether it moved.
    fn advance_high_watermark(&self, role: &Role, followers: &BTreeMap<BrokerId, FollowerState>) -> bool {
        if role.leader != self.broker_id {
            return false;
        }
        let current = self.high_watermark();
        let end = self.log.offsets().log_end_offset;
        let hw =
            isr::high_watermark(current, self.broker_id, end, &role.isr, followers, role.min_isr())
                .min(end);
        if hw > current {
            self.store_high_watermark(hw);
            true
        } else {
            false
        }
    }

    /// Records a follower's fetch at `fetch_offset` (its log end). Returns whether the high
    /// watermark moved.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] when this broker does not lead the partition, and
    /// [`ReplicaError::UnknownPartition`] when `replica` is not assigned to it.
    pub(crate) fn record_follower_fetch(
        &self,
        replica: BrokerId,
        fetch_offset: i64,
        log_start_offset: i64,
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
        let follower = followers.entry(replica).or_insert_with(|| FollowerState::new(now_ms));
        follower.on_fetch(fetch_offset, end, now_ms);
        if follower.log_start_offset != log_start_offset {
            follower.log_start_offset = log_start_offset;
            // A DeleteRecords may be waiting for the low watermark.
            self.high_watermark_moved.bump();
        }
        Ok(self.advance_high_watermark(&role, &followers))
    }

    /// The low watermark (Kafka's `lowWatermarkIfLeader`): the smallest log start offset
    /// over this leader and its in-sync followers (a follower that has not said its log
    /// start yet counts as 0). DeleteRecords answers once it reaches the requested offset.
    pub(crate) fn low_watermark(&self) -> i64 {
        let role = self.role_lock();
        let followers = self.followers.lock().expect("followers lock");
        let own = self.log.offsets().log_start_offset;
        role.isr
            .iter()
            .filter(|r| **r != self.broker_id)
            .map(|r| followers.get(r).map_or(0, |f| f.log_start_offset.max(0)))
            .fold(own, i64::min)
    }

    /// Moves the log start offset up to `offset` (DeleteRecords on the leader, or a
    /// follower following its leader's log start); storage work, for the blocking pool.
    /// Returns the new log start.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) fn advance_log_start(&self, offset: i64) -> Result<i64, log::Error> {
        let start = self.log.delete_records_before(offset)?;
        // Parked fetches below the new start re-read and get OFFSET_OUT_OF_RANGE.
        self.log_end_moved.bump();
        self.high_watermark_moved.bump();
        Ok(start)
    }

    /// Appends batches as leader, under the role lock: refuses when this broker does not
    /// lead, when acks=all meets an ISR below `min.insync.replicas`, or when `check_sequences`
    /// (producers' writes) finds a sequence out of order; a retried batch is answered with
    /// its original offsets. Returns what was written, the leader epoch it was written
    /// under, and the ISR size at that moment.
    pub(super) fn append_as_leader(
        &self,
        batches: &[(BatchHeader, Bytes)],
        needs_min_isr: bool,
        check_sequences: bool,
        log_append_time: Option<i64>,
    ) -> Result<(Appended, usize), AppendError> {
        let role = self.role_lock();
        if role.leader != self.broker_id {
            return Err(ReplicaError::NotLeader { tp: self.tp.clone(), leader: role.leader }.into());
        }
        if needs_min_isr && role.isr.len() < role.min_isr() {
            return Err(AppendError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr: role.isr.clone(),
                min: role.min_isr(),
            });
        }
        let mut producers = self.producers.lock().expect("producers lock");
        let markers: Vec<Option<Marker>> = batches.iter().map(|(h, b)| marker_of(h, b)).collect();
        if check_sequences {
            for (h, _) in batches {
                if let producer_state::Check::Duplicate(meta) = producers.check(h)? {
                    let dup = Appended::Duplicate { base_offset: meta.first_offset, last_offset: meta.last_offset };
                    return Ok((dup, role.isr.len()));
                }
            }
        }
        for ((h, _), marker) in batches.iter().zip(&markers) {
            if marker.is_some() {
                producers.check_marker(h)?;
            }
        }
        let info = self.log.append(batches, role.leader_epoch, log_append_time)?;
        let mut offset = info.base_offset;
        for ((h, _), marker) in batches.iter().zip(markers) {
            match marker {
                Some(m) => producers.end_transaction(h, offset, m),
                None => producers.update(h, offset),
            }
            offset += i64::from(h.last_offset_delta) + 1;
        }
        drop(producers);
        self.log_end_moved.bump();
        let followers = self.followers.lock().expect("followers lock");
        self.advance_high_watermark(&role, &followers);
        Ok((Appended::New(info), role.isr.len()))
    }

    /// Appends batches fetched from `leader` at `leader_epoch`, if that is still this
    /// replica's view; `Ok(None)` when leadership changed meanwhile and they were dropped.
    ///
    /// # Errors
    /// Log errors (including batches that do not follow the log end).
    pub(super) fn append_as_follower(
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
        for (h, b) in batches {
            producers.observe(h, marker_of(h, b));
        }
        drop(producers);
        self.log_end_moved.bump();
        Ok(Some(info))
    }

    /// Truncates the log (a follower diverging from its leader) and rebuilds producer
    /// state. Walks and deletes storage: call it off the async worker threads.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<i64, log::Error> {
        let _role = self.role_lock();
        let end = self.log.truncate_to(offset)?;
        self.after_truncation(end)?;
        Ok(end)
    }

    /// Empties the log and restarts it at `offset`. Blocking, like [`Self::truncate_to`].
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), log::Error> {
        let _role = self.role_lock();
        self.log.truncate_fully_and_start_at(offset)?;
        self.after_truncation(offset)
    }

    fn after_truncation(&self, end: i64) -> Result<(), log::Error> {
        // From the stored snapshot (the log kept it only if taken at or below the cut) and
        // the batches after it; from the whole log without one.
        let log_start = self.log.offsets().log_start_offset;
        let mut producers = ProducerStates::default();
        let from = match self.log.stored_snapshot()? {
            Some((at, raw)) if at <= end && Rebuild::snapshot(&mut producers, at, &raw) => at.max(log_start),
            _ => log_start,
        };
        for (h, marker) in self.log.headers_from(from)? {
            producers.observe(&h, marker);
        }
        producers.forget_before(log_start);
        *self.producers.lock().expect("producers lock") = producers;
        // The log dropped a snapshot taken past the cut: the next checkpoint stores one.
        self.snapshot_at.store(i64::MIN, Ordering::Release);
        self.store_high_watermark(self.high_watermark().min(end));
        self.log_end_moved.bump();
        Ok(())
    }

    /// Takes up a role from a new metadata snapshot. Returns whether leadership changed.
    pub(super) fn apply_role(&self, role: Role, now_ms: i64) -> bool {
        self.log.set_roll(role.config.roll);
        let mut current = self.role_lock();
        let changed = !current.same_leadership(&role);
        if changed {
            let tp = &self.tp;
            if role.leader == self.broker_id {
                tracing::info!(target: "state_change", %tp, leader_epoch = role.leader_epoch, isr = ?role.isr, log_end_offset = self.log.offsets().log_end_offset, high_watermark = self.high_watermark(), "became leader");
                if role.leader_epoch >= 0 {
                    if let Err(e) = self.log.assign_epoch(role.leader_epoch) {
                        tracing::warn!(%tp, error = %e, "could not record the new leader epoch");
                    }
                }
                // Follower positions are unknown to a new leader until they fetch from it.
                let mut followers = self.followers.lock().expect("followers lock");
                *followers = role
                    .replicas
                    .iter()
                    .filter(|r| **r != self.broker_id)
                    .map(|r| (*r, FollowerState::new(now_ms)))
                    .collect();
            } else {
                tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, "following");
                if current.leader == self.broker_id {
                    self.demotions.fetch_add(1, Ordering::AcqRel);
                }
                self.followers.lock().expect("followers lock").clear();
            }
            *current = role;
        } else if role.state_version >= current.state_version {
            // Same leadership: adopt ISR and configuration changes (our own ISR writes come back this way too).
            *current = role;
        } else {
            current.config = role.config;
            current.replicas = role.replicas;
        }
        let followers = self.followers.lock().expect("followers lock");
        self.advance_high_watermark(&current, &followers);
        drop(followers);
        drop(current);
        // Parked operations re-check leadership and the ISR.
        self.high_watermark_moved.bump();
        self.log_end_moved.bump();
        changed
    }

    /// The ISR this leader wants now (shrunk and expanded), with the state to write, or
    /// `None` when it is right (or this broker does not lead).
    pub(super) fn wanted_isr(&self, now_ms: i64, lag_time_max_ms: i64) -> Option<(PartitionState, i32)> {
        let role = self.role_lock();
        if role.leader != self.broker_id {
            return None;
        }
        // A lone replica in its own ISR has nothing to shrink or expand (the common case
        // on a broker of many single-replica partitions, checked every 200 ms).
        if role.replicas.len() == 1 && role.isr == role.replicas {
            return None;
        }
        let followers = self.followers.lock().expect("followers lock");
        let shrunk = isr::shrink(&role.isr, self.broker_id, &followers, now_ms, lag_time_max_ms);
        let base = shrunk.clone().unwrap_or_else(|| role.isr.clone());
        // Only replicas outside the ISR can join it.
        let expanded = if role.replicas.iter().all(|r| base.contains(r)) {
            None
        } else {
            let epoch_start = self.log.epoch_start_offset(role.leader_epoch).unwrap_or(0);
            isr::expand(&base, &role.replicas, &followers, self.high_watermark(), epoch_start)
        };
        let next = expanded.or(shrunk)?;
        Some((PartitionState::new(self.broker_id, role.leader_epoch, role.controller_epoch, next), role.state_version))
    }

    /// Adopts an ISR this broker wrote at `new_version`, unless the state moved on meanwhile.
    pub(super) fn isr_written(&self, state: &PartitionState, expected_version: i32, new_version: i32) {
        let mut role = self.role_lock();
        if role.state_version != expected_version || role.leader_epoch != state.leader_epoch {
            return;
        }
        role.isr = state.isr.clone();
        role.state_version = new_version;
        let followers = self.followers.lock().expect("followers lock");
        self.advance_high_watermark(&role, &followers);
        drop(followers);
        drop(role);
        self.high_watermark_moved.bump();
    }
}
