//! A small Kafka client over `kafka-protocol`: one connection, one request at a time.
//! The coordinator's admin API asks brokers about groups and offsets with it, and a
//! follower broker's replica fetcher uses it to fetch from partition leaders.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Tributary's own tagged field (KIP-482) on a DescribeLogDirs partition (v2+): the log
/// cleaner's view of a compacted partition, as JSON. Clients that do not know the tag skip
/// it, as tagged fields are meant to be skipped; the coordinator's admin API reads it.
pub const CLEANER_STATUS_TAG: i32 = 10_001;

/// How long a request may take before the connection is given up.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response accepted (a DescribeGroups of a huge group or a replica fetch stays far below).
const MAX_RESPONSE: usize = 256 << 20;

/// One connection to a broker.
pub struct Connection {
    stream: TcpStream,
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
        let address = format!("{host}:{port}");
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(&address))
            .await
            .map_err(|_| format!("connecting to broker {address} timed out"))?
            .map_err(|e| format!("cannot connect to broker {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection { stream, address, client_id, correlation_id: 0, timeout: DEFAULT_TIMEOUT })
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
        let mut frame = vec![0u8; size as usize];
        self.stream.read_exact(&mut frame).await.map_err(|e| fail("reading a response", &e))?;
        let mut buf = bytes::Bytes::from(frame);
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
