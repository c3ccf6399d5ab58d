//! `vigil-bench history`: times the recorded-history HTTP API of a running server over a
//! long archive (e.g. 30 days of one-minute segments made by `vigil synth-archive`, see
//! BENCHMARKS.md). Three measurements, each repeated and reported as medians:
//!
//! 1. **Listing**: `GET /api/cameras/{camera}/recordings?start=&end=` over `--days` ending
//!    now, runs only and with `&segments=true`: request sent → last body byte.
//! 2. **Export**: `GET .../video.mp4?start=&end=` of `--export-len` (default: the last hour of
//!    the longest run): request sent → first body byte (TTFB), and the whole body's
//!    throughput (MB/s and × real time = video duration / download time).
//! 3. **Seek**: `GET .../fmp4/media.m4s?start=t&end=t+--seek-len&base=<UTC day of t>` at random
//!    times `t` within the longest run (what the history page asks for after a seek):
//!    request sent → first body byte, and → last byte.
//!
//! Requests go one at a time over one keep-alive connection (one warm-up request first), so
//! the figures are latencies on an otherwise idle server, not throughput under concurrency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Options of `vigil-bench history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Camera name.
    #[arg(long, default_value = "test")]
    camera: String,
    /// API token sent as `Authorization: Bearer` (a server with `[auth]` on).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Days listed, ending now.
    #[arg(long, default_value_t = 30.0)]
    days: f64,
    /// Listing requests of each kind.
    #[arg(long, default_value_t = 20)]
    listings: usize,
    /// Export downloads.
    #[arg(long, default_value_t = 5)]
    exports: usize,
    /// Length of the exported range (e.g. 1h, 10m).
    #[arg(long, default_value = "1h", value_parser = crate::parse_duration)]
    export_len: Duration,
    /// Start of the exported range, Unix ms (default: `--export-len` before the end of the
    /// longest run).
    #[arg(long)]
    export_start_ms: Option<i64>,
    /// Seek requests.
    #[arg(long, default_value_t = 50)]
    seeks: usize,
    /// Media asked for per seek (the history page asks for 10 s).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    seek_len: Duration,
    /// Seed of the random seek times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Median and spread of a set of timings, in ms.
#[derive(Serialize, Default, Debug)]
struct Ms {
    n: usize,
    median: f64,
    p95: f64,
    min: f64,
    max: f64,
}

impl Ms {
    fn of(v: &[Duration]) -> Ms {
        let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        if n == 0 {
            return Ms::default();
        }
        let median = if n % 2 == 1 { ms[n / 2] } else { (ms[n / 2 - 1] + ms[n / 2]) / 2.0 };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1;
        Ms { n, median, p95: ms[rank], min: ms[0], max: ms[n - 1] }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[derive(Serialize, Default)]
struct Listing {
    start_ms: i64,
    end_ms: i64,
    runs: usize,
    segments: usize,
    runs_only_bytes: usize,
    with_segments_bytes: usize,
    /// The first request of each kind (cold-ish), then the rest.
    runs_only_first_ms: f64,
    runs_only_ms: Ms,
    with_segments_first_ms: f64,
    with_segments_ms: Ms,
}

#[derive(Serialize, Default)]
struct Export {
    start_ms: i64,
    end_ms: i64,
    bytes: u64,
    ttfb_ms: Ms,
    total_ms: Ms,
    mb_per_s_median: f64,
    x_real_time_median: f64,
}

#[derive(Serialize, Default)]
struct Seek {
    range_start_ms: i64,
    range_end_ms: i64,
    ttfb_ms: Ms,
    total_ms: Ms,
    bytes_median: f64,
}

#[derive(Serialize, Default)]
struct Report {
    url: String,
    camera: String,
    listing: Listing,
    export: Export,
    seek: Seek,
    notes: Vec<String>,
}

/// One GET: (status, time to the first body byte, time to the last, body length). The
/// body is kept only when `keep` (listings), else counted and dropped.
async fn timed_get(
    http: &reqwest::Client,
    url: &str,
    keep: bool,
) -> Result<(Duration, Duration, u64, Option<Vec<u8>>)> {
    let t0 = Instant::now();
    let mut r = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let mut first = None;
    let mut len = 0u64;
    let mut body = keep.then(Vec::new);
    while let Some(chunk) = r.chunk().await.with_context(|| format!("GET {url}: body"))? {
        first.get_or_insert_with(|| t0.elapsed());
        len += chunk.len() as u64;
        if let Some(b) = body.as_mut() {
            b.extend_from_slice(&chunk);
        }
    }
    let total = t0.elapsed();
    if !status.is_success() {
        let text = body.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        bail!("GET {url}: {status} {}", text.trim());
    }
    Ok((first.unwrap_or(total), total, len, body))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// xorshift64*: reproducible seek times without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs the three measurements and prints the report.
pub async fn run(a: &HistoryArgs) -> Result<()> {
    let base = a.url.trim_end_matches('/').to_owned();
    let cam = format!("{base}/api/cameras/{}", a.camera);
    let http = crate::with_token(reqwest::Client::builder(), a.token.as_deref())?
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut rep = Report { url: base.clone(), camera: a.camera.clone(), ..Default::default() };

    // ---- listing ----
    let end = now_ms();
    let start = end - (a.days * 86_400_000.0) as i64;
    let (l, notes) = listing(&http, &cam, start, end, a.listings).await?;
    rep.notes.extend(notes);
    let runs = runs_of(&l.1)?;
    rep.listing = l.0;
    let Some(&(run_s, run_e)) = runs.iter().max_by_key(|(s, e)| e - s) else {
        bail!("nothing recorded in the {} days listed", a.days);
    };
    progress(&format!("listing done; longest run {run_s}..{run_e} ({:.1} h)", (run_e - run_s) as f64 / 3.6e6));

    // ---- export ----
    let len_ms = a.export_len.as_millis() as i64;
    let ex_start = a.export_start_ms.unwrap_or(run_e - len_ms);
    let ex_end = ex_start + len_ms;
    let url = format!("{cam}/video.mp4?start={ex_start}&end={ex_end}");
    timed_get(&http, &format!("{cam}/video.mp4?start={ex_start}&end={}", ex_start + 1000), false).await?;
    let (mut ttfb, mut total, mut rates, mut speeds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..a.exports {
        let (first, all, bytes, _) = timed_get(&http, &url, false).await?;
        progress(&format!("export {}/{}: {bytes} bytes, first byte {first:?}, all {all:?}", i + 1, a.exports));
        ttfb.push(first);
        total.push(all);
        rates.push(bytes as f64 / 1e6 / all.as_secs_f64());
        speeds.push(len_ms as f64 / 1000.0 / all.as_secs_f64());
        rep.export.bytes = bytes;
    }
    rep.export.start_ms = ex_start;
    rep.export.end_ms = ex_end;
    rep.export.ttfb_ms = Ms::of(&ttfb);
    rep.export.total_ms = Ms::of(&total);
    rep.export.mb_per_s_median = median(rates);
    rep.export.x_real_time_median = median(speeds);

    // ---- seek ----
    let seek_ms = a.seek_len.as_millis() as i64;
    let span = (run_e - run_s - seek_ms).max(1) as u64;
    let mut rng = Rng(a.seed.max(1));
    let (mut ttfb, mut total, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.seeks {
        let t = run_s + (rng.next() % span) as i64;
        let day = t.div_euclid(86_400_000) * 86_400_000;
        let url = format!("{cam}/fmp4/media.m4s?start={t}&end={}&base={day}", t + seek_ms);
        let (first, all, bytes, _) = timed_get(&http, &url, false).await?;
        ttfb.push(first);
        total.push(all);
        sizes.push(bytes as f64);
    }
    rep.seek = Seek {
        range_start_ms: run_s,
        range_end_ms: run_e,
        ttfb_ms: Ms::of(&ttfb),
        total_ms: Ms::of(&total),
        bytes_median: median(sizes),
    };

    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", human(&rep, a))?;
    }
    Ok(())
}

fn progress(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// Times the two listings; returns the report part, the last runs-only body and notes.
async fn listing(
    http: &reqwest::Client,
    cam: &str,
    start: i64,
    end: i64,
    n: usize,
) -> Result<((Listing, Vec<u8>), Vec<String>)> {
    let mut l = Listing { start_ms: start, end_ms: end, ..Default::default() };
    let mut notes = Vec::new();
    let mut last_runs = Vec::new();
    for segments in [false, true] {
        let url = format!("{cam}/recordings?start={start}&end={end}{}", if segments { "&segments=true" } else { "" });
        let mut times = Vec::new();
        let mut first = None;
        for _ in 0..n.max(1) + 1 {
            let (_, all, bytes, body) = timed_get(http, &url, true).await?;
            match first {
                None => first = Some(all),
                Some(_) => times.push(all),
            }
            let body = body.unwrap_or_default();
            if segments {
                l.with_segments_bytes = bytes as usize;
                let v: serde_json::Value = serde_json::from_slice(&body).context("recordings: not JSON")?;
                l.segments = v["segments"].as_array().map_or(0, Vec::len);
            } else {
                l.runs_only_bytes = bytes as usize;
                last_runs = body;
            }
        }
        let first_ms = first.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        if segments {
            l.with_segments_first_ms = first_ms;
            l.with_segments_ms = Ms::of(&times);
        } else {
            l.runs_only_first_ms = first_ms;
            l.runs_only_ms = Ms::of(&times);
        }
    }
    l.runs = runs_of(&last_runs)?.len();
    if l.segments < 1000 {
        notes.push(format!("only {} segments listed: not a long archive", l.segments));
    }
    Ok(((l, last_runs), notes))
}

fn runs_of(body: &[u8]) -> Result<Vec<(i64, i64)>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("recordings: not JSON")?;
    Ok(v["runs"]
        .as_array()
        .context("recordings: no runs")?
        .iter()
        .filter_map(|r| Some((r["start_ms"].as_i64()?, r["end_ms"].as_i64()?)))
        .collect())
}

fn human(r: &Report, a: &HistoryArgs) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<40} {v}\n"));
    let ms =
        |m: &Ms| format!("median {:.2} ms, p95 {:.2}, min {:.2}, max {:.2} (n={})", m.median, m.p95, m.min, m.max, m.n);
    let l = &r.listing;
    row("target", format!("{}/api/cameras/{}", r.url, r.camera));
    row("listed", format!("{} days: {} segments in {} runs", a.days, l.segments, l.runs));
    row(
        "listing, runs only",
        format!("{} ({} bytes; first {:.2} ms)", ms(&l.runs_only_ms), l.runs_only_bytes, l.runs_only_first_ms),
    );
    row(
        "listing, &segments=true",
        format!(
            "{} ({} bytes; first {:.2} ms)",
            ms(&l.with_segments_ms),
            l.with_segments_bytes,
            l.with_segments_first_ms
        ),
    );
    let e = &r.export;
    row("export range", format!("{}..{} ({:?}), {} bytes", e.start_ms, e.end_ms, a.export_len, e.bytes));
    row("export time to first byte", ms(&e.ttfb_ms));
    row("export whole file", ms(&e.total_ms));
    row(
        "export throughput (median)",
        format!("{:.1} MB/s = {:.0} × real time", e.mb_per_s_median, e.x_real_time_median),
    );
    let k = &r.seek;
    row(
        "seek: fMP4 fragment at random t",
        format!("{:?} of media each, t in {}..{}", a.seek_len, k.range_start_ms, k.range_end_ms),
    );
    row("seek time to first byte", ms(&k.ttfb_ms));
    row("seek whole response", format!("{} ({:.0} bytes median)", ms(&k.total_ms), k.bytes_median));
    for n in &r.notes {
        row("note", n.clone());
    }
    s
}
