//! AWS Signature Version 4 for S3: the query-string form ("presigned
//! URLs") and the `Authorization` header form ([`sign_headers`], which
//! object GETs use: some stores check a query signature at a real cost;
//! measured in BENCHMARKS.md, session 16).
//!
//! Written by hand rather than taken from `object_store`: its signer takes
//! an `object_store::path::Path`, which refuses legal keys (`a//b`, `./x`,
//! a trailing `/`), and cannot sign a listing request. A presigned URL puts
//! the whole authorization in the URL, so object and listing requests both
//! go through bulkget's own transport (pipelining, HTTP/2, TLS, proxies,
//! adaptive concurrency) with no per-request headers. The algorithm is
//! AWS's published one; the unit test checks it against AWS's own example.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::units::hex;

/// Credentials to sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

/// Appends `s` percent-encoded as SigV4 wants: unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other byte is `%XX` (upper case);
/// `/` stays when `keep_slash` (object key paths).
pub fn encode(out: &mut String, s: &str, keep_slash: bool) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// `YYYYMMDD'T'HHMMSS'Z'` for a Unix time (UTC).
pub fn amz_date(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::units::civil(unix);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// What to sign: `method` (`GET`, `HEAD`) of `path` (already encoded,
/// starting with `/`) on `host` (as sent in `Host`), with `query` pairs (not
/// encoded).
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// Headers signed besides `Host` (lower-case names, in name order),
    /// which the request must then carry as given (`x-amz-copy-source`:
    /// S3 refuses `x-amz-*` headers that are not signed).
    pub headers: &'a [(&'a str, &'a str)],
}

/// The presigned request's path and query (`/path?...&X-Amz-Signature=..`).
pub fn presign(r: &Request<'_>, creds: &Creds, region: &str, unix: u64, expires: u64) -> String {
    let date = amz_date(unix);
    let scope = format!("{}/{region}/s3/aws4_request", &date[..8]);
    let credential = format!("{}/{scope}", creds.key_id);
    let expires = expires.to_string();
    let mut q: Vec<(String, String)> = r
        .query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    q.push(("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()));
    q.push(("X-Amz-Credential".into(), credential));
    q.push(("X-Amz-Date".into(), date.clone()));
    q.push(("X-Amz-Expires".into(), expires));
    if let Some(t) = &creds.token {
        q.push(("X-Amz-Security-Token".into(), t.clone()));
    }
    let mut signed = String::from("host");
    let mut canon_headers = format!("host:{}\n", r.host);
    for (k, v) in r.headers {
        signed.push(';');
        signed.push_str(k);
        canon_headers.push_str(&format!("{k}:{}\n", v.trim()));
    }
    q.push(("X-Amz-SignedHeaders".into(), signed.clone()));
    let mut enc: Vec<(String, String)> = q
        .iter()
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            encode(&mut ek, k, false);
            encode(&mut ev, v, false);
            (ek, ev)
        })
        .collect();
    enc.sort();
    let query = enc
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{}\n{}\n{query}\n{canon_headers}\n{signed}\nUNSIGNED-PAYLOAD",
        r.method, r.path
    );
    let sig = signature(&canonical, creds, region, &date, &scope);
    format!("{}?{query}&X-Amz-Signature={sig}", r.path)
}

/// The signature of a canonical request made at `date` in `scope`: the
/// one step both forms share.
fn signature(canonical: &str, creds: &Creds, region: &str, date: &str, scope: &str) -> String {
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    hex(&hmac(&signing_key(creds, region, date), to_sign.as_bytes()))
}

/// The signing key of `creds` for the day of `date` (`YYYYMMDD...`).
/// It changes once a day: each thread keeps the last one it derived, so an
/// object's signature costs one HMAC of it, not five (every object GET is
/// signed as it is sent).
fn signing_key(creds: &Creds, region: &str, date: &str) -> [u8; 32] {
    type Kept = Option<(String, String, [u8; 8], [u8; 32])>;
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = const { std::cell::RefCell::new(None) };
    }
    let day: [u8; 8] = date.as_bytes()[..8].try_into().expect("YYYYMMDD");
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if let Some((secret, reg, d, key)) = &*k
            && (secret.as_str(), reg.as_str(), d) == (creds.secret.as_str(), region, &day)
        {
            return *key;
        }
        let key = hmac(format!("AWS4{}", creds.secret).as_bytes(), &day);
        let key = hmac(&key, region.as_bytes());
        let key = hmac(&key, b"s3");
        let key = hmac(&key, b"aws4_request");
        *k = Some((creds.secret.clone(), region.to_string(), day, key));
        key
    })
}

/// The header lines (each ending in CRLF) that sign `r` in the
/// `Authorization` header form at `unix`: `Authorization`,
/// `x-amz-content-sha256` (`payload`: the body's SHA-256 in hex, or
/// `UNSIGNED-PAYLOAD`), `x-amz-date`, and `x-amz-security-token` with a
/// session token. `r.query` must be empty (object requests); `r.headers`
/// are signed too and must be sent as given.
pub fn sign_headers(
    r: &Request<'_>,
    creds: &Creds,
    region: &str,
    unix: u64,
    payload: &str,
) -> String {
    debug_assert!(r.query.is_empty());
    let date = amz_date(unix);
    let scope = format!("{}/{region}/s3/aws4_request", &date[..8]);
    let mut hs: Vec<(&str, &str)> = vec![
        ("host", r.host),
        ("x-amz-content-sha256", payload),
        ("x-amz-date", &date),
    ];
    if let Some(t) = &creds.token {
        hs.push(("x-amz-security-token", t));
    }
    hs.extend_from_slice(r.headers);
    hs.sort_unstable();
    let (mut canon, mut signed) = (String::new(), String::new());
    for (k, v) in &hs {
        canon.push_str(&format!("{k}:{}\n", v.trim()));
        if !signed.is_empty() {
            signed.push(';');
        }
        signed.push_str(k);
    }
    let canonical = format!("{}\n{}\n\n{canon}\n{signed}\n{payload}", r.method, r.path);
    let sig = signature(&canonical, creds, region, &date, &scope);
    let mut out = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={sig}\r\n\
         x-amz-content-sha256: {payload}\r\nx-amz-date: {date}\r\n",
        creds.key_id
    );
    if let Some(t) = &creds.token {
        out.push_str(&format!("x-amz-security-token: {t}\r\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of AWS's documented examples.
    fn example_creds() -> Creds {
        Creds {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        }
    }

    /// AWS's own example of the header form ("Example: GET Object", in
    /// "Signature Calculations for the Authorization Header").
    #[test]
    fn aws_example_get_object_with_an_authorization_header() {
        let creds = example_creds();
        let r = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("range", "bytes=0-9")],
        };
        // 2013-05-24T00:00:00Z
        let lines = sign_headers(
            &r,
            &creds,
            "us-east-1",
            1_369_353_600,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        assert_eq!(
            lines.lines().next().unwrap(),
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(lines.contains("x-amz-date: 20130524T000000Z\r\n"));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400 + 3_661), "20000229T010101Z");
    }

    /// AWS's example in "Authenticating Requests: Using Query Parameters
    /// (AWS Signature Version 4)".
    #[test]
    fn aws_example_presigned_url() {
        let creds = example_creds();
        let r = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[],
        };
        let url = presign(&r, &creds, "us-east-1", 1_369_353_600, 86_400);
        assert_eq!(
            url,
            "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn keys_are_encoded_byte_by_byte() {
        let mut s = String::new();
        encode(&mut s, "a b/ü+~.x", true);
        assert_eq!(s, "a%20b/%C3%BC%2B~.x");
        let mut s = String::new();
        encode(&mut s, "a/b", false);
        assert_eq!(s, "a%2Fb");
    }

    /// A signed header (a copy's `x-amz-copy-source`), against the URL
    /// botocore presigned for the same request (`generate_presigned_url(
    /// "copy_object", CopySource="src/a/x y")`, which sends the header as
    /// `src/a/x%20y`), path-style on 127.0.0.1:9000.
    #[test]
    fn botocore_copy_object_presigned_url() {
        let creds = example_creds();
        let r = Request {
            method: "PUT",
            host: "127.0.0.1:9000",
            path: "/dst/b/x%20y",
            query: &[],
            headers: &[("x-amz-copy-source", "src/a/x%20y")],
        };
        let url = presign(&r, &creds, "us-east-1", 1_795_424_280, 86_400);
        assert!(
            url.ends_with(
                "&X-Amz-SignedHeaders=host%3Bx-amz-copy-source\
                 &X-Amz-Signature=ae9c65b2d2e3330fd81093878cd6410951a10c74cca9935cb1f86b79fe20432b"
            ),
            "{url}"
        );
    }
}
