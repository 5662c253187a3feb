//! Framing and the per-connection loop. Requests on one connection are handled strictly in
//! order and answered in that order, as Kafka's SocketServer does (clients rely on it).
//! One departure: a produce whose records are appended and which only waits for its answer
//! (the flush or the ISR) [releases](api::Release) the connection, which reads and runs the next
//! request meanwhile, so that a producer's pipelined requests share one group commit
//! instead of each waiting for a flush of its own behind the one before. Not while client
//! quotas are configured: a throttle then mutes the connection before its next request.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::codec::{self, Decoded};
use crate::api::{self, BrokerContext, Caller};
use crate::metrics::{AuthOutcome, METRICS};
use crate::quota::Kind;
use crate::security::sasl::{Authenticator, Env, Step};
use crate::security::{tls, ListenerSecurity, AUTHENTICATION_DEADLINE};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The size prefix exceeds `socket.request.max.bytes`.
    #[error("request of {size} bytes exceeds socket.request.max.bytes={max}")]
    TooLarge {
        /// Announced size.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// A negative size prefix.
    #[error("negative request size {0}")]
    Negative(i32),
    /// The socket failed or closed mid-frame.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one size-prefixed frame; `Ok(None)` on a clean end of stream.
///
/// # Errors
/// [`FrameError`] for oversized or negative sizes and I/O failures.
///
/// # Cancel safety
/// Not cancel safe once the size prefix has been read.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    if size as usize > max {
        return Err(FrameError::TooLarge { size: i64::from(size), max });
    }
    Ok(Some(tributary_common::kafka_client::read_body(reader, size as usize).await?))
}

/// Serves one client connection until it closes or misbehaves, or `drain` fires (then the
/// request in progress finishes first) or `abort` does (then it is abandoned).
pub(crate) async fn serve(
    stream: TcpStream,
    caller: Caller,
    ctx: Arc<BrokerContext>,
    drain: CancellationToken,
    abort: CancellationToken,
) {
    // Every line logged while serving this client carries its address, the listener it
    // arrived on and (once it says) its client id; lines logged during a request also
    // carry the API and version.
    let span = tracing::info_span!("client", peer = %caller.peer, listener = %caller.listener, principal = tracing::field::Empty, client_id = tracing::field::Empty);
    secure_then_serve(stream, caller, ctx, drain, abort).instrument(span).await;
}

/// The TLS handshake (for SSL and SASL_SSL listeners), then the request loop.
async fn secure_then_serve(
    stream: TcpStream,
    mut caller: Caller,
    ctx: Arc<BrokerContext>,
    drain: CancellationToken,
    abort: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let security = ctx.security.listener(&caller.listener);
    let Some(tls_config) = &security.tls else {
        if security.sasl.is_none() {
            METRICS.authentication(&caller.listener, AuthOutcome::Succeeded);
        }
        let (reader, writer) = stream.into_split();
        return serve_in_span(reader, writer, caller, security, ctx, drain, abort).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.config());
    let handshake = tokio::select! {
        r = tokio::time::timeout(AUTHENTICATION_DEADLINE, acceptor.accept(stream)) => r,
        _ = drain.cancelled() => return,
    };
    let stream = match handshake {
        Err(_) => {
            METRICS.authentication(&caller.listener, AuthOutcome::Failed);
            tracing::warn!(deadline_s = AUTHENTICATION_DEADLINE.as_secs(), "closing connection: the TLS handshake did not finish in time");
            return;
        }
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            // A client that went away (closing its producer, a port probe): nothing was refused.
            tracing::debug!(error = %e, "the client closed the connection during the TLS handshake");
            return;
        }
        Ok(Err(e)) => {
            METRICS.authentication(&caller.listener, AuthOutcome::Failed);
            tracing::warn!(error = %e, "failed authentication: the TLS handshake failed; check that the client trusts this broker's CA (ssl.ca.location / ssl.truststore.location) and, with ssl.client.auth=required, that it presents a certificate this broker's trust store signs");
            return;
        }
        Ok(Ok(s)) => s,
    };
    if security.sasl.is_none() {
        match tls::principal(stream.get_ref().1.peer_certificates(), &security.principal_mapper) {
            Ok(principal) => {
                METRICS.authentication(&caller.listener, AuthOutcome::Succeeded);
                tracing::Span::current().record("principal", tracing::field::display(&principal));
                caller.principal = principal;
            }
            Err(e) => {
                METRICS.authentication(&caller.listener, AuthOutcome::Failed);
                tracing::warn!(error = %e, "failed authentication: closing the connection");
                return;
            }
        }
    }
    let (reader, writer) = tokio::io::split(stream);
    serve_in_span(reader, writer, caller, security, ctx, drain, abort).await;
}

/// The stored SCRAM credential of a user, from `/config/users/<user>` as the metadata holds it.
fn scram_credential(
    ctx: &BrokerContext,
    user: &str,
    mechanism: tributary_common::scram::Mechanism,
) -> Option<tributary_common::scram::Credential> {
    let cluster = ctx.cluster();
    let entity = tributary_common::znode::ConfigEntity::User(Some(user.to_string()));
    let value = cluster.entity_configs.get(&entity)?.get(mechanism.name())?;
    match tributary_common::scram::Credential::from_config_value(value) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(user, mechanism = %mechanism, error = %e, "the stored SCRAM credential in /config/users does not parse; set it again with kafka-configs --alter --add-config or AlterUserScramCredentials");
            None
        }
    }
}

/// The request loop over an established (and, for TLS, decrypted) stream.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_in_span<R, W>(
    reader: R,
    writer: W,
    mut caller: Caller,
    security: ListenerSecurity,
    ctx: Arc<BrokerContext>,
    drain: CancellationToken,
    abort: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let max = ctx.config.socket_request_max_bytes as usize;
    // Shared with each request's handling: a clone per request is a reference count.
    let mut client_id: Arc<str> = Arc::from("");
    let mut authenticator = security.sasl.clone().map(Authenticator::new);
    // A SASL connection has this long to authenticate, and its frames are small until it has.
    let deadline = tokio::time::Instant::now() + AUTHENTICATION_DEADLINE;
    // Requests whose effects are in place and whose answers are still awaited (produce
    // waiting for the flush or the ISR), oldest first; answers go out in this order.
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    'serve: loop {
        // Answer what completes while the client says nothing more; read on as soon as it
        // sends (fill_buf consumes nothing, so stopping it loses no bytes).
        while let Some(mut front) = in_flight.pop_front() {
            let full = in_flight.len() + 1 >= MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                outcome = &mut front.task => {
                    if !answer(&mut writer, joined(outcome, &front.span), &drain).await {
                        break 'serve;
                    }
                }
                more = reader.fill_buf(), if !full => {
                    in_flight.push_front(front);
                    match more {
                        Ok(b) if !b.is_empty() => break,
                        // The client closed or the socket failed: nobody reads the answers.
                        _ => break 'serve,
                    }
                }
                _ = abort.cancelled() => {
                    in_flight.push_front(front);
                    tracing::info!(requests = in_flight.len(), "shutting down: abandoned requests still waiting for their answers after the grace period; the client will retry");
                    break 'serve;
                }
            }
        }
        let authenticating = authenticator.as_ref().is_some_and(|a| a.principal().is_none());
        let frame = if authenticating {
            let limit = max.min(ctx.security.sasl_max_receive_size);
            tokio::select! {
                f = read_frame(&mut reader, limit) => f,
                _ = drain.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => {
                    METRICS.authentication(&caller.listener, AuthOutcome::Failed);
                    tracing::warn!(deadline_s = AUTHENTICATION_DEADLINE.as_secs(), "failed authentication: closing a connection that did not authenticate in time");
                    break;
                }
            }
        } else {
            tokio::select! {
                f = read_frame(&mut reader, max) => f,
                _ = drain.cancelled() => break,
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f.freeze(),
            Ok(None) => break,
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Negative(_))) => {
                if authenticating {
                    tracing::warn!(error = %e, "closing connection: a frame before SASL authentication is invalid or larger than sasl.server.max.receive.size; check the client's security.protocol (a PLAINTEXT or TLS client on a SASL listener sends requests first), or raise sasl.server.max.receive.size if the client is legitimate");
                } else {
                    tracing::warn!(error = %e, "closing connection: the request frame is invalid; raise socket.request.max.bytes if the client is legitimate");
                }
                break;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "connection closed while reading");
                break;
            }
        };
        let frame_len = frame.len();
        let reply = match codec::decode(frame) {
            Decoded::Request(header, request) => {
                if let Some(id) = &header.client_id {
                    if *client_id != *id.as_str() {
                        client_id = Arc::from(id.as_str());
                        tracing::Span::current().record("client_id", &*client_id);
                    }
                }
                let request = match &mut authenticator {
                    None => *request,
                    Some(auth) => {
                        let completed_before = auth.completed();
                        let step = {
                            let nonce = tributary_common::scram::random_nonce();
                            let lookup = |user: &str, m| scram_credential(&ctx, user, m);
                            let env = Env {
                                now_ms: api::now_ms(),
                                max_reauth_ms: ctx.security.max_reauth_ms,
                                nonce: &nonce,
                                credential: &lookup,
                                stand_in_secret: &ctx.security.stand_in_secret,
                            };
                            auth.on_request(&api_name(header.request_api_key), *request, &env)
                        };
                        match step {
                            Step::Serve(r) => r,
                            Step::Reply(mut response) => {
                                if auth.completed() > completed_before {
                                    if completed_before == 0 {
                                        METRICS.authentication(&caller.listener, AuthOutcome::Succeeded);
                                    } else {
                                        METRICS.authentication(&caller.listener, AuthOutcome::Reauthenticated);
                                        tracing::debug!("re-authenticated (KIP-368)");
                                    }
                                }
                                if let Some(p) = auth.principal().filter(|p| **p != caller.principal) {
                                    caller.principal = p.clone();
                                    tracing::Span::current().record("principal", tracing::field::display(p));
                                    tracing::debug!("authenticated");
                                }
                                // Answers go out in order: first those still awaited.
                                if !finish_all(&mut in_flight, &mut writer, &drain, &abort).await {
                                    break;
                                }
                                match codec::encode_response(&header, &mut response) {
                                    Ok(bytes) => {
                                        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                                            break;
                                        }
                                        continue;
                                    }
                                    Err(e) => {
                                        tracing::error!(error = %e, "could not encode a SASL response; closing the connection");
                                        break;
                                    }
                                }
                            }
                            Step::Refuse(mut response, why) => {
                                let outcome = if completed_before == 0 {
                                    AuthOutcome::Failed
                                } else {
                                    AuthOutcome::FailedReauthentication
                                };
                                if !finish_all(&mut in_flight, &mut writer, &drain, &abort).await {
                                    break;
                                }
                                METRICS.authentication(&caller.listener, outcome);
                                tracing::warn!(reason = why, "failed authentication: answering after connection.failed.authentication.delay.ms and closing the connection");
                                tokio::select! {
                                    () = tokio::time::sleep(ctx.security.failed_authentication_delay) => {}
                                    _ = drain.cancelled() => break,
                                }
                                if let Ok(bytes) = codec::encode_response(&header, &mut response) {
                                    let _ = writer.write_all(&bytes).await;
                                    let _ = writer.flush().await;
                                }
                                break;
                            }
                            Step::Close(why) => {
                                if !finish_all(&mut in_flight, &mut writer, &drain, &abort).await {
                                    break;
                                }
                                tracing::warn!(reason = why, "closing the connection");
                                break;
                            }
                        }
                    }
                };
                let span = tracing::info_span!("request", api = %api_name(header.request_api_key), v = header.request_api_version, correlation_id = header.correlation_id);
                // Followers replicate outside client quotas (Kafka has replication quotas for them).
                let from_follower = matches!(&request, RequestKind::Fetch(f) if f.replica_id.0 >= 0 || f.replica_state.replica_id.0 >= 0);
                let (release, mut released) = api::Release::new();
                let mut task: Handling = Box::pin(
                    handle(ctx.clone(), caller.clone(), client_id.clone(), header, request, frame_len, from_follower, release)
                        .instrument(span.clone()),
                );
                // With client quotas configured, a throttled answer must mute the connection
                // before the next request is read (KIP-219), as Kafka's does: no pipelining.
                let mut unreleased = ctx.quotas.any();
                let outcome = loop {
                    tokio::select! {
                        biased;
                        outcome = &mut task => break outcome,
                        r = &mut released, if !unreleased => match r {
                            Ok(()) => {
                                // Appended: only the answer is awaited now. The next request
                                // may run meanwhile (its writes join the same group commit).
                                in_flight.push_back(InFlight { task: tokio::spawn(task), span });
                                continue 'serve;
                            }
                            Err(_) => unreleased = true,
                        },
                        // Earlier requests' answers go out as they come, not behind this one.
                        r = async { (&mut in_flight.front_mut().expect("checked").task).await }, if !in_flight.is_empty() => {
                            let front = in_flight.pop_front().expect("checked");
                            if !answer(&mut writer, joined(r, &front.span), &drain).await {
                                break 'serve;
                            }
                        }
                        _ = abort.cancelled() => {
                            let _in_request = span.enter();
                            tracing::info!("shutting down: abandoned a request still in progress after the grace period; the client will retry");
                            break 'serve;
                        }
                    }
                };
                if !finish_all(&mut in_flight, &mut writer, &drain, &abort).await {
                    break;
                }
                if !answer(&mut writer, outcome, &drain).await {
                    break;
                }
                continue;
            }
            Decoded::ApiVersionsTooNew { correlation_id, version } => {
                tracing::debug!(
                    version,
                    "ApiVersions version too new; answering v0 UNSUPPORTED_VERSION so the client retries lower"
                );
                codec::encode_api_versions_fallback(correlation_id)
            }
            Decoded::Reject(reason) => {
                tracing::warn!(reason, "closing connection: unreadable request");
                break;
            }
        };
        if !finish_all(&mut in_flight, &mut writer, &drain, &abort).await {
            break;
        }
        if writer.write_all(&reply).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    // Draining: the requests in progress finish and are answered first.
    if drain.is_cancelled() && !abort.is_cancelled() {
        let _ = finish_all(&mut in_flight, &mut writer, &drain, &abort).await;
    }
    // Leaving with answers still awaited (the client closed, or the broker stops): the
    // requests' writes stay, as after a connection lost mid-request.
    for f in in_flight {
        f.task.abort();
    }
}

/// Most requests of one connection awaiting their answers at once; past it the connection
/// reads nothing more until the oldest is answered.
const MAX_IN_FLIGHT: usize = 16;

/// A request being handled, boxed so that it can move to a task of its own mid-way.
type Handling = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A request whose effects are in place and whose answer is awaited in a task of its own.
struct InFlight {
    task: tokio::task::JoinHandle<Outcome>,
    span: tracing::Span,
}

/// How a handled request ends.
enum Outcome {
    /// Write these bytes (a response), then mute the connection for the throttle (KIP-219:
    /// the response goes out at once, the channel is muted for the throttle time).
    Answer { bytes: bytes::Bytes, throttle_ms: i32, timed: Timed },
    /// No response (acks=0), but the throttle holds.
    Silent { throttle_ms: i32 },
    /// Close the connection (already logged).
    Close,
}

/// (api key, from a follower, version, when read): timed until the response is written.
type Timed = (i16, bool, i16, std::time::Instant);

/// Handles one request: the handler, the client's quotas, and the encoded response.
#[allow(clippy::too_many_arguments)]
async fn handle(
    ctx: Arc<BrokerContext>,
    caller: Caller,
    client_id: Arc<str>,
    header: kafka_protocol::messages::RequestHeader,
    request: RequestKind,
    frame_len: usize,
    from_follower: bool,
    release: api::Release,
) -> Outcome {
    let started = std::time::Instant::now();
    let timed = (header.request_api_key, from_follower, header.request_api_version, started);
    let mut response = api::handle_releasing(&ctx, &caller, &header, request, &release).await;
    let mut throttle_ms = 0;
    if !from_follower && ctx.quotas.any() {
        let produced = (header.request_api_key == ApiKey::Produce as i16).then_some(frame_len);
        throttle_ms = charge(&ctx, &caller.principal.name, &client_id, produced, &response, started.elapsed());
        if throttle_ms > 0 {
            tracing::debug!(throttle_ms, "client over its quota: answered with throttle_time_ms and muted for as long");
            if let Ok(Some(r)) = &mut response {
                api::set_throttle(r, throttle_ms);
            }
        }
    }
    match response {
        Ok(None) => {
            METRICS.request(header.request_api_key, from_follower, header.request_api_version, started.elapsed());
            Outcome::Silent { throttle_ms }
        }
        Ok(Some(mut r)) => match codec::encode_response(&header, &mut r) {
            Ok(bytes) => Outcome::Answer { bytes, throttle_ms, timed },
            Err(e) => {
                tracing::error!(error = %e, "could not encode a response; closing the connection");
                Outcome::Close
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "closing the connection");
            Outcome::Close
        }
    }
}

/// The outcome of a request that finished in a task of its own.
fn joined(result: Result<Outcome, tokio::task::JoinError>, span: &tracing::Span) -> Outcome {
    result.unwrap_or_else(|e| {
        let _in_request = span.enter();
        tracing::error!(error = %e, "a request's handling failed; closing the connection (the client retries)");
        Outcome::Close
    })
}

/// Writes an outcome; false when the connection ends here.
async fn answer<W: AsyncWrite + Unpin>(writer: &mut W, outcome: Outcome, drain: &CancellationToken) -> bool {
    let throttle_ms = match outcome {
        Outcome::Close => return false,
        Outcome::Silent { throttle_ms } => throttle_ms,
        Outcome::Answer { bytes, throttle_ms, timed } => {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return false;
            }
            let (key, from_follower, version, started) = timed;
            METRICS.request(key, from_follower, version, started.elapsed());
            throttle_ms
        }
    };
    throttle_ms <= 0 || mute(throttle_ms, drain).await
}

/// Waits for every request in flight, oldest first, and writes their answers; false when
/// the connection ends meanwhile.
async fn finish_all<W: AsyncWrite + Unpin>(
    in_flight: &mut VecDeque<InFlight>,
    writer: &mut W,
    drain: &CancellationToken,
    abort: &CancellationToken,
) -> bool {
    while let Some(mut front) = in_flight.pop_front() {
        let outcome = tokio::select! {
            r = &mut front.task => joined(r, &front.span),
            _ = abort.cancelled() => {
                tracing::info!(requests = in_flight.len() + 1, "shutting down: abandoned requests still waiting for their answers after the grace period; the client will retry");
                front.task.abort();
                return false;
            }
        };
        if !answer(writer, outcome, drain).await {
            return false;
        }
    }
    true
}

/// Charges one request to its client's quotas: produce bytes, fetch response bytes, and
/// handling time. Returns the longest throttle time any quota asks for.
fn charge(
    ctx: &BrokerContext,
    user: &str,
    client_id: &str,
    produced_bytes: Option<usize>,
    response: &Result<Option<ResponseKind>, api::Unhandled>,
    elapsed: std::time::Duration,
) -> i32 {
    let now = api::now_ms();
    let q = &ctx.quotas;
    let mut throttle = q.record(user, client_id, Kind::Request, elapsed.as_secs_f64() * 100.0, now);
    if let Some(bytes) = produced_bytes {
        throttle = throttle.max(q.record(user, client_id, Kind::Produce, bytes as f64, now));
    }
    if let Ok(Some(ResponseKind::Fetch(f))) = response {
        let bytes: usize = f
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        throttle = throttle.max(q.record(user, client_id, Kind::Fetch, bytes as f64, now));
    }
    i32::try_from(throttle).unwrap_or(i32::MAX)
}

/// Waits out a throttle before reading the next request; false when the broker is
/// shutting down meanwhile.
async fn mute(throttle_ms: i32, drain: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(std::time::Duration::from_millis(throttle_ms.max(0) as u64)) => true,
        () = drain.cancelled() => false,
    }
}

/// The API's name for log lines (`Produce`), or its number when unknown.
fn api_name(key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_limits_enforced() {
        let mut ok: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        assert_eq!(&read_frame(&mut ok, 10).await.unwrap().unwrap()[..], &[1, 2, 3]);
        assert!(read_frame(&mut ok, 10).await.unwrap().is_none());
        let mut big: &[u8] = &[0, 0, 1, 0];
        assert!(matches!(read_frame(&mut big, 10).await, Err(FrameError::TooLarge { size: 256, max: 10 })));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut negative, 10).await, Err(FrameError::Negative(-1))));
        let mut short: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(read_frame(&mut short, 10).await, Err(FrameError::Io(_))));
    }
}
