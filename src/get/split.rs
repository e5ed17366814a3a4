//! One large file over several HTTP Range connections, written in place.
//!
//! The first ranged GET (made by the caller) tells the size, the validators
//! (`ETag`, `Last-Modified`) and that ranges work; its body is chunk 0. The
//! rest is cut into chunks of `--split-size` bytes that up to `--split`
//! connections take from a shared queue and write at their offsets
//! (positional writes into one preallocated `.part` file: nothing to
//! assemble). A failed chunk is retried alone. A small sidecar `.json` next to
//! the `.part` records the chunks done, so a killed download restarts with
//! only the missing ones, once the validators show the remote is the same
//! file. When all are done the checksum (if given) is checked and the file is
//! renamed into place.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Shared;
use super::input::Job;
use crate::error::FetchError;
use crate::fetch::http1::{Conn, Head};
use crate::fetch::land;
use crate::journal::write_atomic;
use crate::progress::Local;

/// What the sidecar says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Sidecar {
    url: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    chunk: u64,
    /// One character a chunk: `1` done, `0` not.
    done: String,
}

fn key(name: &str) -> String {
    let mut h = Blake2bVar::new(16).expect("valid length");
    h.update(name.as_bytes());
    let mut d = [0u8; 16];
    h.finalize_variable(&mut d).expect("length");
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `.part` and sidecar paths of output `name`.
pub fn paths(parts_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let k = key(name);
    (
        parts_dir.join(format!("{k}.part")),
        parts_dir.join(format!("{k}.json")),
    )
}

/// Whether an interrupted download of `name` left a sidecar.
pub fn has_sidecar(parts_dir: &Path, name: &str) -> bool {
    paths(parts_dir, name).1.exists()
}

struct State {
    file: File,
    side: Mutex<Sidecar>,
    side_path: PathBuf,
    queue: Mutex<VecDeque<u64>>,
    failed: Mutex<Option<FetchError>>,
    total: u64,
    chunk: u64,
}

impl State {
    fn range(&self, i: u64) -> (u64, u64) {
        let a = i * self.chunk;
        (a, (a + self.chunk).min(self.total) - 1)
    }

    fn mark_done(&self, i: u64) {
        let mut s = self.side.lock().expect("sidecar lock");
        s.done.replace_range(i as usize..i as usize + 1, "1");
        let _ = write_atomic(&self.side_path, &serde_json::to_vec(&*s).expect("json"));
    }
}

/// Everything a split download needs from its caller.
pub struct Split<'a> {
    pub sh: &'a Arc<Shared>,
    pub job: &'a Job,
    pub addr: SocketAddr,
    pub host: &'a str,
    pub path: &'a str,
    /// The probe asked for `0..=probe_end`; in a resumed download only byte 0.
    pub probe_end: u64,
}

impl Split<'_> {
    /// Runs the download; `conn` carries the probe answer `head`, body unread.
    pub async fn run(
        &self,
        mut conn: Conn,
        head: &Head,
        local: &mut Local,
    ) -> Result<u64, FetchError> {
        let sh = self.sh;
        let (a, b, total) = match head.content_range {
            Some((a, b, Some(t))) => (a, b, t),
            _ => {
                return Err(FetchError::Protocol(
                    "206 without a full Content-Range".into(),
                ));
            }
        };
        if a != 0 || b > self.probe_end || b >= total {
            return Err(FetchError::Protocol(format!(
                "Content-Range bytes {a}-{b}/{total} disagrees with the range asked, 0-{}",
                self.probe_end
            )));
        }
        let chunk = sh.split_size.max(1);
        let nchunks = total.div_ceil(chunk);
        let (part, side_path) = paths(&sh.parts_dir, &self.job.name);
        fs::create_dir_all(&sh.parts_dir).map_err(FetchError::Sink)?;
        let fresh = Sidecar {
            url: self.job.url.clone(),
            size: total,
            etag: head.etag.clone(),
            last_modified: head.last_modified.clone(),
            chunk,
            done: "0".repeat(nchunks as usize),
        };
        let old: Option<Sidecar> = fs::read(&side_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let part_len = fs::metadata(&part).map(|m| m.len()).ok();
        let side = match old {
            Some(o)
                if o.done.len() == nchunks as usize
                    && Sidecar {
                        done: o.done.clone(),
                        ..fresh.clone()
                    } == o
                    && part_len == Some(total) =>
            {
                o
            }
            Some(_) => {
                if !sh.ctx.quiet {
                    eprintln!(
                        "bulkget: {:?}: the remote file changed since the last run (size, ETag or Last-Modified differ); starting it over",
                        self.job.name
                    );
                }
                let _ = fs::remove_file(&part);
                fresh
            }
            None => fresh,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(FetchError::Sink)?;
        if part_len != Some(total) {
            file.set_len(total).map_err(FetchError::Sink)?;
            preallocate(&file, total);
        }
        write_atomic(&side_path, &serde_json::to_vec(&side).expect("json"))
            .map_err(FetchError::Sink)?;
        let done_before: u64 = side
            .done
            .bytes()
            .enumerate()
            .filter(|(_, c)| *c == b'1')
            .map(|(i, _)| {
                let a = i as u64 * chunk;
                (a + chunk).min(total) - a
            })
            .sum();
        let queue: VecDeque<u64> = (0..nchunks)
            .filter(|i| side.done.as_bytes()[*i as usize] == b'0')
            .collect();
        let st = Arc::new(State {
            file,
            side: Mutex::new(side),
            side_path: side_path.clone(),
            queue: Mutex::new(queue),
            failed: Mutex::new(None),
            total,
            chunk,
        });
        let c = &sh.ctx.counters;
        c.big_total.fetch_add(total, Ordering::Relaxed);
        c.big_done.fetch_add(done_before, Ordering::Relaxed);

        // The probe's body: chunk 0 when it covers it, else just read past it.
        let mut off = 0u64;
        let probe = conn
            .read_body(head, |piece| {
                st.file.write_all_at(piece, off).map_err(FetchError::Sink)?;
                off += piece.len() as u64;
                Ok(())
            })
            .await;
        let mut first = Some(conn);
        match probe {
            Ok(_) => {
                if off > st.range(0).1 && st.side.lock().expect("lock").done.as_bytes()[0] == b'0' {
                    st.queue.lock().expect("lock").retain(|i| *i != 0);
                    st.mark_done(0);
                    c.big_done.fetch_add(off, Ordering::Relaxed);
                    c.bytes.fetch_add(off, Ordering::Relaxed);
                }
                if !land::reusable(head) {
                    first = None;
                }
            }
            Err(_) => first = None,
        }

        let n = (sh.split.max(1) as u64)
            .min(st.queue.lock().expect("lock").len() as u64)
            .max(1);
        let mut set = tokio::task::JoinSet::new();
        for k in 0..n {
            let conn = if k == 0 { first.take() } else { None };
            let st = st.clone();
            let sh = sh.clone();
            let (addr, host, path) = (self.addr, self.host.to_string(), self.path.to_string());
            let salt = k;
            set.spawn_local(async move { chunk_task(st, sh, conn, addr, host, path, salt).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(l) = r {
                local.retries += l.retries;
            }
        }
        let done_now: u64 = {
            let s = st.side.lock().expect("lock");
            s.done
                .bytes()
                .enumerate()
                .filter(|(_, c)| *c == b'1')
                .map(|(i, _)| st.range(i as u64))
                .map(|(a, b)| b + 1 - a)
                .sum()
        };
        c.big_total.fetch_sub(total, Ordering::Relaxed);
        c.big_done.fetch_sub(
            done_now.min(c.big_done.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if let Some(e) = st.failed.lock().expect("lock").take() {
            return Err(e);
        }
        if done_now < total {
            return Err(FetchError::Closed); // stopped: the sidecar keeps what is done
        }
        if let Some(want) = self.job.sha256 {
            let got = sha256_file(&part).map_err(FetchError::Sink)?;
            if got != want {
                let _ = fs::remove_file(&part);
                let _ = fs::remove_file(&side_path);
                return Err(FetchError::Checksum {
                    want: hex(&want),
                    got: hex(&got),
                });
            }
        }
        sh.sink
            .mkdirs_for(&self.job.name)
            .map_err(FetchError::Sink)?;
        fs::rename(&part, sh.sink.root().join(&self.job.name)).map_err(FetchError::Sink)?;
        let _ = fs::remove_file(&side_path);
        Ok(total)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_file(p: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        Digest::update(&mut h, &buf[..n]);
    }
}

/// Reserves the blocks up front (best effort; the file is already sized).
fn preallocate(f: &File, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd; failure only means no preallocation.
    unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
}

/// One connection taking chunks until none are left or one fails for good.
async fn chunk_task(
    st: Arc<State>,
    sh: Arc<Shared>,
    mut conn: Option<Conn>,
    addr: SocketAddr,
    host: String,
    path: String,
    salt: u64,
) -> Local {
    let mut local = Local::default();
    loop {
        if sh.ctx.stopping() || st.failed.lock().expect("lock").is_some() {
            break;
        }
        let Some(i) = st.queue.lock().expect("lock").pop_front() else {
            break;
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match fetch_chunk(&st, &sh, &mut conn, addr, &host, &path, i).await {
                Ok(()) => {
                    st.mark_done(i);
                    break;
                }
                Err(e) => {
                    if !e.keeps_connection() {
                        conn = None;
                    }
                    match sh
                        .ctx
                        .retry_after(&e, attempts, salt.wrapping_mul(7919) ^ i, &mut local)
                    {
                        Some(wait) if !sh.ctx.stopping() => tokio::time::sleep(wait).await,
                        Some(_) => {
                            st.queue.lock().expect("lock").push_front(i);
                            return local;
                        }
                        None => {
                            let (a, b) = st.range(i);
                            let e = match e {
                                FetchError::Status { status, .. } => {
                                    FetchError::Protocol(format!("HTTP {status} for bytes {a}-{b}"))
                                }
                                other => other,
                            };
                            st.failed.lock().expect("lock").get_or_insert(e);
                            return local;
                        }
                    }
                }
            }
        }
    }
    local
}

async fn fetch_chunk(
    st: &State,
    sh: &Shared,
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    host: &str,
    path: &str,
    i: u64,
) -> Result<(), FetchError> {
    let (a, b) = st.range(i);
    if conn.is_none() {
        *conn = Some(Conn::connect(addr, sh.ctx.timeout).await?);
    }
    let c = conn.as_mut().expect("connected");
    c.queue_get(host, path.as_bytes(), &format!("Range: bytes={a}-{b}\r\n"));
    c.flush().await?;
    let head = c.read_head().await?;
    if head.status != 206 {
        let (e, keep) = land::refuse(c, &head).await;
        if !keep {
            *conn = None;
        }
        return Err(if head.status == 200 {
            FetchError::Protocol(format!("the server ignored Range for bytes {a}-{b}"))
        } else {
            e
        });
    }
    if head.content_range != Some((a, b, Some(st.total))) {
        let got = head.content_range;
        let _ = land::refuse(c, &head).await;
        *conn = None;
        return Err(FetchError::Protocol(format!(
            "Content-Range {got:?} disagrees with the range asked, bytes {a}-{b}/{}",
            st.total
        )));
    }
    let counters = &sh.ctx.counters;
    let mut off = a;
    c.read_body(&head, |piece| {
        st.file.write_all_at(piece, off).map_err(FetchError::Sink)?;
        off += piece.len() as u64;
        counters
            .bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        counters
            .big_done
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        Ok(())
    })
    .await?;
    if off != b + 1 {
        return Err(FetchError::Truncated {
            got: off - a,
            want: b + 1 - a,
        });
    }
    if !land::reusable(&head) {
        *conn = None;
    }
    Ok(())
}
