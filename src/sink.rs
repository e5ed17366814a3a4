//! Sinks: where fetched bytes land. A [`Sink`] makes a [`SinkFile`] per file;
//! nothing appears under the file's final name until [`SinkFile::commit`], and
//! a file dropped without commit leaves nothing behind.
//!
//! * [`DirSink`] writes a directory tree. Each file is opened nameless with
//!   `O_TMPFILE` in its final directory and linked to its name once complete
//!   (one directory operation instead of create + rename, and a killed process
//!   leaves no temporary file at all). Where `O_TMPFILE` is unsupported, or a
//!   file is replaced, it falls back to a named temporary in `.bulkget/tmp`
//!   and `rename`.
//! * [`NullSink`] keeps nothing: it measures the network side alone.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Where files land.
pub trait Sink: Send + Sync + 'static {
    type File<'a>: SinkFile
    where
        Self: 'a;
    /// Whether a complete file already stands under `name`.
    fn exists(&self, name: &str) -> bool;
    /// When the file under `name` came to stand there (its inode change
    /// time), if one does; `None` for sinks that keep nothing.
    fn landed_at(&self, _name: &str) -> Option<std::time::SystemTime> {
        None
    }
    /// Starts the file `name` (a name already checked by [`crate::names::check`]).
    fn create(&self, name: &str) -> io::Result<Self::File<'_>>;
}

/// One file being written.
pub trait SinkFile: Send {
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes the file appear under its final name, complete.
    fn commit(self) -> io::Result<()>;
}

/// Keeps nothing.
pub struct NullSink;

pub struct NullFile;

impl Sink for NullSink {
    type File<'a> = NullFile;
    fn exists(&self, _: &str) -> bool {
        false
    }
    fn create(&self, _: &str) -> io::Result<NullFile> {
        Ok(NullFile)
    }
}

impl SinkFile for NullFile {
    fn write(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn commit(self) -> io::Result<()> {
        Ok(())
    }
}

const TMP_DIR: &str = ".bulkget/tmp";

/// Link modes, learned on first use.
const LINK_UNKNOWN: u8 = 0;
const LINK_EMPTY_PATH: u8 = 1; // linkat(fd, "", AT_EMPTY_PATH): needs CAP_DAC_READ_SEARCH
const LINK_PROC: u8 = 2; // linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)
const NO_TMPFILE: u8 = 3; // O_TMPFILE unsupported: named temporary + rename

/// A directory tree.
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
        // Leftovers of a killed run's named temporaries are garbage by construction.
        if let Ok(rd) = fs::read_dir(root.join(TMP_DIR)) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
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

    /// Moves the complete file at `from` (same file system) to `name`,
    /// honouring [`DirSink::no_replace`].
    pub fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
        let from = CString::new(from.as_os_str().as_bytes())?;
        self.rename_into_place(&from, name, &cstr(name)?)
    }

    pub fn root(&self) -> &Path {
        &self.root
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

    /// Creates the parent directories of `name`.
    pub fn mkdirs_for(&self, name: &str) -> io::Result<()> {
        match name.rsplit_once('/') {
            Some((parent, _)) => fs::create_dir_all(self.root.join(parent)),
            None => Ok(()),
        }
    }

    fn open_tmpfile(&self, name: &str) -> io::Result<OwnedFd> {
        let parent = cstr(name.rsplit_once('/').map_or(".", |(p, _)| p))?;
        let open = || {
            // SAFETY: valid dirfd and NUL-terminated relative path.
            cvt(unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    parent.as_ptr(),
                    libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            })
        };
        let fd = match open() {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.mkdirs_for(name)?;
                open()?
            }
            r => r?,
        };
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn open_named_tmp(&self) -> io::Result<(OwnedFd, CString)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = cstr(&format!("{TMP_DIR}/{}-{n}", std::process::id()))?;
        let open = || {
            // SAFETY: valid dirfd and NUL-terminated relative path.
            cvt(unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    tmp.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            })
        };
        let fd = match open() {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                fs::create_dir_all(self.root.join(TMP_DIR))?;
                open()?
            }
            r => r?,
        };
        // SAFETY: as above.
        Ok((unsafe { OwnedFd::from_raw_fd(fd) }, tmp))
    }

    fn rename_into_place(&self, tmp: &CString, name: &str, target: &CString) -> io::Result<()> {
        let d = self.dir.as_raw_fd();
        let flags = if self.no_replace {
            libc::RENAME_NOREPLACE
        } else {
            0
        };
        // SAFETY: valid dirfds and NUL-terminated paths (an absolute `tmp` ignores the dirfd).
        let rename = || cvt(unsafe { libc::renameat2(d, tmp.as_ptr(), d, target.as_ptr(), flags) });
        match rename() {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.mkdirs_for(name)?;
                rename().map(drop)
            }
            r => r.map(drop),
        }
    }

    /// Links the nameless file `fd` under `target`.
    fn link(&self, fd: RawFd, target: &CString) -> io::Result<()> {
        let d = self.dir.as_raw_fd();
        let empty = c"";
        loop {
            let r = match self.mode.load(Ordering::Relaxed) {
                LINK_PROC => {
                    let p = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
                    // SAFETY: valid paths and dirfd.
                    unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            p.as_ptr(),
                            d,
                            target.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    }
                }
                _ => {
                    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, valid dirfd.
                    unsafe {
                        libc::linkat(fd, empty.as_ptr(), d, target.as_ptr(), libc::AT_EMPTY_PATH)
                    }
                }
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
        let me = self;
        let target = cstr(name)?;
        if me.mode.load(Ordering::Relaxed) != NO_TMPFILE {
            match me.open_tmpfile(name) {
                Ok(fd) => {
                    return Ok(DirFile {
                        sink: me,
                        file: File::from(fd),
                        target,
                        name: name.into(),
                        tmp: None,
                    });
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                    ) =>
                {
                    me.mode.store(NO_TMPFILE, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let (fd, tmp) = me.open_named_tmp()?;
        Ok(DirFile {
            sink: me,
            file: File::from(fd),
            target,
            name: name.into(),
            tmp: Some(tmp),
        })
    }
}

/// A file being written into a [`DirSink`].
pub struct DirFile<'a> {
    sink: &'a DirSink,
    file: File,
    target: CString,
    name: Box<str>,
    /// Named temporary (fallback mode); `None` for an `O_TMPFILE` file.
    tmp: Option<CString>,
}

impl SinkFile for DirFile<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn commit(mut self) -> io::Result<()> {
        if let Some(tmp) = &self.tmp {
            self.sink.rename_into_place(tmp, &self.name, &self.target)?;
            self.tmp = None; // renamed: nothing left to clean up
            return Ok(());
        }
        {
            {
                let fd = self.file.as_raw_fd();
                match self.sink.link(fd, &self.target) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        self.sink.mkdirs_for(&self.name)?;
                        self.sink.link(fd, &self.target)
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) && self.sink.no_replace => {
                        Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "a file of that name already exists",
                        ))
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        // Replacing a file: link under a temporary name, then rename over.
                        let n = self.sink.counter.fetch_add(1, Ordering::Relaxed);
                        let tmp = cstr(&format!("{TMP_DIR}/{}-r{n}", std::process::id()))?;
                        fs::create_dir_all(self.sink.root.join(TMP_DIR))?;
                        self.sink.link(fd, &tmp)?;
                        self.tmp = Some(tmp.clone());
                        self.sink
                            .rename_into_place(&tmp, &self.name, &self.target)?;
                        self.tmp = None;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
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
