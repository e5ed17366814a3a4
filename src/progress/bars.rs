//! `cp`'s two live bars, `listing` and `copying`, on a terminal (indicatif),
//! and a plain line every five seconds otherwise:
//!
//! ```text
//! listing  1 204 311 files · 118.2 GiB · 61 402 files/s            (done)
//! copying  [#####>      ] 402 117 / 1 204 311 files · 39.0 GiB · 812 MiB/s · ETA 1m 41s
//! ```
//!
//! Files skipped count as copied on the bar (they are done). The ETA is
//! shown once the listing has ended, from the bytes left and the rate.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Counters, Display};
use crate::units::{group, human_bytes};

/// Shows the bars until dropped.
pub struct CopyBars {
    _painter: super::Painter,
}

/// The two lines' text: (listing, copying, fraction done once known).
fn lines(c: &Counters, elapsed: Duration) -> (String, String, Option<f64>) {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let listed = c.listed.load(Ordering::Relaxed);
    let listed_bytes = c.listed_bytes.load(Ordering::Relaxed);
    let done_listing = c.listing_done.load(Ordering::Relaxed);
    let files = c.done.load(Ordering::Relaxed) + c.skipped.load(Ordering::Relaxed);
    let failed = c.failed.load(Ordering::Relaxed);
    let bytes = c.bytes.load(Ordering::Relaxed);
    let listing = format!(
        "listing  {} files · {}{}",
        group(listed),
        human_bytes(listed_bytes as f64),
        if done_listing {
            " · done".to_string()
        } else {
            format!(" · {} files/s", group((listed as f64 / secs) as u64))
        }
    );
    let rate = bytes as f64 / secs;
    let mut copying = format!(
        "copying  {} / {}{} files · {} · {}/s · {} files/s",
        group(files),
        group(listed),
        if done_listing { "" } else { "+" },
        human_bytes(bytes as f64),
        human_bytes(rate),
        group((files as f64 / secs) as u64)
    );
    if failed > 0 {
        copying += &format!(" · {} failed", group(failed));
    }
    let mut frac = None;
    if done_listing && listed > 0 {
        frac = Some((files + failed) as f64 / listed as f64);
        // Bytes still to go: skipped files' bytes are not counted as
        // copied, so this errs long on a rerun, never short.
        let left = listed_bytes.saturating_sub(bytes) as f64;
        if rate > 0.0 && files + failed < listed {
            copying += &format!(" · ETA {:.0}s", left / rate);
        }
    }
    (listing, copying, frac)
}

impl CopyBars {
    pub fn start(counters: Arc<Counters>, started: Instant, display: Display) -> CopyBars {
        let painter = super::Painter::spawn(display, move |stop| {
            let tty = std::io::stderr().is_terminal();
            let bars = tty.then(|| {
                let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let spin = ProgressStyle::with_template("{spinner} {msg}").expect("template");
                let bar =
                    ProgressStyle::with_template("{spinner} {bar:24} {msg}").expect("template");
                let l = m.add(ProgressBar::new_spinner().with_style(spin.clone()));
                let c = m.add(ProgressBar::new(1000).with_style(bar));
                (m, l, c)
            });
            super::every_period(&stop, tty, Duration::from_millis(200), || {
                let (listing, copying, frac) = lines(&counters, started.elapsed());
                match &bars {
                    Some((_, l, c)) => {
                        l.set_message(listing);
                        l.tick();
                        c.set_position((frac.unwrap_or(0.0) * 1000.0) as u64);
                        c.set_message(copying);
                    }
                    None => eprintln!("bulkget: {listing} | {copying}"),
                }
            });
            if let Some((m, l, c)) = bars {
                l.finish_and_clear();
                c.finish_and_clear();
                let _ = m.clear();
            }
        });
        CopyBars { _painter: painter }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_once_the_listing_is_done() {
        let c = Counters::default();
        c.listed.store(10, Ordering::Relaxed);
        c.listed_bytes.store(10 << 20, Ordering::Relaxed);
        c.done.store(4, Ordering::Relaxed);
        c.bytes.store(4 << 20, Ordering::Relaxed);
        let (l, cp, frac) = lines(&c, Duration::from_secs(2));
        assert!(l.contains("10 files") && l.contains("files/s"), "{l}");
        assert!(cp.contains("4 / 10+") && !cp.contains("ETA"), "{cp}");
        assert_eq!(frac, None);
        c.listing_done.store(true, Ordering::Relaxed);
        let (l, cp, frac) = lines(&c, Duration::from_secs(2));
        assert!(l.ends_with("done"), "{l}");
        // 6 MiB left at 2 MiB/s.
        assert!(cp.contains("4 / 10 files") && cp.contains("ETA 3s"), "{cp}");
        assert_eq!(frac, Some(0.4));
    }
}
