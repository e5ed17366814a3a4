//! Adaptive concurrency for one origin (on one core): how many connections
//! and how many requests in flight on each. No flag is needed to find
//! them; `--max-per-host` and `--pipeline` are only ceilings.
//!
//! The controller works in periods that clock themselves like TCP's round
//! trips: a period ends once about as many answers came in as were allowed
//! in flight (Little's law: that takes one latency), and at least
//! [`MIN_PERIOD`]. At each period's end it looks at two figures:
//!
//! * **Latency against its floor** (TCP Vegas): the mean time from request
//!   to answer head against the smallest seen lately. Close to the floor,
//!   requests do not queue at the server, so deeper pipelines pay (a far
//!   server); well above it, they only wait in line (a server that answers a
//!   connection's requests one after another), so the depth halves.
//! * **Files/s against the best seen**: while a change raised it by 10 %,
//!   connections keep growing (doubling at first, like slow start, then by a
//!   quarter); when it stops rising, they hold, and every few periods a
//!   probe tries a quarter more, so a server that got faster is found.
//!
//! The period after a change is not judged (new connections are still
//! being set up). 429/503, resets and timeouts halve both figures at once, at
//! most once per period: the multiplicative decrease of AIMD, down to where
//! a run starts (the run-wide [`crate::fetch::Throttle`] pauses and narrows
//! every pipeline below that).

use std::time::{Duration, Instant};

/// A period is never shorter than this (few answers are noise).
pub const MIN_PERIOD: Duration = Duration::from_millis(5);
/// ... nor longer than this, however few answers came.
pub const MAX_PERIOD: Duration = Duration::from_millis(1000);
/// Queueing that does not count as inflated: below this, latency is noise.
const SLACK: Duration = Duration::from_millis(1);
/// Periods between probes once growth has stopped.
const PROBE_EVERY: u32 = 8;
/// Periods a latency floor is kept before it is measured afresh.
const FLOOR_PERIODS: u32 = 32;

#[derive(Clone, Debug)]
pub struct Ctl {
    /// Connections wanted now.
    pub conns: u32,
    /// Requests in flight per connection.
    pub depth: u32,
    max_conns: u32,
    max_depth: u32,
    slow_start: bool,
    start: Instant,
    n: u32,
    lat_sum: Duration,
    lat_min: Duration,
    floor: Option<Duration>,
    floor_age: u32,
    best: f64,
    settle: bool,
    holds: u32,
    grown_from: Option<u32>,
    best_per_conn: f64,
    depth_from: Option<u32>,
    depth_hold: bool,
    cut_at: Option<Instant>,
    /// Files/s in the last judged period (for display).
    pub rate: f64,
}

/// `BULKGET_TRACE_CTL=1` prints every decision on stderr (for tuning).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("BULKGET_TRACE_CTL").is_some())
}

/// Starting points: modest, and reached at once.
pub const START_CONNS: u32 = 2;
pub const START_DEPTH: u32 = 8;

impl Ctl {
    pub fn new(max_conns: u32, max_depth: u32, now: Instant) -> Ctl {
        let (max_conns, max_depth) = (max_conns.max(1), max_depth.max(1));
        Ctl {
            conns: START_CONNS.min(max_conns),
            depth: START_DEPTH.min(max_depth),
            max_conns,
            max_depth,
            slow_start: true,
            start: now,
            n: 0,
            lat_sum: Duration::ZERO,
            lat_min: Duration::MAX,
            floor: None,
            floor_age: 0,
            best: 0.0,
            settle: false,
            holds: 0,
            grown_from: None,
            best_per_conn: 0.0,
            depth_from: None,
            depth_hold: false,
            cut_at: None,
            rate: 0.0,
        }
    }

    /// An answer came `lat` after its request was sent. True when the
    /// figures changed (a period ended with a decision).
    pub fn answered(&mut self, now: Instant, lat: Duration) -> bool {
        self.n += 1;
        self.lat_sum += lat;
        self.lat_min = self.lat_min.min(lat);
        let el = now.saturating_duration_since(self.start);
        let enough = self.n >= (self.conns * self.depth).max(8);
        if (enough && el >= MIN_PERIOD) || el >= MAX_PERIOD {
            self.judge(now, el)
        } else {
            false
        }
    }

    fn judge(&mut self, now: Instant, el: Duration) -> bool {
        let rate = self.n as f64 / el.as_secs_f64().max(1e-9);
        let mean = self.lat_sum / self.n.max(1);
        self.floor_age += 1;
        self.floor = Some(match self.floor {
            Some(f) if self.floor_age < FLOOR_PERIODS => f.min(self.lat_min),
            _ => {
                self.floor_age = 0;
                self.lat_min
            }
        });
        let floor = self.floor.unwrap_or(mean);
        self.start = now;
        self.n = 0;
        self.lat_sum = Duration::ZERO;
        self.lat_min = Duration::MAX;
        if self.settle {
            self.settle = false;
            return false;
        }
        self.rate = rate;
        let (conns, depth) = (self.conns, self.depth);
        let inflated = mean > floor * 2 + SLACK;
        // Depth pays when each connection answers faster for it; a server
        // that answers a connection's requests one after another (or holds
        // its answers to send them together, which hides the queueing from
        // the latency floor) does not.
        let per_conn = rate / conns.max(1) as f64;
        let paid = per_conn > self.best_per_conn * 1.1;
        if let Some(d) = self.depth_from.take()
            && !paid
        {
            self.depth = d;
            self.depth_hold = true;
        }
        if paid {
            self.best_per_conn = per_conn;
        } else {
            self.best_per_conn = (self.best_per_conn * 0.98).max(per_conn);
        }
        if inflated {
            self.depth = (self.depth / 2).max(2).min(self.depth);
        } else if !self.depth_hold && self.depth < self.max_depth {
            self.depth_from = Some(self.depth);
            self.depth = (self.depth * 2).min(self.max_depth);
        }
        if rate > self.best * 1.1 {
            self.best = rate;
            self.holds = 0;
            self.grow();
        } else {
            // The last growth did not pay: back to where it was.
            if let Some(c) = self.grown_from.take() {
                self.conns = c;
            }
            self.slow_start = false;
            // The best slowly fades to what is seen, so a server that got
            // slower is not held to an old figure for ever.
            self.best = (self.best * 0.98).max(rate);
            self.holds += 1;
            if self.holds >= PROBE_EVERY {
                self.holds = 0;
                self.depth_hold = false;
                self.grow();
            }
        }
        let changed = (conns, depth) != (self.conns, self.depth);
        if trace() {
            eprintln!(
                "ctl: {:.0}/s mean {:?} floor {:?} inflated {inflated}: {conns}x{depth} -> {}x{}",
                rate, mean, floor, self.conns, self.depth
            );
        }
        self.settle = changed;
        changed
    }

    fn grow(&mut self) {
        self.grown_from = Some(self.conns);
        let more = if self.slow_start {
            self.conns
        } else {
            (self.conns / 4).max(1)
        };
        self.conns = (self.conns + more).min(self.max_conns);
    }

    /// Never more than `d` in flight per connection (a server that does
    /// not pipeline).
    pub fn cap_depth(&mut self, d: u32) {
        self.max_depth = d.max(1);
        self.depth = self.depth.min(self.max_depth);
    }

    /// The server pushed back (429/503, a reset, a timeout): halve, at most
    /// once per period. True when the figures changed.
    pub fn congested(&mut self, now: Instant) -> bool {
        if self
            .cut_at
            .is_some_and(|t| now.saturating_duration_since(t) < MAX_PERIOD.min(self.period_hint()))
        {
            return false;
        }
        self.cut_at = Some(now);
        self.slow_start = false;
        self.best = 0.0;
        self.holds = 0;
        self.grown_from = None;
        self.depth_from = None;
        self.best_per_conn = 0.0;
        let before = (self.conns, self.depth);
        // Never below where a run starts: that much is modest for any
        // server, and the run-wide throttle (Retry-After, window) goes lower.
        self.conns = (self.conns / 2).max(START_CONNS.min(self.max_conns));
        self.depth = (self.depth / 2).max(START_DEPTH.min(self.max_depth));
        self.settle = true;
        self.start = now;
        self.n = 0;
        self.lat_sum = Duration::ZERO;
        before != (self.conns, self.depth)
    }

    /// About one period: the latency floor, or a guess before there is one.
    fn period_hint(&self) -> Duration {
        self.floor
            .map_or(Duration::from_millis(500), |f| (f * 4).max(MIN_PERIOD * 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a controller against a model server: `serve(conns, depth)`
    /// gives (files/s, mean latency, least latency) at that setting; one
    /// answer in four shows the least. Returns the settings reached.
    fn drive(mut serve: impl FnMut(u32, u32) -> (f64, f64, f64), max_c: u32, max_d: u32) -> Ctl {
        let t0 = Instant::now();
        let mut now = t0;
        let mut c = Ctl::new(max_c, max_d, now);
        for i in 0..400_000u32 {
            let (rate, mean, least) = serve(c.conns, c.depth);
            now += Duration::from_secs_f64(1.0 / rate);
            let lat = if i % 4 == 0 {
                least
            } else {
                (4.0 * mean - least) / 3.0
            };
            c.answered(now, Duration::from_secs_f64(lat));
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
    fn pushback_halves() {
        let now = Instant::now();
        let mut c = Ctl::new(64, 64, now);
        c.conns = 32;
        c.depth = 32;
        assert!(c.congested(now));
        assert_eq!((c.conns, c.depth), (16, 16));
        assert!(
            !c.congested(now + Duration::from_millis(1)),
            "a burst counts once"
        );
        assert!(c.congested(now + Duration::from_secs(2)));
        assert_eq!((c.conns, c.depth), (8, 8));
        assert!(c.congested(now + Duration::from_secs(4)));
        assert!(c.congested(now + Duration::from_secs(6)));
        assert!(
            !c.congested(now + Duration::from_secs(8)),
            "at the start already"
        );
        assert_eq!((c.conns, c.depth), (START_CONNS, START_DEPTH));
    }
}
