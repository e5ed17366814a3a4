//! The hot loop shared by `mirror` and `get`: one long-lived connection per
//! task (pipelined HTTP/1.1 or HTTP/2 streams). A worker takes batches of
//! entries, keeps up to `window` GETs in flight, hands each answer to the
//! command's [`Plan`], and schedules failures for another attempt with
//! backoff in its own timer heap, so one slow retry never idles the
//! connection (it pulls the next batch meanwhile). Redirects are followed
//! here, for every plan: the entry keeps its output name and goes back in
//! line for the new URL. No task, message or lock per file; counts are kept
//! locally and published in bunches.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ctx::RunCtx;
use crate::error::FetchError;
use crate::fetch::Conn;
use crate::fetch::http1::Head;
use crate::fetch::url::{self, OriginKey, OwnedKey, Url};
use crate::journal::Tracker;
use crate::progress::Local;

mod redirects;
use redirects::Redirects;

/// Batches one worker holds at once (one being sent, others waiting on retries).
const MAX_OPEN: usize = 4;

/// Some entries for one worker; `page` ties them to the resume tracker.
pub struct Batch<E> {
    pub page: Option<u64>,
    pub entries: Vec<E>,
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
}

/// The per-command parts of the hot loop.
pub trait Plan: Send + Sync + Sized + 'static {
    type Entry: Send + 'static;
    /// The output name (for messages and the ledger).
    fn name<'e>(&self, e: &'e Self::Entry) -> &'e str;
    /// The full URL (for messages and the ledger).
    fn url(&self, e: &Self::Entry) -> String;
    fn admit(&self, e: &Self::Entry) -> Admit;
    /// The origin (scheme, `host[:port]`) the entry is fetched from.
    fn origin<'e>(&'e self, e: &'e Self::Entry) -> OriginKey<'e>;
    /// Appends the entry's encoded request path (with query).
    fn path(&self, out: &mut Vec<u8>, e: &Self::Entry);
    /// The byte range to ask for, if any.
    fn range(&self, e: &Self::Entry) -> Option<(u64, u64)>;
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

/// What the workers of a run share.
pub struct Shared<P: Plan> {
    pub ctx: RunCtx,
    pub plan: P,
    pub rx: async_channel::Receiver<Batch<P::Entry>>,
    pub tracker: Option<Tracker>,
    pub window: u32,
}

/// Runs `tasks` workers on per-core runtimes until the input is drained (or
/// the run stops), then closes the input so a feeder still sending gives up.
pub fn run_workers<P: Plan>(
    sh: &Arc<Shared<P>>,
    threads: usize,
    tasks: usize,
) -> std::io::Result<()> {
    let w = sh.clone();
    let r = crate::fetch::run_per_core(threads, tasks, move |id| Worker::new(w.clone(), id).run());
    sh.rx.close();
    r
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    slot: u32,
    idx: u32,
    attempts: u32,
    /// Its chain in `Worker::redirects` (0: not redirected).
    hop: u32,
}

/// What came of reading one answer.
enum Answered {
    Done(Landed, bool),
    Failed(FetchError, bool),
    /// No answer came at all: the connection ended before its head.
    Lost(FetchError),
    /// Go to this URL instead (already checked); the bool as above.
    Redirect(String, bool),
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

struct Open<E> {
    page: Option<u64>,
    entries: Vec<E>,
    left: u32,
}

pub struct Worker<P: Plan> {
    sh: Arc<Shared<P>>,
    id: u64,
    open: Vec<Option<Open<P::Entry>>>,
    n_open: usize,
    ready: VecDeque<Item>,
    delayed: BinaryHeap<Reverse<(Instant, Item)>>,
    redirects: Redirects,
    inflight: VecDeque<Item>,
    local: Local,
    input_closed: bool,
    successes: u32,
    /// Tasks the plan handed files to (at most one at a time).
    handed: JoinSet<()>,
}

impl<P: Plan> Worker<P> {
    pub fn new(sh: Arc<Shared<P>>, id: u64) -> Worker<P> {
        Worker {
            sh,
            id,
            open: Vec::new(),
            n_open: 0,
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            redirects: Redirects::default(),
            inflight: VecDeque::new(),
            local: Local::default(),
            input_closed: false,
            successes: 0,
            handed: JoinSet::new(),
        }
    }

    fn entry(&self, it: Item) -> &P::Entry {
        &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .entries[it.idx as usize]
    }

    fn stopping(&self) -> bool {
        self.sh.ctx.stopping()
    }

    /// Takes a batch in: refused entries fail at once, present ones are skipped.
    fn admit(&mut self, b: Batch<P::Entry>) {
        let slot = match self.open.iter().position(|o| o.is_none()) {
            Some(i) => i,
            None => {
                self.open.push(None);
                self.open.len() - 1
            }
        };
        let n = b.entries.len() as u32;
        self.open[slot] = Some(Open {
            page: b.page,
            entries: b.entries,
            left: n,
        });
        self.n_open += 1;
        for idx in 0..n {
            let it = Item {
                slot: slot as u32,
                idx,
                attempts: 0,
                hop: 0,
            };
            match self.sh.plan.admit(self.entry(it)) {
                Admit::Fetch => self.ready.push_back(it),
                Admit::Skip => {
                    self.local.skipped += 1;
                    self.local.tick(&self.sh.ctx.counters);
                    self.finish(it);
                }
                Admit::Fail(e) => self.fail_for_good(it, &e),
            }
        }
        if n == 0 {
            self.close_slot(slot);
        }
    }

    fn close_slot(&mut self, slot: usize) {
        let o = self.open[slot].take().expect("open batch");
        self.n_open -= 1;
        if let (Some(t), Some(p)) = (&self.sh.tracker, o.page) {
            t.part_done(p);
        }
    }

    /// Where a redirect moved the item, if one did.
    fn moved(&self, it: Item) -> Option<&str> {
        self.redirects.current(it.hop)
    }

    /// The origin the item's next request goes to.
    fn origin(&self, it: Item) -> OriginKey<'_> {
        match self.moved(it) {
            Some(u) => Url::parse(u).expect("checked when followed").origin_key(),
            None => self.sh.plan.origin(self.entry(it)),
        }
    }

    /// Queues the item's request on `c`.
    fn request(&self, c: &mut Conn, it: Item) -> Result<(), FetchError> {
        let e = self.entry(it);
        let range = self.sh.plan.range(e);
        match self.moved(it) {
            Some(u) => {
                let u = Url::parse(u).expect("checked when followed");
                c.get(u.authority, |o| u.push_path(o), range)
            }
            None => {
                let key = self.sh.plan.origin(e);
                c.get(key.authority, |o| self.sh.plan.path(o, e), range)
            }
        }
    }

    /// The answer to `it` sent it to `to`: check the chain and put it back
    /// in line (not an attempt: its retry count stays).
    fn redirect(&mut self, mut it: Item, to: String) -> Result<Item, FetchError> {
        let plan = &self.sh.plan;
        let entry = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .entries[it.idx as usize];
        let max = self.sh.ctx.max_redirs;
        it.hop = self.redirects.follow(it.hop, || plan.url(entry), to, max)?;
        Ok(it)
    }

    /// An item is done for this run (landed, skipped, handed on, or failed for good).
    fn finish(&mut self, it: Item) {
        self.redirects.free(it.hop);
        let o = self.open[it.slot as usize].as_mut().expect("open batch");
        o.left -= 1;
        if o.left == 0 {
            self.close_slot(it.slot as usize);
        }
    }

    fn fail_for_good(&mut self, it: Item, err: &FetchError) {
        let e = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .entries[it.idx as usize];
        let (name, url) = (self.sh.plan.name(e), self.sh.plan.url(e));
        self.sh
            .ctx
            .give_up(name, &url, err, it.attempts, &mut self.local);
        self.finish(it);
    }

    /// This attempt failed: schedule another or give up.
    fn failed(&mut self, mut it: Item, err: &FetchError) {
        if err.is_fatal() {
            // Not this file's fault (the disk is full): stop the run and leave
            // the file unfinished, so its page stays open for the rerun.
            let name = self.sh.plan.name(self.entry(it));
            self.sh.ctx.fatal(format!("writing {name:?}: {err}"));
            return;
        }
        it.attempts += 1;
        let salt = self
            .id
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(it.idx as u64);
        match self
            .sh
            .ctx
            .retry_after(err, it.attempts, salt, &mut self.local)
        {
            Some(wait) => self.delayed.push(Reverse((Instant::now() + wait, it))),
            None => self.fail_for_good(it, err),
        }
    }

    fn landed(&mut self, it: Item, l: Landed) {
        if let Landed::Bytes(bytes) = l {
            self.local.done += 1;
            self.local.bytes += bytes;
            self.local.tick(&self.sh.ctx.counters);
        }
        self.successes += 1;
        if self.successes >= 64 {
            self.successes = 0;
            self.sh.ctx.throttle.succeeded();
        }
        self.finish(it);
    }

    pub async fn run(mut self) {
        let mut conn: Option<(OwnedKey, Conn)> = None;
        // Answers read on `conn`, and how many it may have in flight.
        let (mut served, mut depth) = (0u32, usize::MAX);
        loop {
            // Take in work while there is room and nothing ready to send.
            while self.ready.is_empty()
                && self.n_open < MAX_OPEN
                && !self.input_closed
                && !self.stopping()
            {
                let idle = self.inflight.is_empty() && self.delayed.is_empty();
                let got = if idle {
                    self.sh.rx.recv().await.ok()
                } else {
                    match self.sh.rx.try_recv() {
                        Ok(b) => Some(b),
                        Err(async_channel::TryRecvError::Empty) => break,
                        Err(async_channel::TryRecvError::Closed) => None,
                    }
                };
                match got {
                    Some(b) => self.admit(b),
                    None => self.input_closed = true,
                }
            }
            let now = Instant::now();
            while let Some(Reverse((at, it))) = self.delayed.peek().copied() {
                if at > now {
                    break;
                }
                self.delayed.pop();
                self.ready.push_back(it);
            }
            let stopping = self.stopping();
            if self.inflight.is_empty() {
                if self.ready.is_empty() {
                    if stopping || (self.n_open == 0 && self.input_closed) {
                        break; // what waits for a retry is abandoned; its page stays open in the journal
                    }
                    if let Some(Reverse((at, ..))) = self.delayed.peek() {
                        if self.n_open >= MAX_OPEN || self.input_closed {
                            tokio::time::sleep_until(*at).await;
                        } else {
                            tokio::select! {
                                _ = tokio::time::sleep_until(*at) => {}
                                r = self.sh.rx.recv() => match r {
                                    Ok(b) => self.admit(b),
                                    Err(_) => self.input_closed = true,
                                },
                            }
                        }
                    }
                    continue;
                }
                if stopping {
                    break;
                }
                if let Some(wait) = self.sh.ctx.throttle.pause_left() {
                    tokio::time::sleep(wait).await;
                }
                // One handed-on file at a time per worker: wait for it first.
                if !self.handed.is_empty() {
                    let _ = self.handed.join_next().await;
                }
            }
            // Top the pipeline up in bunches (half a window at least) so one
            // write carries many requests; all to the connection's origin.
            let window = (self.sh.ctx.throttle.window().min(self.sh.window) as usize).min(depth);
            if !stopping && !self.ready.is_empty() && self.inflight.len() <= window / 2 {
                let key = self.origin(self.ready[0]);
                if conn.as_ref().is_some_and(|(k, _)| k.borrow() != key) && self.inflight.is_empty()
                {
                    conn = None;
                }
                if conn.is_none() {
                    let key = key.to_owned();
                    match self.sh.ctx.net.connect(key.borrow()).await {
                        Ok(c) => {
                            served = 0;
                            depth = match (&c, self.sh.ctx.net.depth(key.borrow())) {
                                (Conn::H1(_), Some(d)) => d as usize,
                                _ => usize::MAX,
                            };
                            conn = Some((key, c));
                        }
                        Err(e) => {
                            let it = self.ready.pop_front().expect("ready item");
                            self.failed(it, &e);
                            continue;
                        }
                    }
                }
                let (k, c) = conn.as_mut().expect("connected");
                while self.inflight.len() < window {
                    let Some(&it) = self.ready.front() else { break };
                    if self.origin(it) != k.borrow() {
                        break; // another origin: after this connection's answers are in
                    }
                    self.ready.pop_front();
                    if let Err(e) = self.request(c, it) {
                        self.failed(it, &e);
                        continue;
                    }
                    self.inflight.push_back(it);
                }
                if let Err(e) = c.flush().await {
                    conn = None;
                    if served > 0 && e.is_connection_end() {
                        self.requeue_inflight(); // it served us, then closed: no blame
                    } else {
                        self.connection_lost(e);
                    }
                    continue;
                }
            }
            if self.inflight.is_empty() {
                continue;
            }
            let (k, c) = conn
                .as_mut()
                .expect("connected while requests are in flight");
            let it = *self.inflight.front().expect("in flight");
            let answered = self.answer(c, it).await;
            let h2_alive = c.survives_stream_error();
            self.inflight.pop_front();
            let keep = match answered {
                Answered::Done(l, keep) => {
                    served += 1;
                    self.landed(it, l);
                    keep
                }
                Answered::Lost(e) if served > 0 && !c.is_h2() && e.is_connection_end() => {
                    // The server answered and then closed with this request
                    // unanswered: not the file's fault. A server that does
                    // not pipeline gets one request at a time from now on.
                    if depth > 1 {
                        depth = 1;
                        if self.sh.ctx.net.stop_pipelining(k.borrow()) && !self.sh.ctx.quiet {
                            let scheme = if k.tls { "https" } else { "http" };
                            eprintln!(
                                "bulkget: {scheme}://{} closed a connection with {} requests unanswered; sending it one request at a time",
                                k.authority,
                                self.inflight.len() + 1
                            );
                        }
                    }
                    self.ready.push_front(it);
                    false
                }
                Answered::Lost(e) => {
                    self.failed(it, &e);
                    h2_alive
                }
                Answered::Failed(e, keep) => {
                    self.failed(it, &e);
                    keep || h2_alive
                }
                Answered::Redirect(to, keep) => {
                    match self.redirect(it, to) {
                        Ok(it) => self.ready.push_back(it),
                        Err(e) => self.failed(it, &e),
                    }
                    keep
                }
            };
            if !keep {
                conn = None;
                self.requeue_inflight();
            }
        }
        while self.handed.join_next().await.is_some() {}
        self.local.publish(&self.sh.ctx.counters);
    }

    /// The connection died: the head request takes the blame, the rest are sent again.
    fn connection_lost(&mut self, e: FetchError) {
        if let Some(it) = self.inflight.pop_front() {
            self.failed(it, &e);
        }
        self.requeue_inflight();
    }

    fn requeue_inflight(&mut self) {
        while let Some(it) = self.inflight.pop_back() {
            self.ready.push_front(it);
        }
    }

    /// Reads one answer: a redirect is drained and its target checked here,
    /// anything else goes to the plan.
    async fn answer(&mut self, c: &mut Conn, it: Item) -> Answered {
        let head = match c.read_head().await {
            Ok(h) => h,
            Err(e) => return Answered::Lost(e),
        };
        if is_redirect(head.status)
            && let Some(loc) = head.location.as_deref()
        {
            let base = match self.moved(it) {
                Some(u) => u.to_string(),
                None => self.sh.plan.url(self.entry(it)),
            };
            let (err, keep) = crate::fetch::land::refuse(c, &head).await;
            if !err.keeps_connection() {
                return Answered::Failed(err, false);
            }
            return match url::join(&base, loc) {
                Ok(to) => Answered::Redirect(to, keep),
                Err(why) => Answered::Failed(
                    FetchError::Redirect(format!(
                        "HTTP {} to {loc:?}, which cannot be followed: {why}",
                        head.status
                    )),
                    keep,
                ),
            };
        }
        let at = self.moved(it).map(str::to_string);
        let e = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .entries[it.idx as usize];
        match self
            .sh
            .plan
            .answer(&self.sh, c, &head, e, at.as_deref(), &mut self.handed)
            .await
        {
            Ok((l, keep)) => Answered::Done(l, keep),
            Err((e, keep)) => Answered::Failed(e, keep),
        }
    }
}
