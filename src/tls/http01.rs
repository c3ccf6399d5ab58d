//! The plain-HTTP listener (`[tls] http_listen`) when HTTPS is on: it answers ACME HTTP-01
//! challenges at `/.well-known/acme-challenge/{token}` and redirects everything else to the
//! same host and path over HTTPS (`308`, so a POST stays a POST).

use super::acme::Challenges;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Clone)]
struct St {
    challenges: Challenges,
    https_port: u16,
}

/// The router for `http_listen`; `https_port` is the port redirects point to.
pub fn router(challenges: Challenges, https_port: u16) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(St { challenges, https_port })
}

async fn challenge(State(st): State<St>, Path(token): Path<String>) -> Response {
    match st.challenges.get(&token) {
        Some(key_authorization) => {
            tracing::info!(%token, "answered ACME http-01 challenge");
            ([(header::CONTENT_TYPE, "application/octet-stream")], key_authorization).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

async fn redirect(State(st): State<St>, headers: axum::http::HeaderMap, uri: Uri) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.host());
    let Some(host) = host.and_then(host_only) else {
        return (StatusCode::BAD_REQUEST, "missing or invalid Host header\n").into_response();
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if st.https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{}{pq}", st.https_port)
    };
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)], "use HTTPS\n").into_response()
}

/// The host part of a `Host` header (port removed; IPv6 literals keep their brackets), or
/// `None` if it has characters no host name or address has.
fn host_only(h: &str) -> Option<&str> {
    let host = if h.starts_with('[') {
        let end = h.find(']')?;
        &h[..=end]
    } else {
        h.rsplit_once(':').map_or(h, |(a, _)| a)
    };
    let ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_only("cam.example.org"), Some("cam.example.org"));
        assert_eq!(host_only("cam.example.org:80"), Some("cam.example.org"));
        assert_eq!(host_only("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_only("[::1]"), Some("[::1]"));
        assert_eq!(host_only("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(host_only(""), None);
        assert_eq!(host_only("evil.org/x"), None);
        assert_eq!(host_only("a b"), None);
        assert_eq!(host_only("[::1"), None);
    }
}
