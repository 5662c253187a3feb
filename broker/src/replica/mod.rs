//! Partition replicas hosted by this broker: which logs are open, in which role, at which
//! leader epoch, and replication progress. [`ReplicaManager`] is the one owner of them,
//! as Kafka's `ReplicaManager` is:
//!
//! - **Writes.** Every write to a partition enters through it: [`ReplicaManager::append_to_leader`]
//!   for producers and for this broker's own coordinators (group metadata, offset commits,
//!   later transaction markers), [`ReplicaManager::append_as_follower`] for the fetcher.
//!   A leader write completes through [`ReplicaManager::complete`] and the one rule in
//!   [`durability`]. Callers fill their caches only once `complete` says the write holds.
//! - **Waits** are keyed by partition ([`purgatory`]): an acks=all write waits on its own
//!   partition's high watermark, a parked fetch on the partitions it asked for.
//! - **Storage work** that walks or deletes logs (opening and recovering, deleting,
//!   truncating, retention) never runs on a tokio worker thread nor under the partition
//!   map lock: opening and deleting go to one storage thread, in the order asked
//!   ([`ReplicaManager::reconcile`] only queues them), and the background tasks call the
//!   rest through `spawn_blocking`. An append or a single-record read touches sled's
//!   in-memory page cache only and stays on the request's task.
//!
//! Lock order: `wanted` → `partitions` (held only to look up, insert or remove) → a
//! partition's own locks (see [`partition`]). No lock is held across an `.await`.
//!
//! As leader, a partition tracks each follower's fetch position ([`isr::FollowerState`]),
//! advances the high watermark over the ISR, and proposes ISR changes that the broker
//! writes to the partition state znode ([`maintain_isr`]). As follower, the [`fetcher`]
//! pulls batches from the leader and appends them unchanged. Both keep the idempotent
//! producers' state ([`producer_state`]) from what they store.

mod append;
pub(crate) mod cleaner;
mod delete_records;
pub(crate) mod durability;
mod fetch;
pub(crate) mod fetcher;
pub(crate) mod isr;
pub(crate) mod partition;
pub(crate) mod producer_state;
pub(crate) mod purgatory;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tributary_common::ids::{BrokerId, TopicId, TopicPartition};

pub(crate) use self::append::{CompletionError, Origin, Pending};
pub(crate) use self::delete_records::DeleteRecordsError;
pub(crate) use self::fetch::{FetchSpec, Fetched, ReadError, Reader};
pub(crate) use self::partition::{AppendError, Appended, Partition, ReplicaError, Role};
use self::producer_state::ProducerStates;
use crate::log::LogStore;
use crate::metadata::ClusterMetadata;
use crate::quota::{ReplicationQuota, Window};
use crate::topic_config::TopicConfig;

/// One partition's share of a checkpoint: its log end before the flush, with the producer
/// state at that end when it is to be stored.
pub(crate) struct Checkpoint {
    tp: TopicPartition,
    end: crate::log::Point,
    producers: Option<ProducerStates>,
}

/// Storage work for the storage thread, done in the order queued.
enum Job {
    /// Open (create or recover) a partition's log, then host it in the role it has by then.
    Open(TopicPartition, Option<TopicId>),
    /// Delete a partition's log (it was removed from the map before this was queued).
    Delete(TopicPartition),
    /// Delete local logs of partitions that no longer exist in the cluster.
    DeleteOrphans,
}

/// The replicas this broker hosts.
pub(crate) struct ReplicaManager {
    broker_id: BrokerId,
    store: LogStore,
    /// The configuration of topics without overrides: the broker's effective settings,
    /// dynamic ones included ([`Self::set_topic_defaults`]).
    topic_defaults: RwLock<TopicConfig>,
    /// What the latest snapshot assigns here: topic id and role per partition.
    wanted: Mutex<HashMap<TopicPartition, (Option<TopicId>, Role)>>,
    /// Open partitions. Held only to look up, insert or remove.
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions queued for opening and not open yet.
    opening: Mutex<HashSet<TopicPartition>>,
    /// Woken (one stored permit) whenever partitions finish opening.
    opened: Notify,
    orphan_sweep_queued: AtomicBool,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Resolves when the storage thread has finished.
    storage_done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    fetch_rereads: AtomicU64,
    /// `leader.replication.throttled.rate`, shared by this broker's throttled leader replicas.
    pub(crate) leader_quota: ReplicationQuota,
    /// `follower.replication.throttled.rate`, shared by its throttled follower replicas.
    pub(crate) follower_quota: ReplicationQuota,
}

impl ReplicaManager {
    /// A manager over `store` hosting nothing yet, with its storage thread started (needs
    /// nothing else). `topic_defaults` is the configuration of topics without overrides.
    pub(crate) fn new(broker_id: BrokerId, store: LogStore, topic_defaults: TopicConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        Arc::new_cyclic(|weak: &Weak<ReplicaManager>| {
            let weak = weak.clone();
            // A thread of its own rather than the blocking pool: it lives as long as the
            // broker, and (in tests) a pool task that never ends would stop paused time.
            std::thread::Builder::new()
                .name(format!("storage-{broker_id}"))
                .spawn(move || {
                    lower_priority();
                    storage_thread(weak, rx);
                    let _ = done_tx.send(());
                })
                .expect("starting the storage thread");
            ReplicaManager {
                broker_id,
                store,
                topic_defaults: RwLock::new(topic_defaults),
                wanted: Mutex::new(HashMap::new()),
                partitions: RwLock::new(HashMap::new()),
                opening: Mutex::new(HashSet::new()),
                opened: Notify::new(),
                orphan_sweep_queued: AtomicBool::new(false),
                jobs: Mutex::new(Some(tx)),
                storage_done: Mutex::new(Some(done_rx)),
                fetch_rereads: AtomicU64::new(0),
                leader_quota: ReplicationQuota::new(Window { samples: 11, sample_ms: 1000 }, i64::MAX),
                follower_quota: ReplicationQuota::new(Window { samples: 11, sample_ms: 1000 }, i64::MAX),
            }
        })
    }

    /// Applies `leader.replication.throttled.rate` and `follower.replication.throttled.rate`
    /// (static or dynamic) with their measuring window.
    pub(crate) fn set_replication_throttles(&self, c: &crate::config::BrokerConfig) {
        let window = c.replication_quota_window();
        self.leader_quota.configure(c.leader_replication_throttled_rate, window);
        self.follower_quota.configure(c.follower_replication_throttled_rate, window);
    }

    /// Replaces the configuration of topics without overrides (a dynamic broker config
    /// changed); the next [`Self::reconcile`] hands it to every partition.
    pub(crate) fn set_topic_defaults(&self, defaults: TopicConfig) {
        *self.topic_defaults.write().expect("topic defaults lock") = defaults;
    }

    /// The log store (flushes and shutdown).
    pub(crate) fn store(&self) -> &LogStore {
        &self.store
    }

    /// A hosted, open partition.
    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").get(tp).cloned()
    }

    /// A hosted partition, or why there is none: still opening, or not hosted here.
    ///
    /// # Errors
    /// [`ReplicaError::Opening`] or [`ReplicaError::UnknownPartition`].
    pub(crate) fn lookup(&self, tp: &TopicPartition) -> Result<Arc<Partition>, ReplicaError> {
        if let Some(p) = self.get(tp) {
            return Ok(p);
        }
        if self.opening.lock().expect("opening lock").contains(tp) {
            return Err(ReplicaError::Opening(tp.clone()));
        }
        Err(ReplicaError::UnknownPartition(tp.clone()))
    }

    /// All hosted, open partitions.
    pub(crate) fn all(&self) -> Vec<(TopicPartition, Arc<Partition>)> {
        self.partitions.read().expect("partitions lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The partition if this broker leads it, checking the client's leader epoch
    /// (-1 means the client does not know one).
    ///
    /// # Errors
    /// [`ReplicaError`] as documented on each variant.
    pub(crate) fn leader_partition(
        &self,
        tp: &TopicPartition,
        client_epoch: i32,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let partition = self.lookup(tp)?;
        let (leader, leader_epoch) = partition.leadership();
        if leader != self.broker_id {
            return Err(ReplicaError::NotLeader { tp: tp.clone(), leader });
        }
        if client_epoch >= 0 && client_epoch > leader_epoch {
            return Err(ReplicaError::UnknownLeaderEpoch {
                tp: tp.clone(),
                requested: client_epoch,
                current: leader_epoch,
            });
        }
        if client_epoch >= 0 && client_epoch < leader_epoch {
            return Err(ReplicaError::FencedLeaderEpoch {
                tp: tp.clone(),
                requested: client_epoch,
                current: leader_epoch,
            });
        }
        Ok(partition)
    }

    /// Brings local replicas in line with a metadata snapshot: new roles for open
    /// partitions at once; opening partitions newly assigned here, and deleting those no
    /// longer assigned (deleted topics, or a topic re-created under a new id), are queued
    /// for the storage thread. Never blocks on storage.
    pub(crate) fn reconcile(&self, meta: &ClusterMetadata) {
        let now = tributary_common::time::now_ms();
        let mut next: HashMap<TopicPartition, (Option<TopicId>, Role)> = HashMap::new();
        let defaults = self.topic_defaults.read().expect("topic defaults lock").clone();
        for (topic, t) in &meta.topics {
            // Parsed once per snapshot and shared by every partition of the topic.
            let config = Arc::new(TopicConfig::with_overrides(&defaults, &t.config));
            for (p, pm) in &t.partitions {
                if pm.replicas.contains(&self.broker_id) {
                    let role = Role {
                        leader: pm.leader,
                        leader_epoch: pm.leader_epoch,
                        isr: pm.isr.clone(),
                        replicas: pm.replicas.clone(),
                        state_version: pm.state_version,
                        controller_epoch: pm.controller_epoch,
                        config: config.clone(),
                    };
                    next.insert(TopicPartition::new(topic.clone(), *p), (t.id, role));
                }
            }
        }
        let mut jobs = Vec::new();
        let mut wanted = self.wanted.lock().expect("wanted lock");
        *wanted = next;
        let removed: Vec<TopicPartition> = {
            let mut partitions = self.partitions.write().expect("partitions lock");
            let gone: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(tp, p)| !wanted.get(*tp).is_some_and(|(id, _)| id.is_none() || *id == p.topic_id()))
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in &gone {
                partitions.remove(tp);
            }
            gone
        };
        for tp in removed {
            tracing::info!(target: "state_change", %tp, "stopped hosting the replica: the partition is no longer assigned to this broker; deleting its log");
            jobs.push(Job::Delete(tp));
        }
        let mut opening = self.opening.lock().expect("opening lock");
        for (tp, (topic_id, role)) in wanted.iter() {
            match self.get(tp) {
                Some(partition) => {
                    partition.apply_role(role.clone(), now);
                }
                None => {
                    if opening.insert(tp.clone()) {
                        jobs.push(Job::Open(tp.clone(), *topic_id));
                    }
                }
            }
        }
        drop(opening);
        drop(wanted);
        if !self.orphan_sweep_queued.swap(true, Ordering::AcqRel) {
            jobs.push(Job::DeleteOrphans);
        }
        self.queue(jobs);
    }

    fn queue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let sender = self.jobs.lock().expect("jobs lock");
        if let Some(tx) = sender.as_ref() {
            for job in jobs {
                let _ = tx.send(job);
            }
        }
    }

    /// Whether partitions are queued for opening and not open yet.
    pub(crate) fn opening_count(&self) -> usize {
        self.opening.lock().expect("opening lock").len()
    }

    /// Waits until partitions finish opening (coalesced: one wake-up may stand for many).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn partitions_opened(&self) {
        self.opened.notified().await;
    }

    /// Waits until nothing is queued for opening, or `timeout`; returns whether it got there.
    pub(crate) async fn wait_opened(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.opened.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.opening_count() == 0 {
                return true;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => return self.opening_count() == 0,
            }
        }
    }

    /// Stops the storage thread after the work already queued, and waits for it.
    pub(crate) async fn stop_storage(&self) {
        drop(self.jobs.lock().expect("jobs lock").take());
        let done = self.storage_done.lock().expect("storage thread lock").take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }

    /// Opens a partition on the storage thread and hosts it in its current role.
    fn open_job(&self, tp: TopicPartition, topic_id: Option<TopicId>) {
        let still_wanted = self.wanted.lock().expect("wanted lock").get(&tp).map(|(id, _)| *id);
        if still_wanted != Some(topic_id) {
            // Unassigned, or re-created under another id, while queued: a later job covers it.
            if still_wanted.is_none() {
                self.opening.lock().expect("opening lock").remove(&tp);
                self.opened.notify_one();
            } else {
                self.queue(vec![Job::Open(tp, still_wanted.flatten())]);
            }
            return;
        }
        let started = std::time::Instant::now();
        // Idempotent producers' state: the stored snapshot, then the batches after it.
        let mut producers = ProducerStates::default();
        let opened = self.store.open_partition_observing(&tp, topic_id, &mut producers);
        let log = match opened {
            Ok(log) => log,
            Err(e) => {
                tracing::error!(%tp, error = %e, "cannot open the partition's log; it stays offline on this broker; check the data directory");
                self.opening.lock().expect("opening lock").remove(&tp);
                self.opened.notify_one();
                return;
            }
        };
        let log_recovered = log.recovered();
        let wanted = self.wanted.lock().expect("wanted lock");
        let follow_up = match wanted.get(&tp) {
            Some((id, role)) if *id == topic_id => {
                let placeholder = Role { leader: -1, leader_epoch: -1, ..role.clone() };
                let partition =
                    Arc::new(Partition::new(tp.clone(), self.broker_id, log, topic_id, placeholder, producers));
                self.partitions.write().expect("partitions lock").insert(tp.clone(), partition.clone());
                tracing::info!(target: "state_change", %tp, leader = role.leader, leader_epoch = role.leader_epoch, log_end_offset = partition.log().offsets().log_end_offset, high_watermark = partition.high_watermark(), chunks_from_summaries = log_recovered.0, chunks_read = log_recovered.1, elapsed_ms = started.elapsed().as_millis() as u64, "opened local replica");
                partition.apply_role(role.clone(), tributary_common::time::now_ms());
                None
            }
            // Re-created under another id while it opened: open that one (which replaces this log).
            Some((id, _)) => Some(Job::Open(tp.clone(), *id)),
            // Unassigned while it opened.
            None => Some(Job::Delete(tp.clone())),
        };
        drop(wanted);
        match follow_up {
            Some(job @ Job::Open(..)) => self.queue(vec![job]),
            other => {
                self.queue(other.into_iter().collect());
                self.opening.lock().expect("opening lock").remove(&tp);
                self.opened.notify_one();
            }
        }
    }

    fn delete_job(&self, tp: &TopicPartition) {
        match self.store.delete_partition(tp) {
            Ok(()) => tracing::info!(target: "state_change", %tp, "deleted the local log"),
            Err(e) => {
                tracing::error!(%tp, error = %e, "deleting the log of a removed partition failed; its data stays on disk")
            }
        }
    }

    fn delete_orphans_job(&self) {
        self.orphan_sweep_queued.store(false, Ordering::Release);
        for (tp, _) in self.store.local_partitions() {
            let wanted = self.wanted.lock().expect("wanted lock").contains_key(&tp);
            if wanted || self.get(&tp).is_some() {
                continue;
            }
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

    /// Applies retention to every partition; returns the batches deleted. Walks and
    /// deletes storage: call it off the async worker threads.
    pub(crate) fn apply_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for (tp, partition) in self.all() {
            let config = partition.role().config;
            // Compacted topics (__consumer_offsets) keep every key's latest value; time and
            // size retention apply only when the policy also says "delete".
            if !config.delete_retention {
                continue;
            }
            let log = partition.log();
            match log.apply_retention(now_ms, config.retention_ms, config.retention_bytes, partition.high_watermark()) {
                Ok(n) if n > 0 => {
                    partition.forget_aborted_before(log.offsets().log_start_offset);
                    tracing::info!(%tp, batches = n, log_start_offset = log.offsets().log_start_offset, "retention deleted old record batches");
                    deleted += n;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(%tp, error = %e, "retention failed on this partition; check the data directory")
                }
            }
        }
        deleted
    }

    /// Marks everything appended before the last flush as recovered, and stores the
    /// producer-state snapshots taken with it (checkpoint): a restart then reads neither.
    /// Writes storage: call it off the async workers.
    pub(crate) fn checkpoint(&self, points: Vec<Checkpoint>) {
        for Checkpoint { tp, end, producers } in points {
            let Some(p) = self.get(&tp) else { continue };
            if let Err(e) = p.log().set_recovery_point(end) {
                tracing::warn!(%tp, error = %e, "could not record the recovery point");
                continue;
            }
            let Some(producers) = producers else { continue };
            match p.log().save_snapshot(end, &producers.to_snapshot()) {
                Ok(true) => p.snapshot_stored(end.offset),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "could not store the producer-state snapshot; the next restart reads this partition's log to rebuild it")
                }
            }
        }
    }

    /// Every partition's log end, with its producer state there when it changed since the
    /// last snapshot (taken before a flush, for [`Self::checkpoint`]).
    pub(crate) fn checkpoint_points(&self) -> Vec<Checkpoint> {
        self.all()
            .into_iter()
            .map(|(tp, p)| {
                let (end, producers) = p.checkpoint_point();
                Checkpoint { tp, end, producers }
            })
            .collect()
    }

    /// Checkpoints every partition's high watermark.
    pub(crate) fn checkpoint_high_watermarks(&self) {
        for (tp, p) in self.all() {
            if let Err(e) = p.log().checkpoint_high_watermark(p.high_watermark()) {
                tracing::warn!(%tp, error = %e, "could not checkpoint the high watermark");
            }
        }
    }

    /// How many times parked fetches were woken to read again (a partition they asked
    /// for moved): what the per-partition purgatory keeps low.
    #[cfg(test)]
    pub(crate) fn fetch_rereads(&self) -> u64 {
        self.fetch_rereads.load(Ordering::Relaxed)
    }

    /// ISR changes the partitions led here need (followers that fell behind or caught up):
    /// for each, the state to write and the zkVersion it replaces.
    fn isr_updates(
        &self,
        now_ms: i64,
        lag_time_max_ms: i64,
    ) -> Vec<(TopicPartition, Arc<Partition>, tributary_common::znode::PartitionState, i32)> {
        self.all()
            .into_iter()
            .filter_map(|(tp, p)| {
                let (state, version) = p.wanted_isr(now_ms, lag_time_max_ms)?;
                Some((tp, p, state, version))
            })
            .collect()
    }
}

/// Recovery and deletion are background work: on a busy machine the request workers
/// should get the CPU first, so the storage thread runs at nice 10 (Linux sets niceness
/// per thread). Failing to lower it is harmless.
fn lower_priority() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// The storage thread: opens and deletes partition logs in the order queued, off the
/// async runtime. Ends when the manager is dropped or [`ReplicaManager::stop_storage`].
fn storage_thread(manager: Weak<ReplicaManager>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        let Some(manager) = manager.upgrade() else { return };
        match job {
            Job::Open(tp, topic_id) => manager.open_job(tp, topic_id),
            Job::Delete(tp) => manager.delete_job(&tp),
            Job::DeleteOrphans => manager.delete_orphans_job(),
        }
    }
}

/// One ISR maintenance pass: writes every wanted ISR change to its state znode
/// (conditional on the zkVersion this leader last saw) and announces them in
/// `/isr_change_notification`. A lost race means the controller changed the partition:
/// this broker drops its proposal and waits for the new state through its watch.
pub(crate) async fn maintain_isr(
    replicas: &ReplicaManager,
    zk: &crate::zk::ZkHandle,
    now_ms: i64,
    lag_time_max_ms: i64,
) {
    let updates = replicas.isr_updates(now_ms, lag_time_max_ms);
    if updates.is_empty() {
        return;
    }
    let mut changed = Vec::new();
    for (tp, partition, state, expected_version) in updates {
        let old = partition.role().isr;
        match zk.write_isr(&tp.topic, tp.partition, &state, expected_version).await {
            Ok(new_version) => {
                let removed: Vec<BrokerId> = old.iter().copied().filter(|r| !state.isr.contains(r)).collect();
                let added: Vec<BrokerId> = state.isr.iter().copied().filter(|r| !old.contains(r)).collect();
                crate::metrics::METRICS.isr_changed(removed.len(), added.len());
                if removed.is_empty() {
                    tracing::info!(target: "state_change", %tp, leader_epoch = state.leader_epoch, isr = ?state.isr, added = ?added, "ISR expanded: caught-up followers rejoined");
                } else {
                    tracing::warn!(target: "state_change", %tp, leader_epoch = state.leader_epoch, isr = ?state.isr, removed = ?removed, added = ?added, "ISR shrank: followers did not keep up within replica.lag.time.max.ms; check those brokers (alive? disk or network slow?)");
                }
                partition.isr_written(&state, expected_version, new_version);
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
    if !changed.is_empty() {
        if let Err(e) = zk.notify_isr_change(changed).await {
            tracing::warn!(error = %e, "could not announce ISR changes in /isr_change_notification; the controller sees the state znodes anyway");
        }
    }
}

#[cfg(test)]
mod tests;
