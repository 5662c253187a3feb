//! The replica manager driven in-process: the one write path and its completion across
//! leadership changes, per-partition wake-ups, fencing, and storage work that leaves the
//! partition map alone.

use std::time::Duration;

use super::durability::Acks;
use super::*;
use crate::testkit::{batch, cluster, set_partition, tp, Node};

const LONG: Duration = Duration::from_secs(30);

fn fetch_spec(topic: &str, offset: i64) -> FetchSpec {
    FetchSpec {
        tp: tp(topic, 0),
        fetch_offset: offset,
        current_leader_epoch: -1,
        max_bytes: 1 << 20,
        last_fetched_epoch: -1,
        log_start_offset: -1,
    }
}

#[tokio::test(start_paused = true)]
async fn acks_all_completes_across_a_leader_epoch_bump_that_keeps_the_leader() {
    let node = Node::new("acks-all-epoch-bump", 1);
    let mut meta = cluster(2);
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 5, &[1, 2]);
    node.apply(&meta).await;
    let w = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"a"]), Acks::All).unwrap();
    let replicas = node.replicas.clone();
    let pending = w.pending.clone();
    let done = tokio::spawn(async move { replicas.complete(&[pending], LONG).await });
    tokio::task::yield_now().await;
    assert!(!done.is_finished(), "acks=all answered before the follower had the record");
    // The controller drops the dead follower from the ISR and bumps the epoch; broker 1 still leads.
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 6, &[1]);
    node.apply(&meta).await;
    let results = done.await.unwrap();
    assert_eq!(results, vec![Ok(())], "the bump keeps the wait alive and the ISR {{1}} now holds the record");
}

#[tokio::test(start_paused = true)]
async fn acks_all_fails_with_not_leader_across_a_demotion() {
    let node = Node::new("acks-all-demotion", 1);
    let mut meta = cluster(2);
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 5, &[1, 2]);
    node.apply(&meta).await;
    let w = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"a"]), Acks::All).unwrap();
    let replicas = node.replicas.clone();
    let done = tokio::spawn(async move { replicas.complete(&[w.pending], LONG).await });
    tokio::task::yield_now().await;
    set_partition(&mut meta, "t", 0, &[1, 2], 2, 6, &[2]);
    node.apply(&meta).await;
    assert_eq!(done.await.unwrap(), vec![Err(CompletionError::NotLeader { leader: 2 })]);
    // And the demoted replica refuses new writes.
    let refused = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"b"]), Acks::Leader);
    assert!(matches!(refused, Err(AppendError::Replica(ReplicaError::NotLeader { leader: 2, .. }))));
}

#[tokio::test(start_paused = true)]
async fn acks_all_completes_when_the_follower_fetches_past_the_record_and_times_out_otherwise() {
    let node = Node::new("acks-all-follower", 1);
    let mut meta = cluster(2);
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 0, &[1, 2]);
    node.apply(&meta).await;
    let w = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"a", b"b"]), Acks::All).unwrap();
    // Nobody fetches: the deadline answers.
    let timed_out = node.replicas.complete(std::slice::from_ref(&w.pending), Duration::from_secs(2)).await;
    assert_eq!(timed_out, vec![Err(CompletionError::TimedOut { isr: vec![1, 2] })]);
    let replicas = node.replicas.clone();
    let pending = w.pending.clone();
    let done = tokio::spawn(async move { replicas.complete(&[pending], LONG).await });
    tokio::task::yield_now().await;
    // The follower fetches at its log end 2 (it has both records): the high watermark moves.
    let fetched =
        node.replicas.fetch_messages(Reader::Follower(2), &[fetch_spec("t", 2)], 1 << 20, 0, Duration::ZERO).await;
    assert!(fetched[0].is_ok());
    assert_eq!(done.await.unwrap(), vec![Ok(())]);
}

#[tokio::test(start_paused = true)]
async fn not_enough_replicas_writes_nothing_and_acks_1_does_not_wait() {
    let node = Node::new("min-isr", 1);
    let mut meta = cluster(3);
    set_partition(&mut meta, "t", 0, &[1, 2, 3], 1, 0, &[1]);
    meta.topics.get_mut("t").unwrap().config.insert("min.insync.replicas".into(), "2".into());
    node.apply(&meta).await;
    let refused = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"a"]), Acks::All);
    assert!(matches!(refused, Err(AppendError::NotEnoughReplicas { min: 2, .. })), "{:?}", refused.err());
    let w = node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"a"]), Acks::Leader).unwrap();
    assert_eq!(w.appended.last_offset(), 0, "the refused write took no offset");
    assert_eq!(node.replicas.complete(&[w.pending], LONG).await, vec![Ok(())]);
}

#[tokio::test(start_paused = true)]
async fn clients_cannot_write_internal_topics_but_coordinators_can() {
    let node = Node::new("internal", 1);
    let mut meta = cluster(1);
    set_partition(&mut meta, tributary_common::topic::CONSUMER_OFFSETS, 0, &[1], 1, 0, &[1]);
    node.apply(&meta).await;
    let t = tp(tributary_common::topic::CONSUMER_OFFSETS, 0);
    let refused = node.replicas.append_to_leader(&t, Origin::Client, &batch(&[b"a"]), Acks::Leader);
    assert!(matches!(refused, Err(AppendError::InternalTopic(_))));
    let w = node.replicas.append_to_leader(&t, Origin::Coordinator, &batch(&[b"a"]), Acks::All).unwrap();
    assert_eq!(node.replicas.complete(&[w.pending], LONG).await, vec![Ok(())]);
}

#[tokio::test(start_paused = true)]
async fn a_parked_fetch_is_woken_by_its_own_partition_only() {
    let node = Node::new("per-partition-wakeups", 1);
    let mut meta = cluster(1);
    set_partition(&mut meta, "a", 0, &[1], 1, 0, &[1]);
    set_partition(&mut meta, "b", 0, &[1], 1, 0, &[1]);
    node.apply(&meta).await;
    let replicas = node.replicas.clone();
    let parked = tokio::spawn(async move {
        let consumer = Reader::Consumer { read_committed: false };
        replicas.fetch_messages(consumer, &[fetch_spec("a", 0)], 1 << 20, 1, LONG).await
    });
    tokio::task::yield_now().await;
    assert!(!parked.is_finished(), "the fetch found nothing and parked");
    for i in 0..20u8 {
        node.replicas.append_to_leader(&tp("b", 0), Origin::Client, &batch(&[&[i]]), Acks::Leader).unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(node.replicas.fetch_rereads(), 0, "appends to topic b woke the fetch parked on topic a");
    node.replicas.append_to_leader(&tp("a", 0), Origin::Client, &batch(&[b"x"]), Acks::Leader).unwrap();
    let fetched = parked.await.unwrap();
    let data = fetched[0].as_ref().expect("read");
    assert!(!data.records.is_empty(), "answered with the new batch, not at the deadline");
    assert_eq!(node.replicas.fetch_rereads(), 1, "one wake-up, one re-read");
}

#[tokio::test(start_paused = true)]
async fn a_follower_fetch_parks_on_the_log_end_and_a_consumer_on_the_high_watermark() {
    let node = Node::new("keys", 1);
    let mut meta = cluster(2);
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 0, &[1, 2]);
    node.apply(&meta).await;
    let replicas = node.replicas.clone();
    let consumer = tokio::spawn(async move {
        let reader = Reader::Consumer { read_committed: false };
        replicas.fetch_messages(reader, &[fetch_spec("t", 0)], 1 << 20, 1, LONG).await
    });
    let replicas = node.replicas.clone();
    let follower = tokio::spawn(async move {
        replicas.fetch_messages(Reader::Follower(2), &[fetch_spec("t", 0)], 1 << 20, 1, LONG).await
    });
    tokio::task::yield_now().await;
    node.replicas.append_to_leader(&tp("t", 0), Origin::Client, &batch(&[b"x"]), Acks::Leader).unwrap();
    let got = follower.await.unwrap();
    assert!(!got[0].as_ref().unwrap().records.is_empty(), "the follower reads up to the log end at once");
    tokio::task::yield_now().await;
    assert!(!consumer.is_finished(), "the high watermark has not moved: the consumer stays parked");
    node.replicas.fetch_messages(Reader::Follower(2), &[fetch_spec("t", 1)], 1 << 20, 0, Duration::ZERO).await;
    let got = consumer.await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().high_watermark, 1);
    assert!(!got[0].as_ref().unwrap().records.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stale_leader_epoch_is_fenced() {
    let node = Node::new("fenced", 2);
    let mut meta = cluster(2);
    set_partition(&mut meta, "t", 0, &[1, 2], 1, 7, &[1, 2]);
    node.apply(&meta).await;
    let p = node.replicas.get(&tp("t", 0)).unwrap();
    let batches = crate::record::verify_replicated(&{
        let mut b = batch(&[b"x"]).to_vec();
        crate::record::stamp_in_place(&mut b, 0, 7, None);
        bytes::Bytes::from(b)
    })
    .unwrap();
    // Fetched from a leader at an older epoch (or from the wrong leader): dropped, nothing stored.
    assert_eq!(node.replicas.append_as_follower(&p, 1, 6, &batches), Ok(None));
    assert_eq!(node.replicas.append_as_follower(&p, 2, 7, &batches), Ok(None));
    assert_eq!(p.log().offsets().log_end_offset, 0);
    assert!(node.replicas.append_as_follower(&p, 1, 7, &batches).unwrap().is_some());
    assert_eq!(p.log().offsets().log_end_offset, 1);
    // Clients naming an old epoch are fenced, a newer one is unknown.
    let mut lead = cluster(2);
    set_partition(&mut lead, "t", 0, &[1, 2], 2, 8, &[1, 2]);
    node.apply(&lead).await;
    assert!(matches!(node.replicas.leader_partition(&tp("t", 0), 7), Err(ReplicaError::FencedLeaderEpoch { .. })));
    assert!(matches!(node.replicas.leader_partition(&tp("t", 0), 9), Err(ReplicaError::UnknownLeaderEpoch { .. })));
    assert!(node.replicas.leader_partition(&tp("t", 0), 8).is_ok());
}

#[tokio::test]
async fn partitions_open_on_the_storage_thread_and_answer_a_retriable_error_meanwhile() {
    let node = Node::new("opening", 1);
    let mut meta = cluster(1);
    for p in 0..50 {
        set_partition(&mut meta, "many", p, &[1], 1, 0, &[1]);
    }
    node.replicas.reconcile(&meta);
    // Right after reconcile the opens are queued, not done: lookups do not block on them.
    let first = node.replicas.lookup(&tp("many", 49));
    assert!(matches!(first, Ok(_) | Err(ReplicaError::Opening(_))), "{:?}", first.err());
    assert!(node.replicas.wait_opened(Duration::from_secs(60)).await);
    for p in 0..50 {
        assert!(node.replicas.leader_partition(&tp("many", p), -1).is_ok());
    }
    assert!(matches!(node.replicas.lookup(&tp("other", 0)), Err(ReplicaError::UnknownPartition(_))));
    // Unassigning deletes the logs on the storage thread; re-creating opens fresh ones.
    let w = node.replicas.append_to_leader(&tp("many", 0), Origin::Client, &batch(&[b"x"]), Acks::Leader).unwrap();
    assert_eq!(w.appended.last_offset(), 0);
    node.apply(&cluster(1)).await;
    assert!(node.replicas.get(&tp("many", 0)).is_none());
    let mut again = cluster(1);
    set_partition(&mut again, "many", 0, &[1], 1, 0, &[1]);
    node.apply(&again).await;
    assert_eq!(
        node.replicas.get(&tp("many", 0)).unwrap().log().offsets().log_end_offset,
        0,
        "a re-created topic starts empty"
    );
}

/// One idempotent batch of producer 7 (epoch 0) holding one record at `seq`.
fn idempotent(seq: i32) -> bytes::Bytes {
    let now = tributary_common::time::now_ms();
    crate::record::body::encoded_from(seq, kafka_protocol::records::Compression::None, &[None], &[Some("r")], &[now])
}

#[tokio::test]
async fn a_truncation_rebuilds_producer_state_from_the_snapshot_kept_and_the_batches_after_it() {
    let node = Node::new("truncation-snapshot", 1);
    let mut meta = cluster(1);
    set_partition(&mut meta, "t", 0, &[1], 1, 0, &[1]);
    node.apply(&meta).await;
    let t0 = tp("t", 0);
    let write = |seq| node.replicas.append_to_leader(&t0, Origin::Client, &idempotent(seq), Acks::Leader).unwrap();
    write(0);
    write(1);
    // A checkpoint stores the producer state at offset 2; two more batches follow.
    node.replicas.checkpoint(node.replicas.checkpoint_points());
    write(2);
    write(3);
    let p = node.replicas.get(&t0).unwrap();
    assert_eq!(p.log().stored_snapshot().unwrap().map(|(at, _)| at), Some(2));
    // Offsets 3.. go: the snapshot (at 2) stays, and the batch at 2 is replayed on top of it.
    assert_eq!(p.truncate_to(3).unwrap(), 3);
    assert_eq!(p.log().stored_snapshot().unwrap().map(|(at, _)| at), Some(2));
    let producers = p.producers();
    assert_eq!(producers.iter().map(|s| (s.producer_id, s.epoch, s.last_sequence)).collect::<Vec<_>>(), vec![(7, 0, 2)]);
    // A retry of a kept batch is a duplicate at its offset; the truncated sequence 3 is new again.
    let retried = write(1);
    assert_eq!(retried.appended, Appended::Duplicate { base_offset: 1, last_offset: 1 });
    match write(3).appended {
        Appended::New(info) => assert_eq!(info.base_offset, 3),
        other => panic!("sequence 3 was truncated away, so it is new: {other:?}"),
    }
    // Below the snapshot: it goes, and the state comes from the whole log.
    assert_eq!(p.truncate_to(1).unwrap(), 1);
    assert_eq!(p.log().stored_snapshot().unwrap(), None);
    assert_eq!(p.producers().iter().map(|s| s.last_sequence).collect::<Vec<_>>(), vec![0]);
}
