//! Authentication and authorization of the coordinator's HTTP endpoints (admin API,
//! console, REST API): `http.auth=basic` checks HTTP Basic credentials against the SCRAM
//! credentials brokers use (`/config/users/<user>`), `http.auth=token` a bearer token read
//! from `http.auth.token.file` (its holder is a super user); with `authorizer.class.name` the
//! same ACLs as the brokers' decide what each principal may do ([`required`] maps a request
//! to the operation and resource Kafka's tools would need).
//!
//! `/health` and `/metrics` stay open for probes and Prometheus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use tributary_common::acl::{self, AuthorizerConfig, Operation, ResourceType, CLUSTER_NAME};
use tributary_common::scram::{constant_time_eq, Credential};
use tributary_common::zk::read_entity_config;
use tributary_common::znode::ConfigEntity;

use crate::controller::ZkSlot;

/// `http.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No authentication (the default; keep the port private).
    #[default]
    None,
    /// HTTP Basic against the SCRAM users.
    Basic,
    /// `Authorization: Bearer <token>`.
    Token,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Mode::None),
            "basic" => Ok(Mode::Basic),
            "token" => Ok(Mode::Token),
            other => Err(format!("{other:?} is not none, basic or token")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::None => "none",
            Mode::Basic => "basic",
            Mode::Token => "token",
        })
    }
}

impl tributary_common::config::SettingValue for Mode {
    const TYPE: tributary_common::config::ConfigType = tributary_common::config::ConfigType::String;
    fn render(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// How long a verified Basic login is remembered (PBKDF2 per request would be slow).
const REMEMBER: Duration = Duration::from_secs(60);

/// Basic logins verified lately: (user, SHA-256 of the password) → when.
type Verified = HashMap<(String, Vec<u8>), Instant>;

/// The HTTP endpoints' gatekeeper.
#[derive(Clone)]
pub struct HttpAuth {
    mode: Mode,
    token: Option<Arc<str>>,
    authorizer: Option<AuthorizerConfig>,
    zk: ZkSlot,
    /// (user, digest of the password) → when verified.
    verified: Arc<Mutex<Verified>>,
}

impl HttpAuth {
    /// A gatekeeper; `token` is the content of `http.auth.token.file` for [`Mode::Token`].
    pub fn new(mode: Mode, token: Option<String>, authorizer: Option<AuthorizerConfig>, zk: ZkSlot) -> HttpAuth {
        HttpAuth {
            mode,
            token: token.map(|t| t.trim().into()),
            authorizer,
            zk,
            verified: Arc::default(),
        }
    }

    /// Checks Basic credentials against the user's stored SCRAM credential.
    async fn check_password(&self, user: &str, password: &str) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes()).as_ref().to_vec();
        let key = (user.to_string(), digest);
        let remembered = self.verified.lock().expect("auth cache lock").get(&key).is_some_and(|at| at.elapsed() < REMEMBER);
        if remembered {
            return true;
        }
        let client = self.zk.read().expect("zk slot lock").clone();
        let Some(client) = client else { return false };
        let Ok((config, _)) = read_entity_config(&client, &ConfigEntity::User(Some(user.to_string()))).await else {
            return false;
        };
        let stored = tributary_common::scram::stored_credentials(&config);
        let password = password.to_string();
        // PBKDF2 is deliberately slow: off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            stored.iter().any(|(m, c)| {
                let candidate = Credential::from_password(*m, &password, c.salt.clone(), c.iterations);
                constant_time_eq(&candidate.stored_key, &c.stored_key)
            })
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().expect("auth cache lock");
            cache.retain(|_, at| at.elapsed() < REMEMBER);
            cache.insert(key, Instant::now());
        }
        ok
    }

    /// The principal of a request, or why it is refused.
    async fn authenticate(&self, value: &str) -> Result<String, &'static str> {
        match self.mode {
            Mode::None => Ok("User:ANONYMOUS".into()),
            Mode::Token => {
                let given = value.strip_prefix("Bearer ").unwrap_or_default().trim();
                match &self.token {
                    Some(t) if !given.is_empty() && constant_time_eq(given.as_bytes(), t.as_bytes()) => {
                        Ok("User:http-token".into())
                    }
                    _ => Err("a valid Authorization: Bearer token is required"),
                }
            }
            Mode::Basic => {
                let decoded = value
                    .strip_prefix("Basic ")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or("HTTP Basic credentials of a SCRAM user are required")?;
                let (user, password) = decoded.split_once(':').ok_or("HTTP Basic credentials must be user:password")?;
                if self.check_password(user, password).await {
                    Ok(format!("User:{user}"))
                } else {
                    Err("wrong user name or password")
                }
            }
        }
    }

    fn allows(&self, principal: &str, acls: &acl::AclMap, need: &Need) -> bool {
        let Some(config) = &self.authorizer else { return true };
        if self.mode == Mode::Token {
            return true; // the token's holder is a super user
        }
        need.iter().any(|(op, rt, name)| acl::authorize(acls, config, principal, "*", *op, *rt, name))
    }
}

/// What a request needs: any one of these (operation, resource type, name).
pub type Need = Vec<(Operation, ResourceType, String)>;

/// The permission an HTTP request needs, as Kafka's tools would for the same change;
/// `None` for endpoints open to every authenticated caller (the console's pages).
/// `rest` is true for the REST API's own paths.
pub fn required(method: &Method, path: &str, rest: bool) -> Option<Need> {
    use Operation as Op;
    use ResourceType as Rt;
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let cluster = |op: Op| Some(vec![(op, Rt::Cluster, CLUSTER_NAME.to_string())]);
    let topic = |op: Op, t: &str| Some(vec![(op, Rt::Topic, t.to_string())]);
    let group = |op: Op, g: &str| Some(vec![(op, Rt::Group, g.to_string())]);
    let read = *method == Method::GET || *method == Method::HEAD;
    if rest {
        return match parts.as_slice() {
            ["topics", t, ..] if !read => topic(Op::Write, t),
            ["topics", t, ..] => topic(Op::Describe, t),
            ["v3", "clusters", _, "topics", t, ..] if !read => topic(Op::Write, t),
            ["v3", "clusters", _, "topics", t, ..] => topic(Op::Describe, t),
            ["consumers", g, ..] => group(Op::Read, g),
            _ => cluster(Op::Describe),
        };
    }
    match (parts.as_slice(), read) {
        (["rest", rest_path @ ..], _) => required(method, &rest_path.join("/"), true),
        ([], true) | (["app.js" | "style.css" | "vendor" | "assets" | "favicon.ico", ..], true) => None,
        (["console", "live", t], true) => topic(Op::Read, t),
        (["topics"], false) => Some(vec![
            (Op::Create, Rt::Cluster, CLUSTER_NAME.to_string()),
        ]),
        (["topics", t], true) => topic(Op::Describe, t),
        (["topics", t], false) => topic(Op::Delete, t),
        (["topics", t, "configs"], true) => topic(Op::DescribeConfigs, t),
        (["topics", t, "configs"], false) => topic(Op::AlterConfigs, t),
        (["brokers", _, "configs"], true) => cluster(Op::DescribeConfigs),
        (["brokers", _, "configs"], false) => cluster(Op::AlterConfigs),
        (["groups", g], true) => group(Op::Describe, g),
        (["groups", g], false) => group(Op::Delete, g),
        (["groups", g, "offsets", "reset"], false) => group(Op::Read, g),
        (_, true) => cluster(Op::Describe),
        (_, false) => cluster(Op::Alter),
    }
}

fn refuse(status: StatusCode, message: String, basic: bool) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if basic && status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"Tributary\", charset=\"UTF-8\""));
    }
    response
}

/// The middleware for the admin port (admin API, console, REST under `/rest`).
pub async fn gate_admin(State(auth): State<HttpAuth>, request: Request<Body>, next: Next) -> Response {
    gate(auth, false, request, next).await
}

/// The middleware for the REST API's own port.
pub async fn gate_rest(State(auth): State<HttpAuth>, request: Request<Body>, next: Next) -> Response {
    gate(auth, true, request, next).await
}

/// Authenticates, then authorizes against the ACLs in ZooKeeper.
async fn gate(auth: HttpAuth, rest: bool, request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if !rest && matches!(path.as_str(), "/health" | "/metrics") {
        return next.run(request).await;
    }
    // (The header is copied out: a request body is not Sync, so it cannot be borrowed across awaits.)
    let authorization =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let method = request.method().clone();
    let principal = match auth.authenticate(&authorization).await {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(%method, path, reason = why, "HTTP request refused: not authenticated");
            // Slows password guessing, as a broker's failed SASL login does.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return refuse(StatusCode::UNAUTHORIZED, format!("authentication required: {why}"), auth.mode == Mode::Basic);
        }
    };
    if let (Some(need), Some(_)) = (required(&method, &path, rest), &auth.authorizer) {
        let client = auth.zk.read().expect("zk slot lock").clone();
        let acls = match client {
            Some(client) => tributary_common::zk::read_acls(&client).await.ok(),
            None => None,
        };
        let Some(acls) = acls else {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "cannot read the ACLs from ZooKeeper; retry".into(), false);
        };
        if !auth.allows(&principal, &acls, &need) {
            let (op, rt, name) = &need[0];
            tracing::info!(principal, %method, path, operation = op.name(), resource = format!("{}:{name}", rt.name()), "HTTP request refused by the ACLs");
            return refuse(
                StatusCode::FORBIDDEN,
                format!("{principal} may not {} {} {name}; grant it with kafka-acls --add --allow-principal {principal} --operation {}", op.name(), rt.name(), op.name()),
                false,
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_permissions_kafkas_tools_need() {
        use Operation as Op;
        use ResourceType as Rt;
        type Case<'a> = (Method, &'a str, bool, Option<(Op, Rt, &'a str)>);
        let cases: &[Case<'_>] = &[
            (Method::DELETE, "/topics/orders", false, Some((Op::Delete, Rt::Topic, "orders"))),
            (Method::GET, "/topics/orders", false, Some((Op::Describe, Rt::Topic, "orders"))),
            (Method::POST, "/topics", false, Some((Op::Create, Rt::Cluster, CLUSTER_NAME))),
            (Method::PATCH, "/topics/orders/configs", false, Some((Op::AlterConfigs, Rt::Topic, "orders"))),
            (Method::PATCH, "/brokers/1/configs", false, Some((Op::AlterConfigs, Rt::Cluster, CLUSTER_NAME))),
            (Method::POST, "/groups/g/offsets/reset", false, Some((Op::Read, Rt::Group, "g"))),
            (Method::DELETE, "/groups/g", false, Some((Op::Delete, Rt::Group, "g"))),
            (Method::PUT, "/users/alice/scram/SCRAM-SHA-512", false, Some((Op::Alter, Rt::Cluster, CLUSTER_NAME))),
            (Method::GET, "/users", false, Some((Op::Describe, Rt::Cluster, CLUSTER_NAME))),
            (Method::GET, "/console/live/orders", false, Some((Op::Read, Rt::Topic, "orders"))),
            (Method::POST, "/rest/topics/orders", false, Some((Op::Write, Rt::Topic, "orders"))),
            (Method::POST, "/topics/orders", true, Some((Op::Write, Rt::Topic, "orders"))),
            (Method::POST, "/v3/clusters/c/topics/orders/records", true, Some((Op::Write, Rt::Topic, "orders"))),
            (Method::GET, "/consumers/g/instances/i/records", true, Some((Op::Read, Rt::Group, "g"))),
            (Method::GET, "/", false, None),
            (Method::GET, "/app.js", false, None),
        ];
        for (method, path, rest, want) in cases {
            let got = required(method, path, *rest);
            let want = want.map(|(op, rt, name)| vec![(op, rt, name.to_string())]);
            assert_eq!(got, want, "{method} {path}");
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!("Basic".parse::<Mode>(), Ok(Mode::Basic));
        assert!("kerberos".parse::<Mode>().is_err());
    }
}
