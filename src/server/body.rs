//! The server's response body: whole bytes for small answers, or a stream of
//! chunks read from a [`Source`] for large ones, paced by a per-connection
//! bandwidth cap and cut short by the reset/truncate faults.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::store::Source;

/// Paces one connection's bytes to a rate.
pub struct Pacer {
    rate: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Books `n` bytes; returns when they may be sent.
    fn book(&self, n: usize) -> Instant {
        let mut next = self.next.lock().expect("pacer lock");
        let now = Instant::now();
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        start
    }

    fn chunk(&self) -> usize {
        ((self.rate / 50) as usize).clamp(1024, CHUNK)
    }
}

const CHUNK: usize = 64 * 1024;

/// How a streamed body ends early, if it does.
#[derive(Clone, Copy)]
pub enum Cut {
    /// Reset the connection (TCP RST) when this many bytes were sent.
    Reset(u64, RawFd),
    /// End the body (and so the connection) when this many bytes were sent.
    Truncate(u64),
}

pub struct Stream {
    source: Source,
    pos: u64,
    end: u64,
    sent: u64,
    cut: Option<Cut>,
    pacer: Option<Arc<Pacer>>,
    sleep: Option<Pin<Box<Sleep>>>,
    ready: Option<Bytes>,
    /// The cut was reached and the bytes before it given time to leave.
    cut_due: bool,
}

pub enum RespBody {
    Full(Option<Bytes>),
    Stream(Box<Stream>),
}

impl RespBody {
    pub fn empty() -> RespBody {
        RespBody::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> RespBody {
        RespBody::Full(Some(b.into()))
    }

    pub fn stream(
        source: Source,
        start: u64,
        end: u64,
        cut: Option<Cut>,
        pacer: Option<Arc<Pacer>>,
    ) -> RespBody {
        RespBody::Stream(Box::new(Stream {
            source,
            pos: start,
            end,
            sent: 0,
            cut,
            pacer,
            sleep: None,
            ready: None,
            cut_due: false,
        }))
    }
}

fn set_linger_zero(fd: RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: fd is the connection's live socket (the body only exists while the
    // connection does) and `l` is a valid linger struct of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            RespBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Stream(s) => s.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Full(b) => b.is_none(),
            RespBody::Stream(s) => s.pos >= s.end && s.ready.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespBody::Stream(s) => SizeHint::with_exact(s.end - s.pos),
        }
    }
}

impl Stream {
    fn reached_cut(&self) -> bool {
        match self.cut {
            Some(Cut::Reset(at, _)) | Some(Cut::Truncate(at)) => self.sent >= at,
            None => false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if let Some(b) = self.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let mut want = self
            .pacer
            .as_ref()
            .map_or(CHUNK, |p| p.chunk())
            .min((self.end - self.pos) as usize);
        if !self.cut_due && self.reached_cut() {
            // hyper flushes what it holds while the body is pending: let the
            // bytes before the cut go out, then cut.
            self.cut_due = true;
            let mut sleep = Box::pin(tokio::time::sleep(Duration::from_millis(30)));
            if sleep.as_mut().poll(cx).is_pending() {
                self.sleep = Some(sleep);
                return Poll::Pending;
            }
        }
        match self.cut {
            Some(Cut::Reset(at, fd)) if self.sent >= at => {
                set_linger_zero(fd);
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "injected reset",
                ))));
            }
            Some(Cut::Truncate(at)) if self.sent >= at => {
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "injected truncation",
                ))));
            }
            Some(Cut::Reset(at, _)) | Some(Cut::Truncate(at)) => {
                want = want.min((at - self.sent) as usize)
            }
            None => {}
        }
        let mut buf = vec![0u8; want];
        let n = self.source.read_at(self.pos, &mut buf)?;
        if n == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while served",
            ))));
        }
        buf.truncate(n);
        self.pos += n as u64;
        self.sent += n as u64;
        let bytes = Bytes::from(buf);
        if let Some(p) = &self.pacer {
            let at = p.book(n);
            if at > Instant::now() {
                let mut sleep = Box::pin(tokio::time::sleep_until(at));
                if sleep.as_mut().poll(cx).is_pending() {
                    self.sleep = Some(sleep);
                    self.ready = Some(bytes);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}
