//! The group coordinator driven in-process over a real replica manager: JoinGroup parking
//! and the clock, SyncGroup answered only once the group is stored, and committed offsets
//! entering the cache only once their write holds.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::*;
use crate::replica::{FetchSpec, Reader};
use crate::testkit::{cluster, set_partition, tp, Node};

fn join_request(member_id: &str, new_member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: false,
        new_member_id: new_member_id.into(),
    }
}

/// Broker 1 leading `__consumer_offsets` (one partition) with `isr`, and its coordinator.
async fn coordinator(name: &str, isr: &[i32], initial_delay_ms: i64) -> (Node, Arc<GroupCoordinator>) {
    let node = Node::new(name, 1);
    let mut meta = cluster(2);
    set_partition(&mut meta, CONSUMER_OFFSETS, 0, &[1, 2], 1, 0, isr);
    node.apply(&meta).await;
    let cfg = GroupConfig { initial_rebalance_delay_ms: initial_delay_ms, ..GroupConfig::default() };
    let groups = Arc::new(GroupCoordinator::new(1, cfg, node.replicas.clone()));
    for (p, epoch, local) in groups.on_metadata(&meta) {
        groups.load(p, epoch, &local, 0);
    }
    (node, groups)
}

/// The follower, broker 2, fetching `__consumer_offsets-0` at `offset` (its log end).
async fn follower_fetches(node: &Node, offset: i64) {
    let spec = FetchSpec {
        tp: tp(CONSUMER_OFFSETS, 0),
        fetch_offset: offset,
        current_leader_epoch: -1,
        max_bytes: 1 << 20,
        last_fetched_epoch: -1,
        log_start_offset: -1,
    };
    let r = node.replicas.fetch_messages(Reader::Follower(2), &[spec], 1 << 20, 0, Duration::ZERO).await;
    assert!(r[0].is_ok());
}

/// A one-member group, joined and past its (zero) initial delay.
async fn joined(groups: &Arc<GroupCoordinator>) {
    let g = groups.clone();
    let join = tokio::spawn(async move { g.join("g", join_request("", "m-1"), 0).await });
    tokio::task::yield_now().await;
    groups.tick(0);
    assert_eq!(join.await.unwrap().error, 0);
}

fn log_end(node: &Node) -> i64 {
    node.replicas.get(&tp(CONSUMER_OFFSETS, 0)).unwrap().log().offsets().log_end_offset
}

#[tokio::test(start_paused = true)]
async fn a_join_parks_until_the_initial_delay_passes_on_the_clock() {
    let (_node, groups) = coordinator("join-tick", &[1], 3000).await;
    let g = groups.clone();
    let join = tokio::spawn(async move { g.join("g", join_request("", "m-1"), 0).await });
    tokio::task::yield_now().await;
    assert!(!join.is_finished(), "the first member waits for group.initial.rebalance.delay.ms");
    groups.tick(2999);
    tokio::task::yield_now().await;
    assert!(!join.is_finished(), "not before the delay");
    groups.tick(3000);
    let joined = join.await.unwrap();
    assert_eq!((joined.error, joined.generation, joined.leader.as_str()), (0, 1, "m-1"));
}

#[tokio::test(start_paused = true)]
async fn sync_group_is_answered_only_once_the_group_is_stored_on_the_isr() {
    let (node, groups) = coordinator("sync-durable", &[1, 2], 0).await;
    joined(&groups).await;
    let end_before = log_end(&node);
    let g = groups.clone();
    let sync = tokio::spawn(async move {
        let who = MemberRef::new("m-1", None, 1);
        g.sync("g", who, None, None, vec![("m-1".into(), Bytes::from_static(b"assignment"))], 0).await
    });
    tokio::task::yield_now().await;
    assert!(log_end(&node) > end_before, "the group's metadata was appended");
    assert!(!sync.is_finished(), "answered before the follower had the group's metadata");
    follower_fetches(&node, log_end(&node)).await;
    let synced = sync.await.unwrap();
    assert_eq!((synced.error, &synced.assignment[..]), (0, &b"assignment"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_sync_whose_store_times_out_gets_an_error_to_rejoin() {
    let (_node, groups) = coordinator("sync-timeout", &[1, 2], 0).await;
    joined(&groups).await;
    let who = MemberRef::new("m-1", None, 1);
    // Nobody fetches: the store does not complete within offsets.commit.timeout.ms.
    let synced = groups.sync("g", who, None, None, vec![("m-1".into(), Bytes::from_static(b"a"))], 0).await;
    assert_eq!(synced.error, ResponseError::CoordinatorNotAvailable.code());
}

#[tokio::test(start_paused = true)]
async fn committed_offsets_enter_the_cache_only_once_replicated() {
    let (node, groups) = coordinator("commit-cache", &[1, 2], 0).await;
    let value = OffsetValue { offset: 42, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    let g = groups.clone();
    let commit =
        tokio::spawn(
            async move { g.commit("g", MemberRef::new("", None, -1), vec![(("t".into(), 0), value)], 0).await },
        );
    tokio::task::yield_now().await;
    assert!(!commit.is_finished());
    let cached = groups.fetch_offsets("g", Some(vec![("t".into(), vec![0])])).unwrap();
    assert_eq!(cached[0].1[0].1, None, "OffsetFetch showed a commit that had not completed");
    follower_fetches(&node, log_end(&node)).await;
    assert_eq!(commit.await.unwrap(), Ok(()));
    let cached = groups.fetch_offsets("g", Some(vec![("t".into(), vec![0])])).unwrap();
    assert_eq!(cached[0].1[0].1.as_ref().map(|v| v.offset), Some(42));
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_does_not_complete_is_not_cached_and_says_why() {
    let (_node, groups) = coordinator("commit-timeout", &[1, 2], 0).await;
    let value = OffsetValue { offset: 7, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    let result = groups.commit("g", MemberRef::new("", None, -1), vec![(("t".into(), 0), value)], 0).await;
    assert_eq!(result, Err(ResponseError::CoordinatorNotAvailable.code()));
    assert_eq!(groups.fetch_offsets("g", Some(vec![("t".into(), vec![0])])).unwrap()[0].1[0].1, None);
}
