//! `get -i LIST DIR --queue redis://HOST:PORT/JOB`: this process' part of
//! a URL list shared through Redis Streams ([`crate::queue::job`] runs
//! it): the list's slices of up to 1 000 lines are the job's pages (the
//! cursor is a byte offset in the list, so every machine needs the same
//! file), each line a file fetched whole (no `--split` in a shared job: a
//! page is acknowledged only once each of its files has landed).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::input::{self, Job};
use super::{GetConfig, GetPlan, dest_err};
use crate::ctx::RunCtx;
use crate::error::RunError;
use crate::fetch::net::Net;
use crate::journal::{self, Flush, Ledger, Tracker};
use crate::pipeline::{Batch, Shared};
use crate::progress::{Counters, Display, Outcome};
use crate::queue::job::{self, Entries, Part, QueueConfig, Source};
use crate::sink::{DirSink, TarSink};

impl Entries for GetPlan {
    fn entries(&self, lines: Vec<String>) -> (Vec<Job>, Vec<(String, String)>) {
        let (mut jobs, mut bad) = (Vec::with_capacity(lines.len()), Vec::new());
        for line in lines {
            match input::parse_line(0, &line) {
                Ok(Some(j)) if crate::store::Kind::of_url(&j.url).is_some() => bad.push((
                    line,
                    "object-store URLs are not shared by --queue yet: list http(s) URLs".into(),
                )),
                Ok(Some(j)) => jobs.push(j),
                Ok(None) => {} // the lister passes no blank or comment line
                Err(why) => bad.push((line, why)),
            }
        }
        (jobs, bad)
    }

    fn name_url(&self, line: &str) -> String {
        line.split_whitespace().next().unwrap_or(line).to_string()
    }
}

/// A URL list read a slice at a time from a byte offset.
struct UrlList {
    path: PathBuf,
    file: BufReader<File>,
    pos: u64,
    page: usize,
}

impl Source for UrlList {
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError> {
        let err = |why: String| RunError::List {
            url: self.path.display().to_string(),
            why,
        };
        let at = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| err(format!("the job's cursor {c:?} is not a byte offset")))?,
        };
        if at != self.pos {
            self.file
                .seek(SeekFrom::Start(at))
                .map_err(|e| err(e.to_string()))?;
            self.pos = at;
        }
        let (mut lines, mut buf) = (Vec::new(), Vec::new());
        while lines.len() < self.page {
            buf.clear();
            let n = self
                .file
                .read_until(b'\n', &mut buf)
                .map_err(|e| err(e.to_string()))?;
            if n == 0 {
                return Ok((lines, None));
            }
            self.pos += n as u64;
            let line = String::from_utf8_lossy(&buf);
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                lines.push(t.to_string());
            }
        }
        Ok((lines, Some(self.pos.to_string())))
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

/// Runs this process' part of the shared job `qc` over `cfg.list`.
pub(super) fn run_with(
    cfg: &GetConfig,
    qc: &QueueConfig,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    let path = match &cfg.list {
        Some(p) if p.as_os_str() != "-" && cfg.urls.is_empty() && cfg.store.is_none() => p.clone(),
        _ => {
            return Err(RunError::Other(
                "--queue shares a URL list given as a file (-i FILE, the same on every machine), not URLs on the command line or standard input".into(),
            ));
        }
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| RunError::Other(format!("{}: {e}", path.display())))?
        .len();
    // What the job is of: every machine has its own copy of the list.
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let what = format!("the URL list {name} ({size} bytes)");
    let quiet = cfg.display == Display::Quiet;
    let q = match job::join(qc, &what, quiet)? {
        Ok(q) => q,
        Err(done) => return Ok(done),
    };
    let net = Net::new(cfg.net.clone())?;
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let sink = DirSink::new(&cfg.dest).map_err(|e| dest_err(&cfg.dest, e))?;
    let tar = match cfg.tar_shard {
        Some(shard) if !cfg.null_sink => {
            Some(TarSink::new(&cfg.dest, shard).map_err(|e| dest_err(&cfg.dest, e))?)
        }
        _ => None,
    };
    let durability = if cfg.null_sink {
        journal::Durability::None
    } else {
        cfg.durability
    };
    let flush = Flush::new(durability, &[cfg.dest.as_path(), state_dir.as_path()])
        .map_err(|e| dest_err(&cfg.dest, e))?;
    let (tx, rx) = async_channel::bounded::<Batch<Job>>(8);
    let sh = Arc::new(Shared {
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::new(&state_dir),
            Arc::new(Counters::default()),
            cfg.policy.clone(),
            // the pipeline's own stop: a signal stops taking pages only
            Arc::new(AtomicBool::new(false)),
            quiet,
        ),
        plan: GetPlan {
            sink: sink.no_replace(),
            tar,
            null: cfg.null_sink,
            check_existing: true,
            trust_before: None,
            parts_exist: false,
            parts_dir: cfg.dest.join(".bulkget").join("parts"),
            split: 1,
            split_size: cfg.split_size.max(1),
            started: journal::coarse_now(),
            aside: None,
            store: None,
            shared: true,
        },
        rx,
        tracker: Some(Tracker::per_page_tracker()),
        limits: cfg.limits,
    });
    let part = Part {
        dest: cfg.dest.display().to_string(),
        flush,
        threads: cfg.threads,
        batch: 500,
        display: cfg.display,
    };
    let page = qc.page.max(1);
    let source = move || -> Result<UrlList, RunError> {
        let file = File::open(&path).map_err(|e| RunError::List {
            url: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(UrlList {
            path,
            file: BufReader::new(file),
            pos: 0,
            page,
        })
    };
    job::run(q, sh, qc, part, tx, source, stop)
}
