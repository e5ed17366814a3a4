//! Azure Blob Storage (`az://CONTAINER/PREFIX`): configuration by the Azure
//! tools' conventions, object and listing URLs that carry their own
//! authorization (a shared access signature), and List Blobs pages.
//!
//! Configuration, first found wins:
//! * `AZURE_STORAGE_CONNECTION_STRING`: `AccountName`, `AccountKey`,
//!   `SharedAccessSignature`, `BlobEndpoint`, `DefaultEndpointsProtocol`,
//!   `EndpointSuffix`; or `UseDevelopmentStorage=true` (Azurite's well-known
//!   account on `http://127.0.0.1:10000`).
//! * `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or
//!   `AZURE_STORAGE_SAS_TOKEN` (the `az` CLI's names).
//! * the endpoint: `--endpoint-url` (path-style, `ENDPOINT/CONTAINER/BLOB`,
//!   the account already in it as Azurite's is), else the connection
//!   string's `BlobEndpoint`, else `https://ACCOUNT.blob.core.windows.net`.
//! * `--no-sign-request`: a public container, no credentials.
//!
//! Why a SAS and not the Shared Key header: Shared Key signs each request
//! with its date, so every request would need its own header; bulkget's hot
//! loop sends pipelined requests that differ only in their path. An
//! account SAS made once from the key (HMAC-SHA256, read and list only, or
//! write and create too for `cp` to `az://`; valid a week) goes in every URL's query instead, exactly as an S3
//! presigned URL does, and a SAS the user gives is used as it is. The
//! `object_store` crate would sign with Shared Key over its own client.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode;
use sha2::Sha256;

use super::s3::{Env, Object, Page};
use super::{sigv4, xml};

/// Azurite's development account (public: the emulator documents it).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
/// The storage service version of the SAS bulkget makes (and so of its
/// requests).
const SAS_VERSION: &str = "2021-08-06";
/// A SAS made here is valid this long.
const SAS_SECS: u64 = 7 * 24 * 3600;

/// Where and how to reach one container.
#[derive(Clone, Debug)]
pub struct Az {
    /// `SCHEME://HOST[:PORT][/ACCOUNT]`, no trailing `/`.
    base: String,
    container: String,
    /// The query that authorizes every request (a SAS); empty for a public
    /// container.
    sas: String,
}

/// What a connection string says, by key (keys are case-insensitive).
fn conn_string(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn find(kv: &[(String, String)], k: &str) -> Option<String> {
    kv.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

impl Az {
    /// The container's configuration from `env`; `now` (Unix seconds) dates
    /// a SAS made from an account key, which may also write with `write`.
    pub fn new(
        env: &Env<'_>,
        container: &str,
        endpoint: Option<&str>,
        no_sign: bool,
        write: bool,
        now: u64,
    ) -> Result<Az, String> {
        let var = |k: &str| (env.var)(k).filter(|v| !v.is_empty());
        let (mut account, mut key, mut blob_endpoint) = (None, None, None);
        let sas;
        let mut proto = "https".to_string();
        let mut suffix = "core.windows.net".to_string();
        let source;
        if let Some(cs) = var("AZURE_STORAGE_CONNECTION_STRING") {
            source = "AZURE_STORAGE_CONNECTION_STRING";
            let kv = conn_string(&cs);
            if find(&kv, "usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                account = Some(DEV_ACCOUNT.to_string());
                key = Some(DEV_KEY.to_string());
                blob_endpoint = Some(DEV_ENDPOINT.to_string());
            }
            account = find(&kv, "accountname").or(account);
            key = find(&kv, "accountkey").or(key);
            sas = find(&kv, "sharedaccesssignature");
            blob_endpoint = find(&kv, "blobendpoint").or(blob_endpoint);
            proto = find(&kv, "defaultendpointsprotocol").unwrap_or(proto);
            suffix = find(&kv, "endpointsuffix").unwrap_or(suffix);
        } else {
            source = "AZURE_STORAGE_ACCOUNT";
            account = var("AZURE_STORAGE_ACCOUNT");
            key = var("AZURE_STORAGE_KEY");
            sas = var("AZURE_STORAGE_SAS_TOKEN");
        }
        let base = match (endpoint, blob_endpoint.as_deref(), &account) {
            (Some(e), _, _) | (None, Some(e), _) => e.to_string(),
            (None, None, Some(a)) => format!("{proto}://{a}.blob.{suffix}"),
            (None, None, None) => {
                return Err(format!(
                    "az://{container}: no Azure storage account: set AZURE_STORAGE_CONNECTION_STRING, \
                     or AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN)"
                ));
            }
        };
        let base = base.trim_end_matches('/').to_string();
        if !crate::fetch::url::is_http(&base) {
            return Err(format!(
                "az://{container}: the blob endpoint {base} is not http(s)://"
            ));
        }
        let sas = if no_sign {
            String::new()
        } else if let Some(s) = sas {
            s.trim_start_matches('?').to_string()
        } else if let (Some(a), Some(k)) = (&account, &key) {
            let k = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .map_err(|_| {
                    format!("az://{container}: the account key in {source} is not base64")
                })?;
            let perms = if write { "rwlc" } else { "rl" };
            account_sas(a, &k, perms, now, now + SAS_SECS)
        } else {
            return Err(format!(
                "az://{container}: no credentials for the account {}: looked for an account key or a SAS in {source}{} \
                 (--no-sign-request for a public container)",
                account.as_deref().unwrap_or("?"),
                if source == "AZURE_STORAGE_ACCOUNT" {
                    " with AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN"
                } else {
                    ""
                }
            ));
        };
        Ok(Az {
            base,
            container: container.to_string(),
            sas,
        })
    }

    fn with_sas(&self, mut url: String, has_query: bool) -> String {
        if !self.sas.is_empty() {
            url.push(if has_query { '&' } else { '?' });
            url.push_str(&self.sas);
        }
        url
    }

    /// A URL of the blob `name` (any name, byte for byte), for GET or HEAD.
    pub fn object_url(&self, name: &str) -> String {
        let mut url = format!("{}/{}/", self.base, self.container);
        sigv4::encode(&mut url, name, true);
        self.with_sas(url, false)
    }

    /// As [`Az::object_url`], with query parameters (`comp=block` and the
    /// like: the calls that write a blob in blocks).
    pub fn object_url_with(&self, name: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/{}/", self.base, self.container);
        sigv4::encode(&mut url, name, true);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            sigv4::encode(&mut url, v, false);
        }
        self.with_sas(url, !query.is_empty())
    }

    /// A URL for one List Blobs page of names under `prefix`, from `marker`
    /// (a page's `NextMarker`); with `delimiter`, names past the next `/`
    /// are rolled up into prefixes.
    pub fn list_url(&self, prefix: &str, marker: Option<&str>, delimiter: bool) -> String {
        let mut url = format!(
            "{}/{}?restype=container&comp=list&maxresults=1000",
            self.base, self.container
        );
        if !prefix.is_empty() {
            url.push_str("&prefix=");
            sigv4::encode(&mut url, prefix, false);
        }
        if let Some(m) = marker {
            url.push_str("&marker=");
            sigv4::encode(&mut url, m, false);
        }
        if delimiter {
            url.push_str("&delimiter=%2F");
        }
        self.with_sas(url, true)
    }
}

/// An account SAS for blobs with permissions `sp` (`rl`: read and list;
/// `rwlc` to write too, in the order Azure wants), from `start` to
/// `expiry` (Unix seconds), signed with the account key `key` (its bytes).
pub fn account_sas(account: &str, key: &[u8], sp: &str, start: u64, expiry: u64) -> String {
    let (ss, srt, spr) = ("b", "sco", "https,http");
    // A start a little in the past: the service's clock may be behind.
    let st = iso(start.saturating_sub(900));
    let se = iso(expiry);
    // The string to sign of service versions 2020-12-06 and later (the
    // last line is the encryption scope, empty).
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    m.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    let mut q = format!("sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={sp}&st=");
    sigv4::encode(&mut q, &st, false);
    q.push_str("&se=");
    sigv4::encode(&mut q, &se, false);
    q.push_str("&spr=https%2Chttp&sig=");
    sigv4::encode(&mut q, &sig, false);
    q
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn iso(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    crate::units::rfc3339(t)
}

/// Parses a List Blobs answer; an error document gives its code and
/// message.
pub fn parse_page(xml: &[u8]) -> Result<Page, String> {
    let mut page = Page::default();
    let mut name: Option<String> = None;
    let mut size: Option<u64> = None;
    let (mut md5, mut etag, mut modified) = (None, None, None);
    let mut error = (String::new(), String::new());
    let mut root_seen = false;
    xml::walk(xml, |el| {
        let text = el.text;
        match (el.parent(), el.name) {
            (None, b"EnumerationResults") => root_seen = true,
            (Some(b"Blob" | b"BlobPrefix"), b"Name") => {
                let n = if el.encoded {
                    percent_decode(text.as_bytes())
                        .decode_utf8()
                        .ok()
                        .map(|c| c.into_owned())
                } else {
                    Some(text.to_string())
                };
                match n {
                    Some(n) => name = Some(n),
                    None => page.unreadable.push(text.to_string()),
                }
            }
            (Some(b"Properties"), b"Content-Length") => size = text.trim().parse().ok(),
            (Some(b"Properties"), b"Etag") => {
                etag = Some(text.trim().trim_matches('"').to_string())
            }
            (Some(b"Properties"), b"Last-Modified") => {
                modified = httpdate::parse_http_date(text.trim())
                    .ok()
                    .map(crate::units::rfc3339)
            }
            (Some(b"Properties"), b"Content-MD5") => {
                md5 = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
            }
            (Some(b"Blobs"), b"Blob") => {
                if let Some(key) = name.take() {
                    let size = size
                        .take()
                        .ok_or_else(|| format!("listing: no Content-Length for {key:?}"))?;
                    page.objects.push(Object {
                        key,
                        size,
                        md5: md5.take(),
                        etag: etag.take(),
                        modified: modified.take(),
                        crc32c: None,
                    });
                }
                (size, md5, etag, modified) = (None, None, None, None);
            }
            (Some(b"Blobs"), b"BlobPrefix") => {
                if let Some(p) = name.take() {
                    page.prefixes.push(p);
                }
            }
            (Some(b"EnumerationResults"), b"NextMarker") => {
                let m = text.trim();
                if !m.is_empty() {
                    page.next = Some(m.to_string());
                }
            }
            (Some(b"Error"), b"Code") => error.0 = text.to_string(),
            (Some(b"Error"), b"Message") => error.1 = text.to_string(),
            _ => {}
        }
        Ok(())
    })?;
    if !error.0.is_empty() {
        let msg = error.1.lines().next().unwrap_or("").trim();
        return Err(format!("{}: {msg}", error.0));
    }
    if !root_seen {
        return Err("not a List Blobs answer".into());
    }
    page.truncated = page.next.is_some();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Az, String> {
        let var = super::super::s3::vars_of(vars);
        let e = Env {
            var: &var,
            home: None,
        };
        Az::new(&e, "c", None, false, false, 1_700_000_000)
    }

    #[test]
    fn configuration_by_the_azure_conventions() {
        let a = env(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        )])
        .unwrap();
        assert!(
            a.object_url("x y")
                .starts_with("http://127.0.0.1:10000/devstoreaccount1/c/x%20y?sv=")
        );
        let a = env(&[
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=abc"),
        ])
        .unwrap();
        assert_eq!(
            a.object_url("d/e"),
            "https://acct.blob.core.windows.net/c/d/e?sv=1&sig=abc"
        );
        assert!(
            a.list_url("p/", Some("m 1"), true).ends_with(
                "/c?restype=container&comp=list&maxresults=1000&prefix=p%2F&marker=m%201&delimiter=%2F&sv=1&sig=abc"
            )
        );
        let cs = "DefaultEndpointsProtocol=http;AccountName=a2;AccountKey=AAAA;EndpointSuffix=example.net";
        let a = env(&[("AZURE_STORAGE_CONNECTION_STRING", cs)]).unwrap();
        assert!(
            a.object_url("k")
                .starts_with("http://a2.blob.example.net/c/k?sv=2021-08-06&ss=b&srt=sco&sp=rl&st=")
        );
        let e = env(&[]).unwrap_err();
        assert!(
            e.contains("AZURE_STORAGE_CONNECTION_STRING") && e.contains("AZURE_STORAGE_ACCOUNT"),
            "{e}"
        );
        let e = env(&[("AZURE_STORAGE_ACCOUNT", "acct")]).unwrap_err();
        assert!(
            e.contains("no credentials for the account acct") && e.contains("AZURE_STORAGE_KEY"),
            "{e}"
        );
        let e = env(&[
            ("AZURE_STORAGE_ACCOUNT", "a"),
            ("AZURE_STORAGE_KEY", "not base64!"),
        ])
        .unwrap_err();
        assert!(e.contains("not base64"), "{e}");
    }

    #[test]
    fn sas_signature_is_hmac_of_the_documented_string() {
        // The string to sign, spelled out by hand for these values.
        let key = b"secret";
        let q = account_sas("acct", key, "rl", 1_700_000_900, 1_700_086_400);
        let want = "acct\nrl\nb\nsco\n2023-11-14T22:13:20Z\n2023-11-15T22:13:20Z\n\nhttps,http\n2021-08-06\n\n";
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(want.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
        let mut enc = String::new();
        sigv4::encode(&mut enc, &sig, false);
        assert!(q.ends_with(&format!("&sig={enc}")), "{q}");
        assert!(
            q.contains("&st=2023-11-14T22%3A13%3A20Z&se=2023-11-15T22%3A13%3A20Z"),
            "{q}"
        );
    }

    #[test]
    fn list_blobs_pages() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://h/devstoreaccount1" ContainerName="c">
<Prefix>p/</Prefix><MaxResults>5000</MaxResults><Blobs>
<Blob><Name>p/a &amp; b</Name><Properties><Last-Modified>Sun, 22 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8DC</Etag><Content-Length>100</Content-Length><Content-MD5>1B2M2Y8AsgTpgAmY7PhCfg==</Content-MD5></Properties></Blob>
<Blob><Name Encoded="true">p/%01x</Name><Properties><Content-Length>0</Content-Length></Properties></Blob>
<BlobPrefix><Name>p/d/</Name></BlobPrefix>
</Blobs><NextMarker>2!88!MDAw</NextMarker></EnumerationResults>"#;
        let p = parse_page(xml).unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "p/a & b");
        assert_eq!(p.objects[0].size, 100);
        assert_eq!(p.objects[0].etag.as_deref(), Some("0x8DC"));
        assert_eq!(
            p.objects[0].modified.as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
        assert_eq!(p.objects[0].md5.unwrap()[0], 0xd4);
        assert_eq!(p.objects[1].key, "p/\u{1}x");
        assert_eq!(p.prefixes, vec!["p/d/".to_string()]);
        assert_eq!(p.next.as_deref(), Some("2!88!MDAw"));
        assert!(p.truncated);
        let e = parse_page(b"<Error><Code>AuthenticationFailed</Code><Message>Server failed\nmore</Message></Error>")
            .unwrap_err();
        assert_eq!(e, "AuthenticationFailed: Server failed");
        let last =
            parse_page(b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert!(!last.truncated && last.next.is_none());
    }
}
