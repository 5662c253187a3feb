//! Transaction markers (KIP-98): the control batch a transaction coordinator has written
//! to every partition of a transaction when it ends. Its one record's key is
//! `version: int16, type: int16` (0 ABORT, 1 COMMIT), its value `version: int16,
//! coordinator_epoch: int32`; the batch carries the producer's id and epoch with the
//! transactional and control attributes set.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::EndTxnMarker;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use super::{body, BatchHeader};

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Its records are to be skipped by read_committed consumers.
    Abort,
    /// Its records are visible.
    Commit,
}

impl Marker {
    fn code(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// The marker batch for `producer_id`/`producer_epoch`, written by coordinator epoch
/// `coordinator_epoch` at `timestamp` (offsets are assigned by the append).
pub(crate) fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    marker: Marker,
    timestamp: i64,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(marker.code());
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    EndTxnMarker::default()
        .with_coordinator_epoch(coordinator_epoch)
        .encode(&mut value, 0)
        .expect("EndTxnMarker v0 always encodes");
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("a marker batch always encodes");
    buf.freeze()
}

/// The marker a control batch holds (`None` for any other batch, or a control record of
/// another type).
pub(crate) fn marker_of(header: &BatchHeader, batch: &Bytes) -> Option<Marker> {
    if !header.is_control() {
        return None;
    }
    let records = body::decode(header, batch).ok()?;
    let first = records.list.first()?;
    let key = records.key(first)?;
    match key.get(2..4)? {
        [0, 0] => Some(Marker::Abort),
        [0, 1] => Some(Marker::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::validate;

    #[test]
    fn markers_round_trip_and_carry_the_producer() {
        for marker in [Marker::Abort, Marker::Commit] {
            let b = marker_batch(42, 3, 7, marker, 1_000);
            let (h, raw) = validate(&b, usize::MAX).unwrap().remove(0);
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (42, 3, 1));
            assert_eq!(marker_of(&h, &raw), Some(marker));
        }
        let data = crate::record::build(0, 1, &[(Some(b"k"), Some(b"v"))]);
        let (h, raw) = validate(&data, usize::MAX).unwrap().remove(0);
        assert_eq!(marker_of(&h, &raw), None);
    }
}
