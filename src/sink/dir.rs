//! [`DirSink`]: a directory tree, every file landed atomically.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::{Sink, SinkFile};

const TMP_DIR: &str = ".bulkget/tmp";

/// Link modes, learned on first use.
const LINK_UNKNOWN: u8 = 0;
const LINK_EMPTY_PATH: u8 = 1; // linkat(fd, "", AT_EMPTY_PATH): needs CAP_DAC_READ_SEARCH
const LINK_PROC: u8 = 2; // linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)
const NO_TMPFILE: u8 = 3; // O_TMPFILE unsupported: named temporary + rename

/// A directory tree.
///
/// Files in subdirectories are placed through a directory descriptor opened
/// with `openat2(RESOLVE_BENEATH)`, and missing directories are made one
/// level at a time beneath the root, so a symlink inside DEST that leads out
/// of it (planted by someone else) is refused rather than followed.
pub struct DirSink {
    root: PathBuf,
    dir: OwnedFd,
    mode: AtomicU8,
    counter: AtomicU64,
    /// Never replace a file: a name that exists is an `AlreadyExists` error.
    no_replace: bool,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Where one file goes: its directory (the root when `dir` is `None`) and
/// its last name segment.
struct Place {
    dir: Option<OwnedFd>,
    leaf: CString,
}

impl Place {
    fn fd(&self, root: &OwnedFd) -> RawFd {
        self.dir.as_ref().unwrap_or(root).as_raw_fd()
    }
}

impl DirSink {
    /// Opens (creating if needed) the destination `root`. Its `.bulkget/tmp`
    /// is made only when a named temporary is needed.
    pub fn new(root: &Path) -> io::Result<DirSink> {
        fs::create_dir_all(root)?;
        let c = CString::new(root.as_os_str().as_bytes())?;
        // SAFETY: c is a valid NUL-terminated path; the fd is owned below.
        let fd = cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
            )
        })?;
        // Leftovers of a killed run's named temporaries are garbage by
        // construction; those of a process still running (another worker
        // of a shared job into the same DEST) are its own. Names start
        // with the writer's pid.
        if let Ok(rd) = fs::read_dir(root.join(TMP_DIR)) {
            for e in rd.flatten() {
                let name = e.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.split('-').next())
                    .and_then(|p| p.parse::<i32>().ok());
                if !pid.is_some_and(super::alive) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DirSink {
            root: root.to_path_buf(),
            dir,
            mode: AtomicU8::new(LINK_UNKNOWN),
            counter: AtomicU64::new(0),
            no_replace: false,
        })
    }

    /// Makes commits fail with `AlreadyExists` instead of replacing a file.
    pub fn no_replace(mut self) -> DirSink {
        self.no_replace = true;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves the complete file at `from` (same file system) to `name`,
    /// honouring [`DirSink::no_replace`].
    /// `from` is a path as the process names it (absolute, or relative to
    /// the working directory, like the destination itself), never relative
    /// to the root.
    pub fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
        let from = CString::new(from.as_os_str().as_bytes())?;
        self.rename_from(libc::AT_FDCWD, &from, &self.place(name)?)
    }

    /// The length of the regular file `name`, if there is one.
    pub fn len(&self, name: &str) -> Option<u64> {
        self.stat_file(name).map(|st| st.st_size as u64)
    }

    /// Removes the file `name` (one a killed run may have left torn).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let place = self.place(name)?;
        // SAFETY: valid dirfd and NUL-terminated leaf.
        cvt(unsafe { libc::unlinkat(place.fd(&self.dir), place.leaf.as_ptr(), 0) }).map(drop)
    }

    /// `stat` of the regular file `name` (symlinks are not followed).
    fn stat_file(&self, name: &str) -> Option<libc::stat> {
        let c = cstr(name).ok()?;
        // SAFETY: stat is plain old data, fully written on success.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dirfd, path and out-pointer.
        let r = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        (r == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFREG).then_some(st)
    }

    /// Opens the directory `rel` (relative to the root) if it lies beneath it.
    fn open_beneath(&self, rel: &str) -> io::Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        match crate::beneath::open(self.dir.as_raw_fd(), rel, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Err(io::Error::other(format!(
                "the directory {rel:?} leads outside the destination (a symlink); refused"
            ))),
            Err(e) if crate::beneath::unsupported(&e) => {
                // No openat2 here (kernel < 5.6 or a seccomp filter): plain openat.
                let c = cstr(rel)?;
                // SAFETY: valid dirfd and NUL-terminated relative path; the fd is owned below.
                let fd = cvt(unsafe {
                    libc::openat(self.dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC)
                })?;
                // SAFETY: just opened, owned by nobody else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            r => r,
        }
    }

    /// Makes the directories of `parent` one level at a time, each inside the
    /// one before it, never through a link that leaves the root.
    fn mkdirs_beneath(&self, parent: &str) -> io::Result<()> {
        let ends = parent
            .match_indices('/')
            .map(|(i, _)| i)
            .chain([parent.len()]);
        for end in ends {
            let prefix = &parent[..end];
            let (up, seg) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            let up_fd = if up.is_empty() {
                None
            } else {
                Some(self.open_beneath(up)?)
            };
            let at = up_fd.as_ref().unwrap_or(&self.dir).as_raw_fd();
            let c = cstr(seg)?;
            // SAFETY: valid dirfd and NUL-terminated single segment.
            match cvt(unsafe { libc::mkdirat(at, c.as_ptr(), 0o755) }) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The directory and leaf of `name`, making directories as needed.
    fn place(&self, name: &str) -> io::Result<Place> {
        let Some((parent, leaf)) = name.rsplit_once('/') else {
            return Ok(Place {
                dir: None,
                leaf: cstr(name)?,
            });
        };
        let dir = match self.open_beneath(parent) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.mkdirs_beneath(parent)?;
                self.open_beneath(parent)?
            }
            r => r?,
        };
        Ok(Place {
            dir: Some(dir),
            leaf: cstr(leaf)?,
        })
    }

    fn open_tmpfile(&self, place: &Place) -> io::Result<OwnedFd> {
        // SAFETY: valid dirfd and a NUL-terminated path.
        let fd = cvt(unsafe {
            libc::openat(
                place.fd(&self.dir),
                c".".as_ptr(),
                libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// A fresh name under `.bulkget/tmp` (relative to the root).
    fn tmp_name(&self, tag: &str) -> io::Result<CString> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(self.root.join(TMP_DIR))?;
        cstr(&format!("{TMP_DIR}/{}-{tag}{n}", std::process::id()))
    }

    fn open_named_tmp(&self) -> io::Result<(OwnedFd, CString)> {
        let tmp = self.tmp_name("")?;
        // SAFETY: valid dirfd and NUL-terminated relative path.
        let fd = cvt(unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        })?;
        // SAFETY: as above.
        Ok((unsafe { OwnedFd::from_raw_fd(fd) }, tmp))
    }

    /// Renames `tmp` (relative to the root) to its place.
    fn rename_into_place(&self, tmp: &CString, place: &Place) -> io::Result<()> {
        self.rename_from(self.dir.as_raw_fd(), tmp, place)
    }

    /// Renames `from` (relative to the directory `at`) to its place.
    fn rename_from(&self, at: RawFd, from: &CString, place: &Place) -> io::Result<()> {
        let flags = if self.no_replace {
            libc::RENAME_NOREPLACE
        } else {
            0
        };
        // SAFETY: valid dirfds (or AT_FDCWD) and NUL-terminated paths.
        cvt(unsafe {
            libc::renameat2(
                at,
                from.as_ptr(),
                place.fd(&self.dir),
                place.leaf.as_ptr(),
                flags,
            )
        })
        .map(drop)
    }

    /// Links the nameless file `fd` as `leaf` in directory `at`.
    fn link(&self, fd: RawFd, at: RawFd, leaf: &CString) -> io::Result<()> {
        loop {
            let r = match self.mode.load(Ordering::Relaxed) {
                LINK_PROC => {
                    let p = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
                    // SAFETY: valid paths and dirfd.
                    unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            p.as_ptr(),
                            at,
                            leaf.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    }
                }
                // SAFETY: valid fd, empty path with AT_EMPTY_PATH, valid dirfd.
                _ => unsafe {
                    libc::linkat(fd, c"".as_ptr(), at, leaf.as_ptr(), libc::AT_EMPTY_PATH)
                },
            };
            if r == 0 {
                let _ = self.mode.compare_exchange(
                    LINK_UNKNOWN,
                    LINK_EMPTY_PATH,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOENT))
                && self.mode.load(Ordering::Relaxed) == LINK_UNKNOWN
            {
                // AT_EMPTY_PATH needs a capability we may not have: use /proc.
                self.mode.store(LINK_PROC, Ordering::Relaxed);
                continue;
            }
            return Err(e);
        }
    }
}

impl Sink for DirSink {
    type File<'a> = DirFile<'a>;

    fn exists(&self, name: &str) -> bool {
        self.stat_file(name).is_some()
    }

    fn landed_at(&self, name: &str) -> Option<std::time::SystemTime> {
        let st = self.stat_file(name)?;
        let d = std::time::Duration::new(
            st.st_ctime.max(0) as u64,
            st.st_ctime_nsec.clamp(0, 999_999_999) as u32,
        );
        Some(std::time::UNIX_EPOCH + d)
    }

    fn create(&self, name: &str) -> io::Result<DirFile<'_>> {
        let place = self.place(name)?;
        if self.mode.load(Ordering::Relaxed) != NO_TMPFILE {
            match self.open_tmpfile(&place) {
                Ok(fd) => {
                    return Ok(DirFile {
                        sink: self,
                        file: File::from(fd),
                        place,
                        tmp: None,
                    });
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                    ) =>
                {
                    self.mode.store(NO_TMPFILE, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let (fd, tmp) = self.open_named_tmp()?;
        Ok(DirFile {
            sink: self,
            file: File::from(fd),
            place,
            tmp: Some(tmp),
        })
    }
}

/// A file being written into a [`DirSink`].
pub struct DirFile<'a> {
    sink: &'a DirSink,
    file: File,
    place: Place,
    /// Named temporary (fallback mode); `None` for an `O_TMPFILE` file.
    tmp: Option<CString>,
}

impl SinkFile for DirFile<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn commit(mut self) -> io::Result<()> {
        if let Some(tmp) = &self.tmp {
            self.sink.rename_into_place(tmp, &self.place)?;
            self.tmp = None; // renamed: nothing left to clean up
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        match self
            .sink
            .link(fd, self.place.fd(&self.sink.dir), &self.place.leaf)
        {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && self.sink.no_replace => {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file of that name already exists",
                ))
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Replacing a file: link under a temporary name, then rename over.
                let tmp = self.sink.tmp_name("r")?;
                self.sink.link(fd, self.sink.dir.as_raw_fd(), &tmp)?;
                self.tmp = Some(tmp);
                let tmp = self.tmp.as_ref().expect("just set");
                self.sink.rename_into_place(tmp, &self.place)?;
                self.tmp = None;
                Ok(())
            }
            r => r,
        }
    }
}

impl Drop for DirFile<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            // SAFETY: valid dirfd and path; failure leaves garbage in .bulkget/tmp only.
            unsafe { libc::unlinkat(self.sink.dir.as_raw_fd(), tmp.as_ptr(), 0) };
        }
    }
}
