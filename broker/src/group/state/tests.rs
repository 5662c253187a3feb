use super::*;

const DELAY: i64 = 3000;

fn cfg() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: DELAY, ..GroupConfig::default() }
}

fn req(member_id: &str, new_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 60_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("meta-{p}-{new_id}")))).collect(),
        require_known_member_id: true,
        new_member_id: new_id.into(),
    }
}

/// Joins with KIP-394's two steps; returns the parked member id.
fn join_new(g: &mut Group, id: &str, now: i64, fx: &mut Effects) -> String {
    match g.join(req("", id, &["range"]), now, &cfg(), fx) {
        Outcome::Reply(r) => assert_eq!((r.error, r.member_id.as_str()), (code(ResponseError::MemberIdRequired), id)),
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    }
    match g.join(req(id, "unused", &["range"]), now, &cfg(), fx) {
        Outcome::Parked(m) => m,
        other => panic!("expected a parked join, got {other:?}"),
    }
}

fn joined(fx: &Effects, id: &str) -> JoinResponse {
    fx.joins.iter().find(|(m, _)| m == id).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!("{id} got no join answer"))
}

/// Ticks through the initial delay (extended once when several members joined in it) and
/// returns the time the join completed.
fn complete_initial_join(g: &mut Group, fx: &mut Effects) -> i64 {
    g.tick(DELAY, &cfg(), fx);
    if g.state == GroupState::PreparingRebalance {
        g.tick(2 * DELAY, &cfg(), fx);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        return 2 * DELAY;
    }
    DELAY
}

/// A Stable group of `ids` (the first is leader) at generation 1; returns the time.
fn stable(g: &mut Group, ids: &[&str]) -> i64 {
    let mut fx = Effects::default();
    for id in ids {
        join_new(g, id, 0, &mut fx);
    }
    let now = complete_initial_join(g, &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let assignments = ids.iter().map(|id| (id.to_string(), Bytes::from(format!("asg-{id}")))).collect();
    g.sync(MemberRef::new(ids[0], None, 1), None, None, assignments, now, &mut fx);
    assert_eq!(g.state, GroupState::Stable);
    now
}

#[test]
fn a_single_consumer_is_assigned_after_the_initial_delay() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    let id = join_new(&mut g, "c-1", 0, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    g.tick(DELAY - 1, &cfg(), &mut fx);
    assert!(fx.joins.is_empty(), "answered before group.initial.rebalance.delay.ms");
    g.tick(DELAY, &cfg(), &mut fx);
    let r = joined(&fx, &id);
    assert_eq!((r.error, r.generation, r.leader.as_str()), (0, 1, "c-1"));
    assert_eq!(r.protocol.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    assert_eq!(g.state, GroupState::CompletingRebalance);

    let mut fx = Effects::default();
    let out = g.sync(
        MemberRef::new("c-1", None, 1),
        Some("consumer"),
        Some("range"),
        vec![("c-1".into(), Bytes::from_static(b"a"))],
        DELAY,
        &mut fx,
    );
    assert_eq!(out, Outcome::Parked("c-1".into()));
    assert_eq!(
        fx.syncs,
        vec![(
            "c-1".to_string(),
            SyncResponse {
                error: 0,
                protocol_type: Some("consumer".into()),
                protocol: Some("range".into()),
                assignment: Bytes::from_static(b"a")
            }
        )]
    );
    assert!(fx.store_group);
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn members_joining_during_the_delay_share_one_generation_and_only_the_leader_sees_members() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    join_new(&mut g, "c-1", 0, &mut fx);
    join_new(&mut g, "c-2", 1000, &mut fx);
    join_new(&mut g, "c-3", 2000, &mut fx);
    // New members arrived during the first delay, so it is extended once more.
    g.tick(DELAY, &cfg(), &mut fx);
    assert!(fx.joins.is_empty());
    g.tick(2 * DELAY, &cfg(), &mut fx);
    assert_eq!(fx.joins.len(), 3);
    for id in ["c-1", "c-2", "c-3"] {
        let r = joined(&fx, id);
        assert_eq!((r.generation, r.leader.as_str()), (1, "c-1"));
        assert_eq!(r.members.len(), if id == "c-1" { 3 } else { 0 }, "{id}");
    }
}

#[test]
fn a_follower_sync_waits_for_the_leader_and_gets_its_own_assignment() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    join_new(&mut g, "a", 0, &mut fx);
    join_new(&mut g, "b", 0, &mut fx);
    let now = complete_initial_join(&mut g, &mut fx);
    let mut fx = Effects::default();
    assert_eq!(g.sync(MemberRef::new("b", None, 1), None, None, vec![], now, &mut fx), Outcome::Parked("b".into()));
    assert!(fx.syncs.is_empty());
    let assignments = vec![("a".into(), Bytes::from_static(b"A")), ("b".into(), Bytes::from_static(b"B"))];
    g.sync(MemberRef::new("a", None, 1), None, None, assignments, now, &mut fx);
    let got: BTreeMap<_, _> = fx.syncs.iter().map(|(m, r)| (m.clone(), r.assignment.clone())).collect();
    assert_eq!(got, BTreeMap::from([("a".into(), Bytes::from_static(b"A")), ("b".into(), Bytes::from_static(b"B"))]));
}

#[test]
fn heartbeat_answers_follow_kafka() {
    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a", "b"]);
    let cases: &[(&str, Option<&str>, i32, ResponseError)] = &[
        ("nobody", None, 1, ResponseError::UnknownMemberId),
        ("a", None, 0, ResponseError::IllegalGeneration),
        ("a", None, 2, ResponseError::IllegalGeneration),
    ];
    for (member, instance, generation, expected) in cases {
        assert_eq!(
            g.heartbeat(MemberRef::new(member, *instance, *generation), now),
            expected.code(),
            "{member} gen {generation}"
        );
    }
    assert_eq!(g.heartbeat(MemberRef::new("a", None, 1), now), 0);
    // A new member makes the group rebalance; existing members learn it from heartbeats.
    let mut fx = Effects::default();
    join_new(&mut g, "c", now, &mut fx);
    assert_eq!(g.heartbeat(MemberRef::new("a", None, 1), now), ResponseError::RebalanceInProgress.code());
    let mut fx = Effects::default();
    assert_eq!(
        g.sync(MemberRef::new("a", None, 1), None, None, vec![], now, &mut fx),
        Outcome::Reply(SyncResponse::error(ResponseError::RebalanceInProgress.code()))
    );
}

#[test]
fn an_expired_session_moves_partitions_to_the_survivors() {
    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a", "b"]);
    let mut fx = Effects::default();
    // b keeps heartbeating; a goes silent.
    g.heartbeat(MemberRef::new("b", None, 1), now + 9_000);
    g.tick(now + 10_000, &cfg(), &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(fx.removed.len(), 1);
    assert_eq!(fx.removed[0].0, "a");
    assert_eq!(g.heartbeat(MemberRef::new("b", None, 1), now + 10_001), ResponseError::RebalanceInProgress.code());
    // b rejoins: it is the only member, so the join completes at once, b leads generation 2.
    let out = g.join(req("b", "unused", &["range"]), now + 10_002, &cfg(), &mut fx);
    assert_eq!(out, Outcome::Parked("b".into()));
    let r = joined(&fx, "b");
    assert_eq!((r.generation, r.leader.as_str(), r.members.len()), (2, "b", 1));
}

#[test]
fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a", "b"]);
    let mut fx = Effects::default();
    g.join(req("a", "unused", &["range"]), now, &cfg(), &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    g.heartbeat(MemberRef::new("b", None, 1), now + 59_000);
    g.tick(now + 59_999, &cfg(), &mut fx);
    assert!(fx.joins.is_empty());
    g.tick(now + 60_000, &cfg(), &mut fx);
    assert_eq!(joined(&fx, "a").generation, 2);
    assert!(!g.members.contains_key("b"));
}

#[test]
fn leaving_triggers_a_rebalance_and_the_last_leave_empties_the_group() {
    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a", "b"]);
    let mut fx = Effects::default();
    assert_eq!(g.leave("b", None, now, &cfg(), &mut fx), 0);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.leave("b", None, now, &cfg(), &mut fx), ResponseError::UnknownMemberId.code());
    assert_eq!(g.leave("a", None, now, &cfg(), &mut fx), 0);
    assert_eq!(g.state, GroupState::Empty);
    assert!(fx.store_group);
    assert_eq!(g.generation, 2);
}

#[test]
fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    let mut r = req("", "s-1", &["range"]);
    r.instance_id = Some("host-a".into());
    assert_eq!(
        g.join(r.clone(), 0, &cfg(), &mut fx),
        Outcome::Parked("s-1".into()),
        "static members skip MEMBER_ID_REQUIRED"
    );
    g.tick(DELAY, &cfg(), &mut fx);
    g.sync(
        MemberRef::new("s-1", Some("host-a"), 1),
        None,
        None,
        vec![("s-1".into(), Bytes::from_static(b"P0"))],
        DELAY,
        &mut fx,
    );
    assert_eq!(g.state, GroupState::Stable);

    let mut fx = Effects::default();
    r.new_member_id = "s-2".into();
    let Outcome::Reply(answer) = g.join(r, DELAY + 1, &cfg(), &mut fx) else {
        panic!("static rejoin must answer at once")
    };
    assert_eq!((answer.error, answer.member_id.as_str(), answer.generation), (0, "s-2", 1));
    assert!(answer.skip_assignment);
    assert_eq!(g.state, GroupState::Stable);
    assert!(fx.store_group);
    let Outcome::Reply(s) = g.sync(MemberRef::new("s-2", Some("host-a"), 1), None, None, vec![], DELAY + 2, &mut fx)
    else {
        panic!()
    };
    assert_eq!(s.assignment, Bytes::from_static(b"P0"));
    // The old instance is fenced.
    assert_eq!(
        g.heartbeat(MemberRef::new("s-1", Some("host-a"), 1), DELAY + 3),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(g.leave("s-1", Some("host-a"), DELAY + 3, &cfg(), &mut fx), ResponseError::FencedInstanceId.code());
    // An admin can remove it by instance id alone (LeaveGroup v3+).
    assert_eq!(g.leave("", Some("host-a"), DELAY + 4, &cfg(), &mut fx), 0);
    assert_eq!(g.state, GroupState::Empty, "its only member left");
    assert!(g.static_members.is_empty());
}

#[test]
fn join_is_refused_for_bad_timeouts_and_protocols() {
    let mut g = Group::new("g", 0);
    stable(&mut g, &["a"]);
    let mut fx = Effects::default();
    let cases: Vec<(JoinRequest, ResponseError)> = vec![
        (JoinRequest { session_timeout_ms: 5999, ..req("", "x", &["range"]) }, ResponseError::InvalidSessionTimeout),
        (
            JoinRequest { session_timeout_ms: 1_800_001, ..req("", "x", &["range"]) },
            ResponseError::InvalidSessionTimeout,
        ),
        (req("", "x", &["roundrobin"]), ResponseError::InconsistentGroupProtocol),
        (
            JoinRequest { protocol_type: "connect".into(), ..req("", "x", &["range"]) },
            ResponseError::InconsistentGroupProtocol,
        ),
        (req("", "x", &[]), ResponseError::InconsistentGroupProtocol),
        (req("ghost", "x", &["range"]), ResponseError::UnknownMemberId),
    ];
    for (r, expected) in cases {
        let label = format!("{:?}", (&r.member_id, r.session_timeout_ms, &r.protocol_type, r.protocols.len()));
        match g.join(r, 10, &cfg(), &mut fx) {
            Outcome::Reply(answer) => assert_eq!(answer.error, expected.code(), "{label}"),
            Outcome::Parked(_) => panic!("{label} was parked"),
        }
    }
    assert_eq!(g.state, GroupState::Stable, "refused joins do not disturb the group");
}

#[test]
fn the_protocol_is_the_one_most_members_prefer_among_those_all_support() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    g.join(JoinRequest { require_known_member_id: false, ..req("", "a", &["sticky", "range"]) }, 0, &cfg(), &mut fx);
    g.join(JoinRequest { require_known_member_id: false, ..req("", "b", &["range", "sticky"]) }, 0, &cfg(), &mut fx);
    g.join(
        JoinRequest { require_known_member_id: false, ..req("", "c", &["range", "cooperative-sticky", "sticky"]) },
        0,
        &cfg(),
        &mut fx,
    );
    complete_initial_join(&mut g, &mut fx);
    assert_eq!(g.protocol.as_deref(), Some("range"));
    assert_eq!(
        joined(&fx, "a").members.iter().map(|m| m.metadata.clone()).collect::<Vec<_>>()[0],
        Bytes::from("meta-range-a")
    );
}

#[test]
fn commit_checks_follow_kafka() {
    let mut empty = Group::new("g", 0);
    assert_eq!(empty.check_commit(MemberRef::new("", None, -1), 0), Ok(()), "simple commit to an empty group");
    assert_eq!(
        empty.check_commit(MemberRef::new("x", None, -1), 0),
        Ok(()),
        "generation -1 commits to an empty group, whatever the member id"
    );
    assert_eq!(empty.check_commit(MemberRef::new("x", None, 1), 0), Err(ResponseError::UnknownMemberId.code()));

    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a"]);
    let cases: &[(&str, i32, Result<(), ResponseError>)] = &[
        ("", -1, Err(ResponseError::UnknownMemberId)),
        ("z", 1, Err(ResponseError::UnknownMemberId)),
        ("a", 0, Err(ResponseError::IllegalGeneration)),
        ("a", 1, Ok(())),
    ];
    for (member, generation, expected) in cases {
        assert_eq!(
            g.check_commit(MemberRef::new(member, None, *generation), now),
            expected.map_err(|e| e.code()),
            "{member}/{generation}"
        );
    }
    // Mid-rebalance, waiting for SyncGroup: REBALANCE_IN_PROGRESS.
    let mut fx = Effects::default();
    g.join(req("a", "unused", &["range"]), now, &cfg(), &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.check_commit(MemberRef::new("a", None, 2), now), Err(ResponseError::RebalanceInProgress.code()));
}

#[test]
fn members_that_never_sync_are_removed_at_the_rebalance_timeout() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    join_new(&mut g, "a", 0, &mut fx);
    join_new(&mut g, "b", 0, &mut fx);
    let now = complete_initial_join(&mut g, &mut fx);
    g.sync(MemberRef::new("a", None, 1), None, None, vec![], now, &mut fx);
    for t in (now..now + 60_000).step_by(5000) {
        g.heartbeat(MemberRef::new("a", None, 1), t);
        g.heartbeat(MemberRef::new("b", None, 1), t);
    }
    let mut fx = Effects::default();
    g.tick(now + 60_000, &cfg(), &mut fx);
    assert!(fx.removed.iter().any(|(m, _)| m == "b"), "{:?}", fx.removed);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn offsets_expire_after_the_group_has_been_empty_for_the_retention() {
    let mut g = Group::new("g", 0);
    g.protocol_type = Some("consumer".into());
    g.state_timestamp = 1000;
    g.offsets.insert(
        ("t".into(), 0),
        OffsetValue { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp: 500 },
    );
    assert!(g.expired_offsets(1999, 1000).is_empty());
    assert_eq!(g.expired_offsets(2000, 1000), vec![("t".to_string(), 0)]);
    let mut simple = Group::new("s", 5000);
    simple.offsets.insert(
        ("t".into(), 0),
        OffsetValue { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp: 500 },
    );
    assert_eq!(simple.expired_offsets(1500, 1000).len(), 1, "commit-only groups expire by commit time");
}

#[test]
fn stored_metadata_restores_a_stable_group() {
    let mut g = Group::new("g", 0);
    let now = stable(&mut g, &["a", "b"]);
    let restored = Group::from_stored("g", &g.stored(), now + 1);
    assert_eq!(restored.state, GroupState::Stable);
    assert_eq!(restored.generation, 1);
    assert_eq!(restored.members["b"].assignment, Bytes::from_static(b"asg-b"));
    assert_eq!(restored.leader.as_deref(), Some("a"));
    let empty = Group::from_stored("g", &Group::new("g", 0).stored(), 5);
    assert_eq!(empty.state, GroupState::Empty);
}
