//! A pipelined HTTP/1.1 client connection, written by hand because no
//! well-kept Rust client pipelines: hyper's client waits for each answer
//! before sending the next request. For 100-byte files the round trip, not the
//! bytes, is the cost, so one connection here keeps a window of GETs in flight
//! and reads their answers in order from one buffer (usually many per `read`).
//!
//! Answers are parsed with `httparse`; bodies framed by `Content-Length`,
//! `chunked`, or the end of the connection are all handled.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::Stream;
use crate::error::FetchError;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What an answer's head says that a client acts on.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// The server closes the connection after this answer.
    pub close: bool,
    pub retry_after: Option<Duration>,
    /// `Content-Range: bytes a-b/total` as (a, b, total).
    pub content_range: Option<(u64, u64, Option<u64>)>,
    /// `Content-Range: bytes */N` (of a 416) as N.
    pub unsatisfied_size: Option<u64>,
    pub accept_ranges: bool,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `Location` (of a redirect).
    pub location: Option<String>,
    /// Framed by the protocol (an HTTP/2 stream): the connection carries on
    /// whatever the headers say.
    pub multiplexed: bool,
    /// The answer to a `HEAD`: no body follows, whatever the headers say.
    pub bodiless: bool,
}

/// The request methods bulkget sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// Metadata only (`exists`, `stat`): the answer has no body.
    Head,
    /// Uploads (objects and their parts), with a body.
    Put,
    /// Starting and completing a multipart upload.
    Post,
    /// Aborting a multipart upload.
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// Appends one request (`GET` unless `method` says). `target` is the request target's prefix
/// (`http://host` when talking to a proxy, else empty), `path` writes the
/// (encoded) path, `range` asks for bytes a..=b, `extra` are runs of header
/// lines each ending in CRLF. The one place HTTP/1.1 requests are spelled.
pub fn write_request(
    out: &mut Vec<u8>,
    method: Method,
    target: &str,
    host: &str,
    path: impl FnOnce(&mut Vec<u8>),
    range: Option<(u64, u64)>,
    extra: &[&[u8]],
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    path(out);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        concat!(
            "\r\nUser-Agent: bulkget/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        )
        .as_bytes(),
    );
    if let Some((a, b)) = range {
        use std::io::Write;
        let _ = write!(out, "Range: bytes={a}-{b}\r\n");
    }
    for e in extra {
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"\r\n");
}

/// Body framing, decided from the head.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// One keep-alive HTTP/1.1 connection (plain, TLS, or to a proxy).
pub struct H1 {
    stream: Stream,
    buf: Vec<u8>,
    /// The last read filled all the room it had: more may be waiting.
    filled: bool,
    start: usize,
    end: usize,
    out: Vec<u8>,
    timeout: Duration,
    eof: bool,
    /// `http://host` before every path: requests go to a proxy.
    target: String,
    /// Header lines sent with every request (`Proxy-Authorization`).
    extra: Vec<u8>,
    /// Whether each request in flight is a `HEAD`, oldest first (its
    /// answer has no body whatever its head says). Every request is
    /// recorded, whatever its method: an answer is matched to its request
    /// by place alone, so a GET sent before the first HEAD must hold its
    /// place too, or the answers after it are read with the wrong framing.
    heads: std::collections::VecDeque<bool>,
}

/// A connection's read buffer at first, and the most it grows to while
/// reads fill it (pipelined answers, large bodies).
const READ_START: usize = 2 * 1024;
const READ_MAX: usize = 64 * 1024;

impl H1 {
    pub fn new(stream: Stream, timeout: Duration, target: String, extra: Vec<u8>) -> H1 {
        H1 {
            stream,
            buf: vec![0; READ_START],
            filled: false,
            start: 0,
            end: 0,
            // Grows to the largest bunch of requests sent, and is reused.
            out: Vec::new(),
            timeout,
            eof: false,
            target,
            extra,
            heads: std::collections::VecDeque::new(),
        }
    }

    /// Queues a request, with `more` header lines (each ending in CRLF)
    /// if given; sent by the next [`H1::flush`].
    pub fn request(
        &mut self,
        method: Method,
        host: &str,
        path: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
        more: Option<&str>,
    ) {
        let (target, extra) = (&self.target, &self.extra);
        let more = more.map_or(&[][..], str::as_bytes);
        write_request(
            &mut self.out,
            method,
            target,
            host,
            path,
            range,
            &[extra, more],
        );
        self.heads.push_back(method == Method::Head);
    }

    /// Queues a request with a body (`Content-Length` framed) and header
    /// lines `headers` (each ending in CRLF); sent by the next [`H1::flush`].
    pub fn request_with_body(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) {
        let mut extra = Vec::with_capacity(self.extra.len() + headers.len() + 32);
        extra.extend_from_slice(&self.extra);
        extra.extend_from_slice(headers.as_bytes());
        extra.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        let target = &self.target;
        let path = |o: &mut Vec<u8>| o.extend_from_slice(path.as_bytes());
        write_request(&mut self.out, method, target, host, path, None, &[&extra]);
        self.out.extend_from_slice(body);
        self.heads.push_back(false);
    }

    pub async fn flush(&mut self) -> Result<(), FetchError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let send = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r?,
            Err(_) => return Err(FetchError::Timeout(self.timeout)),
        }
        self.out.clear();
        if self.out.capacity() > READ_MAX {
            // An upload's body went out: do not keep its room.
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; Ok(0) at end of stream.
    async fn fill(&mut self) -> Result<usize, FetchError> {
        if self.eof {
            return Ok(0);
        }
        // Connections start small (a run over many hosts holds thousands,
        // each fetching a file or two) and grow while reads come back full.
        if self.filled && self.buf.len() < READ_MAX {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n =
            match tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf[self.end..]))
                .await
            {
                Ok(r) => r?,
                Err(_) => return Err(FetchError::Timeout(self.timeout)),
            };
        if n == 0 {
            self.eof = true;
        }
        self.filled = self.end + n == self.buf.len();
        self.end += n;
        Ok(n)
    }

    /// Reads the next answer's head.
    pub async fn read_head(&mut self) -> Result<Head, FetchError> {
        loop {
            if self.end > self.start {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let mut head = interpret(&resp)?;
                        self.start += n;
                        if head.status >= 100 && head.status < 200 {
                            continue; // 1xx interim answers carry no body
                        }
                        // An answer no request is waiting for is the
                        // server's mistake: say so rather than guess its framing.
                        head.bodiless = self.heads.pop_front().ok_or_else(|| {
                            FetchError::Protocol("an answer to no request".into())
                        })?;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start > MAX_HEAD {
                            return Err(FetchError::Protocol("answer head too large".into()));
                        }
                    }
                    Err(e) => return Err(FetchError::Protocol(format!("bad answer head: {e}"))),
                }
            }
            if self.fill().await? == 0 {
                return Err(FetchError::Closed);
            }
        }
    }

    /// Streams the body of an answer with head `head` to `f`, chunk by chunk;
    /// returns the number of bytes. A body cut short is [`FetchError::Truncated`].
    pub async fn read_body<F>(&mut self, head: &Head, mut f: F) -> Result<u64, FetchError>
    where
        F: FnMut(&[u8]) -> Result<(), FetchError>,
    {
        let framing = if head.status == 204 || head.status == 304 || head.bodiless {
            Framing::Length(0)
        } else if head.chunked {
            Framing::Chunked
        } else if let Some(n) = head.content_length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        match framing {
            Framing::Length(want) => {
                let mut got = 0u64;
                while got < want {
                    if self.end == self.start && self.fill().await? == 0 {
                        return Err(FetchError::Truncated { got, want });
                    }
                    let n = ((want - got) as usize).min(self.end - self.start);
                    f(&self.buf[self.start..self.start + n])?;
                    self.start += n;
                    got += n as u64;
                }
                Ok(got)
            }
            Framing::UntilClose => {
                let mut got = 0u64;
                loop {
                    if self.end > self.start {
                        f(&self.buf[self.start..self.end])?;
                        got += (self.end - self.start) as u64;
                        self.start = self.end;
                    }
                    if self.fill().await? == 0 {
                        return Ok(got);
                    }
                }
            }
            Framing::Chunked => self.read_chunked(f).await,
        }
    }

    async fn read_line(&mut self) -> Result<String, FetchError> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into_owned();
                self.start += i + 2;
                return Ok(line);
            }
            if self.end - self.start > 4096 {
                return Err(FetchError::Protocol("chunk line too long".into()));
            }
            if self.fill().await? == 0 {
                return Err(FetchError::Closed);
            }
        }
    }

    async fn read_chunked<F>(&mut self, mut f: F) -> Result<u64, FetchError>
    where
        F: FnMut(&[u8]) -> Result<(), FetchError>,
    {
        let mut got = 0u64;
        loop {
            let line = self.read_line().await?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| FetchError::Protocol(format!("bad chunk size {size_hex:?}")))?;
            if size == 0 {
                // trailers, then an empty line
                while !self.read_line().await?.is_empty() {}
                return Ok(got);
            }
            let mut left = size;
            while left > 0 {
                if self.end == self.start && self.fill().await? == 0 {
                    return Err(FetchError::Truncated {
                        got,
                        want: got + left,
                    });
                }
                let n = (left as usize).min(self.end - self.start);
                f(&self.buf[self.start..self.start + n])?;
                self.start += n;
                left -= n as u64;
                got += n as u64;
            }
            if !self.read_line().await?.is_empty() {
                return Err(FetchError::Protocol("chunk not followed by CRLF".into()));
            }
        }
    }
}

fn interpret(resp: &httparse::Response<'_, '_>) -> Result<Head, FetchError> {
    let mut h = Head {
        status: resp.code.unwrap_or(0),
        close: resp.version == Some(0),
        ..Head::default()
    };
    for hd in resp.headers.iter() {
        h.header(hd.name, hd.value)?;
    }
    Ok(h)
}

impl Head {
    /// Takes in one header line of an answer.
    pub fn header(&mut self, name: &str, value: &[u8]) -> Result<(), FetchError> {
        let h = self;
        let v = std::str::from_utf8(value).unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = v
                .parse()
                .map_err(|_| FetchError::Protocol(format!("bad Content-Length {v:?}")))?;
            if h.content_length.is_some_and(|old| old != n) {
                return Err(FetchError::Protocol(
                    "conflicting Content-Length headers".into(),
                ));
            }
            h.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = v
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let l = v.to_ascii_lowercase();
            if l.split(',').any(|t| t.trim() == "close") {
                h.close = true;
            } else if l.split(',').any(|t| t.trim() == "keep-alive") {
                h.close = false;
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            h.retry_after = parse_retry_after(v);
        } else if name.eq_ignore_ascii_case("content-range") {
            h.content_range = parse_content_range(v);
            h.unsatisfied_size = v
                .strip_prefix("bytes */")
                .and_then(|n| n.trim().parse().ok());
        } else if name.eq_ignore_ascii_case("accept-ranges") {
            h.accept_ranges = v.eq_ignore_ascii_case("bytes");
        } else if name.eq_ignore_ascii_case("etag") {
            h.etag = Some(v.to_string());
        } else if name.eq_ignore_ascii_case("last-modified") {
            h.last_modified = Some(v.to_string());
        } else if name.eq_ignore_ascii_case("location") {
            h.location = Some(v.to_string());
        }
        Ok(())
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    Some(
        t.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `bytes a-b/total` (total may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((a.parse().ok()?, b.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    //! Against a raw `TcpListener` that answers byte for byte.
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// Reads `n` request heads (no bodies) off `s`, returning their methods.
    async fn read_requests(s: &mut TcpStream, n: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let heads = buf.windows(4).filter(|w| w == b"\r\n\r\n").count();
            if heads >= n {
                break;
            }
            let k = s.read(&mut chunk).await.unwrap();
            assert!(k > 0, "client closed early");
            buf.extend_from_slice(&chunk[..k]);
        }
        String::from_utf8(buf)
            .unwrap()
            .split("\r\n\r\n")
            .filter(|r| !r.is_empty())
            .map(|r| r.split(' ').next().unwrap().to_string())
            .collect()
    }

    /// A pipelined mix of GET and HEAD, the first GETs sent before any
    /// HEAD, answered in one write: every answer is read with its own
    /// request's framing, body for body.
    #[tokio::test]
    async fn pipelined_heads_and_gets_are_matched_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // (method, answer bytes, the body the client must read)
        let script: Vec<(Method, &str, &str)> = vec![
            (
                Method::Get,
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
                "first",
            ),
            (
                Method::Get,
                "HTTP/1.1 405 Not Allowed\r\nContent-Length: 9\r\n\r\nno, sorry",
                "no, sorry",
            ),
            // A HEAD's answer names a length but carries no body.
            (
                Method::Head,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                "",
            ),
            (
                Method::Get,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/1000\r\nContent-Length: 1\r\n\r\nx",
                "x",
            ),
            (
                Method::Head,
                "HTTP/1.1 405 Not Allowed\r\nContent-Length: 157\r\n\r\n",
                "",
            ),
            (
                Method::Get,
                "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ngone\r\n0\r\n\r\n",
                "gone",
            ),
            (
                Method::Head,
                "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n",
                "",
            ),
            (
                Method::Get,
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
                "last",
            ),
        ];
        let answers: String = script.iter().map(|s| s.1).collect();
        let want: Vec<String> = script.iter().map(|s| s.0.as_str().to_string()).collect();
        let n = script.len();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let got = read_requests(&mut s, n).await;
            s.write_all(answers.as_bytes()).await.unwrap();
            got
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = H1::new(
            Stream::Tcp(tcp),
            Duration::from_secs(10),
            String::new(),
            Vec::new(),
        );
        for (i, (m, _, _)) in script.iter().enumerate() {
            let range = (i == 3).then_some((0, 0));
            c.request(
                *m,
                "h",
                |o| o.extend_from_slice(format!("/{i}").as_bytes()),
                range,
                None,
            );
        }
        c.flush().await.unwrap();
        for (i, (m, raw, body)) in script.iter().enumerate() {
            let head = c.read_head().await.unwrap();
            let status: u16 = raw[9..12].parse().unwrap();
            assert_eq!(head.status, status, "answer {i}");
            assert_eq!(head.bodiless, *m == Method::Head, "answer {i}");
            let mut got = Vec::new();
            c.read_body(&head, |b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .await
            .unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), *body, "answer {i}");
        }
        assert_eq!(server.await.unwrap(), want);
        // Nothing is left over: one more answer is an error, not a guess.
        assert!(c.read_head().await.is_err());
    }
}
