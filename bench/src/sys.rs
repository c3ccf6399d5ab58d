//! /proc readings (server CPU and memory, the bench's own CPU, whole-machine CPU) and the
//! Prometheus text parser.

use std::time::Instant;

/// `/proc/<pid>/stat` and `/proc/stat` count in USER_HZ, which Linux fixes at 100 for
/// user space on every architecture we run on.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    /// utime + stime, in ticks.
    pub ticks: u64,
}

/// utime + stime of a process (`pid` = "self" for the bench).
pub fn proc_cpu(pid: &str) -> Option<CpuSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces: fields after the last ')' start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // field 14 utime, 15 stime → index 11, 12 after "state" (field 3) at index 0
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(CpuSample { at: Instant::now(), ticks: utime + stime })
}

/// Every descendant of `pid` (e.g. vigil's `capture` children), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            let Some(close) = stat.rfind(')') else { continue };
            let ppid = stat[close + 2..].split_whitespace().nth(1).and_then(|x| x.parse().ok());
            if let Some(pp) = ppid {
                parent.push((p, pp));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(c, pp) in &parent {
            if pp == q && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// utime + stime summed over `pids` (missing ones skipped), with the pids that answered.
pub fn procs_cpu(pids: &[u32]) -> (u64, Vec<u32>) {
    let mut t = 0;
    let mut ok = vec![];
    for p in pids {
        if let Some(s) = proc_cpu(&p.to_string()) {
            t += s.ticks;
            ok.push(*p);
        }
    }
    (t, ok)
}

/// Percent of one core used between two samples.
pub fn cpu_percent(a: CpuSample, b: CpuSample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (b.ticks.saturating_sub(a.ticks)) as f64 / USER_HZ / secs * 100.0
}

/// (busy, total) jiffies of the whole machine from the `cpu` line of /proc/stat.
pub fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Busy share of all cores between two `machine_cpu` readings, in % of the whole machine.
pub fn machine_busy_percent(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64 * 100.0
}

/// Machine-wide UDP counters from /proc/net/snmp (name → value), e.g. RcvbufErrors.
pub fn udp_counters() -> Vec<(String, u64)> {
    let Ok(t) = std::fs::read_to_string("/proc/net/snmp") else { return vec![] };
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() < 2 {
        return vec![];
    }
    lines[0]
        .split_whitespace()
        .skip(1)
        .zip(lines[1].split_whitespace().skip(1))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// VmRSS in MiB.
pub fn rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Number of threads of a process.
pub fn threads(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of every sample of `name` in Prometheus text. When samples carry a `camera` label, only
/// those for `camera` are summed. `None` when the metric is absent.
pub fn prom_sum(text: &str, name: &str, camera: &str) -> Option<f64> {
    let mut found: Vec<(Option<bool>, f64)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        if &line[..name_end] != name {
            continue;
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            let Some(close) = line.rfind('}') else { continue };
            (&line[name_end + 1..close], &line[close + 1..])
        } else {
            ("", &line[name_end..])
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let cam = labels.split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == "camera").then(|| v.trim().trim_matches('"') == camera)
        });
        found.push((cam, value));
    }
    if found.is_empty() {
        return None;
    }
    let labelled = found.iter().any(|(c, _)| c.is_some());
    Some(found.iter().filter(|(c, _)| !labelled || *c == Some(true)).map(|(_, v)| v).sum())
}

/// Nearest-rank percentile of sorted data.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prom() {
        let t = "# HELP x\n# TYPE vigil_frames_sent_total counter\n\
                 vigil_frames_sent_total{camera=\"test\",viewer=\"a\"} 10\n\
                 vigil_frames_sent_total{camera=\"other\"} 5\n\
                 vigil_frames_sent_total{camera=\"test\",viewer=\"b\"} 2.5e1\n\
                 vigil_frames_sent_total_x 99\n";
        assert_eq!(prom_sum(t, "vigil_frames_sent_total", "test"), Some(35.0));
        assert_eq!(prom_sum("vigil_frames_sent_total 7\n", "vigil_frames_sent_total", "t"), Some(7.0));
        assert_eq!(prom_sum("foo 1\n", "vigil_frames_sent_total", "t"), None);
    }

    #[test]
    fn pct() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[5u32], 99.0), Some(5));
    }

    #[test]
    fn self_stat() {
        assert!(proc_cpu("self").is_some());
        assert!(rss_mb("self").unwrap() > 0.0);
    }
}
