//! The axum application: mounts the pages, the JSON API, health, metrics and the WHEP
//! and WHIP routes of the `signaling` crate. One place maps application errors to statuses.

use crate::live::whep::Live;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::sync::Arc;

/// What handlers can reach.
#[derive(Clone)]
pub struct AppState {
    /// What runs for each camera (statuses).
    pub runtime: Arc<crate::server::runtime::Runtime>,
    /// Live viewing (hubs and WHEP sessions).
    pub live: Arc<Live>,
    /// WHIP publishers.
    pub ingest: Arc<crate::ingest::whip::Ingest>,
    /// The Prometheus recorder, rendered at `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// TLS state, reported by `/api/status`.
    pub tls: Arc<crate::tls::TlsStatus>,
}

/// The whole router.
pub fn app(state: AppState, signaling_cfg: signaling::Config) -> Router {
    let media = Arc::new(crate::media::Media { live: state.live.clone(), ingest: state.ingest.clone() });
    let whep = signaling::router(media, signaling_cfg);
    Router::new()
        .route("/", get(index))
        .route("/live/latency.js", get(|| module(include_str!("../web/live/latency.js"))))
        .route("/live/view.js", get(|| module(include_str!("../web/live/view.js"))))
        .route("/live/page.js", get(|| module(include_str!("../web/live/page.js"))))
        .route("/live/kiosk.js", get(|| module(include_str!("../web/live/kiosk.js"))))
        .route("/kiosk", get(kiosk_html))
        .route("/history", get(history_html))
        .route("/history.js", get(history_js))
        .route("/style.css", get(style_css))
        .route("/publish/{camera}", get(publish_html))
        .route("/publish.js", get(publish_js))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .with_state(state)
        .merge(whep)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

/// A plain-text error: `status` and one line of reason (the API's error format).
/// `If-None-Match` against a resource's entity tag (RFC 9110 §13.1.2): a `*` or any tag of
/// the comma-separated list that matches `etag` by weak comparison (`W/"x"` matches `"x"`).
/// `true`: answer `304 Not Modified` (with the ETag).
pub fn none_match(headers: &axum::http::HeaderMap, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || (!t.is_empty() && opaque(t) == want))
}

pub fn plain_error(status: StatusCode, msg: &str) -> Response {
    let line: String = msg.lines().next().unwrap_or("").chars().take(300).collect();
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{line}\n")).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", include_str!("../web/index.html"))
}

/// A page script (an ES module).
async fn module(body: &'static str) -> Response {
    asset("text/javascript; charset=utf-8", body)
}

async fn kiosk_html() -> Response {
    asset("text/html; charset=utf-8", include_str!("../web/kiosk.html"))
}

async fn publish_html() -> Response {
    asset("text/html; charset=utf-8", include_str!("../web/publish.html"))
}

async fn publish_js() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../web/publish.js"))
}

async fn history_html() -> Response {
    asset("text/html; charset=utf-8", include_str!("../web/history.html"))
}

async fn history_js() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../web/history.js"))
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", include_str!("../web/style.css"))
}

async fn metrics(State(st): State<AppState>) -> Response {
    crate::procfs::refresh();
    match &st.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response(),
    }
}

#[derive(Serialize)]
struct StatusJson {
    version: &'static str,
    tls: crate::tls::status::TlsSnapshot,
}

async fn status(State(st): State<AppState>) -> Response {
    axum::Json(StatusJson { version: env!("CARGO_PKG_VERSION"), tls: st.tls.snapshot() }).into_response()
}

#[cfg(test)]
mod tests {
    use super::none_match;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_none_match_takes_lists_star_and_weak_tags() {
        let tag = "\"abc\"";
        assert!(none_match(&with(&["\"abc\""]), tag));
        assert!(none_match(&with(&["\"x\", \"abc\""]), tag));
        assert!(none_match(&with(&["\"x\"", "\"abc\""]), tag), "several header lines");
        assert!(none_match(&with(&["*"]), tag));
        assert!(none_match(&with(&["W/\"abc\""]), tag), "weak comparison");
        assert!(!none_match(&with(&["\"abcd\", \"ab\""]), tag));
        assert!(!none_match(&with(&[""]), tag));
        assert!(!none_match(&HeaderMap::new(), tag));
    }
}
