//! The transaction coordinator (KIP-98): owns the transactional ids whose
//! `__transaction_state` partition this broker leads, decides each request by the pure
//! rules in [`state`], and stores every new state as a record ([`records`]) through the
//! one write path before it answers, as Kafka's `TransactionStateManager` does.
//!
//! A partition's transactions are loaded from its log when this broker becomes its leader
//! (COORDINATOR_LOAD_IN_PROGRESS meanwhile) and dropped when it stops leading
//! (NOT_COORDINATOR). Ending a transaction is two writes with the markers in between:
//! PrepareCommit/PrepareAbort is stored and answered, a [`MarkerJob`] goes to the marker
//! writer ([`markers`]) which writes the COMMIT/ABORT marker to every partition of the
//! transaction, and then CompleteCommit/CompleteAbort is stored. A transaction found
//! prepared at load, or open past its timeout, goes the same way.
//!
//! One request per transactional id at a time: a second one while a write is pending is
//! answered CONCURRENT_TRANSACTIONS (retriable). Lock order: this coordinator's lock → the
//! replica manager's locks (through `append_to_leader`); never held across an `.await`.

pub(crate) mod markers;
pub(crate) mod records;
pub(crate) mod state;
pub(crate) mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::mpsc;
use tributary_common::ids::{BrokerId, TopicPartition};
use tributary_common::topic::TRANSACTION_STATE;

use self::state::{Caller, End, Init, TxnMeta, TxnState};
use crate::metadata::ClusterMetadata;
use crate::owned::{Load, Owned, ToLoad};
use crate::record;
use crate::replica::durability::Acks;
use crate::replica::{Origin, Partition, Pending, ReplicaManager};

/// How long a state write may wait for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_millis(5000);

/// The coordinator's settings.
#[derive(Clone, Debug)]
pub(crate) struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

#[derive(Default)]
struct Inner {
    owned: Owned,
    txns: HashMap<String, TxnMeta>,
    /// Ids with a state write in flight.
    pending: HashSet<String>,
}

/// Markers to write for a prepared transaction, then its completion to store.
#[derive(Clone, Debug)]
pub(crate) struct MarkerJob {
    /// The transactional id.
    pub transactional_id: String,
    /// The leader epoch of its `__transaction_state` partition (the markers' coordinator epoch).
    pub coordinator_epoch: i32,
    /// Its prepared metadata.
    pub meta: TxnMeta,
}

/// One transaction as DescribeTransactions and ListTransactions show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Described {
    /// The id.
    pub transactional_id: String,
    /// Its metadata.
    pub meta: TxnMeta,
}

/// The transaction coordinator of one broker.
pub(crate) struct TransactionCoordinator {
    broker_id: BrokerId,
    cfg: TxnConfig,
    replicas: Arc<ReplicaManager>,
    inner: Mutex<Inner>,
    markers: mpsc::UnboundedSender<MarkerJob>,
}

/// The partition of `__transaction_state` that owns `transactional_id` (Kafka's rule, the
/// same as groups').
pub(crate) fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::records::partition_for(transactional_id, partitions)
}

impl TransactionCoordinator {
    /// A coordinator leading nothing yet; prepared transactions go to `markers`.
    pub(crate) fn new(
        broker_id: BrokerId,
        cfg: TxnConfig,
        replicas: Arc<ReplicaManager>,
        markers: mpsc::UnboundedSender<MarkerJob>,
    ) -> Self {
        Self { broker_id, cfg, replicas, inner: Mutex::new(Inner::default()), markers }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("transaction coordinator lock")
    }

    /// Whether this broker coordinates `transactional_id` now: its partition and that
    /// partition's leader epoch.
    fn status(inner: &Inner, transactional_id: &str) -> Result<(i32, i32), ResponseError> {
        if inner.owned.count == 0 {
            return Err(ResponseError::NotCoordinator);
        }
        let p = partition_for(transactional_id, inner.owned.count);
        match inner.owned.get(p) {
            Some(Load::Loaded(epoch)) => Ok((p, epoch)),
            Some(Load::Loading(_)) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Takes up a metadata snapshot: returns the `__transaction_state` partitions this
    /// broker now leads and must load; those it no longer leads are dropped at once.
    pub(crate) fn on_metadata(&self, meta: &ClusterMetadata) -> Vec<ToLoad> {
        let mut inner = self.lock();
        let (gone, to_load) = inner.owned.take_up(meta, &self.replicas, self.broker_id, TRANSACTION_STATE);
        let n = inner.owned.count.max(1);
        for p in gone {
            inner.txns.retain(|id, _| partition_for(id, n) != p);
            tracing::info!(partition = p, "no longer the transaction coordinator for __transaction_state partition {p}; its transactions move to the new leader");
        }
        to_load
    }

    /// Reads a `__transaction_state` partition and takes up its transactions; prepared ones
    /// have their markers written again (blocking: call it off the async threads).
    pub(crate) fn load(&self, partition: i32, epoch: i32, local: &Partition) {
        let started = std::time::Instant::now();
        let loaded = match read_partition(local) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(partition, error = %e, "loading __transaction_state partition {partition} failed; its transactions stay unavailable (COORDINATOR_LOAD_IN_PROGRESS); check the data directory");
                return;
            }
        };
        let mut inner = self.lock();
        if !inner.owned.loaded(partition, epoch) {
            return; // leadership moved on while loading
        }
        let mut resumed = 0;
        for (id, meta) in &loaded {
            if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                resumed += 1;
                let _ = self.markers.send(MarkerJob {
                    transactional_id: id.clone(),
                    coordinator_epoch: epoch,
                    meta: meta.clone(),
                });
            }
        }
        let count = loaded.len();
        inner.txns.extend(loaded);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if count > 0 {
            tracing::info!(
                partition,
                transactions = count,
                resumed,
                elapsed_ms,
                "loaded transactions from __transaction_state partition {partition}; this broker is their coordinator"
            );
        } else {
            tracing::debug!(
                partition,
                elapsed_ms,
                "coordinating __transaction_state partition {partition} (no transactions yet)"
            );
        }
    }

    /// Appends `meta` for `id` to its partition (under the lock) and marks the id pending.
    /// Appends `meta` for `id` (a tombstone for `None`) to its partition (under the lock)
    /// and marks the id pending.
    fn append(
        &self,
        inner: &mut Inner,
        partition: i32,
        id: &str,
        meta: Option<&TxnMeta>,
    ) -> Result<Pending, ResponseError> {
        let tp = TopicPartition::new(TRANSACTION_STATE, partition);
        let key = records::key(id);
        let value = meta.map(records::value);
        let batch = record::build(0, tributary_common::time::now_ms(), &[(Some(&key[..]), value.as_deref())]);
        match self.replicas.append_to_leader(&tp, Origin::Coordinator, &batch, Acks::All) {
            Ok(written) => {
                inner.pending.insert(id.to_string());
                Ok(written.pending)
            }
            Err(e) => {
                tracing::warn!(%tp, transactional_id = id, error = %e, "writing to __transaction_state failed; the producer retries");
                Err(ResponseError::NotCoordinator)
            }
        }
    }

    /// Waits for a state write; on success the cache takes `meta`.
    async fn finish(
        &self,
        id: &str,
        partition: i32,
        epoch: i32,
        meta: &TxnMeta,
        pending: Pending,
    ) -> Result<(), ResponseError> {
        let result = self.replicas.complete(&[pending], WRITE_TIMEOUT).await.remove(0);
        let mut inner = self.lock();
        inner.pending.remove(id);
        match result {
            Ok(()) if inner.owned.get(partition) == Some(Load::Loaded(epoch)) => {
                inner.txns.insert(id.to_string(), meta.clone());
                Ok(())
            }
            Ok(()) => Err(ResponseError::NotCoordinator),
            Err(e) => {
                tracing::warn!(transactional_id = id, error = %e, "storing a transaction's state did not complete; the producer retries");
                Err(ResponseError::NotCoordinator)
            }
        }
    }

    /// Decides with `decide` under the lock, stores what it returns, and answers.
    async fn update<T>(
        &self,
        id: &str,
        decide: impl FnOnce(Option<&TxnMeta>) -> Result<(Option<TxnMeta>, T), ResponseError>,
    ) -> Result<(Option<TxnMeta>, T, i32), ResponseError> {
        let (next, answer, partition, epoch, pending) = {
            let mut inner = self.lock();
            let (partition, epoch) = Self::status(&inner, id)?;
            if inner.pending.contains(id) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let (next, answer) = decide(inner.txns.get(id))?;
            let pending = match &next {
                Some(meta) => Some(self.append(&mut inner, partition, id, Some(meta))?),
                None => None,
            };
            (next, answer, partition, epoch, pending)
        };
        if let (Some(meta), Some(pending)) = (&next, pending) {
            self.finish(id, partition, epoch, meta, pending).await?;
        }
        Ok((next, answer, epoch))
    }

    /// InitProducerId for `id`: its producer id and (bumped) epoch. `new_id` is a fresh
    /// producer id, used if one is needed.
    ///
    /// # Errors
    /// Kafka's code (CONCURRENT_TRANSACTIONS while an open transaction is being aborted).
    pub(crate) async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<Caller>,
        new_id: i64,
    ) -> Result<(i64, i16), ResponseError> {
        let now = tributary_common::time::now_ms();
        let max = self.cfg.max_timeout_ms;
        let (next, abort_first, epoch) = self
            .update(id, |cur| match state::init(cur, timeout_ms, max, expected, new_id, now) {
                Init::Ready(m) => Ok((Some(m), false)),
                Init::AbortFirst(m) => Ok((Some(m), true)),
                Init::Error(e) => Err(e),
            })
            .await?;
        let meta = next.expect("init always stores");
        if abort_first {
            tracing::info!(
                transactional_id = id,
                producer_id = meta.producer_id,
                producer_epoch = meta.producer_epoch,
                "a new producer with this transactional id fenced the previous one; aborting its open transaction"
            );
            let _ = self.markers.send(MarkerJob { transactional_id: id.to_string(), coordinator_epoch: epoch, meta });
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn.
    ///
    /// # Errors
    /// Kafka's code for the whole request.
    pub(crate) async fn add_partitions(
        &self,
        id: &str,
        caller: Caller,
        add: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        let now = tributary_common::time::now_ms();
        self.update(id, |cur| Ok((state::add_partitions(cur, caller, add, now)?, ()))).await?;
        Ok(())
    }

    /// Whether every partition in `check` is in `id`'s open transaction (AddPartitionsToTxn
    /// v4+ `verify_only`).
    ///
    /// # Errors
    /// Kafka's code for the whole transaction.
    pub(crate) fn verify(&self, id: &str, caller: Caller, check: &[(String, i32)]) -> Result<Vec<bool>, ResponseError> {
        let inner = self.lock();
        Self::status(&inner, id)?;
        let meta = inner.txns.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if caller.producer_id != meta.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if caller.producer_epoch != meta.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(check.iter().map(|p| meta.state == TxnState::Ongoing && meta.partitions.contains(p)).collect())
    }

    /// EndTxn: stores the prepared end and hands the markers to the writer.
    ///
    /// # Errors
    /// Kafka's code.
    pub(crate) async fn end_txn(&self, id: &str, caller: Caller, commit: bool) -> Result<(), ResponseError> {
        let now = tributary_common::time::now_ms();
        let (next, (), epoch) = self
            .update(id, |cur| match state::end(cur, caller, commit, now) {
                End::Prepare(m) => Ok((Some(m), ())),
                End::Done => Ok((None, ())),
                End::Error(e) => Err(e),
            })
            .await?;
        if let Some(meta) = next {
            let _ = self.markers.send(MarkerJob { transactional_id: id.to_string(), coordinator_epoch: epoch, meta });
        }
        Ok(())
    }

    /// Stores CompleteCommit/CompleteAbort once `job`'s markers are all written, unless the
    /// transaction moved on meanwhile (another coordinator, a newer state).
    pub(crate) async fn complete(&self, job: &MarkerJob) {
        let now = tributary_common::time::now_ms();
        let result = self
            .update(&job.transactional_id, |cur| match cur {
                Some(m) if *m == job.meta => Ok((state::complete(m, now), ())),
                _ => Ok((None, ())),
            })
            .await;
        match result {
            Ok((Some(m), (), _)) => {
                tracing::debug!(transactional_id = %job.transactional_id, state = m.state.name(), "transaction ended")
            }
            Ok(_) => {}
            Err(ResponseError::ConcurrentTransactions) => {
                // Another write is in flight for the id: try again shortly.
                let _ = self.markers.send(job.clone());
            }
            Err(e) => {
                tracing::info!(transactional_id = %job.transactional_id, error = ?e, "could not store the end of a transaction here; the partition's next coordinator completes it")
            }
        }
    }

    /// Aborts transactions open past their timeout, bumping the epoch so that the
    /// producer that let them expire is fenced.
    pub(crate) async fn abort_expired(&self, now: i64) {
        let expired: Vec<String> = {
            let inner = self.lock();
            inner
                .txns
                .iter()
                .filter(|(id, m)| !inner.pending.contains(*id) && state::expire(m, now).is_some())
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in expired {
            let result = self.update(&id, |cur| Ok((cur.and_then(|m| state::expire(m, now)), ()))).await;
            if let Ok((Some(meta), (), epoch)) = result {
                tracing::warn!(transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a transaction open longer than its transaction.timeout.ms; its producer is fenced");
                let _ = self.markers.send(MarkerJob { transactional_id: id, coordinator_epoch: epoch, meta });
            }
        }
    }

    /// Forgets transactional ids idle past `transactional.id.expiration.ms`: a tombstone in
    /// `__transaction_state` (which compaction then removes), as Kafka does.
    pub(crate) async fn expire_idle_ids(&self, now: i64) {
        let expiration = self.cfg.id_expiration_ms;
        let idle: Vec<String> = {
            let inner = self.lock();
            inner
                .txns
                .iter()
                .filter(|(id, m)| !inner.pending.contains(*id) && state::idle_expired(m, now, expiration))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in idle {
            let written = {
                let mut inner = self.lock();
                let Ok((partition, epoch)) = Self::status(&inner, &id) else { continue };
                let still_idle = inner.txns.get(&id).is_some_and(|m| state::idle_expired(m, now, expiration));
                if inner.pending.contains(&id) || !still_idle {
                    continue;
                }
                self.append(&mut inner, partition, &id, None).ok().map(|p| (p, partition, epoch))
            };
            let Some((pending, partition, epoch)) = written else { continue };
            let result = self.replicas.complete(&[pending], WRITE_TIMEOUT).await.remove(0);
            let mut inner = self.lock();
            inner.pending.remove(&id);
            if result.is_ok() && inner.owned.get(partition) == Some(Load::Loaded(epoch)) {
                inner.txns.remove(&id);
                tracing::info!(transactional_id = %id, expiration_ms = expiration, "forgot a transactional id idle longer than transactional.id.expiration.ms");
            }
        }
    }

    /// Whether `job`'s transaction is still prepared, as the job has it, on this broker.
    pub(crate) fn still_prepared(&self, job: &MarkerJob) -> bool {
        let inner = self.lock();
        Self::status(&inner, &job.transactional_id).is_ok_and(|(_, epoch)| epoch == job.coordinator_epoch)
            && inner.txns.get(&job.transactional_id) == Some(&job.meta)
    }

    /// DescribeTransactions: the ids asked for, each with its metadata or why not.
    pub(crate) fn describe(&self, id: &str) -> Result<TxnMeta, ResponseError> {
        let inner = self.lock();
        Self::status(&inner, id)?;
        inner.txns.get(id).cloned().ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// ListTransactions: every transaction this broker coordinates.
    pub(crate) fn list(&self) -> Vec<Described> {
        let inner = self.lock();
        let mut out: Vec<Described> = inner
            .txns
            .iter()
            .map(|(id, meta)| Described { transactional_id: id.clone(), meta: meta.clone() })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

/// Replays a `__transaction_state` partition: the last value of each id wins.
fn read_partition(local: &Partition) -> Result<HashMap<String, TxnMeta>, String> {
    let mut txns = HashMap::new();
    local
        .replay(&mut |h, raw| {
            if h.is_control() {
                return;
            }
            let Ok(recs) = record::body::decode(h, raw) else {
                tracing::warn!(offset = h.base_offset, "skipping an unreadable __transaction_state batch");
                return;
            };
            for r in &recs.list {
                let Some(id) = recs.key(r).and_then(|k| records::decode_key(&k).ok()) else { continue };
                match recs.value(r).map(|v| records::decode_value(&v)) {
                    None => {
                        txns.remove(&id);
                    }
                    Some(Ok(meta)) => {
                        txns.insert(id, meta);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(transactional_id = %id, error = %e, "skipping a transaction state record")
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(txns)
}
