//! The URL list of `bulkget get -i FILE`: one job a line, streamed.
//!
//! A line is `URL`, `URL NAME` or `URL NAME sha256=HEX` (whitespace between);
//! blank lines and lines starting with `#` are skipped. The output name is
//! NAME, else the URL path's last segment, percent-decoded, and must pass
//! [`crate::names::check`] like every name bulkget writes.

use percent_encoding::percent_decode_str;

use crate::error::RunError;
use crate::fetch::url::Url;
use crate::names;

/// A list of inputs, one a line: the file `p`, or standard input for `-`.
pub fn open_list(p: &std::path::Path) -> Result<Box<dyn std::io::BufRead + Send>, RunError> {
    use std::io::BufReader;
    if p.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(p)
        .map_err(|e| RunError::Other(format!("cannot read the list {}: {e}", p.display())))?;
    Ok(Box::new(BufReader::new(f)))
}

pub use crate::job::{Job, Object};

/// Parses `sha256=HEX`.
pub fn parse_checksum(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256=")
        .ok_or_else(|| format!("checksum {s:?} is not sha256=HEX"))?;
    if hex.len() != 64 {
        return Err(format!("checksum {s:?}: sha256 takes 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("checksum {s:?} is not hex"))?;
    }
    Ok(out)
}

/// The output name for `url` when no NAME is given.
pub fn name_from_url(url: &str) -> Result<String, String> {
    let path = Url::parse(url)?.path;
    let path = path.split('?').next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let name = percent_decode_str(last)
        .decode_utf8()
        .map_err(|_| "the URL's file name is not UTF-8 once decoded".to_string())?;
    if name.is_empty() {
        return Err("the URL has no file name; give one after the URL".into());
    }
    if name.contains('/') {
        return Err(format!(
            "the URL's file name {name:?} decodes to a path; give a NAME"
        ));
    }
    Ok(name.into_owned())
}

/// A job from its parts, with every check applied.
///
/// An `s3://BUCKET/KEY`, `az://CONTAINER/BLOB` or `gs://BUCKET/OBJECT` URL is taken as it is
/// (the store module signs it);
/// its default name is the key's last segment, byte for byte.
pub fn job(line: u64, url: &str, name: Option<&str>, sum: Option<&str>) -> Result<Job, String> {
    let key =
        crate::store::Kind::of_url(url).map(|(_, r)| r.split_once('/').map_or("", |(_, k)| k));
    if key.is_none() {
        Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    }
    let name = match (name, key) {
        (Some(n), _) => n.to_string(),
        (None, Some(k)) => match k.rsplit('/').next() {
            Some(last) if !last.is_empty() => last.to_string(),
            _ => {
                return Err(format!(
                    "{url}: no object key to name the file by; give a NAME"
                ));
            }
        },
        (None, None) => name_from_url(url)?,
    };
    names::check(&name).map_err(|e| format!("output name {name:?}: {e}"))?;
    let sha256 = sum.map(parse_checksum).transpose()?;
    Ok(Job {
        line,
        url: url.to_string(),
        name,
        sha256,
        object: None,
    })
}

/// One list line: `Ok(None)` for blank and comment lines.
pub fn parse_line(line_no: u64, line: &str) -> Result<Option<Job>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let mut cols = t.split_whitespace();
    let url = cols.next().expect("non-empty line");
    let mut name = None;
    let mut sum = None;
    for c in cols {
        if c.starts_with("sha256=") && sum.is_none() {
            sum = Some(c);
        } else if name.is_none() && sum.is_none() {
            name = Some(c);
        } else {
            return Err(format!(
                "unexpected column {c:?} (a line is URL [NAME] [sha256=HEX])"
            ));
        }
    }
    job(line_no, url, name, sum).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse_line(1, "  # comment").unwrap(), None);
        assert_eq!(parse_line(1, "").unwrap(), None);
        let j = parse_line(3, "http://h:1/a/b%20c.txt").unwrap().unwrap();
        assert_eq!((j.name.as_str(), j.line), ("b c.txt", 3));
        let j = parse_line(4, "http://h/x?y=1  sub/out.bin")
            .unwrap()
            .unwrap();
        assert_eq!(j.name, "sub/out.bin");
        let sum = format!("sha256={}", "ab".repeat(32));
        let j = parse_line(5, &format!("http://h/x out {sum}"))
            .unwrap()
            .unwrap();
        assert_eq!(j.sha256, Some([0xab; 32]));
        assert!(
            parse_line(6, "http://h/")
                .unwrap_err()
                .contains("no file name")
        );
        assert!(
            parse_line(7, "http://h/x ../up")
                .unwrap_err()
                .contains("'..'")
        );
        assert!(parse_line(8, "ftp://h/x").is_err());
        assert!(
            parse_line(9, "http://h/x a b")
                .unwrap_err()
                .contains("unexpected column")
        );
        assert!(
            parse_line(10, "http://h/%2e%2e")
                .unwrap_err()
                .contains("'..'")
        );
        assert!(
            parse_line(11, "http://h/a%2Fb")
                .unwrap_err()
                .contains("decodes to a path")
        );
        assert!(parse_line(12, "http://h/x out sha256=12").is_err());
    }
}
