//! ListObjectsV2 pages (also the shape the Azure and GCS listings are read
//! into): objects with their size, MD5 where the ETag is one, and time.
//! Listing asks for `encoding-type=url`, so keys are percent-decoded here,
//! but only when the answer says `<EncodingType>url</EncodingType>` (as the
//! AWS SDKs do): some stores ignore the parameter and send keys as they are,
//! where `a+b` is `a+b`.

use percent_encoding::percent_decode;

use super::xml;

/// One object of a listing page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// The content's MD5, where the ETag is one (32 hex digits: a
    /// single-part upload; SSE-KMS and SSE-C objects excepted).
    pub md5: Option<[u8; 16]>,
    /// The ETag without its quotes, and `LastModified`, as listed (for `ls`).
    pub etag: Option<String>,
    pub modified: Option<String>,
    /// The content's CRC32C, where the store lists one (GCS: every object,
    /// composite ones too, which have no MD5).
    pub crc32c: Option<u32>,
}

/// `2026-11-23T10:00:00.000Z` as seconds since the epoch.
pub(crate) fn iso_secs(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 19 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

impl Object {
    /// `LastModified` as seconds since the epoch.
    pub fn modified_secs(&self) -> Option<u64> {
        self.modified.as_deref().and_then(iso_secs)
    }
}

pub(crate) fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let h = etag.trim().trim_matches('"');
    if h.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One ListObjectsV2 page.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    /// Keys that could not be read (not UTF-8 once decoded), as sent.
    pub unreadable: Vec<String>,
    pub next: Option<String>,
    pub truncated: bool,
    /// `CommonPrefixes` (a listing with a delimiter: the "directories").
    pub prefixes: Vec<String>,
}

/// Decodes a key of an `encoding-type=url` listing (S3 writes a space as
/// `+`, as HTML forms do).
pub(crate) fn url_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    percent_decode(s.as_bytes())
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Parses a ListObjectsV2 answer; an S3 error document gives its code and
/// message.
pub fn parse_page(xml: &[u8]) -> Result<Page, String> {
    let mut page = Page::default();
    let (mut key, mut size): (Option<String>, Option<u64>) = (None, None);
    let mut md5 = None;
    let (mut etag, mut modified) = (None, None);
    let mut error = (String::new(), String::new());
    // Keys as sent; decoded below once the whole answer says how (S3 puts
    // `EncodingType` after the objects).
    let mut encoded = false;
    xml::walk(xml, |el| {
        let text = el.text;
        match (el.parent(), el.name) {
            (Some(b"Contents"), b"Key") => key = Some(text.to_string()),
            (Some(b"Contents"), b"Size") => size = text.trim().parse().ok(),
            (Some(b"Contents"), b"ETag") => {
                md5 = etag_md5(text);
                etag = Some(text.trim().trim_matches('"').to_string());
            }
            (Some(b"Contents"), b"LastModified") => modified = Some(text.trim().to_string()),
            (Some(b"CommonPrefixes"), b"Prefix") => page.prefixes.push(text.to_string()),
            (Some(b"ListBucketResult"), b"Contents") => {
                let (k, s) = (key.take(), size.take());
                let k = k.ok_or("listing: an object without a Key")?;
                let s = s.ok_or_else(|| format!("listing: no Size for {k:?}"))?;
                page.objects.push(Object {
                    key: k,
                    size: s,
                    md5: md5.take(),
                    etag: etag.take(),
                    modified: modified.take(),
                    crc32c: None,
                });
            }
            (Some(b"ListBucketResult"), b"EncodingType") => {
                encoded = text.trim().eq_ignore_ascii_case("url")
            }
            (Some(b"ListBucketResult"), b"NextContinuationToken") => {
                page.next = Some(text.to_string())
            }
            (Some(b"ListBucketResult"), b"IsTruncated") => page.truncated = text.trim() == "true",
            (Some(b"Error"), b"Code") => error.0 = text.to_string(),
            (Some(b"Error"), b"Message") => error.1 = text.to_string(),
            _ => {}
        }
        Ok(())
    })?;
    if !error.0.is_empty() {
        return Err(format!("{}: {}", error.0, error.1));
    }
    if page.truncated && page.next.is_none() {
        return Err("listing: truncated but no NextContinuationToken".into());
    }
    if encoded {
        let unreadable = &mut page.unreadable;
        page.objects.retain_mut(|o| match url_decode(&o.key) {
            Some(k) => {
                o.key = k;
                true
            }
            None => {
                unreadable.push(std::mem::take(&mut o.key));
                false
            }
        });
        page.prefixes.retain_mut(|p| match url_decode(p) {
            Some(d) => {
                *p = d;
                true
            }
            None => {
                unreadable.push(std::mem::take(p));
                false
            }
        });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(iso_secs("2013-05-24T00:00:00.000Z"), Some(1_369_353_600));
        assert_eq!(
            iso_secs("2000-02-29T01:01:01.5Z"),
            Some(951_782_400 + 3_661)
        );
        assert_eq!(iso_secs("yesterday"), None);
    }

    #[test]
    fn a_page_with_odd_keys() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Contents><Key>a%2F%2Fb</Key><Size>3</Size><ETag>&quot;x&quot;</ETag></Contents>
<Contents><Key>sp+ace%2B%01</Key><Size>0</Size><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag></Contents>
<Contents><Key>bad%FF</Key><Size>1</Size></Contents>
<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>
<NextContinuationToken>t&amp;1</NextContinuationToken>
</ListBucketResult>"#;
        let p = parse_page(xml).unwrap();
        assert_eq!(
            p.objects,
            [
                Object {
                    key: "a//b".into(),
                    size: 3,
                    md5: None,
                    etag: Some("x".into()),
                    modified: None,
                    crc32c: None,
                },
                Object {
                    key: "sp ace+\u{1}".into(),
                    size: 0,
                    md5: etag_md5("d41d8cd98f00b204e9800998ecf8427e"),
                    etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                    modified: None,
                    crc32c: None,
                }
            ]
        );
        assert_eq!(p.unreadable, ["bad%FF"]);
        assert_eq!(p.next.as_deref(), Some("t&1"));
        let e = parse_page(b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>");
        assert_eq!(e.unwrap_err(), "AccessDenied: no");
        assert!(
            parse_page(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
                .is_err()
        );
    }

    /// A store that ignores `encoding-type=url` (s3rver) sends keys as
    /// they are: nothing is decoded, so `a+b` stays `a+b`.
    #[test]
    fn keys_are_decoded_only_when_the_answer_says_so() {
        let xml = br#"<ListBucketResult><Name>b</Name>
<Contents><Key>a+b</Key><Size>3</Size></Contents>
<Contents><Key>x%20y%FF</Key><Size>1</Size></Contents>
<CommonPrefixes><Prefix>d+e/</Prefix></CommonPrefixes>
<IsTruncated>false</IsTruncated></ListBucketResult>"#;
        let p = parse_page(xml).unwrap();
        let keys: Vec<_> = p.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a+b", "x%20y%FF"]);
        assert_eq!(p.prefixes, ["d+e/"]);
        assert!(p.unreadable.is_empty());
        let xml = br#"<ListBucketResult><EncodingType>url</EncodingType>
<Contents><Key>a+b</Key><Size>3</Size></Contents>
<CommonPrefixes><Prefix>d+e/</Prefix></CommonPrefixes>
<IsTruncated>false</IsTruncated></ListBucketResult>"#;
        let p = parse_page(xml).unwrap();
        assert_eq!(p.objects[0].key, "a b");
        assert_eq!(p.prefixes, ["d e/"]);
    }
}
