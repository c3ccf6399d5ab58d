//! Process gauges read from `/proc` when `/metrics` is scraped, so that leaks show up
//! without a debugger: open file descriptors, UDP and TCP sockets (WebRTC peer connections
//! bind UDP sockets of their own), threads, and the tokio runtime's live tasks.
//!
//! ```text
//! vigil_process_open_fds      vigil_process_udp_sockets   vigil_process_tcp_sockets
//! vigil_process_threads       vigil_tokio_alive_tasks
//! ```
//! Linux only; elsewhere (or if `/proc` is unreadable) the gauges are not set. Reads only.

use std::collections::HashSet;

/// Sets the gauges above from `/proc/self` and the current tokio runtime.
pub fn refresh() {
    let mut sockets = HashSet::new();
    let mut fds = 0usize;
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            fds += 1;
            if let Some(inode) = std::fs::read_link(e.path()).ok().as_ref().and_then(|l| socket_inode(l.to_str()?)) {
                sockets.insert(inode);
            }
        }
        metrics::gauge!("vigil_process_open_fds").set(fds as f64);
        let ours = |tables: &[&str]| tables.iter().map(|t| count_ours(t, &sockets)).sum::<usize>() as f64;
        metrics::gauge!("vigil_process_udp_sockets").set(ours(&["/proc/self/net/udp", "/proc/self/net/udp6"]));
        metrics::gauge!("vigil_process_tcp_sockets").set(ours(&["/proc/self/net/tcp", "/proc/self/net/tcp6"]));
    }
    if let Some(n) = std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(threads) {
        metrics::gauge!("vigil_process_threads").set(n as f64);
    }
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("vigil_tokio_alive_tasks").set(h.metrics().num_alive_tasks() as f64);
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Rows of a `/proc/net/{udp,tcp}[6]` table whose inode (10th column) is one of `ours`:
/// the table lists the whole network namespace.
fn count_ours(table: &str, ours: &HashSet<u64>) -> usize {
    let Ok(text) = std::fs::read_to_string(table) else { return 0 };
    count_in_table(&text, ours)
}

fn count_in_table(text: &str, ours: &HashSet<u64>) -> usize {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(9)?.parse::<u64>().ok())
        .filter(|i| ours.contains(i))
        .count()
}

fn threads(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(socket_inode("socket:[22626]"), Some(22626));
        assert_eq!(socket_inode("/dev/null"), None);
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   \x20  0: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 22626 2 0000000000000000 0\n\
                   \x20  1: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99999 2 0000000000000000 0\n";
        assert_eq!(count_in_table(udp, &HashSet::from([22626, 5])), 1);
        assert_eq!(threads("Name:\tvigil\nThreads:\t17\n"), Some(17));
    }

    #[test]
    fn counts_a_socket_of_this_process() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut inodes = HashSet::new();
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if let Some(i) = std::fs::read_link(e.path()).ok().as_ref().and_then(|l| socket_inode(l.to_str()?)) {
                inodes.insert(i);
            }
        }
        assert!(count_ours("/proc/self/net/udp", &inodes) >= 1);
        drop(s);
    }
}
