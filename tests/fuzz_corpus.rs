//! The fuzz corpora as regression tests, on stable Rust: every file kept under
//! `fuzz/corpus/<target>/` (minimised inputs) and `fuzz/artifacts/<target>/` (the crashes the
//! fuzzers found, fixed since) goes through the same entry point as the cargo-fuzz target
//! (`vigil::fuzzing`), with the same invariant checks. One test per target.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

fn replay(target: &str) {
    let (_, run) = vigil::fuzzing::TARGETS.iter().find(|(n, _)| *n == target).expect("a fuzz target of that name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty: the corpus was lost");
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&files(&root.join("artifacts").join(target))) {
        let data = std::fs::read(path).expect("read corpus file");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs that panic (message above each): {failed:#?}");
}

#[test]
fn sdp_offer() {
    replay("sdp_offer");
}

#[test]
fn whep_offer() {
    replay("whep_offer");
}

#[test]
fn whip_offer() {
    replay("whip_offer");
}

#[test]
fn sdpfrag() {
    replay("sdpfrag");
}

#[test]
fn annexb() {
    replay("annexb");
}

#[test]
fn idx() {
    replay("idx");
}

#[test]
fn mp4() {
    replay("mp4");
}

#[test]
fn http_params() {
    replay("http_params");
}

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = vigil::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["sdp_offer", "whep_offer", "whip_offer", "sdpfrag", "annexb", "idx", "mp4", "http_params"]);
}
