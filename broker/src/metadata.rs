//! The broker's view of the cluster, rebuilt from ZooKeeper (ZooKeeper is the source of
//! truth; this is a read-only snapshot that Metadata, Produce and Fetch consult).

use std::collections::{BTreeMap, HashMap};

use tributary_common::ids::{BrokerId, TopicId};
use tributary_common::znode::{ConfigEntity, Endpoint, NO_LEADER};

/// A live broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BrokerInfo {
    /// Its advertised endpoints, one per listener name.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Broker epoch: czxid of its registration.
    pub epoch: i64,
}

impl BrokerInfo {
    /// Its endpoint for a listener name: what a client that arrived on that listener (or
    /// a follower fetching over it) dials.
    pub(crate) fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }
}

/// A partition's assignment and leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionMetadata {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// Current leader, or -1.
    pub leader: BrokerId,
    /// Leader epoch (-1 before the controller wrote a state).
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<BrokerId>,
    /// zkVersion of the state znode (-1 before it exists).
    pub state_version: i32,
    /// Controller epoch in the state znode.
    pub controller_epoch: i32,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct TopicMetadata {
    /// KIP-516 id.
    pub id: Option<TopicId>,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionMetadata>,
    /// Overrides from `/config/topics/<t>`.
    pub config: BTreeMap<String, String>,
    /// zkVersion of `/brokers/topics/<t>`, for conditional updates.
    pub assignment_version: i32,
    /// Marked for deletion in `/admin/delete_topics`.
    pub deleting: bool,
    /// Partitions being reassigned: (replicas being added, replicas being removed).
    pub reassigning: BTreeMap<i32, (Vec<BrokerId>, Vec<BrokerId>)>,
}

impl TopicMetadata {
    /// Whether every partition has a leader.
    pub(crate) fn fully_led(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.values().all(|p| p.leader != NO_LEADER)
    }
}

/// The whole cluster as last read from ZooKeeper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterMetadata {
    /// `/cluster/id`.
    pub cluster_id: String,
    /// Live brokers by id.
    pub brokers: BTreeMap<BrokerId, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Topic id → name.
    pub topic_names: HashMap<TopicId, String>,
    /// Dynamic configs of brokers, clients and users (`/config/{brokers,clients,users}`).
    pub entity_configs: BTreeMap<ConfigEntity, BTreeMap<String, String>>,
    /// ACLs (`/kafka-acl`, `/kafka-acl-extended`), by resource pattern.
    pub acls: tributary_common::acl::AclMap,
}

impl ClusterMetadata {
    /// The dynamic overrides of an entity (empty when it has none).
    pub(crate) fn entity_config(&self, entity: &ConfigEntity) -> BTreeMap<String, String> {
        self.entity_configs.get(entity).cloned().unwrap_or_default()
    }

    /// The broker reported as `controller_id`: the lowest live broker id. Tributary's
    /// controller is the coordinator, which does not speak Kafka; admin clients send
    /// CreateTopics and friends to this id, and any broker applies them through ZooKeeper.
    pub(crate) fn controller_id(&self) -> BrokerId {
        self.brokers.keys().next().copied().unwrap_or(-1)
    }

    /// The live brokers that have an endpoint on `listener`, with it: what Metadata and
    /// DescribeCluster list for a client that arrived on that listener (brokers without
    /// it are left out, as Kafka leaves them out).
    pub(crate) fn brokers_on<'a>(
        &'a self,
        listener: &'a str,
    ) -> impl Iterator<Item = (BrokerId, &'a Endpoint, &'a BrokerInfo)> + 'a {
        self.brokers.iter().filter_map(move |(id, b)| Some((*id, b.endpoint(listener)?, b)))
    }

    /// Ids of the live brokers.
    pub(crate) fn live_brokers(&self) -> Vec<BrokerId> {
        self.brokers.keys().copied().collect()
    }

    /// Live brokers with their `broker.rack`, for replica placement.
    pub(crate) fn placement_brokers(&self) -> Vec<tributary_common::topic::PlacementBroker> {
        self.brokers.iter().map(|(id, b)| (*id, b.rack.clone())).collect()
    }

    /// The name of the topic with this id.
    pub(crate) fn topic_name(&self, id: &uuid::Uuid) -> Option<String> {
        self.topic_by_id(&TopicId(*id)).map(|(n, _)| n.clone())
    }

    /// The topic with this id (and its name).
    pub(crate) fn topic_by_id(&self, id: &TopicId) -> Option<(&String, &TopicMetadata)> {
        let name = self.topic_names.get(id)?;
        Some((name, self.topics.get(name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_live_broker_stands_in_as_controller() {
        let mut m = ClusterMetadata::default();
        assert_eq!(m.controller_id(), -1);
        for id in [3, 1, 2] {
            m.brokers.insert(
                id,
                BrokerInfo {
                    endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host: "h".into(), port: 1 }],
                    rack: None,
                    epoch: 0,
                },
            );
        }
        assert_eq!(m.controller_id(), 1);
    }

    #[test]
    fn a_topic_is_fully_led_only_when_every_partition_has_a_leader() {
        let p = |leader| PartitionMetadata {
            replicas: vec![1],
            leader,
            leader_epoch: 0,
            isr: vec![1],
            state_version: 0,
            controller_epoch: 1,
        };
        let mut t = TopicMetadata::default();
        assert!(!t.fully_led());
        t.partitions.insert(0, p(1));
        assert!(t.fully_led());
        t.partitions.insert(1, p(NO_LEADER));
        assert!(!t.fully_led());
    }
}
