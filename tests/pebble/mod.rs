//! Test helpers for TLS: a real ACME server ([`Pebble`], Debian's `pebble`, STACK.md
//! pitfall 6) and a small HTTPS/1.1 client ([`HttpsConn`]) on tokio-rustls (ring) that keeps
//! its connection open across requests and shows the certificate the server presented.
//!
//! Everything listens on 127.0.0.1 (pitfall 9). Pebble's own HTTPS certificate is made here
//! with rcgen (a throwaway CA and a leaf for `localhost`/127.0.0.1); the ACME client under
//! test trusts that CA through `[tls] acme_ca_file`. Pebble validates HTTP-01 by fetching
//! `http://localhost:<httpPort>/.well-known/acme-challenge/<token>`, so `httpPort` is the
//! server's `[tls] http_listen` port and the certificate names are `localhost`, which the
//! system resolver maps to 127.0.0.1 (no DNS server needed).
#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A runtime for the async HTTPS client (tests are blocking `#[test]`s).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime")
    })
}

// ---------------------------------------------------------------------------------------------
// Pebble
// ---------------------------------------------------------------------------------------------

/// A running `pebble` on 127.0.0.1, in its own temporary directory.
pub struct Pebble {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// ACME directory port (HTTPS).
    pub acme_port: u16,
    /// Management port (HTTPS): `/roots/0` is the issuing root.
    pub mgmt_port: u16,
    /// The port pebble validates HTTP-01 challenges on.
    pub http_port: u16,
    log_path: PathBuf,
}

impl Pebble {
    /// Starts pebble, validating HTTP-01 on `http_port`; waits until the directory answers.
    pub fn start(http_port: u16) -> Pebble {
        let exe = std::env::var_os("PEBBLE_BIN").map_or_else(|| PathBuf::from("/usr/bin/pebble"), PathBuf::from);
        assert!(exe.exists(), "{} not found: install Debian's pebble (deploy/install-deps.sh --test)", exe.display());
        let dir = tempfile::Builder::new().prefix("vigil-pebble-").tempdir().expect("tempdir");
        let (ca_pem, cert_pem, key_pem) = pebble_tls_material();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write ca.pem");
        std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), key_pem).expect("write key.pem");
        let acme_port = free_port();
        let mgmt_port = free_port();
        let tls_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).expect("write pebble config");
        let log_path = dir.path().join("pebble.log");
        let mut p = Pebble { child: None, dir, acme_port, mgmt_port, http_port, log_path };
        p.spawn();
        p
    }

    /// Starts pebble again after [`Pebble::stop`], on the same ports (a new issuing root).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let exe = std::env::var_os("PEBBLE_BIN").map_or_else(|| PathBuf::from("/usr/bin/pebble"), PathBuf::from);
        let log = File::options().create(true).append(true).open(&self.log_path).expect("pebble log");
        let child = Command::new(&exe)
            .arg("-config")
            .arg(self.dir.path().join("pebble-config.json"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn pebble");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                panic!("pebble exited during startup ({status}); log:\n{}", self.log());
            }
            let up = |port| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200))
                    .is_ok()
            };
            if up(self.acme_port) && up(self.mgmt_port) {
                break;
            }
            assert!(Instant::now() < deadline, "pebble did not listen within 20 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `https://127.0.0.1:<port>/dir`
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA that signed pebble's own HTTPS certificate (for `acme_ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root that issues the certificates pebble hands out (`/roots/0` of the management
    /// interface; pebble makes a new one each run).
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        let ca = CertificateDer::from_pem_file(self.ca_file()).expect("pebble ca.pem");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.mgmt_port));
        let resp = rt()
            .block_on(async {
                let mut c = HttpsConn::connect(addr, "localhost", &[ca]).await?;
                c.request("GET", "/roots/0", &[], None).await
            })
            .expect("GET pebble /roots/0");
        assert_eq!(resp.status, 200, "pebble /roots/0: {}", resp.text());
        CertificateDer::from_pem_slice(&resp.body).expect("pebble root PEM")
    }

    /// Everything pebble logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Kills pebble (the ACME server is gone; its ports refuse connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pebble {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("VIGIL_TEST_LOG").is_some() {
            eprintln!("----- pebble log -----\n{}\n----- end of pebble log -----", self.log());
        }
    }
}

/// (CA PEM, leaf PEM for localhost + 127.0.0.1, leaf key PEM).
fn pebble_tls_material() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(DnType::CommonName, "vigil test CA for pebble");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "pebble");
    let leaf_cert = leaf.signed_by(&key, &issuer).expect("leaf cert");
    (ca_cert.pem(), leaf_cert.pem(), key.serialize_pem())
}

/// A self-signed certificate for `names`: (cert PEM, key PEM).
pub fn self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("params");
    (params.self_signed(&key).expect("cert").pem(), key.serialize_pem())
}

// ---------------------------------------------------------------------------------------------
// HTTPS client
// ---------------------------------------------------------------------------------------------

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct HttpsResp {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpsResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTPS/1.1 keep-alive connection.
pub struct HttpsConn {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    host: String,
    buf: Vec<u8>,
}

/// What a connection's server certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Serial number, lowercase hex without leading zeros (as `/api/status` reports it).
    pub serial: String,
    /// DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// Issuer DN.
    pub issuer: String,
    /// Length of the chain the server sent.
    pub chain_len: usize,
}

pub fn client_config(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("add root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

impl HttpsConn {
    /// TCP + TLS handshake to `addr`, verifying the certificate for `server_name` against
    /// `roots` only.
    pub async fn connect(addr: SocketAddr, server_name: &str, roots: &[CertificateDer<'static>]) -> Result<HttpsConn> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect {addr}: timeout"))?
            .with_context(|| format!("connect {addr}"))?;
        let name = ServerName::try_from(server_name.to_owned()).context("server name")?;
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(client_config(roots)).connect(name, tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS handshake with {addr}: timeout"))?
        .with_context(|| format!("TLS handshake with {addr} as {server_name}"))?;
        let port = addr.port();
        Ok(HttpsConn { stream, host: format!("{server_name}:{port}"), buf: Vec::new() })
    }

    /// The certificate the server presented in this connection's handshake.
    pub fn peer_cert(&self) -> PeerCert {
        let chain = self.stream.get_ref().1.peer_certificates().expect("peer certificates");
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).expect("parse leaf");
        let mut names = Vec::new();
        if let Ok(Some(san)) = leaf.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                        names.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string());
                    }
                    _ => {}
                }
            }
        }
        let raw = leaf.raw_serial();
        let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len().saturating_sub(1));
        PeerCert {
            serial: raw[first..].iter().map(|b| format!("{b:02x}")).collect(),
            names,
            issuer: leaf.issuer().to_string(),
            chain_len: chain.len(),
        }
    }

    /// One request on this connection (kept alive); the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpsResp> {
        tokio::time::timeout(Duration::from_secs(30), self.request_inner(method, path, headers, body))
            .await
            .map_err(|_| anyhow!("{method} {path}: no response within 30 s"))?
    }

    async fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpsResp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.context("write request")?;
        self.stream.flush().await.context("flush request")?;

        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().context("content-length")?;
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            let mut out = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .with_context(|| format!("chunk size {size_text:?}"))?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                out.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
            out
        } else {
            bail!("response without Content-Length or chunked encoding: {head}");
        };
        Ok(HttpsResp { status, headers, body })
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.context("read response")?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection; also returns the certificate it saw.
pub fn https_once(
    addr: SocketAddr,
    server_name: &str,
    roots: &[CertificateDer<'static>],
    method: &str,
    path: &str,
) -> Result<(HttpsResp, PeerCert)> {
    rt().block_on(async {
        let mut c = HttpsConn::connect(addr, server_name, roots).await?;
        let r = c.request(method, path, &[], None).await?;
        Ok((r, c.peer_cert()))
    })
}

/// A plain-HTTP/1.1 GET that does not follow redirects: (status, lowercased headers).
pub fn plain_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<(String, String)>)> {
    use std::io::Write;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad response: {text}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}
