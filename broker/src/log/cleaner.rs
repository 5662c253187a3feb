//! The log cleaner's decision rules (Kafka's `LogCleaner`, `LogCleanerManager` and
//! `Cleaner.shouldRetainRecord`), as pure functions over what a log's chunks hold. The
//! work itself is in [`super::compact`]; the threads that run it in
//! `replica::cleaner`.
//!
//! A compacted log is, in Kafka's words, a clean part `[log start, first dirty)` already
//! compacted once, a dirty part `[first dirty, first uncleanable)` not yet, and the
//! uncleanable rest: the active chunk, anything above the high watermark, and anything
//! younger than `min.compaction.lag.ms`. Chunks play the role of Kafka's segments: whole
//! chunks are cleanable or not, and the cleaner's position only ever stops at a chunk's
//! end.

use std::time::Duration;

/// What the cleaner needs of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkStat {
    /// Lower bound of its offsets.
    pub base: i64,
    /// One past its last offset.
    pub end: i64,
    /// Bytes of batches it holds.
    pub bytes: u64,
    /// Largest record timestamp in it.
    pub max_timestamp: i64,
    /// When it started taking appends (the first batch's timestamp after a restart).
    pub created_ms: i64,
}

/// A topic's compaction settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Compaction {
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_ratio: f64,
    /// `min.compaction.lag.ms`: records stay uncompacted at least this long.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records wait at most this long, whatever the ratio.
    pub max_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays after it was first cleaned.
    pub delete_retention_ms: i64,
}

/// The clean and dirty parts of a log, by bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dirt {
    /// The cleaner's position: first offset not yet compacted.
    pub first_dirty: i64,
    /// First offset it may not compact now.
    pub upper: i64,
    /// Bytes below `first_dirty`.
    pub clean_bytes: u64,
    /// Bytes in `[first_dirty, upper)`.
    pub dirty_bytes: u64,
    /// When the oldest dirty chunk started (for `max.compaction.lag.ms`).
    pub oldest_dirty_ms: Option<i64>,
    /// A tombstone in the clean part has outlived `delete.retention.ms` (KIP-534: such a
    /// log is cleaned even with nothing dirty, so that deleted keys do go).
    pub tombstones_due: bool,
}

impl Dirt {
    /// Kafka's cleanable ratio: dirty bytes over clean plus dirty.
    pub(crate) fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// The first offset that cannot be compacted now: the start of the first chunk that is
/// still open for appends, reaches past the high watermark, or holds a record younger
/// than `min_lag_ms`; the end of the last chunk when none is.
pub(crate) fn first_uncleanable(
    chunks: &[ChunkStat],
    last_open: bool,
    high_watermark: i64,
    now: i64,
    min_lag_ms: i64,
) -> i64 {
    for (i, c) in chunks.iter().enumerate() {
        let open = last_open && i + 1 == chunks.len();
        let too_young = min_lag_ms > 0 && now.saturating_sub(c.max_timestamp) < min_lag_ms;
        if open || c.end > high_watermark || too_young {
            return c.base;
        }
    }
    chunks.last().map_or(0, |c| c.end)
}

/// The clean and dirty parts of a log whose chunks are `chunks`, from the cleaner's
/// position `first_dirty` (clamped into the log) up to `upper`.
pub(crate) fn dirt(chunks: &[ChunkStat], first_dirty: i64, upper: i64) -> Dirt {
    let mut d = Dirt { first_dirty, upper, ..Dirt::default() };
    for c in chunks {
        if c.end <= first_dirty {
            d.clean_bytes += c.bytes;
        } else if c.end <= upper {
            d.dirty_bytes += c.bytes;
            d.oldest_dirty_ms = Some(d.oldest_dirty_ms.map_or(c.created_ms, |t| t.min(c.created_ms)));
        }
    }
    d
}

/// Whether a log with this dirt is due for cleaning: something is dirty, and either the
/// ratio reached `min.cleanable.dirty.ratio` or the oldest dirty chunk waited
/// `max.compaction.lag.ms` (KIP-354).
pub(crate) fn due(d: &Dirt, c: &Compaction, now: i64) -> bool {
    if d.tombstones_due {
        return true;
    }
    if d.dirty_bytes == 0 || d.upper <= d.first_dirty {
        return false;
    }
    let overdue = d.oldest_dirty_ms.is_some_and(|t| now.saturating_sub(t) >= c.max_lag_ms);
    overdue || d.ratio() >= c.min_cleanable_ratio
}

/// Which of the due logs to clean first: the filthiest (largest ratio), as Kafka picks.
pub(crate) fn filthiest(candidates: &[Dirt]) -> Option<usize> {
    (0..candidates.len()).max_by(|a, b| candidates[*a].ratio().total_cmp(&candidates[*b].ratio()))
}

/// Whether the open chunk must close before the next append: it reached `segment.bytes`,
/// or is older than `segment.ms` (for compacted topics, at most `max.compaction.lag.ms`,
/// so that overdue records become cleanable).
pub(crate) fn must_roll(bytes: u64, age_ms: i64, roll_bytes: u64, roll_ms: i64) -> bool {
    bytes > 0 && (bytes >= roll_bytes || age_ms >= roll_ms)
}

/// Whether a record stays in a cleaned log. `latest` is the largest offset of its key in
/// the dirty part (`None`: the key is not there); `tombstone_expired` says whether a
/// tombstone at its offset has outlived `delete.retention.ms` (see [`tombstone_expired`]).
/// Records without a key cannot be compacted and go, as in Kafka.
pub(crate) fn keep_record(
    has_key: bool,
    is_tombstone: bool,
    offset: i64,
    latest: Option<i64>,
    tombstone_expired: bool,
) -> bool {
    if !has_key {
        return false;
    }
    if latest.is_some_and(|l| l > offset) {
        return false;
    }
    !(is_tombstone && tombstone_expired)
}

/// What happens to a batch after its records were sifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Every record stays: the batch is left alone.
    Unchanged,
    /// Some stay: the batch is rewritten with them.
    Rewrite,
    /// None stay, but it is its idempotent producer's last batch (Kafka's `RETAIN_EMPTY`:
    /// the producer's last sequence survives a restart) or the log's last batch (the log
    /// end survives a restart, offsets are never handed out twice, and consumers reach the
    /// high watermark): kept empty, its offsets unchanged.
    KeepEmpty,
    /// None stay: the batch goes.
    Delete,
}

/// The fate of a batch of `total` records of which `kept` stay; `must_stay` when it is its
/// producer's last batch or the log's.
pub(crate) fn fate(total: usize, kept: usize, must_stay: bool) -> Fate {
    if kept == total {
        Fate::Unchanged
    } else if kept > 0 {
        Fate::Rewrite
    } else if must_stay {
        Fate::KeepEmpty
    } else {
        Fate::Delete
    }
}

/// Whether a tombstone at `offset` has outlived `delete.retention.ms`. `passes` lists the
/// completed cleaning passes as (position after the pass, when), ascending: a tombstone's
/// clock starts at the first pass that covered it (KIP-534's delete horizon), so that a
/// consumer reading the log from the start has `delete.retention.ms` to see it, and the
/// older values it deletes were removed (durably) by that first pass before it can go.
pub(crate) fn tombstone_expired(offset: i64, passes: &[(i64, i64)], now: i64, delete_retention_ms: i64) -> bool {
    tombstone_expiry(offset, passes, delete_retention_ms).is_some_and(|at| now >= at)
}

/// When a tombstone at `offset` will have outlived `delete.retention.ms`, given the passes
/// so far (`None` while no pass has covered it).
pub(crate) fn tombstone_expiry(offset: i64, passes: &[(i64, i64)], delete_retention_ms: i64) -> Option<i64> {
    passes.iter().find(|(upper, _)| *upper > offset).map(|(_, at)| at.saturating_add(delete_retention_ms))
}

/// Whether a transaction marker may go (Kafka removes markers as it removes tombstones):
/// none of its transaction's batches is left below it (`txn_batches_left`), it is not
/// the log's last batch (`must_stay`), and it has outlived `delete.retention.ms` since the
/// pass that first covered it (`horizon_passed`), so a consumer reading from the start had
/// time to see it.
pub(crate) fn marker_removable(txn_batches_left: bool, must_stay: bool, horizon_passed: bool) -> bool {
    !txn_batches_left && !must_stay && horizon_passed
}

/// Most passes remembered per log.
pub(crate) const MAX_PASSES: usize = 32;

/// Records a completed pass that cleaned up to `upper` at `now`. Past [`MAX_PASSES`] the
/// two neighbours closest in time merge into the later one, which only ever makes a
/// tombstone wait longer.
pub(crate) fn record_pass(passes: &mut Vec<(i64, i64)>, upper: i64, now: i64) {
    if passes.last().is_some_and(|(u, _)| *u >= upper) {
        return;
    }
    passes.push((upper, now));
    while passes.len() > MAX_PASSES {
        let i = (0..passes.len() - 1).min_by_key(|i| passes[i + 1].1 - passes[*i].1).expect("more than one pass");
        passes.remove(i);
    }
}

/// Drops what a truncation to `offset` made untrue: passes past it end there.
pub(crate) fn truncate_passes(passes: &mut Vec<(i64, i64)>, offset: i64) {
    for p in passes.iter_mut() {
        p.0 = p.0.min(offset);
    }
    passes.dedup_by_key(|p| p.0);
}

/// Bytes the offset map counts for one key (key bytes plus the map's own overhead), for
/// `log.cleaner.dedupe.buffer.size`.
pub(crate) fn map_entry_bytes(key_len: usize) -> usize {
    key_len + 48
}

/// How long to pause so that `bytes` moved in `elapsed` stay under `rate` bytes/s
/// (`log.cleaner.io.max.bytes.per.second`).
pub(crate) fn throttle(bytes: u64, elapsed: Duration, rate: f64) -> Duration {
    if rate.is_nan() || rate <= 0.0 || rate.is_infinite() {
        return Duration::ZERO;
    }
    let wanted = Duration::from_secs_f64(bytes as f64 / rate);
    wanted.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(base: i64, end: i64, bytes: u64, max_timestamp: i64) -> ChunkStat {
        ChunkStat { base, end, bytes, max_timestamp, created_ms: max_timestamp - 10 }
    }

    #[test]
    fn the_uncleanable_part_starts_at_the_first_open_unreplicated_or_young_chunk() {
        let chunks = [chunk(0, 10, 100, 1_000), chunk(10, 20, 100, 2_000), chunk(20, 30, 100, 3_000)];
        // (last open, high watermark, now, min lag, first uncleanable)
        let cases = [
            (true, 30, 10_000, 0, 20),  // the open chunk is never cleaned
            (false, 30, 10_000, 0, 30), // a closed last chunk is
            (false, 25, 10_000, 0, 20), // nothing past the high watermark
            (false, 9, 10_000, 0, 0),
            (false, 30, 10_000, 8_500, 10), // chunk 10..20 holds records younger than 8.5 s
            (false, 30, 2_500, 0, 30),      // a record from the future is young only under a lag
            (false, 30, 2_500, 1, 20),
        ];
        for (last_open, hw, now, lag, want) in cases {
            assert_eq!(first_uncleanable(&chunks, last_open, hw, now, lag), want, "{last_open} {hw} {now} {lag}");
        }
        assert_eq!(first_uncleanable(&[], true, 0, 0, 0), 0);
    }

    #[test]
    fn dirt_splits_bytes_at_the_cleaners_position() {
        let chunks = [chunk(0, 10, 100, 1_000), chunk(10, 20, 300, 2_000), chunk(20, 30, 50, 3_000)];
        let d = dirt(&chunks, 10, 20);
        assert_eq!((d.clean_bytes, d.dirty_bytes, d.oldest_dirty_ms), (100, 300, Some(1_990)));
        assert!((d.ratio() - 0.75).abs() < 1e-9);
        let none = dirt(&chunks, 20, 20);
        assert_eq!((none.dirty_bytes, none.oldest_dirty_ms), (0, None));
        assert_eq!(dirt(&[], 0, 0).ratio(), 0.0);
    }

    #[test]
    fn a_log_is_due_by_ratio_or_by_max_lag() {
        let c = Compaction { min_cleanable_ratio: 0.5, min_lag_ms: 0, max_lag_ms: 60_000, delete_retention_ms: 0 };
        let d = |clean, dirty, oldest| Dirt {
            first_dirty: 0,
            upper: 10,
            clean_bytes: clean,
            dirty_bytes: dirty,
            oldest_dirty_ms: oldest,
            tombstones_due: false,
        };
        // (dirt, now, due)
        let cases = [
            (d(100, 100, Some(0)), 1_000, true),  // ratio 0.5
            (d(300, 100, Some(0)), 1_000, false), // ratio 0.25
            (d(300, 100, Some(0)), 60_000, true), // waited max.compaction.lag.ms
            (d(100, 0, None), 1_000_000, false),  // nothing dirty
            (Dirt { upper: 0, ..d(0, 100, Some(0)) }, 1_000, false),
            (Dirt { tombstones_due: true, ..d(100, 0, None) }, 1_000, true), // KIP-534
        ];
        for (dirt, now, want) in cases {
            assert_eq!(due(&dirt, &c, now), want, "{dirt:?} at {now}");
        }
        assert_eq!(filthiest(&[d(300, 100, None), d(100, 100, None), d(100, 50, None)]), Some(1));
        assert_eq!(filthiest(&[]), None);
    }

    #[test]
    fn the_open_chunk_rolls_by_size_or_age() {
        // (bytes, age, segment.bytes, segment.ms, roll)
        let cases = [
            (0, 1_000_000, 100, 10, false), // an empty chunk never rolls
            (99, 5, 100, 10, false),
            (100, 5, 100, 10, true),
            (1, 10, 100, 10, true),
            (1, 9, 100, 10, false),
        ];
        for (bytes, age, rb, rms, want) in cases {
            assert_eq!(must_roll(bytes, age, rb, rms), want, "{bytes} {age} {rb} {rms}");
        }
    }

    #[test]
    fn records_stay_unless_superseded_keyless_or_an_expired_tombstone() {
        // (has key, tombstone, offset, latest of its key, tombstone expired, keep)
        let cases = [
            (true, false, 5, Some(5), false, true),  // the latest value
            (true, false, 5, Some(9), false, false), // superseded
            (true, false, 5, None, false, true),     // key only in the clean part
            (false, false, 5, None, false, false),   // no key
            (true, true, 5, Some(5), false, true),   // a fresh tombstone
            (true, true, 5, Some(5), true, false),   // an expired one
            (true, true, 5, Some(7), false, false),  // a superseded one
        ];
        for (has_key, tomb, offset, latest, expired, want) in cases {
            assert_eq!(
                keep_record(has_key, tomb, offset, latest, expired),
                want,
                "{has_key} {tomb} {offset} {latest:?} {expired}"
            );
        }
        // (records, kept, its producer's or the log's last batch, fate)
        let fates = [
            (3, 3, false, Fate::Unchanged),
            (3, 1, false, Fate::Rewrite),
            (3, 0, true, Fate::KeepEmpty),
            (3, 0, false, Fate::Delete),
            (0, 0, true, Fate::Unchanged),
        ];
        for (total, kept, last, want) in fates {
            assert_eq!(fate(total, kept, last), want, "{total} {kept} {last}");
        }
    }

    #[test]
    fn markers_go_only_once_their_transaction_is_gone_and_their_horizon_passed() {
        // (batches of the transaction left, the log's last batch, horizon passed, removable)
        let cases = [
            (false, false, true, true),
            (true, false, true, false),   // data still there: read_committed needs the marker
            (false, true, true, false),   // the log end must survive
            (false, false, false, false), // a reader from the start may still need it
        ];
        for (left, last, horizon, want) in cases {
            assert_eq!(marker_removable(left, last, horizon), want, "{left} {last} {horizon}");
        }
    }

    #[test]
    fn a_tombstone_expires_delete_retention_after_the_first_pass_that_covered_it() {
        let passes = [(100, 1_000), (200, 5_000)];
        // (offset, now, delete.retention.ms, expired)
        let cases = [
            (50, 1_500, 500, true),
            (50, 1_499, 500, false),
            (150, 1_500, 500, false), // first covered by the pass at 5 s
            (150, 5_500, 500, true),
            (250, 1_000_000, 0, false), // not covered by any pass yet
        ];
        for (offset, now, retention, want) in cases {
            assert_eq!(tombstone_expired(offset, &passes, now, retention), want, "{offset} {now} {retention}");
        }
    }

    #[test]
    fn passes_stay_few_and_merging_only_delays_tombstones() {
        let mut passes = Vec::new();
        for i in 0..100 {
            record_pass(&mut passes, (i + 1) * 10, i * 1_000);
        }
        record_pass(&mut passes, 5, 999_999); // behind the last one: ignored
        assert_eq!(passes.len(), MAX_PASSES);
        assert_eq!(passes.last(), Some(&(1_000, 99_000)));
        // Every offset's recorded first pass is at or after its true one.
        for offset in 0..1_000i64 {
            let truth = (offset / 10) * 1_000;
            let recorded = passes.iter().find(|(u, _)| *u > offset).unwrap().1;
            assert!(recorded >= truth, "offset {offset}: {recorded} < {truth}");
        }
        let mut cut = vec![(100, 1), (200, 2), (300, 3)];
        truncate_passes(&mut cut, 150);
        assert_eq!(cut, vec![(100, 1), (150, 2)]);
    }

    #[test]
    fn throttling_holds_the_rate() {
        let s = Duration::from_secs;
        assert_eq!(throttle(1_000, s(0), 1_000.0), s(1));
        assert_eq!(throttle(1_000, s(2), 1_000.0), Duration::ZERO);
        assert_eq!(throttle(1_000, s(0), f64::MAX), Duration::ZERO);
        assert_eq!(throttle(1_000, s(0), f64::INFINITY), Duration::ZERO);
        assert_eq!(throttle(1_000, s(0), 0.0), Duration::ZERO);
        assert_eq!(map_entry_bytes(16), 64);
    }
}
