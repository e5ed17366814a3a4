//! `bulkget cp URL STORE://B/KEY` and `bulkget cp -r SERVER STORE://B/P/`:
//! one file from a URL, or every file a list-API server lists, into an
//! object store, streamed through (never to local disk).
//!
//! ```text
//!  lister: the names DST holds under the prefix (a set, listed first)
//!          list pages (-r), or the one URL
//!     │ one Web per name, marked if its object is at DST
//!     ▼ bounded channel
//!  workers × --workers: GET Range: bytes=0-(part size − 1)
//!     whole (the answer is all of it: 200, or 206 of a total ≤ part size)
//!         → the destination's whole write (PUT, Put Blob, multipart upload)
//!     larger (206 of a larger total) → parts by ranged GETs (cp::up::Shared)
//! ```
//!
//! The list API gives names only, no sizes or times, in no order a listing
//! of DST could be merged with: an object already at DST under the name is
//! skipped (a store shows an object only once it is whole, so one there is
//! complete), `--overwrite` sends all. The names at DST are held in memory
//! for that (about 100 bytes each: a million objects under the prefix
//! cost ~100 MiB). The names of
//! a server are checked as `mirror` checks them (a name that could not be
//! a file name fails alone, named), so a tree copied here and one mirrored
//! to disk hold the same names. One answer is read per file for a small
//! file; a server that ignores `Range` sends a large file whole, which is
//! then sent whole (up to the store's single-request limit).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::CpOutcome;
use super::send::{Shared, Src, ToStore, Up, with_slash};
use super::up::There;
use super::work::{runtime, work};
use crate::error::RunError;
use crate::fetch::Endpoint;
use crate::progress::{CopyBars, Counters};
use crate::store::Kind;

#[derive(Clone, Debug)]
pub struct WebConfig {
    /// A file's URL, or (with `-r`) a list-API server's base URL.
    pub src: String,
    pub dst_kind: Kind,
    pub dst_bucket: String,
    /// The key (one file to a key not ending in `/`) or the prefix.
    pub dst_key: String,
    pub to: ToStore,
}

/// One file to copy: its URL, its key at DST, and whether an object is
/// there already.
struct Web {
    url: String,
    key: String,
    there: bool,
}

pub fn run(cfg: &WebConfig, stop: Arc<AtomicBool>) -> Result<CpOutcome, RunError> {
    let started = Instant::now();
    let to = &cfg.to;
    let (dst, net) = to.open(cfg.dst_kind, &cfg.dst_bucket)?;
    let counters = Arc::new(Counters::default());
    let failures = Mutex::new(Vec::new());
    let bars = CopyBars::start(counters.clone(), started, to.display);
    let (tx, rx) = async_channel::bounded::<Web>(to.workers.max(1) * 4);
    let prefix = if to.recursive {
        with_slash(&cfg.dst_key)
    } else {
        cfg.dst_key.clone()
    };

    let lister = || -> Result<(), RunError> {
        runtime(false)?.block_on(async {
            // What DST holds under the prefix (names only: the list API
            // lists in no order bulkget can merge with).
            let mut there = HashSet::new();
            if !to.overwrite {
                let mut t = There::new(&dst, &net, &to.policy, &stop, prefix.clone());
                while let Some(o) = t.next().await? {
                    there.insert(o.key);
                }
            }
            let send = async |url: String, key: String| {
                counters.listed.fetch_add(1, Ordering::Relaxed);
                let there = there.contains(&key);
                tx.send(Web { url, key, there }).await.is_ok()
            };
            if !to.recursive {
                let key = if prefix.is_empty() || prefix.ends_with('/') {
                    // Named as `get` names the file (the last segment,
                    // percent-decoded).
                    let name = crate::get::input::name_from_url(&cfg.src).map_err(|why| {
                        RunError::Other(format!("{}: {why}; give the whole key", cfg.src))
                    })?;
                    format!("{prefix}{name}")
                } else {
                    prefix.clone()
                };
                send(cfg.src.clone(), key).await;
            } else {
                let ep = Endpoint::parse(&cfg.src)?;
                let mut conn = None;
                let mut marker: Option<String> = None;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (net, policy) = (&net, &to.policy);
                    let page = crate::listing::fetch_page(
                        net,
                        policy,
                        &stop,
                        &ep,
                        &mut conn,
                        marker.as_deref(),
                    )
                    .await?;
                    for name in page.names {
                        let mut path = b"/get/".to_vec();
                        crate::names::push_url_path(&mut path, &name);
                        let url = ep.url_of(&String::from_utf8_lossy(&path));
                        if let Err(e) = crate::names::check(&name) {
                            let why = format!("the name cannot be a key here: {e}");
                            failures.lock().expect("failures").push((url.into(), why));
                            continue;
                        }
                        if !send(url, format!("{prefix}{name}")).await {
                            break;
                        }
                    }
                    match page.next {
                        Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                        _ => break,
                    }
                }
            }
            drop(tx);
            counters.listing_done.store(true, Ordering::Relaxed);
            Ok(())
        })
    };

    let sh = Shared::new(&dst, None, &net, &to.policy, &stop, to.rules(), &counters);
    let copy = async |w: &Web| {
        if w.there {
            return Ok(false);
        }
        let up = Up {
            from: Src::Url(w.url.clone()),
            key: w.key.clone(),
            size: 0,
            mtime: 0,
            there: None,
        };
        sh.send_from_web(up).await
    };
    let shown = |w: Web| PathBuf::from(w.url);
    let listed = work(lister, rx, to.workers, &counters, &failures, copy, shown);
    drop(bars);
    listed?;
    Ok(CpOutcome::ended(&counters, started, &failures, &stop))
}
