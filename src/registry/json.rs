//! Cameras as JSON in the API: the `[[cameras]]` keys, parsed strictly (an unknown key or a
//! wrong type is refused naming the key), changed by JSON merge patch (RFC 7396), and shown
//! with secrets masked (RTSP passwords as `***`, publish tokens as `"***"`).
//!
//! A masked value sent back unchanged (a client that GETs a camera, edits one field and
//! PATCHes the whole object) keeps the secret it stands for.

use super::RegistryError;
use crate::config::{CameraConfig, mask_secrets};
use serde_json::{Map, Value};

/// What a masked secret looks like in responses.
pub const MASK: &str = "***";

/// Keys the API shows but that cannot be set.
pub const READ_ONLY: &[&str] = &[
    "defined_in",
    "state",
    "last_error",
    "last_frame_age_ms",
    "video_fps",
    "video_kbps",
    "video_width",
    "video_height",
    "restarts",
    "motion_path",
    "viewers",
    "codec",
];

/// Every settable key (those of [`CameraConfig`]).
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(CameraConfig::test_pattern("x")) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Refuses unknown and read-only keys, naming the first.
pub fn check_keys(obj: &Map<String, Value>) -> Result<(), RegistryError> {
    let known = known_keys();
    for k in obj.keys() {
        if READ_ONLY.contains(&k.as_str()) {
            return Err(RegistryError::Body(format!("{k}: read-only (shown by the API, cannot be set)")));
        }
        if !known.iter().any(|x| x == k) {
            let shown: String = k.chars().take(40).collect();
            return Err(RegistryError::Body(format!("unknown key {shown:?}")));
        }
    }
    Ok(())
}

/// Deserialises an object of camera keys, naming the key whose value has the wrong type.
fn from_object(obj: Map<String, Value>) -> Result<CameraConfig, RegistryError> {
    let v = Value::Object(obj);
    serde_path_to_error::deserialize(&v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde's message for a missing field already names it.
        if path == "." { RegistryError::Body(inner) } else { RegistryError::Body(format!("{path}: {inner}")) }
    })
}

/// A new camera from a `POST /api/cameras` body.
pub fn parse_new(body: &Value) -> Result<CameraConfig, RegistryError> {
    let obj = body.as_object().ok_or_else(|| RegistryError::Body("body must be a JSON object".into()))?;
    check_keys(obj)?;
    if !obj.contains_key("name") {
        return Err(RegistryError::Body("name: required".into()));
    }
    from_object(obj.clone())
}

/// `cur` with the merge patch `patch` applied (keys checked, the name kept, masked secrets
/// sent back unchanged keep their value). Not yet checked with [`CameraConfig::check`].
pub fn merge(cur: &CameraConfig, patch: &Map<String, Value>) -> Result<CameraConfig, RegistryError> {
    check_keys(patch)?;
    let Value::Object(mut obj) = serde_json::to_value(cur).map_err(|e| RegistryError::Body(e.to_string()))? else {
        return Err(RegistryError::Body("camera settings are not an object".into()));
    };
    for (k, v) in patch {
        match (k.as_str(), v) {
            ("name", Value::String(n)) if n == &cur.name => {}
            ("name", _) => {
                return Err(RegistryError::Body(
                    "name: cannot change (it names the camera's folder and URLs); set title instead".into(),
                ));
            }
            ("source", Value::String(s)) if s == &cur.masked_source() => {}
            ("publish_token", Value::String(s)) if s == MASK => {}
            (_, Value::Null) => {
                obj.remove(k);
            }
            (_, v) => {
                obj.insert(k.clone(), merge_value(obj.get(k), v));
            }
        }
    }
    from_object(obj)
}

/// RFC 7396 for one value: objects merge key by key (null removes), anything else replaces.
fn merge_value(target: Option<&Value>, patch: &Value) -> Value {
    match (target, patch) {
        (Some(Value::Object(t)), Value::Object(p)) => {
            let mut out = t.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    out.insert(k.clone(), merge_value(t.get(k), v));
                }
            }
            Value::Object(out)
        }
        (_, p) => p.clone(),
    }
}

/// The keys whose values differ between two settings (for `camera_changed` events).
pub fn changed_keys(a: &CameraConfig, b: &CameraConfig) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The runtime keys of `next` that a patch touched, as the overrides object of a file camera.
pub fn overrides_of(patch: &Map<String, Value>, next: &CameraConfig) -> Map<String, Value> {
    let Ok(Value::Object(all)) = serde_json::to_value(next) else { return Map::new() };
    patch.keys().filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

/// A camera's settings as the API shows them: secrets masked; for callers that are not
/// admins only what pages need (name, title, group, enabled, record).
pub fn public_settings(cfg: &CameraConfig, admin: bool) -> Map<String, Value> {
    let Ok(Value::Object(mut obj)) = serde_json::to_value(cfg) else { return Map::new() };
    if !admin {
        obj.retain(|k, _| matches!(k.as_str(), "name" | "title" | "group" | "enabled" | "record"));
        return obj;
    }
    obj.insert("source".into(), Value::String(mask_secrets(&cfg.source)));
    if cfg.publish_token.is_some() {
        obj.insert("publish_token".into(), Value::String(MASK.into()));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_read_only_and_mistyped_keys_are_named() {
        let e = parse_new(&json!({"name": "a", "fsp": 3})).unwrap_err().to_string();
        assert!(e.contains("\"fsp\""), "{e}");
        let e = parse_new(&json!({"name": "a", "state": "running"})).unwrap_err().to_string();
        assert!(e.starts_with("state: read-only"), "{e}");
        let e = parse_new(&json!({"name": "a", "width": "wide"})).unwrap_err().to_string();
        assert!(e.starts_with("width:"), "{e}");
        let e = parse_new(&json!({"source": "test"})).unwrap_err().to_string();
        assert!(e.starts_with("name:"), "{e}");
        assert!(parse_new(&json!([1])).is_err());
        let c = parse_new(&json!({"name": "a", "width": 640, "height": 360})).unwrap();
        assert_eq!((c.width, c.height, c.enabled, c.record, c.source.as_str()), (640, 360, true, true, "test"));
    }

    #[test]
    fn merge_patch_replaces_removes_and_keeps_secrets() {
        let mut cur = CameraConfig::test_pattern("gate");
        cur.source = "rtsp://admin:hunter2@10.0.0.64/stream1".into();
        cur.title = Some("Gate".into());
        let p = json!({"width": 640, "title": null, "source": "rtsp://admin:***@10.0.0.64/stream1"});
        let next = merge(&cur, p.as_object().unwrap()).unwrap();
        assert_eq!(next.width, 640);
        assert_eq!(next.title, None);
        assert_eq!(next.source, cur.source, "the masked password stands for the real one");
        let p = json!({"source": "rtsp://admin:new@10.0.0.64/stream1"});
        assert!(merge(&cur, p.as_object().unwrap()).unwrap().source.contains(":new@"));
        let e = merge(&cur, json!({"name": "other"}).as_object().unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("name:"), "{e}");
        assert_eq!(changed_keys(&cur, &next), vec!["title", "width"]);
    }

    #[test]
    fn responses_mask_secrets_and_hide_settings_from_viewers() {
        let mut c = CameraConfig::test_pattern("gate");
        c.source = "rtsp://admin:hunter2@10.0.0.64/stream1".into();
        let shown = Value::Object(public_settings(&c, true)).to_string();
        assert!(!shown.contains("hunter2") && shown.contains("admin:***@"), "{shown}");
        let viewer = public_settings(&c, false);
        assert!(viewer.get("source").is_none() && viewer.get("name").is_some());
        let mut w = CameraConfig::test_pattern("w");
        w.source = "whip".into();
        w.publish_token = Some("0123456789abcdefXYZ".into());
        let shown = Value::Object(public_settings(&w, true)).to_string();
        assert!(!shown.contains("0123456789abcdef") && shown.contains("\"publish_token\":\"***\""), "{shown}");
    }
}
