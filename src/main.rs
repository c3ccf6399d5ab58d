//! The `vigil` command line: `serve` runs the server, `capture` is the per-camera child
//! process the server supervises (it can also be run by hand to test a source), `user` and
//! `token` manage who may log in (docs/auth.md). `synth-archive` (hidden) builds a synthetic
//! archive for benchmarks (BENCHMARKS.md).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use vigil::auth::Role;
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
        /// UDP port(s) for WebRTC media (overrides `[server] webrtc_udp_ports`): `8189`
        /// (every session on one port), `40000-40100`, or `""` for ephemeral ports.
        #[arg(long)]
        webrtc_udp_ports: Option<String>,
        /// TCP port for ICE-TCP with a shared UDP port (overrides `[server] webrtc_tcp_port`;
        /// 0 = off).
        #[arg(long)]
        webrtc_tcp_port: Option<u16>,
    },
    /// Users who log in with a password (`[auth]`, docs/auth.md).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens for `Authorization: Bearer` (`[auth]`, docs/auth.md).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Capture one camera into segment files (run by `serve`, which passes the camera's
    /// settings as the first line of standard input; stdout carries JSON reports). By hand:
    /// `vigil capture --camera NAME --config vigil.toml`.
    Capture {
        /// The camera's name.
        #[arg(long)]
        camera: String,
        /// Read the camera's settings (one JSON object) from the first line of standard input
        /// instead of the configuration file (what `serve` does: the server's registry is the
        /// only source of camera settings).
        #[arg(long)]
        settings_stdin: bool,
        /// Configuration file. Without it: the built-in default (camera `test`).
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory (overrides `[server] data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Motion analysis of H.264 the server receives itself (run by `serve` for each WHIP
    /// publisher: the camera's settings as the first line of standard input, then access
    /// units; stdout carries JSON reports).
    #[command(hide = true)]
    Analyse {
        /// The camera's name.
        #[arg(long)]
        camera: String,
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

/// The configuration whose users file a `user`/`token` command edits.
#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file (TOML); the users file is `[auth] users_file`, by default
    /// `users.toml` next to it (`./users.toml` without a configuration file).
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user: asks for the password twice and writes its argon2id hash to the users file.
    Add {
        /// Login name (1-64 of A-Z a-z 0-9 . _ @ -).
        name: String,
        /// viewer, publisher or admin.
        #[arg(long, default_value = "viewer")]
        role: Role,
        /// Cameras the user may see, comma-separated, or `*` for all.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        cameras: Vec<String>,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Change a user's password (their sessions end).
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove a user.
    Remove {
        /// Login name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List users and tokens.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Add an API token: prints it once; only its SHA-256 is written to the users file.
    Add {
        /// A label for the token (1-64 of A-Z a-z 0-9 . _ @ -).
        name: String,
        /// viewer, publisher or admin.
        #[arg(long, default_value = "viewer")]
        role: Role,
        /// Cameras the token may see, comma-separated, or `*` for all.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        cameras: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove (revoke) a token.
    Remove {
        /// The token's label.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List users and tokens.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// A new password: from stdin's first line, or asked twice on the terminal.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let pw =
        rpassword::prompt_password("Password: ").context("reading the password (no terminal? use --password-stdin)")?;
    vigil::auth::manage::check_password(&pw)?;
    let again = rpassword::prompt_password("Password again: ").context("reading the password")?;
    anyhow::ensure!(pw == again, "the two passwords differ; nothing was changed");
    Ok(pw)
}

/// Writes `text` to stdout (the one place the CLI prints results rather than logging).
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to standard output")
}

fn user_command(cmd: UserCommand) -> anyhow::Result<()> {
    use vigil::auth::manage::UsersStore;
    match cmd {
        UserCommand::Add { name, role, cameras, password_stdin, config } => {
            let mut store = UsersStore::open(config.config.as_deref())?;
            for c in store.unknown_cameras(&cameras) {
                tracing::warn!(camera = %c, "no camera of that name is configured (yet)");
            }
            let pw = read_new_password(password_stdin)?;
            store.add_user(&name, role, cameras, &pw)?;
            tracing::info!(user = %name, %role, file = %store.path.display(), "user added (a running vigil serve applies it within 2 s)");
        }
        UserCommand::Passwd { name, password_stdin, config } => {
            let mut store = UsersStore::open(config.config.as_deref())?;
            let pw = read_new_password(password_stdin)?;
            store.set_password(&name, &pw)?;
            tracing::info!(user = %name, file = %store.path.display(), "password changed (a running vigil serve applies it within 2 s)");
        }
        UserCommand::Remove { name, config } => {
            let mut store = UsersStore::open(config.config.as_deref())?;
            store.remove("user", &name)?;
            tracing::info!(user = %name, file = %store.path.display(), "user removed (a running vigil serve applies it within 2 s)");
        }
        UserCommand::List { config } => {
            let store = UsersStore::open(config.config.as_deref())?;
            print_out(&store.list().iter().map(|l| format!("{l}\n")).collect::<String>())?;
        }
    }
    Ok(())
}

fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    use vigil::auth::manage::UsersStore;
    match cmd {
        TokenCommand::Add { name, role, cameras, config } => {
            let mut store = UsersStore::open(config.config.as_deref())?;
            for c in store.unknown_cameras(&cameras) {
                tracing::warn!(camera = %c, "no camera of that name is configured (yet)");
            }
            let token = store.add_token(&name, role, cameras)?;
            tracing::info!(
                token = %name,
                %role,
                file = %store.path.display(),
                "token added; it is shown once, below (a running vigil serve applies it within 2 s)"
            );
            print_out(&format!("{token}\n"))?;
        }
        TokenCommand::Remove { name, config } => {
            let mut store = UsersStore::open(config.config.as_deref())?;
            store.remove("token", &name)?;
            tracing::info!(token = %name, file = %store.path.display(), "token removed (a running vigil serve applies it within 2 s)");
        }
        TokenCommand::List { config } => {
            let store = UsersStore::open(config.config.as_deref())?;
            print_out(&store.list().iter().map(|l| format!("{l}\n")).collect::<String>())?;
        }
    }
    Ok(())
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
        Command::Serve { config, listen, data_dir, webrtc_udp_ports, webrtc_tcp_port } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.server.data_dir = d;
            }
            if let Some(p) = webrtc_udp_ports {
                cfg.server.webrtc_udp_ports = p;
                cfg.server.udp_port_range().map_err(anyhow::Error::msg)?;
            }
            if let Some(p) = webrtc_tcp_port {
                cfg.server.webrtc_tcp_port = p;
            }
            let config_path = config.map(|p| p.canonicalize().unwrap_or(p));
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(vigil::server::serve(vigil::server::ServeOptions { config: cfg, config_path }))
        }
        Command::User { command } => user_command(command),
        Command::Token { command } => token_command(command),
        Command::Analyse { camera } => {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let cam = vigil::capture::child::read_settings(&mut input)?;
            anyhow::ensure!(cam.name == camera, "settings on stdin are for camera {:?}, not {camera:?}", cam.name);
            if let Err(e) = vigil::capture::analyse::run(&cam, &mut input) {
                tracing::error!(camera, "analysis failed: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Capture { camera, settings_stdin, config, data_dir } => {
            let (cam, data_dir) = if settings_stdin {
                let cam = vigil::capture::child::read_settings(&mut std::io::stdin().lock())?;
                anyhow::ensure!(cam.name == camera, "settings on stdin are for camera {:?}, not {camera:?}", cam.name);
                (cam, data_dir.context("--settings-stdin needs --data-dir")?)
            } else {
                let cfg = Config::load(config.as_deref())?;
                let cam = cfg
                    .camera(&camera)
                    .cloned()
                    .with_context(|| format!("no camera named {camera:?} in the configuration"))?;
                (cam, data_dir.unwrap_or(cfg.server.data_dir))
            };
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
