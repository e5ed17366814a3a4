//! Entries set aside on disk: when a core's frontier is full and one
//! origin holds a large share of it while it drains slowly (a dead or very
//! slow host), that origin's new entries go to a file of its own instead of
//! memory, so that reading the input goes on and every other origin keeps
//! its work. They come back, oldest first, as the origin's queue runs low,
//! and get their requests and retries like any other entry.
//!
//! One file per such origin and core, `STATE/aside/core{C}-{N}.jsonl`: a
//! line per entry, its page slot and the plan's encoding (JSON). It is
//! removed once read back; a killed run leaves it behind and the next run
//! clears the directory (the input is read again from the journal's cursor,
//! so nothing set aside is lost). Written by hand because no crate keeps a
//! disk-backed FIFO this simple (append, read from the front).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::rc::Rc;
use std::time::Instant;

use super::Plan;
use super::core::{Core, FRONTIER, Held, State};

/// An origin holding at least this many entries, draining slower than
/// [`SLOW_DRAIN`], is set aside once the frontier is full.
pub const SHARE: usize = FRONTIER / 4;
/// Read back this many at a time, once the queue holds fewer.
pub const REFILL: usize = SHARE / 2;
/// An origin whose entries would take longer than this to drain at the
/// rate it answers (or that has answered nothing for this long) is slow.
pub const SLOW_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One origin's entries on disk, first in first out.
pub struct Aside {
    path: PathBuf,
    w: BufWriter<File>,
    r: BufReader<File>,
    /// Entries written and not read back yet.
    pub count: u64,
    line: Vec<u8>,
}

impl Aside {
    /// A new file in `dir` (made if need be).
    pub fn create(dir: &Path, core: usize, n: u64) -> io::Result<Aside> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("core{core}-{n}.jsonl"));
        let w = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let r = File::open(&path)?;
        Ok(Aside {
            path,
            w: BufWriter::with_capacity(64 * 1024, w),
            r: BufReader::with_capacity(64 * 1024, r),
            count: 0,
            line: Vec::new(),
        })
    }

    /// Appends an entry: its page slot and its encoding (one line, no
    /// newline in it).
    pub fn put(&mut self, slot: u32, encoded: &[u8]) -> io::Result<()> {
        debug_assert!(!encoded.contains(&b'\n'));
        write!(self.w, "{slot}\t")?;
        self.w.write_all(encoded)?;
        self.w.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Reads back up to `n` entries, oldest first, each as its page slot
    /// and its encoding.
    pub fn take(&mut self, n: usize, mut each: impl FnMut(u32, &[u8])) -> io::Result<usize> {
        self.w.flush()?;
        let mut got = 0;
        while got < n && self.count > 0 {
            self.line.clear();
            if self.r.read_until(b'\n', &mut self.line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: ends early", self.path.display()),
                ));
            }
            let l = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let tab = l.iter().position(|&b| b == b'\t').unwrap_or(0);
            let slot = std::str::from_utf8(&l[..tab])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: a line without its slot", self.path.display()),
                    )
                })?;
            each(slot, &l[tab + 1..]);
            self.count -= 1;
            got += 1;
        }
        if self.count == 0 {
            // Empty: start the file over rather than let it grow.
            self.w.get_mut().set_len(0)?;
            self.w.get_mut().seek(SeekFrom::Start(0))?;
            self.r.seek(SeekFrom::Start(0))?;
        }
        Ok(got)
    }
}

/// A core's entries set aside: how many, on which origins, and which
/// origins hold a large share of the frontier.
#[derive(Default)]
pub struct Shelf {
    /// Entries on disk, on every origin of the core.
    pub count: u64,
    /// Origins with entries on disk.
    origins: Vec<u32>,
    hogs: Vec<Hog>,
    /// Files made so far (each file's name is its number).
    files: u64,
    /// One entry's encoding, reused.
    buf: Vec<u8>,
}

/// An origin holding at least [`SHARE`] entries, and when it last landed a
/// file.
struct Hog {
    oid: u32,
    files: u64,
    since: Instant,
    slow: bool,
}

impl<P: Plan> Core<P> {
    /// Whether input may be read although the frontier is full: a slow
    /// origin holds a large share, and what comes for it will be set aside
    /// (what comes for the others is held, up to a quarter past the
    /// frontier).
    pub(super) fn may_set_aside(&self, st: &mut State<P::Entry>) -> bool {
        if self.sh.plan.aside_dir().is_none() || st.held >= FRONTIER + FRONTIER / 4 {
            return false;
        }
        let now = Instant::now();
        let origins = &st.origins;
        st.shelf.hogs.retain_mut(|h| {
            let Some(o) = origins[h.oid as usize].as_ref() else {
                return false;
            };
            let holds = o.queue.len() + o.delayed as usize;
            if holds < SHARE / 2 {
                return false;
            }
            if o.files != h.files {
                (h.files, h.since) = (o.files, now);
            }
            // Nothing landed lately, or what it holds would take long at
            // the rate it answers.
            h.slow = now.duration_since(h.since) >= SLOW_DRAIN
                || holds as f64 > o.ctl.rate * SLOW_DRAIN.as_secs_f64();
            true
        });
        st.shelf.hogs.iter().any(|h| h.slow) || !st.shelf.origins.is_empty()
    }

    /// A new entry: set aside when its origin is (or, with the frontier
    /// full, is slow and holds a large share), else queued.
    pub(super) fn take_in(self: &Rc<Self>, st: &mut State<P::Entry>, h: Held<P::Entry>) {
        let oid = self.origin_of(st, &h);
        if let Some(dir) = self.sh.plan.aside_dir() {
            let o = st.origins[oid as usize].as_ref().expect("live origin");
            let aside = o.aside.is_some()
                || (Self::full(st) && st.shelf.hogs.iter().any(|g| g.oid == oid && g.slow));
            if aside {
                match self.set_aside(st, oid, &h, dir) {
                    Ok(()) => return,
                    Err(e) => {
                        static TOLD: std::sync::Once = std::sync::Once::new();
                        TOLD.call_once(|| {
                            eprintln!(
                                "bulkget: cannot set entries aside in {}: {e}; they wait in memory",
                                dir.display()
                            )
                        });
                    }
                }
            }
        }
        st.held += 1;
        self.push_to(st, oid, h, false);
        let o = st.origins[oid as usize].as_ref().expect("live origin");
        if o.queue.len() + o.delayed as usize >= SHARE
            && !st.shelf.hogs.iter().any(|g| g.oid == oid)
        {
            st.shelf.hogs.push(Hog {
                oid,
                files: o.files,
                since: Instant::now(),
                slow: false,
            });
        }
    }

    fn set_aside(
        &self,
        st: &mut State<P::Entry>,
        oid: u32,
        h: &Held<P::Entry>,
        dir: &Path,
    ) -> io::Result<()> {
        let o = st.origins[oid as usize].as_mut().expect("live origin");
        if o.aside.is_none() {
            let shelf = &mut st.shelf;
            o.aside = Some(Box::new(Aside::create(dir, self.id, shelf.files)?));
            shelf.files += 1;
            shelf.origins.push(oid);
        }
        let shelf = &mut st.shelf;
        shelf.buf.clear();
        self.sh.plan.encode(&h.e, &mut shelf.buf);
        let a = o.aside.as_mut().expect("made above");
        a.put(h.slot, &shelf.buf)?;
        shelf.count += 1;
        Ok(())
    }

    /// Origins with entries set aside whose queues run low get the oldest
    /// back.
    pub(super) fn take_back(self: &Rc<Self>) {
        let st = &mut *self.st.borrow_mut();
        for i in (0..st.shelf.origins.len()).rev() {
            let oid = st.shelf.origins[i];
            let o = st.origins[oid as usize].as_mut().expect("live origin");
            if o.queue.len() >= REFILL {
                continue;
            }
            let a = o.aside.as_mut().expect("an origin with entries aside");
            let mut back = Vec::with_capacity(REFILL);
            let plan = &self.sh.plan;
            let r = a.take(REFILL, |slot, line| back.push((slot, plan.decode(line))));
            // What is still on disk; none once the file failed to read.
            let mut left = a.count;
            if let Err(e) = &r {
                // Not lost for good: their pages never complete, so the
                // journal's cursor stays before them for the next run.
                eprintln!(
                    "bulkget: lost {left} entries set aside: {e}; run the same command again to fetch them"
                );
                st.shelf.count -= left;
                left = 0;
            }
            if left == 0 {
                o.aside = None;
                st.shelf.origins.swap_remove(i);
            }
            st.shelf.count -= back.len() as u64;
            for (slot, e) in back {
                match e {
                    Some(e) => {
                        st.held += 1;
                        let h = Held {
                            e,
                            slot,
                            attempts: 0,
                            hop: 0,
                        };
                        self.push_to(st, oid, h, false);
                    }
                    None => {
                        eprintln!(
                            "bulkget: an entry set aside could not be read back; run the same command again to fetch it"
                        );
                        self.page_done(st, slot);
                    }
                }
            }
        }
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_across_refills() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Aside::create(d.path(), 0, 7).unwrap();
        for i in 0..10u32 {
            a.put(i % 3, format!("\"e{i}\"").as_bytes()).unwrap();
        }
        let mut got = Vec::new();
        a.take(4, |s, e| {
            got.push((s, String::from_utf8(e.to_vec()).unwrap()))
        })
        .unwrap();
        a.put(1, b"\"e10\"").unwrap();
        a.take(100, |s, e| {
            got.push((s, String::from_utf8(e.to_vec()).unwrap()))
        })
        .unwrap();
        let want: Vec<(u32, String)> = (0..11u32).map(|i| (i % 3, format!("\"e{i}\""))).collect();
        assert_eq!(got, want);
        assert_eq!(a.count, 0);
        // Emptied, the file starts over.
        a.put(1, b"\"x\"").unwrap();
        let mut again = Vec::new();
        a.take(1, |s, e| again.push((s, e.to_vec()))).unwrap();
        assert_eq!(again, [(1, b"\"x\"".to_vec())]);
        let path = d.path().join("core0-7.jsonl");
        assert!(path.exists());
        drop(a);
        assert!(!path.exists(), "removed when done");
    }
}
