//! `bulkget exists` and `bulkget stat`: whether many paths exist, and their
//! size, modification time and ETag, checked in parallel and answered in
//! input order.
//!
//! ```text
//!  paths (args, -i FILE) ─▶ feeder thread ── local: metadata() ────────────┐
//!    seq 0, 1, 2 …          │ waits for room in the window                   │
//!                           └─ http(s), s3 (presigned) ─Batch─▶ pipeline   │
//!                                 HEAD, pipelined, adaptive, redirects,      │
//!                                 retries (405/501: GET bytes=0-0 instead)   ▼
//!                                              answers ─▶ order::Window ─▶ stdout
//! ```
//!
//! Absent is an answer, not an error: 404 and 410 (and a missing local
//! file) print `false`. Failing to find out — a 403, a 5xx or timeout after
//! the retries, a bad URL — prints `PATH<TAB>error<TAB>reason`, a line on
//! stderr, a ledger record with `--failures`, and makes the exit status 1.

mod feed;
pub mod order;

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::ctx::RunCtx;
use crate::error::{FetchError, RunError};
use crate::fetch::http1::{Head, Method};
use crate::fetch::net::{Net, NetConfig};
use crate::fetch::url::{OriginKey, Url};
use crate::fetch::{Conn, RetryPolicy, land};
use crate::get::input::open_list;
use crate::journal::Ledger;
use crate::pipeline::{self, Admit, Batch, Landed, Limits, Plan, Shared};
use crate::progress::{Counters, Display, Reporter, Stats};
use crate::store::{Signer, StoreOpts};
use order::{Kind, Tally, Window};

/// What to print per path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `PATH<TAB>true|false`.
    Exists,
    /// `PATH<TAB>size<TAB>mtime<TAB>etag` (`-` where unknown), or
    /// `PATH<TAB>absent`.
    Stat,
}

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub mode: Mode,
    pub paths: Vec<String>,
    /// One path a line; `-` is standard input.
    pub list: Option<PathBuf>,
    /// One JSON object a line instead of tab-separated fields.
    pub json: bool,
    /// Also record each path that could not be checked here (JSON lines).
    pub failures: Option<PathBuf>,
    /// Write the answers here instead of standard output (a file, or a
    /// pipe as `/dev/fd/N`: the Python package reads them so).
    pub output: Option<PathBuf>,
    pub limits: Limits,
    pub net: NetConfig,
    pub max_redirs: u32,
    pub policy: RetryPolicy,
    pub display: Display,
    pub threads: usize,
    pub store_opts: StoreOpts,
    /// Inputs answered ahead of the oldest unanswered one, at most.
    pub window: u64,
}

impl ProbeConfig {
    pub fn new(mode: Mode) -> ProbeConfig {
        ProbeConfig {
            mode,
            paths: Vec::new(),
            list: None,
            output: None,
            json: false,
            failures: None,
            limits: Limits::default(),
            net: NetConfig::default(),
            max_redirs: 10,
            policy: RetryPolicy::default(),
            display: Display::Auto,
            threads: 0,
            store_opts: StoreOpts::default(),
            window: 1 << 16,
        }
    }
}

/// How a probe run ended.
#[derive(Debug)]
pub struct ProbeOutcome {
    pub tally: Tally,
    pub stats: Stats,
    pub error: Option<RunError>,
    pub interrupted: bool,
}

impl ProbeOutcome {
    /// 0: every path got an answer; 1: some could not be checked; 2: the run
    /// could not proceed; 130: interrupted.
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            2
        } else if self.interrupted {
            130
        } else if self.tally.errors > 0 {
            1
        } else {
            0
        }
    }

    pub fn summary(&self) -> String {
        let t = &self.tally;
        let secs = self.stats.seconds.max(1e-9);
        let n = t.present + t.absent + t.errors;
        format!(
            "{} {n} paths in {:.1} s ({:.0}/s): {} present, {} absent, {} could not be checked.",
            if self.interrupted {
                "Interrupted after"
            } else {
                "Checked"
            },
            secs,
            n as f64 / secs,
            t.present,
            t.absent,
            t.errors
        )
    }
}

/// One remote path to ask about.
pub struct Probe {
    seq: u64,
    /// As given (what is printed; the URL asked, unless `signed`).
    path: Box<str>,
    /// An `s3://` path's presigned `HEAD` URL.
    signed: Option<Box<str>>,
    /// Ask with `GET bytes=0-0`: the server refused `HEAD`.
    get: std::cell::Cell<bool>,
}

impl Probe {
    fn target(&self) -> Url<'_> {
        Url::parse(self.signed.as_deref().unwrap_or(&self.path))
            .expect("checked when the probe was made")
    }
}

pub struct ProbePlan {
    mode: Mode,
    json: bool,
    out: Arc<Window>,
    /// Origins that refused `HEAD` (405/501), with how often and whether
    /// one answered a `HEAD` since. One that refused [`NO_HEAD_AFTER`]
    /// times and answered none gets `GET bytes=0-0` for its other paths at
    /// once; one that answers `HEAD` elsewhere (a single location refusing
    /// it) keeps `HEAD`, with the fallback path by path.
    /// Keyed by a hash of the origin (no allocation per request; a
    /// collision only means `GET bytes=0-0`, which every server answers).
    no_head: std::sync::Mutex<std::collections::HashMap<u64, NoHead>>,
    /// Any origin refused: until then the per-request check is one load.
    any_no_head: std::sync::atomic::AtomicBool,
}

/// Refusals of `HEAD` before an origin's paths are all asked by `GET`.
const NO_HEAD_AFTER: u32 = 3;

/// One origin's record of `HEAD` refusals.
#[derive(Default)]
struct NoHead {
    refused: u32,
    answered: bool,
}

/// A hash of the probe's origin (scheme and authority).
fn origin_hash(e: &Probe) -> u64 {
    use std::hash::{Hash, Hasher};
    let u = e.target();
    let k = u.origin_key();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (k.tls, k.authority).hash(&mut h);
    h.finish()
}

/// What an answer says of a path.
#[derive(Default)]
struct Meta {
    size: Option<u64>,
    mtime: Option<String>,
    etag: Option<String>,
}

impl ProbePlan {
    /// Whether to ask for `e` with `GET bytes=0-0` rather than `HEAD`.
    fn by_get(&self, e: &Probe) -> bool {
        use std::sync::atomic::Ordering;
        if e.get.get() {
            return true;
        }
        if e.signed.is_some() || !self.any_no_head.load(Ordering::Relaxed) {
            return false;
        }
        let key = origin_hash(e);
        let refused = self.no_head.lock().is_ok_and(|m| {
            m.get(&key)
                .is_some_and(|n| n.refused >= NO_HEAD_AFTER && !n.answered)
        });
        e.get.set(refused);
        refused
    }

    /// Notes a `HEAD` answered (not refused) by `e`'s origin, once some
    /// origin has refused one.
    fn head_answered(&self, e: &Probe, head: &Head) {
        use std::sync::atomic::Ordering;
        if !head.bodiless || !self.any_no_head.load(Ordering::Relaxed) {
            return;
        }
        let key = origin_hash(e);
        if let Ok(mut m) = self.no_head.lock()
            && let Some(n) = m.get_mut(&key)
        {
            n.answered = true;
        }
    }

    fn present(&self, seq: u64, path: &str, m: &Meta) {
        let line = match (self.mode, self.json) {
            (Mode::Exists, false) => format!("{path}\ttrue\n"),
            (Mode::Exists, true) => json_line(path, &[("exists", true.into())]),
            (Mode::Stat, false) => {
                let size = m.size.map_or("-".to_string(), |s| s.to_string());
                let f = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                format!("{path}\t{size}\t{}\t{}\n", f(&m.mtime), f(&m.etag))
            }
            (Mode::Stat, true) => json_line(
                path,
                &[
                    ("exists", true.into()),
                    ("size", m.size.into()),
                    ("mtime", m.mtime.clone().into()),
                    ("etag", m.etag.clone().into()),
                ],
            ),
        };
        self.out.put(seq, line, Kind::Present);
    }

    fn absent(&self, seq: u64, path: &str) {
        let line = match (self.mode, self.json) {
            (Mode::Exists, false) => format!("{path}\tfalse\n"),
            (Mode::Stat, false) => format!("{path}\tabsent\n"),
            (_, true) => json_line(path, &[("exists", false.into())]),
        };
        self.out.put(seq, line, Kind::Absent);
    }

    fn error(&self, seq: u64, path: &str, why: &str) {
        let line = if self.json {
            json_line(path, &[("error", why.into())])
        } else {
            // A reason is one line, whatever a server put in it.
            format!("{path}\terror\t{}\n", why.replace(['\n', '\r', '\t'], " "))
        };
        self.out.put(seq, line, Kind::Error);
    }
}

/// `{"path": …, fields…}` and a newline, path first.
pub(crate) fn json_line(path: &str, fields: &[(&str, serde_json::Value)]) -> String {
    use std::fmt::Write;
    let mut s = String::from("{\"path\":");
    s.push_str(&serde_json::Value::from(path).to_string());
    for (k, v) in fields {
        let _ = write!(s, ",\"{k}\":{v}");
    }
    s.push_str("}\n");
    s
}

impl Plan for ProbePlan {
    type Entry = Probe;

    fn name<'e>(&self, e: &'e Probe) -> &'e str {
        &e.path
    }

    fn url(&self, e: &Probe) -> String {
        e.path.to_string()
    }

    fn admit(&self, _e: &Probe, _: Option<std::time::SystemTime>) -> Admit {
        Admit::Fetch
    }

    fn origin<'e>(&'e self, e: &'e Probe) -> OriginKey<'e> {
        e.target().origin_key()
    }

    fn path(&self, out: &mut Vec<u8>, e: &Probe) {
        e.target().push_path(out);
    }

    fn range(&self, e: &Probe) -> Option<(u64, u64)> {
        self.by_get(e).then_some((0, 0))
    }

    fn method(&self, e: &Probe) -> Method {
        if self.by_get(e) {
            Method::Get
        } else {
            Method::Head
        }
    }

    fn gave_up(&self, e: &Probe, err: &FetchError) {
        self.error(e.seq, &e.path, &err.to_string());
    }

    async fn answer(
        &self,
        _sh: &Arc<Shared<Self>>,
        c: &mut Conn,
        head: &Head,
        e: &Probe,
        _at: Option<&str>,
        _handed: &mut JoinSet<()>,
    ) -> Result<(Landed, bool), (FetchError, bool)> {
        let keep = land::reusable(head);
        match head.status {
            200..=299 => {
                let size = match head.content_range {
                    Some((_, _, total)) if head.status == 206 => total,
                    _ => head.content_length,
                };
                // A GET's body: one byte, or the whole file from a server
                // that ignores Range (not read: the connection goes).
                let keep = if head.bodiless || head.content_length.is_some_and(|n| n <= 64 << 10) {
                    c.read_body(head, |_| Ok(()))
                        .await
                        .map_err(|e| (e, false))?;
                    keep
                } else {
                    false
                };
                let m = Meta {
                    size,
                    mtime: head.last_modified.as_deref().and_then(http_date_to_rfc3339),
                    etag: head.etag.as_deref().map(unquote),
                };
                self.present(e.seq, &e.path, &m);
                self.head_answered(e, head);
                Ok((Landed::Bytes(0), keep))
            }
            404 | 410 => {
                let keep = drain(c, head).await?;
                self.absent(e.seq, &e.path);
                self.head_answered(e, head);
                Ok((Landed::Bytes(0), keep))
            }
            // No HEAD here: ask for the first byte instead (not with a
            // presigned URL: it is signed for HEAD alone).
            405 | 501 if !e.get.get() && e.signed.is_none() => {
                let keep = drain(c, head).await?;
                e.get.set(true);
                if let Ok(mut m) = self.no_head.lock() {
                    let key = origin_hash(e);
                    m.entry(key).or_default().refused += 1;
                }
                self.any_no_head
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok((Landed::Again, keep))
            }
            _ => Err(land::refuse(c, head).await),
        }
    }
}

/// Reads the body of an answer that is not an error for the path (a 404
/// is an answer); whether the connection carries on.
async fn drain(c: &mut Conn, head: &Head) -> Result<bool, (FetchError, bool)> {
    let (err, keep) = land::refuse(c, head).await;
    if !err.keeps_connection() {
        return Err((err, false));
    }
    Ok(keep)
}

/// An ETag without its quotes (`W/` kept: a weak one says so).
fn unquote(t: &str) -> String {
    let (weak, t) = t.strip_prefix("W/").map_or(("", t), |r| ("W/", r));
    format!("{weak}{}", t.trim_matches('"'))
}

/// `Last-Modified` (an HTTP-date) as RFC 3339 UTC.
fn http_date_to_rfc3339(v: &str) -> Option<String> {
    let t = httpdate::parse_http_date(v).ok()?;
    Some(rfc3339(t))
}

pub use crate::units::rfc3339;

pub fn run(cfg: &ProbeConfig, stop: Arc<AtomicBool>) -> Result<ProbeOutcome, RunError> {
    let started = Instant::now();
    let net = Net::new(cfg.net.clone())?;
    let list = cfg.list.as_deref().map(open_list).transpose()?;
    if let Some(p) = &cfg.failures {
        // A fresh record of this run's failures.
        let _ = std::fs::remove_file(p);
    }
    let (sink, eager): (Box<dyn io::Write + Send>, bool) = match &cfg.output {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| RunError::Dest {
                path: p.display().to_string(),
                source: e,
            })?;
            // A pipe's reader wants each answer as it comes.
            let eager = f.metadata().is_ok_and(|m| !m.is_file());
            (Box::new(f), eager)
        }
        None => (Box::new(io::stdout()), io::stdout().is_terminal()),
    };
    let out = Arc::new(Window::new(
        Box::new(io::BufWriter::with_capacity(64 << 10, sink)),
        cfg.window,
        eager,
    ));
    let (tx, rx) = async_channel::bounded::<Batch<Probe>>(64);
    let counters = Arc::new(Counters::default());
    let quiet = cfg.display == Display::Quiet;
    let sh = Arc::new(Shared {
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::at(cfg.failures.clone()),
            counters.clone(),
            cfg.policy.clone(),
            stop,
            quiet,
        ),
        plan: ProbePlan {
            mode: cfg.mode,
            json: cfg.json,
            out: out.clone(),
            no_head: Default::default(),
            any_no_head: Default::default(),
        },
        rx,
        tracker: None,
        limits: cfg.limits,
    });
    let reporter = Reporter::start(counters.clone(), started, cfg.display);
    let reader = {
        let sh = sh.clone();
        let paths = cfg.paths.clone();
        let signer = Signer::new(cfg.store_opts.clone());
        std::thread::Builder::new()
            .name("bulkget-paths".into())
            .spawn(move || feed::feed(&sh, paths, list, signer, tx))
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    pipeline::run_workers(&sh, cfg.threads).map_err(|e| RunError::Other(e.to_string()))?;
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(RunError::Other("the path reader panicked".into())));
    drop(reporter);
    let interrupted = sh.ctx.stopping();
    let (tally, error) = match (out.finish(), read) {
        (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => (Tally::default(), None),
        (Err(e), _) => (
            Tally::default(),
            Some(RunError::Other(format!("cannot write the answers: {e}"))),
        ),
        (Ok(t), Err(e)) => (t, Some(e)),
        (Ok(t), Ok(())) => (t, None),
    };
    Ok(ProbeOutcome {
        tally,
        stats: counters.stats(started.elapsed()),
        error,
        interrupted,
    })
}
