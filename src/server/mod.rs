//! `vigil serve`: opens the index and the camera registry, starts the camera runtime
//! ([`runtime`]: per camera a capture supervisor or, for WHIP cameras, a segment writer
//! waiting for publishers, and a live hub, following the registry as cameras are added,
//! changed and removed), then the HTTP server; re-reads the config file's cameras on SIGHUP,
//! and shuts all of it down on SIGTERM/SIGINT.
//!
//! Listeners: `[server] listen` always serves the application over plain HTTP. With
//! `[tls] mode` other than `off`, the same application is also served over HTTPS on
//! `https_listen` (certificates from [`crate::tls`], hot-swapped through its resolver), and
//! `http_listen` answers ACME HTTP-01 challenges and redirects everything else to HTTPS.
//! Both application listeners sit behind the same access control ([`crate::auth`]).

pub mod pictures;
pub mod runtime;

use crate::capture::supervisor::ChildCommand;
use crate::config::{Config, TlsMode};
use crate::http::{AppState, app};
use crate::ingest::whip::Ingest;
use crate::live::whep::{Live, LiveConfig};
use crate::webrtc::net::UdpPorts;
use crate::webrtc::peer::NetConfig;
use anyhow::Context;
use runtime::{Runtime, RuntimeParts};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use webrtc::peer_connection::RTCIceServer;

/// Everything `serve` needs.
pub struct ServeOptions {
    /// The loaded configuration (CLI overrides applied).
    pub config: Config,
    /// The config file (re-read on SIGHUP for camera changes).
    pub config_path: Option<PathBuf>,
}

/// Runs the server until a termination signal.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    crate::tls::install_default_provider();
    let cfg = opts.config;
    let data_dir = cfg.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
        .ok()
        .and_then(|b| b.install_recorder().ok());

    // Access control first: with authentication required and nobody able to log in, refuse
    // to start before anything runs.
    let auth = crate::auth::Auth::from_config(&cfg, opts.config_path.as_deref(), &data_dir)
        .context("access control ([auth], docs/auth.md)")?;
    if auth.required() {
        tokio::spawn(crate::auth::session::persist_task(auth.sessions.clone(), data_dir.clone()));
    }

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    // `vigil user ...` / `vigil token ...` apply without a restart.
    tokio::spawn(auth.clone().watch_users_file(shutdown_rx.clone()));
    let exe = std::env::current_exe().context("locating the vigil executable")?;
    let child = ChildCommand { exe, data_dir: data_dir.clone() };
    let bus = crate::events::Bus::new();

    // The index, then the camera registry in it (the file's cameras applied), then history:
    // recover what a crash left open *before* any capture starts writing; then index segment
    // events as they come.
    let index = crate::history::index::Index::open(cfg.server.database_url.as_deref(), &data_dir)
        .await
        .context("opening the recordings index")?;
    let registry = crate::registry::Registry::open(
        crate::registry::store::Store::new(index.pool().clone()),
        bus.clone(),
        &cfg.cameras,
        opts.config_path.clone(),
    )
    .await
    .context("loading the camera registry")?;
    let history = Arc::new(
        crate::history::service::History::new(
            index,
            data_dir.clone(),
            Vec::new(),
            crate::segment::lease::Leases::new(),
            cfg.server.min_free_bytes,
        )
        .following(registry.watch()),
    );
    let recovered = history.recover_all().await.context("recovering recordings")?;
    tracing::info!(?recovered, cameras = registry.snapshot().len(), "index ready");
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let history_task = tokio::spawn(history.as_ref().clone().run(events_rx));
    let (activity_tx, activity_rx) = tokio::sync::mpsc::unbounded_channel();
    let activity_task = tokio::spawn(crate::history::activity::run(history.index().clone(), bus.clone(), activity_rx));

    let listen = cfg.server.listen;
    let udp_ip = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ip => ip,
    };
    let net = NetConfig {
        ice_servers: cfg
            .server
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect(),
    };
    let udp_ports = cfg.server.udp_port_range().map_err(anyhow::Error::msg)?;
    let public_ips = cfg
        .server
        .public_ips
        .iter()
        .map(|ip| ip.parse::<IpAddr>().with_context(|| format!("public_ips: {ip:?} is not an IP address")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ports = UdpPorts::new(udp_ip, udp_ports, cfg.server.webrtc_tcp_port).with_context(|| {
        format!(
            "binding webrtc_udp_ports {:?} (webrtc_tcp_port {}) on {udp_ip}",
            cfg.server.webrtc_udp_ports, cfg.server.webrtc_tcp_port
        )
    })?;
    let ports = Arc::new(ports.advertising(public_ips));
    if let Some(mux) = ports.shared() {
        tracing::info!(udp = %mux.local_addr(), ice_tcp = ?mux.tcp_addr(), "every WebRTC session on one port");
    }
    let live = Live::new(
        Vec::new(),
        Vec::new(),
        LiveConfig {
            ports,
            net: net.clone(),
            max_per_camera: cfg.server.max_viewers_per_camera,
            max_total: cfg.server.max_viewers,
            max_per_client: cfg.server.max_sessions_per_client,
        },
    );
    let ingest = Ingest::new(Vec::new(), Vec::new(), live.ports(), net, Some(auth.clone()));
    // Cameras run as the registry says, from now until shutdown.
    let runtime = Runtime::new(RuntimeParts {
        data_dir: data_dir.clone(),
        child,
        segment_events: Some(events_tx),
        activity: Some(activity_tx),
        shutdown: shutdown_rx.clone(),
        live: live.clone(),
        ingest: ingest.clone(),
        history: history.clone(),
        bus: bus.clone(),
    });
    let runtime_task = tokio::spawn(runtime.clone().run(registry.watch()));
    tokio::spawn(reload_on_sighup(registry.clone(), opts.config_path.clone(), shutdown_rx.clone()));
    let signaling_cfg = signaling::Config {
        whep: true,
        whip: true,
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
    let tls = match cfg.tls.mode {
        TlsMode::Off => None,
        _ => Some(Arc::new(crate::tls::Tls::new(&cfg.tls).context("TLS")?)),
    };
    let tls_status = match &tls {
        Some(t) => t.status.clone(),
        None => Arc::new(crate::tls::TlsStatus::new(&cfg.tls)),
    };
    let limits = crate::limits::HttpLimits::from_config(&cfg.server).map_err(anyhow::Error::msg)?;
    let routes = app(
        AppState { runtime: runtime.clone(), live, ingest: ingest.clone(), metrics, tls: tls_status.clone() },
        signaling_cfg,
    )
    .merge(crate::registry::api::router(registry.clone(), runtime.clone()))
    .merge(crate::health::router(Arc::new(crate::health::Health {
        registry: registry.clone(),
        runtime: runtime.clone(),
        history: history.clone(),
        tls: tls_status.clone(),
        min_free_bytes: cfg.server.min_free_bytes,
    })))
    .merge(crate::events::sse::router(bus.clone()))
    .merge(crate::history::api::router(history.clone()))
    .merge(crate::history::activity_api::router(history.clone()))
    .merge(crate::auth::router(auth.clone()));
    // One guard per listener: it sets the cookie flags for its transport. Body limits come
    // first, so no handler (login included) reads an unbounded body.
    let router = crate::limits::guard_bodies(crate::auth::protect(routes.clone(), auth.clone(), false), limits)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let https_router = crate::limits::guard_bodies(crate::auth::protect(routes, auth.clone(), true), limits)
        .layer(tower_http::trace::TraceLayer::new_for_http());

    if !listen.ip().is_loopback() {
        if auth.required() {
            tracing::warn!(
                %listen,
                "serving plain HTTP on a non-loopback address: passwords and session cookies cross the \
                 network unencrypted (keep [server] listen on loopback and set [tls] mode for HTTPS)"
            );
        } else {
            tracing::warn!(
                %listen,
                "listening on a non-loopback address over plain HTTP with no authentication \
                 ([auth] required = false)"
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(url = %format!("http://{}", listener.local_addr().unwrap_or(listen)), cameras = registry.snapshot().len(), "vigil serving");

    // Bind every listener before the certificate manager starts: its first ACME order needs
    // the challenge listener up.
    let tls_servers = match &tls {
        None => None,
        Some(tls) => {
            let https = bind_std(cfg.tls.https_listen).await?;
            let http = tokio::net::TcpListener::bind(cfg.tls.http_listen)
                .await
                .with_context(|| format!("binding [tls] http_listen {}", cfg.tls.http_listen))?;
            let https_addr = https.local_addr().unwrap_or(cfg.tls.https_listen);
            tracing::info!(
                https = %format!("https://{https_addr}"),
                http = %http.local_addr().unwrap_or(cfg.tls.http_listen),
                mode = cfg.tls.mode.as_str(),
                domains = ?cfg.tls.domains,
                "serving HTTPS"
            );
            let server_config = crate::tls::server_config(tls.resolver.clone()).context("TLS server configuration")?;
            let handle = axum_server::Handle::new();
            let mut https_server = axum_server::from_tcp_rustls(
                https,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config)),
            )
            .context("HTTPS listener")?
            .map(|tls| crate::limits::DeadlineAcceptor::new(tls, limits.header_timeout))
            .handle(handle.clone());
            crate::limits::configure_auto(https_server.http_builder(), limits);
            let https_server = https_server.serve(https_router.into_make_service_with_connect_info::<SocketAddr>());
            let redirect = crate::tls::http01::router(tls.challenges.clone(), https_addr.port());
            let redirect =
                crate::limits::guard_bodies(redirect, limits).layer(tower_http::trace::TraceLayer::new_for_http());
            let http_server = crate::limits::serve(http, redirect, limits, shutdown_requested(shutdown_rx.clone()));
            let manager = tls.spawn(shutdown_rx.clone());
            let mut rx = shutdown_rx.clone();
            tokio::spawn(async move {
                let _ = rx.wait_for(|v| *v).await;
                handle.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            Some(async move {
                let r = tokio::try_join!(async { https_server.await.context("HTTPS server") }, async {
                    http_server.await.context("HTTP (ACME challenge / redirect) server")
                },);
                manager.abort();
                r.map(|_| ())
            })
        }
    };

    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    let plain = crate::limits::serve(listener, router, limits, shutdown_requested(shutdown_rx.clone()));
    tokio::try_join!(async { plain.await.context("HTTP server") }, async {
        match tls_servers {
            Some(f) => f.await,
            None => Ok(()),
        }
    })?;
    // Publishers end and WHIP writers close their segments.
    ingest.shutdown().await;
    // The runtime stops every camera: capture children get their SIGTERM grace to close
    // segments cleanly.
    if tokio::time::timeout(Duration::from_secs(12), runtime_task).await.is_err() {
        tracing::warn!("cameras did not all stop in time");
    }
    // Then let the index take in their last segment events: the channel closes when the
    // runtime and the supervisors (holding its senders) are done.
    runtime.close_segment_events();
    if tokio::time::timeout(Duration::from_secs(5), history_task).await.is_err() {
        tracing::warn!("index did not finish in time; recovery will complete it at the next start");
    }
    if tokio::time::timeout(Duration::from_secs(2), activity_task).await.is_err() {
        tracing::warn!("activity did not finish in time; open ranges close at the next start");
    }
    Ok(())
}

/// Re-reads the config file's cameras on SIGHUP (`systemctl reload vigil`) and hands them to
/// the registry. A file that no longer loads is refused with a log line; nothing changes.
/// Only `[[cameras]]` apply this way; other sections need a restart.
async fn reload_on_sighup(
    registry: Arc<crate::registry::Registry>,
    path: Option<PathBuf>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; camera changes in the config file need a restart");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let Some(p) = &path else {
            tracing::info!("SIGHUP: no config file to re-read");
            continue;
        };
        match Config::load(Some(p)) {
            Ok(cfg) => match registry.reload_file(&cfg.cameras).await {
                Ok(()) => tracing::info!(file = %p.display(), cameras = cfg.cameras.len(), "SIGHUP: cameras re-read"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: applying the cameras failed; nothing changed"),
            },
            Err(e) => tracing::error!(error = %e, "SIGHUP: the config file does not load; nothing changed"),
        }
    }
}

/// Resolves once shutdown was requested.
async fn shutdown_requested(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Binds `addr` for axum-server (a non-blocking std listener).
async fn bind_std(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding [tls] https_listen {addr}"))?;
    l.into_std().with_context(|| format!("[tls] https_listen {addr}"))
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
