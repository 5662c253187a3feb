//! Partition logs stored in sled.
//!
//! One sled database per broker (`log.dirs`). A partition's log is a run of sled trees,
//! each holding a few consecutive batches ([`chunks`]: that is what keeps sled from
//! writing every batch three times). A tree maps the big-endian base offset of each record
//! batch to the batch bytes exactly as they are served, so a fetch from offset `o` is one
//! reverse seek (the batch holding `o`) plus forward range reads. Whole batches are the
//! unit of storage because sled is fast with values of tens of KiB and slow with
//! per-record keys (see MEASUREMENTS.md).
//!
//! Per-partition metadata (topic id, log start offset, recovery point, leader-epoch cache)
//! lives in the `partition-meta` tree. On open, batches after the recovery point are
//! re-validated (CRC, contiguous offsets) and anything torn or out of place is cut off.
//!
//! Opening does not read what it can trust: closed chunks below both the recovery point
//! and the partition's producer-state snapshot (kept here as opaque bytes in the
//! `producer-snapshots` tree for the replica layer, taken at each checkpoint, Kafka's
//! `.snapshot` files) are taken from their summaries ([`chunks::Summary`]); only the rest
//! is walked, and only batches from the snapshot's offset on are reported to
//! [`Rebuild`].
//!
//! Durability: appends land in sled's in-memory log; [`LogStore::flush`] makes everything
//! appended so far durable (write + fsync), shared by every caller waiting at that moment
//! (group commit). Produce with acks=all waits for it.

mod chunks;
pub(crate) mod cleaner;
mod compact;
mod flush;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tributary_common::ids::{TopicId, TopicPartition};

use self::chunks::Chunks;
pub(crate) use self::chunks::Roll;
pub(crate) use self::compact::{CleanLimits, CleanerStatus, ProducerView};
pub(crate) use self::flush::FlushPolicy;
use crate::record::control::Marker;
use crate::record::{self as batch, BatchHeader};

/// Storage errors.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// sled failed; the disk may be full or the data directory damaged.
    #[error("storage failure in {what}: {reason}")]
    Storage {
        /// What was being done.
        what: String,
        /// sled's error.
        reason: String,
    },
    /// The offset lies outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}] for {tp}")]
    OffsetOutOfRange {
        /// Partition.
        tp: TopicPartition,
        /// Asked offset.
        offset: i64,
        /// First retained offset.
        log_start_offset: i64,
        /// Next offset to be written.
        log_end_offset: i64,
    },
}

fn storage(what: impl Into<String>) -> impl FnOnce(sled::Error) -> Error {
    let what = what.into();
    move |e| Error::Storage { what, reason: e.to_string() }
}

/// sled segment size; see [`LogStore::open`].
const SEGMENT_SIZE: usize = 8 << 20;

/// Everything about one partition that is not batch data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct PartitionMeta {
    topic_id: Option<String>,
    log_start_offset: i64,
    recovery_point: i64,
    /// (leader epoch, first offset written in it), ascending.
    epochs: Vec<(i32, i64)>,
    /// The last checkpointed high watermark (Kafka's replication-offset-checkpoint).
    high_watermark: i64,
    /// The log cleaner's position: everything below was compacted at least once (Kafka's
    /// cleaner-offset-checkpoint).
    first_dirty: i64,
    /// Completed cleaning passes, (position after the pass, when): tombstones' clocks.
    cleaned: Vec<(i64, i64)>,
    /// When the first tombstone kept by the last pass outlives `delete.retention.ms`.
    tombstones_due_ms: Option<i64>,
}

/// Whoever rebuilds state from a partition's batches as it opens (the replica layer's
/// producer state).
pub(crate) trait Rebuild {
    /// Offered the snapshot stored with the log (see [`PartitionLog::save_snapshot`]),
    /// taken when the log ended at `offset`; returns whether it took it. When it does,
    /// batches below `offset` are not reported.
    fn snapshot(&mut self, offset: i64, raw: &[u8]) -> bool;
    /// Recovery cut the log below the offset of the snapshot taken: start again from
    /// nothing (every kept batch is reported again).
    fn discard_snapshot(&mut self);
    /// A kept batch's header, in offset order, with the marker of a control batch.
    fn batch(&mut self, h: &BatchHeader, marker: Option<Marker>);
}

/// A [`Rebuild`] that takes no snapshot and hands every batch to a closure (tests).
#[cfg(test)]
pub(crate) struct EachBatch<F>(F);

/// Every batch to `f`.
#[cfg(test)]
pub(crate) fn each_batch<F: FnMut(&BatchHeader, Option<Marker>)>(f: F) -> EachBatch<F> {
    EachBatch(f)
}

#[cfg(test)]
impl<F: FnMut(&BatchHeader, Option<Marker>)> Rebuild for EachBatch<F> {
    fn snapshot(&mut self, _: i64, _: &[u8]) -> bool {
        false
    }
    fn discard_snapshot(&mut self) {}
    fn batch(&mut self, h: &BatchHeader, marker: Option<Marker>) {
        (self.0)(h, marker)
    }
}

/// The sled database holding every partition of this broker.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: sled::Db,
    meta: sled::Tree,
    /// Producer-state snapshots, by partition tree name: big-endian offset, then the bytes.
    snapshots: sled::Tree,
    flusher: flush::Flusher,
    /// Size of sled's list of trees (see [`chunks`]).
    listed_bytes: Arc<AtomicU64>,
}

impl LogStore {
    /// Opens (or creates) the store under `dir`.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory.
    pub(crate) fn open(dir: &Path, policy: FlushPolicy) -> Result<LogStore, Error> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            // sled writes any value larger than a quarter of a segment to a file of its own,
            // synchronously inside `insert`: with the default 512 KiB segments that is every
            // producer batch over 128 KiB (librdkafka's default batch.size is 1 MB). 8 MiB
            // segments keep batches up to 2 MiB (above message.max.bytes) in the log.
            .segment_size(SEGMENT_SIZE)
            .flush_every_ms(flush::sled_flush_period(policy.interval_ms))
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(storage(format!("opening {}", dir.display())))?;
        let meta = db.open_tree("partition-meta").map_err(storage("opening partition-meta"))?;
        let snapshots = db.open_tree("producer-snapshots").map_err(storage("opening producer-snapshots"))?;
        let flusher = flush::Flusher::start(db.clone(), policy);
        let listed_bytes = Arc::new(AtomicU64::new(db.tree_names().iter().map(|n| chunks::listed(n)).sum()));
        Ok(LogStore { db, meta, snapshots, flusher, listed_bytes })
    }

    fn tree_name(tp: &TopicPartition) -> String {
        format!("log/{}/{}", tp.topic, tp.partition)
    }

    /// Bytes sled uses on disk (`None` when its files cannot be read). Walks the store's
    /// directory: call it off the async workers.
    pub(crate) fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    /// Partitions with data here, with the topic id each was created for.
    pub(crate) fn local_partitions(&self) -> Vec<(TopicPartition, Option<TopicId>)> {
        let mut out = Vec::new();
        for entry in self.meta.iter().flatten() {
            let name = String::from_utf8_lossy(&entry.0).to_string();
            let Some(rest) = name.strip_prefix("log/") else { continue };
            let Some((topic, partition)) = rest.rsplit_once('/') else { continue };
            let Ok(partition) = partition.parse() else { continue };
            let meta: PartitionMeta = serde_json::from_slice(&entry.1).unwrap_or_default();
            out.push((TopicPartition::new(topic, partition), meta.topic_id.as_deref().and_then(TopicId::parse)));
        }
        out
    }

    /// Opens a partition's log, creating it for `topic_id` if absent, and recovers its tail.
    /// A log left from an older topic of the same name (another topic id) is deleted first.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    #[cfg(test)]
    pub(crate) fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: Option<TopicId>,
    ) -> Result<Arc<PartitionLog>, Error> {
        self.open_partition_observing(tp, topic_id, &mut each_batch(|_, _| {}))
    }

    /// [`LogStore::open_partition`], offering `rebuild` the stored snapshot and then the
    /// header of every batch the recovered log keeps after it (with the transaction marker
    /// of a control batch), in offset order, from the same walk that checks them (so that
    /// opening reads the log at most once, not again for producer state).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn open_partition_observing(
        &self,
        tp: &TopicPartition,
        topic_id: Option<TopicId>,
        rebuild: &mut dyn Rebuild,
    ) -> Result<Arc<PartitionLog>, Error> {
        let name = Self::tree_name(tp);
        let mut meta: PartitionMeta = match self.meta.get(&name).map_err(storage("reading partition meta"))? {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => PartitionMeta::default(),
        };
        let wanted = topic_id.map(|id| id.to_string());
        if meta.topic_id.is_some() && wanted.is_some() && meta.topic_id != wanted {
            tracing::warn!(%tp, old = ?meta.topic_id, new = ?wanted, "local log belongs to an older topic of the same name; deleting it");
            self.delete_partition(tp)?;
            meta = PartitionMeta::default();
        }
        if wanted.is_some() {
            meta.topic_id = wanted;
        }
        let (chunks, summaries) = Chunks::open(self.db.clone(), name.clone(), self.listed_bytes.clone())?;
        let snapshot = read_snapshot(&self.snapshots, &name, tp)?;
        let stores = Stores { meta: self.meta.clone(), snapshots: self.snapshots.clone() };
        let log = PartitionLog::recover(tp.clone(), chunks, summaries, stores, name, meta, snapshot, rebuild)?;
        Ok(Arc::new(log))
    }

    /// Deletes a partition's data and metadata.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn delete_partition(&self, tp: &TopicPartition) -> Result<(), Error> {
        let name = Self::tree_name(tp);
        self.snapshots.remove(&name).map_err(storage(format!("deleting the producer snapshot of {tp}")))?;
        chunks::drop_all(&self.db, &name, &self.listed_bytes)?;
        self.meta.remove(&name).map_err(storage(format!("deleting meta of {tp}")))?;
        Ok(())
    }

    /// Makes every append made before this call durable; concurrent callers share one flush.
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush fails.
    pub(crate) async fn flush(&self) -> Result<(), Error> {
        self.flusher.flush().await
    }

    /// Applies new `log.flush.interval.*` settings (a dynamic broker config change).
    pub(crate) fn set_flush_policy(&self, policy: FlushPolicy) {
        self.flusher.set_policy(policy);
    }

    /// Counts appended records and bytes, for `log.flush.interval.messages` and the write
    /// backlog (see [`flush`]).
    pub(crate) fn note_appended(&self, records: u64, bytes: u64) {
        self.flusher.note_appended(records, bytes);
    }

    /// Waits for a flush while more than [`flush::MAX_BACKLOG_BYTES`] are appended and not
    /// yet on disk, so writers run at most that far ahead of it.
    pub(crate) async fn pace(&self) {
        self.flusher.pace().await;
    }

    /// Flushes everything and stops the flush task (shutdown). sled's files are released
    /// when the last handle to the store is dropped.
    pub(crate) async fn close(&self) {
        self.flusher.stop().await;
    }
}

/// Mutable offsets of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Offsets {
    /// First retained offset.
    pub log_start_offset: i64,
    /// Next offset to be written.
    pub log_end_offset: i64,
    /// Bytes of batch data held.
    pub size_bytes: u64,
}

/// Why a replicated append was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum ReplicaAppendError {
    /// A batch starts below this log's end (or its predecessor's end).
    #[error("{tp}: replicated batch at offset {base_offset} starts below the log end {log_end_offset}")]
    NotContiguous {
        /// Partition.
        tp: TopicPartition,
        /// First offset offered.
        base_offset: i64,
        /// This log's end.
        log_end_offset: i64,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] Error),
}

struct LogState {
    offsets: Offsets,
    meta: PartitionMeta,
    chunks: Chunks,
    /// When the open chunk closes besides its size rule (`segment.bytes`, `segment.ms`).
    roll: Roll,
    /// Truncations so far: a checkpoint taken before one must not be stored after it.
    truncations: u64,
}

/// A log end taken for a checkpoint (before a flush), with the truncation count then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Point {
    /// The log end.
    pub offset: i64,
    truncations: u64,
}

impl Point {
    /// Whether everything below it is still what it was when taken.
    fn holds(&self, state: &LogState) -> bool {
        state.truncations == self.truncations && self.offset <= state.offsets.log_end_offset
    }
}

/// What an append assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppendInfo {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The broker time stamped into the batch, for LogAppendTime topics.
    pub log_append_time: Option<i64>,
}

/// The store-wide trees a partition log writes its own entries in.
struct Stores {
    meta: sled::Tree,
    snapshots: sled::Tree,
}

/// The snapshot stored for partition tree `name`: (the offset it was taken at, its bytes).
fn read_snapshot(snapshots: &sled::Tree, name: &str, tp: &TopicPartition) -> Result<Option<(i64, Vec<u8>)>, Error> {
    let stored = snapshots.get(name.as_bytes()).map_err(storage(format!("reading the producer snapshot of {tp}")))?;
    Ok(stored.filter(|raw| raw.len() >= 8).map(|raw| (key_offset(&raw[..8]), raw[8..].to_vec())))
}

/// One partition's log.
pub(crate) struct PartitionLog {
    tp: TopicPartition,
    meta_tree: sled::Tree,
    snapshots: sled::Tree,
    meta_key: String,
    state: Mutex<LogState>,
    /// How opening went: chunks taken from summaries, chunks read.
    recovered: (usize, usize),
    /// What the log cleaner last found and did here (for the admin API).
    cleaner: Mutex<CleanerStatus>,
}

fn key(offset: i64) -> [u8; 8] {
    (offset as u64).to_be_bytes()
}

/// The transaction marker a control batch holds.
fn marker_in(h: &BatchHeader, v: &[u8]) -> Option<Marker> {
    h.is_control().then(|| batch::control::marker_of(h, &Bytes::copy_from_slice(v))).flatten()
}

fn key_offset(k: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&k[..8]);
    u64::from_be_bytes(a) as i64
}

impl PartitionLog {
    #[allow(clippy::too_many_arguments)]
    fn recover(
        tp: TopicPartition,
        mut chunks: Chunks,
        summaries: BTreeMap<i64, chunks::Summary>,
        stores: Stores,
        meta_key: String,
        mut meta: PartitionMeta,
        snapshot: Option<(i64, Vec<u8>)>,
        rebuild: &mut dyn Rebuild,
    ) -> Result<PartitionLog, Error> {
        // A snapshot is only trusted below the recovery point: everything before it was
        // flushed (with the snapshot) and checked before.
        let snapshot_at = snapshot
            .filter(|(at, _)| *at <= meta.recovery_point)
            .and_then(|(at, raw)| rebuild.snapshot(at, &raw).then_some(at));
        let observe_from = snapshot_at.unwrap_or(i64::MIN);
        let trusted_below = snapshot_at.map_or(i64::MIN, |at| at.min(meta.recovery_point));
        // Closed chunks wholly below that are taken from their summaries; the tail is
        // walked batch by batch and cut at the first batch that is torn, fails its CRC or
        // does not follow on from its predecessor. Only batches that stay are reported.
        let mut size_bytes = 0u64;
        let mut expected: Option<i64> = None;
        let mut cut: Option<(i64, i64)> = None;
        let (mut skipped, mut walked) = (0usize, 0usize);
        let mut read = Vec::new();
        let bases: Vec<i64> = chunks.iter().map(|(base, _)| base).collect();
        let last_base = bases.last().copied();
        'chunks: for base in bases {
            let chunk = chunks.get_mut(base).expect("base listed just before");
            if let Some(s) = summaries.get(&base) {
                if chunks::may_skip(s, Some(base) == last_base, trusted_below, expected) {
                    chunk.take_summary(s);
                    expected = Some(s.end);
                    size_bytes += s.bytes;
                    skipped += 1;
                    continue;
                }
            }
            walked += 1;
            read.push(base);
            for item in chunk.tree.clone().iter() {
                let (k, v) = item.map_err(storage(format!("scanning log of {tp}")))?;
                let offset = key_offset(&k);
                let valid = match BatchHeader::parse(&v) {
                    Some(h) if h.total_len() == v.len() && h.base_offset == offset => {
                        // Offsets only grow; compaction leaves gaps between batches.
                        let follows = expected.is_none_or(|e| offset >= e);
                        let checked = offset < meta.recovery_point
                            || batch::verify_replicated(&Bytes::copy_from_slice(&v)).is_ok();
                        if follows && checked {
                            expected = Some(h.last_offset() + 1);
                            if offset >= observe_from {
                                rebuild.batch(&h, marker_in(&h, &v));
                            }
                            Some(h)
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let Some(h) = valid else {
                    cut = Some((base, offset));
                    break 'chunks;
                };
                if chunk.batches == 0 {
                    chunk.created_ms = h.max_timestamp;
                }
                chunk.took(v.len() as u64, h.last_offset() + 1, h.max_timestamp);
                size_bytes += v.len() as u64;
            }
        }
        if let Some((base, from)) = cut {
            chunks.forget_summary(base)?;
            let chunk = chunks.get_mut(base).expect("cut inside a listed chunk");
            let mut removed = 0;
            for k in chunk.tree.range(key(from)..).keys() {
                let k = k.map_err(storage(format!("truncating log of {tp}")))?;
                chunk.tree.remove(k).map_err(storage(format!("truncating log of {tp}")))?;
                removed += 1;
            }
            let emptied = chunk.batches == 0;
            let later = chunks.iter().filter(|(b, _)| *b > base).count();
            chunks.drop_from(base + 1)?;
            if emptied {
                chunks.drop_chunk(base)?;
            }
            tracing::warn!(%tp, from_offset = from, batches = removed, later_chunks = later, "cut off a torn or invalid tail found during recovery");
        }
        // The last chunk takes appends again: its summary would go stale. Closed chunks read
        // in full get one if they had none or a different one (a log written before
        // summaries existed, or a crash before one was written), so the next open skips them.
        chunks.reopen_last()?;
        for base in read {
            let current = chunks.get_mut(base).map(|c| c.summary(base));
            if current.is_some() && current.as_ref() != summaries.get(&base) {
                chunks.summarize(base)?;
            }
        }
        let first = match chunks.iter().next() {
            Some((_, c)) => c.tree.first().map_err(storage("reading first batch"))?.map(|(k, _)| key_offset(&k)),
            None => None,
        };
        // An empty log (new, or emptied by retention) ends where it starts.
        let log_end_offset = expected.unwrap_or(meta.log_start_offset);
        if snapshot_at.is_some_and(|at| at > log_end_offset) {
            // The cut went below the snapshot: its producers wrote batches that are gone.
            tracing::warn!(%tp, snapshot_offset = observe_from, log_end_offset, "recovery cut the log below its producer-state snapshot; rebuilding producer state from the whole log");
            stores.snapshots.remove(meta_key.as_bytes()).map_err(storage(format!("removing the producer snapshot of {tp}")))?;
            rebuild.discard_snapshot();
            for (_, chunk) in chunks.iter() {
                for item in chunk.tree.iter() {
                    let (_, v) = item.map_err(storage(format!("scanning log of {tp}")))?;
                    if let Some(h) = BatchHeader::parse(&v) {
                        rebuild.batch(&h, marker_in(&h, &v));
                    }
                }
            }
        }
        if let Some(first) = first {
            meta.log_start_offset = meta.log_start_offset.max(first).min(log_end_offset);
        }
        meta.recovery_point = log_end_offset;
        meta.high_watermark = meta.high_watermark.min(log_end_offset);
        meta.first_dirty = meta.first_dirty.min(log_end_offset);
        cleaner::truncate_passes(&mut meta.cleaned, log_end_offset);
        meta.epochs.retain(|(_, start)| *start <= log_end_offset);
        let log = PartitionLog {
            tp,
            meta_tree: stores.meta,
            snapshots: stores.snapshots,
            meta_key,
            state: Mutex::new(LogState {
                offsets: Offsets { log_start_offset: meta.log_start_offset, log_end_offset, size_bytes },
                meta,
                chunks,
                roll: Roll::default(),
                truncations: 0,
            }),
            recovered: (skipped, walked),
            cleaner: Mutex::new(CleanerStatus::default()),
        };
        log.persist_meta(&log.state.lock().expect("log state lock").meta)?;
        Ok(log)
    }

    /// How opening went: (chunks taken from their summaries, chunks read).
    pub(crate) fn recovered(&self) -> (usize, usize) {
        self.recovered
    }

    /// Where the log ends now, for a checkpoint.
    pub(crate) fn end_point(&self) -> Point {
        let state = self.state.lock().expect("log state lock");
        Point { offset: state.offsets.log_end_offset, truncations: state.truncations }
    }

    /// Stores a snapshot of the replica layer's state taken when the log ended at `at`
    /// (opaque here; offered back to [`Rebuild`] on open once it is below the recovery
    /// point). Replaces the previous one. Nothing is stored (`false`) when the log was
    /// truncated since `at` was taken.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn save_snapshot(&self, at: Point, raw: &[u8]) -> Result<bool, Error> {
        let state = self.state.lock().expect("log state lock");
        if !at.holds(&state) {
            return Ok(false);
        }
        let offset = at.offset;
        let mut value = Vec::with_capacity(8 + raw.len());
        value.extend_from_slice(&key(offset));
        value.extend_from_slice(raw);
        self.snapshots
            .insert(self.meta_key.as_bytes(), value)
            .map_err(storage(format!("writing the producer snapshot of {}", self.tp)))?;
        Ok(true)
    }

    /// The stored snapshot, (offset it was taken at, its bytes), if any: after a truncation,
    /// one at or below the cut (see [`Self::truncate_to`]).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn stored_snapshot(&self) -> Result<Option<(i64, Vec<u8>)>, Error> {
        read_snapshot(&self.snapshots, &self.meta_key, &self.tp)
    }

    /// Removes the snapshot if it was taken past `end` (a truncation removed batches it saw).
    fn drop_snapshot_past(&self, end: i64) -> Result<(), Error> {
        if self.stored_snapshot()?.is_some_and(|(at, _)| at > end) {
            self.snapshots
                .remove(self.meta_key.as_bytes())
                .map_err(storage(format!("removing the producer snapshot of {}", self.tp)))?;
        }
        Ok(())
    }

    fn persist_meta(&self, meta: &PartitionMeta) -> Result<(), Error> {
        let raw = serde_json::to_vec(meta).expect("partition meta is plain JSON");
        self.meta_tree
            .insert(self.meta_key.as_bytes(), raw)
            .map_err(storage(format!("writing meta of {}", self.tp)))?;
        Ok(())
    }

    /// Stores one batch at `offset` (the log end; `end` one past its last offset), in a new
    /// chunk if the last is full or due to roll. A crash part-way through a multi-batch
    /// append leaves a prefix, which recovery accepts.
    fn insert(
        &self,
        state: &mut LogState,
        offset: i64,
        end: i64,
        max_timestamp: i64,
        value: sled::IVec,
    ) -> Result<(), Error> {
        let roll = state.roll;
        let chunk = state.chunks.for_append(offset, tributary_common::time::now_ms(), roll)?;
        let len = value.len() as u64;
        let started = std::time::Instant::now();
        chunk.tree.insert(key(offset), value).map_err(storage(format!("appending to {}", self.tp)))?;
        crate::metrics::METRICS.appended(started.elapsed());
        chunk.took(len, end, max_timestamp);
        Ok(())
    }

    /// Sets when the open chunk closes (`segment.bytes`, `segment.ms`; see [`Roll`]).
    pub(crate) fn set_roll(&self, roll: Roll) {
        self.state.lock().expect("log state lock").roll = roll;
    }

    /// The stored batches starting in `[from, upper)`, in offset order, read from the
    /// chunks as they were when called.
    fn scan(&self, from: i64, upper: i64) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>> {
        let trees = self.state.lock().expect("log state lock").chunks.covering(from, upper);
        let (low, high) = (key(from.max(0)), key(upper.max(0)));
        trees.into_iter().flat_map(move |tree| tree.range(low..high))
    }

    /// A failed read: out of range when retention removed the offset meanwhile (its chunk
    /// may have been dropped under the reader), a storage failure otherwise.
    fn read_error(&self, offset: i64, e: sled::Error) -> Error {
        let offsets = self.offsets();
        if offset < offsets.log_start_offset {
            return Error::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                log_start_offset: offsets.log_start_offset,
                log_end_offset: offsets.log_end_offset,
            };
        }
        storage(format!("reading {}", self.tp))(e)
    }

    /// Current offsets.
    pub(crate) fn offsets(&self) -> Offsets {
        self.state.lock().expect("log state lock").offsets.clone()
    }

    /// Appends validated batches, assigning offsets and stamping the leader epoch.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails; nothing is acknowledged then.
    pub(crate) fn append(
        &self,
        batches: &[(BatchHeader, Bytes)],
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<AppendInfo, Error> {
        let mut state = self.state.lock().expect("log state lock");
        let base_offset = state.offsets.log_end_offset;
        let mut next = base_offset;
        let mut added = 0u64;
        for (header, bytes) in batches {
            // One copy, into the value sled keeps; the leader's fields are stamped there.
            let mut value = sled::IVec::from(bytes.as_ref());
            batch::stamp_in_place(&mut value, next, leader_epoch, log_append_time);
            added += value.len() as u64;
            let end = next + i64::from(header.last_offset_delta) + 1;
            self.insert(&mut state, next, end, log_append_time.unwrap_or(header.max_timestamp), value)?;
            next = end;
        }
        if state.meta.epochs.last().is_none_or(|(e, _)| *e < leader_epoch) {
            state.meta.epochs.push((leader_epoch, base_offset));
            self.persist_meta(&state.meta)?;
        }
        state.offsets.log_end_offset = next;
        state.offsets.size_bytes += added;
        drop(state);
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_append_time })
    }

    /// Appends batches fetched from the leader exactly as they are (offsets and leader epochs
    /// already assigned), extending the epoch cache from their `partitionLeaderEpoch`.
    ///
    /// # Errors
    /// [`ReplicaAppendError::NotContiguous`] when a batch starts below the log end or its
    /// predecessor's end (gaps, left by the leader's cleaner, are kept);
    /// [`ReplicaAppendError::Storage`] when sled fails.
    pub(crate) fn append_replicated(&self, batches: &[(BatchHeader, Bytes)]) -> Result<AppendInfo, ReplicaAppendError> {
        let mut state = self.state.lock().expect("log state lock");
        let base_offset = state.offsets.log_end_offset;
        let mut next = base_offset;
        let mut added = 0u64;
        let mut epochs_changed = false;
        for (header, bytes) in batches {
            // Offsets only grow; a compacted leader's log has gaps, which the copy keeps.
            if header.base_offset < next {
                return Err(ReplicaAppendError::NotContiguous {
                    tp: self.tp.clone(),
                    base_offset: header.base_offset,
                    log_end_offset: next,
                });
            }
            if state.meta.epochs.last().is_none_or(|(e, _)| *e < header.partition_leader_epoch) {
                state.meta.epochs.push((header.partition_leader_epoch, header.base_offset));
                epochs_changed = true;
            }
            added += bytes.len() as u64;
            next = header.last_offset() + 1;
            self.insert(&mut state, header.base_offset, next, header.max_timestamp, sled::IVec::from(bytes.as_ref()))?;
        }
        if epochs_changed {
            self.persist_meta(&state.meta)?;
        }
        state.offsets.log_end_offset = next;
        state.offsets.size_bytes += added;
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_append_time: None })
    }

    /// Removes every batch holding an offset at or after `offset` (a batch straddling it
    /// goes whole, so the log end may end up below `offset`), with the epoch-cache entries
    /// that start there. Returns the new log end offset.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<i64, Error> {
        let mut state = self.state.lock().expect("log state lock");
        if offset >= state.offsets.log_end_offset {
            return Ok(state.offsets.log_end_offset);
        }
        let mut cut = offset.max(state.offsets.log_start_offset);
        if let Some((_, chunk)) = state.chunks.holding(cut) {
            if let Some(item) = chunk.tree.range(..=key(cut)).next_back() {
                let (k, v) = item.map_err(storage(format!("truncating {}", self.tp)))?;
                if BatchHeader::parse(&v).is_some_and(|h| h.last_offset() >= cut) {
                    cut = key_offset(&k);
                }
            }
        }
        state.truncations += 1;
        self.drop_snapshot_past(cut)?;
        let mut removed = state.chunks.drop_from(cut)?;
        // The chunk holding the cut is now the last: it takes appends again.
        state.chunks.reopen_last()?;
        if let Some((base, _)) = state.chunks.holding(cut) {
            let chunk = state.chunks.get_mut(base).expect("chunk just found");
            for item in chunk.tree.clone().range(key(cut)..) {
                let (k, v) = item.map_err(storage(format!("truncating {}", self.tp)))?;
                chunk.tree.remove(k).map_err(storage(format!("truncating {}", self.tp)))?;
                removed += v.len() as u64;
                chunk.batches -= 1;
                chunk.bytes -= v.len() as u64;
            }
        }
        state.offsets.log_end_offset = cut;
        state.offsets.size_bytes = state.offsets.size_bytes.saturating_sub(removed);
        state.meta.epochs.retain(|(_, start)| *start < cut);
        state.meta.recovery_point = state.meta.recovery_point.min(cut);
        state.meta.high_watermark = state.meta.high_watermark.min(cut);
        state.meta.first_dirty = state.meta.first_dirty.min(cut);
        cleaner::truncate_passes(&mut state.meta.cleaned, cut);
        self.persist_meta(&state.meta)?;
        Ok(cut)
    }

    /// Empties the log and restarts it at `offset` (a follower that fell behind the
    /// leader's log start).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), Error> {
        let mut state = self.state.lock().expect("log state lock");
        state.truncations += 1;
        self.drop_snapshot_past(i64::MIN)?;
        state.chunks.drop_from(i64::MIN)?;
        state.offsets = Offsets { log_start_offset: offset, log_end_offset: offset, size_bytes: 0 };
        state.meta.log_start_offset = offset;
        state.meta.recovery_point = offset;
        state.meta.high_watermark = offset;
        state.meta.first_dirty = offset;
        state.meta.cleaned.clear();
        state.meta.epochs.clear();
        self.persist_meta(&state.meta)?;
        Ok(())
    }

    /// The latest leader epoch in the epoch cache.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.state.lock().expect("log state lock").meta.epochs.last().map(|(e, _)| *e)
    }

    /// The offset where `epoch` starts, if the cache has it.
    pub(crate) fn epoch_start_offset(&self, epoch: i32) -> Option<i64> {
        let state = self.state.lock().expect("log state lock");
        state.meta.epochs.iter().find(|(e, _)| *e == epoch).map(|(_, start)| *start)
    }

    /// The high watermark checkpointed last, capped at the log end.
    pub(crate) fn checkpointed_high_watermark(&self) -> i64 {
        let state = self.state.lock().expect("log state lock");
        state.meta.high_watermark.clamp(state.offsets.log_start_offset, state.offsets.log_end_offset)
    }

    /// Every batch header from `from` on, with the marker of each control batch, in offset
    /// order (rebuilding producer and transaction state).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn headers_from(&self, from: i64) -> Result<Vec<(BatchHeader, Option<Marker>)>, Error> {
        let mut out = Vec::new();
        for item in self.scan(from, i64::MAX) {
            let (_, v) = item.map_err(storage(format!("scanning {}", self.tp)))?;
            if let Some(h) = BatchHeader::parse(&v) {
                let marker = marker_in(&h, &v);
                out.push((h, marker));
            }
        }
        Ok(out)
    }

    /// Records that a new leader epoch starts at the current log end (called when this
    /// broker becomes leader, as Kafka's `makeLeader` does), so OffsetForLeaderEpoch can
    /// answer for it before anything is written.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn assign_epoch(&self, leader_epoch: i32) -> Result<(), Error> {
        let mut state = self.state.lock().expect("log state lock");
        if state.meta.epochs.last().is_none_or(|(e, _)| *e < leader_epoch) {
            let start = state.offsets.log_end_offset;
            state.meta.epochs.push((leader_epoch, start));
            self.persist_meta(&state.meta)?;
        }
        Ok(())
    }

    /// Records that everything below `at` is durable, so recovery need not re-check it
    /// (unless the log was truncated since `at` was taken: what is there now may not be).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn set_recovery_point(&self, at: Point) -> Result<(), Error> {
        let mut state = self.state.lock().expect("log state lock");
        if !at.holds(&state) {
            return Ok(());
        }
        let offset = at.offset;
        if offset > state.meta.recovery_point {
            state.meta.recovery_point = offset;
            self.persist_meta(&state.meta)?;
        }
        Ok(())
    }

    /// Checkpoints the high watermark, so that a restarted replica does not expose records
    /// that were never committed (nor hide ones that were).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn checkpoint_high_watermark(&self, high_watermark: i64) -> Result<(), Error> {
        let mut state = self.state.lock().expect("log state lock");
        if high_watermark != state.meta.high_watermark {
            state.meta.high_watermark = high_watermark;
            self.persist_meta(&state.meta)?;
        }
        Ok(())
    }

    /// Reads whole batches from `offset` up to (not including) `upper`, at most `max_bytes`
    /// except that the first batch is always returned whole (KIP-74).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[log_start_offset, log_end_offset]`;
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize, upper: i64) -> Result<Bytes, Error> {
        let offsets = self.offsets();
        if offset < offsets.log_start_offset || offset > offsets.log_end_offset {
            return Err(Error::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                log_start_offset: offsets.log_start_offset,
                log_end_offset: offsets.log_end_offset,
            });
        }
        let mut out = BytesMut::new();
        if offset >= upper {
            return Ok(out.freeze());
        }
        // The batch holding `offset` starts at or before it, in the chunk holding `offset`.
        let holding = self.state.lock().expect("log state lock").chunks.holding(offset).map(|(_, c)| c.tree.clone());
        let start = match holding.and_then(|tree| tree.range(..=key(offset)).next_back()) {
            Some(Ok((k, v))) => match BatchHeader::parse(&v) {
                Some(h) if h.last_offset() >= offset => key_offset(&k),
                _ => offset,
            },
            Some(Err(e)) => return Err(self.read_error(offset, e)),
            None => offset,
        };
        let mut batches = Vec::new();
        let mut size = 0usize;
        for item in self.scan(start, upper) {
            let (_, v) = item.map_err(|e| self.read_error(offset, e))?;
            if size > 0 && size + v.len() > max_bytes {
                break;
            }
            size += v.len();
            batches.push(v);
            if size >= max_bytes {
                break;
            }
        }
        // One batch (a large producer batch fills a fetch's partition limit) goes out as
        // sled holds it, without a copy; several are joined in one buffer of their size.
        if batches.len() == 1 {
            return Ok(Bytes::from_owner(batches.pop().expect("one batch")));
        }
        out.reserve(size);
        for v in &batches {
            out.extend_from_slice(v);
        }
        Ok(out.freeze())
    }

    /// The first record at or after the log start whose timestamp is at or after
    /// `timestamp`, as (offset, its timestamp): record granularity, as Kafka answers
    /// ListOffsets by time (KIP-79); `None` when every record is older.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn offset_for_timestamp(&self, timestamp: i64, upper: i64) -> Result<Option<(i64, i64)>, Error> {
        let log_start = self.offsets().log_start_offset;
        for item in self.scan(0, upper) {
            let (_, v) = item.map_err(storage(format!("searching {}", self.tp)))?;
            let Some(h) = BatchHeader::parse(&v) else { continue };
            if h.max_timestamp >= timestamp && h.last_offset() >= log_start {
                let batch = Bytes::copy_from_slice(&v);
                if let Some(found) = crate::record::body::first_at_or_after(&h, &batch, timestamp, log_start) {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The first record below `upper` holding the largest timestamp: (offset, timestamp),
    /// as Kafka answers ListOffsets MAX_TIMESTAMP (KIP-734, KAFKA-16310).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn max_timestamp(&self, upper: i64) -> Result<Option<(i64, i64)>, Error> {
        let log_start = self.offsets().log_start_offset;
        let mut best: Option<(i64, i64)> = None;
        for item in self.scan(0, upper) {
            let (_, v) = item.map_err(storage(format!("searching {}", self.tp)))?;
            let Some(h) = BatchHeader::parse(&v) else { continue };
            // Only a batch with a larger timestamp changes the answer: the first record
            // holding the largest timestamp wins ties.
            if h.last_offset() >= log_start && best.is_none_or(|(_, ts)| h.max_timestamp > ts) {
                let batch = Bytes::copy_from_slice(&v);
                if let Some(found) = crate::record::body::offset_of_max_timestamp(&h, &batch, log_start) {
                    if best.is_none_or(|(_, ts)| found.1 > ts) {
                        best = Some(found);
                    }
                }
            }
        }
        Ok(best)
    }

    /// OffsetForLeaderEpoch: the largest epoch ≤ `epoch` and the offset where it ended (the
    /// start of the next epoch, or the log end for the latest). `None` when `epoch` predates
    /// everything known.
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.state.lock().expect("log state lock");
        let epochs = &state.meta.epochs;
        let idx = epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = epochs.get(idx + 1).map(|(_, start)| *start).unwrap_or(state.offsets.log_end_offset);
        Some((epochs[idx].0, end))
    }

    /// Deletes whole batches from the front while they are older than `retention_ms` or the
    /// log is larger than `retention_bytes` (negative disables a limit). The newest batch is
    /// never deleted by time, so the log end stays readable. A chunk that goes entirely is
    /// dropped as a whole. Returns how many batches were deleted.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
        upper: i64,
    ) -> Result<usize, Error> {
        self.delete_front(upper, |h, size, log_end| {
            let next = h.last_offset() + 1;
            let too_old = retention_ms >= 0 && now_ms - h.max_timestamp > retention_ms && next < log_end;
            let too_big = retention_bytes >= 0 && size > retention_bytes as u64;
            too_old || too_big
        })
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the log end),
    /// deleting the batches that end below it; the batch holding `offset` stays, its
    /// records below the new start no longer readable, as in Kafka. Returns the log start.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn delete_records_before(&self, offset: i64) -> Result<i64, Error> {
        self.delete_front(offset, |_, _, _| true)?;
        let mut state = self.state.lock().expect("log state lock");
        let start = offset.min(state.offsets.log_end_offset).max(state.offsets.log_start_offset);
        if start != state.offsets.log_start_offset {
            state.offsets.log_start_offset = start;
            state.meta.log_start_offset = start;
            self.persist_meta(&state.meta)?;
        }
        Ok(start)
    }

    /// Deletes batches from the front while `doomed(header, log size, log end)` says so and
    /// they end at or below `upper`. Returns how many were deleted.
    fn delete_front(
        &self,
        upper: i64,
        mut doomed_if: impl FnMut(&BatchHeader, u64, i64) -> bool,
    ) -> Result<usize, Error> {
        let failed = || storage(format!("deleting old batches of {}", self.tp));
        let mut deleted = 0;
        loop {
            let mut state = self.state.lock().expect("log state lock");
            let Some((base, chunk)) = state.chunks.iter().next() else { break };
            let last_chunk = state.chunks.len() == 1;
            let (tree, batches) = (chunk.tree.clone(), chunk.batches);
            // The batches at the front of the first chunk that may go, with the log start after each.
            let mut size = state.offsets.size_bytes;
            let mut doomed = Vec::new();
            for item in tree.iter() {
                let (k, v) = item.map_err(failed())?;
                let Some(h) = BatchHeader::parse(&v) else { break };
                let next = h.last_offset() + 1;
                if next > upper || !doomed_if(&h, size, state.offsets.log_end_offset) {
                    break;
                }
                size -= v.len() as u64;
                doomed.push((k, v.len() as u64, next));
            }
            let Some(&(_, _, log_start)) = doomed.last() else { break };
            let whole = doomed.len() == batches && !last_chunk;
            if whole {
                state.chunks.drop_chunk(base)?;
            } else {
                // Its summary goes first, so that a crash part-way leaves none rather than a wrong one.
                state.chunks.forget_summary(base)?;
                let chunk = state.chunks.get_mut(base).expect("first chunk");
                for (k, len, _) in &doomed {
                    chunk.tree.remove(k).map_err(failed())?;
                    chunk.batches -= 1;
                    chunk.bytes -= len;
                }
                state.chunks.summarize(base)?;
            }
            state.offsets.size_bytes = size;
            state.offsets.log_start_offset = state.offsets.log_start_offset.max(log_start);
            state.meta.log_start_offset = state.offsets.log_start_offset;
            self.persist_meta(&state.meta)?;
            deleted += doomed.len();
            if !whole {
                break;
            }
        }
        Ok(deleted)
    }
}

/// How often the retention task runs (`log.retention.check.interval.ms`).
pub(crate) fn retention_interval(ms: u64) -> Duration {
    Duration::from_millis(ms.max(100))
}

#[cfg(test)]
mod tests;
