//! Kafka API handlers, one file per family. Each takes the decoded request and returns
//! the response to encode; domain errors become per-partition / per-topic error codes here.

mod acls;
mod admin;
mod api_versions;
mod authz;
mod cluster;
mod configs;
mod elect;
mod fetch;
pub(crate) mod fetch_session;
mod group;
mod list_offsets;
mod metadata;
mod misc;
pub(crate) mod nulls;
mod produce;
mod quotas;
mod reassign;
mod records;
mod scram;
mod txn;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tributary_common::ids::TopicPartition;

use tributary_common::znode::ConfigEntity;

use crate::config::BrokerConfig;
use crate::dynamic_config::{self, EffectiveConfig};
use crate::group::GroupCoordinator;
use crate::metadata::ClusterMetadata;
use crate::quota::QuotaManager;
use crate::replica::{ReplicaError, ReplicaManager};
use crate::security::{Principal, Security};
use crate::txn::TransactionCoordinator;
use crate::zk::ZkHandle;

#[cfg(test)]
pub(crate) use api_versions::SUPPORTED;
pub(crate) use api_versions::{supported_range, v0_unsupported_version_response};
pub(crate) use misc::ProducerIds;

/// What every handler can reach.
pub(crate) struct BrokerContext {
    /// Effective configuration.
    pub(crate) config: BrokerConfig,
    /// Hosted replicas (shared with the replica fetchers): the only way to a partition.
    pub(crate) replicas: Arc<ReplicaManager>,
    /// ZooKeeper session handle, for the admin APIs' writes.
    pub(crate) zk: ZkHandle,
    /// Idempotent producer ids.
    pub(crate) producer_ids: ProducerIds,
    /// Consumer groups coordinated here.
    pub(crate) groups: GroupCoordinator,
    /// Transactions coordinated here.
    pub(crate) txns: TransactionCoordinator,
    /// Asks transaction coordinators about partitions before a transaction's first batch (KIP-890).
    pub(crate) txn_verifier: crate::txn::verify::Verifier,
    /// Client quotas and the clients' rates.
    pub(crate) quotas: QuotaManager,
    /// How listeners authenticate clients and this broker authenticates to the others.
    pub(crate) security: Arc<Security>,
    /// Incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: fetch_session::FetchSessions,
    /// The authorizer's settings (`None`: no authorizer, everything allowed).
    pub(crate) authorizer: Option<tributary_common::acl::AuthorizerConfig>,
    /// The cluster view as served (None until the first load); read through [`Self::cluster`].
    metadata: watch::Receiver<Option<Arc<ClusterMetadata>>>,
    /// `config` with the dynamic broker configs in force; its one writer is the
    /// reconciler ([`Self::take_dynamic_configs`]).
    effective: RwLock<Arc<EffectiveConfig>>,
}

impl BrokerContext {
    /// Assembles the services a request handler may use.
    pub(crate) fn new(
        config: BrokerConfig,
        replicas: Arc<ReplicaManager>,
        groups: GroupCoordinator,
        txns: TransactionCoordinator,
        metadata: watch::Receiver<Option<Arc<ClusterMetadata>>>,
        zk: ZkHandle,
        security: Arc<Security>,
    ) -> Self {
        let effective = RwLock::new(Arc::new(EffectiveConfig::from_static(config.clone())));
        let quotas = QuotaManager::new(config.quota_window());
        // Checked when the configuration was read.
        let authorizer = config.authorizer().ok().flatten();
        // Sessions keep partitions authorized when they were added; with an authorizer every
        // fetch names its partitions, so that each is checked (see fetch::handle).
        let slots = if authorizer.is_some() { 0 } else { config.max_incremental_fetch_session_cache_slots as usize };
        BrokerContext {
            fetch_sessions: fetch_session::FetchSessions::new(slots),
            authorizer,
            config,
            replicas,
            zk,
            producer_ids: ProducerIds::default(),
            groups,
            txns,
            txn_verifier: crate::txn::verify::Verifier::default(),
            quotas,
            security,
            metadata,
            effective,
        }
    }

    /// The settings in force: the static configuration with dynamic overrides applied.
    pub(crate) fn effective(&self) -> Arc<EffectiveConfig> {
        self.effective.read().expect("effective config lock").clone()
    }

    /// Takes up the dynamic broker configs of a metadata snapshot
    /// (`/config/brokers/<default>` and `/config/brokers/<id>`); returns the new settings
    /// when they changed. Overrides that fail validation (written past the admin APIs) are
    /// logged and leave the settings as they were.
    pub(crate) fn take_dynamic_configs(&self, meta: &ClusterMetadata) -> Option<Arc<EffectiveConfig>> {
        let cluster_default = meta.entity_config(&ConfigEntity::Broker(None));
        let this_broker = meta.entity_config(&ConfigEntity::Broker(Some(self.config.broker_id)));
        let current = self.effective();
        if current.cluster_default == cluster_default && current.this_broker == this_broker {
            return None;
        }
        let config = match dynamic_config::apply(&self.config, [&cluster_default, &this_broker]) {
            Ok(config) => {
                let changed: Vec<String> = config
                    .values()
                    .into_iter()
                    .zip(current.config.values())
                    .filter(|(new, old)| new.1 != old.1)
                    .map(|(new, _)| format!("{}={}", new.0, new.1.unwrap_or_default()))
                    .collect();
                tracing::info!(changed = ?changed, cluster_default = ?cluster_default, this_broker = ?this_broker, "applied dynamic broker configs from /config/brokers");
                config
            }
            Err(e) => {
                tracing::error!(error = %e, cluster_default = ?cluster_default, this_broker = ?this_broker, "ignoring the dynamic broker configs in /config/brokers: they do not validate; correct them with kafka-configs --alter or IncrementalAlterConfigs");
                current.config.clone()
            }
        };
        let next = Arc::new(EffectiveConfig { config, cluster_default, this_broker });
        *self.effective.write().expect("effective config lock") = next.clone();
        Some(next)
    }

    /// The current cluster view (empty before the first load).
    pub(crate) fn cluster(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone().unwrap_or_default()
    }

    /// Waits until `done` holds for the cluster view, or `timeout` passes; returns whether it held.
    pub(crate) async fn wait_for_metadata(&self, timeout: Duration, done: impl Fn(&ClusterMetadata) -> bool) -> bool {
        let mut rx = self.metadata.clone();
        let check = |m: &Option<Arc<ClusterMetadata>>| m.as_deref().is_some_and(&done);
        tokio::time::timeout(timeout, rx.wait_for(check)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Who sent a request: the client's address and the listener it connected to (Metadata
/// and FindCoordinator answer with addresses on that same listener, as Kafka does).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener name the connection arrived on (`PLAINTEXT`, `PLAINTEXT_HOST`, ...).
    pub(crate) listener: Arc<str>,
    /// Who the connection authenticated as (`User:ANONYMOUS` on PLAINTEXT).
    pub(crate) principal: Principal,
}

/// A request type that passed version negotiation but has no handler: a bug, answered by
/// closing the connection (the client retries elsewhere) rather than leaving it waiting.
#[derive(Debug, thiserror::Error)]
#[error("request type {0:?} is advertised but not handled")]
pub(crate) struct Unhandled(pub Option<ApiKey>);

/// Said by a handler once its request's effects are in place and only the answer is
/// awaited (a produce whose records are appended, waiting for the flush or the ISR): the
/// connection may then read and run the next request. Dropped unsaid, nothing happens.
pub(crate) struct Release(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Release {
    /// A release and what the connection waits on.
    pub(crate) fn new() -> (Release, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Release(std::sync::Mutex::new(Some(tx))), rx)
    }

    /// The request's effects are in place.
    pub(crate) fn release(&self) {
        if let Some(tx) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = tx.send(());
        }
    }
}

/// Handles one request; `Ok(None)` means no response is sent (Produce with acks=0). The
/// handler says `release` once the request's effects are in place and only its answer is
/// awaited (see `net::connection`).
///
/// # Errors
/// [`Unhandled`] for a request type the dispatcher has no arm for.
pub(crate) async fn handle_releasing(
    ctx: &BrokerContext,
    caller: &Caller,
    header: &RequestHeader,
    request: RequestKind,
    release: &Release,
) -> Result<Option<ResponseKind>, Unhandled> {
    if ctx.authorizer.is_none() {
        return dispatch(ctx, caller, header, request, release).await;
    }
    let api = ApiKey::try_from(header.request_api_key).map_or_else(|()| header.request_api_key.to_string(), |k| format!("{k:?}"));
    let Some(check) = authz::Check::new(ctx, caller, api) else {
        return dispatch(ctx, caller, header, request, release).await;
    };
    match authz::before(ctx, &check, header.request_api_version, request) {
        authz::Gate::Answer(response) => Ok(Some(response)),
        authz::Gate::Pass(request, merge) => {
            let mut response = dispatch(ctx, caller, header, request, release).await?;
            if let Some(r) = &mut response {
                authz::after(&check, header.request_api_version, merge, r);
            }
            Ok(response)
        }
    }
}

/// [`handle_releasing`] with nobody listening for the release (tests).
#[cfg(test)]
pub(crate) async fn handle(
    ctx: &BrokerContext,
    caller: &Caller,
    header: &RequestHeader,
    request: RequestKind,
) -> Result<Option<ResponseKind>, Unhandled> {
    handle_releasing(ctx, caller, header, request, &Release::new().0).await
}

/// Runs the handler of a request that passed authorization.
async fn dispatch(
    ctx: &BrokerContext,
    caller: &Caller,
    header: &RequestHeader,
    request: RequestKind,
    release: &Release,
) -> Result<Option<ResponseKind>, Unhandled> {
    let v = header.request_api_version;
    Ok(Some(match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(v, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, &caller.listener, v, r).await),
        RequestKind::Produce(r) => return Ok(produce::handle(ctx, v, r, release).await.map(ResponseKind::Produce)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, v, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, v, r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(misc::offset_for_leader_epoch(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(group::find_coordinator(ctx, &caller.listener, v, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(group::join_group(ctx, caller.peer, header, v, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(group::sync_group(ctx, v, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(group::heartbeat(ctx, v, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(group::leave_group(ctx, v, r)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(group::offset_commit(ctx, v, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(group::offset_fetch(ctx, v, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(group::list_groups(ctx, v, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(group::describe_groups(ctx, v, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(group::delete_groups(ctx, r).await),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(group::offset_delete(ctx, r).await),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(misc::init_producer_id(ctx, v, r).await),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions_to_txn(ctx, v, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(txn::add_offsets_to_txn(ctx, v, r).await),
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(ctx, v, r).await),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(group::txn_offset_commit(ctx, v, r).await),
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(txn::describe_transactions(ctx, r)),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list_transactions(ctx, r)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(admin::create_topics(ctx, v, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(admin::delete_topics(ctx, v, r).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(admin::create_partitions(ctx, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe_configs(ctx, v, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter_configs(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter_configs(ctx, r).await)
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(metadata::describe_topic_partitions(ctx, &caller.listener, r))
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(quotas::describe_client_quotas(ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => ResponseKind::AlterClientQuotas(quotas::alter_client_quotas(ctx, r).await),
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(elect::elect_leaders(ctx, v, r).await),
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassign::alter_partition_reassignments(ctx, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassign::list_partition_reassignments(ctx, r))
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(records::delete_records(ctx, r).await),
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(records::describe_producers(ctx, r)),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(ctx, &caller.listener, v, r))
        }
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe_acls(ctx, r)),
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(cluster::describe_log_dirs(ctx, r)),
        RequestKind::AlterReplicaLogDirs(r) => {
            ResponseKind::AlterReplicaLogDirs(cluster::alter_replica_log_dirs(ctx, r))
        }
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(txn::write_txn_markers(ctx, r).await),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create_acls(ctx, caller, r).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete_acls(ctx, caller, r).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram::describe(ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram::alter(ctx, r).await)
        }
        // SASL listeners answer these before requests get here (security::sasl); on the
        // others, and after authentication, Kafka answers ILLEGAL_SASL_STATE.
        RequestKind::SaslHandshake(_) => {
            let mut r = kafka_protocol::messages::SaslHandshakeResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            ResponseKind::SaslHandshake(r)
        }
        RequestKind::SaslAuthenticate(_) => {
            let mut r = kafka_protocol::messages::SaslAuthenticateResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            r.error_message = Some(s(format!(
                "listener {} does not use SASL (listener.security.protocol.map); connect without SASL or to a SASL listener",
                caller.listener
            )));
            ResponseKind::SaslAuthenticate(r)
        }
        _ => return Err(Unhandled(ApiKey::try_from(header.request_api_key).ok())),
    }))
}

/// Sets `throttle_time_ms` on a response (a client over its quota). Every response type
/// that has the field gets it.
pub(crate) fn set_throttle(response: &mut ResponseKind, ms: i32) {
    macro_rules! throttle {
        ($($variant:ident),+ $(,)?) => {
            match response {
                $( ResponseKind::$variant(r) => r.throttle_time_ms = ms, )+
                _ => {}
            }
        };
    }
    throttle!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        AlterReplicaLogDirs,
        CreatePartitions,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeCluster,
        DescribeProducers,
        DescribeTopicPartitions,
    );
}

/// Logs a request refused for the client's own bad input: at debug, plus one warn every
/// ten seconds at most (so a misbehaving client cannot flood the log), naming the partition.
pub(crate) fn refused(tp: &TopicPartition, error: &dyn std::fmt::Display, what: &str) {
    static LAST_WARN_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_ms();
    let last = LAST_WARN_MS.load(std::sync::atomic::Ordering::Relaxed);
    let warn = now - last >= 10_000
        && LAST_WARN_MS
            .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
            .is_ok();
    if warn {
        tracing::warn!(%tp, %error, "{what} (further such refusals within 10 s are logged at debug)");
    } else {
        tracing::debug!(%tp, %error, "{what}");
    }
}

/// The error code for a replica-level failure.
pub(crate) fn replica_error_code(e: &ReplicaError) -> i16 {
    match e {
        ReplicaError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition.code(),
        ReplicaError::NotLeader { .. } | ReplicaError::Opening(_) => ResponseError::NotLeaderOrFollower.code(),
        ReplicaError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch.code(),
        ReplicaError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
    }
}

/// Converts a wire topic name.
pub(crate) fn tp(topic: &StrBytes, partition: i32) -> TopicPartition {
    TopicPartition::new(topic.as_str(), partition)
}

/// Per-partition results grouped into one entry per topic, topics in name order, as the
/// partition-level admin responses carry them; `topic_entry(name, partitions)` builds each.
pub(crate) fn by_topic<P, T>(
    results: impl IntoIterator<Item = (String, P)>,
    topic_entry: impl Fn(String, Vec<P>) -> T,
) -> Vec<T> {
    let mut grouped: std::collections::BTreeMap<String, Vec<P>> = std::collections::BTreeMap::new();
    for (topic, partition) in results {
        grouped.entry(topic).or_default().push(partition);
    }
    grouped.into_iter().map(|(name, partitions)| topic_entry(name, partitions)).collect()
}

/// A `StrBytes` from anything string-like.
pub(crate) fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub(crate) use tributary_common::time::now_ms;

#[cfg(test)]
mod tests;
