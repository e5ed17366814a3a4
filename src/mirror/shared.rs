//! `mirror URL DEST --queue redis://HOST:PORT/JOB`: this process' part of
//! a mirror shared through Redis Streams ([`crate::queue::job`] runs it):
//! the list API's pages are the job's pages, each name a file.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{MirrorConfig, MirrorPlan, dest_err};
use crate::ctx::RunCtx;
use crate::error::RunError;
use crate::fetch::net::Net;
use crate::fetch::{Conn, Endpoint, RetryPolicy};
use crate::journal::{self, Flush, Ledger, Tracker};
use crate::listing::{Batch, fetch_page};
use crate::pipeline::{Plan, Shared};
use crate::progress::{Counters, Outcome};
use crate::queue::job::{self, Entries, Part, QueueConfig, Source};
use crate::sink::Sink;

impl<S: Sink> Entries for MirrorPlan<S> {
    fn entries(&self, names: Vec<String>) -> (Vec<String>, Vec<(String, String)>) {
        (names, Vec::new())
    }

    fn name_url(&self, name: &str) -> String {
        self.url(&name.to_string())
    }
}

/// The list API, a page at a time, on the lister's own connection.
struct ListApi<S: Sink> {
    sh: Arc<Shared<MirrorPlan<S>>>,
    policy: RetryPolicy,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
}

impl<S: Sink> Source for ListApi<S> {
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError> {
        let (sh, conn) = (&self.sh, &mut self.conn);
        let p = self.rt.block_on(fetch_page(
            &sh.ctx.net,
            &self.policy,
            &self.stop,
            &sh.plan.ep,
            conn,
            cursor,
        ))?;
        Ok((p.names, p.next))
    }

    fn shown(&self) -> String {
        self.sh.plan.ep.url_of("/list")
    }
}

/// Runs this process' part of the shared job `qc`.
pub(super) fn run_with<S: Sink>(
    cfg: &MirrorConfig,
    qc: &QueueConfig,
    ep: Endpoint,
    net: Net,
    sink: S,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    let quiet = cfg.display == crate::progress::Display::Quiet;
    let q = match job::join(qc, &cfg.url, quiet)? {
        Ok(q) => q,
        Err(done) => return Ok(done),
    };
    let state_dir = cfg.state_dir();
    let dest = &cfg.dest;
    let nonempty = std::fs::read_dir(dest)
        .map_err(|e| dest_err(dest, e))?
        .flatten()
        .any(|e| e.file_name() != ".bulkget");
    let durability = if sink.writes() {
        cfg.durability
    } else {
        journal::Durability::None
    };
    let flush = Flush::new(durability, &[dest.as_path(), state_dir.as_path()])
        .map_err(|e| dest_err(dest, e))?;
    let (tx, rx) = async_channel::bounded::<Batch>(8);
    // The pipeline's own stop: set only when it cannot go on (a full
    // disk). A signal stops taking pages; those in hand are finished.
    let halt = Arc::new(AtomicBool::new(false));
    let sh = Arc::new(Shared {
        plan: MirrorPlan {
            skip_existing: sink.remembers() && nonempty,
            sink,
            ep,
            trust_before: None,
        },
        tracker: Some(Tracker::per_page_tracker()),
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::new(&state_dir),
            Arc::new(Counters::default()),
            cfg.policy.clone(),
            halt,
            quiet,
        ),
        rx,
        limits: cfg.limits,
    });
    let part = Part {
        dest: dest.display().to_string(),
        flush,
        threads: cfg.threads,
        batch: cfg.batch.max(1),
        display: cfg.display,
    };
    let source = {
        let (sh, policy, stop) = (sh.clone(), cfg.policy.clone(), stop.clone());
        move || -> Result<ListApi<S>, RunError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RunError::Other(e.to_string()))?;
            Ok(ListApi {
                sh,
                policy,
                stop,
                rt,
                conn: None,
            })
        }
    };
    job::run(q, sh, qc, part, tx, source, stop)
}
