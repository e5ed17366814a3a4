//! `bulkget mirror`: end to end against real servers, faults, hostile input,
//! kill -9, Ctrl-C and reruns.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkget::server::faults::Faults;

use crate::common::*;

pub fn journal(dest: &Path) -> serde_json::Value {
    journal_of(dest).expect("a saved journal")
}

#[test]
fn mirrors_a_synthetic_store_and_a_rerun_fetches_nothing() {
    let s = synthetic(2500, 100, 100, Faults::default());
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("out");
    let d = dest.to_str().unwrap();
    let stats = t.path().join("stats.json");
    let o = bulkget(&[
        "mirror",
        &s.url(),
        d,
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(&dest, 2500, 100);
    assert_eq!(s.counts.gets.load(Ordering::Relaxed), 2500);
    let st = read_json(&stats);
    assert_eq!(
        (
            st["files"].as_u64(),
            st["failed"].as_u64(),
            st["bytes"].as_u64()
        ),
        (Some(2500), Some(0), Some(250_000))
    );
    assert_eq!(journal(&dest)["complete"], true);
    let summary = stderr(&o);
    assert!(
        summary.contains("Mirrored 2 500 files") && summary.contains("No failures"),
        "{summary}"
    );

    let o = bulkget(&["mirror", &s.url(), d, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        s.counts.gets.load(Ordering::Relaxed),
        2500,
        "the rerun fetched files again"
    );
    assert!(
        stderr(&o).contains("2 500 already present"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn mirrors_a_directory_tree_with_odd_names() {
    let src = tempfile::tempdir().unwrap();
    let names = [
        "a b/c d.txt",
        "hash#x",
        "pct%41",
        "q?mark",
        "ünï/cödé ✓",
        "deep/er/and/deeper",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = src.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{i}").repeat(1000 * i + 1)).unwrap();
    }
    let s = dir_server(src.path(), 2);
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&["mirror", &s.url(), t.path().to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for n in names {
        assert_eq!(
            std::fs::read(t.path().join(n)).unwrap(),
            std::fs::read(src.path().join(n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn every_fault_at_once_still_gives_every_byte() {
    let faults = Faults {
        fail_503: 0.05,
        fail_429: 0.05,
        reset: 0.05,
        truncate: 0.05,
        retry_after: 0,
        latency: Duration::from_micros(200),
        rate_limit: 4 << 20,
        no_ranges: true,
        seed: 42,
        ..Faults::default()
    };
    let s = synthetic(3000, 2000, 250, faults);
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &s.url(),
        t.path().to_str().unwrap(),
        "-q",
        "--retries",
        "20",
        "-c",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(t.path(), 3000, 2000);
    assert!(
        s.counts.gets.load(Ordering::Relaxed) > 3300,
        "faults were injected and retried"
    );
    assert!(failures(t.path()).is_empty());
    // nothing half-written anywhere
    assert!(
        !t.path().join(".bulkget/tmp").exists()
            || std::fs::read_dir(t.path().join(".bulkget/tmp"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn hostile_names_are_refused_and_nothing_leaves_dest() {
    let hostile = [
        "../escape",
        "/abs",
        "a//b",
        "dir/../../x",
        "nul\u{0}byte",
        &"x".repeat(300),
        ".bulkget/journal.json",
        "",
        "trailing/",
        "./dot",
    ];
    let fine = ["ok1", "sub/ok2", "sp ace#?%ü"];
    let all: Vec<String> = hostile
        .iter()
        .chain(fine.iter())
        .map(|s| s.to_string())
        .collect();
    let page = serde_json::to_vec(&serde_json::json!({ "FileNames": all })).unwrap();
    let server = Scripted::start(move |path| {
        if path == "/list" {
            (200, page.clone())
        } else {
            (200, format!("body of {path}").into_bytes())
        }
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    let o = bulkget(&["mirror", &server.url(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for f in fine {
        let want = format!("body of /get/{}", url_path(f));
        assert_eq!(std::fs::read_to_string(dest.join(f)).unwrap(), want);
    }
    // nothing next to dest, nothing unexpected in it
    let siblings: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["dest"]);
    let mut inside: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    inside.sort();
    assert_eq!(inside, [".bulkget", "ok1", "sp ace#?%ü", "sub"]);
    assert_eq!(journal(&dest)["url"], server.url());
    let f = failures(&dest);
    assert_eq!(f.len(), hostile.len(), "{f:?}");
    assert!(
        f.iter()
            .all(|x| x["error"].as_str().unwrap().starts_with("refused name"))
    );
    let err = stderr(&o);
    assert!(
        err.contains("failed \"../escape\": refused name: name has a '.' or '..' segment"),
        "{err}"
    );
    assert!(err.contains("10 failed for good"), "{err}");
}

#[test]
fn a_page_that_is_not_json_ends_the_run_with_2_and_keeps_what_landed() {
    let server = Scripted::start(|path| match path {
        "/list" => (
            200,
            br#"{"FileNames": ["a", "b"], "NextMarker": "p2"}"#.to_vec(),
        ),
        "/list?next-marker=p2" => (200, b"<html>oops</html>".to_vec()),
        p => (200, p.as_bytes().to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&["mirror", &server.url(), t.path().to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let first = err.lines().next().unwrap();
    assert!(
        first.contains(&format!("{}/list?next-marker=p2", server.url()))
            && first.contains("not the API's JSON"),
        "{err}"
    );
    assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"/get/a");
    assert_eq!(std::fs::read(t.path().join("b")).unwrap(), b"/get/b");
}

#[test]
fn a_looping_cursor_ends_the_run_with_2() {
    let server = Scripted::start(|path| match path {
        "/list" => (200, br#"{"FileNames": ["a"], "NextMarker": "x"}"#.to_vec()),
        "/list?next-marker=x" => (200, br#"{"FileNames": ["b"], "NextMarker": "y"}"#.to_vec()),
        "/list?next-marker=y" => (200, br#"{"FileNames": ["c"], "NextFile": "x"}"#.to_vec()),
        p => (200, p.as_bytes().to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&["mirror", &server.url(), t.path().to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("repeats an earlier page's"),
        "{}",
        stderr(&o)
    );
    assert!(t.path().join("a").exists() && t.path().join("b").exists());
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &url,
        t.path().to_str().unwrap(),
        "-q",
        "--retries",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("bulkget: listing {url}/list: cannot connect")),
        "{err}"
    );
}

/// A listing page answered with an error the server sent whole is reported
/// as that error, even when the server closed the kept connection while
/// the retry waited (s3rver's keep-alive runs out in 5 s; bulkget said
/// "connection closed before the answer" and never showed the 500).
#[test]
fn a_listing_error_is_reported_as_sent_though_the_idle_connection_closed() {
    let s = Scripted::raw(|_, _| {
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nX-Then-Close: 1\r\n\r\noops!"
            .to_vec()
    });
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &s.url(),
        t.path().to_str().unwrap(),
        "-q",
        "--retries",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(!err.contains("closed"), "{err}");
}

#[test]
fn null_sink_fetches_and_keeps_nothing() {
    let s = synthetic(1000, 100, 100, Faults::default());
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &s.url(),
        t.path().to_str().unwrap(),
        "-q",
        "--sink",
        "null",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.counts.gets.load(Ordering::Relaxed), 1000);
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [".bulkget"]);
}

#[test]
fn bench_runs_end_to_end_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let json = t.path().join("b.json");
    let o = bulkget(&[
        "bench",
        "--files",
        "3000",
        "-q",
        "--dir",
        t.path().to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("verified       3 000 files, every byte") && out.contains("combo"),
        "{out}"
    );
    let r = read_json(&json);
    assert_eq!(r["verified"], 3000);
    assert!(r["peak_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn a_full_disk_stops_the_run_with_2_and_a_rerun_completes() {
    // A 512 KiB tmpfs in a private mount namespace (unshare -rm: no privileges
    // needed where user namespaces are allowed) fills up after ~100 files.
    let s = synthetic(1000, 100, 100, Faults::default());
    let host = tempfile::tempdir().unwrap();
    let mnt = host.path().join("mnt");
    let copy = host.path().join("copy");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    let script = r#"
        set -u
        mount -t tmpfs -o size=512k tmpfs "$1" || exit 99
        "$2" mirror "$3" "$1/out" -q -c 2 2>"$1/../first.err"; echo "first=$?"
        mount -o remount,size=64m "$1" || exit 98
        "$2" mirror "$3" "$1/out" -q -c 2 2>"$1/../second.err"; echo "second=$?"
        cp -a "$1/out/." "$4/"
    "#;
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh"])
        .args([mnt.to_str().unwrap(), BIN, &s.url(), copy.to_str().unwrap()])
        .output()
        .expect("unshare (util-linux) is installed");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("first=2") && out.contains("second=0"),
        "{out}{}",
        stderr(&o)
    );
    let first = std::fs::read_to_string(host.path().join("first.err")).unwrap();
    let line = first
        .lines()
        .find(|l| l.starts_with("bulkget: disk full"))
        .unwrap_or_else(|| panic!("{first}"));
    assert!(
        line.contains("writing \"f0") && line.contains("No space left on device"),
        "{line}"
    );
    assert!(first.contains("Stopped early: disk full"), "{first}");
    assert_synthetic_tree(&copy, 1000, 100);
}

#[test]
fn retry_after_is_honoured_by_its_request_and_others_carry_on() {
    use std::sync::Mutex;
    use std::time::Instant;
    // The first GET gets 429 with Retry-After: 1: that file is asked again
    // no sooner than a second later (RFC 9110: the wait is the follow-up
    // request's), while the other files carry on meanwhile (issue 21).
    let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let server = {
        let l3 = log.clone();
        Scripted::raw(move |path, _| {
            let (status, extra, body): (u16, &str, Vec<u8>) = if path == "/list" {
                (200, "", br#"{"FileNames": ["a", "b", "c"]}"#.to_vec())
            } else {
                let mut log = l3.lock().unwrap();
                log.push((path.to_string(), Instant::now()));
                if log.len() == 1 {
                    (429, "Retry-After: 1\r\n", b"slow down".to_vec())
                } else {
                    (200, "", path.as_bytes().to_vec())
                }
            };
            let mut r = format!(
                "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        })
    };
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &server.url(),
        t.path().to_str().unwrap(),
        "-q",
        "-c",
        "1",
        "--pipeline",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    let refused = &log[0];
    let again = log[1..]
        .iter()
        .find(|(p, _)| *p == refused.0)
        .expect("asked again");
    let gap = again.1 - refused.1;
    assert!(
        gap >= Duration::from_millis(950),
        "{} came again {gap:?} after a 429 asking for 1 s",
        refused.0
    );
    for (p, at) in &log[1..] {
        if *p != refused.0 {
            assert!(
                *at - refused.1 < Duration::from_millis(900),
                "{p} waited {:?} for another file's Retry-After",
                *at - refused.1
            );
        }
    }
    for f in ["a", "b", "c"] {
        assert_eq!(
            std::fs::read(t.path().join(f)).unwrap(),
            format!("/get/{f}").as_bytes()
        );
    }
}

#[test]
fn a_name_that_cannot_be_a_file_fails_at_once() {
    // "a" is a file, so "a/b" cannot be; "c/d" makes "c" a directory, so "c"
    // cannot be a file. Two pages, so the second pair comes after the first landed.
    let server = Scripted::start(|path| match path {
        "/list" => (
            200,
            br#"{"FileNames": ["a", "c/d"], "NextMarker": "2"}"#.to_vec(),
        ),
        "/list?next-marker=2" => (200, br#"{"FileNames": ["a/b", "c"]}"#.to_vec()),
        p => (200, p.as_bytes().to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = bulkget(&[
        "mirror",
        &server.url(),
        t.path().to_str().unwrap(),
        "-c",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "permanent write errors were retried"
    );
    let err = stderr(&o);
    assert!(
        err.contains(
            "failed \"a/b\": cannot write: Not a directory (os error 20) (after 1 attempt)"
        ),
        "{err}"
    );
    assert!(err.contains("failed \"c\": cannot write"), "{err}");
    assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"/get/a");
    assert_eq!(std::fs::read(t.path().join("c/d")).unwrap(), b"/get/c/d");
}

#[test]
fn a_symlink_in_dest_that_leads_out_is_never_followed() {
    let server = Scripted::start(|path| match path {
        "/list" => (
            200,
            br#"{"FileNames": ["evil/x", "evil/new/y", "inner/z", "ok"]}"#.to_vec(),
        ),
        p => (200, p.as_bytes().to_vec()),
    });
    let t = tempfile::tempdir().unwrap();
    let (dest, outside) = (t.path().join("dest"), t.path().join("outside"));
    std::fs::create_dir_all(dest.join("real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // planted by someone else: one link out, one link that stays inside
    std::os::unix::fs::symlink(&outside, dest.join("evil")).unwrap();
    std::os::unix::fs::symlink("real", dest.join("inner")).unwrap();
    let o = bulkget(&["mirror", &server.url(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "failed \"evil/x\": cannot write: the directory \"evil\" leads outside the destination"
        ),
        "{err}"
    );
    assert!(err.contains("failed \"evil/new/y\""), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside DEST"
    );
    assert_eq!(std::fs::read(dest.join("real/z")).unwrap(), b"/get/inner/z");
    assert_eq!(std::fs::read(dest.join("ok")).unwrap(), b"/get/ok");
}
