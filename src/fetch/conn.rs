//! One connection to an origin, whatever it speaks: pipelined HTTP/1.1
//! ([`H1`], plain, over TLS, or through a proxy) or multiplexed HTTP/2
//! ([`H2`]). Both look the same to the hot loop: requests are queued in
//! order, and answers are read back in that order, head then body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::h2::H2;
use super::http1::{H1, Head, Method};
use crate::error::FetchError;

/// The byte stream under an HTTP connection.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An HTTP connection to one origin.
pub enum Conn {
    H1(H1),
    H2(H2),
}

impl Conn {
    /// Queues `GET` of the encoded path `path` writes, with `Range: bytes=a-b`
    /// if asked; `authority` is the `Host`. HTTP/1.1 sends it at the next
    /// [`Conn::flush`], HTTP/2 at once.
    pub fn get(
        &mut self,
        authority: &str,
        path: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
    ) -> Result<(), FetchError> {
        self.request(Method::Get, authority, path, range, None)
    }

    /// As [`Conn::get`], with any method (a `HEAD`'s answer has
    /// [`Head::bodiless`] set), and `more` header lines (each ending in
    /// CRLF) if given.
    pub fn request(
        &mut self,
        method: Method,
        authority: &str,
        path: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
        more: Option<&str>,
    ) -> Result<(), FetchError> {
        match self {
            Conn::H1(c) => {
                c.request(method, authority, path, range, more);
                Ok(())
            }
            Conn::H2(c) => c.request(method, authority, path, range, more),
        }
    }

    /// Queues a request with a body and header lines `(name, value)`;
    /// `path` is the encoded path and query. Sent as [`Conn::request`] is.
    pub fn send(
        &mut self,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: bytes::Bytes,
    ) -> Result<(), FetchError> {
        match self {
            Conn::H1(c) => {
                let mut lines = String::new();
                for (k, v) in headers {
                    lines.push_str(k);
                    lines.push_str(": ");
                    lines.push_str(v);
                    lines.push_str("\r\n");
                }
                c.request_with_body(method, authority, path, &lines, &body);
                Ok(())
            }
            Conn::H2(c) => c.send(method, authority, path, headers, body),
        }
    }

    pub async fn flush(&mut self) -> Result<(), FetchError> {
        match self {
            Conn::H1(c) => c.flush().await,
            Conn::H2(c) => {
                c.flush();
                Ok(())
            }
        }
    }

    /// The head of the oldest answer not read yet.
    pub async fn read_head(&mut self) -> Result<Head, FetchError> {
        match self {
            Conn::H1(c) => c.read_head().await,
            Conn::H2(c) => c.read_head().await,
        }
    }

    /// Streams the body of the answer whose head was just read to `f`; a body
    /// cut short is [`FetchError::Truncated`].
    pub async fn read_body<F>(&mut self, head: &Head, f: F) -> Result<u64, FetchError>
    where
        F: FnMut(&[u8]) -> Result<(), FetchError>,
    {
        match self {
            Conn::H1(c) => c.read_body(head, f).await,
            Conn::H2(c) => c.read_body(head, f).await,
        }
    }

    /// After an error on one answer, whether the others in flight can still
    /// come in on this connection (an HTTP/2 stream fails alone).
    pub fn survives_stream_error(&self) -> bool {
        match self {
            Conn::H1(_) => false,
            Conn::H2(c) => c.is_open(),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }
}

/// One request and its whole answer on `conn` (connecting to the URL's
/// origin if it is `None`; left `None` when the answer does not let the
/// connection be used again): for the few small exchanges around a run
/// (listing pages, store calls, credentials), not the hot loop. An answer
/// longer than `max` bytes is an error.
///
/// A connection kept from an earlier exchange may have been closed by the
/// server since (its keep-alive ran out while idle or while a retry
/// waited): when it ends before any answer, the request goes again at once
/// on a new connection, and that is not an attempt of its own (else the
/// closed connection, not the server's answer, is what gets reported).
pub async fn exchange(
    net: &super::net::Net,
    conn: &mut Option<Conn>,
    method: Method,
    url: &super::url::Url<'_>,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
    max: usize,
) -> Result<(Head, Vec<u8>), FetchError> {
    let reused = conn.is_some();
    match exchange_once(net, conn, method, url, headers, body.clone(), max).await {
        Err(e) if reused && e.is_connection_end() => {
            *conn = None;
            exchange_once(net, conn, method, url, headers, body, max).await
        }
        r => r,
    }
}

async fn exchange_once(
    net: &super::net::Net,
    conn: &mut Option<Conn>,
    method: Method,
    url: &super::url::Url<'_>,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
    max: usize,
) -> Result<(Head, Vec<u8>), FetchError> {
    if conn.is_none() {
        *conn = Some(net.connect(url.origin_key()).await?);
    }
    let c = conn.as_mut().expect("connected");
    let too_large = || FetchError::Protocol(format!("answer larger than {max} bytes"));
    let r = async {
        c.send(method, url.authority, url.path, headers, body)?;
        c.flush().await?;
        let head = c.read_head().await?;
        // (A HEAD's Content-Length is the object's, with no body.)
        let said = head.content_length.filter(|_| method != Method::Head);
        if said.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut out = Vec::with_capacity(said.unwrap_or(0) as usize);
        c.read_body(&head, |b| {
            if out.len() + b.len() > max {
                return Err(too_large());
            }
            out.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok((head, out))
    }
    .await;
    match &r {
        Ok((head, _)) if super::land::reusable(head) => {}
        _ => *conn = None,
    }
    r
}
