//! `bulkget bench`: the seed's experiment in one command. Starts
//! `bulkget serve --synthetic N` as a child process on loopback, mirrors it
//! into a fresh directory, checks every byte against the synthetic content
//! rule, and reports files/s, MB/s, client CPU per file and peak RSS beside
//! the talk's table.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::RunError;
use crate::mirror::{self, MirrorConfig, SinkKind};
use crate::progress::{Display, Outcome, Stats};
use crate::synthetic;
use crate::units::{group, human_bytes};

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub files: u64,
    pub size: u64,
    pub sink: SinkKind,
    /// Parent of the fresh download directory (default: the system temp dir).
    pub dir: Option<PathBuf>,
    /// Keep the downloaded tree.
    pub keep: bool,
    pub display: Display,
    /// Ceilings for the connections (the mirror's defaults unless changed).
    pub limits: crate::pipeline::Limits,
    /// Whether the mirror syncs what it lands (as `mirror` does by default).
    pub durability: crate::journal::Durability,
}

/// What a bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub files: u64,
    pub size: u64,
    pub sink: String,
    pub stats: Stats,
    pub cpu_user_us_per_file: f64,
    pub cpu_sys_us_per_file: f64,
    pub peak_rss_kib: u64,
    /// Files whose every byte was checked (0 with the null sink, which keeps none).
    pub verified: u64,
    pub billion_hours: f64,
    pub exit_code: u8,
}

struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn usage() -> (f64, f64, u64) {
    // SAFETY: rusage is plain old data, fully written by getrusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (
        t(r.ru_utime),
        t(r.ru_stime),
        peak_rss_kib().unwrap_or(r.ru_maxrss as u64),
    )
}

/// This program's peak resident set (`VmHWM`). Not `ru_maxrss`: Linux keeps
/// that across `execve`, so under `cargo run` it would report cargo's size.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Marks `dir` as a "top directory" (chattr +T) so ext4 spreads new
/// subdirectories over fresh block groups; best effort.
fn set_topdir(dir: &Path) {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    if let Ok(f) = std::fs::File::open(dir) {
        use std::os::fd::AsRawFd;
        let mut flags: libc::c_long = 0;
        // SAFETY: valid fd and out-pointer of the size the ioctl writes.
        unsafe {
            if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) == 0 {
                flags |= FS_TOPDIR_FL;
                libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags);
            }
        }
    }
}

fn start_server(files: u64, size: u64) -> Result<(ServerChild, String), RunError> {
    let exe = std::env::current_exe()
        .map_err(|e| RunError::Other(format!("cannot find bulkget itself: {e}")))?;
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--synthetic",
            &files.to_string(),
            "--size",
            &size.to_string(),
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| RunError::Other(format!("cannot start the server: {e}")))?;
    let out = child.stdout.take().expect("piped");
    let guard = ServerChild(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| RunError::Other(format!("server: {e}")))?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| RunError::Other(format!("the server said {line:?}")))?
        .to_string();
    Ok((guard, url))
}

/// Reads back every file and compares it with the synthetic rule.
fn verify(dest: &Path, files: u64, size: u64) -> Result<u64, RunError> {
    let width = synthetic::name_width(files);
    let mut want = vec![0u8; size as usize];
    for i in 0..files {
        let name = synthetic::name(i, width);
        let got = std::fs::read(dest.join(&name))
            .map_err(|e| RunError::Other(format!("verify {name}: {e}")))?;
        synthetic::fill(name.as_bytes(), 0, &mut want);
        if got != want {
            return Err(RunError::Other(format!(
                "verify {name}: {} bytes, content differs",
                got.len()
            )));
        }
    }
    Ok(files)
}

/// Reads every shard back: each synthetic file exactly once, every byte right.
fn verify_tar(dest: &Path, files: u64, size: u64) -> Result<u64, RunError> {
    let width = synthetic::name_width(files);
    let mut seen = vec![false; files as usize];
    let mut want = vec![0u8; size as usize];
    for e in std::fs::read_dir(dest)
        .map_err(|e| RunError::Other(format!("verify: {e}")))?
        .flatten()
    {
        if !e.file_name().to_string_lossy().ends_with(".tar") {
            continue;
        }
        let mut bad = None;
        crate::sink::tar::for_each_entry(&e.path(), |name, data| {
            if bad.is_some() {
                return;
            }
            match synthetic::index_of(name, width).filter(|i| *i < files) {
                None => bad = Some(format!("verify: unexpected entry {name:?}")),
                Some(i) => {
                    synthetic::fill(name.as_bytes(), 0, &mut want);
                    if data != want.as_slice() {
                        bad = Some(format!(
                            "verify {name}: {} bytes, content differs",
                            data.len()
                        ));
                    }
                    seen[i as usize] = true;
                }
            }
        })
        .map_err(|err| RunError::Other(format!("verify {}: {err}", e.path().display())))?;
        if let Some(b) = bad {
            return Err(RunError::Other(b));
        }
    }
    match seen.iter().position(|s| !s) {
        Some(i) => Err(RunError::Other(format!(
            "verify: {} is missing",
            synthetic::name(i as u64, width)
        ))),
        None => Ok(files),
    }
}

pub fn run(cfg: &BenchConfig) -> Result<(BenchReport, Outcome), RunError> {
    let (_server, url) = start_server(cfg.files, cfg.size)?;
    let parent = cfg
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("bulkget-bench"));
    std::fs::create_dir_all(&parent).map_err(|e| RunError::Dest {
        path: parent.display().to_string(),
        source: e,
    })?;
    set_topdir(&parent);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let dest = parent.join(format!("run-{}-{stamp}", std::process::id()));
    let mut mc = MirrorConfig::new(&url, &dest);
    mc.sink = cfg.sink;
    mc.display = cfg.display;
    mc.limits = cfg.limits;
    mc.durability = cfg.durability;
    let (u0, s0, _) = usage();
    let out = mirror::run(&mc, Arc::new(AtomicBool::new(false)))?;
    let (u1, s1, rss) = usage();
    let files = out.stats.files.max(1) as f64;
    let verified = match (cfg.sink, out.exit_code()) {
        (SinkKind::Dir, 0) => verify(&dest, cfg.files, cfg.size)?,
        (SinkKind::Tar(_), 0) => verify_tar(&dest, cfg.files, cfg.size)?,
        _ => 0,
    };
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&dest);
    }
    let rate = out.stats.files_per_sec.max(1e-9);
    let report = BenchReport {
        files: cfg.files,
        size: cfg.size,
        sink: match cfg.sink {
            SinkKind::Dir => "dir",
            SinkKind::Tar(_) => "tar",
            SinkKind::Null => "null",
        }
        .to_string(),
        stats: out.stats.clone(),
        cpu_user_us_per_file: (u1 - u0) / files * 1e6,
        cpu_sys_us_per_file: (s1 - s0) / files * 1e6,
        peak_rss_kib: rss,
        verified,
        billion_hours: 1e9 / rate / 3600.0,
        exit_code: out.exit_code(),
    };
    Ok((report, out))
}

impl BenchReport {
    pub fn render(&self, dest_note: &str) -> String {
        let s = &self.stats;
        let hours = self.billion_hours;
        let mut o = format!(
            "bulkget bench: {} files of {} from a local `bulkget serve --synthetic` ({} sink){dest_note}\n\n",
            group(self.files),
            human_bytes(self.size as f64),
            self.sink
        );
        o += &format!("  files/s        {}\n", group(s.files_per_sec as u64));
        o += &format!("  throughput     {}/s\n", human_bytes(s.bytes_per_sec));
        o += &format!("  wall time      {:.2} s\n", s.seconds);
        o += &format!(
            "  client CPU     {:.1} µs per file (user {:.1}, system {:.1})\n",
            self.cpu_user_us_per_file + self.cpu_sys_us_per_file,
            self.cpu_user_us_per_file,
            self.cpu_sys_us_per_file
        );
        o += &format!(
            "  peak RSS       {:.1} MiB\n",
            self.peak_rss_kib as f64 / 1024.0
        );
        o += &format!(
            "  verified       {}\n",
            if self.verified > 0 {
                format!(
                    "{} files, every byte against the synthetic rule",
                    group(self.verified)
                )
            } else if self.sink == "null" {
                "lengths only (the null sink keeps no bytes)".to_string()
            } else {
                "not checked: the run did not complete".to_string()
            }
        );
        o += &format!(
            "\n10^9 files at this rate: {:.1} hours ({:.2} days)\n\n",
            hours,
            hours / 24.0
        );
        o += "The talk's table for 10^9 files on one 16-core client:\n";
        for (name, days) in [
            ("synchronous", 34.7),
            ("threads", 41.6),
            ("processes", 3.7),
            ("asyncio", 6.5),
            ("asyncio+multiprocessing (combo)", 0.35),
        ] {
            o += &format!("  {name:<33} {days:>6.2} days\n");
        }
        o += &format!(
            "  {:<33} {:>6.2} days  (this machine: {} cores, server included)\n",
            "bulkget",
            hours / 24.0,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        o
    }
}
