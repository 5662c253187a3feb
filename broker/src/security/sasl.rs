//! One SASL connection's authentication, as Kafka's `SaslServerAuthenticator` runs it
//! (KIP-152 framing, KIP-368 re-authentication): ApiVersions and SaslHandshake first, then
//! SaslAuthenticate rounds, then ordinary requests until the session expires.
//!
//! [`Authenticator::on_request`] is a pure step: the caller passes the clock, a nonce and
//! the credential lookup, and carries out the [`Step`] it returns.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    RequestKind, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tributary_common::scram::{self, constant_time_eq, Credential, ServerExchange};

use super::{Mechanism, Principal, SaslServer};

/// What the connection does with a request.
#[derive(Debug)]
pub(crate) enum Step {
    /// Serve it as usual (the connection is authenticated, or it is ApiVersions).
    Serve(RequestKind),
    /// Answer with this; the exchange goes on.
    Reply(ResponseKind),
    /// Answer with this after the failure delay, then close; the text is for the log.
    Refuse(ResponseKind, String),
    /// Close without an answer; the text is for the log.
    Close(String),
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake (ApiVersions allowed).
    Handshake,
    /// The mechanism is chosen; waiting for the first SaslAuthenticate.
    Authenticate(Mechanism),
    /// SCRAM: the server's first message is out; waiting for the client's final one.
    ScramFinal { mechanism: scram::Mechanism, exchange: Box<ServerExchange>, credential: Credential, known_user: bool },
    /// Authenticated.
    Done,
}

/// The authentication state of one SASL connection.
#[derive(Debug)]
pub(crate) struct Authenticator {
    server: SaslServer,
    state: State,
    /// Set once authenticated; kept through a re-authentication, which must not change it.
    principal: Option<Principal>,
    /// The mechanism of the first authentication (a re-authentication must use the same).
    mechanism: Option<Mechanism>,
    /// When the session expires (ms since the epoch), with `connections.max.reauth.ms`.
    expires_at_ms: Option<i64>,
    /// Authentications completed on this connection (more than one: re-authentications).
    completed: u32,
}

impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What [`Authenticator::on_request`] needs from outside.
pub(crate) struct Env<'a> {
    /// Now, ms since the epoch.
    pub(crate) now_ms: i64,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    pub(crate) max_reauth_ms: i64,
    /// A fresh server nonce.
    pub(crate) nonce: &'a str,
    /// The stored SCRAM credential of a user.
    pub(crate) credential: &'a dyn Fn(&str, scram::Mechanism) -> Option<Credential>,
    /// Key for stand-in credentials of unknown users.
    pub(crate) stand_in_secret: &'a [u8],
}

fn handshake_response(server: &SaslServer, error: Option<ResponseError>) -> ResponseKind {
    let mut r = SaslHandshakeResponse::default();
    r.error_code = error.map_or(0, |e| e.code());
    r.mechanisms = server.mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
    ResponseKind::SaslHandshake(r)
}

fn authenticate_response(bytes: Vec<u8>, session_lifetime_ms: i64) -> ResponseKind {
    let mut r = SaslAuthenticateResponse::default();
    r.auth_bytes = Bytes::from(bytes);
    r.session_lifetime_ms = session_lifetime_ms;
    ResponseKind::SaslAuthenticate(r)
}

fn authenticate_error(error: ResponseError, message: &str) -> ResponseKind {
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = error.code();
    r.error_message = Some(StrBytes::from_string(message.to_string()));
    ResponseKind::SaslAuthenticate(r)
}

/// Kafka's words for a failed SCRAM exchange (the log says more).
fn scram_failed(m: scram::Mechanism) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {m}")
}

/// Checks a PLAIN message (`[authzid] NUL user NUL password`) against the listener's users.
///
/// # Errors
/// Kafka's message for the client.
pub(crate) fn check_plain(users: &BTreeMap<String, String>, message: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(message).map_err(|_| "Authentication failed: the PLAIN message is not UTF-8".to_string())?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("Invalid SASL/PLAIN response: expected 3 tokens".into());
    };
    if user.is_empty() {
        return Err("Authentication failed: username not specified".into());
    }
    if password.is_empty() {
        return Err("Authentication failed: password not specified".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err("Authentication failed: Client requested an authorization id that is different from username".into());
    }
    // Compare against a stand-in for unknown users too, so timing tells nothing.
    let expected = users.get(user);
    let matches = constant_time_eq(expected.map_or(b"\0".as_slice(), |p| p.as_bytes()), password.as_bytes());
    if expected.is_some() && matches {
        Ok(user.to_string())
    } else {
        Err("Authentication failed: Invalid username or password".into())
    }
}

impl Authenticator {
    /// A connection that has not authenticated yet.
    pub(crate) fn new(server: SaslServer) -> Authenticator {
        Authenticator {
            server,
            state: State::Handshake,
            principal: None,
            mechanism: None,
            expires_at_ms: None,
            completed: 0,
        }
    }

    /// Whether the connection has authenticated (and is not re-authenticating).
    #[cfg(test)]
    pub(crate) fn authenticated(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// How many authentications this connection has completed: 1 after the first, one
    /// more for each re-authentication (KIP-368).
    pub(crate) fn completed(&self) -> u32 {
        self.completed
    }

    /// The authenticated principal.
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Takes one request; `api` names it for the log.
    pub(crate) fn on_request(&mut self, api: &str, request: RequestKind, env: &Env<'_>) -> Step {
        match (&self.state, request) {
            (State::Done, RequestKind::SaslHandshake(h)) => self.handshake(h.mechanism.as_str()),
            (State::Done, RequestKind::SaslAuthenticate(_)) => {
                Step::Reply(authenticate_error(ResponseError::IllegalSaslState, "SaslAuthenticate request received after successful authentication"))
            }
            (State::Done, request) => match self.expires_at_ms {
                Some(at) if env.now_ms >= at => Step::Close(
                    "the session expired (connections.max.reauth.ms) and the client did not re-authenticate; it reconnects".into(),
                ),
                _ => Step::Serve(request),
            },
            (State::Handshake, RequestKind::ApiVersions(r)) => Step::Serve(RequestKind::ApiVersions(r)),
            (State::Handshake, RequestKind::SaslHandshake(h)) => self.handshake(h.mechanism.as_str()),
            (State::Authenticate(m), RequestKind::SaslAuthenticate(a)) => {
                let m = *m;
                self.first_round(m, a, env)
            }
            (State::ScramFinal { .. }, RequestKind::SaslAuthenticate(a)) => self.final_round(a, env),
            (state, _) => Step::Close(format!(
                "unexpected {api} request during SASL authentication (at {}); the client must authenticate first: check its security.protocol and sasl.mechanism",
                match state {
                    State::Handshake => "the handshake",
                    _ => "SaslAuthenticate",
                }
            )),
        }
    }

    fn handshake(&mut self, requested: &str) -> Step {
        let chosen = self.server.mechanisms.iter().copied().find(|m| m.name() == requested);
        match chosen {
            None => Step::Refuse(
                handshake_response(&self.server, Some(ResponseError::UnsupportedSaslMechanism)),
                format!("the client asked for SASL mechanism {requested:?}, which this listener does not enable"),
            ),
            Some(m) if self.mechanism.is_some_and(|first| first != m) => Step::Refuse(
                handshake_response(&self.server, Some(ResponseError::IllegalSaslState)),
                format!("re-authentication with {requested} after authenticating with another mechanism"),
            ),
            Some(m) => {
                self.state = State::Authenticate(m);
                Step::Reply(handshake_response(&self.server, None))
            }
        }
    }

    fn first_round(&mut self, m: Mechanism, request: SaslAuthenticateRequest, env: &Env<'_>) -> Step {
        match m {
            Mechanism::Plain => match check_plain(&self.server.plain_users, &request.auth_bytes) {
                Ok(user) => self.succeed(m, Principal::user(&user), Vec::new(), env),
                Err(message) => {
                    let user = plain_user_for_log(&request.auth_bytes);
                    self.fail(ResponseError::SaslAuthenticationFailed, &message, format!("PLAIN authentication of user {user:?} failed: {message}"))
                }
            },
            Mechanism::Scram(sm) => match scram::parse_client_first(&request.auth_bytes) {
                Err(e) => self.fail(ResponseError::SaslAuthenticationFailed, &scram_failed(sm), format!("{sm}: {e}")),
                Ok(first) => {
                    let stored = (env.credential)(&first.username, sm);
                    let known_user = stored.is_some();
                    let credential =
                        stored.unwrap_or_else(|| scram::stand_in_credential(sm, &first.username, env.stand_in_secret));
                    let (exchange, reply) = ServerExchange::start(sm, first, &credential, env.nonce);
                    self.state = State::ScramFinal { mechanism: sm, exchange: Box::new(exchange), credential, known_user };
                    Step::Reply(authenticate_response(reply.into_bytes(), 0))
                }
            },
        }
    }

    fn final_round(&mut self, request: SaslAuthenticateRequest, env: &Env<'_>) -> Step {
        let State::ScramFinal { mechanism: sm, exchange, credential, known_user } =
            std::mem::replace(&mut self.state, State::Handshake)
        else {
            return Step::Close("internal: SCRAM final round outside its state".into());
        };
        let user = exchange.username().to_string();
        match exchange.finish(&request.auth_bytes, &credential) {
            Ok(server_final) if known_user => {
                self.succeed(Mechanism::Scram(sm), Principal::user(&user), server_final.into_bytes(), env)
            }
            Ok(_) | Err(scram::ScramError::InvalidCredentials) => self.fail(
                ResponseError::SaslAuthenticationFailed,
                &scram_failed(sm),
                format!("{sm} authentication of user {user:?} failed: {}", if known_user { "wrong password" } else { "no such user (no credential in /config/users)" }),
            ),
            Err(e) => self.fail(ResponseError::SaslAuthenticationFailed, &scram_failed(sm), format!("{sm} authentication of user {user:?} failed: {e}")),
        }
    }

    fn succeed(&mut self, m: Mechanism, principal: Principal, reply: Vec<u8>, env: &Env<'_>) -> Step {
        if let Some(previous) = &self.principal {
            if *previous != principal {
                let message = format!("Cannot change principals during re-authentication from {previous}: {principal}");
                return self.fail(ResponseError::SaslAuthenticationFailed, &message, message.clone());
            }
        }
        self.principal = Some(principal);
        self.mechanism = Some(m);
        self.state = State::Done;
        self.completed += 1;
        let lifetime = if env.max_reauth_ms > 0 { env.max_reauth_ms } else { 0 };
        self.expires_at_ms = (lifetime > 0).then(|| env.now_ms + lifetime);
        Step::Reply(authenticate_response(reply, lifetime))
    }

    fn fail(&mut self, error: ResponseError, message: &str, log: String) -> Step {
        self.state = State::Handshake;
        Step::Refuse(authenticate_error(error, message), log)
    }
}

/// The user name of a PLAIN message, for the log (never the password).
fn plain_user_for_log(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.split('\0').nth(1).unwrap_or_default().chars().take(128).collect()
}

#[cfg(test)]
mod tests;
