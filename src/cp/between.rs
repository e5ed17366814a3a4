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
use super::send::{Shared, Src, ToStore, Up, with_slash};
use super::up::There;
use super::work::{runtime, work};
use crate::error::RunError;
use crate::progress::{CopyBars, Counters};
use crate::store::put::Client;
use crate::store::s3::Object;
use crate::store::{Kind, Store};

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
    pub to: ToStore,
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

pub fn run(cfg: &BetweenConfig, stop: Arc<AtomicBool>) -> Result<CpOutcome, RunError> {
    let started = Instant::now();
    let src_loc = crate::store::Location {
        kind: cfg.src_kind,
        bucket: cfg.src_bucket.clone(),
        prefix: String::new(),
    };
    let to = &cfg.to;
    let src = crate::store::from_env(&src_loc, &to.store_opts)?;
    let (dst, net) = to.open(cfg.dst_kind, &cfg.dst_bucket)?;
    let counters = Arc::new(Counters::default());
    let failures = Mutex::new(Vec::new());
    let bars = CopyBars::start(counters.clone(), started, to.display);
    let (tx, rx) = async_channel::bounded::<Copy>(to.workers.max(1) * 4);
    // (source prefix listed, and what each key below it becomes at DST).
    let (from_prefix, to_prefix) = if to.recursive {
        (with_slash(&cfg.src_key), with_slash(&cfg.dst_key))
    } else {
        (cfg.src_key.clone(), cfg.dst_key.clone())
    };
    let one_name = cfg.src_key.rsplit('/').next().unwrap_or_default();

    let lister = || -> Result<(), RunError> {
        runtime(false)?.block_on(async {
            let policy = &to.policy;
            let mut from = There::new(&src, &net, policy, &stop, from_prefix.clone());
            let mut there = There::new(&dst, &net, policy, &stop, to_prefix.clone());
            while let Some(o) = from.next().await? {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = if to.recursive {
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
            let client = Client::new(d, &net, &to.policy, &stop);
            let copy = async |c: &Copy| {
                if !to.overwrite && c.there.as_ref().is_some_and(|t| same(&c.from, t)) {
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
            work(lister, rx, to.workers, &counters, &failures, copy, shown)
        }
        _ => {
            let (policy, c) = (&to.policy, &counters);
            let sh = Shared::new(&dst, Some(&src), &net, policy, &stop, to.rules(), c);
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
            work(lister, rx, to.workers, &counters, &failures, copy, shown)
        }
    };
    drop(bars);
    listed?;
    if counters.listed.load(Ordering::Relaxed) == 0 && !to.recursive {
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
