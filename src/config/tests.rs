//! Config parsing and checks: unknown keys, the example file, durations, camera fields.

use super::*;

#[test]
fn unknown_key_is_named() {
    let e = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
    assert!(e.to_string().contains("lisen"), "{e}");
    let e = Config::parse("[[cameras]]\nname = \"a\"\nfsp = 3\n").unwrap_err();
    assert!(e.to_string().contains("fsp"), "{e}");
}

#[test]
fn full_example_parses_and_validates() {
    let text = include_str!("../../deploy/vigil.toml");
    let cfg = Config::parse(text).unwrap();
    cfg.validate().unwrap();
    assert!(!cfg.cameras.is_empty());
}

#[test]
fn validation_errors() {
    let mut cfg = Config::default_with_test_camera();
    cfg.cameras[0].name = "../x".into();
    assert!(cfg.validate().is_err());
    let mut cfg = Config::default_with_test_camera();
    cfg.cameras[0].source = "webcam".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("unknown source"));
    let mut cfg = Config::default_with_test_camera();
    cfg.server.webrtc_udp_ports = "50000-40000".into();
    assert!(cfg.validate().is_err());
    cfg.server.webrtc_udp_ports = "40000-40010".into();
    assert_eq!(cfg.server.udp_port_range().unwrap(), Some((40000, 40010)));
}

#[test]
fn durations() {
    let p = |s: &str| HumanDuration::parse(s).map(|d| d.0);
    assert_eq!(p("7d").unwrap(), Duration::from_secs(7 * 86_400));
    assert_eq!(p("30d").unwrap(), Duration::from_secs(30 * 86_400));
    assert_eq!(p("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(p("1h30m").unwrap(), Duration::from_secs(5_400));
    assert_eq!(p(" 1h 30m ").unwrap(), Duration::from_secs(5_400));
    assert_eq!(p("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(p("90").unwrap(), Duration::from_secs(90));
    assert_eq!(p("2w").unwrap(), Duration::from_secs(14 * 86_400));
    for bad in ["", "d", "7x", "7d3", "-1s", "1.5h", "99999999999999999999d", "18446744073709551615w"] {
        assert!(p(bad).is_err(), "{bad:?} parsed");
    }
    for d in ["7d", "12h", "30m", "2s", "500ms", "0s"] {
        assert_eq!(HumanDuration::parse(d).unwrap().to_string(), d);
    }
}

#[test]
fn tls_section() {
    let cfg = Config::parse("[tls]\nmode = \"acme\"\ndomains = [\"cam.example.org\"]\nrenew_check_interval = \"2s\"\nrenew_before = 86400\n").unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.tls.mode, TlsMode::Acme);
    assert_eq!(cfg.tls.renew_check_interval.0, Duration::from_secs(2));
    assert_eq!(cfg.tls.renew_before.0, Duration::from_secs(86_400));
    assert_eq!(cfg.tls.acme_directory_url().unwrap(), LETSENCRYPT_PRODUCTION);
    assert_eq!(cfg.tls.https_listen, SocketAddr::from(([0, 0, 0, 0], 443)));
    assert_eq!(cfg.tls.http_listen, SocketAddr::from(([0, 0, 0, 0], 80)));

    let e = Config::parse("[tls]\nmode = \"acme\"\ndomian = []\n").unwrap_err();
    assert!(e.to_string().contains("domian"), "{e}");
    let e = Config::parse("[tls]\nmode = \"https\"\n").unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
    let e = Config::parse("[tls]\nrenew_before = \"soon\"\n").unwrap_err();
    assert!(e.to_string().contains("soon"), "{e}");

    let mut cfg = Config::default_with_test_camera();
    cfg.tls.mode = TlsMode::Acme;
    assert!(cfg.validate().unwrap_err().to_string().contains("domains"));
    cfg.tls.domains = vec!["192.0.2.1".into()];
    assert!(cfg.validate().is_err());
    cfg.tls.domains = vec!["*.example.org".into()];
    assert!(cfg.validate().is_err());
    cfg.tls.domains = vec!["bad name".into()];
    assert!(cfg.validate().is_err());
    cfg.tls.domains = vec!["cam.example.org".into()];
    cfg.validate().unwrap();
    cfg.tls.acme_directory = "staging".into();
    assert_eq!(cfg.tls.acme_directory_url().unwrap(), LETSENCRYPT_STAGING);
    cfg.tls.acme_directory = "pebble".into();
    assert!(cfg.validate().is_err());
    cfg.tls.acme_directory = "https://127.0.0.1:14000/dir".into();
    cfg.validate().unwrap();
    cfg.tls.http_listen = "0.0.0.0:443".parse().unwrap();
    assert!(cfg.validate().unwrap_err().to_string().contains("same port"));
    cfg.tls.http_listen = "127.0.0.1:8080".parse().unwrap();
    assert!(cfg.validate().unwrap_err().to_string().contains("[server] listen"));

    let mut cfg = Config::default_with_test_camera();
    cfg.tls.mode = TlsMode::Files;
    assert!(cfg.validate().unwrap_err().to_string().contains("cert_file"));
    cfg.tls.cert_file = Some("c.pem".into());
    cfg.tls.key_file = Some("k.pem".into());
    cfg.validate().unwrap();

    let mut cfg = Config::default_with_test_camera();
    cfg.tls.mode = TlsMode::SelfSigned;
    cfg.tls.domains = vec!["vigil.local".into(), "192.168.1.10".into(), "::1".into()];
    cfg.validate().unwrap();
}
