//! The recordings index on a real PostgreSQL (Debian's `postgresql` package): a throwaway
//! cluster in a temp directory on a free loopback port, run as the `postgres` user, and the
//! same index operations the server uses on SQLite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil::config::CameraConfig;
use vigil::events::Bus;
use vigil::history::index::{Backend, ClosedInfo, Index};
use vigil::registry::Registry;

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run deploy/install-deps.sh --test")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions.last().expect("no PostgreSQL version in /usr/lib/postgresql").join("bin").join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a command as the `postgres` user (PostgreSQL refuses to run as root).
fn as_postgres(bin: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.arg("-u").arg("postgres").arg("--").arg(bin);
    c
}

struct Cluster {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pg");
    std::fs::create_dir(&data).unwrap();
    let ok = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().unwrap();
    assert!(ok.success(), "chown failed");
    let out = as_postgres(&pg_bin("initdb"))
        .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let child = as_postgres(&pg_bin("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("unix_socket_directories={}", dir.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "PostgreSQL did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster { child, _dir: dir, port }
}

#[tokio::test]
async fn index_runs_on_postgresql() {
    let pg = start_cluster();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let data = tempfile::tempdir().unwrap();
    // PostgreSQL may accept TCP before it accepts logins: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ix = loop {
        match Index::open(Some(&url), data.path()).await {
            Ok(ix) => break ix,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("cannot open the index on PostgreSQL: {e}"),
        }
    };
    assert_eq!(ix.backend(), Backend::Postgres);
    // Migrations are idempotent: opening again is fine.
    let ix2 = Index::open(Some(&url), data.path()).await.unwrap();
    drop(ix2);

    let cam = ix.camera_id("front").await.unwrap();
    assert_eq!(ix.camera_id("front").await.unwrap(), cam);
    ix.insert_open(cam, "front/d/1.h264", 1_000).await.unwrap();
    ix.insert_open(cam, "front/d/1.h264", 1_000).await.unwrap();
    assert_eq!(ix.open_recordings().await.unwrap().len(), 1);
    let info = ClosedInfo {
        end_us: 2_000,
        bytes: 10,
        frames: 3,
        codec: "avc1.42c01f".into(),
        width: 1280,
        height: 720,
        sps: Some(vec![0x67, 0x42]),
        pps: Some(vec![0x68]),
    };
    ix.close(cam, "front/d/1.h264", 1_000, &info).await.unwrap();
    ix.close(cam, "front/d/2.h264", 2_000, &ClosedInfo { end_us: 3_000, bytes: 5, ..Default::default() })
        .await
        .unwrap();
    assert!(ix.open_recordings().await.unwrap().is_empty());
    let all = ix.recordings("front", 0, i64::MAX).await.unwrap();
    assert_eq!(all.iter().map(|r| (r.start_us, r.end_us)).collect::<Vec<_>>(), vec![(1_000, 2_000), (2_000, 3_000)]);
    assert_eq!(ix.recordings("front", 2_000, 2_500).await.unwrap().len(), 1);
    assert_eq!(ix.usage("front").await.unwrap(), (15, 2));
    assert_eq!(ix.newest_start("front").await.unwrap(), Some(2_000));
    assert_eq!(ix.newest_start("nobody").await.unwrap(), None);
    assert_eq!(ix.oldest_closed("front", 1).await.unwrap().len(), 1);
    ix.move_to_garbage(&[all[0].id]).await.unwrap();
    assert_eq!(ix.garbage().await.unwrap(), vec!["front/d/1.h264".to_owned()]);
    assert_eq!(ix.usage("front").await.unwrap(), (5, 1));
    ix.forget_garbage("front/d/1.h264").await.unwrap();
    assert!(ix.garbage().await.unwrap().is_empty());

    // The camera registry's statements on the same database (docs/cameras.md).
    let file = vec![CameraConfig::test_pattern("front")];
    let open = || async {
        let store = vigil::registry::store::Store::new(ix.pool().clone());
        Registry::open(store, Bus::new(), &file, None).await.expect("registry on PostgreSQL")
    };
    let reg = open().await;
    reg.create(&serde_json::json!({"name": "yard", "width": 640, "height": 360})).await.unwrap();
    reg.patch("yard", &serde_json::json!({"title": "Yard", "bitrate_kbps": 900})).await.unwrap();
    reg.patch("front", &serde_json::json!({"record": false})).await.unwrap();
    assert!(reg.create(&serde_json::json!({"name": "yard"})).await.is_err(), "a taken name");
    drop(reg);
    let reg = open().await;
    let set = reg.snapshot();
    let names: Vec<&str> = set.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["front", "yard"]);
    let yard = &set.get("yard").unwrap().config;
    assert_eq!((yard.width, yard.bitrate_kbps, yard.title.as_deref()), (640, 900, Some("Yard")));
    assert!(!set.get("front").unwrap().config.record, "a file camera's override survives");
    reg.delete("yard").await.unwrap();
    assert_eq!(open().await.snapshot().len(), 1);
    // The deleted camera's row stays for its recordings: "front" still lists its segment.
    assert_eq!(ix.usage("front").await.unwrap(), (5, 1));
}
