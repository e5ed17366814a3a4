//! The Redis Streams job queue's primitives (issue 25, first part) against
//! a real redis-server (Debian's), started here on a unix socket in a
//! private directory: ready when it says so on stdout, no port guessed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkget::queue::{Enqueued, Page, Queue};

use crate::common::wait_for;

/// A redis-server of the test's own: a private directory, a unix socket.
pub struct Redis {
    child: Child,
    pub client: redis::Client,
    pub dir: tempfile::TempDir,
    aof: bool,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_in(tempfile::tempdir().unwrap(), false)
    }

    /// With an append-only file (`appendfsync everysec`, Redis' default).
    pub fn start_aof() -> Redis {
        Redis::start_in(tempfile::tempdir().unwrap(), true)
    }

    pub fn sock(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The `--queue` address of job `job` on it.
    pub fn queue_url(&self, job: &str) -> String {
        format!("unix://{}#{job}", self.sock().display())
    }

    fn start_in(dir: tempfile::TempDir, aof: bool) -> Redis {
        let child = Redis::spawn(dir.path(), aof);
        let client = redis::Client::open(format!(
            "redis+unix://{}",
            dir.path().join("redis.sock").display()
        ))
        .unwrap();
        Redis {
            child,
            client,
            dir,
            aof,
        }
    }

    fn spawn(dir: &std::path::Path, aof: bool) -> Child {
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly"])
            .arg(if aof { "yes" } else { "no" })
            .arg("--unixsocket")
            .arg(dir.join("redis.sock"))
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        // "Ready to accept connections" (TCP) or "… now ready to accept
        // connections at SOCKET" (a unix socket only).
        let ready = out.by_ref().map_while(Result::ok).any(|l| {
            l.to_ascii_lowercase()
                .contains("ready to accept connections")
        });
        assert!(ready, "redis-server ended before it was ready");
        // The rest of its log is read and dropped, so it never blocks.
        std::thread::spawn(move || out.for_each(drop));
        child
    }

    /// kill -9, then a new redis-server on the same directory (its AOF).
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Redis::spawn(self.dir.path(), self.aof);
    }

    pub fn queue(&self, job: &str) -> Queue {
        Queue::open(&self.client, job).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names(a: usize, n: usize) -> Vec<String> {
    (a..a + n).map(|i| format!("f{i:09}")).collect()
}

#[test]
fn one_lister_holds_the_lease_and_the_cursor_moves_with_its_page() {
    let r = Redis::start();
    let (mut a, mut b) = (r.queue("j"), r.queue("j"));
    assert!(a.lease("lister-a", 60_000).unwrap());
    assert!(!b.lease("lister-b", 60_000).unwrap(), "held by a");
    assert!(a.lease("lister-a", 60_000).unwrap(), "a renews its own");
    assert!(
        a.enqueue("lister-a", "", &[&names(0, 1000)], Some("t1"), 60_000)
            .unwrap()
            == Enqueued::Done
    );
    // b lost the race: its page is refused and changes nothing.
    assert_eq!(
        b.enqueue("lister-b", "", &[&names(0, 1000)], Some("zz"), 60_000)
            .unwrap(),
        Enqueued::NotHolder
    );
    assert_eq!(b.cursor().unwrap(), (Some("t1".into()), false));
    // A page listed from where the cursor no longer is (a lister that read
    // it before a Redis restart lost the last writes) changes nothing.
    assert_eq!(
        a.enqueue("lister-a", "", &[&names(0, 1000)], Some("t1"), 60_000)
            .unwrap(),
        Enqueued::Moved
    );
    let (x, y) = (names(1000, 6), names(1006, 4));
    assert_eq!(
        a.enqueue("lister-a", "t1", &[&x, &y], None, 60_000)
            .unwrap(),
        Enqueued::Done
    );
    assert_eq!(b.cursor().unwrap(), (None, true));
    let st = b.status().unwrap();
    assert_eq!((st.listed, st.queued, st.listing_done), (1010, 3, true));
    assert!(!st.done());
    // A lease that lapses (its holder died) is taken over.
    assert!(a.lease("lister-a", 1).unwrap());
    wait_for("the lease to lapse", || {
        b.lease("lister-b", 60_000).unwrap()
    });
    assert_eq!(
        a.enqueue("lister-a", "x", &[&names(0, 1)], Some("y"), 60_000)
            .unwrap(),
        Enqueued::NotHolder
    );
}

#[test]
fn a_silent_workers_page_is_taken_over_and_counted_once() {
    let r = Redis::start();
    let mut l = r.queue("k");
    assert!(l.lease("l", 60_000).unwrap());
    for p in 0..3 {
        let next = (p < 2).then(|| format!("m{}", p + 1));
        let marker = if p == 0 {
            String::new()
        } else {
            format!("m{p}")
        };
        assert!(
            l.enqueue(
                "l",
                &marker,
                &[&names(p * 100, 100)],
                next.as_deref(),
                60_000
            )
            .unwrap()
                == Enqueued::Done
        );
    }
    let (mut w1, mut w2) = (r.queue("k"), r.queue("k"));
    // w1 takes the first page and goes silent (killed, or stopped).
    let first = w1
        .next_page("w1", 60_000, 10, true)
        .unwrap()
        .expect("a page");
    assert_eq!((first.marker.as_str(), first.names.len()), ("", 100));
    assert_eq!(first.names[0], "f000000000");
    assert_eq!(r.queue("k").status().unwrap().in_progress, 1);
    // w2 works through the rest; with a short lease it takes w1's over.
    let mut done: Vec<Page> = Vec::new();
    let t0 = Instant::now();
    while done.len() < 3 && t0.elapsed() < Duration::from_secs(30) {
        if let Some(p) = w2.next_page("w2", 50, 10, true).unwrap() {
            assert!(w2.renew("w2", &[&p.id]).unwrap().is_empty());
            assert!(w2.ack(&p.id, p.names.len() as u64, 0, &[]).unwrap());
            done.push(p);
        }
    }
    let mut got: Vec<&str> = done.iter().map(|p| p.names[0].as_str()).collect();
    got.sort();
    assert_eq!(got, ["f000000000", "f000000100", "f000000200"]);
    // w1 comes back: its renewal finds its page taken over (and leaves it
    // so), and it finishes the page too: counted once.
    assert_eq!(
        w1.renew("w1", &[&first.id]).unwrap(),
        vec![first.id.clone()]
    );
    assert!(
        !w1.ack(&first.id, 100, 0, &[]).unwrap(),
        "done twice counts once"
    );
    let st = r.queue("k").status().unwrap();
    assert_eq!((st.listed, st.landed, st.failed), (300, 300, 0));
    assert_eq!((st.queued, st.in_progress), (0, 0));
    assert!(st.done());
    assert!(w2.next_page("w2", 50, 10, true).unwrap().is_none());
}

#[test]
fn a_page_delivered_too_often_goes_to_the_dead_letter_stream() {
    let r = Redis::start();
    let mut l = r.queue("d");
    assert!(l.lease("l", 60_000).unwrap());
    assert_eq!(
        l.enqueue("l", "", &[&names(0, 7)], None, 60_000).unwrap(),
        Enqueued::Done
    );
    let mut w = r.queue("d");
    let mut page = w.next_page("w", 60_000, 10, true).unwrap().unwrap();
    for n in 2..=3 {
        // delivered again (its worker died each time)
        page = loop {
            if let Some(p) = w.next_page("w", 1, 10, true).unwrap() {
                break p;
            }
        };
        assert_eq!(w.deliveries(&page.id).unwrap(), n);
    }
    let line = |n: &str| format!("{{\"name\":\"{n}\"}}");
    assert!(
        w.bury(&page, "failed 3 times: connection refused", line)
            .unwrap()
    );
    assert!(!w.bury(&page, "again", line).unwrap(), "once");
    let (lines, _) = w.failures("-", 100).unwrap();
    assert_eq!(lines.len(), 7, "each file of a buried page is a failure");
    assert_eq!(lines[0], r#"{"name":"f000000000"}"#);
    let st = w.status().unwrap();
    assert_eq!((st.listed, st.landed, st.failed, st.queued), (7, 0, 7, 0));
    assert!(st.done());
    let dead: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("bulkget:d:dead")
        .arg("-")
        .arg("+")
        .query(&mut r.client.get_connection().unwrap())
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(format!("{dead:?}").contains("connection refused"));
}
