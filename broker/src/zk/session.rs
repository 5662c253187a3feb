//! The broker's ZooKeeper session: connect and register at start-up (fatal errors are
//! returned to the caller), then keep the metadata snapshot current through persistent
//! recursive watches, and re-register with a fresh session after expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_common::ids::BrokerId;
use tributary_common::zk::{connect, ensure_persistent_paths};
use tributary_common::znode::{self, BrokerRegistration, Endpoint};
use tributary_common::acl::AclMap;
use tributary_common::snapshot::{self, Rewatch, Tracker};
use zookeeper_client::{AddWatchMode, Client, EventType, WatchedEvent};

use super::{get_or_create_cluster_id, register_broker, Error, ZkHandle};
use crate::metadata::ClusterMetadata;

/// What the session needs to (re-)register.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    /// zookeeper.connect
    pub connect: String,
    /// zookeeper.session.timeout.ms
    pub session_timeout: Duration,
    /// zookeeper.connection.timeout.ms
    pub connection_timeout: Duration,
    /// The SASL login and zookeeper.set.acl.
    pub security: tributary_common::zk::ZkSecurity,
    /// broker.id
    pub broker_id: BrokerId,
    /// advertised.listeners
    pub endpoints: Vec<Endpoint>,
    /// Their security protocols (listener.security.protocol.map).
    pub protocols: std::collections::BTreeMap<String, String>,
    /// broker.rack
    pub rack: Option<String>,
    /// cluster.id: the id a new cluster gets.
    pub cluster_id: Option<String>,
}

/// A registered session.
pub(crate) struct Registered {
    /// The session.
    pub client: Client,
    /// `/cluster/id`.
    pub cluster_id: String,
    /// czxid of `/brokers/ids/<id>`.
    pub broker_epoch: i64,
}

/// Connects, creates Kafka's persistent paths and `/cluster/id`, and registers the broker.
///
/// # Errors
/// A sentence for the operator: ZooKeeper unreachable, or the broker id taken.
pub(crate) async fn establish(cfg: &SessionConfig) -> anyhow::Result<Registered> {
    let client = connect(&cfg.connect, cfg.session_timeout, cfg.connection_timeout, &cfg.security).await?;
    ensure_persistent_paths(&client).await.map_err(|e| anyhow::anyhow!("creating Kafka's znodes failed: {e}"))?;
    let cluster_id = get_or_create_cluster_id(&client, cfg.cluster_id.as_deref()).await?;
    if cfg.cluster_id.as_deref().is_some_and(|wanted| wanted != cluster_id) {
        tracing::warn!(cluster_id, wanted = cfg.cluster_id.as_deref(), "this ZooKeeper already holds a cluster with another id; cluster.id applies only to a new cluster, so it is ignored");
    }
    let registration = BrokerRegistration::new(&cfg.endpoints, cfg.rack.clone(), tributary_common::time::now_ms())
        .with_protocols(|listener| cfg.protocols.get(listener).cloned());
    // A broker restarted right after kill -9 finds its previous session's registration
    // still there until that session times out. Kafka gives up at once; we wait it out
    // when the node advertises our own (just bound) endpoints, and refuse otherwise.
    let patience = cfg.session_timeout + cfg.session_timeout / 2;
    let started = tokio::time::Instant::now();
    let broker_epoch = loop {
        match register_broker(&client, cfg.broker_id, &registration).await {
            // Same endpoints as ours, which this process has just bound: our previous run.
            Err(Error::DuplicateBrokerId { owner, endpoints, .. })
                if started.elapsed() < patience && endpoints == registration.endpoints =>
            {
                tracing::warn!(previous_session = format!("{owner:#x}"), "the registration of this broker's previous run is still in ZooKeeper; waiting for its session to expire");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other?,
        }
    };
    tracing::info!(broker_epoch, cluster_id, endpoints = ?registration.endpoints, "registered in ZooKeeper at {}", znode::broker_path(cfg.broker_id));
    Ok(Registered { client, cluster_id, broker_epoch })
}

enum Outcome {
    Expired,
    Shutdown,
    /// Connected again (possibly to another ensemble member) after a disconnection: the
    /// persistent watches are set afresh, as they do not reliably survive the move.
    Reconnected,
}

/// Runs until `shutdown`: publishes metadata snapshots to `metadata`, re-registers after
/// session expiry, and on shutdown closes the session so `/brokers/ids/<id>` vanishes now.
pub(crate) async fn run_session(
    handle: ZkHandle,
    cfg: SessionConfig,
    first: Registered,
    metadata: watch::Sender<Option<Arc<ClusterMetadata>>>,
    shutdown: CancellationToken,
) {
    let mut registered = first;
    loop {
        handle.set(Some(registered.client.clone()));
        let outcome = watch_metadata(&registered.client, &registered.cluster_id, &metadata, &shutdown).await;
        if matches!(outcome, Outcome::Reconnected) {
            tracing::info!("reconnected to ZooKeeper; setting the metadata watches again");
            continue;
        }
        handle.set(None);
        match outcome {
            Outcome::Reconnected => unreachable!("handled above"),
            Outcome::Shutdown => {
                close(registered.client).await;
                return;
            }
            Outcome::Expired => {
                tracing::warn!(
                    "ZooKeeper session expired; /brokers/ids/{} is gone until this broker re-registers",
                    cfg.broker_id
                );
            }
        }
        registered = loop {
            if shutdown.is_cancelled() {
                return;
            }
            match establish(&cfg).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::error!(error = %e, "re-registering in ZooKeeper failed; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        tracing::info!(broker_epoch = registered.broker_epoch, "re-registered after session expiry");
    }
}

async fn close(client: Client) {
    let mut state = client.state_watcher();
    drop(client);
    let _ =
        tokio::time::timeout(Duration::from_secs(3), async { while !state.changed().await.is_terminated() {} }).await;
}

/// What the broker has read of the cluster on this session: the snapshot (read whole at
/// the start, then only what each watch event names) and the ACLs.
struct View {
    tracker: Tracker,
    acls: Option<AclMap>,
}

/// Brings the view up to date (the changes noted in its tracker, the ACLs when
/// `acls_changed`; everything on the first call) and publishes it if it changed. A failure
/// leaves the previous view published and forgets the rest, so the next call reads it whole.
async fn reload(
    client: &Client,
    cluster_id: &str,
    view: &mut View,
    acls_changed: bool,
    metadata: &watch::Sender<Option<Arc<ClusterMetadata>>>,
) {
    if acls_changed || view.acls.is_none() {
        match tributary_common::zk::read_acls(client).await {
            Ok(acls) => view.acls = Some(acls),
            Err(source) => {
                view.acls = None;
                let path = tributary_common::acl::LITERAL_ROOT.to_string();
                return reload_failed(&snapshot::LoadError { path, source });
            }
        }
    }
    match view.tracker.current(client).await {
        Ok(snapshot) => {
            let Some(acls) = &view.acls else { return };
            let m = super::metadata_from(snapshot, acls, cluster_id);
            metadata.send_if_modified(|current| {
                if current.as_deref() == Some(&m) {
                    false
                } else {
                    *current = Some(Arc::new(m));
                    true
                }
            });
        }
        Err(e) => reload_failed(&e),
    }
}

fn reload_failed(e: &snapshot::LoadError) {
    if e.source == zookeeper_client::Error::ConnectionLoss {
        tracing::debug!("metadata reload interrupted by a lost connection; it runs again on reconnect");
    } else {
        tracing::warn!(error = %e, "reading cluster metadata from ZooKeeper failed; keeping the previous view until the next change, which reads it whole");
    }
}

async fn watch_metadata(
    client: &Client,
    cluster_id: &str,
    metadata: &watch::Sender<Option<Arc<ClusterMetadata>>>,
    shutdown: &CancellationToken,
) -> Outcome {
    let watches = async {
        Ok::<_, zookeeper_client::Error>((
            client.watch("/brokers", AddWatchMode::PersistentRecursive).await?,
            // Topic, broker, client and user configs, and the change notifications Kafka's
            // tools write beside them.
            client.watch("/config", AddWatchMode::PersistentRecursive).await?,
            client.watch(znode::DELETE_TOPICS, AddWatchMode::PersistentRecursive).await?,
            // ACLs, however written (kafka-acls through any broker, or straight to ZooKeeper).
            client.watch(tributary_common::acl::LITERAL_ROOT, AddWatchMode::PersistentRecursive).await?,
            client.watch("/kafka-acl-extended", AddWatchMode::PersistentRecursive).await?,
        ))
    };
    let (mut brokers, mut configs, mut deletions, mut acls, mut extended_acls) = match watches.await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "could not set ZooKeeper watches; treating the session as lost");
            return Outcome::Expired;
        }
    };
    let mut state = client.state_watcher();
    // The state the watches were set in is seen; what follows is a change.
    state.state();
    let mut view = View { tracker: Tracker::default(), acls: None };
    reload(client, cluster_id, &mut view, true, metadata).await;
    // Several znodes change per topic creation; coalesce bursts into one reload. A reload
    // costs in proportion to the cluster (the metadata is rebuilt and compared whole, and
    // the replica manager walks every partition), so the wait grows with the last one's
    // cost: while changes pour in, at most about half the time goes to reloading.
    let mut debounce = MIN_DEBOUNCE;
    loop {
        let event = tokio::select! {
            e = brokers.changed() => Changed::Metadata(e),
            e = configs.changed() => Changed::Metadata(e),
            e = deletions.changed() => Changed::Metadata(e),
            e = acls.changed() => Changed::Acls(e),
            e = extended_acls.changed() => Changed::Acls(e),
            s = state.changed() => match snapshot::rewatch(s) {
                // Set the watches again and re-read everything (see the rule).
                Rewatch::Again => return Outcome::Reconnected,
                Rewatch::Ended => return Outcome::Expired,
                Rewatch::Keep => continue,
            },
            _ = shutdown.cancelled() => return Outcome::Shutdown,
        };
        let mut noted = false;
        let mut acls_changed = false;
        if event.note(&mut view.tracker, &mut noted, &mut acls_changed).is_err() {
            return Outcome::Expired;
        }
        tokio::time::sleep(debounce).await;
        // Drain whatever else arrived meanwhile; one reload covers it all.
        loop {
            let more = tokio::select! {
                biased;
                e = brokers.changed() => Changed::Metadata(e),
                e = configs.changed() => Changed::Metadata(e),
                e = deletions.changed() => Changed::Metadata(e),
                e = acls.changed() => Changed::Acls(e),
                e = extended_acls.changed() => Changed::Acls(e),
                _ = std::future::ready(()) => break,
            };
            if more.note(&mut view.tracker, &mut noted, &mut acls_changed).is_err() {
                return Outcome::Expired;
            }
        }
        if noted || acls_changed {
            let started = Instant::now();
            reload(client, cluster_id, &mut view, acls_changed, metadata).await;
            debounce = next_debounce(started.elapsed());
        }
    }
}

/// The shortest wait for more changes before a reload.
const MIN_DEBOUNCE: Duration = Duration::from_millis(15);
/// The longest: a change is never kept from the brokers' view for longer.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);

/// The wait before the next reload, after one that took `last`.
fn next_debounce(last: Duration) -> Duration {
    last.clamp(MIN_DEBOUNCE, MAX_DEBOUNCE)
}

/// One event from the watches.
enum Changed {
    /// Under `/brokers`, `/config` or `/admin/delete_topics`.
    Metadata(WatchedEvent),
    /// Under an ACL root.
    Acls(WatchedEvent),
}

impl Changed {
    /// Notes the change in `tracker` (setting `noted`) or `acls_changed`; `Err` when the
    /// event reports the session's end.
    fn note(self, tracker: &mut Tracker, noted: &mut bool, acls_changed: &mut bool) -> Result<(), ()> {
        let (Changed::Metadata(e) | Changed::Acls(e)) = &self;
        if e.event_type == EventType::Session {
            return if e.session_state.is_terminated() { Err(()) } else { Ok(()) };
        }
        match self {
            Changed::Metadata(e) => {
                *noted |= tracker.note(&e.path);
            }
            Changed::Acls(_) => *acls_changed = true,
        }
        Ok(())
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_before_a_reload_follows_the_last_reloads_cost_within_bounds() {
        let ms = Duration::from_millis;
        // (last reload took) -> wait before the next
        let cases = [(ms(0), ms(15)), (ms(3), ms(15)), (ms(15), ms(15)), (ms(120), ms(120)), (ms(500), ms(500)), (ms(4_000), ms(500))];
        for (last, wait) in cases {
            assert_eq!(next_debounce(last), wait, "after {last:?}");
        }
    }
}
