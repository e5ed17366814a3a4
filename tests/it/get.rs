//! `bulkget get`: URL lists and large files over several Range connections.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bulkget::server::faults::Faults;
use bulkget::server::store::{Object, Page, Store, SyntheticStore};
use bulkget::server::{ServeConfig, Server};

use crate::common::*;

const MIB: u64 = 1 << 20;

fn assert_file(path: &Path, name: &str, size: u64) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got.len() as u64, size, "{}", path.display());
    assert!(
        got == bulkget::synthetic::content(name.as_bytes(), size),
        "{}: bytes differ",
        path.display()
    );
}

fn no_parts_left(dir: &Path) {
    let parts = dir.join(".bulkget/parts");
    let left = std::fs::read_dir(&parts).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "{} still holds partial downloads", parts.display());
}

#[test]
fn a_256_mib_file_with_1_4_and_16_connections() {
    let size = 256 * MIB;
    let s = synthetic(1, size, 10, Faults::default());
    let t = tempfile::tempdir().unwrap();
    for split in ["1", "4", "16"] {
        let out = t.path().join(split);
        let before = s.counts.gets.load(Ordering::Relaxed);
        let o = bulkget(&[
            "get",
            &format!("{}/get/f000000000", s.url()),
            "-o",
            out.to_str().unwrap(),
            "--split",
            split,
            "-q",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_file(&out.join("f000000000"), "f000000000", size);
        no_parts_left(&out);
        let gets = s.counts.gets.load(Ordering::Relaxed) - before;
        // one request with --split 1; 32 chunks of 8 MiB otherwise
        assert_eq!(gets, if split == "1" { 1 } else { 32 }, "--split {split}");
    }
}

#[test]
fn without_range_support_one_stream_is_used() {
    let size = 20 * MIB;
    let s = synthetic(
        1,
        size,
        10,
        Faults {
            no_ranges: true,
            ..Faults::default()
        },
    );
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "get",
        &format!("{}/get/f000000000", s.url()),
        "-o",
        t.path().to_str().unwrap(),
        "--split",
        "8",
        "--split-size",
        "1M",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_file(&t.path().join("f000000000"), "f000000000", size);
    assert_eq!(s.counts.gets.load(Ordering::Relaxed), 1);
}

#[test]
fn faults_on_ranges_still_give_every_byte() {
    let size = 24 * MIB;
    let faults = Faults {
        fail_503: 0.1,
        reset: 0.1,
        truncate: 0.1,
        retry_after: 0,
        seed: 5,
        ..Faults::default()
    };
    let s = synthetic(1, size, 10, faults);
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "get",
        &format!("{}/get/f000000000", s.url()),
        "-o",
        t.path().to_str().unwrap(),
        "--split",
        "8",
        "--split-size",
        "1M",
        "--retries",
        "30",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_file(&t.path().join("f000000000"), "f000000000", size);
    assert!(
        s.counts.gets.load(Ordering::Relaxed) > 24,
        "faults were injected and chunks retried"
    );
}

#[test]
fn kill_9_mid_download_then_rerun_fetches_only_what_is_missing() {
    let size = 64 * MIB;
    // 4 connections of 8 MiB/s: about two seconds for the whole file
    let s = synthetic(
        1,
        size,
        10,
        Faults {
            rate_limit: 8 * MIB,
            ..Faults::default()
        },
    );
    let t = tempfile::tempdir().unwrap();
    let url = format!("{}/get/f000000000", s.url());
    let args = [
        "get",
        url.as_str(),
        "-o",
        t.path().to_str().unwrap(),
        "--split",
        "4",
        "--split-size",
        "1M",
        "-q",
    ];
    let mut child = spawn_bulkget(&args);
    wait_for("half the file", || {
        s.counts.bytes.load(Ordering::Relaxed) >= size / 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !t.path().join("f000000000").exists(),
        "a partial file stands under the final name"
    );
    let o = bulkget(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_file(&t.path().join("f000000000"), "f000000000", size);
    no_parts_left(t.path());
    let served = s.counts.bytes.load(Ordering::Relaxed);
    assert!(
        served * 4 <= size * 5,
        "{served} bytes served for a {size}-byte file"
    );
}

/// A store whose contents are swapped mid-test: the same URL, another file
/// (restarting a server on the same port races with other tests' client
/// sockets, which may take the port in between).
struct Swappable(std::sync::Mutex<Arc<dyn Store>>);

impl Store for Swappable {
    fn list(&self, after: Option<&str>, limit: usize) -> std::io::Result<Page> {
        self.0.lock().unwrap().list(after, limit)
    }
    fn open(&self, name: &str) -> Option<Object> {
        self.0.lock().unwrap().open(name)
    }
    fn identity(&self) -> Vec<u8> {
        self.0.lock().unwrap().identity()
    }
}

#[test]
fn a_changed_remote_starts_over_and_says_so() {
    let store = |size| -> Arc<dyn Store> { Arc::new(SyntheticStore::new(1, size)) };
    let swap = Arc::new(Swappable(std::sync::Mutex::new(store(32 * MIB))));
    let cfg = ServeConfig {
        tls: None,
        page_size: 10,
        faults: Faults {
            rate_limit: 4 * MIB,
            ..Faults::default()
        },
        threads: 2,
    };
    let s = Server::start("127.0.0.1:0", swap.clone(), cfg).unwrap();
    let addr = s.addr.to_string();
    let t = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/get/f000000000");
    let args = [
        "get",
        url.as_str(),
        "-o",
        t.path().to_str().unwrap(),
        "--split",
        "2",
        "--split-size",
        "1M",
    ];
    let mut child = spawn_bulkget(&args);
    wait_for("some chunks", || {
        s.counts.bytes.load(Ordering::Relaxed) >= 8 * MIB
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // the same URL now serves another file
    *swap.0.lock().unwrap() = store(20 * MIB);
    let o = bulkget(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the remote file changed since the last run"),
        "{}",
        stderr(&o)
    );
    assert_file(&t.path().join("f000000000"), "f000000000", 20 * MIB);
}

#[test]
fn a_list_of_10000_urls_with_some_404s() {
    let s = synthetic(9_990, 100, 1000, Faults::default());
    let t = tempfile::tempdir().unwrap();
    let list = t.path().join("urls.txt");
    let mut f = std::fs::File::create(&list).unwrap();
    writeln!(f, "# ten thousand URLs, the last ten missing").unwrap();
    for i in 0..10_000 {
        writeln!(f, "{}/get/f{i:09}", s.url()).unwrap();
    }
    drop(f);
    let get = |dest: &Path, extra: &[&str]| {
        let mut args = vec!["get", "-i", list.to_str().unwrap(), "-q", "-o"];
        args.push(dest.to_str().unwrap());
        args.extend(extra);
        bulkget(&args)
    };
    let out = t.path().join("out");
    let o = get(&out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_synthetic_tree(&out, 9_990, 100);
    let ledger = std::fs::read_to_string(out.join(".bulkget/failures.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 10);
    assert!(ledger.lines().all(|l| l.contains("HTTP 404")));
    assert!(stderr(&o).contains("10 failed for good"), "{}", stderr(&o));
    // a rerun skips what is there and fails the same ten again
    let before = s.counts.gets.load(Ordering::Relaxed);
    let o = get(&out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(s.counts.gets.load(Ordering::Relaxed) - before, 10);
    // --sink null fetches everything again and keeps nothing
    let null = t.path().join("null");
    let sj = t.path().join("stats.json");
    let before = s.counts.gets.load(Ordering::Relaxed);
    let o = get(
        &null,
        &["--sink", "null", "--stats-json", sj.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(s.counts.gets.load(Ordering::Relaxed) - before, 10_000);
    let st = read_json(&sj);
    assert_eq!(
        (st["files"].as_u64(), st["failed"].as_u64()),
        (Some(9_990), Some(10))
    );
    assert_eq!(st["bytes"], 999_000);
    let kept: Vec<_> = std::fs::read_dir(&null)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(kept, [".bulkget"], "the null sink keeps no file");
}

#[test]
fn names_bad_lines_collisions_checksums_and_stdin() {
    let s = synthetic(5, 100, 10, Faults::default());
    let u = s.url();
    let good_sum = {
        use sha2::Digest;
        let d: [u8; 32] =
            sha2::Sha256::digest(bulkget::synthetic::content(b"f000000002", 100)).into();
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let list = format!(
        "{u}/get/f000000000 renamed.bin\n\
         {u}/get/f000000001 ../escape\n\
         {u}/get/f000000001 /abs\n\
         not-a-url\n\
         {u}/get/f000000002 sub/two sha256={good_sum}\n\
         {u}/get/f000000003 three sha256={}\n\
         {u}/get/f000000004 renamed.bin\n\
         \n\
         # done\n",
        "0".repeat(64)
    );
    let t = tempfile::tempdir().unwrap();
    let mut child = crate::common::command(&[])
        .args([
            "get",
            "-i",
            "-",
            "-o",
            t.path().to_str().unwrap(),
            "-c",
            "1",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_file(&t.path().join("renamed.bin"), "f000000000", 100);
    assert_file(&t.path().join("sub/two"), "f000000002", 100);
    assert!(
        !t.path().join("three").exists(),
        "a file with the wrong checksum landed"
    );
    for want in [
        "\"list line 2\": output name \"../escape\": name has a '.' or '..' segment",
        "\"list line 3\": output name \"/abs\": absolute name",
        "\"list line 4\": not-a-url: expected http://",
        "failed \"three\": sha256 mismatch",
        "failed \"renamed.bin\": another input of this run already wrote this file",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("5 failed for good"), "{err}");
    let siblings: Vec<_> = std::fs::read_dir(t.path().parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() == "escape")
        .collect();
    assert!(siblings.is_empty());
}

/// A server whose ranges lie: chunk 1 comes back with chunk 0's
/// Content-Range, chunk 2 with 416.
fn lying_ranges(path: &str, range: Option<&str>) -> Vec<u8> {
    const SIZE: u64 = 3 * MIB;
    let body = |a: u64, b: u64| vec![b'x'; (b - a + 1) as usize];
    let (status, cr, data) = match (path, range) {
        ("/get/f", Some("bytes=0-1048575")) => {
            (206, "bytes 0-1048575/3145728".to_string(), body(0, MIB - 1))
        }
        ("/get/f", Some("bytes=1048576-2097151")) => {
            (206, "bytes 0-1048575/3145728".to_string(), body(0, MIB - 1))
        }
        ("/get/f", Some(_)) => (416, format!("bytes */{SIZE}"), Vec::new()),
        _ => (404, String::new(), Vec::new()),
    };
    let mut r = format!(
        "HTTP/1.1 {status} X\r\nContent-Range: {cr}\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    r.extend_from_slice(&data);
    r
}

#[test]
fn a_content_range_that_disagrees_and_a_416_are_never_written() {
    let server = Scripted::raw(lying_ranges);
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "get",
        &format!("{}/get/f", server.url()),
        "-o",
        t.path().to_str().unwrap(),
        "--split",
        "2",
        "--split-size",
        "1M",
        "--retries",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("failed \"f\":"), "{err}");
    assert!(
        err.contains("Content-Range") || err.contains("HTTP 416"),
        "{err}"
    );
    assert!(
        !t.path().join("f").exists(),
        "a file assembled from bad ranges landed"
    );
}

#[test]
fn chunked_bodies_and_connection_close_are_read_right() {
    // /list and every /get answer chunked; every second /get closes the connection.
    let n = std::sync::atomic::AtomicU64::new(0);
    let server = Scripted::raw(move |path, _| {
        let body: Vec<u8> = if path == "/list" {
            br#"{"FileNames": ["a", "b", "c", "d", "e"]}"#.to_vec()
        } else {
            format!("content of {path}").repeat(50).into_bytes()
        };
        let close = path != "/list" && n.fetch_add(1, Ordering::Relaxed) % 2 == 1;
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        for piece in body.chunks(100) {
            r.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    });
    let t = tempfile::tempdir().unwrap();
    let o = bulkget(&[
        "mirror",
        &server.url(),
        t.path().to_str().unwrap(),
        "-q",
        "-c",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["a", "b", "c", "d", "e"] {
        let want = format!("content of /get/{f}").repeat(50);
        assert_eq!(std::fs::read_to_string(t.path().join(f)).unwrap(), want);
    }
}

#[test]
fn checksum_flag_for_a_single_url() {
    use sha2::Digest;
    let size = 3 * MIB; // split: the digest is checked on the assembled file
    let s = synthetic(1, size, 10, Faults::default());
    let url = format!("{}/get/f000000000", s.url());
    let d: [u8; 32] = sha2::Sha256::digest(bulkget::synthetic::content(b"f000000000", size)).into();
    let good = format!(
        "sha256={}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let t = tempfile::tempdir().unwrap();
    let (ok_dir, bad_dir) = (t.path().join("ok"), t.path().join("bad"));
    let run = |dir: &Path, sum: &str| {
        let d = dir.to_str().unwrap();
        bulkget(&[
            "get",
            url.as_str(),
            "-o",
            d,
            "--checksum",
            sum,
            "--split",
            "4",
            "--split-size",
            "1M",
        ])
    };
    let o = run(&ok_dir, &good);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_file(&ok_dir.join("f000000000"), "f000000000", size);
    let o = run(&bad_dir, &format!("sha256={}", "1".repeat(64)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", stderr(&o));
    assert!(!bad_dir.join("f000000000").exists());
    no_parts_left(&bad_dir);
    let o = bulkget(&[
        "get",
        url.as_str(),
        url.as_str(),
        "-o",
        bad_dir.to_str().unwrap(),
        "--checksum",
        &good,
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--checksum with two URLs is refused"
    );
}
