//! Consumer instances (REST Proxy v2): each is a librdkafka group consumer owned by this
//! coordinator, addressed as `/consumers/{group}/instances/{name}`. librdkafka calls
//! block, so every operation runs on the blocking pool, one at a time per instance.
//!
//! An instance hands out what it polls: offsets are stored (for commits without a body,
//! and for auto commit) only for records returned to the client; a record polled past
//! `max_bytes` waits in the instance for the next call. Buffering is bounded per instance
//! (librdkafka's queue, 2 MiB, and one pending record); instances idle past
//! `consumer.instance.timeout.ms` are closed, leaving their group.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::format::{self, Format};
use super::kafka::{self, ConsumerSettings, CALL_TIMEOUT};
use super::{answer, parse_json, read_body, read_json, RestError, RestState};

/// One consumer instance.
pub(crate) struct Instance {
    group: String,
    name: String,
    format: Format,
    inner: Arc<tokio::sync::Mutex<Inner>>,
    last_used: std::sync::Mutex<Instant>,
}

struct Inner {
    consumer: BaseConsumer,
    /// Records polled and not yet handed out.
    pending: VecDeque<OwnedMessage>,
    /// Partitions assigned by hand (`POST .../assignments`), as opposed to subscribed.
    manual: bool,
}

impl Instance {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs `f` on the consumer, on the blocking pool, after any operation in progress.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, RestError> + Send + 'static,
    ) -> Result<T, RestError> {
        self.touch();
        let mut guard = self.inner.clone().lock_owned().await;
        let result = tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .unwrap_or_else(|e| Err(RestError::kafka(format!("a consumer operation failed: {e}"))));
        self.touch();
        result
    }
}

fn find(state: &RestState, group: &str, name: &str) -> Result<Arc<Instance>, RestError> {
    state
        .instances()
        .get(&(group.to_string(), name.to_string()))
        .cloned()
        .ok_or_else(|| RestError::instance_not_found(group, name))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: Option<String>,
    /// Older clients send `id`.
    id: Option<String>,
    format: Option<String>,
    #[serde(rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    #[serde(rename = "auto.commit.enable")]
    auto_commit_enable: Option<Value>,
    #[serde(rename = "fetch.min.bytes")]
    fetch_min_bytes: Option<Value>,
    /// Accepted for compatibility; a GET of records says its own `timeout`.
    #[serde(rename = "consumer.request.timeout.ms")]
    _request_timeout_ms: Option<Value>,
}

/// A setting given as a JSON string or number/bool.
fn setting_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn invalid_config(message: impl Into<String>) -> RestError {
    RestError::unprocessable(42204, format!("Invalid consumer configuration: {}", message.into()))
}

/// The settings of a new instance from its request (pure).
fn settings_of(group: &str, r: &CreateRequest, generated: &str) -> Result<(ConsumerSettings, Format), RestError> {
    let name = r.name.clone().or_else(|| r.id.clone()).unwrap_or_else(|| generated.to_string());
    if name.is_empty() || name.len() > 249 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(invalid_config(format!(
            "name {name:?} must be 1-249 characters of letters, digits, '.', '_' and '-'"
        )));
    }
    let format = format::by_name(r.format.as_deref().unwrap_or("binary")).map_err(|e| invalid_config(e.to_string()))?;
    let reset = r.auto_offset_reset.clone().unwrap_or_else(|| "latest".into()).to_ascii_lowercase();
    let reset = match reset.as_str() {
        "earliest" | "smallest" => "earliest",
        "latest" | "largest" => "latest",
        "none" => "error",
        other => return Err(invalid_config(format!("auto.offset.reset {other:?} must be earliest, latest or none"))),
    };
    let auto_commit = match r.auto_commit_enable.as_ref().map(setting_text).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(invalid_config(format!("auto.commit.enable {other:?} must be true or false"))),
    };
    let fetch_min_bytes = match r.fetch_min_bytes.as_ref().map(setting_text) {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(b) if b >= 1 => Some(b),
            _ => return Err(invalid_config(format!("fetch.min.bytes {t:?} must be a positive integer"))),
        },
    };
    Ok((
        ConsumerSettings {
            group: group.to_string(),
            name,
            auto_offset_reset: reset.into(),
            auto_commit,
            fetch_min_bytes,
        },
        format,
    ))
}

/// `POST /consumers/{group}`.
pub(super) async fn create(
    State(state): State<RestState>,
    Path(group): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let bytes = read_body(body, state.config().max_request_bytes).await?;
    let request: CreateRequest =
        if bytes.iter().all(u8::is_ascii_whitespace) { CreateRequest::default() } else { parse_json(&bytes)? };
    let generated = format!("rest-consumer-{}", uuid::Uuid::new_v4().simple());
    let (settings, format) = settings_of(&group, &request, &generated)?;
    let key = (group.clone(), settings.name.clone());
    {
        let instances = state.instances();
        if instances.contains_key(&key) {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                40902,
                "Consumer with specified consumer ID already exists in the specified consumer group.",
            ));
        }
        if instances.len() >= state.config().max_instances {
            return Err(RestError::new(
                StatusCode::TOO_MANY_REQUESTS,
                429,
                format!(
                    "{} consumer instances are open, the most this coordinator keeps; delete unused ones or wait for idle ones to expire",
                    instances.len()
                ),
            ));
        }
    }
    let snapshot = state.snapshot().await?;
    let for_consumer = settings.clone();
    let clients = state.clients();
    let consumer = tokio::task::spawn_blocking(move || kafka::consumer(&clients, &snapshot, &for_consumer))
        .await
        .map_err(|e| RestError::kafka(e.to_string()))??;
    let instance = Arc::new(Instance {
        group: group.clone(),
        name: settings.name.clone(),
        format,
        inner: Arc::new(tokio::sync::Mutex::new(Inner { consumer, pending: VecDeque::new(), manual: false })),
        last_used: std::sync::Mutex::new(Instant::now()),
    });
    {
        let mut instances = state.instances();
        if instances.contains_key(&key) {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                40902,
                "Consumer with specified consumer ID already exists in the specified consumer group.",
            ));
        }
        instances.insert(key, instance);
    }
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let base_uri = format!("http://{host}{}/instances/{}", uri.path().trim_end_matches('/'), settings.name);
    tracing::info!(group, instance = settings.name, format = format.name(), "REST consumer instance created");
    Ok(answer(StatusCode::OK, json!({ "instance_id": settings.name, "base_uri": base_uri })))
}

fn close(instance: Arc<Instance>, why: &'static str) {
    tracing::info!(group = instance.group, instance = instance.name, why, "REST consumer instance closed");
    tokio::spawn(async move {
        // Waits for an operation in progress, then leaves the group on the blocking pool.
        let guard = instance.inner.clone().lock_owned().await;
        let _ = tokio::task::spawn_blocking(move || {
            guard.consumer.unsubscribe();
            drop(guard);
        })
        .await;
    });
}

/// `DELETE /consumers/{group}/instances/{name}`.
pub(super) async fn delete(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let removed = state.instances().remove(&(group.clone(), name.clone()));
    let instance = removed.ok_or_else(|| RestError::instance_not_found(&group, &name))?;
    close(instance, "deleted by its client");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Closes instances idle past `consumer.instance.timeout.ms`, until `shutdown`.
pub(super) async fn expire_idle(state: RestState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            () = shutdown.cancelled() => break,
        }
        let now = Instant::now();
        let timeout = state.config().instance_timeout;
        let expired: Vec<Arc<Instance>> = {
            let mut instances = state.instances();
            let keys: Vec<_> =
                instances.iter().filter(|(_, i)| i.idle_for(now) > timeout).map(|(k, _)| k.clone()).collect();
            keys.iter().filter_map(|k| instances.remove(k)).collect()
        };
        for i in expired {
            close(i, "idle longer than consumer.instance.timeout.ms");
        }
    }
    let all: Vec<Arc<Instance>> = state.instances().drain().map(|(_, i)| i).collect();
    for i in all {
        close(i, "the coordinator is shutting down");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    topics: Option<Vec<String>>,
    topic_pattern: Option<String>,
}

/// `POST .../subscription`.
pub(super) async fn subscribe(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let request: SubscribeRequest = read_json(&state, body).await?;
    let topics: Vec<String> = match (request.topics, request.topic_pattern) {
        (Some(t), None) if !t.is_empty() => t,
        (None, Some(p)) if !p.is_empty() => vec![if p.starts_with('^') { p } else { format!("^{p}") }],
        _ => {
            return Err(RestError::unprocessable(
                42200,
                "give either \"topics\" (a non-empty list) or \"topic_pattern\" (a regular expression)",
            ))
        }
    };
    instance
        .run(move |inner| {
            if inner.manual {
                return Err(RestError::new(
                    StatusCode::CONFLICT,
                    40903,
                    "Illegal state: this instance was assigned partitions by hand; delete it and create another to subscribe",
                ));
            }
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            inner.consumer.subscribe(&names).map_err(|e| kafka::consumer_error("subscribing", &e))?;
            inner.pending.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET .../subscription`.
pub(super) async fn subscription(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let topics = instance
        .run(|inner| {
            let list =
                inner.consumer.subscription().map_err(|e| kafka::consumer_error("reading the subscription", &e))?;
            Ok(list.elements().iter().map(|e| e.topic().to_string()).collect::<Vec<_>>())
        })
        .await?;
    Ok(answer(StatusCode::OK, json!({ "topics": topics })))
}

/// `DELETE .../subscription`.
pub(super) async fn unsubscribe(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    instance
        .run(|inner| {
            inner.consumer.unsubscribe();
            inner.pending.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PartitionRef {
    topic: String,
    partition: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionsRequest {
    partitions: Vec<PartitionRef>,
}

/// `POST .../assignments`.
pub(super) async fn assign(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let request: PartitionsRequest = read_json(&state, body).await?;
    let snapshot = state.snapshot().await?;
    for p in &request.partitions {
        let t = snapshot.topics.get(&p.topic).ok_or_else(|| RestError::topic_not_found(&p.topic))?;
        if !t.partitions.contains_key(&p.partition) {
            return Err(RestError::partition_not_found(&p.topic, p.partition));
        }
    }
    instance
        .run(move |inner| {
            if !inner.manual && inner.consumer.subscription().is_ok_and(|s| s.count() > 0) {
                return Err(RestError::new(
                    StatusCode::CONFLICT,
                    40903,
                    "Illegal state: this instance is subscribed; unsubscribe before assigning partitions by hand",
                ));
            }
            let mut list = TopicPartitionList::new();
            for p in &request.partitions {
                list.add_partition(&p.topic, p.partition);
            }
            inner.consumer.assign(&list).map_err(|e| kafka::consumer_error("assigning partitions", &e))?;
            inner.manual = true;
            inner.pending.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET .../assignments`.
pub(super) async fn assignments(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let partitions = instance
        .run(|inner| {
            let list = inner.consumer.assignment().map_err(|e| kafka::consumer_error("reading the assignment", &e))?;
            Ok(list
                .elements()
                .iter()
                .map(|e| json!({ "topic": e.topic(), "partition": e.partition() }))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(answer(StatusCode::OK, json!({ "partitions": partitions })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekRequest {
    #[serde(default)]
    offsets: Vec<OffsetRef>,
    #[serde(default)]
    timestamps: Vec<TimestampRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetRef {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(default)]
    metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimestampRef {
    topic: String,
    partition: i32,
    timestamp: String,
}

/// Moves the instance's positions: by hand-assigned partitions are assigned again at
/// the new offsets (librdkafka cannot seek a partition it has not started fetching);
/// subscribed ones are sought.
fn reposition(inner: &mut Inner, targets: Vec<(String, i32, Offset)>) -> Result<(), RestError> {
    let assigned = inner.consumer.assignment().map_err(|e| kafka::consumer_error("reading the assignment", &e))?;
    for (topic, partition, _) in &targets {
        if assigned.find_partition(topic, *partition).is_none() {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                40903,
                format!("Illegal state: {topic}-{partition} is not assigned to this instance; subscribe or assign first, and read records once after subscribing"),
            ));
        }
    }
    inner.pending.retain(|m| !targets.iter().any(|(t, p, _)| m.topic() == t && m.partition() == *p));
    if inner.manual {
        let mut list = TopicPartitionList::new();
        for e in assigned.elements() {
            let target = targets.iter().find(|(t, p, _)| t == e.topic() && *p == e.partition());
            let offset = match target {
                Some((_, _, o)) => *o,
                None => inner
                    .consumer
                    .position()
                    .ok()
                    .and_then(|pos| pos.find_partition(e.topic(), e.partition()).map(|x| x.offset()))
                    .unwrap_or(Offset::Stored),
            };
            list.add_partition_offset(e.topic(), e.partition(), offset)
                .map_err(|err| kafka::consumer_error("seeking", &err))?;
        }
        inner.consumer.assign(&list).map_err(|e| kafka::consumer_error("seeking", &e))
    } else {
        let mut list = TopicPartitionList::new();
        for (t, p, o) in &targets {
            list.add_partition_offset(t, *p, *o).map_err(|e| kafka::consumer_error("seeking", &e))?;
        }
        let result =
            inner.consumer.seek_partitions(list, CALL_TIMEOUT).map_err(|e| kafka::consumer_error("seeking", &e))?;
        for e in result.elements() {
            if let Err(err) = e.error() {
                return Err(kafka::consumer_error(&format!("seeking {}-{}", e.topic(), e.partition()), &err));
            }
        }
        Ok(())
    }
}

/// `POST .../positions`: to offsets, or to the first offsets at or after timestamps.
pub(super) async fn seek(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let request: SeekRequest = read_json(&state, body).await?;
    let mut by_time = Vec::new();
    for t in &request.timestamps {
        let ms = tributary_common::time::parse_rfc3339_ms(&t.timestamp).ok_or_else(|| {
            RestError::unprocessable(42200, format!("timestamp {:?} is not an RFC 3339 date and time", t.timestamp))
        })?;
        by_time.push((t.topic.clone(), t.partition, ms));
    }
    if request.offsets.iter().any(|o| o.offset < 0) {
        return Err(RestError::unprocessable(42200, "offsets must be 0 or more"));
    }
    let mut targets: Vec<(String, i32, Offset)> =
        request.offsets.iter().map(|o| (o.topic.clone(), o.partition, Offset::Offset(o.offset))).collect();
    instance
        .run(move |inner| {
            if !by_time.is_empty() {
                let mut list = TopicPartitionList::new();
                for (t, p, ms) in &by_time {
                    list.add_partition_offset(t, *p, Offset::Offset(*ms))
                        .map_err(|e| kafka::consumer_error("seeking", &e))?;
                }
                let found = inner
                    .consumer
                    .offsets_for_times(list, CALL_TIMEOUT)
                    .map_err(|e| kafka::consumer_error("looking up offsets by time", &e))?;
                for e in found.elements() {
                    // No record at or after the time: the end.
                    let offset = match e.offset() {
                        Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    targets.push((e.topic().to_string(), e.partition(), offset));
                }
            }
            reposition(inner, targets)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn seek_to(state: RestState, group: String, name: String, body: Body, to: Offset) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let request: PartitionsRequest = read_json(&state, body).await?;
    let targets = request.partitions.into_iter().map(|p| (p.topic, p.partition, to)).collect();
    instance.run(move |inner| reposition(inner, targets)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../positions/beginning`.
pub(super) async fn seek_to_beginning(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    seek_to(state, group, name, body, Offset::Beginning).await
}

/// `POST .../positions/end`.
pub(super) async fn seek_to_end(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    seek_to(state, group, name, body, Offset::End).await
}

#[derive(Deserialize)]
pub(super) struct RecordsQuery {
    timeout: Option<u64>,
    max_bytes: Option<usize>,
}

/// How long a GET of records waits at most, and how much it answers at most.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
const MAX_RESPONSE_BYTES: usize = 8 << 20;
const DEFAULT_RESPONSE_BYTES: usize = 1 << 20;

/// The size a record counts for against `max_bytes`.
fn record_size(m: &OwnedMessage) -> usize {
    m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len) + 64
}

fn record_json(format: Format, m: &OwnedMessage) -> Result<Value, RestError> {
    let decode = |what: &str, bytes: Option<&[u8]>| {
        format::decode(format, bytes).map_err(|e| {
            RestError::kafka(format!("the {what} at {}-{} offset {} is {e}", m.topic(), m.partition(), m.offset()))
        })
    };
    let headers: Vec<Value> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    json!({
                        "key": h.key,
                        "value": h.value.map(|v| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "topic": m.topic(),
        "key": decode("key", m.key())?,
        "value": decode("value", m.payload())?,
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "headers": headers,
    }))
}

/// `GET .../records?timeout=&max_bytes=`: the records polled within `timeout` ms (1000 by
/// default), at most `max_bytes` of them; returns as soon as records arrived and no more
/// are waiting.
pub(super) async fn records(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    Query(query): Query<RecordsQuery>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = format::accepted(accept, instance.format).map_err(|asked| {
        RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            40601,
            format!(
                "The requested embedded data format does not match the deserializer for this consumer instance: it reads {}, the request accepts {}",
                instance.format.name(),
                asked.name()
            ),
        )
    })?;
    let wait = query.timeout.map_or(DEFAULT_WAIT, Duration::from_millis).min(MAX_WAIT);
    let max_bytes = query.max_bytes.unwrap_or(DEFAULT_RESPONSE_BYTES).clamp(1, MAX_RESPONSE_BYTES);
    let polled = instance
        .run(move |inner| {
            let deadline = Instant::now() + wait;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            loop {
                let next = match inner.pending.pop_front() {
                    Some(m) => Some(m),
                    None => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let timeout = if out.is_empty() { left } else { Duration::ZERO };
                        match inner.consumer.poll(timeout) {
                            Some(Ok(m)) => Some(m.detach()),
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "REST consumer instance: poll reported an error");
                                if Instant::now() >= deadline {
                                    None
                                } else {
                                    continue;
                                }
                            }
                            None => None,
                        }
                    }
                };
                let Some(m) = next else { break };
                let size = record_size(&m);
                if !out.is_empty() && bytes + size > max_bytes {
                    inner.pending.push_front(m);
                    break;
                }
                bytes += size;
                // Offsets are stored only for records handed out.
                let _ = inner.consumer.store_offset(m.topic(), m.partition(), m.offset());
                out.push(m);
                if bytes >= max_bytes {
                    break;
                }
            }
            Ok(out)
        })
        .await?;
    let mut records = Vec::with_capacity(polled.len());
    for m in &polled {
        records.push(record_json(format, m)?);
    }
    let content_type = format.content_type();
    Ok((StatusCode::OK, [(axum::http::header::CONTENT_TYPE, content_type)], axum::Json(Value::Array(records)))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRequest {
    offsets: Vec<OffsetRef>,
}

/// `POST .../offsets`: commits the given offsets (each the last record processed, so
/// `offset + 1` is committed, as the REST Proxy does), or with no body everything this
/// instance has handed out.
pub(super) async fn commit(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let bytes = read_body(body, state.config().max_request_bytes).await?;
    let request: Option<CommitRequest> =
        if bytes.iter().all(u8::is_ascii_whitespace) { None } else { Some(parse_json(&bytes)?) };
    instance
        .run(move |inner| {
            let result = match request {
                None => inner.consumer.commit_consumer_state(CommitMode::Sync),
                Some(r) => {
                    let mut list = TopicPartitionList::new();
                    for o in &r.offsets {
                        let e = list.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset + 1));
                        e.map_err(|e| kafka::consumer_error("committing", &e))?;
                        if let Some(md) = &o.metadata {
                            if let Some(mut elem) = list.find_partition(&o.topic, o.partition) {
                                elem.set_metadata(md.as_str());
                            }
                        }
                    }
                    inner.consumer.commit(&list, CommitMode::Sync)
                }
            };
            match result {
                // Nothing was read yet: nothing to commit.
                Err(e) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
                Err(e) => Err(kafka::consumer_error("committing offsets", &e)),
                Ok(()) => Ok(()),
            }
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET .../offsets` with `{"partitions": [...]}`: the group's committed offsets.
pub(super) async fn committed(
    State(state): State<RestState>,
    Path((group, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let instance = find(&state, &group, &name)?;
    let request: PartitionsRequest = read_json(&state, body).await?;
    let offsets = instance
        .run(move |inner| {
            let mut list = TopicPartitionList::new();
            for p in &request.partitions {
                list.add_partition(&p.topic, p.partition);
            }
            let found = inner
                .consumer
                .committed_offsets(list, CALL_TIMEOUT)
                .map_err(|e| kafka::consumer_error("reading committed offsets", &e))?;
            Ok(found
                .elements()
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    };
                    json!({ "topic": e.topic(), "partition": e.partition(), "offset": offset, "metadata": e.metadata() })
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(answer(StatusCode::OK, json!({ "offsets": offsets })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> CreateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn instance_settings_are_read_as_the_rest_proxy_reads_them() {
        let (s, f) = settings_of("g", &request(json!({})), "rest-consumer-1").unwrap();
        assert_eq!(
            (s.name.as_str(), s.auto_offset_reset.as_str(), s.auto_commit, f),
            ("rest-consumer-1", "latest", true, Format::Binary)
        );
        let (s, f) = settings_of(
            "g",
            &request(json!({"name": "c1", "format": "json", "auto.offset.reset": "earliest", "auto.commit.enable": "false", "fetch.min.bytes": 10})),
            "x",
        )
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.auto_offset_reset.as_str(), s.auto_commit, s.fetch_min_bytes, f),
            ("c1", "earliest", false, Some(10), Format::Json)
        );
        assert_eq!(settings_of("g", &request(json!({"id": "old"})), "x").unwrap().0.name, "old");
        assert_eq!(
            settings_of("g", &request(json!({"auto.offset.reset": "none"})), "x").unwrap().0.auto_offset_reset,
            "error"
        );
        for bad in [
            json!({"format": "avro"}),
            json!({"format": "xml"}),
            json!({"auto.offset.reset": "middle"}),
            json!({"auto.commit.enable": "maybe"}),
            json!({"fetch.min.bytes": "-1"}),
            json!({"name": "has space"}),
            json!({"name": ""}),
        ] {
            let e = settings_of("g", &request(bad.clone()), "x").unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::UNPROCESSABLE_ENTITY, 42204), "{bad}");
        }
    }
}
