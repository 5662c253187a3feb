//! One cleaning pass over a compacted partition log (Kafka's `Cleaner.doClean`), by the
//! rules in [`super::cleaner`].
//!
//! 1. **Survey** (under the log's lock, in memory): the chunks' sizes and timestamps give
//!    the clean part, the dirty part and the first uncleanable offset.
//! 2. **Offset map**: the dirty part is read chunk by chunk, each key mapped to its latest
//!    offset, until the map reaches its share of `log.cleaner.dedupe.buffer.size`; the
//!    pass then cleans only up to the end of the last chunk mapped.
//! 3. **Sift**: every batch below that point, from the log start, keeps the records that
//!    are the latest of their key (and tombstones until `delete.retention.ms` after their
//!    first pass). A batch left without records goes, unless it is its idempotent
//!    producer's last or the log's last (then it stays empty). A batch that changes is replaced in its chunk by one compare-and-swap
//!    of its key, under the log's lock for that swap only: offsets never change, readers
//!    see the old batch or the new one, never a mixture, and a crash at any point leaves
//!    a valid log (each batch old or cleaned). Appends, fetches and other partitions never
//!    wait for the cleaner beyond one swap.
//! 4. **Commit**: sled is flushed, then emptied chunks are dropped and the cleaner's
//!    position and the pass (the tombstones' clock) are stored in the partition's meta.
//!    A tombstone can only go in a pass after the one that first covered it, which had
//!    removed (durably) every older value of its key.
//!
//! Reads and writes are paced to `log.cleaner.io.max.bytes.per.second`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::cleaner::{self, ChunkStat, Compaction, Dirt, Fate};
use super::{key, key_offset, storage, Error, LogState, PartitionLog};
use crate::record::{body, BatchHeader};

/// What the last cleaning pass of a log did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct CleanStats {
    /// When it finished (ms since the epoch).
    pub finished_ms: i64,
    /// It cleaned `[log start, upper)`.
    pub upper: i64,
    /// Keys in the dirty part it mapped.
    pub keys: usize,
    /// Bytes of the batches it rewrote or deleted, before.
    pub bytes_before: u64,
    /// The same batches' bytes after.
    pub bytes_after: u64,
    /// Records removed (superseded, keyless or expired tombstones).
    pub records_removed: u64,
    /// Of which expired tombstones.
    pub tombstones_removed: u64,
    /// Transaction markers removed (their transaction's records all gone).
    pub markers_removed: u64,
    /// Batches deleted whole.
    pub batches_deleted: u64,
    /// Chunks dropped because the pass emptied them.
    pub chunks_dropped: u64,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// What the admin API shows of a compacted log's cleaning.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct CleanerView {
    /// The cleaner's position (Kafka's first dirty offset).
    pub first_dirty_offset: i64,
    /// First offset it may not clean yet (open chunk, high watermark, min lag).
    pub first_uncleanable_offset: i64,
    /// Bytes already compacted once.
    pub clean_bytes: u64,
    /// Bytes waiting.
    pub dirty_bytes: u64,
    /// dirty / (clean + dirty).
    pub dirty_ratio: f64,
    /// When the log was last surveyed.
    pub surveyed_ms: i64,
    /// The last pass, if any since the broker started.
    pub last_clean: Option<CleanStats>,
}

/// The cleaner's record of one log.
#[derive(Clone, Debug, Default)]
pub(crate) struct CleanerStatus {
    view: Option<CleanerView>,
}

/// What the replica layer knows about a log's producers that a pass needs.
pub(crate) struct ProducerView<'a> {
    /// Whether the batch ending at `last offset` is `producer id`'s last (kept, emptied).
    pub last_of_producer: &'a dyn Fn(i64, i64) -> bool,
    /// Whether a transactional batch of `producer id` at `offset` belongs to an aborted
    /// transaction (its records go, and never count as a key's latest value).
    pub aborted: &'a dyn Fn(i64, i64) -> bool,
}

/// Limits of one pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CleanLimits {
    /// Bytes the offset map may take (this thread's share of the dedupe buffer).
    pub map_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`.
    pub io_bytes_per_second: f64,
}

/// Paces reads and writes.
struct Pacer {
    started: Instant,
    bytes: u64,
    rate: f64,
}

impl Pacer {
    fn moved(&mut self, bytes: u64) {
        self.bytes += bytes;
        let pause = cleaner::throttle(self.bytes, self.started.elapsed(), self.rate);
        if !pause.is_zero() {
            std::thread::sleep(pause.min(Duration::from_secs(1)));
        }
    }
}

fn chunk_stats(state: &LogState) -> Vec<ChunkStat> {
    state
        .chunks
        .iter()
        .filter(|(_, c)| c.batches > 0)
        .map(|(base, c)| ChunkStat {
            base,
            end: c.end.max(base),
            bytes: c.bytes,
            max_timestamp: c.max_timestamp,
            created_ms: c.created_ms,
        })
        .collect()
}

impl PartitionLog {
    /// Surveys the log for the cleaner: its clean and dirty parts now. An open chunk idle
    /// past `segment.ms` is closed first (Kafka rolls only on the next append; closing it
    /// here lets a quiet topic's last records be compacted too).
    pub(crate) fn survey(&self, now: i64, high_watermark: i64, min_lag_ms: i64) -> Dirt {
        let mut state = self.state.lock().expect("log state lock");
        let roll = state.roll;
        if let Some((_, last)) = state.chunks.iter().last() {
            if !state.chunks.last_closed
                && cleaner::must_roll(last.bytes, now.saturating_sub(last.created_ms), u64::MAX, roll.ms)
            {
                state.chunks.last_closed = true;
            }
        }
        let chunks = chunk_stats(&state);
        let first_dirty = state.meta.first_dirty.clamp(state.offsets.log_start_offset, state.offsets.log_end_offset);
        let upper = cleaner::first_uncleanable(&chunks, !state.chunks.last_closed, high_watermark, now, min_lag_ms);
        let tombstones_due = state.meta.tombstones_due_ms.is_some_and(|t| t <= now);
        drop(state);
        let dirt = Dirt { tombstones_due, ..cleaner::dirt(&chunks, first_dirty, upper.max(first_dirty)) };
        let mut status = self.cleaner.lock().expect("cleaner status lock");
        let view = status.view.get_or_insert_with(CleanerView::default);
        view.first_dirty_offset = dirt.first_dirty;
        view.first_uncleanable_offset = dirt.upper;
        view.clean_bytes = dirt.clean_bytes;
        view.dirty_bytes = dirt.dirty_bytes;
        view.dirty_ratio = dirt.ratio();
        view.surveyed_ms = now;
        dirt
    }

    /// The cleaner's view of this log, once it has surveyed it.
    pub(crate) fn cleaner_view(&self) -> Option<CleanerView> {
        self.cleaner.lock().expect("cleaner status lock").view.clone()
    }

    /// One cleaning pass over `[log start, dirt.upper)` (see the module docs), `producers`
    /// telling an idempotent producer's last batch and aborted transactions' batches;
    /// `stop` is polled between batches (shutdown): a pass stopped midway
    /// leaves a valid log and records nothing. Returns what the pass did, `None` when it
    /// found nothing to do or was stopped.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled fails.
    pub(crate) fn clean(
        &self,
        dirt: &Dirt,
        now: i64,
        compaction: &Compaction,
        producers: &ProducerView<'_>,
        limits: CleanLimits,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<CleanStats>, Error> {
        let started = Instant::now();
        let mut pacer = Pacer { started, bytes: 0, rate: limits.io_bytes_per_second };
        let failed = || storage(format!("cleaning {}", self.tp));
        let (trees, passes, log_end) = {
            let state = self.state.lock().expect("log state lock");
            let trees: Vec<(i64, i64, sled::Tree)> = state
                .chunks
                .iter()
                .filter(|(base, _)| *base < dirt.upper)
                .map(|(base, c)| (base, c.end.max(base), c.tree.clone()))
                .collect();
            (trees, state.meta.cleaned.clone(), state.offsets.log_end_offset)
        };

        // The offset map over the dirty part, chunk by chunk, within its memory share.
        let mut latest: HashMap<Box<[u8]>, i64> = HashMap::new();
        let mut map_bytes = 0usize;
        let mut upper = dirt.first_dirty;
        for (_, end, tree) in trees.iter().filter(|(_, end, _)| *end > dirt.first_dirty) {
            if map_bytes >= limits.map_bytes && upper > dirt.first_dirty {
                break;
            }
            for item in tree.range(key(dirt.first_dirty.max(0))..key(dirt.upper.max(0))) {
                if stop() {
                    return Ok(None);
                }
                let (_, v) = item.map_err(failed())?;
                pacer.moved(v.len() as u64);
                let Some(h) = BatchHeader::parse(&v) else { continue };
                if h.is_control() || (h.is_transactional() && (producers.aborted)(h.producer_id, h.base_offset)) {
                    continue;
                }
                let Ok(records) = body::decode(&h, &Bytes::copy_from_slice(&v)) else { continue };
                for r in &records.list {
                    let Some(k) = r.key.clone() else { continue };
                    let offset = h.base_offset.saturating_add(r.offset_delta);
                    let k = &records.body[k];
                    match latest.get_mut(k) {
                        Some(o) => *o = (*o).max(offset),
                        None => {
                            map_bytes += cleaner::map_entry_bytes(k.len());
                            latest.insert(k.into(), offset);
                        }
                    }
                }
            }
            upper = (*end).min(dirt.upper);
        }
        if upper <= dirt.first_dirty && !dirt.tombstones_due {
            return Ok(None);
        }
        if map_bytes > limits.map_bytes {
            tracing::warn!(tp = %self.tp, map_bytes, limit = limits.map_bytes, "one chunk's keys took more than this cleaner thread's share of log.cleaner.dedupe.buffer.size; cleaned it anyway (raise the buffer or lower log.cleaner.threads)");
        }

        // Sift every batch below `upper`, from the log start. The tombstones kept get their
        // clocks from the passes including this one.
        let mut stats = CleanStats { upper, keys: latest.len(), ..CleanStats::default() };
        let mut passes_after = passes.clone();
        cleaner::record_pass(&mut passes_after, upper, now);
        let mut tombstones_due_ms: Option<i64> = None;
        // Producers whose transaction since their last marker still has a batch in the log.
        let mut txn_batches_left: HashMap<i64, bool> = HashMap::new();
        // Chunks whose summary was removed before a swap; summarized again at the commit.
        let mut touched: BTreeSet<i64> = BTreeSet::new();
        for (base, _, tree) in trees.iter().filter(|(base, _, _)| *base < upper) {
            for item in tree.range(..key(upper.max(0))) {
                if stop() {
                    return Ok(None);
                }
                let (k, old) = item.map_err(failed())?;
                pacer.moved(old.len() as u64);
                let Some(h) = BatchHeader::parse(&old) else { continue };
                if h.is_control() {
                    let left = txn_batches_left.remove(&h.producer_id).unwrap_or(false);
                    let last = h.last_offset() + 1 >= log_end;
                    let horizon =
                        cleaner::tombstone_expired(h.base_offset, &passes, now, compaction.delete_retention_ms);
                    if cleaner::marker_removable(left, last, horizon) {
                        touched.insert(*base);
                        if self.swap(*base, &k, &old, None)? {
                            stats.bytes_before += old.len() as u64;
                            stats.markers_removed += 1;
                            stats.batches_deleted += 1;
                        }
                    } else if !left && !last {
                        // Goes in a later pass, once its horizon has passed.
                        let expiry =
                            cleaner::tombstone_expiry(h.base_offset, &passes_after, compaction.delete_retention_ms);
                        if let Some(at) = expiry.filter(|at| *at >= now) {
                            tombstones_due_ms = Some(tombstones_due_ms.map_or(at, |t| t.min(at)));
                        }
                    }
                    continue;
                }
                let batch = Bytes::copy_from_slice(&old);
                let records = match body::decode(&h, &batch) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(tp = %self.tp, offset = key_offset(&k), error = %e, "the cleaner left an unreadable batch as it is");
                        continue;
                    }
                };
                let mut keep = Vec::with_capacity(records.list.len());
                let mut tombstones = 0;
                let aborted = h.is_transactional() && (producers.aborted)(h.producer_id, h.base_offset);
                for (i, r) in records.list.iter().enumerate().filter(|_| !aborted) {
                    let offset = h.base_offset.saturating_add(r.offset_delta);
                    let found = r.key.clone().and_then(|k| latest.get(&records.body[k]).copied());
                    let tombstone = r.value.is_none();
                    let expired =
                        tombstone && cleaner::tombstone_expired(offset, &passes, now, compaction.delete_retention_ms);
                    if cleaner::keep_record(r.key.is_some(), tombstone, offset, found, expired) {
                        keep.push(i);
                        if tombstone {
                            let expiry =
                                cleaner::tombstone_expiry(offset, &passes_after, compaction.delete_retention_ms);
                            if let Some(at) = expiry.filter(|at| *at >= now) {
                                tombstones_due_ms = Some(tombstones_due_ms.map_or(at, |t| t.min(at)));
                            }
                        }
                    } else if tombstone && found.is_none_or(|l| l <= offset) {
                        tombstones += 1;
                    }
                }
                let must_stay = h.last_offset() + 1 >= log_end
                    || (h.producer_id >= 0 && (producers.last_of_producer)(h.producer_id, h.last_offset()));
                let fate = cleaner::fate(records.list.len(), keep.len(), must_stay);
                if h.is_transactional() && fate != Fate::Delete {
                    // Its marker stays while it does (an empty one too: a replica rebuilding
                    // its state would otherwise see a transaction that never ends).
                    txn_batches_left.insert(h.producer_id, true);
                }
                let new = match fate {
                    Fate::Unchanged => continue,
                    Fate::Rewrite | Fate::KeepEmpty => {
                        Some(body::rebuild(&h, &batch, &records, &keep).map_err(|e| Error::Storage {
                            what: format!("rewriting a batch of {}", self.tp),
                            reason: e.to_string(),
                        })?)
                    }
                    Fate::Delete => None,
                };
                let new_len = new.as_ref().map_or(0, |b| b.len() as u64);
                touched.insert(*base);
                if self.swap(*base, &k, &old, new)? {
                    pacer.moved(new_len);
                    stats.bytes_before += old.len() as u64;
                    stats.bytes_after += new_len;
                    stats.records_removed += (records.list.len() - keep.len()) as u64;
                    stats.tombstones_removed += tombstones;
                    stats.batches_deleted += u64::from(fate == Fate::Delete);
                }
            }
        }

        // Durable before the position and the tombstones' clock move.
        self.flush_store()?;
        let mut state = self.state.lock().expect("log state lock");
        let emptied: Vec<i64> =
            state.chunks.iter().filter(|(base, c)| *base < upper && c.batches == 0).map(|(base, _)| base).collect();
        let last = state.chunks.iter().last().map(|(base, _)| base);
        for base in emptied.into_iter().filter(|b| Some(*b) != last) {
            state.chunks.drop_chunk(base)?;
            stats.chunks_dropped += 1;
        }
        for base in touched {
            state.chunks.summarize(base)?;
        }
        state.meta.first_dirty = state.meta.first_dirty.max(upper).min(state.offsets.log_end_offset);
        cleaner::record_pass(&mut state.meta.cleaned, upper, now);
        state.meta.tombstones_due_ms = tombstones_due_ms;
        self.persist_meta(&state.meta)?;
        drop(state);
        stats.finished_ms = tributary_common::time::now_ms();
        stats.elapsed_ms = started.elapsed().as_millis() as u64;
        let mut status = self.cleaner.lock().expect("cleaner status lock");
        let view = status.view.get_or_insert_with(CleanerView::default);
        view.first_dirty_offset = upper;
        view.last_clean = Some(stats.clone());
        Ok(Some(stats))
    }

    /// Makes everything written so far durable (sled's flush, outside the log's lock).
    fn flush_store(&self) -> Result<(), Error> {
        let db = self.state.lock().expect("log state lock").chunks.db();
        db.flush().map(|_| ()).map_err(storage(format!("flushing after cleaning {}", self.tp)))
    }

    /// Replaces (or with `None` removes) the batch at `k` in the chunk at `base`, if it is
    /// still `old` there (retention or truncation may have removed it meanwhile).
    fn swap(&self, base: i64, k: &sled::IVec, old: &sled::IVec, new: Option<Bytes>) -> Result<bool, Error> {
        let mut state = self.state.lock().expect("log state lock");
        // The summary goes before the batch changes: a crash leaves none, never a wrong one.
        state.chunks.forget_summary(base)?;
        let Some(chunk) = state.chunks.get_mut(base) else { return Ok(false) };
        let new_len = new.as_ref().map_or(0, |b| b.len() as u64);
        let swapped = chunk
            .tree
            .compare_and_swap(k, Some(old), new.as_deref())
            .map_err(storage(format!("cleaning {}", self.tp)))?
            .is_ok();
        if !swapped {
            return Ok(false);
        }
        let old_len = old.len() as u64;
        chunk.bytes = chunk.bytes - old_len + new_len;
        if new.is_none() {
            chunk.batches -= 1;
        }
        state.offsets.size_bytes = state.offsets.size_bytes - old_len + new_len;
        Ok(true)
    }
}
