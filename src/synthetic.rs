//! The synthetic dataset: names and content that need no disk and no per-file memory.
//!
//! `bulkget serve --synthetic N` serves files named [`name`]`(0..N)` and
//! `bulkget bench` checks every downloaded byte against [`fill`]. The rule is
//! public so that any client can verify a download:
//!
//! * File `i` is named `f` followed by `i` in decimal, zero-padded to
//!   [`name_width`]`(N)` digits (9 for `N <= 10^9`: `f000000000`, `f000000001`, …),
//!   so lexicographic order is index order.
//! * Let `D` = BLAKE2b with a 50-byte digest of the name's bytes.
//!   Bytes `0..100` are the lowercase hex of `D`: a 100-byte file is exactly
//!   the dataset of `../shared/bench/dataset.py`.
//! * Byte `i >= 100` is byte `i % 8` of the little-endian
//!   `splitmix64(seed + i / 8)` (wrapping add), where `seed` is the first 8
//!   bytes of `D` read as a little-endian `u64`. Any range is cheap to make.

use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};

/// Size of the hex head, and of every file in the seed's benchmark.
pub const HEAD_LEN: usize = 100;

/// Digits in the names of a dataset of `n` files (at least 9).
pub fn name_width(n: u64) -> usize {
    let mut digits = 1;
    let mut x = n.saturating_sub(1);
    while x >= 10 {
        x /= 10;
        digits += 1;
    }
    digits.max(9)
}

/// The name of file `i` in a dataset of names `width` digits wide.
pub fn name(i: u64, width: usize) -> String {
    format!("f{i:0width$}")
}

/// Parses a synthetic name back to its index, if it is one of width `width`.
pub fn index_of(name: &str, width: usize) -> Option<u64> {
    let digits = name.strip_prefix('f')?;
    if digits.len() != width || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// splitmix64, the generator of bytes past the head.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Everything needed to produce any byte of one file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    head: [u8; HEAD_LEN],
    seed: u64,
}

impl Content {
    /// Derives the content generator of the file called `name`.
    pub fn of(name: &[u8]) -> Content {
        let mut h = Blake2bVar::new(HEAD_LEN / 2).expect("50 is a valid BLAKE2b length");
        h.update(name);
        let mut d = [0u8; HEAD_LEN / 2];
        h.finalize_variable(&mut d)
            .expect("buffer has the digest's length");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut head = [0u8; HEAD_LEN];
        for (i, b) in d.iter().enumerate() {
            head[2 * i] = HEX[(b >> 4) as usize];
            head[2 * i + 1] = HEX[(b & 15) as usize];
        }
        let seed = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        Content { head, seed }
    }

    /// A short strong validator for this content at `size` (used as ETag).
    pub fn etag(&self, size: u64) -> String {
        format!("\"{:016x}-{size:x}\"", self.seed)
    }

    /// Writes the bytes at `offset..offset + buf.len()` into `buf`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut out = &mut buf[..];
        if pos < HEAD_LEN as u64 {
            let n = (HEAD_LEN - pos as usize).min(out.len());
            out[..n].copy_from_slice(&self.head[pos as usize..pos as usize + n]);
            out = &mut out[n..];
            pos += n as u64;
        }
        while !out.is_empty() {
            let word = splitmix64(self.seed.wrapping_add(pos / 8)).to_le_bytes();
            let k = (pos % 8) as usize;
            let n = (8 - k).min(out.len());
            out[..n].copy_from_slice(&word[k..k + n]);
            out = &mut out[n..];
            pos += n as u64;
        }
    }
}

/// Writes bytes `offset..offset + buf.len()` of the file called `name` into `buf`.
pub fn fill(name: &[u8], offset: u64, buf: &mut [u8]) {
    Content::of(name).fill(offset, buf)
}

/// The whole content of the file called `name` when files are `size` bytes.
pub fn content(name: &[u8], size: u64) -> Vec<u8> {
    let mut v = vec![0u8; size as usize];
    fill(name, 0, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_matches_the_bench_dataset() {
        // python3: hashlib.blake2b(b"f000000000", digest_size=50).hexdigest()
        let want = b"648627e87645f4583d63e84370ec54b7e34b69a9fe6c6dc40338275a2ed24465fb4663dad667de4b9afbd0e86042096d8d1e";
        assert_eq!(content(b"f000000000", 100), want.to_vec());
    }

    #[test]
    fn any_range_equals_the_slice_of_the_whole() {
        let whole = content(b"big", 1000);
        for (a, b) in [(0, 1000), (3, 5), (99, 101), (100, 108), (101, 999), (7, 8)] {
            let mut part = vec![0u8; b - a];
            fill(b"big", a as u64, &mut part);
            assert_eq!(part, whole[a..b], "range {a}..{b}");
        }
    }

    #[test]
    fn names_sort_in_index_order() {
        assert_eq!(name(42, name_width(1000)), "f000000042");
        assert_eq!(name_width(1_000_000_000), 9);
        assert_eq!(name_width(1_000_000_001), 10);
        assert_eq!(index_of("f000000042", 9), Some(42));
        assert_eq!(index_of("f00000042", 9), None);
        assert_eq!(index_of("g000000042", 9), None);
    }
}
