//! `bulkget ls [-r] [--json] PATH`: the entries under a path, streamed.
//!
//! PATH is a local directory (or file), a list-API server's base URL
//! (every file it lists, as the `BASE/get/NAME` URLs `get` and `exists`
//! take), or `s3://BUCKET[/PREFIX]` (one level, "directories" ending in
//! `/`; every key with `-r`). Each line is a full path the other commands
//! take; `--json` gives `{"path", "size", "mtime", "etag"}` a line, with
//! what the source knows. Local directories are read in name order; a
//! symbolic link is listed, never followed (no loops). One listing
//! connection: the stores and servers page in key order anyway.

use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::error::RunError;
use crate::fetch::net::{Net, NetConfig};
use crate::fetch::{Endpoint, RetryPolicy};
use crate::probe::json_line;
use crate::store::StoreOpts;
use crate::units::rfc3339;

#[derive(Clone, Debug)]
pub struct LsConfig {
    pub path: String,
    pub recursive: bool,
    pub json: bool,
    pub net: NetConfig,
    pub policy: RetryPolicy,
    pub store_opts: StoreOpts,
    /// No progress line.
    pub quiet: bool,
}

/// Writes entries and shows a count on a terminal while it lists.
struct Out<'a> {
    w: &'a mut dyn Write,
    json: bool,
    n: u64,
    progress: Option<Instant>,
    /// The reader went away (`ls | head`): listing stops, and that is fine.
    closed: bool,
}

impl Out<'_> {
    /// One entry; `path` as bytes: a local name that is not UTF-8 is
    /// written as it is (a shell can use it), and only `--json`, whose
    /// strings are UTF-8, shows it with U+FFFD in place of the bad bytes.
    fn entry(
        &mut self,
        path: &[u8],
        size: Option<u64>,
        mtime: Option<String>,
        etag: Option<String>,
    ) -> Result<(), RunError> {
        let r = if self.json {
            let line = json_line(
                &String::from_utf8_lossy(path),
                &[
                    ("size", size.into()),
                    ("mtime", mtime.into()),
                    ("etag", etag.into()),
                ],
            );
            self.w.write_all(line.as_bytes())
        } else {
            self.w
                .write_all(path)
                .and_then(|()| self.w.write_all(b"\n"))
        };
        if let Err(e) = r {
            self.closed = e.kind() == io::ErrorKind::BrokenPipe;
            return Err(RunError::Other(format!("cannot write the listing: {e}")));
        }
        self.n += 1;
        if let Some(t) = &mut self.progress
            && self.n.is_multiple_of(1024)
            && t.elapsed() >= Duration::from_millis(250)
        {
            *t = Instant::now();
            eprint!("\rbulkget: listed {}", self.n);
        }
        Ok(())
    }
}

/// Lists `cfg.path` into `w`; the number of entries.
pub fn run(cfg: &LsConfig, w: &mut dyn Write, stop: &AtomicBool) -> Result<u64, RunError> {
    // The count is for a listing that goes elsewhere (a file, a pipe):
    // when stdout is a terminal too, the lines themselves show progress,
    // and a count drawn between them would be glued into them.
    let show = !cfg.quiet && io::stderr().is_terminal() && !io::stdout().is_terminal();
    let mut out = Out {
        w,
        json: cfg.json,
        n: 0,
        progress: show.then(Instant::now),
        closed: false,
    };
    let p = cfg.path.as_str();
    let r = if let Some(loc) = crate::store::parse(p) {
        let loc = loc.map_err(RunError::Other)?;
        s3(cfg, &loc, &mut out, stop)
    } else if crate::fetch::url::is_http(p) {
        list_api(cfg, &mut out, stop)
    } else if let Some(s) = crate::fetch::url::scheme(p) {
        Err(RunError::Other(format!(
            "{p}: {}",
            crate::fetch::url::unsupported(s)
        )))
    } else {
        local(Path::new(p), p, cfg.recursive, &mut out)
    };
    if show && out.n >= 1024 {
        eprintln!("\rbulkget: listed {}", out.n);
    }
    match out.w.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => out.closed = true,
        Err(e) => return Err(RunError::Other(format!("cannot write the listing: {e}"))),
        Ok(()) => {}
    }
    if out.closed {
        return Ok(out.n);
    }
    r.map(|()| out.n)
}

fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(e.to_string()))
}

fn list_api(cfg: &LsConfig, out: &mut Out<'_>, stop: &AtomicBool) -> Result<(), RunError> {
    let ep = Endpoint::parse(&cfg.path)?;
    let net = Net::new(cfg.net.clone())?;
    let base = ep.url_of("");
    runtime()?.block_on(async {
        let mut conn = None;
        let mut marker: Option<String> = None;
        loop {
            let page = crate::listing::fetch_page(
                &net,
                &cfg.policy,
                stop,
                &ep,
                &mut conn,
                marker.as_deref(),
            )
            .await?;
            let mut url = Vec::new();
            for n in &page.names {
                url.clear();
                url.extend_from_slice(base.as_bytes());
                url.extend_from_slice(b"/get/");
                crate::names::push_url_path(&mut url, n);
                out.entry(&url, None, None, None)?;
            }
            match page.next.filter(|m| !m.is_empty()) {
                // A server that hands back the marker it was given would
                // page forever; mirror finds longer loops, ls this one.
                Some(m) if marker.as_ref() == Some(&m) => {
                    return Err(RunError::ListLoop {
                        url: base.clone(),
                        marker: m,
                    });
                }
                Some(m) => marker = Some(m),
                None => return Ok(()),
            }
        }
    })
}

fn s3(
    cfg: &LsConfig,
    loc: &crate::store::Location,
    out: &mut Out<'_>,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let store = crate::store::from_env(loc, &cfg.store_opts)?;
    let net = Net::new(cfg.net.clone())?;
    let scheme = loc.kind.scheme();
    runtime()?.block_on(async {
        let mut conn = None;
        let mut token: Option<String> = None;
        loop {
            let url = store.list_url(&loc.prefix, None, token.as_deref(), !cfg.recursive);
            let page =
                crate::store::page(&net, &cfg.policy, stop, &mut conn, &url, store.kind()).await?;
            let b = &loc.bucket;
            for p in &page.prefixes {
                out.entry(format!("{scheme}://{b}/{p}").as_bytes(), None, None, None)?;
            }
            for o in page.objects {
                let mtime = o.modified.map(|m| match m.split_once('.') {
                    Some((s, _)) => format!("{s}Z"), // whole seconds, as elsewhere
                    None => m,
                });
                let path = format!("{scheme}://{b}/{}", o.key);
                out.entry(path.as_bytes(), Some(o.size), mtime, o.etag)?;
            }
            for k in &page.unreadable {
                eprintln!("bulkget: a key is not UTF-8 once decoded: {k}");
            }
            if !(page.truncated && page.next.is_some()) {
                return Ok(());
            }
            token = page.next;
        }
    })
}

fn local(root: &Path, shown: &str, recursive: bool, out: &mut Out<'_>) -> Result<(), RunError> {
    let cannot =
        |p: &Path, e: io::Error| RunError::Other(format!("cannot list {}: {e}", p.display()));
    let m = std::fs::symlink_metadata(root).map_err(|e| cannot(root, e))?;
    if !m.is_dir() {
        let mtime = m.modified().ok().map(rfc3339);
        return out.entry(shown.as_bytes(), Some(m.len()), mtime, None);
    }
    let base = shown.trim_end_matches('/');
    // Depth first, each directory in name order; a stack of directories
    // still to read (never more than the tree is deep, times its width).
    // Paths are bytes: names are written as the file system has them.
    let mut stack = vec![(root.to_path_buf(), base.as_bytes().to_vec())];
    while let Some((dir, shown)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| cannot(&dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| cannot(&dir, e))?;
        names.sort_by_key(|e| e.file_name());
        if recursive && names.is_empty() && dir != root {
            out.entry(&[&shown[..], b"/"].concat(), None, None, None)?;
        }
        let mut subdirs = Vec::new();
        for e in names {
            let name = e.file_name();
            let path = [&shown[..], b"/", name.as_bytes()].concat();
            let m = e.metadata().map_err(|err| cannot(&e.path(), err))?;
            let mtime = m.modified().ok().map(rfc3339);
            if m.is_dir() {
                if recursive {
                    subdirs.push((e.path(), path));
                } else {
                    out.entry(&[&path[..], b"/"].concat(), None, mtime, None)?;
                }
            } else {
                out.entry(&path, Some(m.len()), mtime, None)?;
            }
        }
        // Popped in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
