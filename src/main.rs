//! The `vigil` command line: `serve` runs the server, `capture` is the per-camera child
//! process the server supervises (it can also be run by hand to test a source).
//! `synth-archive` (hidden) builds a synthetic archive for benchmarks (BENCHMARKS.md).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use vigil::config::Config;

#[derive(Parser)]
#[command(name = "vigil", version, about = "Camera server: capture, record, live WebRTC (WHEP), history")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve cameras: capture, record, and show them live.
    Serve {
        /// Configuration file (TOML). Without it: one test-pattern camera named `test`.
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// HTTP listen address (overrides `[server] listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides `[server] data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Capture one camera into segment files (run by `serve`; stdout carries JSON reports).
    Capture {
        /// The camera's name in the configuration.
        #[arg(long)]
        camera: String,
        /// Configuration file. Without it: the built-in default (camera `test`).
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory (overrides `[server] data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Benchmark fixture: COUNT consecutive copies of one real segment, indexed, ending now.
    #[command(hide = true)]
    SynthArchive {
        /// Data directory to fill (the camera's directory must hold no segment).
        #[arg(long)]
        data_dir: PathBuf,
        /// Camera name.
        #[arg(long, default_value = "test")]
        camera: String,
        /// A real recorded `<start_us>.h264` (its `.idx` beside it), on the same filesystem.
        #[arg(long)]
        from: PathBuf,
        /// Number of segments (43,200 one-minute segments = 30 days).
        #[arg(long, default_value_t = 43_200)]
        count: usize,
        /// The newest this many segments are full copies (the rest are hard links).
        #[arg(long, default_value_t = 60)]
        real_copies: usize,
        /// The archive ends at this Unix time in ms (default: now).
        #[arg(long)]
        end_ms: Option<i64>,
        /// PostgreSQL URL (default: SQLite in the data directory).
        #[arg(long)]
        database_url: Option<String>,
    },
}

/// webrtc-rs logs routine ICE events (a viewer that leaves, a candidate pair that loses) as
/// warnings; keep its crates at `error` unless RUST_LOG asks for more.
const DEFAULT_LOG: &str = "info,webrtc=error,rtc=error,rtc_ice=error,rtc_mdns=error,rtc_dtls=error,\
rtc_srtp=error,rtc_sctp=error,rtc_turn=error,rtc_interceptor=error,rtc_stun=error";

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    // Logs go to stderr: a capture child's stdout is its report channel.
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { config, listen, data_dir } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.server.data_dir = d;
            }
            let config_path = config.map(|p| p.canonicalize().unwrap_or(p));
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(vigil::server::serve(vigil::server::ServeOptions { config: cfg, config_path }))
        }
        Command::Capture { camera, config, data_dir } => {
            let cfg = Config::load(config.as_deref())?;
            let cam = cfg
                .camera(&camera)
                .cloned()
                .with_context(|| format!("no camera named {camera:?} in the configuration"))?;
            let data_dir = data_dir.unwrap_or(cfg.server.data_dir);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let result = rt.block_on(vigil::capture::child::run(cam, &data_dir));
            // The GStreamer bus is polled on a blocking thread that does not end by itself;
            // the segment is closed by now, so don't wait for it.
            rt.shutdown_background();
            if let Err(e) = result {
                // The supervisor got the reason as a report line; one log line, no backtrace.
                tracing::error!(camera, "capture failed: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::SynthArchive { data_dir, camera, from, count, real_copies, end_ms, database_url } => {
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let data_dir = data_dir.canonicalize()?;
            let end_us = match end_ms {
                Some(ms) => ms.checked_mul(1000).context("end_ms out of range")?,
                None => vigil::history::service::now_us_pub(),
            };
            let opts = vigil::history::synth::SynthOptions {
                data_dir,
                database_url,
                camera,
                source: from,
                count,
                end_us,
                real_copies,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = rt.block_on(vigil::history::synth::synthesize(&opts))?;
            tracing::info!(report = %serde_json::to_string(&report)?, "synthetic archive ready");
            Ok(())
        }
    }
}
