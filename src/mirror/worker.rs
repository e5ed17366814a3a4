//! The hot loop: one long-lived pipelined connection per task. A worker takes
//! a batch of names, keeps up to `window` GETs in flight, lands each answer in
//! the sink, and schedules failures for another attempt with backoff, so one
//! slow retry never idles the connection (it pulls the next batch meanwhile).
//! Counts are kept locally and published in bunches.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use crate::error::FetchError;
use crate::fetch::http1::Conn;
use crate::fetch::land;
use crate::listing::Batch;
use crate::names;
use crate::progress::Local;
use crate::sink::Sink;

/// Batches one worker holds at once (one being sent, others waiting on retries).
const MAX_OPEN: usize = 4;

#[derive(Clone, Copy)]
struct Item {
    slot: u32,
    idx: u32,
    attempts: u32,
}

struct Open {
    page: u64,
    names: Vec<String>,
    left: u32,
}

pub struct Worker<S: Sink> {
    sh: Arc<Shared<S>>,
    id: u64,
    open: Vec<Option<Open>>,
    n_open: usize,
    ready: VecDeque<Item>,
    delayed: BinaryHeap<Reverse<(Instant, u32, u32, u32)>>,
    inflight: VecDeque<Item>,
    local: Local,
    input_closed: bool,
    successes: u32,
}

impl<S: Sink> Worker<S> {
    pub fn new(sh: Arc<Shared<S>>, id: u64) -> Worker<S> {
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
        }
    }

    fn name(&self, it: Item) -> &str {
        &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .names[it.idx as usize]
    }

    fn stopping(&self) -> bool {
        self.sh.ctx.stopping()
    }

    /// Takes a batch in: refused names fail at once, present ones are skipped.
    fn admit(&mut self, b: Batch) {
        let slot = match self.open.iter().position(|o| o.is_none()) {
            Some(i) => i,
            None => {
                self.open.push(None);
                self.open.len() - 1
            }
        };
        let n = b.names.len() as u32;
        self.open[slot] = Some(Open {
            page: b.page,
            names: b.names,
            left: n,
        });
        self.n_open += 1;
        for idx in 0..n {
            let it = Item {
                slot: slot as u32,
                idx,
                attempts: 0,
            };
            let name = self.name(it);
            if let Err(e) = names::check(name) {
                self.fail_for_good(it, &FetchError::Name(e));
            } else if self.sh.skip_existing && self.sh.sink.exists(name) {
                self.local.skipped += 1;
                self.local.tick(&self.sh.ctx.counters);
                self.finish(it);
            } else {
                self.ready.push_back(it);
            }
        }
        if n == 0 {
            self.close_slot(slot);
        }
    }

    fn close_slot(&mut self, slot: usize) {
        let o = self.open[slot].take().expect("open batch");
        self.n_open -= 1;
        self.sh.tracker.part_done(o.page);
    }

    /// An item is done for this run (landed, skipped, or failed for good).
    fn finish(&mut self, it: Item) {
        let o = self.open[it.slot as usize].as_mut().expect("open batch");
        o.left -= 1;
        if o.left == 0 {
            self.close_slot(it.slot as usize);
        }
    }

    fn fail_for_good(&mut self, it: Item, err: &FetchError) {
        let name = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .names[it.idx as usize];
        let mut path = b"/get/".to_vec();
        names::push_url_path(&mut path, name);
        let url = self.sh.ep.url_of(&String::from_utf8_lossy(&path));
        self.sh
            .ctx
            .give_up(name, &url, err, it.attempts, &mut self.local);
        self.finish(it);
    }

    /// This attempt failed: schedule another or give up.
    fn failed(&mut self, mut it: Item, err: &FetchError) {
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

    fn landed(&mut self, it: Item, bytes: u64) {
        self.local.done += 1;
        self.local.bytes += bytes;
        self.local.tick(&self.sh.ctx.counters);
        self.successes += 1;
        if self.successes >= 64 {
            self.successes = 0;
            self.sh.ctx.throttle.succeeded();
        }
        self.finish(it);
    }

    pub async fn run(mut self) {
        let mut conn: Option<Conn> = None;
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
                    if self.n_open == 0 && (self.input_closed || stopping) {
                        break;
                    }
                    if stopping {
                        break; // abandon what waits for a retry; the journal keeps its page open
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
            }
            // Top the pipeline up in bunches (half a window at least) so one
            // write carries many requests.
            let window = self.sh.ctx.throttle.window().min(self.sh.window) as usize;
            if !stopping && !self.ready.is_empty() && self.inflight.len() <= window / 2 {
                if conn.is_none() {
                    match Conn::connect(self.sh.ep.addr, self.sh.ctx.timeout).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            let it = self.ready.pop_front().expect("ready item");
                            self.failed(it, &e);
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected");
                while self.inflight.len() < window {
                    let Some(it) = self.ready.pop_front() else {
                        break;
                    };
                    let name = &self.open[it.slot as usize]
                        .as_ref()
                        .expect("open batch")
                        .names[it.idx as usize];
                    let out = c.out();
                    out.extend_from_slice(b"GET ");
                    out.extend_from_slice(self.sh.ep.base_path.as_bytes());
                    out.extend_from_slice(b"/get/");
                    names::push_url_path(out, name);
                    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                    out.extend_from_slice(self.sh.ep.host.as_bytes());
                    out.extend_from_slice(b"\r\n\r\n");
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
            let c = conn
                .as_mut()
                .expect("connected while requests are in flight");
            let it = *self.inflight.front().expect("in flight");
            match self.answer(c, it).await {
                Ok((bytes, close)) => {
                    self.inflight.pop_front();
                    self.landed(it, bytes);
                    if close {
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

    /// Reads one answer and lands its body. Err carries whether the connection is still usable.
    async fn answer(&self, c: &mut Conn, it: Item) -> Result<(u64, bool), (FetchError, bool)> {
        let head = c.read_head().await.map_err(|e| (e, false))?;
        if head.status != 200 {
            return Err(land::refuse(c, &head).await);
        }
        let name = &self.open[it.slot as usize]
            .as_ref()
            .expect("open batch")
            .names[it.idx as usize];
        let got = land::land(c, &head, &self.sh.sink, name).await?;
        Ok((got, !land::reusable(&head)))
    }
}
