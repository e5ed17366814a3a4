//! Writing objects to S3: one `PUT` for a small object, a multipart upload
//! for a large one (create, parts, complete), each call one presigned
//! request on bulkget's own connections (proxy, TLS, HTTP/2 as for every
//! fetch), retried with the run's backoff on connection errors, 408, 429
//! and 5xx (`SlowDown` included; `Retry-After` honoured).
//!
//! Nothing is ever visible half-written: S3 shows a `PUT` or a multipart
//! upload only once it is whole. A multipart upload killed halfway is
//! found again by [`Client::resume`] (ListMultipartUploads for that exact
//! key, then ListParts), so a rerun sends only the parts the store lacks.
//!
//! Every body goes with `Content-MD5`, which S3 checks; and where the ETag
//! the store answers is an MD5 (32 hex digits) it is checked here too,
//! since not every S3-compatible store checks `Content-MD5`.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};

use super::s3::S3;
use crate::error::FetchError;
use crate::fetch::http1::{Head, Method};
use crate::fetch::net::Net;
use crate::fetch::url::Url;
use crate::fetch::{Conn, GiveUp, RetryPolicy};
use crate::units::hex;

/// Largest answer body read (listing of parts, error documents).
const MAX_ANSWER: usize = 16 << 20;

/// One part already in the store: number, size, ETag (unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Part {
    pub number: u32,
    pub size: u64,
    pub etag: String,
}

/// An upload found again: its id, its parts, and older uploads of the key.
#[derive(Debug, Default)]
pub struct Resumed {
    pub id: String,
    pub parts: Vec<Part>,
    pub stale: Vec<String>,
}

/// Why a store call failed, in one line; the status of the answer that
/// ended it, when there was one (so a caller can tell "not there" or "not
/// implemented here" from trouble).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{why}")]
pub struct CallError {
    pub status: Option<u16>,
    pub why: String,
}

impl CallError {
    /// The store answered with this status (and the call gave up on it).
    pub fn is_status(&self, status: u16) -> bool {
        self.status == Some(status)
    }
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.why
    }
}

/// Calls to one store, each a request whose URL carries its own
/// authorization, retried as the run's policy says, sharing a few idle
/// connections (S3 here, Azure in [`super::blocks`]).
pub struct Caller<'a> {
    pub net: &'a Net,
    pub policy: &'a RetryPolicy,
    pub stop: &'a AtomicBool,
    idle: Mutex<Vec<Conn>>,
    /// The longest answer read.
    max: usize,
}

/// Uploads to one S3 bucket.
pub struct Client<'a> {
    pub s3: &'a S3,
    caller: Caller<'a>,
}

impl<'a> std::ops::Deref for Client<'a> {
    type Target = Caller<'a>;
    fn deref(&self) -> &Caller<'a> {
        &self.caller
    }
}

/// The MD5 of `b`.
pub fn md5(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

/// An S3 or Azure error document's "Code: Message", if `body` is one.
pub fn error_doc(body: &[u8]) -> Option<String> {
    let l = leaves(body).ok()?;
    let code = l.iter().find(|(k, _)| k == "Error/Code")?;
    let msg = l.iter().find(|(k, _)| k == "Error/Message");
    Some(match msg {
        Some((_, m)) => format!("{}: {m}", code.1),
        None => code.1.clone(),
    })
}

/// Every element of an XML document as it ends, in order: (path from the
/// root, its text), e.g. `ListPartsResult/Part/ETag`, then
/// `ListPartsResult/Part` (text empty: it has elements inside). Written
/// over quick-xml's events since the answers are few and small.
pub fn leaves(xml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    super::xml::walk(xml, |el| {
        let mut path: Vec<&[u8]> = el.path.iter().map(Vec::as_slice).collect();
        path.push(el.name);
        out.push((
            String::from_utf8_lossy(&path.join(&b'/')).into_owned(),
            el.text.to_string(),
        ));
        Ok(())
    })?;
    Ok(out)
}

/// A path of [`leaves`] without the root's name (which differs between
/// stores: moto answers ListParts with `ListPartsResponse`, S3 with
/// `ListPartsResult`).
fn below_root(path: &str) -> &str {
    path.split_once('/').map_or("", |(_, rest)| rest)
}

/// The multipart uploads of exactly `key` in a ListMultipartUploads
/// answer, oldest first as listed (an upload's `Key` and `UploadId` come in
/// any order).
fn uploads_of(l: Vec<(String, String)>, key: &str) -> Vec<String> {
    let (mut found, mut k, mut u) = (Vec::new(), None, None);
    for (path, v) in l {
        match below_root(&path) {
            "Upload/Key" => k = Some(v),
            "Upload/UploadId" => u = Some(v),
            "Upload" => {
                let (key_here, id) = (k.take(), u.take());
                if let Some(id) = id.filter(|_| key_here.as_deref() == Some(key)) {
                    found.push(id);
                }
            }
            _ => {}
        }
    }
    found
}

/// One ListParts answer: its parts, whether more follow, and from where.
fn parts_page(l: Vec<(String, String)>) -> (Vec<Part>, bool, Option<String>) {
    let (mut parts, mut truncated, mut next) = (Vec::new(), false, None);
    let mut p = Part::default();
    for (path, v) in l {
        let v = v.trim();
        match below_root(&path) {
            "Part/PartNumber" => p.number = v.parse().unwrap_or(0),
            "Part/Size" => p.size = v.parse().unwrap_or(0),
            "Part/ETag" => p.etag = v.trim_matches('"').to_string(),
            "Part" => {
                let whole = std::mem::take(&mut p);
                if whole.number > 0 {
                    parts.push(whole);
                }
            }
            "IsTruncated" => truncated = v == "true",
            "NextPartNumberMarker" => next = Some(v.to_string()),
            _ => {}
        }
    }
    (parts, truncated, next)
}

impl<'a> Caller<'a> {
    pub fn new(net: &'a Net, policy: &'a RetryPolicy, stop: &'a AtomicBool) -> Self {
        Caller {
            net,
            policy,
            stop,
            idle: Mutex::new(Vec::new()),
            max: MAX_ANSWER,
        }
    }

    /// Reads answers up to `max` bytes (objects' bytes, not documents).
    pub fn max_answer(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// One exchange on one connection (an idle one if there is one): the
    /// answer's head and body.
    async fn once(
        &self,
        conn: &mut Option<Conn>,
        method: Method,
        url: &Url<'_>,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(Head, Vec<u8>), FetchError> {
        if conn.is_none() {
            *conn = self.idle.lock().expect("idle connections").pop();
        }
        crate::fetch::conn::exchange(self.net, conn, method, url, headers, body, self.max).await
    }

    /// `method` of the presigned `url`, retried as the run's policy says;
    /// a 2xx answer's head and body, or one line saying why not.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(Head, Vec<u8>), CallError> {
        let shown = url.split('?').next().unwrap_or(url);
        let u = Url::parse(url).map_err(|e| CallError {
            status: None,
            why: format!("{shown}: {e}"),
        })?;
        let mut conn = None;
        let mut attempt = 0;
        // The status of the last answer, if the last attempt got one.
        let mut status;
        let r = loop {
            attempt += 1;
            let r = self
                .once(&mut conn, method, &u, headers, body.clone())
                .await;
            status = None;
            let e = match r {
                Ok((h, b)) if (200..300).contains(&h.status) => break Ok((h, b)),
                Ok((h, b)) => {
                    status = Some(h.status);
                    let e = FetchError::Status {
                        status: h.status,
                        retry_after: h.retry_after,
                    };
                    if !e.is_retryable() {
                        let why = error_doc(&b).map(|d| format!(" ({d})")).unwrap_or_default();
                        break Err(format!("HTTP {}{why}", h.status));
                    }
                    e
                }
                Err(e) => {
                    conn = None;
                    e
                }
            };
            // Workers retrying at once spread out by their URLs.
            let salt = url.len() as u64 ^ u64::from(attempt) << 32;
            match self.policy.pause(self.stop, &e, attempt, salt).await {
                Ok(()) => {}
                Err(GiveUp::Stopped) => break Err(format!("{e} (stopped)")),
                Err(GiveUp::Failed(why)) => break Err(why),
            }
        };
        if let Some(c) = conn {
            self.idle.lock().expect("idle connections").push(c);
        }
        r.map_err(|why| CallError {
            status,
            why: format!("{} {shown}: {why}", method.as_str()),
        })
    }
}

impl<'a> Client<'a> {
    pub fn new(s3: &'a S3, net: &'a Net, policy: &'a RetryPolicy, stop: &'a AtomicBool) -> Self {
        Client {
            s3,
            caller: Caller::new(net, policy, stop),
        }
    }

    /// Sends `body`, whose MD5 is `sum`, with its `Content-MD5`; an ETag
    /// that is an MD5 must be `sum`. The ETag, unquoted.
    async fn put_checked(&self, url: String, body: Bytes, sum: [u8; 16]) -> Result<String, String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sum);
        let (head, _) = self
            .call(Method::Put, &url, &[("Content-MD5", &b64)], body)
            .await?;
        let etag = head.etag.unwrap_or_default();
        let bare = etag.trim_matches('"');
        if super::s3::etag_md5(bare).is_some_and(|m| m != sum) {
            let shown = url.split('?').next().unwrap_or(&url);
            return Err(format!(
                "PUT {shown}: the store's ETag {bare} is not the MD5 of the bytes sent ({})",
                hex(&sum)
            ));
        }
        Ok(bare.to_string())
    }

    /// One whole object; `sum` is the body's MD5.
    pub async fn put_object(&self, key: &str, body: Bytes, sum: [u8; 16]) -> Result<(), String> {
        let url = self.s3.object_url(Method::Put, key, super::now());
        self.put_checked(url, body, sum).await.map(drop)
    }

    /// Copies `source` (`BUCKET/KEY`, encoded) to `key` inside the store
    /// (CopyObject: no byte passes through here; up to 5 GiB).
    pub async fn copy_object(&self, key: &str, source: &str) -> Result<(), String> {
        let url = self.s3.copy_url(key, source, super::now());
        let h = [("x-amz-copy-source", source)];
        let (_, body) = self.call(Method::Put, &url, &h, Bytes::new()).await?;
        // S3 may answer 200 and then an error document.
        if let Some(e) = error_doc(&body) {
            return Err(format!("CopyObject to {key:?}: {e}"));
        }
        Ok(())
    }

    /// Starts a multipart upload; its id.
    pub async fn create(&self, key: &str) -> Result<String, String> {
        let url = self
            .s3
            .object_url_with(Method::Post, key, &[("uploads", "")], super::now());
        let (_, body) = self.call(Method::Post, &url, &[], Bytes::new()).await?;
        let l = leaves(&body).map_err(|e| format!("CreateMultipartUpload for {key:?}: {e}"))?;
        l.into_iter()
            .find(|(k, _)| k.ends_with("/UploadId"))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("CreateMultipartUpload for {key:?}: no UploadId"))
    }

    /// A multipart upload of exactly `key` left by an earlier run (the
    /// newest), with the parts it holds, and any older ones (to abort once
    /// the object is whole); `None` when there is none.
    pub async fn resume(&self, key: &str) -> Result<Option<Resumed>, String> {
        let url = self.s3.bucket_url(
            Method::Get,
            &[("uploads", ""), ("prefix", key)],
            super::now(),
        );
        let body = match self.call(Method::Get, &url, &[], Bytes::new()).await {
            Ok((_, body)) => body,
            // Listing unfinished uploads is optional: a store that does not
            // implement it (s3rver answers 501) has none to resume.
            Err(e) if e.is_status(501) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A key XML cannot carry makes the page unreadable: start afresh.
        let Ok(l) = leaves(&body) else {
            return Ok(None);
        };
        let mut stale = uploads_of(l, key);
        let Some(id) = stale.pop() else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        let mut marker = String::from("0");
        loop {
            let url = self.s3.object_url_with(
                Method::Get,
                key,
                &[("uploadId", &id), ("part-number-marker", &marker)],
                super::now(),
            );
            let (_, body) = self.call(Method::Get, &url, &[], Bytes::new()).await?;
            let l = leaves(&body).map_err(|e| format!("ListParts for {key:?}: {e}"))?;
            let (more, truncated, next) = parts_page(l);
            parts.extend(more);
            match next.filter(|_| truncated) {
                Some(n) if n != marker => marker = n,
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(Some(Resumed { id, parts, stale }))
    }

    /// Sends part `number` (`sum`: its MD5); its ETag.
    pub async fn part(
        &self,
        key: &str,
        id: &str,
        number: u32,
        body: Bytes,
        sum: [u8; 16],
    ) -> Result<String, String> {
        let n = number.to_string();
        let url = self.s3.object_url_with(
            Method::Put,
            key,
            &[("partNumber", &n), ("uploadId", id)],
            super::now(),
        );
        self.put_checked(url, body, sum).await
    }

    /// Aborts an upload (its parts are dropped by the store).
    pub async fn abort(&self, key: &str, id: &str) -> Result<(), String> {
        let url = self
            .s3
            .object_url_with(Method::Delete, key, &[("uploadId", id)], super::now());
        self.call(Method::Delete, &url, &[], Bytes::new())
            .await
            .map(drop)
            .map_err(String::from)
    }

    /// Completes the upload: the object appears, whole, under `key`.
    pub async fn complete(
        &self,
        key: &str,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), String> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let url = self
            .s3
            .object_url_with(Method::Post, key, &[("uploadId", id)], super::now());
        let (_, body) = self.call(Method::Post, &url, &[], Bytes::from(xml)).await?;
        // S3 may answer 200 and then an error document.
        if let Some(e) = error_doc(&body) {
            return Err(format!("CompleteMultipartUpload for {key:?}: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_and_parts_as_s3_and_moto_spell_them() {
        // moto puts UploadId before Key; S3 the other way round.
        let xml = br#"<?xml version="1.0"?><ListMultipartUploadsResult>
<Upload><UploadId>old</UploadId><Key>k</Key></Upload>
<Upload><Key>k2</Key><UploadId>other</UploadId></Upload>
<Upload><Key>k</Key><UploadId>new</UploadId><Owner><ID>x</ID></Owner></Upload>
</ListMultipartUploadsResult>"#;
        let l = leaves(xml).unwrap();
        assert_eq!(uploads_of(l.clone(), "k"), ["old", "new"]);
        assert!(uploads_of(l, "k3").is_empty());
        for root in ["ListPartsResult", "ListPartsResponse"] {
            let xml = format!(
                r#"<{root}><IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker>
<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag><Size>5</Size></Part>
<Part><Size>3</Size><PartNumber>2</PartNumber><ETag>"bb"</ETag></Part></{root}>"#
            );
            let (parts, more, next) = parts_page(leaves(xml.as_bytes()).unwrap());
            let want = |number, size, etag: &str| Part {
                number,
                size,
                etag: etag.into(),
            };
            assert_eq!(parts, vec![want(1, 5, "aa"), want(2, 3, "bb")]);
            assert!(more);
            assert_eq!(next.as_deref(), Some("2"));
        }
    }

    #[test]
    fn error_documents_read_as_one_line() {
        let xml = b"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>";
        assert_eq!(error_doc(xml).as_deref(), Some("SlowDown: Please reduce"));
        assert_eq!(error_doc(b"<Ok/>"), None);
    }
}
