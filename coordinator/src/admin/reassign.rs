//! Partition reassignment over HTTP: what is moving, start a move, cancel one. Requests go
//! to the controller through `/admin/reassign_partitions`, the same request
//! `kafka-reassign-partitions` and the brokers' AlterPartitionReassignments write.
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | /reassignments | |
//! | POST | /reassignments | `{"partitions": [{"topic": "t", "partition": 0, "replicas": [2, 3]}]}` |
//! | DELETE | /reassignments/{topic}/{partition} | |

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_common::ids::BrokerId;
use tributary_common::snapshot::ClusterSnapshot;
use tributary_common::zk::request_reassignment;
use tributary_common::znode::ReassignedPartition;

use super::{AdminState, ApiError};

#[derive(Serialize)]
struct Ongoing {
    topic: String,
    partition: i32,
    replicas: Vec<BrokerId>,
    adding: Vec<BrokerId>,
    removing: Vec<BrokerId>,
}

fn ongoing(s: &ClusterSnapshot) -> Vec<Ongoing> {
    let mut out = Vec::new();
    for (topic, t) in &s.topics {
        for (key, replicas) in &t.assignment.partitions {
            let adding = t.assignment.adding_replicas.get(key).cloned().unwrap_or_default();
            let removing = t.assignment.removing_replicas.get(key).cloned().unwrap_or_default();
            if adding.is_empty() && removing.is_empty() {
                continue;
            }
            let Ok(partition) = key.parse() else { continue };
            out.push(Ongoing { topic: topic.clone(), partition, replicas: replicas.clone(), adding, removing });
        }
    }
    out
}

pub(super) async fn list(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, s) = state.snapshot().await?;
    Ok(Json(json!({ "reassignments": ongoing(&s) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    topic: String,
    partition: i32,
    replicas: Vec<BrokerId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Moves {
    partitions: Vec<Move>,
}

/// Checks one move against the cluster.
fn check(s: &ClusterSnapshot, m: &Move) -> Result<(), ApiError> {
    let p = s
        .topics
        .get(&m.topic)
        .filter(|_| !s.pending_deletions.contains(&m.topic))
        .and_then(|t| t.partitions.get(&m.partition))
        .ok_or_else(|| ApiError::NotFound(format!("partition {}-{} does not exist", m.topic, m.partition)))?;
    let distinct: BTreeSet<_> = m.replicas.iter().collect();
    if m.replicas.is_empty() || distinct.len() != m.replicas.len() {
        return Err(ApiError::BadRequest(format!(
            "replicas {:?} for {}-{}: give each broker once, at least one",
            m.replicas, m.topic, m.partition
        )));
    }
    if let Some(dead) = m.replicas.iter().find(|b| !s.brokers.contains_key(b) && !p.replicas.contains(b)) {
        return Err(ApiError::BadRequest(format!(
            "broker {dead} (for {}-{}) is not live; start it or choose live brokers",
            m.topic, m.partition
        )));
    }
    Ok(())
}

async fn submit(state: &AdminState, partitions: Vec<ReassignedPartition>) -> Result<(), ApiError> {
    let client = state.client()?;
    request_reassignment(&client, partitions, Duration::from_secs(10)).await.map_err(|e| match e {
        zookeeper_client::Error::NodeExists => ApiError::Conflict(
            "an earlier reassignment request is still waiting in /admin/reassign_partitions; is the active controller running?".into(),
        ),
        other => ApiError::Unavailable(format!("writing /admin/reassign_partitions: {other}")),
    })
}

pub(super) async fn start(State(state): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let moves: Moves = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body must be JSON like {{\"partitions\": [{{\"topic\": \"t\", \"partition\": 0, \"replicas\": [2, 3]}}]}}: {e}"
        ))
    })?;
    if moves.partitions.is_empty() {
        return Err(ApiError::BadRequest("name at least one partition to move".into()));
    }
    let (_, s) = state.snapshot().await?;
    for m in &moves.partitions {
        check(&s, m)?;
    }
    let partitions: Vec<ReassignedPartition> = moves
        .partitions
        .into_iter()
        .map(|m| ReassignedPartition {
            topic: m.topic,
            partition: m.partition,
            replicas: m.replicas,
            log_dirs: Vec::new(),
        })
        .collect();
    tracing::info!(partitions = ?partitions.iter().map(|p| (&p.topic, p.partition, &p.replicas)).collect::<Vec<_>>(), "partition reassignment requested through the admin API");
    submit(&state, partitions).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "requested; GET /reassignments shows progress" })))
        .into_response())
}

pub(super) async fn cancel(
    State(state): State<AdminState>,
    Path((topic, partition)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let partition: i32 =
        partition.parse().map_err(|_| ApiError::BadRequest(format!("partition {partition:?} is not a number")))?;
    let (_, s) = state.snapshot().await?;
    if !ongoing(&s).iter().any(|o| o.topic == topic && o.partition == partition) {
        return Err(ApiError::NotFound(format!("no reassignment of {topic}-{partition} is in progress")));
    }
    submit(
        &state,
        vec![ReassignedPartition { topic: topic.clone(), partition, replicas: Vec::new(), log_dirs: Vec::new() }],
    )
    .await?;
    tracing::info!(topic, partition, "reassignment cancelled through the admin API");
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "cancel requested" }))).into_response())
}
