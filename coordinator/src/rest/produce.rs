//! Topics and produce: v2 `GET /topics...` and `POST /topics/{t}[/partitions/{p}]`, and v3
//! `POST /v3/clusters/{id}/topics/{t}/records` with one record or a stream of them.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use futures_util::StreamExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use tributary_common::snapshot::{ClusterSnapshot, TopicSnapshot};

use super::format;
use super::{answer, check_cluster, content_type, kafka, read_json, RestError, RestState};

fn topic<'a>(s: &'a ClusterSnapshot, name: &str) -> Result<&'a TopicSnapshot, RestError> {
    s.topics.get(name).filter(|_| !s.pending_deletions.contains(name)).ok_or_else(|| RestError::topic_not_found(name))
}

fn partition_json(s: &ClusterSnapshot, t: &TopicSnapshot, p: i32) -> Value {
    let ps = &t.partitions[&p];
    let state = ps.state.as_ref().map(|(st, _)| st);
    let leader = state.map(|st| st.leader).filter(|l| *l >= 0 && s.brokers.contains_key(l));
    let isr = state.map(|st| st.isr.clone()).unwrap_or_default();
    json!({
        "partition": p,
        "leader": leader.unwrap_or(-1),
        "replicas": ps.replicas.iter().map(|r| json!({
            "broker": r,
            "leader": Some(*r) == leader,
            "in_sync": isr.contains(r),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /topics`: topic names.
pub(super) async fn list_topics(State(state): State<RestState>) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    let names: Vec<&String> = s.topics.keys().filter(|n| !s.pending_deletions.contains(*n)).collect();
    Ok(answer(StatusCode::OK, json!(names)))
}

/// `GET /topics/{t}`.
pub(super) async fn describe_topic(
    State(state): State<RestState>,
    Path(name): Path<String>,
) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    let t = topic(&s, &name)?;
    let partitions: Vec<Value> = t.partitions.keys().map(|p| partition_json(&s, t, *p)).collect();
    Ok(answer(StatusCode::OK, json!({ "name": name, "configs": t.config, "partitions": partitions })))
}

/// `GET /topics/{t}/partitions`.
pub(super) async fn list_partitions(
    State(state): State<RestState>,
    Path(name): Path<String>,
) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    let t = topic(&s, &name)?;
    Ok(answer(StatusCode::OK, json!(t.partitions.keys().map(|p| partition_json(&s, t, *p)).collect::<Vec<_>>())))
}

/// `GET /topics/{t}/partitions/{p}`.
pub(super) async fn describe_partition(
    State(state): State<RestState>,
    Path((name, partition)): Path<(String, i32)>,
) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    let t = topic(&s, &name)?;
    if !t.partitions.contains_key(&partition) {
        return Err(RestError::partition_not_found(&name, partition));
    }
    Ok(answer(StatusCode::OK, partition_json(&s, t, partition)))
}

#[derive(Deserialize)]
struct V2Request {
    records: Vec<V2Record>,
    // Schemas are refused by the content type before the body is read; accepted and
    // ignored here so a body with `"value_schema": null` parses.
    #[serde(default, rename = "key_schema")]
    _key_schema: Option<Value>,
    #[serde(default, rename = "value_schema")]
    _value_schema: Option<Value>,
    #[serde(default, rename = "key_schema_id")]
    _key_schema_id: Option<Value>,
    #[serde(default, rename = "value_schema_id")]
    _value_schema_id: Option<Value>,
}

#[derive(Deserialize)]
struct V2Record {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    partition: Option<i32>,
}

/// One record ready to send.
pub(crate) struct Outgoing {
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
    pub(crate) timestamp_ms: Option<i64>,
}

/// What became of one record.
pub(crate) type Sent = Result<(i32, i64, Option<i64>), rdkafka::error::KafkaError>;

/// Sends `records` to `topic`, all queued at once, and waits for each delivery.
pub(crate) async fn send(producer: &kafka::Producer, topic: &str, records: &[Outgoing]) -> Vec<Sent> {
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(topic);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        if let Some(ts) = r.timestamp_ms {
            record = record.timestamp(ts);
        }
        if !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in &r.headers {
                headers = headers.insert(Header { key: name, value: value.as_ref() });
            }
            record = record.headers(headers);
        }
        pending.push(producer.inner().send_result(record).map_err(|(e, _)| e));
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(match p {
            Ok(delivery) => match delivery.await {
                Ok(Ok(d)) => Ok((d.partition, d.offset, d.timestamp.to_millis())),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(rdkafka::error::KafkaError::Canceled),
            },
            Err(e) => Err(e),
        });
    }
    out
}

/// `POST /topics/{t}`.
pub(super) async fn produce_v2(
    State(state): State<RestState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    produce_v2_to(state, name, None, headers, body).await
}

/// `POST /topics/{t}/partitions/{p}`.
pub(super) async fn produce_v2_partition(
    State(state): State<RestState>,
    Path((name, partition)): Path<(String, i32)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    produce_v2_to(state, name, Some(partition), headers, body).await
}

async fn produce_v2_to(
    state: RestState,
    name: String,
    partition: Option<i32>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let format = match content_type(&headers).map(format::of_media_type) {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(RestError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, e.to_string())),
        None => {
            return Err(RestError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                415,
                "no Content-Type; use application/vnd.kafka.binary.v2+json or application/vnd.kafka.json.v2+json",
            ))
        }
    };
    let s = state.snapshot().await?;
    let t = topic(&s, &name)?;
    let request: V2Request = read_json(&state, body).await?;
    if request.records.is_empty() {
        return Err(RestError::unprocessable(42200, "records may not be empty"));
    }
    let mut outgoing = Vec::with_capacity(request.records.len());
    for (i, r) in request.records.iter().enumerate() {
        let p = partition.or(r.partition);
        if let Some(p) = p.filter(|p| !t.partitions.contains_key(p)) {
            return Err(RestError::partition_not_found(&name, p));
        }
        let convert = |what: &str, v: &Value| {
            format::encode(format, v).map_err(|e| {
                RestError::unprocessable(
                    42203,
                    format!("Conversion of JSON to Object failed: record {i}'s {what}: {e}"),
                )
            })
        };
        outgoing.push(Outgoing {
            partition: p,
            key: convert("key", &r.key)?,
            value: convert("value", &r.value)?,
            headers: Vec::new(),
            timestamp_ms: None,
        });
    }
    let producer = state.producer(&s).await?;
    let results = send(&producer, &name, &outgoing).await;
    let offsets: Vec<Value> = results
        .iter()
        .map(|r| match r {
            Ok((partition, offset, _)) => json!({ "partition": partition, "offset": offset, "error_code": null, "error": null }),
            Err(e) => {
                tracing::debug!(topic = name, error = %e, "REST produce: a record was not written");
                json!({ "partition": null, "offset": null, "error_code": kafka::produce_error_code(e), "error": e.to_string() })
            }
        })
        .collect();
    Ok(answer(StatusCode::OK, json!({ "key_schema_id": null, "value_schema_id": null, "offsets": offsets })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V3Record {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<V3Header>,
    key: Option<Value>,
    value: Option<Value>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V3Header {
    name: String,
    value: Option<String>,
}

/// A v3 record as it will be sent, or the error to answer for it.
fn v3_outgoing(t: &TopicSnapshot, topic: &str, r: &V3Record) -> Result<Outgoing, RestError> {
    if let Some(p) = r.partition_id.filter(|p| !t.partitions.contains_key(p)) {
        return Err(RestError::partition_not_found(topic, p));
    }
    let bad = |e: String| RestError::bad_request(e);
    let mut headers = Vec::with_capacity(r.headers.len());
    for h in &r.headers {
        let value = match &h.value {
            None => None,
            Some(v) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| bad(format!("header {:?}: its value must be base64 ({e})", h.name)))?,
            ),
        };
        headers.push((h.name.clone(), value));
    }
    let timestamp_ms = match &r.timestamp {
        None => None,
        Some(ts) => Some(tributary_common::time::parse_rfc3339_ms(ts).ok_or_else(|| {
            bad(format!("timestamp {ts:?} is not an RFC 3339 date and time such as 2024-05-01T12:00:00Z"))
        })?),
    };
    Ok(Outgoing {
        partition: r.partition_id,
        key: format::encode_v3(r.key.as_ref()).map_err(|e| bad(format!("key: {e}")))?,
        value: format::encode_v3(r.value.as_ref()).map_err(|e| bad(format!("value: {e}")))?,
        headers,
        timestamp_ms,
    })
}

/// The v3 answer for one record.
fn v3_result(cluster: &str, topic: &str, r: &V3Record, out: &Outgoing, sent: &Sent) -> Value {
    match sent {
        Ok((partition, offset, ts)) => {
            let size = |v: &Option<Vec<u8>>, raw: Option<&Value>| {
                format::v3_type(raw).map(|ty| json!({ "type": ty, "size": v.as_ref().map_or(0, Vec::len) }))
            };
            json!({
                "error_code": 200,
                "cluster_id": cluster,
                "topic_name": topic,
                "partition_id": partition,
                "offset": offset,
                "timestamp": ts.map(tributary_common::time::format_rfc3339_ms),
                "key": size(&out.key, r.key.as_ref()),
                "value": size(&out.value, r.value.as_ref()),
            })
        }
        Err(e) => {
            let retriable = kafka::produce_error_code(e) == 2;
            json!({
                "error_code": if retriable { 503 } else { 500 },
                "message": format!("Kafka error: {e}"),
            })
        }
    }
}

/// `POST /v3/clusters/{id}/topics/{t}/records`: the body is one record, answered with one
/// result and its status, or a stream of records (concatenated JSON objects, typically
/// chunked), answered with one result per line as each is written, status 200.
pub(super) async fn produce_v3(
    State(state): State<RestState>,
    Path((cluster, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let s = state.snapshot().await?;
    check_cluster(&s, &cluster)?;
    let t = topic(&s, &name)?.clone();
    let producer = state.producer(&s).await?;
    let max = state.config().max_request_bytes;
    let mut reader = RecordStream::new(body, max);
    let first = match reader.next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(RestError::bad_request(
                "the body holds no record; send {\"value\": {\"type\": \"JSON\", \"data\": ...}}",
            ))
        }
    };
    let first_result = produce_one(&producer, &cluster, &name, &t, &first).await;
    // A body that ended after one record is answered as one; a longer one as a stream.
    if reader.at_end().await {
        let status = first_result.get("error_code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok());
        let status = status.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
        return Ok(answer(status, first_result));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let line = |v: Value| Ok(bytes::Bytes::from(format!("{v}\n")));
        if tx.send(line(first_result)).await.is_err() {
            return;
        }
        while let Some(next) = reader.next().await {
            let result = match next {
                Ok(r) => produce_one(&producer, &cluster, &name, &t, &r).await,
                Err(e) => {
                    let stop = e.status == StatusCode::PAYLOAD_TOO_LARGE;
                    let _ = tx.send(line(e.body())).await;
                    if stop {
                        return;
                    }
                    continue;
                }
            };
            if tx.send(line(result)).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn produce_one(producer: &kafka::Producer, cluster: &str, topic: &str, t: &TopicSnapshot, raw: &Value) -> Value {
    let record: V3Record = match serde_json::from_value(raw.clone()) {
        Ok(r) => r,
        Err(e) => return RestError::bad_request(format!("not a record: {e}")).body(),
    };
    let out = match v3_outgoing(t, topic, &record) {
        Ok(o) => o,
        Err(e) => return json!({ "error_code": e.status.as_u16(), "message": e.message }),
    };
    let sent = send(producer, topic, std::slice::from_ref(&out)).await.pop().expect("one result per record");
    v3_result(cluster, topic, &record, &out, &sent)
}

/// The JSON objects of a request body, read as they arrive.
struct RecordStream {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    max: usize,
    ended: bool,
}

impl RecordStream {
    fn new(body: Body, max: usize) -> RecordStream {
        RecordStream { body: body.into_data_stream(), buffer: Vec::new(), max, ended: false }
    }

    /// The next complete JSON value, `None` at the end of the body.
    async fn next(&mut self) -> Option<Result<Value, RestError>> {
        loop {
            let start = self.buffer.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buffer.len());
            self.buffer.drain(..start);
            if !self.buffer.is_empty() {
                let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
                match values.next() {
                    Some(Ok(v)) => {
                        let used = values.byte_offset();
                        self.buffer.drain(..used);
                        return Some(Ok(v));
                    }
                    Some(Err(e)) if e.is_eof() && !self.ended => {}
                    Some(Err(e)) => {
                        self.buffer.clear();
                        self.ended = true;
                        return Some(Err(RestError::bad_request(format!(
                            "the body is not a sequence of JSON records: {e}"
                        ))));
                    }
                    None => {}
                }
            } else if self.ended {
                return None;
            }
            if !self.fill().await {
                return Some(Err(RestError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    413,
                    format!("a record larger than {} bytes, or a body that could not be read", self.max),
                )));
            }
        }
    }

    /// Reads the next chunk (false: too large or unreadable).
    async fn fill(&mut self) -> bool {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.buffer.extend_from_slice(&chunk);
                self.buffer.len() <= self.max
            }
            Some(Err(_)) => {
                self.ended = true;
                self.buffer.clear();
                false
            }
            None => {
                self.ended = true;
                true
            }
        }
    }

    /// Whether the body holds nothing more: what is buffered is whitespace and the body
    /// has ended, or ends within a moment (a client sending one record has sent it all).
    async fn at_end(&mut self) -> bool {
        loop {
            if self.buffer.iter().any(|b| !b.is_ascii_whitespace()) {
                return false;
            }
            if self.ended {
                return true;
            }
            match tokio::time::timeout(Duration::from_millis(50), self.fill()).await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => return false,
            }
        }
    }
}
