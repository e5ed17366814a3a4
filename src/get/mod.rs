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

pub mod input;
mod split;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::ctx::RunCtx;
use crate::error::{FetchError, RunError};
use crate::fetch::http1::{Conn, Head};
use crate::fetch::{RetryPolicy, land, split_url};
use crate::journal::{self, Ledger};
use crate::progress::{Counters, Display, Local, Outcome, Reporter};
use crate::sink::{DirSink, Sink, SinkFile};
use input::Job;

#[derive(Clone, Debug)]
pub struct GetConfig {
    /// URLs from the command line.
    pub urls: Vec<String>,
    /// A list file (`-` = standard input).
    pub list: Option<PathBuf>,
    pub dest: PathBuf,
    pub connections: usize,
    /// Connections for one large file.
    pub split: usize,
    /// Files larger than this are split; also the chunk size.
    pub split_size: u64,
    pub timeout: Duration,
    pub policy: RetryPolicy,
    pub display: Display,
    pub threads: usize,
    pub state_dir: Option<PathBuf>,
    /// `sha256=HEX` for a single command-line URL.
    pub checksum: Option<String>,
}

impl GetConfig {
    pub fn new(dest: &Path) -> GetConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        GetConfig {
            urls: Vec::new(),
            list: None,
            dest: dest.to_path_buf(),
            connections: 8 * cores,
            split: 4,
            split_size: 8 << 20,
            timeout: Duration::from_secs(30),
            policy: RetryPolicy::default(),
            display: Display::Auto,
            threads: 0,
            state_dir: None,
            checksum: None,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| journal::default_state_dir(&self.dest))
    }
}

pub struct Shared {
    pub ctx: RunCtx,
    pub sink: DirSink,
    rx: async_channel::Receiver<Vec<Job>>,
    pub split: usize,
    pub split_size: u64,
    pub parts_dir: PathBuf,
    started: SystemTime,
}

/// The closing paragraph of a get run.
pub fn summary(out: &Outcome, cfg: &GetConfig) -> String {
    out.summary(
        "Fetched",
        "",
        &cfg.dest,
        &cfg.state_dir().join("failures.jsonl"),
    )
}

/// The clock file systems stamp inodes with (`CLOCK_REALTIME_COARSE`), so
/// that a file landed by this run never looks older than the run's start.
fn coarse_now() -> SystemTime {
    // SAFETY: timespec is plain old data, fully written on success.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return SystemTime::now();
    }
    std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn dest_err(p: &Path, e: io::Error) -> RunError {
    RunError::Dest {
        path: p.display().to_string(),
        source: e,
    }
}

pub fn run(cfg: &GetConfig, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let sink = DirSink::new(&cfg.dest).map_err(|e| dest_err(&cfg.dest, e))?;
    if cfg.checksum.is_some() && (cfg.urls.len() != 1 || cfg.list.is_some()) {
        return Err(RunError::Other(
            "--checksum goes with exactly one URL (use a third list column for lists)".into(),
        ));
    }
    let list: Option<Box<dyn BufRead + Send>> = match &cfg.list {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(BufReader::new(io::stdin()))),
        Some(p) => Some(Box::new(BufReader::new(File::open(p).map_err(|e| {
            RunError::Other(format!("cannot read the list {}: {e}", p.display()))
        })?))),
    };
    let connections = cfg.connections.max(1);
    let (tx, rx) = async_channel::bounded::<Vec<Job>>(2 * connections);
    let counters = Arc::new(Counters::default());
    let quiet = cfg.display == Display::Quiet;
    let sh = Arc::new(Shared {
        ctx: RunCtx::new(
            Ledger::new(&state_dir),
            counters.clone(),
            1,
            cfg.policy.clone(),
            cfg.timeout,
            stop,
            quiet,
        ),
        sink,
        rx,
        split: cfg.split.max(1),
        split_size: cfg.split_size.max(1),
        parts_dir: cfg.dest.join(".bulkget").join("parts"),
        started: coarse_now(),
    });
    let reporter = Reporter::start(counters.clone(), started, cfg.display);
    let reader = {
        let sh = sh.clone();
        let urls = cfg.urls.clone();
        let checksum = cfg.checksum.clone();
        std::thread::Builder::new()
            .name("bulkget-list".into())
            .spawn(move || read_jobs(&sh, urls, checksum, list, tx))
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    let w = sh.clone();
    crate::fetch::run_per_core(cfg.threads, connections, move |id| worker(w.clone(), id))
        .map_err(|e| RunError::Other(e.to_string()))?;
    sh.rx.close();
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(RunError::Other("the list reader panicked".into())));
    drop(reporter);
    let error = match (sh.ctx.take_fatal(), read) {
        (Some(why), _) => Some(RunError::DiskFull(why)),
        (None, Err(e)) => Some(e),
        (None, Ok(complete)) => (!complete && !sh.ctx.stopping())
            .then(|| RunError::Other("the list could not be read to its end".into())),
    };
    let interrupted = error.is_none() && sh.ctx.stopping();
    Ok(Outcome {
        stats: counters.stats(started.elapsed()),
        error,
        interrupted,
        journal_complete: !interrupted,
    })
}

/// Feeds jobs to the workers; bad lines go straight to the ledger. Ok(true)
/// when every input was passed on.
fn read_jobs(
    sh: &Shared,
    urls: Vec<String>,
    checksum: Option<String>,
    list: Option<Box<dyn BufRead + Send>>,
    tx: async_channel::Sender<Vec<Job>>,
) -> Result<bool, RunError> {
    const BATCH: usize = 64;
    let mut local = Local::default();
    let mut batch = Vec::with_capacity(BATCH);
    let send = |batch: &mut Vec<Job>| -> bool {
        let b = std::mem::replace(batch, Vec::with_capacity(BATCH));
        sh.ctx
            .counters
            .listed
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        tx.send_blocking(b).is_ok()
    };
    let bad = |what: String, text: &str, why: String, local: &mut Local| {
        sh.ctx
            .give_up(&what, text, &FetchError::Input(why), 0, local);
    };
    for u in &urls {
        match input::job(0, u, None, checksum.as_deref()) {
            Ok(j) => batch.push(j),
            Err(why) => bad(format!("URL {u}"), u, why, &mut local),
        }
    }
    let mut complete = true;
    if let Some(list) = list {
        for (i, line) in list.lines().enumerate() {
            let n = i as u64 + 1;
            if sh.ctx.stopping() {
                complete = false;
                break;
            }
            let line = match line {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    bad(format!("list line {n}"), "", "not UTF-8".into(), &mut local);
                    continue;
                }
                Err(e) => {
                    local.publish(&sh.ctx.counters);
                    return Err(RunError::Other(format!(
                        "reading the list at line {n}: {e}"
                    )));
                }
            };
            match input::parse_line(n, &line) {
                Ok(Some(j)) => batch.push(j),
                Ok(None) => {}
                Err(why) => bad(format!("list line {n}"), line.trim(), why, &mut local),
            }
            if batch.len() >= BATCH && !send(&mut batch) {
                complete = false;
                break;
            }
        }
    }
    if complete && !batch.is_empty() && !send(&mut batch) {
        complete = false;
    }
    local.publish(&sh.ctx.counters);
    Ok(complete)
}

async fn worker(sh: Arc<Shared>, id: u64) {
    let mut w = Worker {
        sh: sh.clone(),
        id,
        conn: None,
        addr: None,
        local: Local::default(),
    };
    while let Ok(batch) = sh.rx.recv().await {
        for job in &batch {
            if sh.ctx.stopping() {
                break;
            }
            w.job(job).await;
        }
        if sh.ctx.stopping() {
            break;
        }
    }
    w.local.publish(&sh.ctx.counters);
}

struct Worker {
    sh: Arc<Shared>,
    id: u64,
    /// The open connection and the `host:port` it goes to.
    conn: Option<(String, Conn)>,
    /// The last host resolved.
    addr: Option<(String, SocketAddr)>,
    local: Local,
}

impl Worker {
    async fn job(&mut self, job: &Job) {
        if let Some(t) = self.sh.sink.landed_at(&job.name) {
            if t < self.sh.started {
                self.local.skipped += 1;
                self.local.tick(&self.sh.ctx.counters);
            } else {
                self.sh.ctx.give_up(
                    &job.name,
                    &job.url,
                    &FetchError::Collision,
                    1,
                    &mut self.local,
                );
            }
            return;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(job).await {
                // bytes not yet counted (a split download counts its own as they come)
                Ok(bytes) => {
                    self.local.done += 1;
                    self.local.bytes += bytes;
                    self.local.tick(&self.sh.ctx.counters);
                    return;
                }
                Err(e) => {
                    if !e.keeps_connection() {
                        self.conn = None;
                    }
                    if self.sh.ctx.stopping() {
                        return; // abandoned; a rerun picks it up
                    }
                    let salt = self.id.wrapping_mul(0x9E37_79B9) ^ job.line;
                    match self.sh.ctx.retry_after(&e, attempts, salt, &mut self.local) {
                        Some(wait) => {
                            let wait =
                                wait.max(self.sh.ctx.throttle.pause_left().unwrap_or_default());
                            tokio::time::sleep(wait).await;
                        }
                        None => {
                            self.sh
                                .ctx
                                .give_up(&job.name, &job.url, &e, attempts, &mut self.local);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn resolve(&mut self, hostport: &str) -> Result<SocketAddr, FetchError> {
        if let Some((_, a)) = self.addr.as_ref().filter(|(h, _)| h == hostport) {
            return Ok(*a);
        }
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            && !hostport.ends_with(']')
        {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(FetchError::Connect)?
            .next()
            .ok_or_else(|| {
                FetchError::Connect(io::Error::new(
                    io::ErrorKind::NotFound,
                    "host resolves to no address",
                ))
            })?;
        self.addr = Some((hostport.to_string(), addr));
        Ok(addr)
    }

    /// A connection to `hostport`, reusing the open one when it goes there.
    async fn conn_to(&mut self, hostport: &str) -> Result<Conn, FetchError> {
        if let Some((_, c)) = self.conn.take().filter(|(h, _)| h == hostport) {
            return Ok(c);
        }
        let addr = self.resolve(hostport)?;
        Conn::connect(addr, self.sh.ctx.timeout).await
    }

    /// One try at `job`; Ok carries the bytes landed that are not counted yet.
    async fn attempt(&mut self, job: &Job) -> Result<u64, FetchError> {
        let (hostport, path) = split_url(&job.url).map_err(|e| FetchError::Input(e.to_string()))?;
        let path = if path.is_empty() { "/" } else { path };
        let mut c = self.conn_to(hostport).await?;
        let resume = split::has_sidecar(&self.sh.parts_dir, &job.name);
        let probe_end = if resume { 0 } else { self.sh.split_size - 1 };
        let ranged = self.sh.split > 1 || resume;
        let extra = if ranged {
            format!("Range: bytes=0-{probe_end}\r\n")
        } else {
            String::new()
        };
        c.queue_get(hostport, path.as_bytes(), &extra);
        c.flush().await?;
        let head = c.read_head().await?;
        match head.status {
            200 => {
                let r = self.whole(&mut c, &head, job).await;
                if resume && r.is_ok() {
                    let (part, side) = split::paths(&self.sh.parts_dir, &job.name);
                    let _ = std::fs::remove_file(part);
                    let _ = std::fs::remove_file(side);
                }
                self.keep(hostport, c, &head);
                r
            }
            206 if !resume
                && head
                    .content_range
                    .is_some_and(|(a, b, t)| a == 0 && Some(b + 1) == t) =>
            {
                let r = self.whole(&mut c, &head, job).await;
                self.keep(hostport, c, &head);
                r
            }
            206 => {
                let addr = self.resolve(hostport)?;
                let s = split::Split {
                    sh: &self.sh,
                    job,
                    addr,
                    host: hostport,
                    path,
                    probe_end,
                };
                s.run(c, &head, &mut self.local).await.map(|_| 0)
            }
            416 if ranged => {
                // An empty file has no byte 0: ask again without Range.
                let (_, keep) = land::refuse(&mut c, &head).await;
                if keep {
                    self.conn = Some((hostport.to_string(), c));
                }
                let mut c = self.conn_to(hostport).await?;
                c.queue_get(hostport, path.as_bytes(), "");
                c.flush().await?;
                let head = c.read_head().await?;
                if head.status != 200 {
                    return Err(land::refuse(&mut c, &head).await.0);
                }
                let r = self.whole(&mut c, &head, job).await;
                self.keep(hostport, c, &head);
                r
            }
            _ => {
                let (e, keep) = land::refuse(&mut c, &head).await;
                if keep {
                    self.conn = Some((hostport.to_string(), c));
                }
                Err(e)
            }
        }
    }

    fn keep(&mut self, hostport: &str, c: Conn, head: &Head) {
        if land::reusable(head) {
            self.conn = Some((hostport.to_string(), c));
        }
    }

    /// The whole file in this answer: land it, checking the sha256 if asked.
    async fn whole(&mut self, c: &mut Conn, head: &Head, job: &Job) -> Result<u64, FetchError> {
        let mut h = job.sha256.map(|_| Sha256::new());
        let (f, got) = land::receive(c, head, &self.sh.sink, &job.name, |piece| {
            if let Some(h) = h.as_mut() {
                Digest::update(h, piece);
            }
        })
        .await
        .map_err(|(e, _)| e)?;
        if let (Some(want), Some(h)) = (job.sha256, h) {
            let got: [u8; 32] = h.finalize().into();
            if got != want {
                return Err(FetchError::Checksum {
                    want: split::hex(&want),
                    got: split::hex(&got),
                });
            }
        }
        f.commit().map_err(FetchError::Sink)?;
        Ok(got)
    }
}
