//! Reading partitions for Fetch, with long polling (Kafka's `ReplicaManager.fetchMessages`
//! with `DelayedFetch`): a fetch that finds fewer than `min_bytes` parks on the purgatory
//! keys of the partitions it asked for (log end for followers, high watermark for
//! consumers) and reads again only when one of those moves, or at `max_wait`.
//!
//! A follower's fetch reads up to the log end rather than the high watermark, and its
//! fetch offset tells the leader how far that follower has got (which moves the high
//! watermark and the ISR).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tributary_common::ids::{BrokerId, TopicPartition};

use super::partition::{Key, Partition, ReplicaError};
use super::purgatory::any_moved;
use super::ReplicaManager;
use crate::log;

/// Who reads, which decides how far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    /// A follower replica: up to the log end; its position counts for the ISR.
    Follower(BrokerId),
    /// A consumer: up to the high watermark (`read_committed`: the last stable offset).
    Consumer {
        /// isolation.level=read_committed.
        read_committed: bool,
    },
}

/// One partition of a fetch.
#[derive(Clone, Debug)]
pub(crate) struct FetchSpec {
    /// The partition.
    pub(crate) tp: TopicPartition,
    /// Where to read from.
    pub(crate) fetch_offset: i64,
    /// The leader epoch the client knows (-1: none).
    pub(crate) current_leader_epoch: i32,
    /// The partition's byte limit.
    pub(crate) max_bytes: usize,
    /// The epoch of the last batch the fetcher has (-1: not checked), Fetch v12+.
    pub(crate) last_fetched_epoch: i32,
    /// A follower's own log start offset (-1 from consumers).
    pub(crate) log_start_offset: i64,
}

/// Why a hosted partition could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// OFFSET_OUT_OF_RANGE.
    OffsetOutOfRange,
    /// KAFKA_STORAGE_ERROR.
    Storage(log::Error),
}

/// What one partition of a fetch read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fetched {
    /// The high watermark.
    pub(crate) high_watermark: i64,
    /// The last stable offset.
    pub(crate) last_stable_offset: i64,
    /// The log start offset.
    pub(crate) log_start_offset: i64,
    /// Whole batches.
    pub(crate) records: Bytes,
    /// Fetch v12+: the fetcher's last epoch does not match; (epoch, end offset) to truncate to.
    pub(crate) diverging_epoch: Option<(i32, i64)>,
    /// read_committed: the aborted transactions the records meet, (producer id, first offset).
    pub(crate) aborted: Vec<(i64, i64)>,
    /// A read that failed (the offsets above stay filled in: a follower uses them).
    pub(crate) error: Option<ReadError>,
}

type Round = (Vec<Result<Fetched, ReplicaError>>, usize, bool, Vec<(Arc<Partition>, u64)>);

impl ReplicaManager {
    /// Reads `specs` for `reader`; when that finds fewer than `min_bytes` and no error,
    /// parks until a partition it asked for moves (then reads again) or `max_wait`.
    pub(crate) async fn fetch_messages(
        &self,
        reader: Reader,
        specs: &[FetchSpec],
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
    ) -> Vec<Result<Fetched, ReplicaError>> {
        let deadline = Instant::now() + max_wait;
        let key = match reader {
            Reader::Follower(_) => Key::LogEnd,
            Reader::Consumer { .. } => Key::HighWatermark,
        };
        loop {
            let (results, total, any_error, seen) = self.read_round(reader, specs, max_bytes, key);
            if total >= min_bytes || any_error || Instant::now() >= deadline {
                return results;
            }
            let keys: Vec<_> = seen.iter().map(|(p, v)| (p.progress(key), *v)).collect();
            tokio::select! {
                _ = any_moved(&keys) => {
                    self.fetch_rereads.fetch_add(1, Ordering::Relaxed);
                }
                _ = tokio::time::sleep_until(deadline) => return self.read_round(reader, specs, max_bytes, key).0,
            }
        }
    }

    /// One pass over the partitions: results, bytes read, whether any failed, and the
    /// purgatory key versions read under.
    fn read_round(&self, reader: Reader, specs: &[FetchSpec], max_bytes: usize, key: Key) -> Round {
        let now = tributary_common::time::now_ms();
        let mut total = 0usize;
        let mut any_error = false;
        let mut seen = Vec::new();
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            let partition = match self.leader_partition(&spec.tp, spec.current_leader_epoch) {
                Ok(p) => p,
                Err(e) => {
                    any_error = true;
                    results.push(Err(e));
                    continue;
                }
            };
            seen.push((partition.clone(), partition.progress(key).version()));
            if let Reader::Follower(replica) = reader {
                if let Err(e) = partition.record_follower_fetch(replica, spec.fetch_offset, spec.log_start_offset, now)
                {
                    any_error = true;
                    results.push(Err(e));
                    continue;
                }
            }
            // Replication throttle (leader side): while the throttled replicas are over
            // leader.replication.throttled.rate, catching-up followers get no data for them.
            let throttled = matches!(reader, Reader::Follower(f) if partition.leader_throttled_for(f));
            let log = partition.log();
            let (high_watermark, last_stable_offset) = partition.watermarks();
            let offsets = log.offsets();
            let mut out = Fetched {
                high_watermark,
                last_stable_offset,
                log_start_offset: offsets.log_start_offset,
                ..Fetched::default()
            };
            if throttled && self.leader_quota.exceeded(now) {
                results.push(Ok(out));
                continue;
            }
            let upper = match reader {
                Reader::Follower(_) => offsets.log_end_offset,
                Reader::Consumer { read_committed: true } => last_stable_offset,
                Reader::Consumer { read_committed: false } => high_watermark,
            };
            let limit = spec.max_bytes.min(max_bytes.saturating_sub(total));
            // KIP-74: with nothing yet in the response, the first batch goes out even when larger than the limits.
            let read_limit = if total == 0 { limit.max(1) } else { limit };
            if read_limit == 0 {
                results.push(Ok(out));
                continue;
            }
            if spec.last_fetched_epoch >= 0 {
                // The fetcher's last epoch must end at or after its fetch offset in our log,
                // or it diverged and must truncate first.
                match log.end_offset_for_epoch(spec.last_fetched_epoch) {
                    Some((epoch, end)) if epoch == spec.last_fetched_epoch && end >= spec.fetch_offset => {}
                    found => {
                        out.diverging_epoch = Some(found.unwrap_or((-1, -1)));
                        results.push(Ok(out));
                        continue;
                    }
                }
            }
            match log.read(spec.fetch_offset, read_limit, upper) {
                // Only the first batch of the response may exceed the limits.
                Ok(records) if total > 0 && records.len() > limit => {}
                Ok(records) => {
                    total += records.len();
                    if throttled {
                        self.leader_quota.record(records.len(), now);
                    }
                    if matches!(reader, Reader::Consumer { read_committed: true }) && !records.is_empty() {
                        out.aborted = partition.aborted_transactions(spec.fetch_offset, upper);
                    }
                    out.records = records;
                }
                Err(log::Error::OffsetOutOfRange { .. }) => {
                    any_error = true;
                    out.error = Some(ReadError::OffsetOutOfRange);
                }
                Err(e) => {
                    any_error = true;
                    tracing::error!(tp = %spec.tp, error = %e, "reading the log failed; check the data directory");
                    out.error = Some(ReadError::Storage(e));
                }
            }
            results.push(Ok(out));
        }
        (results, total, any_error, seen)
    }
}
