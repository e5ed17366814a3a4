//! The controller against model servers: how it ramps, holds and cuts.

use super::*;

/// Drives a controller against a model server: `serve(conns, depth)`
/// gives (files/s, mean latency, least latency) at that setting; one
/// answer in four shows the least. Returns the settings reached.
fn drive(serve: impl FnMut(u32, u32) -> (f64, f64, f64), max_c: u32, max_d: u32) -> Ctl {
    drive_from(Ctl::new(max_c, max_d, Instant::now()), serve)
}

/// As [`drive`], from the controller `c` as given.
fn drive_from(mut c: Ctl, mut serve: impl FnMut(u32, u32) -> (f64, f64, f64)) -> Ctl {
    let t0 = c.start;
    let mut now = t0;
    let all = AtomicU64::new(0);
    for i in 0..400_000u32 {
        let (rate, mean, least) = serve(c.conns, c.depth);
        now += Duration::from_secs_f64(1.0 / rate);
        let lat = if i % 4 == 0 {
            least
        } else {
            (4.0 * mean - least) / 3.0
        };
        c.answered(now, Duration::from_secs_f64(lat), &all);
        if now - t0 > Duration::from_secs(20) {
            break;
        }
    }
    c
}

#[test]
fn a_serial_server_gets_many_shallow_connections() {
    // 5 ms per request, one at a time per connection; no round trip.
    let svc = 0.005;
    let c = drive(|c, d| (c as f64 / svc, svc * d as f64, svc), 128, 64);
    assert_eq!(c.conns, 128, "{c:?}");
    assert!(c.depth <= 4, "{c:?}");
    // The same server holding each connection's answers to send them
    // together: every answer takes as long, so latency shows no queue.
    let c = drive(
        |c, d| (c as f64 / svc, svc * d as f64, svc * d as f64),
        128,
        64,
    );
    assert_eq!(c.conns, 128, "{c:?}");
    assert!(
        c.depth <= START_DEPTH,
        "depth that does not pay is not kept: {c:?}"
    );
}

#[test]
fn a_far_server_gets_deep_pipelines() {
    // 40 ms round trip, answers as fast as asked up to 50 000 files/s.
    let rtt = 0.040;
    let c = drive(
        |c, d| {
            let rate = ((c * d) as f64 / rtt).min(50_000.0);
            (rate, ((c * d) as f64 / rate).max(rtt), rtt)
        },
        128,
        64,
    );
    assert!(c.conns * c.depth >= 1500, "{c:?}");
}

#[test]
fn a_saturated_server_gets_no_more_connections() {
    // The server does 20 000 files/s whatever is asked; latency grows.
    let c = drive(
        |c, d| (20_000.0, (c * d) as f64 / 20_000.0, 0.000_05),
        128,
        64,
    );
    assert!(c.conns <= 16, "{c:?}");
    assert!(c.conns * c.depth <= 64, "queueing kept short: {c:?}");
}

#[test]
fn a_saturated_server_sheds_connections_it_does_not_need() {
    // Connections that the ramp-up (or noise) took past what pays are
    // given back: the server does 20 000 files/s however many there
    // are, and the latency of a deeper queue shows it.
    let mut c = Ctl::new(128, 64, Instant::now());
    (c.conns, c.depth) = (128, 4);
    (c.ss_conns, c.ss_depth) = (false, false);
    let c = drive_from(c, |c, d| (20_000.0, (c * d) as f64 / 20_000.0, 0.000_05));
    assert!(c.conns <= 32, "{c:?}");
}

/// Two cores' controllers for one origin, driven together against a
/// server that does `total` files/s however much is asked, first come
/// first served: each core gets answers in proportion to what it has in
/// flight, and every answer waits behind all of them.
fn drive_two_cores(total: f64, shared: bool) -> (Ctl, Ctl) {
    let t0 = Instant::now();
    let mut cs = [
        Ctl::new(128, 64, t0),
        Ctl::new(128, 64, t0 + Duration::from_millis(100)),
    ];
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let mut credit = 0.0;
    let mut now = t0;
    for i in 0..400_000u32 {
        let [a, b] = &cs;
        // The second core joins 0.1 s later (cores never move in step).
        let joined = now - t0 > Duration::from_millis(100);
        let fa = (a.conns * a.depth) as f64;
        let fb = if joined {
            (b.conns * b.depth) as f64
        } else {
            0.0
        };
        now += Duration::from_secs_f64(1.0 / total);
        let least = 0.000_05;
        let mean = (fa + fb) / total;
        let lat = if i % 4 == 0 {
            least
        } else {
            (4.0 * mean - least) / 3.0
        };
        credit += fa / (fa + fb);
        let k = if credit >= 1.0 {
            credit -= 1.0;
            0
        } else {
            1
        };
        let all = &counts[if shared { 0 } else { k }];
        cs[k].answered(now, Duration::from_secs_f64(lat), all);
        if now - t0 > Duration::from_secs(20) {
            break;
        }
    }
    let [a, b] = cs;
    (a, b)
}

#[test]
fn cores_do_not_take_connections_from_each_other() {
    // A core that opens more connections to a saturated server gets a
    // larger share of its answers, and the other core a smaller one:
    // judged by its own files/s each core would keep every step up
    // (and give back none), judged by the origin's they stay few.
    let (a, b) = drive_two_cores(20_000.0, true);
    assert!(a.conns + b.conns <= 16, "{a:?} {b:?}");
    // The same two cores each reading only their own answers: the
    // bias this guards against.
    let (a, b) = drive_two_cores(20_000.0, false);
    assert!(a.conns + b.conns > 16, "{a:?} {b:?}");
}

#[test]
fn over_http2_depth_grows_before_connections() {
    // 20 ms away, streams answered as fast as asked up to 50 000
    // files/s: depth alone gets there, so connections stay few.
    let rtt = 0.020;
    let mut c = Ctl::new(128, 64, Instant::now());
    c.multiplexed();
    let c = drive_from(c, |c, d| {
        let rate = ((c * d) as f64 / rtt).min(50_000.0);
        (rate, ((c * d) as f64 / rate).max(rtt), rtt)
    });
    assert_eq!(c.depth, 64, "{c:?}");
    assert!(c.conns * c.depth >= 900, "{c:?}");
    assert!(c.conns <= 32, "{c:?}");
}

#[test]
fn a_far_host_on_a_crowded_path_gets_depth_not_only_connections() {
    // 20 ms away through a path where every connection costs 4 ms of
    // queueing (a proxy or delay line shared by many connections):
    // connections alone inflate latency, depth on few connections pays.
    let path = |c: u32, d: u32| {
        let lat = 0.020 + 0.004 * c as f64;
        ((c * d) as f64 / lat, lat, 0.020)
    };
    let c = drive(path, 128, 64);
    assert!(c.depth >= 8, "{c:?}");
    // Connections alone (54 x 2 before depth had its turn) made
    // about 460 files/s here.
    let (rate, _, _) = path(c.conns, c.depth);
    assert!(rate >= 1500.0, "{rate:.0}/s: {c:?}");
}
