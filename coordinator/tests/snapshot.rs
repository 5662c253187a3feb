//! The cluster snapshot kept current from watch events (`common::snapshot::Tracker`, used by
//! the brokers and the active controller instead of re-reading the cluster on every change)
//! against a real ZooKeeper 3.8 server: after each kind of change Kafka's tools, brokers and
//! controller make, the tracked snapshot equals a whole read of the cluster.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tributary_common::ids::TopicId;
use tributary_common::snapshot::{self, ClusterSnapshot, Tracker};
use tributary_common::zk::{connect, create_topic, ensure_persistent_paths, ephemeral, mark_topic_for_deletion, persistent};
use tributary_common::zk::{read_entity_config, write_entity_config};
use tributary_common::znode::{self, BrokerRegistration, ConfigEntity, Endpoint, PartitionState, TopicAssignment};
use zookeeper_client::{AddWatchMode, Client, PersistentWatcher};

use support::{ZooKeeper, DEADLINE};

/// How long the tracked snapshot may take to catch up with one change.
const CATCH_UP: Duration = Duration::from_secs(20);

/// Until the tracker, fed every event the watches report, reads the same cluster as a whole
/// read does (the events arrive on their own schedule; [`CATCH_UP`] bounds the wait).
async fn converges(what: &str, client: &Client, tracker: &mut Tracker, watches: &mut [PersistentWatcher]) -> ClusterSnapshot {
    let started = Instant::now();
    loop {
        for w in watches.iter_mut() {
            while let Ok(e) = tokio::time::timeout(Duration::from_millis(20), w.changed()).await {
                tracker.note(&e.path);
            }
        }
        let tracked = tracker.current(client).await.unwrap().clone();
        let whole = snapshot::load(client).await.unwrap();
        if tracked == whole {
            return tracked;
        }
        assert!(started.elapsed() < CATCH_UP, "after {what}, the tracked snapshot\n{tracked:#?}\ndiffers from a whole read\n{whole:#?}");
    }
}

async fn register(client: &Client, id: i32, port: u16) {
    let endpoint = Endpoint::parse(&format!("PLAINTEXT://127.0.0.1:{port}")).unwrap();
    let path = znode::broker_path(id);
    client.create(&path, &BrokerRegistration::new(&[endpoint], None, 0).encode(), &ephemeral(&path)).await.unwrap();
}

async fn write_state(client: &Client, topic: &str, partition: i32, state: &PartitionState) {
    let path = znode::partition_state_path(topic, partition);
    match client.set_data(&path, &state.encode(), None).await {
        Ok(_) => {}
        Err(zookeeper_client::Error::NoNode) => {
            let parent = znode::partition_path(topic, partition);
            client.mkdir(&parent, &persistent(&parent)).await.unwrap();
            client.create(&path, &state.encode(), &persistent(&path)).await.unwrap();
        }
        Err(e) => panic!("writing {path}: {e}"),
    }
}

async fn set_config(client: &Client, entity: ConfigEntity, key: &str, value: &str) {
    let (mut config, version) = read_entity_config(client, &entity).await.unwrap();
    config.insert(key.to_string(), value.to_string());
    write_entity_config(client, &entity, config, version).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_snapshot_reads_the_same_cluster_as_a_whole_read_after_every_kind_of_change() {
    tokio::time::timeout(DEADLINE, async {
        let zk = ZooKeeper::start("snapshot");
        let client =
            connect(&zk.connect_string(), Duration::from_secs(6), Duration::from_secs(10), &Default::default()).await.unwrap();
        ensure_persistent_paths(&client).await.unwrap();
        // The watches a broker sets; the controller's are a subset of them.
        let mut watches = vec![
            client.watch("/brokers", AddWatchMode::PersistentRecursive).await.unwrap(),
            client.watch("/config", AddWatchMode::PersistentRecursive).await.unwrap(),
            client.watch(znode::DELETE_TOPICS, AddWatchMode::PersistentRecursive).await.unwrap(),
        ];
        let mut tracker = Tracker::default();
        let empty = converges("the first read", &client, &mut tracker, &mut watches).await;
        assert!(empty.brokers.is_empty() && empty.topics.is_empty());

        register(&client, 1, 9092).await;
        register(&client, 2, 9093).await;
        let s = converges("two brokers registering", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.brokers.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        client.delete(&znode::broker_path(2), None).await.unwrap();
        let s = converges("a broker leaving", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.brokers.keys().copied().collect::<Vec<_>>(), vec![1]);

        // A topic as the admin API writes it (config, then assignment), then its states as
        // the controller writes them.
        let replicas: BTreeMap<i32, Vec<i32>> = (0..3).map(|p| (p, vec![1])).collect();
        let config = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        create_topic(&client, "orders", TopicId::random(), &replicas, config).await.unwrap();
        let s = converges("a topic created", &client, &mut tracker, &mut watches).await;
        assert!(s.topics["orders"].partitions.values().all(|p| p.state.is_none()));
        assert_eq!(s.topics["orders"].config["cleanup.policy"], "compact");
        for p in 0..3 {
            write_state(&client, "orders", p, &PartitionState::new(1, 0, 1, vec![1])).await;
        }
        converges("its partitions getting a leader", &client, &mut tracker, &mut watches).await;
        write_state(&client, "orders", 1, &PartitionState::new(-1, 1, 1, vec![1])).await;
        let s = converges("one partition losing its leader", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.topics["orders"].partitions[&1].state.as_ref().map(|(st, v)| (st.leader, *v)), Some((-1, 1)));
        // Unreadable JSON reads as no state, tracked or whole.
        client.set_data(&znode::partition_state_path("orders", 2), b"{not json", None).await.unwrap();
        converges("a partition state no one can read", &client, &mut tracker, &mut watches).await;

        // Configs, as kafka-configs writes them (with a change notification beside them).
        set_config(&client, ConfigEntity::Topic("orders".into()), "retention.ms", "1000").await;
        set_config(&client, ConfigEntity::Broker(None), "min.insync.replicas", "2").await;
        set_config(&client, ConfigEntity::UserClient(Some("alice".into()), Some("app".into())), "producer_byte_rate", "1024").await;
        let s = converges("topic, broker and user configs", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.topics["orders"].config["retention.ms"], "1000");
        assert_eq!(s.entity_configs.len(), 2);

        // Partitions added: the assignment grows, then the new partition gets its state.
        let grown: BTreeMap<i32, Vec<i32>> = (0..4).map(|p| (p, vec![1])).collect();
        let id = s.topics["orders"].assignment.topic_id;
        client.set_data(&znode::topic_path("orders"), &TopicAssignment::new(id, &grown).encode(), None).await.unwrap();
        write_state(&client, "orders", 3, &PartitionState::new(1, 0, 1, vec![1])).await;
        let s = converges("a partition added", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.topics["orders"].partitions.len(), 4);

        // Deletion: the mark, then everything the controller removes.
        create_topic(&client, "kept", TopicId::random(), &replicas, BTreeMap::new()).await.unwrap();
        mark_topic_for_deletion(&client, "orders").await.unwrap();
        let s = converges("a topic marked for deletion", &client, &mut tracker, &mut watches).await;
        assert!(s.pending_deletions.contains("orders"));
        for p in 0..4 {
            client.delete(&znode::partition_state_path("orders", p), None).await.unwrap();
            client.delete(&znode::partition_path("orders", p), None).await.unwrap();
        }
        client.delete(&znode::topic_partitions_path("orders"), None).await.unwrap();
        client.delete(&znode::topic_path("orders"), None).await.unwrap();
        client.delete(&znode::topic_config_path("orders"), None).await.unwrap();
        client.delete(&znode::delete_topic_path("orders"), None).await.unwrap();
        let s = converges("a topic deleted", &client, &mut tracker, &mut watches).await;
        assert_eq!(s.topics.keys().collect::<Vec<_>>(), vec!["kept"]);
        assert!(s.pending_deletions.is_empty());

        // After a reset (what a reconnect does) the next read is whole again.
        tracker.reset();
        converges("a reset", &client, &mut tracker, &mut watches).await;
        drop(zk);
    })
    .await
    .expect("the test's deadline passed");
}
