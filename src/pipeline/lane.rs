//! One connection task: a long-lived connection to one origin that takes
//! entries from its origin's queue in bunches (up to the depth the origin's
//! controller allows), keeps them in flight (pipelined HTTP/1.1 or HTTP/2
//! streams), and hands each answer to the plan. It tells the controller
//! how long each answer took, and leaves when the controller wants fewer
//! connections, when its origin has no work and another origin wants the
//! slot, or after idling a while.

use std::rc::Rc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::core::{Core, Held, State};
use super::gate::Drain;
use super::{Landed, Plan};
use crate::error::FetchError;
use crate::fetch::Conn;
use crate::fetch::linger::Flight;
use crate::fetch::url::{self, Url};

/// How long a connection with nothing to do waits for more.
const LINGER: Duration = Duration::from_secs(2);

/// What came of reading one answer.
enum Answered {
    Done(Landed, bool),
    Failed(FetchError, bool),
    /// No answer came at all: the connection ended before its head.
    Lost(FetchError),
    /// Go to this URL instead (already joined); the bool as above.
    Redirect(String, bool),
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

enum Next {
    Work,
    Idle,
    Leave,
}

pub async fn run<P: Plan>(core: Rc<Core<P>>, oid: u32) {
    let sh = core.sh.clone();
    let (key, notify, gate) = {
        let st = core.st.borrow();
        let o = st.origins[oid as usize].as_ref().expect("live origin");
        (o.key.clone(), o.notify.clone(), o.gate.clone())
    };
    let mut conn: Option<Conn> = None;
    let mut inflight: Flight<(Held<P::Entry>, Instant)> = Flight::new();
    let mut handed = JoinSet::new();
    let mut served = 0u32;
    let mut idle_since: Option<Instant> = None;
    // Set when the controller wants fewer connections and this one goes:
    // it sends nothing more, and leaves once its answers are in.
    let mut leaving = false;
    // Set when it leaves because its origin has more connections on all
    // cores than the origin's gate now allows.
    let mut left_gate = false;
    // This lane's one request in flight is a probe of the origin's latency
    // floor while it drains ([`super::gate::Gates::floor_probe`]).
    let mut probe = false;
    loop {
        if probe && inflight.is_empty() {
            // Its answer never came (the connection went): the slot is free.
            probe = false;
            core.gates.probe_answered(&gate, None);
        }
        let stopping = sh.ctx.stopping();
        if inflight.is_empty() {
            if stopping {
                break;
            }
            if let Some(wait) = core.gates.pause_left(&gate) {
                tokio::time::sleep(wait).await;
            }
            // One handed-on file at a time per connection: wait for it first.
            if !handed.is_empty() {
                let _ = handed.join_next().await;
            }
            let next = {
                let st = core.st.borrow();
                let o = st.origins[oid as usize].as_ref().expect("live origin");
                if leaving {
                    Next::Leave
                } else if !o.queue.is_empty() {
                    Next::Work
                } else if Core::<P>::slots_wanted(&st) || (st.input_closed && st.held == 0) {
                    Next::Leave
                } else {
                    Next::Idle
                }
            };
            match next {
                Next::Leave => break,
                Next::Work => idle_since = None,
                Next::Idle => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= LINGER {
                        break;
                    }
                    origin(&mut core.st.borrow_mut(), oid).idle += 1;
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = core.done.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    origin(&mut core.st.borrow_mut(), oid).idle -= 1;
                    continue;
                }
            }
        }
        // Top the pipeline up in bunches (half a window at least) so one
        // write carries many requests.
        let window = {
            let mut st = core.st.borrow_mut();
            let o = origin(&mut st, oid);
            if !leaving {
                if o.conns - o.leaving > o.ctl.conns + o.stalled {
                    leaving = true;
                } else if core.gates.over(&o.gate) {
                    (leaving, left_gate) = (true, true);
                }
                if leaving {
                    o.leaving += 1;
                }
            }
            (o.ctl.depth as usize).max(1)
        };
        // Set when the origin's pace holds the next request back this long.
        let mut paced = None;
        if !stopping && !leaving && inflight.len() <= window / 2 {
            if conn.is_none() {
                // Nothing left for this core while it connects: leave.
                let made = tokio::select! {
                    r = sh.ctx.net.connect(key.borrow()) => r,
                    _ = core.done.notified() => break,
                };
                match made {
                    Ok(c) => {
                        served = 0;
                        if c.is_h2() {
                            origin(&mut core.st.borrow_mut(), oid).ctl.multiplexed();
                        }
                        conn = Some(c);
                    }
                    Err(e) => {
                        // The next entry takes the blame; with none left, leave.
                        let st = &mut *core.st.borrow_mut();
                        match origin(st, oid).queue.pop_front() {
                            Some(h) => core.failed(st, oid, h, &e),
                            None => break,
                        }
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected");
            let sent = {
                let st = &mut *core.st.borrow_mut();
                let mut sent = 0;
                while inflight.len() < window {
                    if origin(st, oid).queue.is_empty() {
                        break;
                    }
                    // A pause holds pipelined lanes too, not only idle ones.
                    if let Some(wait) = core.gates.pause_left(&gate) {
                        paced = Some(wait);
                        break;
                    }
                    match core.gates.drain(&gate, inflight.is_empty() && !probe) {
                        Drain::Open => {}
                        Drain::Probe => probe = true,
                        Drain::Wait(wait) => {
                            paced = Some(wait);
                            break;
                        }
                    }
                    if let Some(wait) = core.gates.pace(&gate) {
                        paced = Some(wait);
                        break;
                    }
                    let Some(h) = origin(st, oid).queue.pop_front() else {
                        break;
                    };
                    match request(&core, st, c, &h) {
                        Ok(()) => {
                            inflight.push_back((h, Instant::now()));
                            sent += 1;
                        }
                        Err(e) => core.failed(st, oid, h, &e),
                    }
                }
                sent
            };
            if sent > 0 {
                if let Err(e) = c.flush().await {
                    conn = None;
                    let st = &mut *core.st.borrow_mut();
                    if !(served > 0 && e.is_connection_end()) {
                        // The head request takes the blame, the rest go again.
                        if let Some((h, _)) = inflight.pop_front() {
                            core.failed(st, oid, h, &e);
                        }
                    }
                    requeue(&core, st, oid, &mut inflight);
                    continue;
                }
                // The clock starts when the bunch is on its way.
                let now = Instant::now();
                for (_, t) in inflight.iter_mut().rev().take(sent) {
                    *t = now;
                }
            }
        }
        if inflight.is_empty() {
            if let Some(wait) = paced {
                tokio::time::sleep(wait).await;
            }
            continue;
        }
        let c = conn
            .as_mut()
            .expect("connected while requests are in flight");
        // While some answers of the origin stall and most do not, a
        // connection waiting long for an answer's head counts as stalled,
        // and another may open to carry the rest of the queue. (When all
        // answers are late they queue: more connections would not help.)
        // A head already read (pipelined answers usually are) arms no timer.
        let head = {
            let read = c.read_head();
            tokio::pin!(read);
            let stall_after = || {
                let st = core.st.borrow();
                let ctl = &st.origins[oid as usize].as_ref().expect("live origin").ctl;
                ctl.stalling().then(|| ctl.stall_after())
            };
            if let Some(h) = read.as_mut().now_or_never() {
                h
            } else if let Some(stall_after) = stall_after() {
                tokio::select! {
                h = &mut read => h,
                _ = tokio::time::sleep(stall_after) => {
                    {
                        let st = &mut *core.st.borrow_mut();
                        origin(st, oid).stalled += 1;
                        core.ensure_conns(st, oid);
                    }
                    let h = read.await;
                    origin(&mut core.st.borrow_mut(), oid).stalled -= 1;
                    h
                }
                }
            } else {
                read.await
            }
        };
        let answered = answer(&core, c, head, &inflight[0].0, &mut handed).await;
        let h2_alive = c.survives_stream_error();
        let is_h2 = c.is_h2();
        let (h, sent_at) = inflight.pop_front().expect("in flight");
        let now = Instant::now();
        if std::mem::take(&mut probe) {
            let ok = matches!(answered, Answered::Done(..));
            core.gates.probe_answered(&gate, ok.then(|| now - sent_at));
        }
        let st = &mut *core.st.borrow_mut();
        let judge = |st: &mut State<P::Entry>| {
            let o = origin(st, oid);
            if o.ctl
                .answered(now.into_std(), now - sent_at, &o.gate.answers)
            {
                core.board(o, true);
                core.ensure_conns(st, oid);
            }
            let o = origin(st, oid);
            if o.ctl.floor_due {
                let dur = o.ctl.drain_for();
                if let Some(f) = core.gates.floor_probe(&o.gate, &mut o.ctl.drains_seen, dur) {
                    o.ctl.measured_floor(f, now.into_std());
                }
            }
            let o = origin(st, oid);
            if let Some(r) = core.gates.tick(&o.gate, now.into_std()) {
                core.rule(o, r);
            }
        };
        let keep = match answered {
            Answered::Done(Landed::Again, keep) => {
                core.push_to(st, oid, h, true);
                keep
            }
            Answered::Done(l, keep) => {
                served += 1;
                judge(st);
                let bytes = match l {
                    Landed::Bytes(b) => Some(b),
                    Landed::Handed | Landed::Again => None,
                };
                core.landed(st, oid, h, bytes);
                keep
            }
            Answered::Lost(e) if served > 0 && !is_h2 && e.is_connection_end() => {
                // The server answered and then closed with this request
                // unanswered: not the file's fault. A server that does not
                // pipeline gets one request at a time from now on.
                let now_stops = sh.ctx.net.ended_unanswered(key.borrow(), served);
                let o = origin(st, oid);
                if o.ctl.depth > 1 && (now_stops || sh.ctx.net.depth(key.borrow()).is_some()) {
                    o.ctl.cap_depth(1);
                    core.board(o, true);
                }
                if now_stops && !sh.ctx.quiet {
                    let scheme = if key.tls { "https" } else { "http" };
                    eprintln!(
                        "bulkget: {scheme}://{} closed connections right after their first answer, with more requests unanswered; sending it one request at a time",
                        key.authority
                    );
                }
                core.push_to(st, oid, h, true);
                false
            }
            Answered::Lost(e) => {
                core.failed(st, oid, h, &e);
                h2_alive
            }
            Answered::Failed(e, keep) => {
                // A fault counts with the origin's judge, not as an answer.
                if e.fault().is_none() {
                    judge(st);
                }
                core.failed(st, oid, h, &e);
                keep || h2_alive
            }
            Answered::Redirect(to, keep) => {
                judge(st);
                let max = sh.ctx.max_redirs;
                let plan = &sh.plan;
                match st.redirects.follow(h.hop, || plan.url(&h.e), to, max) {
                    Ok(hop) => core.push(st, Held { hop, ..h }, false),
                    Err(e) => core.failed(st, oid, h, &e),
                }
                keep
            }
        };
        if !keep {
            conn = None;
            requeue(&core, st, oid, &mut inflight);
        }
    }
    drop(conn);
    if probe {
        core.gates.probe_answered(&gate, None);
    }
    while handed.join_next().await.is_some() {}
    let st = &mut *core.st.borrow_mut();
    requeue(&core, st, oid, &mut inflight);
    if leaving {
        origin(st, oid).leaving -= 1;
    }
    core.lane_ended(st, oid, left_gate);
}

fn origin<E>(st: &mut State<E>, oid: u32) -> &mut super::core::Origin<E> {
    st.origins[oid as usize].as_mut().expect("live origin")
}

/// Puts requests that were in flight back at the front of their origin's
/// queue, in their order.
fn requeue<P: Plan>(
    core: &Rc<Core<P>>,
    st: &mut State<P::Entry>,
    oid: u32,
    inflight: &mut Flight<(Held<P::Entry>, Instant)>,
) {
    while let Some((h, _)) = inflight.pop_back() {
        core.push_to(st, oid, h, true);
    }
}

/// Queues the entry's request on `c`.
fn request<P: Plan>(
    core: &Core<P>,
    st: &State<P::Entry>,
    c: &mut Conn,
    h: &Held<P::Entry>,
) -> Result<(), FetchError> {
    let plan = &core.sh.plan;
    let (range, m) = (plan.range(&h.e), plan.method(&h.e));
    match st.redirects.current(h.hop) {
        Some(u) => {
            let u = Url::parse(u).expect("checked when followed");
            c.request(m, u.authority, |o| u.push_path(o), range, None)
        }
        None => {
            let key = plan.origin(&h.e);
            let more = plan.headers(&h.e);
            c.request(
                m,
                key.authority,
                |o| plan.path(o, &h.e),
                range,
                more.as_deref(),
            )
        }
    }
}

/// Reads one answer: a redirect is drained and its target joined here,
/// anything else goes to the plan.
async fn answer<P: Plan>(
    core: &Rc<Core<P>>,
    c: &mut Conn,
    head: Result<crate::fetch::http1::Head, FetchError>,
    h: &Held<P::Entry>,
    handed: &mut JoinSet<()>,
) -> Answered {
    let head = match head {
        Ok(h) => h,
        Err(e) => return Answered::Lost(e),
    };
    let sh = &core.sh;
    let at = core
        .st
        .borrow()
        .redirects
        .current(h.hop)
        .map(str::to_string);
    if is_redirect(head.status)
        && let Some(loc) = head.location.as_deref()
    {
        let base = at.unwrap_or_else(|| sh.plan.url(&h.e));
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
    match sh
        .plan
        .answer(sh, c, &head, &h.e, at.as_deref(), handed)
        .await
    {
        Ok((l, keep)) => Answered::Done(l, keep),
        Err((e, keep)) => Answered::Failed(e, keep),
    }
}
