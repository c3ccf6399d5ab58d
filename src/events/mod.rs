//! Events: the one in-process bus through which news leaves a room.
//!
//! Producers (the camera registry and runtime, activity, jobs, clips, streams, ...) publish
//! typed [`EventKind`]s on the [`Bus`]; subscribers at the edge turn them into Server-Sent
//! Events (`GET /api/events`, [`sse`]), MQTT messages and webhooks. No room calls MQTT or a
//! webhook itself, and no producer waits for a subscriber: the bus is a bounded broadcast, a
//! subscriber that falls behind loses the oldest events and is told how many
//! ([`Received::Lagged`]).
//!
//! Every event gets a process-wide increasing `id` and the time it was published. The bus
//! keeps the last [`REPLAY`] events so that an SSE client that reconnects with
//! `Last-Event-ID` gets what it missed (ids restart with the server; a client that presents
//! an id the bus never issued, or one from before the server started, gets no replay).
//!
//! Owns: the event types and their JSON form, the bus, the SSE route.
//! Must not touch: anything that produces events (it depends on no other room), MQTT or
//! webhook delivery (subscribers of their own).
//!
//! Adding an event: add a variant to [`EventKind`] (its `serde` name is the SSE `event:`
//! field and the `type` in JSON), publish it where it happens, document it in docs/api.md.

pub mod sse;

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Events kept for replay to reconnecting SSE clients, and the broadcast capacity.
pub const REPLAY: usize = 1024;

/// What happened. The variant's name is the event type (`camera_added`, ...).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A camera was added (from the API, or found in vigil.toml at start or on reload).
    CameraAdded,
    /// A camera's settings changed; `fields` names the keys that did.
    CameraChanged {
        /// The changed keys (`width`, `enabled`, ...).
        fields: Vec<String>,
    },
    /// A camera was removed.
    CameraRemoved,
    /// A camera's capture state changed (`starting`, `running`, `restarting`, `failed`,
    /// `offline`, `stopped`).
    CameraState {
        /// The new state.
        state: String,
        /// Why, when it is not running (one line, secrets masked).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Motion was confirmed on a camera: an activity range opened.
    ActivityStart {
        /// First confirmed motion (capture time, RFC 3339 UTC with milliseconds).
        start: String,
        /// The same as Unix milliseconds.
        start_ms: i64,
        /// Score so far: the largest moving blob, as a fraction of the picture.
        peak: f64,
    },
    /// An activity range closed after the camera's merge gap of stillness.
    ActivityEnd {
        /// First confirmed motion.
        start: String,
        /// Last motion.
        end: String,
        /// `start` as Unix milliseconds.
        start_ms: i64,
        /// `end` as Unix milliseconds.
        end_ms: i64,
        /// Highest score.
        peak: f64,
        /// When it was (Unix milliseconds): the moment to thumbnail.
        peak_ms: i64,
    },
}

impl EventKind {
    /// The event's type name, as in JSON and the SSE `event:` field.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CameraAdded => "camera_added",
            EventKind::CameraChanged { .. } => "camera_changed",
            EventKind::CameraRemoved => "camera_removed",
            EventKind::CameraState { .. } => "camera_state",
            EventKind::ActivityStart { .. } => "activity_start",
            EventKind::ActivityEnd { .. } => "activity_end",
        }
    }

    /// `activity_start` for a range that opened at `start_us` (µs since the epoch).
    pub fn activity_start(start_us: i64, peak: f64) -> Self {
        EventKind::ActivityStart { start: rfc3339_ms(start_us), start_ms: start_us.div_euclid(1000), peak }
    }

    /// `activity_end` for a range `start_us..=end_us` that peaked at `peak_us`.
    pub fn activity_end(start_us: i64, end_us: i64, peak: f64, peak_us: i64) -> Self {
        EventKind::ActivityEnd {
            start: rfc3339_ms(start_us),
            end: rfc3339_ms(end_us),
            start_ms: start_us.div_euclid(1000),
            end_ms: end_us.div_euclid(1000),
            peak,
            peak_ms: peak_us.div_euclid(1000),
        }
    }
}

/// One published event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Increasing per server process, from 1.
    pub id: u64,
    /// When it was published, µs since the Unix epoch (UTC).
    #[serde(skip)]
    pub time_us: i64,
    /// The same time as RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The camera it concerns, if any (subscribers filter by it: a caller sees the events of
    /// the cameras it may see, and events of no camera).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// What happened, flattened into the JSON object (`"type": "...", ...fields`).
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The JSON object subscribers send.
    pub fn to_json(&self) -> String {
        // Serialising plain data (strings, numbers, options) cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Received {
    /// The next event.
    Event(Arc<Event>),
    /// The subscriber fell behind and this many events were dropped for it.
    Lagged(u64),
    /// The bus is gone (server shutting down).
    Closed,
}

/// A subscription to the bus.
pub struct Subscriber(broadcast::Receiver<Arc<Event>>);

impl Subscriber {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        match self.0.recv().await {
            Ok(e) => Received::Event(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Received::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

struct Inner {
    tx: broadcast::Sender<Arc<Event>>,
    next_id: AtomicU64,
    recent: Mutex<VecDeque<Arc<Event>>>,
}

/// The bus. Cheap to clone; every clone publishes to the same subscribers.
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("next_id", &self.0.next_id.load(Ordering::Relaxed)).finish()
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Bus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            tx: broadcast::channel(REPLAY).0,
            next_id: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::with_capacity(REPLAY)),
        }))
    }

    /// Publishes `kind` about `camera` now; returns the event. Never waits.
    pub fn publish(&self, camera: Option<&str>, kind: EventKind) -> Arc<Event> {
        self.publish_at(camera, kind, now_us())
    }

    /// Publishes `kind` as having happened at `time_us` (µs since the epoch): for events
    /// whose time is a capture time rather than the time of publishing.
    pub fn publish_at(&self, camera: Option<&str>, kind: EventKind, time_us: i64) -> Arc<Event> {
        // The ring lock also orders ids: the replay buffer and the broadcast see the same
        // order, so a reconnecting client never gets an event twice or misses one.
        let mut recent = self.0.recent.lock().unwrap_or_else(|p| p.into_inner());
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(Event { id, time_us, time: rfc3339_ms(time_us), camera: camera.map(str::to_owned), kind });
        if recent.len() == REPLAY {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // No subscriber is fine.
        let _ = self.0.tx.send(event.clone());
        metrics::counter!("vigil_events_total", "type" => event.kind.name()).increment(1);
        event
    }

    /// A subscription from now on.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber(self.0.tx.subscribe())
    }

    /// A subscription plus the kept events with an id above `after` (for `Last-Event-ID`),
    /// taken atomically so nothing falls between the two. `after` = 0 replays nothing.
    pub fn subscribe_after(&self, after: u64) -> (Vec<Arc<Event>>, Subscriber) {
        let recent = self.0.recent.lock().unwrap_or_else(|p| p.into_inner());
        let sub = Subscriber(self.0.tx.subscribe());
        let issued = self.0.next_id.load(Ordering::Relaxed);
        let missed = if after == 0 || after >= issued {
            Vec::new()
        } else {
            recent.iter().filter(|e| e.id > after).cloned().collect()
        };
        (missed, sub)
    }
}

/// `2026-12-05T15:45:08.123Z` for µs since the epoch.
pub fn rfc3339_ms(us: i64) -> String {
    let ms = us.div_euclid(1000);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::segment::path::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem / 60) % 60, rem % 60, ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order_with_ids() {
        let bus = Bus::new();
        let mut a = bus.subscribe();
        bus.publish(Some("front"), EventKind::CameraAdded);
        bus.publish(None, EventKind::CameraRemoved);
        let Received::Event(e1) = a.recv().await else { panic!("no event") };
        let Received::Event(e2) = a.recv().await else { panic!("no event") };
        assert_eq!((e1.id, e2.id), (1, 2));
        assert_eq!(e1.camera.as_deref(), Some("front"));
        let j: serde_json::Value = serde_json::from_str(&e1.to_json()).unwrap();
        assert_eq!(j["type"], "camera_added");
        assert_eq!(j["camera"], "front");
        assert_eq!(j["id"], 1);
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_lost() {
        let bus = Bus::new();
        let mut slow = bus.subscribe();
        for _ in 0..REPLAY + 10 {
            bus.publish(None, EventKind::CameraAdded);
        }
        assert!(matches!(slow.recv().await, Received::Lagged(10)));
        let Received::Event(e) = slow.recv().await else { panic!("no event after lag") };
        assert_eq!(e.id, 11);
    }

    #[test]
    fn replay_after_an_id() {
        let bus = Bus::new();
        for _ in 0..5 {
            bus.publish(None, EventKind::CameraAdded);
        }
        let (missed, _) = bus.subscribe_after(3);
        assert_eq!(missed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
        // An id never issued (another server's) or none: no replay.
        assert!(bus.subscribe_after(99).0.is_empty());
        assert!(bus.subscribe_after(0).0.is_empty());
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_485_508_123_456), "2026-12-05T15:45:08.123Z");
    }
}
