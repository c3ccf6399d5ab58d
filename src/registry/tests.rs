//! Registry behaviour over a real SQLite index in a temporary folder.

use super::*;
use crate::history::index::Index;
use serde_json::json;

async fn open(dir: &std::path::Path, file: &[CameraConfig]) -> Arc<Registry> {
    let ix = Index::open(None, dir).await.unwrap();
    Registry::open(Store::new(ix.pool().clone()), Bus::new(), file, Some("/etc/vigil/vigil.toml".into())).await.unwrap()
}

fn names(r: &Registry) -> Vec<String> {
    r.snapshot().iter().map(|c| c.name().to_owned()).collect()
}

#[tokio::test]
async fn api_cameras_survive_a_restart_and_file_cameras_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = vec![CameraConfig::test_pattern("front")];
    let r = open(dir.path(), &file).await;
    r.create(&json!({"name": "yard", "width": 640, "height": 360, "title": "Yard"})).await.unwrap();
    r.patch("front", &json!({"enabled": false, "title": "Front door"})).await.unwrap();
    drop(r);
    let r = open(dir.path(), &file).await;
    assert_eq!(names(&r), ["front", "yard"]);
    let set = r.snapshot();
    let yard = set.get("yard").unwrap();
    assert_eq!((yard.defined_in, yard.config.width, yard.config.title.as_deref()), (DefinedIn::Api, 640, Some("Yard")));
    let front = set.get("front").unwrap();
    assert_eq!(front.defined_in, DefinedIn::Config);
    assert!(!front.config.enabled, "the API's override of a file camera survives a restart");
    assert_eq!(front.config.title.as_deref(), Some("Front door"));
    // The file drops "front": it is no longer a camera.
    r.reload_file(&[]).await.unwrap();
    assert_eq!(names(&r), ["yard"]);
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut usb = CameraConfig::test_pattern("usb");
    usb.source = "v4l2:/dev/video0".into();
    let r = open(dir.path(), &[CameraConfig::test_pattern("front"), usb]).await;
    let before = r.snapshot();
    let err = |e: RegistryError| e.to_string();
    assert!(matches!(r.create(&json!({"name": "front"})).await, Err(RegistryError::Conflict(_))));
    let e = r.create(&json!({"name": "usb2", "source": "v4l2:/dev/video0"})).await.unwrap_err();
    assert!(matches!(e, RegistryError::Conflict(_)) && err(e).contains("/dev/video0"));
    let e = r.create(&json!({"name": "a b"})).await.unwrap_err();
    assert!(err(e).starts_with("name:"));
    let e = r.create(&json!({"name": "x", "fps": 1000})).await.unwrap_err();
    assert!(err(e).starts_with("fps:"));
    let e = r.create(&json!({"name": "x", "source": "webcam"})).await.unwrap_err();
    assert!(err(e).starts_with("source:"));
    // A file camera's capture settings belong to the file.
    let e = r.patch("front", &json!({"width": 640})).await.unwrap_err();
    assert!(matches!(e, RegistryError::Conflict(_)) && err(e).contains("/etc/vigil/vigil.toml"));
    let e = r.patch("front", &json!({"widht": 640})).await.unwrap_err();
    assert!(matches!(e, RegistryError::Body(_)), "an unknown key is a 400 whatever defines the camera");
    assert!(matches!(r.patch("nobody", &json!({})).await, Err(RegistryError::NotFound(_))));
    assert!(matches!(r.delete("front").await, Err(RegistryError::Conflict(_))));
    assert_eq!(*r.snapshot(), *before);
}

#[tokio::test]
async fn patch_is_a_merge_and_delete_removes() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(dir.path(), &[]).await;
    let mut w = r.watch();
    r.create(&json!({"name": "cam", "bitrate_kbps": 800, "group": "outside"})).await.unwrap();
    assert!(w.has_changed().unwrap());
    w.borrow_and_update();
    let c = r.patch("cam", &json!({"width": 640, "height": 360, "group": null})).await.unwrap();
    assert_eq!((c.config.width, c.config.height, c.config.bitrate_kbps, c.config.group), (640, 360, 800, None));
    // A failed patch changes nothing.
    assert!(r.patch("cam", &json!({"width": 641})).await.is_err());
    assert_eq!(r.snapshot().get("cam").unwrap().config.width, 640);
    assert!(w.has_changed().unwrap());
    r.delete("cam").await.unwrap();
    assert!(r.snapshot().is_empty());
    // The name can be used again.
    r.create(&json!({"name": "cam"})).await.unwrap();
}
