//! The broker's Prometheus metrics, served at `GET /metrics` on `metrics.listen`
//! (`--metrics-listen`, off by default).
//!
//! Counts are kept in one process-wide [`BrokerMetrics`] (Kafka's metrics registry is
//! process-wide too), fed where the events happen: the connection loop (requests and their
//! times, connections), produce and fetch (messages and bytes per topic, failed requests),
//! ISR maintenance (shrinks and expands) and the log store (flush and append times).
//! Everything else (partition, leader and under-replicated counts, log sizes and offsets)
//! is read from the replica manager when Prometheus scrapes, so it cannot drift.
//!
//! This module is a leaf: the request path, the replica manager and the log store call
//! it; what it reads at scrape comes in as plain data ([`Hosted`]), gathered by the
//! server's metrics listener.
//!
//! Per-topic series exist only for topics in the current metadata: a client naming
//! topics that do not exist cannot grow the label set, and a deleted topic's series go.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use tributary_common::metrics::{Exposition, Labels, Meter, MeterNames, Reservoir};

/// The process-wide counts; see the module doc.
pub(crate) static METRICS: LazyLock<BrokerMetrics> = LazyLock::new(BrokerMetrics::default);

/// Kafka's `BrokerTopicMetrics` of one topic (or of all topics together).
#[derive(Debug, Default)]
pub(crate) struct TopicMeters {
    messages_in: Meter,
    bytes_in: Meter,
    bytes_out: Meter,
    messages_out: Meter,
    total_produce: Meter,
    total_fetch: Meter,
    failed_produce: Meter,
    failed_fetch: Meter,
}

const fn topic_meter(count: &'static str, mbean: &'static str, help: &'static str) -> MeterNames {
    MeterNames { count, group: "kafka_server_BrokerTopicMetrics", mbean, help }
}

const MESSAGES_IN: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_messagesin",
    "MessagesInPerSec",
    "records appended by producers (not by replication)",
);
const BYTES_IN: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_bytesin",
    "BytesInPerSec",
    "bytes of record batches appended by producers",
);
const BYTES_OUT: MeterNames =
    topic_meter("kafka_server_brokertopicmetrics_bytesout", "BytesOutPerSec", "bytes of records sent to consumers");
const MESSAGES_OUT: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_messagesout",
    "MessagesOutPerSec",
    "records sent to consumers, counted by whole batches (Tributary's; Kafka has no such meter)",
);
const TOTAL_PRODUCE: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_totalproducerequests",
    "TotalProduceRequestsPerSec",
    "partition writes asked by produce requests",
);
const TOTAL_FETCH: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_totalfetchrequests",
    "TotalFetchRequestsPerSec",
    "partition reads asked by consumer fetch requests",
);
const FAILED_PRODUCE: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_failedproducerequests",
    "FailedProduceRequestsPerSec",
    "partition writes answered with an error other than a stale leader",
);
const FAILED_FETCH: MeterNames = topic_meter(
    "kafka_server_brokertopicmetrics_failedfetchrequests",
    "FailedFetchRequestsPerSec",
    "partition reads answered with an error other than a stale leader",
);
const ISR_SHRINKS: MeterNames = MeterNames {
    count: "kafka_server_replicamanager_isrshrinks",
    group: "kafka_server_ReplicaManager",
    mbean: "IsrShrinksPerSec",
    help: "followers removed from the ISR of partitions led here",
};
const ISR_EXPANDS: MeterNames = MeterNames {
    count: "kafka_server_replicamanager_isrexpands",
    group: "kafka_server_ReplicaManager",
    mbean: "IsrExpandsPerSec",
    help: "followers added back to the ISR of partitions led here",
};

impl TopicMeters {
    fn expose(&self, out: &mut Exposition, labels: &Labels, now: Instant) {
        for (names, meter) in [
            (&MESSAGES_IN, &self.messages_in),
            (&BYTES_IN, &self.bytes_in),
            (&BYTES_OUT, &self.bytes_out),
            (&MESSAGES_OUT, &self.messages_out),
            (&TOTAL_PRODUCE, &self.total_produce),
            (&TOTAL_FETCH, &self.total_fetch),
            (&FAILED_PRODUCE, &self.failed_produce),
            (&FAILED_FETCH, &self.failed_fetch),
        ] {
            out.meter(names, labels, meter, now);
        }
    }
}

/// Requests of one API: count per version and total time (Kafka's `RequestMetrics`).
#[derive(Debug, Default)]
struct RequestStats {
    versions: RwLock<BTreeMap<i16, Arc<Meter>>>,
    total_time_ms: Reservoir,
}

/// The process-wide counts.
#[derive(Debug, Default)]
pub(crate) struct BrokerMetrics {
    all_topics: TopicMeters,
    topics: RwLock<HashMap<String, Arc<TopicMeters>>>,
    /// By API key, and for fetches whether from a follower.
    requests: RwLock<BTreeMap<(i16, bool), Arc<RequestStats>>>,
    connections: RwLock<BTreeMap<String, Arc<AtomicI64>>>,
    /// By listener and outcome; authentications are rare next to requests.
    authentications: Mutex<BTreeMap<(String, AuthOutcome), u64>>,
    isr_shrinks: Meter,
    isr_expands: Meter,
    flush_ms: Reservoir,
    append_ms: Reservoir,
    /// Incremental fetch sessions cached, and their partitions (KIP-227).
    fetch_sessions: AtomicI64,
    fetch_session_partitions: AtomicI64,
    fetch_session_evictions: std::sync::atomic::AtomicU64,
}

/// How an authentication ended, counted as Kafka's socket-server-metrics count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AuthOutcome {
    /// A connection authenticated: a PLAINTEXT or TLS connection accepted, a SASL
    /// exchange completed.
    Succeeded,
    /// An authenticated SASL connection authenticated again before its session expired
    /// (KIP-368, `connections.max.reauth.ms`).
    Reauthenticated,
    /// A TLS handshake or SASL exchange refused, or not finished in time.
    Failed,
    /// A re-authentication refused (the connection is closed).
    FailedReauthentication,
}

impl AuthOutcome {
    /// The series (before the text format's `_total`) and its help.
    fn series(self) -> (&'static str, &'static str) {
        match self {
            AuthOutcome::Succeeded => (
                "kafka_server_socket_server_metrics_successful_authentication",
                "connections that authenticated (PLAINTEXT and TLS connections accepted, SASL exchanges completed), by listener",
            ),
            AuthOutcome::Reauthenticated => (
                "kafka_server_socket_server_metrics_successful_reauthentication",
                "SASL sessions re-authenticated before they expired (KIP-368, connections.max.reauth.ms), by listener",
            ),
            AuthOutcome::Failed => (
                "kafka_server_socket_server_metrics_failed_authentication",
                "TLS handshakes and SASL exchanges refused or not finished in time, by listener",
            ),
            AuthOutcome::FailedReauthentication => (
                "kafka_server_socket_server_metrics_failed_reauthentication",
                "SASL re-authentications refused, by listener",
            ),
        }
    }
}

/// One outcome of a partition write or read, for the failed-request meters: routing errors
/// (the client asked a broker that does not lead, or a topic that does not exist) are the
/// client's to retry elsewhere and do not count as failures, as in Kafka.
pub(crate) fn counts_as_failure(error_code: i16) -> bool {
    use kafka_protocol::error::ResponseError as E;
    let routing = [E::NotLeaderOrFollower, E::UnknownTopicOrPartition, E::FencedLeaderEpoch, E::UnknownLeaderEpoch];
    error_code != 0 && !routing.iter().any(|e| e.code() == error_code)
}

impl BrokerMetrics {
    fn topic(&self, topic: &str) -> Arc<TopicMeters> {
        if let Some(t) = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(topic) {
            return t.clone();
        }
        let mut topics = self.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.entry(topic.to_string()).or_default().clone()
    }

    /// A producer's batch appended to `topic`: `records` records in `bytes` bytes.
    pub(crate) fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let t = self.topic(topic);
        for m in [t.as_ref(), &self.all_topics] {
            m.messages_in.mark(records);
            m.bytes_in.mark(bytes);
        }
    }

    /// A produce request asks to write to a partition of an existing `topic` (counted once
    /// per partition write, whatever becomes of it).
    pub(crate) fn produce_requested(&self, topic: &str) {
        let t = self.topic(topic);
        for m in [t.as_ref(), &self.all_topics] {
            m.total_produce.mark(1);
        }
    }

    /// A partition write of `topic` (counted by [`Self::produce_requested`]) was answered
    /// with `error_code`, refused or not confirmed.
    pub(crate) fn produce_failed(&self, topic: &str, error_code: i16) {
        if !counts_as_failure(error_code) {
            return;
        }
        let t = self.topic(topic);
        for m in [t.as_ref(), &self.all_topics] {
            m.failed_produce.mark(1);
        }
    }

    /// A consumer's read of an existing `topic`: `records` in `bytes` sent, answered with
    /// `error_code`.
    pub(crate) fn fetched(&self, topic: &str, records: u64, bytes: u64, error_code: i16) {
        let t = self.topic(topic);
        for m in [t.as_ref(), &self.all_topics] {
            m.total_fetch.mark(1);
            m.bytes_out.mark(bytes);
            m.messages_out.mark(records);
            if counts_as_failure(error_code) {
                m.failed_fetch.mark(1);
            }
        }
    }

    /// A request of `api_key` at `version` (a fetch: `from_follower` or not) answered
    /// after `elapsed`.
    pub(crate) fn request(&self, api_key: i16, from_follower: bool, version: i16, elapsed: Duration) {
        let key = (api_key, from_follower);
        let existing = self.requests.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
        let stats = existing.unwrap_or_else(|| {
            self.requests.write().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key).or_default().clone()
        });
        let meter = stats.versions.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&version).cloned();
        let meter = meter.unwrap_or_else(|| {
            stats
                .versions
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(version)
                .or_default()
                .clone()
        });
        meter.mark(1);
        stats.total_time_ms.record_duration(elapsed);
    }

    /// The open-connection count of `listener`, to change with `fetch_add`.
    pub(crate) fn connections(&self, listener: &str) -> Arc<AtomicI64> {
        let existing =
            self.connections.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(listener).cloned();
        existing.unwrap_or_else(|| {
            self.connections
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(listener.to_string())
                .or_default()
                .clone()
        })
    }

    /// An authentication on `listener` ended with `outcome`.
    pub(crate) fn authentication(&self, listener: &str, outcome: AuthOutcome) {
        *self
            .authentications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((listener.to_string(), outcome))
            .or_default() += 1;
    }

    /// Followers left (`removed`) and rejoined (`added`) the ISR of a partition led here.
    pub(crate) fn isr_changed(&self, removed: usize, added: usize) {
        self.isr_shrinks.mark(removed as u64);
        self.isr_expands.mark(added as u64);
    }

    /// The log store flushed (fsync) in `elapsed`.
    pub(crate) fn flushed(&self, elapsed: Duration) {
        self.flush_ms.record_duration(elapsed);
    }

    /// The fetch session cache now holds `sessions` sessions of `partitions` partitions.
    pub(crate) fn fetch_sessions(&self, sessions: usize, partitions: usize) {
        self.fetch_sessions.store(sessions as i64, Ordering::Relaxed);
        self.fetch_session_partitions.store(partitions as i64, Ordering::Relaxed);
    }

    /// A fetch session was evicted to make room for another.
    pub(crate) fn fetch_session_evicted(&self) {
        self.fetch_session_evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// One batch was written to the log store in `elapsed`.
    pub(crate) fn appended(&self, elapsed: Duration) {
        self.append_ms.record_duration(elapsed);
    }
}

/// Kafka's request name for a request: its API's name, with fetches split into
/// `FetchConsumer` and `FetchFollower` as Kafka's request metrics split them.
pub(crate) fn request_name(api_key: i16, from_follower: bool) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(kafka_protocol::messages::ApiKey::Fetch) if from_follower => "FetchFollower".into(),
        Ok(kafka_protocol::messages::ApiKey::Fetch) => "FetchConsumer".into(),
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("Unknown{api_key}"),
    }
}

/// What one local partition contributes to the replica manager's gauges (pure, so the
/// rules are table-tested): (leader here, under-replicated, under min ISR).
pub(crate) fn partition_health(
    broker: i32,
    leader: i32,
    isr: usize,
    replicas: usize,
    min_insync_replicas: usize,
) -> (bool, bool, bool) {
    let leads = leader == broker;
    (leads, leads && isr < replicas, leads && isr < min_insync_replicas)
}

/// One partition replica hosted here, as the scrape sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PartitionFigures {
    /// Topic name.
    pub(crate) topic: String,
    /// Partition index.
    pub(crate) partition: i32,
    /// Current leader (-1: none).
    pub(crate) leader: i32,
    /// In-sync replicas.
    pub(crate) isr: usize,
    /// Assigned replicas.
    pub(crate) replicas: usize,
    /// The topic's `min.insync.replicas`.
    pub(crate) min_insync_replicas: usize,
    /// Bytes held.
    pub(crate) size_bytes: u64,
    /// First offset held.
    pub(crate) log_start_offset: i64,
    /// Next offset to write.
    pub(crate) log_end_offset: i64,
    /// High watermark.
    pub(crate) high_watermark: i64,
}

/// What the scrape reads from the rest of the broker.
#[derive(Debug, Default)]
pub(crate) struct Hosted {
    /// This broker's id.
    pub(crate) broker_id: i32,
    /// Topics in the current metadata.
    pub(crate) topics: std::collections::BTreeSet<String>,
    /// Replicas hosted here.
    pub(crate) partitions: Vec<PartitionFigures>,
    /// Replicas still opening (after a restart).
    pub(crate) opening: usize,
    /// sled's size on disk, when it could be read.
    pub(crate) disk_bytes: Option<u64>,
}

/// The whole exposition of this broker: the counts kept here and `hosted`.
pub(crate) fn render(hosted: &Hosted) -> String {
    let m = &*METRICS;
    let now = Instant::now();
    let mut out = Exposition::default();

    // Topic traffic: every topic with a replica here shows, at 0 before any traffic;
    // deleted topics' meters go.
    m.all_topics.expose(&mut out, &Vec::new(), now);
    for p in &hosted.partitions {
        m.topic(&p.topic);
    }
    let topics: Vec<(String, Arc<TopicMeters>)> = {
        let mut t = m.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.retain(|name, _| hosted.topics.contains(name));
        t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    for (name, meters) in &topics {
        meters.expose(&mut out, &vec![("topic", name.clone())], now);
    }

    // Requests.
    let requests: Vec<(String, Arc<RequestStats>)> = m
        .requests
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(&(key, follower), v)| (request_name(key, follower), v.clone()))
        .collect();
    for (api, stats) in &requests {
        let versions: Vec<(i16, u64)> = stats
            .versions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(v, m)| (*v, m.count()))
            .collect();
        for (version, count) in versions {
            out.counter(
                "kafka_network_requestmetrics_requests",
                "requests answered, by API and version",
                vec![("request", api.clone()), ("version", version.to_string())],
                count as f64,
            );
        }
        out.summary(
            "kafka_network_requestmetrics_totaltimems",
            "time from reading a request to writing its response, in ms (quantiles over the last 1028 requests)",
            &vec![("request", api.clone())],
            &stats.total_time_ms.snapshot(),
        );
    }
    let connections: Vec<(String, i64)> = m
        .connections
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect();
    for (listener, count) in connections {
        out.gauge(
            "kafka_server_socket_server_metrics_connection_count",
            "client connections open, by listener",
            vec![("listener", listener)],
            count as f64,
        );
    }
    let authentications: Vec<((String, AuthOutcome), u64)> = m
        .authentications
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for ((listener, outcome), count) in authentications {
        let (name, help) = outcome.series();
        out.counter(name, help, vec![("listener", listener)], count as f64);
    }

    // Fetch sessions (KIP-227), under Kafka's FetchSessionCache names.
    out.gauge(
        "kafka_server_fetchsessioncache_numincrementalfetchsessions",
        "incremental fetch sessions cached (max.incremental.fetch.session.cache.slots)",
        vec![],
        m.fetch_sessions.load(Ordering::Relaxed) as f64,
    );
    out.gauge(
        "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached",
        "partitions held by the cached fetch sessions",
        vec![],
        m.fetch_session_partitions.load(Ordering::Relaxed) as f64,
    );
    out.counter(
        "kafka_server_fetchsessioncache_incrementalfetchsessionevictions",
        "fetch sessions evicted to make room for others",
        vec![],
        m.fetch_session_evictions.load(Ordering::Relaxed) as f64,
    );

    // Replicas hosted here.
    let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
    let mut log_bytes = 0u64;
    for p in &hosted.partitions {
        let (leads, under, under_min) =
            partition_health(hosted.broker_id, p.leader, p.isr, p.replicas, p.min_insync_replicas);
        partitions += 1;
        leaders += usize::from(leads);
        under_replicated += usize::from(under);
        under_min_isr += usize::from(under_min);
        log_bytes += p.size_bytes;
        let labels = vec![("topic", p.topic.clone()), ("partition", p.partition.to_string())];
        out.gauge(
            "kafka_log_log_size",
            "bytes of record batches held for a partition",
            labels.clone(),
            p.size_bytes as f64,
        );
        out.gauge(
            "kafka_log_log_logstartoffset",
            "first offset held for a partition",
            labels.clone(),
            p.log_start_offset as f64,
        );
        out.gauge(
            "kafka_log_log_logendoffset",
            "next offset to be written to a partition",
            labels.clone(),
            p.log_end_offset as f64,
        );
        if leads {
            out.gauge(
                "kafka_cluster_partition_underreplicated",
                "1 when a partition led here has fewer in-sync replicas than replicas",
                labels.clone(),
                f64::from(u8::from(under)),
            );
            out.gauge(
                "kafka_server_replicamanager_highwatermark",
                "high watermark of a partition led here",
                labels,
                p.high_watermark as f64,
            );
        }
    }
    out.gauge(
        "kafka_server_replicamanager_partitioncount",
        "partition replicas hosted here",
        vec![],
        f64::from(partitions),
    );
    out.gauge("kafka_server_replicamanager_leadercount", "partitions led here", vec![], leaders as f64);
    out.gauge(
        "kafka_server_replicamanager_underreplicatedpartitions",
        "partitions led here whose ISR is smaller than their replica set",
        vec![],
        under_replicated as f64,
    );
    out.gauge(
        "kafka_server_replicamanager_underminisrpartitioncount",
        "partitions led here whose ISR is smaller than min.insync.replicas (acks=all writes fail)",
        vec![],
        under_min_isr as f64,
    );
    out.gauge(
        "kafka_server_replicamanager_offlinereplicacount",
        "replicas hosted here that cannot be served (still opening after a restart)",
        vec![],
        hosted.opening as f64,
    );
    out.meter(&ISR_SHRINKS, &Vec::new(), &m.isr_shrinks, now);
    out.meter(&ISR_EXPANDS, &Vec::new(), &m.isr_expands, now);
    // The coordinator is the controller; dashboards summing this over every target see 1.
    out.gauge(
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 on the active controller; brokers never are (the coordinator is)",
        vec![],
        0.0,
    );
    out.gauge(
        "kafka_log_log_size_total_bytes",
        "bytes of record batches held here, all partitions",
        vec![],
        log_bytes as f64,
    );

    // Storage.
    out.summary(
        "kafka_log_logflushstats_logflushrateandtimems",
        "time to flush the log store to disk, in ms (quantiles over the last 1028 flushes)",
        &Vec::new(),
        &m.flush_ms.snapshot(),
    );
    out.summary(
        "tributary_log_append_time_ms",
        "time to write one batch into sled, in ms (quantiles over the last 1028 writes)",
        &Vec::new(),
        &m.append_ms.snapshot(),
    );
    if let Some(bytes) = hosted.disk_bytes {
        out.gauge("tributary_log_store_disk_bytes", "bytes sled uses on disk", vec![], bytes as f64);
    }
    out.gauge("kafka_server_kafkaserver_brokerstate", "3: running (Kafka's RunningAsBroker)", vec![], 3.0);
    tributary_common::metrics::process(&mut out);
    out.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_health_counts_what_kafka_counts() {
        // (broker, leader, isr, replicas, min isr) -> (leads, under-replicated, under min isr)
        let cases = [
            ((1, 1, 3, 3, 2), (true, false, false)),
            ((1, 1, 2, 3, 2), (true, true, false)),
            ((1, 1, 1, 3, 2), (true, true, true)),
            // Followers report nothing: the leader counts its partition.
            ((1, 2, 1, 3, 2), (false, false, false)),
            // Leaderless.
            ((1, -1, 0, 3, 2), (false, false, false)),
        ];
        for ((b, l, i, r, m), want) in cases {
            assert_eq!(partition_health(b, l, i, r, m), want, "{b} {l} {i} {r} {m}");
        }
    }

    #[test]
    fn routing_errors_are_not_failures() {
        use kafka_protocol::error::ResponseError as E;
        assert!(!counts_as_failure(0));
        assert!(!counts_as_failure(E::NotLeaderOrFollower.code()));
        assert!(!counts_as_failure(E::UnknownTopicOrPartition.code()));
        assert!(counts_as_failure(E::CorruptMessage.code()));
        assert!(counts_as_failure(E::InvalidRecord.code()));
        assert!(counts_as_failure(E::NotEnoughReplicas.code()));
    }

    #[test]
    fn request_names_split_fetches() {
        assert_eq!(request_name(1, false), "FetchConsumer");
        assert_eq!(request_name(1, true), "FetchFollower");
        assert_eq!(request_name(0, false), "Produce");
        assert_eq!(request_name(18, false), "ApiVersions");
        assert_eq!(request_name(-5, false), "Unknown-5");
    }
}
