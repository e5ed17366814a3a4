//! The checkpoint journal and the failure ledger, both in `DEST/.bulkget/`.
//!
//! * `journal.json` holds the listing cursor below which every file has
//!   landed (or permanently failed and been written to the ledger). A killed
//!   run restarts listing there, so at most the pages in flight are looked at
//!   again. The [`Tracker`] advances the cursor as pages complete, in any order.
//! * `failures.jsonl` gets one line per file that failed for good: name, URL,
//!   error, attempts. The next run moves it to `failures.retry.jsonl` and
//!   retries those names first; that file is removed once they are all done.
//!
//! Durability (a power cut, not only a kill): before the cursor is saved,
//! the files it counts as landed are on stable storage. [`Flush`] does it
//! in one `syncfs` per file system per checkpoint (once a second), never a
//! sync per file; the journal itself goes temporary file → `fsync` →
//! `rename` → `fsync` of its directory. [`RunMark`] (`running` in the state
//! directory) tells a rerun that the last run did not end cleanly, so files
//! that landed after its last sync may be empty or torn: they are fetched
//! again ([`trust_before`]).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// What `journal.json` says.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalState {
    /// The base URL mirrored.
    pub url: String,
    /// Resume listing with this `next-marker` (`None`: from the first page).
    pub marker: Option<String>,
    /// Pages below the marker.
    pub pages_done: u64,
    /// The listing ended and every page completed.
    pub complete: bool,
    /// Every file whose inode changed before this time (ns since the
    /// epoch, on the file system's coarse clock) was on stable storage
    /// when the journal was saved: after an unclean stop, files that
    /// landed before it are trusted by their presence, later ones are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_before_ns: Option<u64>,
}

impl JournalState {
    /// Where a run of `url` resumes (cursor, pages below it): from this
    /// journal if it is `url`'s and unfinished.
    pub fn resume(&self, url: &str) -> Option<(Option<String>, u64)> {
        (self.url == url && !self.complete).then(|| (self.marker.clone(), self.pages_done))
    }
}

/// The default state directory of a mirror into `dest`.
pub fn default_state_dir(dest: &Path) -> PathBuf {
    dest.join(".bulkget")
}

/// Writes `bytes` to `path` atomically and durably: a temporary file,
/// `fsync`, `rename` over `path`, `fsync` of the directory. After a power
/// cut `path` holds the old bytes or the new ones, never a torn mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `fsync` of a directory: its entries (a rename, a new file) are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// The clock file systems stamp inodes with (`CLOCK_REALTIME_COARSE`), so
/// that a file landed by this run never looks older than the run's start.
pub fn coarse_now() -> SystemTime {
    // SAFETY: timespec is plain old data, fully written on success.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return SystemTime::now();
    }
    std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `t` in nanoseconds since the epoch.
pub fn epoch_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Whether bulkget makes what it reports as done survive a power cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// One `syncfs` per checkpoint before the cursor moves (the default).
    #[default]
    Sync,
    /// No syncs: a scratch run (a power cut may leave torn files that a
    /// rerun keeps).
    None,
}

/// The file systems to flush before a checkpoint: one open directory on
/// each (the destination, the state directory when it lies elsewhere).
pub struct Flush {
    fds: Vec<File>,
    calls: std::sync::atomic::AtomicU64,
}

impl Flush {
    /// Flushes the file systems holding `dirs` (none with `Durability::None`).
    pub fn new(d: Durability, dirs: &[&Path]) -> io::Result<Flush> {
        use std::os::unix::fs::MetadataExt;
        let mut fds: Vec<File> = Vec::new();
        let mut devs = Vec::new();
        if d == Durability::Sync {
            for dir in dirs {
                let f = File::open(dir)?;
                let dev = f.metadata()?.dev();
                if !devs.contains(&dev) {
                    devs.push(dev);
                    fds.push(f);
                }
            }
        }
        Ok(Flush {
            fds,
            calls: Default::default(),
        })
    }

    /// Makes everything written so far on those file systems durable, and
    /// says from when: every inode changed before the time returned is on
    /// stable storage (`None` when nothing is synced: `Durability::None`).
    pub fn sync(&self) -> io::Result<Option<u64>> {
        use std::os::fd::AsRawFd;
        let before = epoch_ns(coarse_now());
        for f in &self.fds {
            self.calls.fetch_add(1, Ordering::Relaxed);
            // SAFETY: a valid open descriptor.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((!self.fds.is_empty()).then_some(before))
    }

    /// `syncfs` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// After an unclean stop (`unclean`), the time before which a landed file
/// is known whole: the last sync the previous run's journal recorded
/// (`None` in it: no file is). `None` after a clean stop: presence counts.
pub fn trust_before(unclean: bool, prev: Option<&JournalState>) -> Option<SystemTime> {
    unclean.then(|| {
        let ns = prev.and_then(|j| j.synced_before_ns).unwrap_or(0);
        std::time::UNIX_EPOCH + Duration::from_nanos(ns)
    })
}

/// The end of a run: one last `flush` (so what the summary reports is
/// durable), then the journal `state` (if the run keeps one) with the time
/// of that sync, then the run mark is removed. Errors are said on stderr
/// (the last periodic save stands, and the mark stays, so a rerun trusts
/// only what that save vouched for). True when the flush succeeded.
pub fn finish(
    flush: &Flush,
    state_dir: &Path,
    dest: &Path,
    state: Option<&mut JournalState>,
    mark: RunMark,
) -> bool {
    let t = match flush.sync() {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "bulkget: cannot flush {} to stable storage: {e}",
                dest.display()
            );
            return false;
        }
    };
    if let Some(state) = state {
        state.synced_before_ns = t;
        if let Err(e) = save(state_dir, state) {
            // e.g. the disk is full: the last periodic save stands, and a
            // rerun re-lists from there, skipping what landed before it.
            eprintln!(
                "bulkget: cannot save the journal in {}: {e}",
                state_dir.display()
            );
        }
    }
    mark.end();
    true
}

/// `running` in the state directory while a run goes on: found at start,
/// it says the last run was killed or lost power, so what it left past its
/// saved cursor cannot be trusted by its presence alone.
pub struct RunMark {
    path: PathBuf,
}

impl RunMark {
    /// Marks the run as going on; whether the last one ended uncleanly.
    pub fn begin(state: &Path) -> io::Result<(RunMark, bool)> {
        let path = state.join("running");
        let unclean = path.exists();
        if !unclean {
            File::create(&path)?.sync_all()?;
            sync_dir(state)?;
        }
        Ok((RunMark { path }, unclean))
    }

    /// The run ended and what it reported is durable (flushed first).
    pub fn end(self) {
        if fs::remove_file(&self.path).is_ok()
            && let Some(d) = self.path.parent()
        {
            let _ = sync_dir(d);
        }
    }
}

pub fn load(state: &Path) -> io::Result<Option<JournalState>> {
    match fs::read(state.join("journal.json")) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn save(state: &Path, st: &JournalState) -> io::Result<()> {
    write_atomic(
        &state.join("journal.json"),
        &serde_json::to_vec_pretty(st).expect("json"),
    )
}

struct PageState {
    marker: Option<String>,
    parts_left: u32,
    /// Its entries that failed for good (kept for a shared job's pages).
    failures: Vec<Failure>,
}

struct TrackState {
    /// Pages not yet complete, oldest first; front's seq is `front_seq`.
    pages: VecDeque<PageState>,
    front_seq: u64,
    pages_done: u64,
    /// The marker of the next page to be listed (used when `pages` is empty).
    next_marker: Option<String>,
    listing_done: bool,
    /// Pages complete, in any order, with their failures, until taken
    /// (`Some` for a shared job: each page is acknowledged on its own).
    finished: Option<Vec<(u64, Vec<Failure>)>>,
}

/// Follows page completion to keep the resume cursor current.
pub struct Tracker {
    url: String,
    /// A shared job's: pages are followed one by one, with their failures.
    per_page: bool,
    inner: Mutex<TrackState>,
}

impl Tracker {
    pub fn new(url: &str, start_marker: Option<String>, pages_done: u64) -> Tracker {
        Tracker {
            url: url.to_string(),
            per_page: false,
            inner: Mutex::new(TrackState {
                pages: VecDeque::new(),
                front_seq: 0,
                pages_done,
                next_marker: start_marker,
                listing_done: false,
                finished: None,
            }),
        }
    }

    /// A tracker of a shared job's pages: each page complete is kept with
    /// its failures until [`Tracker::take_finished`].
    pub fn per_page_tracker() -> Tracker {
        let mut t = Tracker::new("", None, 0);
        t.per_page = true;
        t.inner.get_mut().expect("tracker lock").finished = Some(Vec::new());
        t
    }

    /// Whether pages are followed one by one (a shared job's).
    pub fn per_page(&self) -> bool {
        self.per_page
    }

    /// The pages complete since the last call, with their failures.
    pub fn take_finished(&self) -> Vec<(u64, Vec<Failure>)> {
        let mut s = self.inner.lock().expect("tracker lock");
        s.finished.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The lister fetched page `seq` with `marker` and split it into `parts`
    /// batches; `next` is the marker of the following page (None: last page).
    pub fn page_listed(&self, seq: u64, marker: Option<String>, parts: u32, next: Option<String>) {
        let mut s = self.inner.lock().expect("tracker lock");
        if s.pages.is_empty() {
            s.front_seq = seq;
        }
        debug_assert_eq!(s.front_seq + s.pages.len() as u64, seq);
        s.pages.push_back(PageState {
            marker,
            parts_left: parts,
            failures: Vec::new(),
        });
        s.listing_done = next.is_none();
        s.next_marker = next;
        Self::advance(&mut s);
    }

    /// One batch of page `seq` is finished (every file landed or recorded
    /// as failed: `failures`, when the tracker keeps them).
    pub fn part_done(&self, seq: u64, failures: Vec<Failure>) {
        let mut s = self.inner.lock().expect("tracker lock");
        let i = (seq - s.front_seq) as usize;
        let page = &mut s.pages[i];
        page.parts_left -= 1;
        page.failures.extend(failures);
        if page.parts_left == 0 {
            let f = std::mem::take(&mut page.failures);
            if let Some(done) = s.finished.as_mut() {
                done.push((seq, f));
            }
        }
        Self::advance(&mut s);
    }

    fn advance(s: &mut TrackState) {
        while s.pages.front().is_some_and(|p| p.parts_left == 0) {
            s.pages.pop_front();
            s.front_seq += 1;
            s.pages_done += 1;
        }
    }

    /// The journal as it stands now.
    pub fn state(&self) -> JournalState {
        let s = self.inner.lock().expect("tracker lock");
        let marker = match s.pages.front() {
            Some(p) => p.marker.clone(),
            None => s.next_marker.clone(),
        };
        JournalState {
            url: self.url.clone(),
            marker,
            pages_done: s.pages_done,
            complete: s.listing_done && s.pages.is_empty(),
            synced_before_ns: None,
        }
    }
}

/// Saves the journal every second on a thread of its own, and once more
/// when stopped (the final save's error is the caller's to report).
pub struct Keeper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    /// Every second: the cursor as it stands, `flush` (so every file below
    /// it is durable), then the journal. A failed flush saves nothing.
    pub fn start(
        state: PathBuf,
        flush: Arc<Flush>,
        tracker: impl Fn() -> JournalState + Send + 'static,
    ) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        // BULKGET_CHECKPOINT_MS sets the period for A/B runs.
        let every = std::env::var("BULKGET_CHECKPOINT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        let thread = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if last.elapsed() >= every {
                    last = std::time::Instant::now();
                    let mut st = tracker();
                    if let Ok(t) = flush.sync() {
                        st.synced_before_ns = t;
                        let _ = save(&state, &st);
                    }
                }
            }
        });
        Keeper {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One permanent failure, as a line of `failures.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub url: String,
    pub error: String,
    pub attempts: u32,
}

/// Appends failures to `failures.jsonl`, one flushed line each.
pub struct Ledger {
    path: Option<PathBuf>,
    out: Mutex<Option<BufWriter<File>>>,
}

impl Ledger {
    pub fn new(state: &Path) -> Ledger {
        Ledger::at(Some(state.join("failures.jsonl")))
    }

    /// A ledger in the file `path` (created at the first failure), or none
    /// that keeps nothing.
    pub fn at(path: Option<PathBuf>) -> Ledger {
        Ledger {
            path,
            out: Mutex::new(None),
        }
    }

    pub fn record(&self, f: &Failure) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut g = self.out.lock().expect("ledger lock");
        if g.is_none() {
            *g = Some(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            ));
        }
        let w = g.as_mut().expect("just opened");
        serde_json::to_writer(&mut *w, f)?;
        w.write_all(b"\n")?;
        w.flush()
    }
}

/// Moves last run's `failures.jsonl` onto `failures.retry.jsonl` (appending,
/// if a retry file was left by a killed run) and returns the retry file's path
/// if there is anything to retry.
pub fn take_failures_for_retry(state: &Path) -> io::Result<Option<PathBuf>> {
    let dir = state;
    let cur = dir.join("failures.jsonl");
    let retry = dir.join("failures.retry.jsonl");
    if cur.exists() {
        if retry.exists() {
            let mut out = OpenOptions::new().append(true).open(&retry)?;
            io::copy(&mut File::open(&cur)?, &mut out)?;
            fs::remove_file(&cur)?;
        } else {
            fs::rename(&cur, &retry)?;
        }
    }
    Ok(retry.exists().then_some(retry))
}

/// Reads the names in a failures file, in batches of at most `batch` names.
pub struct FailureNames {
    lines: io::Lines<BufReader<File>>,
}

impl FailureNames {
    pub fn open(path: &Path) -> io::Result<FailureNames> {
        Ok(FailureNames {
            lines: BufReader::new(File::open(path)?).lines(),
        })
    }

    pub fn next_batch(&mut self, batch: usize) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        while v.len() < batch {
            match self.lines.next() {
                None => break,
                Some(l) => {
                    // a torn last line (killed mid-write) is skipped
                    if let Ok(f) = serde_json::from_str::<Failure>(&l?) {
                        v.push(f.name);
                    }
                }
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_waits_for_the_oldest_page() {
        let t = Tracker::new("u", None, 0);
        t.page_listed(0, None, 2, Some("m1".into()));
        t.page_listed(1, Some("m1".into()), 1, Some("m2".into()));
        t.page_listed(2, Some("m2".into()), 1, None);
        assert_eq!(t.state().marker, None);
        t.part_done(1, vec![]);
        t.part_done(0, vec![]);
        assert_eq!(t.state().marker, None, "page 0 still has a part out");
        t.part_done(0, vec![]);
        let s = t.state();
        assert_eq!(
            (s.marker.as_deref(), s.pages_done, s.complete),
            (Some("m2"), 2, false)
        );
        t.part_done(2, vec![]);
        let s = t.state();
        assert_eq!((s.pages_done, s.complete), (3, true));
    }
}
