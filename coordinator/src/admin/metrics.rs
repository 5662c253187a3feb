//! `GET /metrics`: the coordinator's Prometheus metrics, gathered when Prometheus scrapes.
//!
//! - The controller, as Kafka's `KafkaController` MBeans name it through the JMX
//!   exporter: `kafka_controller_kafkacontroller_activecontrollercount` (1 on the active
//!   coordinator only, so a sum over every target is 1), offline partitions, global topic
//!   and partition counts, preferred-replica imbalance, topics to delete, live brokers.
//! - The cluster as kafka_exporter names it: `kafka_brokers`, `kafka_topic_partitions`,
//!   per partition its leader, replicas, ISR size, preferred leader, under-replication,
//!   newest (high watermark) and oldest offsets.
//! - Consumer groups as kafka_exporter names them (`kafka_consumergroup_current_offset`,
//!   `kafka_consumergroup_lag`, `..._sum` per topic, `kafka_consumergroup_members`) and
//!   per group as kafka-lag-exporter does (`kafka_consumergroup_group_sum_lag`,
//!   `..._max_lag`), computed by the same code as `GET /groups/{id}`, so the two agree.
//!
//! ZooKeeper is read once per scrape; the brokers are asked within [`BROKER_BUDGET`], and
//! a scrape that runs out of it says so (`tributary_metrics_scrape_complete 0`) instead of
//! timing out Prometheus.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tributary_common::ids::BrokerId;
use tributary_common::metrics::{self, Exposition, Labels};
use tributary_common::snapshot::ClusterSnapshot;

use super::groups::{self, describe_group, list_groups, CONSUMER_REPLICA_ID, EARLIEST, LATEST};
use super::{AdminState, PartitionHealth};

/// How long a scrape may spend asking brokers (Prometheus' default scrape timeout is 10 s).
const BROKER_BUDGET: Duration = Duration::from_secs(7);

fn bool_gauge(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// `GET /metrics`.
pub(super) async fn scrape(State(state): State<AdminState>) -> Response {
    let status = state.status.borrow().clone();
    let mut out = Exposition::default();
    out.gauge(
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 when this coordinator is the active controller",
        vec![],
        bool_gauge(status.active),
    );
    out.gauge(
        "tributary_zookeeper_connected",
        "1 while this coordinator has a ZooKeeper session",
        vec![],
        bool_gauge(status.connected),
    );
    if let Some(epoch) = status.controller_epoch {
        out.gauge("tributary_controller_epoch", "the controller epoch this coordinator won", vec![], f64::from(epoch));
    }
    let mut complete = false;
    if let Ok((_, snapshot)) = state.snapshot().await {
        cluster(&mut out, &snapshot);
        complete =
            tokio::time::timeout(BROKER_BUDGET, from_brokers(state.brokers(&snapshot))).await.map(|b| b.expose(&mut out)).is_ok();
    }
    out.gauge(
        "tributary_metrics_scrape_complete",
        "1 when this scrape read ZooKeeper and heard from the brokers in time; 0: some figures are missing",
        vec![],
        bool_gauge(complete),
    );
    metrics::process(&mut out);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], out.encode()).into_response()
}

fn partition_labels(topic: &str, partition: i32) -> Labels {
    vec![("topic", topic.to_string()), ("partition", partition.to_string())]
}

/// What ZooKeeper alone tells.
fn cluster(out: &mut Exposition, s: &ClusterSnapshot) {
    let (mut partitions, mut offline, mut imbalance) = (0usize, 0usize, 0usize);
    for (topic, t) in &s.topics {
        out.gauge(
            "kafka_topic_partitions",
            "partitions of a topic",
            vec![("topic", topic.clone())],
            t.partitions.len() as f64,
        );
        for (p, ps) in &t.partitions {
            let h = PartitionHealth::of(s, t, ps);
            partitions += 1;
            offline += usize::from(h.offline());
            imbalance += usize::from(!h.preferred_leader);
            let labels = partition_labels(topic, *p);
            out.gauge(
                "kafka_topic_partition_leader",
                "the leader's broker id (-1: none)",
                labels.clone(),
                f64::from(h.leader.unwrap_or(-1)),
            );
            out.gauge("kafka_topic_partition_replicas", "assigned replicas", labels.clone(), ps.replicas.len() as f64);
            out.gauge("kafka_topic_partition_in_sync_replica", "in-sync replicas", labels.clone(), h.isr.len() as f64);
            out.gauge(
                "kafka_topic_partition_leader_is_preferred",
                "1 when the preferred (first) replica leads",
                labels.clone(),
                bool_gauge(h.preferred_leader),
            );
            out.gauge(
                "kafka_topic_partition_under_replicated_partition",
                "1 when the ISR is smaller than the replica set",
                labels,
                bool_gauge(h.under_replicated),
            );
        }
    }
    out.gauge("kafka_brokers", "live brokers registered in ZooKeeper", vec![], s.brokers.len() as f64);
    out.gauge(
        "kafka_controller_kafkacontroller_activebrokercount",
        "live brokers registered in ZooKeeper",
        vec![],
        s.brokers.len() as f64,
    );
    out.gauge("kafka_controller_kafkacontroller_globaltopiccount", "topics", vec![], s.topics.len() as f64);
    out.gauge("kafka_controller_kafkacontroller_globalpartitioncount", "partitions", vec![], partitions as f64);
    out.gauge(
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "partitions without a live leader (cannot be read or written)",
        vec![],
        offline as f64,
    );
    out.gauge(
        "kafka_controller_kafkacontroller_preferredreplicaimbalancecount",
        "partitions not led by their preferred replica",
        vec![],
        imbalance as f64,
    );
    out.gauge(
        "kafka_controller_kafkacontroller_topicstodeletecount",
        "topics marked for deletion and not yet deleted",
        vec![],
        s.pending_deletions.len() as f64,
    );
}

/// What the brokers tell: partition offsets and consumer groups.
#[derive(Default)]
struct FromBrokers {
    newest: BTreeMap<(String, i32), i64>,
    oldest: BTreeMap<(String, i32), i64>,
    groups: Vec<groups::GroupView>,
}

async fn from_brokers(s: crate::brokers::Brokers<'_>) -> FromBrokers {
    let mut by_leader: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, t) in &s.topics {
        for (p, ps) in &t.partitions {
            if let Some(leader) = PartitionHealth::of(s.snapshot, t, ps).leader {
                by_leader.entry(leader).or_default().push((topic.clone(), *p));
            }
        }
    }
    let strip = |m: BTreeMap<(BrokerId, String, i32), i64>| m.into_iter().map(|((_, t, p), o)| ((t, p), o)).collect();
    let newest = strip(groups::offsets_at(s, by_leader.clone(), CONSUMER_REPLICA_ID, LATEST).await);
    let oldest = strip(groups::offsets_at(s, by_leader, CONSUMER_REPLICA_ID, EARLIEST).await);
    let mut described = Vec::new();
    let (listed, _) = list_groups(s).await;
    for g in listed {
        // A group that vanished or whose coordinator moved since the listing is left out.
        if let Ok(view) = describe_group(s, &g.group_id).await {
            described.push(view);
        }
    }
    FromBrokers { newest, oldest, groups: described }
}

impl FromBrokers {
    fn expose(&self, out: &mut Exposition) {
        for ((topic, p), offset) in &self.newest {
            out.gauge(
                "kafka_topic_partition_current_offset",
                "the partition's high watermark",
                partition_labels(topic, *p),
                *offset as f64,
            );
        }
        for ((topic, p), offset) in &self.oldest {
            out.gauge(
                "kafka_topic_partition_oldest_offset",
                "the partition's first offset held",
                partition_labels(topic, *p),
                *offset as f64,
            );
        }
        for g in &self.groups {
            let group = || ("consumergroup", g.group_id.clone());
            out.gauge(
                "kafka_consumergroup_members",
                "members of a consumer group",
                vec![group()],
                g.members.len() as f64,
            );
            let mut per_topic: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
            for o in &g.offsets {
                let mut labels = partition_labels(&o.topic, o.partition);
                labels.insert(0, group());
                out.gauge(
                    "kafka_consumergroup_current_offset",
                    "a group's committed offset of a partition",
                    labels.clone(),
                    o.committed as f64,
                );
                let sums = per_topic.entry(&o.topic).or_default();
                sums.0 += o.committed;
                if let Some(lag) = o.lag() {
                    out.gauge(
                        "kafka_consumergroup_lag",
                        "records between a group's committed offset and the high watermark",
                        labels,
                        lag as f64,
                    );
                    sums.1 += lag;
                }
            }
            for (topic, (offsets, lag)) in per_topic {
                let labels = vec![group(), ("topic", topic.to_string())];
                out.gauge(
                    "kafka_consumergroup_current_offset_sum",
                    "a group's committed offsets of a topic, summed",
                    labels.clone(),
                    offsets as f64,
                );
                out.gauge("kafka_consumergroup_lag_sum", "a group's lag on a topic, summed", labels, lag as f64);
            }
            let lags: Vec<i64> = g.offsets.iter().filter_map(groups::CommittedOffset::lag).collect();
            let labels = vec![("group", g.group_id.clone())];
            out.gauge(
                "kafka_consumergroup_group_sum_lag",
                "a group's lag over all its partitions (what GET /groups/{id} calls total_lag)",
                labels.clone(),
                lags.iter().sum::<i64>() as f64,
            );
            out.gauge(
                "kafka_consumergroup_group_max_lag",
                "a group's largest lag on one partition",
                labels,
                lags.iter().copied().max().unwrap_or(0) as f64,
            );
        }
    }
}
