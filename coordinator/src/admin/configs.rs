//! Dynamic configs over HTTP: a topic's overrides and the dynamic broker settings (per
//! broker and the cluster-wide default), read from and written to ZooKeeper through the
//! same write the brokers' AlterConfigs uses (`tributary_common::zk::write_entity_config`),
//! so brokers take the change up from their watches without a restart.
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | /topics/{name}/configs | |
//! | PATCH | /topics/{name}/configs | `{"set": {"retention.ms": "60000"}, "delete": ["cleanup.policy"]}` |
//! | GET | /brokers/{id}/configs, /brokers/default/configs | |
//! | PATCH | /brokers/{id}/configs, /brokers/default/configs | as for topics |

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tributary_common::dynamic::{check_overrides, DynamicError, DYNAMIC_BROKER_KEYS};
use tributary_common::topic::{topic_config_def, validate_config};
use tributary_common::zk::{read_entity_config, update_entity_config, ConfigUpdateError};
use tributary_common::znode::ConfigEntity;

use super::{AdminState, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    delete: Vec<String>,
}

fn parse_patch(body: &[u8]) -> Result<ConfigPatch, ApiError> {
    let patch: ConfigPatch = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body must be JSON like {{\"set\": {{\"retention.ms\": \"60000\"}}, \"delete\": [\"cleanup.policy\"]}} with string values: {e}"
        ))
    })?;
    if let Some(both) = patch.delete.iter().find(|k| patch.set.contains_key(*k)) {
        return Err(ApiError::BadRequest(format!("{both} is both set and deleted; give it once")));
    }
    Ok(patch)
}

fn broker_entity(id: &str) -> Result<ConfigEntity, ApiError> {
    if id == "default" {
        return Ok(ConfigEntity::Broker(None));
    }
    id.parse::<i32>().ok().filter(|i| *i >= 0).map(|i| ConfigEntity::Broker(Some(i))).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "broker {id:?}: give a broker id (0 or more) or \"default\" for the cluster-wide settings"
        ))
    })
}

fn view(entity: &ConfigEntity, configs: BTreeMap<String, String>) -> Json<Value> {
    Json(json!({ "entity": entity.entity_path(), "znode": entity.path(), "configs": configs }))
}

/// Applies the patch to the entity's stored config, checks the result and writes it.
async fn patch_entity(
    state: &AdminState,
    entity: ConfigEntity,
    patch: ConfigPatch,
    check: impl Fn(&BTreeMap<String, String>) -> Result<(), ApiError>,
) -> Result<Json<Value>, ApiError> {
    let client = state.client()?;
    let configs = update_entity_config(&client, &entity, false, |current| {
        let mut configs = current.clone();
        configs.extend(patch.set.clone());
        for k in &patch.delete {
            configs.remove(k);
        }
        check(&configs)?;
        Ok(configs)
    })
    .await
    .map_err(|e| match e {
        ConfigUpdateError::Refused(e) => e,
        ConfigUpdateError::Zk(e) => ApiError::Unavailable(e.to_string()),
        ConfigUpdateError::KeptChanging(path) => {
            ApiError::Conflict(format!("{path} kept changing while this change was applied; retry"))
        }
    })?;
    tracing::info!(entity = entity.entity_path(), set = ?patch.set, delete = ?patch.delete, "config changed through the admin API; brokers apply it from their watch");
    Ok(view(&entity, configs))
}

pub(super) async fn get_topic(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, s) = state.snapshot().await?;
    if !s.topics.contains_key(&name) {
        return Err(ApiError::NotFound(format!("topic {name:?} does not exist")));
    }
    let entity = ConfigEntity::Topic(name);
    let (configs, _) = read_entity_config(&client, &entity).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(view(&entity, configs))
}

pub(super) async fn patch_topic(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch = parse_patch(&body)?;
    let (_, s) = state.snapshot().await?;
    if !s.topics.contains_key(&name) || s.pending_deletions.contains(&name) {
        return Err(ApiError::NotFound(format!("topic {name:?} does not exist")));
    }
    patch_entity(&state, ConfigEntity::Topic(name), patch, |configs| {
        if let Some(unknown) = configs.keys().find(|k| topic_config_def(k).is_none()) {
            return Err(ApiError::BadRequest(format!("unknown topic config {unknown:?}")));
        }
        validate_config(configs).map_err(ApiError::BadRequest)
    })
    .await
}

pub(super) async fn get_broker(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entity = broker_entity(&id)?;
    let client = state.client()?;
    let (configs, _) = read_entity_config(&client, &entity).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(view(&entity, configs))
}

pub(super) async fn patch_broker(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let entity = broker_entity(&id)?;
    let patch = parse_patch(&body)?;
    patch_entity(&state, entity, patch, |configs| {
        // The coordinator does not know the broker's static settings: a key that is not
        // dynamic is refused in one sentence whichever it is.
        check_overrides(configs, |_| false).map_err(|e| match e {
            DynamicError::Unknown(keys) => {
                let dynamic: Vec<&str> = DYNAMIC_BROKER_KEYS.iter().map(|k| k.key).collect();
                ApiError::BadRequest(format!(
                    "not dynamic broker configs (static or unknown): [{}]; the dynamic ones are {}",
                    keys.join(", "),
                    dynamic.join(", ")
                ))
            }
            other => ApiError::BadRequest(other.to_string()),
        })
    })
    .await
}
