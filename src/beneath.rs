//! Opening paths that must stay below a directory: one `openat2` call with
//! `RESOLVE_BENEATH`, used by the server's directory store (what it serves)
//! and by the directory sink (where files land). Written by hand because the
//! libc crate exposes the syscall but not a usable `open_how` (non-exhaustive).

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `struct open_how` of linux/openat2.h.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` relative to `dir` with `flags`, refusing any resolution that
/// leaves `dir` (`..`, absolute symlinks, links pointing out: `EXDEV`).
/// `ENOSYS` or `EPERM` mean the kernel (or a filter) has no `openat2`.
pub fn open(dir: RawFd, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid dirfd, NUL-terminated path, and an open_how of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether `e` says `openat2` itself is unavailable.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM))
}
