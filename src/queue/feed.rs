//! A shared job's feeder ([`super::job::run`] starts one in every
//! process): takes pages (a silent worker's first) for the pipeline in
//! batches, renews those in hand, and acknowledges each once its files are
//! on stable storage; a heartbeat a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::job::{Entries, QueueConfig};
use super::{Page, Queue, Status, Worker};
use crate::error::{FetchError, RunError};
use crate::journal::{self, Failure, Flush};
use crate::pipeline::{Batch, Shared};
use crate::progress::Local;

/// A page in hand: its entry, how many names it holds, and those that
/// failed before they were fetched (a malformed list line).
struct InHand {
    id: String,
    names: u64,
    failed: Vec<Failure>,
}

/// What one process holds of the job.
#[derive(Default)]
struct Hand {
    /// Pages handed to the pipeline, by the tracker's number.
    pages: HashMap<u64, InHand>,
    /// Pages complete, with their failures, until synced and acknowledged.
    landed: Vec<(InHand, Vec<Failure>)>,
    /// The next page's number.
    seq: u64,
}

/// Takes pages for the pipeline and acknowledges them once landed.
pub(super) struct Feeder<'a, P: Entries> {
    pub q: Queue,
    pub sh: &'a Shared<P>,
    pub qc: &'a QueueConfig,
    pub flush: &'a Flush,
    /// DEST, as said in errors.
    pub dest: String,
    pub batch: usize,
    pub cap: usize,
    /// When pages of silent workers were last looked for.
    pub last_claim: Option<Instant>,
    pub stop: &'a AtomicBool,
    pub workers_done: &'a AtomicBool,
    /// Counts of the inputs it failed itself.
    pub local: Local,
}

/// Before a taken-over page's enqueue time, less this for clocks that
/// differ between machines, a file under its final name is trusted whole.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

impl<P: Entries> Feeder<'_, P> {
    /// Feeds and acknowledges pages until the job is done, the run stops,
    /// or Redis stays unreachable; the job's figures at the end.
    pub fn run(&mut self, tx: async_channel::Sender<Batch<P::Entry>>) -> Result<Status, RunError> {
        let r = self.feed(tx);
        let beat = self.beat(true);
        let _ = self.q.heartbeat(&beat);
        r
    }

    fn feed(&mut self, tx: async_channel::Sender<Batch<P::Entry>>) -> Result<Status, RunError> {
        let tracker = self.sh.tracker.as_ref().expect("a shared job tracks pages");
        let mut tx = Some(tx);
        let mut hand = Hand::default();
        let (mut last_sync, mut last_renew, mut last_beat, mut last_look) = (
            Instant::now(),
            Instant::now(),
            Instant::now(),
            None::<Instant>,
        );
        let mut rate = Rate::default();
        let mut last = None::<Status>;
        loop {
            for (s, fails) in tracker.take_finished() {
                if let Some(p) = hand.pages.remove(&s) {
                    hand.landed.push((p, fails));
                }
            }
            let workers_done = self.workers_done.load(Ordering::Relaxed);
            let halted = self.sh.ctx.stopping() || workers_done;
            // Acknowledged once on stable storage: a sync every
            // `ack_every`, or at once when nothing else is in hand.
            if !hand.landed.is_empty()
                && (last_sync.elapsed() >= self.qc.ack_every || hand.pages.is_empty() || halted)
            {
                last_sync = Instant::now();
                self.ack_landed(&mut hand)?;
            }
            if workers_done {
                // The pipeline ended (a full disk, or every page in hand
                // done after a stop): what is in hand stays pending, to
                // be taken over.
                return self.q.status().map_err(RunError::from);
            }
            if last_renew.elapsed() >= self.qc.lease / 3 && !hand.pages.is_empty() {
                last_renew = Instant::now();
                let ids: Vec<&str> = hand.pages.values().map(|p| p.id.as_str()).collect();
                // Pages taken over meanwhile (this process stalled past
                // the lease) are finished all the same: counted once.
                let _lost = self.q.renew(&self.qc.worker, &ids)?;
            }
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                rate.sample(self.landed_here());
                let mut w = self.beat(false);
                w.rate = rate.per_sec();
                self.q.heartbeat(&w)?;
            }
            if self.stop.load(Ordering::Relaxed) || halted {
                tx = None; // no more pages; those in hand are finished
            }
            let room = hand.pages.len() < self.cap;
            if let Some(sender) = tx.as_ref().filter(|t| t.is_empty() && room) {
                // Waits up to 50 ms for a page, so no sleep here.
                if !self.take_page(sender, &mut hand)?
                    && hand.pages.is_empty()
                    && hand.landed.is_empty()
                    && last_look.is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
                {
                    // Nothing to take and nothing in hand: is the job over?
                    last_look = Some(Instant::now());
                    let st = self.q.status()?;
                    if st.done() || st.error.is_some() {
                        tx = None;
                    }
                    last = Some(st);
                }
                continue;
            }
            if tx.is_none() && hand.pages.is_empty() && hand.landed.is_empty() {
                return match last.filter(|s| s.done() || s.error.is_some()) {
                    Some(st) => Ok(st),
                    None => self.q.status().map_err(RunError::from),
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Makes the pages landed durable, then acknowledges them.
    fn ack_landed(&mut self, hand: &mut Hand) -> Result<(), RunError> {
        self.flush.sync().map_err(|e| RunError::Dest {
            path: self.dest.clone(),
            source: e,
        })?;
        for (p, mut fails) in hand.landed.drain(..) {
            fails.extend(p.failed);
            let lines: Vec<String> = fails
                .iter()
                .map(|f| serde_json::to_string(f).expect("json"))
                .collect();
            let n = fails.len() as u64;
            self.q.ack(&p.id, p.names - n, n, &lines)?;
        }
        Ok(())
    }

    /// Takes the next page (a silent worker's first) and hands it to the
    /// pipeline in batches; false when there was none.
    fn take_page(
        &mut self,
        sender: &async_channel::Sender<Batch<P::Entry>>,
        hand: &mut Hand,
    ) -> Result<bool, RunError> {
        // A silent worker's pages are looked for four times a second, new
        // ones at every call: one round trip a page.
        let claim = self
            .last_claim
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250));
        if claim {
            self.last_claim = Some(Instant::now());
        }
        let Some(p) = self
            .q
            .next_page(&self.qc.worker, self.qc.lease_ms(), 50, claim)?
        else {
            return Ok(false);
        };
        if p.deliveries > self.qc.tries {
            self.bury(&p)?;
            return Ok(true);
        }
        let tracker = self.sh.tracker.as_ref().expect("a shared job tracks pages");
        // A page taken over: its files that landed after it was enqueued
        // may be torn (their worker may have lost power): fetched again.
        let recheck = (p.deliveries > 1)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(p.enqueued_ms()) - CLOCK_SLACK);
        let seq = hand.seq;
        hand.seq += 1;
        let n = p.names.len() as u64;
        let (mut entries, bad) = self.sh.plan.entries(p.names);
        let failed: Vec<Failure> = bad
            .into_iter()
            .map(|(name, why)| {
                let err = FetchError::Input(why);
                self.sh.ctx.give_up(&name, &name, &err, 0, &mut self.local)
            })
            .collect();
        self.local.publish(&self.sh.ctx.counters);
        let parts = entries.len().div_ceil(self.batch).max(1) as u32;
        tracker.page_listed(seq, None, parts, Some(String::new()));
        hand.pages.insert(
            seq,
            InHand {
                id: p.id,
                names: n,
                failed,
            },
        );
        loop {
            let rest = if entries.len() > self.batch {
                entries.split_off(self.batch)
            } else {
                Vec::new()
            };
            let b = Batch {
                page: Some(seq),
                entries,
                recheck,
            };
            if sender.send_blocking(b).is_err() || rest.is_empty() {
                return Ok(true);
            }
            entries = rest;
        }
    }

    /// Page `p` was delivered too often (its workers died on it each time):
    /// to the dead-letter stream, its files to the failure ledger.
    fn bury(&mut self, p: &Page) -> Result<(), RunError> {
        let why = format!(
            "its page was handed to a worker {} times and never finished (the workers died or stalled on it)",
            p.deliveries
        );
        let url = |n: &str| self.sh.plan.name_url(n);
        let line = |n: &str| {
            let f = Failure {
                name: n.to_string(),
                url: url(n),
                error: why.clone(),
                attempts: p.deliveries as u32,
            };
            serde_json::to_string(&f).expect("json")
        };
        if self.q.bury(p, &why, line)? {
            for n in &p.names {
                let f = Failure {
                    name: n.clone(),
                    url: url(n),
                    error: why.clone(),
                    attempts: p.deliveries as u32,
                };
                let _ = self.sh.ctx.ledger.record(&f);
            }
            if !self.sh.ctx.quiet {
                eprintln!(
                    "bulkget: page {} ({} files, from {:?}) went to the dead-letter stream: {why}",
                    p.id,
                    p.names.len(),
                    p.names.first().map_or("", String::as_str)
                );
            }
        }
        Ok(())
    }

    fn landed_here(&self) -> u64 {
        let c = &self.sh.ctx.counters;
        c.done.load(Ordering::Relaxed) + c.skipped.load(Ordering::Relaxed)
    }

    fn beat(&self, ended: bool) -> Worker {
        Worker {
            name: self.qc.worker.clone(),
            beat_ms: journal::epoch_ns(SystemTime::now()) / 1_000_000,
            landed: self.landed_here(),
            rate: 0.0,
            ended,
        }
    }
}

/// Files/s over the last minute, from one sample a second.
#[derive(Default)]
struct Rate {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Rate {
    fn sample(&mut self, n: u64) {
        let now = Instant::now();
        self.samples.push_back((now, n));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                (b - a) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
