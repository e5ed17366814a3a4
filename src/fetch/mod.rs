//! Fetching: HTTP connections and the policy for trying again.
//!
//! [`net::Net`] makes connections (DNS, Happy Eyeballs, proxies, TLS, ALPN);
//! [`Conn`] is one long-lived connection, pipelined HTTP/1.1 ([`http1`]) or
//! HTTP/2 ([`h2`]); [`url`] parses URLs and redirect targets; [`Endpoint`] is
//! a parsed base URL; [`RetryPolicy`] decides when a failed request is tried
//! again; [`Throttle`] slows the whole run when the server says 429/503.

pub mod conn;
pub mod h2;
pub mod http1;
pub mod land;
pub mod linger;
pub mod net;
pub mod proxy;
pub mod tls;
pub mod url;

pub use conn::Conn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{FetchError, RunError};
use crate::synthetic::splitmix64;

/// Runs `tasks` tasks made by `make(id)` on `threads` threads (0 = one per
/// core), each thread with its own current-thread runtime, tasks dealt round
/// robin; returns when all have ended. Tasks never move between threads, so
/// they share nothing they do not ask for. A thread about to sleep on its
/// sockets with many requests in flight lingers first ([`linger`]).
pub fn run_per_core<F, Fut>(threads: usize, tasks: usize, make: F) -> std::io::Result<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if threads > 0 { threads } else { cores }.min(tasks.max(1));
    let make = std::sync::Arc::new(make);
    let mut handles = Vec::new();
    for t in 0..threads {
        let make = make.clone();
        let mine: Vec<u64> = (0..tasks as u64)
            .filter(|c| *c as usize % threads == t)
            .collect();
        handles.push(
            std::thread::Builder::new()
                .name(format!("bulkget-fetch-{t}"))
                .spawn(move || {
                    let linger = linger::Linger::from_env();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_park(move || linger.before_park())
                        .build()
                        .expect("runtime");
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        let handles: Vec<_> = mine
                            .into_iter()
                            .map(|id| tokio::task::spawn_local(make(id)))
                            .collect();
                        for h in handles {
                            let _ = h.await;
                        }
                    });
                })?,
        );
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// A base URL: where to connect and what to put before request paths.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub key: url::OwnedKey,
    /// Path prefix without a trailing `/` (often empty).
    pub base_path: String,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/path]` (nothing is resolved yet).
    pub fn parse(text: &str) -> Result<Endpoint, RunError> {
        let u = url::Url::parse(text).map_err(|why| RunError::Url {
            url: text.to_string(),
            why: why.to_string(),
        })?;
        let path = u.path.split('?').next().unwrap_or("");
        Ok(Endpoint {
            key: u.origin_key().to_owned(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The full URL of a request path (for messages and the failure ledger).
    pub fn url_of(&self, path: &str) -> String {
        let scheme = if self.key.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}{}{}",
            self.key.authority, self.base_path, path
        )
    }
}

/// When to try a failed request again.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 8,
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// Why [`RetryPolicy::pause`] says not to try again.
#[derive(Debug)]
pub enum GiveUp {
    /// The run is stopping (a signal).
    Stopped,
    /// Not worth another attempt, or none left: why.
    Failed(String),
}

impl RetryPolicy {
    /// After failed attempt `attempt` (from 1) with `err`: waits out the
    /// backoff (`Retry-After` honoured, `salt` for the jitter; never past a
    /// stop) and returns Ok to try again, or why not.
    pub async fn pause(
        &self,
        stop: &AtomicBool,
        err: &FetchError,
        attempt: u32,
        salt: u64,
    ) -> Result<(), GiveUp> {
        if !err.is_retryable() {
            return Err(GiveUp::Failed(err.to_string()));
        }
        if attempt > self.retries {
            return Err(GiveUp::Failed(format!(
                "{err} (gave up after {attempt} attempts)"
            )));
        }
        let until = tokio::time::Instant::now() + self.delay(attempt, err.retry_after(), salt);
        while tokio::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Err(GiveUp::Stopped);
            }
            tokio::time::sleep_until(
                until.min(tokio::time::Instant::now() + Duration::from_millis(100)),
            )
            .await;
        }
        Ok(())
    }

    /// Delay before attempt `attempt + 1` (attempt counts from 1): exponential
    /// with full jitter in [d/2, d], and never less than the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, salt: u64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let r = (splitmix64(salt ^ attempt as u64) % 1024) as u32;
        let jittered = exp / 2 + exp / 2 * r / 1024;
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(e.key.authority, "127.0.0.1:8080");
        assert_eq!(e.base_path, "/api");
        assert_eq!(e.url_of("/list"), "http://127.0.0.1:8080/api/list");
        let e = Endpoint::parse("https://x").unwrap();
        assert_eq!(
            (e.key.tls, e.url_of("/list").as_str()),
            (true, "https://x/list")
        );
        assert!(Endpoint::parse("ftp://x").is_err());
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let d1 = p.delay(1, None, 3);
        let d5 = p.delay(5, None, 3);
        assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(50));
        assert!(d5 >= Duration::from_millis(800), "{d5:?}");
        assert!(p.delay(20, None, 1) <= Duration::from_secs(30));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 3),
            Duration::from_secs(3)
        );
    }
}
