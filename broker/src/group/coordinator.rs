//! The group coordinator: owns every group whose `__consumer_offsets` partition this broker
//! leads, in one place (one lock), parks JoinGroup/SyncGroup requests until the group
//! answers them, and writes group metadata and offsets as records to the partition.
//!
//! A partition's groups are loaded from its log when this broker becomes its leader
//! (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS) and dropped when it stops leading
//! (NOT_COORDINATOR), so the next leader, loading the same records, takes over.
//!
//! Writes go through the replica manager's one write path
//! ([`ReplicaManager::append_to_leader`], acks=all), appended under this coordinator's lock
//! so the log holds the decisions in the order they were made; the lock is released before
//! waiting for the write to complete. As Kafka's `GroupMetadataManager` does, the caches
//! change only once the write holds: committed offsets enter the cache when their commit
//! completes (a later commit of the same partition is never overwritten by an earlier one
//! completing after it), and SyncGroup answers go out once the group's metadata is stored;
//! if that store fails, every member waiting on it gets the error and rejoins.
//!
//! Lock order: this coordinator's lock → the replica manager's locks (through
//! `append_to_leader`). Never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tributary_common::ids::{BrokerId, TopicPartition};
use tributary_common::topic::CONSUMER_OFFSETS;

use super::records::{self, OffsetValue, RecordKey};
use super::state::{
    Code, Effects, Group, GroupConfig, GroupState, JoinRequest, JoinResponse, MemberRef, Outcome, SyncResponse,
};
use crate::metadata::ClusterMetadata;
use crate::owned::{Load, Owned, ToLoad};
use crate::record;
use crate::replica::durability::Acks;
use crate::replica::{AppendError, CompletionError, Origin, Partition, Pending, ReplicaError, ReplicaManager};

/// How long a group write may wait for the ISR (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(5000);

/// Parked requests by (group, member id).
type Waiters<R> = HashMap<(String, String), oneshot::Sender<R>>;

/// (group, topic, partition) of a committed offset.
type OffsetKey = (String, String, i32);

#[derive(Default)]
struct Inner {
    owned: Owned,
    groups: HashMap<String, Group>,
    joins: Waiters<JoinResponse>,
    syncs: Waiters<SyncResponse>,
    /// The log offset of the record behind each cached offset written since load, so a
    /// commit completing late never replaces a later one.
    offset_positions: HashMap<OffsetKey, i64>,
    /// Offsets committed inside transactions not ended yet, by producer id (KIP-98's
    /// TxnOffsetCommit): they join the group's offsets at the COMMIT marker.
    pending_txn: HashMap<i64, Vec<(OffsetKey, OffsetValue)>>,
}

/// SyncGroup answers owed once the group's metadata write completes.
#[must_use = "the answers go out only when completed"]
struct Deferred {
    group_id: String,
    pending: Option<Result<Pending, Code>>,
    syncs: Vec<(oneshot::Sender<SyncResponse>, SyncResponse)>,
}

/// A group's summary for ListGroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" for commit-only groups).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// A partition's committed offset as OffsetFetch reports it (None: nothing committed).
pub(crate) type FetchedPartition = (i32, Option<OffsetValue>);

/// A partition offset to commit.
pub(crate) type Commit = ((String, i32), OffsetValue);

/// The group coordinator of one broker.
pub(crate) struct GroupCoordinator {
    broker_id: BrokerId,
    cfg: GroupConfig,
    replicas: Arc<ReplicaManager>,
    inner: Mutex<Inner>,
}

fn code(e: ResponseError) -> Code {
    e.code()
}

/// The error a group write that could not be appended answers with (Kafka's mapping in
/// `GroupMetadataManager.storeGroup`/`storeOffsets`).
fn append_error_code(e: &AppendError) -> Code {
    match e {
        AppendError::Replica(ReplicaError::NotLeader { .. } | ReplicaError::Opening(_)) | AppendError::Log(_) => {
            code(ResponseError::NotCoordinator)
        }
        AppendError::Replica(_) | AppendError::NotEnoughReplicas { .. } => code(ResponseError::CoordinatorNotAvailable),
        AppendError::Batch(_) | AppendError::BatchCount(_) => code(ResponseError::InvalidCommitOffsetSize),
        AppendError::InternalTopic(_) | AppendError::Sequence(_) => code(ResponseError::UnknownServerError),
    }
}

/// The error a group write that did not complete answers with.
fn completion_error_code(e: &CompletionError) -> Code {
    match e {
        CompletionError::NotLeader { .. } | CompletionError::Storage(_) => code(ResponseError::NotCoordinator),
        CompletionError::NotEnoughReplicasAfterAppend { .. } | CompletionError::TimedOut { .. } => {
            code(ResponseError::CoordinatorNotAvailable)
        }
    }
}

impl Deferred {
    /// Waits for the group's metadata write, then answers the members waiting on it (with
    /// the write's error if it failed). Returns that error.
    async fn complete(self, replicas: &ReplicaManager) -> Result<(), Code> {
        let result = match self.pending {
            None => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(pending)) => match replicas.complete(&[pending], COMMIT_TIMEOUT).await.remove(0) {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(group = %self.group_id, error = %e, "storing the group's metadata in __consumer_offsets did not complete; its members get an error and rejoin");
                    Err(completion_error_code(&e))
                }
            },
        };
        for (tx, response) in self.syncs {
            let _ = tx.send(match result {
                Ok(()) => response,
                Err(e) => SyncResponse::error(e),
            });
        }
        result
    }

    /// Completes in the background (for callers that answer without waiting).
    fn spawn(self, replicas: &Arc<ReplicaManager>) {
        if self.pending.is_none() {
            for (tx, response) in self.syncs {
                let _ = tx.send(response);
            }
            return;
        }
        let replicas = replicas.clone();
        tokio::spawn(async move {
            let _ = self.complete(&replicas).await;
        });
    }
}

impl GroupCoordinator {
    /// A coordinator for `broker_id` that leads no partition yet, writing through `replicas`.
    pub(crate) fn new(broker_id: BrokerId, cfg: GroupConfig, replicas: Arc<ReplicaManager>) -> Self {
        Self { broker_id, cfg, replicas, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("group coordinator lock")
    }

    /// The group's `__consumer_offsets` partition, given the topic's partition count.
    pub(crate) fn partition_for(group: &str, partition_count: i32) -> i32 {
        records::partition_for(group, partition_count)
    }

    /// Takes up a new metadata snapshot: returns the offsets partitions this broker now
    /// leads and must load (with the leader epoch that load belongs to); partitions it no
    /// longer leads are unloaded at once.
    pub(crate) fn on_metadata(&self, meta: &ClusterMetadata) -> Vec<ToLoad> {
        let mut inner = self.lock();
        let (gone, to_load) = inner.owned.take_up(meta, &self.replicas, self.broker_id, CONSUMER_OFFSETS);
        let count = inner.owned.count;
        for p in gone {
            let groups: Vec<String> =
                inner.groups.keys().filter(|g| records::partition_for(g, count.max(1)) == p).cloned().collect();
            inner.offset_positions.retain(|(g, _, _), _| records::partition_for(g, count.max(1)) != p);
            for g in &groups {
                if let Some(mut group) = inner.groups.remove(g) {
                    let mut fx = Effects::default();
                    group.kill(code(ResponseError::NotCoordinator), &mut fx);
                    // The group is gone from the map, so nothing is stored: answers go out now.
                    self.finish(&mut inner, p, g, fx).spawn(&self.replicas);
                }
            }
            tracing::info!(partition = p, groups = groups.len(), "no longer the group coordinator for __consumer_offsets partition {p}; its groups move to the new leader");
        }
        to_load
    }

    /// Reads a `__consumer_offsets` partition's log and takes up its groups (blocking:
    /// call it off the async threads).
    pub(crate) fn load(&self, partition: i32, epoch: i32, local: &Partition, now: i64) {
        let started = std::time::Instant::now();
        let Loaded { groups, offsets, records, pending_txn } = match read_partition(local) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(partition, error = %e, "loading __consumer_offsets partition {partition} failed; its groups stay unavailable (COORDINATOR_LOAD_IN_PROGRESS); check the data directory");
                return;
            }
        };
        let mut inner = self.lock();
        if !inner.owned.loaded(partition, epoch) {
            return; // leadership moved on while loading
        }
        let mut loaded: HashMap<String, Group> = HashMap::new();
        for (id, value) in groups {
            loaded.insert(id.clone(), Group::from_stored(&id, &value, now));
        }
        for ((group, topic, p), value) in offsets {
            loaded.entry(group.clone()).or_insert_with(|| Group::new(&group, now)).offsets.insert((topic, p), value);
        }
        let count = loaded.len();
        inner.groups.extend(loaded);
        for (pid, held) in pending_txn {
            inner.pending_txn.entry(pid).or_default().extend(held);
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if count > 0 {
            tracing::info!(partition, groups = count, records, elapsed_ms, "loaded consumer groups from __consumer_offsets partition {partition}; this broker is their coordinator");
        } else {
            tracing::debug!(
                partition,
                records,
                elapsed_ms,
                "coordinating __consumer_offsets partition {partition} (no groups yet)"
            );
        }
    }

    /// Whether this broker coordinates `group` right now.
    fn status(inner: &Inner, group: &str) -> Result<i32, Code> {
        if inner.owned.count == 0 {
            return Err(code(ResponseError::NotCoordinator));
        }
        let p = records::partition_for(group, inner.owned.count);
        match inner.owned.get(p) {
            Some(Load::Loaded(_)) => Ok(p),
            Some(Load::Loading(_)) => Err(code(ResponseError::CoordinatorLoadInProgress)),
            None => Err(code(ResponseError::NotCoordinator)),
        }
    }

    /// JoinGroup: answers at once or when the rebalance completes.
    pub(crate) async fn join(&self, group_id: &str, req: JoinRequest, now: i64) -> JoinResponse {
        let member = req.member_id.clone();
        let (rx, deferred) = {
            let mut inner = self.lock();
            let p = match Self::status(&inner, group_id) {
                Ok(p) => p,
                Err(e) => return JoinResponse::error(e, &member),
            };
            if !inner.groups.contains_key(group_id) {
                if !req.member_id.is_empty() {
                    return JoinResponse::error(code(ResponseError::UnknownMemberId), &member);
                }
                inner.groups.insert(group_id.to_string(), Group::new(group_id, now));
            }
            let mut fx = Effects::default();
            let group = inner.groups.get_mut(group_id).expect("inserted above");
            let outcome = group.join(req, now, &self.cfg, &mut fx);
            let parked = Self::park(&mut inner, group_id, outcome, |i| &mut i.joins);
            let deferred = self.finish(&mut inner, p, group_id, fx);
            match parked {
                Ok(r) => {
                    deferred.spawn(&self.replicas);
                    return r;
                }
                Err(rx) => (rx, deferred),
            }
        };
        deferred.spawn(&self.replicas);
        rx.await.unwrap_or_else(|_| JoinResponse::error(code(ResponseError::NotCoordinator), &member))
    }

    /// SyncGroup: followers wait for the leader's assignment; everyone is answered once
    /// the group's metadata (with the assignment) is stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sync(
        &self,
        group_id: &str,
        who: MemberRef<'_>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> SyncResponse {
        let (parked, deferred) = {
            let mut inner = self.lock();
            let p = match Self::status(&inner, group_id) {
                Ok(p) => p,
                Err(e) => return SyncResponse::error(e),
            };
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResponse::error(code(ResponseError::UnknownMemberId));
            };
            let mut fx = Effects::default();
            let outcome = group.sync(who, protocol_type, protocol, assignments, now, &mut fx);
            let parked = Self::park(&mut inner, group_id, outcome, |i| &mut i.syncs);
            (parked, self.finish(&mut inner, p, group_id, fx))
        };
        let stored = deferred.complete(&self.replicas).await;
        match parked {
            Ok(r) if r.error == 0 => match stored {
                Ok(()) => r,
                Err(e) => SyncResponse::error(e),
            },
            Ok(r) => r,
            Err(rx) => rx.await.unwrap_or_else(|_| SyncResponse::error(code(ResponseError::NotCoordinator))),
        }
    }

    /// Heartbeat.
    pub(crate) fn heartbeat(&self, group_id: &str, who: MemberRef<'_>, now: i64) -> Code {
        let mut inner = self.lock();
        if let Err(e) = Self::status(&inner, group_id) {
            return e;
        }
        match inner.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(who, now),
            None => code(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup for each (member id, instance id).
    ///
    /// # Errors
    /// A group-level error code (coordinator not here, unknown group).
    pub(crate) fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Result<Vec<Code>, Code> {
        let mut inner = self.lock();
        let p = Self::status(&inner, group_id)?;
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        let mut fx = Effects::default();
        let codes = members.iter().map(|(m, i)| group.leave(m, i.as_deref(), now, &self.cfg, &mut fx)).collect();
        self.finish(&mut inner, p, group_id, fx).spawn(&self.replicas);
        Ok(codes)
    }

    /// OffsetCommit: checks the member, writes every offset in one batch, and puts them in
    /// the cache once the write completes.
    ///
    /// # Errors
    /// The code every partition of the request gets.
    pub(crate) async fn commit(
        &self,
        group_id: &str,
        who: MemberRef<'_>,
        offsets: Vec<Commit>,
        now: i64,
    ) -> Result<(), Code> {
        let pending = {
            let mut inner = self.lock();
            let p = Self::status(&inner, group_id)?;
            match inner.groups.get_mut(group_id) {
                Some(g) => g.check_commit(who, now)?,
                None if who.generation < 0 && offsets.is_empty() => return Ok(()),
                None if who.generation < 0 => {}
                None => return Err(code(ResponseError::IllegalGeneration)),
            }
            if offsets.is_empty() {
                return Ok(());
            }
            let recs = offset_records(group_id, &offsets);
            self.write(p, &recs)?
        };
        let position = pending.last_offset();
        if let Err(e) = self.replicas.complete(std::slice::from_ref(&pending), COMMIT_TIMEOUT).await.remove(0) {
            tracing::warn!(group = group_id, error = %e, "committed offsets did not complete in __consumer_offsets; the consumer will retry");
            return Err(completion_error_code(&e));
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        if Self::status(inner, group_id).is_err() {
            // The partition moved on while the commit completed: the next coordinator loads it.
            return Ok(());
        }
        let group = inner.groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
        for ((t, part), v) in offsets {
            let key = (group_id.to_string(), t.clone(), part);
            if inner.offset_positions.get(&key).is_some_and(|at| *at > position) {
                continue; // a later commit of this partition completed first
            }
            inner.offset_positions.insert(key, position);
            group.offsets.insert((t, part), v);
        }
        Ok(())
    }

    /// TxnOffsetCommit: the offsets are written as a transactional batch of `producer_id`
    /// and held aside; they become the group's committed offsets when the transaction's
    /// COMMIT marker lands on the group's partition ([`Self::end_txn`]), and are dropped at
    /// ABORT. A member's generation is checked when it sends one (KIP-447).
    ///
    /// # Errors
    /// A group-level error code.
    pub(crate) async fn txn_commit(
        &self,
        group_id: &str,
        who: MemberRef<'_>,
        producer: (i64, i16),
        offsets: Vec<Commit>,
        now: i64,
    ) -> Result<(), Code> {
        let pending = {
            let mut inner = self.lock();
            let p = Self::status(&inner, group_id)?;
            if let Some(g) = inner.groups.get_mut(group_id) {
                if who.generation >= 0 || !who.member_id.is_empty() {
                    g.check_commit(who, now)?;
                }
            }
            if offsets.is_empty() {
                return Ok(());
            }
            let recs = offset_records(group_id, &offsets);
            self.write_as(p, &recs, Some(producer))?
        };
        if let Err(e) = self.replicas.complete(std::slice::from_ref(&pending), COMMIT_TIMEOUT).await.remove(0) {
            tracing::warn!(group = group_id, error = %e, "transactional offsets did not complete in __consumer_offsets; the producer will retry");
            return Err(completion_error_code(&e));
        }
        let mut inner = self.lock();
        let held = inner.pending_txn.entry(producer.0).or_default();
        for ((t, part), v) in offsets {
            held.push(((group_id.to_string(), t, part), v));
        }
        Ok(())
    }

    /// A transaction marker of `producer_id` landed at `position` on `__consumer_offsets`
    /// partition `partition`: its held offsets for that partition's groups are committed
    /// (or dropped).
    pub(crate) fn end_txn(&self, partition: i32, producer_id: i64, commit: bool, position: i64, now: i64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let count = inner.owned.count.max(1);
        let Some(held) = inner.pending_txn.get_mut(&producer_id) else { return };
        let (mine, rest): (Vec<_>, Vec<_>) =
            std::mem::take(held).into_iter().partition(|((g, _, _), _)| records::partition_for(g, count) == partition);
        *held = rest;
        if held.is_empty() {
            inner.pending_txn.remove(&producer_id);
        }
        if !commit {
            return;
        }
        for (key, v) in mine {
            if inner.offset_positions.get(&key).is_some_and(|at| *at > position) {
                continue;
            }
            inner.offset_positions.insert(key.clone(), position);
            let (g, t, part) = key;
            inner.groups.entry(g.clone()).or_insert_with(|| Group::new(&g, now)).offsets.insert((t, part), v);
        }
    }

    /// Whether offsets of `group_id` for (`topic`, `partition`) wait in an open
    /// transaction (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT).
    pub(crate) fn unstable(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let inner = self.lock();
        inner.pending_txn.values().flatten().any(|((g, t, p), _)| g == group_id && t == topic && *p == partition)
    }

    /// OffsetFetch: `topics` None means every committed partition.
    ///
    /// # Errors
    /// A group-level error code.
    pub(crate) fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<FetchedPartition>)>, Code> {
        let inner = self.lock();
        Self::status(&inner, group_id)?;
        let committed = inner.groups.get(group_id).map(|g| &g.offsets);
        let lookup = |t: &str, p: i32| committed.and_then(|o| o.get(&(t.to_string(), p))).cloned();
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let fetched = parts.iter().map(|p| (*p, lookup(&t, *p))).collect();
                    (t, fetched)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
                for ((t, p), v) in committed.into_iter().flatten() {
                    by_topic.entry(t.clone()).or_default().push((*p, Some(v.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// ListGroups: every group this broker coordinates; the error says whether some
    /// partitions are still loading.
    pub(crate) fn list(&self) -> (Code, Vec<Listed>) {
        let inner = self.lock();
        let loading = inner.owned.any_loading();
        let groups = inner
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| Listed {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        (if loading { code(ResponseError::CoordinatorLoadInProgress) } else { 0 }, groups)
    }

    /// DescribeGroups: a copy of the group (None: no such group).
    ///
    /// # Errors
    /// A group-level error code.
    pub(crate) fn describe(&self, group_id: &str) -> Result<Option<Group>, Code> {
        let inner = self.lock();
        Self::status(&inner, group_id)?;
        Ok(inner.groups.get(group_id).cloned())
    }

    /// DeleteGroups for one group: only an Empty group; its offsets and metadata get
    /// tombstones, and it leaves the cache once they are written.
    pub(crate) async fn delete(&self, group_id: &str) -> Code {
        let pending = {
            let inner = self.lock();
            let p = match Self::status(&inner, group_id) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let Some(group) = inner.groups.get(group_id) else { return code(ResponseError::GroupIdNotFound) };
            if group.state != GroupState::Empty {
                return code(ResponseError::NonEmptyGroup);
            }
            let mut recs: Vec<(Bytes, Option<Bytes>)> =
                group.offsets.keys().map(|(t, part)| (records::offset_key(group_id, t, *part), None)).collect();
            recs.push((records::group_key(group_id), None));
            match self.write(p, &recs) {
                Ok(pending) => pending,
                Err(e) => return e,
            }
        };
        if let Err(e) = self.replicas.complete(std::slice::from_ref(&pending), COMMIT_TIMEOUT).await.remove(0) {
            return completion_error_code(&e);
        }
        let mut inner = self.lock();
        if inner.groups.get(group_id).is_some_and(|g| g.state == GroupState::Empty) {
            inner.groups.remove(group_id);
            inner.offset_positions.retain(|(g, _, _), _| g != group_id);
        }
        tracing::info!(group = group_id, "deleted consumer group and its committed offsets");
        0
    }

    /// OffsetDelete: removes offsets, refusing partitions of topics the group's members
    /// subscribe to; they leave the cache once their tombstones are written.
    ///
    /// # Errors
    /// A group-level error code.
    pub(crate) async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<Code>, Code> {
        let (codes, doomed, pending) = {
            let inner = self.lock();
            let p = Self::status(&inner, group_id)?;
            let Some(group) = inner.groups.get(group_id) else { return Err(code(ResponseError::GroupIdNotFound)) };
            let subscribed = if group.state == GroupState::Empty {
                None
            } else {
                match group.subscribed_topics() {
                    Some(s) => Some(s),
                    None => return Err(code(ResponseError::NonEmptyGroup)),
                }
            };
            let codes: Vec<Code> = partitions
                .iter()
                .map(|(t, _)| {
                    if subscribed.as_ref().is_some_and(|s| s.contains(t)) {
                        code(ResponseError::GroupSubscribedToTopic)
                    } else {
                        0
                    }
                })
                .collect();
            let doomed: Vec<(String, i32)> = partitions
                .iter()
                .zip(&codes)
                .filter(|(k, c)| **c == 0 && group.offsets.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect();
            if doomed.is_empty() {
                return Ok(codes);
            }
            let recs: Vec<(Bytes, Option<Bytes>)> =
                doomed.iter().map(|(t, part)| (records::offset_key(group_id, t, *part), None)).collect();
            (codes, doomed, self.write(p, &recs)?)
        };
        let position = pending.last_offset();
        if let Err(e) = self.replicas.complete(std::slice::from_ref(&pending), COMMIT_TIMEOUT).await.remove(0) {
            return Err(completion_error_code(&e));
        }
        self.forget_offsets(group_id, &doomed, position);
        Ok(codes)
    }

    /// Drops offsets whose tombstones were written at `position`, unless a later commit
    /// replaced them meanwhile.
    fn forget_offsets(&self, group_id: &str, keys: &[(String, i32)], position: i64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(group) = inner.groups.get_mut(group_id) else { return };
        for (t, part) in keys {
            let key = (group_id.to_string(), t.clone(), *part);
            if inner.offset_positions.get(&key).is_some_and(|at| *at > position) {
                continue;
            }
            inner.offset_positions.remove(&key);
            group.offsets.remove(&(t.clone(), *part));
        }
    }

    /// Advances every group's clock (sessions, join and sync deadlines).
    pub(crate) fn tick(&self, now: i64) {
        let mut inner = self.lock();
        let count = inner.owned.count.max(1);
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let mut fx = Effects::default();
            if let Some(g) = inner.groups.get_mut(&id) {
                g.tick(now, &self.cfg, &mut fx);
            }
            if !fx.joins.is_empty() || !fx.syncs.is_empty() || fx.store_group || !fx.removed.is_empty() {
                self.finish(&mut inner, records::partition_for(&id, count), &id, fx).spawn(&self.replicas);
            }
        }
    }

    /// Removes offsets past `offsets.retention.minutes`, and groups left with nothing.
    pub(crate) async fn expire(&self, now: i64, retention_ms: i64) {
        let mut writes = Vec::new();
        {
            let inner = self.lock();
            let count = inner.owned.count.max(1);
            for (id, g) in &inner.groups {
                let expired = g.expired_offsets(now, retention_ms);
                let forget_group = g.forgettable_after(&expired);
                if expired.is_empty() && !forget_group {
                    continue;
                }
                let mut recs: Vec<(Bytes, Option<Bytes>)> =
                    expired.iter().map(|(t, part)| (records::offset_key(id, t, *part), None)).collect();
                if forget_group {
                    recs.push((records::group_key(id), None));
                }
                match self.write(records::partition_for(id, count), &recs) {
                    Ok(pending) => writes.push((id.clone(), expired, forget_group, pending)),
                    Err(e) => {
                        tracing::warn!(group = %id, error = e, "could not write expired offsets' tombstones; will retry at the next check")
                    }
                }
            }
        }
        for (id, expired, forget_group, pending) in writes {
            let position = pending.last_offset();
            if let Err(e) = self.replicas.complete(std::slice::from_ref(&pending), COMMIT_TIMEOUT).await.remove(0) {
                tracing::warn!(group = %id, error = %e, "expired offsets' tombstones did not complete; will retry at the next check");
                continue;
            }
            tracing::info!(group = %id, offsets = expired.len(), removed_group = forget_group, "expired committed offsets (offsets.retention.minutes)");
            self.forget_offsets(&id, &expired, position);
            if forget_group {
                let mut inner = self.lock();
                if inner.groups.get(&id).is_some_and(|g| g.forgettable_after(&[])) {
                    inner.groups.remove(&id);
                }
            }
        }
    }

    /// Registers a parked request's answer channel (before the effects are applied, which
    /// may already answer it). `Ok` is an answer now.
    fn park<R>(
        inner: &mut Inner,
        group_id: &str,
        outcome: Outcome<R>,
        waiters: fn(&mut Inner) -> &mut Waiters<R>,
    ) -> Result<R, oneshot::Receiver<R>> {
        match outcome {
            Outcome::Reply(r) => Ok(r),
            Outcome::Parked(id) => {
                let (tx, rx) = oneshot::channel();
                waiters(inner).insert((group_id.to_string(), id), tx);
                Err(rx)
            }
        }
    }

    /// Applies a decision's effects: stores the group if it changed, answers parked
    /// JoinGroups now, and hands back the SyncGroup answers, which go out once the store
    /// completes.
    fn finish(&self, inner: &mut Inner, partition: i32, group_id: &str, fx: Effects) -> Deferred {
        for (member, why) in &fx.removed {
            tracing::info!(group = group_id, member, reason = why, "removed member from consumer group");
        }
        let mut pending = None;
        if fx.store_group {
            if let Some(g) = inner.groups.get(group_id) {
                let value = records::group_value(&g.stored());
                let stored = self.write(partition, &[(records::group_key(group_id), Some(value))]);
                if let Err(e) = &stored {
                    tracing::error!(
                        group = group_id,
                        error = e,
                        "could not store group metadata in __consumer_offsets; waiting members get an error and rejoin"
                    );
                }
                pending = Some(stored);
                tracing::info!(
                    group = group_id,
                    state = g.state.name(),
                    generation = g.generation,
                    members = g.members.len(),
                    protocol = g.protocol.as_deref().unwrap_or(""),
                    "consumer group changed"
                );
            }
        }
        for (member, response) in fx.joins {
            if let Some(tx) = inner.joins.remove(&(group_id.to_string(), member)) {
                let _ = tx.send(response);
            }
        }
        let syncs = fx
            .syncs
            .into_iter()
            .filter_map(|(member, response)| {
                inner.syncs.remove(&(group_id.to_string(), member)).map(|tx| (tx, response))
            })
            .collect();
        Deferred { group_id: group_id.to_string(), pending, syncs }
    }

    /// Appends records to the group's `__consumer_offsets` partition through the one write
    /// path (acks=all); the caller completes the returned write.
    fn write(&self, partition: i32, recs: &[(Bytes, Option<Bytes>)]) -> Result<Pending, Code> {
        self.write_as(partition, recs, None)
    }

    /// Writes records, as a transactional batch of `producer` (id, epoch) when given.
    fn write_as(
        &self,
        partition: i32,
        recs: &[(Bytes, Option<Bytes>)],
        producer: Option<(i64, i16)>,
    ) -> Result<Pending, Code> {
        let tp = TopicPartition::new(CONSUMER_OFFSETS, partition);
        let kvs: Vec<record::KeyValue<'_>> = recs.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
        let mut built = record::build(0, tributary_common::time::now_ms(), &kvs);
        if let Some((pid, epoch)) = producer {
            let mut raw = built.to_vec();
            record::set_transactional(&mut raw, pid, epoch);
            built = Bytes::from(raw);
        }
        match self.replicas.append_to_leader(&tp, Origin::Coordinator, &built, Acks::All) {
            Ok(written) => Ok(written.pending),
            Err(e) => {
                tracing::warn!(%tp, error = %e, "writing to __consumer_offsets failed; clients will retry");
                Err(append_error_code(&e))
            }
        }
    }
}

/// The `__consumer_offsets` records committing `offsets` for `group_id`.
fn offset_records(group_id: &str, offsets: &[Commit]) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|((t, part), v)| (records::offset_key(group_id, t, *part), Some(records::offset_value(v))))
        .collect()
}

/// What a partition's replay found.
struct Loaded {
    groups: HashMap<String, records::GroupValue>,
    offsets: BTreeMap<OffsetKey, OffsetValue>,
    records: usize,
    /// Offsets of transactions with no marker yet, by producer id.
    pending_txn: HashMap<i64, Vec<(OffsetKey, OffsetValue)>>,
}

/// Replays a partition's records: the last value of each key wins; tombstones delete.
/// Transactional offset commits wait for their marker: applied at COMMIT, dropped at ABORT.
fn read_partition(local: &Partition) -> Result<Loaded, String> {
    let mut groups = HashMap::new();
    let mut offsets = BTreeMap::new();
    let mut pending_txn: HashMap<i64, Vec<(OffsetKey, OffsetValue)>> = HashMap::new();
    let mut count = 0;
    local.replay(&mut |h, raw| {
            if h.is_control() {
                let held = pending_txn.remove(&h.producer_id).unwrap_or_default();
                if record::control::marker_of(h, raw) == Some(record::control::Marker::Commit) {
                    offsets.extend(held);
                }
                return;
            }
            let recs = match record::body::decode(h, raw) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(offset = h.base_offset, error = %e, "skipping an unreadable __consumer_offsets batch");
                    return;
                }
            };
            for (key, value) in recs.list.iter().map(|r| (recs.key(r), recs.value(r))) {
                count += 1;
                let Some(key) = key else { continue };
                match records::decode_key(&key) {
                    Ok(RecordKey::Offset { group, topic, partition }) => {
                        let k = (group, topic, partition);
                        match value.map(|v| records::decode_offset_value(&v)) {
                            Some(Ok(v)) if h.is_transactional() => {
                                pending_txn.entry(h.producer_id).or_default().push((k, v));
                            }
                            None => {
                                offsets.remove(&k);
                            }
                            Some(Ok(v)) => {
                                offsets.insert(k, v);
                            }
                            Some(Err(e)) => tracing::warn!(group = %k.0, error = %e, "skipping an offset record"),
                        }
                    }
                    Ok(RecordKey::Group { group }) => match value.map(|v| records::decode_group_value(&v)) {
                        None => {
                            groups.remove(&group);
                        }
                        Some(Ok(v)) => {
                            groups.insert(group, v);
                        }
                        Some(Err(e)) => tracing::warn!(%group, error = %e, "skipping a group metadata record"),
                    },
                    Err(e) => tracing::debug!(error = %e, "skipping a record this coordinator does not use"),
                }
            }
    })
    .map_err(|e| e.to_string())?;
    Ok(Loaded { groups, offsets, records: count, pending_txn })
}

#[cfg(test)]
mod tests;
