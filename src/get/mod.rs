//! `bulkget get`: download URLs given on the command line or in a list.
//!
//! ```text
//!  list reader ──Vec<Job> batches──▶ bounded channel ──▶ C worker tasks on per-core runtimes
//!  (streamed line by line;                                 each: one keep-alive connection,
//!   bad lines → ledger)                                    first GET asks Range 0..split-size
//!                                                           ├─ 200, or 206 with everything ─▶ sink (O_TMPFILE + link)
//!                                                           └─ 206 of a larger file ─▶ split: up to N Range
//!                                                              connections, pwrite into DEST/.bulkget/parts
//! ```
//! Memory is flat in the list's length: nothing remembers past lines. Two
//! lines with one output name collide: a file that came to stand under its
//! name after this run started is an error, never overwritten; one that stood
//! there before is skipped as already downloaded (that is what a rerun needs).

mod feed;
pub mod input;
mod shared;
mod split;
mod store_feed;

pub use feed::Feeder;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::ctx::RunCtx;
use crate::error::{FetchError, RunError};
use crate::fetch::http1::Head;
use crate::fetch::net::{Net, NetConfig};
use crate::fetch::url::OriginKey;
use crate::fetch::{Conn, RetryPolicy, land};
use crate::journal::{self, Ledger};
use crate::pipeline::{self, Admit, Batch, Landed, Limits, Plan, Shared};
use crate::progress::{Counters, Display, Outcome, Reporter};
use crate::sink::{DirSink, NullFile, NullSink, Sink, SinkFile, TarSink};
use input::Job;

#[derive(Clone, Debug)]
pub struct GetConfig {
    /// URLs from the command line.
    pub urls: Vec<String>,
    /// A list file (`-` = standard input).
    pub list: Option<PathBuf>,
    pub dest: PathBuf,
    /// Ceilings for the connections the run finds it needs.
    pub limits: Limits,
    /// Connections for one large file.
    pub split: usize,
    /// Files larger than this are split; also the chunk size.
    pub split_size: u64,
    /// Connections: timeouts, TLS, proxies, HTTP/2.
    pub net: NetConfig,
    pub max_redirs: u32,
    pub policy: RetryPolicy,
    pub display: Display,
    pub threads: usize,
    pub state_dir: Option<PathBuf>,
    /// `sha256=HEX` for a single command-line URL.
    pub checksum: Option<String>,
    /// Keep nothing: fetch, check lengths (and checksums) and count.
    pub null_sink: bool,
    /// `--sink tar`: files go to tar shards in DEST rolling over at this
    /// size (nothing is split; a shard entry is written whole).
    pub tar_shard: Option<u64>,
    /// Every object under an object-store path instead of URLs.
    pub store: Option<crate::store::Location>,
    /// How to reach object stores (for `store` and `s3://` URLs).
    pub store_opts: crate::store::StoreOpts,
    /// Whether what is reported as landed survives a power cut.
    pub durability: journal::Durability,
    /// A URL list shared with other processes through Redis (`--queue`).
    pub queue: Option<crate::queue::job::QueueConfig>,
}

/// Connections for one large file, and the size past which a file is
/// split into chunks of that size (`--split`, `--split-size`).
pub const DEFAULT_SPLIT: usize = 4;
pub const DEFAULT_SPLIT_SIZE: u64 = 8 << 20;

impl GetConfig {
    pub fn new(dest: &Path) -> GetConfig {
        GetConfig {
            urls: Vec::new(),
            list: None,
            dest: dest.to_path_buf(),
            limits: Limits::default(),
            split: DEFAULT_SPLIT,
            split_size: DEFAULT_SPLIT_SIZE,
            net: NetConfig::default(),
            max_redirs: 10,
            policy: RetryPolicy::default(),
            display: Display::Auto,
            threads: 0,
            state_dir: None,
            durability: journal::Durability::Sync,
            queue: None,
            checksum: None,
            null_sink: false,
            tar_shard: None,
            store: None,
            store_opts: Default::default(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| journal::default_state_dir(&self.dest))
    }
}

/// The get part of the hot loop: each job its own URL and host; the first
/// GET asks for the first `split_size` bytes, which tells whether the file is
/// small (landed whole) or large (handed to [`split`]).
pub struct GetPlan {
    pub sink: DirSink,
    /// `--sink tar`: files land in tar shards instead of `sink`.
    tar: Option<TarSink>,
    /// `--sink null`: bodies are read and dropped, nothing is split.
    null: bool,
    /// DEST held files when the run started: stat each name first.
    check_existing: bool,
    /// The last run did not end cleanly: a file it left after this time
    /// (its inode's change time; the last sync) counts as there only when
    /// the listing gives its size and the size matches; any other is
    /// removed and fetched again.
    trust_before: Option<SystemTime>,
    /// Sidecars of interrupted large downloads may exist.
    parts_exist: bool,
    pub parts_dir: PathBuf,
    pub split: usize,
    pub split_size: u64,
    started: SystemTime,
    /// Where entries of a slow host are set aside (a URL list's run).
    aside: Option<PathBuf>,
    /// The store a listing's objects come from, which signs each GET as it
    /// is sent ([`crate::job::Object::sign`]).
    pub(crate) store: Option<Arc<crate::store::Store>>,
    /// A job shared with other processes (`--queue`): a file already
    /// under its name was landed by this job (another worker, a page done
    /// twice) or before it, and counts as landed; one of a page taken over
    /// that landed after the page was enqueued is fetched again.
    shared: bool,
    /// A shared store job's location: its pages hold object records.
    shared_store: Option<shared::SharedStore>,
}

/// The path a job signed by a header is sent to: its URL's without the
/// presigned query (`None`: the job goes by its URL as it is).
fn signed_path(job: &Job) -> Option<&str> {
    if !job.object.as_ref().is_some_and(|o| o.sign) {
        return None;
    }
    let path = job.target().path;
    Some(path.split('?').next().unwrap_or(path))
}

impl GetPlan {
    /// The last byte the first request asks for, if it asks for a range.
    fn probe_end(&self, job: &Job) -> Option<u64> {
        if self.parts_exist && split::has_sidecar(&self.parts_dir, &job.name) {
            Some(0) // resuming: the answer's validators are what matters
        } else if job.size().is_some_and(|n| n <= self.split_size)
            || job.md5().is_some()
            || job.crc32c().is_some()
        {
            None // listed small (or empty, where a range would get a 416), or summed whole
        } else if self.split > 1 {
            Some(self.split_size - 1)
        } else {
            None
        }
    }

    /// The whole file in this answer: land it, checking the sha256 if asked.
    async fn whole(&self, c: &mut Conn, head: &Head, job: &Job) -> Result<u64, (FetchError, bool)> {
        let keep = land::reusable(head);
        let mut h = job.sha256.map(|_| Sha256::new());
        let mut m5 = job.md5().map(|_| md5::Md5::new());
        let mut crc = job.crc32c().map(|_| 0u32);
        let seen = |piece: &[u8]| {
            if let Some(c) = crc.as_mut() {
                *c = crc32c::crc32c_append(*c, piece);
            }
            if let Some(h) = h.as_mut() {
                Digest::update(h, piece);
            }
            if let Some(m) = m5.as_mut() {
                Digest::update(m, piece);
            }
        };
        let (f, got) = if self.null {
            let (f, got) = land::receive(c, head, &NullSink, &job.name, seen).await?;
            (Either::Null(f), got)
        } else if let Some(tar) = &self.tar {
            let (f, got) = land::receive(c, head, tar, &job.name, seen).await?;
            (Either::Tar(f), got)
        } else {
            let (f, got) = land::receive(c, head, &self.sink, &job.name, seen).await?;
            (Either::Dir(f), got)
        };
        if let Some(listed) = job.size().filter(|&s| s != got) {
            return Err((FetchError::SizeMismatch { listed, got }, keep));
        }
        if let (Some(want), Some(h)) = (job.sha256, h) {
            let got: [u8; 32] = h.finalize().into();
            if got != want {
                return Err((
                    FetchError::Checksum {
                        algo: "sha256",
                        want: crate::units::hex(&want),
                        got: crate::units::hex(&got),
                    },
                    keep,
                ));
            }
        }
        if let (Some(want), Some(got)) = (job.crc32c(), crc)
            && got != want
        {
            let (want, got) = (format!("{want:08x}"), format!("{got:08x}"));
            return Err((
                FetchError::Checksum {
                    algo: "crc32c",
                    want,
                    got,
                },
                keep,
            ));
        }
        if let (Some(want), Some(m)) = (job.md5(), m5) {
            let got: [u8; 16] = m.finalize().into();
            if got != want {
                let (want, got) = (crate::units::hex(&want), crate::units::hex(&got));
                let algo = "md5 (the ETag)";
                return Err((FetchError::Checksum { algo, want, got }, keep));
            }
        }
        let committed = match f {
            Either::Dir(f) => f.commit(),
            Either::Null(f) => f.commit(),
            Either::Tar(f) => f.commit(),
        };
        self.committed(committed).map_err(|e| (e, keep))?;
        Ok(got)
    }
}

enum Either<D, T> {
    Dir(D),
    Null(NullFile),
    Tar(T),
}

impl GetPlan {
    /// A file that appeared under the name during this run is a collision;
    /// in a shared job it landed by another worker of the job.
    fn committed(&self, r: io::Result<()>) -> Result<(), FetchError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.shared => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(FetchError::Collision),
            Err(e) => Err(FetchError::Sink(e)),
        }
    }
}

impl Plan for GetPlan {
    type Entry = Job;

    fn aside_dir(&self) -> Option<&Path> {
        self.aside.as_deref()
    }

    fn encode(&self, e: &Job, out: &mut Vec<u8>) {
        serde_json::to_writer(out, e).expect("a job is plain data");
    }

    fn decode(&self, line: &[u8]) -> Option<Job> {
        serde_json::from_slice(line).ok()
    }

    fn name<'e>(&self, e: &'e Job) -> &'e str {
        &e.name
    }

    fn url(&self, e: &Job) -> String {
        e.shown().to_string()
    }

    fn admit(&self, job: &Job, recheck: Option<std::time::SystemTime>) -> Admit {
        if self.shared && !self.null && self.tar.is_none() {
            return match self.sink.landed_at(&job.name) {
                None => Admit::Fetch,
                Some(t) if recheck.is_some_and(|r| t >= r) => match self.sink.remove(&job.name) {
                    Ok(()) => Admit::Fetch,
                    Err(e) => Admit::Fail(FetchError::Sink(e)),
                },
                Some(_) => Admit::Skip,
            };
        }
        if !self.check_existing || self.null {
            return Admit::Fetch; // a name that appears meanwhile fails at commit (no replace)
        }
        match self.sink.landed_at(&job.name) {
            None => Admit::Fetch,
            Some(t) if t < self.started && self.trust_before.is_some_and(|b| t >= b) => {
                let len = self.sink.len(&job.name);
                if job.size().is_some_and(|n| len == Some(n)) {
                    Admit::Skip
                } else {
                    match self.sink.remove(&job.name) {
                        Ok(()) => Admit::Fetch,
                        Err(e) => Admit::Fail(FetchError::Sink(e)),
                    }
                }
            }
            Some(t) if t < self.started => Admit::Skip,
            Some(_) => Admit::Fail(FetchError::Collision),
        }
    }

    fn origin<'e>(&'e self, e: &'e Job) -> OriginKey<'e> {
        e.target().origin_key()
    }

    fn path(&self, out: &mut Vec<u8>, job: &Job) {
        let t = job.target();
        match signed_path(job) {
            Some(path) => crate::fetch::url::Url { path, ..t }.push_path(out),
            None => t.push_path(out),
        }
    }

    fn headers(&self, job: &Job) -> Option<String> {
        self.store.as_ref()?.sign_get(signed_path(job)?)
    }

    fn range(&self, job: &Job) -> Option<(u64, u64)> {
        self.probe_end(job).map(|end| (0, end))
    }

    async fn answer(
        &self,
        sh: &Arc<Shared<Self>>,
        c: &mut Conn,
        head: &Head,
        job: &Job,
        at: Option<&str>,
        handed: &mut JoinSet<()>,
    ) -> Result<(Landed, bool), (FetchError, bool)> {
        let keep = land::reusable(head);
        let probe_end = self.probe_end(job);
        let resuming = probe_end == Some(0) && self.split_size > 1;
        match head.status {
            200 => {
                let n = self.whole(c, head, job).await?;
                if resuming {
                    split::forget(&self.parts_dir, &job.name); // the server stopped doing ranges
                }
                Ok((Landed::Bytes(n), keep))
            }
            // All of it, whatever was asked: a small file, or a store that
            // answers a range with the whole object (s3rver does for
            // `bytes=0-0`). Taken as one stream, as a 200 is.
            206 if head
                .content_range
                .is_some_and(|(a, b, t)| a == 0 && t == Some(b + 1)) =>
            {
                let n = self.whole(c, head, job).await?;
                if resuming {
                    split::forget(&self.parts_dir, &job.name);
                }
                Ok((Landed::Bytes(n), keep))
            }
            206 => {
                let at = at.unwrap_or(&job.url);
                let alive =
                    split::Split::prepare(sh, job, at, c, head, probe_end.unwrap_or(0), handed)
                        .await?;
                Ok((Landed::Handed, keep && alive))
            }
            416 if probe_end.is_some() && head.unsatisfied_size == Some(0) => {
                // An empty file has no byte 0: land it empty.
                let _ = land::refuse(c, head).await;
                let f = self
                    .sink
                    .create(&job.name)
                    .map_err(|e| (FetchError::Sink(e), keep))?;
                self.committed(f.commit()).map_err(|e| (e, keep))?;
                Ok((Landed::Bytes(0), keep))
            }
            _ => Err(land::refuse(c, head).await),
        }
    }
}

/// The closing paragraph of a get run.
pub fn summary(out: &Outcome, cfg: &GetConfig) -> String {
    let s = out.summary(
        "Fetched",
        "Inputs",
        "",
        &cfg.dest,
        &cfg.state_dir().join("failures.jsonl"),
    );
    s + &crate::queue::job::summary(out, cfg.queue.as_ref())
}

/// DEST as a directory, and its tar shards with `--sink tar`.
fn sinks(cfg: &GetConfig) -> Result<(DirSink, Option<TarSink>), RunError> {
    let sink = DirSink::new(&cfg.dest).map_err(|e| dest_err(&cfg.dest, e))?;
    let tar = match cfg.tar_shard {
        Some(shard) if !cfg.null_sink => {
            Some(TarSink::new(&cfg.dest, shard).map_err(|e| dest_err(&cfg.dest, e))?)
        }
        _ => None,
    };
    Ok((sink, tar))
}

/// What makes the run's writes durable (nothing with `--sink null`).
fn flush(cfg: &GetConfig, state_dir: &Path) -> Result<journal::Flush, RunError> {
    let durability = if cfg.null_sink {
        journal::Durability::None
    } else {
        cfg.durability
    };
    journal::Flush::new(durability, &[cfg.dest.as_path(), state_dir])
        .map_err(|e| dest_err(&cfg.dest, e))
}

fn dest_err(p: &Path, e: io::Error) -> RunError {
    RunError::Dest {
        path: p.display().to_string(),
        source: e,
    }
}

pub fn run(cfg: &GetConfig, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    if let Some(qc) = &cfg.queue {
        return shared::run_with(cfg, qc, stop);
    }
    let started = Instant::now();
    let net = Net::new(cfg.net.clone())?;
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let (sink, tar) = sinks(cfg)?;
    // Whole files only (a tar entry is written in one piece), and no
    // names to look up (shards keep no index: the journal says where to
    // go on from).
    let whole_only = cfg.null_sink || tar.is_some();
    if cfg.checksum.is_some() && (cfg.urls.len() != 1 || cfg.list.is_some()) {
        return Err(RunError::Other(
            "--checksum goes with exactly one URL (use a third list column for lists)".into(),
        ));
    }
    let list = cfg.list.as_deref().map(input::open_list).transpose()?;
    let store = match &cfg.store {
        Some(loc) => Some((
            Arc::new(crate::store::from_env(loc, &cfg.store_opts)?),
            loc.clone(),
        )),
        None => None,
    };
    // An object-store listing resumes from the journal's cursor.
    let mut prev_journal = None;
    let tracker = match &cfg.store {
        Some(loc) => {
            let url = loc.to_string();
            let prev = journal::load(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
            let (start, done) = prev
                .as_ref()
                .and_then(|j| j.resume(&url))
                .unwrap_or((None, 0));
            prev_journal = prev;
            Some((journal::Tracker::new(&url, start.clone(), done), start))
        }
        None => None,
    };
    let start = tracker.as_ref().and_then(|(_, s)| s.clone());
    // The ledger tells this run's failures: a rerun reads its whole input
    // again, so last run's list is kept aside, not added to — unless this
    // run resumes a listing, which will not list those inputs again.
    let ledger = state_dir.join("failures.jsonl");
    let carried = if start.is_none() {
        if ledger.exists() {
            let _ = std::fs::rename(&ledger, state_dir.join("failures.previous.jsonl"));
        }
        0
    } else {
        // Those failures are this job's: counted in its summary and exit.
        std::fs::read(&ledger).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
    };
    let (mark, unclean) =
        journal::RunMark::begin(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let flush = Arc::new(flush(cfg, &state_dir)?);
    let (tx, rx) = async_channel::bounded::<Batch<Job>>(64);
    let counters = Arc::new(Counters::default());
    counters.failed.store(carried, Ordering::Relaxed);
    let quiet = cfg.display == Display::Quiet;
    let parts_dir = cfg.dest.join(".bulkget").join("parts");
    // Entries a killed run set aside: this run reads its input again.
    let aside_dir = state_dir.join("aside");
    let _ = std::fs::remove_dir_all(&aside_dir);
    let nonempty = std::fs::read_dir(&cfg.dest)
        .map_err(|e| dest_err(&cfg.dest, e))?
        .flatten()
        .any(|e| e.file_name() != ".bulkget");
    let sh = Arc::new(Shared {
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::new(&state_dir),
            counters.clone(),
            cfg.policy.clone(),
            stop,
            quiet,
        ),
        plan: GetPlan {
            sink: sink.no_replace(),
            tar,
            null: cfg.null_sink,
            check_existing: nonempty && !whole_only,
            trust_before: journal::trust_before(unclean, prev_journal.as_ref()),
            parts_exist: !whole_only && parts_dir.exists(),
            parts_dir,
            split: if whole_only { 1 } else { cfg.split.max(1) },
            split_size: cfg.split_size.max(1),
            started: journal::coarse_now(),
            aside: cfg.store.is_none().then(|| aside_dir.clone()),
            store: store.as_ref().map(|(s, _)| s.clone()),
            shared: false,
            shared_store: None,
        },
        rx,
        tracker: tracker.map(|(t, _)| t),
        limits: cfg.limits,
    });
    let reporter = Reporter::start(counters.clone(), started, cfg.display);
    let reader = {
        let sh = sh.clone();
        let urls = cfg.urls.clone();
        let checksum = cfg.checksum.clone();
        let signer = crate::store::Signer::new(cfg.store_opts.clone());
        let md5 = cfg.store_opts.checksum;
        let job = move || match store {
            Some((store, loc)) => store_feed::feed(&sh, &store, &loc, start, md5, tx),
            None => feed::read_jobs(&sh, urls, checksum, list, signer, tx),
        };
        std::thread::Builder::new()
            .name("bulkget-list".into())
            .spawn(job)
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    let keeper = sh.tracker.is_some().then(|| {
        let sh = sh.clone();
        journal::Keeper::start(state_dir.clone(), flush.clone(), move || {
            sh.tracker.as_ref().expect("tracked").state()
        })
    });
    // Per-core runtimes, each driving its share of the connections; then
    // the input closes, so a feeder still waiting to send stops.
    pipeline::run_workers(&sh, cfg.threads).map_err(|e| RunError::Other(e.to_string()))?;
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(RunError::Other("the list reader panicked".into())));
    if let Some(k) = keeper {
        k.stop();
    }
    let mut state = sh.tracker.as_ref().map(|t| t.state());
    journal::finish(&flush, &state_dir, &cfg.dest, state.as_mut(), mark);
    drop(reporter);
    let error = match (sh.ctx.take_fatal(), read) {
        (Some(why), _) => Some(RunError::DiskFull(why)),
        (None, Err(e)) => Some(e),
        (None, Ok(complete)) => (!complete && !sh.ctx.stopping())
            .then(|| RunError::Other("the list could not be read to its end".into())),
    };
    let interrupted = error.is_none() && sh.ctx.stopping();
    let mut stats = counters.stats(started.elapsed());
    stats.syncs = flush.calls();
    Ok(Outcome {
        stats,
        error,
        interrupted,
        journal_complete: !interrupted,
        job: None,
    })
}
