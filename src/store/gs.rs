//! Google Cloud Storage (`gs://BUCKET/PREFIX`) through its JSON API:
//! listing pages (`GET /storage/v1/b/BUCKET/o`) and media downloads
//! (`GET /storage/v1/b/BUCKET/o/OBJECT?alt=media`), both plain URLs, so the
//! hot loop stays pipelined GETs as for `s3://` and `az://`.
//!
//! Where bulkget looks, first found wins:
//! * `--no-sign-request`: anonymous requests (a public bucket), to
//!   `--endpoint-url` or Google.
//! * `STORAGE_EMULATOR_HOST` without `--endpoint-url` (Google's clients'
//!   name for an emulator such as fake-gcs-server; `HOST:PORT` means
//!   `http://HOST:PORT`): anonymous requests there, as Google's own
//!   clients send them to an emulator.
//! * else `--endpoint-url` or `https://storage.googleapis.com`, with an
//!   OAuth access token from Google's Application Default Credentials
//!   ([`super::gauth`]), in each URL's `access_token` parameter. Without
//!   credentials, Google itself is an error naming where bulkget looked;
//!   another endpoint gets anonymous requests.
//!
//! Listing resumes after a key with `startOffset=KEY%00` (the least name
//! greater than KEY; `startOffset` itself is inclusive): page tokens are
//! not meant to outlive a run.

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use super::gauth::{SCOPE, SCOPE_WRITE, Source, Token};

use super::s3::{Env, Object, Page};
use super::sigv4;

/// Google's own endpoint.
pub const GOOGLE: &str = "https://storage.googleapis.com";
/// The fields a listing asks for (Google then leaves out ACLs and the
/// rest: a page a fifth the size).
const FIELDS: &str = "items(name,size,md5Hash,crc32c,etag,updated),prefixes,nextPageToken";

/// Where and how to reach one bucket.
#[derive(Clone, Debug)]
pub struct Gs {
    /// `SCHEME://HOST[:PORT]`, no trailing `/`.
    base: String,
    bucket: String,
    /// `None`: anonymous requests.
    token: Option<Arc<Token>>,
}

impl Gs {
    /// The bucket's configuration from `env` and `--endpoint-url`.
    pub fn new(
        env: &Env<'_>,
        bucket: &str,
        endpoint: Option<&str>,
        no_sign: bool,
        write: bool,
    ) -> Result<Gs, String> {
        let emulator = (env.var)("STORAGE_EMULATOR_HOST").filter(|v| !v.is_empty());
        let (base, token) = match (endpoint, emulator) {
            (None, Some(h)) if h.contains("://") => (h, None),
            (None, Some(h)) => (format!("http://{h}"), None),
            (e, _) => {
                let base = e.unwrap_or(GOOGLE).to_string();
                let source = if no_sign {
                    None
                } else {
                    Source::from_env(env).map_err(|e| format!("gs://{bucket}: {e}"))?
                };
                if source.is_none() && !no_sign && e.is_none() {
                    return Err(format!(
                        "no Google credentials for gs://{bucket}: looked at \
                         GOOGLE_APPLICATION_CREDENTIALS, gcloud's \
                         application_default_credentials.json, the metadata server \
                         (GCE_METADATA_HOST; this is not a Compute Engine machine), and for an \
                         emulator at --endpoint-url and STORAGE_EMULATOR_HOST; \
                         --no-sign-request reads a public bucket"
                    ));
                }
                let scope = if write { SCOPE_WRITE } else { SCOPE };
                (base, source.map(|s| Arc::new(Token::new(s, scope))))
            }
        };
        let base = base.trim_end_matches('/').to_string();
        if !crate::fetch::url::is_http(&base) {
            return Err(format!(
                "gs://{bucket}: the endpoint {base} is not http(s)://"
            ));
        }
        Ok(Gs {
            base,
            bucket: bucket.to_string(),
            token,
        })
    }

    /// Fetches the access token now, so that unusable credentials are one
    /// error before the run.
    pub fn ready(&self) -> Result<(), String> {
        match &self.token {
            Some(t) => t.get(super::now()).map(|_| ()).map_err(|why| {
                let from = t.source.describe();
                format!("gs://{}: no access token from {from}: {why}", self.bucket)
            }),
            None => Ok(()),
        }
    }

    /// Appends `access_token=…` to the query when requests are authorized.
    fn authorize(&self, url: &mut String) {
        if let Some(t) = &self.token {
            // Checked when the store was set up ([`Gs::ready`]); a renewal
            // that fails keeps the old token.
            if let Ok(tok) = t.get(super::now()) {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("access_token=");
                sigv4::encode(url, tok.as_str(), false);
            }
        }
    }

    /// A URL of the object `name` (any name, byte for byte), for GET or
    /// HEAD of its bytes.
    pub fn object_url(&self, name: &str) -> String {
        let mut url = format!("{}/storage/v1/b/{}/o/", self.base, self.bucket);
        sigv4::encode(&mut url, name, false);
        url.push_str("?alt=media");
        self.authorize(&mut url);
        url
    }

    /// The object's own URL (its metadata; DELETE), not its bytes.
    pub fn meta_url(&self, name: &str) -> String {
        let mut url = format!("{}/storage/v1/b/{}/o/", self.base, self.bucket);
        sigv4::encode(&mut url, name, false);
        self.authorize(&mut url);
        url
    }

    /// The URL that uploads an object of `upload_type` (`media`: the body
    /// is the bytes, named here; `multipart`: the body is the metadata
    /// and the bytes).
    pub fn upload_url(&self, name: &str, upload_type: &str) -> String {
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&name=",
            self.base, self.bucket
        );
        sigv4::encode(&mut url, name, false);
        self.authorize(&mut url);
        url
    }

    /// The URL that composes objects into `name`.
    pub fn compose_url(&self, name: &str) -> String {
        let mut url = format!("{}/storage/v1/b/{}/o/", self.base, self.bucket);
        sigv4::encode(&mut url, name, false);
        url.push_str("/compose");
        self.authorize(&mut url);
        url
    }

    /// A URL for one listing page of names under `prefix`: from the page
    /// token `token`, else after the name `after`; with `delimiter`, names
    /// past the next `/` are rolled up into prefixes.
    pub fn list_url(
        &self,
        prefix: &str,
        after: Option<&str>,
        token: Option<&str>,
        delimiter: bool,
    ) -> String {
        let mut url = format!(
            "{}/storage/v1/b/{}/o?maxResults=1000&fields=",
            self.base, self.bucket
        );
        sigv4::encode(&mut url, FIELDS, false);
        if !prefix.is_empty() {
            url.push_str("&prefix=");
            sigv4::encode(&mut url, prefix, false);
        }
        if let Some(t) = token {
            url.push_str("&pageToken=");
            sigv4::encode(&mut url, t, false);
        } else if let Some(a) = after {
            url.push_str("&startOffset=");
            sigv4::encode(&mut url, a, false);
            url.push_str("%00");
        }
        if delimiter {
            url.push_str("&delimiter=%2F");
        }
        self.authorize(&mut url);
        url
    }
}

#[derive(Deserialize)]
struct ListJson {
    #[serde(default)]
    items: Vec<ItemJson>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(rename = "nextPageToken")]
    next: Option<String>,
}

#[derive(Deserialize)]
struct ItemJson {
    name: String,
    /// A decimal string (JSON numbers cannot hold every 64-bit size).
    size: Option<String>,
    #[serde(rename = "md5Hash")]
    md5: Option<String>,
    etag: Option<String>,
    updated: Option<String>,
    /// Base64 of the big-endian CRC32C.
    crc32c: Option<String>,
}

#[derive(Deserialize)]
struct ErrorJson {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// Parses a listing page (JSON); an error document gives its code and
/// message.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    if let Ok(e) = serde_json::from_slice::<ErrorJson>(body) {
        let msg = e.error.message.unwrap_or_default();
        let msg = msg.lines().next().unwrap_or("").trim();
        return Err(match e.error.code {
            Some(c) => format!("{c}: {msg}"),
            None => msg.to_string(),
        });
    }
    let list: ListJson =
        serde_json::from_slice(body).map_err(|e| format!("not a listing page: {e}"))?;
    let mut page = Page {
        prefixes: list.prefixes,
        truncated: list.next.is_some(),
        next: list.next.filter(|t| !t.is_empty()),
        ..Page::default()
    };
    for it in list.items {
        let size = it
            .size
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("listing: no size for {:?}", it.name))?;
        let md5 = it.md5.and_then(|m| {
            let b = base64::engine::general_purpose::STANDARD.decode(m).ok()?;
            <[u8; 16]>::try_from(b).ok()
        });
        let crc32c = it.crc32c.and_then(|c| {
            let b = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
            Some(u32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?))
        });
        page.objects.push(Object {
            key: it.name,
            size,
            md5,
            etag: it.etag,
            modified: it.updated,
            crc32c,
        });
    }
    page.truncated = page.next.is_some();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn endpoints_and_urls() {
        let var = env(&[("STORAGE_EMULATOR_HOST", "localhost:4443")]);
        let e = Env {
            var: &var,
            home: None,
        };
        let g = Gs::new(&e, "b", None, false, false).unwrap();
        assert_eq!(
            g.object_url("a/ü x+y"),
            "http://localhost:4443/storage/v1/b/b/o/a%2F%C3%BC%20x%2By?alt=media"
        );
        let u = g.list_url("p/", Some("p/k"), None, true);
        assert!(
            u.starts_with("http://localhost:4443/storage/v1/b/b/o?maxResults=1000&fields=items%28"),
            "{u}"
        );
        assert!(
            u.ends_with("&prefix=p%2F&startOffset=p%2Fk%00&delimiter=%2F"),
            "{u}"
        );
        let u = g.list_url("", Some("k"), Some("t/1"), false);
        assert!(u.ends_with("&pageToken=t%2F1"), "{u}");
        // --endpoint-url wins; Google itself only for a public bucket.
        let g = Gs::new(&e, "b", Some("http://127.0.0.1:9/"), false, false).unwrap();
        assert!(
            g.object_url("k")
                .starts_with("http://127.0.0.1:9/storage/v1/b/b/o/k")
        );
        let none = env(&[]);
        let e = Env {
            var: &none,
            home: None,
        };
        let err = Gs::new(&e, "b", None, false, false).unwrap_err();
        assert!(
            err.contains("STORAGE_EMULATOR_HOST") && err.contains("--no-sign-request"),
            "{err}"
        );
        let g = Gs::new(&e, "b", None, true, false).unwrap();
        assert!(g.object_url("k").starts_with(GOOGLE));
    }

    #[test]
    fn pages() {
        let p = parse_page(
            br#"{"kind":"storage#objects","prefixes":["d/"],"nextPageToken":"n",
            "items":[{"name":"a b","size":"12","md5Hash":"7w/LAKH/oxQa3sQL/et9Zg==","etag":"x","crc32c":"e5jnUQ==",
            "updated":"2026-11-23T12:05:30.70883Z"},{"name":"c","size":"0"}]}"#,
        )
        .unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!((p.objects[0].key.as_str(), p.objects[0].size), ("a b", 12));
        assert_eq!(p.objects[0].md5.unwrap()[0], 0xef);
        assert_eq!(p.objects[1].md5, None);
        // Google's base64 of the big-endian CRC32C ("Hello world!"'s here).
        assert_eq!(p.objects[0].crc32c, Some(0x7B98_E751));
        assert_eq!(p.objects[1].crc32c, None);
        assert_eq!((p.next.as_deref(), p.truncated), (Some("n"), true));
        assert_eq!(p.prefixes, ["d/"]);
        let last = parse_page(br#"{"kind":"storage#objects"}"#).unwrap();
        assert!(last.objects.is_empty() && !last.truncated);
        let err = parse_page(br#"{"error":{"code":404,"message":"Not Found"}}"#).unwrap_err();
        assert_eq!(err, "404: Not Found");
        assert!(parse_page(b"<html>").is_err());
        assert!(
            parse_page(br#"{"items":[{"name":"x"}]}"#)
                .unwrap_err()
                .contains("no size")
        );
    }
}
