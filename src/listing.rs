//! Listing: one lister walks `GET /list` pages ahead of the downloads and
//! passes their names on as a bounded stream of [`Batch`]es (never single
//! names), registering each page with the [`Tracker`] first so the resume
//! cursor knows what is in flight.
//!
//! A page is `{"FileNames": [...], "NextMarker": "T"}` (`NextFile` is accepted
//! too: the talk's code reads that); the last page has no marker. Answers that
//! are not that JSON, a cursor that repeats (found with Brent's cycle finder in
//! constant memory), or a list endpoint that stays unreachable end the run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use crate::error::{FetchError, RunError};
use crate::fetch::net::Net;
use crate::fetch::{Conn, Endpoint, GiveUp, RetryPolicy};
use crate::journal::{FailureNames, Tracker};
use crate::progress::Counters;

/// Names for one worker, all from one page (or from the retry file).
pub type Batch = crate::pipeline::Batch<String>;

/// One page of the list API.
#[derive(Deserialize)]
pub struct PageJson {
    #[serde(rename = "FileNames")]
    pub names: Vec<String>,
    #[serde(rename = "NextMarker", alias = "NextFile", default)]
    pub next: Option<String>,
}

/// Largest list page accepted.
const MAX_PAGE: usize = 256 << 20;

pub struct Lister<'a> {
    pub ep: &'a Endpoint,
    pub net: &'a Net,
    pub policy: &'a RetryPolicy,
    pub batch: usize,
    pub tx: async_channel::Sender<Batch>,
    pub tracker: &'a Tracker,
    pub counters: &'a Counters,
    pub stop: &'a AtomicBool,
    pub quiet: bool,
}

/// How listing ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Listed {
    /// Every page was passed on; `retry_pages` pages came from the retry file.
    All {
        retry_pages: u64,
    },
    Stopped,
}

/// Brent's cycle finder over a listing's cursors, in constant memory: a
/// server whose cursors come round again is looping.
#[derive(Default)]
pub struct Cycle {
    saved: Option<String>,
    power: u64,
    lam: u64,
}

impl Cycle {
    /// The page listed from `from` names `next`: whether `next` was seen.
    pub fn repeats(&mut self, from: Option<&str>, next: &str) -> bool {
        if self.saved.as_deref() == Some(next) || from == Some(next) {
            return true;
        }
        self.lam += 1;
        if self.lam >= self.power.max(1) {
            self.saved = Some(next.to_string());
            self.power = self.power.max(1) * 2;
            self.lam = 0;
        }
        false
    }
}

fn encode_query(v: &str) -> String {
    let mut out = Vec::with_capacity(v.len());
    crate::names::push_url_path(&mut out, v);
    String::from_utf8(out).expect("ascii").replace('/', "%2F")
}

impl Lister<'_> {
    /// Feeds the retry file's names (if any), then every page from `start`.
    /// A name fed from the retry file is not fed again when a page lists
    /// it (a page that was in flight when the last run stopped, or every
    /// page of a listing that starts over): one try per name and run, and
    /// one line per name in the ledger. Those names are held in memory
    /// until a page lists them (last run's failures: ~100 bytes each).
    pub async fn run(
        &self,
        start: Option<String>,
        retry_file: Option<&Path>,
    ) -> Result<Listed, RunError> {
        let mut seq = 0u64;
        let mut tried: std::collections::HashSet<Box<str>> = Default::default();
        if let Some(path) = retry_file {
            let mut names = FailureNames::open(path)
                .map_err(|e| RunError::Other(format!("{}: {e}", path.display())))?;
            loop {
                let batch = names
                    .next_batch(self.batch)
                    .map_err(|e| RunError::Other(format!("{}: {e}", path.display())))?;
                if batch.is_empty() {
                    break;
                }
                self.tracker
                    .page_listed(seq, start.clone(), 1, start.clone());
                tried.extend(batch.iter().map(|n| Box::from(n.as_str())));
                if !self.pass(seq, batch).await {
                    return Ok(Listed::Stopped);
                }
                seq += 1;
            }
        }
        let retry_pages = seq;
        let mut conn: Option<Conn> = None;
        let mut marker = start;
        let resumed = marker.is_some();
        let mut cycle = Cycle::default();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Listed::Stopped);
            }
            let page = match self.fetch(&mut conn, marker.as_deref()).await {
                Err(_) if self.stop.load(Ordering::Relaxed) => return Ok(Listed::Stopped),
                Err(RunError::List { why, .. })
                    if resumed && seq == retry_pages && why.starts_with("HTTP 4") =>
                {
                    if !self.quiet {
                        eprintln!(
                            "bulkget: the server refused the saved listing cursor ({why}); listing again from the start, skipping files already here"
                        );
                    }
                    marker = None;
                    continue;
                }
                r => r?,
            };
            let next = page.next.filter(|m| !m.is_empty());
            if let Some(m) = &next
                && cycle.repeats(marker.as_deref(), m)
            {
                return Err(RunError::ListLoop {
                    url: page_url(self.ep, marker.as_deref()),
                    marker: m.clone(),
                });
            }
            self.counters
                .listed
                .fetch_add(page.names.len() as u64, Ordering::Relaxed);
            let mut names = page.names;
            if !tried.is_empty() {
                names.retain(|n| !tried.remove(n.as_str()));
            }
            let parts = names.len().div_ceil(self.batch) as u32;
            self.tracker
                .page_listed(seq, marker.clone(), parts, next.clone());
            while !names.is_empty() {
                let rest = if names.len() > self.batch {
                    names.split_off(self.batch)
                } else {
                    Vec::new()
                };
                if !self.pass(seq, names).await {
                    return Ok(Listed::Stopped);
                }
                names = rest;
            }
            seq += 1;
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(Listed::All { retry_pages }),
            }
        }
    }

    /// Hands a batch of page `seq` to the workers; false once they are gone.
    async fn pass(&self, seq: u64, entries: Vec<String>) -> bool {
        self.tx
            .send(Batch {
                recheck: None,
                page: Some(seq),
                entries,
            })
            .await
            .is_ok()
    }

    /// One page, with retries.
    async fn fetch(
        &self,
        conn: &mut Option<Conn>,
        marker: Option<&str>,
    ) -> Result<PageJson, RunError> {
        let (net, policy, stop) = (self.net, self.policy, self.stop);
        fetch_page(net, policy, stop, self.ep, conn, marker).await
    }
}

fn page_path(ep: &Endpoint, marker: Option<&str>) -> String {
    match marker {
        None => format!("{}/list", ep.base_path),
        Some(m) => format!("{}/list?next-marker={}", ep.base_path, encode_query(m)),
    }
}

fn page_url(ep: &Endpoint, marker: Option<&str>) -> String {
    let path = page_path(ep, marker);
    ep.url_of(&path[ep.base_path.len()..])
}

/// The list API's page after `marker` (the first without), with retries.
pub async fn fetch_page(
    net: &Net,
    policy: &RetryPolicy,
    stop: &AtomicBool,
    ep: &Endpoint,
    conn: &mut Option<Conn>,
    marker: Option<&str>,
) -> Result<PageJson, RunError> {
    let path = page_path(ep, marker);
    let url = page_url(ep, marker);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match get_small(net, conn, ep.key.borrow(), &path).await {
            Ok((200, body)) => {
                return serde_json::from_slice::<PageJson>(&body).map_err(|e| RunError::List {
                    url,
                    why: format!("the answer is not the API's JSON ({e})"),
                });
            }
            Ok((status, _)) => FetchError::Status {
                status,
                retry_after: None,
            },
            Err(e) => {
                *conn = None;
                e
            }
        };
        backoff(policy, stop, &url, &err, attempt).await?;
    }
}

/// After failed attempt `attempt` at a listing page of `url`: waits out
/// the backoff (never past a stop) and returns Ok to try again, or the
/// run's error when `err` is not worth another attempt or none is left.
pub async fn backoff(
    policy: &RetryPolicy,
    stop: &AtomicBool,
    url: &str,
    err: &FetchError,
    attempt: u32,
) -> Result<(), RunError> {
    match policy.pause(stop, err, attempt, attempt as u64).await {
        Ok(()) => Ok(()),
        Err(GiveUp::Stopped) => Err(RunError::Other("stopped".into())),
        Err(GiveUp::Failed(why)) => Err(RunError::List {
            url: url.to_string(),
            why,
        }),
    }
}

/// GETs `path` (with query) from `key` on `conn` (connecting if need be)
/// and reads the whole body, at most [`MAX_PAGE`] bytes: for listing pages
/// ([`crate::fetch::conn::exchange`], which also sends again at once on a
/// new connection when a kept one was closed meanwhile). 429 and 503 come
/// back as errors that carry Retry-After; a redirect is an error that says
/// where to.
pub async fn get_small(
    net: &Net,
    conn: &mut Option<Conn>,
    key: crate::fetch::url::OriginKey<'_>,
    path: &str,
) -> Result<(u16, Vec<u8>), FetchError> {
    let url = crate::fetch::url::Url {
        tls: key.tls,
        authority: key.authority,
        path,
    };
    let get = crate::fetch::http1::Method::Get;
    let (head, body) =
        crate::fetch::conn::exchange(net, conn, get, &url, &[], bytes::Bytes::new(), MAX_PAGE)
            .await?;
    if (300..400).contains(&head.status) {
        let to = head.location.as_deref().unwrap_or("nowhere");
        return Err(FetchError::Redirect(format!(
            "the list endpoint answers HTTP {} to {to:?}; give bulkget that base URL",
            head.status
        )));
    }
    if head.status == 429 || head.status == 503 {
        return Err(FetchError::Status {
            status: head.status,
            retry_after: head.retry_after,
        });
    }
    Ok((head.status, body))
}
