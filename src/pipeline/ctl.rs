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
//!   requests do not queue, so more in flight may pay (a far server); well
//!   above it, they only wait in line (a server that answers a connection's
//!   requests one after another, or a saturated path), so depth halves.
//! * **Files/s against the setting before**: every change is a trial,
//!   judged against the figure measured at the setting it left (a paired
//!   comparison, so a figure from another time or setting never decides):
//!   files/s for more connections, depth / latency (what one connection
//!   does, by Little's law) for more depth. A trial that raised its figure
//!   by 10 % is kept and the same step tried again; one that did not is
//!   undone. At first connections and depth quadruple, in turn (slow
//!   start); after a figure's first undone trial, connections grow by a
//!   quarter and depth doubles, one at a time, alternating after each
//!   failure, and a probe every few periods finds a server that got faster.
//!
//! Each core runs its own controller for an origin, but files/s is the
//! origin's on all cores (the gate's count, [`super::gate::Gate`]): a core
//! that opens more connections to a saturated server gets a larger share
//! of its answers at the other cores' expense, and judged by its own
//! files/s alone every core would keep such steps, ratcheting up to the
//! ceiling (measured: 51–98 HTTP/2 connections to one loopback server,
//! where 4 did as well).
//!
//! A step up is judged by the period right after it; the period after a
//! step down is not judged (the old queues drain). Faults (429/503, resets,
//! timeouts) are not this controller's: the origin's judge
//! ([`super::judge`]) tells a limit from noise and paces the origin when it
//! finds a limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A period is never shorter than this (few answers are noise).
pub const MIN_PERIOD: Duration = Duration::from_millis(5);
/// ... nor longer than this, however few answers came.
pub const MAX_PERIOD: Duration = Duration::from_millis(1000);
/// Queueing that does not count as inflated: below this, latency is noise.
const SLACK: Duration = Duration::from_millis(1);
/// An answer slower than this many latency floors counts as this many.
const OUTLIER: u32 = 16;
/// Depth while answers stall now and then (see [`Ctl::shallow_for`]).
const STALL_DEPTH: u32 = 2;
/// Latency inflation never takes depth below this (a server that answers
/// one request at a time still gets the next one while it sends an answer).
const MIN_DEPTH: u32 = 2;
/// Periods between probes once growth has stopped.
const PROBE_EVERY: u32 = 8;
/// Periods depth is left alone after cutting it cost files/s.
const KEEP_DEPTH: u32 = 4 * PROBE_EVERY;
/// Periods a latency floor is kept before it is measured afresh.
const FLOOR_PERIODS: u32 = 32;
/// ... or this long while latency is inflated.
const FLOOR_TIME: Duration = Duration::from_secs(2);
/// A core adds its answers to its origin's count on all cores at least
/// this often in a period (one shared write per few answers, not per
/// answer, yet fine enough that another core's period reads it right).
const FLUSHES_PER_PERIOD: u32 = 16;

/// Which figure a trial changed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// More connections: four times as many in slow start (a step takes
    /// two periods, so that is TCP's doubling per round trip), else a
    /// quarter more.
    Conns,
    /// More depth: four times as deep in slow start, else twice.
    Depth,
    /// Half the depth (latency queues), kept unless files/s fell.
    Shallower,
    /// A quarter fewer connections (latency queues), kept unless files/s
    /// fell by a twentieth: of two settings that do as well, the one that
    /// costs the client and the server less.
    Fewer,
}

impl Step {
    fn other(self) -> Step {
        match self {
            Step::Depth => Step::Conns,
            _ => Step::Depth,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ctl {
    /// Connections wanted now.
    pub conns: u32,
    /// Requests in flight per connection.
    pub depth: u32,
    max_conns: u32,
    max_depth: u32,
    /// Connections / depth still double at each step (slow start) until a
    /// step of theirs fails to pay.
    ss_conns: bool,
    ss_depth: bool,
    start: Instant,
    n: u32,
    lat_sum: Duration,
    lat_min: Duration,
    /// Answers this period that stalled ([`Ctl::stall_after`]).
    stalls: u32,
    /// Periods for which depth stays at [`STALL_DEPTH`] at most: some
    /// answers stall, and over HTTP/1.1 every request behind one waits.
    shallow_for: u32,
    floor: Option<Duration>,
    floor_age: u32,
    /// When the floor was last set afresh.
    floor_at: Instant,
    /// The floor aged out while even the least latency stayed well above
    /// it: the origin should drain to measure it afresh (the lane asks the
    /// gate, [`super::gate::Gates::floor_probe`], and hands the result to
    /// [`Ctl::measured_floor`]).
    pub floor_due: bool,
    /// The last drain of the origin this controller has had.
    pub drains_seen: u64,
    /// Files/s at the current setting (a moving average); none right after
    /// a cut.
    reference: Option<f64>,
    /// Mean latency there, in seconds (likewise).
    ref_lat: Option<f64>,
    /// The origin's files/s on all cores there (likewise).
    ref_all: Option<f64>,
    /// The origin's answers on all cores when this period began (none
    /// right after a cut), and this core's not yet added to them.
    all_start: Option<u64>,
    unflushed: u32,
    /// The change on trial and the setting to go back to.
    trial: Option<(Step, u32, u32)>,
    /// The step a probe tries next (after slow start).
    next: Step,
    /// Periods for which inflated latency does not cut depth (a cut was
    /// just tried and cost files/s).
    keep_depth: u32,
    /// Likewise for connections after fewer cost files/s.
    keep_conns: u32,
    /// The last probe while latency queues was for fewer connections (they
    /// alternate with probes for more).
    probed_down: bool,
    holds: u32,
    settle: bool,
    /// The origin multiplexes (HTTP/2): depth is grown before connections.
    mux: bool,
    /// Files/s in the last judged period (for display).
    pub rate: f64,
}

/// `BULKGET_TRACE_CTL=1` prints every decision on stderr (for tuning),
/// with the time since the first controller was made.
fn trace() -> Option<Instant> {
    static ON: std::sync::OnceLock<Option<Instant>> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("BULKGET_TRACE_CTL").map(|_| Instant::now()))
}

/// Starting points: modest, and reached at once.
pub const START_CONNS: u32 = 2;
pub const START_DEPTH: u32 = 2;

impl Ctl {
    pub fn new(max_conns: u32, max_depth: u32, now: Instant) -> Ctl {
        let (max_conns, max_depth) = (max_conns.max(1), max_depth.max(1));
        trace();
        Ctl {
            conns: START_CONNS.min(max_conns),
            depth: START_DEPTH.min(max_depth),
            max_conns,
            max_depth,
            ss_conns: true,
            ss_depth: true,
            start: now,
            n: 0,
            lat_sum: Duration::ZERO,
            lat_min: Duration::MAX,
            stalls: 0,
            shallow_for: 0,
            floor: None,
            floor_age: 0,
            floor_at: now,
            floor_due: false,
            drains_seen: 0,
            reference: None,
            ref_lat: None,
            ref_all: None,
            all_start: None,
            unflushed: 0,
            trial: None,
            next: Step::Conns,
            keep_depth: 0,
            keep_conns: 0,
            probed_down: false,
            holds: 0,
            settle: false,
            mux: false,
            rate: 0.0,
        }
    }

    /// An answer came `lat` after its request was sent; `all` counts the
    /// origin's answers on every core (its [`super::gate::Gate`]). True
    /// when the figures changed (a period ended with a decision).
    pub fn answered(&mut self, now: Instant, lat: Duration, all: &AtomicU64) -> bool {
        self.n += 1;
        self.unflushed += 1;
        if self.unflushed >= (self.conns * self.depth / FLUSHES_PER_PERIOD).clamp(1, 64) {
            all.fetch_add(u64::from(self.unflushed), Ordering::Relaxed);
            self.unflushed = 0;
        }
        // A rare answer that takes far longer than the rest (a server that
        // is slow to one request in thirty) says nothing about queueing:
        // clipped, it cannot make the mean look inflated on its own.
        let clip = self
            .floor
            .map_or(Duration::MAX, |f| (f * OUTLIER).max(SLACK * 4));
        self.lat_sum += lat.min(clip);
        if lat > self.stall_after() {
            self.stalls += 1;
        }
        self.lat_min = self.lat_min.min(lat);
        let el = now.saturating_duration_since(self.start);
        let enough = self.n >= (self.conns * self.depth).max(8);
        if (enough && el >= MIN_PERIOD) || el >= MAX_PERIOD {
            self.judge(now, el, all)
        } else {
            false
        }
    }

    fn judge(&mut self, now: Instant, el: Duration, all: &AtomicU64) -> bool {
        let secs = el.as_secs_f64().max(1e-9);
        let rate = self.n as f64 / secs;
        // What the origin did on all cores meanwhile: a core that takes
        // answers from another core's connections has not made the server
        // faster, and with one core holding the origin this is `rate`.
        let total =
            all.fetch_add(u64::from(self.unflushed), Ordering::Relaxed) + u64::from(self.unflushed);
        self.unflushed = 0;
        let rate_all = self
            .all_start
            .map_or(rate, |s| total.saturating_sub(s) as f64 / secs);
        self.all_start = Some(total);
        let mean = self.lat_sum / self.n.max(1);
        self.floor_age += 1;
        // Ages out after so many periods, or sooner in time while latency
        // is inflated (a standing queue makes periods long).
        let aged = self.floor_age >= FLOOR_PERIODS
            || (now.saturating_duration_since(self.floor_at) >= FLOOR_TIME
                && self.floor.is_some_and(|f| mean > f.saturating_mul(2)));
        self.floor = Some(match self.floor {
            Some(f) if !aged => f.min(self.lat_min),
            // Aged out while the least latency stays well above it: the
            // queue may be standing (it would become the floor and look
            // normal). The old floor stands until a drain measures it, or
            // for as long again at most.
            Some(f)
                if self.lat_min > f * 3 / 2
                    && self.floor_age < 2 * FLOOR_PERIODS
                    && now.saturating_duration_since(self.floor_at) < 4 * FLOOR_TIME =>
            {
                self.floor_due = true;
                f
            }
            _ => {
                self.floor_age = 0;
                self.floor_at = now;
                self.floor_due = false;
                self.lat_min
            }
        });
        let floor = self.floor.unwrap_or(mean);
        // One answer in fifty or more stalls (a server slow to some
        // requests): over HTTP/1.1 a deep pipeline waits behind each one
        // (measured: 3 % of answers a second late held 5 000 files 5–9 s
        // at 8 deep, in steps of a second); shallow pipelines on more
        // connections route around them.
        self.shallow_for = self.shallow_for.saturating_sub(1);
        // (A minority: when most answers are that slow, they queue, which
        // the latency test below deals with.)
        if !self.mux && self.stalls * 50 > self.n && self.stalls * 2 < self.n {
            self.shallow_for = KEEP_DEPTH;
            self.depth = self.depth.min(STALL_DEPTH.max(MIN_DEPTH));
        }
        self.stalls = 0;
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
        // Far above the floor while depth is already least: a queue at the
        // server, which more connections only lengthen (a server that
        // answers each connection's requests in turn shows about depth
        // floors, not this many). Not while connections are in slow start:
        // there their trials say whether more pay, and the queue a cut of
        // depth leaves for a period would read as crowded (which held such
        // a server at a third of its rate).
        let crowded = mean > floor * 4 + SLACK * 2 && self.depth <= MIN_DEPTH && !self.ss_conns;
        self.keep_depth = self.keep_depth.saturating_sub(1);
        self.keep_conns = self.keep_conns.saturating_sub(1);
        // Latency queues: fewer per connection is worth a trial, unless
        // one lately showed depth pays even so (a client or server that
        // does more per system call when given more at once).
        let cut = inflated && self.depth > MIN_DEPTH && self.keep_depth == 0;
        if let Some((step, c0, d0)) = self.trial.take() {
            let base = self.reference.unwrap_or(0.0);
            // The origin's files/s on all cores, against the same before,
            // in this core's terms: a gain of a tenth is a tenth of what
            // this core did (so one core alone reads its own files/s).
            let gain = (rate_all - self.ref_all.unwrap_or(0.0)) / base.max(1e-9);
            // 10 % more, or half of what the step added when a ceiling
            // made it smaller than that.
            let grown = (self.conns * self.depth) as f64 / (c0 * d0).max(1) as f64;
            let need = ((grown - 1.0) / 2.0).clamp(0.01, 0.1);
            // More connections are judged by files/s. Depth is judged by
            // what one connection does, depth / latency (Little's law),
            // which connections still being set up do not blur: it pays
            // where the latency is the road, not a queue at the server.
            let per_conn = |d: u32, lat: f64| d as f64 / lat.max(1e-9);
            let now_per_conn = per_conn(self.depth, mean.as_secs_f64());
            let paid = match step {
                Step::Conns => gain > need,
                Step::Depth => self
                    .ref_lat
                    .is_some_and(|l| now_per_conn > per_conn(d0, l) * (1.0 + need)),
                // Shallower is kept unless it cost a tenth, of what one
                // connection does or of files/s.
                Step::Shallower => {
                    gain >= -0.1
                        && self
                            .ref_lat
                            .is_none_or(|l| now_per_conn >= per_conn(d0, l) * 0.9)
                }
                // While crowded, files/s hardly moves with connections
                // (the server is the bottleneck) and a short period's
                // figure is noisy: only a clear loss undoes the cut.
                Step::Fewer => gain >= if crowded { -0.15 } else { -0.05 },
            };
            if paid {
                self.reference = Some(rate);
                self.ref_all = Some(rate_all);
                self.ref_lat = Some(mean.as_secs_f64());
                if step != Step::Conns {
                    self.ss_depth = false;
                }
                if cut {
                    self.try_step(Step::Shallower);
                } else if crowded {
                    self.try_fewer();
                } else if inflated {
                    // As shallow as it goes: only more connections may
                    // still pay (and are undone if they do not); over
                    // HTTP/2, more streams first.
                    if step == Step::Depth && self.streams_first() {
                        self.try_step(Step::Depth);
                    } else if step == Step::Conns && self.ss_depth {
                        // Still in slow start: depth gets its turn too (a
                        // trial, undone unless one connection does more:
                        // queueing on the path, not at the server).
                        self.try_step(Step::Depth);
                    } else if self.ss_conns || step == Step::Conns {
                        self.try_conns();
                    }
                } else if step != Step::Shallower && step != Step::Fewer {
                    // Again (in slow start, the other figure while it
                    // still grows fast; over HTTP/2, depth while it pays).
                    let other = step.other();
                    let again = if self.in_slow_start(other) && !(self.mux && step == Step::Depth) {
                        other
                    } else {
                        step
                    };
                    self.try_step(again);
                }
            } else {
                // It did not: back to where it was (whose figures are still
                // the reference), and the other figure is tried next time.
                self.conns = c0;
                self.depth = d0;
                match step {
                    Step::Conns => self.ss_conns = false,
                    Step::Depth => self.ss_depth = false,
                    Step::Shallower => self.keep_depth = KEEP_DEPTH,
                    Step::Fewer if crowded => self.keep_conns = PROBE_EVERY,
                    Step::Fewer => self.keep_conns = KEEP_DEPTH,
                }
                self.holds = 0;
                self.next = step.other();
            }
        } else {
            self.reference = Some(match self.reference {
                Some(r) => 0.7 * r + 0.3 * rate,
                None => rate,
            });
            self.ref_all = Some(self.ref_all.map_or(rate_all, |r| 0.7 * r + 0.3 * rate_all));
            let m = mean.as_secs_f64();
            self.ref_lat = Some(self.ref_lat.map_or(m, |l| 0.7 * l + 0.3 * m));
            self.holds += 1;
            if cut {
                self.try_step(Step::Shallower);
            } else if crowded {
                self.try_fewer();
            } else if inflated {
                // Latency inflated, and depth will not come off: only
                // connections (over HTTP/2, streams first: a trial of
                // depth is judged by what one connection does, so depth
                // that only queues is undone).
                if self.ss_conns && self.streams_first() {
                    self.try_step(Step::Depth);
                } else if self.ss_conns {
                    self.try_conns();
                } else if self.holds >= PROBE_EVERY {
                    // Probes for more connections alone would ratchet up
                    // on noise (each has some chance to look 10 % better
                    // and none ever comes off): probes for fewer take
                    // turns with them.
                    self.holds = 0;
                    self.probed_down = !self.probed_down;
                    if self.probed_down && self.keep_conns == 0 && self.conns > START_CONNS {
                        self.try_step(Step::Fewer);
                    } else {
                        self.try_conns();
                    }
                }
            } else if self.ss_conns || self.ss_depth {
                let step = if self.in_slow_start(self.next) {
                    self.next
                } else {
                    self.next.other()
                };
                self.try_step(step);
            } else if self.holds >= PROBE_EVERY {
                self.holds = 0;
                self.try_step(self.next);
            }
        }
        let changed = (conns, depth) != (self.conns, self.depth);
        if let Some(t0) = trace() {
            eprintln!(
                "ctl {:.3}s: {:.0}/s (origin {:.0}/s) mean {:?} floor {:?} inflated {inflated}: {conns}x{depth} -> {}x{}",
                t0.elapsed().as_secs_f64(),
                rate,
                rate_all,
                mean,
                floor,
                self.conns,
                self.depth
            );
        }
        // A step up is judged at once: a period lasts until about as many
        // answers as are now allowed in flight came in, so the new
        // connections or depth have shown what they do by its end. After a
        // step down, the queues of the old setting drain first.
        self.settle = changed
            && self
                .trial
                .is_none_or(|(step, _, _)| matches!(step, Step::Shallower | Step::Fewer));
        changed
    }

    /// The origin speaks HTTP/2: streams cost far less than connections (no
    /// handshake, and one socket's system calls carry many answers), so
    /// depth is grown first and connections once depth stops paying.
    pub fn multiplexed(&mut self) {
        if !self.mux {
            self.mux = true;
            self.next = Step::Depth;
        }
    }

    /// Over HTTP/2, while depth may still grow, it is tried before
    /// connections.
    fn streams_first(&self) -> bool {
        self.mux && self.depth < self.max_depth
    }

    fn in_slow_start(&self, step: Step) -> bool {
        match step {
            Step::Conns => self.ss_conns,
            Step::Depth => self.ss_depth,
            Step::Shallower | Step::Fewer => false,
        }
    }

    /// A standing queue at the server: fewer connections on trial (kept
    /// unless files/s fell).
    fn try_fewer(&mut self) {
        if self.keep_conns == 0 && self.conns > START_CONNS {
            self.try_step(Step::Fewer);
        }
    }

    /// The origin drained and its answers then took `floor` at least.
    pub fn measured_floor(&mut self, floor: Duration, now: Instant) {
        self.floor = Some(floor);
        self.floor_age = 0;
        self.floor_at = now;
        self.floor_due = false;
    }

    /// How long a drain should last: the queue empties in about one mean
    /// latency, then the probes need a few round trips.
    pub fn drain_for(&self) -> Duration {
        Duration::from_secs_f64((self.ref_lat.unwrap_or(0.1) * 1.5 + 0.01).min(2.0))
    }

    /// Puts more connections on trial, unless they are at their ceiling.
    fn try_conns(&mut self) {
        if self.conns < self.max_conns {
            self.try_step(Step::Conns);
        } else {
            self.ss_conns = false;
        }
    }

    /// Puts a step on trial; when its figure is at its ceiling, the other.
    fn try_step(&mut self, step: Step) {
        let (c0, d0) = (self.conns, self.depth);
        if step == Step::Shallower {
            self.depth = (d0 / 2).max(MIN_DEPTH).min(d0);
            if self.depth != d0 {
                self.ss_depth = false;
                self.trial = Some((step, c0, d0));
            }
            return;
        }
        if step == Step::Fewer {
            self.conns = (c0 - (c0 / 4).max(1)).max(START_CONNS.min(self.max_conns));
            if self.conns != c0 {
                self.ss_conns = false;
                self.trial = Some((step, c0, d0));
            }
            return;
        }
        for step in [step, step.other()] {
            match step {
                Step::Conns if self.ss_conns => self.conns = (c0 * 4).min(self.max_conns),
                Step::Conns => self.conns = (c0 + (c0 / 4).max(1)).min(self.max_conns),
                Step::Depth if self.ss_depth => self.depth = (d0 * 4).min(self.depth_cap()),
                Step::Depth | Step::Shallower | Step::Fewer => {
                    self.depth = (d0 * 2).min(self.depth_cap())
                }
            }
            if (self.conns, self.depth) != (c0, d0) {
                self.trial = Some((step, c0, d0));
                return;
            }
            // At its ceiling: it has stopped growing fast.
            match step {
                Step::Conns => self.ss_conns = false,
                _ => self.ss_depth = false,
            }
        }
    }

    /// An answer not begun after this long stalls its connection (and all
    /// requests behind it): [`OUTLIER`] latency floors, at least 50 ms.
    pub fn stall_after(&self) -> Duration {
        self.floor
            .map_or(Duration::from_millis(50), |f| f * OUTLIER)
            .max(Duration::from_millis(50))
    }

    /// Some answers stall while most do not (a heavy tail, not a queue):
    /// a connection waiting on one is worth routing around.
    pub fn stalling(&self) -> bool {
        self.shallow_for > 0
    }

    fn depth_cap(&self) -> u32 {
        if self.shallow_for > 0 {
            self.max_depth.min(STALL_DEPTH)
        } else {
            self.max_depth
        }
    }

    /// Never more than `d` in flight per connection (a server that does
    /// not pipeline).
    pub fn cap_depth(&mut self, d: u32) {
        self.max_depth = d.max(1);
        self.depth = self.depth.min(self.max_depth);
    }
}

#[cfg(test)]
mod tests;
