//! The hot loop shared by `mirror` and `get`: one long-lived pipelined
//! HTTP/1.1 connection per task. A worker takes batches of entries, keeps up
//! to `window` GETs in flight, hands each answer to the command's [`Plan`],
//! and schedules failures for another attempt with backoff in its own timer
//! heap, so one slow retry never idles the connection (it pulls the next
//! batch meanwhile). No task, message or lock per file; counts are kept
//! locally and published in bunches.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ctx::RunCtx;
use crate::error::FetchError;
use crate::fetch::http1::{Conn, Head};
use crate::journal::Tracker;
use crate::progress::Local;

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
    /// `host[:port]` the entry is fetched from.
    fn host<'e>(&'e self, e: &'e Self::Entry) -> &'e str;
    fn resolve(&self, host: &str) -> Result<SocketAddr, FetchError>;
    /// Appends the request for `e` to `out`.
    fn request(&self, out: &mut Vec<u8>, e: &Self::Entry);
    /// Takes the answer whose head was just read; the body is still unread.
    /// Ok and Err both carry whether the connection can carry on.
    fn answer(
        &self,
        sh: &Arc<Shared<Self>>,
        c: &mut Conn,
        head: &Head,
        e: &Self::Entry,
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

#[derive(Clone, Copy)]
struct Item {
    slot: u32,
    idx: u32,
    attempts: u32,
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
    delayed: BinaryHeap<Reverse<(Instant, u32, u32, u32)>>,
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

    /// An item is done for this run (landed, skipped, handed on, or failed for good).
    fn finish(&mut self, it: Item) {
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
            Some(wait) => self.delayed.push(Reverse((
                Instant::now() + wait,
                it.slot,
                it.idx,
                it.attempts,
            ))),
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
        let mut conn: Option<(String, Conn)> = None;
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
            while let Some(Reverse((at, slot, idx, attempts))) = self.delayed.peek().copied() {
                if at > now {
                    break;
                }
                self.delayed.pop();
                self.ready.push_back(Item {
                    slot,
                    idx,
                    attempts,
                });
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
            // write carries many requests; all to the connection's host.
            let window = self.sh.ctx.throttle.window().min(self.sh.window) as usize;
            if !stopping && !self.ready.is_empty() && self.inflight.len() <= window / 2 {
                let host = self.sh.plan.host(self.entry(self.ready[0]));
                if conn.as_ref().is_some_and(|(h, _)| h != host) && self.inflight.is_empty() {
                    conn = None;
                }
                if conn.is_none() {
                    let host = host.to_string();
                    let c = match self.sh.plan.resolve(&host) {
                        Ok(addr) => Conn::connect(addr, self.sh.ctx.timeout).await,
                        Err(e) => Err(e),
                    };
                    match c {
                        Ok(c) => conn = Some((host, c)),
                        Err(e) => {
                            let it = self.ready.pop_front().expect("ready item");
                            self.failed(it, &e);
                            continue;
                        }
                    }
                }
                let (h, c) = conn.as_mut().expect("connected");
                while self.inflight.len() < window {
                    let Some(&it) = self.ready.front() else { break };
                    let e = &self.open[it.slot as usize]
                        .as_ref()
                        .expect("open batch")
                        .entries[it.idx as usize];
                    if self.sh.plan.host(e) != h.as_str() {
                        break; // another host: after this connection's answers are in
                    }
                    self.sh.plan.request(c.out(), e);
                    self.ready.pop_front();
                    self.inflight.push_back(it);
                }
                if let Err(e) = c.flush().await {
                    conn = None;
                    self.connection_lost(e);
                    continue;
                }
            }
            if self.inflight.is_empty() {
                continue;
            }
            let (_, c) = conn
                .as_mut()
                .expect("connected while requests are in flight");
            let it = *self.inflight.front().expect("in flight");
            match self.answer(c, it).await {
                Ok((l, keep)) => {
                    self.inflight.pop_front();
                    self.landed(it, l);
                    if !keep {
                        conn = None;
                        self.requeue_inflight();
                    }
                }
                Err((e, keep)) => {
                    self.inflight.pop_front();
                    self.failed(it, &e);
                    if !keep {
                        conn = None;
                        self.requeue_inflight();
                    }
                }
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

    /// Reads one answer and gives it to the plan; Ok and Err both say whether
    /// the connection can carry on.
    async fn answer(
        &mut self,
        c: &mut Conn,
        it: Item,
    ) -> Result<(Landed, bool), (FetchError, bool)> {
        let head = c.read_head().await.map_err(|e| (e, false))?;
        let e = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .entries[it.idx as usize];
        self.sh
            .plan
            .answer(&self.sh, c, &head, e, &mut self.handed)
            .await
    }
}
