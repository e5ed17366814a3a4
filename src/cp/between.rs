//! `bulkget cp [-r] STORE://A/P STORE://B/Q`: objects copied between
//! buckets, many at once. S3 to S3 copies inside the store (CopyObject: no
//! byte passes through bulkget); any other pair (S3, Azure, GCS, in any
//! direction) streams each object through: ranged GETs of the source, the
//! writes `cp` makes to the destination ([`super::up::Shared`]: whole, or
//! in parts, blocks or composed parts), so a large object never sits
//! whole in memory and a killed copy resumes as an upload does.
//!
//! ```text
//!  lister thread: ListObjectsV2 of the source ──merge── ListObjectsV2 of DST
//!     (both in key order: the keys below each prefix sort alike)
//!     │ one Copy per object, with the object already at DST (if any)
//!     ▼ bounded channel
//!  workers × --workers: PUT DST-key, x-amz-copy-source signed (store::put)
//! ```
//!
//! An object already at DST is skipped when it has the source's size and
//! either its ETag (the same content) or a `LastModified` not older than
//! the source's (copied since the source last changed: a copy of a
//! multipart object gets a new ETag). `--overwrite` copies everything.
//! Both sides are reached with one configuration (endpoint, credentials),
//! each by its store's conventions. CopyObject takes objects up to 5 GiB;
//! larger ones fail alone, named (UploadPartCopy is not built yet).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::CpOutcome;
use super::up::{Rules, Shared, Src, There, Up};
use super::work::{runtime, work};
use crate::error::RunError;
use crate::fetch::RetryPolicy;
use crate::fetch::net::{Net, NetConfig};
use crate::progress::{CopyBars, Counters, Display};
use crate::store::put::Client;
use crate::store::s3::Object;
use crate::store::{Kind, Store, StoreOpts};

/// CopyObject's largest object.
const MAX_COPY: u64 = 5 << 30;

#[derive(Clone, Debug)]
pub struct BetweenConfig {
    pub src_kind: Kind,
    pub src_bucket: String,
    /// The source key (one object) or prefix (`-r`).
    pub src_key: String,
    pub dst_kind: Kind,
    pub dst_bucket: String,
    pub dst_key: String,
    pub recursive: bool,
    pub overwrite: bool,
    /// Content only, no times (objects streamed through).
    pub checksum: bool,
    /// Objects streamed through larger than this go in parts.
    pub part_size: u64,
    pub workers: usize,
    pub display: Display,
    pub net: NetConfig,
    pub policy: RetryPolicy,
    pub store_opts: StoreOpts,
}

/// One object to copy.
struct Copy {
    from: Object,
    key: String,
    there: Option<Object>,
}

fn same(from: &Object, there: &Object) -> bool {
    if from.size != there.size {
        return false;
    }
    if from.etag.is_some() && from.etag == there.etag {
        return true;
    }
    matches!((from.modified_secs(), there.modified_secs()), (Some(a), Some(b)) if b >= a)
}

fn with_slash(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

pub fn run(cfg: &BetweenConfig, stop: Arc<AtomicBool>) -> Result<CpOutcome, RunError> {
    let started = Instant::now();
    let loc = |kind, b: &str| crate::store::Location {
        kind,
        bucket: b.to_string(),
        prefix: String::new(),
    };
    let src = crate::store::from_env(&loc(cfg.src_kind, &cfg.src_bucket), &cfg.store_opts)?;
    let opts = StoreOpts {
        write: true,
        ..cfg.store_opts.clone()
    };
    let dst = crate::store::from_env(&loc(cfg.dst_kind, &cfg.dst_bucket), &opts)?;
    let net = Net::new(cfg.net.clone())?;
    let counters = Arc::new(Counters::default());
    let failures = Mutex::new(Vec::new());
    let bars = CopyBars::start(counters.clone(), started, cfg.display);
    let (tx, rx) = async_channel::bounded::<Copy>(cfg.workers.max(1) * 4);
    // (source prefix listed, and what each key below it becomes at DST).
    let (from_prefix, to_prefix) = if cfg.recursive {
        (with_slash(&cfg.src_key), with_slash(&cfg.dst_key))
    } else {
        (cfg.src_key.clone(), cfg.dst_key.clone())
    };
    let one_name = cfg.src_key.rsplit('/').next().unwrap_or_default();

    let lister = || -> Result<(), RunError> {
        runtime(false)?.block_on(async {
            let policy = &cfg.policy;
            let mut from = There::new(&src, &net, policy, &stop, from_prefix.clone());
            let mut there = There::new(&dst, &net, policy, &stop, to_prefix.clone());
            while let Some(o) = from.next().await? {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = if cfg.recursive {
                    format!("{to_prefix}{}", &o.key[from_prefix.len()..])
                } else if o.key != cfg.src_key {
                    continue; // a longer key under the same prefix
                } else if to_prefix.is_empty() || to_prefix.ends_with('/') {
                    format!("{to_prefix}{one_name}")
                } else {
                    to_prefix.clone()
                };
                counters.listed.fetch_add(1, Ordering::Relaxed);
                counters.listed_bytes.fetch_add(o.size, Ordering::Relaxed);
                let found = there.find(&key).await?;
                let c = Copy {
                    from: o,
                    key,
                    there: found,
                };
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            drop(tx);
            counters.listing_done.store(true, Ordering::Relaxed);
            Ok(())
        })
    };

    let src_scheme = cfg.src_kind.scheme();
    let shown_of = |key: &str| format!("{src_scheme}://{}/{key}", cfg.src_bucket);
    let listed = match (&src, &dst) {
        (Store::S3(_), Store::S3(d)) => {
            let client = Client::new(d, &net, &cfg.policy, &stop);
            let copy = async |c: &Copy| {
                if !cfg.overwrite && c.there.as_ref().is_some_and(|t| same(&c.from, t)) {
                    return Ok(false);
                }
                if c.from.size > MAX_COPY {
                    let why =
                        "larger than 5 GiB: a copy in parts (UploadPartCopy) is not built yet";
                    return Err(why.to_string());
                }
                let mut source = String::new();
                crate::store::sigv4::encode(&mut source, &cfg.src_bucket, false);
                source.push('/');
                crate::store::sigv4::encode(&mut source, &c.from.key, true);
                client.copy_object(&c.key, &source).await?;
                counters.bytes.fetch_add(c.from.size, Ordering::Relaxed);
                Ok(true)
            };
            let shown = |c: Copy| PathBuf::from(shown_of(&c.from.key));
            work(lister, rx, cfg.workers, &counters, &failures, copy, shown)
        }
        _ => {
            let rules = Rules {
                overwrite: cfg.overwrite,
                checksum: cfg.checksum,
                part_size: cfg.part_size,
            };
            let (policy, c) = (&cfg.policy, &counters);
            let sh = Shared::new(&dst, Some(&src), &net, policy, &stop, rules, c);
            let copy = async |c: &Copy| {
                let up = Up {
                    from: Src::Object {
                        key: c.from.key.clone(),
                        shown: shown_of(&c.from.key),
                    },
                    key: c.key.clone(),
                    size: c.from.size,
                    mtime: c.from.modified_secs().unwrap_or(0),
                    there: c.there.clone(),
                };
                sh.send(&up).await
            };
            let shown = |c: Copy| PathBuf::from(shown_of(&c.from.key));
            work(lister, rx, cfg.workers, &counters, &failures, copy, shown)
        }
    };
    drop(bars);
    listed?;
    if counters.listed.load(Ordering::Relaxed) == 0 && !cfg.recursive {
        return Err(RunError::Other(format!(
            "{}: no such object (give -r for a prefix)",
            shown_of(&cfg.src_key)
        )));
    }
    Ok(CpOutcome::ended(&counters, started, &failures, &stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(size: u64, etag: &str, modified: &str) -> Object {
        Object {
            key: "k".into(),
            size,
            md5: None,
            etag: Some(etag.into()),
            modified: Some(modified.into()),
            crc32c: None,
        }
    }

    #[test]
    fn same_by_size_and_etag_or_a_newer_copy() {
        let t0 = "2026-01-01T00:00:00.000Z";
        let t1 = "2026-01-02T00:00:00.000Z";
        assert!(same(&obj(5, "a", t1), &obj(5, "a", t0)));
        assert!(same(&obj(5, "a-2", t0), &obj(5, "b", t1)));
        assert!(!same(&obj(5, "a", t1), &obj(5, "b", t0)));
        assert!(!same(&obj(5, "a", t0), &obj(6, "a", t1)));
    }
}
