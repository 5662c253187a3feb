//! Tributary broker: the Kafka wire protocol over partition logs stored in sled,
//! registered and coordinated through ZooKeeper.
//!
//! Data flow: [`server`] accepts connections; [`net`] frames and decodes requests with
//! `kafka-protocol`; [`api`] handles them against the [`replica`] manager (which owns the
//! [`log`]s) and the [`metadata`] snapshot that [`zk`] keeps current from ZooKeeper
//! watches. Admin requests (CreateTopics, ...) are written to ZooKeeper, where the
//! coordinator picks them up and elects leaders; the broker then sees the result through
//! its watches.
//!
//! Start-up follows Kafka's order: data directory, ZooKeeper session and registration,
//! metadata, then the listener. Partition logs open on the replica manager's storage
//! thread while the broker already serves (a partition not open yet answers a retriable
//! error). Shutdown reverses start-up, as `KafkaServer.shutdown` does: stop accepting,
//! drain connections within the grace period and abort the rest, stop the background
//! tasks and the replica fetchers and wait for them, finish queued storage work, flush the
//! log store, and close the ZooKeeper session last so `/brokers/ids/<id>` disappears at once.

mod api;
pub mod config;
mod dynamic_config;
#[doc(hidden)]
pub mod fuzz;
mod group;
mod log;
mod metadata;
mod metrics;
mod net;
mod owned;
mod quota;
mod record;
mod replica;
pub mod security;
mod server;
#[cfg(test)]
mod testkit;
mod topic_config;
mod txn;
mod zk;

// jemalloc maps very large allocations lazily (MAP_NORESERVE under overcommit), so a hostile
// frame whose array length claims billions of entries costs address space, not an abort,
// before the decoder notices the frame is short (kafka-protocol pre-allocates from the
// claimed length). The glibc allocator refuses such a request and the process aborts.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::BrokerContext;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::log::{FlushPolicy, LogStore};
use crate::replica::cleaner::{CleanerSettings, LogCleaner};
use crate::replica::fetcher::FetcherManager;
use crate::replica::ReplicaManager;
use crate::topic_config::TopicConfig;
use crate::txn::TransactionCoordinator;
use crate::zk::session::{establish, run_session, SessionConfig};
use crate::zk::ZkHandle;

/// `meta.properties` in the data directory, as Kafka keeps it: it ties the directory to
/// one broker id and one cluster, so a broker pointed at the wrong ZooKeeper (or chroot)
/// refuses to start instead of deleting "unknown" partitions.
fn check_meta_properties(dir: &Path, broker_id: i32, cluster_id: Option<&str>) -> anyhow::Result<()> {
    let path = dir.join("meta.properties");
    let existing = std::fs::read_to_string(&path).ok();
    if let Some(text) = &existing {
        let props = tributary_common::config::Properties::parse(&path.display().to_string(), text);
        let mut props = props;
        if let Some(id) = props.take("broker.id") {
            anyhow::ensure!(
                id.trim() == broker_id.to_string(),
                "data directory {} belongs to broker {}, not broker {broker_id}; use that broker.id or another log.dirs",
                dir.display(),
                id.trim()
            );
        }
        if let (Some(stored), Some(current)) = (props.take("cluster.id"), cluster_id) {
            anyhow::ensure!(
                stored.trim() == current,
                "data directory {} belongs to cluster {}, but ZooKeeper holds cluster {current}; check zookeeper.connect (and its chroot) or use a fresh log.dirs",
                dir.display(),
                stored.trim()
            );
        }
    }
    if let Some(cluster_id) = cluster_id {
        let text = format!("#Tributary broker metadata\nversion=0\nbroker.id={broker_id}\ncluster.id={cluster_id}\n");
        if existing.as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs a broker on already-bound sockets until `shutdown` is cancelled. The sockets start
/// listening only once the first metadata is served, so that a client never connects to a
/// broker that cannot answer yet (it is refused and retries, as with a stopped broker).
///
/// # Errors
/// Start-up failures, each explained for the operator: data directory unusable, ZooKeeper
/// unreachable, broker id already registered, data directory from another cluster.
pub async fn run(
    config: BrokerConfig,
    security: security::Security,
    listeners: Vec<(String, TcpSocket)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let broker_id = config.broker_id;
    let dir = config.data_dir.clone();
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr} (metrics.listen); is another process using that port?")
        })?),
        None => None,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    check_meta_properties(&dir, broker_id, None)?;
    let policy = FlushPolicy {
        interval_ms: Some(config.log_flush_interval_ms),
        interval_messages: config.log_flush_interval_messages,
    };
    // sled's own start-up scan reads the whole database: off the async workers.
    let open_dir = dir.clone();
    let store = tokio::task::spawn_blocking(move || LogStore::open(&open_dir, policy))
        .await
        .context("opening the log store panicked")?
        .with_context(|| format!("cannot open the log store in {}", dir.display()))?;

    let session_config = SessionConfig {
        connect: config.zookeeper_connect.clone(),
        session_timeout: config.zookeeper_session_timeout(),
        connection_timeout: config.zookeeper_connection_timeout(),
        security: security.zookeeper.clone(),
        broker_id,
        endpoints: config.advertised(),
        protocols: config
            .advertised()
            .iter()
            .filter_map(|e| {
                config.listener_security_protocol_map.protocol(&e.listener).map(|p| (e.listener.clone(), p.to_string()))
            })
            .collect(),
        rack: config.broker_rack.clone(),
        cluster_id: config.cluster_id.as_ref().map(ToString::to_string),
    };
    let registered = tokio::select! {
        r = establish(&session_config) => r?,
        () = shutdown.cancelled() => {
            store.close().await;
            tracing::info!("shut down before registering in ZooKeeper; nothing else was started");
            return Ok(());
        }
    };
    check_meta_properties(&dir, broker_id, Some(&registered.cluster_id))?;
    zk::ensure_image_scram_users(&registered.client, &security.image_scram_users).await;

    let zk = ZkHandle::new(broker_id);
    // Two channels: ZooKeeper's view goes to the reconciler first, and request handlers see a
    // snapshot only once local replicas have taken it up (or, while logs are still opening
    // after a restart, shortly after). Otherwise Metadata could name this broker leader
    // while Produce still answers NOT_LEADER_OR_FOLLOWER for a partition it could serve.
    let (zk_view_tx, mut zk_view) = watch::channel(None);
    let (served_tx, served_rx) = watch::channel(None);
    let replicas = ReplicaManager::new(broker_id, store.clone(), TopicConfig::defaults(&config));
    replicas.set_replication_throttles(&config);
    let cleaner = LogCleaner::start(&replicas, CleanerSettings::from_config(&config));
    let groups = GroupCoordinator::new(broker_id, config.group_config(), replicas.clone());
    let (marker_tx, marker_rx) = tokio::sync::mpsc::unbounded_channel();
    let txns = TransactionCoordinator::new(broker_id, config.txn_config(), replicas.clone(), marker_tx);
    let ctx = Arc::new(BrokerContext::new(config, replicas, groups, txns, served_rx, zk.clone(), Arc::new(security)));
    // Background tasks run until the connections have drained.
    let background = TaskTracker::new();
    let background_stop = CancellationToken::new();
    let zk_shutdown = CancellationToken::new();
    let session = tokio::spawn(run_session(zk, session_config, registered, zk_view_tx, zk_shutdown.clone()));

    // Keep local replicas in step with the metadata (and followers fetching from their
    // leaders), then serve that metadata. Partitions finishing opening run it again.
    let mut fetcher_config = ctx.config.fetcher_config();
    fetcher_config.security = ctx.security.inter_broker.clone();
    let fetchers = Arc::new(FetcherManager::new(fetcher_config, ctx.replicas.clone()));
    let reconciler = ctx.clone();
    let stop = background_stop.clone();
    let reconciler_fetchers = fetchers.clone();
    let reconciler_cleaner = cleaner.clone();
    background.spawn(async move {
        loop {
            let snapshot = zk_view.borrow_and_update().clone();
            if let Some(m) = snapshot {
                if let Some(effective) = reconciler.take_dynamic_configs(&m) {
                    let c = &effective.config;
                    reconciler.replicas.set_topic_defaults(TopicConfig::defaults(c));
                    reconciler.replicas.set_replication_throttles(c);
                    reconciler_cleaner.configure(CleanerSettings::from_config(c));
                    reconciler.replicas.store().set_flush_policy(FlushPolicy {
                        interval_ms: Some(c.log_flush_interval_ms),
                        interval_messages: c.log_flush_interval_messages,
                    });
                }
                reconciler.quotas.set_configs(&m.entity_configs);
                reconciler.replicas.reconcile(&m);
                // New partitions open within milliseconds; a restart's recovery does not
                // hold Metadata back for longer than this. Partitions that open later wake
                // this loop, which then runs what follows again.
                reconciler.replicas.wait_opened(SERVE_OPENING_WAIT).await;
                reconciler_fetchers.update(&m);
                // Group coordination follows leadership of __consumer_offsets partitions.
                for (partition, epoch, local) in reconciler.groups.on_metadata(&m) {
                    let loader = reconciler.clone();
                    tokio::task::spawn_blocking(move || loader.groups.load(partition, epoch, &local, api::now_ms()));
                }
                // So does transaction coordination, with __transaction_state.
                for (partition, epoch, local) in reconciler.txns.on_metadata(&m) {
                    let loader = reconciler.clone();
                    tokio::task::spawn_blocking(move || loader.txns.load(partition, epoch, &local));
                }
                served_tx.send_replace(Some(m));
            }
            tokio::select! {
                r = zk_view.changed() => if r.is_err() { return },
                _ = reconciler.replicas.partitions_opened() => {},
                _ = stop.cancelled() => return,
            }
        }
    });
    // ISR maintenance for partitions led here: followers that stopped keeping up leave the
    // ISR, caught-up ones rejoin; each change is a conditional write of the state znode.
    let isr = ctx.clone();
    let stop = background_stop.clone();
    background.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => replica::maintain_isr(&isr.replicas, &isr.zk, api::now_ms(), isr.config.replica_lag_time_max_ms).await,
                _ = stop.cancelled() => return,
            }
        }
    });
    // Retention, recovery-point and high-watermark checkpoints: storage walks, run on the
    // blocking pool.
    let housekeeper = ctx.clone();
    let stop = background_stop.clone();
    background.spawn(async move {
        let mut retention =
            tokio::time::interval(log::retention_interval(housekeeper.config.log_retention_check_interval_ms));
        let mut checkpoint = tokio::time::interval(Duration::from_secs(5));
        loop {
            let replicas = housekeeper.replicas.clone();
            tokio::select! {
                _ = retention.tick() => {
                    let _ = tokio::task::spawn_blocking(move || replicas.apply_retention(api::now_ms())).await;
                },
                _ = checkpoint.tick() => {
                    housekeeper.quotas.expire(api::now_ms());
                    let points = replicas.checkpoint_points();
                    let flushed = replicas.store().flush().await.is_ok();
                    let _ = tokio::task::spawn_blocking(move || {
                        if flushed {
                            replicas.checkpoint(points);
                        }
                        replicas.checkpoint_high_watermarks();
                    }).await;
                },
                _ = stop.cancelled() => return,
            }
        }
    });

    if let Some(listener) = metrics_listener {
        background.spawn(server::serve_metrics(listener, ctx.clone(), background_stop.clone()));
    }
    // Transaction markers, and transactions open past their timeout.
    background.spawn(txn::markers::run(ctx.clone(), marker_rx, background_stop.clone()));
    let txns = ctx.clone();
    let stop = background_stop.clone();
    background.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(
            txns.config.transaction_abort_timed_out_transaction_cleanup_interval_ms.max(10),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    txns.txns.abort_expired(api::now_ms()).await;
                    txns.txns.expire_idle_ids(api::now_ms()).await;
                }
                _ = stop.cancelled() => return,
            }
        }
    });

    // Group clocks (sessions, rebalance deadlines) and offset expiry.
    let groups = ctx.clone();
    let stop = background_stop.clone();
    background.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expiry =
            tokio::time::interval(Duration::from_millis(groups.config.offsets_retention_check_interval_ms));
        loop {
            tokio::select! {
                _ = tick.tick() => groups.groups.tick(api::now_ms()),
                _ = expiry.tick() => groups.groups.expire(api::now_ms(), groups.config.offsets_retention_ms()).await,
                _ = stop.cancelled() => return,
            }
        }
    });

    // Serve only once the first metadata snapshot is in, so clients never see an empty cluster.
    if !ctx.wait_for_metadata(Duration::from_secs(10), |_| true).await {
        tracing::warn!("no metadata from ZooKeeper after 10 s; serving anyway, clients will retry");
    }
    let connections = TaskTracker::new();
    let abort_connections = CancellationToken::new();
    let mut acceptors = Vec::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(ctx.config.max_connections));
    for (name, socket) in listeners {
        let listener = socket.listen(1024).with_context(|| format!("listening on the {name} listener failed"))?;
        let addr = listener.local_addr().ok();
        tracing::info!(listener = name, address = ?addr, advertised = ?ctx.config.advertised().iter().map(ToString::to_string).collect::<Vec<_>>(), partitions_opening = ctx.replicas.opening_count(), "accepting Kafka clients");
        let conns = server::Connections {
            tracker: connections.clone(),
            drain: shutdown.clone(),
            abort: abort_connections.clone(),
            limit: limit.clone(),
        };
        acceptors.push(tokio::spawn(server::accept_loop(listener, name.into(), ctx.clone(), conns)));
    }

    shutdown.cancelled().await;
    tracing::info!(
        open_connections = connections.len(),
        "shutting down: stopped accepting; finishing requests in progress on open connections"
    );
    for a in acceptors {
        let _ = a.await;
    }
    connections.close();
    let grace = ctx.config.shutdown_grace();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            busy = connections.len(),
            "requests still in progress after the grace period; aborting them (their clients retry)"
        );
        abort_connections.cancel();
        connections.wait().await;
    }
    background_stop.cancel();
    background.close();
    background.wait().await;
    fetchers.stop().await;
    let _ = tokio::task::spawn_blocking(move || cleaner.stop()).await;
    ctx.replicas.stop_storage().await;
    // The last checkpoint: everything flushed is recovered, with producer-state snapshots,
    // so that the next start reads none of the logs; then the checkpoint itself is flushed.
    let replicas = ctx.replicas.clone();
    let points = replicas.checkpoint_points();
    store.flush().await.context("final flush of the log store failed")?;
    let _ = tokio::task::spawn_blocking(move || {
        replicas.checkpoint(points);
        replicas.checkpoint_high_watermarks();
    })
    .await;
    store.flush().await.context("final flush of the log store failed")?;
    store.close().await;
    zk_shutdown.cancel();
    let _ = session.await;
    tracing::info!("shut down: connections closed, fetchers stopped, log store flushed, ZooKeeper session closed");
    Ok(())
}

/// How long the reconciler waits for partitions it queued for opening before it serves a
/// new snapshot anyway (their requests then get a retriable error until they open).
const SERVE_OPENING_WAIT: Duration = Duration::from_millis(250);
