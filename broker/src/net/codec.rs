//! Request decoding and response encoding with `kafka-protocol`, wrapped once here with the
//! api key and version. Nothing a client sends may take the process down: versions are
//! checked against what we advertise before decoding, and the decoder runs under
//! `catch_unwind` so a decoder panic on hostile bytes closes only that connection.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};

use crate::api::{supported_range, v0_unsupported_version_response};

/// A decoded frame.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A request we can handle.
    Request(RequestHeader, Box<RequestKind>),
    /// ApiVersions newer than ours: answer v0 UNSUPPORTED_VERSION (KIP-511).
    ApiVersionsTooNew {
        /// To echo back.
        correlation_id: i32,
        /// The version asked for.
        version: i16,
    },
    /// Anything else we cannot serve; Kafka closes the connection.
    Reject(String),
}

/// Decodes a request frame (without its size prefix).
pub(crate) fn decode(mut frame: Bytes) -> Decoded {
    if frame.len() < 8 {
        return Decoded::Reject(format!("frame of {} bytes is shorter than a request header", frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(key) = ApiKey::try_from(raw_key) else {
        return Decoded::Reject(format!("unknown api key {raw_key}"));
    };
    let Some(range) = supported_range(key) else {
        return Decoded::Reject(format!("api {key:?} (key {raw_key}) is not supported by this broker"));
    };
    if key == ApiKey::ApiVersions && version > range.max {
        return Decoded::ApiVersionsTooNew { correlation_id, version };
    }
    if version < range.min || version > range.max {
        return Decoded::Reject(format!(
            "{key:?} v{version} is outside the advertised range {}..={}",
            range.min, range.max
        ));
    }
    let decoded = catch_unwind(AssertUnwindSafe(move || {
        let header = decode_request_header_from_buffer(&mut frame)?;
        let body = RequestKind::decode(key, &mut frame, version)?;
        Ok::<_, anyhow::Error>((header, body, frame.remaining()))
    }));
    match decoded {
        Ok(Ok((header, body, left))) => {
            // Kafka ignores bytes after the last field of the request's version, and
            // librdkafka relies on it (its Metadata v12 carries 3 such bytes).
            if left > 0 {
                tracing::debug!(
                    api_key = raw_key,
                    version,
                    trailing_bytes = left,
                    "ignoring bytes after the request body, as Kafka does"
                );
            }
            Decoded::Request(header, Box::new(body))
        }
        Ok(Err(e)) => Decoded::Reject(format!("{key:?} v{version} request is malformed: {e}")),
        Err(_) => Decoded::Reject(format!("{key:?} v{version} request could not be decoded")),
    }
}

/// Encodes a response with its size prefix and header.
///
/// # Errors
/// When the response does not fit its version (a bug; the connection is closed).
pub(crate) fn encode_response(header: &RequestHeader, response: &mut ResponseKind) -> anyhow::Result<Bytes> {
    crate::api::nulls::normalize(response);
    let key = ApiKey::try_from(header.request_api_key).map_err(|_| anyhow::anyhow!("unknown api key"))?;
    let version = header.request_api_version;
    // A fetch answer is mostly records (megabytes): sized up front, it is copied once
    // instead of again at every doubling of the buffer.
    let body = match response {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + body);
    buf.put_i32(0);
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = header.correlation_id;
    response_header.encode(&mut buf, key.response_header_version(version))?;
    response.encode(&mut buf, version).map_err(|e| anyhow::anyhow!("encoding {key:?} v{version} response: {e}"))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The KIP-511 fallback: ApiVersions v0 shape with UNSUPPORTED_VERSION and our ranges.
pub(crate) fn encode_api_versions_fallback(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    v0_unsupported_version_response().encode(&mut buf, 0).expect("ApiVersions v0 always encodes");
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, StrBytes};

    fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        header.client_id = Some(StrBytes::from_static_str("test"));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &header).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn a_supported_request_decodes() {
        match decode(frame(ApiKey::Metadata, 12, &MetadataRequest::default())) {
            Decoded::Request(h, body) => {
                assert!(matches!(*body, RequestKind::Metadata(_)));
                assert_eq!(h.correlation_id, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_too_new_api_versions_gets_the_v0_fallback() {
        let mut f = BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        f[2..4].copy_from_slice(&99i16.to_be_bytes());
        match decode(f.freeze()) {
            Decoded::ApiVersionsTooNew { correlation_id: 7, version: 99 } => {}
            other => panic!("{other:?}"),
        }
        let mut reply = encode_api_versions_fallback(7);
        let size = reply.get_i32();
        assert_eq!(size as usize, reply.len());
        assert_eq!(reply.get_i32(), 7);
        let body = kafka_protocol::messages::ApiVersionsResponse::decode(&mut reply, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert!(body.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    }

    #[test]
    fn unknown_keys_versions_and_garbage_are_rejected_not_panicked_on() {
        assert!(matches!(decode(Bytes::from_static(&[0, 1, 2])), Decoded::Reject(_)));
        assert!(
            matches!(decode(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])), Decoded::Reject(m) if m.contains("unknown api key"))
        );
        assert!(
            matches!(decode(Bytes::from_static(&[0, 3, 0x7f, 0, 0, 0, 0, 1])), Decoded::Reject(m) if m.contains("outside"))
        );
        // CreateDelegationToken (38) exists in Kafka but is not advertised.
        assert!(
            matches!(decode(Bytes::from_static(&[0, 38, 0, 1, 0, 0, 0, 1])), Decoded::Reject(m) if m.contains("not supported"))
        );
        // A Metadata v1 request whose topic array claims 2^31-1 entries, with nothing behind it.
        let hostile = [0u8, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(decode(Bytes::copy_from_slice(&hostile)), Decoded::Reject(_)));
        // Truncated and garbage bodies of every advertised request and version.
        for (key, min, max) in crate::api::SUPPORTED {
            for version in *min..=*max {
                for fill in [0x00u8, 0x01, 0x7f, 0xff] {
                    let mut f = BytesMut::new();
                    f.put_i16(*key as i16);
                    f.put_i16(version);
                    f.put_i32(1);
                    f.put_i16(-1);
                    f.put_bytes(fill, 48);
                    let f = f.freeze();
                    for cut in 8..f.len() {
                        let _ = decode(f.slice(..cut));
                    }
                }
            }
        }
    }
}
