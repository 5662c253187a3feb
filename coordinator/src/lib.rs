//! Tributary coordinator: the controller role (elected through ZooKeeper, fenced by
//! `/controller_epoch`) and the HTTP admin API. See [`controller`] and [`admin`].

pub mod admin;
pub mod brokers;
pub mod config;
pub mod console;
pub mod controller;
pub mod rest;
pub mod view;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::config::CoordinatorConfig;
use crate::controller::{ControllerConfig, Status};

/// Runs the controller and the admin API on `http` until `shutdown`; `zookeeper` is the
/// ZooKeeper login and `zookeeper.set.acl`.
///
/// # Errors
/// When the HTTP server fails.
pub async fn run(
    config: CoordinatorConfig,
    zookeeper: tributary_common::zk::ZkSecurity,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = Arc::new(
        brokers::BrokerClients::new(config.client_config.as_deref(), config.client_listener_name.as_deref())
            .map_err(|e| anyhow::anyhow!("invalid client.config: {e}"))?,
    );
    tracing::info!(protocol = clients.protocol(), listener = config.client_listener_name.as_deref(), "connections to brokers (group lag, REST API)");
    let slot = Arc::new(RwLock::new(None));
    let (status_tx, status_rx) = watch::channel(Status::default());
    let controller = tokio::spawn(controller::run(
        ControllerConfig {
            controller_id: config.controller_id,
            zookeeper_connect: config.zookeeper_connect.clone(),
            zookeeper,
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
    let rest_listener = match config.rest_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} for the REST API (rest.listen): {e}; is a REST Proxy already using it?"
            )
        })?),
        None => None,
    };
    let view = view::ClusterView::new(slot.clone());
    let rest = rest::RestState::new(
        view.clone(),
        rest::RestConfig {
            instance_timeout: Duration::from_millis(config.consumer_instance_timeout_ms),
            max_instances: config.rest_consumer_instances_max,
            max_request_bytes: config.rest_max_request_bytes,
            clients: clients.clone(),
        },
        shutdown.clone(),
    );
    let auth = http_auth(&config, slot.clone())?;
    let app = admin::router(AdminState { zk: slot, view, status: status_rx, controller_id: config.controller_id, clients })
        .nest("/rest", rest::router(rest.clone()))
        .merge(console::router(console::ConsoleState::new(rest.clone())))
        .layer(axum::middleware::from_fn_with_state(auth.clone(), admin::auth::gate_admin));
    tracing::info!(http = %http.local_addr()?, "admin API listening (the REST API under /rest)");
    let rest_server = rest_listener.map(|listener| {
        let stop = shutdown.clone();
        let app = rest::router(rest).layer(axum::middleware::from_fn_with_state(auth, admin::auth::gate_rest));
        tokio::spawn(async move {
            tracing::info!(address = ?listener.local_addr().ok(), "REST API listening");
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "the REST API listener failed; restart the coordinator");
            }
        })
    });
    let stop = shutdown.clone();
    axum::serve(http, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    if let Some(server) = rest_server {
        let _ = server.await;
    }
    let _ = controller.await;
    tracing::info!("coordinator shut down");
    Ok(())
}

/// The HTTP gatekeeper from `http.auth`, its token file and the authorizer settings.
///
/// # Errors
/// An unreadable or empty token file, a token mode without one, or an unknown authorizer.
fn http_auth(config: &CoordinatorConfig, zk: controller::ZkSlot) -> anyhow::Result<admin::auth::HttpAuth> {
    use admin::auth::Mode;
    let token = match (&config.http_auth, &config.http_auth_token_file) {
        (Mode::Token, None) => anyhow::bail!("http.auth=token needs http.auth.token.file (a file holding the token)"),
        (Mode::Token, Some(path)) => {
            let t = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read http.auth.token.file {}: {e}", path.display()))?;
            if t.trim().len() < 16 {
                anyhow::bail!("the token in {} is shorter than 16 characters; use a long random one (openssl rand -hex 32)", path.display());
            }
            Some(t)
        }
        _ => None,
    };
    let authorizer = tributary_common::acl::AuthorizerConfig::from_settings(
        config.authorizer_class_name.as_deref(),
        config.super_users.as_deref(),
        config.allow_everyone_if_no_acl_found,
    )
    .map_err(|e| anyhow::anyhow!("authorizer.class.name: {e}"))?;
    if authorizer.is_some() && config.http_auth == Mode::None {
        tracing::warn!("authorizer.class.name is set but http.auth=none: every HTTP caller is User:ANONYMOUS; set http.auth=basic so callers are known");
    }
    tracing::info!(http_auth = %config.http_auth, acls = authorizer.is_some(), "HTTP endpoints' authentication");
    Ok(admin::auth::HttpAuth::new(config.http_auth, token, authorizer, zk))
}
