//! The refusals of the auth layer and its routes, each one status and a one-line reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// 400: a malformed login or share request.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or wrong ones; sent with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: known caller, not allowed here; or a bad or expired share link.
    #[error("{0}")]
    Forbidden(String),
    /// 404: e.g. logging in on a server without authentication.
    #[error("{0}")]
    NotFound(String),
    /// 429: too many failed logins; `Retry-After` in whole seconds.
    #[error("{0}")]
    TooManyRequests(String, Duration),
    /// 500: detail logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = match &self {
            AuthError::Internal(detail) => {
                tracing::error!(%detail, "auth");
                "internal error (see server log)".to_owned()
            }
            other => other.to_string(),
        };
        let mut line: String = reason.lines().next().unwrap_or("refused").chars().take(300).collect();
        line.push('\n');
        let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            AuthError::Unauthorized(_) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vigil\""));
            }
            AuthError::TooManyRequests(_, after) => {
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        r
    }
}
