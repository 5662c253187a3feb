//! Follower replication: one fetcher task per leader broker, pulling the partitions this
//! broker follows with the Kafka Fetch protocol (replica id set), as Kafka's
//! `ReplicaFetcherThread` does.
//!
//! Before fetching a partition at a new leader epoch the fetcher asks the leader, with
//! OffsetForLeaderEpoch, where this replica's latest epoch ends in the leader's log and
//! truncates anything beyond it (KIP-101, repeated per KIP-279 until the epochs agree), so
//! a former leader drops records the new leader never had. Fetched batches are appended
//! unchanged; the follower's high watermark follows the leader's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId as WireBrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_common::ids::{BrokerId, TopicPartition};
use tributary_common::kafka_client::Connection;
use tributary_common::znode::Endpoint;

use super::{Partition, ReplicaManager};
use crate::log::ReplicaAppendError;
use crate::metadata::ClusterMetadata;
use crate::record as batch;

/// Fetch versions used towards leaders: v11 carries the replica id and per-partition
/// leader epochs; OffsetForLeaderEpoch v3 carries the replica id.
const FETCH_VERSION: i16 = 11;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 3;
/// How long a partition waits after a retriable error from the leader.
const PARTITION_RETRY: Duration = Duration::from_millis(200);

/// The fetchers' settings (Kafka's `replica.fetch.*`).
#[derive(Clone, Debug)]
pub(crate) struct FetcherConfig {
    /// This broker.
    pub broker_id: BrokerId,
    /// The listener name to fetch from (`inter.broker.listener.name`).
    pub listener: String,
    /// replica.fetch.wait.max.ms
    pub max_wait_ms: i32,
    /// replica.fetch.max.bytes (per partition)
    pub partition_max_bytes: i32,
    /// replica.fetch.response.max.bytes
    pub response_max_bytes: i32,
    /// replica.fetch.backoff.ms: pause after a failed connection or request.
    pub backoff: Duration,
    /// TLS and SASL towards the leaders (the inter-broker listener's protocol).
    pub security: tributary_common::kafka_client::ClientSecurity,
}

/// What one fetcher follows: the leader's endpoint and each partition with its leader epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Assignment {
    endpoint: Option<Endpoint>,
    partitions: BTreeMap<TopicPartition, i32>,
}

/// Starts, updates and stops the fetcher tasks as leadership changes.
pub(crate) struct FetcherManager {
    config: FetcherConfig,
    replicas: Arc<ReplicaManager>,
    fetchers: Mutex<HashMap<BrokerId, watch::Sender<Assignment>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl FetcherManager {
    /// A manager with no fetchers yet.
    pub(crate) fn new(config: FetcherConfig, replicas: Arc<ReplicaManager>) -> Self {
        Self {
            config,
            replicas,
            fetchers: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Stops every fetcher and waits until they have (a fetch in flight is abandoned; its
    /// batches were not stored yet, or are stored whole).
    pub(crate) async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Re-derives what to fetch from whom after a metadata change: every partition hosted
    /// here whose leader is another live broker.
    pub(crate) fn update(&self, meta: &ClusterMetadata) {
        let me = self.config.broker_id;
        let mut wanted: BTreeMap<BrokerId, Assignment> = BTreeMap::new();
        for (tp, partition) in self.replicas.all() {
            let role = partition.role();
            if role.leader == me || role.leader < 0 || !role.replicas.contains(&me) {
                continue;
            }
            let Some(broker) = meta.brokers.get(&role.leader) else { continue };
            let Some(endpoint) = broker.endpoint(&self.config.listener) else {
                tracing::warn!(%tp, leader = role.leader, listener = self.config.listener, "the leader advertises no endpoint for inter.broker.listener.name; this replica cannot follow it until it does (give every broker the same inter-broker listener name)");
                continue;
            };
            let a = wanted.entry(role.leader).or_default();
            a.endpoint = Some(endpoint.clone());
            a.partitions.insert(tp, role.leader_epoch);
        }
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        fetchers.retain(|leader, tx| {
            let keep = wanted.contains_key(leader);
            if !keep {
                tx.send_replace(Assignment::default());
            }
            keep
        });
        for (leader, assignment) in wanted {
            match fetchers.get(&leader) {
                Some(tx) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != assignment;
                        *current = assignment.clone();
                        changed
                    });
                }
                None => {
                    tracing::info!(leader, partitions = assignment.partitions.len(), "starting a replica fetcher");
                    let (tx, rx) = watch::channel(assignment);
                    let fetcher = Fetcher {
                        session: Session::default(),
                        config: self.config.clone(),
                        leader,
                        replicas: self.replicas.clone(),
                        truncated: HashMap::new(),
                        delayed: HashMap::new(),
                    };
                    self.tasks.spawn(fetcher.run(rx, self.shutdown.clone()));
                    fetchers.insert(leader, tx);
                }
            }
        }
    }
}

/// Where a follower truncates after the leader answered OffsetForLeaderEpoch with
/// (`leader_epoch`, `leader_end`) for this replica's latest epoch; `local` is this replica's
/// own (largest epoch ≤ `leader_epoch`, its end offset). Returns the offset and whether the
/// epochs now agree (otherwise ask again with the new latest epoch, KIP-279).
pub(crate) fn truncation_point(
    leader_epoch: i32,
    leader_end: i64,
    local: Option<(i32, i64)>,
    log_end: i64,
    high_watermark: i64,
) -> (i64, bool) {
    if leader_epoch < 0 || leader_end < 0 {
        // The leader knows no epoch this old: fall back to the high watermark.
        return (high_watermark.min(log_end), true);
    }
    match local {
        Some((epoch, end)) if epoch == leader_epoch => (leader_end.min(end).min(log_end), true),
        Some((_, end)) => (leader_end.min(end).min(log_end), false),
        None => (leader_end.min(high_watermark).min(log_end), true),
    }
}

struct Fetcher {
    config: FetcherConfig,
    leader: BrokerId,
    replicas: Arc<ReplicaManager>,
    /// Partitions whose log agrees with the leader's, with the leader epoch it was checked at.
    truncated: HashMap<TopicPartition, i32>,
    /// Partitions resting after an error, until the instant given.
    delayed: HashMap<TopicPartition, Instant>,
    /// The incremental fetch session with the leader (KIP-227), on the current connection.
    session: Session,
}

/// What the follower asks of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    fetch_offset: i64,
    log_start_offset: i64,
    leader_epoch: i32,
    max_bytes: i32,
}

/// The follower's side of a fetch session: what the leader holds for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    /// 0: none (the next fetch is full and asks for one).
    id: i32,
    /// The epoch of the next incremental fetch.
    epoch: i32,
    /// The partitions the leader's session holds, as last sent.
    held: BTreeMap<TopicPartition, Asked>,
}

/// The next fetch of a session: (session id, epoch, partitions to send, partitions to
/// forget). Without a session, every partition goes, with epoch 0 to open one; with one,
/// only partitions new or changed since they were last sent, and those no longer wanted
/// are forgotten.
fn plan(session: &Session, want: &BTreeMap<TopicPartition, Asked>) -> (i32, i32, Vec<TopicPartition>, Vec<TopicPartition>) {
    if session.id == 0 {
        return (0, 0, want.keys().cloned().collect(), Vec::new());
    }
    let send = want.iter().filter(|(tp, a)| session.held.get(*tp) != Some(*a)).map(|(tp, _)| tp.clone()).collect();
    let forget = session.held.keys().filter(|tp| !want.contains_key(*tp)).cloned().collect();
    (session.id, session.epoch, send, forget)
}

type Ready = Vec<(TopicPartition, i32, Arc<Partition>)>;

impl Fetcher {
    async fn run(mut self, mut assignment: watch::Receiver<Assignment>, stop: CancellationToken) {
        let mut conn: Option<(Endpoint, Connection)> = None;
        loop {
            let current = assignment.borrow_and_update().clone();
            if current.partitions.is_empty() || stop.is_cancelled() {
                tracing::info!(
                    leader = self.leader,
                    "replica fetcher stopped: no partitions to follow from this leader"
                );
                return;
            }
            self.truncated.retain(|tp, e| current.partitions.get(tp) == Some(e));
            self.delayed.retain(|tp, _| current.partitions.contains_key(tp));
            let now = Instant::now();
            let ready: Ready = current
                .partitions
                .iter()
                .filter(|(tp, _)| self.delayed.get(*tp).is_none_or(|t| *t <= now))
                .filter_map(|(tp, e)| self.replicas.get(tp).map(|p| (tp.clone(), *e, p)))
                .collect();
            let Some(endpoint) = current.endpoint.clone() else { return };
            if ready.is_empty() {
                let wake = self.delayed.values().min().copied().unwrap_or(now + self.config.backoff);
                tokio::select! {
                    r = assignment.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep_until(wake) => {},
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            if conn.as_ref().is_none_or(|(e, _)| *e != endpoint) {
                // A session belongs to a connection's leader; a new connection starts over.
                self.session = Session::default();
                match Connection::connect_secured(&endpoint.host, endpoint.port, "tributary-replica-fetcher", &self.config.security).await {
                    Ok(mut c) => {
                        c.set_timeout(
                            Duration::from_millis(self.config.max_wait_ms.max(0) as u64) + Duration::from_secs(30),
                        );
                        conn = Some((endpoint.clone(), c));
                    }
                    Err(e) => {
                        tracing::warn!(leader = self.leader, error = %e, "replica fetcher cannot reach the leader; retrying (the controller moves leadership if it is gone)");
                        if self.pause(&mut assignment, &stop).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let c = &mut conn.as_mut().expect("connected above").1;
            let result = match self.truncate(c, &ready).await {
                Ok(()) => self.fetch(c, &ready).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(leader = self.leader, error = %e, "replica fetch from the leader failed; reconnecting");
                conn = None;
                if self.pause(&mut assignment, &stop).await {
                    return;
                }
            }
        }
    }

    /// Waits out the backoff (or an assignment change); true when the fetcher should stop.
    async fn pause(&self, assignment: &mut watch::Receiver<Assignment>, stop: &CancellationToken) -> bool {
        tokio::select! {
            r = assignment.changed() => r.is_err(),
            _ = tokio::time::sleep(self.config.backoff) => false,
            _ = stop.cancelled() => true,
        }
    }

    fn delay(&mut self, tp: &TopicPartition) {
        self.delayed.insert(tp.clone(), Instant::now() + PARTITION_RETRY);
    }

    /// Brings partitions not yet checked at their leader epoch in line with the leader.
    async fn truncate(&mut self, c: &mut Connection, ready: &Ready) -> Result<(), String> {
        let mut request = OffsetForLeaderEpochRequest::default();
        request.replica_id = WireBrokerId(self.config.broker_id);
        let mut asked: HashMap<TopicPartition, (i32, Arc<Partition>)> = HashMap::new();
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (tp, epoch, partition) in ready {
            if self.truncated.get(tp) == Some(epoch) {
                continue;
            }
            let Some(latest) = partition.log().latest_epoch() else {
                // Nothing written with an epoch: an empty log has nothing to truncate.
                if partition.log().offsets().log_end_offset > partition.log().offsets().log_start_offset {
                    let hw = partition.high_watermark();
                    if let Err(e) = truncate_blocking(partition, hw).await {
                        tracing::error!(%tp, error = %e, "truncating to the high watermark failed");
                        self.delay(tp);
                        continue;
                    }
                }
                self.truncated.insert(tp.clone(), *epoch);
                continue;
            };
            let mut p = OffsetForLeaderPartition::default();
            p.partition = tp.partition;
            p.current_leader_epoch = *epoch;
            p.leader_epoch = latest;
            topics.entry(tp.topic.clone()).or_default().push(p);
            asked.insert(tp.clone(), (*epoch, partition.clone()));
        }
        if asked.is_empty() {
            return Ok(());
        }
        for (topic, partitions) in topics {
            let mut t = OffsetForLeaderTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic));
            t.partitions = partitions;
            request.topics.push(t);
        }
        let response = c.call(OFFSET_FOR_LEADER_EPOCH_VERSION, &request).await?;
        for topic in response.topics {
            for r in topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), r.partition);
                let Some((epoch, partition)) = asked.get(&tp) else { continue };
                if r.error_code != 0 {
                    tracing::debug!(%tp, error_code = r.error_code, "leader not ready to answer OffsetForLeaderEpoch; retrying");
                    self.delay(&tp);
                    continue;
                }
                let log_end = partition.log().offsets().log_end_offset;
                let local = partition.log().end_offset_for_epoch(r.leader_epoch);
                let (offset, done) =
                    truncation_point(r.leader_epoch, r.end_offset, local, log_end, partition.high_watermark());
                if offset < log_end {
                    match truncate_blocking(partition, offset).await {
                        Ok(end) => {
                            tracing::info!(target: "state_change", %tp, leader = self.leader, leader_epoch = epoch, from = log_end, to = end, "truncated the follower log to where it agrees with the leader");
                        }
                        Err(e) => {
                            tracing::error!(%tp, error = %e, "truncating the follower log failed; check the data directory");
                            self.delay(&tp);
                            continue;
                        }
                    }
                }
                if done {
                    self.truncated.insert(tp, *epoch);
                }
            }
        }
        Ok(())
    }

    async fn fetch(&mut self, c: &mut Connection, ready: &Ready) -> Result<(), String> {
        let mut request = FetchRequest::default();
        request.replica_id = WireBrokerId(self.config.broker_id);
        request.max_wait_ms = self.config.max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = self.config.response_max_bytes;
        let mut fetching: HashMap<TopicPartition, (i32, Arc<Partition>)> = HashMap::new();
        let mut want: BTreeMap<TopicPartition, Asked> = BTreeMap::new();
        let now = tributary_common::time::now_ms();
        let follower_over = self.replicas.follower_quota.exceeded(now);
        for (tp, epoch, partition) in ready {
            if self.truncated.get(tp) != Some(epoch) {
                continue;
            }
            // Replication throttle (follower side): a throttled replica catching up waits
            // while the throttled replicas are over follower.replication.throttled.rate.
            if follower_over && partition.follower_throttled() {
                continue;
            }
            let offsets = partition.log().offsets();
            want.insert(
                tp.clone(),
                Asked {
                    fetch_offset: offsets.log_end_offset,
                    log_start_offset: offsets.log_start_offset,
                    leader_epoch: *epoch,
                    max_bytes: self.config.partition_max_bytes,
                },
            );
            fetching.insert(tp.clone(), (*epoch, partition.clone()));
        }
        if fetching.is_empty() {
            if follower_over {
                // Everything here is throttled: wait for the rate to fall rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Ok(());
        }
        let (session_id, epoch, send, forget) = plan(&self.session, &want);
        request.session_id = session_id;
        request.session_epoch = epoch;
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for tp in &send {
            let a = &want[tp];
            let mut p = FetchPartition::default();
            p.partition = tp.partition;
            p.current_leader_epoch = a.leader_epoch;
            p.fetch_offset = a.fetch_offset;
            p.log_start_offset = a.log_start_offset;
            p.partition_max_bytes = a.max_bytes;
            topics.entry(tp.topic.clone()).or_default().push(p);
        }
        for (topic, partitions) in topics {
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic));
            t.partitions = partitions;
            request.topics.push(t);
        }
        let mut forgotten: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in &forget {
            forgotten.entry(tp.topic.clone()).or_default().push(tp.partition);
        }
        for (topic, partitions) in forgotten {
            let mut t = ForgottenTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic));
            t.partitions = partitions;
            request.forgotten_topics_data.push(t);
        }
        let response = c.call(FETCH_VERSION, &request).await?;
        if response.error_code != 0 {
            if session_id != 0 {
                // The leader lost or refused the session (evicted, restarted): start a new one.
                tracing::debug!(leader = self.leader, session = session_id, error_code = response.error_code, "fetch session refused by the leader; sending a full fetch");
                self.session = Session::default();
                return Ok(());
            }
            return Err(format!("fetch refused as a whole with error code {}", response.error_code));
        }
        self.session = match (session_id, response.session_id) {
            // No session: full fetches from here on, each asking for one.
            (_, 0) => Session::default(),
            // A new session holds what this fetch sent.
            (0, id) => Session { id, epoch: 1, held: want.clone() },
            // The session goes on.
            (_, id) => {
                let mut held = std::mem::take(&mut self.session.held);
                for tp in &forget {
                    held.remove(tp);
                }
                for tp in &send {
                    held.insert(tp.clone(), want[tp]);
                }
                Session { id, epoch: crate::api::fetch_session::next_epoch(epoch), held }
            }
        };
        for topic in response.responses {
            for r in topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), r.partition_index);
                let Some((epoch, partition)) = fetching.get(&tp) else { continue };
                match ResponseError::try_from_code(r.error_code) {
                    None => {
                        let records = r.records.unwrap_or_default();
                        if !records.is_empty() && partition.follower_throttled() {
                            self.replicas.follower_quota.record(records.len(), tributary_common::time::now_ms());
                        }
                        if !records.is_empty() {
                            let batches = match batch::verify_replicated(&records) {
                                Ok(b) => b,
                                Err(e) => {
                                    tracing::error!(%tp, leader = self.leader, error = %e, "the leader sent a batch that fails validation; not storing it, retrying");
                                    self.delay(&tp);
                                    continue;
                                }
                            };
                            match self.replicas.append_as_follower(partition, self.leader, *epoch, &batches) {
                                Ok(Some(_)) => {}
                                Ok(None) => continue,
                                Err(ReplicaAppendError::NotContiguous { .. }) => {
                                    // The log moved under us (truncated or a restart): check again.
                                    self.truncated.remove(&tp);
                                    continue;
                                }
                                Err(e) => {
                                    tracing::error!(%tp, error = %e, "storing replicated batches failed; check the data directory");
                                    self.delay(&tp);
                                    continue;
                                }
                            }
                        }
                        partition.set_follower_high_watermark(r.high_watermark);
                        if r.log_start_offset > partition.log().offsets().log_start_offset {
                            self.replicas.follow_log_start(partition, r.log_start_offset).await;
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange) => {
                        let end = partition.log().offsets().log_end_offset;
                        if r.log_start_offset > end {
                            tracing::warn!(%tp, leader = self.leader, log_end_offset = end, leader_log_start_offset = r.log_start_offset, "this replica fell behind the leader's retention; restarting its log at the leader's log start");
                            let (p, start) = (partition.clone(), r.log_start_offset);
                            let reset = tokio::task::spawn_blocking(move || p.truncate_fully_and_start_at(start)).await;
                            if let Err(e) = reset.unwrap_or_else(|e| {
                                Err(crate::log::Error::Storage {
                                    what: "resetting the follower log".into(),
                                    reason: e.to_string(),
                                })
                            }) {
                                tracing::error!(%tp, error = %e, "resetting the follower log failed");
                            }
                        } else {
                            self.truncated.remove(&tp);
                        }
                        self.delay(&tp);
                    }
                    Some(e) => {
                        tracing::debug!(%tp, leader = self.leader, error = ?e, "leader refused the replica fetch; retrying after metadata settles");
                        self.delay(&tp);
                    }
                }
            }
        }
        // The next fetch waits while this store's write backlog is over its bound.
        self.replicas.pace().await;
        Ok(())
    }
}

/// Truncates a follower's log on the blocking pool (it walks and deletes storage).
async fn truncate_blocking(partition: &Arc<Partition>, offset: i64) -> Result<i64, crate::log::Error> {
    let p = partition.clone();
    tokio::task::spawn_blocking(move || p.truncate_to(offset)).await.unwrap_or_else(|e| {
        Err(crate::log::Error::Storage { what: "truncating the follower log".into(), reason: e.to_string() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_sends_only_what_changed_in_its_fetch_session() {
        let tp = |p: i32| TopicPartition::new("t", p);
        let asked = |offset: i64| Asked { fetch_offset: offset, log_start_offset: 0, leader_epoch: 1, max_bytes: 1 << 20 };
        let want: BTreeMap<_, _> = [(tp(0), asked(10)), (tp(1), asked(5)), (tp(2), asked(0))].into_iter().collect();
        let held: BTreeMap<_, _> = [(tp(0), asked(10)), (tp(1), asked(3)), (tp(3), asked(7))].into_iter().collect();
        // (session, wanted) -> (id, epoch, sent, forgotten)
        let cases = [
            // No session: everything, asking for one.
            (Session::default(), (0, 0, vec![tp(0), tp(1), tp(2)], vec![])),
            // A session: the moved partition 1, the new partition 2; partition 3 is no longer followed.
            (Session { id: 9, epoch: 4, held: held.clone() }, (9, 4, vec![tp(1), tp(2)], vec![tp(3)])),
            // Nothing changed: an empty incremental fetch.
            (Session { id: 9, epoch: 5, held: want.clone() }, (9, 5, vec![], vec![])),
        ];
        for (session, expected) in cases {
            assert_eq!(plan(&session, &want), expected, "{session:?}");
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn followers_truncate_where_their_epochs_agree_with_the_leader() {
        // (leader epoch, leader end, local (epoch, end), log end, hw) -> (offset, done)
        let cases: &[(i32, i64, Option<(i32, i64)>, i64, i64, (i64, bool))] = &[
            // Same epoch, leader ended it earlier: cut the divergent tail.
            (3, 100, Some((3, 120)), 120, 90, (100, true)),
            // Same epoch, the follower is simply behind: nothing to cut.
            (3, 100, Some((3, 80)), 80, 70, (80, true)),
            // The leader knows only an older epoch (2) than ours, which we have too: cut to where it ends there.
            (2, 50, Some((2, 60)), 120, 40, (50, true)),
            // Our largest epoch <= 2 is 1: cut to its end and ask again.
            (2, 50, Some((1, 30)), 120, 20, (30, false)),
            // The leader has no epoch this old: fall back to the high watermark.
            (-1, -1, Some((3, 120)), 120, 90, (90, true)),
            // We know nothing that old either.
            (0, 10, None, 50, 5, (5, true)),
        ];
        for (le, lend, local, end, hw, expected) in cases {
            assert_eq!(truncation_point(*le, *lend, *local, *end, *hw), *expected, "{le} {lend} {local:?} {end} {hw}");
        }
    }
}
