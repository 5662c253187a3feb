use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, SaslHandshakeRequest};

use super::*;

const NOW: i64 = 1_000_000;

fn server() -> SaslServer {
    SaslServer {
        mechanisms: vec![
            Mechanism::Plain,
            Mechanism::Scram(scram::Mechanism::Sha256),
            Mechanism::Scram(scram::Mechanism::Sha512),
        ],
        plain_users: [("alice".to_string(), "alice-secret".to_string())].into(),
    }
}

fn credential(m: scram::Mechanism) -> Credential {
    Credential::from_password(m, "bob-secret", b"salt".to_vec(), 4096)
}

fn lookup(user: &str, m: scram::Mechanism) -> Option<Credential> {
    (user == "bob").then(|| credential(m))
}

fn env(max_reauth_ms: i64, now_ms: i64) -> Env<'static> {
    Env { now_ms, max_reauth_ms, nonce: "snonce", credential: &lookup, stand_in_secret: b"k" }
}

fn handshake(m: &str) -> RequestKind {
    let mut h = SaslHandshakeRequest::default();
    h.mechanism = StrBytes::from_string(m.to_string());
    RequestKind::SaslHandshake(h)
}

fn authenticate(bytes: &[u8]) -> RequestKind {
    let mut a = SaslAuthenticateRequest::default();
    a.auth_bytes = Bytes::copy_from_slice(bytes);
    RequestKind::SaslAuthenticate(a)
}

fn metadata() -> RequestKind {
    RequestKind::Metadata(MetadataRequest::default())
}

fn error_of(step: &Step) -> Option<i16> {
    match step {
        Step::Reply(ResponseKind::SaslAuthenticate(r)) | Step::Refuse(ResponseKind::SaslAuthenticate(r), _) => Some(r.error_code),
        Step::Reply(ResponseKind::SaslHandshake(r)) | Step::Refuse(ResponseKind::SaslHandshake(r), _) => Some(r.error_code),
        _ => None,
    }
}

#[test]
fn plain_messages_are_checked_as_kafka_checks_them() {
    let users = server().plain_users;
    let cases: &[(&[u8], Result<&str, &str>)] = &[
        (b"\0alice\0alice-secret", Ok("alice")),
        (b"alice\0alice\0alice-secret", Ok("alice")),
        (b"\0alice\0wrong", Err("Invalid username or password")),
        (b"\0mallory\0alice-secret", Err("Invalid username or password")),
        (b"\0\0pw", Err("username not specified")),
        (b"\0alice\0", Err("password not specified")),
        (b"bob\0alice\0alice-secret", Err("authorization id")),
        (b"alice-secret", Err("expected 3 tokens")),
        (b"\0a\0b\0c", Err("expected 3 tokens")),
        (b"\0alice\0\xff", Err("UTF-8")),
    ];
    for (message, want) in cases {
        match (check_plain(&users, message), want) {
            (Ok(u), Ok(w)) => assert_eq!(&u, w),
            (Err(e), Err(w)) => assert!(e.contains(w), "{message:?}: {e}"),
            (got, want) => panic!("{message:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn plain_login_then_requests_are_served() {
    let mut a = Authenticator::new(server());
    assert!(matches!(a.on_request("ApiVersions", RequestKind::ApiVersions(ApiVersionsRequest::default()), &env(0, NOW)), Step::Serve(_)));
    assert_eq!(error_of(&a.on_request("SaslHandshake", handshake("PLAIN"), &env(0, NOW))), Some(0));
    let step = a.on_request("SaslAuthenticate", authenticate(b"\0alice\0alice-secret"), &env(0, NOW));
    assert_eq!(error_of(&step), Some(0));
    assert!(a.authenticated());
    assert_eq!(a.principal().unwrap().to_string(), "User:alice");
    assert!(matches!(a.on_request("Metadata", metadata(), &env(0, NOW + 10_000_000)), Step::Serve(_)));
    // A second SaslAuthenticate without a handshake is out of order.
    let again = a.on_request("SaslAuthenticate", authenticate(b"\0alice\0alice-secret"), &env(0, NOW));
    assert_eq!(error_of(&again), Some(ResponseError::IllegalSaslState.code()));
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let mut a = Authenticator::new(server());
    assert!(matches!(a.on_request("Metadata", metadata(), &env(0, NOW)), Step::Close(m) if m.contains("Metadata")));
    let mut b = Authenticator::new(server());
    b.on_request("SaslHandshake", handshake("PLAIN"), &env(0, NOW));
    assert!(matches!(b.on_request("Metadata", metadata(), &env(0, NOW)), Step::Close(_)));
    let mut c = Authenticator::new(server());
    assert!(matches!(c.on_request("SaslAuthenticate", authenticate(b"\0alice\0alice-secret"), &env(0, NOW)), Step::Close(_)));
}

#[test]
fn unknown_mechanisms_and_wrong_passwords_are_refused() {
    let mut a = Authenticator::new(server());
    let step = a.on_request("SaslHandshake", handshake("GSSAPI"), &env(0, NOW));
    assert!(matches!(&step, Step::Refuse(ResponseKind::SaslHandshake(r), _) if r.error_code == ResponseError::UnsupportedSaslMechanism.code() && r.mechanisms.len() == 3));
    let mut b = Authenticator::new(server());
    b.on_request("SaslHandshake", handshake("PLAIN"), &env(0, NOW));
    let step = b.on_request("SaslAuthenticate", authenticate(b"\0alice\0nope"), &env(0, NOW));
    match step {
        Step::Refuse(ResponseKind::SaslAuthenticate(r), log) => {
            assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
            assert!(log.contains("alice") && !log.contains("nope"), "{log}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!b.authenticated());
}

fn scram_login(a: &mut Authenticator, m: scram::Mechanism, user: &str, password: &str, env: &Env<'_>) -> Step {
    assert_eq!(error_of(&a.on_request("SaslHandshake", handshake(m.name()), env)), Some(0));
    let (mut client, first) = scram::ClientExchange::start(m, user, password, "cnonce");
    let server_first = match a.on_request("SaslAuthenticate", authenticate(first.as_bytes()), env) {
        Step::Reply(ResponseKind::SaslAuthenticate(r)) => r.auth_bytes,
        other => panic!("{other:?}"),
    };
    let last = client.respond(&server_first).unwrap();
    let step = a.on_request("SaslAuthenticate", authenticate(last.as_bytes()), env);
    if let Step::Reply(ResponseKind::SaslAuthenticate(r)) = &step {
        client.verify(&r.auth_bytes).unwrap();
    }
    step
}

#[test]
fn scram_logins_succeed_and_fail_alike_for_unknown_users() {
    for m in scram::Mechanism::ALL {
        let mut ok = Authenticator::new(server());
        assert_eq!(error_of(&scram_login(&mut ok, m, "bob", "bob-secret", &env(0, NOW))), Some(0));
        assert_eq!(ok.principal().unwrap().to_string(), "User:bob");
        for (user, password) in [("bob", "wrong"), ("nobody", "bob-secret")] {
            let mut bad = Authenticator::new(server());
            let step = scram_login(&mut bad, m, user, password, &env(0, NOW));
            match step {
                Step::Refuse(ResponseKind::SaslAuthenticate(r), _) => {
                    assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
                    assert_eq!(r.error_message.unwrap().as_str(), scram_failed(m));
                }
                other => panic!("{user}: {other:?}"),
            }
        }
    }
}

#[test]
fn sessions_expire_and_reauthentication_keeps_the_principal() {
    let m = scram::Mechanism::Sha256;
    let mut a = Authenticator::new(server());
    match scram_login(&mut a, m, "bob", "bob-secret", &env(60_000, NOW)) {
        Step::Reply(ResponseKind::SaslAuthenticate(r)) => assert_eq!(r.session_lifetime_ms, 60_000),
        other => panic!("{other:?}"),
    }
    assert!(matches!(a.on_request("Metadata", metadata(), &env(60_000, NOW + 59_999)), Step::Serve(_)));
    // Re-authenticating (even after expiry) renews the session.
    assert_eq!(error_of(&scram_login(&mut a, m, "bob", "bob-secret", &env(60_000, NOW + 70_000))), Some(0));
    assert!(matches!(a.on_request("Metadata", metadata(), &env(60_000, NOW + 120_000)), Step::Serve(_)));
    assert!(matches!(a.on_request("Metadata", metadata(), &env(60_000, NOW + 130_000)), Step::Close(m) if m.contains("expired")));
    // Another mechanism, or another user, is refused on re-authentication.
    let step = a.on_request("SaslHandshake", handshake("PLAIN"), &env(60_000, NOW));
    assert!(matches!(step, Step::Refuse(..)));
    let mut p = Authenticator::new(server());
    p.on_request("SaslHandshake", handshake("PLAIN"), &env(0, NOW));
    p.on_request("SaslAuthenticate", authenticate(b"\0alice\0alice-secret"), &env(0, NOW));
    let users = SaslServer { plain_users: [("alice".into(), "a".into()), ("eve".into(), "e".into())].into(), ..server() };
    p.server = users;
    p.on_request("SaslHandshake", handshake("PLAIN"), &env(0, NOW));
    let step = p.on_request("SaslAuthenticate", authenticate(b"\0eve\0e"), &env(0, NOW));
    assert!(matches!(step, Step::Refuse(_, log) if log.contains("Cannot change principals")));
}
