//! The input side of `get`: jobs from the command line, a list, or a
//! store's listing pages, handed to the cores in batches ([`Feeder`]).

use std::io::{self, BufRead};
use std::sync::atomic::Ordering;

use super::GetPlan;
use super::input::{self, Job};
use crate::error::{FetchError, RunError};
use crate::pipeline::{Batch, Shared};
use crate::progress::Local;

/// Hands jobs to the workers in batches; refused inputs go straight to
/// the ledger. Batches start small, so that a short list still reaches
/// every core, and grow to [`Feeder::BATCH`], so that a long one costs few
/// hand-overs.
pub struct Feeder<'a> {
    sh: &'a Shared<GetPlan>,
    tx: async_channel::Sender<Batch<Job>>,
    batch: Vec<Job>,
    size: usize,
    local: Local,
}

impl<'a> Feeder<'a> {
    const BATCH: usize = 64;

    pub fn new(sh: &'a Shared<GetPlan>, tx: async_channel::Sender<Batch<Job>>) -> Feeder<'a> {
        Feeder {
            sh,
            tx,
            batch: Vec::with_capacity(Self::BATCH),
            size: 4,
            local: Local::default(),
        }
    }

    pub fn stopping(&self) -> bool {
        self.sh.ctx.stopping()
    }

    /// Passes a job on; false once the workers are gone.
    pub fn push(&mut self, j: Job) -> bool {
        self.batch.push(j);
        if self.batch.len() >= self.size {
            self.size = (self.size * 2).min(Self::BATCH);
            return self.send();
        }
        true
    }

    fn send(&mut self) -> bool {
        let b = std::mem::replace(&mut self.batch, Vec::with_capacity(Self::BATCH));
        self.send_batch(None, b)
    }

    fn send_batch(&self, page: Option<u64>, entries: Vec<Job>) -> bool {
        self.sh
            .ctx
            .counters
            .listed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        self.tx
            .send_blocking(Batch {
                page,
                entries,
                recheck: None,
            })
            .is_ok()
    }

    /// Passes on one listing page's jobs in batches tied to page `seq`
    /// (for the resume tracker); `listed(parts)` is called with the number
    /// of batches before the first goes. False once the workers are gone.
    pub fn page(&mut self, seq: u64, jobs: Vec<Job>, listed: impl FnOnce(u32)) -> bool {
        if !self.batch.is_empty() && !self.send() {
            return false;
        }
        let mut chunks = Vec::new();
        let mut it = jobs.into_iter().peekable();
        while it.peek().is_some() {
            let n = self.size;
            self.size = (self.size * 2).min(Self::BATCH);
            chunks.push(it.by_ref().take(n).collect::<Vec<_>>());
        }
        listed(chunks.len() as u32);
        chunks.into_iter().all(|c| self.send_batch(Some(seq), c))
    }

    /// An input refused for good: `what` names it, `text` is as given.
    pub fn bad(&mut self, what: &str, text: &str, why: String) {
        self.sh
            .ctx
            .give_up(what, text, &FetchError::Input(why), 0, &mut self.local);
    }

    /// Sends what is left (if `complete`); true when all was passed on.
    pub fn finish(mut self, complete: bool) -> bool {
        let complete = complete && (self.batch.is_empty() || self.send());
        self.local.publish(&self.sh.ctx.counters);
        complete
    }
}

/// Feeds jobs to the workers; bad lines go straight to the ledger. Ok(true)
/// when every input was passed on.
pub(super) fn read_jobs(
    sh: &Shared<GetPlan>,
    urls: Vec<String>,
    checksum: Option<String>,
    list: Option<Box<dyn BufRead + Send>>,
    mut signer: crate::store::Signer,
    tx: async_channel::Sender<Batch<Job>>,
) -> Result<bool, RunError> {
    let mut feed = Feeder::new(sh, tx);
    let mut complete = true;
    for u in &urls {
        match input::job(0, u, None, checksum.as_deref()).and_then(|j| signer.sign(j)) {
            Ok(j) => complete &= feed.push(j),
            Err(why) => feed.bad(&format!("URL {u}"), u, why),
        }
    }
    if let Some(list) = list {
        for (i, line) in list.lines().enumerate() {
            let n = i as u64 + 1;
            if !complete || feed.stopping() {
                complete = false;
                break;
            }
            let line = match line {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    feed.bad(&format!("list line {n}"), "", "not UTF-8".into());
                    continue;
                }
                Err(e) => {
                    feed.finish(false);
                    return Err(RunError::Other(format!(
                        "reading the list at line {n}: {e}"
                    )));
                }
            };
            match input::parse_line(n, &line).and_then(|j| j.map(|j| signer.sign(j)).transpose()) {
                Ok(Some(j)) => complete = feed.push(j),
                Ok(None) => {}
                Err(why) => feed.bad(&format!("list line {n}"), line.trim(), why),
            }
        }
    }
    Ok(feed.finish(complete))
}
