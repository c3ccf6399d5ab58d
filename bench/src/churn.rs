//! `vigil-bench --churn N`: N WHEP connect/disconnect cycles against one server, looking for
//! leaks. A cycle connects a viewer (webrtc-rs), waits for its first keyframe, DELETEs the
//! session and closes the peer connection; `--parallel K` cycles run at once.
//!
//! The first 100 cycles warm the server up (allocator arenas, caches, the tokio worker
//! pool); it then settles and its RSS and `/metrics` gauges are the baseline. After the
//! remaining cycles it settles again (until no WHEP session is left, at most 30 s) and the
//! same figures are read: RSS should be within a few MB of the baseline, the sessions,
//! session tasks, viewers and UDP sockets back to zero, and tokio tasks back to the baseline.
//! File descriptors and threads are shown but not judged: the recordings index's SQLite pool
//! opens connections (a file pair and a worker thread each, at most 4) as segments rotate,
//! whatever the viewers do.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sys;
use crate::viewer::{self, Shared};

/// Cycles run before the baseline is taken.
const WARMUP: usize = 100;

/// The server gauges a churn run compares (see `src/procfs.rs`, `src/live/whep.rs` and
/// `src/webrtc/mux.rs`; the last two read 0 where the server has no shared port).
const GAUGES: [&str; 9] = [
    "vigil_whep_sessions",
    "vigil_whep_session_tasks",
    "vigil_viewers",
    "vigil_process_udp_sockets",
    "vigil_process_open_fds",
    "vigil_tokio_alive_tasks",
    "vigil_process_threads",
    "vigil_webrtc_shared_port_sessions",
    "vigil_webrtc_shared_port_addresses",
];

/// A snapshot of the server.
#[derive(Serialize, Default, Clone)]
pub struct Sample {
    pub cycles: usize,
    pub rss_mb: Option<f64>,
    /// The gauges above, as `/metrics` reports them.
    pub gauges: BTreeMap<String, f64>,
}

#[derive(Serialize, Default)]
pub struct ChurnReport {
    pub url: String,
    pub camera: String,
    pub cycles: usize,
    pub parallel: usize,
    pub ok: usize,
    pub failures: Vec<(String, usize)>,
    pub delete_status: Vec<(u16, usize)>,
    pub seconds: f64,
    pub cycles_per_s: f64,
    /// POST → first keyframe, ms, over all successful cycles.
    pub first_keyframe_p50_ms: Option<f64>,
    pub first_keyframe_p99_ms: Option<f64>,
    pub before: Sample,
    /// After the first 100 cycles, settled.
    pub baseline: Sample,
    /// RSS every 1000 cycles (not settled).
    pub trace: Vec<(usize, f64)>,
    /// After the last cycle, settled.
    pub end: Sample,
    pub rss_growth_mb: Option<f64>,
    /// Gauges not back where they should be at the end.
    pub leaks: Vec<String>,
    pub bench_rss_mb_end: Option<f64>,
}

async fn sample(shared: &Shared, base: &str, camera: &str, pid: Option<&str>, cycles: usize) -> Sample {
    let mut s = Sample { cycles, rss_mb: pid.and_then(sys::rss_mb), gauges: BTreeMap::new() };
    if let Ok(r) = shared.http.get(format!("{base}/metrics")).send().await
        && let Ok(text) = r.text().await
    {
        for g in GAUGES {
            if let Some(v) = sys::prom_sum(&text, g, camera) {
                s.gauges.insert(g.to_owned(), v);
            }
        }
    }
    s
}

/// Waits until the server has no WHEP session left (at most 30 s), then samples it.
async fn settle(shared: &Shared, base: &str, camera: &str, pid: Option<&str>, cycles: usize) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = sample(shared, base, camera, pid, cycles).await;
        let busy = ["vigil_whep_sessions", "vigil_whep_session_tasks"]
            .iter()
            .any(|g| s.gauges.get(*g).is_some_and(|v| *v > 0.0));
        if !busy || Instant::now() > deadline {
            return s;
        }
    }
}

/// Runs `cycles` cycles, `parallel` at a time, counting into `rep`.
async fn cycles(shared: &Arc<Shared>, n: usize, parallel: usize, rep: &mut Tally) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let (shared, next) = (shared.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let v = viewer::connect(shared.clone()).await;
                let first = v.stats.lock().ok().and_then(|s| s.first_key);
                let code = v.close(&shared).await;
                t.record(v.error, code, first);
            }
            t
        }));
    }
    for w in workers {
        if let Ok(t) = w.await {
            rep.merge(t);
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failures: BTreeMap<String, usize>,
    deletes: BTreeMap<u16, usize>,
    first_us: Vec<i64>,
}

impl Tally {
    fn record(&mut self, error: Option<String>, delete: Option<u16>, first: Option<Duration>) {
        match error {
            None => self.ok += 1,
            Some(e) => *self.failures.entry(e).or_default() += 1,
        }
        if let Some(c) = delete {
            *self.deletes.entry(c).or_default() += 1;
        }
        if let Some(d) = first {
            self.first_us.push(d.as_micros() as i64);
        }
    }

    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in o.deletes {
            *self.deletes.entry(k).or_default() += v;
        }
        self.first_us.extend(o.first_us);
    }
}

/// The whole churn run.
pub async fn run(
    shared: Arc<Shared>,
    base: &str,
    camera: &str,
    pid: Option<u32>,
    n: usize,
    parallel: usize,
) -> ChurnReport {
    let pid = pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    let mut rep =
        ChurnReport { url: base.to_owned(), camera: camera.to_owned(), cycles: n, parallel, ..Default::default() };
    rep.before = sample(&shared, base, camera, pid, 0).await;
    let mut tally = Tally::default();
    let t0 = Instant::now();
    let warm = n.min(WARMUP);
    cycles(&shared, warm, parallel, &mut tally).await;
    rep.baseline = settle(&shared, base, camera, pid, warm).await;
    let mut done = warm;
    while done < n {
        let step = (n - done).min(1000);
        cycles(&shared, step, parallel, &mut tally).await;
        done += step;
        if let Some(r) = pid.and_then(sys::rss_mb) {
            rep.trace.push((done, r));
        }
        let rss = pid.and_then(sys::rss_mb).map_or("-".into(), |r| format!("{r:.1}"));
        let _ =
            writeln!(std::io::stderr(), "churn: {done}/{n} cycles, {} failed, server RSS {rss} MB", done - tally.ok);
    }
    rep.seconds = t0.elapsed().as_secs_f64();
    rep.end = settle(&shared, base, camera, pid, n).await;
    rep.cycles_per_s = n as f64 / rep.seconds.max(1e-9);
    rep.ok = tally.ok;
    rep.failures = tally.failures.into_iter().collect();
    rep.delete_status = tally.deletes.into_iter().collect();
    tally.first_us.sort_unstable();
    rep.first_keyframe_p50_ms = sys::percentile(&tally.first_us, 50.0).map(|v| v as f64 / 1000.0);
    rep.first_keyframe_p99_ms = sys::percentile(&tally.first_us, 99.0).map(|v| v as f64 / 1000.0);
    rep.rss_growth_mb = rep.end.rss_mb.zip(rep.baseline.rss_mb).map(|(e, b)| e - b);
    rep.bench_rss_mb_end = sys::rss_mb("self");
    let g = |s: &Sample, k: &str| s.gauges.get(k).copied();
    for k in ["vigil_whep_sessions", "vigil_whep_session_tasks", "vigil_viewers"] {
        match g(&rep.end, k) {
            Some(v) if v != 0.0 => rep.leaks.push(format!("{k} = {v} (want 0)")),
            None => rep.leaks.push(format!("{k} missing from /metrics")),
            _ => {}
        }
    }
    // Against the baseline: the shared WebRTC port (webrtc_udp_ports = one port) is a UDP
    // socket at rest, and its gauges are absent without one.
    for k in [
        "vigil_tokio_alive_tasks",
        "vigil_process_udp_sockets",
        "vigil_webrtc_shared_port_sessions",
        "vigil_webrtc_shared_port_addresses",
    ] {
        if let (Some(b), Some(e)) = (g(&rep.baseline, k), g(&rep.end, k))
            && e > b
        {
            rep.leaks.push(format!("{k} = {e} (baseline {b})"));
        }
    }
    rep
}

/// The report as text.
pub fn human(r: &ChurnReport) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<34} {v}\n"));
    row("target", format!("{}/whep/{}", r.url, r.camera));
    row("cycles ok / all (parallel)", format!("{} / {} ({})", r.ok, r.cycles, r.parallel));
    for (e, n) in &r.failures {
        row("  failure", format!("{n} × {e}"));
    }
    row("DELETE status", r.delete_status.iter().map(|(c, n)| format!("{n} × {c}")).collect::<Vec<_>>().join(", "));
    row("time", format!("{:.0} s ({:.1} cycles/s)", r.seconds, r.cycles_per_s));
    row(
        "first keyframe p50 / p99",
        format!("{} / {} ms", f(r.first_keyframe_p50_ms, 1), f(r.first_keyframe_p99_ms, 1)),
    );
    row(
        "server RSS before / after 100 / end",
        format!("{} / {} / {} MB", f(r.before.rss_mb, 1), f(r.baseline.rss_mb, 1), f(r.end.rss_mb, 1)),
    );
    row("RSS growth after the first 100", format!("{} MB", f(r.rss_growth_mb, 1)));
    row("RSS every 1000 cycles", r.trace.iter().map(|(c, m)| format!("{c}:{m:.1}")).collect::<Vec<_>>().join(" "));
    for k in GAUGES {
        let v = |s: &Sample| s.gauges.get(k).map_or("-".into(), |v| format!("{v}"));
        row(k, format!("{} / {} / {}", v(&r.before), v(&r.baseline), v(&r.end)));
    }
    row("leak check", if r.leaks.is_empty() { "OK".into() } else { r.leaks.join("; ") });
    row("bench RSS at end", format!("{} MB", f(r.bench_rss_mb_end, 1)));
    s
}
