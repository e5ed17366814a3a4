//! One file or link copied between local paths, never half-written under
//! its name.
//!
//! Where nothing is at the target yet (its directory was made by this run,
//! or a stat found nothing), the bytes go into an unnamed file in the
//! target's directory (`O_TMPFILE`) that `linkat` names once it is whole:
//! one directory entry made per file, and a killed run leaves no temp file
//! behind (the kernel frees an unnamed file when it is closed). Where
//! something is there, or the file system has no unnamed files, the bytes go
//! into `.NAME.bulkget-part` beside the target and a rename replaces it.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Done, Failed, Item, err};

/// Set once an unnamed file could not be made or named here (a file
/// system without `O_TMPFILE`, no `/proc`): temp names from then on.
static NO_UNNAMED: AtomicBool = AtomicBool::new(false);

/// Copies `it` (a file or a link), atomically.
pub(super) fn copy_one(it: &Item, overwrite: bool) -> Result<Done, Failed> {
    if it.link {
        let tmp = tmp_of(&it.to);
        let target = std::fs::read_link(&it.from).map_err(|e| err(&it.from, "cannot read", e))?;
        if !overwrite && std::fs::read_link(&it.to).is_ok_and(|t| t == target) {
            return Ok(Done::Skipped);
        }
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| err(&tmp, "cannot write", e))?;
        std::fs::rename(&tmp, &it.to).map_err(|e| err(&it.to, "cannot write", e))?;
        return Ok(Done::Copied(0));
    }
    let stat;
    let m = match &it.meta {
        Some(m) => m,
        None => {
            stat = std::fs::metadata(&it.from).map_err(|e| err(&it.from, "cannot read", e))?;
            &stat
        }
    };
    // Nothing at the target: a fresh directory, or a stat that found none
    // (`--overwrite` makes no stat, and replaces whatever is there).
    let mut absent = it.fresh;
    if !overwrite && !it.fresh {
        match std::fs::symlink_metadata(&it.to) {
            Ok(d)
                if d.is_file() && d.len() == m.len() && d.modified().ok() == m.modified().ok() =>
            {
                return Ok(Done::Skipped);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => absent = true,
            _ => {}
        }
    }
    if absent
        && !NO_UNNAMED.load(Ordering::Relaxed)
        && let Some(n) = copy_unnamed(it, m)?
    {
        return Ok(Done::Copied(n));
    }
    let tmp = tmp_of(&it.to);
    let n = copy_named(&it.from, &tmp, m).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    rename(&tmp, &it.to)?;
    Ok(Done::Copied(n))
}

/// The temp name beside `to`: `.NAME.bulkget-part` (made only where one
/// is used: an unnamed file needs none).
fn tmp_of(to: &Path) -> std::path::PathBuf {
    let name = to.file_name().expect("a file name").to_string_lossy();
    to.with_file_name(format!(".{name}.bulkget-part"))
}

fn rename(tmp: &Path, to: &Path) -> Result<(), Failed> {
    std::fs::rename(tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        err(to, "cannot write", e)
    })
}

/// The file's mode, as the new file is made with it.
fn mode_of(m: &std::fs::Metadata) -> u32 {
    m.permissions().mode() & 0o7777
}

/// Copies into an unnamed file in the target's directory, then names it.
/// `None`: this file system cannot (nothing written; the caller uses a temp
/// name).
fn copy_unnamed(it: &Item, m: &std::fs::Metadata) -> Result<Option<u64>, Failed> {
    let dir = match it.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let opened = std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(mode_of(m))
        .open(dir);
    let mut dst = match opened {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            NO_UNNAMED.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        Err(e) => return Err(err(&it.to, "cannot write", e)),
    };
    let n = fill(&it.from, &mut dst, &it.to, m)?;
    // Named through /proc: `linkat` of a descriptor itself (AT_EMPTY_PATH)
    // needs a capability that an ordinary user lacks.
    let fd = format!("/proc/self/fd/{}\0", dst.as_raw_fd());
    match link(&fd, &it.to) {
        Ok(()) => Ok(Some(n)),
        // Something came to the target since the stat: replace it as
        // rename would.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let tmp = tmp_of(&it.to);
            let _ = std::fs::remove_file(&tmp);
            link(&fd, &tmp).map_err(|e| err(&tmp, "cannot write", e))?;
            rename(&tmp, &it.to)?;
            Ok(Some(n))
        }
        Err(_) if !Path::new("/proc/self/fd").is_dir() => {
            NO_UNNAMED.store(true, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(err(&it.to, "cannot write", e)),
    }
}

/// `linkat` of `/proc/self/fd/N` (NUL-terminated) onto `to`.
fn link(fd: &str, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both are NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            fd.as_ptr().cast(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The process's umask (read once: reading it means setting it).
fn umask() -> u32 {
    static MASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        // SAFETY: umask(2) cannot fail; the old mask is put back at once.
        let old = unsafe { libc::umask(0o022) };
        unsafe { libc::umask(old) };
        old as u32
    })
}

/// Copies `len` bytes between the open files with `copy_file_range` (an
/// in-kernel copy, a reflink where the file system has them), called by
/// hand: `io::copy` would first `fstat` both files and then ask once more
/// at the end, three calls a file that a tree of small files pays for.
/// Falls back to `io::copy` where the kernel cannot (another file system
/// type, old kernels). A source that shrank gives fewer bytes (the size
/// then differs, so a rerun copies it again).
fn copy_range(src: &mut std::fs::File, dst: &mut std::fs::File, len: u64) -> io::Result<u64> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open files owned by the caller; null
        // offsets mean each file's own position is used and advanced.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                    Ok(done + io::copy(src, dst)?)
                }
                Some(libc::EINTR) => continue,
                _ => Err(e),
            };
        }
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    Ok(done)
}

/// Copies into a new file at the temp name `tmp`, made with the source's
/// mode (one left by a killed run goes first).
fn copy_named(from: &Path, tmp: &Path, m: &std::fs::Metadata) -> Result<u64, Failed> {
    let open = || {
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(mode_of(m))
            .open(tmp)
    };
    let mut dst = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(tmp);
            open()
        }
        r => r,
    }
    .map_err(|e| err(tmp, "cannot write", e))?;
    fill(from, &mut dst, tmp, m)
}

/// Copies the bytes, the mode and the modification time into `dst`, a new
/// file made with the source's mode (a `fchmod` only where the umask took
/// bits away). `shown` names `dst` in errors.
fn fill(
    from: &Path,
    dst: &mut std::fs::File,
    shown: &Path,
    m: &std::fs::Metadata,
) -> Result<u64, Failed> {
    let mut src = std::fs::File::open(from).map_err(|e| err(from, "cannot read", e))?;
    let n = copy_range(&mut src, dst, m.len()).map_err(|e| err(from, "cannot copy", e))?;
    let mode = mode_of(m);
    if mode & !umask() != mode || mode & 0o7000 != 0 {
        dst.set_permissions(m.permissions())
            .map_err(|e| err(shown, "cannot set the mode of", e))?;
    }
    if let Ok(t) = m.modified() {
        dst.set_modified(t)
            .map_err(|e| err(shown, "cannot set the time of", e))?;
    }
    Ok(n)
}
