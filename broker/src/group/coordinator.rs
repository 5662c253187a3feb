//! The group coordinator: owns every group whose `__consumer_offsets` partition this broker
//! leads, in one place (one lock), parks JoinGroup/SyncGroup requests until the group
//! answers them, and writes group metadata and offsets as records to the partition.
//!
//! A partition's groups are loaded from its log when this broker becomes its leader
//! (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS) and dropped when it stops leading
//! (NOT_COORDINATOR), so the next leader, loading the same records, takes over.

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
use crate::log::batch::{self, BatchHeader};
use crate::log::PartitionLog;
use crate::metadata::ClusterMetadata;
use crate::replica::{Partition, ReplicaManager};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Loading(i32),
    Loaded(i32),
}

/// Parked requests by (group, member id).
type Waiters<R> = HashMap<(String, String), oneshot::Sender<R>>;

#[derive(Default)]
struct Inner {
    partition_count: i32,
    partitions: HashMap<i32, Load>,
    groups: HashMap<String, Group>,
    joins: Waiters<JoinResponse>,
    syncs: Waiters<SyncResponse>,
}

/// A group's summary for ListGroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" for commit-only groups).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// A partition's committed offset as OffsetFetch reports it (None: nothing committed).
pub type FetchedPartition = (i32, Option<OffsetValue>);

/// A partition offset to commit.
pub type Commit = ((String, i32), OffsetValue);

/// The group coordinator of one broker.
pub struct GroupCoordinator {
    broker_id: BrokerId,
    cfg: GroupConfig,
    inner: Mutex<Inner>,
}

fn code(e: ResponseError) -> Code {
    e.code()
}

impl GroupCoordinator {
    /// A coordinator for `broker_id` that leads no partition yet.
    pub fn new(broker_id: BrokerId, cfg: GroupConfig) -> Self {
        Self { broker_id, cfg, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("group coordinator lock")
    }

    /// The group's `__consumer_offsets` partition, given the topic's partition count.
    pub fn partition_for(group: &str, partition_count: i32) -> i32 {
        records::partition_for(group, partition_count)
    }

    /// Takes up a new metadata snapshot: returns the offsets partitions this broker now
    /// leads and must load (with the leader epoch that load belongs to); partitions it no
    /// longer leads are unloaded at once.
    pub fn on_metadata(&self, meta: &ClusterMetadata, replicas: &ReplicaManager) -> Vec<(i32, i32, Arc<Partition>)> {
        let mut led = HashMap::new();
        let mut count = 0;
        if let Some(topic) = meta.topics.get(CONSUMER_OFFSETS) {
            count = topic.partitions.len() as i32;
            for (p, pm) in &topic.partitions {
                if pm.leader == self.broker_id {
                    if let Some(local) = replicas.get(&TopicPartition::new(CONSUMER_OFFSETS, *p)) {
                        led.insert(*p, (pm.leader_epoch, local));
                    }
                }
            }
        }
        let mut inner = self.lock();
        inner.partition_count = count;
        let gone: Vec<i32> = inner
            .partitions
            .iter()
            .filter(|(p, load)| {
                let epoch = match load {
                    Load::Loading(e) | Load::Loaded(e) => *e,
                };
                led.get(*p).is_none_or(|(e, _)| *e != epoch)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            inner.partitions.remove(&p);
            let groups: Vec<String> =
                inner.groups.keys().filter(|g| records::partition_for(g, count.max(1)) == p).cloned().collect();
            for g in &groups {
                if let Some(mut group) = inner.groups.remove(g) {
                    let mut fx = Effects::default();
                    group.kill(code(ResponseError::NotCoordinator), &mut fx);
                    deliver(&mut inner, g, fx);
                }
            }
            tracing::info!(partition = p, groups = groups.len(), "no longer the group coordinator for __consumer_offsets partition {p}; its groups move to the new leader");
        }
        let mut to_load = Vec::new();
        for (p, (epoch, local)) in led {
            if let std::collections::hash_map::Entry::Vacant(e) = inner.partitions.entry(p) {
                e.insert(Load::Loading(epoch));
                to_load.push((p, epoch, local));
            }
        }
        to_load
    }

    /// Reads a `__consumer_offsets` partition's log and takes up its groups (blocking:
    /// call it off the async threads).
    pub fn load(&self, partition: i32, epoch: i32, log: &PartitionLog, now: i64) {
        let started = std::time::Instant::now();
        let (groups, offsets, records) = match read_partition(log) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(partition, error = %e, "loading __consumer_offsets partition {partition} failed; its groups stay unavailable (COORDINATOR_LOAD_IN_PROGRESS); check the data directory");
                return;
            }
        };
        let mut inner = self.lock();
        if inner.partitions.get(&partition) != Some(&Load::Loading(epoch)) {
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
        inner.partitions.insert(partition, Load::Loaded(epoch));
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
        if inner.partition_count == 0 {
            return Err(code(ResponseError::NotCoordinator));
        }
        let p = records::partition_for(group, inner.partition_count);
        match inner.partitions.get(&p) {
            Some(Load::Loaded(_)) => Ok(p),
            Some(Load::Loading(_)) => Err(code(ResponseError::CoordinatorLoadInProgress)),
            None => Err(code(ResponseError::NotCoordinator)),
        }
    }

    /// JoinGroup: answers at once or when the rebalance completes.
    pub async fn join(&self, replicas: &ReplicaManager, group_id: &str, req: JoinRequest, now: i64) -> JoinResponse {
        let member = req.member_id.clone();
        let rx = {
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
            match self.settle(&mut inner, replicas, p, group_id, outcome, fx, |i| &mut i.joins) {
                Ok(r) => return r,
                Err(rx) => rx,
            }
        };
        rx.await.unwrap_or_else(|_| JoinResponse::error(code(ResponseError::NotCoordinator), &member))
    }

    /// SyncGroup: followers wait for the leader's assignment.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        replicas: &ReplicaManager,
        group_id: &str,
        who: MemberRef<'_>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> SyncResponse {
        let rx = {
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
            match self.settle(&mut inner, replicas, p, group_id, outcome, fx, |i| &mut i.syncs) {
                Ok(r) => return r,
                Err(rx) => rx,
            }
        };
        rx.await.unwrap_or_else(|_| SyncResponse::error(code(ResponseError::NotCoordinator)))
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group_id: &str, who: MemberRef<'_>, now: i64) -> Code {
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
    pub fn leave(
        &self,
        replicas: &ReplicaManager,
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
        self.finish(&mut inner, replicas, p, group_id, fx);
        Ok(codes)
    }

    /// OffsetCommit: checks the member, then writes every offset in one batch.
    ///
    /// # Errors
    /// The code every partition of the request gets.
    pub fn commit(
        &self,
        replicas: &ReplicaManager,
        group_id: &str,
        who: MemberRef<'_>,
        offsets: Vec<Commit>,
        now: i64,
    ) -> Result<(), Code> {
        let mut inner = self.lock();
        let p = Self::status(&inner, group_id)?;
        match inner.groups.get_mut(group_id) {
            Some(g) => g.check_commit(who, now)?,
            None if who.generation < 0 && offsets.is_empty() => return Ok(()),
            None if who.generation < 0 => {
                inner.groups.insert(group_id.to_string(), Group::new(group_id, now));
            }
            None => return Err(code(ResponseError::IllegalGeneration)),
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let recs: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|((t, part), v)| (records::offset_key(group_id, t, *part), Some(records::offset_value(v))))
            .collect();
        self.write(replicas, p, &recs)?;
        let group = inner.groups.get_mut(group_id).expect("present above");
        group.offsets.extend(offsets);
        Ok(())
    }

    /// OffsetFetch: `topics` None means every committed partition.
    ///
    /// # Errors
    /// A group-level error code.
    pub fn fetch_offsets(
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
    pub fn list(&self) -> (Code, Vec<Listed>) {
        let inner = self.lock();
        let loading = inner.partitions.values().any(|l| matches!(l, Load::Loading(_)));
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
    pub fn describe(&self, group_id: &str) -> Result<Option<Group>, Code> {
        let inner = self.lock();
        Self::status(&inner, group_id)?;
        Ok(inner.groups.get(group_id).cloned())
    }

    /// DeleteGroups for one group: only an Empty group; its offsets and metadata get
    /// tombstones.
    pub fn delete(&self, replicas: &ReplicaManager, group_id: &str) -> Code {
        let mut inner = self.lock();
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
        if let Err(e) = self.write(replicas, p, &recs) {
            return e;
        }
        inner.groups.remove(group_id);
        tracing::info!(group = group_id, "deleted consumer group and its committed offsets");
        0
    }

    /// OffsetDelete: removes offsets, refusing partitions of topics the group's members
    /// subscribe to.
    ///
    /// # Errors
    /// A group-level error code.
    pub fn delete_offsets(
        &self,
        replicas: &ReplicaManager,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Code>, Code> {
        let mut inner = self.lock();
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
        if !doomed.is_empty() {
            let recs: Vec<(Bytes, Option<Bytes>)> =
                doomed.iter().map(|(t, part)| (records::offset_key(group_id, t, *part), None)).collect();
            self.write(replicas, p, &recs)?;
            let group = inner.groups.get_mut(group_id).expect("present above");
            for k in &doomed {
                group.offsets.remove(k);
            }
        }
        Ok(codes)
    }

    /// Advances every group's clock (sessions, join and sync deadlines).
    pub fn tick(&self, replicas: &ReplicaManager, now: i64) {
        let mut inner = self.lock();
        let count = inner.partition_count.max(1);
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let mut fx = Effects::default();
            if let Some(g) = inner.groups.get_mut(&id) {
                g.tick(now, &self.cfg, &mut fx);
            }
            if !fx.joins.is_empty() || !fx.syncs.is_empty() || fx.store_group || !fx.removed.is_empty() {
                self.finish(&mut inner, replicas, records::partition_for(&id, count), &id, fx);
            }
        }
    }

    /// Removes offsets past `offsets.retention.minutes`, and groups left with nothing.
    pub fn expire(&self, replicas: &ReplicaManager, now: i64, retention_ms: i64) {
        let mut inner = self.lock();
        let count = inner.partition_count.max(1);
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let Some(g) = inner.groups.get(&id) else { continue };
            let expired = g.expired_offsets(now, retention_ms);
            let p = records::partition_for(&id, count);
            let forget_group = g.forgettable_after(&expired);
            if expired.is_empty() && !forget_group {
                continue;
            }
            let mut recs: Vec<(Bytes, Option<Bytes>)> =
                expired.iter().map(|(t, part)| (records::offset_key(&id, t, *part), None)).collect();
            if forget_group {
                recs.push((records::group_key(&id), None));
            }
            if let Err(e) = self.write(replicas, p, &recs) {
                tracing::warn!(group = %id, error = e, "could not write expired offsets' tombstones; will retry at the next check");
                continue;
            }
            tracing::info!(group = %id, offsets = expired.len(), removed_group = forget_group, "expired committed offsets (offsets.retention.minutes)");
            if forget_group {
                inner.groups.remove(&id);
            } else if let Some(g) = inner.groups.get_mut(&id) {
                for k in &expired {
                    g.offsets.remove(k);
                }
            }
        }
    }

    /// Finishes a request under the lock: a parked one registers its answer channel first,
    /// then the effects are applied (which may already answer it). `Ok` is an answer now.
    #[allow(clippy::too_many_arguments)]
    fn settle<R>(
        &self,
        inner: &mut Inner,
        replicas: &ReplicaManager,
        partition: i32,
        group_id: &str,
        outcome: Outcome<R>,
        fx: Effects,
        waiters: fn(&mut Inner) -> &mut Waiters<R>,
    ) -> Result<R, oneshot::Receiver<R>> {
        let parked = match outcome {
            Outcome::Reply(r) => Ok(r),
            Outcome::Parked(id) => {
                let (tx, rx) = oneshot::channel();
                waiters(inner).insert((group_id.to_string(), id), tx);
                Err(rx)
            }
        };
        self.finish(inner, replicas, partition, group_id, fx);
        parked
    }

    /// Stores the group if it changed, then answers parked requests.
    fn finish(&self, inner: &mut Inner, replicas: &ReplicaManager, partition: i32, group_id: &str, fx: Effects) {
        for (member, why) in &fx.removed {
            tracing::info!(group = group_id, member, reason = why, "removed member from consumer group");
        }
        if fx.store_group {
            if let Some(g) = inner.groups.get(group_id) {
                let value = records::group_value(&g.stored());
                if let Err(e) = self.write(replicas, partition, &[(records::group_key(group_id), Some(value))]) {
                    tracing::error!(group = group_id, error = e, "could not store group metadata in __consumer_offsets; members keep their assignment, but a coordinator restart will not restore it");
                }
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
        deliver(inner, group_id, fx);
    }

    /// Appends records to the group's `__consumer_offsets` partition.
    fn write(&self, replicas: &ReplicaManager, partition: i32, recs: &[(Bytes, Option<Bytes>)]) -> Result<(), Code> {
        let tp = TopicPartition::new(CONSUMER_OFFSETS, partition);
        let p = replicas.leader_partition(&tp, -1).map_err(|_| code(ResponseError::NotCoordinator))?;
        let kvs: Vec<batch::KeyValue<'_>> = recs.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
        let built = batch::build(0, tributary_common::time::now_ms(), &kvs);
        let batches = batch::validate(&built, usize::MAX).map_err(|e| {
            tracing::error!(%tp, error = %e, "built an invalid __consumer_offsets batch (a bug)");
            code(ResponseError::UnknownServerError)
        })?;
        p.log.append(&batches, p.role().leader_epoch, None).map_err(|e| {
            tracing::error!(%tp, error = %e, "writing to __consumer_offsets failed; clients will retry; check the data directory's disk");
            code(ResponseError::CoordinatorNotAvailable)
        })?;
        replicas.store().note_appended(recs.len() as u64);
        p.maybe_advance_high_watermark();
        replicas.notify_progress();
        Ok(())
    }
}

fn deliver(inner: &mut Inner, group_id: &str, fx: Effects) {
    for (member, response) in fx.joins {
        if let Some(tx) = inner.joins.remove(&(group_id.to_string(), member)) {
            let _ = tx.send(response);
        }
    }
    for (member, response) in fx.syncs {
        if let Some(tx) = inner.syncs.remove(&(group_id.to_string(), member)) {
            let _ = tx.send(response);
        }
    }
}

type Loaded = (HashMap<String, records::GroupValue>, BTreeMap<(String, String, i32), OffsetValue>, usize);

/// Replays a partition's records: the last value of each key wins; tombstones delete.
fn read_partition(log: &PartitionLog) -> Result<Loaded, crate::log::Error> {
    let mut groups = HashMap::new();
    let mut offsets = BTreeMap::new();
    let mut count = 0;
    let end = log.offsets().log_end_offset;
    let mut next = log.offsets().log_start_offset;
    while next < end {
        let chunk = log.read(next, 1 << 20, end)?;
        if chunk.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < chunk.len() {
            let Some(h) = BatchHeader::parse(&chunk[pos..]) else { break };
            let raw = chunk.slice(pos..pos + h.total_len());
            pos += h.total_len();
            next = h.last_offset() + 1;
            if h.is_control() {
                continue;
            }
            let recs = match batch::records(&h, &raw) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(offset = h.base_offset, error = %e, "skipping an unreadable __consumer_offsets batch");
                    continue;
                }
            };
            for (key, value) in recs {
                count += 1;
                let Some(key) = key else { continue };
                match records::decode_key(&key) {
                    Ok(RecordKey::Offset { group, topic, partition }) => {
                        let k = (group, topic, partition);
                        match value.map(|v| records::decode_offset_value(&v)) {
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
        }
    }
    Ok((groups, offsets, count))
}
