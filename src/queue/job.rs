//! A process' part of a job shared through Redis Streams (`--queue`), for
//! any command whose inputs come in pages: `mirror` (a list API's pages)
//! and `get -i LIST` (slices of a URL list). Every process runs the same
//! three parts:
//!
//! ```text
//!  lister thread: lease? ─▶ Source::page(CURSOR) ─▶ Lua enqueue (cursor moves with it)
//!       (one process at a time; paused while `ahead` pages wait)
//!  feeder thread: XAUTOCLAIM / XREADGROUP ─▶ Batch ─▶ pipeline (per-core runtimes)
//!       pages complete (Tracker) ─▶ syncfs ─▶ Lua ack (counts + failures, once per page)
//!       every lease/3: XCLAIM JUSTID (pages in hand stay ours); every 1 s: heartbeat
//! ```
//!
//! A page is acknowledged only once its files are on stable storage, so a
//! process killed anywhere, or a machine that loses power, costs its pages
//! in hand: another process takes them over when their lease lapses, and
//! fetches again every file of them that landed after the page was
//! enqueued (it may be torn) while keeping older ones. SIGTERM (and
//! Ctrl-C) stops taking pages; those in hand are finished and acknowledged.
//! Every process ends when the job is done (everything listed landed or
//! failed, wherever), with the job's exit status.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{Address, Enqueued, Page, Queue, QueueError, Status, Worker};
use crate::error::{FetchError, RunError};
use crate::journal::{self, Failure, Flush};
use crate::pipeline::{self, Batch, Plan, Shared};
use crate::progress::{Counters, Display, Local, Outcome, Reporter};

/// Where a shared job's inputs come from, a page at a time.
pub trait Source {
    /// The page after `cursor` (`None`: the first): its names and the
    /// next page's cursor (`None`: this was the last).
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError>;
    /// Where the listing is, for messages.
    fn shown(&self) -> String;
}

impl<T: Source + ?Sized> Source for Box<T> {
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError> {
        (**self).page(cursor)
    }

    fn shown(&self) -> String {
        (**self).shown()
    }
}

/// A plan whose entries come from a shared job's pages.
pub trait Entries: Plan {
    /// A page's names as entries; a name that cannot be one (a malformed
    /// list line) comes back with why, to fail with the page.
    fn entries(&self, names: Vec<String>) -> (Vec<Self::Entry>, Vec<(String, String)>);
    /// The URL a name stands for (a buried page's ledger lines).
    fn name_url(&self, name: &str) -> String;
}

/// How this process takes part in a shared job.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub addr: Address,
    /// This process' consumer name (default `HOSTNAME-PID`).
    pub worker: String,
    /// A page silent this long (its worker died or stopped) is taken over;
    /// the lister's lease too.
    pub lease: Duration,
    /// Deliveries of one page before it goes to the dead-letter stream.
    pub tries: u64,
    /// Pages waiting for a worker before the lister pauses (bounds what
    /// Redis holds).
    pub ahead: u64,
    /// Names per stream entry.
    pub page: usize,
    /// Pages one process holds at once (0: two per thread, at least 4; at
    /// 2 a process ran at 0.5–0.65× and at 4 at 0.8–1.1× of one without
    /// the queue): what a kill costs in files fetched again.
    pub in_hand: usize,
    /// How often pages landed are synced and acknowledged: a kill also
    /// costs the pages landed since.
    pub ack_every: Duration,
    /// How long Redis may stay unreachable before the run gives up (2).
    pub patience: Duration,
}

impl QueueConfig {
    pub fn new(addr: Address) -> QueueConfig {
        QueueConfig {
            addr,
            worker: default_worker(),
            lease: Duration::from_secs(10),
            tries: 5,
            ahead: 1024,
            page: 1000,
            // BULKGET_QUEUE_IN_HAND sets it for A/B runs.
            in_hand: std::env::var("BULKGET_QUEUE_IN_HAND")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            // BULKGET_QUEUE_ACK_MS likewise.
            ack_every: std::env::var("BULKGET_QUEUE_ACK_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_millis(250), Duration::from_millis),
            patience: Duration::from_secs(10),
        }
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis().max(1) as u64
    }
}

/// `HOSTNAME-PID` (a pod's name is its hostname).
pub fn default_worker() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer of its length.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..n]).into_owned()
    } else {
        "host".into()
    };
    format!("{host}-{}", std::process::id())
}

pub fn queue_err(e: QueueError) -> RunError {
    RunError::Queue(e.to_string())
}

/// What a process brings to a shared job besides its pipeline.
pub struct Part {
    /// DEST, as said in errors.
    pub dest: String,
    /// Makes DEST's writes durable before a page is acknowledged.
    pub flush: Flush,
    /// Threads of the pipeline (0: one per core).
    pub threads: usize,
    /// Largest batch handed to a core.
    pub batch: usize,
    pub display: Display,
}

/// Joins the job `qc` of `source` (the first process to come names it;
/// another source under the same name is refused): its queue, or this
/// process' outcome when the job is done already.
pub fn join(
    qc: &QueueConfig,
    source: &str,
    quiet: bool,
) -> Result<Result<Queue, Outcome>, RunError> {
    let started = Instant::now();
    let mut q = Queue::connect(&qc.addr, qc.patience).map_err(queue_err)?;
    let claimed = q.claim_source(source).map_err(queue_err)?;
    if claimed != source {
        return Err(RunError::Queue(format!(
            "the job {} is of {claimed}, not {source}",
            qc.addr.shown
        )));
    }
    let st = q.status().map_err(queue_err)?;
    if st.done() {
        if !quiet {
            eprintln!(
                "bulkget: the job {} is done already ({} landed, {} failed); `bulkget status {} --forget` starts it afresh",
                qc.addr.shown, st.landed, st.failed, qc.addr.shown
            );
        }
        return Ok(Err(ended(&Counters::default(), started, st, None, false)));
    }
    Ok(Ok(q))
}

/// Runs this process' part of the job `qc` with the pipeline of `sh` (its
/// tracker per page, its stop flag its own: set only when it cannot go
/// on), until the job is done, the job cannot go on, or `stop` (then the
/// pages in hand are finished first). `tx` feeds `sh.rx`; `source` makes
/// the listing's source on the lister's thread.
pub fn run<P, S>(
    q: Queue,
    sh: Arc<Shared<P>>,
    qc: &QueueConfig,
    part: Part,
    tx: async_channel::Sender<Batch<P::Entry>>,
    source: impl FnOnce() -> Result<S, RunError> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, RunError>
where
    P: Entries + Send + Sync + 'static,
    P::Entry: Send,
    S: Source,
{
    let started = Instant::now();
    let counters = sh.ctx.counters.clone();
    let reporter = Reporter::start(counters.clone(), started, part.display);
    let end = Arc::new(AtomicBool::new(false));
    let workers_done = Arc::new(AtomicBool::new(false));
    let lister = {
        let (qc, stop, end, counters) = (qc.clone(), stop.clone(), end.clone(), counters.clone());
        std::thread::Builder::new()
            .name("bulkget-list".into())
            .spawn(move || -> Result<(), RunError> {
                let mut q = Queue::connect(&qc.addr, qc.patience).map_err(queue_err)?;
                let l = Lister {
                    qc: &qc,
                    stop: &stop,
                    end: &end,
                    counters: &counters,
                };
                let r = source().and_then(|s| l.run(&mut q, s));
                if let Err(e) = &r {
                    let _ = q.set_error(&e.to_string());
                }
                let _ = q.release(&qc.worker);
                r
            })
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    let threads = match part.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let feeder = {
        let (sh, qc, stop, wd) = (sh.clone(), qc.clone(), stop.clone(), workers_done.clone());
        // A page goes to every core at once, in batches of at least 64.
        let batch = part.batch.min(qc.page.div_ceil(threads)).max(64);
        let (flush, dest) = (part.flush, part.dest);
        std::thread::Builder::new()
            .name("bulkget-feed".into())
            .spawn(move || {
                let mut f = Feeder {
                    q,
                    sh: &sh,
                    qc: &qc,
                    flush: &flush,
                    dest,
                    batch,
                    cap: if qc.in_hand > 0 {
                        qc.in_hand
                    } else {
                        (2 * threads).max(4)
                    },
                    last_claim: None,
                    stop: &stop,
                    workers_done: &wd,
                    local: Local::default(),
                };
                let r = f.run(tx);
                (r, flush.calls())
            })
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    let ran = pipeline::run_workers(&sh, part.threads);
    workers_done.store(true, Ordering::Relaxed);
    let (fed, syncs) = feeder
        .join()
        .unwrap_or_else(|_| (Err(RunError::Other("the feeder panicked".into())), 0));
    end.store(true, Ordering::Relaxed);
    let listed = lister
        .join()
        .unwrap_or_else(|_| Err(RunError::Other("the lister panicked".into())));
    drop(reporter);
    ran.map_err(|e| RunError::Other(e.to_string()))?;
    let fatal = sh.ctx.take_fatal().map(RunError::DiskFull);
    let (st, err) = match fed {
        Ok(st) => {
            let job_err = st.error.clone().map(|why| {
                RunError::Queue(format!("the job {} cannot go on: {why}", qc.addr.shown))
            });
            (Some(st), fatal.or(listed.err()).or(job_err))
        }
        Err(e) => (None, fatal.or(Some(e))),
    };
    let interrupted = err.is_none() && !st.as_ref().is_some_and(Status::done);
    let mut out = match st {
        Some(st) => ended(&counters, started, st, err, interrupted),
        None => Outcome {
            stats: counters.stats(started.elapsed()),
            error: err,
            interrupted,
            journal_complete: false,
            job: None,
        },
    };
    out.stats.syncs = syncs;
    Ok(out)
}

/// The sentence on the shared job that ends a command's summary (empty
/// for a run of its own).
pub fn summary(out: &Outcome, qc: Option<&QueueConfig>) -> String {
    let (Some(j), Some(q)) = (&out.job, qc) else {
        return String::new();
    };
    format!(
        "\nThe job {} {}: listed {}, landed {}, failed {}, {} pages queued{}.",
        q.addr.shown,
        if j.done() { "is done" } else { "goes on" },
        j.listed,
        j.landed,
        j.failed,
        j.queued,
        if j.failed > 0 {
            format!("; its failures: bulkget status {} --failures", q.addr.shown)
        } else {
            String::new()
        }
    )
}

/// The outcome of this process once the job is `st`.
fn ended(
    counters: &Counters,
    started: Instant,
    st: Status,
    error: Option<RunError>,
    interrupted: bool,
) -> Outcome {
    Outcome {
        stats: counters.stats(started.elapsed()),
        journal_complete: st.done(),
        error,
        interrupted,
        job: Some(st),
    }
}

/// Lists the source into the queue while this process holds the lease.
struct Lister<'a> {
    qc: &'a QueueConfig,
    stop: &'a AtomicBool,
    end: &'a AtomicBool,
    counters: &'a Counters,
}

impl Lister<'_> {
    fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.end.load(Ordering::Relaxed)
    }

    /// Waits `d`, or less once the run is over.
    fn nap(&self, d: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < d && !self.over() {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    /// While it holds the lease: one listing page and one Redis round trip
    /// (the enqueue, which renews the lease) a page; the queue's length
    /// is looked at every few pages.
    fn run(&self, q: &mut Queue, mut source: impl Source) -> Result<(), RunError> {
        let (me, lease_ms) = (self.qc.worker.as_str(), self.qc.lease_ms());
        // Where listing goes on, while this lister holds the lease.
        let mut cursor: Option<Option<String>> = None;
        let every = (self.qc.ahead / 8).clamp(1, 16);
        let mut since_look = u64::MAX;
        let mut cycle = crate::listing::Cycle::default();
        loop {
            if self.over() {
                return Ok(());
            }
            let Some(from) = cursor.clone() else {
                let (c, done) = q.cursor().map_err(queue_err)?;
                if done {
                    return Ok(());
                }
                if q.lease(me, lease_ms).map_err(queue_err)? {
                    cursor = Some(c);
                } else {
                    self.nap((self.qc.lease / 4).min(Duration::from_secs(1)));
                }
                continue;
            };
            if since_look >= every {
                let st = q.status().map_err(queue_err)?;
                if st.error.is_some() || st.listing_done {
                    return Ok(());
                }
                if st.waiting() >= self.qc.ahead {
                    // Enough waits in Redis: hold the lease, list later.
                    if !q.lease(me, lease_ms).map_err(queue_err)? {
                        cursor = None;
                    }
                    self.nap(Duration::from_millis(50));
                    continue;
                }
                since_look = 0;
            }
            let (names, next) = match source.page(from.as_deref()) {
                Ok(p) => p,
                Err(_) if self.over() => return Ok(()),
                Err(e) => return Err(e),
            };
            let next = next.filter(|m| !m.is_empty());
            if let Some(m) = &next
                && cycle.repeats(from.as_deref(), m)
            {
                return Err(RunError::ListLoop {
                    url: source.shown(),
                    marker: m.clone(),
                });
            }
            let chunks: Vec<&[String]> = names.chunks(self.qc.page.max(1)).collect();
            let r = q
                .enqueue(
                    me,
                    from.as_deref().unwrap_or(""),
                    &chunks,
                    next.as_deref(),
                    lease_ms,
                )
                .map_err(queue_err)?;
            match r {
                Enqueued::Done => {
                    self.counters
                        .listed
                        .fetch_add(names.len() as u64, Ordering::Relaxed);
                    if next.is_none() {
                        return Ok(());
                    }
                    cursor = Some(next);
                    since_look = since_look.saturating_add(1);
                }
                // Another lists now, or Redis lost its last writes: read
                // the cursor again.
                Enqueued::NotHolder | Enqueued::Moved => cursor = None,
            }
        }
    }
}

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
struct Feeder<'a, P: Entries> {
    q: Queue,
    sh: &'a Shared<P>,
    qc: &'a QueueConfig,
    flush: &'a Flush,
    /// DEST, as said in errors.
    dest: String,
    batch: usize,
    cap: usize,
    /// When pages of silent workers were last looked for.
    last_claim: Option<Instant>,
    stop: &'a AtomicBool,
    workers_done: &'a AtomicBool,
    /// Counts of the inputs it failed itself.
    local: Local,
}

/// Before a taken-over page's enqueue time, less this for clocks that
/// differ between machines, a file under its final name is trusted whole.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

impl<P: Entries> Feeder<'_, P> {
    /// Feeds and acknowledges pages until the job is done, the run stops,
    /// or Redis stays unreachable; the job's figures at the end.
    fn run(&mut self, tx: async_channel::Sender<Batch<P::Entry>>) -> Result<Status, RunError> {
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
                return self.q.status().map_err(queue_err);
            }
            if last_renew.elapsed() >= self.qc.lease / 3 && !hand.pages.is_empty() {
                last_renew = Instant::now();
                let ids: Vec<&str> = hand.pages.values().map(|p| p.id.as_str()).collect();
                // Pages taken over meanwhile (this process stalled past
                // the lease) are finished all the same: counted once.
                let _lost = self.q.renew(&self.qc.worker, &ids).map_err(queue_err)?;
            }
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                rate.sample(self.landed_here());
                let mut w = self.beat(false);
                w.rate = rate.per_sec();
                w.pages = hand.pages.len() as u64;
                self.q.heartbeat(&w).map_err(queue_err)?;
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
                    let st = self.q.status().map_err(queue_err)?;
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
                    None => self.q.status().map_err(queue_err),
                };
            }
            std::thread::sleep(Duration::from_millis(1));
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
            self.q
                .ack(&p.id, p.names - n, n, &lines)
                .map_err(queue_err)?;
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
            .next_page(&self.qc.worker, self.qc.lease_ms(), 50, claim)
            .map_err(queue_err)?
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
        if self.q.bury(p, &why, line).map_err(queue_err)? {
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
            pages: 0,
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
