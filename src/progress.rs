//! Progress: run-wide counters that workers add to in batches (each worker
//! counts locally and publishes every few dozen files), and a reporter that
//! shows them: a live line on a terminal, a plain status line every few
//! seconds otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::units::{group, human_bytes};

/// Run-wide totals.
#[derive(Default)]
pub struct Counters {
    pub listed: AtomicU64,
    pub done: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
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
    pub seconds: f64,
    pub files_per_sec: f64,
    pub bytes_per_sec: f64,
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
            seconds: secs,
            files_per_sec: files as f64 / secs,
            bytes_per_sec: bytes as f64 / secs,
        }
    }
}

impl Stats {
    /// One line for status output.
    pub fn line(&self) -> String {
        format!(
            "listed {} · done {} · skipped {} · failed {} · {}/s files · {}/s · {:.0}s",
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

/// Shows progress until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(counters: Arc<Counters>, started: Instant, display: Display) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (display != Display::Quiet).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let tty = std::io::stderr().is_terminal();
                let bar = tty.then(|| {
                    let b = indicatif::ProgressBar::new_spinner();
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg}")
                            .expect("template"),
                    );
                    b
                });
                let every = if tty {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(5)
                };
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let line = counters.stats(started.elapsed()).line();
                    match &bar {
                        Some(b) => b.set_message(line),
                        None => eprintln!("bulkget: {line}"),
                    }
                }
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            })
        });
        Reporter { stop, thread }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
