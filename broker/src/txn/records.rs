//! The records of `__transaction_state`, in Kafka's own schemas (`TransactionLogKey` v0,
//! `TransactionLogValue` v0), so a Kafka tool or broker reading the topic understands them.
//! Key: `version: int16 (0), transactional_id: string`. Value: `version: int16 (0),
//! producer_id: int64, producer_epoch: int16, transaction_timeout_ms: int32,
//! transaction_status: int8, transaction_partitions: [topic: string, partition_ids:
//! [int32]] (nullable), last_update_ms: int64, start_ms: int64`. A null value removes the id.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn get_str(b: &mut &[u8]) -> Result<String, String> {
    if b.remaining() < 2 {
        return Err("truncated string length".into());
    }
    let len = b.get_i16();
    let len = usize::try_from(len).map_err(|_| "null string".to_string())?;
    if b.remaining() < len {
        return Err("truncated string".into());
    }
    let s = String::from_utf8(b[..len].to_vec()).map_err(|_| "string is not UTF-8".to_string())?;
    b.advance(len);
    Ok(s)
}

/// The key of `transactional_id`'s record.
pub(crate) fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

/// The transactional id a key names.
///
/// # Errors
/// A sentence when the key is not a v0 transaction log key.
pub(crate) fn decode_key(raw: &[u8]) -> Result<String, String> {
    let mut b = raw;
    if b.remaining() < 2 || b.get_i16() != 0 {
        return Err("not a version 0 transaction log key".into());
    }
    get_str(&mut b)
}

/// The value storing `meta`.
pub(crate) fn value(meta: &TxnMeta) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(meta.producer_id);
    b.put_i16(meta.producer_epoch);
    b.put_i32(meta.timeout_ms);
    b.put_i8(meta.state.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &meta.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(meta.updated_ms);
    b.put_i64(meta.started_ms);
    b.freeze()
}

/// The metadata a value stores.
///
/// # Errors
/// A sentence when the value is not a readable v0 transaction log value.
pub(crate) fn decode_value(raw: &[u8]) -> Result<TxnMeta, String> {
    let mut b = raw;
    let short = || "truncated transaction log value".to_string();
    if b.remaining() < 2 + 8 + 2 + 4 + 1 + 4 {
        return Err(short());
    }
    if b.get_i16() != 0 {
        return Err("not a version 0 transaction log value".into());
    }
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let state = TxnState::from_code(b.get_i8()).ok_or("unknown transaction status")?;
    let topics = b.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut b)?;
        if b.remaining() < 4 {
            return Err(short());
        }
        let n = b.get_i32();
        for _ in 0..n.max(0) {
            if b.remaining() < 4 {
                return Err(short());
            }
            partitions.insert((topic.clone(), b.get_i32()));
        }
    }
    if b.remaining() < 16 {
        return Err(short());
    }
    let updated_ms = b.get_i64();
    let started_ms = b.get_i64();
    Ok(TxnMeta { producer_id, producer_epoch, timeout_ms, state, partitions, started_ms, updated_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_in_kafkas_layout() {
        let meta = TxnMeta {
            producer_id: 4242,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeSet::from([("a".to_string(), 0), ("a".to_string(), 3), ("b".to_string(), 1)]),
            started_ms: 1_000,
            updated_ms: 2_000,
        };
        let v = value(&meta);
        assert_eq!(decode_value(&v), Ok(meta.clone()));
        // version, pid, epoch, timeout, status, 2 topics, "a" [0, 3], "b" [1], times
        assert_eq!(v.len(), 2 + 8 + 2 + 4 + 1 + 4 + (2 + 1 + 4 + 8) + (2 + 1 + 4 + 4) + 16);
        assert_eq!(&v[..2], &[0, 0]);
        assert_eq!(v[16], 1, "Ongoing is status 1");
        assert_eq!(decode_key(&key("my-txn")), Ok("my-txn".to_string()));
        assert_eq!(&key("x")[..], &[0, 0, 0, 1, b'x']);
        assert!(decode_value(&v[..v.len() - 1]).is_err());
        assert!(decode_key(&[0, 1, 0, 1, b'x']).is_err());
    }
}
