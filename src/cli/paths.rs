//! The commands over paths of every kind: `ls`, `exists`, `stat` (the
//! command line only; the work is in `crate::ls` and `crate::probe`).

use std::path::PathBuf;

use super::{Context, Result, bail, embedded, stop_flag};
use clap::Args;

use super::FetchArgs;
use crate::store::{Kind, is_s3};

#[derive(Args)]
pub struct LsArgs {
    path: String,
    /// Everything under PATH, not one level.
    #[arg(long, short = 'r')]
    recursive: bool,
    /// One JSON object a line: path, size, mtime, etag (null where unknown).
    #[arg(long)]
    json: bool,
    /// Write the listing to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn ls(a: LsArgs) -> Result<u8> {
    let c = a.fetch.common()?;
    let mut cfg = crate::ls::LsConfig {
        path: a.path.clone(),
        recursive: a.recursive,
        json: a.json,
        net: c.net,
        policy: c.policy,
        store_opts: Default::default(),
        quiet: a.fetch.quiet,
    };
    cfg.store_opts = a.fetch.store_opts(&mut cfg.net, is_s3(&a.path));
    let stop = stop_flag();
    let sink: Box<dyn std::io::Write> = match &a.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(64 << 10, sink);
    crate::ls::run(&cfg, &mut out, &stop)?;
    Ok(0)
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Paths: local paths, http(s):// URLs, s3://BUCKET/KEY, az://CONTAINER/BLOB, gs://BUCKET/OBJECT.
    paths: Vec<String>,
    /// Read paths from FILE, one a line ('-' = standard input).
    #[arg(long = "input-file", short = 'i', value_name = "FILE")]
    input: Option<PathBuf>,
    /// One JSON object a line.
    #[arg(long)]
    json: bool,
    /// Also record the paths that could not be checked in FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    failures: Option<PathBuf>,
    /// Write the answers to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn probe(a: ProbeArgs, mode: crate::probe::Mode) -> Result<u8> {
    if a.paths.is_empty() && a.input.is_none() {
        bail!("give paths, or a list with -i FILE");
    }
    if a.fetch.state_dir.is_some() {
        bail!(
            "--state-dir does not apply here (there is no journal); --failures FILE keeps a record"
        );
    }
    let c = a.fetch.common()?;
    let mut cfg = crate::probe::ProbeConfig::new(mode);
    (cfg.limits, cfg.policy, cfg.net) = (c.limits, c.policy, c.net);
    (cfg.display, cfg.threads) = (c.display, c.threads);
    cfg.max_redirs = a.fetch.max_redirs;
    (cfg.paths, cfg.list) = (a.paths.clone(), a.input.clone());
    (cfg.json, cfg.failures) = (a.json, a.failures.clone());
    cfg.output = a.output.clone();
    let s3 = cfg.paths.iter().any(|u| is_s3(u));
    cfg.store_opts = a.fetch.store_opts(&mut cfg.net, s3 && cfg.list.is_none());
    let out = crate::probe::run(&cfg, stop_flag())?;
    let code = out.exit_code();
    let summary = (!a.fetch.quiet || out.tally.errors > 0).then(|| out.summary());
    a.fetch.conclude(&out.stats, out.error, code, summary)
}

#[derive(Args)]
pub struct CpArgs {
    /// A local file or directory, s3://BUCKET/KEY or s3://BUCKET/PREFIX (with -r), az://CONTAINER/BLOB or az://CONTAINER/PREFIX (with -r), gs:// likewise, an http(s):// URL, or a list-API server's base URL (with -r).
    src: String,
    /// A local path (a tree's contents go into it, created if need be, as `rclone copy` does), or s3://BUCKET/PREFIX/, az://CONTAINER/PREFIX/, gs://BUCKET/PREFIX/ (or the whole key for one file).
    dst: String,
    /// Copy a directory tree (or every object under a prefix, every file a server lists).
    #[arg(long, short = 'r')]
    recursive: bool,
    /// Copy files even when DST has one of the same size and modification time.
    #[arg(long)]
    overwrite: bool,
    /// To a store: skip an object only when its MD5 is the file's (S3: its ETag, by parts for a multipart one), not by size and time.
    #[arg(long)]
    checksum: bool,
    /// Copies in flight at once [default: 16 bunches of files between local paths, 64 files to a store].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: Option<u64>,
    /// To s3://: files larger than this go up in parts of this size, in parallel (at least 5M; grown past 10 000 parts).
    #[arg(long, default_value = "8M", value_parser = crate::units::parse_bytes)]
    part_size: u64,
    /// Also record the files that could not be copied in FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    failures: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// Where a cp side is.
enum Side {
    Local(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
    /// `az://` or `gs://`.
    Store {
        kind: Kind,
        bucket: String,
        key: String,
    },
    Http,
}

impl Side {
    /// The store, bucket and key of an object-store side.
    fn store(self) -> Option<(Kind, String, String)> {
        match self {
            Side::S3 { bucket, key } => Some((Kind::S3, bucket, key)),
            Side::Store { kind, bucket, key } => Some((kind, bucket, key)),
            _ => None,
        }
    }
}

fn side(p: &str) -> Result<Side> {
    if let Some((Kind::S3, rest)) = Kind::of_url(p) {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{p}: no bucket");
        }
        return Ok(Side::S3 {
            bucket: bucket.into(),
            key: key.into(),
        });
    }
    if crate::fetch::url::is_http(p) {
        return Ok(Side::Http);
    }
    if let Some((kind @ (Kind::Az | Kind::Gs), rest)) = Kind::of_url(p) {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!(
                "{p}: no {}",
                if kind == Kind::Az {
                    "container"
                } else {
                    "bucket"
                }
            );
        }
        return Ok(Side::Store {
            kind,
            bucket: bucket.into(),
            key: key.into(),
        });
    }
    if let Some(scheme) = crate::fetch::url::scheme(p) {
        bail!("{p}: {}", crate::fetch::url::unsupported(scheme));
    }
    Ok(Side::Local(p.into()))
}

pub fn cp(a: CpArgs) -> Result<u8> {
    let display = if a.fetch.quiet {
        crate::progress::Display::Quiet
    } else {
        crate::progress::Display::Auto
    };
    let stop = stop_flag();
    let out = match (side(&a.src)?, side(&a.dst)?) {
        (Side::Local(src), Side::Local(dst)) => {
            let cfg = crate::cp::CpConfig {
                src,
                dst,
                recursive: a.recursive,
                overwrite: a.overwrite,
                workers: a.workers.unwrap_or(16) as usize,
                display,
                durability: a.fetch.durability(),
            };
            crate::cp::run(&cfg, stop)?
        }
        (Side::Local(src), dst @ (Side::S3 { .. } | Side::Store { .. })) => {
            let (kind, bucket, key) = dst.store().expect("a store");
            let to = to_store(&a, display)?;
            let cfg = crate::cp::up::UpConfig {
                src,
                kind,
                bucket,
                key,
                to,
            };
            crate::cp::up::run(&cfg, stop)?
        }
        (
            src @ (Side::S3 { .. } | Side::Store { .. }),
            dst @ (Side::S3 { .. } | Side::Store { .. }),
        ) => {
            let (src_kind, src_bucket, src_key) = src.store().expect("a store");
            let (dst_kind, dst_bucket, dst_key) = dst.store().expect("a store");
            let to = to_store(&a, display)?;
            let cfg = crate::cp::between::BetweenConfig {
                src_kind,
                src_bucket,
                src_key,
                dst_kind,
                dst_bucket,
                dst_key,
                to,
            };
            crate::cp::between::run(&cfg, stop)?
        }
        (Side::Http, dst @ (Side::S3 { .. } | Side::Store { .. })) => {
            let (dst_kind, dst_bucket, dst_key) = dst.store().expect("a store");
            let to = to_store(&a, display)?;
            let cfg = crate::cp::web::WebConfig {
                src: a.src.clone(),
                dst_kind,
                dst_bucket,
                dst_key,
                to,
            };
            crate::cp::web::run(&cfg, stop)?
        }
        (Side::S3 { .. } | Side::Store { .. } | Side::Http, Side::Local(dst)) => {
            return download(a, dst);
        }
        _ => bail!(
            "cp copies local to local, local to and between s3://, az:// and gs://, and s3://, az://, gs:// or http(s):// to local or to a store; {} to {} is not supported yet",
            a.src,
            a.dst
        ),
    };
    let mut ledger = String::new();
    for (p, why) in &out.failures {
        if !a.fetch.quiet && !embedded() {
            eprintln!("bulkget: failed {}: {why}", p.display());
        }
        let rec = serde_json::json!({ "path": p.to_string_lossy(), "error": why });
        ledger.push_str(&format!("{rec}\n"));
    }
    if let Some(f) = &a.failures {
        std::fs::write(f, ledger).with_context(|| format!("writing {}", f.display()))?;
    }
    if !embedded() {
        eprintln!("{}", out.summary());
    }
    if let Some(p) = &a.fetch.stats_json {
        std::fs::write(p, serde_json::to_vec_pretty(&out.stats)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(out.exit_code())
}

/// What a copy into a store takes from the command line.
fn to_store(a: &CpArgs, display: crate::progress::Display) -> Result<crate::cp::send::ToStore> {
    if a.part_size < 5 << 20 {
        bail!("--part-size must be at least 5M (S3's smallest part)");
    }
    let c = a.fetch.common()?;
    let mut net = c.net;
    let store_opts = a.fetch.store_opts(&mut net, true);
    Ok(crate::cp::send::ToStore {
        recursive: a.recursive,
        overwrite: a.overwrite,
        checksum: a.checksum,
        part_size: a.part_size,
        workers: a.workers.unwrap_or(64) as usize,
        display,
        net,
        policy: c.policy,
        store_opts,
    })
}

/// From a store or a server to a local directory: `mirror` for a tree
/// (`-r`: with its journal in DST/.bulkget, so a rerun resumes), `get`
/// for one file (it keeps its name, in DST).
fn download(a: CpArgs, dst: PathBuf) -> Result<u8> {
    if a.failures.is_some() {
        bail!("--failures: downloads keep their ledger in DST/.bulkget/failures.jsonl");
    }
    if a.recursive {
        return super::mirror(super::MirrorArgs {
            url: a.src,
            dest: dst,
            sink: "dir".into(),
            shard_size: 1 << 30,
            checksum: a.checksum,
            queue: super::QueueArgs::none(),
            fetch: a.fetch,
        });
    }
    if dst.exists() && !dst.is_dir() || !dst.exists() && !a.dst.ends_with('/') {
        bail!(
            "{}: give a directory to copy {} into (the file keeps its name), or -r for a tree",
            a.dst,
            a.src
        );
    }
    super::get(super::GetArgs {
        urls: vec![a.src],
        input: None,
        dir: dst,
        split: crate::get::DEFAULT_SPLIT as u64,
        split_size: crate::get::DEFAULT_SPLIT_SIZE,
        sink: "dir".into(),
        checksum: None,
        queue: super::QueueArgs::none(),
        fetch: a.fetch,
    })
}
