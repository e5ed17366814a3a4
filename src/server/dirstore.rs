//! A directory tree as a [`Store`]: names are paths relative to the root with
//! `/` between segments, listed depth first with each directory's entries in
//! byte order (so `a/b` sorts before `a-c`: segment by segment).
//!
//! A page walks only the directories on the way from the cursor to the page's
//! end. A few recently read directories are kept sorted in a small cache so a
//! flat directory of a million files is not re-read for every page; memory is
//! bounded by the largest directories, not by the tree.
//! Only regular files are listed; symlinks are not followed while listing, and
//! `open` refuses anything that resolves outside the root.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::store::{Object, Page, Source, Store};

#[derive(Clone)]
struct Entry {
    name: String,
    is_dir: bool,
}

type Listing = Arc<Vec<Entry>>;

/// Serves the files below one directory.
pub struct DirStore {
    root: PathBuf,
    /// The root, open, for `openat2(RESOLVE_BENEATH)`.
    root_fd: fs::File,
    /// openat2 is missing (kernel < 5.6, or a filter said no): resolve by hand.
    no_openat2: std::sync::atomic::AtomicBool,
    cache: Mutex<VecDeque<(PathBuf, SystemTime, Listing)>>,
}

const CACHED_DIRS: usize = 8;

impl DirStore {
    pub fn new(root: &Path) -> io::Result<DirStore> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_fd = fs::File::open(&root)?;
        Ok(DirStore {
            root,
            root_fd,
            no_openat2: Default::default(),
            cache: Mutex::new(VecDeque::new()),
        })
    }

    fn read_sorted(&self, dir: &Path) -> io::Result<Listing> {
        let mtime = fs::metadata(dir)?.modified()?;
        {
            let cache = self.cache.lock().expect("cache lock");
            if let Some((_, _, l)) = cache.iter().find(|(p, m, _)| p == dir && *m == mtime) {
                return Ok(l.clone());
            }
        }
        let mut v = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if !(ft.is_file() || ft.is_dir()) {
                continue; // symlinks, sockets, devices are not listed
            }
            // JSON carries strings: names that are not UTF-8 cannot be listed.
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if dir == self.root && name == ".bulkget" {
                continue; // a mirror's own bookkeeping is not content
            }
            v.push(Entry {
                name,
                is_dir: ft.is_dir(),
            });
        }
        v.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let l: Listing = Arc::new(v);
        let mut cache = self.cache.lock().expect("cache lock");
        cache.retain(|(p, _, _)| p != dir);
        if cache.len() == CACHED_DIRS {
            cache.pop_back();
        }
        cache.push_front((dir.to_path_buf(), mtime, l.clone()));
        Ok(l)
    }

    /// Appends names under `rel` sorting after `after` (segments) until `out` holds `want`.
    fn walk(
        &self,
        rel: &str,
        after: &[&str],
        out: &mut Vec<String>,
        want: usize,
    ) -> io::Result<()> {
        let dir = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let entries = self.read_sorted(&dir)?;
        let (start, descend_first) = match after.first() {
            None => (0, None),
            Some(first) => {
                match entries.binary_search_by(|e| e.name.as_bytes().cmp(first.as_bytes())) {
                    Ok(i) if entries[i].is_dir && after.len() > 1 => (i + 1, Some(i)),
                    Ok(i) => (i + 1, None),
                    Err(i) => (i, None),
                }
            }
        };
        let path_of = |e: &Entry| {
            if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}/{}", e.name)
            }
        };
        if let Some(i) = descend_first {
            self.walk(&path_of(&entries[i]), &after[1..], out, want)?;
        }
        for e in &entries[start..] {
            if out.len() >= want {
                return Ok(());
            }
            if e.is_dir {
                match self.walk(&path_of(e), &[], out, want) {
                    // a directory removed or unreadable since it was listed is skipped
                    Err(err)
                        if err.kind() == io::ErrorKind::NotFound
                            || err.kind() == io::ErrorKind::PermissionDenied => {}
                    r => r?,
                }
            } else {
                out.push(path_of(e));
            }
        }
        Ok(())
    }
}

/// Whether `name` is a plain relative path: no empty, `.` or `..` segment, no NUL.
pub fn is_clean_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

impl DirStore {
    /// Opens `name` for reading only if it resolves inside the root, symlinks
    /// included: one `openat2(RESOLVE_BENEATH)` where the kernel has it,
    /// else `canonicalize` and a prefix check.
    fn open_beneath(&self, name: &str) -> Option<fs::File> {
        use std::os::fd::AsRawFd;
        use std::sync::atomic::Ordering;
        if !self.no_openat2.load(Ordering::Relaxed) {
            match crate::beneath::open(self.root_fd.as_raw_fd(), name, libc::O_RDONLY) {
                Ok(fd) => return Some(fs::File::from(fd)),
                Err(e) if crate::beneath::unsupported(&e) => {
                    self.no_openat2.store(true, Ordering::Relaxed)
                }
                // Crosses the root on the way, e.g. an absolute symlink that
                // may still land inside: decide by the resolved path.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(_) => return None, // absent, unreadable, a loop
            }
        }
        let real = self
            .root
            .join(OsStr::from_bytes(name.as_bytes()))
            .canonicalize()
            .ok()?;
        if !real.starts_with(&self.root) {
            return None;
        }
        fs::File::open(&real).ok()
    }
}

impl Store for DirStore {
    fn list(&self, after: Option<&str>, limit: usize) -> io::Result<Page> {
        let segs: Vec<&str> = after.map(|a| a.split('/').collect()).unwrap_or_default();
        let mut names = Vec::with_capacity(limit.min(4096) + 1);
        self.walk("", &segs, &mut names, limit + 1)?;
        let more = names.len() > limit;
        names.truncate(limit);
        let next_after = if more { names.last().cloned() } else { None };
        Ok(Page { names, next_after })
    }

    fn open(&self, name: &str) -> Option<Object> {
        if !is_clean_relative(name) {
            return None;
        }
        let file = self.open_beneath(name)?;
        let md = file.metadata().ok()?;
        if !md.is_file() {
            return None;
        }
        let modified = md.modified().ok();
        let mtime_ns = modified
            .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Some(Object {
            size: md.len(),
            etag: format!("\"{mtime_ns:x}-{:x}\"", md.len()),
            modified,
            source: Source::File(file),
        })
    }

    fn identity(&self) -> Vec<u8> {
        let mut id = b"dir:".to_vec();
        id.extend_from_slice(self.root.as_os_str().as_bytes());
        id
    }
}
