//! `bulkget status ADDRESS`: a shared job's figures (`mirror --queue`), as
//! text, as one JSON object (`--json`), redrawn each second (`--watch`);
//! the job's failure ledger (`--failures`); its keys removed (`--forget`).

use std::io::Write;
use std::time::{Duration, SystemTime};

use clap::Args;

use super::{CliError, Result, bail};
use crate::queue::{Address, Queue, Status, Worker};

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The job: redis://HOST:PORT/JOB, rediss://…, unix:///SOCKET#JOB, or JOB with REDIS_URL.
    job: String,
    /// One JSON object: listed, landed, failed, queued, in_progress, done, rate, eta_s, workers, …
    #[arg(long, conflicts_with_all = ["watch", "failures", "forget"])]
    json: bool,
    /// Redraw the figures each second until the job is done (Ctrl-C to leave).
    #[arg(long, conflicts_with_all = ["failures", "forget"])]
    watch: bool,
    /// Print the job's failure ledger (one JSON line per file, as failures.jsonl).
    #[arg(long, conflicts_with = "forget")]
    failures: bool,
    /// Remove the job's state from Redis (a rerun then starts it afresh).
    #[arg(long)]
    forget: bool,
    /// Seconds to reach Redis before giving up.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// For rediss://: trust the CA certificates in this PEM file instead of the platform's (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<std::path::PathBuf>,
}

/// The job's figures with its workers', as `--json` gives them.
#[derive(serde::Serialize)]
struct Report {
    job: String,
    source: Option<String>,
    listed: u64,
    landed: u64,
    failed: u64,
    /// Pages not yet acknowledged (waiting or in progress).
    queued: u64,
    in_progress: u64,
    listing_done: bool,
    done: bool,
    error: Option<String>,
    /// Files/s over the last minute, all workers.
    rate: f64,
    /// Seconds left at that rate, for what is listed so far.
    eta_s: Option<f64>,
    workers: Vec<WorkerReport>,
}

#[derive(serde::Serialize)]
struct WorkerReport {
    name: String,
    /// Seconds since its last heartbeat.
    heartbeat_age_s: f64,
    landed: u64,
    rate: f64,
    /// Pages it holds now (from Redis' pending list).
    in_progress: u64,
    ended: bool,
}

/// A worker silent this long no longer counts in the rate.
const SILENT: Duration = Duration::from_secs(10);

fn report(a: &Address, st: Status, workers: Vec<Worker>, pending: Vec<(String, u64)>) -> Report {
    let now_ms = crate::journal::epoch_ns(SystemTime::now()) / 1_000_000;
    let workers: Vec<WorkerReport> = workers
        .into_iter()
        .map(|w| {
            let age = now_ms.saturating_sub(w.beat_ms) as f64 / 1000.0;
            WorkerReport {
                in_progress: pending
                    .iter()
                    .find(|(n, _)| *n == w.name)
                    .map_or(0, |p| p.1),
                heartbeat_age_s: age,
                landed: w.landed,
                rate: if w.ended || age > SILENT.as_secs_f64() {
                    0.0
                } else {
                    w.rate
                },
                ended: w.ended,
                name: w.name,
            }
        })
        .collect();
    let rate: f64 = workers.iter().map(|w| w.rate).sum();
    let left = st.listed.saturating_sub(st.landed + st.failed);
    Report {
        job: a.shown.clone(),
        done: st.done(),
        eta_s: (rate > 0.0 && !st.done()).then(|| left as f64 / rate),
        source: st.source,
        listed: st.listed,
        landed: st.landed,
        failed: st.failed,
        queued: st.queued,
        in_progress: st.in_progress,
        listing_done: st.listing_done,
        error: st.error,
        rate,
        workers,
    }
}

fn render(r: &Report) -> String {
    let mut s = format!(
        "job {}{}\n",
        r.job,
        r.source
            .as_deref()
            .map_or(String::new(), |u| format!(": a mirror of {u}"))
    );
    s += &format!(
        "  listed {}{}, landed {}, failed {}\n  pages queued {} ({} in progress)\n",
        r.listed,
        if r.listing_done {
            " (listing done)"
        } else {
            " so far"
        },
        r.landed,
        r.failed,
        r.queued,
        r.in_progress
    );
    s += &format!(
        "  {:.0} files/s over the last minute{}\n",
        r.rate,
        r.eta_s
            .map_or(String::new(), |e| format!(", ETA {:.0} s", e.ceil()))
    );
    if let Some(e) = &r.error {
        s += &format!("  stopped: {e}\n");
    }
    s += &format!(
        "  {}\n",
        if r.done {
            if r.failed > 0 {
                "done, with failures (--failures lists them)"
            } else {
                "done: every listed file landed"
            }
        } else {
            "not done"
        }
    );
    if !r.workers.is_empty() {
        s += "  workers:\n";
        for w in &r.workers {
            s += &format!(
                "    {:<24} {:>6} pages  {:>10} landed  {:>8.0} files/s  heartbeat {:.1} s ago{}\n",
                w.name,
                w.in_progress,
                w.landed,
                w.rate,
                w.heartbeat_age_s,
                if w.ended { " (ended)" } else { "" }
            );
        }
    }
    s
}

fn look(q: &mut Queue, a: &Address) -> Result<Report> {
    let st = q.status().map_err(crate::error::RunError::from)?;
    let workers = q.workers().map_err(crate::error::RunError::from)?;
    let pending = q.in_progress().map_err(crate::error::RunError::from)?;
    Ok(report(a, st, workers, pending))
}

pub(crate) fn status(a: StatusArgs) -> Result<u8> {
    let env = std::env::var("REDIS_URL").ok();
    let mut addr =
        Address::parse(&a.job, env.as_deref()).map_err(|e| CliError::Usage(e.to_string()))?;
    addr.trust(&a.cacert)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if a.connect_timeout.is_nan() || a.connect_timeout <= 0.0 || a.connect_timeout > 1e6 {
        bail!("--connect-timeout must be a positive number of seconds");
    }
    let mut q = Queue::connect(&addr, Duration::from_secs_f64(a.connect_timeout))
        .map_err(crate::error::RunError::from)?;
    let known = q.exists().map_err(crate::error::RunError::from)?;
    if a.forget {
        let n = q.forget().map_err(crate::error::RunError::from)?;
        if !super::embedded() {
            eprintln!("bulkget: forgot the job {} ({n} keys removed)", addr.shown);
        }
        return Ok(0);
    }
    if !known {
        bail!("no job {} (never started, or forgotten)", addr.shown);
    }
    let out = std::io::stdout();
    if a.failures {
        let mut after = "-".to_string();
        let mut o = out.lock();
        loop {
            let (lines, last) = q
                .failures(&after, 1000)
                .map_err(crate::error::RunError::from)?;
            for l in &lines {
                writeln!(o, "{l}").map_err(|e| CliError::Io("writing the failures".into(), e))?;
            }
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        return Ok(0);
    }
    if a.json {
        let r = look(&mut q, &addr)?;
        let mut o = out.lock();
        serde_json::to_writer(&mut o, &r)?;
        writeln!(o).map_err(|e| CliError::Io("writing the status".into(), e))?;
        return Ok(0);
    }
    let tty = std::io::IsTerminal::is_terminal(&out);
    loop {
        let r = look(&mut q, &addr)?;
        let text = render(&r);
        {
            let mut o = out.lock();
            if a.watch && tty {
                // Home and clear: redraw in place.
                let _ = write!(o, "\x1b[H\x1b[2J");
            }
            write!(o, "{text}").map_err(|e| CliError::Io("writing the status".into(), e))?;
            let _ = o.flush();
        }
        if !a.watch || r.done || r.error.is_some() || super::stopping() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
