//! The records of `__consumer_offsets`, in Kafka's own key/value schemas, so operators'
//! tools (and a Kafka broker reading the same topic) understand them.
//!
//! Every key and value starts with an int16 schema version. Keys: version 0/1 is an offset
//! commit (`group`, `topic`, `partition`), version 2 is group metadata (`group`). Values:
//! `OffsetCommitValue` v0-3 and `GroupMetadataValue` v0-3 (the non-flexible versions);
//! Tributary writes v3 of both. A null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `abs(javaStringHashCode(group)) % partitions`, as Kafka picks a group's offsets partition
/// (`Utils.abs` maps `Int.MIN` to 0).
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// A decoded record key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordKey {
    /// An offset commit of `group` for one partition.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership metadata.
    Group {
        /// Group id.
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// A member as stored in group metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// Session timeout (ms).
    pub session_timeout_ms: i32,
    /// Its subscription (metadata for the selected protocol).
    pub subscription: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

/// A group's metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct GroupValue {
    /// Protocol type ("consumer", or "" for commit-only groups).
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Selected protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state (ms).
    pub current_state_timestamp: i64,
    /// Members.
    pub members: Vec<StoredMember>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

/// The key of an offset commit (version 1).
pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// The key of a group's metadata (version 2).
pub(crate) fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

/// An offset commit value (version 3).
pub(crate) fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

/// A group metadata value (version 3).
pub(crate) fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.current_state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable __consumer_offsets record: {0}")]
pub(crate) struct DecodeError(String);

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, what: &str) -> Result<(), DecodeError> {
        if self.0.remaining() < n {
            return Err(DecodeError(format!("{what} runs past the end")));
        }
        Ok(())
    }
    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self, what: &str) -> Result<Option<String>, DecodeError> {
        let len = self.i16(what)?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize, what)?;
        let raw = self.0.split_to(len as usize);
        String::from_utf8(raw.to_vec()).map(Some).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }
    fn str(&mut self, what: &str) -> Result<String, DecodeError> {
        self.nullable_str(what)?.ok_or_else(|| DecodeError(format!("{what} is null")))
    }
    fn bytes(&mut self, what: &str) -> Result<Bytes, DecodeError> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        self.need(len as usize, what)?;
        Ok(self.0.split_to(len as usize))
    }
}

/// Reads a record key.
///
/// # Errors
/// [`DecodeError`] for a truncated key or an unknown key version.
pub(crate) fn decode_key(key: &Bytes) -> Result<RecordKey, DecodeError> {
    let mut r = Reader(key.clone());
    match r.i16("key version")? {
        0 | 1 => {
            Ok(RecordKey::Offset { group: r.str("group")?, topic: r.str("topic")?, partition: r.i32("partition")? })
        }
        2 => Ok(RecordKey::Group { group: r.str("group")? }),
        v => Err(DecodeError(format!("key version {v} is not a classic-group record"))),
    }
}

/// Reads an offset commit value (versions 0-3).
///
/// # Errors
/// [`DecodeError`] for a truncated value or an unsupported version.
pub(crate) fn decode_offset_value(value: &Bytes) -> Result<OffsetValue, DecodeError> {
    let mut r = Reader(value.clone());
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError(format!("offset value version {version} is not supported")));
    }
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 { r.i32("leaderEpoch")? } else { -1 };
    let metadata = r.str("metadata")?;
    let commit_timestamp = r.i64("commitTimestamp")?;
    Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
}

/// Reads a group metadata value (versions 0-3).
///
/// # Errors
/// [`DecodeError`] for a truncated value or an unsupported version.
pub(crate) fn decode_group_value(value: &Bytes) -> Result<GroupValue, DecodeError> {
    let mut r = Reader(value.clone());
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError(format!("group value version {version} is not supported")));
    }
    let protocol_type = r.str("protocolType")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_str("protocol")?;
    let leader = r.nullable_str("leader")?;
    let current_state_timestamp = if version >= 2 { r.i64("currentStateTimestamp")? } else { -1 };
    let count = r.i32("members")?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str("memberId")?;
        let instance_id = if version >= 3 { r.nullable_str("groupInstanceId")? } else { None };
        let client_id = r.str("clientId")?;
        let client_host = r.str("clientHost")?;
        let rebalance_timeout_ms = if version >= 1 { r.i32("rebalanceTimeout")? } else { -1 };
        let session_timeout_ms = r.i32("sessionTimeout")?;
        let subscription = r.bytes("subscription")?;
        let assignment = r.bytes("assignment")?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_javas_string_hash() {
        // Values computed with Java 17: "my-consumer-group".hashCode() = 1513705513 -> 13 of 50;
        // "group-a" -> 47; "".hashCode() = 0; "polygenelubricants".hashCode() = Integer.MIN_VALUE -> 0.
        assert_eq!(partition_for("my-consumer-group", 50), 13);
        assert_eq!(partition_for("group-a", 50), 47);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("group-a", 1), 0);
    }

    #[test]
    fn keys_round_trip_in_kafkas_layout() {
        let k = offset_key("g", "t", 7);
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(decode_key(&k).unwrap(), RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 7 });
        assert_eq!(decode_key(&group_key("g")).unwrap(), RecordKey::Group { group: "g".into() });
        assert!(decode_key(&Bytes::from_static(&[0, 9, 0, 1, b'g'])).is_err());
        assert!(decode_key(&Bytes::from_static(&[0, 1, 0, 5, b'g'])).is_err());
    }

    #[test]
    fn values_round_trip() {
        let o = OffsetValue { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp: 1000 };
        assert_eq!(decode_offset_value(&offset_value(&o)).unwrap(), o);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            current_state_timestamp: 99,
            members: vec![StoredMember {
                member_id: "c-1".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&group_value(&g)).unwrap(), g);
        let truncated = group_value(&g).slice(..20);
        assert!(decode_group_value(&truncated).is_err());
    }
}
