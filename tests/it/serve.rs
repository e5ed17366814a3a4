//! `bulkget serve`: the API, the stores, Range, traversal, faults, curl, h2c.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkget::server::faults::Faults;

use crate::common::*;

#[test]
fn pages_concatenate_to_the_full_sorted_listing() {
    for page in [1, 7, 1000] {
        let s = synthetic(50, 100, page, Faults::default());
        let names = list_all(s.addr);
        let want: Vec<String> = (0..50).map(|i| format!("f{i:09}")).collect();
        assert_eq!(names, want, "page size {page}");
    }
    let empty = synthetic(0, 100, 7, Faults::default());
    let a = get(empty.addr, "/list");
    assert_eq!(a.status, 200);
    assert_eq!(String::from_utf8(a.body).unwrap(), r#"{"FileNames":[]}"#);
}

#[test]
fn last_page_has_no_marker_even_when_full() {
    let s = synthetic(14, 100, 7, Faults::default());
    let first: serde_json::Value = serde_json::from_slice(&get(s.addr, "/list").body).unwrap();
    let m = first["NextMarker"].as_str().unwrap();
    let second: serde_json::Value =
        serde_json::from_slice(&get(s.addr, &format!("/list?next-marker={m}")).body).unwrap();
    assert_eq!(second["FileNames"].as_array().unwrap().len(), 7);
    assert!(second.get("NextMarker").is_none());
}

#[test]
fn a_token_never_issued_is_a_400_with_json() {
    let s = synthetic(10, 100, 3, Faults::default());
    for bad in ["nonsense", "66303030.0000000000000000", ""] {
        let a = get(s.addr, &format!("/list?next-marker={bad}"));
        assert_eq!(a.status, 400, "{bad:?}");
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("not issued"));
    }
}

fn tricky_tree() -> (tempfile::TempDir, Vec<(String, Vec<u8>)>) {
    let t = tempfile::tempdir().unwrap();
    let files = [
        "a.txt",
        "a b/c d.txt",
        "a-c",
        "a/b",
        "a/z/deep/er.bin",
        "hash#x",
        "pct%41",
        "q?mark",
        "ünï/cödé ✓",
        "zz",
    ];
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let p = t.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body = format!("file {i}: {f}\n").repeat(i + 1).into_bytes();
        std::fs::write(&p, &body).unwrap();
        out.push((f.to_string(), body));
    }
    (t, out)
}

#[test]
fn directory_store_lists_nested_and_odd_names_in_segment_order() {
    let (t, files) = tricky_tree();
    let s = dir_server(t.path(), 3);
    let names = list_all(s.addr);
    // Segment order: "a" (dir) < "a b" < "a-c" < "a.txt" ... "a/b" comes with "a".
    let want = [
        "a/b",
        "a/z/deep/er.bin",
        "a b/c d.txt",
        "a-c",
        "a.txt",
        "hash#x",
        "pct%41",
        "q?mark",
        "zz",
        "ünï/cödé ✓",
    ];
    assert_eq!(names, want);
    for (name, body) in files {
        let a = get(s.addr, &format!("/get/{}", url_path(&name)));
        assert_eq!(a.status, 200, "{name}");
        assert_eq!(a.body, body, "{name}");
        assert!(
            a.headers.contains_key("etag") && a.headers.contains_key("last-modified"),
            "{name}"
        );
        assert_eq!(a.headers["accept-ranges"], "bytes");
    }
}

#[test]
fn nothing_outside_the_directory_is_served() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret"), b"secret").unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok"), b"ok").unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret"), root.join("link-out")).unwrap();
    std::os::unix::fs::symlink(root.join("ok"), root.join("link-in")).unwrap();
    let s = dir_server(&root, 100);
    assert_eq!(list_all(s.addr), ["ok"], "symlinks are not listed");
    for p in [
        "/get/../secret",
        "/get/%2e%2e/secret",
        "/get/%2E%2E%2Fsecret",
        "/get//etc/passwd",
        "/get/link-out",
        "/get/./ok",
        "/get/",
    ] {
        assert_eq!(get(s.addr, p).status, 404, "{p}");
    }
    assert_eq!(get(s.addr, "/get/link-in").body, b"ok");
}

#[test]
fn ranges_head_and_errors() {
    let s = synthetic(3, 1000, 10, Faults::default());
    let full = bulkget::synthetic::content(b"f000000001", 1000);
    let a = raw(s.addr, "GET", "/get/f000000001", "Range: bytes=10-19\r\n");
    assert_eq!((a.status, a.body.as_slice()), (206, &full[10..20]));
    assert_eq!(a.headers["content-range"], "bytes 10-19/1000");
    let a = raw(s.addr, "GET", "/get/f000000001", "Range: bytes=-5\r\n");
    assert_eq!(a.body, &full[995..]);
    let a = raw(s.addr, "GET", "/get/f000000001", "Range: bytes=990-\r\n");
    assert_eq!(a.body, &full[990..]);
    let a = raw(s.addr, "GET", "/get/f000000001", "Range: bytes=1000-\r\n");
    assert_eq!(
        (a.status, a.headers["content-range"].as_str()),
        (416, "bytes */1000")
    );
    let a = raw(s.addr, "HEAD", "/get/f000000001", "");
    assert_eq!(
        (a.status, a.headers["content-length"].as_str()),
        (200, "1000")
    );
    assert!(a.headers.contains_key("etag"));
    assert_eq!(get(s.addr, "/get/f000000003").status, 404);
    assert_eq!(get(s.addr, "/get/nope").status, 404);
    assert_eq!(get(s.addr, "/").status, 404);
    let a = raw(s.addr, "POST", "/get/f000000001", "Content-Length: 0\r\n");
    assert_eq!((a.status, a.headers["allow"].as_str()), (405, "GET, HEAD"));
    assert_eq!(raw(s.addr, "DELETE", "/list", "").status, 405);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = synthetic(5, 100, 10, Faults::default());
    let mut c = TcpStream::connect(s.addr).unwrap();
    let mut req = String::new();
    for i in [3, 0, 4] {
        req += &format!("GET /get/f00000000{i} HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    req += "GET /list HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    c.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let answers = parse_answers(&all);
    assert_eq!(answers.len(), 4);
    for (a, i) in answers.iter().zip([3, 0, 4]) {
        assert_eq!(
            a.body,
            bulkget::synthetic::content(format!("f00000000{i}").as_bytes(), 100)
        );
    }
    assert!(answers[3].body.starts_with(b"{\"FileNames\""));
}

fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let o = Command::new("curl")
        .args(["-s", "-S"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        o.status.code().unwrap_or(-1),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn curl_against_the_server() {
    let (t, files) = tricky_tree();
    let s = dir_server(t.path(), 100);
    let u = s.url();
    let (name, body) = &files[1]; // "a b/c d.txt"
    let (code, out, _) = curl(&[&format!("{u}/get/{}", url_path(name))]);
    assert_eq!((code, &out), (0, body));
    for (range, want) in [
        ("0-4", &body[0..5]),
        ("3-7", &body[3..8]),
        ("-4", &body[body.len() - 4..]),
    ] {
        let (code, out, _) = curl(&["-r", range, &format!("{u}/get/{}", url_path(name))]);
        assert_eq!((code, out.as_slice()), (0, want), "range {range}");
    }
    let (_, out, _) = curl(&[
        "-r",
        "100000-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{u}/get/a.txt"),
    ]);
    assert_eq!(out, b"416");
    let (_, out, _) = curl(&["-I", &format!("{u}/get/a.txt")]);
    let head = String::from_utf8(out).unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200")
            && head.contains("content-length: 14")
            && head.contains("etag:"),
        "{head}"
    );
    let (_, out, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{u}/get/missing"),
    ]);
    assert_eq!(out, b"404");
    for p in ["/get/../a.txt", "/get/%2e%2e/a.txt", "/get//etc/passwd"] {
        let (_, out, _) = curl(&[
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{u}{p}"),
        ]);
        assert_eq!(out, b"404", "{p}");
    }
    let (code, out, err) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        " %{http_version}",
        &format!("{u}/get/zz"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{} 2", String::from_utf8_lossy(&files[9].1))
    );
}

#[test]
fn fault_503_and_429_carry_retry_after() {
    let s = synthetic(
        2,
        100,
        10,
        Faults {
            fail_503: 1.0,
            retry_after: 7,
            ..Faults::default()
        },
    );
    let a = get(s.addr, "/get/f000000000");
    assert_eq!((a.status, a.headers["retry-after"].as_str()), (503, "7"));
    let s = synthetic(
        2,
        100,
        10,
        Faults {
            fail_429: 1.0,
            retry_after: 2,
            ..Faults::default()
        },
    );
    let a = get(s.addr, "/get/f000000000");
    assert_eq!((a.status, a.headers["retry-after"].as_str()), (429, "2"));
    // listing is never faulted
    assert_eq!(get(s.addr, "/list").status, 200);
}

#[test]
fn fault_reset_and_truncate_cut_bodies_short() {
    let size = 200_000;
    // curl: 56 = receive failure (reset), 18 = partial file (short of Content-Length)
    let s = synthetic(
        2,
        size,
        10,
        Faults {
            reset: 1.0,
            ..Faults::default()
        },
    );
    let (code, out, err) = curl(&[&format!("{}/get/f000000000", s.url())]);
    assert_eq!(code, 56, "{err}");
    assert!(out.len() < size as usize);
    let s = synthetic(
        2,
        size,
        10,
        Faults {
            truncate: 1.0,
            ..Faults::default()
        },
    );
    let (code, out, err) = curl(&[&format!("{}/get/f000000000", s.url())]);
    assert_eq!(code, 18, "{err}");
    assert!(out.len() < size as usize && !out.is_empty());
}

#[test]
fn fault_latency_bandwidth_and_no_ranges() {
    let s = synthetic(
        2,
        300_000,
        10,
        Faults {
            latency: Duration::from_millis(300),
            ..Faults::default()
        },
    );
    let t = Instant::now();
    assert_eq!(get(s.addr, "/get/f000000000").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let s = synthetic(
        2,
        300_000,
        10,
        Faults {
            rate_limit: 400_000,
            ..Faults::default()
        },
    );
    let t = Instant::now();
    let a = get(s.addr, "/get/f000000000");
    assert_eq!(a.body.len(), 300_000);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "300 kB at 400 kB/s took {:?}",
        t.elapsed()
    );

    let s = synthetic(
        2,
        1000,
        10,
        Faults {
            no_ranges: true,
            ..Faults::default()
        },
    );
    let a = raw(s.addr, "GET", "/get/f000000000", "Range: bytes=0-9\r\n");
    assert_eq!((a.status, a.body.len()), (200, 1000));
    assert!(!a.headers.contains_key("accept-ranges"));
}

#[test]
fn serve_command_prints_its_address_first_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--synthetic",
            "5",
            "--addr",
            "127.0.0.1:0",
            "--page-size",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("first line names the address");
    let names = list_all(url.parse().unwrap());
    assert_eq!(names.len(), 5);
    signal(&child, 15);
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
}
