//! `GET /api/events`: the bus as Server-Sent Events (WHATWG HTML §9.2).
//!
//! Each event is sent as `id: <id>`, `event: <type>`, `data: <one JSON object>`. Query
//! filters: `types=a,b` (event types), `camera=a,b`. A caller only gets events about the
//! cameras it may see (and events about no camera). A reconnecting `EventSource` sends
//! `Last-Event-ID` and gets the events it missed, if the bus still holds them. A client that
//! falls more than [`super::REPLAY`] events behind gets a `lagged` event with the number lost
//! and carries on. A comment line every 15 s keeps proxies from closing an idle stream.

use super::{Bus, Event, Received};
use crate::auth::Access;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The route.
pub fn router<S: Clone + Send + Sync + 'static>(bus: Bus) -> Router<S> {
    Router::new().route("/api/events", axum::routing::get(events)).with_state(bus)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Filter {
    types: Option<String>,
    camera: Option<String>,
}

struct Wanted {
    types: Option<Vec<String>>,
    cameras: Option<Vec<String>>,
    access: Option<Access>,
}

impl Wanted {
    fn wants(&self, e: &Event) -> bool {
        if let Some(t) = &self.types
            && !t.iter().any(|t| t == e.kind.name())
        {
            return false;
        }
        match &e.camera {
            None => true,
            Some(c) => {
                self.cameras.as_ref().is_none_or(|l| l.iter().any(|x| x == c))
                    && self.access.as_ref().is_none_or(|a| a.may_see(c))
            }
        }
    }
}

fn list(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
}

async fn events(
    State(bus): State<Bus>,
    access: Option<axum::Extension<Access>>,
    headers: HeaderMap,
    filter: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    let Query(filter) = match filter {
        Ok(f) => f,
        Err(e) => {
            return (axum::http::StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())).into_response();
        }
    };
    let wanted =
        Arc::new(Wanted { types: list(filter.types), cameras: list(filter.camera), access: access.map(|a| a.0) });
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (missed, sub) = bus.subscribe_after(after);
    let state = (VecDeque::from(missed), sub, wanted);
    let stream = stream::unfold(state, |(mut backlog, mut sub, wanted)| async move {
        loop {
            let next = match backlog.pop_front() {
                Some(e) => Received::Event(e),
                None => sub.recv().await,
            };
            match next {
                Received::Event(e) if wanted.wants(&e) => {
                    let ev = axum::response::sse::Event::default()
                        .id(e.id.to_string())
                        .event(e.kind.name())
                        .data(e.to_json());
                    return Some((Ok::<_, Infallible>(ev), (backlog, sub, wanted)));
                }
                Received::Event(_) => continue,
                Received::Lagged(n) => {
                    let ev = axum::response::sse::Event::default().event("lagged").data(format!("{{\"lost\":{n}}}"));
                    return Some((Ok(ev), (backlog, sub, wanted)));
                }
                Received::Closed => return None,
            }
        }
    });
    sse(stream)
}

fn sse<S>(stream: S) -> axum::response::Response
where
    S: Stream<Item = Result<axum::response::sse::Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")).into_response()
}
