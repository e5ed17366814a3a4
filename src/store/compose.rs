//! Writing objects to Google Cloud Storage through its JSON API: a small
//! object in one multipart upload (its metadata, with `md5Hash`, which
//! Google checks before the object exists, then its bytes); a large one as
//! a parallel composite upload, as gsutil and gcloud do it: parts sent at
//! once as objects of their own, composed into the object (32 at a time,
//! in two levels past that), then deleted.
//!
//! The parts live under `.bulkget-parts/MD5-OF-THE-NAME/` at the bucket's
//! top, out of the destination's prefix; each part's name is its place and
//! its MD5 (`000042-<md5 hex>`), so a rerun after a kill lists the parts a
//! killed run sent and sends only the others. The object itself appears
//! whole at the compose, or not at all. Every answer's `md5Hash` is
//! checked against the bytes sent (emulators do not check the one given).
//! A composite object has no MD5, only a CRC32C.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::gs::Gs;
use super::put::{Caller, md5};
use crate::fetch::RetryPolicy;
use crate::fetch::http1::Method;
use crate::fetch::net::Net;
use crate::units::hex;

/// The most objects one compose takes.
pub const COMPOSE_MAX: usize = 32;
/// Where the parts of an upload wait, at the bucket's top.
pub const PARTS_DIR: &str = ".bulkget-parts/";

/// Uploads to one bucket.
pub struct Composer<'a> {
    pub gs: &'a Gs,
    caller: Caller<'a>,
}

/// What an upload answers (the object's resource).
#[derive(Deserialize)]
struct Uploaded {
    #[serde(rename = "md5Hash")]
    md5: Option<String>,
}

/// Where the parts of `key` go.
pub fn parts_prefix(key: &str) -> String {
    format!("{PARTS_DIR}{}/", hex(&md5(key.as_bytes())))
}

/// The name of part `index` (from 0), whose MD5 is `sum`, under `prefix`.
pub fn part_name(prefix: &str, index: u32, sum: &[u8; 16]) -> String {
    format!("{prefix}{index:06}-{}", hex(sum))
}

impl<'a> Composer<'a> {
    pub fn new(
        gs: &'a Gs,
        net: &'a Net,
        policy: &'a RetryPolicy,
        stop: &'a std::sync::atomic::AtomicBool,
    ) -> Self {
        Composer {
            gs,
            caller: Caller::new(net, policy, stop),
        }
    }

    /// Checks that the store holds what was sent: its answer's `md5Hash`
    /// (where it gives one) is `sum`'s.
    fn check(name: &str, answer: &[u8], sum: &[u8; 16]) -> Result<(), String> {
        let got = serde_json::from_slice::<Uploaded>(answer)
            .ok()
            .and_then(|u| u.md5)
            .and_then(|m| base64::engine::general_purpose::STANDARD.decode(m).ok());
        match got {
            Some(m) if m != sum => Err(format!(
                "{name:?}: the store's md5Hash {} is not the MD5 of the bytes sent ({})",
                hex(&m),
                hex(sum)
            )),
            _ => Ok(()),
        }
    }

    /// One whole object (`sum`: its MD5): metadata and bytes in one
    /// multipart/related upload.
    pub async fn put_object(&self, name: &str, body: Bytes, sum: [u8; 16]) -> Result<(), String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sum);
        let meta = serde_json::json!({ "name": name, "md5Hash": b64 }).to_string();
        // Not in the bytes: it names their MD5 and a stamp of its own.
        let boundary = format!("bulkget-{}-boundary", hex(&sum));
        let mut b = Vec::with_capacity(body.len() + meta.len() + 256);
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        b.extend_from_slice(b"Content-Type: application/json; charset=UTF-8\r\n\r\n");
        b.extend_from_slice(meta.as_bytes());
        b.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        b.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        b.extend_from_slice(&body);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/related; boundary={boundary}");
        let url = self.gs.upload_url(name, "multipart");
        let h = [("Content-Type", ct.as_str())];
        let (_, answer) = self.caller.call(Method::Post, &url, &h, b.into()).await?;
        Self::check(name, &answer, &sum)
    }

    /// One part, as an object of its own, its bytes as the body.
    pub async fn put_part(&self, name: &str, body: Bytes, sum: [u8; 16]) -> Result<(), String> {
        let url = self.gs.upload_url(name, "media");
        let h = [("Content-Type", "application/octet-stream")];
        let (_, answer) = self.caller.call(Method::Post, &url, &h, body).await?;
        Self::check(name, &answer, &sum)
    }

    /// The parts under `prefix` a killed run left: (name, size).
    pub async fn parts(&self, prefix: &str) -> Result<Vec<(String, u64)>, String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = self.gs.list_url(prefix, None, token.as_deref(), false);
            let (_, body) = self
                .caller
                .call(Method::Get, &url, &[], Bytes::new())
                .await?;
            let page = super::gs::parse_page(&body)?;
            out.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
            match page.next {
                Some(t) if page.truncated => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Composes `sources` (at most [`COMPOSE_MAX`]), in order, into `name`.
    async fn compose_one(&self, name: &str, sources: &[String]) -> Result<(), String> {
        let objs: Vec<_> = sources
            .iter()
            .map(|s| serde_json::json!({ "name": s }))
            .collect();
        let body = serde_json::json!({ "sourceObjects": objs, "destination": {} }).to_string();
        let url = self.gs.compose_url(name);
        let h = [("Content-Type", "application/json")];
        self.caller
            .call(Method::Post, &url, &h, body.into())
            .await
            .map(drop)
            .map_err(String::from)
    }

    /// Composes `parts`, in order, into `name`: at once up to
    /// [`COMPOSE_MAX`], else in groups of that many (under `prefix`) and
    /// then the groups. Returns the intermediate objects made.
    pub async fn compose(
        &self,
        name: &str,
        prefix: &str,
        parts: &[String],
    ) -> Result<Vec<String>, String> {
        if parts.len() <= COMPOSE_MAX {
            self.compose_one(name, parts).await?;
            return Ok(Vec::new());
        }
        let groups: Vec<&[String]> = parts.chunks(COMPOSE_MAX).collect();
        if groups.len() > COMPOSE_MAX {
            return Err(format!(
                "{name:?}: {} parts are more than two levels of compose take",
                parts.len()
            ));
        }
        let mut made = Vec::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            let inter = format!("{prefix}group-{i:04}");
            self.compose_one(&inter, g).await?;
            made.push(inter);
        }
        self.compose_one(name, &made).await?;
        Ok(made)
    }

    /// Deletes an object (a part, once composed); one already gone is
    /// fine.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        let url = self.gs.meta_url(name);
        match self
            .caller
            .call(Method::Delete, &url, &[], Bytes::new())
            .await
        {
            Err(e) if !e.is_status(404) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_named_by_place_and_content_out_of_the_prefix() {
        let p = parts_prefix("data/big.bin");
        assert!(p.starts_with(".bulkget-parts/") && p.len() == PARTS_DIR.len() + 33);
        let n = part_name(&p, 7, &[0xab; 16]);
        assert_eq!(n, format!("{p}000007-{}", "ab".repeat(16)));
        let bad = br#"{"md5Hash":"AAAAAAAAAAAAAAAAAAAAAA=="}"#;
        assert!(
            Composer::check("k", bad, &[1; 16])
                .unwrap_err()
                .contains("not the MD5")
        );
        assert!(Composer::check("k", bad, &[0; 16]).is_ok());
        assert!(Composer::check("k", b"{}", &[1; 16]).is_ok());
    }
}
