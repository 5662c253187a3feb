//! Idempotent producer state of one partition (KIP-98, KIP-360): per producer id the epoch
//! and the last five batches' sequence ranges with their offsets. The leader checks each
//! batch against it before appending; every replica updates it from the batches it
//! stores, so a new leader already knows what the old one accepted.
//!
//! Transactions are tracked here too, as Kafka's `ProducerStateManager` does: the first
//! offset of each producer's open transaction (which bounds the last stable offset), the
//! transactions whose marker is not yet below the high watermark, and the aborted ones
//! (Fetch's `aborted_transactions` for read_committed consumers).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::log::Rebuild;
use crate::record::control::Marker;
use crate::record::BatchHeader;

/// How many batches per producer are remembered for duplicate detection (Kafka keeps 5,
/// matching `max.in.flight.requests.per.connection` for idempotent producers).
pub(crate) const RETAINED_BATCHES: usize = 5;

/// One appended batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

/// What the partition knows of one producer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    /// Current producer epoch.
    pub epoch: i16,
    /// Its last batches, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// The largest timestamp of its last batch (DescribeProducers' `last_timestamp`).
    pub last_timestamp: i64,
}

/// Why a batch was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SequenceError {
    /// The producer was fenced by a newer epoch: INVALID_PRODUCER_EPOCH.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch {
        /// Producer.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// Ours.
        current: i16,
    },
    /// A gap or a reordering: OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("producer {producer_id} epoch {epoch}: sequence {first_sequence} does not follow {expected_after}")]
    OutOfOrder {
        /// Producer.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The batch's first sequence.
        first_sequence: i32,
        /// The last sequence appended (-1 for a new epoch, which must start at 0).
        expected_after: i32,
    },
}

/// Outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Append,
    /// Already appended: answer with the original offsets, write nothing.
    Duplicate(BatchMetadata),
}

/// Sequence `b` directly follows `a`, wrapping at `i32::MAX` as Kafka does.
fn follows(a: i32, b: i32) -> bool {
    if a == i32::MAX {
        b == 0
    } else {
        b == a + 1
    }
}

fn last_sequence(h: &BatchHeader) -> i32 {
    // Sequences wrap: base + delta modulo 2^31.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A producer as DescribeProducers shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActiveProducer {
    /// Its id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// Its last sequence.
    pub last_sequence: i32,
    /// Its last batch's largest timestamp.
    pub last_timestamp: i64,
    /// First offset of its open transaction here, or -1 (`kafka-transactions find-hanging`).
    pub txn_start_offset: i64,
}

/// A transaction that ended with ABORT: read_committed fetches skip its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortedTxn {
    /// Its producer.
    pub producer_id: i64,
    /// Its first offset in this partition.
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
}

/// All producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → first offset.
    ongoing: HashMap<i64, i64>,
    /// Ended transactions whose marker may not be replicated yet: (marker offset, first offset).
    unreplicated: Vec<(i64, i64)>,
    /// Aborted transactions, by marker offset.
    aborted: Vec<AbortedTxn>,
}

impl ProducerStates {
    /// Checks a batch from the produce path. Batches without a producer id always append.
    ///
    /// # Errors
    /// [`SequenceError`] as documented on its variants.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Check, SequenceError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state expired with the log): any sequence starts it.
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        let last = last_sequence(h);
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(SequenceError::OutOfOrder {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    first_sequence: h.base_sequence,
                    expected_after: -1,
                });
            }
            return Ok(Check::Append);
        }
        if let Some(dup) = entry.batches.iter().find(|b| b.first_sequence == h.base_sequence && b.last_sequence == last)
        {
            return Ok(Check::Duplicate(*dup));
        }
        match entry.batches.back() {
            Some(b) if !follows(b.last_sequence, h.base_sequence) => Err(SequenceError::OutOfOrder {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                first_sequence: h.base_sequence,
                expected_after: b.last_sequence,
            }),
            _ => Ok(Check::Append),
        }
    }

    /// Checks a transaction marker about to be written: a producer epoch older than the
    /// one known is refused (the marker would end a fenced producer's transaction).
    ///
    /// # Errors
    /// [`SequenceError::InvalidEpoch`].
    pub(crate) fn check_marker(&self, h: &BatchHeader) -> Result<(), SequenceError> {
        match self.producers.get(&h.producer_id) {
            Some(entry) if h.producer_epoch < entry.epoch => Err(SequenceError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Records a stored transaction marker at `offset`: the producer's open transaction
    /// ends there (and, aborted, is remembered for read_committed fetches); a marker of a
    /// newer epoch (the coordinator fenced the producer) moves the producer to it.
    pub(crate) fn end_transaction(&mut self, h: &BatchHeader, offset: i64, marker: Marker) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        let Some(first_offset) = self.ongoing.remove(&h.producer_id) else { return };
        self.unreplicated.push((offset, first_offset));
        if marker == Marker::Abort {
            self.aborted.push(AbortedTxn { producer_id: h.producer_id, first_offset, last_offset: offset });
        }
    }

    /// The first offset a read_committed consumer may not read yet, below `high_watermark`:
    /// the start of the earliest transaction that is open or whose marker is not yet
    /// below the high watermark (Kafka's first unstable offset); `None` when there is none.
    pub(crate) fn first_unstable_offset(&mut self, high_watermark: i64) -> Option<i64> {
        self.unreplicated.retain(|(marker, _)| *marker >= high_watermark);
        self.ongoing.values().chain(self.unreplicated.iter().map(|(_, first)| first)).copied().min()
    }

    /// The aborted transactions a fetch of `[from, upper)` meets: (producer id, first offset).
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|t| t.last_offset >= from && t.first_offset < upper)
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    /// Whether `producer_id` has an open transaction here.
    pub(crate) fn in_transaction(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Every aborted transaction known, by marker offset.
    pub(crate) fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets aborted transactions wholly below `log_start` (retention removed them).
    pub(crate) fn forget_before(&mut self, log_start: i64) {
        self.aborted.retain(|t| t.last_offset >= log_start);
    }

    /// Records a stored batch (leader or follower) at its assigned offsets.
    pub(crate) fn update(&mut self, h: &BatchHeader, first_offset: i64) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        if h.is_transactional() {
            self.ongoing.entry(h.producer_id).or_insert(first_offset);
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp;
        entry.batches.push_back(BatchMetadata {
            first_sequence: h.base_sequence,
            last_sequence: last_sequence(h),
            first_offset,
            last_offset: first_offset + i64::from(h.last_offset_delta),
        });
        while entry.batches.len() > RETAINED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Records a stored batch as a replica or recovery finds it: data, or a marker.
    pub(crate) fn observe(&mut self, h: &BatchHeader, marker: Option<Marker>) {
        match marker {
            Some(m) => self.end_transaction(h, h.base_offset, m),
            None => self.update(h, h.base_offset),
        }
    }

    /// Rebuilds the state from stored batches, oldest first.
    #[cfg(test)]
    pub(crate) fn rebuild<'a>(batches: impl IntoIterator<Item = &'a (BatchHeader, Option<Marker>)>) -> Self {
        let mut states = ProducerStates::default();
        for (h, marker) in batches {
            states.observe(h, *marker);
        }
        states
    }

    /// Every producer with its epoch, last sequence and last timestamp, by producer id
    /// (DescribeProducers).
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: e.last_timestamp,
                txn_start_offset: self.ongoing.get(id).copied().unwrap_or(-1),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// Whether `last_offset` ends the last batch known of `producer_id` (the log cleaner
    /// keeps such a batch, emptied, so that the producer's sequence survives).
    pub(crate) fn is_last_batch(&self, producer_id: i64, last_offset: i64) -> bool {
        self.producers.get(&producer_id).and_then(|e| e.batches.back()).is_some_and(|b| b.last_offset == last_offset)
    }

    /// Number of producers known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// The stored form of this state (Kafka's producer-state `.snapshot` file), versioned.
    pub(crate) fn to_snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&Stored { version: SNAPSHOT_VERSION, state: self })
            .expect("producer state is plain JSON")
    }

    /// Reads a stored state; `None` for a damaged one or another version (the partition's
    /// batches are then walked instead).
    pub(crate) fn from_snapshot(raw: &[u8]) -> Option<ProducerStates> {
        serde_json::from_slice::<Stored<ProducerStates>>(raw).ok().filter(|s| s.version == SNAPSHOT_VERSION).map(|s| s.state)
    }
}

/// Version of the stored form.
const SNAPSHOT_VERSION: u32 = 1;

/// The stored form of [`ProducerStates`] (written from a borrow, read into an owned one).
#[derive(Serialize, Deserialize)]
struct Stored<S> {
    version: u32,
    state: S,
}

/// A partition opening rebuilds its producers from the snapshot and the batches after it.
impl Rebuild for ProducerStates {
    fn snapshot(&mut self, _offset: i64, raw: &[u8]) -> bool {
        match ProducerStates::from_snapshot(raw) {
            Some(state) => {
                *self = state;
                true
            }
            None => false,
        }
    }

    fn discard_snapshot(&mut self) {
        *self = ProducerStates::default();
    }

    fn batch(&mut self, h: &BatchHeader, marker: Option<Marker>) {
        self.observe(h, marker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequences_follow_kafka_rules() {
        let mut s = ProducerStates::default();
        for (seq, offset) in [(0, 0), (3, 3), (6, 6)] {
            assert_eq!(s.check(&batch(7, 0, seq, 3, 0)), Ok(Check::Append));
            s.update(&batch(7, 0, seq, 3, 0), offset);
        }
        let meta = |seq, off| BatchMetadata {
            first_sequence: seq,
            last_sequence: seq + 2,
            first_offset: off,
            last_offset: off + 2,
        };
        // (batch, expected)
        let cases: Vec<(BatchHeader, Result<Check, SequenceError>)> = vec![
            (batch(7, 0, 9, 3, 0), Ok(Check::Append)),
            // A retry of an appended batch: the original offsets, nothing written.
            (batch(7, 0, 3, 3, 0), Ok(Check::Duplicate(meta(3, 3)))),
            (batch(7, 0, 6, 3, 0), Ok(Check::Duplicate(meta(6, 6)))),
            // A gap.
            (
                batch(7, 0, 10, 3, 0),
                Err(SequenceError::OutOfOrder { producer_id: 7, epoch: 0, first_sequence: 10, expected_after: 8 }),
            ),
            // A fenced epoch.
            (batch(7, -1, 9, 3, 0), Err(SequenceError::InvalidEpoch { producer_id: 7, epoch: -1, current: 0 })),
            // A new epoch must start at 0.
            (
                batch(7, 1, 9, 1, 0),
                Err(SequenceError::OutOfOrder { producer_id: 7, epoch: 1, first_sequence: 9, expected_after: -1 }),
            ),
            (batch(7, 1, 0, 1, 0), Ok(Check::Append)),
            // Unknown producers and non-idempotent batches start anywhere.
            (batch(8, 0, 42, 1, 0), Ok(Check::Append)),
            (batch(-1, -1, -1, 1, 0), Ok(Check::Append)),
        ];
        for (b, expected) in cases {
            assert_eq!(s.check(&b), expected, "{b:?}");
        }
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.update(&batch(1, 0, i, 1, i64::from(i)), i64::from(i));
        }
        assert!(matches!(s.check(&batch(1, 0, 2, 1, 0)), Ok(Check::Duplicate(_))));
        assert!(matches!(s.check(&batch(1, 0, 1, 1, 0)), Err(SequenceError::OutOfOrder { .. })));
        let mut w = ProducerStates::default();
        w.update(&batch(2, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(w.check(&batch(2, 0, 0, 1, 0)), Ok(Check::Append));
    }

    #[test]
    fn state_rebuilt_from_headers_matches_the_live_state() {
        let headers = [batch(1, 0, 0, 2, 0), batch(2, 0, 0, 1, 2), batch(1, 0, 2, 2, 3)];
        let mut live = ProducerStates::default();
        for h in &headers {
            live.update(h, h.base_offset);
        }
        let stored: Vec<(BatchHeader, Option<Marker>)> = headers.iter().map(|h| (h.clone(), None)).collect();
        assert_eq!(ProducerStates::rebuild(&stored), live);
        assert_eq!(live.len(), 2);
    }

    fn txn(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader { attributes: 0x10, ..batch(pid, epoch, seq, count, offset) }
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader { attributes: 0x30, base_sequence: -1, ..batch(pid, epoch, 0, 1, offset) }
    }

    #[test]
    fn a_snapshot_then_the_batches_after_it_give_the_state_of_the_whole_log() {
        let stored = vec![
            (batch(7, 0, 0, 3, 0), None),
            (txn(1, 0, 0, 2, 3), None),
            (txn(2, 0, 0, 2, 5), None),
            (marker(2, 0, 7), Some(Marker::Abort)),
            (batch(7, 0, 3, 3, 8), None),
            (txn(1, 0, 2, 1, 11), None),
            (marker(1, 0, 12), Some(Marker::Commit)),
            (batch(7, 1, 0, 1, 13), None),
        ];
        let whole = ProducerStates::rebuild(&stored);
        // A snapshot taken at every point, then the batches after it, rebuilds the same state.
        for at in 0..=stored.len() {
            let snapshot = ProducerStates::rebuild(&stored[..at]).to_snapshot();
            let mut opened = ProducerStates::default();
            assert!(Rebuild::snapshot(&mut opened, 0, &snapshot), "taken at batch {at}");
            for (h, m) in &stored[at..] {
                Rebuild::batch(&mut opened, h, *m);
            }
            assert_eq!(opened, whole, "snapshot at batch {at}");
        }
        // Damaged or from another version: refused, and the state stays empty.
        let good = whole.to_snapshot();
        let other_version = String::from_utf8(good.clone()).unwrap().replacen("\"version\":1", "\"version\":2", 1);
        for bad in [&good[..good.len() / 2], b"", other_version.as_bytes()] {
            let mut opened = ProducerStates::default();
            assert!(!Rebuild::snapshot(&mut opened, 0, bad));
            assert_eq!(opened, ProducerStates::default());
        }
    }

    #[test]
    fn transactions_bound_the_last_stable_offset_and_aborted_ones_are_listed() {
        let mut s = ProducerStates::default();
        // Producer 1: a transaction at 0-1 and 4, committed at 6. Producer 2: 2-3, aborted at 5.
        s.update(&txn(1, 0, 0, 2, 0), 0);
        s.update(&txn(2, 0, 0, 2, 2), 2);
        s.update(&batch(3, 0, 0, 1, 7), 7); // not transactional: no bound
        assert_eq!(s.first_unstable_offset(10), Some(0));
        s.update(&txn(1, 0, 2, 1, 4), 4);
        s.end_transaction(&marker(2, 0, 5), 5, Marker::Abort);
        assert_eq!(s.first_unstable_offset(10), Some(0), "producer 1 is still open");
        s.end_transaction(&marker(1, 0, 6), 6, Marker::Commit);
        // Both ended; until the high watermark passes the markers they still bound the LSO.
        assert_eq!(s.first_unstable_offset(6), Some(0));
        assert_eq!(s.first_unstable_offset(7), None);
        // (from, upper) -> aborted transactions met
        let cases = [((0, 10), vec![(2, 2)]), ((6, 10), vec![]), ((0, 2), vec![]), ((5, 6), vec![(2, 2)])];
        for ((from, upper), want) in cases {
            assert_eq!(s.aborted_between(from, upper), want, "{from}..{upper}");
        }
        // A marker with a newer epoch (the coordinator fenced the producer) moves it on.
        s.update(&txn(1, 0, 3, 1, 8), 8);
        s.end_transaction(&marker(1, 1, 9), 9, Marker::Abort);
        assert_eq!(
            s.check(&txn(1, 0, 4, 1, 10)).unwrap_err(),
            SequenceError::InvalidEpoch { producer_id: 1, epoch: 0, current: 1 }
        );
        // Rebuilt from the stored batches, the same state.
        let stored = vec![
            (txn(1, 0, 0, 2, 0), None),
            (txn(2, 0, 0, 2, 2), None),
            (txn(1, 0, 2, 1, 4), None),
            (marker(2, 0, 5), Some(Marker::Abort)),
            (marker(1, 0, 6), Some(Marker::Commit)),
            (batch(3, 0, 0, 1, 7), None),
            (txn(1, 0, 3, 1, 8), None),
            (marker(1, 1, 9), Some(Marker::Abort)),
        ];
        let mut rebuilt = ProducerStates::rebuild(&stored);
        assert_eq!(rebuilt.aborted_between(0, 100), s.aborted_between(0, 100));
        assert_eq!(rebuilt.first_unstable_offset(100), s.first_unstable_offset(100));
        s.forget_before(6);
        assert_eq!(s.aborted_between(0, 100), vec![(1, 8)]);
    }
}
