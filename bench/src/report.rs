//! What `vigil-bench` reports for a viewer run: latency distributions, the report (JSON with
//! `--json`) and its text form.

use crate::sys;
use crate::{FRAMES_DROPPED, FRAMES_SENT};
use serde::Serialize;

#[derive(Serialize, Default)]
pub(crate) struct Dist {
    pub(crate) n: usize,
    pub(crate) min: Option<f64>,
    pub(crate) p50: Option<f64>,
    pub(crate) p95: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Dist {
    /// From values in µs, reported in ms.
    pub(crate) fn from_us(mut v: Vec<i64>) -> Self {
        v.sort_unstable();
        let ms = |x: Option<i64>| x.map(|x| x as f64 / 1000.0);
        Dist {
            n: v.len(),
            min: ms(v.first().copied()),
            p50: ms(sys::percentile(&v, 50.0)),
            p95: ms(sys::percentile(&v, 95.0)),
            p99: ms(sys::percentile(&v, 99.0)),
            max: ms(v.last().copied()),
        }
    }
}

#[derive(Serialize, Default)]
pub(crate) struct Report {
    pub(crate) url: String,
    pub(crate) camera: String,
    pub(crate) viewers: usize,
    pub(crate) connected: usize,
    pub(crate) failed: usize,
    pub(crate) failures: Vec<(String, usize)>,
    /// Connected viewers whose peer connection dropped during the window.
    pub(crate) dropped_in_window: usize,
    pub(crate) ramp_per_s: f64,
    /// Viewers offered NACK/TWCC feedback (browser-like).
    pub(crate) nack: bool,
    pub(crate) ice_check_interval_ms: Option<f64>,
    pub(crate) ramp_s: f64,
    pub(crate) window_s: f64,
    pub(crate) camera_fps: Option<f64>,
    pub(crate) camera_kbps: Option<f64>,
    /// POST → 201.
    pub(crate) answer_ms: Dist,
    /// POST → peer connection connected (ICE + DTLS).
    pub(crate) connected_ms: Dist,
    /// POST → first complete keyframe.
    pub(crate) first_frame_ms: Dist,
    pub(crate) first_frame_not_key: usize,
    /// Window, per connected viewer.
    pub(crate) frames_received_mean: f64,
    pub(crate) frames_received_min: u64,
    pub(crate) frames_received_max: u64,
    /// Δ vigil_frames_sent_total over the window / connected viewers.
    pub(crate) frames_sent_per_viewer: Option<f64>,
    /// camera fps × window, when the metric is missing.
    pub(crate) frames_expected_per_viewer: Option<f64>,
    /// frames_received_mean / (sent or expected).
    pub(crate) delivered_ratio: Option<f64>,
    pub(crate) frames_incomplete: u64,
    /// Frames missing between received frames (capture-time gaps > 1.5 frame intervals).
    pub(crate) frames_skipped: u64,
    /// AUs recorded (`.idx`) with capture times inside the window (--data-dir).
    pub(crate) source_frames_in_window: Option<usize>,
    /// Frames missing from the recording itself in the window (capture-time gaps in `.idx`):
    /// each viewer's `frames_skipped` share includes these.
    pub(crate) source_gaps_in_window: Option<u64>,
    pub(crate) packets_received: u64,
    pub(crate) packets_lost: u64,
    pub(crate) frames_without_sei: u64,
    pub(crate) frames_catchup: u64,
    pub(crate) mbps_per_viewer: f64,
    /// Capture (SEI) → last packet received, includes encoder time.
    pub(crate) latency_ms: Dist,
    /// Worst per-viewer p99 latency.
    pub(crate) latency_worst_viewer_p99_ms: Option<f64>,
    /// `.idx` record on disk → last packet received (with --data-dir).
    pub(crate) server_added_ms: Option<Dist>,
    /// Δ vigil_frames_dropped_total / connected viewers (server dropped to the next keyframe).
    pub(crate) frames_dropped_by_server_per_viewer: Option<f64>,
    /// Δsum/Δcount of vigil_au_latency_seconds: capture → the hub reading the AU from disk.
    pub(crate) server_capture_to_hub_mean_ms: Option<f64>,
    pub(crate) server_cpu_pct: Option<f64>,
    /// Descendants of --pid (vigil's capture processes: GStreamer + x264).
    pub(crate) children: Vec<u32>,
    pub(crate) children_cpu_pct: Option<f64>,
    pub(crate) children_rss_mb: Option<f64>,
    pub(crate) server_cpu_ramp_pct: Option<f64>,
    pub(crate) bench_cpu_pct: Option<f64>,
    pub(crate) machine_busy_pct: Option<f64>,
    /// Machine busy over 2 s before the ramp (other load sharing the machine).
    pub(crate) machine_busy_before_pct: Option<f64>,
    pub(crate) server_rss_mb_before: Option<f64>,
    pub(crate) server_rss_mb_window_start: Option<f64>,
    pub(crate) server_rss_mb_window_end: Option<f64>,
    pub(crate) server_rss_mb_window_max: Option<f64>,
    pub(crate) server_rss_mb_after_teardown: Option<f64>,
    pub(crate) server_threads_window_end: Option<u64>,
    pub(crate) delete_status: Vec<(u16, usize)>,
    /// Machine-wide /proc/net/snmp UDP counter deltas over the window (loopback: ours).
    pub(crate) udp_window: Vec<(String, u64)>,
    pub(crate) notes: Vec<String>,
}

fn f(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

/// The report as aligned text.
pub(crate) fn human(r: &Report) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<38} {v}\n"));
    row("target", format!("{}/whep/{}", r.url, r.camera));
    row("camera", format!("{} fps, {} kbps", f(r.camera_fps, 1), f(r.camera_kbps, 0)));
    row("viewers connected / failed", format!("{} / {} (of {})", r.connected, r.failed, r.viewers));
    for (e, n) in &r.failures {
        row("  failure", format!("{n} × {e}"));
    }
    row("ramp", format!("{:.1} viewers/s, {:.1} s", r.ramp_per_s, r.ramp_s));
    if !r.nack {
        row("feedback", "no NACK/TWCC offered (--no-nack)".into());
    }
    if let Some(ms) = r.ice_check_interval_ms {
        row("viewer ICE check interval", format!("{ms:.0} ms"));
    }
    row("window", format!("{:.1} s", r.window_s));
    row("answer (POST→201) p50 / p95", format!("{} / {} ms", f(r.answer_ms.p50, 1), f(r.answer_ms.p95, 1)));
    row(
        "connected (POST→ICE+DTLS) p50 / p95",
        format!("{} / {} ms", f(r.connected_ms.p50, 1), f(r.connected_ms.p95, 1)),
    );
    row(
        "first keyframe p50 / p95 / max",
        format!("{} / {} / {} ms", f(r.first_frame_ms.p50, 1), f(r.first_frame_ms.p95, 1), f(r.first_frame_ms.max, 1)),
    );
    if r.first_frame_not_key > 0 {
        row("first frame not a keyframe", format!("{} viewers", r.first_frame_not_key));
    }
    let sent = match (r.frames_sent_per_viewer, r.frames_expected_per_viewer) {
        (Some(s), _) => format!("{s:.1} sent ({FRAMES_SENT})"),
        (None, Some(e)) => format!("{e:.1} expected (fps × window)"),
        _ => "-".into(),
    };
    row(
        "frames/viewer recv mean [min, max]",
        format!("{:.1} [{}, {}] vs {}", r.frames_received_mean, r.frames_received_min, r.frames_received_max, sent),
    );
    row("delivered", r.delivered_ratio.map_or("-".into(), |d| format!("{:.2} %", d * 100.0)));
    if let Some(d) = r.frames_dropped_by_server_per_viewer {
        row("dropped by server per viewer", format!("{d:.1} ({FRAMES_DROPPED})"));
    }
    row(
        "skipped frames (capture-time gaps)",
        match (r.camera_fps, r.source_gaps_in_window, r.source_frames_in_window) {
            (None, ..) => "- (fps unknown)".into(),
            (Some(_), Some(g), Some(n)) => format!(
                "{} (all viewers); the recording itself: {g} gaps in {n} AUs captured in the window",
                r.frames_skipped
            ),
            _ => r.frames_skipped.to_string(),
        },
    );
    row(
        "incomplete frames / lost packets",
        format!("{} / {} of {}", r.frames_incomplete, r.packets_lost, r.packets_received),
    );
    row("dropped connections in window", r.dropped_in_window.to_string());
    if !r.udp_window.is_empty() {
        row(
            "UDP counters Δ (machine)",
            r.udp_window.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        );
    }
    row("Mbit/s per viewer", format!("{:.2}", r.mbps_per_viewer));
    row(
        "capture→receive p50 / p99 / max",
        format!(
            "{} / {} / {} ms (n={}, worst viewer p99 {} ms)",
            f(r.latency_ms.p50, 2),
            f(r.latency_ms.p99, 2),
            f(r.latency_ms.max, 2),
            r.latency_ms.n,
            f(r.latency_worst_viewer_p99_ms, 2)
        ),
    );
    if let Some(d) = &r.server_added_ms {
        row(
            "segment→receive p50 / p99 / max",
            format!("{} / {} / {} ms (n={}, min {} ms)", f(d.p50, 2), f(d.p99, 2), f(d.max, 2), d.n, f(d.min, 2)),
        );
    }
    if r.frames_without_sei > 0 || r.frames_catchup > 0 {
        row("frames w/o SEI / catch-up (not timed)", format!("{} / {}", r.frames_without_sei, r.frames_catchup));
    }
    if let Some(m) = r.server_capture_to_hub_mean_ms {
        row("capture→hub read mean (server metric)", format!("{m:.2} ms"));
    }
    row(
        "server CPU (window / ramp)",
        format!("{} % / {} % of one core", f(r.server_cpu_pct, 1), f(r.server_cpu_ramp_pct, 1)),
    );
    if !r.children.is_empty() {
        row(
            "capture children CPU / RSS",
            format!(
                "{} % of one core / {} MB (pids {:?})",
                f(r.children_cpu_pct, 1),
                f(r.children_rss_mb, 1),
                r.children
            ),
        );
    }
    row(
        "bench CPU / machine busy (before)",
        format!(
            "{} % of one core / {} % of all cores ({} % before the ramp)",
            f(r.bench_cpu_pct, 1),
            f(r.machine_busy_pct, 1),
            f(r.machine_busy_before_pct, 1)
        ),
    );
    row(
        "server RSS before/start/end/max/after",
        format!(
            "{} / {} / {} / {} / {} MB",
            f(r.server_rss_mb_before, 1),
            f(r.server_rss_mb_window_start, 1),
            f(r.server_rss_mb_window_end, 1),
            f(r.server_rss_mb_window_max, 1),
            f(r.server_rss_mb_after_teardown, 1)
        ),
    );
    if !r.delete_status.is_empty() {
        row("DELETE status", r.delete_status.iter().map(|(c, n)| format!("{n} × {c}")).collect::<Vec<_>>().join(", "));
    }
    for n in &r.notes {
        row("note", n.clone());
    }
    s
}
