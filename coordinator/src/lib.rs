//! Tributary coordinator: the controller role (elected through ZooKeeper, fenced by
//! `/controller_epoch`) and the HTTP admin API. See [`controller`] and [`admin`].

pub mod admin;
pub mod config;
pub mod controller;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::config::CoordinatorConfig;
use crate::controller::{ControllerConfig, Status};

/// Runs the controller and the admin API on `http` until `shutdown`.
///
/// # Errors
/// When the HTTP server fails.
pub async fn run(config: CoordinatorConfig, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let slot = Arc::new(RwLock::new(None));
    let (status_tx, status_rx) = watch::channel(Status::default());
    let controller = tokio::spawn(controller::run(
        ControllerConfig {
            controller_id: config.controller_id,
            zookeeper_connect: config.zookeeper_connect.clone(),
            session_timeout: Duration::from_millis(config.zookeeper_session_timeout_ms),
            unclean_leader_election: config.unclean_leader_election_enable,
            auto_leader_rebalance: config.auto_leader_rebalance_enable,
            leader_imbalance_check_interval: Duration::from_secs(config.leader_imbalance_check_interval_seconds),
            leader_imbalance_per_broker_percentage: config.leader_imbalance_per_broker_percentage,
        },
        slot.clone(),
        status_tx,
        shutdown.clone(),
    ));
    let app = admin::router(AdminState { zk: slot, status: status_rx, controller_id: config.controller_id });
    tracing::info!(http = %http.local_addr()?, "admin API listening");
    let stop = shutdown.clone();
    axum::serve(http, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    let _ = controller.await;
    tracing::info!("coordinator shut down");
    Ok(())
}
