//! Topic rules shared by every writer of topics: name validation and Kafka's rack-unaware
//! replica placement. Both are pure functions.

use std::collections::BTreeMap;

use crate::ids::BrokerId;

/// Longest legal topic name (Kafka: 249, so that `<topic>-<partition>` fits a file name).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// The internal topic holding committed offsets.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// Checks a topic name as Kafka's `Topic.validate` does.
///
/// # Errors
/// A sentence saying what is wrong with the name.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!("topic name is {} characters long; the limit is {MAX_TOPIC_NAME_LEN}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-')) {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Why replicas could not be assigned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AssignmentError {
    /// Asked for more replicas than there are live brokers.
    #[error("replication factor {replication_factor} is larger than the {live} live broker(s)")]
    NotEnoughBrokers {
        /// Requested replication factor.
        replication_factor: i32,
        /// Live brokers.
        live: usize,
    },
    /// Zero or negative counts.
    #[error("{what} must be at least 1, got {value}")]
    NonPositive {
        /// Which count.
        what: &'static str,
        /// The value.
        value: i32,
    },
}

/// Places a new topic's replicas as Kafka does, with a random start broker and follower
/// shift (so that topics do not all lead on the same broker).
///
/// # Errors
/// As [`assign_replicas`].
pub fn assign_new_topic(
    brokers: &[BrokerId],
    partitions: i32,
    replication_factor: i32,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AssignmentError> {
    let n = brokers.len().max(1);
    assign_replicas(brokers, partitions, replication_factor, 0, random_below(n), random_below(n))
}

/// A random number in `0..n` (placement only needs it spread, not secret).
pub fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

/// Kafka's rack-unaware placement (`AdminUtils.assignReplicasToBrokersRackUnaware`).
///
/// Partition `p`'s first replica sits at `(p + start_index) % n` of the sorted broker list;
/// follower `j` sits `1 + (shift + j) % (n - 1)` places after it, and the shift grows by one
/// every `n` partitions so that followers spread out. `start_index` and `start_shift` are
/// random in Kafka; callers pass them so that this stays a pure function.
///
/// # Errors
/// [`AssignmentError`] when the counts are not positive or exceed the live brokers.
pub fn assign_replicas(
    brokers: &[BrokerId],
    partitions: i32,
    replication_factor: i32,
    first_partition: i32,
    start_index: usize,
    start_shift: usize,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AssignmentError> {
    if partitions <= 0 {
        return Err(AssignmentError::NonPositive { what: "number of partitions", value: partitions });
    }
    if replication_factor <= 0 {
        return Err(AssignmentError::NonPositive { what: "replication factor", value: replication_factor });
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    if replication_factor as usize > n {
        return Err(AssignmentError::NotEnoughBrokers { replication_factor, live: n });
    }
    let start_index = start_index % n;
    let mut shift = start_shift % n;
    let mut out = BTreeMap::new();
    for p in first_partition.max(0)..first_partition.max(0) + partitions {
        let p_usize = p as usize;
        if p_usize > 0 && p_usize.is_multiple_of(n) {
            shift += 1;
        }
        let first = (p_usize + start_index) % n;
        let mut replicas = vec![sorted[first]];
        for j in 0..(replication_factor as usize - 1) {
            let step = 1 + (shift + j) % (n - 1);
            replicas.push(sorted[(first + step) % n]);
        }
        out.insert(p, replicas);
    }
    Ok(out)
}

/// DescribeConfigs `config_type` values of topic-level keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    /// BOOLEAN (1)
    Boolean = 1,
    /// STRING (2)
    Str = 2,
    /// INT (3)
    Int = 3,
    /// LONG (5)
    Long = 5,
    /// DOUBLE (6)
    Double = 6,
    /// LIST (7)
    List = 7,
}

/// One topic-level key.
pub struct ConfigDef {
    /// Topic config name.
    pub name: &'static str,
    /// Value type.
    pub kind: ConfigKind,
    /// The broker setting it inherits from, if any.
    pub broker_synonym: Option<&'static str>,
    /// Allowed values, for enumerations.
    pub allowed: &'static [&'static str],
}

const fn def(name: &'static str, kind: ConfigKind) -> ConfigDef {
    ConfigDef { name, kind, broker_synonym: None, allowed: &[] }
}

/// Every topic-level key Kafka 3.x defines (tiered-storage keys included so they are not refused).
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigKind::List,
        broker_synonym: Some("log.cleanup.policy"),
        allowed: &["delete", "compact", "compact,delete", "delete,compact"],
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigKind::Str,
        broker_synonym: Some("compression.type"),
        allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
    },
    def("delete.retention.ms", ConfigKind::Long),
    def("file.delete.delay.ms", ConfigKind::Long),
    ConfigDef {
        name: "flush.messages",
        kind: ConfigKind::Long,
        broker_synonym: Some("log.flush.interval.messages"),
        allowed: &[],
    },
    ConfigDef { name: "flush.ms", kind: ConfigKind::Long, broker_synonym: Some("log.flush.interval.ms"), allowed: &[] },
    def("follower.replication.throttled.replicas", ConfigKind::List),
    def("index.interval.bytes", ConfigKind::Int),
    def("leader.replication.throttled.replicas", ConfigKind::List),
    def("local.retention.bytes", ConfigKind::Long),
    def("local.retention.ms", ConfigKind::Long),
    def("max.compaction.lag.ms", ConfigKind::Long),
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigKind::Int,
        broker_synonym: Some("message.max.bytes"),
        allowed: &[],
    },
    def("message.downconversion.enable", ConfigKind::Boolean),
    def("message.format.version", ConfigKind::Str),
    def("message.timestamp.after.max.ms", ConfigKind::Long),
    def("message.timestamp.before.max.ms", ConfigKind::Long),
    def("message.timestamp.difference.max.ms", ConfigKind::Long),
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigKind::Str,
        broker_synonym: Some("log.message.timestamp.type"),
        allowed: &["CreateTime", "LogAppendTime"],
    },
    def("min.cleanable.dirty.ratio", ConfigKind::Double),
    def("min.compaction.lag.ms", ConfigKind::Long),
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigKind::Int,
        broker_synonym: Some("min.insync.replicas"),
        allowed: &[],
    },
    def("preallocate", ConfigKind::Boolean),
    def("remote.storage.enable", ConfigKind::Boolean),
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigKind::Long,
        broker_synonym: Some("log.retention.bytes"),
        allowed: &[],
    },
    ConfigDef { name: "retention.ms", kind: ConfigKind::Long, broker_synonym: Some("log.retention.ms"), allowed: &[] },
    def("segment.bytes", ConfigKind::Int),
    def("segment.index.bytes", ConfigKind::Int),
    def("segment.jitter.ms", ConfigKind::Long),
    def("segment.ms", ConfigKind::Long),
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigKind::Boolean,
        broker_synonym: Some("unclean.leader.election.enable"),
        allowed: &[],
    },
];

/// Checks a set of overrides.
///
/// # Errors
/// A sentence naming the first unknown key or invalid value.
pub fn validate_config(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in configs {
        let Some(d) = TOPIC_CONFIGS.iter().find(|d| d.name == key) else {
            return Err(format!("unknown topic config {key:?}"));
        };
        let ok = match d.kind {
            ConfigKind::Boolean => value == "true" || value == "false",
            ConfigKind::Int => value.parse::<i32>().is_ok(),
            ConfigKind::Long => value.parse::<i64>().is_ok(),
            ConfigKind::Double => value.parse::<f64>().is_ok(),
            ConfigKind::Str | ConfigKind::List => {
                d.allowed.is_empty() || d.allowed.contains(&value.replace(' ', "").as_str())
            }
        };
        if !ok {
            let expected = if d.allowed.is_empty() { format!("{:?}", d.kind) } else { d.allowed.join(", ") };
            return Err(format!("invalid value {value:?} for topic config {key}; expected {expected}"));
        }
        if key == "max.message.bytes" && value.parse::<i32>().is_ok_and(|v| v < 0) {
            return Err(format!("invalid value {value:?} for topic config {key}; must be at least 0"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_are_checked_by_type_and_name() {
        let ok = BTreeMap::from([
            ("retention.ms".to_string(), "1000".to_string()),
            ("cleanup.policy".into(), "compact,delete".into()),
        ]);
        assert_eq!(validate_config(&ok), Ok(()));
        for (k, v) in
            [("retention.ms", "soon"), ("message.timestamp.type", "Now"), ("no.such.key", "1"), ("preallocate", "yes")]
        {
            let bad = BTreeMap::from([(k.to_string(), v.to_string())]);
            let err = validate_config(&bad).unwrap_err();
            assert!(err.contains(k), "{err}");
        }
    }

    #[test]
    fn names_follow_kafkas_rules() {
        for ok in ["sensors", "a.b_c-1", "__consumer_offsets", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn placement_matches_kafkas_table() {
        // Kafka's AdminZkClient test uses 5 brokers, start index 0, shift 0: these are its
        // first partitions (partition 5 wraps around and shifts the followers).
        let a = assign_replicas(&[0, 1, 2, 3, 4], 10, 3, 0, 0, 0).unwrap();
        assert_eq!(a[&0], vec![0, 1, 2]);
        assert_eq!(a[&1], vec![1, 2, 3]);
        assert_eq!(a[&4], vec![4, 0, 1]);
        assert_eq!(a[&5], vec![0, 2, 3]);
        assert_eq!(a[&9], vec![4, 1, 2]);
    }

    #[test]
    fn every_partition_gets_distinct_replicas() {
        for n in 1..6 {
            let brokers: Vec<i32> = (1..=n).collect();
            for rf in 1..=n {
                for (start, shift) in [(0, 0), (3, 1), (7, 4)] {
                    let a = assign_replicas(&brokers, 13, rf, 0, start, shift).unwrap();
                    for replicas in a.values() {
                        let mut r = replicas.clone();
                        r.sort();
                        r.dedup();
                        assert_eq!(r.len(), rf as usize);
                    }
                }
            }
        }
    }

    #[test]
    fn too_few_brokers_or_zero_counts_are_refused() {
        assert_eq!(
            assign_replicas(&[1], 1, 2, 0, 0, 0),
            Err(AssignmentError::NotEnoughBrokers { replication_factor: 2, live: 1 })
        );
        assert!(assign_replicas(&[1], 0, 1, 0, 0, 0).is_err());
        assert!(assign_replicas(&[1], 1, 0, 0, 0, 0).is_err());
    }

    #[test]
    fn new_partitions_continue_numbering() {
        let a = assign_replicas(&[1, 2], 2, 1, 3, 0, 0).unwrap();
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    }
}
