//! The hot loop shared by `mirror` and `get`, and its scheduler.
//!
//! Each core runs one [`core::Core`]: a scheduler that reads batches of
//! entries from the run's input into a bounded frontier and sorts them into
//! per-origin queues, and connection tasks ([`lane`]) that each hold one
//! long-lived connection to one origin (pipelined HTTP/1.1 or HTTP/2
//! streams) and take entries from its queue a bunch at a time. How many
//! connections an origin gets, and how deep each one's pipeline is, is
//! found as the run goes by its [`ctl::Ctl`] (files/s and latency, AIMD on
//! push-back); `-c`, `--max-per-host` and `--pipeline` are ceilings. An
//! interleaved list of many hosts runs like a sorted one, and a slow host
//! only holds its own connections; when a slow or dead one fills the
//! frontier, its further entries wait on disk (`aside`) while the rest
//! flow.
//!
//! What differs per command is a [`Plan`]: the entry type, the request,
//! admission (skip / refuse) and what to do with an answer. Failures wait in
//! the core's timer heap for their retry while the connections carry other
//! work; redirects are followed here, for every plan: the entry keeps its
//! output name and goes to the new URL's origin. No task, message or lock
//! per file; counts are kept per core and published in bunches.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::ctx::RunCtx;
use crate::error::FetchError;
use crate::fetch::Conn;
use crate::fetch::http1::{Head, Method};
use crate::fetch::url::OriginKey;
use crate::journal::Tracker;

mod aside;
pub mod core;
pub mod ctl;
pub mod gate;
pub mod judge;
mod lane;
mod outcome;
mod redirects;

/// Some entries for the workers; `page` ties them to the resume tracker.
pub struct Batch<E> {
    pub page: Option<u64>,
    pub entries: Vec<E>,
    /// Entries already at their names count as landed only if they landed
    /// before this time; later ones are fetched again (a shared job's page
    /// taken over from a worker that may have died mid-write).
    pub recheck: Option<std::time::SystemTime>,
}

/// What to do with an entry before fetching it.
pub enum Admit {
    Fetch,
    /// Already there: count as skipped.
    Skip,
    /// Refused for good.
    Fail(FetchError),
}

/// What became of an answer.
pub enum Landed {
    /// The file landed; `bytes` not counted yet.
    Bytes(u64),
    /// A task of its own finishes the file and counts it (a split download).
    Handed,
    /// The plan changed how the entry is asked for (a server that refuses
    /// `HEAD` gets a `GET`): send it again at once, as a new request.
    Again,
}

/// The per-command parts of the hot loop.
pub trait Plan: Send + Sync + Sized + 'static {
    type Entry: Send + 'static;
    /// The output name (for messages and the ledger).
    fn name<'e>(&self, e: &'e Self::Entry) -> &'e str;
    /// The full URL (for messages and the ledger).
    fn url(&self, e: &Self::Entry) -> String;
    /// `recheck`: the batch's ([`Batch::recheck`]).
    fn admit(&self, e: &Self::Entry, recheck: Option<std::time::SystemTime>) -> Admit;
    /// The origin (scheme, `host[:port]`) the entry is fetched from.
    fn origin<'e>(&'e self, e: &'e Self::Entry) -> OriginKey<'e>;
    /// Appends the entry's encoded request path (with query).
    fn path(&self, out: &mut Vec<u8>, e: &Self::Entry);
    /// The byte range to ask for, if any.
    fn range(&self, e: &Self::Entry) -> Option<(u64, u64)>;
    /// Header lines (each ending in CRLF) the request for `e` carries
    /// besides the usual ones, made as it is sent (an S3 signature).
    fn headers(&self, _e: &Self::Entry) -> Option<String> {
        None
    }
    /// Where entries are set aside when a slow origin holds much of a full
    /// frontier (`aside`); `None`: they wait in memory.
    fn aside_dir(&self) -> Option<&std::path::Path> {
        None
    }
    /// An entry as one line (no newline in it), for setting it aside.
    fn encode(&self, _e: &Self::Entry, _out: &mut Vec<u8>) {}
    /// An entry back from [`Plan::encode`]'s line.
    fn decode(&self, _line: &[u8]) -> Option<Self::Entry> {
        None
    }
    /// The request method (`GET` unless a plan says otherwise).
    fn method(&self, _e: &Self::Entry) -> Method {
        Method::Get
    }
    /// The entry failed for good (after the ledger and the error line).
    fn gave_up(&self, _e: &Self::Entry, _err: &FetchError) {}
    /// Takes the answer whose head was just read; the body is still unread.
    /// `at` is the URL it answers when a redirect led there. Ok and Err both
    /// carry whether the connection can carry on.
    fn answer(
        &self,
        sh: &Arc<Shared<Self>>,
        c: &mut Conn,
        head: &Head,
        e: &Self::Entry,
        at: Option<&str>,
        handed: &mut JoinSet<()>,
    ) -> impl Future<Output = Result<(Landed, bool), (FetchError, bool)>>;
}

/// Ceilings for the adaptive concurrency (none of them is a target).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections in all (`-c`).
    pub conns: u32,
    /// Connections to one origin (`--max-per-host`).
    pub per_host: u32,
    /// Requests in flight on one connection (`--pipeline`).
    pub depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            conns: default_max_conns(),
            per_host: DEFAULT_PER_HOST,
            depth: DEFAULT_DEPTH,
        }
    }
}

/// `--max-per-host` unless given.
pub const DEFAULT_PER_HOST: u32 = 256;
/// `--pipeline` unless given.
pub const DEFAULT_DEPTH: u32 = 64;

/// `-c` unless given: 2048, or a quarter of the open-file limit if that is
/// smaller (each connection is a socket; files being written need some too).
/// A connection costs about 10 KiB here (its task, buffers that start
/// small); 2048 keeps a list over 10^5 hosts, where each holds a
/// connection for a file or two, under 64 MiB.
pub fn default_max_conns() -> u32 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    let n = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    };
    (n / 4).clamp(8, 2048) as u32
}

/// Raises the soft open-file limit to the hard one (as many servers and
/// download tools do): connections and files in flight are sockets and fds.
pub fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers; setrlimit only raises within the hard limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// What the workers of a run share.
pub struct Shared<P: Plan> {
    pub ctx: RunCtx,
    pub plan: P,
    pub rx: async_channel::Receiver<Batch<P::Entry>>,
    pub tracker: Option<Tracker>,
    pub limits: Limits,
}

/// Runs one scheduler per core (`threads`, 0 = one per core; never more
/// than the connections allowed) until the input is drained or the run
/// stops, then closes the input so a feeder still sending gives up.
pub fn run_workers<P: Plan>(sh: &Arc<Shared<P>>, threads: usize) -> std::io::Result<()> {
    let cores = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .min(sh.limits.conns.max(1) as usize);
    let w = sh.clone();
    let gates = Arc::new(gate::Gates::new(cores, sh.limits.per_host));
    let r = crate::fetch::run_per_core(cores, cores, move |id| {
        Rc::new(core::Core::new(
            w.clone(),
            gates.clone(),
            id as usize,
            cores,
        ))
        .run()
    });
    sh.rx.close();
    r
}
