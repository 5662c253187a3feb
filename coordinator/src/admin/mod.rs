//! The HTTP admin API (JSON). Every coordinator serves it, active or standby; reads come
//! straight from ZooKeeper, and writes (create or delete a topic) go to ZooKeeper the way
//! Kafka's admin tools write them, for the active controller to act on.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | /health | ZooKeeper session, controller role and epoch |
//! | GET | /brokers | live brokers |
//! | GET | /topics | topics with partition count and replication factor |
//! | GET | /topics/{name} | partitions: replicas, leader, leader epoch, ISR |
//! | POST | /topics | create: `{"name", "partitions", "replication_factor", "config"}` |
//! | DELETE | /topics/{name} | mark for deletion |
//! | GET, PATCH | /topics/{name}/configs | a topic's overrides; PATCH `{"set": {...}, "delete": [...]}` |
//! | GET, PATCH | /brokers/{id}/configs | dynamic broker settings of one broker, or of every broker with id `default` |
//! | GET, POST | /reassignments | partitions being moved; POST starts moves |
//! | DELETE | /reassignments/{topic}/{partition} | cancel a move |
//! | GET | /groups | consumer groups, from every broker |
//! | GET | /groups/{id} | state, members, assignments, committed offsets and lag |
//! | DELETE | /groups/{id} | delete an empty group and its offsets |
//! | POST | /groups/{id}/offsets/reset | move an inactive group's offsets (earliest, latest, timestamp, offset) |
//! | GET | /metrics | Prometheus metrics: controller, partitions, offsets, consumer-group lag |

pub mod auth;
mod configs;
mod groups;
mod metrics;
mod reassign;
mod users;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tributary_common::ids::{BrokerId, TopicId};
use tributary_common::snapshot::ClusterSnapshot;
use tributary_common::topic::{assign_new_topic, validate_new_topic, NewTopicError};
use tributary_common::zk::{create_topic, mark_topic_for_deletion, TopicWriteError};
use tributary_common::znode::{self, ControllerZNode, NO_LEADER};
use zookeeper_client::Client;

use crate::controller::{Status, ZkSlot};

/// Errors of the admin API: an HTTP status and a JSON body `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: it exists already.
    #[error("{0}")]
    Conflict(String),
    /// 503: ZooKeeper is not reachable.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AdminState {
    /// Current ZooKeeper session.
    pub zk: ZkSlot,
    /// The cluster, read through that session.
    pub view: std::sync::Arc<crate::view::ClusterView>,
    /// Controller status.
    pub status: watch::Receiver<Status>,
    /// This coordinator's id.
    pub controller_id: i32,
    /// How to reach brokers (`client.config`).
    pub clients: std::sync::Arc<crate::brokers::BrokerClients>,
}

impl AdminState {
    /// `snapshot`'s brokers, reached with this coordinator's client settings.
    pub(crate) fn brokers<'a>(&'a self, snapshot: &'a ClusterSnapshot) -> crate::brokers::Brokers<'a> {
        crate::brokers::Brokers { snapshot, clients: &self.clients }
    }

    fn client(&self) -> Result<Client, ApiError> {
        self.zk.read().expect("zk slot lock").clone().ok_or_else(|| {
            ApiError::Unavailable("the coordinator has no ZooKeeper session; check that ZooKeeper is running".into())
        })
    }

    /// The cluster now ([`crate::view::ClusterView`]), with the session it was read through.
    async fn snapshot(&self) -> Result<(Client, std::sync::Arc<ClusterSnapshot>), ApiError> {
        self.view.snapshot().await.map_err(|e| ApiError::Unavailable(e.to_string()))
    }
}

/// The router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/brokers", get(brokers))
        .route("/topics", get(list_topics).post(create))
        .route("/topics/{name}", get(describe_topic).delete(delete))
        .route("/topics/{name}/configs", get(configs::get_topic).patch(configs::patch_topic))
        .route("/brokers/{id}/configs", get(configs::get_broker).patch(configs::patch_broker))
        .route("/partitions", get(partitions_summary))
        .route("/partitions/preferred-leader-election", post(preferred_leader_election))
        .route("/reassignments", get(reassign::list).post(reassign::start))
        .route("/reassignments/{topic}/{partition}", axum::routing::delete(reassign::cancel))
        .route("/groups", get(groups::list))
        .route("/groups/{id}", get(groups::describe).delete(groups::delete))
        .route("/groups/{id}/offsets/reset", post(groups::reset))
        .route("/metrics", get(metrics::scrape))
        .route("/users", get(users::list))
        .route("/users/{name}/scram/{mechanism}", axum::routing::put(users::set).delete(users::delete))
        .fallback(|| async {
            ApiError::NotFound(
                "no such endpoint; see /health, /brokers, /brokers/{id}/configs, /topics, /topics/{name}, /topics/{name}/configs, /partitions, /partitions/preferred-leader-election, /reassignments, /groups, /groups/{id}, /metrics".into(),
            )
        })
        .with_state(state)
}

async fn health(State(state): State<AdminState>) -> Response {
    let status = state.status.borrow().clone();
    let mut body = json!({
        "status": if status.connected { "ok" } else { "unavailable" },
        "zookeeper": if status.connected { "connected" } else { "disconnected" },
        "this_coordinator": { "id": state.controller_id, "active_controller": status.active },
    });
    if let Ok(client) = state.client() {
        if let Ok((data, _)) = client.get_data(znode::CONTROLLER).await {
            if let Ok(c) = ControllerZNode::decode(&data) {
                body["active_controller_id"] = json!(c.brokerid);
            }
        }
        if let Ok((data, _)) = client.get_data(znode::CONTROLLER_EPOCH).await {
            body["controller_epoch"] = json!(znode::decode_controller_epoch(&data).ok());
        }
    }
    let code = if status.connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

#[derive(Serialize)]
struct BrokerView {
    id: BrokerId,
    host: Option<String>,
    port: i32,
    endpoints: Vec<String>,
    listener_security_protocol_map: BTreeMap<String, String>,
    rack: Option<String>,
    broker_epoch: i64,
}

async fn brokers(State(state): State<AdminState>) -> Result<Json<Vec<BrokerView>>, ApiError> {
    let (_, s) = state.snapshot().await?;
    Ok(Json(
        s.brokers
            .iter()
            .map(|(id, b)| BrokerView {
                id: *id,
                host: b.registration.host.clone(),
                port: b.registration.port,
                endpoints: b.registration.endpoints.clone(),
                listener_security_protocol_map: b.registration.listener_security_protocol_map.clone(),
                rack: b.registration.rack.clone(),
                broker_epoch: b.epoch,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct TopicSummary {
    name: String,
    topic_id: Option<String>,
    partitions: usize,
    replication_factor: usize,
    marked_for_deletion: bool,
    /// With `?stats=true`: bytes the leaders hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<i64>,
    /// With `?stats=true`: the partitions' high watermarks, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    end_offset: Option<i64>,
    /// With `?stats=true`: records held (high watermark minus log start, summed).
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ListTopicsQuery {
    /// Also ask the leaders for sizes and offsets.
    #[serde(default)]
    stats: bool,
}

async fn list_topics(
    State(state): State<AdminState>,
    axum::extract::Query(query): axum::extract::Query<ListTopicsQuery>,
) -> Result<Json<Vec<TopicSummary>>, ApiError> {
    let (_, s) = state.snapshot().await?;
    let mut leaders: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
    if query.stats {
        for (name, t) in &s.topics {
            for (p, ps) in &t.partitions {
                if let Some(leader) = PartitionHealth::of(&s, t, ps).leader {
                    leaders.entry(leader).or_default().push((name.clone(), *p));
                }
            }
        }
    }
    let (starts, ends, dirs) = if query.stats {
        (
            groups::offsets_at(state.brokers(&s), leaders.clone(), groups::CONSUMER_REPLICA_ID, groups::EARLIEST).await,
            groups::latest_offsets(state.brokers(&s), leaders.clone(), groups::CONSUMER_REPLICA_ID).await,
            groups::log_dirs(state.brokers(&s), leaders).await,
        )
    } else {
        Default::default()
    };
    /// A leader's partition, as the offset and log-dir maps key it.
    type Key = (BrokerId, String, i32);
    let sum = |name: &str, f: &dyn Fn(&Key) -> Option<i64>| -> Option<i64> {
        query.stats.then(|| ends.keys().filter(|(_, t, _)| t == name).filter_map(f).sum())
    };
    Ok(Json(
        s.topics
            .iter()
            .map(|(name, t)| TopicSummary {
                name: name.clone(),
                topic_id: t.assignment.topic_id.map(|id| id.to_string()),
                partitions: t.partitions.len(),
                replication_factor: t.partitions.values().next().map(|p| p.replicas.len()).unwrap_or(0),
                marked_for_deletion: s.pending_deletions.contains(name),
                size_bytes: sum(name, &|k| dirs.get(k).map(|(size, _)| *size)),
                end_offset: sum(name, &|k| ends.get(k).copied()),
                messages: sum(name, &|k| Some(ends.get(k).copied()? - starts.get(k).copied().unwrap_or(0))),
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct PartitionView {
    partition: i32,
    replicas: Vec<BrokerId>,
    leader: Option<BrokerId>,
    leader_epoch: Option<i32>,
    isr: Vec<BrokerId>,
    offline_replicas: Vec<BrokerId>,
    /// The leader's first offset held (null when the leader could not be asked).
    log_start_offset: Option<i64>,
    /// The leader's high watermark (null when the leader could not be asked).
    high_watermark: Option<i64>,
    /// The leader's log end offset.
    log_end_offset: Option<i64>,
    /// Each live replica's log end offset.
    replica_log_end_offsets: BTreeMap<BrokerId, i64>,
    /// Bytes the leader's log holds.
    size_bytes: Option<i64>,
    /// Bytes each live replica's log holds (each replica compacts its own copy).
    replica_size_bytes: BTreeMap<BrokerId, i64>,
    /// Compacted topics: the leader's log cleaner position (`first_dirty_offset`),
    /// `dirty_ratio`, `first_uncleanable_offset`, and its last pass (`last_clean`, with
    /// `finished_ms` and bytes before and after).
    #[serde(skip_serializing_if = "Option::is_none")]
    cleaner: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct TopicView {
    name: String,
    topic_id: Option<String>,
    config: BTreeMap<String, String>,
    marked_for_deletion: bool,
    partitions: Vec<PartitionView>,
}

async fn describe_topic(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<TopicView>, ApiError> {
    let (_, s) = state.snapshot().await?;
    let t = s.topics.get(&name).ok_or_else(|| ApiError::NotFound(format!("topic {name:?} does not exist")))?;
    // Offsets come from the brokers: high watermarks from leaders, log ends from every replica.
    let mut leaders: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
    let mut holders: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
    for (p, ps) in &t.partitions {
        if let Some((st, _)) = &ps.state {
            if st.leader != NO_LEADER && s.brokers.contains_key(&st.leader) {
                leaders.entry(st.leader).or_default().push((name.clone(), *p));
            }
        }
        for r in ps.replicas.iter().filter(|r| s.brokers.contains_key(r)) {
            holders.entry(*r).or_default().push((name.clone(), *p));
        }
    }
    let starts = groups::offsets_at(state.brokers(&s), leaders.clone(), groups::CONSUMER_REPLICA_ID, groups::EARLIEST).await;
    let hws = groups::latest_offsets(state.brokers(&s), leaders, groups::CONSUMER_REPLICA_ID).await;
    let leos = groups::latest_offsets(state.brokers(&s), holders.clone(), groups::DEBUGGING_REPLICA_ID).await;
    let dirs = groups::log_dirs(state.brokers(&s), holders).await;
    let partitions = t
        .partitions
        .iter()
        .map(|(p, ps)| {
            let state = ps.state.as_ref().map(|(st, _)| st);
            PartitionView {
                partition: *p,
                replicas: ps.replicas.clone(),
                leader: state.map(|st| st.leader).filter(|l| *l != NO_LEADER && s.brokers.contains_key(l)),
                leader_epoch: state.map(|st| st.leader_epoch),
                isr: state.map(|st| st.isr.clone()).unwrap_or_default(),
                offline_replicas: ps.replicas.iter().copied().filter(|r| !s.brokers.contains_key(r)).collect(),
                log_start_offset: state.and_then(|st| starts.get(&(st.leader, name.clone(), *p)).copied()),
                high_watermark: state.and_then(|st| hws.get(&(st.leader, name.clone(), *p)).copied()),
                log_end_offset: state.and_then(|st| leos.get(&(st.leader, name.clone(), *p)).copied()),
                replica_log_end_offsets: ps
                    .replicas
                    .iter()
                    .filter_map(|r| leos.get(&(*r, name.clone(), *p)).map(|o| (*r, *o)))
                    .collect(),
                size_bytes: state.and_then(|st| dirs.get(&(st.leader, name.clone(), *p)).map(|(size, _)| *size)),
                replica_size_bytes: ps
                    .replicas
                    .iter()
                    .filter_map(|r| dirs.get(&(*r, name.clone(), *p)).map(|(size, _)| (*r, *size)))
                    .collect(),
                cleaner: state.and_then(|st| dirs.get(&(st.leader, name.clone(), *p)).and_then(|(_, c)| c.clone())),
            }
        })
        .collect();
    Ok(Json(TopicView {
        name: name.clone(),
        topic_id: t.assignment.topic_id.map(|id| id.to_string()),
        config: t.config.clone(),
        marked_for_deletion: s.pending_deletions.contains(&name),
        partitions,
    }))
}

#[derive(Serialize)]
struct PartitionRef {
    topic: String,
    partition: i32,
    leader: Option<BrokerId>,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
}

/// `GET /partitions`: partitions needing attention. Under-replicated: the ISR is smaller
/// than the assignment. Under min ISR: smaller than the topic's `min.insync.replicas`
/// (acks=all producers are refused). Offline: no live leader. Plus the assigned brokers
/// that are not registered.
async fn partitions_summary(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, s) = state.snapshot().await?;
    let mut under_replicated = Vec::new();
    let mut under_min_isr = Vec::new();
    let mut offline = Vec::new();
    let mut offline_brokers = std::collections::BTreeSet::new();
    let mut total = 0;
    for (topic, t) in &s.topics {
        for (p, ps) in &t.partitions {
            total += 1;
            let h = PartitionHealth::of(&s, t, ps);
            offline_brokers.extend(ps.replicas.iter().copied().filter(|r| !s.brokers.contains_key(r)));
            let r = || PartitionRef {
                topic: topic.clone(),
                partition: *p,
                leader: h.leader,
                replicas: ps.replicas.clone(),
                isr: h.isr.clone(),
            };
            if h.offline() {
                offline.push(r());
            }
            if h.under_replicated {
                under_replicated.push(r());
            }
            if h.under_min_isr {
                under_min_isr.push(r());
            }
        }
    }
    Ok(Json(json!({
        "partitions": total,
        "under_replicated": under_replicated,
        "under_min_isr": under_min_isr,
        "offline": offline,
        "offline_brokers": offline_brokers,
        "live_brokers": s.brokers.keys().collect::<Vec<_>>(),
    })))
}

/// How one partition stands, as `/partitions` and `/metrics` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionHealth {
    /// The leader, when there is one and it is registered.
    pub(crate) leader: Option<BrokerId>,
    /// In-sync replicas.
    pub(crate) isr: Vec<BrokerId>,
    /// The ISR is smaller than the assignment.
    pub(crate) under_replicated: bool,
    /// The ISR is smaller than the topic's `min.insync.replicas` (acks=all is refused).
    pub(crate) under_min_isr: bool,
    /// The leader is the preferred (first) replica.
    pub(crate) preferred_leader: bool,
}

impl PartitionHealth {
    /// Classifies `ps` of topic `t` in snapshot `s` (pure).
    pub(crate) fn of(
        s: &ClusterSnapshot,
        t: &tributary_common::snapshot::TopicSnapshot,
        ps: &tributary_common::snapshot::PartitionSnapshot,
    ) -> PartitionHealth {
        let min_isr: usize = t.config.get("min.insync.replicas").and_then(|v| v.parse().ok()).unwrap_or(1);
        let state = ps.state.as_ref().map(|(st, _)| st);
        let leader = state.map(|st| st.leader).filter(|l| *l != NO_LEADER && s.brokers.contains_key(l));
        let isr = state.map(|st| st.isr.clone()).unwrap_or_default();
        PartitionHealth {
            leader,
            under_replicated: isr.len() < ps.replicas.len(),
            under_min_isr: isr.len() < tributary_common::topic::effective_min_isr(min_isr, ps.replicas.len()),
            preferred_leader: leader.is_some() && leader == ps.replicas.first().copied(),
            isr,
        }
    }

    /// No live leader: the partition cannot be read or written.
    pub(crate) fn offline(&self) -> bool {
        self.leader.is_none()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ElectionRequest {
    #[serde(default)]
    partitions: Vec<ElectionPartition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ElectionPartition {
    topic: String,
    partition: i32,
}

/// `POST /partitions/preferred-leader-election`: moves leadership back to each partition's
/// preferred (first) replica where it is live and in sync, through
/// `/admin/preferred_replica_election` as Kafka's legacy tool does. An empty body or
/// `{"partitions": []}` means every partition.
async fn preferred_leader_election(State(state): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ElectionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ElectionRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "request body must be empty or JSON like {{\"partitions\": [{{\"topic\": \"t\", \"partition\": 0}}]}}: {e}"
            ))
        })?
    };
    let (client, s) = state.snapshot().await?;
    for p in &req.partitions {
        if !s.topics.get(&p.topic).is_some_and(|t| t.partitions.contains_key(&p.partition)) {
            return Err(ApiError::NotFound(format!("partition {}-{} does not exist", p.topic, p.partition)));
        }
    }
    let count = if req.partitions.is_empty() {
        s.topics.values().map(|t| t.partitions.len()).sum()
    } else {
        req.partitions.len()
    };
    let payload =
        znode::PreferredReplicaElection::new(req.partitions.into_iter().map(|p| (p.topic, p.partition))).encode();
    match client.create(znode::PREFERRED_REPLICA_ELECTION, &payload, &tributary_common::zk::persistent(znode::PREFERRED_REPLICA_ELECTION)).await {
        Ok(_) => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "status": "requested", "partitions": count }))).into_response())
        }
        Err(zookeeper_client::Error::NodeExists) => Err(ApiError::Conflict(
            "a preferred-leader election is already in progress; retry when /admin/preferred_replica_election is gone"
                .into(),
        )),
        Err(e) => Err(ApiError::Unavailable(format!("writing {}: {e}", znode::PREFERRED_REPLICA_ELECTION))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    #[serde(default = "one")]
    partitions: i32,
    #[serde(default = "one")]
    replication_factor: i32,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

fn one() -> i32 {
    1
}

async fn create(State(state): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let req: CreateTopic = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body must be JSON like {{\"name\": \"t\", \"partitions\": 3, \"replication_factor\": 1, \"config\": {{}}}}: {e}"
        ))
    })?;
    let refused = |e: NewTopicError| match e {
        NewTopicError::InvalidName(_) | NewTopicError::InvalidConfig(_) => ApiError::BadRequest(e.to_string()),
        NewTopicError::Exists(_) | NewTopicError::Collides { .. } => ApiError::Conflict(e.to_string()),
    };
    // The same rule twice: first alone, so a bad name or config is refused even while
    // ZooKeeper is unreachable, then against the topics that exist.
    validate_new_topic(&req.name, &req.config, &[]).map_err(refused)?;
    let (client, s) = state.snapshot().await?;
    validate_new_topic(&req.name, &req.config, s.topics.keys()).map_err(refused)?;
    let live: Vec<(BrokerId, Option<String>)> =
        s.brokers.iter().map(|(id, b)| (*id, b.registration.rack.clone())).collect();
    let replicas = assign_new_topic(&live, req.partitions, req.replication_factor)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let topic_id = TopicId::random();
    create_topic(&client, &req.name, topic_id, &replicas, req.config).await.map_err(|e| match e {
        TopicWriteError::Exists(t) => ApiError::Conflict(format!("topic {t:?} already exists")),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    tracing::info!(
        topic = req.name,
        partitions = req.partitions,
        replication_factor = req.replication_factor,
        "created topic through the admin API"
    );
    let assignment: BTreeMap<String, Vec<BrokerId>> = replicas.into_iter().map(|(p, r)| (p.to_string(), r)).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": req.name, "topic_id": topic_id.to_string(), "replicas": assignment })),
    )
        .into_response())
}

async fn delete(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let (client, s) = state.snapshot().await?;
    if !s.topics.contains_key(&name) {
        return Err(ApiError::NotFound(format!("topic {name:?} does not exist")));
    }
    mark_topic_for_deletion(&client, &name).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tracing::info!(topic = name, "marked topic for deletion through the admin API");
    Ok((StatusCode::ACCEPTED, Json(json!({ "name": name, "status": "marked for deletion" }))).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn disconnected() -> Router {
        let (_tx, rx) = watch::channel(Status::default());
        let zk: ZkSlot = Arc::new(RwLock::new(None));
        let view = crate::view::ClusterView::new(zk.clone());
        router(AdminState { zk, view, status: rx, controller_id: 3000, clients: Default::default() })
    }

    async fn call(app: Router, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn bad_bodies_get_400_with_a_json_reason() {
        for (body, needle) in [
            ("not json", "must be JSON"),
            (r#"{"name": "bad name"}"#, "only ASCII letters"),
            (r#"{"name": "ok", "config": {"retention.ms": "soon"}}"#, "retention.ms"),
            (r#"{"name": "ok", "partitons": 3}"#, "unknown field"),
        ] {
            let (status, json) = call(disconnected(), "POST", "/topics", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(json["error"].as_str().unwrap().contains(needle), "{body}: {json}");
        }
    }

    #[tokio::test]
    async fn without_zookeeper_reads_are_503_and_health_says_why() {
        let (status, json) = call(disconnected(), "GET", "/topics", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(json["error"].as_str().unwrap().contains("ZooKeeper"));
        let (status, json) = call(disconnected(), "GET", "/health", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["zookeeper"], "disconnected");
    }

    #[tokio::test]
    async fn unknown_paths_are_json_404s() {
        let (status, json) = call(disconnected(), "GET", "/nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(json["error"].is_string());
    }
}
