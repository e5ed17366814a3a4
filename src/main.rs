//! The `bulkget` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use bulkget::server::dirstore::DirStore;
use bulkget::server::faults::Faults;
use bulkget::server::store::{Store, SyntheticStore};
use bulkget::server::{self, ServeConfig};
use bulkget::units::parse_bytes;

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
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
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
    /// Fraction of /get whose connection is reset (TCP RST) halfway through the body.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    reset: f64,
    /// Fraction of /get whose body stops halfway, short of Content-Length, and the connection closes.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    truncate: f64,
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
    /// Seed of the fault dice: the same seed and request order give the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl FaultArgs {
    fn faults(&self) -> anyhow::Result<Faults> {
        for (name, v) in [
            ("--fail-503", self.fail_503),
            ("--fail-429", self.fail_429),
            ("--reset", self.reset),
            ("--truncate", self.truncate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} takes a fraction from 0 to 1, not {v}");
            }
        }
        if self.fail_503 + self.fail_429 + self.reset + self.truncate > 1.0 {
            bail!("the fault fractions add up to more than 1");
        }
        Ok(Faults {
            fail_503: self.fail_503,
            fail_429: self.fail_429,
            reset: self.reset,
            truncate: self.truncate,
            retry_after: self.retry_after,
            latency: Duration::from_millis(self.latency),
            rate_limit: self.rate_limit,
            no_ranges: self.no_ranges,
            seed: self.seed,
        })
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let store: Arc<dyn Store> = match (&a.dir, a.synthetic) {
        (_, Some(n)) => Arc::new(SyntheticStore::new(n, a.size)),
        (Some(d), None) => {
            Arc::new(DirStore::new(d).with_context(|| format!("cannot serve {}", d.display()))?)
        }
        (None, None) => bail!("give a DIR to serve, or --synthetic N"),
    };
    let cfg = ServeConfig {
        page_size: a.page_size as usize,
        faults: a.faults.faults()?,
        threads: a.threads,
    };
    server::serve_forever(&a.addr, store, cfg)
        .with_context(|| format!("cannot serve on {}", a.addr))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Serve(a) => serve(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bulkget: {e:#}");
            ExitCode::from(2)
        }
    }
}
