//! Push-back tests that measure rates and queue lengths (issues 21 and
//! 24): a binary of their own, run one at a time. Cargo runs test binaries
//! one after another, so the rest of the suite's parallel load (on a
//! 2-core machine, a dozen bulkget processes at once) is not what they
//! measure: under it the rate-limiter test once settled at 264 req/s of
//! 500, where alone it settles at 450-469. Their files land on tmpfs
//! ([`common::scratch`]): what they measure is the client's pacing, not
//! this disk's state after the rest of the suite. What they assert is
//! unchanged.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bulkget::server::faults::Faults;

#[path = "it/common.rs"]
#[allow(dead_code)] // the helpers the other binary's tests use
mod common;

use common::*;

/// Held by each test: one at a time within this binary too.
static ALONE: Mutex<()> = Mutex::new(());

/// A rate limiter (429 with `Retry-After: 1` above R requests a second):
/// the settled rate is within [0.8 R, 1.05 R] and fewer than a tenth of
/// all requests are refused.
///
/// What it took: the first 429 holds the whole origin for a moment (a
/// pause that pipelined connections obey too), so that the limiter
/// refuses what was in flight and not all a loopback run sends before the
/// first window closes; the pace climbs by doubling until refused; and a
/// limited pace falls at most by half a window (a short window of
/// refusals read as next to nothing got through, and paced at 1 a second).
#[test]
fn a_rate_limiter_is_found_and_kept_to() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let (n, r) = (6_000u64, 500.0);
    let s = synthetic(
        n,
        100,
        1000,
        Faults {
            limit_rps: r,
            ..Faults::default()
        },
    );
    let t = scratch();
    let dest = t.path().join("out");
    let d = dest.to_str().unwrap().to_string();
    let url = s.url();
    let child = spawn_bulkget(&["mirror", &url, &d, "-q"]);
    let ok = || s.counts.gets.load(Ordering::Relaxed) - s.counts.refused.load(Ordering::Relaxed);
    wait_for("half the files", || ok() >= n / 2);
    let (t_half, ok_half) = (Instant::now(), ok());
    let o = child.wait_with_output().unwrap();
    let settled = (ok() - ok_half) as f64 / t_half.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(&dest, n, 100);
    let (gets, refused) = (
        s.counts.gets.load(Ordering::Relaxed),
        s.counts.refused.load(Ordering::Relaxed),
    );
    eprintln!("settled at {settled:.0} req/s; {refused} of {gets} requests refused");
    assert!(
        (0.8 * r..=1.05 * r).contains(&settled),
        "settled at {settled:.0} req/s against a limit of {r}"
    );
    assert!(
        (refused as f64) < 0.1 * gets as f64,
        "{refused} of {gets} requests refused"
    );
    assert!(stderr(&o).is_empty() || !stderr(&o).contains("failed"));
}

/// What a mirror of `n` synthetic files from a server with `faults` did
/// over the second half of the run (from the time half the files had been
/// answered well, to its end): requests, those refused, and the requests
/// in progress at the server on average at each arrival. The run itself
/// must succeed with every file exact.
fn second_half(n: u64, faults: Faults) -> (u64, u64, f64) {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let s = synthetic(n, 100, 1000, faults);
    let t = scratch();
    let dest = t.path().join("out");
    let d = dest.to_str().unwrap().to_string();
    let url = s.url();
    let child = spawn_bulkget(&["mirror", &url, &d, "-q"]);
    let c = &s.counts;
    let load = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    wait_for("half the files", || {
        load(&c.gets) - load(&c.refused) >= n / 2
    });
    let (g0, r0, s0) = (load(&c.gets), load(&c.refused), load(&c.inflight_seen));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(&dest, n, 100);
    let g = load(&c.gets) - g0;
    let offered = (load(&c.inflight_seen) - s0) as f64 / g as f64;
    (g, load(&c.refused) - r0, offered)
}

/// A server whose errors rise with load: more than K requests in progress
/// and the next is answered 503 at once. bulkget settles at K or fewer in
/// flight: few refusals, and the load it offered averages K or less.
#[test]
fn a_server_that_fails_under_load_gets_no_more_than_it_takes() {
    let k = 8;
    let faults = Faults {
        limit_inflight: k,
        latency: Duration::from_millis(5),
        ..Faults::default()
    };
    let (g, r, offered) = second_half(4_000, faults);
    assert!(
        (r as f64) < 0.1 * g as f64,
        "{r} of {g} requests refused in the second half"
    );
    assert!(
        offered <= k as f64,
        "{offered:.1} requests in progress on average at each arrival, limit {k}"
    );
}

/// A server that serves W requests at once and queues the rest (issue 24,
/// item 6: s3rver, one thread, had ~1 000 requests queued by bulkget). It
/// refuses nothing, so only latency tells: bulkget keeps the queue short,
/// measured as the requests in progress at the server at each arrival,
/// over the second half of the run. (Before the drain of a standing queue,
/// the controller's latency floor could creep up to the queue's own
/// latency, so the queue looked normal: 11–45 in progress here, against
/// 6.6–10.4 after.)
#[test]
fn a_server_that_queues_gets_a_short_queue() {
    // BENCHMARKS runs it longer: BULKGET_QUEUE_FILES=60000.
    let n = std::env::var("BULKGET_QUEUE_FILES").map_or(16_000, |v| v.parse().unwrap());
    let w = 4;
    let faults = Faults {
        workers: w,
        latency: Duration::from_millis(1),
        ..Faults::default()
    };
    let (_, _, offered) = second_half(n, faults);
    eprintln!("offered: {offered:.1} in progress at each arrival, {w} workers");
    assert!(
        offered <= (8 * w) as f64 || n > 16_000,
        "{offered:.1} requests in progress on average at each arrival, {w} workers"
    );
}
