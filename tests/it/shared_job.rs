//! `mirror --queue`: one job of 50 000 files shared by several `bulkget`
//! processes through a real redis-server, against `bulkget serve` with
//! faults, while a worker, the lister or Redis itself is killed, a worker
//! is stopped past its lease, a worker joins halfway, or a page fails each
//! time it is handed out. Each test checks every file byte by byte, that
//! the job's counters equal the server's count, that nothing is pending
//! and no temporary is left, and every process' exit status.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use bulkget::queue::{Enqueued, Queue};
use bulkget::server::Server;
use bulkget::server::faults::Faults;

use crate::common::{assert_synthetic_tree, command, get, scratch, signal, synthetic, wait_for};
use crate::queue::Redis;

const N: u64 = 50_000;
const SIZE: u64 = 100;

/// A server slow enough that a job takes seconds (32 requests served at
/// once, 2 ms each: at most 16 000 files/s), with faults worth retrying.
fn server() -> Server {
    synthetic(
        N,
        SIZE,
        1000,
        Faults {
            fail_500: 0.01,
            reset: 0.002,
            truncate: 0.002,
            workers: 32,
            latency: Duration::from_millis(2),
            ..Faults::default()
        },
    )
}

struct Job {
    redis: Redis,
    server: Server,
    dir: tempfile::TempDir,
    job: &'static str,
    procs: Vec<(String, Child)>,
    /// Flags every process gets.
    flags: Vec<String>,
    /// The command before them (default: `mirror URL DEST`).
    lead: Option<Vec<String>>,
}

impl Job {
    fn new(job: &'static str, redis: Redis, flags: &[&str]) -> Job {
        Job {
            redis,
            server: server(),
            dir: scratch(),
            job,
            procs: Vec::new(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            lead: None,
        }
    }

    /// A job of three workers, `w1` to `w3`, started.
    fn with_three(job: &'static str, redis: Redis, flags: &[&str]) -> Job {
        let mut j = Job::new(job, redis, flags);
        for w in ["w1", "w2", "w3"] {
            j.spawn(w);
        }
        j
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }

    /// Starts worker `name` (a mirror of the job, into the shared DEST).
    fn spawn(&mut self, name: &str) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let (url, dest, q) = (
            self.server.url(),
            self.dest().display().to_string(),
            self.redis.queue_url(self.job),
        );
        let stats = self.dir.path().join(format!("{name}.json"));
        let mirror = ["mirror".to_string(), url, dest];
        let lead = self.lead.as_deref().unwrap_or(&mirror);
        let mut args: Vec<&str> = lead.iter().map(String::as_str).collect();
        args.extend([
            "--queue",
            &q,
            "--worker",
            name,
            "--retries",
            "30",
            "-q",
            "--stats-json",
            stats.to_str().unwrap(),
        ]);
        args.extend(self.flags.iter().map(String::as_str));
        if !self.flags.iter().any(|f| f == "--lease") {
            args.extend(["--lease", "1"]);
        }
        let child = command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.to_string(), child));
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self
            .procs
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no worker {name}"))
            .1
    }

    fn queue(&self) -> Queue {
        self.redis.queue(self.job)
    }

    fn landed(&self) -> u64 {
        self.queue().status().unwrap().landed
    }

    /// A worker holding a page in progress now.
    fn holder(&self, of: &[&str]) -> String {
        let mut who = None;
        wait_for("a worker with a page in hand", || {
            who = self
                .queue()
                .in_progress()
                .unwrap()
                .into_iter()
                .find(|(n, k)| *k > 0 && of.contains(&n.as_str()))
                .map(|(n, _)| n);
            who.is_some()
        });
        who.unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits for every process still running; `name → exit code`.
    fn wait_all(&mut self) -> Vec<(String, Option<i32>)> {
        let mut out = Vec::new();
        for (name, child) in &mut self.procs {
            let mut code = None;
            wait_for(&format!("worker {name} to end"), || {
                match child.try_wait().unwrap() {
                    Some(s) => {
                        code = Some(s.code());
                        true
                    }
                    None => false,
                }
            });
            out.push((name.clone(), code.unwrap()));
        }
        out
    }

    /// Every process that was not killed exits `code`.
    fn assert_exits(&mut self, code: i32, killed: &[&str]) {
        for (name, got) in self.wait_all() {
            if killed.contains(&name.as_str()) {
                continue;
            }
            assert_eq!(
                got,
                Some(code),
                "{name}'s exit status; its log:\n{}",
                self.log(&name)
            );
        }
    }

    /// The job is done with `failed` failures: its counters equal the
    /// server's count, nothing is pending, every file that landed is
    /// whole and no temporary is left.
    fn assert_done(&self, failed: u64) {
        let st = self.queue().status().unwrap();
        assert_eq!(
            (st.listed, st.landed, st.failed),
            (N, N - failed, failed),
            "listed, landed, failed"
        );
        assert_eq!((st.queued, st.in_progress), (0, 0), "nothing pending");
        assert!(st.done() && st.error.is_none(), "{st:?}");
        if failed == 0 {
            assert_synthetic_tree(&self.dest(), N, SIZE);
        }
        let tmp = self.dest().join(".bulkget/tmp");
        let left = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
        assert_eq!(left, 0, "temporaries left in {}", tmp.display());
    }
}

#[test]
fn a_shared_job_survives_a_worker_killed_mid_page() {
    let mut j = Job::with_three("kill-worker", Redis::start(), &[]);
    wait_for("a fifth of the job to land", || j.landed() >= N / 5);
    let victim = j.holder(&["w1", "w2", "w3"]);
    let held = j
        .queue()
        .in_progress()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == victim)
        .map_or(0, |p| p.1);
    j.child(&victim).kill().unwrap();
    j.assert_exits(0, &[&victim]);
    assert!(held > 0);
    j.assert_done(0);

    // The job's state stays: status tells it, as text and as numbers.
    let q = j.redis.queue_url(j.job);
    let o = command(&["status", &q, "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["listed"], N);
    assert_eq!(v["landed"], N);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["queued"], 0);
    assert_eq!(v["done"], true);
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{v}");
    let ended: Vec<bool> = workers.iter().map(|w| w["ended"] == true).collect();
    assert_eq!(
        ended.iter().filter(|e| **e).count(),
        2,
        "the killed one never said it ended"
    );
    // A rerun of the same command finds the job done, at once.
    let (url, dest) = (j.server.url(), j.dest().display().to_string());
    let o = command(&["mirror", &url, &dest, "--queue", &q])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is done already"));
    // --forget removes it; then there is no such job.
    assert!(
        command(&["status", &q, "--forget"])
            .status()
            .unwrap()
            .success()
    );
    let o = command(&["status", &q]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no job") && err.lines().count() == 1, "{err}");
}

#[test]
fn a_shared_job_survives_its_lister_killed_and_restarted() {
    // Two pages waiting at most: the listing lasts as long as the job.
    let mut j = Job::with_three("kill-lister", Redis::start(), &["--ahead", "2"]);
    wait_for("a tenth of the job to land", || j.landed() >= N / 10);
    let lister: String = redis::cmd("GET")
        .arg("bulkget:kill-lister:lease")
        .query(&mut j.redis.client.get_connection().unwrap())
        .unwrap();
    let (_, listing_done) = j.queue().cursor().unwrap();
    assert!(!listing_done, "the listing should still be going");
    j.child(&lister).kill().unwrap();
    let _ = j.child(&lister).wait();
    j.procs.retain(|(n, _)| *n != lister);
    // Restarted under the same name; the lease passes to whoever takes it.
    j.spawn(&lister);
    j.assert_exits(0, &[]);
    j.assert_done(0);
}

#[test]
fn a_shared_job_survives_redis_killed_and_restarted_from_its_aof() {
    let mut j = Job::with_three("kill-redis", Redis::start_aof(), &["--ahead", "4"]);
    wait_for("a third of the job to land", || j.landed() >= N / 3);
    j.redis.kill_and_restart();
    j.assert_exits(0, &[]);
    j.assert_done(0);
}

#[test]
fn a_worker_stopped_past_its_lease_comes_back_and_its_pages_count_once() {
    let mut j = Job::with_three("sigstop", Redis::start(), &[]);
    wait_for("a fifth of the job to land", || j.landed() >= N / 5);
    let stopped = j.holder(&["w1", "w2", "w3"]);
    signal(j.child(&stopped), libc::SIGSTOP);
    // Its pages are taken over once its lease (1 s) lapses.
    wait_for("the stopped worker's pages to be taken over", || {
        !j.queue()
            .in_progress()
            .unwrap()
            .iter()
            .any(|(n, k)| *n == stopped && *k > 0)
    });
    signal(j.child(&stopped), libc::SIGCONT);
    j.assert_exits(0, &[]);
    j.assert_done(0);
}

#[test]
fn a_fourth_worker_joins_a_shared_job_halfway() {
    let mut j = Job::with_three("join", Redis::start(), &[]);
    wait_for("half the job to land", || j.landed() >= N / 2);
    j.spawn("w4");
    j.assert_exits(0, &[]);
    j.assert_done(0);
    let s = crate::common::read_json(&j.dir.path().join("w4.json"));
    assert!(s["files"].as_u64().unwrap() > 0, "w4 took part: {s}");
}

#[test]
fn a_page_that_always_fails_goes_to_the_dead_letter_stream() {
    let mut j = Job::new("dead", Redis::start(), &["--tries", "2"]);
    // The first page was handed to two workers that died on it: enqueued
    // here as the lister would, then read and taken over as they would.
    let first = get(j.server.addr, "/list");
    let page: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    let names: Vec<String> = page["FileNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let next = page["NextMarker"].as_str().unwrap();
    let mut q = j.queue();
    q.claim_source(&j.server.url()).unwrap();
    assert!(q.lease("seed", 60_000).unwrap());
    assert_eq!(
        q.enqueue("seed", "", &[&names], Some(next), 60_000)
            .unwrap(),
        Enqueued::Done
    );
    q.release("seed").unwrap();
    let p = q.next_page("doomed-1", 0, 10, true).unwrap().unwrap();
    let again = q.next_page("doomed-2", 0, 10, true).unwrap().unwrap();
    assert_eq!((p.id.as_str(), again.deliveries), (again.id.as_str(), 2));
    for w in ["w1", "w2", "w3"] {
        j.spawn(w);
    }
    j.assert_exits(1, &[]);
    j.assert_done(names.len() as u64);
    // Its files are the job's failures, with the reason, and none landed.
    let qa = j.redis.queue_url(j.job);
    let o = command(&["status", &qa, "--failures"]).output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), names.len());
    for (l, n) in lines.iter().zip(&names) {
        assert_eq!(l["name"], n.as_str());
        assert!(
            l["error"]
                .as_str()
                .unwrap()
                .contains("handed to a worker 3 times"),
            "{l}"
        );
        assert!(!j.dest().join(n).exists(), "{n} landed");
    }
    let dead: u64 = redis::cmd("XLEN")
        .arg("bulkget:dead:dead")
        .query(&mut j.redis.client.get_connection().unwrap())
        .unwrap();
    assert_eq!(dead, 1);
    let ledger = crate::common::failures(&j.dest());
    assert_eq!(ledger.len(), names.len(), "the machine's own ledger too");
    let w = bulkget::synthetic::name_width(N);
    for i in names.len() as u64..N {
        let name = bulkget::synthetic::name(i, w);
        let got = std::fs::read(j.dest().join(&name)).unwrap();
        assert!(
            got == bulkget::synthetic::content(name.as_bytes(), SIZE),
            "{name}"
        );
    }
}

#[test]
fn a_shared_job_that_cannot_go_on_ends_every_process_with_2() {
    // Redis unreachable past the connect timeout.
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("unix://{}/none.sock#j", dir.path().display());
    let d = dir.path().join("d").display().to_string();
    let o = command(&[
        "mirror",
        "http://127.0.0.1:9",
        &d,
        "--queue",
        &gone,
        "--connect-timeout",
        "0.5",
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("bulkget: redis unix://") && err.contains("none.sock"),
        "{err}"
    );
    // A source that cannot be listed: every process of the job says why.
    let r = Redis::start();
    let s = synthetic(10, 10, 10, Faults::default());
    let url = format!("{}/no/such/base", s.url());
    let q = r.queue_url("unlistable");
    let kids: Vec<Child> = (0..2)
        .map(|i| {
            command(&[
                "mirror",
                &url,
                &d,
                "--queue",
                &q,
                "--worker",
                &format!("w{i}"),
                "--retries",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("cannot go on") || err.contains("listing"),
            "{err}"
        );
    }
}

#[test]
fn a_shared_job_over_tls_with_a_password() {
    use std::io::{BufRead, BufReader};
    let dir = scratch();
    let pki = crate::peers::Pki::new(&dir.path().join("pki"), "ca");
    let (cert, key) = pki.leaf("redis", &["localhost"], 2020, 2100);
    // redis-server takes no socket handed to it: a free port, found by
    // binding one and letting it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-auth-clients",
            "no",
        ])
        .args([
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(redis.stdout.take().unwrap()).lines();
    let ready = out.by_ref().map_while(Result::ok).any(|l| {
        l.to_ascii_lowercase()
            .contains("ready to accept connections")
    });
    std::thread::spawn(move || out.for_each(drop));
    assert!(ready, "redis-server with TLS did not start");
    let s = synthetic(3000, SIZE, 500, Faults::default());
    let (url, ca) = (s.url(), pki.ca_file("ca").display().to_string());
    let dest = dir.path().join("d").display().to_string();
    let q = format!("rediss://:s3cret@localhost:{port}/tls-job");
    let kids: Vec<Child> = ["w1", "w2"]
        .iter()
        .map(|w| {
            command(&[
                "mirror", &url, &dest, "--queue", &q, "--cacert", &ca, "--worker", w, "-q",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_synthetic_tree(std::path::Path::new(&dest), 3000, SIZE);
    let o = command(&["status", &q, "--cacert", &ca, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["landed"].as_u64(), v["done"].as_bool()),
        (Some(3000), Some(true))
    );
    // A wrong password, and a CA not trusted: one line each, exit 2.
    for (spec, extra) in [
        (
            format!("rediss://:wrong@localhost:{port}/tls-job"),
            vec!["--cacert", &ca],
        ),
        (q.clone(), vec![]),
    ] {
        let mut args = vec!["status", &spec, "--connect-timeout", "1"];
        args.extend(extra);
        let o = command(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("bulkget: redis rediss://localhost:") && err.lines().count() == 1,
            "{err}"
        );
    }
    let _ = redis.kill();
    let _ = redis.wait();
}

#[test]
fn a_shared_url_list_lands_every_file_once_when_a_worker_is_killed() {
    let mut j = Job::new("url-list", Redis::start(), &[]);
    let w = bulkget::synthetic::name_width(N);
    let list = j.dir.path().join("urls.txt");
    let mut text = String::from("# the job's URLs\n\n");
    let bad = [
        "::not-a-url".to_string(),
        "http://127.0.0.1:1/x ../../escape".to_string(),
        "s3://bucket/key".to_string(),
    ];
    for i in 0..N {
        text += &format!(
            "{}/get/{}\n",
            j.server.url(),
            bulkget::synthetic::name(i, w)
        );
        if i % 20_000 == 7 {
            text += &format!("{}\n", bad[(i / 20_000) as usize]);
        }
    }
    std::fs::write(&list, text).unwrap();
    let dest = j.dest().display().to_string();
    j.lead = Some(vec![
        "get".into(),
        "-i".into(),
        list.display().to_string(),
        "-o".into(),
        dest,
    ]);
    for w in ["w1", "w2", "w3"] {
        j.spawn(w);
    }
    wait_for("a quarter of the job to land", || j.landed() >= N / 4);
    let victim = j.holder(&["w1", "w2", "w3"]);
    j.child(&victim).kill().unwrap();
    j.assert_exits(1, &[&victim]);
    let st = j.queue().status().unwrap();
    assert_eq!((st.listed, st.landed, st.failed), (N + 3, N, 3));
    assert_eq!((st.queued, st.in_progress), (0, 0));
    assert_synthetic_tree(&j.dest(), N, SIZE);
    let q = j.redis.queue_url(j.job);
    let o = command(&["status", &q, "--failures"]).output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    names.sort();
    let mut want: Vec<&str> = bad.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(names, want);
    assert!(format!("{lines:?}").contains("not shared by --queue"));
}

#[test]
fn a_shared_s3_mirror_lands_every_object_once_when_a_worker_is_killed() {
    let mut m = crate::store::Emulator::moto();
    m.cmd("bucket bkt");
    m.cmd("fill bkt data/f 3000 100");
    m.put("bkt", "data/a b+c.txt", 3);
    m.put("bkt", "data/..", 1); // a key that cannot be a file name
    let r = Redis::start();
    let dir = scratch();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let q = r.queue_url("s3-job");
    // Slow enough (20 ms a GET) that the first worker is still at work
    // when it is killed.
    m.cmd("delay 0.02");
    let spawn = |m: &crate::store::Emulator, w: &str| {
        m.bulkget(&[
            "mirror",
            "s3://bkt/data",
            o,
            "--queue",
            &q,
            "--worker",
            w,
            "--lease",
            "1",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut first = spawn(&m, "w1");
    wait_for("w1 to hold a page", || {
        r.queue("s3-job")
            .in_progress()
            .unwrap()
            .iter()
            .any(|(n, k)| n == "w1" && *k > 0)
    });
    first.kill().unwrap();
    let _ = first.wait();
    m.cmd("delay 0");
    let kids: Vec<Child> = ["w2", "w3"].iter().map(|w| spawn(&m, w)).collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        // the key that cannot be a file name fails the job
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let st = r.queue("s3-job").status().unwrap();
    assert_eq!((st.listed, st.landed, st.failed), (3002, 3001, 1));
    assert_eq!((st.queued, st.in_progress), (0, 0));
    crate::store::assert_filled(&out, "data/", "data/f", 3000, 100);
    crate::store::assert_body(&out, "a b+c.txt", "data/a b+c.txt", 3);
    let (lines, _) = r.queue("s3-job").failures("-", 10).unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("cannot be a file name"), "{}", lines[0]);
}

#[test]
fn sigterm_finishes_the_pages_in_hand_and_leaves_none_pending() {
    let mut j = Job::with_three("sigterm", Redis::start(), &["--lease", "30"]);
    wait_for("a fifth of the job to land", || j.landed() >= N / 5);
    let leaving = j.holder(&["w1", "w2", "w3"]);
    signal(j.child(&leaving), libc::SIGTERM);
    let code = j.child(&leaving).wait().unwrap().code();
    assert_eq!(code, Some(130), "{}", j.log(&leaving));
    // Its pages were finished and acknowledged, not left to a lease of 30 s.
    let held = j.queue().in_progress().unwrap();
    assert!(
        !held.iter().any(|(n, k)| *n == leaving && *k > 0),
        "{leaving} left pages pending: {held:?}"
    );
    j.procs.retain(|(n, _)| *n != leaving);
    j.assert_exits(0, &[]);
    j.assert_done(0);
}
