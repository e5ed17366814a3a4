//! `bulkget cp [-r] SRC s3://BUCKET/PREFIX/` (or `az://…`, `gs://…`): a
//! local file or tree uploaded, many objects at once, each whole or not at
//! all ([`super::send`]: whole, or in parts that a rerun after a kill
//! finds again). [`There`], the destination's listing in key order, serves
//! `between` and `web` too.
//!
//! ```text
//!  walker thread: local tree in key order ──merge── ListObjectsV2 of DST (lazy, same order)
//!     │ one Up per file, with the object already there (if any)
//!     ▼ bounded channel
//!  workers × --workers (one runtime, one thread per core): send::Shared::send
//!     ≤ part size: read, MD5, one write (PUT / Put Blob / multipart upload)
//!     larger: parts a killed run left are kept, the rest sent in parallel
//!  bytes read wait on a budget (256 MiB in memory at most)
//! ```
//!
//! The walk yields files in the order the stores list keys (bytes of the
//! relative path, a directory sorting as `name/`), so the listing of the
//! destination is merged with it in constant memory. An object already
//! there is skipped when its size is the file's and it was written after
//! the file was last modified (`LastModified` ≥ mtime: a rerun after a kill
//! skips what the first run sent without reading it), or else when its
//! ETag is the file's MD5 (for a multipart object, the MD5 of the parts'
//! MD5s at this part size): a file touched but not changed is read, not
//! sent. `--checksum` trusts no time: content only. `--overwrite` sends
//! everything. Object stores have no
//! directories, so empty ones are not copied; a link to a file is copied
//! as the file's contents, a link to a directory is not followed (a
//! failure, named).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, UNIX_EPOCH};

use super::CpOutcome;
use super::send::{Shared, Src, ToStore, Up, with_slash};
use super::work::{runtime, work};
use crate::error::RunError;
use crate::fetch::RetryPolicy;
use crate::fetch::net::Net;
use crate::progress::{CopyBars, Counters};
use crate::store::s3::Object;
use crate::store::{Kind, Store};

#[derive(Clone, Debug)]
pub struct UpConfig {
    pub src: PathBuf,
    /// The store (S3, Azure or GCS).
    pub kind: Kind,
    /// The bucket or container.
    pub bucket: String,
    /// The key (one file to a key not ending in `/`) or the prefix.
    pub key: String,
    pub to: ToStore,
}

/// Where each file of SRC goes: (source, key) in key order, lazily.
struct KeyWalk<'a> {
    /// Per directory open, its entries not yet taken, last first.
    stack: Vec<Vec<(String, PathBuf, bool)>>,
    failures: &'a Mutex<Vec<(PathBuf, String)>>,
}

impl KeyWalk<'_> {
    fn fail(&self, p: PathBuf, why: String) {
        self.failures.lock().expect("failures").push((p, why));
    }

    /// Reads one directory; `rel` is its key relative to the prefix.
    fn open(&mut self, dir: &std::path::Path, rel: &str) {
        let rd = match std::fs::read_dir(dir).and_then(|r| r.collect::<Result<Vec<_>, _>>()) {
            Ok(v) => v,
            Err(e) => return self.fail(dir.into(), format!("cannot read {}: {e}", dir.display())),
        };
        let mut v = Vec::with_capacity(rd.len());
        for e in rd {
            let p = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                self.fail(p, "the name is not UTF-8, as object keys must be".into());
                continue;
            };
            let is_dir = match e.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_file() => false,
                Ok(t) if t.is_symlink() => match std::fs::metadata(&p) {
                    Ok(m) if m.is_file() => false,
                    Ok(m) if m.is_dir() => {
                        let why = "a link to a directory: not followed".to_string();
                        self.fail(p, why);
                        continue;
                    }
                    Ok(_) => {
                        self.fail(p, "a link to neither a file nor a directory".into());
                        continue;
                    }
                    Err(e) => {
                        self.fail(p, format!("a broken link: {e}"));
                        continue;
                    }
                },
                Ok(_) => {
                    self.fail(p, "not a file, directory or link: not copied".into());
                    continue;
                }
                Err(e) => {
                    self.fail(p.clone(), format!("cannot read {}: {e}", p.display()));
                    continue;
                }
            };
            // A directory sorts as "name/", as its keys do.
            let key = if is_dir {
                format!("{rel}{name}/")
            } else {
                format!("{rel}{name}")
            };
            v.push((key, p, is_dir));
        }
        v.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        self.stack.push(v);
    }
}

impl Iterator for KeyWalk<'_> {
    /// (the file, its key relative to the prefix).
    type Item = (PathBuf, String);

    fn next(&mut self) -> Option<(PathBuf, String)> {
        loop {
            let top = self.stack.last_mut()?;
            let Some((key, path, is_dir)) = top.pop() else {
                self.stack.pop();
                continue;
            };
            if is_dir {
                self.open(&path, &key);
            } else {
                return Some((path, key));
            }
        }
    }
}

/// The objects under the prefix, in key order, a page at a time.
pub(super) struct There<'a> {
    store: &'a Store,
    net: &'a Net,
    policy: &'a RetryPolicy,
    stop: &'a AtomicBool,
    prefix: String,
    conn: Option<crate::fetch::Conn>,
    page: std::collections::VecDeque<Object>,
    token: Option<String>,
    done: bool,
}

impl<'a> There<'a> {
    pub fn new(
        store: &'a Store,
        net: &'a Net,
        policy: &'a RetryPolicy,
        stop: &'a AtomicBool,
        prefix: String,
    ) -> Self {
        There {
            store,
            net,
            policy,
            stop,
            prefix,
            conn: None,
            page: Default::default(),
            token: None,
            done: false,
        }
    }

    /// The next object listed, in key order.
    pub async fn next(&mut self) -> Result<Option<Object>, RunError> {
        loop {
            if let Some(o) = self.page.pop_front() {
                return Ok(Some(o));
            }
            if self.done {
                return Ok(None);
            }
            self.fetch().await?;
        }
    }

    async fn fetch(&mut self) -> Result<(), RunError> {
        let url = (self.store).list_url(&self.prefix, None, self.token.as_deref(), false);
        let (net, policy, stop) = (self.net, self.policy, self.stop);
        let kind = self.store.kind();
        let p = crate::store::page(net, policy, stop, &mut self.conn, &url, kind).await?;
        self.done = !(p.truncated && p.next.is_some());
        self.token = p.next;
        self.page.extend(p.objects);
        Ok(())
    }

    /// The object under `key`, if listed; objects before it are passed.
    pub async fn find(&mut self, key: &str) -> Result<Option<Object>, RunError> {
        loop {
            while let Some(o) = self.page.front() {
                match o.key.as_str().cmp(key) {
                    std::cmp::Ordering::Less => drop(self.page.pop_front()),
                    std::cmp::Ordering::Equal => return Ok(self.page.pop_front()),
                    std::cmp::Ordering::Greater => return Ok(None),
                }
            }
            if self.done {
                return Ok(None);
            }
            self.fetch().await?;
        }
    }
}

/// Where SRC's files go: the key prefix for a tree, or for one file its key.
fn plan(cfg: &UpConfig) -> Result<(bool, String), RunError> {
    let m = std::fs::metadata(&cfg.src)
        .map_err(|e| RunError::Other(format!("cannot read {}: {e}", cfg.src.display())))?;
    let key = &cfg.key;
    if m.is_dir() {
        if !cfg.to.recursive {
            return Err(RunError::Other(format!(
                "{} is a directory: give -r to copy a tree",
                cfg.src.display()
            )));
        }
        return Ok((true, with_slash(key)));
    }
    if key.is_empty() || key.ends_with('/') {
        let name = cfg.src.file_name().unwrap_or_default();
        let Some(name) = name.to_str() else {
            return Err(RunError::Other(format!(
                "{}: the name is not UTF-8, as object keys must be",
                cfg.src.display()
            )));
        };
        return Ok((false, format!("{key}{name}")));
    }
    Ok((false, key.clone()))
}

pub fn run(cfg: &UpConfig, stop: Arc<AtomicBool>) -> Result<CpOutcome, RunError> {
    let started = Instant::now();
    // A tree's prefix, or one file's key (its `rel` below is empty).
    let (tree, key) = plan(cfg)?;
    let (store, net) = cfg.to.open(cfg.kind, &cfg.bucket)?;
    let (to, policy) = (&cfg.to, &cfg.to.policy);
    let counters = Arc::new(Counters::default());
    let failures = Mutex::new(Vec::new());
    let bars = CopyBars::start(counters.clone(), started, to.display);
    let (tx, rx) = async_channel::bounded::<Up>(to.workers.max(1) * 4);

    let walker = || -> Result<(), RunError> {
        let rt = runtime(false)?;
        let mut there = There::new(&store, &net, policy, &stop, key.clone());
        let files: Box<dyn Iterator<Item = (PathBuf, String)>> = if tree {
            let mut walk = KeyWalk {
                stack: Vec::new(),
                failures: &failures,
            };
            walk.open(&cfg.src, "");
            Box::new(walk)
        } else {
            Box::new(std::iter::once((cfg.src.clone(), String::new())))
        };
        for (path, rel) in files {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let m = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    let why = format!("cannot read {}: {e}", path.display());
                    failures.lock().expect("failures").push((path, why));
                    continue;
                }
            };
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let key = format!("{key}{rel}");
            let found = rt.block_on(there.find(&key))?;
            counters.listed.fetch_add(1, Ordering::Relaxed);
            counters.listed_bytes.fetch_add(m.len(), Ordering::Relaxed);
            let up = Up {
                from: Src::File(path),
                key,
                size: m.len(),
                mtime,
                there: found,
            };
            if tx.send_blocking(up).is_err() {
                break;
            }
        }
        drop(tx);
        counters.listing_done.store(true, Ordering::Relaxed);
        Ok(())
    };

    let sh = Shared::new(&store, None, &net, policy, &stop, to.rules(), &counters);
    let walked = work(
        walker,
        rx,
        to.workers,
        &counters,
        &failures,
        async |up: &Up| sh.send(up).await,
        |up| up.from.shown(),
    );
    drop(bars);
    walked?;
    Ok(CpOutcome::ended(&counters, started, &failures, &stop))
}
