//! `vigil-bench`: N WHEP viewers for T seconds against a running vigil server.
//!
//! Phases: ramp (viewers connect at `--ramp` per second, each waits for its first keyframe),
//! then a measurement window of `--duration` during which frames, packet loss and latency are
//! counted and the server's CPU, memory and `vigil_frames_sent_total` are sampled, then
//! teardown (DELETE every session) and a memory reading after it.
//!
//! Latency = wall clock when an access unit's last RTP packet arrives − the capture time in
//! its `vigil.capture.ts` SEI (docs/segment-format.md). It includes the encoder. With
//! `--data-dir`, the moment each AU's `.idx` record lands on disk is watched too, giving the
//! server-added delay (segment → viewer) on its own.
//!
//! `vigil-bench history` times the recorded-history API instead ([`history`]). With
//! `--churn N` it runs N connect/disconnect cycles and checks that the server's memory and
//! gauges come back (see `churn.rs`).

mod churn;
mod h264;
mod history;
mod idxwatch;
mod report;
mod sys;
mod viewer;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;

use report::{Dist, Report, human};
use viewer::{Shared, Viewer};

const FRAMES_SENT: &str = "vigil_frames_sent_total";
const FRAMES_DROPPED: &str = "vigil_frames_dropped_total";
const AU_LATENCY: &str = "vigil_au_latency_seconds";

#[derive(Parser, Debug)]
#[command(
    name = "vigil-bench",
    about = "N WHEP viewers for T seconds against a running vigil server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Another measurement instead of WHEP viewers.
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API token (`vigil token add`) sent as `Authorization: Bearer` on every request, for a
    /// server with `[auth]` on; an admin token also lets it read `/metrics`.
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Camera name.
    #[arg(long, default_value = "test")]
    camera: String,
    /// Number of WHEP viewers.
    #[arg(long, default_value_t = 1)]
    viewers: usize,
    /// Measurement window once every viewer is up (e.g. 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Server process id, for CPU and RSS from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Viewers started per second.
    #[arg(long, default_value_t = 20.0)]
    ramp: f64,
    /// Per-viewer limit from start to first keyframe.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    setup_timeout: Duration,
    /// Local UDP address for each viewer's socket (a concrete address: the loopback by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// The server's data dir: also measure segment-on-disk → viewer delay (server-added).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Offer no NACK/TWCC feedback (RTCP receiver reports only), unlike browsers: to see
    /// how much retransmission costs.
    #[arg(long)]
    no_nack: bool,
    /// ICE connectivity-check interval of each viewer (webrtc-rs default: 200ms). The
    /// controlling side (the viewer, as offerer) nominates on this tick, so it bounds the
    /// time to first frame from below; browsers pace checks faster.
    #[arg(long, value_parser = parse_duration)]
    ice_check_interval: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Churn mode: this many WHEP connect / first keyframe / DELETE cycles, then a leak check
    /// (RSS and /metrics gauges) instead of the viewer window.
    #[arg(long)]
    churn: Option<usize>,
    /// Churn mode: cycles run at once.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Time the recorded-history API: 30-day listing, 1 h MP4 export, seeks (fMP4).
    History(history::HistoryArgs),
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc=error,webrtc=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(Mode::History(a)) = &cli.mode {
        return rt.block_on(history::run(a));
    }
    if let Some(n) = cli.churn {
        let report = rt.block_on(churn_run(&cli, n))?;
        let mut out = std::io::stdout().lock();
        if cli.json {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", churn::human(&report))?;
        }
        rt.shutdown_timeout(Duration::from_secs(1));
        return Ok(());
    }
    let report = rt.block_on(run(&cli))?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", human(&report))?;
    }
    // The peer connections' tasks are gone; do not wait for stragglers.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Progress to stderr (not per packet).
macro_rules! progress {
    ($($t:tt)*) => {{ let _ = writeln!(std::io::stderr(), $($t)*); }};
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String> {
    let r = http.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.text().await?)
}

#[derive(Clone, Copy, Default)]
struct Prom {
    sent: Option<f64>,
    dropped: Option<f64>,
    lat_sum: Option<f64>,
    lat_count: Option<f64>,
}

async fn prom(http: &reqwest::Client, base: &str, camera: &str) -> Prom {
    let Ok(text) = get_text(http, &format!("{base}/metrics")).await else {
        return Prom::default();
    };
    Prom {
        sent: sys::prom_sum(&text, FRAMES_SENT, camera),
        dropped: sys::prom_sum(&text, FRAMES_DROPPED, camera),
        lat_sum: sys::prom_sum(&text, &format!("{AU_LATENCY}_sum"), camera),
        lat_count: sys::prom_sum(&text, &format!("{AU_LATENCY}_count"), camera),
    }
}

/// Sends `Authorization: Bearer <token>` on every request when a token is given.
pub(crate) fn with_token(b: reqwest::ClientBuilder, token: Option<&str>) -> Result<reqwest::ClientBuilder> {
    let Some(t) = token else { return Ok(b) };
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
        .context("--token: not a valid header value")?;
    v.set_sensitive(true);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, v);
    Ok(b.default_headers(h))
}

async fn churn_run(cli: &Cli, n: usize) -> Result<churn::ChurnReport> {
    let base = cli.url.trim_end_matches('/').to_owned();
    // No idle keep-alive connections: each would hold a server task and a socket, blurring
    // the task and fd counts the leak check compares.
    let http = with_token(reqwest::Client::builder(), cli.token.as_deref())?
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()?;
    let shared = Arc::new(Shared {
        measuring: Default::default(),
        idx: None,
        http,
        whep_url: format!("{base}/whep/{}", cli.camera),
        bind: cli.bind.clone(),
        setup_timeout: cli.setup_timeout,
        nack: !cli.no_nack,
        ice_check_interval: cli.ice_check_interval,
        frame_interval_us: None,
    });
    Ok(churn::run(shared, &base, &cli.camera, cli.pid, n, cli.parallel).await)
}

async fn run(cli: &Cli) -> Result<Report> {
    let base = cli.url.trim_end_matches('/').to_owned();
    let http = with_token(reqwest::Client::builder(), cli.token.as_deref())?
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(20))
        .build()?;
    let pid = cli.pid.map(|p| p.to_string());
    let mut rep = Report {
        url: base.clone(),
        camera: cli.camera.clone(),
        viewers: cli.viewers,
        ramp_per_s: cli.ramp,
        nack: !cli.no_nack,
        ice_check_interval_ms: cli.ice_check_interval.map(|d| d.as_secs_f64() * 1000.0),
        ..Default::default()
    };
    if let Some(p) = &pid
        && sys::proc_cpu(p).is_none()
    {
        bail!("no process {p} (--pid)");
    }

    // The camera, from the API.
    let cams: serde_json::Value =
        serde_json::from_str(&get_text(&http, &format!("{base}/api/cameras")).await.context("GET /api/cameras")?)
            .context("/api/cameras is not JSON")?;
    let cam = cams.as_array().and_then(|a| a.iter().find(|c| c["name"] == cli.camera.as_str())).cloned();
    match &cam {
        None => rep.notes.push(format!("camera {:?} not listed in /api/cameras", cli.camera)),
        Some(c) => {
            rep.camera_fps = c["video_fps"].as_f64();
            rep.camera_kbps = c["video_kbps"].as_f64();
            if c["state"] != "running" {
                rep.notes.push(format!("camera state at start: {}", c["state"]));
            }
            if c["viewers"].as_u64().is_some_and(|v| v > 0) {
                rep.notes.push(format!("{} viewer(s) already connected before the bench", c["viewers"]));
            }
        }
    }

    let idx = match &cli.data_dir {
        Some(d) => Some(idxwatch::start(d, &cli.camera)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        measuring: Default::default(),
        idx: idx.clone(),
        http: http.clone(),
        whep_url: format!("{base}/whep/{}", cli.camera),
        bind: cli.bind.clone(),
        setup_timeout: cli.setup_timeout,
        nack: !cli.no_nack,
        ice_check_interval: cli.ice_check_interval,
        frame_interval_us: rep.camera_fps.filter(|f| *f > 0.0).map(|f| (1e6 / f) as u64),
    });

    // ---- other load on the machine, before we add ours ----
    let m0 = sys::machine_cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rep.machine_busy_before_pct = m0.zip(sys::machine_cpu()).map(|(a, b)| sys::machine_busy_percent(a, b));

    // ---- ramp ----
    rep.server_rss_mb_before = pid.as_deref().and_then(sys::rss_mb);
    let cpu_ramp0 = pid.as_deref().and_then(sys::proc_cpu);
    let ramp_start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / cli.ramp.max(0.001));
    let mut tasks = Vec::with_capacity(cli.viewers);
    for i in 0..cli.viewers {
        let at = ramp_start + gap.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        tasks.push(tokio::spawn(viewer::connect(shared.clone())));
    }
    let mut viewers: Vec<Viewer> = Vec::with_capacity(cli.viewers);
    for t in tasks {
        viewers.push(t.await?);
    }
    rep.ramp_s = ramp_start.elapsed().as_secs_f64();
    rep.server_cpu_ramp_pct =
        cpu_ramp0.zip(pid.as_deref().and_then(sys::proc_cpu)).map(|(a, b)| sys::cpu_percent(a, b));
    let ok: Vec<&Viewer> = viewers.iter().filter(|v| v.error.is_none()).collect();
    rep.connected = ok.len();
    rep.failed = viewers.len() - ok.len();
    for v in viewers.iter().filter_map(|v| v.error.as_ref()) {
        match rep.failures.iter_mut().find(|(e, _)| e == v) {
            Some((_, n)) => *n += 1,
            None => rep.failures.push((v.clone(), 1)),
        }
    }
    progress!(
        "ramp done in {:.1} s: {} connected, {} failed; measuring for {:?}",
        rep.ramp_s,
        rep.connected,
        rep.failed,
        cli.duration
    );

    // ---- window ----
    let prom0 = prom(&http, &base, &cli.camera).await;
    let children = cli.pid.map(sys::descendants).unwrap_or_default();
    let (kids0, kids_ok) = sys::procs_cpu(&children);
    let kids_t0 = Instant::now();
    let cpu0 = pid.as_deref().and_then(sys::proc_cpu);
    let self0 = sys::proc_cpu("self");
    let mach0 = sys::machine_cpu();
    let udp0 = sys::udp_counters();
    rep.server_rss_mb_window_start = pid.as_deref().and_then(sys::rss_mb);
    let t0 = Instant::now();
    let t0_us = now_us();
    shared.measuring.store(true, Ordering::SeqCst);
    let end = t0 + cli.duration;
    let mut rss_max = rep.server_rss_mb_window_start;
    while Instant::now() < end {
        let next = (Instant::now() + Duration::from_secs(1)).min(end);
        tokio::time::sleep_until(next.into()).await;
        if let Some(r) = pid.as_deref().and_then(sys::rss_mb) {
            rss_max = Some(rss_max.map_or(r, |m: f64| m.max(r)));
        }
    }
    shared.measuring.store(false, Ordering::SeqCst);
    let window = t0.elapsed();
    let t1_us = now_us();
    let cpu1 = pid.as_deref().and_then(sys::proc_cpu);
    let self1 = sys::proc_cpu("self");
    let mach1 = sys::machine_cpu();
    for (k, v1) in sys::udp_counters() {
        if ["InDatagrams", "OutDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors"].contains(&k.as_str())
            && let Some((_, v0)) = udp0.iter().find(|(k0, _)| *k0 == k)
        {
            rep.udp_window.push((k, v1.saturating_sub(*v0)));
        }
    }
    let prom1 = prom(&http, &base, &cli.camera).await;
    let (kids1, kids_ok1) = sys::procs_cpu(&kids_ok);
    if !kids_ok.is_empty() {
        if kids_ok1.len() == kids_ok.len() {
            rep.children_cpu_pct = Some((kids1 - kids0) as f64 / 100.0 / kids_t0.elapsed().as_secs_f64() * 100.0);
        } else {
            rep.notes.push("a child of the server exited during the window".into());
        }
        rep.children_rss_mb = Some(kids_ok1.iter().filter_map(|p| sys::rss_mb(&p.to_string())).sum());
        rep.children = kids_ok.clone();
    }
    let (sent0, sent1) = (prom0.sent, prom1.sent);
    if let (Some(a), Some(b)) = (prom0.dropped, prom1.dropped)
        && rep.connected > 0
    {
        rep.frames_dropped_by_server_per_viewer = Some((b - a) / rep.connected as f64);
    }
    if let (Some(s0), Some(s1), Some(c0), Some(c1)) = (prom0.lat_sum, prom1.lat_sum, prom0.lat_count, prom1.lat_count)
        && c1 > c0
    {
        rep.server_capture_to_hub_mean_ms = Some((s1 - s0) / (c1 - c0) * 1000.0);
    }
    rep.window_s = window.as_secs_f64();
    rep.server_rss_mb_window_end = pid.as_deref().and_then(sys::rss_mb);
    rep.server_rss_mb_window_max = rss_max;
    rep.server_threads_window_end = pid.as_deref().and_then(sys::threads);
    rep.server_cpu_pct = cpu0.zip(cpu1).map(|(a, b)| sys::cpu_percent(a, b));
    rep.bench_cpu_pct = self0.zip(self1).map(|(a, b)| sys::cpu_percent(a, b));
    rep.machine_busy_pct = mach0.zip(mach1).map(|(a, b)| sys::machine_busy_percent(a, b));

    // ---- collect ----
    let mut answer = Vec::new();
    let mut first = Vec::new();
    let mut conn = Vec::new();
    let mut lat = Vec::new();
    let mut srv = Vec::new();
    let mut frames = Vec::new();
    let mut worst_p99: Option<i64> = None;
    let mut bytes = 0u64;
    let mut idx_unmatched = 0u64;
    for v in &ok {
        let Ok(mut s) = v.stats.lock() else { continue };
        if let Some(d) = s.answer_rtt {
            answer.push(d.as_micros() as i64);
        }
        if let Some(d) = s.connected_after {
            conn.push(d.as_micros() as i64);
        }
        if let Some(d) = s.first_key {
            first.push(d.as_micros() as i64);
        }
        if !s.first_frame_was_key {
            rep.first_frame_not_key += 1;
        }
        if s.dropped.is_some() {
            rep.dropped_in_window += 1;
        }
        frames.push(s.frames);
        rep.frames_incomplete += s.incomplete;
        rep.frames_skipped += s.skipped;
        rep.packets_received += s.packets;
        rep.packets_lost += s.lost_packets;
        rep.frames_without_sei += s.no_sei;
        rep.frames_catchup += s.catchup;
        bytes += s.bytes;
        let mut l = std::mem::take(&mut s.latency_us);
        l.sort_unstable();
        if let Some(p) = sys::percentile(&l, 99.0) {
            worst_p99 = Some(worst_p99.map_or(p, |w| w.max(p)));
        }
        lat.extend_from_slice(&l);
        if let Some(idx) = &idx {
            for (cap, recv) in s.timed.drain(..) {
                match idx.get(cap) {
                    Some(seen) => srv.push(recv as i64 - seen as i64),
                    None => idx_unmatched += 1,
                }
            }
        }
    }
    rep.answer_ms = Dist::from_us(answer);
    rep.first_frame_ms = Dist::from_us(first);
    rep.connected_ms = Dist::from_us(conn);
    rep.latency_ms = Dist::from_us(lat);
    rep.latency_worst_viewer_p99_ms = worst_p99.map(|p| p as f64 / 1000.0);
    if let Some(idx) = &idx {
        rep.server_added_ms = Some(Dist::from_us(srv));
        rep.notes.push(format!(
            "{} .idx records seen on disk during the run; {idx_unmatched} timed frames not matched to one",
            idx.len()
        ));
        if let Some(iv) = shared.frame_interval_us {
            // frames captured in the window, less one latency's worth at the end
            let (n, gaps) = idx.source_gaps(t0_us, t1_us, iv);
            rep.source_frames_in_window = Some(n);
            rep.source_gaps_in_window = Some(gaps);
        }
    }
    if !frames.is_empty() {
        rep.frames_received_mean = frames.iter().sum::<u64>() as f64 / frames.len() as f64;
        rep.frames_received_min = frames.iter().copied().min().unwrap_or(0);
        rep.frames_received_max = frames.iter().copied().max().unwrap_or(0);
        rep.mbps_per_viewer = bytes as f64 * 8.0 / 1e6 / rep.window_s / frames.len() as f64;
    }
    match (sent0, sent1) {
        (Some(a), Some(b)) if rep.connected > 0 => {
            let per = (b - a) / rep.connected as f64;
            rep.frames_sent_per_viewer = Some(per);
            if per > 0.0 {
                rep.delivered_ratio = Some(rep.frames_received_mean / per);
            }
        }
        _ => {
            rep.notes.push(format!("{FRAMES_SENT} not in /metrics: compared with camera fps"));
            if let Some(fps) = rep.camera_fps {
                let exp = fps * rep.window_s;
                rep.frames_expected_per_viewer = Some(exp);
                if exp > 0.0 && rep.connected > 0 {
                    rep.delivered_ratio = Some(rep.frames_received_mean / exp);
                }
            }
        }
    }

    // ---- teardown ----
    let mut closers = Vec::new();
    for v in viewers {
        let sh = shared.clone();
        closers.push(tokio::spawn(async move { v.close(&sh).await }));
    }
    for c in closers {
        if let Ok(Some(code)) = c.await {
            match rep.delete_status.iter_mut().find(|(s, _)| *s == code) {
                Some((_, n)) => *n += 1,
                None => rep.delete_status.push((code, 1)),
            }
        }
    }
    if pid.is_some() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        rep.server_rss_mb_after_teardown = pid.as_deref().and_then(sys::rss_mb);
    }
    if let Ok(t) = get_text(&http, &format!("{base}/api/cameras")).await
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&t)
        && let Some(c) = v.as_array().and_then(|a| a.iter().find(|c| c["name"] == cli.camera.as_str()))
        && c["viewers"].as_u64().is_some_and(|n| n > 0)
    {
        rep.notes.push(format!("{} viewer(s) still listed 3 s after teardown", c["viewers"]));
    }
    Ok(rep)
}
