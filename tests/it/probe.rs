//! `exists` and `stat` against nginx (present, absent, 403, 500, a location
//! that refuses HEAD, a redirect), local paths, in input order.

use std::path::Path;

use crate::common::stderr;
use crate::peers::{Nginx, run, www};

const SERVER: &str = "server { listen 127.0.0.1:{P0}; root {DIR}/www;
    location /forbidden/ { return 403; }
    location /broken/ { return 500; }
    location /nohead/ { if ($request_method = HEAD) { return 405; } alias {DIR}/www/d/; }
    location /moved/ { rewrite ^/moved/(.*)$ /d/$1 permanent; }
}\n";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn rfc3339_mtime(p: &Path) -> String {
    let m = std::fs::metadata(p).unwrap().modified().unwrap();
    let secs = m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Checked against date(1), which every CI machine has.
    let o = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn exists_answers_in_input_order_and_tells_errors_from_absence() {
    let t = tempfile::tempdir().unwrap();
    let w = www(t.path(), 20, 1000);
    let ng = Nginx::start(t.path(), 1, SERVER);
    let b = format!("http://{}", ng.addrs[0]);
    let present_local = w.join("d/f5");
    let missing_local = w.join("d/nope");
    let mut want: Vec<(String, &str)> = vec![
        (format!("{b}/d/f0"), "true"),
        (format!("{b}/d/nope"), "false"),
        (format!("{b}/forbidden/x"), "error\tHTTP 403"),
        (format!("{b}/broken/x"), "error\tHTTP 500"),
        (format!("{b}/nohead/f1"), "true"),
        (format!("{b}/nohead/nope"), "false"),
        (format!("{b}/moved/f2"), "true"),
        (present_local.display().to_string(), "true"),
        (missing_local.display().to_string(), "false"),
        ("gs://bucket/key".into(), "error"),
    ];
    // Many more, present and absent interleaved, so answers come back out
    // of order and the window has to put them right.
    for i in 0..600 {
        if i % 3 == 0 {
            want.push((format!("{b}/d/missing{i}"), "false"));
        } else {
            want.push((format!("{b}/d/f{}", i % 20), "true"));
        }
    }
    let list: String = want.iter().map(|(p, _)| format!("{p}\n")).collect();
    let lf = t.path().join("paths.txt");
    std::fs::write(&lf, list).unwrap();
    let fails = t.path().join("failures.jsonl");
    let o = run(
        &[
            "exists",
            "-i",
            lf.to_str().unwrap(),
            "--retries",
            "1",
            "--failures",
            fails.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), want.len(), "{out}");
    for (line, (p, v)) in lines.iter().zip(&want) {
        let (path, rest) = line.split_once('\t').unwrap();
        assert_eq!(path, p);
        assert!(rest.starts_with(v), "{p}: {rest:?}, want {v:?}");
    }
    // Failing to find out is recorded; absence is not.
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&fails)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut urls: Vec<&str> = recs.iter().map(|r| r["url"].as_str().unwrap()).collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "gs://bucket/key",
            &format!("{b}/broken/x"),
            &format!("{b}/forbidden/x")
        ]
    );
    let err = stderr(&o);
    assert!(
        err.contains("404 present, 203 absent, 3 could not be checked"),
        "{err}"
    );
    // HEAD first everywhere; the location that refuses it got GET bytes=0-0.
    let log = ng.access_log();
    assert!(log.contains("/nohead/f1 405"), "{log}");
    assert!(log.contains("/nohead/f1 206 bytes=0-0"), "{log}");
    assert!(!log.contains("/d/f0 206"), "{log}");

    // Every path answered: exit 0.
    let o = run(&["exists", &format!("{b}/d/f3"), &format!("{b}/d/x")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{b}/d/f3\ttrue\n{b}/d/x\tfalse\n"));
}

#[test]
fn a_server_that_refuses_head_everywhere_is_asked_by_get_after_a_few() {
    let t = tempfile::tempdir().unwrap();
    www(t.path(), 20, 1000);
    let conf = "server { listen 127.0.0.1:{P0}; root {DIR}/www;
        if ($request_method = HEAD) { return 405; } }\n";
    let ng = Nginx::start(t.path(), 1, conf);
    let b = format!("http://{}", ng.addrs[0]);
    let n = 400;
    let list: String = (0..n)
        .map(|i| {
            if i % 4 == 0 {
                format!("{b}/d/gone{i}\n")
            } else {
                format!("{b}/d/f{}\n", i % 20)
            }
        })
        .collect();
    let lf = t.path().join("paths.txt");
    std::fs::write(&lf, list).unwrap();
    let o = run(&["exists", "-i", lf.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| l.ends_with("\ttrue")).count(), 300);
    assert_eq!(out.lines().filter(|l| l.ends_with("\tfalse")).count(), 100);
    // Refused a few times (those in flight when the third refusal came
    // back), then asked by GET bytes=0-0 at once: not 400 refusals.
    let log = ng.access_log();
    let refused = log.lines().filter(|l| l.contains(" 405")).count();
    assert!(
        (3..=n / 4).contains(&refused),
        "{refused} HEADs refused of {n} paths"
    );
}

#[test]
fn stat_gives_size_mtime_and_etag_in_text_and_json() {
    let t = tempfile::tempdir().unwrap();
    let w = www(t.path(), 6, 1000);
    let ng = Nginx::start(t.path(), 1, SERVER);
    let b = format!("http://{}", ng.addrs[0]);
    let local = w.join("d/f2");
    let args = [
        "stat".to_string(),
        format!("{b}/d/f3"),
        format!("{b}/nohead/f4"),
        format!("{b}/d/nope"),
        local.display().to_string(),
    ];
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&a, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 4, "{out}");
    // size, mtime (the file's, from Last-Modified), etag (nginx's, unquoted)
    assert_eq!(rows[0][1], "103");
    assert_eq!(rows[0][2], rfc3339_mtime(&w.join("d/f3")));
    assert!(rows[0][3].len() > 3 && !rows[0][3].contains('"'), "{out}");
    // Through GET bytes=0-0: the size is the Content-Range total.
    assert_eq!(rows[1][1], "104", "{out}");
    assert_eq!(rows[2], [&*format!("{b}/d/nope"), "absent"]);
    assert_eq!(rows[3][1], "102");
    assert_eq!(rows[3][2], rfc3339_mtime(&local));
    assert_eq!(rows[3][3], "-");

    let mut a = a.clone();
    a.push("--json");
    let o = run(&a, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let objs: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs[0]["path"], args[1]);
    assert_eq!(objs[0]["size"], 103);
    assert_eq!(objs[0]["exists"], true);
    assert_eq!(objs[0]["etag"], rows[0][3]);
    assert_eq!(objs[2]["exists"], false);
    assert!(objs[2].get("size").is_none());
    assert!(objs[3]["etag"].is_null());
}

#[test]
fn exists_over_https_with_http2_and_http11() {
    let t = tempfile::tempdir().unwrap();
    let pki = crate::peers::Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["127.0.0.1"], 2020, 2090);
    www(t.path(), 40, 1000);
    let servers = crate::peers::tls_server("P0", &cert, true, "")
        + &crate::peers::tls_server("P1", &cert, false, "");
    let ng = Nginx::start(t.path(), 2, &servers);
    let ca = pki.ca_file("ca");
    for a in &ng.addrs {
        let mut want = String::new();
        for i in 0..80 {
            let (p, v) = if i % 2 == 0 {
                (format!("https://{a}/d/f{}", i / 2), "true")
            } else {
                (format!("https://{a}/d/none{i}"), "false")
            };
            want.push_str(&format!("{p}\t{v}\n"));
        }
        let lf = t.path().join("paths.txt");
        let paths: String = want
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .map(|p| format!("{p}\n"))
            .collect();
        std::fs::write(&lf, paths).unwrap();
        let o = run(
            &[
                "exists",
                "-i",
                lf.to_str().unwrap(),
                "--cacert",
                ca.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), want);
    }
    // HEAD went over HTTP/2 to the first server and HTTP/1.1 to the second.
    let log = ng.access_log();
    let p0 = ng.addrs[0].port().to_string();
    let p1 = ng.addrs[1].port().to_string();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{p0} HTTP/2.0 /d/f1 200"))),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{p1} HTTP/1.1 /d/none1 404"))),
        "{log}"
    );
}

/// HEADs and GETs mixed on pipelined HTTP/1.1 connections (a fifth of the
/// paths refuse HEAD and are asked by GET bytes=0-0): every answer is read
/// with its own request's framing, so no request is retried and every
/// answer is right, run after run.
#[test]
fn heads_and_gets_mixed_on_one_connection_never_mis_frame() {
    let t = tempfile::tempdir().unwrap();
    www(t.path(), 20, 1000);
    let ng = Nginx::start(t.path(), 1, SERVER);
    let b = format!("http://{}", ng.addrs[0]);
    let n = 20_000;
    let mut want = String::new();
    let list: String = (0..n)
        .map(|i| {
            let dir = if i % 5 == 0 { "nohead" } else { "d" };
            let (name, there) = if i % 3 == 0 {
                (format!("gone{i}"), false)
            } else {
                (format!("f{}", i % 20), true)
            };
            let p = format!("{b}/{dir}/{name}");
            want.push_str(&format!("{p}\t{there}\n"));
            format!("{p}\n")
        })
        .collect();
    let lf = t.path().join("paths.txt");
    std::fs::write(&lf, list).unwrap();
    let stats = t.path().join("stats.json");
    for round in 0..50 {
        let o = run(
            &[
                "exists",
                "-i",
                lf.to_str().unwrap(),
                "-q",
                "--retries",
                "0",
                "--stats-json",
                stats.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "round {round}: {}", stderr(&o));
        assert!(stdout(&o) == want, "round {round}: a wrong answer");
        let st = crate::common::read_json(&stats);
        assert_eq!(st["retries"], 0, "round {round}: {st}");
    }
}

/// Schemes are case-insensitive, and a scheme bulkget does not speak is an
/// error (exit 1), never "absent".
#[test]
fn schemes_in_any_case_and_unsupported_ones() {
    let t = tempfile::tempdir().unwrap();
    www(t.path(), 3, 1000);
    let ng = Nginx::start(t.path(), 1, SERVER);
    let a = ng.addrs[0];
    let up = format!("HTTP://{a}/d/f1");
    let mixed = format!("hTtP://{a}/d/nope");
    let o = run(&["exists", &up, &mixed], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{up}\ttrue\n{mixed}\tfalse\n"));
    let o = run(
        &["exists", "ftp://example.com/x", "file:///etc/passwd"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("ftp://example.com/x\terror\tftp:// is not supported")
            && out.contains("file:///etc/passwd\terror\tfile:// is not supported"),
        "{out}"
    );
    // ls and cp say the same, and exit 2 (nothing could be done).
    let o = run(&["ls", "ftp://example.com/x"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ftp:// is not supported"),
        "{}",
        stderr(&o)
    );
    // An upper-case URL downloads as a lower-case one.
    let out = t.path().join("out");
    let o = run(&["get", &up, "-o", out.to_str().unwrap(), "-q"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let served = std::fs::read(t.path().join("www/d/f1")).unwrap();
    assert!(std::fs::read(out.join("f1")).unwrap() == served);
}
