//! Proxies, chosen as curl chooses them: `--proxy URL` for every scheme, else
//! `http_proxy` (lower case only, as curl: the upper-case `HTTP_PROXY` can be
//! set by a web server's CGI environment), `https_proxy`/`HTTPS_PROXY`, then
//! `all_proxy`/`ALL_PROXY`; the lower-case name wins. `no_proxy`/`NO_PROXY`
//! lists hosts reached directly: `*`, names (a name matches itself and its
//! subdomains; a leading `.` is ignored), IP addresses and CIDR blocks.
//! Plain-http requests go to the proxy in absolute form; https goes through a
//! `CONNECT` tunnel, TLS end to end. `user:password@` in the proxy URL is sent
//! as `Proxy-Authorization: Basic`.

use std::net::IpAddr;

use base64::Engine;

use super::url::{Origin, host_port};
use crate::error::RunError;

/// One proxy server (an `http://` proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// The `Proxy-Authorization` value, if the URL had credentials.
    pub auth: Option<String>,
}

impl Proxy {
    /// `[http://][user:pass@]host[:port][/]` (port 1080 by default, as curl).
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let rest = match url.split_once("://") {
            None => url,
            Some((s, r)) if s.eq_ignore_ascii_case("http") => r,
            Some((s, _)) => {
                return Err(format!(
                    "proxy {url:?}: only http:// proxies are supported, not {s}://"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let cred = percent_encoding::percent_decode_str(cred).decode_utf8_lossy();
                let b64 = base64::engine::general_purpose::STANDARD.encode(cred.as_bytes());
                (Some(format!("Basic {b64}")), hp)
            }
            None => (None, rest),
        };
        let hostport = if hostport.starts_with('[') || hostport.matches(':').count() <= 1 {
            hostport
        } else {
            return Err(format!("proxy {url:?}: write an IPv6 address in brackets"));
        };
        let (host, port) = host_port(hostport, false)
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| format!("proxy {url:?}: expected [http://]HOST[:PORT]"))?;
        let port = if hostport.ends_with(']') || !hostport.contains(':') {
            1080
        } else {
            port
        };
        Ok(Proxy {
            host: host.to_string(),
            port,
            auth,
        })
    }
}

/// The run's proxy choice.
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    /// From `--proxy` (if given) and the environment (`get` reads it, so
    /// tests can pass their own).
    pub fn new(
        flag: Option<&str>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Proxies, RunError> {
        let var = |lower: &str, upper: Option<&str>| {
            get(lower)
                .or_else(|| upper.and_then(&get))
                .filter(|v| !v.trim().is_empty())
        };
        let parse = |v: Option<String>| -> Result<Option<Proxy>, RunError> {
            v.map(|v| Proxy::parse(v.trim()).map_err(RunError::Other))
                .transpose()
        };
        let all = var("all_proxy", Some("ALL_PROXY"));
        let (http, https) = match flag {
            Some("") => (None, None),
            Some(f) => (Some(f.to_string()), Some(f.to_string())),
            None => (
                var("http_proxy", None).or_else(|| all.clone()),
                var("https_proxy", Some("HTTPS_PROXY")).or(all),
            ),
        };
        let no_proxy = var("no_proxy", Some("NO_PROXY"))
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Proxies {
            http: parse(http)?,
            https: parse(https)?,
            no_proxy,
        })
    }

    /// The proxy for `o`, if any.
    pub fn for_origin(&self, o: &Origin) -> Option<&Proxy> {
        let p = if o.tls { &self.https } else { &self.http };
        p.as_ref().filter(|_| !self.bypass(&o.host))
    }

    fn bypass(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.no_proxy.iter().any(|e| {
            if e == "*" {
                return true;
            }
            if let (Some(ip), Some((net, bits))) = (ip, e.split_once('/')) {
                return match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            let e = e.trim_start_matches('[').trim_end_matches(']');
            host == e || host.ends_with(e) && host[..host.len() - e.len()].ends_with('.')
        })
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn origin(tls: bool, host: &str) -> Origin {
        Origin {
            tls,
            host: host.into(),
            port: 1,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://u:p%40ss@proxy.example:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.auth.as_deref(), Some("Basic dTpwQHNz"));
        assert_eq!(Proxy::parse("10.1.2.3").unwrap().port, 1080);
        assert_eq!(Proxy::parse("[::1]:8").unwrap().host, "::1");
        assert!(Proxy::parse("socks5://h:1").unwrap_err().contains("socks5"));
    }

    #[test]
    fn chooses_as_curl_does() {
        let p = Proxies::new(
            None,
            env(&[
                ("HTTP_PROXY", "http://ignored:1"),
                ("HTTPS_PROXY", "http://sec:2"),
                ("ALL_PROXY", "http://all:3"),
                ("NO_PROXY", "internal.example, .corp,10.0.0.0/8,::1"),
            ]),
        )
        .unwrap();
        assert_eq!(p.for_origin(&origin(false, "a.com")).unwrap().host, "all");
        assert_eq!(p.for_origin(&origin(true, "a.com")).unwrap().host, "sec");
        assert!(p.for_origin(&origin(true, "internal.example")).is_none());
        assert!(p.for_origin(&origin(true, "x.internal.example")).is_none());
        assert!(p.for_origin(&origin(true, "notinternal.example")).is_some());
        assert!(p.for_origin(&origin(true, "db.corp")).is_none());
        assert!(p.for_origin(&origin(true, "10.9.8.7")).is_none());
        assert!(p.for_origin(&origin(true, "11.9.8.7")).is_some());
        assert!(p.for_origin(&origin(true, "::1")).is_none());
        let p = Proxies::new(None, env(&[("http_proxy", "http://low:1")])).unwrap();
        assert_eq!(p.for_origin(&origin(false, "a")).unwrap().host, "low");
        assert!(p.for_origin(&origin(true, "a")).is_none());
        let p = Proxies::new(Some("http://flag:9"), env(&[("https_proxy", "http://e:1")])).unwrap();
        assert_eq!(p.for_origin(&origin(true, "a")).unwrap().host, "flag");
        let p = Proxies::new(None, env(&[("all_proxy", "http://a:1"), ("no_proxy", "*")])).unwrap();
        assert!(p.for_origin(&origin(true, "a")).is_none());
    }
}
