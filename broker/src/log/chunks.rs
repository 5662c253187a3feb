//! A partition's batches spread over sled trees of a few batches each ("chunks").
//!
//! sled keeps values inside its B-tree leaves and rewrites a whole leaf when it
//! consolidates one (after ten updates to it) or splits one (more than 16 keys). With
//! appends always landing in the rightmost leaf, a single tree per partition wrote every
//! batch about three times (measured: 3.0x the bytes of 1 MiB values, 2.9x at 256 KiB, 3.7x
//! at 64 KiB). A tree that never receives a tenth insert is written once: nine batches of
//! 1 MiB in a fresh tree cost 1.05x-1.14x, and sled inserted them twice as fast.
//!
//! Every new tree rewrites sled's meta page, which lists all trees, so chunks are only cut
//! at nine batches when they are large enough for that rewrite to stay small (at least
//! [`MIN_BYTES`] and 32 times the size of the tree list); smaller batches share a chunk up
//! to that size, and no chunk grows past [`MAX_BYTES`]. Chunks also make retention and
//! truncation cheap: a chunk wholly out of the log is one `drop_tree`.
//!
//! Trees are named `<partition tree>@<base offset>`; the partition tree itself (the layout
//! before chunks) is read as a chunk too, so older data directories open unchanged.
//!
//! A chunk that takes no more appends has a [`Summary`] (its base, batch count, bytes, end,
//! timestamps) in the `chunk-summaries` tree, so that opening a partition need not read
//! it: reading any key of a chunk loads its whole leaf, which for a log of 10 GiB is 10 GiB
//! read. The summary is written when the chunk closes and rewritten after anything removes
//! batches from it (retention, cleaning); it is removed first, so a crash part-way leaves
//! no summary (the chunk is walked), never a wrong one. The last chunk never has one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{storage, Error};

/// Name of the tree holding the summaries of closed chunks, by chunk tree name.
const SUMMARIES: &str = "chunk-summaries";

/// Reads of a closed chunk's last batch that make sled's cache account for it.
const CACHE_NUDGES: usize = 64;

/// Lets sled's cache account for a chunk that has just closed, so that the memory the
/// log holds follows `cache_capacity`. sled 0.34 queues page accesses per shard (256 of
/// them) and counts them, evicting what is over the capacity, only when a shard's queue
/// reaches 64; a chunk's pages are written a few times each, so their shards' queues
/// rarely filled and written batches stayed in memory: a broker that took 3 GiB of 1 MiB
/// batches held 3.3 GiB and never gave it back. Reading the chunk's last batch 64 times
/// fills the queues of its pages' shards. The chunk was just written, so the reads are in
/// memory, and they copy no value bytes (sled shares them). A failed read only skips this.
fn let_cache_see(tree: &sled::Tree) {
    let Ok(Some((last, _))) = tree.last() else { return };
    for _ in 1..CACHE_NUDGES {
        if tree.get(&last).is_err() {
            return;
        }
    }
}

/// What opening a partition takes from a closed chunk instead of reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Summary {
    /// The chunk's key in the partition's chunk map (a lower bound of its offsets).
    pub base: i64,
    /// Batches it holds.
    pub batches: usize,
    /// Their bytes.
    pub bytes: u64,
    /// One past the last offset of its last batch.
    pub end: i64,
    /// Largest batch timestamp in it.
    pub max_timestamp: i64,
    /// When it took its first batch.
    pub created_ms: i64,
}

/// Batches a chunk takes while sled still writes each exactly once.
pub(super) const BATCHES: usize = 9;
/// A chunk cut at [`BATCHES`] holds at least this much.
pub(super) const MIN_BYTES: u64 = 1 << 20;
/// No chunk takes a batch once it holds this much.
pub(super) const MAX_BYTES: u64 = 64 << 20;
/// A chunk cut at [`BATCHES`] holds at least this many times the size of sled's tree list.
const BYTES_PER_LISTED_BYTE: u64 = 32;

/// What sled's tree list holds per tree besides its name.
const LISTED_OVERHEAD: u64 = 16;

/// Whether a chunk holding `batches` batches and `bytes` bytes takes no more, when the
/// names of all trees in the database add up to `listed_bytes`.
pub(super) fn is_full(batches: usize, bytes: u64, listed_bytes: u64) -> bool {
    bytes >= MAX_BYTES
        || (batches >= BATCHES && bytes >= MIN_BYTES.max(listed_bytes.saturating_mul(BYTES_PER_LISTED_BYTE)))
}

/// How many bytes a tree named `name` adds to sled's tree list.
pub(super) fn listed(name: &[u8]) -> u64 {
    name.len() as u64 + LISTED_OVERHEAD
}

/// One tree of consecutive batches.
pub(super) struct Chunk {
    pub(super) tree: sled::Tree,
    name: String,
    pub(super) batches: usize,
    pub(super) bytes: u64,
    /// One past the last offset of its last batch.
    pub(super) end: i64,
    /// Largest batch timestamp in it.
    pub(super) max_timestamp: i64,
    /// When it took its first batch (after a restart: that batch's timestamp).
    pub(super) created_ms: i64,
}

impl Chunk {
    fn new(tree: sled::Tree, name: String, created_ms: i64) -> Chunk {
        Chunk { tree, name, batches: 0, bytes: 0, end: i64::MIN, max_timestamp: i64::MIN, created_ms }
    }

    /// Counts a batch added at its end.
    pub(super) fn took(&mut self, len: u64, end: i64, max_timestamp: i64) {
        self.batches += 1;
        self.bytes += len;
        self.end = self.end.max(end);
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Takes its counters from a summary instead of reading it.
    pub(super) fn take_summary(&mut self, s: &Summary) {
        self.batches = s.batches;
        self.bytes = s.bytes;
        self.end = s.end;
        self.max_timestamp = s.max_timestamp;
        self.created_ms = s.created_ms;
    }

    pub(super) fn summary(&self, base: i64) -> Summary {
        Summary {
            base,
            batches: self.batches,
            bytes: self.bytes,
            end: self.end,
            max_timestamp: self.max_timestamp,
            created_ms: self.created_ms,
        }
    }
}

/// Whether recovery may take a chunk's summary instead of reading it: the chunk is not the
/// last (which may still take appends), holds batches, lies wholly below `trusted_below`
/// (checked once and, with the producer-state snapshot, observed already) and starts at or
/// after where its predecessor ended (`expected`).
pub(super) fn may_skip(summary: &Summary, is_last: bool, trusted_below: i64, expected: Option<i64>) -> bool {
    !is_last
        && summary.batches > 0
        && summary.end > summary.base
        && summary.end <= trusted_below
        && expected.is_none_or(|e| summary.base >= e)
}

/// When the open chunk closes besides [`is_full`]: `segment.bytes` and `segment.ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Roll {
    /// Close at this many bytes.
    pub bytes: u64,
    /// Close this long after the first batch.
    pub ms: i64,
}

impl Default for Roll {
    fn default() -> Roll {
        Roll { bytes: u64::MAX, ms: i64::MAX }
    }
}

/// The chunks of one partition, by base offset (a lower bound of the offsets in each).
pub(super) struct Chunks {
    db: sled::Db,
    summaries: sled::Tree,
    prefix: String,
    listed_bytes: Arc<AtomicU64>,
    map: BTreeMap<i64, Chunk>,
    /// The last chunk takes no more batches (the cleaner closed it: idle past `segment.ms`).
    pub(super) last_closed: bool,
}

fn chunk_name_base(prefix: &str, name: &[u8]) -> Option<Option<i64>> {
    let name = std::str::from_utf8(name).ok()?;
    if name == prefix {
        return Some(None);
    }
    name.strip_prefix(prefix)?.strip_prefix('@')?.parse().ok().map(Some)
}

/// The trees holding the chunks of partition tree `prefix`.
pub(super) fn tree_names(db: &sled::Db, prefix: &str) -> Vec<sled::IVec> {
    db.tree_names().into_iter().filter(|n| chunk_name_base(prefix, n).is_some()).collect()
}

impl Chunks {
    /// Opens the existing chunks of `prefix`, ordered by their first offset; empty ones
    /// (a crash between creating a tree and writing to it) are dropped. Returns the
    /// summaries found for them, by base; a chunk with a summary is not read.
    pub(super) fn open(
        db: sled::Db,
        prefix: String,
        listed_bytes: Arc<AtomicU64>,
    ) -> Result<(Chunks, BTreeMap<i64, Summary>), Error> {
        let summaries = db.open_tree(SUMMARIES).map_err(storage("opening chunk-summaries"))?;
        let mut chunks = Chunks { db, summaries, prefix, listed_bytes, map: BTreeMap::new(), last_closed: false };
        let mut found = BTreeMap::new();
        for name in tree_names(&chunks.db, &chunks.prefix) {
            let name = String::from_utf8_lossy(&name).into_owned();
            let tree = chunks.db.open_tree(&name).map_err(storage(format!("opening {name}")))?;
            let summary = chunks
                .summaries
                .get(name.as_bytes())
                .map_err(storage(format!("reading the summary of {name}")))?
                .and_then(|raw| serde_json::from_slice::<Summary>(&raw).ok())
                .filter(|s| s.batches > 0);
            if let Some(s) = summary {
                found.insert(s.base, s);
                chunks.map.insert(s.base, Chunk::new(tree, name, i64::MIN));
                continue;
            }
            match tree.first().map_err(storage(format!("reading {name}")))? {
                Some((k, _)) => {
                    let base = super::key_offset(&k);
                    chunks.map.insert(base, Chunk::new(tree, name, i64::MIN));
                }
                None => chunks.drop_tree(name.as_bytes())?,
            }
        }
        Ok((chunks, found))
    }

    /// Stores the summary of the chunk at `base`, unless it is the last (which may take
    /// more appends).
    pub(super) fn summarize(&self, base: i64) -> Result<(), Error> {
        let Some(chunk) = self.map.get(&base) else { return Ok(()) };
        if self.map.last_key_value().is_none_or(|(b, _)| *b == base) || chunk.batches == 0 {
            return self.forget_summary(base);
        }
        let raw = serde_json::to_vec(&chunk.summary(base)).expect("a summary is plain JSON");
        self.summaries.insert(chunk.name.as_bytes(), raw).map_err(storage(format!("summarizing {}", chunk.name)))?;
        Ok(())
    }

    /// Removes the summary of the chunk at `base` (before batches are removed from it, or
    /// when it becomes the last).
    pub(super) fn forget_summary(&self, base: i64) -> Result<(), Error> {
        let Some(chunk) = self.map.get(&base) else { return Ok(()) };
        self.summaries
            .remove(chunk.name.as_bytes())
            .map_err(storage(format!("removing the summary of {}", chunk.name)))?;
        Ok(())
    }

    /// Removes the summary of the last chunk, which takes appends again (after a restart
    /// or a truncation).
    pub(super) fn reopen_last(&self) -> Result<(), Error> {
        match self.map.last_key_value() {
            Some((base, _)) => self.forget_summary(*base),
            None => Ok(()),
        }
    }

    /// The database the chunks live in (to flush it).
    pub(super) fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Chunks in offset order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, &Chunk)> {
        self.map.iter().map(|(b, c)| (*b, c))
    }

    pub(super) fn get_mut(&mut self, base: i64) -> Option<&mut Chunk> {
        self.map.get_mut(&base)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The chunk a batch starting at `offset` goes to: the last one, or a new one starting
    /// at `offset` when the last is full, closed, or due to roll at `now`.
    pub(super) fn for_append(&mut self, offset: i64, now: i64, roll: Roll) -> Result<&mut Chunk, Error> {
        let listed_now = self.listed_bytes.load(Ordering::Relaxed);
        let full = self.last_closed
            || self.map.last_key_value().is_none_or(|(_, c)| {
                is_full(c.batches, c.bytes, listed_now)
                    || super::cleaner::must_roll(c.bytes, now.saturating_sub(c.created_ms), roll.bytes, roll.ms)
            });
        if full {
            let name = format!("{}@{offset}", self.prefix);
            let tree = self.db.open_tree(&name).map_err(storage(format!("creating {name}")))?;
            self.listed_bytes.fetch_add(listed(name.as_bytes()), Ordering::Relaxed);
            let closed = self.map.last_key_value().map(|(b, _)| *b);
            self.map.insert(offset, Chunk::new(tree, name, now));
            self.last_closed = false;
            if let Some(closed) = closed {
                self.summarize(closed)?;
                if let Some(chunk) = self.map.get(&closed) {
                    let_cache_see(&chunk.tree);
                }
            }
        }
        Ok(self.map.last_entry().expect("a chunk was just ensured").into_mut())
    }

    /// The chunk that would hold `offset` (the last one starting at or before it).
    pub(super) fn holding(&self, offset: i64) -> Option<(i64, &Chunk)> {
        self.map.range(..=offset).next_back().map(|(b, c)| (*b, c))
    }

    /// The trees that may hold offsets in `[from, upper)`, in order.
    pub(super) fn covering(&self, from: i64, upper: i64) -> Vec<sled::Tree> {
        let start = self.holding(from).map_or(i64::MIN, |(b, _)| b);
        if upper <= start {
            return Vec::new();
        }
        self.map.range(start..upper).map(|(_, c)| c.tree.clone()).collect()
    }

    /// Drops every chunk starting at or after `base`; returns the bytes they held.
    pub(super) fn drop_from(&mut self, base: i64) -> Result<u64, Error> {
        let doomed: Vec<i64> = self.map.range(base..).map(|(b, _)| *b).collect();
        let mut bytes = 0;
        for b in doomed {
            bytes += self.drop_chunk(b)?;
        }
        Ok(bytes)
    }

    /// Drops the chunk starting at `base`; returns the bytes it held.
    pub(super) fn drop_chunk(&mut self, base: i64) -> Result<u64, Error> {
        self.forget_summary(base)?;
        let Some(chunk) = self.map.remove(&base) else { return Ok(0) };
        if self.map.last_key_value().is_none_or(|(b, _)| *b < base) {
            self.last_closed = false;
        }
        self.drop_tree(chunk.name.as_bytes())?;
        Ok(chunk.bytes)
    }

    fn drop_tree(&self, name: &[u8]) -> Result<(), Error> {
        drop_named(&self.db, name, &self.listed_bytes)
    }
}

/// Drops the tree `name`, keeping the tree-list size in step.
fn drop_named(db: &sled::Db, name: &[u8], listed_bytes: &AtomicU64) -> Result<(), Error> {
    if db.drop_tree(name).map_err(storage(format!("dropping {}", String::from_utf8_lossy(name))))? {
        listed_bytes.fetch_sub(listed(name), Ordering::Relaxed);
    }
    Ok(())
}

/// Drops every chunk of partition tree `prefix` (deleting the partition).
pub(super) fn drop_all(db: &sled::Db, prefix: &str, listed_bytes: &AtomicU64) -> Result<(), Error> {
    let summaries = db.open_tree(SUMMARIES).map_err(storage("opening chunk-summaries"))?;
    for name in tree_names(db, prefix) {
        summaries.remove(&name).map_err(storage(format!("removing the summary of {}", String::from_utf8_lossy(&name))))?;
        drop_named(db, &name, listed_bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_at_nine_batches_only_when_large_enough() {
        let mib = 1u64 << 20;
        // (batches, bytes, listed bytes, full)
        let table = [
            (8, 8 * mib, 0, false),           // a ninth 1 MiB batch still fits
            (9, 9 * mib, 0, true),            // a tenth would make sled rewrite the leaf
            (9, 9 * 1024, 0, false),          // small batches share a chunk...
            (100, mib, 0, true),              // ...up to 1 MiB
            (9, 9 * mib, 300 * 1024, false),  // a long tree list asks for larger chunks
            (20, 10 * mib, 300 * 1024, true), // 32 x 300 KiB
            (3, 64 * mib, 10 * mib, true),    // never past 64 MiB
            (0, 0, 0, false),
        ];
        for (batches, bytes, listed, full) in table {
            assert_eq!(is_full(batches, bytes, listed), full, "{batches} batches, {bytes} bytes, {listed} listed");
        }
    }

    #[test]
    fn recovery_skips_only_closed_summarized_chunks_below_what_it_trusts() {
        let s = |base, batches, end| Summary { base, batches, bytes: 10, end, max_timestamp: 0, created_ms: 0 };
        // (summary, is last, trusted below, predecessor's end, skip)
        let table = [
            (s(0, 3, 10), false, 10, None, true),
            (s(10, 3, 20), false, 20, Some(10), true),
            (s(10, 3, 20), true, 20, Some(10), false),    // the last may have taken more
            (s(10, 3, 20), false, 19, Some(10), false),   // ends past the snapshot or recovery point
            (s(10, 3, 20), false, i64::MIN, None, false), // nothing trusted
            (s(10, 3, 20), false, 30, Some(12), false),   // overlaps its predecessor
            (s(10, 0, 20), false, 30, Some(10), false),   // empty
            (s(10, 3, 10), false, 30, Some(10), false),   // ends where it starts
            (s(14, 3, 20), false, 30, Some(10), true),    // a gap (compaction) is fine
        ];
        for (summary, last, trusted, expected, skip) in table {
            assert_eq!(may_skip(&summary, last, trusted, expected), skip, "{summary:?} last={last} trusted={trusted} after={expected:?}");
        }
    }

    #[test]
    fn chunk_names_belong_to_their_partition_only() {
        assert_eq!(chunk_name_base("log/t/1", b"log/t/1"), Some(None));
        assert_eq!(chunk_name_base("log/t/1", b"log/t/1@42"), Some(Some(42)));
        assert_eq!(chunk_name_base("log/t/1", b"log/t/10@42"), None);
        assert_eq!(chunk_name_base("log/t/1", b"log/t/1@x"), None);
        assert_eq!(chunk_name_base("log/t/1", b"log/t/2"), None);
    }
}
