//! `get -i LIST DIR --queue redis://HOST:PORT/JOB` and `mirror
//! s3://…|az://…|gs://… DEST --queue …`: this process' part of a URL list
//! or a store's listing shared through Redis Streams
//! ([`crate::queue::job`] runs it). A list's slices of up to 1 000 lines
//! are the job's pages (the cursor is a byte offset in the list, so every
//! machine needs the same file); a store's listing pages are, each object
//! a JSON record of its key, size and checksums (the cursor is the key or
//! marker to list after, with the store's continuation token). Each file
//! is fetched whole (no `--split` in a shared job: a page is acknowledged
//! only once each of its files has landed).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::input::{self, Job};
use super::{GetConfig, GetPlan, dest_err};
use crate::ctx::RunCtx;
use crate::error::RunError;
use crate::fetch::Conn;
use crate::fetch::http1::Method;
use crate::fetch::net::Net;
use crate::job::Object;
use crate::journal::{self, Ledger, Tracker};
use crate::pipeline::{Batch, Shared};
use crate::progress::{Counters, Display, Outcome};
use crate::queue::job::{self, Entries, Part, QueueConfig, Source};
use crate::store::{Location, Store};

/// One object of a store's listing, as a shared job's page holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    /// The key (absent: `u`, a key that could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default)]
    s: u64,
    /// MD5 (hex) and CRC32C, where the listing gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
}

/// What a shared store job's workers need to turn a record into a job.
pub(super) struct SharedStore {
    loc: Location,
    /// `--checksum`.
    checksum: bool,
}

impl GetPlan {
    /// A store job's record as a job, or the name and why it is none.
    fn record_job(&self, ss: &SharedStore, line: &str) -> Result<Job, (String, String)> {
        let store = self.store.as_ref().expect("a store job has its store");
        let scheme = ss.loc.kind.scheme();
        let r: Record = serde_json::from_str(line).map_err(|e| {
            (
                line.to_string(),
                format!("a page record that is not one: {e}"),
            )
        })?;
        let key = match (r.k, r.u) {
            (Some(k), _) => k,
            (None, Some(u)) => {
                return Err((
                    format!("key {u}"),
                    "the key is not UTF-8 once decoded".to_string(),
                ));
            }
            (None, None) => return Err((line.to_string(), "a record with no key".into())),
        };
        let shown = format!("{scheme}://{}/{key}", ss.loc.bucket);
        let name = key.strip_prefix(&ss.loc.prefix).unwrap_or(&key);
        if let Err(e) = crate::names::check(name) {
            return Err((
                format!("key {key:?}"),
                format!("the key cannot be a file name here: {e}"),
            ));
        }
        let md5 =
            r.m.as_deref()
                .and_then(crate::store::s3page::etag_md5)
                .filter(|_| ss.checksum);
        Ok(Job {
            line: 0,
            url: store.object_url(Method::Get, &key),
            name: name.to_string(),
            sha256: None,
            object: Some(Box::new(Object {
                shown,
                size: Some(r.s),
                crc32c: r.c.filter(|_| ss.checksum && md5.is_none()),
                md5,
                sign: store.signs_in_headers(),
            })),
        })
    }
}

impl Entries for GetPlan {
    fn entries(&self, lines: Vec<String>) -> (Vec<Job>, Vec<(String, String)>) {
        let (mut jobs, mut bad) = (Vec::with_capacity(lines.len()), Vec::new());
        if let Some(ss) = &self.shared_store {
            for line in lines {
                match self.record_job(ss, &line) {
                    Ok(j) => jobs.push(j),
                    Err(b) => bad.push(b),
                }
            }
            return (jobs, bad);
        }
        for line in lines {
            match input::parse_line(0, &line) {
                Ok(Some(j)) if crate::store::Kind::of_url(&j.url).is_some() => bad.push((
                    line,
                    "object-store URLs are not shared by --queue yet: list http(s) URLs".into(),
                )),
                Ok(Some(j)) => jobs.push(j),
                Ok(None) => {} // the lister passes no blank or comment line
                Err(why) => bad.push((line, why)),
            }
        }
        (jobs, bad)
    }

    fn name_url(&self, line: &str) -> String {
        if let Some(ss) = &self.shared_store {
            let key = serde_json::from_str::<Record>(line)
                .ok()
                .and_then(|r| r.k.or(r.u))
                .unwrap_or_else(|| line.to_string());
            return format!("{}://{}/{key}", ss.loc.kind.scheme(), ss.loc.bucket);
        }
        line.split_whitespace().next().unwrap_or(line).to_string()
    }
}

/// A store's listing under a prefix, a page at a time.
struct StoreList {
    store: Arc<Store>,
    loc: Location,
    net: Net,
    policy: crate::fetch::RetryPolicy,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
}

/// Where a store's listing goes on: after this key or marker, with the
/// store's continuation token.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    after: Option<String>,
    token: Option<String>,
}

impl Source for StoreList {
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError> {
        let at: Cursor = match cursor {
            None => Cursor {
                after: None,
                token: None,
            },
            Some(c) => serde_json::from_str(c).map_err(|e| RunError::List {
                url: self.shown(),
                why: format!("the job's cursor {c:?} is not this listing's: {e}"),
            })?,
        };
        let url = self.store.list_url(
            &self.loc.prefix,
            at.after.as_deref(),
            at.token.as_deref(),
            false,
        );
        let page = self.rt.block_on(crate::store::page(
            &self.net,
            &self.policy,
            &self.stop,
            &mut self.conn,
            &url,
            self.store.kind(),
        ))?;
        let resume = self
            .store
            .resume_after(&page, page.objects.last().map(|o| o.key.as_str()));
        let mut names = Vec::with_capacity(page.objects.len() + page.unreadable.len());
        for u in &page.unreadable {
            let r = Record {
                k: None,
                s: 0,
                m: None,
                c: None,
                u: Some(u.clone()),
            };
            names.push(serde_json::to_string(&r).expect("json"));
        }
        for o in &page.objects {
            let r = Record {
                k: Some(o.key.clone()),
                s: o.size,
                m: o.md5.map(|m| crate::units::hex(&m)),
                c: o.crc32c,
                u: None,
            };
            names.push(serde_json::to_string(&r).expect("json"));
        }
        let next = (page.truncated && page.next.is_some()).then(|| {
            let c = Cursor {
                after: resume.or(at.after),
                token: page.next,
            };
            serde_json::to_string(&c).expect("json")
        });
        Ok((names, next))
    }

    fn shown(&self) -> String {
        self.loc.to_string()
    }
}

/// A URL list read a slice at a time from a byte offset.
struct UrlList {
    path: PathBuf,
    file: BufReader<File>,
    pos: u64,
    page: usize,
}

impl Source for UrlList {
    fn page(&mut self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), RunError> {
        let err = |why: String| RunError::List {
            url: self.path.display().to_string(),
            why,
        };
        let at = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| err(format!("the job's cursor {c:?} is not a byte offset")))?,
        };
        if at != self.pos {
            self.file
                .seek(SeekFrom::Start(at))
                .map_err(|e| err(e.to_string()))?;
            self.pos = at;
        }
        let (mut lines, mut buf) = (Vec::new(), Vec::new());
        while lines.len() < self.page {
            buf.clear();
            let n = self
                .file
                .read_until(b'\n', &mut buf)
                .map_err(|e| err(e.to_string()))?;
            if n == 0 {
                return Ok((lines, None));
            }
            self.pos += n as u64;
            let line = String::from_utf8_lossy(&buf);
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                lines.push(t.to_string());
            }
        }
        Ok((lines, Some(self.pos.to_string())))
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

/// Runs this process' part of the shared job `qc` over `cfg.list`.
pub(super) fn run_with(
    cfg: &GetConfig,
    qc: &QueueConfig,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    let what = match (&cfg.store, &cfg.list) {
        (Some(loc), _) => loc.to_string(),
        (None, Some(p)) if p.as_os_str() != "-" && cfg.urls.is_empty() => {
            let size = std::fs::metadata(p)
                .map_err(|e| RunError::Other(format!("{}: {e}", p.display())))?
                .len();
            // What the job is of: every machine has its own copy of the list.
            let name = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            format!("the URL list {name} ({size} bytes)")
        }
        _ => {
            return Err(RunError::Other(
                "--queue shares a URL list given as a file (-i FILE, the same on every machine), not URLs on the command line or standard input".into(),
            ));
        }
    };
    let store = match &cfg.store {
        Some(loc) => Some((
            Arc::new(crate::store::from_env(loc, &cfg.store_opts)?),
            loc.clone(),
        )),
        None => None,
    };
    let quiet = cfg.display == Display::Quiet;
    let q = match job::join(qc, &what, quiet)? {
        Ok(q) => q,
        Err(done) => return Ok(done),
    };
    let net = Net::new(cfg.net.clone())?;
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|e| dest_err(&state_dir, e))?;
    let (sink, tar) = super::sinks(cfg)?;
    let flush = super::flush(cfg, &state_dir)?;
    let (tx, rx) = async_channel::bounded::<Batch<Job>>(8);
    let sh = Arc::new(Shared {
        ctx: RunCtx::new(
            net,
            cfg.max_redirs,
            Ledger::new(&state_dir),
            Arc::new(Counters::default()),
            cfg.policy.clone(),
            // the pipeline's own stop: a signal stops taking pages only
            Arc::new(AtomicBool::new(false)),
            quiet,
        ),
        plan: GetPlan {
            sink: sink.no_replace(),
            tar,
            null: cfg.null_sink,
            check_existing: true,
            trust_before: None,
            parts_exist: false,
            parts_dir: cfg.dest.join(".bulkget").join("parts"),
            split: 1,
            split_size: cfg.split_size.max(1),
            started: journal::coarse_now(),
            aside: None,
            store: store.as_ref().map(|(s, _)| s.clone()),
            shared: true,
            shared_store: store.as_ref().map(|(_, loc)| SharedStore {
                loc: loc.clone(),
                checksum: cfg.store_opts.checksum,
            }),
        },
        rx,
        tracker: Some(Tracker::per_page_tracker()),
        limits: cfg.limits,
    });
    let part = Part {
        dest: cfg.dest.display().to_string(),
        flush,
        threads: cfg.threads,
        batch: 500,
        display: cfg.display,
    };
    let page = qc.page.max(1);
    let (policy, stop2) = (cfg.policy.clone(), stop.clone());
    let (list, net_cfg) = (cfg.list.clone(), cfg.net.clone());
    let source = move || -> Result<Box<dyn Source>, RunError> {
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RunError::Other(e.to_string()))
        };
        if let Some((store, loc)) = store {
            return Ok(Box::new(StoreList {
                store,
                loc,
                // the lister's own (its connection, its resolver's cache)
                net: Net::new(net_cfg)?,
                policy,
                stop: stop2,
                rt: rt()?,
                conn: None,
            }));
        }
        let path = list.expect("a list job has its list");
        let file = File::open(&path).map_err(|e| RunError::List {
            url: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(Box::new(UrlList {
            path,
            file: BufReader::new(file),
            pos: 0,
            page,
        }))
    };
    job::run(q, sh, qc, part, tx, source, stop)
}
