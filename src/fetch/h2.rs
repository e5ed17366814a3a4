//! HTTP/2 through hyper's client connection: many streams on one
//! connection, sent at once and answered in any order; bulkget reads the
//! answers back in the order it asked (a later answer waits, buffered in
//! hyper's flow-control window, while an earlier body is read). hyper's
//! connection task runs beside the worker and honours the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (requests past it wait their turn) and
//! `GOAWAY`; a refused or reset stream fails that request alone, retryably.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::conn::Stream;
use super::http1::{Head, Method};
use crate::error::FetchError;

type Answer = Pin<Box<dyn Future<Output = Result<hyper::Response<Incoming>, hyper::Error>> + Send>>;

/// One HTTP/2 connection.
pub struct H2 {
    send: SendRequest<Full<Bytes>>,
    scheme: &'static str,
    /// Answers in the order asked, each with whether it answers a `HEAD`.
    pending: VecDeque<(Answer, bool)>,
    body: Option<Incoming>,
    timeout: Duration,
    path: Vec<u8>,
}

fn error(e: hyper::Error) -> FetchError {
    FetchError::Http2(e.to_string())
}

impl H2 {
    /// The HTTP/2 preface and settings over `stream`; hyper's connection
    /// task is spawned on the current runtime.
    pub async fn handshake(stream: Stream, tls: bool, timeout: Duration) -> Result<H2, FetchError> {
        let hs = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream));
        let (send, conn) = match tokio::time::timeout(timeout, hs).await {
            Ok(r) => r.map_err(error)?,
            Err(_) => return Err(FetchError::Timeout(timeout)),
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2 {
            send,
            scheme: if tls { "https" } else { "http" },
            pending: VecDeque::new(),
            body: None,
            timeout,
            path: Vec::new(),
        })
    }

    pub fn is_open(&self) -> bool {
        !self.send.is_closed()
    }

    /// Sends a request now (a new stream).
    pub fn request(
        &mut self,
        method: Method,
        authority: &str,
        path: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
    ) -> Result<(), FetchError> {
        // The path's buffer is reused from request to request.
        let mut buf = std::mem::take(&mut self.path);
        buf.clear();
        path(&mut buf);
        let range = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let headers: &[(&str, &str)] = match &range {
            Some(r) => &[("range", r.as_str())],
            None => &[],
        };
        let r = match std::str::from_utf8(&buf) {
            Ok(p) => self.send(method, authority, p, headers, Bytes::new()),
            Err(_) => Err(FetchError::Protocol("request path is not ASCII".into())),
        };
        self.path = buf;
        r
    }

    /// Sends a request with `headers` and `body` now (a new stream).
    pub fn send(
        &mut self,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), FetchError> {
        let head = method == Method::Head;
        let m = match method {
            Method::Get => hyper::Method::GET,
            Method::Head => hyper::Method::HEAD,
            Method::Put => hyper::Method::PUT,
            Method::Post => hyper::Method::POST,
            Method::Delete => hyper::Method::DELETE,
        };
        let mut req = hyper::Request::builder()
            .method(m)
            .uri(format!("{}://{authority}{path}", self.scheme))
            .header(
                hyper::header::USER_AGENT,
                concat!("bulkget/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| FetchError::Protocol(format!("cannot make the request: {e}")))?;
        self.pending
            .push_back((Box::pin(self.send.send_request(req)), head));
        Ok(())
    }

    pub async fn read_head(&mut self) -> Result<Head, FetchError> {
        self.body = None;
        let (next, bodiless) = self
            .pending
            .pop_front()
            .ok_or_else(|| FetchError::Protocol("no request in flight".into()))?;
        let resp = match tokio::time::timeout(self.timeout, next).await {
            Ok(r) => r.map_err(error)?,
            Err(_) => return Err(FetchError::Timeout(self.timeout)),
        };
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
            let frame = match tokio::time::timeout(self.timeout, body.frame()).await {
                Err(_) => return Err(FetchError::Timeout(self.timeout)),
                Ok(None) => break,
                Ok(Some(r)) => r.map_err(|e| match head.content_length {
                    Some(want) if got < want => FetchError::Truncated { got, want },
                    _ => error(e),
                })?,
            };
            if let Ok(data) = frame.into_data() {
                got += data.len() as u64;
                f(&data)?;
            }
        }
        match head.content_length {
            Some(want) if got != want && head.status != 204 && head.status != 304 => {
                Err(FetchError::Truncated { got, want })
            }
            _ => Ok(got),
        }
    }
}
