//! HTTP/2 on the `h2` crate's client directly: many streams on one
//! connection, sent at once and answered in any order; bulkget reads the
//! answers back in the order it asked (a later answer waits, buffered in its
//! stream's flow-control window, while an earlier body is read). h2's
//! connection task runs beside the worker and honours the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (requests past it wait here, unsent, in
//! order) and `GOAWAY`; a refused or reset stream fails that request alone,
//! retryably.
//!
//! Why not hyper's client connection, which bulkget used first: for every
//! request it spawns a task, sends the request through a channel to its
//! connection task and the answer back through a oneshot, and boxes the
//! future. For 100-byte files that was most of the client's CPU beyond h2
//! itself (18–19.5 µs per file); h2 alone needs none of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::{ResponseFuture, SendRequest};
use http::header::{HeaderValue, RANGE, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};

use super::conn::Stream;
use super::http1::{Head, Method};
use crate::error::FetchError;

/// hyper's defaults for a client, which bulkget had before: windows large
/// enough for a fast large download.
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;
/// Streams assumed allowed before the server's SETTINGS arrive.
const INITIAL_STREAMS: usize = 100;

const UA: HeaderValue = HeaderValue::from_static(concat!("bulkget/", env!("CARGO_PKG_VERSION")));

/// A request in the order asked: sent (its answer to come) or still waiting
/// for the server to allow another stream. (Unboxed: the slots of a
/// connection are at most its depth, and a box would cost an allocation per
/// request.)
#[allow(clippy::large_enum_variant)]
enum Slot {
    Sent(ResponseFuture),
    Unsent(http::Request<()>, Bytes),
    /// It could not be sent (the connection is gone): its answer is this
    /// error, in its turn.
    Failed(String),
}

/// One HTTP/2 connection.
pub struct H2 {
    send: SendRequest<Bytes>,
    scheme: Scheme,
    /// The last authority asked for, parsed (a connection serves one origin,
    /// so this is parsed once).
    authority: Option<(String, Authority)>,
    /// Requests in the order asked, each with whether it is a `HEAD`; the
    /// last `unsent` of them are not sent yet.
    pending: VecDeque<(Slot, bool)>,
    unsent: usize,
    body: Option<RecvStream>,
    timeout: Duration,
    path: Vec<u8>,
    /// Set when the connection task has ended (closed, GOAWAY, error).
    closed: Arc<AtomicBool>,
}

fn error(e: h2::Error) -> FetchError {
    FetchError::Http2(e.to_string())
}

impl H2 {
    /// The HTTP/2 preface and settings over `stream`; h2's connection task
    /// is spawned on the current runtime.
    pub async fn handshake(stream: Stream, tls: bool, timeout: Duration) -> Result<H2, FetchError> {
        let hs = h2::client::Builder::new()
            .initial_max_send_streams(INITIAL_STREAMS)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_header_list_size(16 << 10)
            .enable_push(false)
            .handshake::<_, Bytes>(stream);
        let (send, conn) = match tokio::time::timeout(timeout, hs).await {
            Ok(r) => r.map_err(error)?,
            Err(_) => return Err(FetchError::Timeout(timeout)),
        };
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        tokio::spawn(async move {
            let _ = conn.await;
            flag.store(true, Ordering::Relaxed);
        });
        Ok(H2 {
            send,
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
            authority: None,
            pending: VecDeque::new(),
            unsent: 0,
            body: None,
            timeout,
            path: Vec::new(),
            closed,
        })
    }

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// Sends a request now (a new stream), or queues it until the server
    /// allows one more.
    pub fn request(
        &mut self,
        method: Method,
        authority: &str,
        path: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
        more: Option<&str>,
    ) -> Result<(), FetchError> {
        // The path's buffer is reused from request to request.
        let mut buf = std::mem::take(&mut self.path);
        buf.clear();
        path(&mut buf);
        let pq = PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(&buf));
        self.path = buf;
        let pq = pq.map_err(|_| FetchError::Protocol("request path is not ASCII".into()))?;
        let mut req = self.head(method, authority, pq)?;
        if let Some((a, b)) = range {
            let v = HeaderValue::from_str(&format!("bytes={a}-{b}")).expect("digits");
            req.headers_mut().insert(RANGE, v);
        }
        for line in more.iter().flat_map(|m| m.split("\r\n")) {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let name = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes());
            match (name, HeaderValue::from_str(v)) {
                (Ok(n), Ok(v)) => {
                    req.headers_mut().insert(n, v);
                }
                _ => {
                    return Err(FetchError::Protocol(format!(
                        "cannot send the header {k:?}"
                    )));
                }
            }
        }
        self.push(req, Bytes::new(), method == Method::Head);
        Ok(())
    }

    /// Sends a request with `headers` and `body` now (a new stream), or
    /// queues it as [`H2::request`] does.
    pub fn send(
        &mut self,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), FetchError> {
        let pq = PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
            .map_err(|e| FetchError::Protocol(format!("cannot make the request: {e}")))?;
        let mut req = self.head(method, authority, pq)?;
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(v);
            match (name, value) {
                (Ok(n), Ok(v)) => {
                    req.headers_mut().append(n, v);
                }
                _ => return Err(FetchError::Protocol(format!("cannot send the header {k}"))),
            }
        }
        self.push(req, body, method == Method::Head);
        Ok(())
    }

    /// A request head without a body.
    fn head(
        &mut self,
        method: Method,
        authority: &str,
        pq: PathAndQuery,
    ) -> Result<http::Request<()>, FetchError> {
        let auth = match &self.authority {
            Some((s, a)) if s == authority => a.clone(),
            _ => {
                let a = Authority::try_from(authority)
                    .map_err(|e| FetchError::Protocol(format!("bad host {authority}: {e}")))?;
                self.authority = Some((authority.to_string(), a.clone()));
                a
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(auth);
        parts.path_and_query = Some(pq);
        let uri = http::Uri::from_parts(parts)
            .map_err(|e| FetchError::Protocol(format!("cannot make the request: {e}")))?;
        let mut req = http::Request::new(());
        *req.method_mut() = match method {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Put => http::Method::PUT,
            Method::Post => http::Method::POST,
            Method::Delete => http::Method::DELETE,
        };
        *req.uri_mut() = uri;
        req.headers_mut().insert(USER_AGENT, UA);
        Ok(req)
    }

    fn push(&mut self, req: http::Request<()>, body: Bytes, head: bool) {
        self.pending.push_back((Slot::Unsent(req, body), head));
        self.unsent += 1;
        self.flush();
    }

    /// Sends the unsent requests, in order, while the server allows more
    /// streams; `Pending` when one is left waiting (the waker of `cx` is told
    /// when another may go). A request that cannot be sent gets its error as
    /// its answer.
    fn send_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.unsent > 0 {
            let i = self.pending.len() - self.unsent;
            let ready = match self.send.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            self.unsent -= 1;
            let slot = &mut self.pending[i].0;
            let Slot::Unsent(req, body) = std::mem::replace(slot, Slot::Failed(String::new()))
            else {
                unreachable!("the last `unsent` slots are unsent")
            };
            let end = body.is_empty();
            let sent = ready
                .and_then(|()| self.send.send_request(req, end))
                .and_then(|(answer, mut stream)| {
                    // h2 buffers the body and sends it as the windows allow.
                    if !end {
                        stream.send_data(body, true)?;
                    }
                    Ok(answer)
                });
            *slot = match sent {
                Ok(answer) => Slot::Sent(answer),
                Err(e) => Slot::Failed(e.to_string()),
            };
        }
        Poll::Ready(())
    }

    /// Sends what the server allows without waiting.
    pub fn flush(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.send_ready(&mut cx);
    }

    pub async fn read_head(&mut self) -> Result<Head, FetchError> {
        self.body = None;
        if self.pending.is_empty() {
            return Err(FetchError::Protocol("no request in flight".into()));
        }
        let timeout = self.timeout;
        // The oldest request may still wait for a stream; it goes first.
        if self.unsent == self.pending.len() {
            let sent = std::future::poll_fn(|cx| {
                // Send as many as allowed; done once the oldest is out.
                match self.send_ready(cx) {
                    Poll::Pending if self.unsent == self.pending.len() => Poll::Pending,
                    _ => Poll::Ready(()),
                }
            });
            if tokio::time::timeout(timeout, sent).await.is_err() {
                return Err(FetchError::Timeout(timeout));
            }
        }
        let (slot, bodiless) = self.pending.pop_front().expect("not empty");
        let answer = match slot {
            Slot::Sent(answer) => answer,
            Slot::Failed(e) => return Err(FetchError::Http2(e)),
            Slot::Unsent(..) => unreachable!("the oldest request was sent above"),
        };
        let resp = match tokio::time::timeout(timeout, answer).await {
            Ok(r) => r.map_err(error)?,
            Err(_) => return Err(FetchError::Timeout(timeout)),
        };
        // A stream has ended: the next waiting requests may go.
        self.flush();
        let (parts, body) = resp.into_parts();
        let mut head = Head {
            status: parts.status.as_u16(),
            multiplexed: true,
            bodiless,
            ..Head::default()
        };
        for (name, value) in parts.headers.iter() {
            head.header(name.as_str(), value.as_bytes())?;
        }
        self.body = Some(body);
        Ok(head)
    }

    pub async fn read_body<F>(&mut self, head: &Head, mut f: F) -> Result<u64, FetchError>
    where
        F: FnMut(&[u8]) -> Result<(), FetchError>,
    {
        let mut body = self
            .body
            .take()
            .ok_or_else(|| FetchError::Protocol("no answer to read".into()))?;
        if head.bodiless {
            return Ok(0);
        }
        let mut got = 0u64;
        loop {
            let data = match tokio::time::timeout(self.timeout, body.data()).await {
                Err(_) => return Err(FetchError::Timeout(self.timeout)),
                Ok(None) => break,
                Ok(Some(r)) => r.map_err(|e| match head.content_length {
                    Some(want) if got < want => FetchError::Truncated { got, want },
                    _ => error(e),
                })?,
            };
            // The bytes are taken: the server may send as many more.
            let _ = body.flow_control().release_capacity(data.len());
            got += data.len() as u64;
            f(&data)?;
        }
        match head.content_length {
            Some(want) if got != want && head.status != 204 && head.status != 304 => {
                Err(FetchError::Truncated { got, want })
            }
            _ => Ok(got),
        }
    }
}
