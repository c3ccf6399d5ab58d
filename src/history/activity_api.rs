//! The activity routes (docs/activity.md):
//!
//! ```text
//! GET /api/cameras/{camera}/activity?start=&end=                 ranges [{start,end,start_ms,end_ms,peak,...}]
//! GET /api/cameras/{camera}/activity/levels?start=&end=&step=    highest motion level per step (0-1, null: not analysed)
//! ```
//! Times as in the recordings API (RFC 3339 or Unix milliseconds; default: the last day);
//! `step` a duration (`"1s"`, `"10s"`, `"5m"`) or whole seconds, at least 1 s.

use super::activity::{self, ActivityRange};
use super::api::{ApiError, check_camera, time_range_at};
use super::listing::format_time;
use super::service::{History, now_us_pub};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const DAY_US: i64 = 86_400 * 1_000_000;
/// Most ranges in one answer (the oldest first; ask again from the last one's end).
pub const MAX_RANGES: i64 = 10_000;
/// Most steps in one levels answer.
pub const MAX_STEPS: i64 = 10_000;
/// Steps when `step` is not given (at least 1 s each).
const DEFAULT_STEPS: i64 = 1_000;

/// The routes, over a history service.
pub fn router<S: Clone + Send + Sync + 'static>(history: Arc<History>) -> Router<S> {
    Router::new()
        .route("/api/cameras/{camera}/activity", get(ranges))
        .route("/api/cameras/{camera}/activity/levels", get(levels))
        .with_state(history)
}

#[derive(Deserialize)]
struct Q {
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

/// What both routes check first: the camera, the query, the time range (the last day by
/// default).
fn request(
    history: &History,
    camera: &str,
    q: Result<Query<Q>, axum::extract::rejection::QueryRejection>,
) -> Result<(Q, i64, i64), ApiError> {
    check_camera(history, camera)?;
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (start, end) = time_range_at(q.start.as_deref(), q.end.as_deref(), DAY_US, now_us_pub())?;
    Ok((q, start, end))
}

fn range_json(camera: &str, r: &ActivityRange) -> serde_json::Value {
    json!({
        "start": format_time(r.start_us),
        "end": r.end_us.map(format_time),
        "start_ms": r.start_us.div_euclid(1000),
        "end_ms": r.end_us.map(|e| e.div_euclid(1000)),
        "peak": (r.peak * 10_000.0).round() / 10_000.0,
        "peak_ms": r.peak_us.div_euclid(1000),
        "thumbnail": format!("/api/cameras/{camera}/snapshot.jpg?t={}", r.peak_us.div_euclid(1000)),
    })
}

async fn ranges(
    State(history): State<Arc<History>>,
    Path(camera): Path<String>,
    q: Result<Query<Q>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, start, end) = request(&history, &camera, q)?;
    let found = activity::ranges(history.index(), &camera, start, end, MAX_RANGES).await?;
    let body = json!({
        "camera": camera,
        "start": format_time(start),
        "end": format_time(end),
        "ranges": found.iter().map(|r| range_json(&camera, r)).collect::<Vec<_>>(),
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

/// The step of a levels request: given (at least 1 s, whole seconds) or chosen for about
/// [`DEFAULT_STEPS`] steps.
fn step_us(step: Option<&str>, span_us: i64) -> Result<i64, ApiError> {
    let step = match step {
        None => ((span_us / DEFAULT_STEPS).max(1_000_000) + 999_999) / 1_000_000 * 1_000_000,
        Some(s) => {
            let d = crate::config::HumanDuration::parse(s).map_err(|e| ApiError::BadRequest(format!("step: {e}")))?;
            let us = i64::try_from(d.0.as_micros()).unwrap_or(i64::MAX);
            if us < 1_000_000 || us % 1_000_000 != 0 {
                return Err(ApiError::BadRequest(format!("step {s:?}: expected whole seconds, at least 1s")));
            }
            us
        }
    };
    if span_us / step > MAX_STEPS {
        return Err(ApiError::BadRequest(format!(
            "step: {} steps asked, at most {MAX_STEPS} per request (use a longer step or a shorter range)",
            span_us / step
        )));
    }
    Ok(step)
}

async fn levels(
    State(history): State<Arc<History>>,
    Path(camera): Path<String>,
    q: Result<Query<Q>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (q, start, end) = request(&history, &camera, q)?;
    // Steps start on whole seconds, as the levels are stored.
    let start = start.div_euclid(1_000_000) * 1_000_000;
    let step = step_us(q.step.as_deref(), end - start)?;
    let levels = activity::levels(history.index(), &camera, start, end, step).await?;
    let body = json!({
        "camera": camera,
        "start": format_time(start),
        "end": format_time(end),
        "start_ms": start.div_euclid(1000),
        "step_ms": step / 1000,
        "levels": levels.iter().map(|l| l.map(|l| (f64::from(l) * 1000.0).round() / 1000.0)).collect::<Vec<_>>(),
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_whole_seconds_and_bounded() {
        assert_eq!(step_us(None, DAY_US).unwrap(), 87_000_000);
        assert_eq!(step_us(None, 10_000_000).unwrap(), 1_000_000);
        assert_eq!(step_us(Some("10s"), DAY_US).unwrap(), 10_000_000);
        assert_eq!(step_us(Some("60"), DAY_US).unwrap(), 60_000_000);
        for bad in ["500ms", "0", "1.5s", "x"] {
            assert!(step_us(Some(bad), DAY_US).unwrap_err().to_string().starts_with("step"), "{bad}");
        }
        assert!(step_us(Some("1s"), DAY_US).unwrap_err().to_string().contains("at most 10000"));
    }
}
