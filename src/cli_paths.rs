//! The commands over paths of every kind: `ls`, `exists`, `stat` (the
//! command line only; the work is in `bulkget::ls` and `bulkget::probe`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::FetchArgs;
use bulkget::mirror;

#[derive(Args)]
pub struct LsArgs {
    path: String,
    /// Everything under PATH, not one level.
    #[arg(long, short = 'r')]
    recursive: bool,
    /// One JSON object a line: path, size, mtime, etag (null where unknown).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let c = a.fetch.common()?;
    let mut cfg = bulkget::ls::LsConfig {
        path: a.path.clone(),
        recursive: a.recursive,
        json: a.json,
        net: c.net,
        policy: c.policy,
        store_opts: Default::default(),
        quiet: a.fetch.quiet,
    };
    cfg.store_opts = a
        .fetch
        .store_opts(&mut cfg.net, a.path.starts_with("s3://"));
    let stop = mirror::stop_on_signals();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    bulkget::ls::run(&cfg, &mut out, &stop)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Paths: local paths, http(s):// URLs, s3://BUCKET/KEY.
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
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn probe(a: ProbeArgs, mode: bulkget::probe::Mode) -> anyhow::Result<ExitCode> {
    if a.paths.is_empty() && a.input.is_none() {
        bail!("give paths, or a list with -i FILE");
    }
    if a.fetch.state_dir.is_some() {
        bail!(
            "--state-dir does not apply here (there is no journal); --failures FILE keeps a record"
        );
    }
    let c = a.fetch.common()?;
    let mut cfg = bulkget::probe::ProbeConfig::new(mode);
    (cfg.limits, cfg.policy, cfg.net) = (c.limits, c.policy, c.net);
    (cfg.display, cfg.threads) = (c.display, c.threads);
    cfg.max_redirs = a.fetch.max_redirs;
    (cfg.paths, cfg.list) = (a.paths.clone(), a.input.clone());
    (cfg.json, cfg.failures) = (a.json, a.failures.clone());
    let s3 = cfg.paths.iter().any(|u| u.starts_with("s3://"));
    cfg.store_opts = a.fetch.store_opts(&mut cfg.net, s3 && cfg.list.is_none());
    let out = bulkget::probe::run(&cfg, mirror::stop_on_signals())?;
    if let Some(e) = &out.error {
        eprintln!("bulkget: {e}");
    }
    if !a.fetch.quiet || out.tally.errors > 0 {
        eprintln!("{}", out.summary());
    }
    if let Some(p) = &a.fetch.stats_json {
        std::fs::write(p, serde_json::to_vec_pretty(&out.stats)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::from(out.exit_code()))
}

#[derive(Args)]
pub struct CpArgs {
    /// A local file or directory.
    src: PathBuf,
    /// A local path: a tree's contents go into it (created if need be), as `rclone copy` does.
    dst: PathBuf,
    /// Copy a directory tree.
    #[arg(long, short = 'r')]
    recursive: bool,
    /// Copy files even when DST has one of the same size and modification time.
    #[arg(long)]
    overwrite: bool,
    /// Bunches of up to 32 files copied at once (each on its own thread).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: u64,
    /// Also record the files that could not be copied in FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    failures: Option<PathBuf>,
    /// No progress and no per-file error lines (the summary is still printed).
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn cp(a: CpArgs) -> anyhow::Result<ExitCode> {
    for p in [&a.src, &a.dst] {
        let s = p.to_string_lossy();
        if s.contains("://") {
            bail!("{s}: cp copies between local paths so far (use get or mirror to download)");
        }
    }
    let cfg = bulkget::cp::CpConfig {
        src: a.src.clone(),
        dst: a.dst.clone(),
        recursive: a.recursive,
        overwrite: a.overwrite,
        workers: a.workers as usize,
        display: if a.quiet {
            bulkget::progress::Display::Quiet
        } else {
            bulkget::progress::Display::Auto
        },
    };
    let out = bulkget::cp::run(&cfg, mirror::stop_on_signals())?;
    let mut ledger = String::new();
    for (p, why) in &out.failures {
        if !a.quiet {
            eprintln!("bulkget: failed {}: {why}", p.display());
        }
        let rec = serde_json::json!({ "path": p.to_string_lossy(), "error": why });
        ledger.push_str(&format!("{rec}\n"));
    }
    if let Some(f) = &a.failures {
        std::fs::write(f, ledger).with_context(|| format!("writing {}", f.display()))?;
    }
    eprintln!("{}", out.summary());
    Ok(ExitCode::from(out.exit_code()))
}
