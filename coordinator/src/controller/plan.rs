//! What the controller should write, as a pure function of the cluster snapshot (the
//! model is Kafka's `Election.scala` and the partition/replica state machines). Every
//! rule here is table-tested without ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};

use tributary_common::ids::BrokerId;
use tributary_common::snapshot::ClusterSnapshot;
use tributary_common::znode::{PartitionState, ReassignedPartition, TopicAssignment, NO_LEADER};

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
    /// A topic's assignment rewritten (a reassignment starts, completes or is cancelled),
    /// conditional on the topic znode's zkVersion.
    WriteAssignment {
        /// Topic.
        topic: String,
        /// The new payload.
        assignment: TopicAssignment,
        /// zkVersion it replaces.
        expected_version: i32,
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

/// Unclean elections asked for by ElectLeaders(UNCLEAN): for the partitions named in
/// `wanted` that have no live leader, any live replica leads, in the ISR or not.
pub fn unclean_elections(
    snapshot: &ClusterSnapshot,
    controller_epoch: i32,
    wanted: &BTreeSet<(String, i32)>,
) -> Vec<Action> {
    let live: BTreeSet<BrokerId> = snapshot.brokers.keys().copied().collect();
    let mut actions = Vec::new();
    for (topic, partition) in wanted {
        if snapshot.pending_deletions.contains(topic) {
            continue;
        }
        let Some(p) = snapshot.topics.get(topic).and_then(|t| t.partitions.get(partition)) else { continue };
        let Some((current, version)) = &p.state else { continue };
        if live.contains(&current.leader) {
            continue;
        }
        if let Some(state) = online_partition(&p.replicas, current, &live, controller_epoch, true) {
            actions.push(Action::UpdateState {
                topic: topic.clone(),
                partition: *partition,
                state,
                expected_version: *version,
            });
        }
    }
    actions
}

/// A partition's replicas while a reassignment runs (KIP-455): the full set (target
/// replicas first, then the original ones), and which are being added and removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moving {
    /// Every replica: the target ones, then the original ones being removed.
    pub replicas: Vec<BrokerId>,
    /// Target replicas not in the original set.
    pub adding: Vec<BrokerId>,
    /// Original replicas not in the target set.
    pub removing: Vec<BrokerId>,
}

/// Starts (or redirects) a reassignment of a partition from its `original` replicas to
/// `target`; `None` when the target is the original set (nothing to move).
pub fn start_move(original: &[BrokerId], target: &[BrokerId]) -> Option<Moving> {
    let adding: Vec<BrokerId> = target.iter().filter(|r| !original.contains(r)).copied().collect();
    let removing: Vec<BrokerId> = original.iter().filter(|r| !target.contains(r)).copied().collect();
    if adding.is_empty() && removing.is_empty() && original == target {
        return None;
    }
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    Some(Moving { replicas, adding, removing })
}

/// Where a reassignment stands: the original replicas (what a cancel returns to) and the
/// target, from the topic znode's `adding_replicas` / `removing_replicas`.
pub fn move_sides(replicas: &[BrokerId], adding: &[BrokerId], removing: &[BrokerId]) -> (Vec<BrokerId>, Vec<BrokerId>) {
    let original: Vec<BrokerId> = replicas.iter().filter(|r| !adding.contains(r)).copied().collect();
    let target: Vec<BrokerId> = replicas.iter().filter(|r| !removing.contains(r)).copied().collect();
    (original, target)
}

/// The state a partition moves to when its replicas become `target`: the ISR without the
/// replicas leaving, and a leader from the target (the current one if it stays, else the
/// first live in-sync target replica), with a new leader epoch. `None` when the state
/// needs no change; `Some(Err(()))` when no target replica is live and in sync yet.
pub fn state_for_target(
    current: &PartitionState,
    target: &[BrokerId],
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> Option<Result<PartitionState, ()>> {
    let isr: Vec<BrokerId> = current.isr.iter().filter(|r| target.contains(r)).copied().collect();
    let leader_stays = target.contains(&current.leader) && live.contains(&current.leader);
    if leader_stays && isr == current.isr {
        return None;
    }
    let leader = if leader_stays {
        current.leader
    } else {
        match target.iter().find(|r| live.contains(r) && isr.contains(r)) {
            Some(r) => *r,
            None => return Some(Err(())),
        }
    };
    Some(Ok(PartitionState::new(leader, current.leader_epoch + 1, controller_epoch, isr)))
}

/// The actions for reassignment requests (`/admin/reassign_partitions`): for each topic, one
/// assignment write starting (or redirecting, or cancelling) its partitions' moves. Requests
/// naming unknown partitions, dead or repeated brokers are left out (the broker that took
/// the API call refused them already) and returned with the reason, for the log.
pub fn reassignment_requests(
    snapshot: &ClusterSnapshot,
    controller_epoch: i32,
    requests: &[ReassignedPartition],
) -> (Vec<Action>, Vec<(String, i32, String)>) {
    let live: BTreeSet<BrokerId> = snapshot.brokers.keys().copied().collect();
    let mut refused = Vec::new();
    let mut states = Vec::new();
    let mut by_topic: BTreeMap<String, TopicAssignment> = BTreeMap::new();
    for r in requests {
        let Some(t) = snapshot.topics.get(&r.topic).filter(|_| !snapshot.pending_deletions.contains(&r.topic)) else {
            refused.push((r.topic.clone(), r.partition, "no such topic".to_string()));
            continue;
        };
        let key = r.partition.to_string();
        let assignment = by_topic.entry(r.topic.clone()).or_insert_with(|| t.assignment.clone());
        let Some(replicas) = assignment.partitions.get(&key).cloned() else {
            refused.push((r.topic.clone(), r.partition, "no such partition".to_string()));
            continue;
        };
        let adding = assignment.adding_replicas.get(&key).cloned().unwrap_or_default();
        let removing = assignment.removing_replicas.get(&key).cloned().unwrap_or_default();
        let (original, _) = move_sides(&replicas, &adding, &removing);
        let target = if r.replicas.is_empty() { original.clone() } else { r.replicas.clone() };
        let distinct: BTreeSet<_> = target.iter().collect();
        if distinct.len() != target.len() {
            refused.push((r.topic.clone(), r.partition, format!("replicas {target:?} repeat a broker")));
            continue;
        }
        if let Some(dead) = target.iter().find(|b| !live.contains(b) && !original.contains(b)) {
            refused.push((r.topic.clone(), r.partition, format!("broker {dead} is not live")));
            continue;
        }
        match start_move(&original, &target) {
            Some(m) if !m.adding.is_empty() || !m.removing.is_empty() => {
                assignment.partitions.insert(key.clone(), m.replicas);
                assignment.adding_replicas.insert(key.clone(), m.adding);
                assignment.removing_replicas.insert(key.clone(), m.removing);
            }
            // Back to the original set (a cancel, or the same replicas in another order):
            // replicas that were being added leave the ISR (and the lead) at once.
            _ => {
                let state = t.partitions.get(&r.partition).and_then(|p| p.state.clone());
                if let Some((state, version)) = state {
                    if let Some(Ok(next)) = state_for_target(&state, &target, &live, controller_epoch) {
                        states.push(Action::UpdateState {
                            topic: r.topic.clone(),
                            partition: r.partition,
                            state: next,
                            expected_version: version,
                        });
                    }
                }
                assignment.partitions.insert(key.clone(), target);
                assignment.adding_replicas.remove(&key);
                assignment.removing_replicas.remove(&key);
            }
        }
    }
    // State changes first: a replica must not stay in an ISR once it is not assigned.
    let mut actions = states;
    actions.extend(
        by_topic.into_iter().filter(|(topic, a)| snapshot.topics.get(topic).is_some_and(|t| &t.assignment != a)).map(
            |(topic, assignment)| {
                let expected_version = snapshot.topics[&topic].assignment_version;
                Action::WriteAssignment { topic, assignment, expected_version }
            },
        ),
    );
    (actions, refused)
}

/// Moves reassignments forward (Kafka's `onPartitionReassignment`): once every target
/// replica is in the ISR, the leader moves into the target if it is leaving and the leaving
/// replicas drop out of the ISR (a state write); once the state is final, the assignment
/// becomes the target (an assignment write), and the brokers left out delete their copies.
/// A partition whose move is cancelled back to replicas no longer in sync settles the same
/// way as soon as its state allows.
pub fn reassignment_progress(snapshot: &ClusterSnapshot, controller_epoch: i32) -> Vec<Action> {
    let live: BTreeSet<BrokerId> = snapshot.brokers.keys().copied().collect();
    let mut actions = Vec::new();
    for (topic, t) in &snapshot.topics {
        if snapshot.pending_deletions.contains(topic)
            || (t.assignment.adding_replicas.is_empty() && t.assignment.removing_replicas.is_empty())
        {
            continue;
        }
        let mut assignment = t.assignment.clone();
        for (key, replicas) in &t.assignment.partitions {
            let adding = t.assignment.adding_replicas.get(key).cloned().unwrap_or_default();
            let removing = t.assignment.removing_replicas.get(key).cloned().unwrap_or_default();
            if adding.is_empty() && removing.is_empty() {
                continue;
            }
            let Ok(partition) = key.parse::<i32>() else { continue };
            let Some(Some((state, version))) = t.partitions.get(&partition).map(|p| p.state.clone()) else { continue };
            let (_, target) = move_sides(replicas, &adding, &removing);
            if !target.iter().all(|r| state.isr.contains(r)) {
                continue; // still catching up
            }
            match state_for_target(&state, &target, &live, controller_epoch) {
                Some(Ok(next)) => actions.push(Action::UpdateState {
                    topic: topic.clone(),
                    partition,
                    state: next,
                    expected_version: version,
                }),
                Some(Err(())) => {}
                None => {
                    assignment.partitions.insert(key.clone(), target);
                    assignment.adding_replicas.remove(key);
                    assignment.removing_replicas.remove(key);
                }
            }
        }
        if assignment != t.assignment {
            actions.push(Action::WriteAssignment {
                topic: topic.clone(),
                assignment,
                expected_version: t.assignment_version,
            });
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

    /// Topic "m", one partition on `replicas` with `adding` / `removing` and state `state`,
    /// brokers 1-3 live.
    fn moving(
        replicas: &[BrokerId],
        adding: &[BrokerId],
        removing: &[BrokerId],
        state: PartitionState,
    ) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        for id in [1, 2, 3] {
            s.brokers.insert(id, BrokerSnapshot { registration: BrokerRegistration::new(&[], None, 0), epoch: 1 });
        }
        let mut assignment = TopicAssignment::new(None, &BTreeMap::from([(0, replicas.to_vec())]));
        if !adding.is_empty() || !removing.is_empty() {
            assignment.adding_replicas.insert("0".into(), adding.to_vec());
            assignment.removing_replicas.insert("0".into(), removing.to_vec());
        }
        let partitions =
            BTreeMap::from([(0, PartitionSnapshot { replicas: replicas.to_vec(), state: Some((state, 7)) })]);
        s.topics.insert(
            "m".into(),
            TopicSnapshot { assignment, assignment_version: 4, partitions, config: BTreeMap::new() },
        );
        s
    }

    fn request(replicas: &[BrokerId]) -> ReassignedPartition {
        ReassignedPartition { topic: "m".into(), partition: 0, replicas: replicas.to_vec(), log_dirs: vec![] }
    }

    #[test]
    fn a_move_adds_the_target_then_removes_the_rest() {
        assert_eq!(
            start_move(&[1, 2], &[2, 3]),
            Some(Moving { replicas: vec![2, 3, 1], adding: vec![3], removing: vec![1] })
        );
        assert_eq!(start_move(&[1, 2], &[1, 2]), None);
        assert_eq!(move_sides(&[2, 3, 1], &[3], &[1]), (vec![2, 1], vec![2, 3]));

        // Requested: {1,2} -> {2,3} writes the union with adding/removing.
        let s = moving(&[1, 2], &[], &[], st(1, 3, &[1, 2]));
        let (actions, refused) = reassignment_requests(&s, 9, &[request(&[2, 3])]);
        assert!(refused.is_empty());
        let Action::WriteAssignment { assignment, expected_version: 4, .. } = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(assignment.partitions["0"], vec![2, 3, 1]);
        assert_eq!(
            (assignment.adding_replicas["0"].clone(), assignment.removing_replicas["0"].clone()),
            (vec![3], vec![1])
        );
        // Bad requests are left out with a reason.
        let (actions, refused) = reassignment_requests(&s, 9, &[request(&[2, 9]), request(&[2, 2])]);
        assert!(actions.is_empty());
        assert_eq!(refused.len(), 2, "{refused:?}");

        // Catching up: nothing. Caught up: the leader leaves for the target, then the
        // assignment becomes the target.
        let catching_up = moving(&[2, 3, 1], &[3], &[1], st(1, 3, &[1, 2]));
        assert_eq!(reassignment_progress(&catching_up, 9), vec![]);
        let caught_up = moving(&[2, 3, 1], &[3], &[1], st(1, 3, &[1, 2, 3]));
        assert_eq!(
            reassignment_progress(&caught_up, 9),
            vec![Action::UpdateState {
                topic: "m".into(),
                partition: 0,
                state: PartitionState::new(2, 4, 9, vec![2, 3]),
                expected_version: 7
            }]
        );
        let settled = moving(&[2, 3, 1], &[3], &[1], PartitionState::new(2, 4, 9, vec![2, 3]));
        let actions = reassignment_progress(&settled, 9);
        let [Action::WriteAssignment { assignment, .. }] = actions.as_slice() else { panic!("{actions:?}") };
        assert_eq!(assignment.partitions["0"], vec![2, 3]);
        assert!(assignment.adding_replicas.is_empty() && assignment.removing_replicas.is_empty());

        // Cancel (empty replicas): back to {1,2}, broker 3 out of the ISR at once. As in
        // Kafka, the original replicas keep their order within the full set (target first).
        let (actions, _) = reassignment_requests(&caught_up, 9, &[request(&[])]);
        assert_eq!(
            actions[0],
            Action::UpdateState {
                topic: "m".into(),
                partition: 0,
                state: PartitionState::new(1, 4, 9, vec![1, 2]),
                expected_version: 7
            }
        );
        let Action::WriteAssignment { assignment, .. } = &actions[1] else { panic!("{actions:?}") };
        assert_eq!(assignment.partitions["0"], vec![2, 1]);
        assert!(assignment.adding_replicas.is_empty());
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
