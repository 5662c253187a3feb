//! The embedded formats of Confluent's REST Proxy (pure, table-tested): which content
//! types name which format, and how keys and values travel in JSON bodies.
//!
//! - v2: the content type names the format, `application/vnd.kafka.{binary,json}.v2+json`;
//!   binary keys and values are base64 strings, JSON ones any JSON value; `null` is no key
//!   or no value (a tombstone).
//! - v3: each key and value says its own type, `{"type": "BINARY"|"JSON"|"STRING", "data": ...}`.
//!
//! The schema formats (avro, jsonschema, protobuf) need a schema registry, which Tributary
//! does not have: they are refused with a message that says so.

use base64::Engine;
use serde_json::Value;

/// How keys and values of a v2 request or consumer instance are written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Base64 strings.
    Binary,
    /// JSON values, stored as their JSON text.
    Json,
}

impl Format {
    /// The name in content types and in `{"format": ...}`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
        }
    }

    /// The v2 content type of records in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Binary => "application/vnd.kafka.binary.v2+json",
            Format::Json => "application/vnd.kafka.json.v2+json",
        }
    }
}

/// Why a format could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FormatError {
    /// A schema format: needs a schema registry.
    NeedsSchemaRegistry(String),
    /// Not a REST Proxy format at all.
    Unknown(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::NeedsSchemaRegistry(name) => write!(
                f,
                "the {name} format needs a schema registry, which Tributary does not have; use binary or json"
            ),
            FormatError::Unknown(what) => write!(
                f,
                "{what:?} is not a format of the REST Proxy; use application/vnd.kafka.binary.v2+json or application/vnd.kafka.json.v2+json"
            ),
        }
    }
}

/// A format by its name (`{"format": "binary"}` when creating a consumer instance).
pub(crate) fn by_name(name: &str) -> Result<Format, FormatError> {
    match name.to_ascii_lowercase().as_str() {
        "binary" => Ok(Format::Binary),
        "json" => Ok(Format::Json),
        n @ ("avro" | "jsonschema" | "protobuf") => Err(FormatError::NeedsSchemaRegistry(n.to_string())),
        _ => Err(FormatError::Unknown(name.to_string())),
    }
}

/// The format a v2 content type (or one entry of an Accept header) names:
/// `application/vnd.kafka.<format>.v2+json`, parameters ignored.
pub(crate) fn of_media_type(media_type: &str) -> Result<Format, FormatError> {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some(format) = essence.strip_prefix("application/vnd.kafka.").and_then(|r| r.strip_suffix(".v2+json")) else {
        return Err(FormatError::Unknown(media_type.to_string()));
    };
    by_name(format).map_err(|e| match e {
        FormatError::Unknown(_) => FormatError::Unknown(media_type.to_string()),
        other => other,
    })
}

/// What a GET of records may answer given its Accept header: the consumer instance's own
/// format when the header allows it (absent, `*/*`, a generic v2 type or the format's own
/// type), else the format it asked for (the caller answers 406 for a mismatch).
pub(crate) fn accepted(accept: Option<&str>, instance: Format) -> Result<Format, Format> {
    let Some(accept) = accept else { return Ok(instance) };
    let mut asked = None;
    for entry in accept.split(',') {
        let essence = entry.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(
            essence.as_str(),
            "" | "*/*" | "application/*" | "application/json" | "application/vnd.kafka.v2+json"
        ) {
            return Ok(instance);
        }
        match of_media_type(&essence) {
            Ok(f) if f == instance => return Ok(instance),
            Ok(f) => asked = asked.or(Some(f)),
            Err(_) => {}
        }
    }
    match asked {
        Some(f) => Err(f),
        None => Ok(instance),
    }
}

/// The bytes a v2 key or value stands for (`None`: JSON null, no key or a tombstone).
pub(crate) fn encode(format: Format, v: &Value) -> Result<Option<Vec<u8>>, String> {
    match (format, v) {
        (_, Value::Null) => Ok(None),
        (Format::Json, v) => Ok(Some(v.to_string().into_bytes())),
        (Format::Binary, Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Some)
            .map_err(|e| format!("a binary key or value must be base64: {e}")),
        (Format::Binary, other) => Err(format!("a binary key or value must be a base64 string, not {other}")),
    }
}

/// A stored key or value as a v2 answer shows it.
pub(crate) fn decode(format: Format, bytes: Option<&[u8]>) -> Result<Value, String> {
    let Some(bytes) = bytes else { return Ok(Value::Null) };
    match format {
        Format::Binary => Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))),
        Format::Json => {
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e}); read it with the binary format"))
        }
    }
}

/// The bytes of a v3 key or value, `{"type": ..., "data": ...}` (`None`: absent or null data).
pub(crate) fn encode_v3(v: Option<&Value>) -> Result<Option<Vec<u8>>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let Some(obj) = v.as_object() else {
        return Err(format!("a key or value must be an object {{\"type\", \"data\"}}, not {v}"));
    };
    let data = obj.get("data").unwrap_or(&Value::Null);
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("JSON").to_ascii_uppercase();
    match kind.as_str() {
        _ if data.is_null() => Ok(None),
        "JSON" => Ok(Some(data.to_string().into_bytes())),
        "BINARY" => encode(Format::Binary, data),
        "STRING" => match data {
            Value::String(s) => Ok(Some(s.clone().into_bytes())),
            other => Err(format!("a STRING key or value must be a JSON string, not {other}")),
        },
        "AVRO" | "JSONSCHEMA" | "PROTOBUF" => {
            Err(FormatError::NeedsSchemaRegistry(kind.to_ascii_lowercase()).to_string())
        }
        other => Err(format!("unknown type {other:?}; use BINARY, JSON or STRING")),
    }
}

/// The type a v3 answer reports for a key or value sent as `v`.
pub(crate) fn v3_type(v: Option<&Value>) -> Option<String> {
    let v = v.filter(|v| !v.is_null())?;
    Some(v.get("type").and_then(Value::as_str).unwrap_or("JSON").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types_name_formats() {
        let cases = [
            ("application/vnd.kafka.binary.v2+json", Ok(Format::Binary)),
            ("application/vnd.kafka.json.v2+json; charset=utf-8", Ok(Format::Json)),
            ("APPLICATION/VND.KAFKA.JSON.V2+JSON", Ok(Format::Json)),
            ("application/vnd.kafka.avro.v2+json", Err(FormatError::NeedsSchemaRegistry("avro".into()))),
            ("application/vnd.kafka.protobuf.v2+json", Err(FormatError::NeedsSchemaRegistry("protobuf".into()))),
            ("application/json", Err(FormatError::Unknown("application/json".into()))),
            ("text/plain", Err(FormatError::Unknown("text/plain".into()))),
            (
                "application/vnd.kafka.xml.v2+json",
                Err(FormatError::Unknown("application/vnd.kafka.xml.v2+json".into())),
            ),
        ];
        for (ct, want) in cases {
            assert_eq!(of_media_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn accept_headers_are_matched_against_the_instance_format() {
        let b = Format::Binary;
        let cases = [
            (None, Ok(b)),
            (Some("*/*"), Ok(b)),
            (Some("application/vnd.kafka.v2+json"), Ok(b)),
            (Some("application/vnd.kafka.binary.v2+json"), Ok(b)),
            (Some("application/vnd.kafka.json.v2+json"), Err(Format::Json)),
            (Some("application/vnd.kafka.json.v2+json, application/vnd.kafka.binary.v2+json"), Ok(b)),
            (Some("text/html"), Ok(b)),
        ];
        for (accept, want) in cases {
            assert_eq!(accepted(accept, b), want, "{accept:?}");
        }
    }

    #[test]
    fn v2_keys_and_values_round_trip() {
        let cases = [
            (Format::Binary, json!("aGVsbG8="), Ok(Some(b"hello".to_vec()))),
            (Format::Binary, json!(null), Ok(None)),
            (Format::Json, json!({"a": [1, 2]}), Ok(Some(br#"{"a":[1,2]}"#.to_vec()))),
            (Format::Json, json!("s"), Ok(Some(br#""s""#.to_vec()))),
            (Format::Json, json!(null), Ok(None)),
        ];
        for (format, v, want) in cases {
            let got = encode(format, &v);
            assert_eq!(got, want, "{format:?} {v}");
            if let Ok(bytes) = got {
                assert_eq!(decode(format, bytes.as_deref()), Ok(v));
            }
        }
        assert!(encode(Format::Binary, &json!("not base64!")).unwrap_err().contains("base64"));
        assert!(encode(Format::Binary, &json!(42)).unwrap_err().contains("base64 string"));
        assert!(decode(Format::Json, Some(b"\xff")).unwrap_err().contains("binary format"));
    }

    #[test]
    fn v3_keys_and_values_carry_their_type() {
        let cases = [
            (Some(json!({"type": "BINARY", "data": "aGk="})), Ok(Some(b"hi".to_vec()))),
            (Some(json!({"type": "JSON", "data": {"x": 1}})), Ok(Some(br#"{"x":1}"#.to_vec()))),
            (Some(json!({"data": [1]})), Ok(Some(b"[1]".to_vec()))),
            (Some(json!({"type": "string", "data": "plain"})), Ok(Some(b"plain".to_vec()))),
            (Some(json!({"type": "JSON", "data": null})), Ok(None)),
            (None, Ok(None)),
            (Some(json!(null)), Ok(None)),
        ];
        for (v, want) in cases {
            assert_eq!(encode_v3(v.as_ref()), want, "{v:?}");
        }
        assert!(encode_v3(Some(&json!({"type": "AVRO", "data": 1}))).unwrap_err().contains("schema registry"));
        assert!(encode_v3(Some(&json!({"type": "XML", "data": 1}))).unwrap_err().contains("unknown type"));
        assert!(encode_v3(Some(&json!({"type": "STRING", "data": 1}))).unwrap_err().contains("JSON string"));
        assert!(encode_v3(Some(&json!("bare"))).unwrap_err().contains("object"));
        assert_eq!(v3_type(Some(&json!({"data": 1}))), Some("JSON".into()));
        assert_eq!(v3_type(None), None);
    }
}
