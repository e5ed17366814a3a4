//! [`TarSink`]: files appended to tar shards instead of one inode each.
//!
//! Creating an inode costs this kind of machine 25–45 µs of kernel time per
//! file; appending a 100-byte file to a tar costs one `write`. Each thread
//! appends to its own shard `DEST/bulkget-STAMP-PID-K-SEQ.tar` (no shared
//! lock in the hot path; the process id keeps the shards of processes
//! sharing one DEST apart), and a shard rolls over at `shard_size`. Every entry (GNU
//! long-name header, if any, ustar header, data, padding) goes out in one
//! `write`, so a killed run leaves whole entries; a torn last entry (a large
//! file cut mid-write) is cut off when the next run opens the directory
//! (not in the shards of a process still running). A
//! rerun adds new shards and never rewrites old ones: files that were in
//! flight at a kill may appear twice, identical; extraction keeps one.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Sink, SinkFile};

const BLOCK: usize = 512;

pub struct TarSink {
    dir: PathBuf,
    stamp: u64,
    shard_size: u64,
    lanes: Vec<Mutex<Lane>>,
    next_lane: AtomicUsize,
}

struct Lane {
    k: usize,
    seq: u32,
    file: Option<File>,
    written: u64,
}

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl TarSink {
    /// Shards go into `dir`; each rolls over past `shard_size` bytes. Torn
    /// tails left by a killed run are cut off first.
    pub fn new(dir: &Path, shard_size: u64) -> io::Result<TarSink> {
        fs::create_dir_all(dir)?;
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(mid) = name
                .strip_prefix("bulkget-")
                .and_then(|n| n.strip_suffix(".tar"))
            {
                // STAMP-PID-K-SEQ (STAMP-K-SEQ before the pid was there).
                let parts: Vec<&str> = mid.split('-').collect();
                let writer = (parts.len() == 4)
                    .then(|| parts[1].parse::<i32>().ok())
                    .flatten();
                if !writer.is_some_and(super::alive) || writer == Some(std::process::id() as i32) {
                    repair(&e.path())?;
                }
            }
        }
        let lanes = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        Ok(TarSink {
            dir: dir.to_path_buf(),
            stamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            shard_size: shard_size.max(BLOCK as u64 * 4),
            lanes: (0..lanes)
                .map(|k| {
                    Mutex::new(Lane {
                        k,
                        seq: 0,
                        file: None,
                        written: 0,
                    })
                })
                .collect(),
            next_lane: AtomicUsize::new(0),
        })
    }

    fn lane(&self) -> &Mutex<Lane> {
        let i = LANE.with(|l| {
            if l.get() == usize::MAX {
                l.set(self.next_lane.fetch_add(1, Ordering::Relaxed));
            }
            l.get()
        });
        &self.lanes[i % self.lanes.len()]
    }

    fn append(&self, entry: &[u8]) -> io::Result<()> {
        let mut lane = self.lane().lock().expect("lane lock");
        if lane.file.is_none()
            || lane.written + entry.len() as u64 > self.shard_size && lane.written > 0
        {
            if let Some(mut f) = lane.file.take() {
                f.write_all(&[0u8; 2 * BLOCK])?; // end of archive
            }
            lane.seq += 1;
            let path = self.dir.join(format!(
                "bulkget-{}-{}-{:02}-{:05}.tar",
                self.stamp,
                std::process::id(),
                lane.k,
                lane.seq
            ));
            lane.file = Some(OpenOptions::new().write(true).create_new(true).open(path)?);
            lane.written = 0;
        }
        lane.file.as_mut().expect("open shard").write_all(entry)?;
        lane.written += entry.len() as u64;
        Ok(())
    }
}

impl Drop for TarSink {
    fn drop(&mut self) {
        for lane in &self.lanes {
            if let Some(f) = lane.lock().expect("lane lock").file.as_mut() {
                let _ = f.write_all(&[0u8; 2 * BLOCK]);
            }
        }
    }
}

impl Sink for TarSink {
    type File<'a> = TarFile<'a>;

    fn exists(&self, _: &str) -> bool {
        false
    }

    fn remembers(&self) -> bool {
        false
    }

    fn create(&self, name: &str) -> io::Result<TarFile<'_>> {
        let mut buf = Vec::with_capacity(4 * BLOCK);
        buf.resize(BLOCK, 0); // the header, filled in at commit
        Ok(TarFile {
            sink: self,
            buf,
            name: name.into(),
        })
    }
}

/// A file collected in memory until it is appended whole.
pub struct TarFile<'a> {
    sink: &'a TarSink,
    buf: Vec<u8>,
    name: Box<str>,
}

impl SinkFile for TarFile<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn commit(mut self) -> io::Result<()> {
        let size = (self.buf.len() - BLOCK) as u64;
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = self.name.as_bytes();
        let mut entry = Vec::new();
        if name.len() > 100 {
            // GNU long name: an 'L' entry carrying the name, then the header.
            let mut long = [0u8; BLOCK];
            header(&mut long, b"././@LongLink", name.len() as u64 + 1, 0, b'L');
            entry.extend_from_slice(&long);
            entry.extend_from_slice(name);
            entry.push(0);
            entry.resize(entry.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        let (h, _) = self.buf.split_at_mut(BLOCK);
        header(h, &name[..name.len().min(100)], size, mtime, b'0');
        self.buf.resize(self.buf.len().div_ceil(BLOCK) * BLOCK, 0);
        if entry.is_empty() {
            self.sink.append(&self.buf)
        } else {
            entry.extend_from_slice(&self.buf);
            self.sink.append(&entry)
        }
    }
}

/// Writes `v` as zero-padded octal filling `field` but its last byte (NUL);
/// numbers too large for that go in GNU base-256.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if digits < 22 && v >= 1u64 << (3 * digits) {
        field.fill(0);
        field[0] = 0x80;
        for (i, b) in v.to_be_bytes().iter().rev().enumerate() {
            let at = field.len() - 1 - i;
            if at == 0 {
                break;
            }
            field[at] = *b;
        }
        return;
    }
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// Fills a 512-byte GNU-format header.
fn header(h: &mut [u8], name: &[u8], size: u64, mtime: u64, kind: u8) {
    h.fill(0);
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// The size field of a header (octal or base-256).
fn size_of(h: &[u8]) -> Option<u64> {
    let f = &h[124..136];
    if f[0] & 0x80 != 0 {
        return Some(f[1..].iter().fold(0u64, |a, b| (a << 8) | *b as u64));
    }
    let s = std::str::from_utf8(f)
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(s, 8).ok()
}

fn checksum_ok(h: &[u8]) -> bool {
    let want = std::str::from_utf8(&h[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '));
    let Some(want) = want.and_then(|s| u32::from_str_radix(s, 8).ok()) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == want
}

/// Cuts a shard after its last whole entry (a kill can tear the last one).
pub fn repair(path: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut h = [0u8; BLOCK];
    loop {
        if pos + BLOCK as u64 > len {
            break;
        }
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut h)?;
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive marker: whole
        }
        let Some(size) = size_of(&h).filter(|_| checksum_ok(&h)) else {
            break;
        };
        let end = pos + BLOCK as u64 + size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if end > len {
            break;
        }
        pos = end;
    }
    // `pos` is where the torn or missing part begins; a long-name entry whose
    // file entry was lost is harmless to readers, so cut right here.
    f.set_len(pos)?;
    f.seek(SeekFrom::Start(pos))?;
    f.write_all(&[0u8; 2 * BLOCK])
}

/// Calls `f(name, data)` for every regular file in a shard, in order,
/// reading one entry at a time.
pub fn for_each_entry(path: &Path, mut f: impl FnMut(&str, &[u8])) -> io::Result<()> {
    let mut r = io::BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = [0u8; BLOCK];
    let mut data = Vec::new();
    let mut long: Option<String> = None;
    loop {
        match r.read_exact(&mut h) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()), // no trailer: a killed run's shard
            r => r?,
        }
        if h.iter().all(|b| *b == 0) {
            return Ok(());
        }
        if !checksum_ok(&h) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad tar header checksum",
            ));
        }
        let size = size_of(&h)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad tar size"))?
            as usize;
        data.resize(size.div_ceil(BLOCK) * BLOCK, 0);
        r.read_exact(&mut data)?;
        let body = &data[..size];
        if h[156] == b'L' {
            long =
                Some(String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body)).into_owned());
        } else {
            let short = String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_string();
            f(&long.take().unwrap_or(short), body);
        }
    }
}

/// Every regular file in a shard as (name, data); for tests and small shards.
pub fn read_entries(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_entry(path, |n, d| out.push((n.to_string(), d.to_vec())))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_torn_tails_are_cut() {
        let t = tempfile_dir();
        let long = format!("deep/{}", "n".repeat(150));
        {
            let s = TarSink::new(&t, 1 << 20).unwrap();
            for (name, body) in [("a", b"hello".to_vec()), (long.as_str(), vec![7u8; 1000])] {
                let mut f = s.create(name).unwrap();
                f.write(&body).unwrap();
                f.commit().unwrap();
            }
        }
        let shard = fs::read_dir(&t).unwrap().next().unwrap().unwrap().path();
        let got = read_entries(&shard).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), b"hello".to_vec()),
                (long.clone(), vec![7u8; 1000])
            ]
        );
        // tear the last entry: drop the trailer and half of its data
        let len = fs::metadata(&shard).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&shard)
            .unwrap()
            .set_len(len - 1024 - 600)
            .unwrap();
        repair(&shard).unwrap();
        let got = read_entries(&shard).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "a");
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn big_sizes_use_base_256() {
        let mut h = [0u8; BLOCK];
        header(&mut h, b"x", 1 << 40, 0, b'0');
        assert_eq!(size_of(&h), Some(1 << 40));
        assert!(checksum_ok(&h));
        header(&mut h, b"x", 12345, 0, b'0');
        assert_eq!(size_of(&h), Some(12345));
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "bulkget-tar-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }
}
