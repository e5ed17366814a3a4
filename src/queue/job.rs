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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Address, Queue, Status};
use crate::error::RunError;
use crate::journal::Flush;
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

    pub(super) fn lease_ms(&self) -> u64 {
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
    let mut q = Queue::connect(&qc.addr, qc.patience)?;
    let claimed = q.claim_source(source)?;
    if claimed != source {
        return Err(RunError::Queue(format!(
            "the job {} is of {claimed}, not {source}",
            qc.addr.shown
        )));
    }
    let st = q.status()?;
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
                let mut q = Queue::connect(&qc.addr, qc.patience)?;
                let l = super::list::Lister {
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
                let mut f = super::feed::Feeder {
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
