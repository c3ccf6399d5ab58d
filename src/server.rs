//! `vigil serve`: starts a capture supervisor and a live hub per camera, then the HTTP
//! server, and shuts all of it down on SIGTERM/SIGINT.

use crate::capture::status::CameraStatus;
use crate::capture::supervisor::{ChildCommand, supervise};
use crate::config::Config;
use crate::http::{AppState, app};
use crate::live::hub::Hub;
use crate::live::session::NetConfig;
use crate::live::whep::{Live, LiveConfig};
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use webrtc::peer_connection::RTCIceServer;

/// Everything `serve` needs.
pub struct ServeOptions {
    /// The loaded configuration (CLI overrides applied).
    pub config: Config,
    /// The config file, passed on to capture children.
    pub config_path: Option<PathBuf>,
}

/// Runs the server until a termination signal.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let cfg = opts.config;
    let data_dir = cfg.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
        .ok()
        .and_then(|b| b.install_recorder().ok());

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let exe = std::env::current_exe().context("locating the vigil executable")?;
    let child = ChildCommand { exe, config: opts.config_path.clone(), data_dir: data_dir.clone() };

    let mut hubs = Vec::new();
    let mut cameras = Vec::new();
    let mut tasks = Vec::new();
    for cam in &cfg.cameras {
        let status = Arc::new(CameraStatus::default());
        tasks.push(tokio::spawn(supervise(cam.name.clone(), child.clone(), status.clone(), shutdown_rx.clone())));
        let hub = Hub::new(&cam.name);
        tokio::spawn(hub.clone().run(data_dir.join(&cam.name)));
        hubs.push(hub);
        cameras.push((cam.name.clone(), status));
    }

    let listen = cfg.server.listen;
    let udp_ip = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ip => ip,
    };
    let live = Live::new(
        hubs,
        LiveConfig {
            udp_ip,
            udp_ports: cfg.server.udp_port_range().map_err(anyhow::Error::msg)?,
            net: NetConfig {
                ice_servers: cfg
                    .server
                    .ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone().unwrap_or_default(),
                        credential: s.credential.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect(),
                public_ips: cfg.server.public_ips.clone(),
            },
            max_per_camera: cfg.server.max_viewers_per_camera,
            max_total: cfg.server.max_viewers,
        },
    );
    let signaling_cfg = signaling::Config {
        whep: true,
        whip: false,
        ice_servers: cfg
            .server
            .ice_servers
            .iter()
            .map(|s| signaling::IceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
    };
    let router = app(AppState { cameras: Arc::new(cameras), live, metrics }, signaling_cfg)
        .layer(tower_http::trace::TraceLayer::new_for_http());

    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "listening on a non-loopback address over plain HTTP with no authentication");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(url = %format!("http://{}", listener.local_addr().unwrap_or(listen)), cameras = cfg.cameras.len(), "vigil serving");
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = shutdown_tx.send(true);
        })
        .await
        .context("HTTP server")?;
    // Give capture children their SIGTERM grace to close segments cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(5), futures_util::future::join_all(tasks)).await;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
