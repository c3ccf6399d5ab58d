//! Limits on what one HTTP client can make the server hold, none of which needs a user:
//! how long it may take to send its request headers and its body, and how large a body may
//! be. (WHEP sessions per client address are counted where sessions live, in
//! `live::whep`.) Every refusal is a status with a one-line plain-text reason.
//!
//! - Headers: hyper closes a connection whose request headers (or, on an idle keep-alive
//!   connection, the next request's) do not arrive within `request_header_timeout`. hyper
//!   only enforces that with a timer, which `axum::serve` does not install, so plain-HTTP
//!   listeners are served by [`serve`] here and the HTTPS server gets the same settings
//!   through [`configure_auto`]. On HTTPS, hyper first reads up to 24 bytes to tell HTTP/1
//!   from HTTP/2, with no timeout of its own: [`PrefaceDeadline`] (through
//!   [`DeadlineAcceptor`]) fails the connection if those bytes are not in within the header
//!   timeout, so a client that completes TLS and then says nothing is not held forever.
//! - Bodies: the [`body_guard`] middleware reads every request body up front, at most
//!   `max_request_body_bytes` (413) within `request_body_timeout` (408), then hands the
//!   buffered body on. vigil's bodies are small (SDP, trickle fragments), so buffering them
//!   costs nothing and no handler can forget a limit.
//!
//! Must not touch: routing, sessions, authentication.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The limits, from `[server]` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest wait for a request's headers (also the idle time of a keep-alive connection).
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body.
    pub body_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl HttpLimits {
    /// The limits `[server]` sets, checked.
    pub fn from_config(server: &crate::config::ServerConfig) -> Result<Self, String> {
        let ok = Duration::from_millis(100)..=Duration::from_secs(3600);
        for (name, d) in [
            ("request_header_timeout", server.request_header_timeout),
            ("request_body_timeout", server.request_body_timeout),
        ] {
            if !ok.contains(&d.0) {
                return Err(format!("{name} {d} out of range 100ms-1h"));
            }
        }
        if !(1024..=16 << 20).contains(&server.max_request_body_bytes) {
            return Err(format!("max_request_body_bytes {} out of range 1024-16777216", server.max_request_body_bytes));
        }
        Ok(Self {
            header_timeout: server.request_header_timeout.0,
            body_timeout: server.request_body_timeout.0,
            max_body_bytes: server.max_request_body_bytes,
        })
    }
}

/// A refusal: status and one line, and the connection is not kept (the rest of the body
/// was not read).
fn refuse(status: StatusCode, reason: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{reason}\n")).into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Middleware: reads the request body within the limits (see the module docs).
pub async fn body_guard(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    let max = limits.max_body_bytes;
    let too_large = || refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {max} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {} s", limits.body_timeout.as_secs_f64()),
        ),
        Ok(Err(refusal)) => refusal,
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
    }
}

/// The router with [`body_guard`] in front of every route.
pub fn guard_bodies(router: Router, limits: HttpLimits) -> Router {
    router.layer(axum::middleware::from_fn_with_state(limits, body_guard))
}

/// Applies the header timeout (and the timer hyper needs for it) to an HTTP/1 + HTTP/2
/// connection builder, such as axum-server's.
pub fn configure_auto(builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>, limits: HttpLimits) {
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // HTTP/2: pings find peers that went away without closing.
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
}

/// How many bytes hyper's HTTP/1-or-2 detection reads (the HTTP/2 connection preface).
const PREFACE_LEN: usize = 24;

/// A stream whose reads fail with `TimedOut` if fewer than [`PREFACE_LEN`] bytes have arrived
/// by a deadline; after that it is the stream itself. Writes pass through.
pub struct PrefaceDeadline<S> {
    inner: S,
    read: usize,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> PrefaceDeadline<S> {
    /// Wraps `inner`; the deadline is `timeout` from now.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, read: 0, deadline: Some(Box::pin(tokio::time::sleep(timeout))) }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for PrefaceDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read += buf.filled().len() - before;
                if this.read >= PREFACE_LEN {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within the header timeout");
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for PrefaceDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An axum-server acceptor that wraps what `inner` accepts (the TLS stream) in
/// [`PrefaceDeadline`].
#[derive(Debug, Clone)]
pub struct DeadlineAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> DeadlineAcceptor<A> {
    /// Wraps `inner`, with the deadline `timeout` after the inner accept completes.
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A, I, S> axum_server::accept::Accept<I, S> for DeadlineAcceptor<A>
where
    A: axum_server::accept::Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = PrefaceDeadline<A::Stream>;
    type Service = A::Service;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send + 'static>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((PrefaceDeadline::new(stream, timeout), service))
        })
    }
}

/// Serves `router` over plain HTTP/1.1 on `listener` with the header timeout, handing
/// handlers the client address (`ConnectInfo<SocketAddr>`), until `shutdown` resolves; then
/// waits up to 5 s for requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::debug!("HTTP connections still open after 5 s; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(limits: HttpLimits) -> Router {
        guard_bodies(Router::new().route("/echo", post(|b: axum::body::Bytes| async move { b })), limits)
    }

    #[test]
    fn from_config() {
        use crate::config::{Config, HumanDuration};
        let mut cfg = Config::default_with_test_camera();
        let l = HttpLimits::from_config(&cfg.server).unwrap();
        assert_eq!((l.header_timeout, l.max_body_bytes), (Duration::from_secs(10), 65536));
        cfg.server.request_header_timeout = HumanDuration(Duration::ZERO);
        assert!(cfg.validate().unwrap_err().to_string().contains("request_header_timeout"));
        cfg.server.request_header_timeout = HumanDuration(Duration::from_secs(5));
        cfg.server.max_request_body_bytes = 10;
        assert!(cfg.validate().unwrap_err().to_string().contains("max_request_body_bytes"));
    }

    #[tokio::test]
    async fn bodies_are_bounded() {
        let limits = HttpLimits { max_body_bytes: 10, ..Default::default() };
        let send = |body: Body, len: Option<&str>| {
            let mut r = axum::http::Request::post("/echo");
            if let Some(l) = len {
                r = r.header("content-length", l);
            }
            app(limits).oneshot(r.body(body).unwrap())
        };
        let r = send(Body::from("0123456789"), None).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = send(Body::from("0123456789a"), None).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = send(Body::empty(), Some("99999999999")).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A streamed (chunked) body over the limit.
        let chunks = futures_util::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 4])));
        let r = send(Body::from_stream(chunks), None).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(r.into_body(), 1000).await.unwrap();
        assert_eq!(body, "request body larger than 10 bytes\n");
    }

    #[tokio::test]
    async fn a_silent_stream_fails_after_the_deadline_and_a_talking_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (_client, server) = tokio::io::duplex(64);
        let mut silent = PrefaceDeadline::new(server, Duration::from_millis(100));
        let e = silent.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = PrefaceDeadline::new(server, Duration::from_millis(100));
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(talking.read(&mut buf).await.unwrap(), 27);
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(b"more").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 4, "no deadline once the preface is in");
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_408() {
        let limits = HttpLimits { body_timeout: Duration::from_millis(200), ..Default::default() };
        let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        let req = axum::http::Request::post("/echo").body(Body::from_stream(never)).unwrap();
        let r = app(limits).oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
