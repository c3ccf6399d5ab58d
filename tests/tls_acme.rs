//! HTTPS and ACME against a real ACME server on loopback (Debian's `pebble`; see
//! `tests/pebble/mod.rs`), with the real `vigil` binary (`tests/common`'s `Server`).
//!
//! * `acme_obtains_certificate`: vigil gets a certificate for `localhost`; a client that
//!   trusts only pebble's issuing root connects over HTTPS and sees the name; the key files
//!   are 0600; port 80's stand-in redirects to HTTPS; a restart reuses the saved certificate.
//! * `renewal_swaps_certificate_without_dropping_sessions`: with a renewal forced every few
//!   seconds, new handshakes see new serials while a WHEP viewer whose signaling went over the
//!   old certificate keeps decoding frames, and a keep-alive HTTPS connection opened before the
//!   swap keeps working.
//! * `renewal_failure_keeps_old_certificate`: pebble stopped: renewal fails, `/api/status`
//!   and `/metrics` say so, retries continue, the old certificate is still served.
//! * `a_ca_unreachable_at_boot_is_retried_within_seconds`: the CA down at start, up later:
//!   the certificate comes within a minute (retries from 5 s while the CA cannot be reached).
//! * `self_signed_and_files_modes`: the other two modes, including a hot reload of files.

mod common;
mod pebble;

use common::{Server, http, serial, wait_for};
use pebble::{HttpsConn, Pebble, free_port, https_once, plain_get, rt};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Ports and paths for one vigil with TLS.
struct Tls {
    https: SocketAddr,
    http: SocketAddr,
    certs: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        Tls {
            https: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            certs: tempfile::Builder::new().prefix("vigil-certs-").tempdir().expect("tempdir"),
        }
    }

    /// `[tls] certs_dir`: created by vigil.
    fn certs_dir(&self) -> std::path::PathBuf {
        self.certs.path().join("certs")
    }

    /// The `[tls]` section for ACME against `pebble`.
    fn acme_toml(&self, pebble: &Pebble, extra: &str) -> String {
        format!(
            "[tls]\nmode = \"acme\"\ndomains = [\"localhost\"]\nhttps_listen = \"{}\"\nhttp_listen = \"{}\"\n\
             certs_dir = \"{}\"\nacme_directory = \"{}\"\nacme_ca_file = \"{}\"\nacme_contact = \"admin@example.org\"\n{extra}\n",
            self.https,
            self.http,
            self.certs_dir().display(),
            pebble.directory_url(),
            pebble.ca_file().display(),
        )
    }
}

fn status(server: &Server) -> serde_json::Value {
    let r = http("GET", &server.url("/api/status"), &[], None).expect("GET /api/status");
    assert_eq!(r.status, 200, "/api/status: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/api/status is not JSON ({e}): {}", r.body))
}

/// Polls `/api/status` until `cond(tls)` holds; returns that `tls` object.
fn wait_tls(
    server: &Server,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let r = wait_for(timeout, what, || {
        last = status(server)["tls"].clone();
        cond(&last).then(|| last.clone())
    });
    r.unwrap_or_else(|e| panic!("{e}; last /api/status tls: {last:#}\nvigil log:\n{}", server.log()))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn acme_obtains_certificate() {
    let _g = serial();
    let tls = Tls::new();
    let pebble = Pebble::start(tls.http.port());
    let toml = tls.acme_toml(&pebble, "");
    let mut server = Server::start(&toml);

    let st =
        wait_tls(&server, Duration::from_secs(60), "an ACME certificate", |t| t["certificate"]["source"] == "acme");
    assert_eq!(st["mode"], "acme");
    assert_eq!(st["domains"], serde_json::json!(["localhost"]));
    assert_eq!(st["renewal"]["last_result"], "ok", "{st:#}");
    assert!(st["renewal"]["last_error"].is_null(), "{st:#}");
    assert!(st["certificate"]["not_after"].as_str().is_some_and(|s| s.ends_with('Z')), "{st:#}");
    assert!(st["certificate"]["expires_in_s"].as_i64().unwrap_or(0) > 86_400, "{st:#}");
    let serial = st["certificate"]["serial"].as_str().unwrap().to_owned();

    // A client that trusts only pebble's issuing root.
    let root = pebble.issuing_root();
    let (resp, cert) =
        https_once(tls.https, "localhost", std::slice::from_ref(&root), "GET", "/livez").expect("HTTPS GET /livez");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok\n");
    assert!(cert.names.contains(&"localhost".to_owned()), "{cert:?}");
    assert_eq!(cert.serial, serial, "served certificate is not the one /api/status reports");
    assert!(cert.issuer.contains("Pebble"), "{cert:?}");
    assert!(cert.chain_len >= 2, "the chain should include pebble's intermediate: {cert:?}");
    // The whole application is there over HTTPS.
    let (resp, _) = https_once(tls.https, "localhost", std::slice::from_ref(&root), "GET", "/api/status").unwrap();
    assert_eq!(resp.json()["tls"]["certificate"]["serial"], serial.as_str());
    // A client that does not trust pebble refuses the certificate.
    let other = CertificateDer::from_pem_file(pebble.ca_file()).unwrap();
    assert!(https_once(tls.https, "localhost", &[other], "GET", "/livez").is_err());

    // Plain HTTP on http_listen: a redirect to HTTPS, and no challenge outside an order.
    let (code, headers) = plain_get(tls.http, "/whep/x?a=1").unwrap();
    assert_eq!(code, 308, "{headers:?}");
    let location = headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.as_str());
    assert_eq!(location, Some(format!("https://127.0.0.1:{}/whep/x?a=1", tls.https.port()).as_str()));
    let (code, _) = plain_get(tls.http, "/.well-known/acme-challenge/nope").unwrap();
    assert_eq!(code, 404);

    // Persisted, secrets 0600.
    let certs = tls.certs_dir();
    for (f, m) in [("acme-key.pem", 0o600), ("acme-account.json", 0o600), ("acme-cert.pem", 0o644)] {
        assert_eq!(mode_of(&certs.join(f)), m, "{f}");
    }
    assert_eq!(mode_of(&certs), 0o700);

    // Metrics.
    let m = http("GET", &server.url("/metrics"), &[], None).unwrap().body;
    assert!(m.contains("vigil_tls_cert_expiry_seconds"), "{m}");

    // A restart serves the saved certificate and orders nothing.
    server.stop();
    let server = Server::start(&toml);
    let st = status(&server)["tls"].clone();
    assert_eq!(st["certificate"]["source"], "acme", "{st:#}");
    assert_eq!(st["certificate"]["serial"], serial.as_str(), "{st:#}");
    std::thread::sleep(Duration::from_secs(1));
    let st = status(&server)["tls"].clone();
    assert!(st["renewal"]["last_attempt"].is_null(), "restart ordered a certificate: {st:#}");
    let (_, cert) = https_once(tls.https, "localhost", &[root], "GET", "/livez").unwrap();
    assert_eq!(cert.serial, serial);
}

#[test]
fn renewal_swaps_certificate_without_dropping_sessions() {
    let _g = serial();
    let tls = Tls::new();
    let pebble = Pebble::start(tls.http.port());
    // renew_before far beyond pebble's certificate lifetime: every check renews.
    let toml = format!(
        "{}\n[[cameras]]\nname = \"cam\"\nsource = \"test\"\nwidth = 320\nheight = 240\nfps = 15\nbitrate_kbps = 300\n",
        tls.acme_toml(&pebble, "renew_check_interval = \"3s\"\nrenew_before = \"36500d\"")
    );
    let server = Server::start(&toml);
    let root = pebble.issuing_root();
    let first =
        wait_tls(&server, Duration::from_secs(60), "an ACME certificate", |t| t["certificate"]["source"] == "acme");
    server.wait_camera("cam", Duration::from_secs(30), "camera running", |c| c["state"] == "running");

    // Open a keep-alive HTTPS connection and do the WHEP exchange on it.
    let mut conn =
        rt().block_on(HttpsConn::connect(tls.https, "localhost", std::slice::from_ref(&root))).expect("HTTPS connect");
    let old_cert = conn.peer_cert();
    let rx = common::Receiver::new(&[common::h264_recv_caps()]).expect("webrtcbin receiver");
    let resp = rt()
        .block_on(conn.request(
            "POST",
            "/whep/cam",
            &[("Content-Type", "application/sdp"), ("Accept", "application/sdp")],
            Some(rx.offer().as_bytes()),
        ))
        .expect("POST /whep/cam over HTTPS");
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(resp.header("location").is_some());
    rx.set_answer(&resp.text()).expect("set answer");
    let before = rx.wait_frames(15, Duration::from_secs(30)).expect("frames before the swap");

    // New handshakes get a new certificate...
    let new_cert = wait_for(Duration::from_secs(60), "a renewed certificate on a new connection", || {
        https_once(tls.https, "localhost", std::slice::from_ref(&root), "GET", "/livez")
            .ok()
            .map(|(_, c)| c)
            .filter(|c| c.serial != old_cert.serial)
    })
    .unwrap_or_else(|e| panic!("{e}\nvigil log:\n{}", server.log()));
    assert!(new_cert.names.contains(&"localhost".to_owned()));
    let st = status(&server)["tls"].clone();
    assert_ne!(st["certificate"]["serial"], first["certificate"]["serial"], "{st:#}");
    assert!(st["renewal"]["last_success"].is_string(), "{st:#}");

    // ...while the viewer keeps receiving frames and the old connection keeps working.
    let after = rx.wait_frames(before.frames + 30, Duration::from_secs(30)).expect("frames after the swap");
    assert!(after.frames >= before.frames + 30);
    assert!(rx.errors().iter().all(|e| !e.starts_with("error")), "{:?}", rx.errors());
    let r = rt().block_on(conn.request("GET", "/livez", &[], None)).expect("old HTTPS connection after the swap");
    assert_eq!(r.status, 200);
    assert_eq!(conn.peer_cert(), old_cert, "a live connection does not change certificate");
    let cams = rt().block_on(conn.request("GET", "/api/cameras", &[], None)).unwrap().json();
    assert_eq!(cams[0]["viewers"], 1, "{cams}");
}

#[test]
fn renewal_failure_keeps_old_certificate() {
    let _g = serial();
    let tls = Tls::new();
    let mut pebble = Pebble::start(tls.http.port());
    let toml = tls.acme_toml(&pebble, "renew_check_interval = \"2s\"\nrenew_before = \"36500d\"");
    let server = Server::start(&toml);
    let root = pebble.issuing_root();
    wait_tls(&server, Duration::from_secs(60), "an ACME certificate", |t| t["certificate"]["source"] == "acme");

    pebble.stop();
    let st = wait_tls(&server, Duration::from_secs(60), "a failed renewal", |t| {
        t["renewal"]["last_result"] == "error" && t["renewal"]["consecutive_failures"].as_u64().unwrap_or(0) >= 1
    });
    let err = st["renewal"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("ACME"), "{st:#}");
    assert_eq!(st["certificate"]["source"], "acme", "{st:#}");
    let serial = st["certificate"]["serial"].as_str().unwrap().to_owned();

    // The old certificate is still served, and still valid for the client.
    let (resp, cert) = https_once(tls.https, "localhost", std::slice::from_ref(&root), "GET", "/livez")
        .expect("HTTPS after the failure");
    assert_eq!(resp.status, 200);
    assert_eq!(cert.serial, serial);

    // It keeps retrying (backoff capped by the 2 s check interval here) and says so everywhere.
    let st = wait_tls(&server, Duration::from_secs(30), "a second failed attempt", |t| {
        t["renewal"]["consecutive_failures"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(st["certificate"]["serial"], serial.as_str());
    assert!(st["renewal"]["next_check"].is_string(), "{st:#}");
    let m = http("GET", &server.url("/metrics"), &[], None).unwrap().body;
    assert!(m.contains("vigil_tls_renewals_total{result=\"error\"}"), "{m}");
    assert!(m.lines().any(|l| l.starts_with("vigil_tls_renewal_failures") && !l.ends_with(" 0")), "{m}");
    assert!(server.log().contains("certificate renewal failed"), "{}", server.log());
    let (_, cert) = https_once(tls.https, "localhost", &[root], "GET", "/livez").unwrap();
    assert_eq!(cert.serial, serial);
}

#[test]
fn a_ca_unreachable_at_boot_is_retried_within_seconds() {
    // A Pi that boots before its network is up: the first orders cannot reach the CA. Once
    // it is reachable the certificate must come in seconds, not after a 10-minute backoff.
    let _g = serial();
    let tls = Tls::new();
    let mut pebble = Pebble::start(tls.http.port());
    pebble.stop();
    let server = Server::start(&tls.acme_toml(&pebble, ""));
    let st = wait_tls(&server, Duration::from_secs(30), "two failed attempts", |t| {
        t["renewal"]["consecutive_failures"].as_u64().unwrap_or(0) >= 2
    });
    assert_ne!(st["certificate"]["source"], "acme", "{st:#}");
    pebble.restart();
    let st =
        wait_tls(&server, Duration::from_secs(60), "an ACME certificate", |t| t["certificate"]["source"] == "acme");
    assert_eq!(st["renewal"]["last_result"], "ok", "{st:#}");
    let (resp, cert) = https_once(tls.https, "localhost", &[pebble.issuing_root()], "GET", "/livez")
        .expect("HTTPS with the new certificate");
    assert_eq!(resp.status, 200);
    assert_eq!(cert.serial, st["certificate"]["serial"].as_str().unwrap_or_default());
}

#[test]
fn self_signed_and_files_modes() {
    let _g = serial();

    // self-signed: made once, persisted, reused after a restart.
    let tls = Tls::new();
    let toml = format!(
        "[tls]\nmode = \"self-signed\"\ndomains = [\"vigil.test\", \"127.0.0.1\"]\nhttps_listen = \"{}\"\nhttp_listen = \"{}\"\ncerts_dir = \"{}\"\n",
        tls.https,
        tls.http,
        tls.certs_dir().display()
    );
    let mut server = Server::start(&toml);
    let cert_path = tls.certs_dir().join("self-signed-cert.pem");
    assert_eq!(mode_of(&tls.certs_dir().join("self-signed-key.pem")), 0o600);
    let own = CertificateDer::from_pem_file(&cert_path).expect("self-signed cert");
    let (resp, cert) =
        https_once(tls.https, "vigil.test", std::slice::from_ref(&own), "GET", "/livez").expect("HTTPS, self-signed");
    assert_eq!(resp.status, 200);
    assert!(cert.names.contains(&"vigil.test".to_owned()) && cert.names.contains(&"127.0.0.1".to_owned()), "{cert:?}");
    let st = status(&server)["tls"].clone();
    assert_eq!(st["certificate"]["source"], "self-signed", "{st:#}");
    server.stop();
    let server = Server::start(&toml);
    let (_, again) = https_once(tls.https, "127.0.0.1", &[own], "GET", "/livez").expect("HTTPS by IP");
    assert_eq!(again.serial, cert.serial, "the self-signed certificate was not reused");
    drop(server);

    // files: served, and replaced files are picked up at the next check.
    let tls = Tls::new();
    let (c1, k1) = pebble::self_signed(&["files.test"]);
    let files = tls.certs.path();
    let (cf, kf) = (files.join("c.pem"), files.join("k.pem"));
    std::fs::write(&cf, &c1).unwrap();
    std::fs::write(&kf, &k1).unwrap();
    let toml = format!(
        "[tls]\nmode = \"files\"\ndomains = [\"files.test\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\nhttps_listen = \"{}\"\nhttp_listen = \"{}\"\n\
         certs_dir = \"{}\"\nrenew_check_interval = \"1s\"\n",
        cf.display(),
        kf.display(),
        tls.https,
        tls.http,
        tls.certs_dir().display()
    );
    let server = Server::start(&toml);
    let r1 = CertificateDer::from_pem_slice(c1.as_bytes()).unwrap();
    let mut conn = rt().block_on(HttpsConn::connect(tls.https, "files.test", &[r1])).expect("HTTPS, files");
    let first = conn.peer_cert();
    let (c2, k2) = pebble::self_signed(&["files.test"]);
    std::fs::write(files.join("k2.pem"), &k2).unwrap();
    std::fs::write(files.join("c2.pem"), &c2).unwrap();
    std::fs::rename(files.join("k2.pem"), &kf).unwrap();
    std::fs::rename(files.join("c2.pem"), &cf).unwrap();
    let r2 = CertificateDer::from_pem_slice(c2.as_bytes()).unwrap();
    let second = wait_for(Duration::from_secs(20), "the replaced certificate file to be served", || {
        https_once(tls.https, "files.test", std::slice::from_ref(&r2), "GET", "/livez").ok().map(|(_, c)| c)
    })
    .unwrap_or_else(|e| panic!("{e}\nvigil log:\n{}", server.log()));
    assert_ne!(second.serial, first.serial);
    let r = rt().block_on(conn.request("GET", "/livez", &[], None)).expect("old connection after reload");
    assert_eq!(r.status, 200);

    // A broken file is reported and the current certificate kept.
    std::fs::write(&cf, "not a certificate").unwrap();
    let st = wait_tls(&server, Duration::from_secs(20), "the broken file to be reported", |t| {
        t["renewal"]["last_result"] == "error"
    });
    assert_eq!(st["certificate"]["serial"], second.serial.as_str(), "{st:#}");
    let (_, still) = https_once(tls.https, "files.test", &[r2], "GET", "/livez").unwrap();
    assert_eq!(still.serial, second.serial);
}
