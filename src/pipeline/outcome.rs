//! What comes of an entry on a core: it landed, it failed and waits in the
//! core's timer heap to be tried again (push-back also cuts the origin's
//! gate and controller), or it is given up and recorded. Once the input is
//! closed and nothing is held, the core's idle lanes are told to leave.

use std::cmp::Ordering;
use std::rc::Rc;

use tokio::time::Instant;

use super::Plan;
use super::core::{Core, Held, State};
use crate::error::FetchError;

/// A retry waiting for its time, in the core's timer heap.
pub(super) struct Timed<E> {
    pub(super) at: Instant,
    seq: u64,
    oid: u32,
    item: Held<E>,
}

impl<E> PartialEq for Timed<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Timed<E> {}
impl<E> PartialOrd for Timed<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Timed<E> {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

impl<P: Plan> Core<P> {
    /// Moves retries that are due back to their origins.
    pub(super) fn release_due(self: &Rc<Self>) {
        let now = Instant::now();
        let st = &mut *self.st.borrow_mut();
        while st.delayed.peek().is_some_and(|t| t.at <= now) {
            let t = st.delayed.pop().expect("peeked");
            st.origins[t.oid as usize]
                .as_mut()
                .expect("live origin")
                .delayed -= 1;
            self.push_to(st, t.oid, t.item, false);
        }
    }

    /// An entry is done for this run (landed, handed on, or failed for good).
    pub fn finish(&self, st: &mut State<P::Entry>, h: Held<P::Entry>) {
        st.redirects.free(h.hop);
        st.held -= 1;
        self.page_done(st, h.slot);
        self.tell_lanes_if_done(st);
    }

    /// Once the input is closed and nothing is held, the lanes still idle
    /// or connecting are told to leave now. Before, an idle one noticed at
    /// its next look, up to 100 ms later, and a connecting one when its
    /// connection was made, a second later when the server's accept queue
    /// had dropped its SYN: 0.1–0.36 s at the end of a 1 s run.
    pub(super) fn tell_lanes_if_done(&self, st: &State<P::Entry>) {
        if st.input_closed && st.held == 0 {
            self.done.notify_waiters();
        }
    }

    pub fn landed(
        &self,
        st: &mut State<P::Entry>,
        oid: u32,
        h: Held<P::Entry>,
        bytes: Option<u64>,
    ) {
        if let Some(bytes) = bytes {
            st.local.done += 1;
            st.local.bytes += bytes;
            st.local.tick(&self.sh.ctx.counters);
        }
        if let Some(o) = st.origins[oid as usize].as_mut() {
            o.files += 1;
        }
        self.finish(st, h);
    }

    pub fn fail_for_good(&self, st: &mut State<P::Entry>, h: Held<P::Entry>, err: &FetchError) {
        let (name, url) = (self.sh.plan.name(&h.e), self.sh.plan.url(&h.e));
        let rec = self
            .sh
            .ctx
            .give_up(name, &url, err, h.attempts, &mut st.local);
        self.sh.plan.gave_up(&h.e, err);
        self.page_failed(st, h.slot, rec);
        self.finish(st, h);
    }

    /// This attempt of `h` (sent to `oid`) failed: another later, or give up.
    pub fn failed(
        self: &Rc<Self>,
        st: &mut State<P::Entry>,
        oid: u32,
        mut h: Held<P::Entry>,
        err: &FetchError,
    ) {
        if err.is_fatal() {
            // Not this file's fault (the disk is full): stop the run and leave
            // the file unfinished, so its page stays open for the rerun.
            let name = self.sh.plan.name(&h.e);
            self.sh.ctx.fatal(format!("writing {name:?}: {err}"));
            return;
        }
        let noise = {
            let o = st.origins[oid as usize].as_ref().expect("live origin");
            if let Some(f) = err.fault() {
                let r = self.gates.fault(&o.gate, f, err.retry_after());
                self.rule(o, r);
            }
            o.gate.noise()
        };
        h.attempts += 1;
        st.seq += 1;
        let salt = (self.id as u64)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(st.seq);
        match self
            .sh
            .ctx
            .retry_after(err, h.attempts, salt, &mut st.local, noise)
        {
            Some(wait) => {
                st.origins[oid as usize]
                    .as_mut()
                    .expect("live origin")
                    .delayed += 1;
                let seq = st.seq;
                st.delayed.push(Timed {
                    at: Instant::now() + wait,
                    seq,
                    oid,
                    item: h,
                });
                self.wake().notify_one();
            }
            None => self.fail_for_good(st, h, err),
        }
    }
}
