//! Push-back for one origin across every core: telling a server's limit
//! from noise by what cutting does.
//!
//! Every fault of an attempt (429/503, other 5xx, a reset, a short body, a
//! timeout, a refused connection) is counted here by kind; the answers that
//! went well are the origin's count on all cores ([`super::gate::Gate`]'s
//! `answers`). Faults are retried either way (each request no earlier than
//! its own `Retry-After`); what this module decides is whether sending
//! *less* would help, judged in windows of attempts:
//!
//! ```text
//!  Open ── share of faults well above the noise learned so far ──▶ Trial:
//!     send at half the rate (and below what got through), one window
//!  Trial ── share fell by half or more, past chance ──▶ Limited { rps }
//!        └─ it did not ─────────────────────────────────▶ Open, noise = share
//!  Limited ── share above noise: rps = what got through × 0.95 (at most
//!          │  halved a window)
//!          ├─ none, while the pace binds: rps × 2 a window, × 1.05
//!          │  once a pace has been refused
//!          └─ above noise 3 windows in a row, cut each time ──▶ Open, noise
//! ```
//!
//! Faults at a steady rate that does not fall when the rate falls are
//! noise: counted and retried, never a reason to send less (before this, a
//! server failing one request in six at random held a run at one connection
//! and 7 files/s). A limit — a rate limiter's 429s, a server whose errors
//! rise with load — shows by falling when the trial halves the rate, and
//! its level is what the server let through, found in one window rather
//! than one connection per second back up. The pace is a shared next-send
//! time per origin ([`super::gate::Gates::pace`]): one atomic per request,
//! only while an origin is limited.
//!
//! The whole origin pauses only when the answers say the origin as a whole
//! is limiting: a `Retry-After` of [`LONG_WAIT`] or more, or most answers of
//! a window 429/503 (a burst across connections); each is said once. Its
//! first 429/503 holds it for [`HOLD`], so that what is in flight answers
//! before more goes out (on loopback, a window's shortest 10 ms is
//! hundreds of requests a limiter would refuse).

use std::time::Duration;

use crate::error::Fault;

/// A `Retry-After` this long pauses the whole origin, not only its request.
pub const LONG_WAIT: Duration = Duration::from_secs(5);
/// The whole origin holds this long at its first 429/503.
pub const HOLD: Duration = Duration::from_millis(50);
/// Below this share of faults an origin never goes on trial.
const FLOOR: f64 = 0.05;
/// Margin over the learned noise (besides three standard errors).
const MARGIN: f64 = 0.05;
/// Faults in a window before a trial can start.
const MIN_FAULTS: u32 = 5;
/// Answers that went well in a window before a trial can start (what got
/// through is the level a trial starts from; none at all is an outage).
const MIN_OK: u64 = 3;
/// Windows in a row that stay above the noise while limited, each paced
/// at what the one before let through, before the limit is called noise
/// after all. Under a limit, sending what got through is refused no more;
/// random faults go on at any rate. (A trial can read noise as a limit by
/// chance, or when stalls thin out one short window's answers: this is
/// the way back, where before a wrong verdict ratcheted the pace down for
/// the rest of the run.)
const NOT_A_LIMIT: u32 = 3;

/// What the judge has concluded about an origin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// No faults worth a trial (yet).
    Clear,
    /// Faults at about this share of attempts, which sending less did not
    /// lower: retried, not cut.
    Noise(f64),
    /// Sending at half the rate for a window, to see.
    Trial,
    /// The origin takes about this many requests a second.
    Limited(f64),
}

impl Verdict {
    /// For the live line and `--stats-json`.
    pub fn describe(&self) -> String {
        match *self {
            Verdict::Clear => "clear".into(),
            Verdict::Noise(s) => format!("noise {:.0} % faults", s * 100.0),
            Verdict::Trial => "on trial (sending less)".into(),
            Verdict::Limited(r) => format!("limited at ~{r:.0} req/s"),
        }
    }
}

/// What a closed window asks of the gate.
#[derive(Debug, Default, PartialEq)]
pub struct Ruling {
    /// Send at most this many requests a second (`Some(None)`: no pace).
    pub pace: Option<Option<f64>>,
    /// Pause the whole origin this long.
    pub pause: Option<Duration>,
    /// Found a limit: halve the origin's connections too (once).
    pub cut: bool,
    /// Something to tell the user (each kind said once per origin).
    pub say: Option<Said>,
    /// The verdict changed or a window closed: show it.
    pub show: bool,
}

/// What the judge tells the user, once each per origin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Said {
    /// A `Retry-After` of this many seconds paused the origin.
    Wait(u64),
    /// `refused` of `of` attempts were 429/503: paused for `secs`.
    Burst { refused: u32, of: u64, secs: u64 },
    /// Faults fell from `before` to `after` at half the rate.
    Limit { before: f64, after: f64, rps: f64 },
}

impl Said {
    /// The line for stderr.
    pub fn line(&self, origin: &str) -> String {
        match *self {
            Said::Wait(s) => format!("{origin} asks to wait {s} s (Retry-After): pausing it"),
            Said::Burst { refused, of, secs } => format!(
                "{origin} refused {refused} of {of} requests (429/503): pausing it {secs} s"
            ),
            Said::Limit { before, after, rps } => format!(
                "{origin} limits requests: faults fell from {:.0} % to {:.0} % at half the rate; sending about {rps:.0} a second",
                before * 100.0,
                after * 100.0
            ),
        }
    }
}

#[derive(Debug)]
enum State {
    Open,
    /// Before the trial: the share of faults and what got through a second.
    Trial {
        share: f64,
        ok_rate: f64,
        /// Attempts in the window that started it.
        n: u64,
    },
    Limited {
        rps: f64,
        /// A pace of this origin has been refused since it was found: the
        /// limit is near, so the pace creeps up (5 % a window), where
        /// before it doubled each window (slow start).
        near: bool,
        /// Windows in a row with faults above the noise although each
        /// cut the pace to what got through (see [`NOT_A_LIMIT`]).
        over: u32,
    },
}

#[derive(Debug)]
pub struct Judge {
    start_ms: u64,
    answers0: u64,
    faults: [u32; Fault::KINDS],
    /// 429/503 this window, and the longest `Retry-After` among them.
    pushback: u32,
    longest: Duration,
    /// Faults by kind over the run.
    pub totals: [u64; Fault::KINDS],
    state: State,
    /// The noise learned: faults that sending less did not lower.
    base: Option<f64>,
    said_limit: bool,
    said_burst: bool,
    said_wait: bool,
    /// The origin has been held at its first 429/503 ([`HOLD`]).
    held: bool,
    /// Until then (a pause, and the answers of what was in flight before
    /// a change), nothing counts in the window: it would judge the old
    /// setting as the new one's.
    settle_until_ms: u64,
}

impl Judge {
    pub fn new(now_ms: u64, answers: u64) -> Judge {
        Judge {
            start_ms: now_ms,
            answers0: answers,
            faults: [0; Fault::KINDS],
            pushback: 0,
            longest: Duration::ZERO,
            totals: [0; Fault::KINDS],
            state: State::Open,
            base: None,
            said_limit: false,
            said_burst: false,
            said_wait: false,
            held: false,
            settle_until_ms: 0,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match (&self.state, self.base) {
            (State::Trial { .. }, _) => Verdict::Trial,
            (State::Limited { rps, .. }, _) => Verdict::Limited(*rps),
            (State::Open, Some(b)) => Verdict::Noise(b),
            (State::Open, None) => Verdict::Clear,
        }
    }

    /// One attempt failed with `f`; `retry_after` as the answer said.
    /// A `Retry-After` of [`LONG_WAIT`] or more pauses the origin at once.
    pub fn fault(&mut self, f: Fault, retry_after: Option<Duration>, now_ms: u64) -> Ruling {
        if now_ms >= self.settle_until_ms {
            self.faults[f as usize] += 1;
        }
        self.totals[f as usize] += 1;
        let mut r = Ruling::default();
        if f == Fault::Pushback {
            self.pushback += 1;
            let ra = retry_after.unwrap_or(Duration::ZERO);
            self.longest = self.longest.max(ra);
            if ra >= LONG_WAIT {
                r.pause = Some(ra);
                if !std::mem::replace(&mut self.said_wait, true) {
                    r.say = Some(Said::Wait(ra.as_secs()));
                }
            } else if matches!(self.state, State::Open)
                && self.base.is_none()
                && !std::mem::replace(&mut self.held, true)
            {
                // The first push-back of an origin: what is in flight
                // answers before more is sent, so that a limiter found at
                // full speed refuses what was in flight, not all that a
                // loopback run sends until the window closes.
                r.pause = Some(HOLD);
            }
        }
        r
    }

    /// Whether the window is long enough to judge, at `ms` long with `n`
    /// attempts: short while looking for a limit (so a limiter refuses
    /// little before it is found), longer once noise is known.
    fn ripe(&self, ms: u64, n: u64, f: u64) -> bool {
        let (min_ms, min_n) = match self.state {
            State::Open if self.base.is_some() => (500, 200),
            State::Limited { .. } => (250, 50),
            _ => (100, 50),
        };
        // Most attempts failing: at once (on loopback a tenth of a second
        // is thousands of requests a limiter would refuse).
        let failing = ms >= 10 && f >= 50 && 2 * f > n;
        (ms >= min_ms && n >= min_n) || (ms >= 2000 && n >= 10) || failing
    }

    /// Closes the window if it is ripe, given the origin's answers that
    /// went well so far (on all cores), and rules on it.
    pub fn close(&mut self, now_ms: u64, answers: u64) -> Option<Ruling> {
        if now_ms < self.settle_until_ms {
            self.restart(now_ms, answers);
            return None;
        }
        let ms = now_ms.saturating_sub(self.start_ms);
        let ok = answers.saturating_sub(self.answers0);
        let f: u64 = self.faults.iter().map(|&x| u64::from(x)).sum();
        let n = ok + f;
        if !self.ripe(ms, n, f) {
            if ms >= 10_000 {
                self.restart(now_ms, answers); // next to nothing sent
            }
            return None;
        }
        let secs = ms as f64 / 1000.0;
        let share = f as f64 / n as f64;
        // A window closed early (most attempts failing) is too short for
        // a level: a limiter's bucket lets a burst through at first, which
        // over a few ms reads as a high rate. Levels are per 100 ms at least.
        let (rate, ok_rate) = (n as f64 / secs, ok as f64 / secs.max(0.1));
        let pushback = self.pushback;
        let longest = self.longest;
        self.restart(now_ms, answers);
        let mut r = Ruling {
            show: true,
            ..Ruling::default()
        };
        // A burst: most answers of the window refused, across connections.
        if pushback >= 20 && pushback as f64 > 0.5 * n as f64 {
            let wait = longest.max(Duration::from_secs(1));
            r.pause = Some(wait);
            if !std::mem::replace(&mut self.said_burst, true) {
                r.say = Some(Said::Burst {
                    refused: pushback,
                    of: n,
                    secs: wait.as_secs(),
                });
            }
        }
        let sigma = |p: f64| (p * (1.0 - p) / n as f64).sqrt();
        let noise = self.base.unwrap_or(0.0);
        let above = |p: f64| p > noise + MARGIN.max(3.0 * sigma(noise)) && p > FLOOR;
        match self.state {
            State::Open => {
                // Nothing got through (an outage, not a limit): no level to
                // find; a burst pauses the origin instead.
                if above(share) && f >= u64::from(MIN_FAULTS) && ok >= MIN_OK {
                    self.state = State::Trial { share, ok_rate, n };
                    r.pace = Some(Some((0.5 * rate).min(0.9 * ok_rate).max(1.0)));
                } else if let Some(b) = self.base {
                    // Noise drifts: follow it.
                    self.base = Some(0.8 * b + 0.2 * share);
                }
            }
            State::Trial {
                share: before,
                ok_rate: got,
                n: n_before,
            } => {
                // Both shares are estimates: the fall must pass both errors.
                let err = (before * (1.0 - before) / n_before.max(1) as f64
                    + share * (1.0 - share) / n as f64)
                    .sqrt();
                if share < 0.5 * before && before - share > 3.0 * err {
                    let rps = (got * 0.95).max(1.0);
                    self.state = State::Limited {
                        rps,
                        near: false,
                        over: 0,
                    };
                    r.pace = Some(Some(rps));
                    if !std::mem::replace(&mut self.said_limit, true) {
                        r.cut = true;
                        r.say = Some(Said::Limit {
                            before,
                            after: share,
                            rps,
                        });
                    }
                } else if share >= 0.5 {
                    // Most still fail at the lower rate: lower again.
                    let rps = (got * 0.5).max(1.0);
                    self.state = State::Limited {
                        rps,
                        near: false,
                        over: 0,
                    };
                    r.pace = Some(Some(rps));
                } else {
                    // Sending less did not help: noise.
                    self.base = Some(match self.base {
                        Some(b) => 0.5 * b + 0.25 * (before + share),
                        None => (before + share) / 2.0,
                    });
                    self.state = State::Open;
                    r.pace = Some(None);
                }
            }
            State::Limited { rps, near, over } => {
                let over_now = above(share);
                let over = if over_now { over + 1 } else { 0 };
                let next = if over_now {
                    // What got through, but at most half off a window: a
                    // window closed early on a burst of refusals may hold
                    // few of the answers that went well (cores add theirs
                    // a few at a time), and read as next to nothing.
                    (ok_rate * 0.95).clamp((0.5 * rps).max(1.0), rps.max(1.0))
                } else if rate >= 0.8 * rps {
                    // Not refused while the pace binds: up. Until a pace is
                    // refused the level may be far below the limit (found
                    // from a short window): twice as fast each window.
                    rps * if near { 1.05 } else { 2.0 }
                } else {
                    rps
                };
                if over >= NOT_A_LIMIT {
                    // Cut after cut did not lower the faults: noise.
                    self.base = Some(share);
                    self.state = State::Open;
                    r.pace = Some(None);
                } else {
                    self.state = State::Limited {
                        rps: next,
                        near: near || over_now,
                        over,
                    };
                    r.pace = Some(Some(next));
                }
            }
        }
        if r.pace.is_some() || r.pause.is_some() {
            let pause = r.pause.unwrap_or_default().as_millis() as u64;
            self.settle_until_ms = now_ms + pause + 100;
        }
        Some(r)
    }

    fn restart(&mut self, now_ms: u64, answers: u64) {
        self.start_ms = now_ms;
        self.answers0 = answers;
        self.faults = [0; Fault::KINDS];
        self.pushback = 0;
        self.longest = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` attempts over `ms`, a share `p` of them faults of kind `f`
    /// (spread evenly), and closes the window.
    fn window(j: &mut Judge, t: &mut u64, ok: &mut u64, n: u64, p: f64, f: Fault) -> Ruling {
        let faults = (n as f64 * p).round() as u64;
        // past any settling of the ruling before
        *t += 1200;
        j.restart(*t, *ok);
        for _ in 0..faults {
            let _ = j.fault(f, Some(Duration::from_secs(1)), *t);
        }
        *ok += n - faults;
        *t += 600;
        j.close(*t, *ok).expect("ripe")
    }

    #[test]
    fn random_faults_are_noise_and_cost_one_trial() {
        let (mut j, mut t, mut ok) = (Judge::new(0, 0), 0, 0);
        let r = window(&mut j, &mut t, &mut ok, 1000, 0.25, Fault::Reset);
        assert!(matches!(r.pace, Some(Some(_))), "a trial: {r:?}");
        assert_eq!(j.verdict(), Verdict::Trial);
        let r = window(&mut j, &mut t, &mut ok, 500, 0.26, Fault::Reset);
        assert_eq!(r.pace, Some(None), "no pace once it is noise");
        assert!(matches!(j.verdict(), Verdict::Noise(s) if (0.24..0.27).contains(&s)));
        // The same share again and again: no more trials.
        for _ in 0..50 {
            let r = window(&mut j, &mut t, &mut ok, 1000, 0.27, Fault::Reset);
            assert_eq!(r.pace, None, "{:?}", j.verdict());
        }
        assert_eq!(j.totals[Fault::Reset as usize], 250 + 130 + 50 * 270);
    }

    #[test]
    fn faults_that_fall_with_the_rate_are_a_limit_found_in_one_window() {
        let (mut j, mut t, mut ok) = (Judge::new(0, 0), 0, 0);
        // 2000 attempts in 0.6 s, 1000 refused: 1667 ok/s got through.
        let r = window(&mut j, &mut t, &mut ok, 2000, 0.5, Fault::Pushback);
        assert!(r.pause.is_some() || r.pace.is_some());
        let r = window(&mut j, &mut t, &mut ok, 900, 0.01, Fault::Pushback);
        let Verdict::Limited(rps) = j.verdict() else {
            panic!("{:?}", j.verdict())
        };
        assert!((1500.0..1667.0).contains(&rps), "{rps}");
        assert!(matches!(r.say, Some(Said::Limit { .. })) && r.cut);
        // Without faults while the pace binds it creeps up; over the limit
        // it goes back to what got through.
        let r = window(&mut j, &mut t, &mut ok, 1000, 0.0, Fault::Pushback);
        assert!(matches!(r.pace, Some(Some(x)) if x > rps));
        let _ = window(&mut j, &mut t, &mut ok, 1100, 0.2, Fault::Pushback);
        let Verdict::Limited(after) = j.verdict() else {
            panic!()
        };
        assert!(after <= rps, "{after} <= {rps}");
        // At most halved a window: again over, and down to what got through.
        let _ = window(&mut j, &mut t, &mut ok, 1100, 0.2, Fault::Pushback);
        let Verdict::Limited(last) = j.verdict() else {
            panic!()
        };
        assert!((1300.0..1400.0).contains(&last), "{last}");
    }

    #[test]
    fn noise_taken_for_a_limit_by_chance_is_found_out() {
        let (mut j, mut t, mut ok) = (Judge::new(0, 0), 0, 0);
        let _ = window(&mut j, &mut t, &mut ok, 1000, 0.25, Fault::Reset);
        // A trial window that by chance saw few faults.
        let _ = window(&mut j, &mut t, &mut ok, 500, 0.02, Fault::Reset);
        assert!(matches!(j.verdict(), Verdict::Limited(_)));
        // The faults go on whatever the pace: called noise, pace lifted.
        let mut last = None;
        for _ in 0..NOT_A_LIMIT {
            last = Some(window(&mut j, &mut t, &mut ok, 400, 0.25, Fault::Reset));
        }
        assert_eq!(last.unwrap().pace, Some(None));
        assert!(matches!(j.verdict(), Verdict::Noise(s) if (0.2..0.3).contains(&s)));
        // ...and a real limiter's refusals, which stop once paced, stay a limit.
        let (mut j, mut t, mut ok) = (Judge::new(0, 0), 0, 0);
        let _ = window(&mut j, &mut t, &mut ok, 2000, 0.5, Fault::Pushback);
        let _ = window(&mut j, &mut t, &mut ok, 900, 0.01, Fault::Pushback);
        for p in [0.2, 0.0, 0.0, 0.2, 0.0, 0.2, 0.01] {
            let _ = window(&mut j, &mut t, &mut ok, 900, p, Fault::Pushback);
            assert!(matches!(j.verdict(), Verdict::Limited(_)), "{p}");
        }
    }

    #[test]
    fn a_long_retry_after_pauses_the_origin_and_is_said_once() {
        let mut j = Judge::new(0, 0);
        j.held = true; // past the first push-back's hold
        let r = j.fault(Fault::Pushback, Some(Duration::from_secs(30)), 0);
        assert_eq!(r.pause, Some(Duration::from_secs(30)));
        assert!(r.say.is_some());
        let r = j.fault(Fault::Pushback, Some(Duration::from_secs(30)), 0);
        assert_eq!(r.pause, Some(Duration::from_secs(30)));
        assert!(r.say.is_none(), "said once");
        let r = j.fault(Fault::Pushback, Some(Duration::from_secs(1)), 0);
        assert_eq!(r.pause, None, "a short wait is the request's own");
    }

    #[test]
    fn the_first_push_back_holds_the_origin_once() {
        let mut j = Judge::new(0, 0);
        let r = j.fault(Fault::Reset, None, 0);
        assert_eq!(r.pause, None, "not push-back");
        let r = j.fault(Fault::Pushback, Some(Duration::from_secs(1)), 0);
        assert_eq!(r.pause, Some(HOLD));
        let r = j.fault(Fault::Pushback, Some(Duration::from_secs(1)), 1);
        assert_eq!(r.pause, None, "once");
    }
}
