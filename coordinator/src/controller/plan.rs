//! What the controller should write, as a pure function of the cluster snapshot (the
//! model is Kafka's `Election.scala` and the partition/replica state machines). Every
//! rule here is table-tested without ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};

use tributary_common::ids::BrokerId;
use tributary_common::snapshot::ClusterSnapshot;
use tributary_common::znode::{PartitionState, NO_LEADER};

/// One controller write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// First state of a new partition (NewPartition → OnlinePartition).
    CreateState {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The state to write.
        state: PartitionState,
    },
    /// A leader or ISR change, conditional on the state's zkVersion.
    UpdateState {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The new state.
        state: PartitionState,
        /// zkVersion it replaces.
        expected_version: i32,
    },
    /// Remove a topic marked in `/admin/delete_topics` (assignment, states, config, mark).
    DeleteTopic {
        /// Topic.
        topic: String,
    },
    /// A deletion mark for a topic that does not exist.
    DropDeletionMark {
        /// Topic.
        topic: String,
    },
}

/// Plans every write needed to bring the snapshot to a consistent state, as controller
/// `controller_epoch`. `unclean_default` is the cluster's `unclean.leader.election.enable`;
/// a topic's own setting wins.
pub fn plan(snapshot: &ClusterSnapshot, controller_epoch: i32, unclean_default: bool) -> Vec<Action> {
    let live: BTreeSet<BrokerId> = snapshot.brokers.keys().copied().collect();
    let mut actions = Vec::new();
    for topic in &snapshot.pending_deletions {
        if snapshot.topics.contains_key(topic) {
            actions.push(Action::DeleteTopic { topic: topic.clone() });
        } else {
            actions.push(Action::DropDeletionMark { topic: topic.clone() });
        }
    }
    for (topic, t) in &snapshot.topics {
        if snapshot.pending_deletions.contains(topic) {
            continue;
        }
        let unclean = t.config.get("unclean.leader.election.enable").map(|v| v == "true").unwrap_or(unclean_default);
        for (partition, p) in &t.partitions {
            let action = match &p.state {
                None => new_partition(&p.replicas, &live, controller_epoch).map(|state| Action::CreateState {
                    topic: topic.clone(),
                    partition: *partition,
                    state,
                }),
                Some((current, version)) => online_partition(&p.replicas, current, &live, controller_epoch, unclean)
                    .map(|state| Action::UpdateState {
                        topic: topic.clone(),
                        partition: *partition,
                        state,
                        expected_version: *version,
                    }),
            };
            actions.extend(action);
        }
    }
    actions
}

/// Preferred-replica election: the first assigned replica leads again, if it is live, in
/// the ISR and not already leading. The ISR is unchanged; the leader epoch goes up.
pub fn preferred_leader(
    replicas: &[BrokerId],
    current: &PartitionState,
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> Option<PartitionState> {
    let preferred = *replicas.first()?;
    if current.leader == preferred || !live.contains(&preferred) || !current.isr.contains(&preferred) {
        return None;
    }
    Some(PartitionState::new(preferred, current.leader_epoch + 1, controller_epoch, current.isr.clone()))
}

/// Preferred-replica elections: for the partitions named in `wanted` (all when `None`).
pub fn preferred_elections(
    snapshot: &ClusterSnapshot,
    controller_epoch: i32,
    wanted: Option<&BTreeSet<(String, i32)>>,
) -> Vec<Action> {
    let live: BTreeSet<BrokerId> = snapshot.brokers.keys().copied().collect();
    let mut actions = Vec::new();
    for (topic, t) in &snapshot.topics {
        if snapshot.pending_deletions.contains(topic) {
            continue;
        }
        for (partition, p) in &t.partitions {
            if wanted.is_some_and(|w| !w.contains(&(topic.clone(), *partition))) {
                continue;
            }
            let Some((current, version)) = &p.state else { continue };
            if let Some(state) = preferred_leader(&p.replicas, current, &live, controller_epoch) {
                actions.push(Action::UpdateState {
                    topic: topic.clone(),
                    partition: *partition,
                    state,
                    expected_version: *version,
                });
            }
        }
    }
    actions
}

/// Kafka's automatic leader rebalance: for each broker, the share of the partitions it
/// prefers to lead that another broker leads; when that share exceeds
/// `imbalance_percentage`, those partitions are moved back (where the preferred replica
/// is live and in sync).
pub fn auto_rebalance(snapshot: &ClusterSnapshot, controller_epoch: i32, imbalance_percentage: u32) -> Vec<Action> {
    let mut preferred: BTreeMap<BrokerId, (usize, BTreeSet<(String, i32)>)> = BTreeMap::new();
    for (topic, t) in &snapshot.topics {
        for (partition, p) in &t.partitions {
            let (Some(first), Some((state, _))) = (p.replicas.first(), &p.state) else { continue };
            let entry = preferred.entry(*first).or_default();
            entry.0 += 1;
            if state.leader != *first {
                entry.1.insert((topic.clone(), *partition));
            }
        }
    }
    let mut wanted = BTreeSet::new();
    for (total, not_led) in preferred.into_values() {
        if total > 0 && not_led.len() * 100 > total * imbalance_percentage as usize {
            wanted.extend(not_led);
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    preferred_elections(snapshot, controller_epoch, Some(&wanted))
}

/// A partition without state: the first live replica leads, all live replicas form the ISR.
/// With no live replica it stays new (no state is written) until one comes up.
pub fn new_partition(
    replicas: &[BrokerId],
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> Option<PartitionState> {
    let isr: Vec<BrokerId> = replicas.iter().copied().filter(|r| live.contains(r)).collect();
    let leader = *isr.first()?;
    Some(PartitionState::new(leader, 0, controller_epoch, isr))
}

/// A partition with state: re-elect when the leader is gone, and drop dead replicas from
/// the ISR (never the last member). Returns `None` when nothing needs to change.
pub fn online_partition(
    replicas: &[BrokerId],
    current: &PartitionState,
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
    unclean: bool,
) -> Option<PartitionState> {
    let live_isr: Vec<BrokerId> = current.isr.iter().copied().filter(|r| live.contains(r)).collect();
    let leader_alive = current.leader != NO_LEADER && live.contains(&current.leader);
    if leader_alive {
        if live_isr.len() == current.isr.len() || live_isr.is_empty() {
            return None;
        }
        return Some(PartitionState::new(current.leader, current.leader_epoch + 1, controller_epoch, live_isr));
    }
    // Offline partition: the first assigned replica that is live and in the ISR.
    if let Some(leader) = replicas.iter().copied().find(|r| live.contains(r) && current.isr.contains(r)) {
        return Some(PartitionState::new(leader, current.leader_epoch + 1, controller_epoch, live_isr));
    }
    if unclean {
        if let Some(leader) = replicas.iter().copied().find(|r| live.contains(r)) {
            return Some(PartitionState::new(leader, current.leader_epoch + 1, controller_epoch, vec![leader]));
        }
    }
    if current.leader == NO_LEADER {
        return None;
    }
    // No eligible leader: the partition goes offline. The last ISR member is kept, so the
    // replica most likely to hold every committed record can lead again when it returns.
    let kept = if current.isr.contains(&current.leader) {
        vec![current.leader]
    } else {
        current.isr.iter().copied().take(1).collect()
    };
    Some(PartitionState::new(NO_LEADER, current.leader_epoch + 1, controller_epoch, kept))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tributary_common::ids::TopicId;
    use tributary_common::snapshot::{BrokerSnapshot, PartitionSnapshot, TopicSnapshot};
    use tributary_common::znode::{BrokerRegistration, TopicAssignment};

    use super::*;

    fn live(ids: &[BrokerId]) -> BTreeSet<BrokerId> {
        ids.iter().copied().collect()
    }

    fn st(leader: BrokerId, epoch: i32, isr: &[BrokerId]) -> PartitionState {
        PartitionState::new(leader, epoch, 1, isr.to_vec())
    }

    #[test]
    fn new_partitions_elect_the_first_live_replica() {
        let cases: &[(&[BrokerId], &[BrokerId], Option<PartitionState>)] = &[
            (&[1, 2, 3], &[1, 2, 3], Some(st(1, 0, &[1, 2, 3]))),
            (&[1, 2, 3], &[2, 3], Some(st(2, 0, &[2, 3]))),
            (&[3, 1], &[1, 3], Some(st(3, 0, &[3, 1]))),
            (&[1, 2], &[], None),
        ];
        for (replicas, up, expected) in cases {
            assert_eq!(new_partition(replicas, &live(up), 1), *expected, "replicas {replicas:?} live {up:?}");
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn offline_and_isr_rules_follow_kafka() {
        // (replicas, state, live, unclean) -> expected
        let cases: &[(&[BrokerId], PartitionState, &[BrokerId], bool, Option<PartitionState>)] = &[
            // Healthy: nothing to do.
            (&[1, 2, 3], st(1, 4, &[1, 2, 3]), &[1, 2, 3], false, None),
            // A follower dies: removed from the ISR, epoch bumped.
            (&[1, 2, 3], st(1, 4, &[1, 2, 3]), &[1, 2], false, Some(st(1, 5, &[1, 2]))),
            // The leader dies: the first live ISR replica in assignment order takes over.
            (&[1, 2, 3], st(1, 4, &[1, 3, 2]), &[2, 3], false, Some(st(2, 5, &[3, 2]))),
            // A live replica outside the ISR is not eligible (clean election).
            (&[1, 2], st(1, 4, &[1]), &[2], false, Some(st(-1, 5, &[1]))),
            // ... unless unclean election is enabled.
            (&[1, 2], st(1, 4, &[1]), &[2], true, Some(st(2, 5, &[2]))),
            // Offline and still nobody eligible: no change.
            (&[1, 2], st(-1, 5, &[1]), &[2], false, None),
            // The last ISR member returns: it leads again.
            (&[1, 2], st(-1, 5, &[1]), &[1, 2], false, Some(st(1, 6, &[1]))),
            // A single-replica partition whose broker died keeps it as the last ISR member.
            (&[7], st(7, 0, &[7]), &[], false, Some(st(-1, 1, &[7]))),
        ];
        for (replicas, state, up, unclean, expected) in cases {
            assert_eq!(
                online_partition(replicas, state, &live(up), 1, *unclean),
                *expected,
                "replicas {replicas:?} state {state:?} live {up:?} unclean {unclean}"
            );
        }
    }

    fn snapshot() -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        for id in [1, 2] {
            s.brokers.insert(id, BrokerSnapshot { registration: BrokerRegistration::new(&[], None, 0), epoch: 1 });
        }
        let replicas = BTreeMap::from([(0, vec![1, 2]), (1, vec![2, 1])]);
        let mut partitions = BTreeMap::new();
        partitions.insert(0, PartitionSnapshot { replicas: vec![1, 2], state: None });
        partitions.insert(1, PartitionSnapshot { replicas: vec![2, 1], state: Some((st(2, 0, &[2, 1]), 0)) });
        s.topics.insert(
            "t".into(),
            TopicSnapshot {
                assignment: TopicAssignment::new(Some(TopicId::random()), &replicas),
                assignment_version: 0,
                partitions,
                config: BTreeMap::new(),
            },
        );
        s
    }

    #[test]
    fn a_snapshot_plans_states_for_new_partitions_only() {
        assert_eq!(
            plan(&snapshot(), 3, false),
            vec![Action::CreateState {
                topic: "t".into(),
                partition: 0,
                state: PartitionState::new(1, 0, 3, vec![1, 2])
            }]
        );
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn preferred_replicas_lead_again_only_when_live_and_in_sync() {
        // (replicas, state, live) -> expected
        let cases: &[(&[BrokerId], PartitionState, &[BrokerId], Option<PartitionState>)] = &[
            (&[1, 2, 3], st(2, 4, &[2, 3, 1]), &[1, 2, 3], Some(st(1, 5, &[2, 3, 1]))),
            // Already leading.
            (&[1, 2, 3], st(1, 4, &[1, 2, 3]), &[1, 2, 3], None),
            // Not in the ISR yet (still catching up).
            (&[1, 2, 3], st(2, 4, &[2, 3]), &[1, 2, 3], None),
            // Not live.
            (&[1, 2, 3], st(2, 4, &[2, 3, 1]), &[2, 3], None),
        ];
        for (replicas, state, up, expected) in cases {
            assert_eq!(preferred_leader(replicas, state, &live(up), 1), *expected, "{replicas:?} {state:?} {up:?}");
        }
    }

    #[test]
    fn auto_rebalance_moves_leadership_back_past_the_imbalance_threshold() {
        let mut s = snapshot();
        // Partition 1 prefers broker 2 but broker 1 leads it: broker 2's imbalance is 100 %.
        let t = s.topics.get_mut("t").unwrap();
        t.partitions.get_mut(&1).unwrap().state = Some((st(1, 3, &[1, 2]), 7));
        let expected = vec![Action::UpdateState {
            topic: "t".into(),
            partition: 1,
            state: PartitionState::new(2, 4, 3, vec![1, 2]),
            expected_version: 7,
        }];
        assert_eq!(auto_rebalance(&s, 3, 10), expected);
        // Nothing to do when leaders are the preferred ones.
        let t = s.topics.get_mut("t").unwrap();
        t.partitions.get_mut(&1).unwrap().state = Some((st(2, 3, &[2, 1]), 7));
        assert!(auto_rebalance(&s, 3, 10).is_empty());
    }

    #[test]
    fn deletion_marks_delete_topics_or_are_dropped() {
        let mut s = snapshot();
        s.pending_deletions.insert("t".into());
        s.pending_deletions.insert("ghost".into());
        assert_eq!(
            plan(&s, 3, false),
            vec![Action::DropDeletionMark { topic: "ghost".into() }, Action::DeleteTopic { topic: "t".into() }]
        );
    }

    #[test]
    fn a_topic_can_enable_unclean_election_for_itself() {
        let mut s = snapshot();
        s.brokers.remove(&2);
        let t = s.topics.get_mut("t").unwrap();
        t.partitions.get_mut(&1).unwrap().state = Some((st(2, 0, &[2]), 3));
        t.config.insert("unclean.leader.election.enable".into(), "true".into());
        let actions = plan(&s, 3, false);
        assert!(
            actions.contains(&Action::UpdateState {
                topic: "t".into(),
                partition: 1,
                state: PartitionState::new(1, 1, 3, vec![1]),
                expected_version: 3
            }),
            "{actions:?}"
        );
    }
}
