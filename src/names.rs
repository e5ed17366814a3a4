//! Names as the server lists them, checked before they touch the disk or a URL.
//!
//! A listed name becomes the relative path of a file under the destination,
//! `/` making subdirectories. [`check`] refuses anything that could escape the
//! destination or cannot be a file name; [`push_url_path`] percent-encodes a
//! name into a request path.

use crate::error::NameError;

/// Longest segment Linux file systems take (NAME_MAX).
pub const MAX_SEGMENT: usize = 255;
/// Longest relative name accepted (PATH_MAX less room for the destination).
pub const MAX_NAME: usize = 3072;

/// Checks that `name` is a plain relative path that stays under the destination.
pub fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong(MAX_NAME));
    }
    if name.as_bytes().contains(&0) {
        return Err(NameError::Nul);
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    for (i, seg) in name.split('/').enumerate() {
        match seg {
            "" => return Err(NameError::EmptySegment),
            "." | ".." => return Err(NameError::DotSegment),
            ".bulkget" if i == 0 => return Err(NameError::Reserved),
            s if s.len() > MAX_SEGMENT => return Err(NameError::SegmentTooLong(MAX_SEGMENT)),
            _ => {}
        }
    }
    Ok(())
}

/// Appends `name` percent-encoded to `out`: unreserved characters and `/` stay,
/// every other byte (space, `#`, `?`, `%`, UTF-8 …) becomes `%XX`.
pub fn push_url_path(out: &mut Vec<u8>, name: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(check(""), Err(NameError::Empty));
        assert_eq!(check("/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(check("../x"), Err(NameError::DotSegment));
        assert_eq!(check("a/../../x"), Err(NameError::DotSegment));
        assert_eq!(check("a/./x"), Err(NameError::DotSegment));
        assert_eq!(check("a//x"), Err(NameError::EmptySegment));
        assert_eq!(check("a/"), Err(NameError::EmptySegment));
        assert_eq!(check("a\0b"), Err(NameError::Nul));
        assert_eq!(check(&"x".repeat(256)), Err(NameError::SegmentTooLong(255)));
        assert_eq!(check(".bulkget/journal.json"), Err(NameError::Reserved));
        assert!(check("sub/.bulkget").is_ok());
        assert!(check("a b/c#d?e%f/ünï").is_ok());
        assert!(check("..x/x..").is_ok());
    }

    #[test]
    fn url_encoding() {
        let mut v = Vec::new();
        push_url_path(&mut v, "a b/c#d?e%f/ü");
        assert_eq!(String::from_utf8(v).unwrap(), "a%20b/c%23d%3Fe%25f/%C3%BC");
    }
}
