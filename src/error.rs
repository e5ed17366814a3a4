//! Error types. Each says what failed and why in one line, and answers the
//! question the caller has to decide on (`is_retryable`, `is_throttle`, …).

use std::io;
use std::time::Duration;

/// Why a listed name cannot become a file under the destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("name contains a NUL byte")]
    Nul,
    #[error("absolute name (starts with '/')")]
    Absolute,
    #[error("name has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    #[error("name has a '.' or '..' segment")]
    DotSegment,
    #[error("name segment longer than {0} bytes")]
    SegmentTooLong(usize),
    #[error("name longer than {0} bytes")]
    TooLong(usize),
    #[error("name is inside bulkget's own .bulkget directory")]
    Reserved,
}

/// Why fetching one file failed (this attempt).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("no answer for {0:?}")]
    Timeout(Duration),
    #[error("connection closed before the answer")]
    Closed,
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("body ended after {got} of {want} bytes")]
    Truncated { got: u64, want: u64 },
    #[error("malformed HTTP answer: {0}")]
    Protocol(String),
    #[error("refused name: {0}")]
    Name(#[from] NameError),
    #[error("cannot write: {0}")]
    Sink(io::Error),
    #[error("{algo} mismatch: expected {want}, got {got}")]
    Checksum {
        algo: &'static str,
        want: String,
        got: String,
    },
    #[error("{0}")]
    Input(String),
    #[error("another input of this run already wrote this file (outputs collide)")]
    Collision,
    #[error("TLS with {origin}: {reason}")]
    Tls { origin: String, reason: String },
    #[error("{why}")]
    Proxy { why: String, retryable: bool },
    #[error("HTTP/2: {0}")]
    Http2(String),
    #[error("redirect: {0}")]
    Redirect(String),
    #[error("{got} bytes, but the listing said {listed} (the object changed since it was listed?)")]
    SizeMismatch { listed: u64, got: u64 },
}

/// The kinds of fault an attempt can meet that say something about its
/// server (counted per origin by [`crate::pipeline::judge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 or 503: the server asks to slow down.
    Pushback,
    /// Another 5xx, or 408.
    Server,
    /// The connection was reset or closed mid-answer.
    Reset,
    /// The body ended short.
    Truncated,
    /// No answer in time.
    Timeout,
    /// No connection.
    Connect,
}

impl Fault {
    pub const KINDS: usize = 6;
    pub const ALL: [Fault; Fault::KINDS] = [
        Fault::Pushback,
        Fault::Server,
        Fault::Reset,
        Fault::Truncated,
        Fault::Timeout,
        Fault::Connect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Pushback => "pushback",
            Fault::Server => "server",
            Fault::Reset => "reset",
            Fault::Truncated => "truncated",
            Fault::Timeout => "timeout",
            Fault::Connect => "connect",
        }
    }
}

impl FetchError {
    /// The server's part in this failure, if it had one worth counting.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            e if e.is_throttle() => Some(Fault::Pushback),
            FetchError::Status { status, .. } if *status == 408 || *status >= 500 => {
                Some(Fault::Server)
            }
            FetchError::Io(_) | FetchError::Closed | FetchError::Http2(_) => Some(Fault::Reset),
            FetchError::Truncated { .. } => Some(Fault::Truncated),
            FetchError::Timeout(_) => Some(Fault::Timeout),
            FetchError::Connect(_) => Some(Fault::Connect),
            _ => None,
        }
    }

    /// Worth another attempt: connection trouble, timeouts, 408, 429, 5xx
    /// (but 501 and 505), short bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Connect(_)
            | FetchError::Io(_)
            | FetchError::Timeout(_)
            | FetchError::Closed
            | FetchError::Truncated { .. }
            | FetchError::Protocol(_)
            | FetchError::Http2(_) => true,
            FetchError::Proxy { retryable, .. } => *retryable,
            // 501 and 505: the server does not do this at all; asking
            // again cannot change that.
            FetchError::Status { status, .. } => {
                matches!(*status, 408 | 429) || (*status >= 500 && !matches!(*status, 501 | 505))
            }
            FetchError::Name(_)
            | FetchError::Checksum { .. }
            | FetchError::Input(_)
            | FetchError::Collision
            | FetchError::Tls { .. }
            | FetchError::Redirect(_)
            | FetchError::SizeMismatch { .. } => false,
            FetchError::Sink(e) => is_transient(e),
        }
    }

    /// The server asks the whole run to slow down (429 or 503).
    pub fn is_throttle(&self) -> bool {
        matches!(
            self,
            FetchError::Status {
                status: 429 | 503,
                ..
            }
        )
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Nothing more can be written anywhere: the run should stop.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FetchError::Sink(e) if is_disk_full(e))
    }

    /// The peer ended the connection (closed or reset it), as opposed to
    /// sending something wrong or nothing at all.
    pub fn is_connection_end(&self) -> bool {
        match self {
            FetchError::Closed => true,
            FetchError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// Whether the connection it happened on can carry on.
    pub fn keeps_connection(&self) -> bool {
        matches!(
            self,
            FetchError::Status { .. }
                | FetchError::Name(_)
                | FetchError::Sink(_)
                | FetchError::Checksum { .. }
                | FetchError::Input(_)
                | FetchError::Collision
                | FetchError::Redirect(_)
                | FetchError::SizeMismatch { .. }
        )
    }
}

/// A write error that may pass (out of descriptors or memory, interrupted);
/// a name that cannot be a file here (ENOTDIR, EISDIR, EACCES, …) will not.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE)
            | Some(libc::ENFILE)
            | Some(libc::EAGAIN)
            | Some(libc::EINTR)
            | Some(libc::ENOMEM)
    )
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Why a run could not proceed (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("listing {url}: {why}")]
    List { url: String, why: String },
    #[error(
        "listing {url}: the cursor {marker:?} repeats an earlier page's: the server is looping"
    )]
    ListLoop { url: String, marker: String },
    #[error("destination {path}: {source}")]
    Dest { path: String, source: io::Error },
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The shared job's Redis, or the job itself (`--queue`).
    #[error("{0}")]
    Queue(String),
    #[error("{0}")]
    Other(String),
}
