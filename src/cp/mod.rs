//! `bulkget cp [-r] SRC DST` between local paths: a tree copied by many
//! workers at once, every file written atomically, a rerun copying only
//! what is missing or changed.
//!
//! ```text
//!  walker (lazy, depth first, name order) ── mkdir DST/dir as it goes (empty ones kept)
//!     │ files and links, one at a time
//!     ▼
//!  par::Par::stream (bounded in flight) ── spawn_blocking ─▶ outcomes (input + error kept)
//!  progress::CopyBars: `listing` and `copying` bars (plain lines off a terminal)
//!     bunches of 32 files per blocking task; each (file.rs): copy_file_range (reflinks /
//!     in-kernel copy) into an unnamed file in DST/ (O_TMPFILE), mode and mtime set,
//!     linkat onto DST/NAME; or, where DST/NAME is there, DST/.NAME.bulkget-part + rename
//! ```
//!
//! Semantics are `rclone copy`'s, not `cp -r`'s, so that a rerun does the
//! same thing as the first run: the *contents* of SRC go into DST (created
//! if need be). A file already at DST with the same size and modification
//! time is skipped (`--overwrite` copies anyway). What the summary reports
//! as copied is on stable storage: one `syncfs` of DST's file system when
//! the copying ends (`--durability none` skips it); a power cut before that
//! can leave a torn file only with a size or time unlike the source's, which
//! the rerun copies again. A symbolic link is copied
//! as a link, never followed. DST inside SRC is refused. A temp file left
//! by a killed run is replaced when the rerun copies that file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::StreamExt;

pub mod between;
mod file;
pub mod send;
pub mod up;
pub mod web;
mod work;

use crate::error::RunError;
use crate::par::{Par, TaskError};
use crate::progress::{CopyBars, Counters, Display, Stats};

#[derive(Clone, Debug)]
pub struct CpConfig {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub recursive: bool,
    pub overwrite: bool,
    /// Copies in flight at once.
    pub workers: usize,
    pub display: Display,
    /// `Sync`: one `syncfs` of DST's file system once the copying is done,
    /// before the summary says what was copied.
    pub durability: crate::journal::Durability,
}

/// How a copy ended.
#[derive(Debug)]
pub struct CpOutcome {
    pub stats: Stats,
    /// Each failure: the source path and why.
    pub failures: Vec<(PathBuf, String)>,
    pub interrupted: bool,
    /// Why the copy stopped early (the destination's disk is full): exit 2.
    pub stopped: Option<String>,
}

impl CpOutcome {
    /// A copy to or inside a store that ran its course: its figures, the
    /// failures collected, whether a signal stopped it.
    fn ended(
        counters: &Counters,
        started: Instant,
        failures: &std::sync::Mutex<Vec<(PathBuf, String)>>,
        stop: &AtomicBool,
    ) -> CpOutcome {
        CpOutcome {
            stats: counters.stats(started.elapsed()),
            failures: std::mem::take(&mut *failures.lock().expect("failures")),
            interrupted: stop.load(Ordering::Relaxed),
            stopped: None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        if self.stopped.is_some() {
            2
        } else if self.interrupted {
            130
        } else if self.failures.is_empty() {
            0
        } else {
            1
        }
    }

    pub fn summary(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "{} {} files ({} bytes) in {:.1} s: {:.0} files/s; {} already there and skipped; {} failed.",
            if self.interrupted || self.stopped.is_some() {
                "Interrupted after copying"
            } else {
                "Copied"
            },
            s.files,
            s.bytes,
            s.seconds,
            s.files_per_sec,
            s.skipped,
            self.failures.len()
        );
        if let Some(why) = &self.stopped {
            line += &format!(
                " Stopped early: {why}. Files already copied stay; make room and run the same command again to go on."
            );
        }
        line
    }
}

/// One thing to copy.
#[derive(Debug)]
struct Item {
    from: PathBuf,
    to: PathBuf,
    link: bool,
    /// The file's metadata, read by the walk (its size counts in the
    /// `listing` bar; the copy then needs no second stat).
    meta: Option<std::fs::Metadata>,
    /// Its directory at DST was made by this run: nothing there to skip,
    /// so no stat of the target.
    fresh: bool,
}

/// Files per blocking task.
const BUNCH: usize = 32;

/// What one copy did.
enum Done {
    Copied(u64),
    Skipped,
}

/// Why one file was not copied.
#[derive(Debug)]
struct Failed {
    why: String,
    /// The destination's disk is full (ENOSPC, EDQUOT): the whole copy
    /// stops, since every other file would fail the same way.
    full: bool,
}

impl From<Failed> for String {
    fn from(f: Failed) -> String {
        f.why
    }
}

fn err(p: &Path, what: &str, e: io::Error) -> Failed {
    Failed {
        full: crate::error::is_disk_full(&e),
        why: format!("{what} {}: {e}", p.display()),
    }
}

/// Refuses a DST inside SRC (it would copy itself without end).
fn check_not_inside(src: &Path, dst: &Path) -> Result<(), RunError> {
    let src = src
        .canonicalize()
        .map_err(|e| RunError::Other(err(src, "cannot read", e).why))?;
    // The nearest existing ancestor of DST, resolved, plus the rest.
    let mut probe = dst.to_path_buf();
    let mut rest = Vec::new();
    let resolved = loop {
        match probe.canonicalize() {
            Ok(p) => break p,
            Err(_) => match (probe.file_name(), probe.parent()) {
                (Some(n), Some(parent)) => {
                    rest.push(n.to_os_string());
                    probe = if parent.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        parent.to_path_buf()
                    };
                }
                _ => break probe.clone(),
            },
        }
    };
    let full: PathBuf = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    if full.starts_with(&src) {
        return Err(RunError::Other(format!(
            "{} is inside {}: refusing to copy a tree into itself",
            dst.display(),
            src.display()
        )));
    }
    Ok(())
}

/// Walks SRC depth first in name order, making each directory at DST as it
/// goes, and yields the files and links to copy. Directories it cannot read
/// or make are failures, kept.
struct Walk {
    stack: Vec<(PathBuf, PathBuf)>,
    pending: std::vec::IntoIter<Item>,
    failures: Vec<(PathBuf, String)>,
    counters: Arc<Counters>,
}

impl Iterator for Walk {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(it) = self.pending.next() {
                return Some(it);
            }
            let Some((from, to)) = self.stack.pop() else {
                self.counters.listing_done.store(true, Ordering::Relaxed);
                return None;
            };
            // Made now (DST's own parents too, if need be), or there before.
            let made = match std::fs::create_dir(&to) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(&to),
                r => r,
            };
            let fresh = match made {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => {
                    self.failures.push((from, err(&to, "cannot make", e).why));
                    continue;
                }
            };
            let mut entries: Vec<_> = match std::fs::read_dir(&from).and_then(|r| r.collect()) {
                Ok(v) => v,
                Err(e) => {
                    self.failures
                        .push((from.clone(), err(&from, "cannot read", e).why));
                    continue;
                }
            };
            entries.sort_by_key(|e: &std::fs::DirEntry| e.file_name());
            let mut items = Vec::new();
            let mut dirs = Vec::new();
            let mut bytes = 0;
            for e in entries {
                let (f, t) = (e.path(), to.join(e.file_name()));
                match e.file_type() {
                    Ok(ft) if ft.is_dir() => dirs.push((f, t)),
                    Ok(ft) if ft.is_file() || ft.is_symlink() => {
                        let meta = ft.is_file().then(|| e.metadata().ok()).flatten();
                        bytes += meta.as_ref().map_or(0, |m| m.len());
                        items.push(Item {
                            from: f,
                            to: t,
                            link: ft.is_symlink(),
                            meta,
                            fresh,
                        })
                    }
                    Ok(_) => self
                        .failures
                        .push((f, "not a file, directory or link: not copied".into())),
                    Err(e) => self
                        .failures
                        .push((f.clone(), err(&f, "cannot read", e).why)),
                }
            }
            self.counters
                .listed
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            self.counters
                .listed_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            self.stack.extend(dirs.into_iter().rev());
            self.pending = items.into_iter();
        }
    }
}

/// Makes what was copied durable: one `syncfs` of the file system DST is on
/// (the files' data and the renames that named them). Returns the calls made.
fn sync_dst(cfg: &CpConfig) -> Result<u64, RunError> {
    let dir = if cfg.dst.is_dir() {
        cfg.dst.as_path()
    } else {
        match cfg.dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    };
    let flush = crate::journal::Flush::new(cfg.durability, &[dir])
        .and_then(|f| f.sync().map(|_| f))
        .map_err(|e| RunError::Other(format!("{}: cannot sync: {e}", dir.display())))?;
    Ok(flush.calls())
}

pub fn run(cfg: &CpConfig, stop: Arc<AtomicBool>) -> Result<CpOutcome, RunError> {
    let started = Instant::now();
    let m = std::fs::symlink_metadata(&cfg.src)
        .map_err(|e| RunError::Other(err(&cfg.src, "cannot read", e).why))?;
    let counters = Arc::new(Counters::default());
    let mut walk = Walk {
        stack: Vec::new(),
        pending: Vec::new().into_iter(),
        failures: Vec::new(),
        counters: counters.clone(),
    };
    if m.is_dir() {
        if !cfg.recursive {
            return Err(RunError::Other(format!(
                "{} is a directory: give -r to copy a tree",
                cfg.src.display()
            )));
        }
        check_not_inside(&cfg.src, &cfg.dst)?;
        walk.stack.push((cfg.src.clone(), cfg.dst.clone()));
    } else {
        // One file: to DST, or into DST when that is a directory.
        let name = cfg.src.file_name().unwrap_or_default();
        let to = if cfg.dst.is_dir() {
            cfg.dst.join(name)
        } else {
            cfg.dst.clone()
        };
        counters.listed.fetch_add(1, Ordering::Relaxed);
        counters.listed_bytes.fetch_add(m.len(), Ordering::Relaxed);
        counters.listing_done.store(true, Ordering::Relaxed);
        let link = m.file_type().is_symlink();
        walk.pending = vec![Item {
            from: cfg.src.clone(),
            to,
            link,
            meta: None,
            fresh: false,
        }]
        .into_iter();
    }
    let reporter = CopyBars::start(counters.clone(), started, cfg.display);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(e.to_string()))?;
    let overwrite = cfg.overwrite;
    let mut failures = Vec::new();
    let mut full: Option<String> = None;
    let full_stop = Arc::new(AtomicBool::new(false));
    let w = &mut walk;
    rt.block_on(async {
        let par = Par::new(cfg.workers.max(1));
        let (stopping, filled) = (stop.clone(), full_stop.clone());
        let mut inputs =
            w.take_while(|_| !stopping.load(Ordering::Relaxed) && !filled.load(Ordering::Relaxed));
        // Bunches of files per blocking task: one thread hand-over per
        // bunch, not per file (a small file costs less to copy than to hand).
        let bunches = std::iter::from_fn(|| {
            let b: Vec<Item> = inputs.by_ref().take(BUNCH).collect();
            (!b.is_empty()).then(|| Arc::new(b))
        });
        let mut s = par.stream(bunches, |b: Arc<Vec<Item>>| async move {
            tokio::task::spawn_blocking(move || {
                b.iter()
                    .map(|it| file::copy_one(it, overwrite))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| e.to_string())
        });
        while let Some(o) = s.next().await {
            let results = match o.result {
                Ok(r) => r,
                Err(e) => {
                    let why = match e {
                        TaskError::Failed(why) => why,
                        TaskError::TimedOut(d) => format!("timed out after {d:?}"),
                    };
                    let failed = |_| {
                        Err(Failed {
                            why: why.clone(),
                            full: false,
                        })
                    };
                    o.input.iter().map(failed).collect()
                }
            };
            let (mut done, mut bytes, mut skipped) = (0, 0, 0);
            for (r, it) in results.into_iter().zip(o.input.iter()) {
                match r {
                    Ok(Done::Copied(n)) => (done, bytes) = (done + 1, bytes + n),
                    Ok(Done::Skipped) => skipped += 1,
                    // The first full-disk error stops the copy and is the
                    // one line said; files in flight then are not failures
                    // of their own (the rerun copies them).
                    Err(f) if f.full => {
                        full_stop.store(true, Ordering::Relaxed);
                        full.get_or_insert(format!("disk full: {}", f.why));
                    }
                    Err(f) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        failures.push((it.from.clone(), f.why));
                    }
                }
            }
            counters.done.fetch_add(done, Ordering::Relaxed);
            counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            counters.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    });
    drop(reporter);
    failures.extend(std::mem::take(&mut walk.failures));
    let syncs = sync_dst(cfg)?;
    let mut stats = counters.stats(started.elapsed());
    stats.syncs = syncs;
    Ok(CpOutcome {
        stats,
        failures,
        interrupted: stop.load(Ordering::Relaxed),
        stopped: full,
    })
}
