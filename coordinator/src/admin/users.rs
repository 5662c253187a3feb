//! SCRAM users over HTTP, stored as Kafka stores them (`/config/users/<user>`, the
//! mechanism's name as the key, `salt=...,stored_key=...,server_key=...,iterations=N`)
//! through the one config write, which announces the change so every broker takes it up.
//! Passwords are salted and hashed here and never stored or logged.
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | /users | |
//! | PUT | /users/{name}/scram/{mechanism} | `{"password": "...", "iterations": 8192}` (iterations optional, 4096) |
//! | DELETE | /users/{name}/scram/{mechanism} | |

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tributary_common::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use tributary_common::zk::{read_entity_config, update_entity_config, ConfigUpdateError};
use tributary_common::znode::{self, ConfigEntity};

use super::{AdminState, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPassword {
    password: String,
    #[serde(default)]
    iterations: Option<u32>,
}

/// The mechanisms and iteration counts of a user's stored config.
fn scram_view(config: &BTreeMap<String, String>) -> Vec<Value> {
    tributary_common::scram::stored_credentials(config)
        .into_iter()
        .map(|(m, c)| json!({ "mechanism": m.name(), "iterations": c.iterations }))
        .collect()
}

fn mechanism(name: &str) -> Result<Mechanism, ApiError> {
    Mechanism::from_name(&name.to_ascii_uppercase())
        .ok_or_else(|| ApiError::BadRequest(format!("{name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512")))
}

/// Checks a password change: a password, iterations within Kafka's bounds.
fn check(body: &[u8]) -> Result<(String, u32), ApiError> {
    // serde's messages name the field and position, never the value.
    let set: SetPassword = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("request body must be JSON like {{\"password\": \"...\", \"iterations\": 8192}}: {e}"))
    })?;
    if set.password.is_empty() {
        return Err(ApiError::BadRequest("the password must not be empty".into()));
    }
    let iterations = set.iterations.unwrap_or(MIN_ITERATIONS);
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ApiError::BadRequest(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, as Kafka requires"
        )));
    }
    Ok((set.password, iterations))
}

async fn update(
    state: &AdminState,
    user: &str,
    change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let client = state.client()?;
    update_entity_config(&client, &ConfigEntity::User(Some(user.to_string())), false, change).await.map_err(|e| match e {
        ConfigUpdateError::Refused(e) => e,
        ConfigUpdateError::Zk(e) => ApiError::Unavailable(e.to_string()),
        ConfigUpdateError::KeptChanging(path) => {
            ApiError::Conflict(format!("{path} kept changing while this change was applied; retry"))
        }
    })
}

pub(super) async fn list(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let client = state.client()?;
    let names = match client.list_children(znode::CONFIG_USERS).await {
        Ok(n) => n,
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let mut users = Vec::new();
    for name in names {
        let Some(user) = znode::desanitize(&name).filter(|u| u != znode::DEFAULT_ENTITY) else { continue };
        let entity = ConfigEntity::User(Some(user.clone()));
        let (config, _) = read_entity_config(&client, &entity).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let scram = scram_view(&config);
        if !scram.is_empty() {
            users.push(json!({ "user": user, "scram": scram }));
        }
    }
    Ok(Json(json!({ "users": users })))
}

pub(super) async fn set(
    State(state): State<AdminState>,
    Path((user, mechanism_name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m = mechanism(&mechanism_name)?;
    if user.is_empty() {
        return Err(ApiError::BadRequest("the user name must not be empty".into()));
    }
    let (password, iterations) = check(&body)?;
    // PBKDF2 is deliberately slow: off the async workers.
    let value = tokio::task::spawn_blocking(move || {
        Credential::from_password(m, &password, tributary_common::scram::random_salt(), iterations).to_config_value()
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("hashing the password failed: {e}")))?;
    let config = update(&state, &user, |current| {
        let mut next = current.clone();
        next.insert(m.name().to_string(), value.clone());
        Ok(next)
    })
    .await?;
    tracing::info!(user, mechanism = %m, iterations, "SCRAM credential set through the admin API; brokers take it up from /config/changes");
    Ok(Json(json!({ "user": user, "scram": scram_view(&config) })))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((user, mechanism_name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = mechanism(&mechanism_name)?;
    let config = update(&state, &user, |current| {
        let mut next = current.clone();
        next.remove(m.name())
            .ok_or_else(|| ApiError::NotFound(format!("user {user:?} has no {m} credential")))?;
        Ok(next)
    })
    .await?;
    tracing::info!(user, mechanism = %m, "SCRAM credential deleted through the admin API");
    Ok(Json(json!({ "user": user, "scram": scram_view(&config) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_bodies_are_checked_without_echoing_them() {
        assert_eq!(check(br#"{"password":"pw"}"#).unwrap(), ("pw".to_string(), 4096));
        assert_eq!(check(br#"{"password":"pw","iterations":8192}"#).unwrap().1, 8192);
        for (body, want) in [
            (&br#"{"password":""}"#[..], "must not be empty"),
            (br#"{"password":"pw","iterations":100}"#, "between 4096 and 16384"),
            (br#"{"password":"pw","iterations":99999}"#, "between"),
            (br#"{"pass":"hunter2"}"#, "JSON like"),
            (b"hunter2", "JSON like"),
        ] {
            let e = check(body).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains("hunter2"), "{e}");
        }
        assert!(mechanism("scram-sha-512").is_ok());
        assert!(mechanism("PLAIN").is_err());
    }
}
