//! `bulkget serve`: the seed's file-server API over HTTP/1.1 (keep-alive,
//! pipelining) and HTTP/2 cleartext (prior knowledge) on one port.
//!
//! ```text
//! GET /list[?next-marker=T] -> {"FileNames": [...], "NextMarker": "T2"}   (no NextMarker on the last page)
//! GET|HEAD /get/{name}      -> bytes; Range: bytes=a-b | a- | -n -> 206; unsatisfiable -> 416
//! ```
//! A [`Store`] supplies names and bytes; [`faults`] injects failures for
//! testing clients. [`Server::start`] runs on its own threads (tests, bench);
//! [`serve_forever`] is the command: first stdout line `listening on http://ADDR`.

pub mod body;
pub mod dirstore;
pub mod faults;
pub mod store;
pub mod tls;

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use body::{Cut, Pacer, RespBody};
use faults::{Dice, Fate, Faults};
use store::{Store, Tokens};

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub page_size: usize,
    pub faults: Faults,
    /// Serve https (ALPN h2 and http/1.1) with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Worker threads (0 = one per available core).
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            page_size: 1000,
            faults: Faults::default(),
            tls: None,
            threads: 0,
        }
    }
}

struct App {
    store: Arc<dyn Store>,
    tokens: Tokens,
    page_size: usize,
    dice: Dice,
    counts: Arc<Counts>,
    bucket: Option<Bucket>,
    t0: std::time::Instant,
    /// While faults are injected: when each refused name may come back.
    due: Option<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Under `workers`: a permit per request being served; the rest wait.
    workers: Option<tokio::sync::Semaphore>,
}

/// What a server has answered so far (for tests and benchmarks).
#[derive(Debug, Default)]
pub struct Counts {
    /// `GET /get/...` requests, whatever their outcome.
    pub gets: AtomicU64,
    /// `GET /list` requests.
    pub lists: AtomicU64,
    /// Body bytes of `/get` answers promised (Content-Length of 200/206 answers).
    pub bytes: AtomicU64,
    /// `/get` answered 429, 500 or 503 (injected, or by a limit).
    pub refused: AtomicU64,
    /// `/get` requests in progress now (from arrival to answer head),
    /// counted only under `limit_inflight` or `workers` (no shared write
    /// per request otherwise).
    pub inflight: AtomicU64,
    /// The sum, over `/get` arrivals, of the requests in progress then
    /// (itself included): divided by `gets`, the load a client offered.
    /// Likewise only under `limit_inflight` or `workers`.
    pub inflight_seen: AtomicU64,
    /// `/get` of a name that came back before the `Retry-After` its last
    /// refusal gave had passed (counted only while faults are injected).
    pub early_retries: AtomicU64,
    /// Connections open now, and the most open at once so far.
    pub conns: AtomicU64,
    pub conns_peak: AtomicU64,
}

/// One open connection, counted in [`Counts::conns`] until dropped.
struct Open(Arc<Counts>);

impl Open {
    fn enter(c: Arc<Counts>) -> Open {
        let n = c.conns.fetch_add(1, Ordering::Relaxed) + 1;
        c.conns_peak.fetch_max(n, Ordering::Relaxed);
        Open(c)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `/get` in progress, counted in [`Counts::inflight`] until dropped.
struct InFlight<'a>(&'a Counts);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counts) -> (InFlight<'a>, u64) {
        let n = c.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        c.inflight_seen.fetch_add(n, Ordering::Relaxed);
        (InFlight(c), n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `--limit-rps`: a token bucket of a twentieth of a second's worth.
struct Bucket {
    rps: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl Bucket {
    fn take(&self) -> bool {
        let cap = (self.rps / 20.0).max(1.0);
        let mut g = self.state.lock().expect("bucket");
        let now = std::time::Instant::now();
        g.0 = (g.0 + now.duration_since(g.1).as_secs_f64() * self.rps).min(cap);
        g.1 = now;
        if g.0 >= 1.0 {
            g.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-connection facts the handlers need.
struct Conn {
    fd: std::os::fd::RawFd,
    pacer: Option<Arc<Pacer>>,
}

#[derive(Serialize)]
struct ListPage<'a> {
    #[serde(rename = "FileNames")]
    file_names: &'a [String],
    #[serde(rename = "NextMarker", skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

fn json_error(status: StatusCode, msg: &str) -> Response<RespBody> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": msg })).expect("json");
    let mut r = Response::new(RespBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl App {
    async fn handle(
        self: Arc<Self>,
        conn: Arc<Conn>,
        req: Request<hyper::body::Incoming>,
    ) -> Response<RespBody> {
        let faults = self.dice.faults();
        let get = req.method() == Method::GET && req.uri().path().starts_with("/get/");
        // Held until the answer head: the count of requests in progress.
        let counted = faults.limit_inflight > 0 || faults.workers > 0;
        let _in = (get && counted).then(|| InFlight::enter(&self.counts));
        if get && let Some(r) = self.limited(req.uri().path(), _in.as_ref().map(|i| i.1)) {
            return r;
        }
        let fate = if get {
            self.dice.roll(req.uri().path())
        } else {
            Fate::Normal
        };
        // A server with so many workers: a request waits for one, which
        // is busy with it until its answer head (the latency) is out.
        let _worker = match &self.workers {
            Some(w) if get => Some(w.acquire().await.expect("never closed")),
            _ => None,
        };
        let mut lat = faults.latency;
        if fate == Fate::Slow {
            lat += std::time::Duration::from_secs(1);
        }
        if !lat.is_zero() {
            tokio::time::sleep(lat).await;
        }
        let path = req.uri().path();
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let known = path == "/list" || path.starts_with("/get/");
                let mut r = json_error(
                    if known {
                        StatusCode::METHOD_NOT_ALLOWED
                    } else {
                        StatusCode::NOT_FOUND
                    },
                    "only GET and HEAD are served",
                );
                if known {
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                return r;
            }
        };
        if path == "/list" {
            self.counts.lists.fetch_add(1, Ordering::Relaxed);
            let mut r = self.list(req.uri().query()).await;
            if head {
                *r.body_mut() = RespBody::empty();
            }
            return r;
        }
        if let Some(raw) = path.strip_prefix("/get/") {
            let Ok(name) = percent_decode_str(raw).decode_utf8() else {
                return json_error(StatusCode::NOT_FOUND, "no such file");
            };
            return self.get(&conn, &name, req.headers(), head, fate);
        }
        json_error(
            StatusCode::NOT_FOUND,
            "not found: the API is GET /list and GET /get/{name}",
        )
    }

    /// The load-dependent faults, for a `/get` of `path` arriving with `n`
    /// requests in progress (counted only under `limit_inflight`): an
    /// outage, a concurrency limit, a rate limit. Notes early retries.
    fn limited(&self, path: &str, n: Option<u64>) -> Option<Response<RespBody>> {
        let faults = self.dice.faults();
        if let Some(due) = &self.due {
            let now = std::time::Instant::now();
            let mut d = due.lock().expect("due");
            // 50 ms of slack for clocks and the way there
            if d.remove(path)
                .is_some_and(|t| now + std::time::Duration::from_millis(50) < t)
            {
                self.counts.early_retries.fetch_add(1, Ordering::Relaxed);
            }
        }
        let over = faults.limit_inflight > 0 && n.is_some_and(|n| n > faults.limit_inflight);
        let out = !faults.outage.is_zero() && self.t0.elapsed() < faults.outage;
        if !(over || out || self.bucket.as_ref().is_some_and(|b| !b.take())) {
            return None;
        }
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        if over {
            return Some(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many at once",
            ));
        }
        let (status, wait) = if out {
            (StatusCode::SERVICE_UNAVAILABLE, faults.retry_after)
        } else {
            (StatusCode::TOO_MANY_REQUESTS, 1)
        };
        self.refused(path, wait);
        let mut r = json_error(status, "rate limited");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        Some(r)
    }

    /// `path` was refused with `Retry-After: wait`: note when it may come back.
    fn refused(&self, path: &str, wait: u64) {
        if let Some(due) = &self.due
            && wait > 0
        {
            let at = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            due.lock().expect("due").insert(path.to_string(), at);
        }
    }

    async fn list(&self, query: Option<&str>) -> Response<RespBody> {
        let mut after = None;
        for pair in query.unwrap_or("").split('&') {
            if let Some(v) = pair.strip_prefix("next-marker=") {
                let tok = percent_decode_str(v).decode_utf8_lossy();
                match self.tokens.open(&tok) {
                    Some(c) => after = Some(c),
                    None => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            "next-marker was not issued by this server",
                        );
                    }
                }
            }
        }
        let store = self.store.clone();
        let limit = self.page_size;
        let page = tokio::task::spawn_blocking(move || store.list(after.as_deref(), limit)).await;
        let page = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("listing failed: {e}"),
                );
            }
            Err(e) => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("listing failed: {e}"),
                );
            }
        };
        let out = ListPage {
            file_names: &page.names,
            next_marker: page.next_after.as_deref().map(|a| self.tokens.seal(a)),
        };
        let mut r = Response::new(RespBody::full(serde_json::to_vec(&out).expect("json")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    fn get(
        &self,
        conn: &Conn,
        name: &str,
        headers: &hyper::HeaderMap,
        head: bool,
        fate: Fate,
    ) -> Response<RespBody> {
        if !head {
            self.counts.gets.fetch_add(1, Ordering::Relaxed);
        }
        let Some(obj) = self.store.open(name) else {
            return json_error(StatusCode::NOT_FOUND, "no such file");
        };
        let faults = self.dice.faults();
        if matches!(fate, Fate::Status503 | Fate::Status429 | Fate::Status500) {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            let (s, m) = match fate {
                Fate::Status503 => (StatusCode::SERVICE_UNAVAILABLE, "injected 503"),
                Fate::Status429 => (StatusCode::TOO_MANY_REQUESTS, "injected 429"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "injected 500"),
            };
            let mut r = json_error(s, m);
            if fate != Fate::Status500 {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after));
                self.refused(&format!("/get/{name}"), faults.retry_after);
            }
            return r;
        }
        let size = obj.size;
        let mut status = StatusCode::OK;
        let (mut start, mut end) = (0, size);
        let mut hs = Vec::with_capacity(5);
        if !faults.no_ranges {
            hs.push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
            if let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
                match parse_range(r, size) {
                    RangeAnswer::Ignore => {}
                    RangeAnswer::Unsatisfiable => {
                        let mut r =
                            json_error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                        r.headers_mut().insert(
                            header::CONTENT_RANGE,
                            HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                        );
                        return r;
                    }
                    RangeAnswer::Range(a, b) => {
                        status = StatusCode::PARTIAL_CONTENT;
                        (start, end) = (a, b + 1);
                        hs.push((
                            header::CONTENT_RANGE,
                            HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")).expect("ascii"),
                        ));
                    }
                }
            }
        }
        hs.push((
            header::ETAG,
            HeaderValue::from_str(&obj.etag).expect("ascii etag"),
        ));
        if let Some(m) = obj.modified {
            hs.push((
                header::LAST_MODIFIED,
                HeaderValue::from_str(&httpdate::fmt_http_date(m)).expect("ascii date"),
            ));
        }
        hs.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ));
        let len = end - start;
        if !head {
            self.counts.bytes.fetch_add(len, Ordering::Relaxed);
        }
        let half = len / 2;
        let cut = match fate {
            Fate::Reset => Some(Cut::Reset(half, conn.fd)),
            Fate::Truncate => Some(Cut::Truncate(half)),
            _ => None,
        };
        let body = if head {
            RespBody::empty()
        } else if len <= 64 * 1024 && cut.is_none() && conn.pacer.is_none() {
            let mut buf = vec![0u8; len as usize];
            match obj.source.read_at(start, &mut buf) {
                Ok(n) if n == buf.len() => RespBody::full(Bytes::from(buf)),
                _ => {
                    return json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "file changed while being read",
                    );
                }
            }
        } else {
            RespBody::stream(obj.source, start, end, cut, conn.pacer.clone())
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        for (k, v) in hs {
            h.insert(k, v);
        }
        if head {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        r
    }
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Not a single byte range we understand: serve the whole file (RFC 9110 allows it).
    Ignore,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Range(u64, u64),
}

pub fn parse_range(h: &str, size: u64) -> RangeAnswer {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let num = |s: &str| {
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAnswer::Ignore,
        (true, false) => match num(b) {
            None => RangeAnswer::Ignore,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Range(size.saturating_sub(n), size - 1),
        },
        (false, _) => {
            let Some(first) = num(a) else {
                return RangeAnswer::Ignore;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(l) if l >= first => l,
                    _ => return RangeAnswer::Ignore,
                }
            };
            if first >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Range(first, last.min(size - 1))
            }
        }
    }
}

/// A running server; dropping it (or [`Server::stop`]) shuts it down gracefully.
pub struct Server {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 = any free one) and serves `store` on background threads.
    pub fn start(addr: &str, store: Arc<dyn Store>, cfg: ServeConfig) -> io::Result<Server> {
        let rt = runtime(cfg.threads)?;
        let listener = rt.block_on(listen(addr))?;
        let local = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let counts2 = counts.clone();
        let thread = std::thread::Builder::new()
            .name("bulkget-serve".into())
            .spawn(move || {
                rt.block_on(run(listener, store, cfg, rx, counts2));
            })?;
        Ok(Server {
            addr: local,
            counts,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().thread_name("bulkget-serve").build()
}

/// A listener on `addr` (the first address it resolves to) with an accept
/// queue of 4096 (the kernel caps it at `net.core.somaxconn`). tokio's
/// `bind` asks for 1024; a client that opens a few hundred connections at
/// once while the server's threads are busy overflowed that here, and each
/// dropped SYN cost its connection a second (the kernel's first SYN
/// retransmission).
async fn listen(addr: &str) -> io::Result<TcpListener> {
    let sa = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no address for {addr}"),
        )
    })?;
    let socket = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(sa)?;
    socket.listen(4096)
}

/// The `serve` command: prints `listening on http://ADDR` first on stdout,
/// serves until SIGINT or SIGTERM, then stops gracefully.
pub fn serve_forever(addr: &str, store: Arc<dyn Store>, cfg: ServeConfig) -> io::Result<()> {
    let rt = runtime(cfg.threads)?;
    rt.block_on(async move {
        let listener = listen(addr).await?;
        let mut out = io::stdout().lock();
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        writeln!(out, "listening on {scheme}://{}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let (tx, rx) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(true);
        });
        run(listener, store, cfg, rx, Arc::default()).await;
        Ok(())
    })
}

/// Accepts and serves connections until `stop` turns true, then lets
/// in-flight requests finish (idle keep-alive connections close at once).
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    cfg: ServeConfig,
    mut stop: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let dice = Dice::new(cfg.faults.clone());
    let app = Arc::new(App {
        counts: counts.clone(),
        tokens: Tokens::new(&store.identity()),
        store,
        page_size: cfg.page_size.max(1),
        t0: std::time::Instant::now(),
        due: (dice.any() || cfg.faults.limit_rps > 0.0 || !cfg.faults.outage.is_zero())
            .then(Default::default),
        dice,
        workers: (cfg.faults.workers > 0)
            .then(|| tokio::sync::Semaphore::new(cfg.faults.workers as usize)),
        bucket: (cfg.faults.limit_rps > 0.0).then(|| Bucket {
            rps: cfg.faults.limit_rps,
            state: std::sync::Mutex::new((0.0, std::time::Instant::now())),
        }),
    });
    // Every connection task holds a sender; recv() yields None once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue, // e.g. EMFILE: keep serving the connections we have
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            fd: stream.as_raw_fd(),
            pacer: (cfg.faults.rate_limit > 0).then(|| Arc::new(Pacer::new(cfg.faults.rate_limit))),
        });
        let app = app.clone();
        let stop = stop.clone();
        let alive = alive_tx.clone();
        let tls = cfg.tls.clone();
        let open = Open::enter(counts.clone());
        tokio::spawn(async move {
            let (_alive, _open) = (alive, open);
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(app.handle(conn, req).await) }
            });
            match tls {
                None => serve_one(TokioIo::new(stream), svc, stop).await,
                Some(tls) => {
                    if let Ok(s) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await {
                        serve_one(TokioIo::new(s), svc, stop).await;
                    }
                }
            }
        });
    }
    drop(alive_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), alive_rx.recv()).await;
}

/// Serves one connection (HTTP/1.1 pipelined or HTTP/2) until it ends or
/// `stop` turns true.
async fn serve_one<I, S>(io: TokioIo<I>, svc: S, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<RespBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().pipeline_flush(true).max_buf_size(1 << 20);
    let c = builder.serve_connection(io, svc);
    tokio::pin!(c);
    tokio::select! {
        _ = c.as_mut() => {}
        _ = stop.changed() => {
            c.as_mut().graceful_shutdown();
            let _ = c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Range(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Range(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), Range(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(parse_range("bytes=9-3", 100), Ignore);
        assert_eq!(parse_range("items=0-1", 100), Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), Ignore);
    }
}
