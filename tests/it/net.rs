//! The transport against real peers, part 1: redirect chains and loops from
//! nginx `return 30x`, tinyproxy for http and https (CONNECT), Happy
//! Eyeballs on real sockets, and servers that do not pipeline. TLS and
//! HTTP/2 are in `tls`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{failures, stderr};
use crate::peers::{Nginx, Pki, Tinyproxy, assert_landed, get_list, run, tls_server, www};

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
    let ca = pki.ca_file("ca");
    let (o, out) = get_list(
        t.path(),
        &list,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--max-redirs",
            "2",
            "--split-size",
            "1M",
        ],
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
    let (o, out) = get_list(t.path(), &list, &["--retries", "1"]);
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
