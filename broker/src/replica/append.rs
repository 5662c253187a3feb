//! The one write path to a leader's log and its completion (Kafka's
//! `ReplicaManager.appendRecords` with `DelayedProduce`).
//!
//! [`ReplicaManager::append_to_leader`] validates the records, checks leadership (and
//! `min.insync.replicas` for acks=all) and appends under the partition's role lock; it is
//! synchronous, so a caller holding its own lock (the group coordinator) keeps the order of
//! its decisions in the log. It returns a [`Pending`] that [`ReplicaManager::complete`]
//! resolves under the rule in [`super::durability`]: nothing, the ISR, and/or the flush.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tributary_common::ids::{BrokerId, TopicPartition};

use super::durability::{self, Acks, Required};
use super::partition::{AppendError, Appended, Key, Partition};
use super::purgatory::any_moved;
use super::ReplicaManager;
use crate::log::{self, AppendInfo, ReplicaAppendError};
use crate::record::checks::{self, Fault, RecordRules};
use crate::record::{self as batch, BatchError, BatchHeader};
use crate::topic_config::TopicConfig;

/// Who writes: decides the checks a write passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A producer: one batch per partition, internal topics refused, idempotent sequence
    /// checks, the topic's timestamp type.
    Client,
    /// One of this broker's coordinators writing its own records (group metadata and
    /// offsets in `__consumer_offsets`).
    Coordinator,
}

/// A leader write waiting to be complete.
#[derive(Clone)]
pub(crate) struct Pending {
    partition: Arc<Partition>,
    demotions: u64,
    last_offset: i64,
    acks: Acks,
    required: Required,
}

impl Pending {
    /// Whether completing it waits for anything (the ISR or the flush).
    pub(crate) fn waits(&self) -> bool {
        self.required.replication || self.required.flush
    }
}

/// What [`ReplicaManager::append_to_leader`] wrote.
#[derive(Clone)]
pub(crate) struct Written {
    /// New offsets, or a retried batch's original ones.
    pub(crate) appended: Appended,
    /// The partition's log start offset after the write.
    pub(crate) log_start_offset: i64,
    /// What completing it waits for.
    pub(crate) pending: Pending,
}

/// Why a written record cannot be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CompletionError {
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
    /// The flush failed: KAFKA_STORAGE_ERROR.
    #[error(transparent)]
    Storage(#[from] log::Error),
}

impl Pending {
    /// The last offset the write covers.
    pub(crate) fn last_offset(&self) -> i64 {
        self.last_offset
    }
}

/// The records of a client's batch that its topic refuses (Kafka's LogValidator, KIP-467):
/// keyless ones on a compacted topic, timestamps outside `message.timestamp.before.max.ms` /
/// `after.max.ms`. The batch is not written and the answer names each record, so the client
/// fails exactly those. Records are read only when a check needs them.
fn refuse_records(
    tp: &TopicPartition,
    batches: &[(BatchHeader, Bytes)],
    config: &TopicConfig,
    now: i64,
) -> Result<(), BatchError> {
    let (before_max_ms, after_max_ms) = config.timestamp_limits.bounds();
    let rules = RecordRules { compact: config.compact, create_time: !config.log_append_time, before_max_ms, after_max_ms };
    for (h, b) in batches.iter().filter(|(h, _)| !h.is_control() && rules.reads_records(h)) {
        let records = crate::record::body::decode(h, b)?;
        let faults = checks::faults(tp, h, &records, &rules, now);
        if !faults.is_empty() {
            let timestamps = faults.iter().any(|(_, f, _)| *f == Fault::Timestamp);
            let errors = faults.into_iter().map(|(i, _, m)| (i, m)).collect();
            return Err(BatchError::Records { timestamps, errors });
        }
    }
    Ok(())
}

impl ReplicaManager {
    /// Appends `records` to the partition this broker leads: the one way to write as leader.
    ///
    /// # Errors
    /// [`AppendError`]: nothing was written.
    pub(crate) fn append_to_leader(
        &self,
        tp: &TopicPartition,
        origin: Origin,
        records: &Bytes,
        acks: Acks,
    ) -> Result<Written, AppendError> {
        if origin == Origin::Client && tributary_common::topic::is_internal(&tp.topic) {
            return Err(AppendError::InternalTopic(tp.topic.clone()));
        }
        let partition = self.leader_partition(tp, -1)?;
        let config = partition.config();
        let batches = batch::validate(records, config.max_message_bytes)?;
        if origin == Origin::Client && batches.len() != 1 {
            return Err(AppendError::BatchCount(batches.len()));
        }
        // One clock read per client write: the timestamp bounds and LogAppendTime use it.
        let now = (origin == Origin::Client).then(tributary_common::time::now_ms);
        if let Some(now) = now {
            // Markers are the transaction coordinator's to write (Kafka: "Clients are not
            // allowed to write control records"); a forged one would end another producer's
            // transaction.
            if let Some((h, _)) = batches.iter().find(|(h, _)| h.is_control()) {
                return Err(BatchError::Invalid(format!(
                    "control batch at offset {} from a client: transaction markers are written only by the transaction coordinator",
                    h.base_offset
                ))
                .into());
            }
            refuse_records(tp, &batches, &config, now)?;
        }
        let log_append_time = now.filter(|_| config.log_append_time);
        let demotions = partition.demotions();
        let (appended, isr_len) =
            partition.append_as_leader(&batches, acks == Acks::All, origin == Origin::Client, log_append_time)?;
        if matches!(appended, Appended::New(_)) {
            self.note_appended(&batches);
        }
        let pending = Pending {
            last_offset: appended.last_offset(),
            demotions,
            acks,
            required: durability::required(acks, isr_len, config.flush_every_message),
            partition: partition.clone(),
        };
        Ok(Written { appended, log_start_offset: partition.log().offsets().log_start_offset, pending })
    }

    /// Appends batches a follower fetched from `leader` at `leader_epoch`, if that is still
    /// this replica's view; `Ok(None)` when leadership changed meanwhile and they were
    /// dropped. The one way to write as follower.
    ///
    /// # Errors
    /// Log errors (including batches that do not follow the log end).
    pub(crate) fn append_as_follower(
        &self,
        partition: &Partition,
        leader: BrokerId,
        leader_epoch: i32,
        batches: &[(BatchHeader, Bytes)],
    ) -> Result<Option<AppendInfo>, ReplicaAppendError> {
        let info = partition.append_as_follower(leader, leader_epoch, batches)?;
        if info.is_some() {
            self.note_appended(batches);
        }
        Ok(info)
    }

    fn note_appended(&self, batches: &[(BatchHeader, Bytes)]) {
        let records = batches.iter().map(|(h, _)| h.record_count as u64).sum();
        self.store.note_appended(records, batches.iter().map(|(_, b)| b.len() as u64).sum());
    }

    /// Holds a writer while the log store's write backlog is over its bound (see
    /// `log::flush`): produce calls it before releasing its connection (and for acks=0),
    /// the replica fetcher after each fetch, and [`Self::complete`] for every write that
    /// does not wait for a flush.
    pub(crate) async fn pace(&self) {
        self.store.pace().await;
    }

    /// Waits until each write is complete under the durability rule, or `timeout`; one
    /// result per write, in order. Writes needing a flush share one flush, run alongside
    /// the replication waits; the others wait for one only while the store's write backlog
    /// is over its bound.
    ///
    /// # Cancel safety
    /// Cancel-safe: the records stay written; only the confirmation is lost.
    pub(crate) async fn complete(&self, pending: &[Pending], timeout: Duration) -> Vec<Result<(), CompletionError>> {
        let deadline = Instant::now() + timeout;
        let flush_first = pending.iter().any(|p| p.required.flush);
        let flush = async {
            if flush_first {
                self.store.flush().await
            } else {
                self.store.pace().await;
                Ok(())
            }
        };
        let replicated = async {
            let mut results = Vec::with_capacity(pending.len());
            for p in pending {
                results.push(if p.required.replication { self.wait_replicated(p, deadline).await } else { Ok(()) });
            }
            results
        };
        let (mut flushed, mut results) = tokio::join!(flush, replicated);
        // An ISR that shrank to this leader alone during the wait leaves its copy the only one.
        // Only acks=all writes can need it, so acks=1 requests read no role here.
        let flush_now = || {
            pending.iter().zip(&results).any(|(p, r)| {
                p.acks == Acks::All && r.is_ok() && {
                    let role = p.partition.role();
                    durability::required(p.acks, role.isr.len(), role.config.flush_every_message).flush
                }
            })
        };
        if flushed.is_ok() && !flush_first && flush_now() {
            flushed = self.store.flush().await;
        }
        if let Err(e) = flushed {
            // Nothing that needed the flush can be called durable.
            for (p, r) in pending.iter().zip(results.iter_mut()) {
                if r.is_ok() && p.acks == Acks::All {
                    *r = Err(CompletionError::Storage(e.clone()));
                }
            }
        }
        results
    }

    /// Waits until the high watermark passes the write's last offset, parked on the
    /// partition's own purgatory key. Leader epoch bumps that keep this broker leader (the
    /// controller removing a dead follower from the ISR) do not fail the wait, as Kafka's
    /// DelayedProduce does not; losing leadership in between does.
    async fn wait_replicated(&self, p: &Pending, deadline: Instant) -> Result<(), CompletionError> {
        let key = p.partition.progress(Key::HighWatermark);
        loop {
            let seen = [(key, key.version())];
            let (leader, isr, min_isr) = p.partition.isr_view();
            if leader != self.broker_id || p.partition.demotions() != p.demotions {
                return Err(CompletionError::NotLeader { leader });
            }
            if p.partition.high_watermark() > p.last_offset {
                if isr < min_isr {
                    return Err(CompletionError::NotEnoughReplicasAfterAppend { isr, min: min_isr });
                }
                return Ok(());
            }
            tokio::select! {
                _ = any_moved(&seen) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(CompletionError::TimedOut { isr: p.partition.role().isr });
                }
            }
        }
    }
}
