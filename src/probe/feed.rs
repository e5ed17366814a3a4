//! The probe's feeder: reads the paths in input order, answers local
//! and unusable ones at once, and hands remote ones (http(s), presigned
//! `s3://`) to the workers in batches, each waiting for room in the
//! window.

use std::io::{self, BufRead};
use std::sync::atomic::Ordering;

use super::{Meta, Probe, ProbePlan, rfc3339};
use crate::error::{FetchError, RunError};
use crate::fetch::http1::Method;
use crate::fetch::url::Url;
use crate::pipeline::{Batch, Shared};
use crate::progress::Local;
use crate::store::Signer;

/// What kind of path a string is.
enum PathKind<'a> {
    Remote,
    /// An object store's path (`s3://`, `az://`, `gs://`).
    Store,
    /// A URL of a scheme bulkget does not speak (`ftp://`, `file://`).
    Unsupported(&'a str),
    Local,
}

fn kind(p: &str) -> PathKind<'_> {
    if crate::fetch::url::is_http(p) {
        PathKind::Remote
    } else if crate::store::Kind::of_url(p).is_some() {
        PathKind::Store
    } else if let Some(s) = crate::fetch::url::scheme(p) {
        PathKind::Unsupported(s)
    } else {
        PathKind::Local
    }
}

/// Hands remote paths to the workers in batches, in input order; answers
/// local and unusable paths itself. Each path waits for room in the window.
struct Feed<'a> {
    sh: &'a Shared<ProbePlan>,
    tx: async_channel::Sender<Batch<Probe>>,
    signer: Signer,
    batch: Vec<Probe>,
    /// Batches start small (a short list reaches every core) and grow.
    size: usize,
    seq: u64,
    local: Local,
    /// Paths read and not yet added to the run's `listed` count.
    listed: u64,
}

impl Feed<'_> {
    /// False once the workers are gone.
    fn one(&mut self, p: &str) -> bool {
        let (sh, plan) = (self.sh, &self.sh.plan);
        let s = self.seq;
        self.seq += 1;
        plan.out.wait_room(s);
        self.listed += 1;
        if self.listed >= 1024 {
            self.publish();
        }
        let remote = |signed: Option<String>| Probe {
            seq: s,
            path: p.into(),
            signed: signed.map(String::into_boxed_str),
            get: false.into(),
        };
        let why = match kind(p) {
            PathKind::Remote => match Url::parse(p) {
                Ok(_) => {
                    self.batch.push(remote(None));
                    None
                }
                Err(why) => Some(format!("not a usable URL: {why}")),
            },
            PathKind::Store => match self.signer.presign(Method::Head, p) {
                Ok(signed) => {
                    self.batch.push(remote(signed));
                    None
                }
                Err(why) => Some(why),
            },
            PathKind::Unsupported(s) => Some(crate::fetch::url::unsupported(s)),
            PathKind::Local => match std::fs::metadata(p) {
                Ok(m) => {
                    let meta = Meta {
                        size: m.is_file().then_some(m.len()),
                        mtime: m.modified().ok().map(rfc3339),
                        etag: None,
                    };
                    plan.present(s, p, &meta);
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    plan.absent(s, p);
                    None
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    plan.absent(s, p);
                    None
                }
                Err(e) => Some(format!("cannot stat: {e}")),
            },
        };
        if let Some(why) = why {
            let err = FetchError::Input(why);
            sh.ctx.give_up(p, p, &err, 0, &mut self.local);
            plan.error(s, p, &err.to_string());
        }
        if self.batch.len() >= self.size {
            self.size = (self.size * 2).min(64);
            return self.send();
        }
        true
    }

    fn publish(&mut self) {
        let n = std::mem::take(&mut self.listed);
        self.sh.ctx.counters.listed.fetch_add(n, Ordering::Relaxed);
    }

    fn send(&mut self) -> bool {
        let entries = std::mem::take(&mut self.batch);
        entries.is_empty()
            || self
                .tx
                .send_blocking(Batch {
                    recheck: None,
                    page: None,
                    entries,
                })
                .is_ok()
    }
}

pub(super) fn feed(
    sh: &Shared<ProbePlan>,
    paths: Vec<String>,
    list: Option<Box<dyn BufRead + Send>>,
    signer: Signer,
    tx: async_channel::Sender<Batch<Probe>>,
) -> Result<(), RunError> {
    let mut f = Feed {
        sh,
        tx,
        signer,
        batch: Vec::new(),
        size: 4,
        seq: 0,
        local: Local::default(),
        listed: 0,
    };
    let mut ok = paths.iter().all(|p| f.one(p));
    let mut r = Ok(());
    if let Some(list) = list {
        for (i, line) in list.lines().enumerate() {
            if !ok || sh.ctx.stopping() {
                break;
            }
            match line {
                Ok(l) => {
                    let p = l.strip_suffix('\r').unwrap_or(&l);
                    ok = p.is_empty() || f.one(p);
                }
                Err(e) => {
                    r = Err(RunError::Other(format!(
                        "reading the list at line {}: {e}",
                        i + 1
                    )));
                    break;
                }
            }
        }
    }
    f.send();
    f.publish();
    f.local.publish(&sh.ctx.counters);
    r
}
