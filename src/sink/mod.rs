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
//! * [`TarSink`] appends files to tar shards: no inode per file.
//! * [`NullSink`] keeps nothing: it measures the network side alone.

use std::io;

mod dir;
pub mod tar;

pub use dir::DirSink;
pub use tar::TarSink;

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
    /// Whether [`Sink::exists`] can tell what an earlier run landed (a tar
    /// sink keeps no index of names; a null sink keeps nothing).
    fn remembers(&self) -> bool {
        true
    }
    /// Whether it writes anything to disk (what a checkpoint must flush).
    fn writes(&self) -> bool {
        true
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
    fn remembers(&self) -> bool {
        false
    }
    fn writes(&self) -> bool {
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

/// Whether process `pid` runs (or runs as another user): a named temporary
/// or a tar shard of a live writer (another worker of a shared job into
/// the same DEST) is its own, not a killed run's leftover.
pub(crate) fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}
