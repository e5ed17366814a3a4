//! `bulkget mirror URL DEST`: download every file the server lists.
//!
//! ```text
//!  lister thread ──batches──▶ bounded channel ──▶ per-core runtimes, each with
//!  (GET /list pages)                              C/cores pipelined connections
//!        │ page_listed                                  │ land in sink, part_done
//!        ▼                                              ▼
//!     Tracker ◀───────────────────────────────────── workers
//!        │ every second
//!        ▼
//!  DEST/.bulkget/journal.json     failures ─▶ DEST/.bulkget/failures.jsonl
//! ```
//! Exit status: 0 every listed file is in DEST, 1 some failed (see the
//! ledger), 2 the run could not proceed, 130 interrupted.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::task::JoinSet;

use crate::ctx::RunCtx;
use crate::error::{FetchError, RunError};
use crate::fetch::http1::Head;
use crate::fetch::net::{Net, NetConfig};
use crate::fetch::url::OriginKey;
use crate::fetch::{Conn, Endpoint, RetryPolicy, land};
use crate::journal::{self, Ledger, Tracker};
use crate::listing::{Batch, Listed, Lister};
use crate::names;
use crate::pipeline::{self, Admit, Landed, Limits, Plan, Shared};
use crate::progress::{Counters, Display, Outcome, Reporter};
use crate::sink::{DirSink, NullSink, Sink, TarSink};

mod shared;
pub use crate::queue::job::QueueConfig;

/// Where the files go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    Dir,
    /// Tar shards in DEST, rolling over at the given size in bytes.
    Tar(u64),
    Null,
}

#[derive(Clone, Debug)]
pub struct MirrorConfig {
    pub url: String,
    pub dest: PathBuf,
    /// Ceilings for the connections the run finds it needs.
    pub limits: Limits,
    /// Connections: timeouts, TLS, proxies, HTTP/2.
    pub net: NetConfig,
    pub max_redirs: u32,
    pub policy: RetryPolicy,
    pub sink: SinkKind,
    pub display: Display,
    /// Runtimes (threads) for the connections; 0 = one per core.
    pub threads: usize,
    /// Names per batch handed to a worker.
    pub batch: usize,
    /// Journal and failure ledger (default `DEST/.bulkget`).
    pub state_dir: Option<PathBuf>,
    /// Whether what is reported as landed survives a power cut.
    pub durability: journal::Durability,
    /// A job shared with other processes through Redis (`--queue`).
    pub queue: Option<QueueConfig>,
}

impl MirrorConfig {
    pub fn new(url: &str, dest: &Path) -> MirrorConfig {
        MirrorConfig {
            url: url.trim_end_matches('/').to_string(),
            dest: dest.to_path_buf(),
            limits: Limits::default(),
            net: NetConfig::default(),
            max_redirs: 10,
            policy: RetryPolicy::default(),
            sink: SinkKind::Dir,
            display: Display::Auto,
            threads: 0,
            durability: journal::Durability::Sync,
            batch: 500,
            state_dir: None,
            queue: None,
        }
    }

    /// Where the journal and the failure ledger live.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| journal::default_state_dir(&self.dest))
    }
}

/// The closing paragraph of a mirror run.
pub fn summary(out: &Outcome, cfg: &MirrorConfig) -> String {
    let source = format!("from {}", cfg.url);
    let ledger = cfg.state_dir().join("failures.jsonl");
    let s = out.summary("Mirrored", "Listed", &source, &cfg.dest, &ledger);
    s + &crate::queue::job::summary(out, cfg.queue.as_ref())
}

/// The mirror's part of the hot loop: names from the listing, all from one
/// server, `GET {base}/get/{name}` each, landed whole.
pub struct MirrorPlan<S: Sink> {
    pub sink: S,
    pub ep: Endpoint,
    /// Stat each name first and skip those present (a rerun, a non-empty DEST).
    pub skip_existing: bool,
    /// After an unclean stop: only a file that landed before this time
    /// (its inode's change time) is known to be whole; later ones, maybe
    /// empty or torn by a power cut, are fetched again.
    pub trust_before: Option<std::time::SystemTime>,
}

impl<S: Sink> Plan for MirrorPlan<S> {
    type Entry = String;

    fn name<'e>(&self, e: &'e String) -> &'e str {
        e
    }

    fn url(&self, e: &String) -> String {
        let mut path = b"/get/".to_vec();
        names::push_url_path(&mut path, e);
        self.ep.url_of(&String::from_utf8_lossy(&path))
    }

    fn admit(&self, e: &String, recheck: Option<std::time::SystemTime>) -> Admit {
        if let Err(err) = names::check(e) {
            Admit::Fail(FetchError::Name(err))
        } else if (self.skip_existing || recheck.is_some())
            && match recheck.into_iter().chain(self.trust_before).min() {
                None => self.sink.exists(e),
                Some(t) => self.sink.landed_at(e).is_some_and(|c| c < t),
            }
        {
            Admit::Skip
        } else {
            Admit::Fetch
        }
    }

    fn origin<'e>(&'e self, _: &'e String) -> OriginKey<'e> {
        self.ep.key.borrow()
    }

    fn path(&self, o: &mut Vec<u8>, e: &String) {
        o.extend_from_slice(self.ep.base_path.as_bytes());
        o.extend_from_slice(b"/get/");
        names::push_url_path(o, e);
    }

    fn range(&self, _: &String) -> Option<(u64, u64)> {
        None
    }

    async fn answer(
        &self,
        _: &Arc<Shared<Self>>,
        c: &mut Conn,
        head: &Head,
        e: &String,
        _: Option<&str>,
        _: &mut JoinSet<()>,
    ) -> Result<(Landed, bool), (FetchError, bool)> {
        if head.status != 200 {
            return Err(land::refuse(c, head).await);
        }
        let n = land::land(c, head, &self.sink, e).await?;
        Ok((Landed::Bytes(n), land::reusable(head)))
    }
}

fn tracker_state<S: Sink>(sh: &Shared<MirrorPlan<S>>) -> journal::JournalState {
    sh.tracker.as_ref().expect("mirror tracks pages").state()
}

fn dest_err(dest: &Path, e: io::Error) -> RunError {
    RunError::Dest {
        path: dest.display().to_string(),
        source: e,
    }
}

/// Runs a mirror. `stop` turning true (Ctrl-C) stops listing and sending;
/// answers in flight are landed, the journal is saved.
pub fn run(cfg: &MirrorConfig, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    let ep = Endpoint::parse(&cfg.url)?;
    let net = Net::new(cfg.net.clone())?;
    std::fs::create_dir_all(&cfg.dest).map_err(|e| dest_err(&cfg.dest, e))?;
    let state = cfg.state_dir();
    std::fs::create_dir_all(&state).map_err(|e| dest_err(&state, e))?;
    match cfg.sink {
        SinkKind::Dir => {
            let sink = DirSink::new(&cfg.dest).map_err(|e| dest_err(&cfg.dest, e))?;
            run_with(cfg, ep, net, sink, stop)
        }
        SinkKind::Tar(shard) => {
            let sink = TarSink::new(&cfg.dest, shard).map_err(|e| dest_err(&cfg.dest, e))?;
            run_with(cfg, ep, net, sink, stop)
        }
        SinkKind::Null => run_with(cfg, ep, net, NullSink, stop),
    }
}

fn run_with<S: Sink>(
    cfg: &MirrorConfig,
    ep: Endpoint,
    net: Net,
    sink: S,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    if let Some(qc) = &cfg.queue {
        return shared::run_with(cfg, qc, ep, net, sink, stop);
    }
    let started = Instant::now();
    let dest = &cfg.dest;
    let state_dir = cfg.state_dir();
    let quiet = cfg.display == Display::Quiet;
    let prev = journal::load(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    if let Some(j) = prev.as_ref().filter(|j| j.url != cfg.url && !quiet) {
        eprintln!(
            "bulkget: {} was a mirror of {}; starting over for {}",
            dest.display(),
            j.url,
            cfg.url
        );
    }
    let (start, pages_done) = prev
        .as_ref()
        .and_then(|j| j.resume(&cfg.url))
        .unwrap_or((None, 0));

    let nonempty = std::fs::read_dir(dest)
        .map_err(|e| dest_err(dest, e))?
        .flatten()
        .any(|e| e.file_name() != ".bulkget");
    let skip_existing = sink.remembers() && (prev.is_some() || nonempty);
    if !sink.remembers()
        && prev
            .as_ref()
            .is_some_and(|j| j.url == cfg.url && j.complete)
    {
        // Nothing can tell which listed names are new: the snapshot stands.
        if !quiet {
            eprintln!(
                "bulkget: {} already holds a complete mirror of {}; this sink keeps no index of names, so it is not re-synced (use a new DEST for a new snapshot)",
                dest.display(),
                cfg.url
            );
        }
        return Ok(Outcome {
            stats: Counters::default().stats(started.elapsed()),
            error: None,
            interrupted: false,
            journal_complete: true,
            job: None,
        });
    }
    let (mark, unclean) =
        journal::RunMark::begin(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    // Killed or a power cut: files that landed after the last sync may be
    // empty or torn under their final names, so their presence proves
    // nothing; those before it were flushed.
    let finished = prev
        .as_ref()
        .is_some_and(|j| j.url == cfg.url && j.complete);
    let trust_before = journal::trust_before(unclean && !finished, prev.as_ref());
    if trust_before.is_some() && skip_existing && !quiet {
        eprintln!(
            "bulkget: the last run into {} did not end cleanly; files that landed after its last sync are fetched again",
            dest.display()
        );
    }
    let durability = if sink.writes() {
        cfg.durability
    } else {
        journal::Durability::None
    };
    let flush = Arc::new(
        journal::Flush::new(durability, &[dest.as_path(), state_dir.as_path()])
            .map_err(|e| dest_err(dest, e))?,
    );
    let retry_file =
        journal::take_failures_for_retry(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let (tx, rx) = async_channel::bounded::<Batch>(8);
    let counters = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        plan: MirrorPlan {
            sink,
            ep,
            skip_existing,
            trust_before,
        },
        tracker: Some(Tracker::new(&cfg.url, start.clone(), pages_done)),
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::new(&state_dir),
            counters.clone(),
            cfg.policy.clone(),
            stop.clone(),
            quiet,
        ),
        rx,
        limits: cfg.limits,
    });
    let reporter = Reporter::start(counters.clone(), started, cfg.display);

    // The lister, on a thread of its own.
    let lister = {
        let sh = sh.clone();
        let cfg = cfg.clone();
        let retry_file = retry_file.clone();
        std::thread::Builder::new()
            .name("bulkget-list".into())
            .spawn(move || -> Result<Listed, RunError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RunError::Other(e.to_string()))?;
                let l = Lister {
                    ep: &sh.plan.ep,
                    net: &sh.ctx.net,
                    policy: &cfg.policy,
                    batch: cfg.batch.max(1),
                    tx,
                    tracker: sh.tracker.as_ref().expect("mirror tracks pages"),
                    counters: &sh.ctx.counters,
                    stop: &sh.ctx.stop,
                    quiet,
                };
                rt.block_on(l.run(start, retry_file.as_deref()))
            })
            .map_err(|e| RunError::Other(e.to_string()))?
    };

    let keeper = {
        let sh = sh.clone();
        journal::Keeper::start(state_dir.clone(), flush.clone(), move || tracker_state(&sh))
    };

    // Per-core runtimes, each driving its share of the connections; then
    // the input closes, so a feeder still waiting to send stops.
    pipeline::run_workers(&sh, cfg.threads).map_err(|e| RunError::Other(e.to_string()))?;
    let listed = lister
        .join()
        .unwrap_or_else(|_| Err(RunError::Other("the lister panicked".into())));
    keeper.stop();
    let mut state = tracker_state(&sh);
    if journal::finish(&flush, &state_dir, dest, Some(&mut state), mark)
        && let (true, Some(r)) = (state.complete, &retry_file)
    {
        let _ = std::fs::remove_file(r);
    }
    drop(reporter);
    let fatal = sh.ctx.take_fatal();
    let error = match (fatal, listed) {
        (Some(why), _) => Some(RunError::DiskFull(why)),
        (None, Err(e)) => Some(e),
        (None, Ok(_)) => None,
    };
    let interrupted = error.is_none() && !state.complete;
    let mut stats = counters.stats(started.elapsed());
    stats.syncs = flush.calls();
    Ok(Outcome {
        stats,
        error,
        interrupted,
        journal_complete: state.complete,
        job: None,
    })
}

/// Turns SIGINT/SIGTERM into `stop = true`; a second signal exits at once (130).
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
            let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) else { return };
            for n in 0.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n == 0 {
                    eprintln!("\nbulkget: stopping: finishing files in flight and saving the journal (Ctrl-C again to quit at once)");
                    s.store(true, Ordering::Relaxed);
                } else {
                    std::process::exit(130);
                }
            }
        });
    });
    stop
}
