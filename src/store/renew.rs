//! What the credential sources share ([`super::role`] for AWS,
//! [`super::gauth`] for Google): credentials kept until shortly before
//! they expire, fetched on a thread of their own, over bulkget's own
//! transport.
//!
//! Every URL is signed with the credentials of its moment, and lives no
//! longer than they do: [`RENEW_BEFORE`] covers a frontier's wait and
//! retries; an object that waits longer (a long outage) fails with the
//! store's expired-token answer and is fetched by the next run. A renewal
//! that fails keeps the old credentials, says so on stderr, and is tried
//! again after [`RETRY_AFTER`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fetch::http1::Method;
use crate::fetch::net::{Net, NetConfig};
use crate::fetch::url::Url;

/// Credentials are renewed when less than this is left of them.
pub const RENEW_BEFORE: u64 = 15 * 60;
/// After a failed renewal, the next try waits this long.
pub const RETRY_AFTER: u64 = 10;
/// The longest answer read from a credentials endpoint.
const MAX_ANSWER: usize = 1 << 20;

/// Credentials of type `T`, fetched when first asked for and again as
/// they near their expiry.
#[derive(Debug)]
pub struct Renewing<T> {
    cached: Mutex<Cached<T>>,
}

#[derive(Debug)]
struct Cached<T> {
    /// The credentials (shared, so that signing a URL costs no copy of
    /// them) and when they expire (seconds since the epoch).
    creds: Option<(Arc<T>, u64)>,
    /// When a failed renewal may be tried again.
    retry_at: u64,
}

impl<T> Renewing<T> {
    pub fn new() -> Self {
        Renewing {
            cached: Mutex::new(Cached {
                creds: None,
                retry_at: 0,
            }),
        }
    }

    /// Credentials valid at `now` (seconds since the epoch) for a while
    /// yet: cached, or from `fetch` (credentials and their expiry). After
    /// a first success a failed renewal returns the old ones, with a line
    /// on stderr naming `what`; before, it is the error.
    pub fn get(
        &self,
        now: u64,
        what: impl FnOnce() -> String,
        fetch: impl FnOnce() -> Result<(T, u64), String>,
    ) -> Result<Arc<T>, String> {
        let mut c = self.cached.lock().expect("credentials");
        let Cached {
            creds: cached,
            retry_at,
        } = &mut *c;
        if let Some((creds, expires)) = cached
            && (now + RENEW_BEFORE < *expires || now < *retry_at)
        {
            return Ok(creds.clone());
        }
        match fetch() {
            Ok((creds, expires)) => {
                let creds = Arc::new(creds);
                *cached = Some((creds.clone(), expires));
                Ok(creds)
            }
            Err(why) => {
                *retry_at = now + RETRY_AFTER;
                match cached {
                    Some((creds, _)) => {
                        eprintln!("warning: renewing credentials from {}: {why}", what());
                        Ok(creds.clone())
                    }
                    None => Err(why),
                }
            }
        }
    }

    /// Sets the credentials and the retry time (tests).
    #[cfg(test)]
    pub fn set(&self, creds: Option<(T, u64)>, retry_at: u64) {
        *self.cached.lock().unwrap() = Cached {
            creds: creds.map(|(c, e)| (Arc::new(c), e)),
            retry_at,
        };
    }

    /// When a failed renewal may be tried again (tests).
    #[cfg(test)]
    pub fn retry_at(&self) -> u64 {
        self.cached.lock().unwrap().retry_at
    }
}

impl<T> Default for Renewing<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// `f` of a [`Net`] made for credential endpoints (answers within
/// `timeout`; link-local metadata services never through a proxy), run to
/// its end on a thread of its own: the callers sign URLs from inside
/// runtimes, which must not block on another.
pub fn blocking<T: Send>(
    timeout: Duration,
    no_proxy: bool,
    f: impl AsyncFnOnce(&Net) -> Result<T, String> + Send,
) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(move || {
            let cfg = NetConfig {
                connect_timeout: timeout,
                timeout,
                proxy: no_proxy.then(String::new),
                ..NetConfig::default()
            };
            let net = Net::new(cfg).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(f(&net))
        })
        .join()
        .unwrap_or_else(|_| Err("fetching credentials panicked".into()))
    })
}

/// One exchange with a credentials endpoint: its status and body.
pub async fn call(
    net: &Net,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
) -> Result<(u16, Vec<u8>), String> {
    let u = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let mut conn = None;
    let shown = url.split('?').next().unwrap_or(url);
    let r = crate::fetch::conn::exchange(net, &mut conn, method, &u, headers, body, MAX_ANSWER);
    let (head, body) = r.await.map_err(|e| format!("{shown}: {e}"))?;
    Ok((head.status, body))
}
