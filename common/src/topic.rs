//! Topic rules shared by every writer of topics: name validation and Kafka's rack-unaware
//! replica placement. Both are pure functions.

use std::collections::BTreeMap;

use crate::config::ConfigType;
use crate::ids::BrokerId;

/// Longest legal topic name (Kafka: 249, so that `<topic>-<partition>` fits a file name).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// The internal topic holding committed offsets.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE: &str = "__transaction_state";

/// Whether `topic` is internal: written only by the brokers' coordinators, never by clients.
pub fn is_internal(topic: &str) -> bool {
    topic == CONSUMER_OFFSETS || topic == TRANSACTION_STATE
}

/// The `min.insync.replicas` a partition is held to: the setting, but never more than its
/// replicas (Kafka's `effectiveMinIsr`), so a topic with fewer replicas than the broker
/// default (replication factor 1 on a cluster set to 2) is readable and writable with
/// acks=all as it is in Kafka. The broker's high watermark and acks=all checks and the
/// coordinator's under-min-ISR report both use it.
pub fn effective_min_isr(min_insync_replicas: usize, replicas: usize) -> usize {
    min_insync_replicas.min(replicas.max(1))
}

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

/// Why a new topic is refused before anything is written. The broker maps each to a
/// Kafka error code, the coordinator's HTTP API to a status.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NewTopicError {
    /// The name breaks Kafka's rules (INVALID_TOPIC_EXCEPTION, HTTP 400).
    #[error("{0}")]
    InvalidName(String),
    /// A topic of that name exists (TOPIC_ALREADY_EXISTS, HTTP 409).
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// The name differs from an existing one only by '.' versus '_', which Kafka's metric
    /// names cannot tell apart (INVALID_TOPIC_EXCEPTION, HTTP 409).
    #[error("topic {name:?} collides with existing topic {existing:?}: '.' and '_' are interchangeable in metric names; pick another name")]
    Collides {
        /// The new name.
        name: String,
        /// The existing topic.
        existing: String,
    },
    /// A config override is unknown or has a bad value (INVALID_CONFIG, HTTP 400).
    #[error("{0}")]
    InvalidConfig(String),
}

/// Checks a new topic's name and config overrides against the existing topics, as Kafka's
/// `AdminZkClient.validateTopicCreate` does. Shared by CreateTopics, Metadata
/// auto-creation and the coordinator's `POST /topics`, so that all three refuse the same.
///
/// # Errors
/// [`NewTopicError`], the first rule broken.
pub fn validate_new_topic<'a>(
    name: &str,
    configs: &BTreeMap<String, String>,
    existing: impl IntoIterator<Item = &'a String>,
) -> Result<(), NewTopicError> {
    validate_topic_name(name).map_err(NewTopicError::InvalidName)?;
    let folded = name.replace('.', "_");
    for other in existing {
        if other == name {
            return Err(NewTopicError::Exists(name.to_string()));
        }
        if other.replace('.', "_") == folded {
            return Err(NewTopicError::Collides { name: name.to_string(), existing: other.clone() });
        }
    }
    validate_config(configs).map_err(NewTopicError::InvalidConfig)
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
    /// Some brokers declare `broker.rack` and others do not (Kafka refuses this too).
    #[error(
        "brokers {missing:?} have no broker.rack while others have one; set broker.rack on every broker or on none"
    )]
    PartialRackInfo {
        /// Brokers without a rack.
        missing: Vec<BrokerId>,
    },
}

/// A live broker as placement sees it: its id and `broker.rack`.
pub type PlacementBroker = (BrokerId, Option<String>);

/// Places a new topic's replicas as Kafka does, with a random start broker and follower
/// shift (so that topics do not all lead on the same broker).
///
/// # Errors
/// As [`assign_replicas`].
pub fn assign_new_topic(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i32,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AssignmentError> {
    let n = brokers.len().max(1);
    place(brokers, partitions, replication_factor, 0, random_below(n), random_below(n))
}

/// Kafka's placement: rack-aware when every broker declares `broker.rack`, rack-unaware
/// when none does. `start_index` indexes the (rack-alternated) broker list.
///
/// # Errors
/// [`AssignmentError`]: bad counts, too few brokers, or rack information on only some brokers.
pub fn place(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i32,
    first_partition: i32,
    start_index: usize,
    start_shift: usize,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AssignmentError> {
    let missing: Vec<BrokerId> = brokers.iter().filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
    if missing.is_empty() && !brokers.is_empty() {
        let racked: Vec<(BrokerId, String)> =
            brokers.iter().map(|(id, r)| (*id, r.clone().expect("checked above"))).collect();
        return assign_replicas_rack_aware(
            &racked,
            partitions,
            replication_factor,
            first_partition,
            start_index,
            start_shift,
        );
    }
    if missing.len() != brokers.len() {
        return Err(AssignmentError::PartialRackInfo { missing });
    }
    let ids: Vec<BrokerId> = brokers.iter().map(|(id, _)| *id).collect();
    assign_replicas(&ids, partitions, replication_factor, first_partition, start_index, start_shift)
}

/// Positive counts, and no more replicas than live brokers.
fn check_counts(partitions: i32, replication_factor: i32, live: usize) -> Result<(), AssignmentError> {
    if partitions <= 0 {
        return Err(AssignmentError::NonPositive { what: "number of partitions", value: partitions });
    }
    if replication_factor <= 0 {
        return Err(AssignmentError::NonPositive { what: "replication factor", value: replication_factor });
    }
    if replication_factor as usize > live {
        return Err(AssignmentError::NotEnoughBrokers { replication_factor, live });
    }
    Ok(())
}

/// Brokers ordered so that racks alternate (Kafka's `getRackAlternatedBrokerList`): racks
/// sorted, brokers sorted within each, then one from each rack in turn.
pub fn rack_alternated(brokers: &[(BrokerId, String)]) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<&str, Vec<BrokerId>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_str()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let mut out = Vec::new();
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// Kafka's rack-aware placement (`AdminUtils.assignReplicasToBrokersRackAware`): leaders
/// walk the rack-alternated list; each follower is the next broker (by the shifting step)
/// on a rack that has no replica of the partition yet, until every rack has one.
///
/// # Errors
/// [`AssignmentError`] when the counts are not positive or exceed the live brokers.
pub fn assign_replicas_rack_aware(
    brokers: &[(BrokerId, String)],
    partitions: i32,
    replication_factor: i32,
    first_partition: i32,
    start_index: usize,
    start_shift: usize,
) -> Result<BTreeMap<i32, Vec<BrokerId>>, AssignmentError> {
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    check_counts(partitions, replication_factor, n)?;
    let rack_of: BTreeMap<BrokerId, &str> = brokers.iter().map(|(id, r)| (*id, r.as_str())).collect();
    let num_racks = rack_of.values().collect::<std::collections::BTreeSet<_>>().len();
    Ok(walk_partitions(n, first_partition, partitions, start_index, start_shift, |first, shift| {
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks: std::collections::BTreeSet<&str> = [rack_of[&leader]].into();
        let mut k = 0usize;
        while replicas.len() < replication_factor as usize {
            let step = if n > 1 { 1 + (shift * num_racks + k) % (n - 1) } else { 0 };
            let broker = arranged[(first + step) % n];
            let rack = rack_of[&broker];
            if (!racks.contains(rack) || racks.len() == num_racks) && !replicas.contains(&broker) {
                replicas.push(broker);
                racks.insert(rack);
            }
            k += 1;
        }
        replicas
    }))
}

/// Kafka's walk over new partitions: partition `p` starts at index `(p + start_index) % n`,
/// and the follower shift grows by one every `n` partitions. `pick(first, shift)` chooses
/// the replicas.
fn walk_partitions(
    n: usize,
    first_partition: i32,
    partitions: i32,
    start_index: usize,
    start_shift: usize,
    mut pick: impl FnMut(usize, usize) -> Vec<BrokerId>,
) -> BTreeMap<i32, Vec<BrokerId>> {
    let start_index = start_index % n;
    let mut shift = start_shift % n;
    let mut out = BTreeMap::new();
    for p in first_partition.max(0)..first_partition.max(0) + partitions {
        let p_usize = p as usize;
        if p_usize > 0 && p_usize.is_multiple_of(n) {
            shift += 1;
        }
        out.insert(p, pick((p_usize + start_index) % n, shift));
    }
    out
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
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    check_counts(partitions, replication_factor, n)?;
    Ok(walk_partitions(n, first_partition, partitions, start_index, start_shift, |first, shift| {
        let mut replicas = vec![sorted[first]];
        for j in 0..(replication_factor as usize - 1) {
            let step = 1 + (shift + j) % (n - 1);
            replicas.push(sorted[(first + step) % n]);
        }
        replicas
    }))
}

/// One topic-level key.
pub struct ConfigDef {
    /// Topic config name.
    pub name: &'static str,
    /// Value type.
    pub kind: ConfigType,
    /// The broker setting it inherits from, if any.
    pub broker_synonym: Option<&'static str>,
    /// Allowed values, for enumerations.
    pub allowed: &'static [&'static str],
}

const fn def(name: &'static str, kind: ConfigType) -> ConfigDef {
    ConfigDef { name, kind, broker_synonym: None, allowed: &[] }
}

/// Every topic-level key Kafka 3.x defines (tiered-storage keys included so they are not refused).
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        broker_synonym: Some("log.cleanup.policy"),
        // An empty list is valid in Kafka (its ValidList checks elements only): neither
        // retention nor compaction, which is what IncrementalAlterConfigs SUBTRACT of the
        // last policy leaves.
        allowed: &["delete", "compact", "compact,delete", "delete,compact", ""],
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        broker_synonym: Some("compression.type"),
        allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
    },
    def("delete.retention.ms", ConfigType::Long),
    def("file.delete.delay.ms", ConfigType::Long),
    ConfigDef {
        name: "flush.messages",
        kind: ConfigType::Long,
        broker_synonym: Some("log.flush.interval.messages"),
        allowed: &[],
    },
    ConfigDef { name: "flush.ms", kind: ConfigType::Long, broker_synonym: Some("log.flush.interval.ms"), allowed: &[] },
    def("follower.replication.throttled.replicas", ConfigType::List),
    def("index.interval.bytes", ConfigType::Int),
    def("leader.replication.throttled.replicas", ConfigType::List),
    def("local.retention.bytes", ConfigType::Long),
    def("local.retention.ms", ConfigType::Long),
    def("max.compaction.lag.ms", ConfigType::Long),
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        broker_synonym: Some("message.max.bytes"),
        allowed: &[],
    },
    def("message.downconversion.enable", ConfigType::Boolean),
    def("message.format.version", ConfigType::String),
    def("message.timestamp.after.max.ms", ConfigType::Long),
    def("message.timestamp.before.max.ms", ConfigType::Long),
    def("message.timestamp.difference.max.ms", ConfigType::Long),
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        broker_synonym: Some("log.message.timestamp.type"),
        allowed: &["CreateTime", "LogAppendTime"],
    },
    def("min.cleanable.dirty.ratio", ConfigType::Double),
    def("min.compaction.lag.ms", ConfigType::Long),
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        broker_synonym: Some("min.insync.replicas"),
        allowed: &[],
    },
    def("preallocate", ConfigType::Boolean),
    def("remote.storage.enable", ConfigType::Boolean),
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        broker_synonym: Some("log.retention.bytes"),
        allowed: &[],
    },
    ConfigDef { name: "retention.ms", kind: ConfigType::Long, broker_synonym: Some("log.retention.ms"), allowed: &[] },
    def("segment.bytes", ConfigType::Int),
    def("segment.index.bytes", ConfigType::Int),
    def("segment.jitter.ms", ConfigType::Long),
    def("segment.ms", ConfigType::Long),
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        broker_synonym: Some("unclean.leader.election.enable"),
        allowed: &[],
    },
];

/// The definition of topic config `key`, if Kafka has one.
pub fn topic_config_def(key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == key)
}

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
            ConfigType::Boolean => value == "true" || value == "false",
            ConfigType::Short => value.parse::<i16>().is_ok(),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            ConfigType::String | ConfigType::List => {
                d.allowed.is_empty() || d.allowed.contains(&value.replace(' ', "").as_str())
            }
        };
        if !ok {
            let expected = if d.allowed.is_empty() {
                format!("{:?}", d.kind)
            } else {
                d.allowed.iter().map(|a| if a.is_empty() { "\"\" (none)" } else { a }).collect::<Vec<_>>().join(", ")
            };
            return Err(format!("invalid value {value:?} for topic config {key}; expected {expected}"));
        }
        // Kafka's lower bounds (and the ratio's upper one).
        let bounds: &[(&str, f64, f64)] = &[
            ("max.message.bytes", 0.0, f64::MAX),
            ("segment.bytes", 14.0, f64::MAX),
            ("segment.ms", 1.0, f64::MAX),
            ("delete.retention.ms", 0.0, f64::MAX),
            ("min.compaction.lag.ms", 0.0, f64::MAX),
            ("max.compaction.lag.ms", 1.0, f64::MAX),
            ("min.cleanable.dirty.ratio", 0.0, 1.0),
            ("message.timestamp.before.max.ms", 0.0, f64::MAX),
            ("message.timestamp.after.max.ms", 0.0, f64::MAX),
            ("message.timestamp.difference.max.ms", 0.0, f64::MAX),
        ];
        if let Some((_, min, max)) = bounds.iter().find(|(k, _, _)| k == key) {
            if value.parse::<f64>().is_ok_and(|v| v < *min || v > *max) {
                let range =
                    if *max == f64::MAX { format!("at least {min}") } else { format!("between {min} and {max}") };
                return Err(format!("invalid value {value:?} for topic config {key}; must be {range}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_insync_replicas_never_exceeds_the_replicas() {
        // (min.insync.replicas, replicas) -> effective
        let cases = [((2, 3), 2), ((2, 1), 1), ((3, 2), 2), ((1, 3), 1), ((2, 0), 1)];
        for ((min, replicas), want) in cases {
            assert_eq!(effective_min_isr(min, replicas), want, "min {min} replicas {replicas}");
        }
    }

    #[test]
    fn new_topics_are_checked_against_the_existing_ones() {
        let existing: Vec<String> = vec!["a_b".into(), "orders".into()];
        let retention = |v: &str| BTreeMap::from([("retention.ms".to_string(), v.to_string())]);
        type Case = (&'static str, BTreeMap<String, String>, Result<(), &'static str>);
        let cases: Vec<Case> = vec![
            ("fresh", BTreeMap::new(), Ok(())),
            ("fresh", retention("1000"), Ok(())),
            ("orders", BTreeMap::new(), Err("exists")),
            ("a.b", BTreeMap::new(), Err("collides")),
            ("a_b", BTreeMap::new(), Err("exists")),
            ("a-b", BTreeMap::new(), Ok(())),
            ("bad name", BTreeMap::new(), Err("name")),
            ("fresh", retention("soon"), Err("config")),
        ];
        for (name, configs, want) in cases {
            let got = validate_new_topic(name, &configs, &existing).map_err(|e| match e {
                NewTopicError::InvalidName(_) => "name",
                NewTopicError::Exists(_) => "exists",
                NewTopicError::Collides { .. } => "collides",
                NewTopicError::InvalidConfig(_) => "config",
            });
            assert_eq!(got, want, "{name} {configs:?}");
        }
    }

    #[test]
    fn config_overrides_are_checked_by_type_and_name() {
        let ok = BTreeMap::from([
            ("retention.ms".to_string(), "1000".to_string()),
            ("cleanup.policy".into(), "compact,delete".into()),
        ]);
        assert_eq!(validate_config(&ok), Ok(()));
        assert_eq!(validate_config(&BTreeMap::from([("cleanup.policy".to_string(), String::new())])), Ok(()));
        for (k, v) in
            [("cleanup.policy", "compact,"), ("message.timestamp.before.max.ms", "-1"), ("retention.ms", "soon"), ("message.timestamp.type", "Now"), ("no.such.key", "1"), ("preallocate", "yes")]
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
    fn rack_aware_placement_spreads_each_partition_over_racks() {
        let brokers: Vec<(BrokerId, String)> =
            vec![(1, "a".into()), (2, "a".into()), (3, "b".into()), (4, "b".into()), (5, "c".into()), (6, "c".into())];
        assert_eq!(rack_alternated(&brokers), vec![1, 3, 5, 2, 4, 6]);
        for start in 0..6 {
            for shift in 0..6 {
                let out = assign_replicas_rack_aware(&brokers, 12, 3, 0, start, shift).unwrap();
                for replicas in out.values() {
                    let racks: std::collections::BTreeSet<&str> =
                        replicas.iter().map(|r| brokers.iter().find(|(id, _)| id == r).unwrap().1.as_str()).collect();
                    assert_eq!(racks.len(), 3, "{replicas:?} (start {start}, shift {shift})");
                }
                // Leaders rotate over every broker.
                let leaders: std::collections::BTreeSet<BrokerId> = out.values().map(|r| r[0]).collect();
                assert_eq!(leaders.len(), 6);
            }
        }
        // Two racks, RF 3: both racks get a replica, and no broker twice.
        let two: Vec<(BrokerId, String)> = vec![(1, "a".into()), (2, "a".into()), (3, "b".into()), (4, "b".into())];
        for replicas in assign_replicas_rack_aware(&two, 8, 3, 0, 1, 2).unwrap().values() {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
            assert!(replicas.iter().any(|r| *r <= 2) && replicas.iter().any(|r| *r >= 3), "{replicas:?}");
        }
    }

    #[test]
    fn placement_is_rack_aware_only_with_racks_on_every_broker() {
        let none: Vec<PlacementBroker> = vec![(1, None), (2, None)];
        assert_eq!(place(&none, 2, 2, 0, 0, 0).unwrap(), assign_replicas(&[1, 2], 2, 2, 0, 0, 0).unwrap());
        let mixed: Vec<PlacementBroker> = vec![(1, Some("a".into())), (2, None)];
        assert_eq!(place(&mixed, 1, 1, 0, 0, 0), Err(AssignmentError::PartialRackInfo { missing: vec![2] }));
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
