//! The records inside a batch, for the work that needs them one by one: the log cleaner
//! (keys, tombstones, which records stay), refusing keyless records on compacted topics,
//! and replaying internal topics.
//!
//! Compressed batches are inflated and deflated with the `kafka-protocol` crate's codecs.
//! Records are kept as the bytes they arrived as: a cleaned batch holds its surviving
//! records unchanged, their offset and timestamp deltas still relative to the unchanged
//! base offset and base timestamp, and keeps its last offset (so the producer's last
//! sequence survives), as Kafka's cleaner writes them.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::{read_field, read_varint, BatchError, BatchHeader, ATTR_TIMESTAMP_TYPE, CRC_START, HEADER_LEN, LOG_OVERHEAD};

/// One record: where it lies in the (inflated) records section, and its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The whole record, length prefix included.
    pub span: Range<usize>,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i64,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key, `None` when null.
    pub key: Option<Range<usize>>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<Range<usize>>,
}

/// The records of one batch over their inflated bytes.
#[derive(Clone, Debug)]
pub(crate) struct Records {
    /// The records section, inflated.
    pub body: Bytes,
    /// Each record, in order.
    pub list: Vec<Record>,
}

impl Records {
    /// A record's key.
    pub(crate) fn key(&self, r: &Record) -> Option<Bytes> {
        r.key.clone().map(|k| self.body.slice(k))
    }

    /// A record's value.
    pub(crate) fn value(&self, r: &Record) -> Option<Bytes> {
        r.value.clone().map(|v| self.body.slice(v))
    }
}

fn corrupt(what: &str) -> BatchError {
    BatchError::Corrupt(format!("record framing is broken: {what}"))
}

/// The most bytes the records of one batch may inflate to. Kafka reads a compressed batch
/// record by record and never holds it whole; this broker does (the cleaner, the keyless
/// check on compacted topics, internal topics), so a batch of a few kilobytes that
/// inflates to gigabytes (a decompression bomb) is refused instead of allocated.
pub(crate) const MAX_INFLATED_BYTES: usize = 128 << 20;

fn inflate(codec: i16, compressed: Bytes) -> Result<Bytes, BatchError> {
    inflate_at_most(codec, compressed, MAX_INFLATED_BYTES)
}

/// Inflates with the codecs' own readers (the crates `kafka-protocol` uses), stopping past
/// `limit` bytes; snappy's sizes are declared up front, so they are checked before
/// `kafka-protocol` allocates them.
fn inflate_at_most(codec: i16, compressed: Bytes, limit: usize) -> Result<Bytes, BatchError> {
    use std::io::Read;
    let failed = |e: &dyn std::fmt::Display| BatchError::Corrupt(format!("cannot decompress the records (codec {codec}): {e:#}"));
    let too_big = || {
        BatchError::Invalid(format!(
            "the records inflate to more than {} MiB (codec {codec}); Tributary refuses such a batch rather than hold it in memory",
            limit >> 20
        ))
    };
    let mut out = Vec::new();
    let bound = limit as u64 + 1;
    let read = match codec {
        0 => return Ok(compressed),
        1 => flate2::read::GzDecoder::new(&compressed[..]).take(bound).read_to_end(&mut out),
        2 => {
            if snappy_declared_len(&compressed) > limit {
                return Err(too_big());
            }
            let mut c = compressed;
            return Snappy::decompress(&mut c, |b: &mut Bytes| Ok(b.clone())).map_err(|e| failed(&e));
        }
        3 => lz4::Decoder::new(&compressed[..]).and_then(|d| d.take(bound).read_to_end(&mut out)),
        4 => zstd::stream::read::Decoder::new(&compressed[..]).and_then(|d| d.take(bound).read_to_end(&mut out)),
        other => return Err(BatchError::Invalid(format!("unknown compression codec {other}"))),
    };
    read.map_err(|e| failed(&e))?;
    if out.len() > limit {
        return Err(too_big());
    }
    Ok(Bytes::from(out))
}

/// What a snappy section says it inflates to: Kafka's framing (xerial's magic header, then
/// blocks each prefixed with its length) or a raw snappy block. Where the framing breaks,
/// the blocks before the break count: the decompressor allocates them before it fails.
fn snappy_declared_len(compressed: &[u8]) -> usize {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let Some(mut rest) = compressed.strip_prefix(MAGIC) else {
        return snap::raw::decompress_len(compressed).unwrap_or(0);
    };
    let mut total = 0usize;
    while let Some(len) = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) {
        let Some(block) = rest.get(4..4 + len) else { break };
        let Ok(inflated) = snap::raw::decompress_len(block) else { break };
        total = total.saturating_add(inflated);
        rest = &rest[4 + len..];
    }
    total
}

fn deflate(codec: i16, body: &[u8]) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::new();
    let put = |b: &mut BytesMut| {
        b.put_slice(body);
        Ok(())
    };
    let done = match codec {
        0 => put(&mut out),
        1 => Gzip::compress(&mut out, put),
        2 => Snappy::compress(&mut out, put),
        3 => Lz4::compress(&mut out, put),
        4 => Zstd::compress(&mut out, put),
        other => return Err(BatchError::Invalid(format!("unknown compression codec {other}"))),
    };
    done.map_err(|e| BatchError::Corrupt(format!("cannot compress the records (codec {codec}): {e:#}")))?;
    Ok(out.freeze())
}

/// Reads a length-prefixed field at `pos` (see [`read_field`]): `None` for a null one.
fn field(body: &[u8], pos: &mut usize, end: usize) -> Result<Option<Range<usize>>, BatchError> {
    let mut rest = &body[*pos..end];
    let value = read_field(&mut rest).ok_or_else(|| corrupt("field runs past its record"))?;
    *pos = end - rest.len();
    Ok(value.map(|v| *pos - v.len()..*pos))
}

/// The records of `batch` (the whole batch, header included), inflated if compressed.
///
/// # Errors
/// [`BatchError::Corrupt`] when the records do not decompress or their framing is broken,
/// or there are not as many as the header says.
pub(crate) fn decode(header: &BatchHeader, batch: &Bytes) -> Result<Records, BatchError> {
    let end = header.total_len().min(batch.len());
    let body = inflate(header.compression(), batch.slice(HEADER_LEN.min(end)..end))?;
    let mut list = Vec::with_capacity(header.record_count.clamp(0, 1 << 16) as usize);
    let mut pos = 0;
    for _ in 0..header.record_count.max(0) {
        let mut rest = &body[pos..];
        let before = rest.len();
        let len = read_varint(&mut rest).ok_or_else(|| corrupt("record length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("negative record length"))?;
        if len > rest.len() || len == 0 {
            return Err(corrupt("record length runs past the batch"));
        }
        let start = pos;
        let record_end = pos + (before - rest.len()) + len;
        let mut fields = &rest[1..len]; // attributes
        let timestamp_delta = read_varint(&mut fields).ok_or_else(|| corrupt("timestamp delta"))?;
        let offset_delta = read_varint(&mut fields).ok_or_else(|| corrupt("offset delta"))?;
        let mut p = record_end - fields.len();
        let key = field(&body, &mut p, record_end)?;
        let value = field(&body, &mut p, record_end)?;
        list.push(Record { span: start..record_end, offset_delta, timestamp_delta, key, value });
        pos = record_end;
    }
    if pos != body.len() {
        return Err(corrupt("bytes left after the last record"));
    }
    Ok(Records { body, list })
}

/// `batch` with only the records at the indexes in `keep` (ascending), compressed as
/// before: base offset, last offset, base timestamp, producer fields and attributes stay;
/// the record count, the largest timestamp (for CreateTime; an emptied batch keeps the old
/// one), the length and the CRC are recomputed.
///
/// # Errors
/// [`BatchError::Corrupt`] when compressing fails.
pub(crate) fn rebuild(
    header: &BatchHeader,
    batch: &Bytes,
    records: &Records,
    keep: &[usize],
) -> Result<Bytes, BatchError> {
    let mut body = BytesMut::new();
    let mut max_timestamp = None::<i64>;
    for &i in keep {
        let r = &records.list[i];
        body.put_slice(&records.body[r.span.clone()]);
        let ts = header.base_timestamp.saturating_add(r.timestamp_delta);
        max_timestamp = Some(max_timestamp.map_or(ts, |m| m.max(ts)));
    }
    let section = deflate(header.compression(), &body)?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + section.len());
    out.put_slice(&batch[..HEADER_LEN]);
    out.put_slice(&section);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    if header.attributes & ATTR_TIMESTAMP_TYPE == 0 {
        if let Some(ts) = max_timestamp {
            out[35..43].copy_from_slice(&ts.to_be_bytes());
        }
    }
    out[57..61].copy_from_slice(&(keep.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Each record of a batch as `(offset, timestamp)`, as consumers see them: a
/// LogAppendTime batch stamps every record with its append time (pure over the batch bytes).
/// `None` when the records cannot be read (the caller falls back to the batch's figures).
pub(crate) fn record_times(header: &BatchHeader, batch: &Bytes) -> Option<Vec<(i64, i64)>> {
    let records = decode(header, batch).ok()?;
    let append_time = header.attributes & super::ATTR_TIMESTAMP_TYPE != 0;
    Some(
        records
            .list
            .iter()
            .map(|r| {
                let ts = if append_time { header.max_timestamp } else { header.base_timestamp.saturating_add(r.timestamp_delta) };
                (header.base_offset.saturating_add(r.offset_delta), ts)
            })
            .collect(),
    )
}

/// ListOffsets by time within one batch (KIP-79): the first record at or above offset
/// `from` whose timestamp is at or after `target` (pure).
pub(crate) fn first_at_or_after(header: &BatchHeader, batch: &Bytes, target: i64, from: i64) -> Option<(i64, i64)> {
    match record_times(header, batch) {
        Some(times) => times.into_iter().find(|(o, ts)| *o >= from && *ts >= target),
        None => (header.last_offset() >= from && header.max_timestamp >= target)
            .then(|| (header.base_offset.max(from), header.max_timestamp)),
    }
}

/// ListOffsets MAX_TIMESTAMP within one batch (KIP-734, as fixed by KAFKA-16310): the first
/// record at or above offset `from` holding the batch's largest timestamp (pure).
pub(crate) fn offset_of_max_timestamp(header: &BatchHeader, batch: &Bytes, from: i64) -> Option<(i64, i64)> {
    match record_times(header, batch) {
        Some(times) => {
            let max = times.iter().filter(|(o, _)| *o >= from).map(|(_, ts)| *ts).max()?;
            times.into_iter().find(|(o, ts)| *o >= from && *ts == max)
        }
        None => (header.last_offset() >= from).then(|| (header.last_offset(), header.max_timestamp)),
    }
}

/// One batch of records at offsets 100.. (producer 7, sequences 10..), stamped
/// `timestamps`, built by kafka-protocol's encoder (for tests).
#[cfg(test)]
pub(crate) fn encoded_at(
    compression: kafka_protocol::records::Compression,
    keys: &[Option<&'static str>],
    values: &[Option<&'static str>],
    timestamps: &[i64],
) -> Bytes {
    encoded_from(10, compression, keys, values, timestamps)
}

/// [`encoded_at`] with the first record at sequence `first_sequence`.
#[cfg(test)]
pub(crate) fn encoded_from(
    first_sequence: i32,
    compression: kafka_protocol::records::Compression,
    keys: &[Option<&'static str>],
    values: &[Option<&'static str>],
    timestamps: &[i64],
) -> Bytes {
    use kafka_protocol::records::{Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<KRecord> = keys
        .iter()
        .zip(values)
        .zip(timestamps)
        .enumerate()
        .map(|(i, ((k, v), ts))| KRecord {
            transactional: false,
            control: false,
            partition_leader_epoch: 3,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 100 + i as i64,
            sequence: first_sequence + i as i32,
            timestamp: *ts,
            key: k.map(|s| Bytes::from_static(s.as_bytes())),
            value: v.map(|s| Bytes::from_static(s.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    use super::*;
    use crate::record::verify_replicated;

    fn encoded(compression: Compression, keys: &[Option<&'static str>], values: &[Option<&'static str>]) -> Bytes {
        let stamps: Vec<i64> = (0..keys.len() as i64).map(|i| 1_000 + 10 * i).collect();
        encoded_at(compression, keys, values, &stamps)
    }

    /// A few kilobytes that inflate past the bound are refused, in every codec and in both
    /// snappy framings, before the inflated bytes are held.
    #[test]
    fn records_that_inflate_past_the_bound_are_refused() {
        let zeros = vec![0u8; 64 << 10];
        for codec in 1..=4i16 {
            let section = deflate(codec, &zeros).unwrap();
            assert!(section.len() < 8 << 10, "codec {codec}: {} bytes", section.len());
            assert_eq!(inflate_at_most(codec, section.clone(), 1 << 20).unwrap().len(), zeros.len());
            let refused = inflate_at_most(codec, section, 16 << 10);
            assert!(matches!(&refused, Err(BatchError::Invalid(m)) if m.contains("inflate to more than")), "codec {codec}: {refused:?}");
        }
        let raw = Bytes::from(snap::raw::Encoder::new().compress_vec(&zeros).unwrap());
        assert_eq!(inflate_at_most(2, raw.clone(), 1 << 20).unwrap().len(), zeros.len());
        assert!(matches!(inflate_at_most(2, raw, 16 << 10), Err(BatchError::Invalid(_))));
        // A raw snappy section of four bytes that claims 4 GiB.
        assert!(matches!(inflate_at_most(2, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]), 1 << 20), Err(BatchError::Invalid(_))));
        // Found by the record_batch fuzz target: Kafka's framing with a first block that
        // claims 2 GiB and a broken second block (kafka-protocol allocated the first).
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x07, 0, 0, 0, 99, 1]);
        assert!(matches!(inflate_at_most(2, Bytes::from(framed), 1 << 20), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn records_read_back_from_every_codec_and_a_rebuilt_batch_keeps_offsets() {
        let keys = [Some("a"), None, Some("c"), Some("a")];
        let values = [Some("1"), Some("2"), None, Some("4")];
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let batch = encoded(codec, &keys, &values);
            let h = BatchHeader::parse(&batch).unwrap();
            let recs = decode(&h, &batch).unwrap();
            let got: Vec<_> = recs.list.iter().map(|r| (recs.key(r), recs.value(r), r.offset_delta)).collect();
            let want: Vec<_> = keys
                .iter()
                .zip(values)
                .enumerate()
                .map(|(i, (k, v))| (k.map(Bytes::from), v.map(Bytes::from), i as i64))
                .collect();
            assert_eq!(got, want, "{codec:?}");

            // Keep records 2 and 3: offsets 102 and 103, timestamps 1020 and 1030.
            let cleaned = rebuild(&h, &batch, &recs, &[2, 3]).unwrap();
            let stored = verify_replicated(&cleaned).unwrap();
            let ch = &stored[0].0;
            assert_eq!((ch.base_offset, ch.last_offset(), ch.record_count), (100, 103, 2), "{codec:?}");
            assert_eq!((ch.base_sequence, ch.max_timestamp, ch.compression()), (10, 1030, h.compression()));
            // Any Kafka client decodes it with the original offsets.
            let decoded = RecordBatchDecoder::decode(&mut cleaned.clone()).unwrap();
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![102, 103], "{codec:?}");
            assert_eq!(decoded.records[1].value.as_deref(), Some(&b"4"[..]));

            // Emptied: no records, same last offset, old max timestamp.
            let empty = rebuild(&h, &batch, &recs, &[]).unwrap();
            let eh = &verify_replicated(&empty).unwrap()[0].0;
            assert_eq!((eh.record_count, eh.last_offset(), eh.max_timestamp), (0, 103, h.max_timestamp));
        }
    }

    #[test]
    fn broken_records_are_refused_not_panicked_on() {
        let batch = encoded(Compression::None, &[Some("k")], &[Some("v")]);
        let h = BatchHeader::parse(&batch).unwrap();
        // Claims more records than it holds.
        let more = BatchHeader { record_count: 2, ..h.clone() };
        assert!(decode(&more, &batch).is_err());
        // A record length that runs past the batch.
        let mut bad = BytesMut::from(&batch[..]);
        bad[HEADER_LEN] = 0x7e;
        assert!(decode(&h, &bad.freeze()).is_err());
        // Garbage where gzip data should be.
        let gz = BatchHeader { attributes: 1, ..h.clone() };
        assert!(matches!(decode(&gz, &batch), Err(BatchError::Corrupt(m)) if m.contains("decompress")));
    }

    #[test]
    fn timestamp_lookups_answer_at_record_granularity() {
        // One batch of three records at offsets 100.., stamped out of order (+100, +400,
        // +200 as in confluent-kafka's list_offsets test).
        let times = |ts: [i64; 3]| {
            let b = encoded_at(Compression::Lz4, &[None; 3], &[Some("v"); 3], &ts);
            (BatchHeader::parse(&b).unwrap(), b)
        };
        let (h, b) = times([1100, 1400, 1200]);
        // (target, from) -> answer
        let cases = [
            ((0, 0), Some((100, 1100))),
            ((1100, 0), Some((100, 1100))),
            ((1101, 0), Some((101, 1400))),
            ((1300, 0), Some((101, 1400))),
            ((1401, 0), None),
            // Below the log start offset nothing is answered.
            ((0, 102), Some((102, 1200))),
        ];
        for ((target, from), want) in cases {
            assert_eq!(first_at_or_after(&h, &b, target, from), want, "target {target} from {from}");
        }
        assert_eq!(offset_of_max_timestamp(&h, &b, 0), Some((101, 1400)));
        assert_eq!(offset_of_max_timestamp(&h, &b, 102), Some((102, 1200)));
        assert_eq!(offset_of_max_timestamp(&h, &b, 103), None);
        // Ties: the first record with the largest timestamp.
        let (h, b) = times([5, 9, 9]);
        assert_eq!(offset_of_max_timestamp(&h, &b, 0), Some((101, 9)));
        // LogAppendTime: every record carries the append time.
        let (h, b) = times([5, 9, 7]);
        let mut stamped = BytesMut::from(&b[..]);
        crate::record::stamp_in_place(&mut stamped, 100, 0, Some(50));
        let stamped = stamped.freeze();
        let h2 = BatchHeader::parse(&stamped).unwrap();
        assert_eq!(first_at_or_after(&h2, &stamped, 10, 0), Some((100, 50)));
        assert_eq!(offset_of_max_timestamp(&h2, &stamped, 0), Some((100, 50)));
        // Unreadable records (the header claims more than there are): the batch's own figures.
        let mut claims_more = h.clone();
        claims_more.record_count = 10;
        let broken = b.clone();
        let h = claims_more;
        assert_eq!(first_at_or_after(&h, &broken, 6, 0), Some((100, 9)));
        assert_eq!(offset_of_max_timestamp(&h, &broken, 0), Some((102, 9)));
    }
}
