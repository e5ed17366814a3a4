//! How one object reaches a store, whatever it comes from (a local file,
//! another store's object, a URL): whole in one write when it fits in a
//! part, else in parts — S3's multipart upload ([`crate::store::put`]),
//! Azure's blocks ([`crate::store::blocks`]), GCS's composed parts
//! ([`crate::store::compose`]) — each found again by a rerun after a kill.
//! Bytes are read on demand, a part at a time, under a memory budget.
//! [`ToStore`] is what every copy into a store takes from the command line;
//! `up`, `between` and `web` make the [`Up`]s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::error::RunError;
use crate::fetch::RetryPolicy;
use crate::fetch::http1::Method;
use crate::fetch::net::{Net, NetConfig};
use crate::progress::{Counters, Display};
use crate::store::blocks::{Blocks, block_id};
use crate::store::compose::{COMPOSE_MAX, Composer, part_name, parts_prefix};
use crate::store::put::{Caller, Client, md5};
use crate::store::s3::{Object, etag_md5};
use crate::store::{Kind, Store, StoreOpts};
use crate::units::hex;

/// Bytes of files held in memory at once, in KiB (the semaphore's permits).
const BUDGET_KIB: usize = 256 << 10;
/// Parts of one file sent at once.
const PARTS_AT_ONCE: usize = 8;
/// The most parts S3 takes in one upload.
const MAX_PARTS: u64 = 10_000;

/// What every copy into a store takes from the command line.
#[derive(Clone, Debug)]
pub struct ToStore {
    pub recursive: bool,
    pub overwrite: bool,
    /// Skip an object only by content, never by time.
    pub checksum: bool,
    /// Larger objects go in parts of this size (grown where one would
    /// need too many).
    pub part_size: u64,
    /// Objects in flight at once.
    pub workers: usize,
    pub display: Display,
    pub net: NetConfig,
    pub policy: RetryPolicy,
    pub store_opts: StoreOpts,
}

impl ToStore {
    pub(super) fn rules(&self) -> Rules {
        Rules {
            overwrite: self.overwrite,
            checksum: self.checksum,
            part_size: self.part_size,
        }
    }

    /// The destination store (with credentials that may write) and the
    /// run's connections.
    pub(super) fn open(&self, kind: Kind, bucket: &str) -> Result<(Store, Net), RunError> {
        let loc = crate::store::Location {
            kind,
            bucket: bucket.to_string(),
            prefix: String::new(),
        };
        let opts = StoreOpts {
            write: true,
            ..self.store_opts.clone()
        };
        let store = crate::store::from_env(&loc, &opts)?;
        Ok((store, Net::new(self.net.clone())?))
    }
}

/// `p` as a prefix: empty, or ending in `/`.
pub(super) fn with_slash(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

/// Where an object's bytes come from.
pub(super) enum Src {
    /// A local file.
    File(PathBuf),
    /// An object of the source store (its key there; for messages, its
    /// `scheme://bucket/key`).
    Object { key: String, shown: String },
    /// A file on a web server.
    Url(String),
}

impl Src {
    /// What a failure names.
    pub(super) fn shown(self) -> PathBuf {
        match self {
            Src::File(p) => p,
            Src::Object { shown, .. } => shown.into(),
            Src::Url(u) => u.into(),
        }
    }
}

/// One file (or object) to send.
pub(super) struct Up {
    pub from: Src,
    pub key: String,
    pub size: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: u64,
    /// The object under that key now.
    pub there: Option<Object>,
}

/// The part size for a file of `size` bytes in at most `max_parts` parts.
fn part_size_for(size: u64, min: u64, max_parts: u64) -> u64 {
    let need = size.div_ceil(max_parts);
    min.max(need.div_ceil(1 << 20) << 20)
}

/// Where the files go.
enum Dest<'a> {
    S3(Client<'a>),
    Az(Blocks<'a>),
    Gs(Composer<'a>),
}

/// When an object at the destination counts as the file, and the parts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rules {
    pub overwrite: bool,
    pub checksum: bool,
    pub part_size: u64,
}

/// What the workers share.
pub(super) struct Shared<'a> {
    dest: Dest<'a>,
    /// The source store, when objects come from one.
    source: Option<&'a Store>,
    /// Ranged GETs of a source store's objects or of URLs.
    fetcher: Caller<'a>,
    rules: Rules,
    budget: Semaphore,
    counters: &'a Counters,
}

/// The largest part read from a source store in one GET.
const MAX_PART: usize = 5 << 30;

async fn read_at(path: PathBuf, at: u64, len: u64) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut b = vec![0; len as usize];
        f.read_exact_at(&mut b, at).map_err(|e| {
            format!(
                "cannot read {} (bytes {at}..{}): {e}; did it shrink?",
                path.display(),
                at + len
            )
        })?;
        Ok(b)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether a killed run already sent the part `name` at `len` bytes
/// (`had`: the names and sizes the store holds).
fn sent_before(had: &[(String, u64)], name: &str, len: u64) -> bool {
    had.iter().any(|(h, size)| h == name && *size == len)
}

/// The ETag S3 gives a multipart object of these parts' MD5s.
fn multipart_etag(md5s: &[[u8; 16]]) -> String {
    let all: Vec<u8> = md5s.iter().flatten().copied().collect();
    format!("{}-{}", hex(&md5(&all)), md5s.len())
}

impl<'a> Shared<'a> {
    /// Workers' state for writing to `dest`, reading from `source` (a
    /// store) or from local files.
    pub fn new(
        dest: &'a Store,
        source: Option<&'a Store>,
        net: &'a Net,
        policy: &'a RetryPolicy,
        stop: &'a AtomicBool,
        rules: Rules,
        counters: &'a Counters,
    ) -> Self {
        let dest = match dest {
            Store::S3(s3) => Dest::S3(Client::new(s3, net, policy, stop)),
            Store::Az(az) => Dest::Az(Blocks::new(az, net, policy, stop)),
            Store::Gs(gs) => Dest::Gs(Composer::new(gs, net, policy, stop)),
        };
        Shared {
            dest,
            source,
            fetcher: Caller::new(net, policy, stop).max_answer(MAX_PART),
            rules,
            budget: Semaphore::new(BUDGET_KIB),
            counters,
        }
    }

    /// `len` bytes of `up` from `at`: read from its file, or a ranged GET
    /// of its object.
    async fn read(&self, up: &Up, at: u64, len: u64) -> Result<Vec<u8>, String> {
        let (url, shown) = match (&up.from, self.source) {
            (Src::File(p), _) => return read_at(p.clone(), at, len).await,
            (Src::Object { key, shown }, Some(store)) => {
                (store.object_url(Method::Get, key), shown.as_str())
            }
            (Src::Url(u), _) => (u.clone(), u.as_str()),
            (Src::Object { shown, .. }, None) => return Err(format!("{shown}: no source store")),
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={at}-{}", at + len - 1);
        let h = [("Range", range.as_str())];
        let (head, body) = (self.fetcher)
            .call(Method::Get, &url, &h, Bytes::new())
            .await?;
        // A whole answer (200) to a range of all of it is the same.
        if body.len() as u64 != len || (head.status == 200 && at > 0) {
            return Err(format!(
                "{shown}: asked for bytes {at}..{}, got {} (HTTP {}): did it change?",
                at + len,
                body.len(),
                head.status
            ));
        }
        Ok(body)
    }

    /// A file from the web (its size unknown): its first part asked for;
    /// all of it there (a 200, or a 206 of a total no larger) is written
    /// whole, else it goes in parts as any large file.
    pub async fn send_from_web(&self, mut up: Up) -> Result<bool, String> {
        let Src::Url(url) = &up.from else {
            return self.send(&up).await;
        };
        let ps = self.rules.part_size;
        let room = self.room(ps).await;
        let range = format!("bytes=0-{}", ps - 1);
        let h = [("Range", range.as_str())];
        let r = (self.fetcher)
            .call(Method::Get, url, &h, Bytes::new())
            .await;
        let (head, body) = match r {
            // An empty file: no byte 0 to give.
            Err(e) if e.is_status(416) => (Default::default(), Vec::new()),
            r => r?,
        };
        let total = match head.content_range {
            Some((_, _, Some(t))) if head.status == 206 => t,
            _ => body.len() as u64,
        };
        if total == body.len() as u64 {
            let sum = md5(&body);
            self.put_whole(&up.key, Bytes::from(body), sum).await?;
            self.counters.bytes.fetch_add(total, Ordering::Relaxed);
            return Ok(true);
        }
        drop(room);
        up.size = total;
        self.send(&up).await
    }

    /// One whole object, `sum` its MD5, by the destination's single write.
    async fn put_whole(&self, key: &str, body: Bytes, sum: [u8; 16]) -> Result<(), String> {
        match &self.dest {
            Dest::S3(c) => c.put_object(key, body, sum).await,
            Dest::Az(b) => b.put_blob(key, body, sum).await,
            Dest::Gs(c) => c.put_object(key, body, sum).await,
        }
    }

    /// Bytes of memory for `len` bytes, waited for.
    async fn room(&self, len: u64) -> tokio::sync::SemaphorePermit<'_> {
        let kib = (len.div_ceil(1024) as usize).clamp(1, BUDGET_KIB);
        self.budget
            .acquire_many(kib as u32)
            .await
            .expect("the budget is never closed")
    }

    /// Sends one file; Ok(false) when it was already there.
    pub async fn send(&self, up: &Up) -> Result<bool, String> {
        // Only an object of the same size can be the same: by time (written
        // after the file last changed), unless --checksum, else by content.
        let same_size =
            !self.rules.overwrite && up.there.as_ref().is_some_and(|o| o.size == up.size);
        if same_size && !self.rules.checksum {
            let o = up.there.as_ref().expect("listed");
            if o.modified_secs().is_some_and(|w| w >= up.mtime) {
                return Ok(false);
            }
        }
        // GCS composes 32 objects at a time, in two levels here.
        let max_parts = match self.dest {
            Dest::Gs(_) => (COMPOSE_MAX * COMPOSE_MAX) as u64,
            _ => MAX_PARTS,
        };
        let ps = part_size_for(up.size, self.rules.part_size, max_parts);
        if up.size <= ps {
            let _room = self.room(up.size).await;
            let body = self.read(up, 0, up.size).await?;
            let sum = md5(&body);
            if same_size && up.there.as_ref().and_then(|o| o.md5) == Some(sum) {
                return Ok(false);
            }
            self.put_whole(&up.key, Bytes::from(body), sum).await?;
            self.counters.bytes.fetch_add(up.size, Ordering::Relaxed);
            return Ok(true);
        }
        match &self.dest {
            Dest::S3(c) => self.multipart(c, up, ps, same_size).await,
            Dest::Az(b) => self.blocks(b, up, ps).await,
            Dest::Gs(c) => self.composite(c, up, ps).await,
        }
    }

    /// Sends the parts of `up` (`ps` bytes each, the last shorter),
    /// [`PARTS_AT_ONCE`] at a time: each is read, hashed, and handed to
    /// `send(index, body, md5, len)`, which sends it unless a killed run
    /// already did, and says what the store calls it (a name, an id, an
    /// ETag). Those, in order.
    async fn parts(
        &self,
        up: &Up,
        ps: u64,
        send: impl AsyncFn(u32, Bytes, [u8; 16], u64) -> Result<String, String>,
    ) -> Result<Vec<String>, String> {
        let n = up.size.div_ceil(ps) as u32;
        let send = &send;
        let sent: Vec<Result<(u32, String), String>> = futures_util::stream::iter(0..n)
            .map(|i| async move {
                let at = u64::from(i) * ps;
                let len = ps.min(up.size - at);
                let _room = self.room(len).await;
                let body = self.read(up, at, len).await?;
                let sum = md5(&body);
                let named = send(i, Bytes::from(body), sum, len).await?;
                self.counters.bytes.fetch_add(len, Ordering::Relaxed);
                Ok((i, named))
            })
            .buffer_unordered(PARTS_AT_ONCE)
            .collect()
            .await;
        let mut v = sent.into_iter().collect::<Result<Vec<_>, String>>()?;
        v.sort_by_key(|p| p.0);
        Ok(v.into_iter().map(|(_, named)| named).collect())
    }

    /// A large file as parts composed into the object, keeping the parts
    /// a killed run left.
    async fn composite(&self, c: &Composer<'_>, up: &Up, ps: u64) -> Result<bool, String> {
        let prefix = parts_prefix(&up.key);
        let had = c.parts(&prefix).await?;
        let send = async |i, body, sum, len| {
            let name = part_name(&prefix, i, &sum);
            if !sent_before(&had, &name, len) {
                c.put_part(&name, body, sum).await?;
            }
            Ok(name)
        };
        let names = self.parts(up, ps, send).await?;
        let made = c.compose(&up.key, &prefix, &names).await?;
        // The parts, groups, and any a killed run sent that this one did
        // not use: deleted, best effort (a rerun lists what is left).
        let stale = had
            .into_iter()
            .map(|(h, _)| h)
            .filter(|h| !names.contains(h));
        let all: Vec<String> = names.iter().cloned().chain(made).chain(stale).collect();
        futures_util::stream::iter(all.iter())
            .for_each_concurrent(PARTS_AT_ONCE, |p| async move {
                let _ = c.delete(p).await;
            })
            .await;
        Ok(true)
    }

    /// A large file in blocks, keeping those a killed run left.
    async fn blocks(&self, b: &Blocks<'_>, up: &Up, ps: u64) -> Result<bool, String> {
        let had = b.uncommitted(&up.key).await?;
        let send = async |i, body, sum, len| {
            let id = block_id(i, &sum);
            if !sent_before(&had, &id, len) {
                b.put_block(&up.key, &id, body, sum).await?;
            }
            Ok(id)
        };
        let ids = self.parts(up, ps, send).await?;
        b.commit(&up.key, &ids).await?;
        Ok(true)
    }

    /// A large file in parts, resuming an upload a killed run left.
    async fn multipart(
        &self,
        client: &Client<'_>,
        up: &Up,
        ps: u64,
        same_size: bool,
    ) -> Result<bool, String> {
        let n = up.size.div_ceil(ps) as u32;
        let range = |i: u32| {
            let at = u64::from(i - 1) * ps;
            (at, ps.min(up.size - at))
        };
        if same_size
            && let Some(etag) = up.there.as_ref().and_then(|o| o.etag.clone())
            && etag.ends_with(&format!("-{n}"))
        {
            let mut md5s = Vec::with_capacity(n as usize);
            for i in 1..=n {
                let (at, len) = range(i);
                let _room = self.room(len).await;
                md5s.push(md5(&self.read(up, at, len).await?));
            }
            if multipart_etag(&md5s) == etag {
                return Ok(false);
            }
        }
        let found = match client.resume(&up.key).await? {
            Some(r) => r,
            None => crate::store::put::Resumed {
                id: client.create(&up.key).await?,
                ..Default::default()
            },
        };
        let (had, id) = (&found.parts, &found.id);
        // S3 numbers parts from 1; a part a killed run sent is kept when its
        // size and MD5 (its ETag) match.
        let send = async |i: u32, body, sum, len| {
            let number = i + 1;
            match had.iter().find(|p| p.number == number) {
                Some(p) if p.size == len && etag_md5(&p.etag) == Some(sum) => Ok(hex(&sum)),
                _ => client.part(&up.key, id, number, body, sum).await,
            }
        };
        let etags = self.parts(up, ps, send).await?;
        let parts: Vec<(u32, String)> = (1..).zip(etags).collect();
        client.complete(&up.key, id, &parts).await?;
        // Uploads of this key older than the one finished (several killed
        // runs) would keep their parts, billed, for ever: dropped, best
        // effort (a rerun's listing finds any left).
        for old in &found.stale {
            let _ = client.abort(&up.key, old).await;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_past_ten_thousand() {
        assert_eq!(part_size_for(100 << 20, 8 << 20, MAX_PARTS), 8 << 20);
        let big = 1 << 40;
        for max in [MAX_PARTS, 1024] {
            let ps = part_size_for(big, 8 << 20, max);
            assert!(big.div_ceil(ps) <= max && ps.is_multiple_of(1 << 20));
        }
    }

    #[test]
    fn multipart_etags_are_md5s_of_md5s() {
        // Two parts "a" and "b": md5(md5("a") ‖ md5("b")) with "-2".
        let e = multipart_etag(&[md5(b"a"), md5(b"b")]);
        assert!(e.ends_with("-2") && e.len() == 34, "{e}");
    }
}
