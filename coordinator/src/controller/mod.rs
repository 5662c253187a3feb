//! The controller role. Several coordinators may run; the one that creates the ephemeral
//! `/controller` (in the same multi that bumps `/controller_epoch`) is active, the others
//! wait for that znode to vanish. The active controller watches brokers, topics and
//! deletion marks, plans writes with [`plan::plan`], and makes every write a multi that
//! first checks `/controller_epoch` at the version it won: a controller that lost its
//! session or was superseded can no longer change anything, and resigns.

pub mod plan;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_common::snapshot::{self, ClusterSnapshot, Rewatch, Tracker};
use tributary_common::telemetry;
use tributary_common::zk::{connect, ensure_persistent_paths, ephemeral, persistent};
use tributary_common::znode::{self, ControllerZNode};
use zookeeper_client::{AddWatchMode, CheckWriteError, Client, EventType, MultiWriteResult, SessionState};

use self::plan::Action;

/// Controller settings.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Written into `/controller` as `brokerid`.
    pub controller_id: i32,
    /// zookeeper.connect
    pub zookeeper_connect: String,
    /// The ZooKeeper login and zookeeper.set.acl.
    pub zookeeper: tributary_common::zk::ZkSecurity,
    /// zookeeper.session.timeout.ms
    pub session_timeout: Duration,
    /// unclean.leader.election.enable (cluster default)
    pub unclean_leader_election: bool,
    /// auto.leader.rebalance.enable
    pub auto_leader_rebalance: bool,
    /// leader.imbalance.check.interval.seconds
    pub leader_imbalance_check_interval: Duration,
    /// leader.imbalance.per.broker.percentage
    pub leader_imbalance_per_broker_percentage: u32,
}

/// What the admin API reports about this coordinator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Whether a ZooKeeper session is open.
    pub connected: bool,
    /// Whether this coordinator is the active controller.
    pub active: bool,
    /// The controller epoch this coordinator won, when active.
    pub controller_epoch: Option<i32>,
}

/// The current ZooKeeper session, shared with the admin API.
pub type ZkSlot = Arc<RwLock<Option<Client>>>;

/// Why the active phase ended.
#[derive(Debug, PartialEq, Eq)]
enum Resign {
    /// Another controller holds a newer epoch (our fenced write failed).
    Fenced,
    /// The session is gone.
    SessionLost,
    /// Asked to stop.
    Shutdown,
}

/// Controller errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/controller_epoch` moved on: another controller is active.
    #[error("fenced: /controller_epoch no longer has version {expected_version}; another controller is active")]
    Fenced {
        /// The version we hold.
        expected_version: i32,
    },
    /// The ZooKeeper session ended while the controller read the cluster.
    #[error("the ZooKeeper session ended")]
    SessionLost,
    /// A ZooKeeper operation failed.
    #[error("ZooKeeper operation on {path} failed: {source}")]
    Zk {
        /// Path involved.
        path: String,
        /// Client error.
        source: zookeeper_client::Error,
    },
}

fn zk(path: impl Into<String>) -> impl FnOnce(zookeeper_client::Error) -> Error {
    let path = path.into();
    move |source| Error::Zk { path, source }
}

/// Tries once to become controller. `Some((epoch, epoch_zk_version))` on success.
///
/// # Errors
/// ZooKeeper failures other than losing the race.
pub async fn try_elect(client: &Client, controller_id: i32) -> Result<Option<(i32, i32)>, Error> {
    let (data, stat) = match client.get_data(znode::CONTROLLER_EPOCH).await {
        Ok(found) => found,
        Err(zookeeper_client::Error::NoNode) => {
            // Kafka starts the epoch at 0; the first controller makes it 1.
            match client.create(znode::CONTROLLER_EPOCH, b"0", &persistent(znode::CONTROLLER_EPOCH)).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                Err(e) => return Err(zk(znode::CONTROLLER_EPOCH)(e)),
            }
            client.get_data(znode::CONTROLLER_EPOCH).await.map_err(zk(znode::CONTROLLER_EPOCH))?
        }
        Err(e) => return Err(zk(znode::CONTROLLER_EPOCH)(e)),
    };
    let epoch = znode::decode_controller_epoch(&data).unwrap_or(0);
    let new_epoch = epoch + 1;
    let mut multi = client.new_multi_writer();
    let payload = ControllerZNode::new(controller_id, tributary_common::time::now_ms()).encode();
    multi.add_create(znode::CONTROLLER, &payload, &ephemeral(znode::CONTROLLER)).map_err(zk(znode::CONTROLLER))?;
    multi
        .add_set_data(znode::CONTROLLER_EPOCH, new_epoch.to_string().as_bytes(), Some(stat.version))
        .map_err(zk(znode::CONTROLLER_EPOCH))?;
    match multi.commit().await {
        Ok(results) => {
            let version = results
                .into_iter()
                .find_map(|r| match r {
                    MultiWriteResult::SetData { stat } => Some(stat.version),
                    _ => None,
                })
                .unwrap_or(stat.version + 1);
            Ok(Some((new_epoch, version)))
        }
        Err(e) => match zookeeper_client::Error::from(e) {
            zookeeper_client::Error::NodeExists | zookeeper_client::Error::BadVersion => Ok(None),
            other => Err(zk(znode::CONTROLLER)(other)),
        },
    }
}

/// Applies one action, fenced by `/controller_epoch` at `epoch_version`.
///
/// # Errors
/// [`Error::Fenced`] when another controller took over; other ZooKeeper errors (a
/// concurrent change to a state znode shows up as `BadVersion` and is retried by the
/// next reconcile pass).
pub async fn apply(client: &Client, epoch_version: i32, action: &Action) -> Result<(), Error> {
    let mut w =
        client.new_check_writer(znode::CONTROLLER_EPOCH, Some(epoch_version)).map_err(zk(znode::CONTROLLER_EPOCH))?;
    match action {
        Action::CreateState { topic, partition, state } => {
            let parent = znode::partition_path(topic, *partition);
            client.mkdir(&parent, &persistent(&parent)).await.map_err(zk(&parent))?;
            let path = znode::partition_state_path(topic, *partition);
            w.add_create(&path, &state.encode(), &persistent(&path)).map_err(zk(&path))?;
        }
        Action::UpdateState { topic, partition, state, expected_version } => {
            let path = znode::partition_state_path(topic, *partition);
            w.add_set_data(&path, &state.encode(), Some(*expected_version)).map_err(zk(&path))?;
        }
        Action::DeleteTopic { topic } => {
            let partitions_path = znode::topic_partitions_path(topic);
            let partitions = match client.list_children(&partitions_path).await {
                Ok(p) => p,
                Err(zookeeper_client::Error::NoNode) => Vec::new(),
                Err(e) => return Err(zk(&partitions_path)(e)),
            };
            let mut paths = Vec::new();
            for p in &partitions {
                let partition_path = format!("{partitions_path}/{p}");
                if client.check_stat(&format!("{partition_path}/state")).await.map_err(zk(&partition_path))?.is_some() {
                    paths.push(format!("{partition_path}/state"));
                }
                paths.push(partition_path);
            }
            if client.check_stat(&partitions_path).await.map_err(zk(&partitions_path))?.is_some() {
                paths.push(partitions_path);
            }
            paths.push(znode::topic_path(topic));
            let config = znode::topic_config_path(topic);
            if client.check_stat(&config).await.map_err(zk(&config))?.is_some() {
                paths.push(config);
            }
            paths.push(znode::delete_topic_path(topic));
            for path in &paths {
                w.add_delete(path, None).map_err(zk(path))?;
            }
        }
        Action::DropDeletionMark { topic } => {
            let path = znode::delete_topic_path(topic);
            w.add_delete(&path, None).map_err(zk(&path))?;
        }
        Action::WriteAssignment { topic, assignment, expected_version } => {
            let path = znode::topic_path(topic);
            w.add_set_data(&path, &assignment.encode(), Some(*expected_version)).map_err(zk(&path))?;
        }
    }
    match w.commit().await {
        Ok(_) => Ok(()),
        Err(CheckWriteError::CheckFailed { .. }) => Err(Error::Fenced { expected_version: epoch_version }),
        Err(CheckWriteError::RequestFailed { source }) => Err(zk(znode::CONTROLLER_EPOCH)(source)),
        Err(CheckWriteError::OperationFailed { source, .. }) => Err(zk(describe(action))(source)),
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::CreateState { topic, partition, .. } | Action::UpdateState { topic, partition, .. } => {
            znode::partition_state_path(topic, *partition)
        }
        Action::DeleteTopic { topic } | Action::WriteAssignment { topic, .. } => znode::topic_path(topic),
        Action::DropDeletionMark { topic } => znode::delete_topic_path(topic),
    }
}

fn log_action(action: &Action) {
    match action {
        Action::CreateState { topic, partition, state } => {
            tracing::info!(target: "state_change", topic, partition, leader = state.leader, leader_epoch = state.leader_epoch, isr = ?state.isr, "new partition online")
        }
        Action::UpdateState { topic, partition, state, .. } if state.leader == znode::NO_LEADER => {
            tracing::warn!(target: "state_change", topic, partition, leader_epoch = state.leader_epoch, isr = ?state.isr, "partition offline: no live in-sync replica; it returns when a replica in the ISR comes back (or enable unclean.leader.election.enable, accepting data loss)")
        }
        Action::UpdateState { topic, partition, state, .. } => {
            tracing::info!(target: "state_change", topic, partition, leader = state.leader, leader_epoch = state.leader_epoch, isr = ?state.isr, "leader and ISR changed")
        }
        Action::DeleteTopic { topic } => {
            tracing::info!(target: "state_change", topic, "deleted topic")
        }
        Action::DropDeletionMark { topic } => {
            tracing::info!(topic, "removed a deletion mark for a topic that does not exist")
        }
        Action::WriteAssignment { topic, assignment, .. } => {
            tracing::info!(target: "state_change", topic, replicas = ?assignment.partitions, adding = ?assignment.adding_replicas, removing = ?assignment.removing_replicas, "partition reassignment: assignment written")
        }
    }
}

/// Deletes the ISR change notifications leaders left in `/isr_change_notification` (Kafka's
/// controller reads them to refresh brokers' caches; here brokers watch the state znodes
/// themselves, so the controller only logs and removes them), fenced like every write.
async fn consume_isr_notifications(client: &Client, epoch_version: i32) -> Result<(), Error> {
    let children = match client.list_children(znode::ISR_CHANGE_NOTIFICATION).await {
        Ok(c) => c,
        Err(zookeeper_client::Error::NoNode) => return Ok(()),
        Err(e) => return Err(zk(znode::ISR_CHANGE_NOTIFICATION)(e)),
    };
    for child in children {
        let path = format!("{}/{child}", znode::ISR_CHANGE_NOTIFICATION);
        if let Ok((data, _)) = client.get_data(&path).await {
            if let Ok(n) = znode::IsrChangeNotification::decode(&path, &data) {
                let partitions: Vec<String> =
                    n.partitions.iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect();
                tracing::debug!(?partitions, "leaders reported ISR changes");
            }
        }
        let mut w = client
            .new_check_writer(znode::CONTROLLER_EPOCH, Some(epoch_version))
            .map_err(zk(znode::CONTROLLER_EPOCH))?;
        w.add_delete(&path, None).map_err(zk(&path))?;
        match w.commit().await {
            Ok(_) => {}
            Err(CheckWriteError::CheckFailed { .. }) => return Err(Error::Fenced { expected_version: epoch_version }),
            Err(_) => {} // deleted by someone else meanwhile
        }
    }
    Ok(())
}

/// Partition states written in one fenced multi: up to two operations each (a new
/// partition's znode and its state, or one conditional state update), well under
/// ZooKeeper's 1 MB request limit.
const STATE_BATCH: usize = 500;

/// How many actions from `from` on can go in one multi with `actions[from]`: the
/// creations of the same topic, or updates of partitions not updated before in the run (a
/// second update of one partition would expect a zkVersion the first one moves). 0 for an
/// action written alone.
fn state_run(actions: &[Action], from: usize) -> usize {
    match actions.get(from) {
        Some(Action::CreateState { topic, .. }) => actions[from..]
            .iter()
            .take_while(|a| matches!(a, Action::CreateState { topic: t, .. } if t == topic))
            .count(),
        Some(Action::UpdateState { .. }) => {
            let mut seen = std::collections::HashSet::new();
            actions[from..]
                .iter()
                .take_while(|a| match a {
                    Action::UpdateState { topic, partition, .. } => seen.insert((topic.as_str(), *partition)),
                    _ => false,
                })
                .count()
        }
        _ => 0,
    }
}

/// Writes `chunk` (one [`state_run`]) in one multi fenced by `/controller_epoch`, as
/// Kafka's controller pipelines a topic's new partitions or a failed broker's leader
/// changes instead of a round trip each: at 100,000 partitions one by one, a broker's
/// failure took its 33,000 partitions a minute to move. Fails as a whole (a partition's
/// znode already there, a state changed by its leader meanwhile): the caller then applies
/// the actions one by one.
async fn write_states(client: &Client, epoch_version: i32, chunk: &[Action]) -> Result<(), Error> {
    let first = match chunk.first() {
        Some(Action::CreateState { topic, .. }) => {
            let partitions = znode::topic_partitions_path(topic);
            client.mkdir(&partitions, &persistent(&partitions)).await.map_err(zk(&partitions))?;
            partitions
        }
        Some(action) => describe(action),
        None => return Ok(()),
    };
    let mut w =
        client.new_check_writer(znode::CONTROLLER_EPOCH, Some(epoch_version)).map_err(zk(znode::CONTROLLER_EPOCH))?;
    for action in chunk {
        match action {
            Action::CreateState { topic, partition, state } => {
                let parent = znode::partition_path(topic, *partition);
                w.add_create(&parent, &[], &persistent(&parent)).map_err(zk(&parent))?;
                let path = znode::partition_state_path(topic, *partition);
                w.add_create(&path, &state.encode(), &persistent(&path)).map_err(zk(&path))?;
            }
            Action::UpdateState { topic, partition, state, expected_version } => {
                let path = znode::partition_state_path(topic, *partition);
                w.add_set_data(&path, &state.encode(), Some(*expected_version)).map_err(zk(&path))?;
            }
            _ => {}
        }
    }
    match w.commit().await {
        Ok(_) => Ok(()),
        Err(CheckWriteError::CheckFailed { .. }) => Err(Error::Fenced { expected_version: epoch_version }),
        Err(CheckWriteError::RequestFailed { source }) => Err(zk(znode::CONTROLLER_EPOCH)(source)),
        Err(CheckWriteError::OperationFailed { source, .. }) => Err(zk(first)(source)),
    }
}

/// Applies one action and logs it; a fenced write ends the pass (and this controller's term).
async fn apply_logged(client: &Client, epoch_version: i32, action: &Action) -> Result<(), Error> {
    match apply(client, epoch_version, action).await {
        Ok(()) => log_action(action),
        Err(Error::Fenced { expected_version }) => return Err(Error::Fenced { expected_version }),
        Err(e) => {
            tracing::warn!(error = %e, "a controller write did not apply; it is retried on the next pass")
        }
    }
    Ok(())
}

/// Applies planned actions in order; a fenced write ends the pass (and this controller's term).
/// New partitions and leader/ISR updates go in batches ([`write_states`]).
async fn apply_all(client: &Client, epoch_version: i32, actions: Vec<Action>) -> Result<(), Error> {
    let mut next = 0;
    while next < actions.len() {
        let run = state_run(&actions, next);
        if run < 2 {
            apply_logged(client, epoch_version, &actions[next]).await?;
            next += 1;
            continue;
        }
        for chunk in actions[next..next + run].chunks(STATE_BATCH) {
            match write_states(client, epoch_version, chunk).await {
                Ok(()) => chunk.iter().for_each(log_action),
                Err(Error::Fenced { expected_version }) => return Err(Error::Fenced { expected_version }),
                Err(e) => {
                    tracing::debug!(error = %e, partitions = chunk.len(), "writing partition states in one batch failed; writing them one by one");
                    for action in chunk {
                        apply_logged(client, epoch_version, action).await?;
                    }
                }
            }
        }
        next += run;
    }
    Ok(())
}

/// Consumes one request znode the brokers, the HTTP API or Kafka's tools write for the
/// controller: reads it, plans the writes from its payload and the cluster (`plan` also
/// logs what it makes of it), applies them, and deletes the request, fenced like every
/// controller write. No request, nothing to do.
async fn consume_request(
    client: &Client,
    view: &mut View,
    epoch_version: i32,
    path: &str,
    plan: impl FnOnce(&ClusterSnapshot, &[u8]) -> Vec<Action>,
) -> Result<(), Error> {
    let (data, stat) = match client.get_data(path).await {
        Ok(found) => found,
        Err(zookeeper_client::Error::NoNode) => return Ok(()),
        Err(e) => return Err(zk(path)(e)),
    };
    let actions = plan(view.current(client).await?, &data);
    apply_all(client, epoch_version, actions).await?;
    let mut w =
        client.new_check_writer(znode::CONTROLLER_EPOCH, Some(epoch_version)).map_err(zk(znode::CONTROLLER_EPOCH))?;
    w.add_delete(path, Some(stat.version)).map_err(zk(path))?;
    match w.commit().await {
        Err(CheckWriteError::CheckFailed { .. }) => Err(Error::Fenced { expected_version: epoch_version }),
        _ => Ok(()),
    }
}

/// The partitions a `{"version":1,"partitions":[...]}` election request names.
fn requested_partitions(path: &str, data: &[u8]) -> Option<std::collections::BTreeSet<(String, i32)>> {
    match znode::PartitionList::decode(path, data) {
        Ok(request) => Some(request.partitions.into_iter().map(|p| (p.topic, p.partition)).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a request that is not Kafka's partition list JSON");
            None
        }
    }
}

/// Runs a requested preferred-replica election (`/admin/preferred_replica_election`, written
/// by brokers for ElectLeaders, the HTTP API or legacy tools).
async fn preferred_election_request(client: &Client, view: &mut View, epoch: i32, epoch_version: i32) -> Result<(), Error> {
    let path = znode::PREFERRED_REPLICA_ELECTION;
    consume_request(client, view, epoch_version, path, |snapshot, data| {
        let Some(wanted) = requested_partitions(path, data) else { return Vec::new() };
        let actions = plan::preferred_elections(snapshot, epoch, (!wanted.is_empty()).then_some(&wanted));
        tracing::info!(requested = wanted.len(), moving = actions.len(), "preferred-replica election requested");
        actions
    })
    .await
}

/// Runs a requested unclean election (`/admin/unclean_leader_election`, written by a
/// broker for ElectLeaders(UNCLEAN)).
async fn unclean_election_request(client: &Client, view: &mut View, epoch: i32, epoch_version: i32) -> Result<(), Error> {
    let path = znode::UNCLEAN_LEADER_ELECTION;
    consume_request(client, view, epoch_version, path, |snapshot, data| {
        let Some(wanted) = requested_partitions(path, data) else { return Vec::new() };
        let actions = plan::unclean_elections(snapshot, epoch, &wanted);
        tracing::warn!(target: "state_change", requested = wanted.len(), electing = actions.len(), "unclean leader election requested (ElectLeaders UNCLEAN): replicas outside the ISR may lead, and records only the old leader had are lost");
        actions
    })
    .await
}

/// Starts the reassignments requested in `/admin/reassign_partitions` (by
/// `kafka-reassign-partitions`, a broker taking AlterPartitionReassignments, or the HTTP API).
async fn reassignment_request(client: &Client, view: &mut View, epoch: i32, epoch_version: i32) -> Result<(), Error> {
    let path = znode::REASSIGN_PARTITIONS;
    consume_request(client, view, epoch_version, path, |snapshot, data| match znode::ReassignPartitions::decode(path, data) {
        Ok(request) => {
            let (actions, refused) = plan::reassignment_requests(snapshot, epoch, &request.partitions);
            for (topic, partition, reason) in refused {
                tracing::warn!(topic, partition, reason, "ignoring a reassignment request for this partition");
            }
            tracing::info!(partitions = request.partitions.len(), "partition reassignment requested");
            actions
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a reassignment request that is not Kafka's JSON");
            Vec::new()
        }
    })
    .await
}

/// One reconcile pass: read, plan, write. Reassignments move forward when nothing more
/// urgent (elections, new partitions) is to be written.
async fn reconcile(client: &Client, view: &mut View, epoch: i32, epoch_version: i32, unclean: bool) -> Result<(), Error> {
    consume_isr_notifications(client, epoch_version).await?;
    preferred_election_request(client, view, epoch, epoch_version).await?;
    unclean_election_request(client, view, epoch, epoch_version).await?;
    reassignment_request(client, view, epoch, epoch_version).await?;
    let snapshot = view.current(client).await?;
    let mut actions = plan::plan(snapshot, epoch, unclean);
    if actions.is_empty() {
        actions = plan::reassignment_progress(snapshot, epoch);
    }
    apply_all(client, epoch_version, actions).await
}

/// Kafka's periodic automatic leader rebalance.
async fn rebalance_leaders(
    client: &Client,
    view: &mut View,
    epoch: i32,
    epoch_version: i32,
    percentage: u32,
) -> Result<(), Error> {
    let actions = plan::auto_rebalance(view.current(client).await?, epoch, percentage);
    if !actions.is_empty() {
        tracing::info!(partitions = actions.len(), "leader imbalance above leader.imbalance.per.broker.percentage; moving leadership back to preferred replicas");
    }
    apply_all(client, epoch_version, actions).await
}

type Watches = (
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
    zookeeper_client::PersistentWatcher,
);

/// What the active controller knows of the cluster: the snapshot, kept current from the
/// events of its metadata watches (brokers and topics, deletion marks, topic configs).
struct View {
    tracker: Tracker,
    watches: Watches,
}

impl View {
    /// The snapshot with every change reported so far read in: the events waiting on the
    /// metadata watches (including those of this controller's own writes, which ZooKeeper
    /// reports before answering the write) are noted first.
    async fn current(&mut self, client: &Client) -> Result<&ClusterSnapshot, Error> {
        loop {
            let (brokers, deletions, configs, ..) = &mut self.watches;
            let event = tokio::select! {
                biased;
                e = brokers.changed() => e,
                e = deletions.changed() => e,
                e = configs.changed() => e,
                _ = std::future::ready(()) => break,
            };
            self.note(&event)?;
        }
        self.tracker.current(client).await.map_err(|e| Error::Zk { path: e.path, source: e.source })
    }

    /// Notes one event of a metadata watch; `Err` when it reports the session's end
    /// (after which its watcher must not be polled again).
    fn note(&mut self, event: &zookeeper_client::WatchedEvent) -> Result<(), Error> {
        if event.event_type == EventType::Session {
            return if event.session_state.is_terminated() { Err(Error::SessionLost) } else { Ok(()) };
        }
        self.tracker.note(&event.path);
        Ok(())
    }
}

/// The active controller's watches: brokers and topics (recursively), deletion marks,
/// topic configs, `/controller` itself, ISR notifications and election requests.
async fn controller_watches(client: &Client) -> Result<Watches, zookeeper_client::Error> {
    Ok((
        client.watch("/brokers", AddWatchMode::PersistentRecursive).await?,
        client.watch(znode::DELETE_TOPICS, AddWatchMode::PersistentRecursive).await?,
        client.watch(znode::CONFIG_TOPICS, AddWatchMode::PersistentRecursive).await?,
        client.watch(znode::CONTROLLER, AddWatchMode::Persistent).await?,
        client.watch(znode::ISR_CHANGE_NOTIFICATION, AddWatchMode::Persistent).await?,
        client.watch(znode::PREFERRED_REPLICA_ELECTION, AddWatchMode::Persistent).await?,
        client.watch(znode::UNCLEAN_LEADER_ELECTION, AddWatchMode::Persistent).await?,
        client.watch(znode::REASSIGN_PARTITIONS, AddWatchMode::Persistent).await?,
    ))
}

async fn active(
    client: &Client,
    cfg: &ControllerConfig,
    epoch: i32,
    epoch_version: i32,
    shutdown: &CancellationToken,
) -> Resign {
    let mut view = match controller_watches(client).await {
        Ok(watches) => View { tracker: Tracker::default(), watches },
        Err(e) => {
            tracing::warn!(error = %e, "could not set watches as controller; resigning");
            return Resign::SessionLost;
        }
    };
    let mut state = client.state_watcher();
    // The state the watches were set in is seen; what follows is a change.
    state.state();
    let mut periodic = tokio::time::interval(Duration::from_secs(10));
    let mut purge = tokio::time::interval(Duration::from_secs(60));
    let mut imbalance = tokio::time::interval_at(
        tokio::time::Instant::now() + cfg.leader_imbalance_check_interval,
        cfg.leader_imbalance_check_interval,
    );
    loop {
        // A pass over many partitions can take a while; a shutdown does not wait for it (the
        // next active controller plans from ZooKeeper what is left, as after a crash).
        let pass = tokio::select! {
            r = reconcile(client, &mut view, epoch, epoch_version, cfg.unclean_leader_election) => r,
            _ = shutdown.cancelled() => return Resign::Shutdown,
        };
        match pass {
            Err(Error::Fenced { .. }) => return Resign::Fenced,
            Err(Error::SessionLost) => return Resign::SessionLost,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass failed; retrying on the next change")
            }
            Ok(()) => {}
        }
        let (brokers, deletions, configs, controller, isr_changes, elections, unclean_elections, reassignments) =
            &mut view.watches;
        let event = tokio::select! {
            e = brokers.changed() => Event::Metadata(e),
            e = deletions.changed() => Event::Metadata(e),
            e = configs.changed() => Event::Metadata(e),
            e = isr_changes.changed() => Event::Other(e),
            e = elections.changed() => Event::Other(e),
            e = unclean_elections.changed() => Event::Other(e),
            e = reassignments.changed() => Event::Other(e),
            _ = imbalance.tick(), if cfg.auto_leader_rebalance => Event::Rebalance,
            e = controller.changed() => {
                if e.event_type == EventType::NodeDeleted || e.event_type == EventType::NodeDataChanged {
                    tracing::warn!("/controller was removed or replaced; resigning");
                    return Resign::Fenced;
                }
                Event::Other(e)
            },
            s = state.changed() => {
                let again = match snapshot::rewatch(s) {
                    Rewatch::Ended => return Resign::SessionLost,
                    Rewatch::Again => true,
                    Rewatch::Keep => false,
                };
                if again {
                    // Set the watches again and read the cluster whole (see the rule).
                    match controller_watches(client).await {
                        Ok(w) => {
                            view.watches = w;
                            view.tracker.reset();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not set watches again after reconnecting; resigning");
                            return Resign::SessionLost;
                        }
                    }
                }
                Event::Tick
            },
            _ = periodic.tick() => Event::Tick,
            _ = purge.tick() => {
                purge_config_changes(client, tributary_common::time::now_ms()).await;
                continue;
            },
            _ = shutdown.cancelled() => return Resign::Shutdown,
        };
        match event {
            Event::Metadata(e) => {
                if view.note(&e).is_err() {
                    return Resign::SessionLost;
                }
            }
            Event::Other(e) => {
                if e.event_type == EventType::Session && e.session_state.is_terminated() {
                    return Resign::SessionLost;
                }
            }
            Event::Rebalance => {
                let percentage = cfg.leader_imbalance_per_broker_percentage;
                let pass = tokio::select! {
                    r = rebalance_leaders(client, &mut view, epoch, epoch_version, percentage) => r,
                    _ = shutdown.cancelled() => return Resign::Shutdown,
                };
                match pass {
                    Err(Error::Fenced { .. }) => return Resign::Fenced,
                    Err(Error::SessionLost) => return Resign::SessionLost,
                    Err(e) => tracing::warn!(error = %e, "leader rebalance check failed; retrying next interval"),
                    Ok(()) => {}
                }
            }
            Event::Tick => {}
        }
        // Coalesce the burst that a topic creation or broker failure produces.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What woke the active controller.
enum Event {
    /// A change under `/brokers`, `/admin/delete_topics` or `/config/topics`.
    Metadata(zookeeper_client::WatchedEvent),
    /// A request or notification znode, or `/controller`.
    Other(zookeeper_client::WatchedEvent),
    /// Time for the automatic leader rebalance check.
    Rebalance,
    /// The periodic pass, or a reconnect.
    Tick,
}

/// How long a `/config/changes` notification is kept: Kafka's brokers purge them after
/// 15 minutes, by when every live broker has read the change it names.
const CONFIG_CHANGE_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The notifications (name, creation time in ms) old enough to delete at `now_ms`.
fn expired_changes(children: &[(String, i64)], now_ms: i64) -> Vec<String> {
    children
        .iter()
        .filter(|(name, ctime)| name.starts_with("config_change_") && now_ms - ctime > CONFIG_CHANGE_RETENTION_MS)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Deletes expired `/config/changes` notifications, as Kafka's brokers do (here the
/// active controller alone does it, so one process owns the deletion).
async fn purge_config_changes(client: &Client, now_ms: i64) {
    let Ok(children) = client.list_children(znode::CONFIG_CHANGES).await else { return };
    let mut stamped = Vec::new();
    for name in children {
        if let Ok(Some(stat)) = client.check_stat(&format!("{}/{name}", znode::CONFIG_CHANGES)).await {
            stamped.push((name, stat.ctime));
        }
    }
    let expired = expired_changes(&stamped, now_ms);
    for name in &expired {
        let _ = client.delete(&format!("{}/{name}", znode::CONFIG_CHANGES), None).await;
    }
    if !expired.is_empty() {
        tracing::debug!(deleted = expired.len(), "purged config change notifications older than 15 minutes");
    }
}

/// Deletes `/controller` if this session owns it, so that a fresh election can happen (a
/// fenced controller's own ephemeral would otherwise keep every coordinator standing by).
async fn release_controller(client: &Client) {
    if let Ok((_, stat)) = client.get_data(znode::CONTROLLER).await {
        if stat.ephemeral_owner == client.session_id().0 {
            let _ = client.delete(znode::CONTROLLER, Some(stat.version)).await;
        }
    }
}

/// Waits until `/controller` is absent (or the session ends / shutdown).
async fn standby(client: &Client, shutdown: &CancellationToken) -> Result<(), Resign> {
    loop {
        let (stat, watcher) = match client.check_and_watch_stat(znode::CONTROLLER).await {
            Ok(found) => found,
            Err(_) => return Err(Resign::SessionLost),
        };
        if stat.is_none() {
            return Ok(());
        }
        tokio::select! {
            e = watcher.changed() => {
                if e.event_type == EventType::Session && e.session_state.is_terminated() {
                    return Err(Resign::SessionLost);
                }
            },
            _ = shutdown.cancelled() => return Err(Resign::Shutdown),
        }
    }
}

/// Runs the controller role until `shutdown`: connect (retrying), elect, act or stand by,
/// and start over after a lost session.
pub async fn run(cfg: ControllerConfig, slot: ZkSlot, status: watch::Sender<Status>, shutdown: CancellationToken) {
    'session: loop {
        let client = loop {
            match connect(&cfg.zookeeper_connect, cfg.session_timeout, Duration::from_secs(5), &cfg.zookeeper).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = %e, "coordinator cannot reach ZooKeeper; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        if let Err(e) = ensure_persistent_paths(&client).await {
            tracing::warn!(error = %e, "could not create Kafka's persistent znodes; retrying");
            continue;
        }
        *slot.write().expect("zk slot lock") = Some(client.clone());
        status.send_replace(Status { connected: true, active: false, controller_epoch: None });
        loop {
            match try_elect(&client, cfg.controller_id).await {
                Ok(Some((epoch, version))) => {
                    // From here until it resigns, every line this process logs names the
                    // epoch it acts under.
                    telemetry::set_identity(&[
                        ("controller_id", cfg.controller_id.to_string()),
                        ("controller_epoch", epoch.to_string()),
                    ]);
                    tracing::info!("became the active controller");
                    status.send_replace(Status { connected: true, active: true, controller_epoch: Some(epoch) });
                    let why = active(&client, &cfg, epoch, version, &shutdown).await;
                    status.send_replace(Status { connected: true, active: false, controller_epoch: None });
                    telemetry::set_identity(&[("controller_id", cfg.controller_id.to_string())]);
                    match why {
                        Resign::Shutdown => break 'session,
                        Resign::Fenced => {
                            tracing::warn!(
                                controller_epoch = epoch,
                                "fenced: /controller_epoch moved past the epoch this coordinator won; resigning"
                            );
                            release_controller(&client).await;
                        }
                        Resign::SessionLost => {
                            tracing::warn!(
                                controller_epoch = epoch,
                                "ZooKeeper session lost while active; reconnecting as standby"
                            );
                            break;
                        }
                    }
                }
                Ok(None) => {
                    tracing::info!("another coordinator is the active controller; standing by");
                    match standby(&client, &shutdown).await {
                        Ok(()) => continue,
                        Err(Resign::Shutdown) => break 'session,
                        Err(_) => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller election failed; retrying");
                    if matches!(client.state(), SessionState::Expired | SessionState::Closed | SessionState::AuthFailed)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        *slot.write().expect("zk slot lock") = None;
        status.send_replace(Status::default());
        if shutdown.is_cancelled() {
            return;
        }
    }
    // Shutdown: close the session so /controller vanishes and a standby takes over at once.
    let client = slot.write().expect("zk slot lock").take();
    status.send_replace(Status::default());
    if let Some(client) = client {
        let mut state = client.state_watcher();
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(3), async { while !state.changed().await.is_terminated() {} })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_common::znode::PartitionState;

    #[test]
    fn config_change_notifications_expire_after_fifteen_minutes() {
        let now = 100 * 60_000;
        let children = [
            ("config_change_0000000001".to_string(), now - 16 * 60_000),
            ("config_change_0000000002".to_string(), now - 15 * 60_000),
            ("config_change_0000000003".to_string(), now - 1_000),
            ("something_else".to_string(), 0),
        ];
        assert_eq!(expired_changes(&children, now), vec!["config_change_0000000001".to_string()]);
    }

    #[test]
    fn new_partitions_of_one_topic_and_updates_of_distinct_partitions_go_together() {
        let create = |topic: &str, partition| Action::CreateState {
            topic: topic.into(),
            partition,
            state: PartitionState::new(1, 0, 1, vec![1]),
        };
        let update = |topic: &str, partition| Action::UpdateState {
            topic: topic.into(),
            partition,
            state: PartitionState::new(2, 1, 1, vec![2]),
            expected_version: 0,
        };
        let delete = Action::DeleteTopic { topic: "a".into() };
        let actions = vec![
            create("a", 0),  // 0
            create("a", 1),  // 1
            create("a", 2),  // 2
            create("b", 0),  // 3
            delete.clone(),  // 4
            create("b", 1),  // 5
            create("c", 0),  // 6
            update("a", 0),  // 7
            update("a", 1),  // 8
            update("b", 0),  // 9
            update("a", 0),  // 10: a second update of a-0
            update("c", 0),  // 11
            delete,          // 12
            update("c", 1),  // 13
        ];
        // (from) -> how many are written together from there on
        let cases = [(0, 3), (1, 2), (3, 1), (4, 0), (5, 1), (6, 1), (7, 3), (8, 4), (10, 2), (12, 0), (13, 1), (14, 0)];
        for (from, run) in cases {
            assert_eq!(state_run(&actions, from), run, "from {from}");
        }
    }
}
