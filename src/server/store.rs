//! What the server serves: a [`Store`] lists names in one stable sorted order
//! and opens objects by name. Two implementations: [`SyntheticStore`] (no disk,
//! no per-file memory) and [`super::dirstore::DirStore`] (a directory tree).
//!
//! Listing is cursor based: a page is "the next `limit` names after name X".
//! The cursor travels to the client inside an opaque, keyed-MAC'd token so
//! the server can tell a token it issued from one it never did (400), and the
//! same store hands out the same tokens after a restart (clients may resume).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use blake2::digest::{Digest, KeyInit, Mac, consts::U8};
use blake2::{Blake2b512, Blake2bMac};

use crate::synthetic::{self, Content};
use crate::units::hex;

/// Where an object's bytes come from.
pub enum Source {
    Synthetic(Box<Content>),
    File(File),
}

impl Source {
    /// Fills `buf` with the bytes at `offset`; returns how many were read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Synthetic(c) => {
                c.fill(offset, buf);
                Ok(buf.len())
            }
            Source::File(f) => f.read_at(buf, offset),
        }
    }
}

/// An object ready to be served.
pub struct Object {
    pub size: u64,
    pub etag: String,
    pub modified: Option<SystemTime>,
    pub source: Source,
}

/// One page of a listing.
pub struct Page {
    pub names: Vec<String>,
    /// The last name of this page when more names follow it.
    pub next_after: Option<String>,
}

/// A source of files to serve.
pub trait Store: Send + Sync + 'static {
    /// Up to `limit` names that sort after `after` (from the start if `None`).
    fn list(&self, after: Option<&str>, limit: usize) -> io::Result<Page>;
    /// Opens the object called `name` (already percent-decoded); `None` when absent.
    fn open(&self, name: &str) -> Option<Object>;
    /// A stable identity of the store's contents, keying its listing tokens.
    fn identity(&self) -> Vec<u8>;
}

/// Seals and opens listing tokens for one store.
pub struct Tokens {
    key: Vec<u8>,
}

impl Tokens {
    pub fn new(identity: &[u8]) -> Tokens {
        Tokens {
            key: Blake2b512::digest(identity).to_vec(),
        }
    }

    fn mac(&self, cursor: &[u8]) -> [u8; 8] {
        let mut m =
            <Blake2bMac<U8> as KeyInit>::new_from_slice(&self.key).expect("key of 1..=64 bytes");
        m.update(cursor);
        m.finalize().into_bytes().into()
    }

    /// The token that resumes a listing after `cursor`: hex(cursor) '.' hex(mac).
    pub fn seal(&self, cursor: &str) -> String {
        let mut s = hex(cursor.as_bytes());
        s.push('.');
        s.push_str(&hex(&self.mac(cursor.as_bytes())));
        s
    }

    /// The cursor inside `token`, if this store issued it.
    pub fn open(&self, token: &str) -> Option<String> {
        let (c, m) = token.split_once('.')?;
        let cursor = unhex(c)?;
        if unhex(m)? != self.mac(&cursor) {
            return None;
        }
        String::from_utf8(cursor).ok()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `N` virtual files of `size` bytes each, content by [`crate::synthetic`].
pub struct SyntheticStore {
    pub count: u64,
    pub size: u64,
    width: usize,
}

impl SyntheticStore {
    pub fn new(count: u64, size: u64) -> SyntheticStore {
        SyntheticStore {
            count,
            size,
            width: synthetic::name_width(count),
        }
    }
}

impl Store for SyntheticStore {
    fn list(&self, after: Option<&str>, limit: usize) -> io::Result<Page> {
        let start = match after {
            None => 0,
            Some(a) => synthetic::index_of(a, self.width)
                .map(|i| i + 1)
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "not a synthetic name")
                })?,
        };
        let end = start.saturating_add(limit as u64).min(self.count);
        let names: Vec<String> = (start.min(end)..end)
            .map(|i| synthetic::name(i, self.width))
            .collect();
        let next_after = if end < self.count {
            names.last().cloned()
        } else {
            None
        };
        Ok(Page { names, next_after })
    }

    fn open(&self, name: &str) -> Option<Object> {
        let i = synthetic::index_of(name, self.width)?;
        if i >= self.count {
            return None;
        }
        let c = Content::of(name.as_bytes());
        Some(Object {
            size: self.size,
            etag: c.etag(self.size),
            modified: None,
            source: Source::Synthetic(Box::new(c)),
        })
    }

    fn identity(&self) -> Vec<u8> {
        format!("synthetic:{}:{}", self.count, self.size).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let t = Tokens::new(b"store");
        let tok = t.seal("a/b c");
        assert_eq!(t.open(&tok).as_deref(), Some("a/b c"));
        assert_eq!(Tokens::new(b"other").open(&tok), None);
        assert_eq!(t.open("garbage"), None);
        assert_eq!(t.open(&tok.replace('.', "")), None);
        let forged = format!(
            "{}{}",
            &tok[..tok.len() - 1],
            if tok.ends_with('0') { '1' } else { '0' }
        );
        assert_eq!(t.open(&forged), None);
    }

    #[test]
    fn synthetic_pages_cover_everything_once() {
        let s = SyntheticStore::new(25, 100);
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = s.list(after.as_deref(), 7).unwrap();
            all.extend(p.names);
            match p.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        assert_eq!(all.len(), 25);
        assert_eq!(all[24], "f000000024");
        assert!(s.open("f000000025").is_none());
        assert_eq!(s.open("f000000024").unwrap().size, 100);
    }
}
