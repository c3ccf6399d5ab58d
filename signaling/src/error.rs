//! The one error type of signaling, and its mapping to HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a signaling request was refused. The message is a one-line reason sent to the
/// client, except for [`SignalError::Internal`], whose detail is logged and hidden.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignalError {
    /// 400: malformed SDP, sdpfrag or request.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong bearer token (sent with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown resource or session.
    #[error("{0}")]
    NotFound(String),
    /// 405: the method is not supported here (e.g. ICE restart where unsupported).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: the offer has nothing the server can use (e.g. no H.264 video).
    #[error("{0}")]
    NotAcceptable(String),
    /// 409: the resource is busy (e.g. a publisher is already live).
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` does not match the session's ETag.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many requests or sessions from this client.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the resource cannot take a session now (not running, limits reached).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the detail goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SignalError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            SignalError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SignalError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            SignalError::Forbidden(_) => StatusCode::FORBIDDEN,
            SignalError::NotFound(_) => StatusCode::NOT_FOUND,
            SignalError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            SignalError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            SignalError::Conflict(_) => StatusCode::CONFLICT,
            SignalError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            SignalError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SignalError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SignalError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            SignalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SignalError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for SignalError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = match &self {
            SignalError::Internal(detail) => {
                tracing::error!(%detail, "signaling internal error");
                "internal error (see server log)".to_owned()
            }
            other => other.to_string(),
        };
        // One line, always.
        let mut line: String = reason.lines().next().unwrap_or("error").chars().take(300).collect();
        line.push('\n');
        let mut resp = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response();
        if matches!(self, SignalError::Unauthorized(_)) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
