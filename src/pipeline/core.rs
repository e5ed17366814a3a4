//! One core's share of a run: a scheduler task and the connection tasks
//! ([`super::lane`]) it starts, all on that core's current-thread runtime,
//! sharing a [`State`] through a `RefCell` (never borrowed across an
//! `await`), so nothing here takes a lock per file.
//!
//! The scheduler pulls batches from the run's input while its frontier has
//! room, and puts each entry in its origin's queue. An origin (scheme,
//! host, port) has its own connections, as many as its [`Ctl`] wants, the
//! core's cap allows and the origin's [`Gate`] (its connections on all
//! cores, halved on push-back) lets through; origins past the core's cap
//! wait in line for a slot, which a connection gives up as soon as its own
//! origin has no work. A
//! failed request waits in the core's timer heap and goes back to its
//! origin's queue when due ([`super::outcome`]: what comes of an entry). The frontier ([`FRONTIER`]) bounds memory
//! whatever the hosts do; a slow origin's entries wait in its queue while
//! the others flow, and a dead one's fail through their retries. When the
//! frontier is full and a slow or dead origin holds a large share of it,
//! that origin's new entries are set aside on disk (`super::aside`), so
//! reading the input goes on for the others.

use std::cell::RefCell;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ctl::Ctl;
use super::gate::{Gate, Gates};
use super::outcome::Timed;
use super::redirects::Redirects;
use super::{Admit, Batch, Plan, Shared};
use crate::fetch::url::{OriginKey, OwnedKey, Url};
use crate::progress::{Local, Seat};

/// Entries one core holds at most (queued, in flight, waiting to retry),
/// each origin held counting as [`ORIGIN_WEIGHT`] entries more.
pub const FRONTIER: usize = 32 * 1024;
/// An origin's state (its controller, queue, gate) next to an entry's: a
/// list over many hosts holds fewer entries, not more memory.
pub const ORIGIN_WEIGHT: usize = 4;

/// An entry on its way: where its batch is accounted, its attempts so far,
/// its redirect chain (0: none).
pub struct Held<E> {
    pub e: E,
    pub slot: u32,
    pub attempts: u32,
    pub hop: u32,
}

pub struct Origin<E> {
    pub key: OwnedKey,
    hash: u64,
    pub queue: VecDeque<Held<E>>,
    /// Connection tasks alive, and how many of them wait for work.
    pub conns: u32,
    pub idle: u32,
    /// Connections on their way out (the controller wants fewer).
    pub leaving: u32,
    /// Entries of this origin in the timer heap.
    pub(super) delayed: u32,
    pub ctl: Ctl,
    /// The origin's connections on all cores.
    pub gate: Arc<Gate>,
    pub notify: Rc<Notify>,
    waiting_slot: bool,
    waiting_gate: bool,
    pub files: u64,
    /// Its connections waiting on an answer far slower than the rest
    /// ([`super::ctl::Ctl::stall_after`]): over HTTP/1.1 the requests
    /// behind it wait too, so as many more connections may open.
    pub stalled: u32,
    /// Its entries set aside on disk, oldest first.
    pub(super) aside: Option<Box<super::aside::Aside>>,
}

impl<E> Origin<E> {
    pub fn show(&self) -> String {
        let scheme = if self.key.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.key.authority)
    }
}

struct Page {
    page: Option<u64>,
    left: u32,
    /// Its entries that failed for good, when the tracker wants them.
    failures: Vec<crate::journal::Failure>,
}

pub struct State<E> {
    pub origins: Vec<Option<Origin<E>>>,
    free_origins: Vec<u32>,
    index: hashbrown::HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
    pages: Vec<Option<Page>>,
    free_pages: Vec<u32>,
    /// Entries held: queued, in flight or waiting to retry.
    pub held: usize,
    pub(super) delayed: BinaryHeap<Timed<E>>,
    pub(super) seq: u64,
    pub redirects: Redirects,
    /// Connection tasks alive on this core.
    pub conns: u32,
    wanting: VecDeque<u32>,
    /// Origins its gate refused a connection, to try again.
    gated: Vec<u32>,
    pub input_closed: bool,
    pub local: Local,
    /// Entries set aside on disk, not counted in `held` (`super::aside`).
    pub(super) shelf: super::aside::Shelf,
}

pub struct Core<P: Plan> {
    pub sh: Arc<Shared<P>>,
    pub id: usize,
    pub st: RefCell<State<P::Entry>>,
    pub gates: Arc<Gates>,
    /// Told when the input is closed and nothing is held any more: idle
    /// and connecting lanes leave at once.
    pub done: Notify,
    max_conns: u32,
    per_host: u32,
}

impl<P: Plan> Core<P> {
    pub fn new(sh: Arc<Shared<P>>, gates: Arc<Gates>, id: usize, cores: usize) -> Core<P> {
        // `--connections` split exactly (there are never more cores than
        // it allows); `--max-per-host` rounded up, so that every core can
        // reach every host, and held to in all by the origin's gate.
        let n = cores as u32;
        let c = sh.limits.conns.max(n);
        let max_conns = c / n + u32::from((id as u32) < c % n);
        let per_host = sh.limits.per_host.div_ceil(n).max(1);
        Core {
            sh,
            id,
            done: Notify::new(),
            st: RefCell::new(State {
                origins: Vec::new(),
                free_origins: Vec::new(),
                index: hashbrown::HashTable::new(),
                hasher: Default::default(),
                pages: Vec::new(),
                free_pages: Vec::new(),
                held: 0,
                delayed: BinaryHeap::new(),
                seq: 0,
                redirects: Redirects::default(),
                conns: 0,
                wanting: VecDeque::new(),
                gated: Vec::new(),
                input_closed: false,
                local: Local::default(),
                shelf: Default::default(),
            }),
            gates,
            max_conns,
            per_host,
        }
    }

    /// Wakes the scheduler: a connection ended (here or, for an origin
    /// its gate refused, on another core), a retry was scheduled.
    pub fn wake(&self) -> &Notify {
        self.gates.wake(self.id)
    }

    /// The scheduler: feeds origins from the input, releases due retries,
    /// and ends when everything taken in is done (or the run stops).
    pub async fn run(self: Rc<Self>) {
        let tick = std::time::Duration::from_millis(100);
        loop {
            let stopping = self.sh.ctx.stopping();
            while !stopping && self.wants_input() {
                match self.sh.rx.try_recv() {
                    Ok(b) => self.admit(b),
                    Err(async_channel::TryRecvError::Empty) => break,
                    Err(async_channel::TryRecvError::Closed) => self.input_ended(),
                }
            }
            self.release_due();
            self.retry_gated();
            self.take_back();
            let (next_due, done) = {
                let st = self.st.borrow();
                let done = st.conns == 0
                    && (stopping || (st.input_closed && st.held == 0 && st.shelf.count == 0));
                (st.delayed.peek().map(|t| t.at), done)
            };
            if done {
                break;
            }
            let recv = !stopping && self.wants_input();
            // Not taking input though there is more (a full frontier, or
            // held back for the other cores to catch up): look again soon,
            // as the backlogs drain.
            let tick = if !recv && !stopping && !self.st.borrow().input_closed {
                std::time::Duration::from_millis(10)
            } else {
                tick
            };
            let due = next_due.unwrap_or_else(|| Instant::now() + tick);
            tokio::select! {
                _ = self.wake().notified() => {}
                _ = tokio::time::sleep_until(due.min(Instant::now() + tick)) => {}
                r = self.sh.rx.recv(), if recv => match r {
                    Ok(b) => self.admit(b),
                    Err(_) => self.input_ended(),
                },
            }
        }
        let mut st = self.st.borrow_mut();
        st.local.publish(&self.sh.ctx.counters);
        for o in st.origins.iter().flatten() {
            self.board(o, false);
        }
    }

    /// The run's input has no more batches.
    fn input_ended(&self) {
        let st = &mut *self.st.borrow_mut();
        st.input_closed = true;
        self.tell_lanes_if_done(st);
    }

    fn wants_input(&self) -> bool {
        let st = &mut *self.st.borrow_mut();
        !st.input_closed
            && (!Self::full(st) || self.may_set_aside(st))
            && self.gates.may_take(self.id, st.held)
    }

    /// The frontier holds all it may (entries, and origins by weight).
    pub(super) fn full(st: &State<P::Entry>) -> bool {
        let origins = st.origins.len() - st.free_origins.len();
        st.held + origins * ORIGIN_WEIGHT >= FRONTIER
    }

    /// Takes a batch in: refused entries fail at once, present ones are
    /// skipped, the rest go to their origins.
    fn admit(self: &Rc<Self>, b: Batch<P::Entry>) {
        let st = &mut *self.st.borrow_mut();
        let n = b.entries.len() as u32;
        let page = Page {
            page: b.page,
            left: n,
            failures: Vec::new(),
        };
        let slot = slab_put(&mut st.pages, &mut st.free_pages, page);
        if n == 0 {
            self.close_page(st, slot);
        }
        for e in b.entries {
            match self.sh.plan.admit(&e, b.recheck) {
                Admit::Fetch => {
                    let h = Held {
                        e,
                        slot,
                        attempts: 0,
                        hop: 0,
                    };
                    self.take_in(st, h);
                }
                Admit::Skip => {
                    st.local.skipped += 1;
                    st.local.tick(&self.sh.ctx.counters);
                    self.page_done(st, slot);
                }
                Admit::Fail(err) => {
                    let (name, url) = (self.sh.plan.name(&e), self.sh.plan.url(&e));
                    let rec = self.sh.ctx.give_up(name, &url, &err, 0, &mut st.local);
                    self.sh.plan.gave_up(&e, &err);
                    self.page_failed(st, slot, rec);
                    self.page_done(st, slot);
                }
            }
        }
    }

    fn close_page(&self, st: &mut State<P::Entry>, slot: u32) {
        let p = st.pages[slot as usize].take().expect("open page");
        st.free_pages.push(slot);
        if let (Some(t), Some(seq)) = (&self.sh.tracker, p.page) {
            t.part_done(seq, p.failures);
        }
    }

    /// An entry of the page in `slot` failed for good: its ledger line goes
    /// with the page when the tracker keeps them (a shared job's).
    pub(super) fn page_failed(
        &self,
        st: &mut State<P::Entry>,
        slot: u32,
        rec: crate::journal::Failure,
    ) {
        if self.sh.tracker.as_ref().is_some_and(|t| t.per_page()) {
            let p = st.pages[slot as usize].as_mut().expect("open page");
            p.failures.push(rec);
        }
    }

    pub(super) fn page_done(&self, st: &mut State<P::Entry>, slot: u32) {
        let p = st.pages[slot as usize].as_mut().expect("open page");
        p.left -= 1;
        if p.left == 0 {
            self.close_page(st, slot);
        }
    }

    /// The origin an entry's next request goes to.
    pub fn origin_key<'a>(
        &'a self,
        st: &'a State<P::Entry>,
        h: &'a Held<P::Entry>,
    ) -> OriginKey<'a> {
        match st.redirects.current(h.hop) {
            Some(u) => Url::parse(u).expect("checked when followed").origin_key(),
            None => self.sh.plan.origin(&h.e),
        }
    }

    fn find_or_add(&self, st: &mut State<P::Entry>, key: OriginKey<'_>) -> u32 {
        let hash = st.hasher.hash_one((key.tls, key.authority));
        let origins = &st.origins;
        let same = |&id: &u32| {
            let o = origins[id as usize].as_ref().expect("indexed origin");
            o.key.tls == key.tls && o.key.authority == key.authority
        };
        if let Some(&id) = st.index.find(hash, same) {
            return id;
        }
        let max_depth = match self.sh.ctx.net.depth(key) {
            Some(d) => d.min(self.sh.limits.depth),
            None => self.sh.limits.depth,
        };
        let o = Origin {
            key: key.to_owned(),
            hash,
            // Room for one: most origins of a list over many hosts hold one
            // entry at a time (VecDeque::new() would make room for four).
            queue: VecDeque::with_capacity(1),
            conns: 0,
            idle: 0,
            leaving: 0,
            delayed: 0,
            ctl: Ctl::new(self.per_host, max_depth, std::time::Instant::now()),
            gate: self.gates.get(&key.to_owned()),
            notify: Rc::new(Notify::new()),
            waiting_slot: false,
            waiting_gate: false,
            files: 0,
            stalled: 0,
            aside: None,
        };
        let id = slab_put(&mut st.origins, &mut st.free_origins, o);
        let origins = &st.origins;
        st.index.insert_unique(hash, id, |&i| {
            origins[i as usize].as_ref().expect("indexed origin").hash
        });
        id
    }

    /// Puts an entry in its origin's queue (at the front to go next), and
    /// sees that the origin has connections for it.
    pub fn push(self: &Rc<Self>, st: &mut State<P::Entry>, h: Held<P::Entry>, front: bool) {
        let oid = self.origin_of(st, &h);
        self.push_to(st, oid, h, front);
    }

    /// The origin (found or added) an entry's next request goes to.
    pub(super) fn origin_of(&self, st: &mut State<P::Entry>, h: &Held<P::Entry>) -> u32 {
        let key = self.origin_key(st, h);
        // Borrow dance: the key borrows `st`, so copy what finding needs.
        let (tls, auth) = (key.tls, key.authority.to_string());
        self.find_or_add(
            st,
            OriginKey {
                tls,
                authority: &auth,
            },
        )
    }

    pub fn push_to(
        self: &Rc<Self>,
        st: &mut State<P::Entry>,
        oid: u32,
        h: Held<P::Entry>,
        front: bool,
    ) {
        let o = st.origins[oid as usize].as_mut().expect("live origin");
        if front {
            o.queue.push_front(h);
        } else {
            o.queue.push_back(h);
        }
        if o.idle > 0 {
            o.notify.notify_one();
        }
        self.ensure_conns(st, oid);
    }

    /// Starts connections for `oid` while its controller wants more and its
    /// queue holds more than those it has can take.
    pub fn ensure_conns(self: &Rc<Self>, st: &mut State<P::Entry>, oid: u32) {
        if self.sh.ctx.stopping() {
            return;
        }
        loop {
            let o = st.origins[oid as usize].as_mut().expect("live origin");
            let busy = (o.conns - o.stalled.min(o.conns)) as usize * o.ctl.depth as usize;
            if o.queue.is_empty()
                || o.conns >= o.ctl.conns + o.stalled
                || (o.conns > 0 && o.queue.len() <= busy)
            {
                return;
            }
            if st.conns >= self.max_conns {
                if !o.waiting_slot {
                    o.waiting_slot = true;
                    st.wanting.push_back(oid);
                }
                return;
            }
            if !self.gates.try_open(&o.gate, self.id) {
                if !o.waiting_gate {
                    o.waiting_gate = true;
                    st.gated.push(oid);
                }
                return;
            }
            o.conns += 1;
            st.conns += 1;
            tokio::task::spawn_local(super::lane::run(self.clone(), oid));
        }
    }

    /// True while other origins wait for a connection slot on this core.
    pub fn slots_wanted(st: &State<P::Entry>) -> bool {
        !st.wanting.is_empty()
    }

    /// Origins refused by their gate look again (it may have risen, or a
    /// connection closed on another core).
    fn retry_gated(self: &Rc<Self>) {
        let st = &mut *self.st.borrow_mut();
        if st.gated.is_empty() {
            return;
        }
        for oid in std::mem::take(&mut st.gated) {
            if let Some(o) = st.origins[oid as usize].as_mut() {
                o.waiting_gate = false;
                self.ensure_conns(st, oid);
                self.maybe_drop(st, oid);
            }
        }
    }

    /// A connection of `oid` ended (`left`: over its gate's ceiling): its
    /// slot goes to an origin waiting for one.
    pub fn lane_ended(self: &Rc<Self>, st: &mut State<P::Entry>, oid: u32, left: bool) {
        let o = st.origins[oid as usize].as_mut().expect("live origin");
        self.gates.close(&o.gate, left);
        o.conns -= 1;
        st.conns -= 1;
        // Its own queue first (a connection that was retired or failed).
        self.ensure_conns(st, oid);
        while st.conns < self.max_conns {
            let Some(w) = st.wanting.pop_front() else {
                break;
            };
            if let Some(o) = st.origins[w as usize].as_mut() {
                o.waiting_slot = false;
                self.ensure_conns(st, w);
            }
        }
        self.maybe_drop(st, oid);
        self.wake().notify_one();
    }

    /// Forgets an origin with nothing left to do on this core.
    fn maybe_drop(&self, st: &mut State<P::Entry>, oid: u32) {
        let o = st.origins[oid as usize].as_ref().expect("live origin");
        if o.conns > 0
            || !o.queue.is_empty()
            || o.delayed > 0
            || o.waiting_slot
            || o.waiting_gate
            || o.aside.is_some()
        {
            return;
        }
        self.board(o, false);
        let hash = o.hash;
        if let Ok(e) = st.index.find_entry(hash, |&i| i == oid) {
            e.remove();
        }
        let o = st.origins[oid as usize].take().expect("live origin");
        st.free_origins.push(oid);
        self.gates.put(&o.key, o.gate);
    }

    /// Carries out what the origin's judge ruled beyond the gate: a line
    /// on stderr (once per kind), the verdict on the board.
    pub fn rule(&self, o: &Origin<P::Entry>, r: super::judge::Ruling) {
        if let Some(said) = r.say
            && !self.sh.ctx.quiet
        {
            eprintln!("bulkget: {}", said.line(&o.show()));
        }
        if r.show {
            let (v, faults) = self.gates.verdict(&o.gate);
            let judged = crate::progress::Judged {
                verdict: v.describe(),
                faults,
                quiet: matches!(v, super::judge::Verdict::Clear),
            };
            if let Ok(mut b) = self.sh.ctx.counters.origins.lock() {
                b.judged(&o.show(), judged);
            }
        }
    }

    /// Publishes an origin's figures for the live line and the stats.
    pub fn board(&self, o: &Origin<P::Entry>, busy: bool) {
        let seat = Seat {
            conns: o.ctl.conns,
            depth: o.ctl.depth,
            files: o.files,
            busy,
        };
        if let Ok(mut b) = self.sh.ctx.counters.origins.lock() {
            b.set(&o.show(), self.id, seat);
        }
    }
}

/// Puts `v` in a free slot of a slab (or a new one) and returns its index.
fn slab_put<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, v: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slots[i as usize] = Some(v);
            i
        }
        None => {
            slots.push(Some(v));
            slots.len() as u32 - 1
        }
    }
}
