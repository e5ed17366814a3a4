//! Making connections: one [`Net`] per run, shared by every task. It turns an
//! origin into a ready [`Conn`]: names resolved off the runtime threads and
//! cached, every address tried with Happy Eyeballs, through a proxy when one
//! applies, TLS with ALPN, then HTTP/2 or HTTP/1.1 as the server chose.
//!
//! Names go to the system resolver (`getaddrinfo` on tokio's blocking pool,
//! so `/etc/hosts`, nsswitch and search domains work as for every other
//! program); it tells no TTL, so an answer is kept for [`DNS_TTL`].
//! A certificate the run cannot trust is remembered per origin: the other
//! files of that host fail at once with the same line, without a handshake.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::conn::{Conn, Stream};
use super::h2::H2;
use super::http1::H1;
use super::proxy::{Proxies, Proxy};
use super::tls::{self, TlsOptions};
use super::url::{Origin, OriginKey, OwnedKey};
use crate::error::{FetchError, RunError};

/// How long a resolved name is used before it is looked up again.
pub const DNS_TTL: Duration = Duration::from_secs(300);
/// Happy Eyeballs (RFC 8305): start the next address this long after the last.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How connections are made.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub connect_timeout: Duration,
    /// Silence on an open connection before it counts as failed.
    pub timeout: Duration,
    pub tls: TlsOptions,
    /// `--proxy` (overrides the environment; empty = none).
    pub proxy: Option<String>,
    /// Speak HTTP/2 to cleartext `http://` origins without asking.
    pub h2_prior_knowledge: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            tls: TlsOptions::default(),
            proxy: None,
            h2_prior_knowledge: false,
        }
    }
}

/// When a name was looked up, and its addresses in the order to try them.
type Resolved = (Instant, Arc<[IpAddr]>);

pub struct Net {
    cfg: NetConfig,
    proxies: Proxies,
    tls: OnceLock<Result<Arc<ClientConfig>, String>>,
    dns: Mutex<HashMap<String, Resolved>>,
    /// Origins whose TLS handshake failed for good, and why.
    broken: Mutex<HashMap<OwnedKey, String>>,
    /// Origins that closed connections with pipelined requests unanswered:
    /// one request at a time to them.
    unpipelined: Mutex<std::collections::HashSet<OwnedKey>>,
    /// Per origin, connections that ended with requests unanswered right
    /// after their first answer, and after more.
    ends: Mutex<HashMap<OwnedKey, (u32, u32)>>,
}

impl Net {
    /// Reads the proxy settings from `--proxy` and the environment; an
    /// unusable `--cacert` is an error now, not at the first https file.
    pub fn new(cfg: NetConfig) -> Result<Net, RunError> {
        Self::with_env(cfg, |k| std::env::var(k).ok())
    }

    pub fn with_env(cfg: NetConfig, env: impl Fn(&str) -> Option<String>) -> Result<Net, RunError> {
        let proxies = Proxies::new(cfg.proxy.as_deref(), env)?;
        let net = Net {
            cfg,
            proxies,
            tls: OnceLock::new(),
            dns: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
            unpipelined: Mutex::new(Default::default()),
            ends: Mutex::new(HashMap::new()),
        };
        if net.cfg.tls.insecure {
            eprintln!(
                "bulkget: warning: --insecure: server certificates are not checked; anyone on the path can read and change what is downloaded"
            );
        }
        if !net.cfg.tls.cacert.is_empty() || net.cfg.tls.insecure {
            net.tls_config().map_err(RunError::Other)?;
        }
        Ok(net)
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.tls
            .get_or_init(|| tls::client_config(&self.cfg.tls).map_err(|e| e.to_string()))
            .clone()
    }

    /// Requests in flight allowed on one HTTP/1.1 connection to `key`
    /// (`None`: as many as the run's window).
    pub fn depth(&self, key: OriginKey<'_>) -> Option<u32> {
        let set = self.unpipelined.lock().expect("pipelining lock");
        set.contains(&key.to_owned()).then_some(1)
    }

    /// `key` ended a connection with requests it had not answered, after
    /// `served` answers on it. A server that does not pipeline does that
    /// right after the first answer, every time; one that fails at random
    /// (resets, cut bodies) after any number. So pipelining stops once at
    /// least three connections ended after one answer, more than twice as
    /// many as after more. True the time it stops (to say so once).
    pub fn ended_unanswered(&self, key: OriginKey<'_>, served: u32) -> bool {
        let key = key.to_owned();
        let mut ends = self.ends.lock().expect("ends lock");
        let e = ends.entry(key.clone()).or_default();
        if served <= 1 {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        let stop = e.0 >= 3 && e.0 > 2 * e.1;
        drop(ends);
        stop && self
            .unpipelined
            .lock()
            .expect("pipelining lock")
            .insert(key)
    }

    /// A ready connection to `key`'s origin.
    pub async fn connect(&self, key: OriginKey<'_>) -> Result<Conn, FetchError> {
        let origin = key
            .origin()
            .ok_or_else(|| FetchError::Input(format!("bad host {:?}", key.authority)))?;
        if let Some(why) = self
            .broken
            .lock()
            .expect("broken lock")
            .get(&key.to_owned())
        {
            return Err(FetchError::Tls {
                origin: origin.to_string(),
                reason: why.clone(),
            });
        }
        let proxy = self.proxies.for_origin(&origin);
        let setup = async {
            let tcp = match proxy {
                Some(p) => self
                    .dial(&p.host, p.port)
                    .await
                    .map_err(|e| FetchError::Proxy {
                        why: format!("cannot reach the proxy {}:{}: {e}", p.host, p.port),
                        retryable: true,
                    })?,
                None => self
                    .dial(&origin.host, origin.port)
                    .await
                    .map_err(FetchError::Connect)?,
            };
            let _ = tcp.set_nodelay(true);
            match (proxy, origin.tls) {
                (Some(p), true) => {
                    let tcp = tunnel(tcp, p, key.authority).await?;
                    self.tls(tcp, &origin, key).await
                }
                (None, true) => self.tls(tcp, &origin, key).await,
                (Some(p), false) => {
                    let extra = p
                        .auth
                        .as_ref()
                        .map(|a| format!("Proxy-Authorization: {a}\r\n").into_bytes())
                        .unwrap_or_default();
                    let target = format!("http://{}", key.authority);
                    Ok(Conn::H1(H1::new(
                        Stream::Tcp(tcp),
                        self.cfg.timeout,
                        target,
                        extra,
                    )))
                }
                (None, false) if self.cfg.h2_prior_knowledge => Ok(Conn::H2(
                    H2::handshake(Stream::Tcp(tcp), false, self.cfg.timeout).await?,
                )),
                (None, false) => Ok(Conn::H1(H1::new(
                    Stream::Tcp(tcp),
                    self.cfg.timeout,
                    String::new(),
                    Vec::new(),
                ))),
            }
        };
        match tokio::time::timeout(self.cfg.connect_timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {origin} timed out after {:?}",
                    self.cfg.connect_timeout
                ),
            ))),
        }
    }

    async fn tls(
        &self,
        tcp: TcpStream,
        origin: &Origin,
        key: OriginKey<'_>,
    ) -> Result<Conn, FetchError> {
        let fail = |reason: String| FetchError::Tls {
            origin: origin.to_string(),
            reason,
        };
        let cfg = self.tls_config().map_err(fail)?;
        let name = tls::server_name(&origin.host).map_err(fail)?;
        let tls = match tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(match tls::describe(&e, &origin.host) {
                    Some(reason) => {
                        self.broken
                            .lock()
                            .expect("broken lock")
                            .insert(key.to_owned(), reason.clone());
                        fail(reason)
                    }
                    None => FetchError::Connect(e),
                });
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let stream = Stream::Tls(Box::new(tls));
        if h2 {
            Ok(Conn::H2(
                H2::handshake(stream, true, self.cfg.timeout).await?,
            ))
        } else {
            Ok(Conn::H1(H1::new(
                stream,
                self.cfg.timeout,
                String::new(),
                Vec::new(),
            )))
        }
    }

    /// A TCP connection to `host:port`: every address, Happy Eyeballs.
    pub async fn dial(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let ips = self.lookup(host).await?;
        happy_eyeballs(&ips, port).await
    }

    /// The addresses of `host`, from the cache when fresh.
    pub async fn lookup(&self, host: &str) -> io::Result<Arc<[IpAddr]>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([ip]));
        }
        if let Some((at, ips)) = self.dns.lock().expect("dns lock").get(host)
            && at.elapsed() < DNS_TTL
        {
            return Ok(ips.clone());
        }
        let found: Vec<IpAddr> = tokio::net::lookup_host((host, 0u16))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
            .map(|a| a.ip())
            .collect();
        let ips: Arc<[IpAddr]> = interleave(found).into();
        if ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            ));
        }
        self.dns
            .lock()
            .expect("dns lock")
            .insert(host.to_string(), (Instant::now(), ips.clone()));
        Ok(ips)
    }
}

/// Asks `p` for a tunnel to `authority` (`CONNECT`), for TLS end to end.
async fn tunnel(mut tcp: TcpStream, p: &Proxy, authority: &str) -> Result<TcpStream, FetchError> {
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = &p.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    let proxy_err = |why: String, retryable| FetchError::Proxy { why, retryable };
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| proxy_err(format!("proxy {}:{}: {e}", p.host, p.port), true))?;
    // Read exactly the answer's head: the tunnel's bytes follow it.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(proxy_err(
                "the proxy's answer to CONNECT is too long".into(),
                false,
            ));
        }
        match tcp.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            Ok(_) => {
                return Err(proxy_err(
                    format!(
                        "proxy {}:{} closed the connection during CONNECT",
                        p.host, p.port
                    ),
                    true,
                ));
            }
            Err(e) => return Err(proxy_err(format!("proxy {}:{}: {e}", p.host, p.port), true)),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let status = match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
        _ => {
            return Err(proxy_err(
                "the proxy's answer to CONNECT is not HTTP".into(),
                false,
            ));
        }
    };
    if status / 100 != 2 {
        return Err(proxy_err(
            format!(
                "proxy {}:{} refused CONNECT {authority}: HTTP {status} {}",
                p.host,
                p.port,
                resp.reason.unwrap_or("")
            ),
            status == 502 || status == 503 || status == 504,
        ));
    }
    Ok(tcp)
}

/// Orders addresses as RFC 8305 §4 asks: alternate the families, starting
/// with the resolver's first choice.
fn interleave(ips: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut seen = Vec::with_capacity(ips.len());
    for ip in ips {
        if !seen.contains(&ip) {
            seen.push(ip);
        }
    }
    let first_v6 = seen.first().is_some_and(|ip| ip.is_ipv6());
    let (mut a, mut b): (Vec<_>, Vec<_>) =
        seen.into_iter().partition(|ip| ip.is_ipv6() == first_v6);
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(a.len() + b.len());
    while let Some(x) = a.pop() {
        out.push(x);
        if let Some(y) = b.pop() {
            out.push(y);
        }
    }
    out.extend(b.into_iter().rev());
    out
}

/// Connects to the first address that answers: the next attempt starts when
/// the last one failed or after [`ATTEMPT_DELAY`], earlier ones keep going,
/// the first to succeed wins and the rest are dropped.
pub async fn happy_eyeballs(ips: &[IpAddr], port: u16) -> io::Result<TcpStream> {
    let mut next = 0usize;
    let mut set: JoinSet<io::Result<TcpStream>> = JoinSet::new();
    let mut last_err = None;
    loop {
        if set.is_empty() {
            let Some(ip) = ips.get(next) else {
                return Err(last_err.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
                }));
            };
            set.spawn(TcpStream::connect(SocketAddr::new(*ip, port)));
            next += 1;
        }
        let more = next < ips.len();
        tokio::select! {
            r = set.join_next() => match r {
                Some(Ok(Ok(s))) => return Ok(s),
                Some(Ok(Err(e))) => {
                    last_err = Some(e);
                    if let Some(ip) = ips.get(next) {
                        set.spawn(TcpStream::connect(SocketAddr::new(*ip, port)));
                        next += 1;
                    }
                }
                Some(Err(e)) => last_err = Some(io::Error::other(e.to_string())),
                None => {}
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                set.spawn(TcpStream::connect(SocketAddr::new(ips[next], port)));
                next += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_families() {
        let v4 = |n: u8| IpAddr::from([10, 0, 0, n]);
        let v6 = |n: u16| IpAddr::from([0xfd, 0, 0, 0, 0, 0, 0, n]);
        assert_eq!(
            interleave(vec![v6(1), v6(2), v6(3), v4(1), v4(1)]),
            vec![v6(1), v4(1), v6(2), v6(3)]
        );
        assert_eq!(
            interleave(vec![v4(1), v4(2), v6(1)]),
            vec![v4(1), v6(1), v4(2)]
        );
    }
}
