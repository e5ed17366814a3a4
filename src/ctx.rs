//! What every fetching task of a run shares, whatever the command: the retry
//! policy, the failure ledger, the counters, the stop
//! flag. One retry rule, one failure record, one exit-code rule for `mirror`
//! and `get`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::FetchError;
use crate::fetch::RetryPolicy;
use crate::fetch::net::Net;
use crate::journal::{Failure, Ledger};
use crate::progress::{Counters, Local};

pub struct RunCtx {
    /// Makes every connection of the run (DNS cache, proxies, TLS).
    pub net: Net,
    /// Redirects followed for one file before it fails.
    pub max_redirs: u32,
    pub ledger: Ledger,
    pub counters: Arc<Counters>,
    pub policy: RetryPolicy,
    pub stop: Arc<AtomicBool>,
    pub quiet: bool,
    fatal: Mutex<Option<String>>,
}

impl RunCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: Net,
        max_redirs: u32,
        ledger: Ledger,
        counters: Arc<Counters>,
        policy: RetryPolicy,
        stop: Arc<AtomicBool>,
        quiet: bool,
    ) -> RunCtx {
        RunCtx {
            net,
            max_redirs,
            ledger,
            counters,
            policy,
            stop,
            quiet,
            fatal: Mutex::new(None),
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Nothing more can succeed (the disk is full): stop the run.
    pub fn fatal(&self, why: String) {
        let mut f = self.fatal.lock().expect("fatal lock");
        if f.is_none() {
            *f = Some(why);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Why the run was stopped as hopeless, if it was.
    pub fn take_fatal(&self) -> Option<String> {
        self.fatal.lock().expect("fatal lock").take()
    }

    /// Attempt `attempts` failed with `err`: how long to wait before the
    /// next one, or `None` to give up. A `Retry-After` is this request's
    /// (RFC 9110: the wait before a follow-up request): the request waits
    /// at least that long, others carry on (the origin's judge decides
    /// whether the whole origin waits). `noise`: the origin's faults were
    /// judged noise, and the wait does not grow with the attempts.
    pub fn retry_after(
        &self,
        err: &FetchError,
        attempts: u32,
        salt: u64,
        local: &mut Local,
        noise: bool,
    ) -> Option<Duration> {
        if err.is_retryable() && attempts <= self.policy.retries && !err.is_fatal() {
            local.retries += 1;
            // Backing off from noise (faults that sending less does not
            // lower) only stretches the run: the first step's wait, always.
            let step = if noise { 1 } else { attempts };
            Some(self.policy.delay(step, err.retry_after(), salt))
        } else {
            None
        }
    }

    /// `name` failed for good: one line on stderr, one in the ledger, one
    /// count; the ledger's line is returned (a shared job's page carries it).
    pub fn give_up(
        &self,
        name: &str,
        url: &str,
        err: &FetchError,
        attempts: u32,
        local: &mut Local,
    ) -> Failure {
        let attempts = attempts.max(1);
        if !self.quiet {
            let s = if attempts == 1 { "" } else { "s" };
            eprintln!("bulkget: failed {name:?}: {err} (after {attempts} attempt{s})");
        }
        let rec = Failure {
            name: name.to_string(),
            url: url.to_string(),
            error: err.to_string(),
            attempts,
        };
        if let Err(e) = self.ledger.record(&rec) {
            eprintln!("bulkget: cannot record the failure of {name:?} in the ledger: {e}");
        }
        if err.is_fatal() {
            self.fatal(format!("writing {name:?}: {err}"));
        }
        local.failed += 1;
        local.tick(&self.counters);
        rec
    }
}
