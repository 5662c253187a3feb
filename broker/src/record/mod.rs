//! Kafka record batches (magic 2) as stored bytes: the 61-byte header is parsed and checked
//! here; records stay opaque except for an uncompressed batch's record framing, which is
//! walked so that a batch whose count or lengths lie is refused rather than stored. The
//! work that needs records one by one (the log cleaner, [`checks`] of a client's records,
//! replaying internal topics) goes through [`body`].

pub(crate) mod body;
pub(crate) mod checks;
pub(crate) mod control;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the fixed batch header.
pub(crate) const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` is counted (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;
pub(crate) const CRC_START: usize = 21;
pub(super) const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// The fixed header of a v2 record batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// First offset in the batch.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Epoch of the leader that appended it.
    pub partition_leader_epoch: i32,
    /// Format version; only 2 is accepted.
    pub magic: i8,
    /// CRC-32C of everything from `attributes` on.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `b` (which must hold at least [`HEADER_LEN`] bytes).
    pub(crate) fn parse(mut b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        })
    }

    /// Total size of the batch in bytes.
    pub(crate) fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    /// Offset of the last record.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }
    /// Compression codec bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub(crate) fn compression(&self) -> i16 {
        self.attributes & 0x07
    }
    /// Whether it belongs to a transaction (data or marker).
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// Whether it is a control batch (transaction marker).
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Why a batch was refused; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum BatchError {
    /// Lengths or CRC do not add up: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Well-formed bytes that Kafka refuses: INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// Records of the batch that Kafka refuses one by one (KIP-467), with each record's index
    /// in the batch and why, so a client fails exactly those records: INVALID_RECORD, or
    /// INVALID_TIMESTAMP when a timestamp is among the reasons (Kafka's rule).
    #[error("{}", record_errors_message(*.timestamps, .errors))]
    Records {
        /// A record's timestamp is among the reasons.
        timestamps: bool,
        /// (index in the batch, why).
        errors: Vec<(i32, String)>,
    },
    /// A batch larger than `message.max.bytes`: MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds the topic's max.message.bytes={max} (the broker's message.max.bytes when the topic sets none); raise it or send smaller batches")]
    TooLarge {
        /// Batch size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Kafka's partition-level message for record errors (its `LogValidator` wording).
fn record_errors_message(timestamps: bool, errors: &[(i32, String)]) -> String {
    if timestamps {
        return "One or more records have been rejected due to invalid timestamp".into();
    }
    let shown: Vec<String> =
        errors.iter().take(3).map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')")).collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    )
}

/// Records in the data batches of `bytes` (a fetch answer's concatenated batches; a
/// truncated last batch and control batches count nothing), read from the headers alone.
pub(crate) fn data_record_count(mut bytes: &[u8]) -> u64 {
    let mut count = 0u64;
    while let Some(h) = BatchHeader::parse(bytes) {
        if h.total_len() > bytes.len() || h.total_len() < HEADER_LEN {
            break;
        }
        if !h.is_control() {
            count += u64::try_from(h.record_count).unwrap_or(0);
        }
        bytes = &bytes[h.total_len()..];
    }
    count
}

/// Splits `records` into validated batches.
///
/// # Errors
/// [`BatchError`] for the first batch that is truncated, fails its CRC, is not magic 2,
/// has an inconsistent count, or exceeds `max_batch_bytes`.
pub(crate) fn validate(records: &Bytes, max_batch_bytes: usize) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split(records, max_batch_bytes, true)
}

/// Splits stored batches (fetched from a partition leader, or found past the recovery
/// point), checking lengths, magic, CRC-32C and counts but not walking each record: the
/// leader validated them when it accepted them, and the CRC shows they are as it stored
/// them. Cleaned batches (records missing, offsets with gaps) pass.
///
/// # Errors
/// [`BatchError`] for the first batch that is truncated or fails its CRC.
pub(crate) fn verify_replicated(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split(records, usize::MAX, false)
}

fn split(records: &Bytes, max_batch_bytes: usize, walk_records: bool) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    if records.is_empty() {
        return Err(BatchError::Invalid("the produce request holds no record batch".into()));
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Corrupt(format!("{} trailing bytes are too few for a batch header", rest.len())));
        }
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::Invalid(format!(
                "record batch has magic {magic}; produce v3+ needs magic 2 (upgrade the client)"
            )));
        }
        let header = BatchHeader::parse(rest)
            .ok_or_else(|| BatchError::Corrupt("batch shorter than its 61-byte header".into()))?;
        if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(format!("batchLength {} is below the header size", header.batch_length)));
        }
        let total = header.total_len();
        if total > max_batch_bytes {
            return Err(BatchError::TooLarge { size: total, max: max_batch_bytes });
        }
        if total > rest.len() {
            return Err(BatchError::Corrupt(format!("batchLength says {total} bytes but only {} arrived", rest.len())));
        }
        let computed = crc32c::crc32c(&rest[CRC_START..total]);
        if computed != header.crc {
            return Err(BatchError::Corrupt(format!(
                "CRC-32C mismatch: batch says {:#010x}, bytes give {computed:#010x}",
                header.crc
            )));
        }
        // A producer's batch holds consecutive records; a stored one may have lost records
        // to the log cleaner (offsets keep their gaps, the last offset stays) or even all
        // of them (an idempotent producer's last batch is kept empty, as Kafka keeps it).
        let counts_agree = if walk_records {
            header.record_count > 0 && header.last_offset_delta == header.record_count - 1
        } else {
            header.record_count >= 0 && header.last_offset_delta >= header.record_count - 1
        };
        if !counts_agree {
            return Err(BatchError::Invalid(format!(
                "record count {} does not match lastOffsetDelta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        if header.compression() > 4 {
            return Err(BatchError::Invalid(format!("unknown compression codec {}", header.compression())));
        }
        if walk_records && header.compression() == 0 {
            check_uncompressed_records(&rest[HEADER_LEN..total], header.record_count)?;
        }
        out.push((header, records.slice(pos..pos + total)));
        pos += total;
    }
    Ok(out)
}

pub(super) fn read_varint(b: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.first()?;
        *b = &b[1..];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Walks the records of an uncompressed batch as Kafka's `DefaultRecord.readFrom` reads
/// them: every length must fit, relative offsets must be 0, 1, 2, ..., the key, value and
/// headers must end exactly where the record's length says, and the count must match. A
/// record whose fields run past it would reach consumers as garbage.
fn check_uncompressed_records(mut body: &[u8], count: i32) -> Result<(), BatchError> {
    let bad = |what: &str| BatchError::Corrupt(format!("record framing is broken: {what}"));
    for expected_delta in 0..count {
        let len = read_varint(&mut body).ok_or_else(|| bad("record length"))?;
        if len < 0 || len as usize > body.len() {
            return Err(bad("record length runs past the batch"));
        }
        let (mut record, rest) = body.split_at(len as usize);
        body = rest;
        if record.is_empty() {
            return Err(bad("empty record"));
        }
        record = &record[1..]; // attributes
        read_varint(&mut record).ok_or_else(|| bad("timestamp delta"))?;
        let delta = read_varint(&mut record).ok_or_else(|| bad("offset delta"))?;
        if delta != i64::from(expected_delta) {
            return Err(BatchError::Invalid(format!("record {expected_delta} has offset delta {delta}")));
        }
        read_field(&mut record).ok_or_else(|| bad("the key runs past its record"))?;
        read_field(&mut record).ok_or_else(|| bad("the value runs past its record"))?;
        let headers = read_varint(&mut record).ok_or_else(|| bad("header count"))?;
        if headers < 0 {
            return Err(bad(&format!("record {expected_delta} has a negative header count {headers}")));
        }
        for _ in 0..headers {
            read_field(&mut record).flatten().ok_or_else(|| bad("a header key runs past its record"))?;
            read_field(&mut record).ok_or_else(|| bad("a header value runs past its record"))?;
        }
        if !record.is_empty() {
            return Err(bad(&format!("record {expected_delta} has {} bytes after its last header", record.len())));
        }
    }
    if !body.is_empty() {
        return Err(bad("bytes left after the last record"));
    }
    Ok(())
}

/// Reads the varint-length-prefixed field at the front of `b` and moves past it:
/// `Some(None)` for a negative (null) length, `None` when the length is unreadable or the
/// field runs past `b`. The one reader of a record's key, value and header fields, for the
/// produce validator and [`body::decode`].
pub(super) fn read_field<'a>(b: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = read_varint(b)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok().filter(|l| *l <= b.len())?;
    let (field, rest) = b.split_at(len);
    *b = rest;
    Some(Some(field))
}

/// Rewrites, in the value about to be stored, the fields the leader owns: base offset and
/// leader epoch (outside the CRC) and, for `LogAppendTime` topics, the timestamp type and
/// max timestamp (CRC recomputed).
pub(crate) fn stamp_in_place(batch: &mut [u8], base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TIMESTAMP_TYPE;
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[35..43].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Marks a built batch as written by `producer_id`/`producer_epoch` in a transaction
/// (attributes, producer fields, no sequence), with its CRC recomputed.
pub(crate) fn set_transactional(batch: &mut [u8], producer_id: i64, producer_epoch: i16) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TRANSACTIONAL;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A record's optional key and value.
pub(crate) type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed batch (for tests and tools): `records` are (key, value) pairs.
pub(crate) fn build(base_offset: i64, timestamp: i64, records: &[KeyValue<'_>]) -> Bytes {
    fn put_varint(buf: &mut BytesMut, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            buf.put_u8((z as u8) | 0x80);
            z >>= 7;
        }
        buf.put_u8(z as u8);
    }
    let mut body = BytesMut::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        put_varint(&mut rec, 0);
        put_varint(&mut rec, i as i64);
        for field in [key, value] {
            match field {
                Some(b) => {
                    put_varint(&mut rec, b.len() as i64);
                    rec.put_slice(b);
                }
                None => put_varint(&mut rec, -1),
            }
        }
        put_varint(&mut rec, 0);
        put_varint(&mut body, rec.len() as i64);
        body.put_slice(&rec);
    }
    let mut b = BytesMut::new();
    b.put_i64(base_offset);
    b.put_i32((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(records.len() as i32 - 1);
    b.put_i64(timestamp);
    b.put_i64(timestamp);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(records.len() as i32);
    b.put_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_errors_read_as_kafkas_log_validator_words_them() {
        let errors: Vec<(i32, String)> = (0..5).map(|i| (i * 2, format!("bad {i}"))).collect();
        let shown = BatchError::Records { timestamps: false, errors: errors.clone() }.to_string();
        assert_eq!(
            shown,
            "One or more records have been rejected due to 5 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=0, message='bad 0'), RecordError(batchIndex=2, message='bad 1'), RecordError(batchIndex=4, message='bad 2')]"
        );
        assert!(BatchError::Records { timestamps: false, errors: vec![(7, "x".into())] }
            .to_string()
            .contains("due to 1 record errors"));
        assert_eq!(
            BatchError::Records { timestamps: true, errors }.to_string(),
            "One or more records have been rejected due to invalid timestamp"
        );
    }

    fn two_records() -> Bytes {
        build(0, 1000, &[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2"))])
    }

    #[test]
    fn data_records_are_counted_from_batch_headers() {
        let two = two_records();
        let mut three = BytesMut::from(&two[..]);
        three.extend_from_slice(&build(2, 1000, &[(None, Some(b"v3"))]));
        assert_eq!(data_record_count(&three), 3);
        // A truncated last batch (as a fetch's byte limit leaves it) counts nothing.
        let cut = three.len() - 5;
        assert_eq!(data_record_count(&three[..cut]), 2);
        assert_eq!(data_record_count(&[]), 0);
        assert_eq!(data_record_count(&two[..10]), 0);
    }

    #[test]
    fn a_well_formed_batch_is_accepted() {
        let b = two_records();
        let batches = validate(&b, 1 << 20).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0.record_count, 2);
        assert_eq!(batches[0].1.len(), b.len());
    }

    /// Found by the `record_batch` fuzz target: a record whose key or value length runs
    /// past the record's own length (but not past the batch) was accepted and stored.
    #[test]
    fn fields_that_run_past_their_record_are_refused() {
        // build() lays out record 0 as: len, attributes, ts delta, offset delta, key len "k1"...
        const KEY_LEN_AT: usize = HEADER_LEN + 4;
        type Corrupt = fn(&mut BytesMut);
        let cases: [(&str, Corrupt); 3] = [
            ("key", |b| b[KEY_LEN_AT] = 2 * 40),
            ("negative header count", |b| b[KEY_LEN_AT + 6] = 1),
            ("trailing byte", |b| b[HEADER_LEN] += 2),
        ];
        for (what, corrupt) in cases {
            let mut b = BytesMut::from(&two_records()[..]);
            assert_eq!(&b[KEY_LEN_AT + 1..KEY_LEN_AT + 3], b"k1");
            corrupt(&mut b);
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let got = validate(&b.freeze(), 1 << 20);
            assert!(matches!(got, Err(BatchError::Corrupt(_))), "{what}: {got:?}");
        }
    }

    #[test]
    fn kafka_protocol_encoder_output_is_accepted() {
        use kafka_protocol::records::*;
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 5,
                key: None,
                value: Some(Bytes::from_static(b"hello")),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .unwrap();
        let batches = validate(&buf.freeze(), 1 << 20).unwrap();
        assert_eq!(batches.iter().map(|(h, _)| h.record_count).sum::<i32>(), 3);
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut b = BytesMut::from(&two_records()[..]);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate(&b.freeze(), 1 << 20), Err(BatchError::Corrupt(m)) if m.contains("CRC")));
    }

    #[test]
    fn replicated_batches_are_checked_by_crc_and_length() {
        let good = two_records();
        assert_eq!(verify_replicated(&good).unwrap().len(), 1);
        let mut flipped = BytesMut::from(&good[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(verify_replicated(&flipped.freeze()), Err(BatchError::Corrupt(m)) if m.contains("CRC")));
        assert!(matches!(verify_replicated(&good.slice(..good.len() - 1)), Err(BatchError::Corrupt(_))));
    }

    #[test]
    fn truncated_and_oversized_batches_are_refused() {
        let b = two_records();
        assert!(matches!(validate(&b.slice(..b.len() - 3), 1 << 20), Err(BatchError::Corrupt(_))));
        assert!(matches!(validate(&b.slice(..20), 1 << 20), Err(BatchError::Corrupt(_))));
        assert_eq!(validate(&b, 10), Err(BatchError::TooLarge { size: b.len(), max: 10 }));
        assert!(matches!(validate(&Bytes::new(), 10), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn old_magic_is_refused_as_invalid_record() {
        let mut b = BytesMut::from(&two_records()[..]);
        b[16] = 1;
        assert!(matches!(validate(&b.freeze(), 1 << 20), Err(BatchError::Invalid(m)) if m.contains("magic")));
    }

    #[test]
    fn a_lying_record_count_is_refused() {
        let mut b = BytesMut::from(&two_records()[..]);
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(validate(&b.freeze(), 1 << 20).is_err());
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let stamp = |log_append_time| {
            let mut b = BytesMut::from(&two_records()[..]);
            stamp_in_place(&mut b, 42, 7, log_append_time);
            b.freeze()
        };
        let stamped = stamp(None);
        let h = BatchHeader::parse(&stamped).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        assert!(validate(&stamped, 1 << 20).is_ok());
        let appended = stamp(Some(99_999));
        let h = BatchHeader::parse(&appended).unwrap();
        assert_eq!(h.max_timestamp, 99_999);
        assert_ne!(h.attributes & ATTR_TIMESTAMP_TYPE, 0);
        assert!(validate(&appended, 1 << 20).is_ok());
    }
}
