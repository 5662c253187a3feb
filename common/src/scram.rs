//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the stored
//! credential in `/config/users/<user>` (`salt=...,stored_key=...,server_key=...,iterations=N`,
//! Kafka's `ScramCredentialUtils` format), the server's side of the exchange for brokers
//! and the client's side for inter-broker connections and tests.
//!
//! Everything here is pure (the nonces come from the caller) except [`random_nonce`] and
//! [`random_salt`]; hashing is ring's (already in the tree for rustls).

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

/// Kafka's bounds on a credential's iteration count (`ScramMechanism.minIterations` and
/// `maxIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// See [`MIN_ITERATIONS`].
pub const MAX_ITERATIONS: u32 = 16384;

/// One of the two SCRAM mechanisms Kafka offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `SCRAM-SHA-256`, wire type 1.
    Sha256,
    /// `SCRAM-SHA-512`, wire type 2.
    Sha512,
}

impl Mechanism {
    /// Both, in wire-type order.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL name, which is also the config key under `/config/users/<user>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From the SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The `mechanism` byte of Describe/AlterUserScramCredentials.
    pub fn wire_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// From the wire byte (0 is UNKNOWN in Kafka's enum).
    pub fn from_wire_type(t: i8) -> Option<Mechanism> {
        Self::ALL.into_iter().find(|m| m.wire_type() == t)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    /// Output length of the hash, in bytes.
    pub fn hash_len(self) -> usize {
        self.digest().output_len()
    }

    /// `Hi(password, salt, i)`: the salted password.
    ///
    /// # Panics
    /// Never for `iterations` ≥ 1 (callers check the range first).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        let n = NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
        pbkdf2::derive(self.pbkdf2(), n, salt, password, &mut out);
        out
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored credential: what a broker needs to check a proof, and nothing that reveals
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are password equivalents for an attacker with the salt: never printed.
        f.debug_struct("Credential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(mechanism: Mechanism, salted: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let client_key = mechanism.hmac_of(salted, b"Client Key");
        Credential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac_of(salted, b"Server Key"),
            iterations,
        }
    }

    /// The credential for a password.
    pub fn from_password(mechanism: Mechanism, password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// Kafka's stored form: `salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>`.
    pub fn to_config_value(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.iterations
        )
    }

    /// Parses Kafka's stored form; the message says what is wrong (never the keys).
    ///
    /// # Errors
    /// A missing or undecodable field.
    pub fn from_config_value(value: &str) -> Result<Credential, String> {
        let mut fields = std::collections::BTreeMap::new();
        for part in value.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("field {part:?} has no '='"))?;
            fields.insert(k.trim(), v.trim());
        }
        let b64 = |k: &str| -> Result<Vec<u8>, String> {
            let v = fields.get(k).ok_or_else(|| format!("no {k}"))?;
            B64.decode(v).map_err(|e| format!("{k} is not base64: {e}"))
        };
        let iterations = fields
            .get("iterations")
            .ok_or("no iterations")?
            .parse::<u32>()
            .map_err(|e| format!("iterations: {e}"))?;
        Ok(Credential { salt: b64("salt")?, stored_key: b64("stored_key")?, server_key: b64("server_key")?, iterations })
    }
}

/// The SCRAM credentials a user's config (`/config/users/<user>`) holds, by mechanism;
/// values that do not parse are left out.
pub fn stored_credentials(config: &std::collections::BTreeMap<String, String>) -> Vec<(Mechanism, Credential)> {
    Mechanism::ALL
        .into_iter()
        .filter_map(|m| Some((m, Credential::from_config_value(config.get(m.name())?).ok()?)))
        .collect()
}

/// A fresh printable nonce (32 random bytes, base64 without padding-sensitive characters).
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 24];
    fill_random(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh 32-byte salt, as Kafka's tools make.
pub fn random_salt() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    fill_random(&mut bytes);
    bytes
}

fn fill_random(out: &mut [u8]) {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(out).expect("the operating system's random source failed");
}

/// Why an exchange failed. The text is for the log; clients get Kafka's generic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The proof does not match the stored credential (wrong password or unknown user).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Something the server refuses by rule (channel binding, authorization id, nonce).
    #[error("{0}")]
    Refused(String),
}

/// RFC 5802 `saslname` decoding: `=2C` is ',' and `=3D` is '='; any other '=' is an error.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed(format!("invalid escape in user name {s:?}"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 5802 `saslname` encoding.
pub fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, decoded.
    pub username: String,
    /// The client's nonce.
    pub nonce: String,
    /// The GS2 header (`n,,` or `y,,` or `n,a=...,`), which `c=` must echo.
    gs2_header: String,
    /// `client-first-message-bare`, part of the AuthMessage.
    bare: String,
    /// Extensions after the nonce (Kafka's `tokenauth=true` among them).
    pub extensions: Vec<(String, String)>,
}

/// Parses `gs2-header client-first-message-bare`.
///
/// # Errors
/// [`ScramError::Malformed`] for anything not in RFC 5802's grammar; [`ScramError::Refused`]
/// for channel binding (`p=`) and an authorization id other than the user.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().unwrap_or_default();
    let authzid = parts.next().ok_or_else(|| ScramError::Malformed("no GS2 header".into()))?;
    let bare = parts.next().ok_or_else(|| ScramError::Malformed("no client-first-message-bare".into()))?;
    match cbind {
        "n" | "y" => {}
        p if p.starts_with("p=") => {
            return Err(ScramError::Refused("channel binding is not supported".into()));
        }
        other => return Err(ScramError::Malformed(format!("invalid GS2 channel binding flag {other:?}"))),
    }
    let mut attrs = bare.split(',');
    let username = match attrs.next() {
        Some(n) if n.starts_with("n=") => decode_saslname(&n[2..])?,
        _ => return Err(ScramError::Malformed("client-first-message-bare must start with n=".into())),
    };
    let nonce = match attrs.next() {
        Some(r) if r.starts_with("r=") && r.len() > 2 => r[2..].to_string(),
        _ => return Err(ScramError::Malformed("no client nonce (r=)".into())),
    };
    if nonce.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b',') {
        return Err(ScramError::Malformed("the client nonce has characters RFC 5802 does not allow".into()));
    }
    let mut extensions = Vec::new();
    for ext in attrs {
        let (k, v) = ext.split_once('=').ok_or_else(|| ScramError::Malformed(format!("extension {ext:?}")))?;
        extensions.push((k.to_string(), v.to_string()));
    }
    if !authzid.is_empty() {
        let id = authzid
            .strip_prefix("a=")
            .ok_or_else(|| ScramError::Malformed(format!("invalid authorization id field {authzid:?}")))?;
        if decode_saslname(id)? != username {
            return Err(ScramError::Refused(
                "the authorization id differs from the user name; Kafka does not allow acting as another user".into(),
            ));
        }
    }
    if username.is_empty() {
        return Err(ScramError::Malformed("empty user name".into()));
    }
    Ok(ClientFirst {
        username,
        nonce,
        gs2_header: format!("{cbind},{authzid},"),
        bare: bare.to_string(),
        extensions,
    })
}

/// The server's state between its first message and the client's final one.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    mechanism: Mechanism,
    client_first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Answers `client_first` with `server-first-message` for `credential`. Callers pass a
    /// stand-in credential for unknown users, so that the failure comes only at the end.
    pub fn start(
        mechanism: Mechanism,
        client_first: ClientFirst,
        credential: &Credential,
        server_nonce: &str,
    ) -> (ServerExchange, String) {
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
        let reply = server_first.clone();
        (ServerExchange { mechanism, client_first, server_first, nonce }, reply)
    }

    /// The user name the client gave.
    pub fn username(&self) -> &str {
        &self.client_first.username
    }

    /// Checks `client-final-message` against `credential`; returns `server-final-message`.
    ///
    /// # Errors
    /// [`ScramError::InvalidCredentials`] for a wrong proof, [`ScramError::Refused`] for a
    /// wrong nonce or channel binding, [`ScramError::Malformed`] for bad grammar.
    pub fn finish(&self, message: &[u8], credential: &Credential) -> Result<String, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or_else(|| ScramError::Malformed("no proof (p=)".into()))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| ScramError::Malformed("client-final-message must start with c=".into()))?;
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| ScramError::Malformed("no nonce (r=)".into()))?;
        if B64.decode(binding).ok().as_deref() != Some(self.client_first.gs2_header.as_bytes()) {
            return Err(ScramError::Refused("the channel binding does not echo the GS2 header".into()));
        }
        // Kafka's rule (ScramSaslServer): the nonce must end with the one the server sent.
        // librdkafka before 2.1 repeats its own nonce in front of it; the server's random
        // part is still there, so a replayed exchange still fails.
        if !nonce.ends_with(&self.nonce) {
            return Err(ScramError::Refused("the nonce does not end with the one the server sent".into()));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("the proof is not base64".into()))?;
        let m = self.mechanism;
        if proof.len() != m.hash_len() || credential.stored_key.len() != m.hash_len() {
            return Err(ScramError::InvalidCredentials);
        }
        let auth_message = format!("{},{},{}", self.client_first.bare, self.server_first, without_proof);
        let client_signature = m.hmac_of(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = m.hmac_of(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client's side, for a broker fetching from a SCRAM listener (and for tests).
#[derive(Debug, Clone)]
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// Starts an exchange; returns the state and `client-first-message`.
    pub fn start(mechanism: Mechanism, username: &str, password: &str, nonce: &str) -> (ClientExchange, String) {
        let bare = format!("n={},r={nonce}", encode_saslname(username));
        let first = format!("n,,{bare}");
        let state = ClientExchange {
            mechanism,
            password: password.to_string(),
            bare,
            nonce: nonce.to_string(),
            expected_server_signature: None,
        };
        (state, first)
    }

    /// Answers `server-first-message` with `client-final-message`.
    ///
    /// # Errors
    /// A message when the server's nonce, salt or iterations are unusable.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v.to_string()),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::Malformed("server-first-message lacks r, s or i".into()));
        };
        if !nonce.starts_with(&self.nonce) || iterations < MIN_ITERATIONS.min(4096) || iterations > 1_000_000 {
            return Err(ScramError::Refused("the server's nonce or iteration count is unacceptable".into()));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac_of(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let client_signature = m.hmac_of(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac_of(&salted, b"Server Key");
        self.expected_server_signature = Some(m.hmac_of(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks `server-final-message`: the server proves it knows the credential too.
    ///
    /// # Errors
    /// The server's error (`e=`), or a signature that does not match.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError::Refused(format!("the server refused: {e}")));
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| ScramError::Malformed("server-final-message lacks v=".into()))?;
        match &self.expected_server_signature {
            Some(expected) if constant_time_eq(expected, &signature) => Ok(()),
            _ => Err(ScramError::Refused("the server's signature does not match; it does not hold this credential".into())),
        }
    }
}

/// A stand-in credential for a user without one, so that the exchange looks the same as
/// for a real user until its proof fails (no user enumeration). Deterministic per user
/// and process, so that retries see the same salt.
pub fn stand_in_credential(mechanism: Mechanism, username: &str, secret: &[u8]) -> Credential {
    let salt = mechanism.hmac_of(secret, username.as_bytes());
    Credential {
        salt,
        stored_key: vec![0; mechanism.hash_len()],
        server_key: vec![0; mechanism.hash_len()],
        iterations: MIN_ITERATIONS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector_exchange_succeeds() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::from_password(Mechanism::Sha256, "pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        let (server, reply) = ServerExchange::start(Mechanism::Sha256, first, &credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(reply, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let final_message = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            server.finish(final_message, &credential).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn client_and_server_agree_and_a_wrong_password_fails() {
        for m in Mechanism::ALL {
            let credential = Credential::from_password(m, "alice-secret", random_salt(), 4096);
            for (password, ok) in [("alice-secret", true), ("wrong", false)] {
                let (mut client, first) = ClientExchange::start(m, "alice", password, "cnonce");
                let parsed = parse_client_first(first.as_bytes()).unwrap();
                let (server, server_first) = ServerExchange::start(m, parsed, &credential, "snonce");
                let client_final = client.respond(server_first.as_bytes()).unwrap();
                match server.finish(client_final.as_bytes(), &credential) {
                    Ok(server_final) => {
                        assert!(ok, "{m}: a wrong password was accepted");
                        client.verify(server_final.as_bytes()).unwrap();
                    }
                    Err(e) => {
                        assert!(!ok, "{m}: the right password failed: {e}");
                        assert_eq!(e, ScramError::InvalidCredentials);
                    }
                }
            }
        }
    }

    #[test]
    fn stored_form_round_trips_and_reads_kafkas_text() {
        let c = Credential::from_password(Mechanism::Sha512, "pw", b"salty".to_vec(), 8192);
        assert_eq!(Credential::from_config_value(&c.to_config_value()).unwrap(), c);
        // The shape kafka-configs --add-config 'SCRAM-SHA-256=[...]' stores (values made up).
        let kafka = "salt=MWx2NHBkbnc0ZndxN25vdGN4bTB5eTFrN3E=,stored_key=GGAXhTRawnXaNeCp/Y8yYsOsusYvuZaqy3GKMCE4wWI=,server_key=zqXmEJFQx3ZcVs3bZs3SeFZ8GSKwj6IDrEVsmoF6n0U=,iterations=4096";
        let parsed = Credential::from_config_value(kafka).unwrap();
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.stored_key.len(), 32);
        for bad in ["salt=a", "salt=!!,stored_key=,server_key=,iterations=1", "nothing"] {
            assert!(Credential::from_config_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_first_messages_are_checked() {
        let cases: &[(&[u8], Result<&str, &str>)] = &[
            (b"n,,n=alice,r=abc", Ok("alice")),
            (b"y,,n=alice,r=abc", Ok("alice")),
            (b"n,a=alice,n=alice,r=abc", Ok("alice")),
            (b"n,,n=a=2Cb=3Dc,r=abc", Ok("a,b=c")),
            (b"n,,n=alice,r=abc,tokenauth=true", Ok("alice")),
            (b"n,a=bob,n=alice,r=abc", Err("authorization id")),
            (b"p=tls-unique,,n=alice,r=abc", Err("channel binding")),
            (b"x,,n=alice,r=abc", Err("GS2")),
            (b"n,,r=abc", Err("n=")),
            (b"n,,n=alice", Err("nonce")),
            (b"n,,n=,r=abc", Err("empty user")),
            (b"n,,n=al=ice,r=abc", Err("escape")),
            (b"n,,n=alice,r=a b", Err("characters")),
            (b"\xff\xfe", Err("UTF-8")),
            (b"", Err("GS2")),
        ];
        for (input, want) in cases {
            let got = parse_client_first(input);
            match (got, want) {
                (Ok(c), Ok(user)) => assert_eq!(&c.username, user),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input:?}: {e}"),
                (got, want) => panic!("{:?}: got {got:?}, want {want:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn client_final_messages_are_checked() {
        let credential = Credential::from_password(Mechanism::Sha256, "pw", b"salt".to_vec(), 4096);
        let first = parse_client_first(b"n,,n=u,r=c").unwrap();
        let (server, _) = ServerExchange::start(Mechanism::Sha256, first, &credential, "s");
        let cases: &[(&[u8], &str)] = &[
            (b"c=biws,r=cs", "no proof"),
            (b"c=biws,r=other,p=AAAA", "nonce"),
            (b"c=biws,r=c,p=AAAA", "nonce"),
            (b"c=eSws,r=cs,p=AAAA", "channel binding"),
            (b"r=cs,p=AAAA", "must start with c="),
            (b"c=biws,r=cs,p=!!!", "base64"),
            (b"c=biws,r=cs,p=AAAA", "invalid credentials"),
        ];
        for (input, want) in cases {
            let e = server.finish(input, &credential).unwrap_err();
            assert!(e.to_string().contains(want), "{:?}: {e}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn unknown_users_get_a_stable_stand_in() {
        let a = stand_in_credential(Mechanism::Sha256, "mallory", b"k");
        assert_eq!(a, stand_in_credential(Mechanism::Sha256, "mallory", b"k"));
        assert_ne!(a.salt, stand_in_credential(Mechanism::Sha256, "eve", b"k").salt);
        assert_eq!(format!("{a:?}"), "Credential { iterations: 4096, .. }");
    }
}
