//! Connections to one origin across every core of a run.
//!
//! Each core's [`super::ctl::Ctl`] sizes that core's share of an origin,
//! but a server's limit is on the whole client: 16 cores at 2 connections
//! each are 32 connections to a host that allows 8. So every connection
//! also passes its origin's [`Gate`]: a count of the connections open on
//! all cores, and a ceiling that push-back (429/503) halves, at most once
//! per [`CUT_EVERY`], down to one connection. The ceiling then rises by one
//! connection per [`RAISE_EVERY`] (additive increase: AIMD across the run),
//! and is lifted altogether once it passes `--max-per-host`. Connections
//! over the ceiling leave after the answers they are owed; a core refused
//! a connection is woken when another core closes one (and looks again on
//! its scheduler's tick, should that wake-up cross the refusal).
//!
//! A connection opens or closes rarely next to the files it carries, so the
//! lock here is taken per connection, never per file.
//!
//! The gate also holds the origin's [`Judge`] (push-back: noise or a limit)
//! and carries out its rulings: a pace (a shared next-send time, one atomic
//! per request and only while the origin is limited), a pause of the whole
//! origin, and the cut of its connections when a limit is found. The judge's
//! lock is taken per fault and once per window, never per answer that went
//! well (those reach it through `answers`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::judge::{Judge, Ruling, Verdict};
use crate::error::Fault;
use crate::fetch::url::OwnedKey;

/// Push-back halves the ceiling at most this often.
pub const CUT_EVERY: Duration = Duration::from_secs(1);
/// The ceiling rises by one connection this often without push-back.
pub const RAISE_EVERY: Duration = Duration::from_secs(1);

const NONE: u32 = u32::MAX;
/// A core holding fewer entries than this takes input whatever the others
/// hold (a quarter of a second at the most one core lands).
pub const BALANCED_FROM: usize = 4096;
/// Past [`BALANCED_FROM`], how many more entries than the core holding
/// least a core may hold and still take input.
pub const BALANCE: usize = 512;

/// One origin's connections on all cores.
pub struct Gate {
    open: AtomicU32,
    /// Connections that have chosen to leave (over the ceiling).
    leaving: AtomicU32,
    /// The ceiling set by the last cut ([`NONE`]: no ceiling).
    cap0: AtomicU32,
    /// When the last cut was, in ms since the run began.
    cut_ms: AtomicU64,
    /// Cores refused a connection, to wake when one closes.
    waiting: Mutex<Vec<u32>>,
    /// Answers from the origin on all cores, added a few at a time
    /// ([`super::ctl::Ctl::answered`]): a core judges a change of its
    /// connections by what the origin does in all, not by its own share.
    pub answers: AtomicU64,
    judge: Mutex<Judge>,
    /// When the judge's window may next be ripe (ms since the run began).
    due_ms: AtomicU64,
    /// While limited: ns between sends (0: no pace), and the next send's time.
    pace_iv_ns: AtomicU64,
    pace_next_ns: AtomicU64,
    /// The whole origin waits until then (ms since the run began).
    pause_until_ms: AtomicU64,
    /// Its faults are noise (under half of attempts): retries do not back
    /// off further at each attempt.
    noise: std::sync::atomic::AtomicBool,
    /// A fault has been seen: the judge watches the origin's answers (until
    /// then an answer costs one load here, no clock).
    watched: std::sync::atomic::AtomicBool,
    /// A drain of the origin's queue, to measure its latency floor
    /// ([`Gates::floor_probe`]): until then (ms since the run began) lanes
    /// send nothing but probes.
    drain_until_ms: AtomicU64,
    /// No drain starts before then.
    drain_next_ms: AtomicU64,
    /// Drains started so far; the least latency of the last one's probes.
    drain_seq: AtomicU64,
    drain_min_ns: AtomicU64,
    /// Probes in flight (one per lane, at most one per core).
    probes: AtomicU32,
}

impl Gate {
    /// The origin's faults were judged noise.
    pub fn noise(&self) -> bool {
        self.noise.load(Relaxed)
    }
}

/// What a lane may do while its origin drains ([`Gates::drain`]).
#[derive(Debug, PartialEq)]
pub enum Drain {
    /// Send as usual.
    Open,
    /// Send one request, a probe of the latency floor.
    Probe,
    /// Send nothing; look again after this long.
    Wait(Duration),
}

/// An origin drains to measure its latency floor at most this often.
pub const DRAIN_EVERY: Duration = Duration::from_secs(5);
/// Up to this much of unused pace may be sent at once.
const PACE_BURST: Duration = Duration::from_millis(5);
/// How often a core looks whether the judge's window is ripe.
const LOOK_EVERY_MS: u64 = 50;

/// The gates of a run, and a wake-up per core.
pub struct Gates {
    map: Mutex<HashMap<OwnedKey, Arc<Gate>>>,
    wakes: Vec<Notify>,
    /// Each core's frontier as it last looked (entries held), for
    /// [`Gates::may_take`].
    held: Vec<AtomicUsize>,
    t0: Instant,
    /// `--max-per-host`: connections to one origin on all cores (each
    /// core's share is rounded up); a ceiling past it is lifted.
    per_host: u32,
}

impl Gates {
    pub fn new(cores: usize, per_host: u32) -> Gates {
        Gates {
            map: Mutex::new(HashMap::new()),
            wakes: (0..cores).map(|_| Notify::new()).collect(),
            held: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            t0: Instant::now(),
            per_host,
        }
    }

    /// Core `id`'s wake-up (its scheduler waits on it).
    pub fn wake(&self, id: usize) -> &Notify {
        &self.wakes[id]
    }

    /// Whether core `id`, holding `held` entries, may take more input
    /// now (and its count is published for the others). Past
    /// [`BALANCED_FROM`] it takes input only while it holds no more than
    /// [`BALANCE`] entries above the core that holds least. Otherwise the
    /// core that reads fastest takes most of a short run, and at its end
    /// one core works alone through its backlog while the other idles
    /// (measured: the last 0.3 s of a 1 s run, 20 000 files from a server
    /// that needs 5 ms a request).
    pub fn may_take(&self, id: usize, held: usize) -> bool {
        self.held[id].store(held, Relaxed);
        if held < BALANCED_FROM {
            return true;
        }
        let least = (self.held.iter().enumerate())
            .filter(|&(i, _)| i != id)
            .map(|(_, h)| h.load(Relaxed))
            .min();
        least.is_none_or(|l| held <= l + BALANCE)
    }

    /// The origin's gate, shared by every core that holds work for it.
    pub fn get(&self, key: &OwnedKey) -> Arc<Gate> {
        let mut m = self.map.lock().expect("gates");
        m.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Gate {
                    open: AtomicU32::new(0),
                    leaving: AtomicU32::new(0),
                    cap0: AtomicU32::new(NONE),
                    cut_ms: AtomicU64::new(0),
                    waiting: Mutex::new(Vec::new()),
                    answers: AtomicU64::new(0),
                    judge: Mutex::new(Judge::new(self.now_ms(), 0)),
                    due_ms: AtomicU64::new(0),
                    pace_iv_ns: AtomicU64::new(0),
                    pace_next_ns: AtomicU64::new(0),
                    pause_until_ms: AtomicU64::new(0),
                    noise: Default::default(),
                    watched: Default::default(),
                    drain_until_ms: AtomicU64::new(0),
                    drain_next_ms: AtomicU64::new(0),
                    drain_seq: AtomicU64::new(0),
                    drain_min_ns: AtomicU64::new(u64::MAX),
                    probes: AtomicU32::new(0),
                })
            })
            .clone()
    }

    /// A core is done with the origin: forget its gate once no core holds
    /// it and it has no ceiling (a ceiling is the server's, and stays).
    pub fn put(&self, key: &OwnedKey, g: Arc<Gate>) {
        let mut m = self.map.lock().expect("gates");
        // Cores clone only under this lock, so the count cannot rise here.
        // An origin that has had faults is kept: what its judge learned,
        // its pace and its pause are the server's (an origin idle through a
        // pause would otherwise come back with none of them).
        if Arc::strong_count(&g) == 2 && self.cap(&g) == NONE && !g.watched.load(Relaxed) {
            m.remove(key);
        }
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// The ceiling now: the last cut's, plus what it has risen since.
    pub fn cap(&self, g: &Gate) -> u32 {
        if g.cap0.load(Relaxed) == NONE {
            return NONE; // no clock read on the common path
        }
        self.cap_at(g, self.now_ms())
    }

    fn cap_at(&self, g: &Gate, now: u64) -> u32 {
        let c0 = g.cap0.load(Relaxed);
        if c0 == NONE {
            return NONE;
        }
        let since = now.saturating_sub(g.cut_ms.load(Relaxed));
        let c = c0.saturating_add((since / RAISE_EVERY.as_millis() as u64) as u32);
        if c > self.per_host {
            // Risen past any limit of ours: lifted (a race here only
            // lifts it a little early or late).
            let _ = g.cap0.compare_exchange(c0, NONE, Relaxed, Relaxed);
            return NONE;
        }
        c
    }

    /// Opens a connection for core `id` if the ceiling allows; if not, the
    /// core is woken when one closes.
    pub fn try_open(&self, g: &Gate, id: usize) -> bool {
        let cap = self.cap(g).min(self.per_host);
        let mut n = g.open.load(Relaxed);
        while n < cap {
            match g.open.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(m) => n = m,
            }
        }
        let mut w = g.waiting.lock().expect("gate");
        if !w.contains(&(id as u32)) {
            w.push(id as u32);
        }
        false
    }

    /// A connection closed (`left`: it chose to, being over the ceiling).
    pub fn close(&self, g: &Gate, left: bool) {
        g.open.fetch_sub(1, Relaxed);
        if left {
            g.leaving.fetch_sub(1, Relaxed);
        }
        let w = std::mem::take(&mut *g.waiting.lock().expect("gate"));
        for id in w {
            self.wakes[id as usize].notify_one();
        }
    }

    /// True when the calling connection should leave: the origin has more
    /// open than its ceiling, not counting those already leaving. The
    /// caller then leaves and passes `left` to [`Gates::close`].
    pub fn over(&self, g: &Gate) -> bool {
        let cap = self.cap(g);
        if cap == NONE {
            return false;
        }
        let open = g.open.load(Relaxed);
        let mut l = g.leaving.load(Relaxed);
        while open.saturating_sub(l) > cap {
            match g.leaving.compare_exchange_weak(l, l + 1, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(m) => l = m,
            }
        }
        false
    }

    /// An attempt to the origin failed with fault `f`: counted, and ruled on
    /// if that closes the judge's window.
    pub fn fault(&self, g: &Gate, f: Fault, retry_after: Option<Duration>) -> Ruling {
        let now = self.now_ms();
        g.watched.store(true, Relaxed);
        let mut j = g.judge.lock().expect("judge");
        let mut r = j.fault(f, retry_after, now);
        if let Some(w) = j.close(now, g.answers.load(Relaxed)) {
            r = Ruling {
                pause: r.pause.max(w.pause),
                say: r.say.or(w.say),
                ..w
            };
        }
        let v = j.verdict();
        drop(j);
        self.carry_out(g, &r, now, v);
        r
    }

    /// An answer came from the origin (at `now`): once the origin has had
    /// faults, every [`LOOK_EVERY_MS`] the judge's window is looked at, and
    /// ruled on once ripe.
    pub fn tick(&self, g: &Gate, now: Instant) -> Option<Ruling> {
        if !g.watched.load(Relaxed) {
            return None;
        }
        let ms = now.saturating_duration_since(self.t0).as_millis() as u64;
        let due = g.due_ms.load(Relaxed);
        if ms < due
            || g.due_ms
                .compare_exchange(due, ms + LOOK_EVERY_MS, Relaxed, Relaxed)
                .is_err()
        {
            return None;
        }
        let mut j = g.judge.lock().expect("judge");
        let r = j.close(ms, g.answers.load(Relaxed))?;
        let v = j.verdict();
        drop(j);
        self.carry_out(g, &r, ms, v);
        Some(r)
    }

    fn carry_out(&self, g: &Gate, r: &Ruling, now_ms: u64, v: Verdict) {
        g.noise
            .store(matches!(v, Verdict::Noise(s) if s < 0.5), Relaxed);
        // `BULKGET_TRACE_JUDGE=1`: every ruling on stderr (for tuning).
        static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let acts = r.pace.is_some() || r.pause.is_some() || r.cut || r.say.is_some();
        if acts && *TRACE.get_or_init(|| std::env::var_os("BULKGET_TRACE_JUDGE").is_some()) {
            eprintln!(
                "judge {:.3}s: {r:?} -> {v:?} answers {}",
                now_ms as f64 / 1000.0,
                g.answers.load(Relaxed)
            );
        }
        if let Some(pace) = r.pace {
            let iv = pace.map_or(0, |rps| (1e9 / rps.max(0.1)) as u64);
            g.pace_iv_ns.store(iv, Relaxed);
        }
        if let Some(p) = r.pause {
            g.pause_until_ms
                .fetch_max(now_ms + p.as_millis() as u64, Relaxed);
        }
        if r.cut {
            self.cut(g);
        }
    }

    /// How long a request to the origin must wait for its turn, if it is
    /// paced; `None`: send it now (and the turn is taken).
    pub fn pace(&self, g: &Gate) -> Option<Duration> {
        let iv = g.pace_iv_ns.load(Relaxed);
        if iv == 0 {
            return None;
        }
        let now = self.t0.elapsed().as_nanos() as u64;
        let floor = now.saturating_sub((PACE_BURST.as_nanos() as u64).max(iv));
        let mut next = g.pace_next_ns.load(Relaxed);
        loop {
            let at = next.max(floor);
            if at > now {
                return Some(Duration::from_nanos(at - now));
            }
            match g
                .pace_next_ns
                .compare_exchange_weak(next, at + iv, Relaxed, Relaxed)
            {
                Ok(_) => return None,
                Err(n) => next = n,
            }
        }
    }

    /// The origin's latency floor, measured in a drain. A controller's floor
    /// is the least latency it saw lately; when requests always queue at
    /// the server (more in flight than it serves at once), even the least
    /// includes the queue, and once the old floor ages out the queue would
    /// become the floor and look normal (measured: s3rver, ~1 ms a request,
    /// held at ~400 requests in flight with a "floor" of 200 ms). So, as
    /// BBR's ProbeRTT does, the origin drains: for `dur` no lane sends,
    /// save one probe request at a time per core on a lane with nothing in
    /// flight, and the probes' least latency is the floor. Drains are
    /// shared by the origin's cores (each core's controller adopts the
    /// last one's result, `seen` remembering which it has had) and at most
    /// one per [`DRAIN_EVERY`]. Some(floor) once a drain this core has not
    /// yet seen is over; None while one runs or was just started.
    pub fn floor_probe(&self, g: &Gate, seen: &mut u64, dur: Duration) -> Option<Duration> {
        let now = self.now_ms();
        let seq = g.drain_seq.load(Relaxed);
        if seq != *seen && now >= g.drain_until_ms.load(Relaxed) {
            *seen = seq;
            let m = g.drain_min_ns.load(Relaxed);
            if m != u64::MAX {
                return Some(Duration::from_nanos(m));
            }
        }
        let next = g.drain_next_ms.load(Relaxed);
        if now >= next
            && g.drain_next_ms
                .compare_exchange(next, now + DRAIN_EVERY.as_millis() as u64, Relaxed, Relaxed)
                .is_ok()
        {
            g.drain_min_ns.store(u64::MAX, Relaxed);
            g.drain_until_ms
                .store(now + dur.as_millis() as u64, Relaxed);
            g.drain_seq.fetch_add(1, Relaxed);
        }
        None
    }

    /// Whether a lane may send now (one load per request while the origin
    /// does not drain; 0 in `drain_until_ms` once a drain is over). While it drains, a lane with nothing in flight
    /// (`idle`) may send one probe if a slot is free (one per core); it
    /// holds the slot until [`Gates::probe_answered`].
    pub fn drain(&self, g: &Gate, idle: bool) -> Drain {
        let until = g.drain_until_ms.load(Relaxed);
        if until == 0 {
            return Drain::Open;
        }
        let now = self.now_ms();
        if now >= until {
            // Over: back to one load per request, no clock.
            let _ = g
                .drain_until_ms
                .compare_exchange(until, 0, Relaxed, Relaxed);
            return Drain::Open;
        }
        let slots = self.wakes.len() as u32;
        if idle
            && g.probes
                .fetch_update(Relaxed, Relaxed, |p| (p < slots).then_some(p + 1))
                .is_ok()
        {
            return Drain::Probe;
        }
        Drain::Wait(Duration::from_millis((until - now).min(5)))
    }

    /// A probe's answer came after `lat` (or none came: `None`); its slot
    /// is free.
    pub fn probe_answered(&self, g: &Gate, lat: Option<Duration>) {
        g.probes.fetch_sub(1, Relaxed);
        if let Some(lat) = lat {
            g.drain_min_ns.fetch_min(lat.as_nanos() as u64, Relaxed);
        }
    }

    /// How long the whole origin still waits, if it is paused (one load
    /// per request while it is not: 0 in `pause_until_ms` once a pause is
    /// over).
    pub fn pause_left(&self, g: &Gate) -> Option<Duration> {
        let until = g.pause_until_ms.load(Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.now_ms();
        if now >= until {
            let _ = g
                .pause_until_ms
                .compare_exchange(until, 0, Relaxed, Relaxed);
            return None;
        }
        Some(Duration::from_millis(until - now))
    }

    /// What the judge concluded, and the faults by kind so far.
    pub fn verdict(&self, g: &Gate) -> (Verdict, [u64; Fault::KINDS]) {
        let j = g.judge.lock().expect("judge");
        (j.verdict(), j.totals)
    }

    /// Halve the origin's connections on all cores, at most once per
    /// [`CUT_EVERY`].
    pub fn cut(&self, g: &Gate) {
        self.cut_at(g, self.now_ms())
    }

    fn cut_at(&self, g: &Gate, now: u64) {
        let last = g.cut_ms.load(Relaxed);
        let cap = self.cap_at(g, now);
        if cap != NONE && now.saturating_sub(last) < CUT_EVERY.as_millis() as u64 {
            return;
        }
        if g.cut_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            return; // another core cut just now
        }
        let open = g.open.load(Relaxed).saturating_sub(g.leaving.load(Relaxed));
        g.cap0.store((open.min(cap) / 2).max(1), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OwnedKey {
        OwnedKey {
            tls: false,
            authority: "h:1".into(),
        }
    }

    #[test]
    fn pushback_halves_the_whole_origin_down_to_one() {
        let gs = Gates::new(4, 256);
        let g = gs.get(&key());
        for id in 0..4 {
            for _ in 0..4 {
                assert!(gs.try_open(&g, id), "no ceiling before push-back");
            }
        }
        gs.cut_at(&g, 10_000);
        assert_eq!(gs.cap_at(&g, 10_000), 8);
        // Eight of the sixteen are over: eight leave, no more.
        let over = (0..16).filter(|_| gs.over(&g)).count();
        assert_eq!(over, 8);
        for _ in 0..8 {
            gs.close(&g, true);
        }
        assert!(!gs.try_open(&g, 3), "at the ceiling");
        // A second push-back at once changes nothing; a later one halves.
        gs.cut_at(&g, 10_500);
        assert_eq!(gs.cap_at(&g, 10_500), 8);
        gs.cut_at(&g, 11_100);
        assert_eq!(gs.cap_at(&g, 11_100), 4);
        // Without push-back it rises by one a second, then is lifted.
        assert_eq!(gs.cap_at(&g, 13_600), 6);
        assert_eq!(gs.cap_at(&g, 11_100 + 300_000), NONE);
        assert!(!gs.over(&g));
    }

    #[test]
    fn a_refused_core_is_woken_when_a_connection_closes() {
        let gs = Gates::new(2, 256);
        let g = gs.get(&key());
        assert!(gs.try_open(&g, 0));
        assert!(gs.try_open(&g, 0));
        gs.cut(&g);
        assert_eq!(gs.cap(&g), 1);
        assert!(gs.over(&g));
        assert!(!gs.over(&g), "one leaves, not both");
        assert!(!gs.try_open(&g, 1));
        gs.close(&g, true);
        // The wake-up was stored for core 1.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), gs.wake(1).notified())
                .await
                .expect("woken");
        });
        assert!(!gs.try_open(&g, 1), "still one open, ceiling one");
        gs.close(&g, false);
        assert!(gs.try_open(&g, 1));
    }

    #[test]
    fn an_origin_without_a_ceiling_is_forgotten_with_its_last_holder() {
        let gs = Gates::new(1, 4);
        let g = gs.get(&key());
        gs.put(&key(), g);
        assert!(gs.map.lock().unwrap().is_empty());
        let g = gs.get(&key());
        assert!(gs.try_open(&g, 0));
        gs.cut(&g);
        gs.put(&key(), g);
        assert_eq!(gs.map.lock().unwrap().len(), 1, "a ceiling stays");
    }
}
