//! URLs as bulkget reads them: `http://` or `https://`, an authority
//! (`host[:port]`, `[v6]:port`), and a request path with its query. Parsing
//! borrows from the input (no allocation on the hot path); [`Origin`] is the
//! owned (scheme, host, port) a connection is made to; [`join`] resolves a
//! redirect's `Location` against the URL it answered.

use std::fmt;

/// A parsed URL, borrowing the text it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Url<'a> {
    pub tls: bool,
    /// `host[:port]` as written (the `Host` header).
    pub authority: &'a str,
    /// The request path with its query as written (may be empty or start
    /// with `?`: see [`Url::push_path`]).
    pub path: &'a str,
}

impl<'a> Url<'a> {
    /// Parses `http(s)://authority[/path][?query][#fragment]`.
    pub fn parse(url: &'a str) -> Result<Url<'a>, &'static str> {
        let (tls, rest) = if let Some(r) = strip_scheme(url, "http://") {
            (false, r)
        } else if let Some(r) = strip_scheme(url, "https://") {
            (true, r)
        } else {
            return Err("expected http:// or https://HOST[:PORT][/PATH]");
        };
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("URL contains spaces or control characters");
        }
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("user:password@ in URLs is not supported");
        }
        if authority.is_empty() || host_port(authority, tls).is_none() {
            return Err("no host, or a bad port");
        }
        Ok(Url {
            tls,
            authority,
            path,
        })
    }

    /// Appends the request target's path and query: `path` with a `/` in
    /// front when the URL has none (`http://h` and `http://h?q`).
    pub fn push_path(&self, out: &mut Vec<u8>) {
        if !self.path.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(self.path.as_bytes());
    }

    /// The key connections are pooled by.
    pub fn origin_key(&self) -> OriginKey<'a> {
        OriginKey {
            tls: self.tls,
            authority: self.authority,
        }
    }

    pub fn origin(&self) -> Origin {
        self.origin_key().origin().expect("checked by parse")
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The scheme of `p` when it is written as `SCHEME://…` (RFC 3986: a
/// letter, then letters, digits, `+`, `-` or `.`), else `None` (a local
/// path). Schemes are case-insensitive: compare with `eq_ignore_ascii_case`.
pub fn scheme(p: &str) -> Option<&str> {
    let (s, _) = p.split_once("://")?;
    let mut b = s.bytes();
    let first = b.next()?;
    (first.is_ascii_alphabetic() && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c)))
        .then_some(s)
}

/// Why a path of `scheme` is refused, in one line.
pub fn unsupported(scheme: &str) -> String {
    format!("{scheme}:// is not supported (local paths, http(s)://, s3://, az:// and gs:// are)")
}

/// `p` is an `http://` or `https://` URL, in any case.
pub fn is_http(p: &str) -> bool {
    scheme(p).is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// `host[:port]` → (host without brackets, port or the scheme's default).
pub fn host_port(authority: &str, tls: bool) -> Option<(&str, u16)> {
    let default = if tls { 443 } else { 80 };
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, default)),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h, p.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, default)),
    }
}

/// Borrowed (scheme, authority): what a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OriginKey<'a> {
    pub tls: bool,
    pub authority: &'a str,
}

impl OriginKey<'_> {
    /// Where to connect (`None` if the authority is not `host[:port]`).
    pub fn origin(self) -> Option<Origin> {
        let (host, port) = host_port(self.authority, self.tls)?;
        Some(Origin {
            tls: self.tls,
            host: host.to_string(),
            port,
        })
    }

    pub fn to_owned(self) -> OwnedKey {
        OwnedKey {
            tls: self.tls,
            authority: self.authority.to_string(),
        }
    }
}

/// Owned [`OriginKey`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnedKey {
    pub tls: bool,
    pub authority: String,
}

impl OwnedKey {
    pub fn borrow(&self) -> OriginKey<'_> {
        OriginKey {
            tls: self.tls,
            authority: &self.authority,
        }
    }
}

/// Where to connect: scheme, host (no brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Resolves a `Location` header against the URL it answered (RFC 3986
/// §5.2, enough of it for what servers send: absolute URLs, `//host/p`,
/// `/abs`, `rel`, `?q`). The fragment is dropped.
pub fn join(base: &str, location: &str) -> Result<String, &'static str> {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or("");
    if location.is_empty() {
        return Err("an empty Location");
    }
    let b = Url::parse(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let u = format!("{}://{rest}", b.scheme());
        Url::parse(&u)?;
        return Ok(u);
    }
    if let Some(colon) = location.find(':') {
        let scheme = &location[..colon];
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            Url::parse(location)?;
            return Ok(location.to_string());
        }
    }
    let prefix = format!("{}://{}", b.scheme(), b.authority);
    let base_path = match b.path.split('?').next().unwrap_or("") {
        "" => "/",
        p => p,
    };
    let joined = if location.starts_with('/') {
        location.to_string()
    } else if location.starts_with('?') {
        format!("{base_path}{location}")
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    let (path, query) = match joined.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (joined.as_str(), None),
    };
    let mut out = prefix;
    out.push_str(&remove_dots(path));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dots(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *s {
            "." => {
                if last {
                    segs.push("");
                }
            }
            ".." => {
                segs.pop();
                if last {
                    segs.push("");
                }
            }
            s => segs.push(s),
        }
    }
    format!("/{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = Url::parse("https://h.example:8443/a/b?c=1#f").unwrap();
        assert_eq!(
            (u.tls, u.authority, u.path),
            (true, "h.example:8443", "/a/b?c=1")
        );
        assert_eq!(u.origin().port, 8443);
        let u = Url::parse("http://h").unwrap();
        assert_eq!((u.path, u.origin().port), ("", 80));
        let mut t = Vec::new();
        u.push_path(&mut t);
        assert_eq!(t, b"/");
        assert_eq!(Url::parse("https://h").unwrap().origin().port, 443);
        let u = Url::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.origin().host.as_str(), u.origin().port), ("::1", 9));
        let mut t = Vec::new();
        Url::parse("HTTP://h?q").unwrap().push_path(&mut t);
        assert_eq!(t, b"/?q");
        assert!(Url::parse("ftp://h/x").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://u:p@h/").is_err());
        assert!(Url::parse("http://h/a b").is_err());
    }

    #[test]
    fn joins_locations() {
        let b = "http://a.example/x/y/z?q=1";
        assert_eq!(
            join(b, "https://b.example/k").unwrap(),
            "https://b.example/k"
        );
        assert_eq!(join(b, "//c.example/k").unwrap(), "http://c.example/k");
        assert_eq!(join(b, "/abs").unwrap(), "http://a.example/abs");
        assert_eq!(join(b, "rel").unwrap(), "http://a.example/x/y/rel");
        assert_eq!(join(b, "../up?x").unwrap(), "http://a.example/x/up?x");
        assert_eq!(join(b, "?n=2").unwrap(), "http://a.example/x/y/z?n=2");
        assert_eq!(join(b, "/a/./b/../c").unwrap(), "http://a.example/a/c");
        assert!(join(b, "ftp://x/").is_err());
        assert!(join(b, "").is_err());
    }
}
