//! A small Kafka client over `kafka-protocol`: one connection, one request at a time.
//! The coordinator's admin API asks brokers about groups and offsets with it, and a
//! follower broker's replica fetcher uses it to fetch from partition leaders.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::scram;

/// Tributary's own tagged field (KIP-482) on a DescribeLogDirs partition (v2+): the log
/// cleaner's view of a compacted partition, as JSON. Clients that do not know the tag skip
/// it, as tagged fields are meant to be skipped; the coordinator's admin API reads it.
pub const CLEANER_STATUS_TAG: i32 = 10_001;

/// How long a request may take before the connection is given up.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response accepted (a DescribeGroups of a huge group or a replica fetch stays far below).
const MAX_RESPONSE: usize = 256 << 20;

/// Reads the next `size` bytes of a frame into a fresh buffer, without zeroing it first.
///
/// A zeroed buffer (`vec![0; n]`, `BytesMut::zeroed`) is a `calloc`, and jemalloc meets a
/// `calloc` that reuses freed memory by handing those pages back to the kernel
/// (`MADV_DONTNEED`) rather than writing zeros, so every page of every frame was faulted
/// in again as the socket filled it (a broker taking 1 KiB records: a median 411 page
/// faults per MiB before, 126 after; README, "Frames read into reused memory").
///
/// # Errors
/// The reader's errors; `UnexpectedEof` when the stream ends first.
pub async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> std::io::Result<BytesMut> {
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        // `take` keeps the read inside this frame: the buffer may hold more than `size`.
        let remaining = (size - body.len()) as u64;
        if (&mut *reader).take(remaining).read_buf(&mut body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

/// How a connection authenticates: Kafka's client `security.protocol` and what it needs.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS (`SSL`, `SASL_SSL`), when set.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL (`SASL_PLAINTEXT`, `SASL_SSL`), when set.
    pub sasl: Option<SaslLogin>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| (&s.mechanism, &s.username)))
            .finish()
    }
}

/// A SASL mechanism with a user name and password (PLAIN or SCRAM).
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user.
    pub username: String,
    /// The password (never printed).
    pub password: String,
}

/// How a Kafka client connects, from Kafka's client properties (what
/// `kafka-topics --command-config client.properties` reads): `security.protocol`,
/// `sasl.mechanism`, `sasl.jaas.config` (its `username` and `password`) and `ssl.*`.
#[derive(Clone, Default)]
pub struct ClientProperties {
    /// `security.protocol`: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: String,
    /// The connection's TLS and SASL, for [`Connection::connect_secured`].
    pub security: ClientSecurity,
    /// The TLS settings as given, for librdkafka (which reads the files itself).
    tls: Option<crate::tls::TlsSettings>,
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientProperties").field("protocol", &self.protocol).field("security", &self.security).finish()
    }
}

impl ClientProperties {
    /// PLAINTEXT, no authentication.
    pub fn plaintext() -> ClientProperties {
        ClientProperties { protocol: "PLAINTEXT".into(), ..Default::default() }
    }

    /// Reads the client settings through `get`; other client settings are not read.
    ///
    /// # Errors
    /// A message naming the setting that is missing or wrong (never a password).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<ClientProperties, String> {
        let protocol = get("security.protocol").unwrap_or_else(|| "PLAINTEXT".into()).trim().to_ascii_uppercase();
        let (tls, sasl) = crate::config::protocol_layers(&protocol)
            .ok_or_else(|| format!("security.protocol {protocol} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
        let mut out = ClientProperties { protocol, ..Default::default() };
        if tls {
            let settings = crate::tls::TlsSettings::from_lookup(&get)?;
            out.security.tls = Some(crate::tls::client_config(&settings)?);
            out.tls = Some(settings);
        }
        if sasl {
            // Kafka's client default is GSSAPI, which Tributary does not speak.
            let mechanism = get("sasl.mechanism").map(|m| m.trim().to_ascii_uppercase()).ok_or(
                "sasl.mechanism is not set; set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's default, GSSAPI, is not supported)",
            )?;
            if !matches!(mechanism.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                return Err(format!("sasl.mechanism {mechanism} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"));
            }
            let jaas = get("sasl.jaas.config").ok_or("sasl.jaas.config is not set; give it the login module with username=\"...\" password=\"...\"")?;
            let modules = crate::jaas::parse(&jaas).map_err(|e| format!("sasl.jaas.config: {e}"))?;
            let (username, password) =
                crate::jaas::login_for(&modules, &mechanism).ok_or("sasl.jaas.config has no username and password")?;
            out.security.sasl = Some(SaslLogin { mechanism, username, password });
        }
        Ok(out)
    }

    /// The same settings in librdkafka's names, for a client built on it.
    pub fn librdkafka_settings(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("security.protocol", self.protocol.to_ascii_lowercase())];
        if let Some(login) = &self.security.sasl {
            out.push(("sasl.mechanisms", login.mechanism.clone()));
            out.push(("sasl.username", login.username.clone()));
            out.push(("sasl.password", login.password.clone()));
        }
        if let Some(tls) = &self.tls {
            if let Some(path) = &tls.truststore_location {
                out.push(("ssl.ca.location", path.display().to_string()));
            } else if let Some(pem) = &tls.truststore_certificates {
                out.push(("ssl.ca.pem", pem.clone()));
            }
            // A PEM key store holds the key and its chain in one file: librdkafka reads
            // each from it.
            if let Some(path) = &tls.keystore_location {
                out.push(("ssl.certificate.location", path.display().to_string()));
                out.push(("ssl.key.location", path.display().to_string()));
            } else if let (Some(chain), Some(key)) = (&tls.keystore_certificate_chain, &tls.keystore_key) {
                out.push(("ssl.certificate.pem", chain.clone()));
                out.push(("ssl.key.pem", key.clone()));
            }
            let check = if tls.endpoint_identification { "https" } else { "none" };
            out.push(("ssl.endpoint.identification.algorithm", check.into()));
        }
        out
    }
}

/// The byte stream under a connection: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to a broker.
pub struct Connection {
    stream: Box<dyn Stream>,
    address: String,
    client_id: &'static str,
    correlation_id: i32,
    timeout: Duration,
}

impl Connection {
    /// Connects to `host:port`, naming itself `client_id` in request headers.
    ///
    /// # Errors
    /// A message naming the broker when it cannot be reached in time.
    pub async fn connect(host: &str, port: u16, client_id: &'static str) -> Result<Connection, String> {
        Self::connect_secured(host, port, client_id, &ClientSecurity::default()).await
    }

    /// Connects with TLS and/or SASL as `security` says, authenticating before returning.
    ///
    /// # Errors
    /// A message naming the broker and the step that failed (TCP, TLS handshake, SASL).
    pub async fn connect_secured(
        host: &str,
        port: u16,
        client_id: &'static str,
        security: &ClientSecurity,
    ) -> Result<Connection, String> {
        let address = format!("{host}:{port}");
        let tcp = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(&address))
            .await
            .map_err(|_| format!("connecting to broker {address} timed out"))?
            .map_err(|e| format!("cannot connect to broker {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = crate::tls::server_name(host)?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(DEFAULT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| format!("the TLS handshake with broker {address} timed out"))?
                    .map_err(|e| format!("the TLS handshake with broker {address} failed: {e}"))?;
                Box::new(tls)
            }
        };
        let mut conn = Connection { stream, address, client_id, correlation_id: 0, timeout: DEFAULT_TIMEOUT };
        if let Some(login) = &security.sasl {
            conn.authenticate(login).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 then SaslAuthenticate rounds (KIP-152).
    async fn authenticate(&mut self, login: &SaslLogin) -> Result<(), String> {
        let address = self.address.clone();
        let refused = |step: &str, code: i16, message: Option<&StrBytes>| {
            format!(
                "broker {address} refused SASL {} for user {} at {step}: error {code}{}",
                login.mechanism,
                login.username,
                message.map(|m| format!(" ({})", m.as_str())).unwrap_or_default()
            )
        };
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_string(login.mechanism.clone());
        let answer = self.call(1, &handshake).await?;
        if answer.error_code != 0 {
            return Err(refused("the handshake", answer.error_code, None));
        }
        let round = |bytes: Vec<u8>| {
            let mut r = SaslAuthenticateRequest::default();
            r.auth_bytes = Bytes::from(bytes);
            r
        };
        match login.mechanism.as_str() {
            "PLAIN" => {
                let token = format!("\0{}\0{}", login.username, login.password).into_bytes();
                let a = self.call(2, &round(token)).await?;
                if a.error_code != 0 {
                    return Err(refused("authentication", a.error_code, a.error_message.as_ref()));
                }
            }
            name => {
                let mechanism = scram::Mechanism::from_name(name)
                    .ok_or_else(|| format!("SASL mechanism {name} is not one Tributary speaks (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"))?;
                let (mut exchange, first) =
                    scram::ClientExchange::start(mechanism, &login.username, &login.password, &scram::random_nonce());
                let a = self.call(2, &round(first.into_bytes())).await?;
                if a.error_code != 0 {
                    return Err(refused("authentication", a.error_code, a.error_message.as_ref()));
                }
                let last = exchange.respond(&a.auth_bytes).map_err(|e| format!("SCRAM with broker {address}: {e}"))?;
                let b = self.call(2, &round(last.into_bytes())).await?;
                if b.error_code != 0 {
                    return Err(refused("authentication", b.error_code, b.error_message.as_ref()));
                }
                exchange.verify(&b.auth_bytes).map_err(|e| format!("SCRAM with broker {address}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Sets how long one request may take (default 10 s); a long-polling fetch needs its
    /// wait time on top of the usual margin.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The `host:port` this connection goes to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version` and reads its response. After an error the connection
    /// is in an unknown state: drop it and connect again.
    ///
    /// # Errors
    /// A message naming the broker and what failed (I/O, timeout, undecodable response).
    pub async fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, String> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(version, request))
            .await
            .map_err(|_| format!("broker {} did not answer within {} ms", self.address, timeout.as_millis()))?
    }

    async fn exchange<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} (broker {}): {e}", self.address);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| fail("encoding a request header", &e))?;
        request.encode(&mut body, version).map_err(|e| fail("encoding a request", &e))?;
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        self.stream.write_all(&framed).await.map_err(|e| fail("sending a request", &e))?;
        let size = self.stream.read_i32().await.map_err(|e| fail("reading a response", &e))?;
        if size < 0 || size as usize > MAX_RESPONSE {
            return Err(format!("broker {} sent a response of {size} bytes", self.address));
        }
        let frame = read_body(&mut self.stream, size as usize).await.map_err(|e| fail("reading a response", &e))?;
        let mut buf = frame.freeze();
        let response_header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| fail("decoding a response header", &e))?;
        if response_header.correlation_id != self.correlation_id {
            return Err(format!("broker {} answered out of order", self.address));
        }
        let response = R::Response::decode(&mut buf, version).map_err(|e| fail("decoding a response", &e))?;
        let _ = buf.remaining();
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What arrives, in pieces; the size asked; the body expected, or `None` for the end
    /// of the stream.
    type Case = (&'static [&'static [u8]], usize, Option<&'static [u8]>);

    #[tokio::test]
    async fn a_body_is_read_whole_across_reads_and_nothing_past_it() {
        let table: [Case; 5] = [
            (&[b"abcdef"], 3, Some(b"abc")),                    // stops at the frame's end
            (&[b"ab", b"c", b"def"], 4, Some(b"abcd")),         // several reads
            (&[b"ab"], 0, Some(b"")),                           // empty frame
            (&[b"ab"], 3, None),                                // the stream ends first
            (&[], 1, None),                                     // nothing at all
        ];
        for (pieces, size, expected) in table {
            let mut reader: Box<dyn AsyncRead + Unpin> = Box::new(&b""[..]);
            for piece in pieces.iter().rev() {
                reader = Box::new(AsyncReadExt::chain(*piece, reader));
            }
            match (read_body(&mut reader, size).await, expected) {
                (Ok(body), Some(want)) => {
                    assert_eq!(&body[..], want, "{pieces:?} size {size}");
                    // What follows the frame is still there for the next read.
                    let mut rest = Vec::new();
                    reader.read_to_end(&mut rest).await.unwrap();
                    assert_eq!(rest, pieces.concat()[size..].to_vec(), "{pieces:?} size {size}");
                }
                (Err(e), None) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{pieces:?} size {size}"),
                (got, want) => panic!("{pieces:?} size {size}: got {got:?}, expected {want:?}"),
            }
        }
    }
}
