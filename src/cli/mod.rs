//! The `bulkget` command line: clap's parse of the arguments, and each
//! command's call into the library. `src/main.rs` and the Python package's
//! console script both run [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::fetch::RetryPolicy;
use crate::fetch::net::NetConfig;
use crate::fetch::tls::TlsOptions;
use crate::get::{self, GetConfig};
use crate::mirror::{self, MirrorConfig, SinkKind};
use crate::pipeline::Limits;
use crate::progress::{Display, Outcome};
use crate::server::dirstore::DirStore;
use crate::server::faults::Faults;
use crate::server::store::{Store, SyntheticStore};
use crate::server::{self, ServeConfig};
use crate::units::parse_bytes;

// The command line of ls, cp, exists and stat.
mod paths;
// `bulkget status`: a shared job's figures.
mod status;

#[derive(Parser)]
#[command(
    name = "bulkget",
    version,
    about = "Download enormous numbers of files over HTTP, fast, losing none"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a directory, or synthetic files, over the seed's list/get API.
    Serve(ServeArgs),
    /// Download every file a server lists (GET URL/list, GET URL/get/NAME) into DEST.
    Mirror(MirrorArgs),
    /// Download URLs (given or from a list); large files over several Range connections.
    Get(GetArgs),
    /// List a local directory, a list-API server (its base URL), s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or gs://BUCKET[/PREFIX]: one full path a line.
    Ls(paths::LsArgs),
    /// Copy a file or a tree between local paths and s3://, az://, gs:// (any two), or from http(s):// to either, in parallel; a rerun copies only what is missing or changed.
    Cp(paths::CpArgs),
    /// Whether each path exists (local, http(s) URL, s3://BUCKET/KEY, az://CONTAINER/BLOB, gs://BUCKET/OBJECT): PATH<TAB>true|false, in input order.
    Exists(paths::ProbeArgs),
    /// Size, modification time and ETag of each path: PATH<TAB>size<TAB>mtime<TAB>etag, in input order.
    Stat(paths::ProbeArgs),
    /// The seed's experiment: serve N synthetic files locally, mirror them, verify, report.
    Bench(BenchArgs),
    /// A shared job's progress (mirror --queue): listed, landed, failed, queued, workers; --failures, --forget.
    Status(status::StatusArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Files to serve and download.
    #[arg(long, default_value_t = 100_000)]
    files: u64,
    /// Size of each file (e.g. 100, 64k).
    #[arg(long, default_value = "100", value_parser = parse_bytes)]
    size: u64,
    /// dir: write and verify every file; tar: the same into tar shards; null: fetch and check lengths only.
    #[arg(long, default_value = "dir", value_parser = ["dir", "tar", "null"])]
    sink: String,
    /// At most this many connections in all [default: 2048, or a quarter of the open-file limit].
    #[arg(long, short = 'c')]
    connections: Option<u32>,
    /// At most this many requests in flight per connection.
    #[arg(long, default_value_t = crate::pipeline::DEFAULT_DEPTH)]
    pipeline: u32,
    /// Parent of the fresh download directory [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the downloaded files (they are deleted by default).
    #[arg(long)]
    keep: bool,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// No live progress.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// sync (as mirror does by default) or none: to measure what syncing costs.
    #[arg(long, value_name = "MODE", default_value = "sync", value_parser = ["sync", "none"])]
    durability: String,
}

fn bench(a: BenchArgs) -> Result<u8> {
    let cfg = crate::bench::BenchConfig {
        files: a.files,
        size: a.size,
        sink: sink_kind(&a.sink, 1 << 30),
        dir: a.dir,
        keep: a.keep,
        display: if a.quiet {
            Display::Quiet
        } else {
            Display::Auto
        },
        limits: Limits {
            conns: a
                .connections
                .unwrap_or_else(crate::pipeline::default_max_conns)
                .max(1),
            depth: a.pipeline.max(1),
            ..Limits::default()
        },
        durability: if a.durability == "none" {
            crate::journal::Durability::None
        } else {
            crate::journal::Durability::Sync
        },
    };
    let (report, out) = crate::bench::run(&cfg)?;
    if let Some(e) = &out.error {
        eprintln!("bulkget: {e}");
    }
    println!("{}", report.render(""));
    if let Some(p) = &a.stats_json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(report.exit_code)
}

#[derive(Args)]
pub(crate) struct MirrorArgs {
    /// Base URL of the server (http(s)://HOST[:PORT][/PATH]), or s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or gs://BUCKET[/PREFIX] for every object under it.
    url: String,
    /// Destination directory (created if needed; DEST/.bulkget holds the journal).
    dest: PathBuf,
    /// Where files go: dir (a tree in DEST), tar (shards in DEST, no inode per file) or null (fetch and check lengths, keep nothing).
    #[arg(long, default_value = "dir", value_parser = ["dir", "tar", "null"])]
    sink: String,
    /// With --sink tar: start a new shard past this size (e.g. 1G).
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    shard_size: u64,
    /// s3://: check each object's MD5 against its ETag where the ETag is one (single-part, not SSE-KMS/SSE-C); az://: against its Content-MD5 where it has one; gs://: against its md5Hash, or its CRC32C where it has none (composite objects). Those objects come in one stream.
    #[arg(long)]
    checksum: bool,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// A job shared by many processes (`mirror --queue`).
#[derive(Args)]
#[command(next_help_heading = "One job over many processes (Redis Streams)")]
pub(crate) struct QueueArgs {
    /// Share this job (a mirror, or get -i FILE) with every process given the same: redis://[:PASSWORD@]HOST[:PORT]/[DB/]JOB, rediss://… (TLS; --cacert trusts a CA for it), unix:///SOCKET#JOB, or JOB alone with the server in REDIS_URL. One process at a time lists; all fetch; each exits when the whole job is done, with its exit status.
    #[arg(long, value_name = "ADDRESS")]
    queue: Option<String>,
    /// This process' name in the job (its consumer name) [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME", requires = "queue")]
    worker: Option<String>,
    /// Seconds a page (or the listing) may go without word from the process that holds it before another takes it over.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, requires = "queue")]
    lease: f64,
    /// Times one page is handed out before it goes to the dead-letter stream (its files to the job's failures).
    #[arg(long, value_name = "N", default_value_t = 5, requires = "queue", value_parser = clap::value_parser!(u64).range(1..))]
    tries: u64,
    /// Pages (of up to 1000 names) waiting in Redis before the lister pauses.
    #[arg(long, value_name = "PAGES", default_value_t = 1024, requires = "queue", value_parser = clap::value_parser!(u64).range(1..))]
    ahead: u64,
}

impl QueueArgs {
    /// No shared job (a command that runs `mirror` on its own behalf).
    pub(crate) fn none() -> QueueArgs {
        QueueArgs {
            queue: None,
            worker: None,
            lease: 10.0,
            tries: 5,
            ahead: 1024,
        }
    }

    /// The shared job's settings, if one is asked for.
    fn config(&self, f: &FetchArgs) -> Result<Option<crate::mirror::QueueConfig>> {
        let Some(spec) = &self.queue else {
            return Ok(None);
        };
        let env = std::env::var("REDIS_URL").ok();
        let mut addr = crate::queue::Address::parse(spec, env.as_deref())
            .map_err(|e| CliError::Usage(e.to_string()))?;
        addr.trust(&f.cacert)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if self.lease.is_nan() || self.lease < 0.1 || self.lease > 1e6 {
            bail!("--lease must be at least 0.1 seconds");
        }
        let mut qc = crate::mirror::QueueConfig::new(addr);
        if let Some(w) = &self.worker {
            if w.is_empty() || w.contains(char::is_whitespace) {
                bail!("--worker must be a name without spaces");
            }
            qc.worker = w.clone();
        }
        qc.lease = Duration::from_secs_f64(self.lease);
        qc.tries = self.tries;
        qc.ahead = self.ahead;
        qc.patience = Duration::from_secs_f64(f.connect_timeout);
        Ok(Some(qc))
    }
}

/// How to fetch (mirror and get).
#[derive(Args)]
pub(crate) struct FetchArgs {
    /// s3://: the S3-compatible endpoint (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS itself); az://: the blob endpoint with the account, as http://127.0.0.1:10000/devstoreaccount1 (else the connection string's, or ACCOUNT.blob.core.windows.net); gs://: the JSON API's endpoint, as an emulator's http://127.0.0.1:4443 (else STORAGE_EMULATOR_HOST).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// s3://, az://, gs://: send requests unsigned (a public bucket or container).
    #[arg(long)]
    no_sign_request: bool,
    /// At most this many connections in all; how many are used is found as the run goes [default: 2048, or a quarter of the open-file limit].
    #[arg(long, short = 'c')]
    connections: Option<u32>,
    /// At most this many connections to one host (scheme, host, port), on all threads together (a listing keeps one more of its own).
    #[arg(long, default_value_t = crate::pipeline::DEFAULT_PER_HOST, value_parser = clap::value_parser!(u32).range(1..))]
    max_per_host: u32,
    /// At most this many requests in flight per connection (HTTP/1.1 pipelining or HTTP/2 streams; 1 turns pipelining off).
    #[arg(long, default_value_t = crate::pipeline::DEFAULT_DEPTH, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Attempts after the first for connection errors, timeouts, 408, 429 and 5xx.
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Seconds without a byte on an open connection before it counts as failed (a stalled large download resumes where it stopped).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Seconds to set up a connection (DNS, TCP, proxy, TLS) before the attempt fails.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Also trust the CA certificates in this PEM file (repeatable); the platform's stay trusted.
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
    /// Do not check server certificates (prints a warning).
    #[arg(long, short = 'k')]
    insecure: bool,
    /// Use this http:// proxy for every URL (overrides http_proxy, https_proxy, all_proxy; "" = none).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Speak HTTP/2 to http:// servers without asking (h2c).
    #[arg(long)]
    http2_prior_knowledge: bool,
    /// Offer only HTTP/1.1 to https:// servers (no HTTP/2 by ALPN).
    #[arg(long = "http1.1")]
    http1_1: bool,
    /// Redirects followed for one file before it fails.
    #[arg(long, default_value_t = 10)]
    max_redirs: u32,
    /// No progress and no per-file error lines (the summary is still printed).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Threads (each with its own runtime) that drive the connections [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Keep the journal and failure ledger here instead of DEST/.bulkget.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Write the final figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Write the figures so far to FILE, one JSON object a second (as --stats-json's), for a program that shows them.
    #[arg(long, value_name = "FILE")]
    progress_json: Option<PathBuf>,
    /// sync: what is reported as landed survives a power cut (one syncfs a
    /// second, before the journal moves on); none: no syncs, for scratch
    /// runs (after a power cut a rerun may keep empty or torn files).
    #[arg(long, value_name = "MODE", default_value = "sync", value_parser = ["sync", "none"])]
    durability: String,
}

impl FetchArgs {
    fn durability(&self) -> crate::journal::Durability {
        match self.durability.as_str() {
            "none" => crate::journal::Durability::None,
            _ => crate::journal::Durability::Sync,
        }
    }
}

/// The settings both fetching commands share.
struct Common {
    limits: Limits,
    policy: RetryPolicy,
    net: NetConfig,
    display: Display,
    threads: usize,
}

impl FetchArgs {
    /// How to reach object stores. With `ca_bundle`, `AWS_CA_BUNDLE` (the
    /// AWS CLI's extra CA bundle) joins the trusted roots (not for URL
    /// lists, where it would apply to every host of a mixed list).
    fn store_opts(
        &self,
        net: &mut crate::fetch::net::NetConfig,
        ca_bundle: bool,
    ) -> crate::store::StoreOpts {
        if let Some(p) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| ca_bundle && !p.is_empty()) {
            net.tls.cacert.push(p.into());
        }
        crate::store::StoreOpts {
            endpoint_url: self.endpoint_url.clone(),
            no_sign: self.no_sign_request,
            checksum: false,
            write: false,
        }
    }

    fn common(&self) -> Result<Common> {
        if self.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        for (flag, v) in [
            ("--timeout", self.timeout),
            ("--connect-timeout", self.connect_timeout),
        ] {
            if v.is_nan() || v <= 0.0 || v > 1e9 {
                bail!("{flag} must be a positive number of seconds");
            }
        }
        if self.http2_prior_knowledge && self.http1_1 {
            bail!("--http2-prior-knowledge and --http1.1 contradict each other");
        }
        if let Some(p) = &self.progress_json {
            let f = std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?;
            crate::progress::feed_to(Some(f));
        }
        Ok(Common {
            limits: Limits {
                conns: self
                    .connections
                    .unwrap_or_else(crate::pipeline::default_max_conns),
                per_host: self.max_per_host,
                depth: self.pipeline,
            },
            policy: RetryPolicy {
                retries: self.retries,
                ..RetryPolicy::default()
            },
            net: NetConfig {
                connect_timeout: Duration::from_secs_f64(self.connect_timeout),
                timeout: Duration::from_secs_f64(self.timeout),
                tls: TlsOptions {
                    cacert: self.cacert.clone(),
                    insecure: self.insecure,
                    http1_only: self.http1_1,
                },
                proxy: self.proxy.clone(),
                h2_prior_knowledge: self.http2_prior_knowledge,
            },
            display: if self.quiet {
                Display::Quiet
            } else {
                Display::Auto
            },
            threads: self.threads.unwrap_or(0) as usize,
        })
    }

    /// Prints the outcome, writes --stats-json, gives the exit code.
    fn finish(&self, out: Outcome, summary: String) -> Result<u8> {
        let code = out.exit_code();
        self.conclude(&out.stats, out.error, code, Some(summary))
    }

    /// The end of every command that runs: `--stats-json` written, then
    /// `error` and `summary` said on stderr and `code` returned; run by a
    /// library caller ([`run`] with a stop flag), nothing is said and the
    /// error that stopped the run is returned as one.
    fn conclude(
        &self,
        stats: &crate::progress::Stats,
        error: Option<crate::error::RunError>,
        code: u8,
        summary: Option<String>,
    ) -> Result<u8> {
        if let Some(p) = &self.stats_json {
            std::fs::write(p, serde_json::to_vec_pretty(stats)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if embedded() {
            return match error {
                Some(e) => Err(e.into()),
                None => Ok(code),
            };
        }
        if let Some(e) = &error {
            eprintln!("bulkget: {e}");
        }
        if let Some(s) = summary {
            eprintln!("{s}");
        }
        Ok(code)
    }
}

fn sink_kind(name: &str, shard_size: u64) -> SinkKind {
    match name {
        "null" => SinkKind::Null,
        "tar" => SinkKind::Tar(shard_size),
        _ => SinkKind::Dir,
    }
}

pub(crate) fn mirror(a: MirrorArgs) -> Result<u8> {
    if let Some(loc) = crate::store::parse(&a.url) {
        return mirror_store(a, loc.map_err(CliError::Usage)?);
    }
    let mut cfg = MirrorConfig::new(&a.url, &a.dest);
    let c = a.fetch.common()?;
    cfg.limits = c.limits;
    (cfg.policy, cfg.net, cfg.display, cfg.threads) = (c.policy, c.net, c.display, c.threads);
    cfg.max_redirs = a.fetch.max_redirs;
    cfg.sink = sink_kind(&a.sink, a.shard_size);
    cfg.state_dir = a.fetch.state_dir.clone();
    cfg.durability = a.fetch.durability();
    cfg.queue = a.queue.config(&a.fetch)?;
    let out = mirror::run(&cfg, stop_flag())?;
    let summary = mirror::summary(&out, &cfg);
    a.fetch.finish(out, summary)
}

/// A get run into `dest` with the fetch flags.
fn get_config(dest: &Path, f: &FetchArgs) -> Result<GetConfig> {
    let mut cfg = GetConfig::new(dest);
    let c = f.common()?;
    cfg.limits = c.limits;
    (cfg.policy, cfg.net, cfg.display, cfg.threads) = (c.policy, c.net, c.display, c.threads);
    cfg.max_redirs = f.max_redirs;
    cfg.state_dir = f.state_dir.clone();
    cfg.durability = f.durability();
    Ok(cfg)
}

/// `mirror s3://…`: every object under the prefix, by the get machinery.
fn mirror_store(a: MirrorArgs, loc: crate::store::Location) -> Result<u8> {
    let mut cfg = get_config(&a.dest, &a.fetch)?;
    cfg.null_sink = a.sink == "null";
    cfg.tar_shard = (a.sink == "tar").then_some(a.shard_size);
    cfg.store_opts = a.fetch.store_opts(&mut cfg.net, true);
    cfg.store_opts.checksum = a.checksum;
    cfg.store = Some(loc);
    cfg.queue = a.queue.config(&a.fetch)?;
    let out = get::run(&cfg, stop_flag())?;
    let summary = get::summary(&out, &cfg);
    a.fetch.finish(out, summary)
}

#[derive(Args)]
pub(crate) struct GetArgs {
    /// URLs to download (http://, https://, s3://BUCKET/KEY, az://CONTAINER/BLOB or gs://BUCKET/OBJECT); each lands under its last path segment.
    urls: Vec<String>,
    /// Read URLs from FILE ('-' = standard input): lines of URL [NAME] [sha256=HEX]; '#' comments.
    #[arg(long = "input-file", short = 'i', value_name = "FILE")]
    input: Option<PathBuf>,
    /// Directory to download into.
    #[arg(
        long = "output-dir",
        short = 'o',
        default_value = ".",
        value_name = "DIR"
    )]
    dir: PathBuf,
    /// Connections for one large file.
    #[arg(long, default_value_t = get::DEFAULT_SPLIT as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    split: u64,
    /// Files larger than this are split into chunks of this size (e.g. 8M).
    #[arg(long, default_value = "8M", value_parser = parse_bytes)]
    split_size: u64,
    /// Where files go: dir (under -o) or null (fetch and check lengths, keep nothing; for measuring).
    #[arg(long, default_value = "dir", value_parser = ["dir", "null"])]
    sink: String,
    /// Expected sha256 of the single URL given: sha256=HEX.
    #[arg(long, value_name = "sha256=HEX")]
    checksum: Option<String>,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub(crate) fn get(a: GetArgs) -> Result<u8> {
    if a.urls.is_empty() && a.input.is_none() {
        bail!("give URLs, or a list with -i FILE");
    }
    if a.split_size == 0 {
        bail!("--split-size must be at least 1 byte");
    }
    let mut cfg = get_config(&a.dir, &a.fetch)?;
    cfg.urls = a.urls.clone();
    cfg.list = a.input.clone();
    cfg.split = a.split as usize;
    cfg.split_size = a.split_size;
    cfg.checksum = a.checksum.clone();
    cfg.null_sink = a.sink == "null";
    cfg.queue = a.queue.config(&a.fetch)?;
    if cfg.queue.is_some()
        && (!a.urls.is_empty() || a.input.as_deref().is_none_or(|p| p.as_os_str() == "-"))
    {
        bail!("--queue shares a URL list given as a file (-i FILE, the same on every machine)");
    }
    let s3_urls = cfg.urls.iter().any(|u| crate::store::is_s3(u));
    cfg.store_opts = a
        .fetch
        .store_opts(&mut cfg.net, s3_urls && cfg.list.is_none());
    let out = get::run(&cfg, stop_flag())?;
    let summary = get::summary(&out, &cfg);
    a.fetch.finish(out, summary)
}

#[derive(Args)]
struct ServeArgs {
    /// Directory to serve (recursively; names are relative paths with '/').
    dir: Option<PathBuf>,
    /// Serve N synthetic files instead of a directory (no disk, no per-file memory).
    #[arg(long, value_name = "N", conflicts_with = "dir")]
    synthetic: Option<u64>,
    /// Size of each synthetic file (e.g. 100, 64k, 1G).
    #[arg(long, default_value = "100", value_parser = parse_bytes, requires = "synthetic")]
    size: u64,
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Names per /list page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    page_size: u64,
    /// Worker threads [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Serve https with this certificate chain (PEM); HTTP/2 and HTTP/1.1 by ALPN.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Fault injection (for testing clients). Fractions are of /get requests, 0 to 1.
#[derive(Args)]
#[command(next_help_heading = "Fault injection")]
struct FaultArgs {
    /// Fraction of /get answered 503 Service Unavailable with Retry-After.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    fail_503: f64,
    /// Fraction of /get answered 429 Too Many Requests with Retry-After.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    fail_429: f64,
    /// Fraction of /get answered 500 Internal Server Error (no Retry-After).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    fail_500: f64,
    /// Fraction of /get whose connection is reset (TCP RST) halfway through the body.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    reset: f64,
    /// Fraction of /get whose body stops halfway, short of Content-Length, and the connection closes.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    truncate: f64,
    /// Fraction of /get answered only after a second.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    slow: f64,
    /// Serve /get at most R times a second; those above get 429 with Retry-After: 1.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    limit_rps: f64,
    /// At most K /get in progress at once; one more gets 503 at once.
    #[arg(long, default_value_t = 0, value_name = "K")]
    limit_inflight: u64,
    /// Serve at most N /get at once, each busy for --latency; the rest queue (a server with N workers).
    #[arg(long, default_value_t = 0, value_name = "N")]
    workers: u64,
    /// Answer every /get 503 with Retry-After for this many seconds after the start (an outage).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    outage: u64,
    /// Seconds sent in Retry-After with injected 503/429.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    retry_after: u64,
    /// Latency added before answering every request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency: u64,
    /// Bandwidth cap per connection in bytes per second (e.g. 1M); 0 = none.
    #[arg(long, default_value = "0", value_parser = parse_bytes, value_name = "BYTES")]
    rate_limit: u64,
    /// Turn Range support off: ignore Range headers and do not send Accept-Ranges.
    #[arg(long)]
    no_ranges: bool,
    /// A name meets at most N of the faults above that fail an attempt; later attempts succeed (0 = no bound).
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_faults: u32,
    /// Seed of the fault dice: the same seed and request order give the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl FaultArgs {
    fn faults(&self) -> Result<Faults> {
        for (name, v) in [
            ("--fail-503", self.fail_503),
            ("--fail-429", self.fail_429),
            ("--fail-500", self.fail_500),
            ("--reset", self.reset),
            ("--truncate", self.truncate),
            ("--slow", self.slow),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} takes a fraction from 0 to 1, not {v}");
            }
        }
        if self.fail_503 + self.fail_429 + self.fail_500 + self.reset + self.truncate + self.slow
            > 1.0
        {
            bail!("the fault fractions add up to more than 1");
        }
        Ok(Faults {
            fail_503: self.fail_503,
            fail_429: self.fail_429,
            fail_500: self.fail_500,
            reset: self.reset,
            truncate: self.truncate,
            slow: self.slow,
            retry_after: self.retry_after,
            limit_rps: self.limit_rps,
            limit_inflight: self.limit_inflight,
            workers: self.workers,
            outage: Duration::from_secs(self.outage),
            latency: Duration::from_millis(self.latency),
            rate_limit: self.rate_limit,
            no_ranges: self.no_ranges,
            max_faults: self.max_faults,
            seed: self.seed,
        })
    }
}

fn serve(a: ServeArgs) -> Result<u8> {
    let store: Arc<dyn Store> = match (&a.dir, a.synthetic) {
        (_, Some(n)) => Arc::new(SyntheticStore::new(n, a.size)),
        (Some(d), None) => {
            Arc::new(DirStore::new(d).with_context(|| format!("cannot serve {}", d.display()))?)
        }
        (None, None) => bail!("give a DIR to serve, or --synthetic N"),
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(server::tls::server_config(c, k).map_err(CliError::Usage)?),
        _ => None,
    };
    let cfg = ServeConfig {
        tls,
        page_size: a.page_size as usize,
        faults: a.faults.faults()?,
        threads: a.threads.unwrap_or(0) as usize,
    };
    server::serve_forever(&a.addr, store, cfg)
        .with_context(|| format!("cannot serve on {}", a.addr))?;
    Ok(0)
}

/// Says a panic (a bug) and stops the process at once, as a kill would:
/// caught by its task, a panic would leave the rest of the run waiting for
/// that task's work forever (seen: a core's controller panicked and the run
/// hung at 0 files/s). The journal keeps what landed; the same command
/// resumes.
pub fn abort_on_panic() {
    let said = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        said(info);
        eprintln!(
            "bulkget: internal error (a bug, the line above says where): stopping; what landed is kept, and the same command resumes"
        );
        std::process::abort();
    }));
}

thread_local! {
    /// The stop flag a caller of [`run`] gave, for the command it runs on
    /// this thread.
    static STOP: std::cell::RefCell<Option<Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// What stops the command running on this thread: its caller's flag, or
/// else Ctrl-C and SIGTERM (the first finishes what is in flight and saves
/// the journal, the second quits at once).
fn stop_flag() -> Arc<std::sync::atomic::AtomicBool> {
    STOP.with(|s| s.borrow().clone())
        .unwrap_or_else(crate::mirror::stop_on_signals)
}

/// Whether a library caller asked the command on this thread to stop.
fn stopping() -> bool {
    STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// Whether the command on this thread runs for a library caller (which
/// gave [`run`] its stop flag): errors are returned, nothing is printed.
fn embedded() -> bool {
    STOP.with(|s| s.borrow().is_some())
}

/// Runs the command line `args` (the program's name first) to its exit
/// status: 0 done, 1 some inputs failed, 2 it could not run. `stop`,
/// when given, stops it as Ctrl-C would (and no signal handler is set).
/// `--help` and `--version` print and return 0.
pub fn run<I, T>(args: I, stop: Option<Arc<std::sync::atomic::AtomicBool>>) -> Result<u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Ok(0);
        }
        Err(e) => return Err(CliError::Args(e)),
    };
    STOP.with(|s| *s.borrow_mut() = stop);
    let r = match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Mirror(a) => mirror(a),
        Cmd::Get(a) => get(a),
        Cmd::Ls(a) => paths::ls(a),
        Cmd::Cp(a) => paths::cp(a),
        Cmd::Exists(a) => paths::probe(a, crate::probe::Mode::Exists),
        Cmd::Stat(a) => paths::probe(a, crate::probe::Mode::Stat),
        Cmd::Bench(a) => bench(a),
        Cmd::Status(a) => status::status(a),
    };
    STOP.with(|s| *s.borrow_mut() = None);
    crate::progress::feed_to(None);
    r
}

/// The `bulkget` program: [`run`] with Ctrl-C as its stop, errors said on
/// stderr.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::pipeline::raise_fd_limit();
    ExitCode::from(exit_status(run(args, None)))
}

/// A command's exit status; its error, if any, said on stderr.
pub fn exit_status(r: Result<u8>) -> u8 {
    match r {
        Ok(code) => code,
        Err(CliError::Args(e)) => {
            let _ = e.print();
            e.exit_code() as u8
        }
        Err(e) => {
            eprintln!("bulkget: {e}");
            2
        }
    }
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line does not parse (clap's message, with the usage).
    #[error("{0}")]
    Args(clap::Error),
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] crate::error::RunError),
    /// What was being done, and the I/O error it met.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Returns a [`CliError::Usage`] made as `format!` makes a string.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::cli::CliError::Usage(format!($($t)*)))
    };
}
use bail;

/// Names what was being done when an I/O step failed.
trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| CliError::Io(what(), e))
    }
}
