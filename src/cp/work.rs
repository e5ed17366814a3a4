//! What the copies to and inside a store share: a feeder thread that lists
//! (and walks) ahead, and workers that take one item at a time from a
//! bounded channel, each counted as copied, already there, or failed.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::error::RunError;
use crate::progress::Counters;

/// A tokio runtime for a feeder (current-thread) or the workers.
pub(super) fn runtime(multi: bool) -> Result<tokio::runtime::Runtime, RunError> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .map_err(|e| RunError::Other(e.to_string()))
}

/// Runs `feed` on its own thread (it fills the channel `rx` drains, and
/// marks the listing done) while `workers` tasks take items from `rx` and
/// `send` each: Ok(true) copied, Ok(false) already there, Err a failure,
/// kept under `name(item)`. Returns `feed`'s error, once all are done.
pub(super) fn work<T>(
    feed: impl FnOnce() -> Result<(), RunError> + Send,
    rx: async_channel::Receiver<T>,
    workers: usize,
    counters: &Counters,
    failures: &Mutex<Vec<(PathBuf, String)>>,
    send: impl AsyncFn(&T) -> Result<bool, String>,
    name: impl Fn(T) -> PathBuf,
) -> Result<(), RunError> {
    let rt = runtime(true)?;
    std::thread::scope(|scope| {
        let fed = scope.spawn(feed);
        rt.block_on(async {
            let (send, name) = (&send, &name);
            let tasks = (0..workers.max(1)).map(|_| {
                let rx = rx.clone();
                async move {
                    while let Ok(item) = rx.recv().await {
                        match send(&item).await {
                            Ok(true) => counters.done.fetch_add(1, Ordering::Relaxed),
                            Ok(false) => counters.skipped.fetch_add(1, Ordering::Relaxed),
                            Err(why) => {
                                failures.lock().expect("failures").push((name(item), why));
                                counters.failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                }
            });
            futures_util::future::join_all(tasks).await;
        });
        fed.join().expect("the feeder does not panic")
    })
}
