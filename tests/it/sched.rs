//! The scheduler: connections per origin found by measuring, lists that
//! interleave many hosts, and hosts that are dead or push back.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use bulkget::server::faults::Faults;

use crate::common::*;
use crate::peers::{Nginx, assert_landed, get_list, www};

fn assert_synthetic(path: &Path, name: &str) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == bulkget::synthetic::content(name.as_bytes(), 100),
        "{}: bytes differ",
        path.display()
    );
}

#[test]
fn an_interleaved_list_of_four_hosts_one_dead_one_slow() {
    let slow = Faults {
        latency: Duration::from_millis(20),
        ..Faults::default()
    };
    let live = [
        synthetic(300, 100, 1000, Faults::default()),
        synthetic(300, 100, 1000, Faults::default()),
        synthetic(300, 100, 1000, slow),
    ];
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed again: connections are refused
    let mut list = String::new();
    for i in 0..300 {
        for (k, s) in live.iter().enumerate() {
            list += &format!("{}/get/f{i:09} h{k}-{i}\n", s.url());
        }
        list += &format!("http://{dead}/get/x{i} dead-{i}\n");
    }
    let t = tempfile::tempdir().unwrap();
    let sj = t.path().join("stats.json");
    let (o, out) = get_list(
        t.path(),
        &list,
        &["-q", "--retries", "1", "--stats-json", sj.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for i in 0..300 {
        for k in 0..3 {
            assert_synthetic(&out.join(format!("h{k}-{i}")), &format!("f{i:09}"));
        }
        assert!(!out.join(format!("dead-{i}")).exists());
    }
    let f = failures(&out);
    assert_eq!(f.len(), 300, "only the dead host's files fail");
    for r in &f {
        assert!(r["name"].as_str().unwrap().starts_with("dead-"), "{r}");
        assert_eq!(r["attempts"], 2, "{r}");
        assert!(r["error"].as_str().unwrap().contains("connect"), "{r}");
    }
    // Each live host shows in the stats with its files and connections.
    let st = read_json(&sj);
    for s in &live {
        let o = st["origins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["origin"] == s.url())
            .unwrap_or_else(|| panic!("{} missing from {st}", s.url()));
        assert_eq!(o["files"], 300, "{o}");
        assert!(o["connections"].as_u64().unwrap() >= 1, "{o}");
    }
}

#[test]
fn a_server_that_answers_one_request_at_a_time_gets_more_connections_not_depth() {
    // Each request costs the server 10 ms and a connection's requests are
    // answered one after another: only more connections help.
    let s = synthetic(
        2000,
        100,
        1000,
        Faults {
            latency: Duration::from_millis(10),
            ..Faults::default()
        },
    );
    // No disk in the way (creating files here can be slower than the server).
    let t = tempfile::tempdir().unwrap();
    let sj = t.path().join("stats.json");
    let o = bulkget(&[
        "mirror",
        &s.url(),
        t.path().join("out").to_str().unwrap(),
        "--sink",
        "null",
        "-q",
        "--stats-json",
        sj.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = read_json(&sj);
    let origin = &st["origins"][0];
    assert_eq!(origin["files"], 2000, "{st}");
    let (conns, depth) = (
        origin["connections"].as_u64().unwrap(),
        origin["depth"].as_u64().unwrap(),
    );
    // A run starts with 2 connections per core, 8 deep.
    assert!(conns >= 16, "connections grew: {st}");
    assert!(depth <= 8, "depth that did not pay was not kept: {origin}");
}

/// nginx allowing `limit` connections at once, and a list of `n` URLs of
/// one `size`-byte file. nginx counts a connection while it answers: slow
/// answers (8 MiB/s, more than a socket buffer holds) keep them busy, so
/// one more is turned away with 503.
fn strict_server(dir: &Path, limit: u32, n: usize, size: usize) -> (Nginx, String) {
    www(dir, 0, size);
    let ng = Nginx::start(
        dir,
        1,
        &format!(
            "limit_conn_zone $server_port zone=perport:1m;\n\
             server {{ listen 127.0.0.1:{{P0}}; root {{DIR}}/www; limit_conn perport {limit}; limit_rate 8m; }}\n"
        ),
    );
    let list = (0..n)
        .map(|i| format!("http://{}/d/big big-{i}\n", ng.addrs[0]))
        .collect();
    (ng, list)
}

#[test]
fn a_server_that_allows_two_connections_costs_retries_not_files() {
    let t = tempfile::tempdir().unwrap();
    let (ng, list) = strict_server(t.path(), 2, 48, 512 << 10);
    let sj = t.path().join("stats.json");
    let (o, out) = get_list(
        t.path(),
        &list,
        &["-q", "--threads", "2", "--stats-json", sj.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for i in 0..48 {
        assert_landed(&out, &format!("big-{i}"), 7, 512 << 10);
    }
    // More than two connections were tried (a run starts with 2 per core),
    // nginx refused some with 503, and those were retried.
    let log = ng.access_log();
    assert!(log.lines().any(|l| l.contains(" 503 ")), "{log}");
    assert!(read_json(&sj)["retries"].as_u64().unwrap() > 0);
}

#[test]
fn a_server_that_allows_one_connection_loses_no_file_to_many_cores() {
    // Eight cores start two connections each: sixteen against a server that
    // serves one at a time. Push-back must bring the whole client, not each
    // core, down to what the server allows.
    let t = tempfile::tempdir().unwrap();
    let (ng, list) = strict_server(t.path(), 1, 64, 256 << 10);
    let (o, out) = get_list(t.path(), &list, &["-q", "--threads", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for i in 0..64 {
        assert_landed(&out, &format!("big-{i}"), 7, 256 << 10);
    }
    let log = ng.access_log();
    assert!(log.lines().any(|l| l.contains(" 503 ")), "{log}");
}

#[test]
fn a_dead_host_holding_the_frontier_is_set_aside_and_the_rest_flows() {
    // A host that takes connections and never answers (a listener that
    // never accepts), with more entries first in the list than every
    // core's frontier holds, then a live host's.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = hole.local_addr().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n_dead = cores * 32 * 1024 + 8_000;
    let live = synthetic(2_000, 100, 1000, Faults::default());
    let mut list = String::with_capacity(n_dead * 48);
    for i in 0..n_dead {
        list += &format!("http://{dead}/get/x{i} dead-{i}\n");
    }
    for i in 0..2_000 {
        list += &format!("{}/get/f{i:09} live-{i}\n", live.url());
    }
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("urls.txt");
    std::fs::write(&path, &list).unwrap();
    let out = t.path().join("out");
    let args = [
        "get",
        "-q",
        "-i",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    // Requests to the dead host time out only after a minute: the live
    // host's files land long before, read from behind the dead entries.
    let mut run = spawn_bulkget(&[&args[..], &["--timeout", "60"]].concat());
    let aside = out.join(".bulkget/aside");
    wait_for("the live host's files", || {
        (0..2_000).all(|i| out.join(format!("live-{i}")).exists())
    });
    for i in (0..2_000).step_by(97) {
        assert_synthetic(&out.join(format!("live-{i}")), &format!("f{i:09}"));
    }
    let set_aside: u64 = std::fs::read_dir(&aside)
        .expect("entries were set aside")
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(set_aside > 0, "the dead host's entries are on disk");
    run.kill().unwrap();
    run.wait().unwrap();

    // The host is gone for good now (refused): a rerun gives each of its
    // entries its retry, fails them alone, and leaves nothing aside.
    drop(hole);
    let r = command(&[&args[..], &["--retries", "1"]].concat())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let f = failures(&out);
    assert_eq!(f.len(), n_dead, "every dead entry failed, named");
    assert!(
        f.iter()
            .all(|r| r["name"].as_str().unwrap().starts_with("dead-"))
    );
    assert_eq!(f[0]["attempts"], 2, "{}", f[0]);
    assert_eq!(
        std::fs::read_dir(&aside).unwrap().count(),
        0,
        "nothing left aside"
    );
    assert!((0..2_000).all(|i| out.join(format!("live-{i}")).exists()));
}

/// `--max-per-host` and `--connections` hold for the whole run, however
/// many cores share the connections: a limit of three to the host over
/// eight threads, of six in all over four, and the server never sees more
/// fetching connections at once.
/// (Each core's share used to be rounded up: 2 connections per host on a
/// 16-core machine were 16.)
#[test]
fn connection_limits_hold_across_every_core() {
    let slow = Faults {
        latency: Duration::from_millis(2),
        ..Faults::default()
    };
    for (flag, limit, threads) in [("--max-per-host", 3, "8"), ("--connections", 6, "4")] {
        let s = synthetic(2_000, 100, 500, slow.clone());
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let l = limit.to_string();
        let o = bulkget(&[
            "mirror",
            &s.url(),
            dest.to_str().unwrap(),
            "-q",
            "--threads",
            threads,
            flag,
            &l,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_synthetic_tree(&dest, 2_000, 100);
        let peak = s
            .counts
            .conns_peak
            .load(std::sync::atomic::Ordering::Relaxed);
        // The listing keeps one connection of its own besides.
        assert!(
            (1..=limit + 1).contains(&peak),
            "{flag} {limit}: {peak} connections open at once"
        );
    }
}
