//! The fuzz targets' bodies, one function per target of `broker/fuzz` (cargo-fuzz), each
//! fed the fuzzer's bytes and asserting what must hold for any input: no panic outside
//! the decoder's own guard, and the properties named in each function. The same functions
//! replay the kept corpus and every crash ever found in `cargo test` (`corpus_replays`
//! below), so a crash fixed once stays fixed without the nightly toolchain.
//!
//! Not part of the broker's interface: public only so that the fuzz crate can reach the
//! crate-private decoders.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use tributary_common::scram::{self, Credential};
use tributary_common::{acl, znode};

use crate::net::codec::{self, Decoded};
use crate::record::{self, body, control};
use crate::security::sasl::{check_plain, Authenticator, Env, Step};
use crate::security::{Mechanism, SaslServer};

/// Splits the fuzzer's bytes into length-prefixed pieces (one byte of length each), so a
/// target can take several inputs from one buffer; the rest is the last piece.
fn pieces(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let (piece, rest) = rest.split_at((len as usize).min(rest.len()));
        data = rest;
        Some(piece)
    })
}

/// Target `request`: a request frame (without its size prefix), as a connection reads it.
/// Every advertised API and version is reachable: the seeds hold one frame of each.
///
/// Holds: decoding never panics past the decoder's guard; a request it accepts encodes
/// again at its version; and where that encoding decodes, it decodes to the same request
/// (what the broker read is what the client sent, field for field).
///
/// Not held, and why: `kafka-protocol` keeps an unknown tagged field whose tag is 2^31 or
/// more under a negative key, counts it when encoding but does not write it, so such a
/// request does not decode again (found by this target; DescribeProducers v0 with tag
/// 0xffffffff), or decodes to another one. The broker never re-encodes a request, so
/// this touches only the check, which leaves such requests out (their `Debug` form shows
/// the negative key, first in its map).
pub fn request(data: &[u8]) {
    let Decoded::Request(header, body) = codec::decode(Bytes::copy_from_slice(data)) else { return };
    if format!("{body:?}").contains("unknown_tagged_fields: {-") {
        return;
    }
    let version = header.request_api_version;
    let key = ApiKey::try_from(header.request_api_key).expect("the decoder accepted this key");
    let mut once = BytesMut::new();
    body.encode(&mut once, version).expect("a decoded request encodes at its version");
    let again = RequestKind::decode(key, &mut once.clone().freeze(), version).expect("a re-encoded request decodes");
    let mut twice = BytesMut::new();
    again.encode(&mut twice, version).expect("a decoded request encodes at its version");
    assert_eq!(once, twice, "{key:?} v{version} does not survive a decode/encode round trip");
}

/// The first byte of a `record_batch` input: which checks to make.
const FIX_CRCS: u8 = 1;
const PRODUCE_LIMIT: u8 = 2;

/// Writes the right CRC-32C into every batch the length fields frame, so that the fuzzer
/// gets past the checksum to the fields behind it.
fn fix_crcs(bytes: &mut [u8]) {
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..).and_then(record::BatchHeader::parse) {
        if header.batch_length < (record::HEADER_LEN - record::LOG_OVERHEAD) as i32 {
            return;
        }
        let end = pos.saturating_add(header.total_len()).min(bytes.len());
        let crc = crc32c::crc32c(&bytes[pos + record::CRC_START..end]);
        bytes[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// Target `record_batch`: the records of a Produce request (or of a follower's fetch).
/// The first byte chooses: bit 0 fixes the CRCs first, bit 1 applies a 1 MiB batch limit.
///
/// Holds: validation never panics; what a leader accepts a follower accepts too; every
/// accepted batch is as long as it says, and an uncompressed one decodes into as many
/// records as its header counts, at offset deltas 0, 1, 2, ...; a batch rebuilt with all
/// its records passes a follower's checks and holds the same keys and values; the
/// per-record readers (markers, timestamps) never panic on any batch either check passes.
pub fn record_batch(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if flags & FIX_CRCS != 0 {
        fix_crcs(&mut bytes);
    }
    let records = Bytes::from(bytes);
    let limit = if flags & PRODUCE_LIMIT != 0 { 1 << 20 } else { usize::MAX };
    let accepted = record::validate(&records, limit);
    let replicated = record::verify_replicated(&records);
    if let Ok(batches) = &accepted {
        assert!(replicated.is_ok(), "a follower refuses what a leader accepted: {:?}", replicated.err());
        for (h, b) in batches {
            assert_eq!(b.len(), h.total_len());
            let decoded = body::decode(h, b);
            if h.compression() == 0 {
                let r = decoded.as_ref().expect("an accepted uncompressed batch decodes");
                assert_eq!(r.list.len(), h.record_count as usize);
                assert!(r.list.iter().enumerate().all(|(i, rec)| rec.offset_delta == i as i64));
            }
            if let Ok(r) = decoded {
                let all: Vec<usize> = (0..r.list.len()).collect();
                let rebuilt = body::rebuild(h, b, &r, &all).expect("a decoded batch rebuilds");
                let again = record::verify_replicated(&rebuilt).expect("a rebuilt batch passes a follower's checks");
                let (h2, b2) = &again[0];
                let r2 = body::decode(h2, b2).expect("a rebuilt batch decodes");
                let fields = |r: &body::Records| r.list.iter().map(|x| (r.key(x), r.value(x))).collect::<Vec<_>>();
                assert_eq!(fields(&r), fields(&r2));
            }
        }
    }
    if let Ok(batches) = &replicated {
        for (h, b) in batches {
            let _ = control::marker_of(h, b);
            let _ = body::record_times(h, b);
            let _ = body::first_at_or_after(h, b, h.base_timestamp, h.base_offset);
            let _ = body::offset_of_max_timestamp(h, b, h.base_offset);
            let _ = record::data_record_count(b);
        }
    }
}

const PLAIN_USER: &str = "alice";
const PLAIN_PASSWORD: &str = "alice-secret";
const SCRAM_USER: &str = "bob";

fn scram_credential(m: scram::Mechanism) -> Credential {
    static CREDENTIALS: OnceLock<[Credential; 2]> = OnceLock::new();
    let [sha256, sha512] = CREDENTIALS.get_or_init(|| {
        [scram::Mechanism::Sha256, scram::Mechanism::Sha512]
            .map(|m| Credential::from_password(m, "bob-secret", b"fuzz-salt".to_vec(), 4096))
    });
    match m {
        scram::Mechanism::Sha256 => sha256.clone(),
        scram::Mechanism::Sha512 => sha512.clone(),
    }
}

/// Target `sasl`: one connection's authentication, as a sequence of requests. Each piece
/// (see [`pieces`]) is a request: its first byte picks SaslHandshake (the rest is the
/// mechanism), SaslAuthenticate (the rest is the token) or ApiVersions.
///
/// Holds: no panic; a connection that authenticates is `User:alice` (PLAIN with her
/// password) or `User:bob` (SCRAM with his), nobody else, whatever the bytes; a
/// principal, once authenticated, never changes; and the SCRAM and PLAIN parsers take
/// each piece directly without panicking.
pub fn sasl(data: &[u8]) {
    let server = SaslServer {
        mechanisms: vec![
            Mechanism::Plain,
            Mechanism::Scram(scram::Mechanism::Sha256),
            Mechanism::Scram(scram::Mechanism::Sha512),
        ],
        plain_users: BTreeMap::from([(PLAIN_USER.to_string(), PLAIN_PASSWORD.to_string())]),
    };
    let lookup = |user: &str, m: scram::Mechanism| (user == SCRAM_USER).then(|| scram_credential(m));
    let env = Env { now_ms: 1_000, max_reauth_ms: 0, nonce: "snonce", credential: &lookup, stand_in_secret: b"k" };
    let mut auth = Authenticator::new(server);
    let mut first_principal = None;
    for piece in pieces(data) {
        let Some((&kind, rest)) = piece.split_first() else { continue };
        let request = match kind % 3 {
            0 => {
                let mut h = SaslHandshakeRequest::default();
                h.mechanism = StrBytes::from_string(String::from_utf8_lossy(rest).into_owned());
                RequestKind::SaslHandshake(h)
            }
            1 => {
                let mut a = SaslAuthenticateRequest::default();
                a.auth_bytes = Bytes::copy_from_slice(rest);
                RequestKind::SaslAuthenticate(a)
            }
            _ => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        };
        let step = auth.on_request("fuzz", request, &env);
        if let Some(p) = auth.principal() {
            assert!(
                (&*p.name == PLAIN_USER || &*p.name == SCRAM_USER) && p.kind == "User",
                "authenticated as {p} from bytes that hold no credential"
            );
            let first = first_principal.get_or_insert_with(|| p.clone());
            assert_eq!(first, p, "the principal changed during re-authentication");
        }
        if matches!(step, Step::Close(_)) {
            break;
        }
        let _ = check_plain(&BTreeMap::new(), rest);
        if let Ok(first) = scram::parse_client_first(rest) {
            let m = scram::Mechanism::Sha256;
            let (exchange, _) = scram::ServerExchange::start(m, first, &scram_credential(m), "snonce");
            assert!(exchange.finish(rest, &scram_credential(m)).is_err());
        }
    }
}

/// Target `config`: the broker's configuration as an operator writes it. The first piece
/// is `server.properties` text; the second holds environment variables, one `NAME=value`
/// a line (as a compose file's `environment:` sets them); the third is read as a JAAS
/// configuration and the fourth as `ssl.principal.mapping.rules`.
///
/// Holds: every parser answers a value or an error naming the setting, never a panic.
pub fn config(data: &[u8]) {
    let mut parts = pieces(data).map(|p| String::from_utf8_lossy(p).into_owned());
    let file = parts.next().unwrap_or_default();
    let env_text = parts.next().unwrap_or_default();
    let jaas = parts.next().unwrap_or_default();
    let rules = parts.next().unwrap_or_default();
    let env = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    let _ = crate::security::settings::bitnami_users(&env);
    let _ = tributary_common::zk::zk_login_from_bitnami(&env);
    let _ = tributary_common::zk::jvm_zk_options(&env_text);
    // Settings that name files to read (a JAAS file) are left out: what the file holds is
    // fuzzed below as text.
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "KAFKA_OPTS").collect();
    let mut props = tributary_common::config::Properties::parse("fuzz.properties", &file);
    let _ = props.take("zookeeper.sasl.jaas.file");
    let _ = crate::config::BrokerConfig::from_properties(crate::config::Args::default(), props, env);
    if let Ok(modules) = tributary_common::jaas::parse(&jaas) {
        for m in &modules {
            let _ = m.plain_users();
            let _ = m.login();
            assert_eq!(tributary_common::jaas::parse(&m.to_text()).ok().as_deref(), Some(std::slice::from_ref(m)));
        }
    }
    if let Ok(sections) = tributary_common::jaas::parse_file(&jaas) {
        for name in sections.keys() {
            let _ = tributary_common::zk::zk_login_from_sections(&sections, name, "fuzz");
            let _ = tributary_common::jaas::login_for(&sections[name], name);
        }
    }
    if let Ok(mapper) = rules.parse::<tributary_common::tls::PrincipalMapper>() {
        let _ = mapper.map(&file);
    }
    let _ = tributary_common::config::parse_listeners("listeners", &file);
    let _ = file.parse::<tributary_common::config::ProtocolMap>();
}

/// Target `znode`: every ZooKeeper payload the broker and the coordinator read. The first
/// byte picks the decoder; the rest is the znode's data.
///
/// Holds: no decoder panics, and whatever one accepts encodes to a payload it reads back
/// as the same value (so a value read, changed and written keeps every field).
pub fn znode(data: &[u8]) {
    let Some((&which, data)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(data);
    macro_rules! round_trip {
        ($decode:expr, $encode:expr) => {
            if let Ok(value) = $decode(data) {
                let encoded = $encode(&value);
                let again = $decode(&encoded[..]).expect("an encoded payload decodes");
                assert_eq!(value, again);
            }
        };
    }
    match which % 14 {
        0 => round_trip!(znode::ClusterIdZNode::decode, znode::ClusterIdZNode::encode),
        1 => round_trip!(znode::ControllerZNode::decode, znode::ControllerZNode::encode),
        2 => {
            let _ = znode::decode_controller_epoch(data);
        }
        3 => round_trip!(|d| znode::BrokerRegistration::decode(1, d), znode::BrokerRegistration::encode),
        4 => round_trip!(|d| znode::TopicAssignment::decode("t", d), znode::TopicAssignment::encode),
        5 => round_trip!(|d| znode::PartitionState::decode("t", 0, d), znode::PartitionState::encode),
        6 => round_trip!(|d| znode::ReassignPartitions::decode("/admin/reassign_partitions", d), znode::ReassignPartitions::encode),
        7 => round_trip!(|d| znode::PartitionList::decode("/admin/preferred_replica_election", d), znode::PartitionList::encode),
        8 => round_trip!(|d| znode::EntityConfig::decode("/config/topics/t", d), znode::EntityConfig::encode),
        9 => round_trip!(znode::ProducerIdBlock::decode, znode::ProducerIdBlock::encode),
        10 => round_trip!(acl::decode_acls, |v: &Vec<acl::AclEntry>| acl::encode_acls(v)),
        11 => {
            if let Ok(c) = Credential::from_config_value(&text) {
                let again = Credential::from_config_value(&c.to_config_value()).expect("a stored credential reads back");
                assert_eq!(format!("{c:?}"), format!("{again:?}"));
            }
        }
        12 => {
            if let Some(name) = znode::desanitize(&text) {
                assert_eq!(znode::desanitize(&znode::sanitize(&name)).as_deref(), Some(name.as_str()));
            }
            if let Some(entity) = znode::ConfigEntity::from_entity_path(&text) {
                assert_eq!(znode::ConfigEntity::from_entity_path(&entity.entity_path()), Some(entity));
            }
        }
        _ => {
            if let Some(e) = znode::Endpoint::parse(&text) {
                assert_eq!(znode::Endpoint::parse(&e.to_string()), Some(e));
            }
        }
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 5] =
    [("request", request), ("record_batch", record_batch), ("sasl", sasl), ("config", config), ("znode", znode)];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every input in `fuzz/corpus/<target>` and `fuzz/regressions/<target>` (the crashes
    /// found, kept as regression tests) runs through its target.
    #[test]
    fn corpus_replays() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (name, target) in TARGETS {
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
                for entry in entries {
                    let path = entry.expect("readable corpus directory").path();
                    let data = std::fs::read(&path).expect("readable corpus file");
                    let outcome = std::panic::catch_unwind(|| target(&data));
                    assert!(outcome.is_ok(), "fuzz target {name} fails on {}", path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran >= TARGETS.len(), "the fuzz corpus is missing: {ran} inputs replayed");
    }

    fn framed(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.push(p.len() as u8);
            out.extend_from_slice(p);
        }
        out
    }

    /// Writes the seed inputs into `fuzz/corpus/<target>/seed-*`: one request frame of every
    /// advertised API and version, batches of every codec and a transaction marker, SASL
    /// exchanges of each mechanism, a compose-style configuration and one payload of each
    /// znode kind. Run by hand when the decoders gain something new (`broker/fuzz/README.md`).
    #[test]
    #[ignore = "writes the seed corpus; run by hand"]
    fn write_seeds() {
        use kafka_protocol::messages::RequestHeader;
        use kafka_protocol::protocol::encode_request_header_into_buffer;
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let write = |target: &str, name: &str, data: &[u8]| {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        };
        // Every advertised API and version: a header and a body of zeros (or of ones, which
        // flexible versions read as empty compact strings and arrays), kept when it decodes.
        for (key, min, max) in crate::api::SUPPORTED {
            for version in *min..=*max {
                let mut header = RequestHeader::default();
                header.request_api_key = *key as i16;
                header.request_api_version = version;
                header.correlation_id = 1;
                header.client_id = Some(StrBytes::from_static_str("fuzz"));
                let found = [0u8, 1].into_iter().find_map(|fill| {
                    let mut frame = BytesMut::new();
                    encode_request_header_into_buffer(&mut frame, &header).unwrap();
                    frame.extend_from_slice(&[fill; 96]);
                    matches!(codec::decode(frame.clone().freeze()), Decoded::Request(..)).then_some(frame)
                });
                if let Some(frame) = found {
                    write("request", &format!("{key:?}-v{version}"), &frame);
                }
            }
        }
        let batch = |compression: Compression, n: usize| {
            let records: Vec<Record> = (0..n)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: 7,
                    producer_epoch: 0,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: i as i32,
                    timestamp: 1_000 + 300 * (i as i64 % 2),
                    key: (i % 3 != 1).then(|| Bytes::from(format!("key-{i}"))),
                    value: (i % 4 != 3).then(|| Bytes::from(format!("value-{i}"))),
                    headers: Default::default(),
                    delete_horizon: false,
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
            buf.to_vec()
        };
        for (name, codec) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            let mut two = batch(codec, 5);
            two.extend(batch(codec, 1));
            write("record_batch", name, &[[FIX_CRCS | PRODUCE_LIMIT].as_slice(), &two].concat());
        }
        let marker = control::marker_batch(7, 0, 3, control::Marker::Commit, 1_000);
        write("record_batch", "marker", &[[0u8].as_slice(), &marker].concat());

        let plain = framed(&[b"\x00PLAIN", b"\x01\x00alice\x00alice-secret", b"\x02"]);
        write("sasl", "plain", &plain);
        write("sasl", "plain-wrong", &framed(&[b"\x00PLAIN", b"\x01\x00alice\x00nope"]));
        for m in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let exchange = framed(&[
                &[b"\x00".as_slice(), m.as_bytes()].concat(),
                b"\x01n,,n=bob,r=cnonce",
                b"\x01c=biws,r=cnoncesnonce,p=dGhpcyBpcyBub3QgdGhlIHByb29m",
            ]);
            write("sasl", m, &exchange);
        }
        write("sasl", "unknown-mechanism", &framed(&[b"\x00GSSAPI", b"\x01x"]));

        let file = "broker.id=1\nzookeeper.connect=127.0.0.1:2181\nlisteners=PLAINTEXT://:9092,SASL_SSL://:9093\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL\nlog.retention.ms=1000\n\
                    sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256\nssl.client.auth=required\n";
        let env = "KAFKA_CFG_NUM_PARTITIONS=3\nKAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092\nALLOW_PLAINTEXT_LISTENER=yes\n";
        let jaas = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b" user_a="b";"#;
        let rules = "RULE:^CN=(.*?),OU=(.*)$/$1@$2/L,DEFAULT";
        write("config", "compose", &framed(&[file.as_bytes(), env.as_bytes(), jaas.as_bytes(), rules.as_bytes()]));

        let payloads: [(u8, Vec<u8>); 11] = [
            (0, znode::ClusterIdZNode::new("abc".into()).encode()),
            (1, znode::ControllerZNode::new(1, 1_000).encode()),
            (2, b"5".to_vec()),
            (3, br#"{"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://h:9092"],"jmx_port":-1,"features":{},"host":"h","timestamp":"1","port":9092,"version":5}"#.to_vec()),
            (4, br#"{"version":3,"topic_id":"AAAAAAAAAAAAAAAAAAAAAA","partitions":{"0":[1,2]},"adding_replicas":{},"removing_replicas":{}}"#.to_vec()),
            (5, znode::PartitionState::new(1, 2, 3, vec![1, 2]).encode()),
            (6, br#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2]}]}"#.to_vec()),
            (7, br#"{"version":1,"partitions":[{"topic":"t","partition":0}]}"#.to_vec()),
            (8, br#"{"version":1,"config":{"retention.ms":"1000"}}"#.to_vec()),
            (10, br#"{"version":1,"acls":[{"principal":"User:a","permissionType":"Allow","operation":"Read","host":"*"}]}"#.to_vec()),
            (11, scram_credential(scram::Mechanism::Sha256).to_config_value().into_bytes()),
        ];
        for (which, payload) in payloads {
            write("znode", &format!("kind-{which}"), &[[which].as_slice(), &payload].concat());
        }
        write("znode", "kind-12", b"\x0cusers/alice%40example");
        write("znode", "kind-13", b"\x0dSASL_SSL://broker-1:9093");
    }

    #[test]
    fn pieces_split_by_their_length_byte() {
        let data = [2, b'a', b'b', 0, 5, b'c'];
        let got: Vec<&[u8]> = pieces(&data).collect();
        assert_eq!(got, vec![&b"ab"[..], &b""[..], &b"c"[..]]);
    }
}
