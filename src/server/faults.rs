//! Fault injection for testing clients: seeded, so a run with the same
//! request order sees the same faults. Request `k` (counted over the whole
//! server) draws one number from `splitmix64(seed, k)` and falls in at most one
//! of the fault bands, in this order: 503, 429, 500, reset, truncate, slow.
//!
//! Besides those random faults, two limits that depend on load, as real
//! servers have them: a rate limiter (`429` above R requests a second) and a
//! concurrency limit (`503` to a request that finds K already in progress).
//! `max_faults` bounds the faults one name meets, as the flaky
//! proxy did ("every file gets through within three attempts").

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::synthetic::splitmix64;

/// The faults a server injects into `/get` answers.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fraction of `/get` answered `503 Service Unavailable` with `Retry-After`.
    pub fail_503: f64,
    /// Fraction of `/get` answered `429 Too Many Requests` with `Retry-After`.
    pub fail_429: f64,
    /// Fraction of `/get` answered `500 Internal Server Error` (no `Retry-After`).
    pub fail_500: f64,
    /// Fraction of `/get` whose connection is reset (RST) halfway through the body.
    pub reset: f64,
    /// Fraction of `/get` whose body stops halfway, short of `Content-Length`, then the connection closes.
    pub truncate: f64,
    /// Fraction of `/get` answered only after a second.
    pub slow: f64,
    /// Seconds sent in `Retry-After`.
    pub retry_after: u64,
    /// Requests a second `/get` serves (a token bucket holding a twentieth
    /// of a second's worth); those above are answered `429` with
    /// `Retry-After: 1`. 0: no limit.
    pub limit_rps: f64,
    /// `/get` requests in progress at once (counted from their arrival, so
    /// `latency` makes them overlap); one more is answered `503` at once.
    /// 0: no limit.
    pub limit_inflight: u64,
    /// `/get` requests served at once, each busy for `latency` (0: any
    /// number): the rest wait their turn, as at a server with so many
    /// workers. It serves `workers / latency` a second, and what a client
    /// sends beyond that only queues.
    pub workers: u64,
    /// Every `/get` answered `503` with `Retry-After` for this long after
    /// the server starts (an outage).
    pub outage: Duration,
    /// Added before answering every request.
    pub latency: Duration,
    /// Bytes per second per connection (0 = unlimited).
    pub rate_limit: u64,
    /// Ignore `Range` and do not advertise `Accept-Ranges`.
    pub no_ranges: bool,
    /// A name meets at most this many of the random faults that fail an
    /// attempt; its next attempts are answered normally (0: no bound). A
    /// flaky server whose every file gets through within N + 1 attempts,
    /// so a test of retries does not fail on the rare file whose every
    /// attempt drew a fault.
    pub max_faults: u32,
    pub seed: u64,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Normal,
    Status503,
    Status429,
    Status500,
    Reset,
    Truncate,
    Slow,
}

/// Draws fates for successive requests.
pub struct Dice {
    faults: Faults,
    counter: AtomicU64,
    /// Faults met so far by each name (by hash), under `max_faults`.
    met: Mutex<HashMap<u64, u32>>,
}

impl Dice {
    pub fn new(faults: Faults) -> Dice {
        Dice {
            faults,
            counter: AtomicU64::new(0),
            met: Mutex::new(HashMap::new()),
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether any per-request fault is configured at all.
    pub fn any(&self) -> bool {
        let f = &self.faults;
        f.fail_503 + f.fail_429 + f.fail_500 + f.reset + f.truncate + f.slow > 0.0
    }

    /// The fate of a request for `name`.
    pub fn roll(&self, name: &str) -> Fate {
        let fate = self.draw();
        if self.faults.max_faults == 0 || matches!(fate, Fate::Normal | Fate::Slow) {
            return fate;
        }
        let key = name
            .bytes()
            .fold(0x9e37_79b9_7f4a_7c15, |h, b| splitmix64(h ^ u64::from(b)));
        let mut met = self.met.lock().unwrap_or_else(|e| e.into_inner());
        let n = met.entry(key).or_insert(0);
        if *n >= self.faults.max_faults {
            return Fate::Normal;
        }
        *n += 1;
        fate
    }

    fn draw(&self) -> Fate {
        if !self.any() {
            return Fate::Normal;
        }
        let k = self.counter.fetch_add(1, Ordering::Relaxed);
        let r = splitmix64(self.faults.seed ^ splitmix64(k)) >> 11;
        let u = r as f64 / (1u64 << 53) as f64;
        let f = &self.faults;
        let bands = [
            (f.fail_503, Fate::Status503),
            (f.fail_429, Fate::Status429),
            (f.fail_500, Fate::Status500),
            (f.reset, Fate::Reset),
            (f.truncate, Fate::Truncate),
            (f.slow, Fate::Slow),
        ];
        let mut edge = 0.0;
        for (p, fate) in bands {
            edge += p;
            if u < edge {
                return fate;
            }
        }
        Fate::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_roughly_honoured_and_reproducible() {
        let f = Faults {
            fail_503: 0.1,
            reset: 0.2,
            seed: 7,
            ..Faults::default()
        };
        let roll = |d: &Dice| (0..10_000).map(|_| d.roll("/get/a")).collect::<Vec<_>>();
        let a = roll(&Dice::new(f.clone()));
        assert_eq!(a, roll(&Dice::new(f)));
        let n503 = a.iter().filter(|x| **x == Fate::Status503).count();
        let nreset = a.iter().filter(|x| **x == Fate::Reset).count();
        assert!((800..1200).contains(&n503), "{n503}");
        assert!((1700..2300).contains(&nreset), "{nreset}");
        assert!(!a.contains(&Fate::Status429));
    }

    #[test]
    fn a_name_meets_at_most_max_faults() {
        let d = Dice::new(Faults {
            fail_500: 0.9,
            max_faults: 2,
            seed: 3,
            ..Faults::default()
        });
        for name in ["/get/a", "/get/b"] {
            let fates: Vec<_> = (0..10).map(|_| d.roll(name)).collect();
            let failed = fates.iter().filter(|f| **f == Fate::Status500).count();
            assert_eq!(failed, 2, "{name}: {fates:?}");
        }
    }
}
