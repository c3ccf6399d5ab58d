//! `deploy/vigil.toml` documents every configuration key, and only real ones: the keys it
//! shows (set or commented out, per section) are compared with the keys the config structs
//! serialise. A key added to a struct without a line in the example, or a documented key that
//! does not exist (a typo, a removed option), fails here.

use std::collections::BTreeSet;
use vigil::config::Config;

const EXAMPLE: &str = include_str!("../deploy/vigil.toml");

/// `section.key` for every `key = value` line of the example, commented out or not. Section
/// headers may be commented out too (`# [[cameras]]`). Prose comments are told apart by
/// their shape: a key is lowercase `a-z0-9_` directly followed by ` = `.
fn documented() -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in EXAMPLE.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(name) = header(l) {
            section = name.to_owned();
            continue;
        }
        let Some((k, _)) = l.split_once(" = ") else { continue };
        if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            keys.insert(if section.is_empty() { k.to_owned() } else { format!("{section}.{k}") });
        }
    }
    keys
}

/// The table name of a header line (`[tls]`, `[[cameras]]`), nothing else on the line.
fn header(l: &str) -> Option<&str> {
    let inner =
        l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")).or_else(|| l.strip_prefix('[')?.strip_suffix(']'))?;
    inner.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_').then_some(inner)
}

/// `section.key` for every key the config structs have: a config with one element in each
/// array of tables, serialised (absent options serialise as null, so they count).
fn actual() -> BTreeSet<String> {
    let text = r#"
[[server.ice_servers]]
urls = ["stun:stun.example.org"]
[[cameras]]
name = "a"
[[auth.users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
role = "admin"
[[auth.tokens]]
name = "t"
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
role = "viewer"
"#;
    let cfg = Config::parse(text).unwrap_or_else(|e| panic!("sample config: {e}"));
    let v = serde_json::to_value(&cfg).expect("config serialises");
    let mut keys = BTreeSet::new();
    walk(&v, "", &mut keys);
    keys
}

fn walk(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(obj) = v.as_object() else { return };
    for (k, v) in obj {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            serde_json::Value::Object(_) => walk(v, &path, out),
            serde_json::Value::Array(items) if items.first().is_some_and(|i| i.is_object()) => {
                walk(&items[0], &path, out)
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

#[test]
fn every_config_key_is_documented_in_the_example_and_no_other() {
    let documented = documented();
    let actual = actual();
    let missing: Vec<_> = actual.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&actual).collect();
    assert!(missing.is_empty(), "keys with no line in deploy/vigil.toml: {missing:?}");
    assert!(unknown.is_empty(), "deploy/vigil.toml documents keys that do not exist: {unknown:?}");
}

#[test]
fn the_example_loads_with_every_commented_line_too() {
    // Uncommenting a documented key must give a config that still parses (the value shown
    // has the right type). Commented-out tables are the examples' own: they stay out.
    let mut out = String::new();
    let mut in_example_table = false;
    for line in EXAMPLE.lines() {
        let l = line.trim_start_matches('#').trim();
        if header(l).is_some() {
            in_example_table = line.trim_start().starts_with('#');
        }
        let is_key = l.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if line.starts_with('#') && is_key && !in_example_table {
            out.push_str(l);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if let Err(e) = Config::parse(&out) {
        panic!("deploy/vigil.toml with its commented keys set does not parse: {e}\n{out}");
    }
}
