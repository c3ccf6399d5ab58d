//! Login rate limiting: failed attempts counted per client address and per user name in a
//! sliding window. Sans-IO: callers pass `now`.
//!
//! An attempt is refused (429) while either its address or its user name has
//! `max_failures` failures younger than `window`; `Retry-After` is when the oldest of those
//! leaves the window. Refused attempts are not counted and do not check the password. A
//! successful login clears its user name's failures (not its address's: one valid account
//! must not let an address reset its budget for guessing others). IPv6 clients are counted
//! per /64, since one host usually holds a whole /64. Names that are not users are counted
//! like real ones, so a 429 says nothing about which names exist.
//!
//! Memory is bounded: past [`MAX_KEYS`] keys, expired ones are dropped, and if that is not
//! enough the map is cleared (the limiter forgets, it never grows without bound).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Keys (addresses plus names) remembered at most.
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(String),
}

/// The limiter.
#[derive(Debug)]
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: HashMap<Key, VecDeque<Instant>>,
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// the IPv4 address).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn user_key(name: &str) -> Key {
    // Bound what one key can hold; names longer than this are refused anyway.
    Key::User(name.chars().take(128).collect())
}

impl LoginLimiter {
    /// `max_failures` per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max: max_failures.max(1) as usize, window, failures: HashMap::new() }
    }

    fn retry_after(&mut self, key: &Key, now: Instant) -> Option<Duration> {
        let q = self.failures.get_mut(key)?;
        while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() < self.max {
            return None;
        }
        let oldest = *q.front()?;
        Some(self.window.saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// `Err(retry_after)` if an attempt from `addr` for `user` must wait.
    pub fn check(&mut self, addr: Option<IpAddr>, user: &str, now: Instant) -> Result<(), Duration> {
        let a = addr.map(|ip| self.retry_after(&Key::Addr(client_key(ip)), now)).unwrap_or(None);
        let u = self.retry_after(&user_key(user), now);
        match a.max(u) {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub fn failure(&mut self, addr: Option<IpAddr>, user: &str, now: Instant) {
        if self.failures.len() >= MAX_KEYS {
            let window = self.window;
            self.failures.retain(|_, q| q.back().is_some_and(|t| now.saturating_duration_since(*t) < window));
            if self.failures.len() >= MAX_KEYS {
                tracing::warn!(keys = self.failures.len(), "login limiter full: forgetting past failures");
                self.failures.clear();
            }
        }
        let max = self.max;
        let mut push = |k: Key| {
            let q = self.failures.entry(k).or_default();
            q.push_back(now);
            while q.len() > max {
                q.pop_front();
            }
        };
        if let Some(ip) = addr {
            push(Key::Addr(client_key(ip)));
        }
        push(user_key(user));
    }

    /// A successful login: the user name's failures are forgotten.
    pub fn success(&mut self, user: &str) {
        self.failures.remove(&user_key(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_per_address() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = LoginLimiter::new(3, s(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..3 {
            assert!(l.check(Some(a), "alice", t0 + s(i)).is_ok());
            l.failure(Some(a), "alice", t0 + s(i));
        }
        // The address is out of attempts, for every name; the name from every address.
        assert_eq!(l.check(Some(a), "bob", t0 + s(3)), Err(s(57)));
        assert_eq!(l.check(Some(b), "alice", t0 + s(3)), Err(s(57)));
        assert!(l.check(Some(b), "bob", t0 + s(3)).is_ok());
        // The oldest failure leaves the window: one more attempt.
        assert!(l.check(Some(a), "alice", t0 + s(60)).is_ok());
        // Success clears the name, not the address.
        l.failure(Some(a), "alice", t0 + s(60));
        l.success("alice");
        assert!(l.check(Some(b), "alice", t0 + s(60)).is_ok());
        assert!(l.check(Some(a), "carol", t0 + s(60)).is_err());
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(client_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        let t0 = Instant::now();
        let mut l = LoginLimiter::new(1, Duration::from_secs(60));
        l.failure(Some("2001:db8::1".parse().unwrap()), "x", t0);
        assert!(l.check(Some("2001:db8::ffff".parse().unwrap()), "y", t0).is_err());
    }
}
