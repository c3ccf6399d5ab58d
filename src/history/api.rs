//! The history HTTP API: recorded ranges and MP4 export.
//!
//! ```text
//! GET /api/cameras/{camera}/recordings?start=&end=[&segments=true]   runs [{start,end}] (+ segments)
//! GET /api/cameras/{camera}/video.mp4?start=&end=                    MP4, moov first, Range → 206, ETag
//! GET /api/cameras/{camera}/snapshot.jpg[?t=]                         JPEG of the latest frame or the frame at t
//! GET /api/cameras/{camera}/thumbnail.jpg?t=                          the thumbnail of the segment holding t
//! GET /api/cameras/{camera}/fmp4/init.mp4?start=&end=                 MSE init segment for the range
//! GET /api/cameras/{camera}/fmp4/media.m4s?start=&end=[&base=]        moof+mdat per GOP; media time =
//!                                                                     capture time − base (default: first keyframe)
//! ```
//! Times are RFC 3339 (`2026-11-21T10:00:00Z`, offsets allowed) or Unix milliseconds.

use super::error::MuxError;
use super::listing::{recordings_json, runs};
use super::mp4::Mp4File;
use super::plan::{FileSource, Plan, load_segment};
use super::service::History;
pub use super::time::{MAX_TIME_US, MIN_TIME_US, format_time, parse_time, time_range_at};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// Longest export in one request.
const MAX_EXPORT_US: i64 = 24 * 3600 * 1_000_000;

/// Errors of the history API, each one status and a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 416.
    #[error("{0}")]
    RangeNotSatisfiable(String, u64),
    /// 503 with `Retry-After: 1`: every JPEG decode slot is busy.
    #[error("{0}")]
    Busy(String),
    /// 500: detail logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ApiError::RangeNotSatisfiable(m, _) => (StatusCode::RANGE_NOT_SATISFIABLE, m.clone()),
            ApiError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "history API");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error (see server log)".into())
            }
        };
        let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", one_line(&msg)))
            .into_response();
        if let ApiError::RangeNotSatisfiable(_, len) = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}"))
        {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

impl From<MuxError> for ApiError {
    fn from(e: MuxError) -> Self {
        match e {
            MuxError::EmptyRange { .. } | MuxError::TooLarge(_) => ApiError::BadRequest(e.to_string()),
            MuxError::NoSamples => ApiError::NotFound(e.to_string()),
            MuxError::RangeNotSatisfiable { len, .. } => ApiError::RangeNotSatisfiable(e.to_string(), len),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<super::index::IndexError> for ApiError {
    fn from(e: super::index::IndexError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The routes, over a history service.
pub fn router<S: Clone + Send + Sync + 'static>(history: Arc<History>) -> Router<S> {
    Router::new()
        .route("/api/cameras/{camera}/recordings", get(recordings))
        .route("/api/cameras/{camera}/video.mp4", get(video_mp4))
        .route("/api/cameras/{camera}/snapshot.jpg", get(snapshot))
        .route("/api/cameras/{camera}/thumbnail.jpg", get(thumbnail))
        .route("/api/cameras/{camera}/fmp4/init.mp4", get(fmp4_init))
        .route("/api/cameras/{camera}/fmp4/media.m4s", get(fmp4_media))
        .with_state(Arc::new(Api { history }))
}

struct Api {
    history: Arc<History>,
}

impl Api {
    fn check_camera(&self, camera: &str) -> Result<(), ApiError> {
        check_camera(&self.history, camera)
    }
}

/// `400` for a name no camera could have, `404` for a camera the server does not know.
pub(super) fn check_camera(history: &History, camera: &str) -> Result<(), ApiError> {
    if !crate::segment::path::valid_camera_name(camera) {
        return Err(ApiError::BadRequest("invalid camera name: expected 1-64 of A-Z a-z 0-9 _ -".into()));
    }
    if history.is_configured(camera) { Ok(()) } else { Err(ApiError::NotFound(format!("unknown camera {camera:?}"))) }
}

#[derive(Deserialize)]
struct RangeQuery {
    start: Option<String>,
    end: Option<String>,
    #[serde(default)]
    segments: bool,
}

fn time_range(q: &RangeQuery, default_span_us: i64) -> Result<(i64, i64), ApiError> {
    time_range_at(q.start.as_deref(), q.end.as_deref(), default_span_us, super::service::now_us_pub())
}

async fn recordings(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    api.check_camera(&camera)?;
    let (start, end) = time_range(&q, 7 * 86_400 * 1_000_000)?;
    let recs = api.history.index().listing(&camera, start, end).await?;
    let now = super::service::now_us_pub();
    let runs: Vec<(i64, i64)> =
        runs(&recs, now).into_iter().map(|(s, e)| (s.max(start), e.min(end))).filter(|(s, e)| s < e).collect();
    let body = recordings_json(&camera, &runs, q.segments.then_some(&recs[..]));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range against `len`: `None` to
/// serve the whole file, `Some(Err(()))` for 416.
pub fn parse_range(h: &str, len: u64) -> Option<Result<std::ops::Range<u64>, ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: serve the whole file (RFC 9110 allows it)
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 {
                return Some(Err(()));
            }
            len.saturating_sub(n)..len
        }
        (a, "") => a.parse().ok()?..len,
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if b < a {
                return None;
            }
            a..b.saturating_add(1).min(len)
        }
    };
    if r.start >= len || r.start >= r.end { Some(Err(())) } else { Some(Ok(r)) }
}

async fn video_mp4(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<RangeQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.check_camera(&camera)?;
    let (start, end) = time_range(&q, 60 * 1_000_000)?;
    if end - start > MAX_EXPORT_US {
        return Err(ApiError::BadRequest("export is limited to 24 hours per file".into()));
    }
    let (plan, source, lease) = plan_range(&api, &camera, start, end).await?;
    let file = Mp4File::new(plan)?;
    let len = file.len();
    let etag = format!("\"{}\"", file.etag());
    if crate::http::none_match(&headers, &etag) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range_ok) {
        Some(h) => match parse_range(h, len) {
            Some(Ok(r)) => Some(r),
            Some(Err(())) => {
                return Err(ApiError::RangeNotSatisfiable(format!("range not satisfiable (length {len})"), len));
            }
            None => None,
        },
        None => None,
    };
    let (status, body_range) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..len),
    };
    let body_len = body_range.end - body_range.start;
    // Stream the chunks from a blocking thread; the lease lives as long as the body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let file = Arc::new(file);
    let f2 = file.clone();
    tokio::task::spawn_blocking(move || {
        let _lease = lease;
        let iter = match f2.read_range(body_range, source) {
            Ok(it) => it,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        for chunk in iter {
            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return; // client gone, or error sent
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start, r.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let name = format!("{camera}-{}.mp4", format_time(start).replace(':', "-"));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Plans `[start, end)` of a camera: the plan, the open files it reads, and a lease that
/// keeps retention off those segments while the response is built.
async fn plan_range(
    api: &Api,
    camera: &str,
    start: i64,
    end: i64,
) -> Result<(Plan, Arc<FileSource>, crate::segment::lease::Lease), ApiError> {
    // Look one hour back for the keyframe at or before `start`. Retention may delete a
    // segment between the query and the lease: then ask the index again.
    let mut attempt = 0;
    let (files, lease) = loop {
        let recs = api.history.index().recordings(camera, start - 3_600_000_000, end).await?;
        let first = recs.iter().rposition(|r| r.start_us <= start).unwrap_or(0);
        let recs = recs.get(first..).unwrap_or_default();
        if recs.is_empty() {
            return Err(ApiError::NotFound("no recorded video in the requested range".into()));
        }
        let files: Vec<_> = recs.iter().map(|r| api.history.files(r)).collect();
        let lease = api.history.leases().take(files.iter().map(|f| f.data.clone()));
        attempt += 1;
        if attempt >= 3 || files.iter().all(|f| f.data.exists()) {
            break (files, lease);
        }
    };
    let source = Arc::new(FileSource::new());
    let src2 = source.clone();
    let plan = tokio::task::spawn_blocking(move || -> Result<Plan, MuxError> {
        let inputs = files.iter().map(load_segment).collect::<Result<Vec<_>, _>>()?;
        Plan::build(&inputs, start..end, &*src2)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((plan, source, lease))
}

#[derive(Deserialize)]
struct Fmp4Query {
    start: Option<String>,
    end: Option<String>,
    base: Option<String>,
}

fn fmp4_range(q: &Fmp4Query) -> Result<(i64, i64), ApiError> {
    let rq = RangeQuery { start: q.start.clone(), end: q.end.clone(), segments: false };
    let (start, end) = time_range(&rq, 10 * 1_000_000)?;
    if end - start > 3600 * 1_000_000 {
        return Err(ApiError::BadRequest("an fMP4 request is limited to one hour".into()));
    }
    Ok((start, end))
}

async fn fmp4_init(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<Fmp4Query>,
) -> Result<Response, ApiError> {
    api.check_camera(&camera)?;
    let (start, end) = fmp4_range(&q)?;
    let (plan, _src, _lease) = plan_range(&api, &camera, start, end).await?;
    let init =
        plan.init_segment(0).ok_or_else(|| ApiError::NotFound("no recorded video in the requested range".into()))?;
    let codec = plan.entries().first().map(|p| p.info().codec()).unwrap_or_default();
    let mut r = ([(header::CONTENT_TYPE, "video/mp4")], init).into_response();
    if let Ok(v) = HeaderValue::from_str(&codec) {
        r.headers_mut().insert("x-vigil-codec", v);
    }
    Ok(r)
}

async fn fmp4_media(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<Fmp4Query>,
) -> Result<Response, ApiError> {
    api.check_camera(&camera)?;
    let (start, end) = fmp4_range(&q)?;
    let base = q.base.as_deref().map(parse_time).transpose()?;
    let (plan, src, lease) = plan_range(&api, &camera, start, end).await?;
    // Default base: the first sample (the keyframe at or before `start`), so no sample's
    // time clamps to 0.
    let first = plan.samples().first().map_or(start, |s| s.pts_us);
    let base = base.unwrap_or(first).min(first);
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, MuxError> {
        let _lease = lease;
        let mut out = Vec::new();
        for (i, gop) in plan.gops().into_iter().enumerate() {
            out.extend_from_slice(&plan.fragment(gop, i as u32 + 1, Some(base), &*src)?);
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "video/iso.segment")], body).into_response())
}

#[derive(Deserialize)]
struct SnapshotQuery {
    t: Option<String>,
}

async fn snapshot(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    use super::snapshot::{SnapshotError, gop_for, snapshot_jpeg};
    api.check_camera(&camera)?;
    let t = q.t.as_deref().map(parse_time).transpose()?;
    let now = super::service::now_us_pub();
    let at = t.unwrap_or(now);
    // The segment holding `at` (for "latest": the newest, possibly still open).
    let recs = api.history.index().recordings(&camera, at - 3_600_000_000, at + 1).await?;
    let rec = recs
        .iter()
        .rev()
        .find(|r| r.start_us <= at)
        .cloned()
        .ok_or_else(|| ApiError::NotFound("no recorded frame at that time".into()))?;
    // A time after the end of the segment before it is a gap. "Latest" is the newest
    // segment's last frame whatever it is: also while the next segment is being opened (the
    // previous one is closed, the new one not yet in the index) or the camera is down.
    if t.is_some() && rec.state == "closed" && at > rec.end_us {
        return Err(ApiError::NotFound("no recorded frame at that time (gap)".into()));
    }
    let files = api.history.files(&rec);
    let lease = api.history.leases().take([files.data.clone()]);
    // At most MAX_MAKING decodes at once; the slot stays with the decode even if the client goes.
    let slot = api
        .history
        .decode_slot(Some(super::thumbnail::REQUEST_WAIT))
        .await
        .map_err(|e| ApiError::Busy(e.to_string()))?;
    let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let (_lease, _slot) = (lease, slot);
        let seg = load_segment(&files)?;
        let aus = gop_for(&seg, t).ok_or_else(|| ApiError::NotFound("no recorded frame at that time".into()))?;
        snapshot_jpeg(&seg, &aus).map_err(|e| match e {
            SnapshotError::NoFrame => ApiError::NotFound(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-cache")], jpeg).into_response())
}

/// `Cache-Control` of a closed segment's thumbnail: `t` always maps to the same segment, and a
/// segment's first keyframe never changes.
const THUMB_IMMUTABLE: &str = "public, max-age=31536000, immutable";

async fn thumbnail(
    State(api): State<Arc<Api>>,
    Path(camera): Path<String>,
    Query(q): Query<SnapshotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use super::snapshot::SnapshotError;
    api.check_camera(&camera)?;
    let t = q.t.as_deref().ok_or_else(|| ApiError::BadRequest("t is required (RFC 3339 or Unix ms)".into()))?;
    let t = parse_time(t)?;
    let rec = api
        .history
        .index()
        .recording_at(&camera, t)
        .await?
        .ok_or_else(|| ApiError::NotFound("nothing recorded at that time".into()))?;
    let open = rec.state == "open";
    if !open && t >= rec.end_us {
        return Err(ApiError::NotFound("nothing recorded at that time (gap)".into()));
    }
    let jpeg = api.history.thumbnail(&api.history.files(&rec), Some(super::thumbnail::REQUEST_WAIT)).await.map_err(
        |e| match e {
            SnapshotError::Busy => ApiError::Busy(e.to_string()),
            SnapshotError::NoFrame => ApiError::NotFound("no frame recorded in that segment yet".into()),
            SnapshotError::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound => {
                ApiError::NotFound("the recording at that time is gone (deleted by retention)".into())
            }
            other => ApiError::Internal(other.to_string()),
        },
    )?;
    let etag = format!("\"{}\"", super::thumbnail::etag(&jpeg));
    // An open segment may yet turn out to end before `t`: revalidate.
    let cache = if open { "no-cache" } else { THUMB_IMMUTABLE };
    let mut resp = if crate::http::none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok(90..100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some(Ok(95..100)));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=5-18446744073709551615", 100), Some(Ok(5..100)));
    }
}
