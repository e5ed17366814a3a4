//! The transport against real peers: nginx over TLS with and without HTTP/2,
//! certificates of every bad kind, redirect chains and loops from nginx
//! `return 30x`, tinyproxy for http and https (CONNECT), a TLS stream cut
//! short, and Happy Eyeballs on real sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{command, stderr};
use crate::peers::{Nginx, Pki, Tinyproxy};

/// Runs bulkget with exactly the proxy variables given.
fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = command(args);
    c.stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bulkget")
}

fn content(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (i * 31 + j * 7 % 251) as u8).collect()
}

/// `www/d/f{i}` for i < n (and the same under `www/get/` with a `/list`
/// page for mirror), plus `www/d/big` of `big` bytes.
fn www(dir: &Path, n: usize, big: usize) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("d")).unwrap();
    std::fs::create_dir_all(www.join("get")).unwrap();
    let mut names = Vec::new();
    for i in 0..n {
        std::fs::write(www.join(format!("d/f{i}")), content(i, 100 + i)).unwrap();
        std::fs::write(www.join(format!("get/f{i}")), content(i, 100 + i)).unwrap();
        names.push(format!("f{i}"));
    }
    std::fs::write(
        www.join("list"),
        serde_json::json!({ "FileNames": names }).to_string(),
    )
    .unwrap();
    std::fs::write(www.join("d/big"), content(7, big)).unwrap();
    www
}

fn tls_server(port: &str, cert: &(PathBuf, PathBuf), h2: bool, extra: &str) -> String {
    format!(
        "server {{ listen 127.0.0.1:{{{port}}} ssl{}; ssl_certificate {}; ssl_certificate_key {}; root {{DIR}}/www; location = /list {{ default_type application/json; }} {extra} }}\n",
        if h2 { " http2" } else { "" },
        cert.0.display(),
        cert.1.display()
    )
}

fn assert_landed(out: &Path, name: &str, i: usize, size: usize) {
    let got = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(got == content(i, size), "{name}: wrong content");
}

fn failures(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join(".bulkget/failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

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
    let lf = t.path().join("urls.txt");
    std::fs::write(&lf, list).unwrap();
    let out = t.path().join("out");
    let o = run(
        &[
            "get",
            "-i",
            lf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca,
            "--split-size",
            "1M",
            "-q",
        ],
        &[],
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
    let lf = t.path().join("urls.txt");
    std::fs::write(&lf, list).unwrap();
    let out = t.path().join("out");
    let stats = t.path().join("stats.json");
    let ca = pki.ca_file("ca");
    let started = Instant::now();
    let o = run(
        &[
            "get",
            "-i",
            lf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[],
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
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
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

#[test]
fn redirects_across_schemes_with_loops_and_limits() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(t.path(), 5, 5 << 20);
    let plain = "server { listen 127.0.0.1:{P0}; absolute_redirect off; root {DIR}/www;
        location = /r/a { return 301 /r/b; }
        location = /r/b { return 302 https://127.0.0.1:{P1}/d/f1; }
        location = /r/rel { return 307 ../d/f2; }
        location = /r/big { return 308 https://127.0.0.1:{P1}/d/big; }
        location = /loop/1 { return 302 /loop/2; }
        location = /loop/2 { return 302 /loop/1; }
        location = /c/1 { return 302 /c/2; }
        location = /c/2 { return 302 /c/3; }
        location = /c/3 { return 302 /d/f3; }
    }\n";
    let servers = plain.to_string() + &tls_server("P1", &cert, true, "");
    let ng = Nginx::start(t.path(), 2, &servers);
    let h = ng.addrs[0];
    let list = format!(
        "http://{h}/r/a one\nhttp://{h}/r/rel two\nhttp://{h}/loop/1 looped\nhttp://{h}/c/1 chained\nhttp://{h}/r/big\n"
    );
    let lf = t.path().join("urls.txt");
    std::fs::write(&lf, list).unwrap();
    let out = t.path().join("out");
    let ca = pki.ca_file("ca");
    let o = run(
        &[
            "get",
            "-i",
            lf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--max-redirs",
            "2",
            "--split-size",
            "1M",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_landed(&out, "one", 1, 101);
    assert_landed(&out, "two", 2, 102);
    assert_landed(&out, "big", 7, 5 << 20);
    assert!(!out.join("looped").exists() && !out.join("chained").exists());
    let f = failures(&out);
    assert_eq!(f.len(), 2, "{f:?}");
    let why = |name: &str| {
        f.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["error"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(
        why("looped").starts_with("redirect: a loop"),
        "{}",
        why("looped")
    );
    assert!(
        why("chained").starts_with("redirect: more than 2 redirects"),
        "{}",
        why("chained")
    );
    let err = stderr(&o);
    assert!(err.contains("failed \"looped\": redirect: a loop"), "{err}");
    // The large file's chunks went to where the redirect led.
    assert!(
        ng.access_log()
            .contains(&format!("{} HTTP/2.0 /d/big 206", ng.addrs[1].port()))
    );
}

#[test]
fn proxies_from_the_environment_and_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(t.path(), 4, 10);
    let servers = "server { listen 127.0.0.1:{P0}; root {DIR}/www; }\n".to_string()
        + &tls_server("P1", &cert, true, "");
    let ng = Nginx::start(t.path(), 2, &servers);
    let tp = Tinyproxy::start(&t.path().join("tp"));
    let proxy = format!("http://{}", tp.addr);
    let ca = pki.ca_file("ca");
    let ca = ca.to_str().unwrap();
    let (plain, tls) = (ng.addrs[0], ng.addrs[1]);
    let urls = [
        format!("http://{plain}/d/f0"),
        format!("https://{tls}/d/f1"),
    ];
    // Both URLs into a fresh DEST, with `args` and exactly the `env` given;
    // succeeds only if both landed.
    let both = |dest: &str, args: &[&str], env: &[(&str, String)]| {
        let out = t.path().join(dest);
        let mut a = vec![
            "get",
            &urls[0],
            &urls[1],
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca,
        ];
        a.extend_from_slice(args);
        let o = run(&a, env);
        assert!(o.status.success(), "{dest}: {}\n{}", stderr(&o), tp.log());
        assert_landed(&out, "f0", 0, 100);
        assert_landed(&out, "f1", 1, 101);
    };
    both(
        "out",
        &[],
        &[
            ("http_proxy", proxy.clone()),
            ("HTTPS_PROXY", proxy.clone()),
        ],
    );
    let log = tp.log();
    assert!(
        log.contains(&format!("GET http://{plain}/d/f0 HTTP/1.1")),
        "{log}"
    );
    assert!(log.contains(&format!("CONNECT {tls} HTTP/1.1")), "{log}");

    // --proxy overrides the environment; no_proxy bypasses; HTTP_PROXY in
    // upper case is ignored, as curl ignores it.
    let dead = "http://127.0.0.1:1".to_string();
    both("out2", &["--proxy", &proxy], &[("all_proxy", dead.clone())]);
    both(
        "out3",
        &[],
        &[
            ("HTTP_PROXY", dead.clone()),
            ("https_proxy", dead.clone()),
            ("NO_PROXY", "localhost,127.0.0.1".into()),
        ],
    );
    // A dead proxy is a clear, retried error naming the proxy.
    let out = t.path().join("out4");
    let o = run(
        &[
            "get",
            &urls[1],
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca,
            "--retries",
            "1",
        ],
        &[("https_proxy", dead)],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the proxy 127.0.0.1:1"),
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

#[test]
fn a_tls_stream_cut_short_is_retried_and_never_landed_short() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(t.path(), 1, 2 << 20);
    let ng = Nginx::start(t.path(), 1, &tls_server("P0", &cert, false, ""));
    let relay = cutting_relay(ng.addrs[0], 0, 300_000, false);
    let out = t.path().join("out");
    let stats = t.path().join("stats.json");
    let url = format!("https://{relay}/d/big");
    let ca = pki.ca_file("ca");
    let o = run(
        &[
            "get",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--split",
            "1",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_landed(&out, "big", 7, 2 << 20);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn a_stalled_chunk_resumes_from_the_byte_where_it_stopped() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    let mib = 1 << 20;
    www(t.path(), 1, 3 * mib);
    let ng = Nginx::start(t.path(), 1, &tls_server("P0", &cert, false, ""));
    // Connection 0 is the probe (chunk 0); connection 1 takes a later chunk
    // and goes silent after ~200 kB.
    let relay = cutting_relay(ng.addrs[0], 1, 200_000, true);
    let out = t.path().join("out");
    let url = format!("https://{relay}/d/big");
    let ca = pki.ca_file("ca");
    let started = Instant::now();
    let o = run(
        &[
            "get",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--split",
            "2",
            "--split-size",
            "1M",
            "--timeout",
            "1",
        ],
        &[],
    );
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
fn happy_eyeballs_moves_on_from_an_address_that_never_answers() {
    // 127.0.0.2:P accepts nothing more (its queue is full, SYNs are dropped):
    // the connect hangs. 127.0.0.1:P answers. Tried in that order, the
    // second must be reached after ~250 ms, not after a connect timeout.
    let good = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = good.local_addr().unwrap().port();
    let black = TcpListener::bind(("127.0.0.2", port)).expect("127.0.0.2 is loopback on Linux");
    // SAFETY: lowering the backlog of a socket we own.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&black), 0) };
    let mut held = Vec::new();
    loop {
        match TcpStream::connect_timeout(
            &(IpAddr::from([127, 0, 0, 2]), port).into(),
            Duration::from_millis(300),
        ) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
        assert!(held.len() < 16, "the backlog never filled");
    }
    let ips = [IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 1])];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let s = rt
        .block_on(bulkget::fetch::net::happy_eyeballs(&ips, port))
        .expect("connects to the second address");
    let took = started.elapsed();
    assert_eq!(s.peer_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // A refused address costs nothing: the next is tried at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let cport = closed.local_addr().unwrap().port();
    drop(closed);
    let started = Instant::now();
    let r = rt.block_on(bulkget::fetch::net::happy_eyeballs(
        &[IpAddr::from([127, 0, 0, 1])],
        cport,
    ));
    assert!(r.is_err() && started.elapsed() < Duration::from_millis(200));
}

#[test]
fn localhost_by_name_connects_fast() {
    let s = crate::common::synthetic(3, 100, 10, Default::default());
    let t = tempfile::tempdir().unwrap();
    let url = format!("http://localhost:{}/get/f000000000", s.addr.port());
    let started = Instant::now();
    let o = run(
        &[
            "get",
            &url,
            "-o",
            t.path().to_str().unwrap(),
            "--connect-timeout",
            "5",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(t.path().join("f000000000")).unwrap().len(),
        100
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

/// A server that answers the first request of each connection and closes
/// it without a word, whatever else was asked (it does not pipeline).
fn one_answer_a_connection() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&got);
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let body = format!("body of {path}");
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

#[test]
fn a_server_that_does_not_pipeline_costs_no_file() {
    let addr = one_answer_a_connection();
    let t = tempfile::tempdir().unwrap();
    let list: String = (0..300).map(|i| format!("http://{addr}/x{i}\n")).collect();
    let lf = t.path().join("urls.txt");
    std::fs::write(&lf, list).unwrap();
    let out = t.path().join("out");
    let o = run(
        &[
            "get",
            "-i",
            lf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--retries",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sending it one request at a time"),
        "{}",
        stderr(&o)
    );
    // every answer went to the file that asked for it
    for i in 0..300 {
        let got = std::fs::read_to_string(out.join(format!("x{i}"))).unwrap();
        assert_eq!(got, format!("body of /x{i}"));
    }
}
