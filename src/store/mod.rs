//! Object stores: `s3://BUCKET/PREFIX` (S3 and S3-compatible stores),
//! `az://CONTAINER/PREFIX` (Azure Blob Storage, [`az`]) and
//! `gs://BUCKET/PREFIX` (Google Cloud Storage's JSON API, [`gs`]) as
//! sources here; S3 as a destination in [`put`] (used by `cp`).
//!
//! ```text
//!  ListObjectsV2 pages ──▶ get::store_feed ──▶ pipeline::core × cores ──▶ sink
//!  (one lister thread,      one Job per object:      presigned GETs, pipelined,
//!   bulkget's transport)    presigned URL, name,     adaptive, split when large,
//!                           listed size              size checked on landing
//! ```
//!
//! Every request is a presigned URL ([`sigv4`]), so listing and fetching go
//! through bulkget's own connections like any `get`. A key that cannot be a
//! file name here (`a//b`, `../x`, a trailing `/`) fails alone, named in the
//! ledger; the listing goes on. Each page is registered with the run's
//! `journal::Tracker`, whose cursor is the key the next run lists after
//! (`start-after`: continuation tokens are not meant to outlive a run).

pub mod az;
pub mod blocks;
pub mod compose;
pub mod gauth;
pub mod gs;
pub mod put;
pub mod renew;
pub mod role;
pub mod s3;
pub mod s3page;
pub mod sigv4;
mod xml;

use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{FetchError, RunError};
use crate::fetch::http1::Method;
use crate::fetch::net::Net;
use crate::fetch::url::Url;
use crate::fetch::{Conn, RetryPolicy};
use crate::job::{Job, Object};

/// Which store a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    S3,
    Az,
    Gs,
}

impl Kind {
    pub fn scheme(self) -> &'static str {
        match self {
            Kind::S3 => "s3",
            Kind::Az => "az",
            Kind::Gs => "gs",
        }
    }

    /// The store of an `s3://`, `az://` or `gs://` URL, and the rest of it.
    pub fn of_url(url: &str) -> Option<(Kind, &str)> {
        let scheme = crate::fetch::url::scheme(url)?;
        let rest = &url[scheme.len() + 3..];
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Kind::S3,
            "az" => Kind::Az,
            "gs" => Kind::Gs,
            _ => return None,
        };
        Some((kind, rest))
    }
}

/// `url` is an `s3://` path (in any case).
pub fn is_s3(url: &str) -> bool {
    matches!(Kind::of_url(url), Some((Kind::S3, _)))
}

/// An object-store path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub kind: Kind,
    /// The bucket (S3) or container (Azure).
    pub bucket: String,
    /// Keys under it are listed; it ends with `/` unless empty (whole bucket).
    pub prefix: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}/{}",
            self.kind.scheme(),
            self.bucket,
            self.prefix
        )
    }
}

/// `Some` for `s3://…`, `az://…` or `gs://…` (an error for a malformed
/// one or a store not built yet), `None` for anything else.
pub fn parse(url: &str) -> Option<Result<Location, String>> {
    let Some((kind, rest)) = Kind::of_url(url) else {
        let scheme = crate::fetch::url::scheme(url)?.to_ascii_lowercase();
        return matches!(scheme.as_str(), "abfs" | "abfss" | "azure").then(|| {
            Err(format!(
                "{scheme}:// is not supported yet (s3://, S3-compatible stores, az://CONTAINER/PREFIX and gs:// are)"
            ))
        });
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Some(Err(format!("{url}: no bucket")));
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Some(Ok(Location {
        kind,
        bucket: bucket.to_string(),
        prefix,
    }))
}

/// A store configured for one bucket or container.
#[derive(Clone, Debug)]
pub enum Store {
    S3(s3::S3),
    Az(az::Az),
    Gs(gs::Gs),
}

impl Store {
    /// A URL for `method` (GET, HEAD) of the object `key`.
    pub fn object_url(&self, method: Method, key: &str) -> String {
        match self {
            Store::S3(s) => s.object_url(method, key, now()),
            Store::Az(a) => a.object_url(key),
            Store::Gs(g) => g.object_url(key),
        }
    }

    /// A URL for one listing page under `prefix`: after the key or marker
    /// `after` (where the previous page, or a killed run, left off), or
    /// from the page token `token`.
    pub fn list_url(
        &self,
        prefix: &str,
        after: Option<&str>,
        token: Option<&str>,
        delimiter: bool,
    ) -> String {
        match self {
            Store::S3(s) => s.list_url_with(prefix, after, token, delimiter, now()),
            Store::Az(a) => a.list_url(prefix, token.or(after), delimiter),
            Store::Gs(g) => g.list_url(prefix, after, token, delimiter),
        }
    }

    /// Header lines signing a `GET` of `path` now (S3 with credentials:
    /// the `Authorization` form; presigned URLs cost some stores 10–15 % of
    /// their throughput to check). `None`: the presigned URL goes as is.
    pub fn sign_get(&self, path: &str) -> Option<String> {
        match self {
            Store::S3(s) => s.sign_get(path, now()),
            Store::Az(_) | Store::Gs(_) => None,
        }
    }

    /// Whether [`Store::sign_get`] signs this store's objects.
    pub fn signs_in_headers(&self) -> bool {
        matches!(self, Store::S3(s) if s.signs())
    }

    pub fn kind(&self) -> Kind {
        match self {
            Store::S3(_) => Kind::S3,
            Store::Az(_) => Kind::Az,
            Store::Gs(_) => Kind::Gs,
        }
    }

    /// Where the listing goes on after `page`, whose last key is `last`:
    /// S3 and GCS list after a key (`start-after`, `startOffset`); Azure
    /// from the page's `NextMarker` (it has no start-after).
    pub fn resume_after(&self, page: &s3::Page, last: Option<&str>) -> Option<String> {
        match self {
            Store::S3(_) | Store::Gs(_) => last.map(str::to_string),
            Store::Az(_) => page.next.clone(),
        }
    }
}

/// The store of `loc` configured from the process's environment.
pub fn from_env(loc: &Location, opts: &StoreOpts) -> Result<Store, RunError> {
    match loc.kind {
        Kind::S3 => s3_from_env(loc, opts).map(Store::S3),
        Kind::Az => process_env(|env| {
            let endpoint = opts.endpoint_url.as_deref();
            az::Az::new(env, &loc.bucket, endpoint, opts.no_sign, opts.write, now())
        })
        .map(Store::Az)
        .map_err(RunError::Other),
        Kind::Gs => process_env(|env| {
            let endpoint = opts.endpoint_url.as_deref();
            let g = gs::Gs::new(env, &loc.bucket, endpoint, opts.no_sign, opts.write)?;
            g.ready()?;
            Ok(g)
        })
        .map(Store::Gs)
        .map_err(RunError::Other),
    }
}

/// How to reach the store (beyond the environment).
#[derive(Clone, Debug, Default)]
pub struct StoreOpts {
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--no-sign-request`.
    pub no_sign: bool,
    /// `--checksum`: check each object's MD5 where its ETag is one.
    pub checksum: bool,
    /// Credentials that may write (an Azure SAS made from a key allows
    /// writing only then).
    pub write: bool,
}

/// The store configured from the process's environment.
pub fn s3_from_env(loc: &Location, opts: &StoreOpts) -> Result<s3::S3, RunError> {
    let s3 = process_env(|env| {
        s3::S3::new(env, &loc.bucket, opts.endpoint_url.as_deref(), opts.no_sign)
    })
    .map_err(RunError::Other)?;
    s3.ready(&loc.bucket).map_err(RunError::Other)?;
    Ok(s3)
}

/// `f` of the process's environment, as the stores' configurations read it.
fn process_env<R>(f: impl FnOnce(&s3::Env<'_>) -> R) -> R {
    let var = |k: &str| std::env::var(k).ok();
    f(&s3::Env {
        var: &var,
        home: std::env::var_os("HOME").map(Into::into),
    })
}

/// Turns `s3://BUCKET/KEY`, `az://CONTAINER/BLOB` and `gs://BUCKET/OBJECT` jobs of a URL list
/// into presigned GETs, one store configuration per bucket (made at its
/// first URL, kept for the run).
pub struct Signer {
    opts: StoreOpts,
    buckets: std::collections::HashMap<(Kind, String), Result<Store, String>>,
}

impl Signer {
    pub fn new(opts: StoreOpts) -> Signer {
        Signer {
            opts,
            buckets: Default::default(),
        }
    }

    /// The job with its URL presigned (and the `s3://` URL kept for
    /// messages); other jobs unchanged.
    pub fn sign(&mut self, mut j: Job) -> Result<Job, String> {
        let Some(url) = self.presign(Method::Get, &j.url)? else {
            return Ok(j);
        };
        let shown = std::mem::replace(&mut j.url, url);
        j.object = Some(Box::new(Object {
            shown,
            size: None,
            md5: None,
            crc32c: None,
            sign: false,
        }));
        Ok(j)
    }

    /// The presigned URL for `method` of an `s3://BUCKET/KEY`,
    /// `az://CONTAINER/BLOB` or `gs://BUCKET/OBJECT` URL; `None` for other
    /// URLs.
    pub fn presign(&mut self, method: Method, url: &str) -> Result<Option<String>, String> {
        let Some((kind, rest)) = Kind::of_url(url) else {
            return Ok(None);
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() {
            let s = kind.scheme();
            return Err(format!("{url}: give {s}://BUCKET/KEY"));
        }
        let opts = &self.opts;
        let store = self
            .buckets
            .entry((kind, bucket.to_string()))
            .or_insert_with(|| {
                let loc = Location {
                    kind,
                    bucket: bucket.to_string(),
                    prefix: String::new(),
                };
                from_env(&loc, opts).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(Some(store.object_url(method, key)))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One listing page of the store `kind`, with retries (503 SlowDown and
/// 429 honour Retry-After).
pub async fn page(
    net: &Net,
    policy: &RetryPolicy,
    stop: &AtomicBool,
    conn: &mut Option<Conn>,
    url: &str,
    kind: Kind,
) -> Result<s3::Page, RunError> {
    let parse = match kind {
        Kind::S3 => s3::parse_page,
        Kind::Az => az::parse_page,
        Kind::Gs => gs::parse_page,
    };
    let u = Url::parse(url).map_err(|why| RunError::Url {
        url: url.to_string(),
        why: why.to_string(),
    })?;
    // The URL without its signature, for messages.
    let shown = url.split('?').next().unwrap_or(url).to_string();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let r = crate::listing::get_small(net, conn, u.origin_key(), u.path).await;
        let err = match r {
            Ok((200, body)) => {
                return parse(&body).map_err(|why| RunError::List { url: shown, why });
            }
            Ok((status, body)) => {
                let why = parse(&body).err().unwrap_or_default();
                let e = FetchError::Status {
                    status,
                    retry_after: None,
                };
                if !e.is_retryable() {
                    return Err(RunError::List {
                        url: shown,
                        why: format!("HTTP {status} {why}"),
                    });
                }
                e
            }
            Err(e) => {
                *conn = None;
                e
            }
        };
        crate::listing::backoff(policy, stop, &shown, &err, attempt).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = parse("s3://b/p/q").unwrap().unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("b", "p/q/"));
        assert_eq!(parse("s3://b").unwrap().unwrap().prefix, "");
        assert_eq!(parse("s3://b/").unwrap().unwrap().prefix, "");
        assert!(parse("s3:///x").unwrap().is_err());
        let a = parse("az://c/p").unwrap().unwrap();
        assert_eq!(
            (a.kind, a.bucket.as_str(), a.prefix.as_str()),
            (Kind::Az, "c", "p/")
        );
        assert_eq!(a.to_string(), "az://c/p/");
        let g = parse("gs://b/x").unwrap().unwrap();
        assert_eq!((g.kind, g.to_string().as_str()), (Kind::Gs, "gs://b/x/"));
        assert!(
            parse("abfs://c/x")
                .unwrap()
                .unwrap_err()
                .contains("not supported yet")
        );
        assert!(parse("http://h/x").is_none());
    }
}
