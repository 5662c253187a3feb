//! The controller loop in-process against a real ZooKeeper 3.8 server (Debian's package,
//! started here on a free loopback port): election, leader election for a new topic, and
//! fencing: once `/controller_epoch` moves on, nothing is written under the old epoch.
//!
//! Time is real: the loop talks to a real server, so paused time would fire its timeouts
//! while ZooKeeper answers. Every wait is on a condition, under one overall deadline.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_common::ids::TopicId;
use tributary_common::zk::{connect, create_topic, ensure_persistent_paths, ephemeral};
use tributary_common::znode::{self, BrokerRegistration, Endpoint, PartitionState};
use tributary_coordinator::controller::{self, ControllerConfig, Status};
use zookeeper_client::Client;

use support::{eventually, ZooKeeper, DEADLINE};

async fn partition_state(client: &Client, topic: &str) -> Option<PartitionState> {
    let (data, _) = client.get_data(&znode::partition_state_path(topic, 0)).await.ok()?;
    PartitionState::decode(topic, 0, &data).ok()
}

async fn new_topic(client: &Client, topic: &str) {
    let replicas = BTreeMap::from([(0, vec![1])]);
    create_topic(client, topic, TopicId::random(), &replicas, BTreeMap::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_elects_leaders_and_a_stale_epoch_writes_nothing() {
    tokio::time::timeout(DEADLINE, async {
        let zk = ZooKeeper::start("controller");
        let client = connect(&zk.connect_string(), Duration::from_secs(6), Duration::from_secs(10), &Default::default()).await.unwrap();
        ensure_persistent_paths(&client).await.unwrap();
        // A live broker 1, as a broker registers itself.
        let endpoint = Endpoint::parse("PLAINTEXT://127.0.0.1:9092").unwrap();
        let registration = BrokerRegistration::new(&[endpoint], None, 0).encode();
        client.create(&znode::broker_path(1), &registration, &ephemeral(&znode::broker_path(1))).await.unwrap();

        let cfg = ControllerConfig {
            controller_id: 3000,
            zookeeper_connect: zk.connect_string(),
            zookeeper: Default::default(),
            session_timeout: Duration::from_secs(6),
            unclean_leader_election: false,
            auto_leader_rebalance: false,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_per_broker_percentage: 10,
        };
        let (status_tx, mut status) = watch::channel(Status::default());
        let shutdown = CancellationToken::new();
        let slot = Arc::new(RwLock::new(None));
        let running = tokio::spawn(controller::run(cfg, slot, status_tx, shutdown.clone()));

        // Elected: /controller names it, and the epoch it reports is /controller_epoch's.
        let first = status.wait_for(|s| s.active).await.unwrap().controller_epoch.unwrap();
        let (epoch_data, _) = client.get_data(znode::CONTROLLER_EPOCH).await.unwrap();
        assert_eq!(znode::decode_controller_epoch(&epoch_data).unwrap(), first);
        let (controller_data, _) = client.get_data(znode::CONTROLLER).await.unwrap();
        assert_eq!(znode::ControllerZNode::decode(&controller_data).unwrap().brokerid, 3000);

        // A new topic gets its leader under that epoch.
        new_topic(&client, "before").await;
        let state = eventually("a leader for before-0", || partition_state(&client, "before")).await;
        assert_eq!((state.leader, state.isr.clone(), state.controller_epoch), (1, vec![1], first));

        // Another controller takes the epoch (as a newly elected one would). The running
        // controller's next write must fail its epoch check: it resigns, is elected again
        // past the new epoch, and only then writes.
        let bumped = first + 5;
        client.set_data(znode::CONTROLLER_EPOCH, bumped.to_string().as_bytes(), None).await.unwrap();
        new_topic(&client, "after").await;
        let state = eventually("a leader for after-0", || partition_state(&client, "after")).await;
        assert_eq!(state.leader, 1);
        assert!(
            state.controller_epoch > bumped,
            "after-0 was written under controller epoch {}, not past the epoch {bumped} that fenced it",
            state.controller_epoch
        );
        let now = status.wait_for(|s| s.active && s.controller_epoch > Some(bumped)).await.unwrap().controller_epoch;
        assert_eq!(now, Some(state.controller_epoch));
        let before = partition_state(&client, "before").await.unwrap();
        assert_eq!(before.controller_epoch, first, "nothing rewrote before-0 under the stale epoch");

        shutdown.cancel();
        running.await.unwrap();
        drop(zk);
    })
    .await
    .expect("the test's deadline passed");
}
