//! Stopping and going on: kill -9, Ctrl-C, the failure ledger's retry,
//! and a saved cursor the server no longer knows.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkget::server::faults::Faults;

use crate::common::failures;
use crate::common::*;
use crate::mirror::journal;

/// A synthetic server slow enough (300 µs a request) to stop mid-run.
fn slow_synthetic(n: u64) -> bulkget::server::Server {
    synthetic(
        n,
        100,
        500,
        Faults {
            latency: Duration::from_micros(300),
            ..Faults::default()
        },
    )
}

#[test]
fn kill_9_then_rerun_completes_with_few_refetches() {
    let n = 8_000u64;
    let s = slow_synthetic(n);
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_str().unwrap();
    let (conns, window) = (4u64, 16u64);
    let args = ["mirror", &s.url(), d, "-q", "-c", "4", "--pipeline", "16"];
    let mut child = spawn_bulkget(&args);
    wait_for_a_finished_page(t.path());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = s.counts.gets.load(Ordering::Relaxed);
    assert!(first < n, "the first run finished before it was killed");
    let j = journal(t.path());
    assert!(
        j["pages_done"].as_u64().unwrap() > 0,
        "the journal moved: {j}"
    );
    // A kill looks like a power cut to the rerun: the files that landed
    // after the last sync (at most about a second's worth) may be torn,
    // so they are fetched again; every file before it is trusted.
    let synced = j["synced_before_ns"]
        .as_u64()
        .expect("the journal says when it synced");
    let after_sync = landed_since(t.path(), synced);
    assert!(after_sync < first, "{after_sync} of {first} after the sync");
    let o = bulkget(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(t.path(), n, 100);
    let total = s.counts.gets.load(Ordering::Relaxed);
    assert!(
        total <= n + after_sync + conns * window,
        "{total} GETs for {n} files (first run {first}, {after_sync} landed after its last sync)"
    );
}

/// Files directly in `dir` whose inode changed at or after `ns` (since the epoch).
fn landed_since(dir: &Path, ns: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .filter(|e| {
            let m = e.metadata().unwrap();
            m.ctime() as u64 * 1_000_000_000 + m.ctime_nsec() as u64 >= ns
        })
        .count() as u64
}

#[test]
fn ctrl_c_saves_the_journal_and_a_rerun_finishes() {
    let n = 8_000u64;
    let s = slow_synthetic(n);
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_str().unwrap();
    let args = ["mirror", &s.url(), d, "-c", "4", "--pipeline", "16"];
    let child = spawn_bulkget(&args);
    wait_for("some files", || {
        s.counts.gets.load(Ordering::Relaxed) >= n / 5
    });
    signal(&child, 2);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("stopping") && err.contains("Interrupted after") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(journal(t.path())["complete"], false);
    let o = bulkget(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(t.path(), n, 100);
    assert!(s.counts.gets.load(Ordering::Relaxed) <= n + 4 * 16);
}

#[test]
fn failed_files_are_recorded_and_retried_first_next_time() {
    // 404 for some names: permanent failures; then the server "fixes" them.
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = fixed.clone();
    let server = Scripted::start(move |path| match path {
        "/list" => (200, br#"{"FileNames": ["good", "bad1", "bad2"]}"#.to_vec()),
        "/get/good" => (200, b"g".to_vec()),
        p if f2.load(Ordering::Relaxed) => (200, p.as_bytes().to_vec()),
        _ => (404, b"no".to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_str().unwrap();
    let o = bulkget(&["mirror", &server.url(), d, "-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let f = failures(t.path());
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["error"], "HTTP 404");
    assert_eq!(f[0]["attempts"], 1, "a 404 is not retried");
    assert_eq!(
        f[0]["url"],
        format!("{}/get/{}", server.url(), f[0]["name"].as_str().unwrap())
    );
    fixed.store(true, Ordering::Relaxed);
    let o = bulkget(&["mirror", &server.url(), d, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(t.path().join("bad1")).unwrap(), b"/get/bad1");
    assert!(failures(t.path()).is_empty());
    assert!(!t.path().join(".bulkget/failures.retry.jsonl").exists());
}

/// A rerun whose failures fail again: each name is tried once and is one
/// failure (one ledger line, `failed` counts names), however many runs it
/// failed in.
#[test]
fn a_name_that_fails_again_is_one_failure() {
    let server = Scripted::start(move |path| match path {
        "/list" => (200, br#"{"FileNames": ["good", "bad1", "bad2"]}"#.to_vec()),
        "/get/good" => (200, b"g".to_vec()),
        _ => (404, b"no".to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_str().unwrap();
    let stats = t.path().join("stats.json");
    let args = [
        "mirror",
        &server.url(),
        d,
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
    ];
    for run in 0..3 {
        let o = bulkget(&args);
        assert_eq!(o.status.code(), Some(1), "run {run}: {}", stderr(&o));
        let mut names: Vec<String> = failures(t.path())
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["bad1", "bad2"], "run {run}");
        let st = crate::common::read_json(&stats);
        assert_eq!(st["failed"], 2, "run {run}: {st}");
    }
}

#[test]
fn a_rejected_saved_cursor_relists_from_the_start_and_skips_what_is_there() {
    // Server A serves a tree; a run is killed midway; the same files come back
    // from a copy at another path on the same address, so A's listing tokens
    // are unknown to it (400). The rerun says so, lists again, skips what
    // landed, and completes.
    use bulkget::server::{ServeConfig, Server};
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for root in [&a, &b] {
        for i in 0..3000 {
            let p = root.join(format!("d{}/f{i:05}", i % 7));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("file {i}")).unwrap();
        }
    }
    let slow = || ServeConfig {
        tls: None,
        page_size: 100,
        faults: Faults {
            latency: Duration::from_millis(1),
            ..Faults::default()
        },
        threads: 2,
    };
    let store = |root: &Path| Arc::new(bulkget::server::dirstore::DirStore::new(root).unwrap());
    let sa = Server::start("127.0.0.1:0", store(&a), slow()).unwrap();
    let addr = sa.addr.to_string();
    let dest = t.path().join("dest");
    let url = format!("http://{addr}");
    let args = [
        "mirror",
        url.as_str(),
        dest.to_str().unwrap(),
        "-c",
        "2",
        "--pipeline",
        "4",
    ];
    let mut child = spawn_bulkget(&args);
    wait_for("some pages done", || {
        journal_of(&dest).is_some_and(|j| j["marker"].is_string())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    sa.stop();
    let sb = Server::start(
        &addr,
        store(&b),
        ServeConfig {
            tls: None,
            faults: Faults::default(),
            ..slow()
        },
    )
    .unwrap();
    let stats = t.path().join("stats.json");
    let o = bulkget(&[&args[..], &["--stats-json", stats.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused the saved listing cursor"),
        "{}",
        stderr(&o)
    );
    let st = read_json(&stats);
    let skipped = st["skipped"].as_u64().unwrap();
    assert!(skipped > 0, "nothing was skipped: {}", stderr(&o));
    assert_eq!(sb.counts.gets.load(Ordering::Relaxed) + skipped, 3000);
    for i in 0..3000 {
        let rel = format!("d{}/f{i:05}", i % 7);
        assert_eq!(
            std::fs::read_to_string(dest.join(&rel)).unwrap(),
            format!("file {i}"),
            "{rel}"
        );
    }
}
