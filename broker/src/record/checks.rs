//! What a leader checks record by record in a client's batch before writing it, as Kafka's
//! `LogValidator.validateRecord` does: a key on a compacted topic first, then the timestamp
//! against `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937). Each refused record
//! is named with its index in the batch (KIP-467) so that the client fails exactly those.
//! Pure functions over decoded records; the caller decides when records are read at all.

use std::fmt::Display;

use super::body::Records;
use super::{BatchHeader, ATTR_TIMESTAMP_TYPE};

/// The checks a partition's topic configuration asks for on a client's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordRules {
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compact: bool,
    /// `message.timestamp.type=CreateTime`: the producer's timestamps are kept, so they are
    /// checked against the bounds.
    pub create_time: bool,
    /// How far before the broker's clock a timestamp may lie (`i64::MAX`: any).
    pub before_max_ms: i64,
    /// How far after the broker's clock a timestamp may lie (`i64::MAX`: any).
    pub after_max_ms: i64,
}

impl RecordRules {
    /// Whether `header`'s records must be read to check them: only then is a compressed batch
    /// inflated on the produce path (a topic with default settings reads none).
    pub(crate) fn reads_records(&self, header: &BatchHeader) -> bool {
        self.compact
            || header.attributes & ATTR_TIMESTAMP_TYPE != 0
            || (self.create_time && (self.before_max_ms != i64::MAX || self.after_max_ms != i64::MAX))
    }
}

/// Why a record is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// No key on a compacted topic: INVALID_RECORD.
    NoKey,
    /// A timestamp out of bounds, or a producer claiming LogAppendTime: INVALID_TIMESTAMP.
    Timestamp,
}

/// Whether `timestamp` lies outside [now - before_max_ms, now + after_max_ms] (saturating, so
/// the `i64::MAX` defaults never overflow).
pub(crate) fn out_of_bounds(timestamp: i64, now: i64, before_max_ms: i64, after_max_ms: i64) -> bool {
    let behind = now.saturating_sub(timestamp);
    behind > before_max_ms || behind.saturating_neg() > after_max_ms
}

/// The refused records of one batch of partition `tp`, in batch order, each once (its first
/// fault, key before timestamp, as Kafka checks them), with Kafka's message for it.
pub(crate) fn faults(
    tp: &impl Display,
    header: &BatchHeader,
    records: &Records,
    rules: &RecordRules,
    now: i64,
) -> Vec<(i32, Fault, String)> {
    let producer_claims_append_time = header.attributes & ATTR_TIMESTAMP_TYPE != 0;
    (0..)
        .zip(&records.list)
        .filter_map(|(index, r)| {
            if rules.compact && r.key.is_none() {
                let message = format!("Compacted topic cannot accept message without key in topic partition {tp}.");
                return Some((index, Fault::NoKey, message));
            }
            let timestamp = header.base_timestamp.saturating_add(r.timestamp_delta);
            if rules.create_time && timestamp != -1 {
                out_of_bounds(timestamp, now, rules.before_max_ms, rules.after_max_ms).then(|| {
                    let offset = header.base_offset.saturating_add(r.offset_delta);
                    let message = format!(
                        "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
                        now.saturating_sub(rules.before_max_ms),
                        now.saturating_add(rules.after_max_ms)
                    );
                    (index, Fault::Timestamp, message)
                })
            } else if producer_claims_append_time {
                let offset = header.base_offset.saturating_add(r.offset_delta);
                let message = format!(
                    "Invalid timestamp type in message with offset {offset}. Producer should not set timestamp type to LogAppendTime."
                );
                Some((index, Fault::Timestamp, message))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::record::body::{decode, encoded_at};

    const NOW: i64 = 1_000_000;

    fn batch(compression: Compression, records: &[(Option<&'static str>, i64)]) -> (BatchHeader, Records) {
        let keys: Vec<Option<&'static str>> = records.iter().map(|(k, _)| *k).collect();
        let stamps: Vec<i64> = records.iter().map(|(_, ts)| *ts).collect();
        let bytes = encoded_at(compression, &keys, &vec![Some("v"); records.len()], &stamps);
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.total_len(), bytes.len(), "one batch");
        let records = decode(&header, &bytes).unwrap();
        (header, records)
    }

    #[test]
    fn bounds_hold_at_their_edges_and_never_overflow() {
        // (timestamp, before, after) -> out of bounds
        let cases = [
            ((NOW, 0, 0), false),
            ((NOW - 100, 100, 0), false),
            ((NOW - 101, 100, 0), true),
            ((NOW + 50, 0, 50), false),
            ((NOW + 51, 0, 50), true),
            ((i64::MIN, i64::MAX, i64::MAX), false),
            ((i64::MAX, i64::MAX, i64::MAX), false),
            ((i64::MAX, i64::MAX, 1_000), true),
            ((0, 1_000, i64::MAX), true),
        ];
        for ((ts, before, after), expected) in cases {
            assert_eq!(out_of_bounds(ts, NOW, before, after), expected, "timestamp {ts}, before {before}, after {after}");
        }
    }

    #[test]
    fn records_are_refused_for_their_first_fault_key_before_timestamp() {
        let rules = |compact, create_time, before, after| RecordRules { compact, create_time, before_max_ms: before, after_max_ms: after };
        let old = NOW - 10_000;
        let future = NOW + 10_000;
        let records = [(Some("k"), NOW), (None, NOW), (Some("k"), old), (None, old), (Some("k"), future), (Some("k"), -1)];
        // (rules) -> refused (index, fault)
        let cases: [(RecordRules, Vec<(i32, Fault)>); 6] = [
            (rules(false, true, i64::MAX, i64::MAX), vec![]),
            (rules(true, true, i64::MAX, i64::MAX), vec![(1, Fault::NoKey), (3, Fault::NoKey)]),
            (rules(false, true, 1_000, i64::MAX), vec![(2, Fault::Timestamp), (3, Fault::Timestamp)]),
            (rules(false, true, i64::MAX, 1_000), vec![(4, Fault::Timestamp)]),
            (
                rules(true, true, 1_000, 1_000),
                vec![(1, Fault::NoKey), (2, Fault::Timestamp), (3, Fault::NoKey), (4, Fault::Timestamp)],
            ),
            // LogAppendTime topics stamp records themselves: no bounds apply.
            (rules(false, false, 1_000, 1_000), vec![]),
        ];
        for compression in [Compression::None, Compression::Gzip] {
            let (h, r) = batch(compression, &records);
            for (rules, expected) in &cases {
                let got: Vec<(i32, Fault)> = faults(&"t-0", &h, &r, rules, NOW).into_iter().map(|(i, f, _)| (i, f)).collect();
                assert_eq!(&got, expected, "{rules:?} ({compression:?})");
                let bounded = rules.before_max_ms != i64::MAX || rules.after_max_ms != i64::MAX;
                assert_eq!(rules.reads_records(&h), rules.compact || (rules.create_time && bounded));
            }
        }
    }

    #[test]
    fn messages_read_as_kafkas() {
        let (h, r) = batch(Compression::None, &[(None, NOW), (Some("k"), NOW - 5_000)]);
        let rules = RecordRules { compact: true, create_time: true, before_max_ms: 1_000, after_max_ms: 2_000 };
        let got = faults(&"t-0", &h, &r, &rules, NOW);
        assert_eq!(got[0].2, "Compacted topic cannot accept message without key in topic partition t-0.");
        assert_eq!(
            got[1].2,
            format!("Timestamp {} of message with offset 101 is out of range. The timestamp should be within [{}, {}]", NOW - 5_000, NOW - 1_000, NOW + 2_000)
        );
    }

    #[test]
    fn a_producer_claiming_log_append_time_is_refused() {
        let (mut h, r) = batch(Compression::None, &[(Some("k"), -1)]);
        h.attributes |= ATTR_TIMESTAMP_TYPE;
        let rules = RecordRules { compact: false, create_time: true, before_max_ms: i64::MAX, after_max_ms: i64::MAX };
        assert!(rules.reads_records(&h));
        assert_eq!(faults(&"t-0", &h, &r, &rules, NOW)[0].1, Fault::Timestamp);
    }
}
