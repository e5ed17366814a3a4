//! The transport against real peers, part 2: nginx over TLS with and
//! without HTTP/2, certificates of every bad kind, session resumption, a TLS
//! stream cut short or stalled, GOAWAY and a small stream limit, h2c.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{failures, read_json, stderr};
use crate::peers::{Nginx, Pki, assert_landed, get_list, run, tls_server, www};

#[test]
fn https_over_http2_and_http11_get_and_mirror() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["localhost", "127.0.0.1"], 2020, 2090);
    www(t.path(), 300, 3 << 20);
    let servers = tls_server("P0", &cert, true, "") + &tls_server("P1", &cert, false, "");
    let ng = Nginx::start(t.path(), 2, &servers);
    let (p0, p1) = (ng.addrs[0].port(), ng.addrs[1].port());
    let ca = pki.ca_file("ca");
    let ca = ca.to_str().unwrap();

    // A URL list over both servers, interleaved, and one large split file.
    let mut list = String::new();
    for i in 0..300 {
        let port = if i % 2 == 0 { p0 } else { p1 };
        list.push_str(&format!("https://127.0.0.1:{port}/d/f{i}\n"));
    }
    list.push_str(&format!("https://localhost:{p0}/d/big\n"));
    let (o, out) = get_list(
        t.path(),
        &list,
        &["--cacert", ca, "--split-size", "1M", "-q"],
    );
    assert!(
        o.status.success(),
        "{}\n{}\n{:?}",
        stderr(&o),
        ng.error_log(),
        failures(&out).first()
    );
    for i in 0..300 {
        assert_landed(&out, &format!("f{i}"), i, 100 + i);
    }
    assert_landed(&out, "big", 7, 3 << 20);
    let log = ng.access_log();
    assert!(log.contains(&format!("{p0} HTTP/2.0 /d/f0 206")), "{log}");
    assert!(log.contains(&format!("{p1} HTTP/1.1 /d/f1 206")), "{log}");
    assert!(log.contains(&format!("{p0} HTTP/2.0 /d/big 206")), "{log}");
    // The connections after the first to a host resumed its TLS session.
    assert!(log.contains(" tlsr c"), "no resumed TLS session:\n{log}");

    // mirror over HTTP/2, then over HTTP/1.1 by --http1.1.
    for (dest, flag, proto) in [("m2", "-q", "HTTP/2.0"), ("m1", "--http1.1", "HTTP/1.1")] {
        let d = t.path().join(dest);
        let url = format!("https://127.0.0.1:{p0}");
        let o = run(
            &["mirror", &url, d.to_str().unwrap(), "--cacert", ca, flag],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        for i in 0..300 {
            assert_landed(&d, &format!("f{i}"), i, 100 + i);
        }
        assert!(
            ng.access_log()
                .contains(&format!("{p0} {proto} /get/f299 200"))
        );
    }
}

#[test]
fn bad_certificates_fail_at_once_and_alone() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let rogue = Pki::new(&t.path().join("rogue"), "rogue");
    www(t.path(), 5, 10);
    let good = pki.leaf("good", &["127.0.0.1"], 2020, 2090);
    let unknown = rogue.leaf("unknown", &["127.0.0.1"], 2020, 2090);
    let expired = pki.leaf("expired", &["127.0.0.1"], 2000, 2001);
    let wrong = pki.leaf("wrong", &["other.example"], 2020, 2090);
    let servers = tls_server("P0", &good, true, "")
        + &tls_server("P1", &unknown, true, "")
        + &tls_server("P2", &expired, false, "")
        + &tls_server("P3", &wrong, true, "");
    let ng = Nginx::start(t.path(), 4, &servers);
    let mut list = String::new();
    for (k, a) in ng.addrs.iter().enumerate() {
        for i in 0..5 {
            list.push_str(&format!("https://{a}/d/f{i} s{k}/f{i}\n"));
        }
    }
    let stats = t.path().join("stats.json");
    let ca = pki.ca_file("ca");
    let started = Instant::now();
    let (o, out) = get_list(
        t.path(),
        &list,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for i in 0..5 {
        assert_landed(&out, &format!("s0/f{i}"), i, 100 + i);
    }
    let err = stderr(&o);
    let (p1, p2, p3) = (ng.addrs[1].port(), ng.addrs[2].port(), ng.addrs[3].port());
    assert!(
        err.contains(&format!(
            "TLS with https://127.0.0.1:{p1}: certificate signed by an unknown issuer"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "TLS with https://127.0.0.1:{p2}: certificate expired"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "TLS with https://127.0.0.1:{p3}: certificate not valid for the name 127.0.0.1"
        )),
        "{err}"
    );
    let f = failures(&out);
    assert_eq!(f.len(), 15, "{f:?}");
    assert!(f.iter().all(|r| r["attempts"] == 1), "{f:?}");
    let s = read_json(&stats);
    assert_eq!(s["retries"], 0, "{s}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Without --cacert the CA is unknown; with -k anything goes, said loudly.
    let out2 = t.path().join("out2");
    let url = format!("https://{}/d/f1", ng.addrs[0]);
    let o = run(&["get", &url, "-o", out2.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown issuer"), "{}", stderr(&o));
    let url = format!("https://{}/d/f2", ng.addrs[2]);
    let o = run(&["get", &url, "-o", out2.to_str().unwrap(), "-k"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--insecure: server certificates are not checked"));
    assert_landed(&out2, "f2", 2, 102);
    // An unreadable --cacert stops the run before anything starts.
    let o = run(
        &[
            "get",
            &url,
            "-o",
            out2.to_str().unwrap(),
            "--cacert",
            "/nonexistent.pem",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--cacert /nonexistent.pem"),
        "{}",
        stderr(&o)
    );
}

/// Relays to `to`; the answer on connection number `nth` (from 0) is cut
/// after `cut` bytes (closed, or held open in silence if `stall`).
fn cutting_relay(
    to: std::net::SocketAddr,
    nth: usize,
    cut: usize,
    stall: bool,
) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(client) = c else { return };
            let Ok(server) = TcpStream::connect(to) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut left = if n == nth { cut } else { usize::MAX };
                let mut buf = [0u8; 16384];
                while left > 0 {
                    let k = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k.min(left),
                    };
                    if client.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    left -= k;
                }
                if stall && left == 0 {
                    // silence, connection open: only the client's timeout ends it
                    let mut sink = [0u8; 16384];
                    while matches!(server.read(&mut sink), Ok(k) if k > 0) {}
                    std::thread::sleep(Duration::from_secs(30));
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

/// nginx over TLS (HTTP/1.1) serving `d/big` of `size` bytes behind
/// [`cutting_relay`]`(nth, cut, stall)`, and `bulkget get` of it with `args`:
/// the output, where it went, and nginx (for its log).
fn get_big_through_relay(
    dir: &Path,
    size: usize,
    (nth, cut, stall): (usize, usize, bool),
    args: &[&str],
) -> (Output, PathBuf, Nginx) {
    let pki = Pki::new(&dir.join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(dir, 1, size);
    let ng = Nginx::start(dir, 1, &tls_server("P0", &cert, false, ""));
    let relay = cutting_relay(ng.addrs[0], nth, cut, stall);
    let out = dir.join("out");
    let url = format!("https://{relay}/d/big");
    let ca = pki.ca_file("ca");
    let mut a = vec![
        "get",
        &url,
        "-o",
        out.to_str().unwrap(),
        "--cacert",
        ca.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    (run(&a, &[]), out, ng)
}

#[test]
fn a_tls_stream_cut_short_is_retried_and_never_landed_short() {
    let t = tempfile::tempdir().unwrap();
    let stats = t.path().join("stats.json");
    let args = ["--split", "1", "--stats-json", stats.to_str().unwrap()];
    let (o, out, _ng) = get_big_through_relay(t.path(), 2 << 20, (0, 300_000, false), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_landed(&out, "big", 7, 2 << 20);
    let s = read_json(&stats);
    assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn a_stalled_chunk_resumes_from_the_byte_where_it_stopped() {
    let t = tempfile::tempdir().unwrap();
    let mib = 1 << 20;
    // Connection 0 is the probe (chunk 0); connection 1 takes a later chunk
    // and goes silent after ~200 kB.
    let started = Instant::now();
    let args = ["--split", "2", "--split-size", "1M", "--timeout", "1"];
    let (o, out, ng) = get_big_through_relay(t.path(), 3 * mib, (1, 200_000, true), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_landed(&out, "big", 7, 3 * mib);
    assert!(started.elapsed() < Duration::from_secs(20));
    // Some request asked for a range that starts inside a chunk: the resume.
    let log = ng.access_log();
    let starts: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split("bytes=").nth(1)?.split('-').next()?.parse().ok())
        .collect();
    assert!(
        starts.iter().any(|s| s % mib != 0),
        "no mid-chunk resume in:\n{log}"
    );
}

#[test]
fn http2_goaway_and_a_small_stream_limit_lose_nothing() {
    // nginx ends an HTTP/2 connection with GOAWAY after 40 requests and
    // allows 4 streams at once, while bulkget keeps 32 requests in flight.
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(t.path(), 400, 10);
    let extra = "keepalive_requests 40; http2_max_concurrent_streams 4;";
    let ng = Nginx::start(t.path(), 1, &tls_server("P0", &cert, true, extra));
    let d = t.path().join("m");
    let url = format!("https://{}", ng.addrs[0]);
    let ca = pki.ca_file("ca");
    let o = run(
        &[
            "mirror",
            &url,
            d.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 0..400 {
        assert_landed(&d, &format!("f{i}"), i, 100 + i);
    }
    let log = ng.access_log();
    assert!(log.contains("HTTP/2.0 /get/f399 200"), "{log}");
    // 401 requests at most 40 a connection: GOAWAY came at least 10 times.
    let conns: std::collections::HashSet<&str> =
        log.lines().filter_map(|l| l.rsplit(' ').next()).collect();
    assert!(conns.len() >= 11, "{} connections:\n{log}", conns.len());
}

#[test]
fn http2_prior_knowledge_to_a_cleartext_server() {
    // bulkget's own server speaks h2c on its http port.
    let s = crate::common::synthetic(500, 100, 100, Default::default());
    let t = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "mirror",
            &s.url(),
            t.path().to_str().unwrap(),
            "--http2-prior-knowledge",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    crate::common::assert_synthetic_tree(t.path(), 500, 100);
    // An HTTP/1.1-only server refuses the preface: a clear, per-file error.
    let ng_dir = tempfile::tempdir().unwrap();
    www(ng_dir.path(), 1, 10);
    let ng = Nginx::start(
        ng_dir.path(),
        1,
        "server { listen 127.0.0.1:{P0}; root {DIR}/www; }\n",
    );
    let out = t.path().join("x");
    let url = format!("http://{}/d/f0", ng.addrs[0]);
    let o = run(
        &[
            "get",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--http2-prior-knowledge",
            "--retries",
            "1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP/2"), "{}", stderr(&o));
}

#[test]
fn bulkget_serve_over_https_with_both_protocols() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let (cert, key) = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    let s = bulkget::server::Server::start(
        "127.0.0.1:0",
        std::sync::Arc::new(bulkget::server::store::SyntheticStore::new(2000, 100)),
        bulkget::server::ServeConfig {
            tls: Some(bulkget::server::tls::server_config(&cert, &key).unwrap()),
            page_size: 300,
            faults: Default::default(),
            threads: 2,
        },
    )
    .unwrap();
    let url = format!("https://{}", s.addr);
    let ca = pki.ca_file("ca");
    for (dest, flag) in [("h2", "-q"), ("h1", "--http1.1")] {
        let d = t.path().join(dest);
        let o = run(
            &[
                "mirror",
                &url,
                d.to_str().unwrap(),
                "--cacert",
                ca.to_str().unwrap(),
                flag,
            ],
            &[],
        );
        assert!(o.status.success(), "{dest}: {}", stderr(&o));
        crate::common::assert_synthetic_tree(&d, 2000, 100);
    }
    // plain http to the https port is refused, clearly and at once
    let o = run(
        &[
            "mirror",
            &format!("http://{}", s.addr),
            t.path().join("x").to_str().unwrap(),
            "--retries",
            "0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
