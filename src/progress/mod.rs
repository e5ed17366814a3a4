//! Progress: run-wide counters that workers add to in batches (each worker
//! counts locally and publishes every few dozen files), and a reporter that
//! shows them: a live line on a terminal, a plain status line every few
//! seconds otherwise, nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::units::{group, human_bytes};

mod bars;
pub use bars::CopyBars;

/// Run-wide totals.
#[derive(Default)]
pub struct Counters {
    pub listed: AtomicU64,
    /// Bytes of the files listed (`cp`: known from the walk).
    pub listed_bytes: AtomicU64,
    /// The listing has ended (`cp`: totals and ETA are final).
    pub listing_done: AtomicBool,
    pub done: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
    /// Size of the large (split) files in flight, and how much of them is done.
    pub big_total: AtomicU64,
    pub big_done: AtomicU64,
    /// What each origin's controller settled on (written at its decisions).
    pub origins: Mutex<Board>,
}

/// Origins the board keeps figures for; later ones count only in the totals.
const BOARD_MAX: usize = 4096;

/// One origin's figures on one core.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seat {
    pub conns: u32,
    pub depth: u32,
    pub files: u64,
    pub busy: bool,
}

/// Per-origin figures from every core's controllers, for the live line and
/// `--stats-json`: written when a controller decides, not per file.
#[derive(Default)]
pub struct Board {
    seats: HashMap<String, Vec<Seat>>,
    judged: HashMap<String, Judged>,
}

/// What an origin's judge concluded about its faults (written once a
/// window, not per file).
#[derive(Clone, Debug, Default)]
pub struct Judged {
    /// `noise 24 % faults`, `limited at ~800 req/s`, …
    pub verdict: String,
    /// Faults by kind (in [`crate::error::Fault::ALL`]'s order).
    pub faults: [u64; crate::error::Fault::KINDS],
    /// Nothing worth a word on the live line.
    pub quiet: bool,
}

/// What `--stats-json` shows of one origin.
#[derive(Debug, Clone, Serialize)]
pub struct OriginStats {
    pub origin: String,
    /// Connections it settled on (last figure while it was busy), all cores.
    pub connections: u32,
    /// Requests in flight per connection it settled on.
    pub depth: u32,
    pub files: u64,
    /// What its judge concluded about faults (`clear`: none worth a trial).
    pub verdict: String,
    /// Faults by kind, the kinds it met.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub faults: std::collections::BTreeMap<&'static str, u64>,
}

impl Board {
    /// The origin's judge has ruled.
    pub fn judged(&mut self, origin: &str, j: Judged) {
        if self.judged.len() < BOARD_MAX || self.judged.contains_key(origin) {
            self.judged.insert(origin.to_string(), j);
        }
    }

    /// Core `core`'s figures for `origin`.
    pub fn set(&mut self, origin: &str, core: usize, seat: Seat) {
        let len = self.seats.len();
        let v = match self.seats.get_mut(origin) {
            Some(v) => v,
            None if len < BOARD_MAX => self.seats.entry(origin.to_string()).or_default(),
            None => return,
        };
        if v.len() <= core {
            v.resize(core + 1, Seat::default());
        }
        v[core] = seat;
    }

    fn sum(v: &[Seat]) -> (u32, u32, u64, bool) {
        v.iter().fold((0, 0, 0, false), |(c, d, f, b), s| {
            (c + s.conns, d.max(s.depth), f + s.files, b || s.busy)
        })
    }

    /// The `n` origins that fetched most, busiest first.
    pub fn top(&self, n: usize) -> Vec<OriginStats> {
        let mut all: Vec<OriginStats> = self
            .seats
            .iter()
            .map(|(k, v)| {
                let (connections, depth, files, _) = Self::sum(v);
                let j = self.judged.get(k);
                let faults = j.map_or_else(Default::default, |j| {
                    (crate::error::Fault::ALL.iter().zip(j.faults))
                        .filter(|&(_, n)| n > 0)
                        .map(|(f, n)| (f.name(), n))
                        .collect()
                });
                OriginStats {
                    origin: k.clone(),
                    connections,
                    depth,
                    files,
                    verdict: j.map_or_else(|| "clear".into(), |j| j.verdict.clone()),
                    faults,
                }
            })
            .collect();
        all.sort_by(|a, b| b.files.cmp(&a.files).then(a.origin.cmp(&b.origin)));
        all.truncate(n);
        all
    }

    /// For the live line: busy origins, their connections in all, and the
    /// busiest one's figures.
    pub fn live(&self) -> Option<String> {
        let mut busy = 0;
        let mut conns = 0;
        let mut top: Option<(&str, u32, u32, u64)> = None;
        for (k, v) in &self.seats {
            let (c, d, f, b) = Self::sum(v);
            if !b {
                continue;
            }
            busy += 1;
            conns += c;
            if top.is_none_or(|t| c > t.1 || (c == t.1 && f > t.3)) {
                top = Some((k, c, d, f));
            }
        }
        let (k, c, d, _) = top?;
        let judged = self.judged.get(k).filter(|j| !j.quiet);
        Some(if let Some(j) = judged {
            let more = if busy > 1 {
                format!(" ({busy} hosts busy, {conns} conns)")
            } else {
                String::new()
            };
            format!("{k}: {}, {c} conns{more}", j.verdict)
        } else if busy == 1 {
            format!("{k}: {c} conns × {d} deep")
        } else {
            format!("{busy} hosts busy, {conns} conns; most: {k} {c} × {d}")
        })
    }
}

/// A worker's unpublished counts.
#[derive(Default)]
pub struct Local {
    pub done: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub retries: u64,
    pending: u32,
}

impl Local {
    /// Publishes every 64 events; call [`Local::publish`] at the end.
    pub fn tick(&mut self, c: &Counters) {
        self.pending += 1;
        if self.pending >= 64 {
            self.publish(c);
        }
    }

    pub fn publish(&mut self, c: &Counters) {
        for (a, v) in [
            (&c.done, &mut self.done),
            (&c.skipped, &mut self.skipped),
            (&c.failed, &mut self.failed),
            (&c.bytes, &mut self.bytes),
            (&c.retries, &mut self.retries),
        ] {
            if *v > 0 {
                a.fetch_add(*v, Ordering::Relaxed);
                *v = 0;
            }
        }
        self.pending = 0;
    }
}

/// The figures of a finished (or stopped) run, as `--stats-json` writes them.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub listed: u64,
    pub files: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub retries: u64,
    /// `syncfs` calls made so that what landed survives a power cut.
    pub syncs: u64,
    pub seconds: f64,
    pub files_per_sec: f64,
    pub bytes_per_sec: f64,
    /// The origins that fetched most, with the connections and depth each settled on.
    pub origins: Vec<OriginStats>,
}

impl Counters {
    pub fn stats(&self, elapsed: Duration) -> Stats {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let files = self.done.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        Stats {
            listed: self.listed.load(Ordering::Relaxed),
            files,
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes,
            retries: self.retries.load(Ordering::Relaxed),
            syncs: 0,
            seconds: secs,
            files_per_sec: files as f64 / secs,
            bytes_per_sec: bytes as f64 / secs,
            origins: self.origins.lock().map(|b| b.top(20)).unwrap_or_default(),
        }
    }
}

impl Stats {
    /// One line for status output.
    pub fn line(&self) -> String {
        format!(
            "listed {} · done {} · skipped {} · failed {} · {} files/s · {}/s · {:.0}s",
            group(self.listed),
            group(self.files),
            group(self.skipped),
            group(self.failed),
            group(self.files_per_sec as u64),
            human_bytes(self.bytes_per_sec),
            self.seconds
        )
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    Auto,
    Quiet,
}

/// A thread that shows something until dropped (then it is stopped,
/// cleans up its lines, and is joined); none with `--quiet`.
pub(crate) struct Painter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Painter {
    /// Runs `paint(stop)` on its own thread unless `display` is quiet.
    pub(crate) fn spawn(
        display: Display,
        paint: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Painter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (display != Display::Quiet).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || paint(stop))
        });
        Painter { stop, thread }
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Calls `f` every `on_tty` on a terminal, every 5 s otherwise, until
/// `stop` (looked at every 50 ms).
pub(crate) fn every_period(stop: &AtomicBool, tty: bool, on_tty: Duration, mut f: impl FnMut()) {
    let every = if tty { on_tty } else { Duration::from_secs(5) };
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() >= every {
            last = Instant::now();
            f();
        }
    }
}

thread_local! {
    /// Where the next [`Reporter`] started on this thread also writes its
    /// figures ([`feed_to`]).
    static FEED: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
}

/// Has the next [`Reporter`] started on this thread write the run's
/// figures to `f` as well, one JSON object (a [`Stats`]) a line, once a
/// second, whatever it shows (`--progress-json`: the Python package's
/// progress callback reads them from a pipe).
pub fn feed_to(f: Option<std::fs::File>) {
    FEED.with(|x| *x.borrow_mut() = f);
}

/// Shows progress until dropped.
pub struct Reporter {
    _painter: Painter,
    _feed: Option<Painter>,
}

impl Reporter {
    pub fn start(counters: Arc<Counters>, started: Instant, display: Display) -> Reporter {
        let feed = FEED.with(|x| x.borrow_mut().take()).map(|mut f| {
            let counters = counters.clone();
            Painter::spawn(Display::Auto, move |stop| {
                use std::io::Write;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() >= Duration::from_secs(1) {
                        last = Instant::now();
                        let mut line =
                            serde_json::to_vec(&counters.stats(started.elapsed())).expect("json");
                        line.push(b'\n');
                        if f.write_all(&line).is_err() {
                            return; // the reader has gone
                        }
                    }
                }
            })
        });
        let painter = Self::paint(counters, started, display);
        Reporter {
            _painter: painter,
            _feed: feed,
        }
    }

    fn paint(counters: Arc<Counters>, started: Instant, display: Display) -> Painter {
        Painter::spawn(display, move |stop| {
            let tty = std::io::stderr().is_terminal();
            let bar = tty.then(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            every_period(&stop, tty, Duration::from_millis(250), || {
                let st = counters.stats(started.elapsed());
                let mut line = st.line();
                let (total, done) = (
                    counters.big_total.load(Ordering::Relaxed),
                    counters.big_done.load(Ordering::Relaxed),
                );
                if let Some(o) = counters.origins.lock().ok().and_then(|b| b.live()) {
                    line += &format!(" · {o}");
                }
                if total > 0 {
                    let left = total.saturating_sub(done) as f64;
                    line += &format!(
                        " · large files {} of {} ({:.0}%), ETA {:.0}s",
                        human_bytes(done as f64),
                        human_bytes(total as f64),
                        100.0 * done as f64 / total as f64,
                        left / st.bytes_per_sec.max(1.0)
                    );
                }
                match &bar {
                    Some(b) => b.set_message(line),
                    None => eprintln!("bulkget: {line}"),
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        })
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// Why the run could not proceed, if it could not.
    pub error: Option<crate::error::RunError>,
    pub interrupted: bool,
    /// Every input was handled (listing ended and every page completed).
    pub journal_complete: bool,
    /// The shared job's figures at the end, when the run took part in one
    /// (`--queue`): its failures, wherever they happened, decide the exit.
    pub job: Option<crate::queue::Status>,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            2
        } else if self.interrupted {
            130
        } else if self.job.as_ref().map_or(self.stats.failed, |j| j.failed) > 0 {
            1
        } else {
            0
        }
    }

    /// The closing paragraph: `done` is the verb ("Mirrored"), `inputs` what
    /// the inputs were ("Listed"), `source` says where from ("from URL"),
    /// `ledger` is the failure ledger's path.
    pub fn summary(
        &self,
        done: &str,
        inputs: &str,
        source: &str,
        dest: &Path,
        ledger: &Path,
    ) -> String {
        let s = &self.stats;
        let dest = dest.display();
        let mut p = format!(
            "{} {} files ({}){} into {} in {:.1} s: {} files/s, {}/s.",
            if self.interrupted {
                "Interrupted after"
            } else {
                done
            },
            group(s.files),
            human_bytes(s.bytes as f64),
            if source.is_empty() {
                String::new()
            } else {
                format!(" {source}")
            },
            dest,
            s.seconds,
            group(s.files_per_sec as u64),
            human_bytes(s.bytes_per_sec)
        );
        p += &format!(
            " {} {}; {} already present and skipped; {} retries.",
            inputs,
            group(s.listed),
            group(s.skipped),
            group(s.retries)
        );
        if s.failed > 0 {
            p += &format!(
                " {} failed for good: see {}; run the same command again to retry them.",
                group(s.failed),
                ledger.display()
            );
        } else if !self.interrupted && self.error.is_none() {
            p += " No failures.";
        }
        if let Some(e) = &self.error {
            p += &format!(
                " Stopped early: {e}. Files already landed stay; run the same command again to go on."
            );
        } else if self.interrupted {
            p += " Progress is saved: run the same command again to resume.";
        }
        p
    }
}
