//! A shared job's lister ([`super::job::run`] starts one in every
//! process): while it holds the lease, one page of its [`Source`] and one
//! Redis round trip (the enqueue, which renews the lease) a page; the
//! queue's length is looked at every few pages, and listing pauses while
//! `--ahead` pages wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::job::{QueueConfig, Source};
use super::{Enqueued, Queue};
use crate::error::RunError;
use crate::progress::Counters;

/// Lists the source into the queue while this process holds the lease.
pub(super) struct Lister<'a> {
    pub qc: &'a QueueConfig,
    pub stop: &'a AtomicBool,
    pub end: &'a AtomicBool,
    pub counters: &'a Counters,
}

impl Lister<'_> {
    fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.end.load(Ordering::Relaxed)
    }

    /// Waits `d`, or less once the run is over.
    fn nap(&self, d: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < d && !self.over() {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    /// While it holds the lease: one listing page and one Redis round trip
    /// (the enqueue, which renews the lease) a page; the queue's length
    /// is looked at every few pages.
    pub fn run(&self, q: &mut Queue, mut source: impl Source) -> Result<(), RunError> {
        let (me, lease_ms) = (self.qc.worker.as_str(), self.qc.lease_ms());
        // Where listing goes on, while this lister holds the lease.
        let mut cursor: Option<Option<String>> = None;
        let every = (self.qc.ahead / 8).clamp(1, 16);
        let mut since_look = u64::MAX;
        let mut cycle = crate::listing::Cycle::default();
        loop {
            if self.over() {
                return Ok(());
            }
            let Some(from) = cursor.clone() else {
                let (c, done) = q.cursor()?;
                if done {
                    return Ok(());
                }
                if q.lease(me, lease_ms)? {
                    cursor = Some(c);
                } else {
                    self.nap((self.qc.lease / 4).min(Duration::from_secs(1)));
                }
                continue;
            };
            if since_look >= every {
                let st = q.status()?;
                if st.error.is_some() || st.listing_done {
                    return Ok(());
                }
                if st.waiting() >= self.qc.ahead {
                    // Enough waits in Redis: hold the lease, list later.
                    if !q.lease(me, lease_ms)? {
                        cursor = None;
                    }
                    self.nap(Duration::from_millis(50));
                    continue;
                }
                since_look = 0;
            }
            let (names, next) = match source.page(from.as_deref()) {
                Ok(p) => p,
                Err(_) if self.over() => return Ok(()),
                Err(e) => return Err(e),
            };
            let next = next.filter(|m| !m.is_empty());
            if let Some(m) = &next
                && cycle.repeats(from.as_deref(), m)
            {
                return Err(RunError::ListLoop {
                    url: source.shown(),
                    marker: m.clone(),
                });
            }
            let chunks: Vec<&[String]> = names.chunks(self.qc.page.max(1)).collect();
            let r = q.enqueue(
                me,
                from.as_deref().unwrap_or(""),
                &chunks,
                next.as_deref(),
                lease_ms,
            )?;
            match r {
                Enqueued::Done => {
                    self.counters
                        .listed
                        .fetch_add(names.len() as u64, Ordering::Relaxed);
                    if next.is_none() {
                        return Ok(());
                    }
                    cursor = Some(next);
                    since_look = since_look.saturating_add(1);
                }
                // Another lists now, or Redis lost its last writes: read
                // the cursor again.
                Enqueued::NotHolder | Enqueued::Moved => cursor = None,
            }
        }
    }
}
