//! The web console at `/`: a single-page app (Preact with htm, and uPlot for charts,
//! vendored in `coordinator/console/vendor` and embedded in the binary, so nothing is
//! fetched from the internet) over the admin API, the REST API under `/rest`, and one
//! endpoint of its own: live records of a topic as server-sent events.
//!
//! Live mode: `GET /console/live/{topic}` streams each record written to the topic from
//! now on as an SSE `record` event. Each stream is a librdkafka consumer assigned every
//! partition at its end (no group), polled on the blocking pool; at most
//! [`MAX_LIVE_STREAMS`] run at once, and a client that does not keep up loses records
//! (counted in a `dropped` event) rather than growing a buffer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::rest::{RestError, RestState};

const INDEX: &str = include_str!("../../console/index.html");
const APP: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/style.css");
const PREACT: &str = include_str!("../../console/vendor/htm-preact.module.js");
const UPLOT: &str = include_str!("../../console/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../console/vendor/uPlot.min.css");
const LICENSES: &str = include_str!("../../console/vendor/LICENSES.txt");

/// Live streams open at once, at most.
pub const MAX_LIVE_STREAMS: usize = 16;
/// Records buffered per live stream before newer ones are dropped.
const LIVE_BUFFER: usize = 256;

/// Shared state: the REST API's (for the cluster's brokers) and the live-stream count.
#[derive(Clone)]
pub struct ConsoleState {
    rest: RestState,
    live: Arc<AtomicUsize>,
}

impl ConsoleState {
    /// Console state over the REST API's.
    pub fn new(rest: RestState) -> ConsoleState {
        ConsoleState { rest, live: Arc::new(AtomicUsize::new(0)) }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The console's routes: `/` and `/console/...`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP) }))
        .route("/console/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route(
            "/console/vendor/htm-preact.module.js",
            get(|| async { asset("text/javascript; charset=utf-8", PREACT) }),
        )
        .route("/console/vendor/uPlot.iife.min.js", get(|| async { asset("text/javascript; charset=utf-8", UPLOT) }))
        .route("/console/vendor/uPlot.min.css", get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
        .route("/console/vendor/LICENSES.txt", get(|| async { asset("text/plain; charset=utf-8", LICENSES) }))
        .route("/console/live/{topic}", get(live))
        .with_state(state)
}

/// Counts a live stream while it runs.
struct LiveSlot(Arc<AtomicUsize>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /console/live/{topic}`: the topic's new records as server-sent events.
async fn live(State(state): State<ConsoleState>, Path(topic): Path<String>) -> Result<Response, RestError> {
    if state.live.fetch_add(1, Ordering::Relaxed) >= MAX_LIVE_STREAMS {
        state.live.fetch_sub(1, Ordering::Relaxed);
        return Err(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            503,
            format!(
                "{MAX_LIVE_STREAMS} live streams are open, the most the console serves; close a live view and retry"
            ),
        ));
    }
    let slot = LiveSlot(state.live.clone());
    let snapshot = state.rest.snapshot().await?;
    let t = snapshot.topics.get(&topic).ok_or_else(|| RestError::topic_not_found(&topic))?;
    let (mut config, _) = crate::rest::base_config(&state.rest.clients(), &snapshot)?;
    let consumer: BaseConsumer = config
        .set("group.id", "tributary-console-live")
        .set("client.id", "tributary-console-live")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", "1024")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| RestError::kafka(format!("creating a live consumer: {e}")))?;
    let partitions: Vec<i32> = t.partitions.keys().copied().collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(LIVE_BUFFER);
    let stop = Arc::new(AtomicBool::new(false));
    let poller_stop = stop.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // Start at each partition's end as it is now, so that nothing written after the
        // `open` event is missed.
        let mut list = TopicPartitionList::new();
        for p in &partitions {
            let end = match consumer.fetch_watermarks(&topic, *p, Duration::from_secs(10)) {
                Ok((_, high)) => Offset::Offset(high),
                Err(e) => {
                    let _ = tx.try_send(
                        Event::default().event("failure").data(format!("reading the end of {topic}-{p}: {e}")),
                    );
                    return;
                }
            };
            let _ = list.add_partition_offset(&topic, *p, end);
        }
        if let Err(e) = consumer.assign(&list) {
            let _ = tx.try_send(Event::default().event("failure").data(format!("assigning {topic}'s partitions: {e}")));
            return;
        }
        if tx.blocking_send(Event::default().event("open").data("{}")).is_err() {
            return;
        }
        let mut dropped = 0u64;
        while !poller_stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let Some(result) = consumer.poll(Duration::from_millis(200)) else { continue };
            let Ok(m) = result else { continue };
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            let headers: Vec<serde_json::Value> = m
                .headers()
                .map(|h| h.iter().map(|h| json!({ "key": h.key, "value": h.value.map(b64) })).collect())
                .unwrap_or_default();
            let record = json!({
                "topic": m.topic(),
                "partition": m.partition(),
                "offset": m.offset(),
                "timestamp": m.timestamp().to_millis(),
                "key": m.key().map(b64),
                "value": m.payload().map(b64),
                "headers": headers,
            });
            let event = Event::default().event("record").data(record.to_string());
            match tx.try_send(event) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        let _ = tx.try_send(Event::default().event("dropped").data(dropped.to_string()));
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    let guard = StopOnDrop(stop);
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), (rx, guard)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Tells the poller to stop when the client goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_console_is_served_from_the_binary_and_asks_nothing_of_the_internet() {
        let rest = RestState::new(
            crate::view::ClusterView::new(Arc::new(std::sync::RwLock::new(None))),
            crate::rest::RestConfig {
                instance_timeout: Duration::from_secs(60),
                max_instances: 1,
                max_request_bytes: 1024,
                clients: Default::default(),
            },
            tokio_util::sync::CancellationToken::new(),
        );
        let app = router(ConsoleState::new(rest));
        for (path, content_type) in [
            ("/", "text/html"),
            ("/console/app.js", "text/javascript"),
            ("/console/style.css", "text/css"),
            ("/console/vendor/htm-preact.module.js", "text/javascript"),
            ("/console/vendor/uPlot.iife.min.js", "text/javascript"),
            ("/console/vendor/uPlot.min.css", "text/css"),
            ("/console/vendor/LICENSES.txt", "text/plain"),
        ] {
            let r = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let ct = r.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
            assert!(ct.starts_with(content_type), "{path}: {ct}");
        }
        // Every script and stylesheet the page loads is one of the routes above.
        for text in [INDEX, APP] {
            assert!(!text.contains("http://") && !text.contains("https://"), "an external URL in the console");
        }
        // Without ZooKeeper a live stream is refused in words, not a crash.
        let r = app.oneshot(Request::get("/console/live/t").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
