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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use tokio::task::JoinSet;

use super::GetPlan;
use super::input::Job;
use crate::error::FetchError;
use crate::fetch::http1::Head;
use crate::fetch::url::Url;
use crate::fetch::{Conn, land};
use crate::journal::write_atomic;
use crate::pipeline::Shared;
use crate::progress::{Counters, Local};
use crate::units::hex;

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
    /// The output name (for messages).
    name: String,
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

    fn done_bytes(&self) -> u64 {
        let s = self.side.lock().expect("sidecar lock");
        s.done
            .bytes()
            .enumerate()
            .filter(|(_, c)| *c == b'1')
            .map(|(i, _)| self.range(i as u64))
            .map(|(a, b)| b + 1 - a)
            .sum()
    }

    /// Writes a piece of body at `*off` and counts it.
    fn write_piece(
        &self,
        counters: &Counters,
        off: &mut u64,
        piece: &[u8],
    ) -> Result<(), FetchError> {
        self.file
            .write_all_at(piece, *off)
            .map_err(FetchError::Sink)?;
        *off += piece.len() as u64;
        counters
            .bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        counters
            .big_done
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Chunk `i` is written: its bytes reach stable storage before the
    /// sidecar says so (one `fdatasync` per chunk, not per write).
    fn mark_done(&self, i: u64) {
        let _ = self.file.sync_data();
        let mut s = self.side.lock().expect("sidecar lock");
        s.done.replace_range(i as usize..i as usize + 1, "1");
        let _ = write_atomic(&self.side_path, &serde_json::to_vec(&*s).expect("json"));
    }
}

/// Forgets an interrupted download of `name` (its part and sidecar).
pub fn forget(parts_dir: &Path, name: &str) {
    let (part, side) = paths(parts_dir, name);
    let _ = fs::remove_file(part);
    let _ = fs::remove_file(side);
}

/// A large file whose first answer was read; [`Split::finish`] does the rest.
pub struct Split {
    sh: Arc<Shared<GetPlan>>,
    job: Job,
    st: Arc<State>,
    part: PathBuf,
    /// Where the chunks are fetched from (the URL after redirects).
    at: Arc<str>,
}

impl Split {
    /// Sets up a fresh or resumed `.part` file for the probe answer (`head`,
    /// body unread on `c`), hands the rest of the download to a task of its
    /// own in `handed`, and reads the probe's body meanwhile. Err says whether
    /// `c` can carry on.
    pub async fn prepare(
        sh: &Arc<Shared<GetPlan>>,
        job: &Job,
        at: &str,
        c: &mut Conn,
        head: &Head,
        probe_end: u64,
        handed: &mut JoinSet<()>,
    ) -> Result<bool, (FetchError, bool)> {
        let keep = land::reusable(head);
        let plan = &sh.plan;
        let (a, b, total) = match head.content_range {
            Some((a, b, Some(t))) if a == 0 && b <= probe_end && b < t => (a, b, t),
            got => {
                let _ = land::refuse(c, head).await;
                return Err((
                    FetchError::Protocol(format!(
                        "Content-Range {got:?} disagrees with the range asked, bytes 0-{probe_end}"
                    )),
                    false,
                ));
            }
        };
        debug_assert_eq!(a, 0);
        let setup = || -> Result<(Arc<State>, PathBuf), FetchError> {
            let chunk = plan.split_size.max(1);
            let nchunks = total.div_ceil(chunk);
            let (part, side_path) = paths(&plan.parts_dir, &job.name);
            fs::create_dir_all(&plan.parts_dir).map_err(FetchError::Sink)?;
            let fresh = Sidecar {
                url: job.shown().to_string(),
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
                    if Sidecar {
                        done: o.done.clone(),
                        ..fresh.clone()
                    } == o
                        && o.done.len() == nchunks as usize
                        && part_len == Some(total) =>
                {
                    o
                }
                Some(_) => {
                    if !sh.ctx.quiet {
                        eprintln!(
                            "bulkget: {:?}: the remote file changed since the last run (size, ETag or Last-Modified differ); starting it over",
                            job.name
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
            if fs::metadata(&part).map(|m| m.len()).ok() != Some(total) {
                file.set_len(total).map_err(FetchError::Sink)?;
                preallocate(&file, total);
            }
            write_atomic(&side_path, &serde_json::to_vec(&side).expect("json"))
                .map_err(FetchError::Sink)?;
            let queue: VecDeque<u64> = (0..nchunks)
                .filter(|i| side.done.as_bytes()[*i as usize] == b'0')
                .collect();
            let st = State {
                name: job.name.clone(),
                file,
                side: Mutex::new(side),
                side_path,
                queue: Mutex::new(queue),
                failed: Mutex::new(None),
                total,
                chunk,
            };
            Ok((Arc::new(st), part))
        };
        let (st, part) = match setup() {
            Ok(x) => x,
            Err(e) => {
                let _ = land::refuse(c, head).await;
                return Err((e, keep));
            }
        };
        let counters = &sh.ctx.counters;
        counters.big_total.fetch_add(total, Ordering::Relaxed);
        counters
            .big_done
            .fetch_add(st.done_bytes(), Ordering::Relaxed);
        // The other connections start now, while the probe's body still
        // streams in: chunk 0 is the probe's when it covers it.
        let probe_covers_0 =
            b >= st.range(0).1 && st.side.lock().expect("lock").done.as_bytes()[0] == b'0';
        if probe_covers_0 {
            st.queue.lock().expect("lock").retain(|i| *i != 0);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let split = Split {
            sh: sh.clone(),
            job: job.clone(),
            st: st.clone(),
            part,
            at: Arc::from(at),
        };
        handed.spawn_local(split.finish(probe_covers_0.then_some(rx)));
        let mut off = 0u64;
        let read = c
            .read_body(head, |piece| st.write_piece(counters, &mut off, piece))
            .await;
        let ok = read.is_ok() && off > st.range(0).1;
        if probe_covers_0 && ok {
            st.mark_done(0);
        }
        let _ = tx.send(ok);
        // A failed probe is not this entry's failure: the split task fetches
        // chunk 0 again. Ok says whether the connection survived it.
        Ok(read.is_ok())
    }

    /// Takes this file off the large-file progress.
    fn release(&self) {
        let c = &self.sh.ctx.counters;
        c.big_total.fetch_sub(self.st.total, Ordering::Relaxed);
        let done = self.st.done_bytes().min(c.big_done.load(Ordering::Relaxed));
        c.big_done.fetch_sub(done, Ordering::Relaxed);
    }

    /// Fetches the missing chunks over up to `--split` connections, then
    /// checks and renames the file into place, and counts it (or records it
    /// as failed; an interrupted one keeps its sidecar for the next run).
    pub async fn finish(self, probe: Option<tokio::sync::oneshot::Receiver<bool>>) {
        let sh = &self.sh;
        let n = (sh.plan.split.max(1) as u64)
            .min(self.st.queue.lock().expect("lock").len() as u64)
            .max(1);
        let mut set = JoinSet::new();
        for k in 0..n {
            let (st, sh, at) = (self.st.clone(), sh.clone(), self.at.clone());
            set.spawn_local(chunk_task(st, sh, at, k));
        }
        let mut local = Local::default();
        while let Some(r) = set.join_next().await {
            if let Ok(l) = r {
                local.retries += l.retries;
            }
        }
        let probe_ok = match probe {
            Some(rx) => rx.await.unwrap_or(false),
            None => true,
        };
        if !probe_ok && !sh.ctx.stopping() {
            // the probe did not bring chunk 0 after all
            self.st.queue.lock().expect("lock").push_back(0);
            local.retries += chunk_task(self.st.clone(), sh.clone(), self.at.clone(), n)
                .await
                .retries;
        }
        self.release();
        let result = self.complete();
        match result {
            Ok(Some(bytes)) => {
                local.done += 1;
                let _ = bytes; // counted as the chunks came in
            }
            Ok(None) => {} // stopped: the sidecar keeps what is done
            Err(e) => {
                sh.ctx
                    .give_up(&self.job.name, self.job.shown(), &e, 1, &mut local);
            }
        }
        local.publish(&sh.ctx.counters);
    }

    fn complete(&self) -> Result<Option<u64>, FetchError> {
        if let Some(e) = self.st.failed.lock().expect("lock").take() {
            return Err(e);
        }
        if self.st.done_bytes() < self.st.total {
            return Ok(None);
        }
        let plan = &self.sh.plan;
        if let Some(want) = self.job.sha256 {
            let got = sha256_file(&self.part).map_err(FetchError::Sink)?;
            if got != want {
                forget(&plan.parts_dir, &self.job.name);
                return Err(FetchError::Checksum {
                    algo: "sha256",
                    want: hex(&want),
                    got: hex(&got),
                });
            }
        }
        plan.committed(plan.sink.rename_in(&self.part, &self.job.name))?;
        let _ = fs::remove_file(&self.st.side_path);
        Ok(Some(self.st.total))
    }
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
/// A chunk that breaks off (a reset, a stall of `--timeout`) is asked for
/// again from the byte where it stopped, not from its start.
async fn chunk_task(st: Arc<State>, sh: Arc<Shared<GetPlan>>, at: Arc<str>, salt: u64) -> Local {
    let mut local = Local::default();
    let mut conn: Option<Conn> = None;
    let url = Url::parse(&at).expect("checked before the split");
    loop {
        if sh.ctx.stopping() || st.failed.lock().expect("lock").is_some() {
            break;
        }
        let Some(i) = st.queue.lock().expect("lock").pop_front() else {
            break;
        };
        let mut attempts = 0;
        let mut from = st.range(i).0;
        loop {
            attempts += 1;
            match fetch_chunk(&st, &sh, &mut conn, url, i, &mut from).await {
                Ok(()) => {
                    st.mark_done(i);
                    break;
                }
                Err(e) if e.is_fatal() => {
                    sh.ctx.fatal(format!("writing {:?}: {e}", st.name));
                    st.queue.lock().expect("lock").push_front(i);
                    return local;
                }
                Err(e) => {
                    if !e.keeps_connection() {
                        conn = None;
                    }
                    match sh.ctx.retry_after(
                        &e,
                        attempts,
                        salt.wrapping_mul(7919) ^ i,
                        &mut local,
                        false,
                    ) {
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

/// Fetches chunk `i` from byte `*from` to its end; `*from` moves on with
/// every byte written, so a failed attempt leaves it where to resume.
async fn fetch_chunk(
    st: &State,
    sh: &Shared<GetPlan>,
    conn: &mut Option<Conn>,
    url: Url<'_>,
    i: u64,
    from: &mut u64,
) -> Result<(), FetchError> {
    let (a, b) = (*from, st.range(i).1);
    if conn.is_none() {
        *conn = Some(sh.ctx.net.connect(url.origin_key()).await?);
    }
    let c = conn.as_mut().expect("connected");
    c.get(url.authority, |o| url.push_path(o), Some((a, b)))?;
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
    c.read_body(&head, |piece| st.write_piece(counters, from, piece))
        .await?;
    if *from != b + 1 {
        return Err(FetchError::Truncated {
            got: *from - a,
            want: b + 1 - a,
        });
    }
    if !land::reusable(&head) {
        *conn = None;
    }
    Ok(())
}
