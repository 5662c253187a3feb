//! An HTTP produce and consume API compatible with Confluent's REST Proxy, so that scripts
//! written for it work unchanged: on its own listener (`rest.listen`, the REST Proxy's
//! port 8082 in the compose files) at the REST Proxy's paths, and under `/rest` on the
//! admin port, where the console uses the same endpoints.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | /topics, /topics/{t}, /topics/{t}/partitions[/{p}] | v2 topic metadata |
//! | POST | /topics/{t}, /topics/{t}/partitions/{p} | v2 produce (`application/vnd.kafka.{binary,json}.v2+json`) |
//! | POST | /consumers/{group} | create a consumer instance |
//! | DELETE | /consumers/{group}/instances/{name} | close it |
//! | POST, GET, DELETE | .../subscription | subscribe (`topics` or `topic_pattern`), show, unsubscribe |
//! | POST, GET | .../assignments | assign partitions by hand, show the assignment |
//! | POST | .../positions, .../positions/beginning, .../positions/end | seek (to offsets or timestamps) |
//! | GET | .../records | the records fetched since the last call |
//! | POST, GET | .../offsets | commit (given offsets, or everything read), show committed offsets |
//! | GET | /v3/clusters[/{id}] | the cluster |
//! | POST | /v3/clusters/{id}/topics/{t}/records | v3 produce, one record or a stream of them |
//!
//! The coordinator is a Kafka client here, through librdkafka (the rdkafka crate): one
//! shared producer, and one group consumer per consumer instance. Errors are the REST
//! Proxy's `{"error_code", "message"}` with its codes (40401 topic not found, 40403
//! consumer instance not found, ...).

mod consumers;
mod format;
mod kafka;
mod produce;

pub(crate) use kafka::base_config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tributary_common::snapshot::ClusterSnapshot;

/// The REST Proxy's media type for answers without embedded data.
pub(crate) const V2_JSON: &str = "application/vnd.kafka.v2+json";

/// An error in the REST Proxy's shape: an HTTP status and `{"error_code", "message"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestError {
    pub(crate) status: StatusCode,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl RestError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> RestError {
        RestError { status, code, message: message.into() }
    }

    pub(crate) fn topic_not_found(topic: &str) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 40401, format!("Topic not found: {topic}."))
    }

    pub(crate) fn partition_not_found(topic: &str, partition: i32) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 40402, format!("Partition not found: {topic}-{partition}."))
    }

    pub(crate) fn instance_not_found(group: &str, name: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("Consumer instance not found: {name} in group {group} (it may have expired after being idle)."),
        )
    }

    pub(crate) fn unprocessable(code: u32, message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, 400, message)
    }

    pub(crate) fn kafka(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, format!("Kafka error: {}", message.into()))
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::SERVICE_UNAVAILABLE, 50003, message)
    }

    pub(crate) fn body(&self) -> Value {
        json!({ "error_code": self.code, "message": self.message })
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = self.body();
        (self.status, [(axum::http::header::CONTENT_TYPE, V2_JSON)], Json(body)).into_response()
    }
}

/// A JSON answer with the REST Proxy's media type.
pub(crate) fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, V2_JSON)], Json(body)).into_response()
}

/// Limits of the REST API.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// Consumer instances idle this long are closed (`consumer.instance.timeout.ms`).
    pub instance_timeout: Duration,
    /// Consumer instances open at once, at most.
    pub max_instances: usize,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// How the REST API's clients reach brokers (`client.config`).
    pub clients: Arc<crate::brokers::BrokerClients>,
}

/// Shared state of the REST handlers.
#[derive(Clone)]
pub struct RestState {
    inner: Arc<Rest>,
}

struct Rest {
    view: Arc<crate::view::ClusterView>,
    config: RestConfig,
    producer: tokio::sync::Mutex<Option<kafka::Producer>>,
    instances: Mutex<HashMap<(String, String), Arc<consumers::Instance>>>,
}

impl RestState {
    /// State for `router`, reading the cluster through `view`. Idle consumer instances are
    /// closed until `shutdown`.
    pub fn new(
        view: Arc<crate::view::ClusterView>,
        config: RestConfig,
        shutdown: CancellationToken,
    ) -> RestState {
        let state = RestState {
            inner: Arc::new(Rest {
                view,
                config,
                producer: tokio::sync::Mutex::new(None),
                instances: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(consumers::expire_idle(state.clone(), shutdown));
        state
    }

    pub(crate) fn config(&self) -> &RestConfig {
        &self.inner.config
    }

    /// The cluster as ZooKeeper holds it now.
    pub(crate) async fn snapshot(&self) -> Result<Arc<ClusterSnapshot>, RestError> {
        match self.inner.view.snapshot().await {
            Ok((_, s)) => Ok(s),
            Err(e) => Err(RestError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, format!("Zookeeper error: {e}"))),
        }
    }

    /// The shared producer, created on first use from the brokers registered now.
    pub(crate) async fn producer(&self, snapshot: &ClusterSnapshot) -> Result<kafka::Producer, RestError> {
        let mut slot = self.inner.producer.lock().await;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let p = kafka::Producer::new(&self.inner.config.clients, snapshot)?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// How the REST API's clients reach brokers.
    pub(crate) fn clients(&self) -> Arc<crate::brokers::BrokerClients> {
        self.inner.config.clients.clone()
    }

    pub(crate) fn instances(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<consumers::Instance>>> {
        self.inner.instances.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How much of an oversized body is read and dropped so that its client, still sending,
/// gets the 413 instead of a broken connection.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a request body of at most `max` bytes: 413 past it.
pub(crate) async fn read_body(body: axum::body::Body, max: usize) -> Result<bytes::Bytes, RestError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RestError::bad_request(format!("the request body could not be read: {e}")))?;
        seen += chunk.len();
        if seen <= max {
            buf.extend_from_slice(&chunk);
        } else if seen > max.saturating_add(DRAIN_LIMIT) {
            break;
        }
    }
    if seen > max {
        return Err(RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            413,
            format!("the request body is larger than {max} bytes (rest.max.request.bytes); send fewer or smaller records per request"),
        ));
    }
    Ok(buf.freeze())
}

/// Reads a request body (413 past `rest.max.request.bytes`) and parses it as JSON (422).
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    state: &RestState,
    body: axum::body::Body,
) -> Result<T, RestError> {
    parse_json(&read_body(body, state.config().max_request_bytes).await?)
}

/// Parses a JSON body (422 when it is not what the endpoint takes).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(body)
        .map_err(|e| RestError::unprocessable(422, format!("the request body is not what this endpoint takes: {e}")))
}

/// The Content-Type of a request, if any.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// The router of the REST API; mounted at the root of the REST listener and under `/rest`
/// on the admin port.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/topics", get(produce::list_topics))
        .route("/topics/{topic}", get(produce::describe_topic).post(produce::produce_v2))
        .route("/topics/{topic}/partitions", get(produce::list_partitions))
        .route(
            "/topics/{topic}/partitions/{partition}",
            get(produce::describe_partition).post(produce::produce_v2_partition),
        )
        .route("/consumers/{group}", post(consumers::create))
        .route("/consumers/{group}/instances/{name}", axum::routing::delete(consumers::delete))
        .route(
            "/consumers/{group}/instances/{name}/subscription",
            post(consumers::subscribe).get(consumers::subscription).delete(consumers::unsubscribe),
        )
        .route("/consumers/{group}/instances/{name}/assignments", post(consumers::assign).get(consumers::assignments))
        .route("/consumers/{group}/instances/{name}/positions", post(consumers::seek))
        .route("/consumers/{group}/instances/{name}/positions/beginning", post(consumers::seek_to_beginning))
        .route("/consumers/{group}/instances/{name}/positions/end", post(consumers::seek_to_end))
        .route("/consumers/{group}/instances/{name}/records", get(consumers::records))
        .route("/consumers/{group}/instances/{name}/offsets", post(consumers::commit).get(consumers::committed))
        .route("/v3/clusters", get(clusters))
        .route("/v3/clusters/{cluster}", get(cluster))
        .route("/v3/clusters/{cluster}/topics/{topic}/records", post(produce::produce_v3))
        .fallback(|| async { RestError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found") })
        .with_state(state)
}

fn cluster_json(id: &str) -> Value {
    json!({ "kind": "KafkaCluster", "metadata": { "self": format!("/v3/clusters/{id}") }, "cluster_id": id })
}

/// `GET /v3/clusters`.
async fn clusters(State(state): State<RestState>) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    let data: Vec<Value> = s.cluster_id.iter().map(|id| cluster_json(id)).collect();
    Ok(answer(StatusCode::OK, json!({ "kind": "KafkaClusterList", "metadata": {}, "data": data })))
}

/// `GET /v3/clusters/{id}`.
async fn cluster(State(state): State<RestState>, Path(id): Path<String>) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    check_cluster(&s, &id)?;
    Ok(answer(StatusCode::OK, cluster_json(&id)))
}

/// 404 unless `id` is this cluster's id.
pub(crate) fn check_cluster(s: &ClusterSnapshot, id: &str) -> Result<(), RestError> {
    if s.cluster_id.as_deref() == Some(id) {
        Ok(())
    } else {
        Err(RestError::new(
            StatusCode::NOT_FOUND,
            404,
            format!("Cluster {id} not found; GET /v3/clusters names this one."),
        ))
    }
}
