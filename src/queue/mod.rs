//! One job shared by many processes through Redis Streams (issue 25): the
//! primitives the lister and the workers are built on (`mirror::shared`
//! drives them; `tests/it/queue.rs` against a real redis-server).
//!
//! ```text
//!  lister (holds LEASE)                         workers (consumer group "workers")
//!   page of names ─▶ Lua: lease mine? cursor unmoved? ─▶ XADD PAGES {marker, names} × chunks
//!                          + HSET STATE cursor, HINCRBY listed   (one step)
//!                                             XAUTOCLAIM (a silent worker's page)
//!                                             or XREADGROUP ─▶ fetch ─▶ syncfs ─▶ Lua: XACK == 1?
//!                                                 ─▶ HINCRBY landed/failed, XADD FAILURES, XDEL (one step)
//!   a page delivered too often ─▶ Lua: XACK == 1? ─▶ XADD DEAD, XADD FAILURES, HINCRBY failed, XDEL
//! ```
//!
//! Every key carries the job's name (`bulkget:{JOB}:…`). Each step that
//! changes more than one key is one Lua script, so a process killed
//! anywhere leaves no gap and no double count: a lister that lost its lease
//! cannot enqueue, the cursor moves with the page it lists and only from
//! where the lister read it (a Redis that lost its last second of writes
//! in a crash is listed on from what it kept), and a page done twice (its
//! worker stopped past its lease, another took it over) counts once, since
//! only the first `XACK` of an entry returns 1. A connection that breaks
//! is made again for up to the connect timeout (a Redis restarting); every
//! step is safe to send twice. Only commands Redis 7.0 has are used.

use std::time::{Duration, Instant};

use redis::{Script, Value};

pub mod addr;
mod feed;
pub mod job;
mod list;
mod status;
pub use addr::Address;

/// The consumer group every worker reads through.
const GROUP: &str = "workers";

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis {addr}: {source}")]
    Redis {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis: an answer of an unexpected shape: {0}")]
    Shape(String),
    #[error("{0}")]
    Address(String),
}

impl From<QueueError> for crate::error::RunError {
    fn from(e: QueueError) -> crate::error::RunError {
        crate::error::RunError::Queue(e.to_string())
    }
}

impl From<redis::ParsingError> for QueueError {
    fn from(e: redis::ParsingError) -> QueueError {
        QueueError::Shape(e.to_string())
    }
}

/// A Redis error worth a new connection and another try.
fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "BUSY"))
}

/// One listing page in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The stream entry's ID.
    pub id: String,
    /// The listing cursor the page was listed from (empty: the first).
    pub marker: String,
    pub names: Vec<String>,
    /// Times it was handed to a worker, this time included.
    pub deliveries: u64,
}

impl Page {
    /// When it was enqueued, by Redis' clock (the entry ID's milliseconds).
    pub fn enqueued_ms(&self) -> u64 {
        self.id
            .split('-')
            .next()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0)
    }
}

/// One worker as it last said.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Worker {
    pub name: String,
    /// Its last heartbeat (Unix ms, its clock).
    pub beat_ms: u64,
    /// Files it landed (this process).
    pub landed: u64,
    /// Its files/s over the last minute.
    pub rate: f64,
    /// It ended (cleanly).
    #[serde(default)]
    pub ended: bool,
}

/// The job's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub listed: u64,
    pub landed: u64,
    pub failed: u64,
    /// Pages in the stream not yet acknowledged (waiting or in progress).
    pub queued: u64,
    /// Pages delivered to a worker and not yet acknowledged.
    pub in_progress: u64,
    /// The listing ended.
    pub listing_done: bool,
    /// Why the job cannot go on (the source could not be listed).
    pub error: Option<String>,
    /// The listed URL (what the job mirrors).
    pub source: Option<String>,
}

impl Status {
    /// Everything listed has landed or failed.
    pub fn done(&self) -> bool {
        self.listing_done && self.queued == 0 && self.landed + self.failed == self.listed
    }

    /// Pages waiting for a worker.
    pub fn waiting(&self) -> u64 {
        self.queued.saturating_sub(self.in_progress)
    }
}

/// What became of a page the lister offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Done,
    /// Another holds the lease.
    NotHolder,
    /// The cursor is not where this lister read it: read it again.
    Moved,
}

struct Keys {
    pages: String,
    state: String,
    lease: String,
    dead: String,
    failures: String,
    workers: String,
}

/// A connection to one job's keys.
pub struct Queue {
    client: redis::Client,
    con: Option<redis::Connection>,
    keys: Keys,
    addr: String,
    /// How long a broken connection is made again before giving up.
    patience: Duration,
}

impl Queue {
    /// Opens `job` on `client`'s server, creating its consumer group.
    pub fn open(client: &redis::Client, job: &str) -> Result<Queue, QueueError> {
        let shown = format!("{:?}", client.get_connection_info().addr());
        Queue::open_with(client, job, shown, Duration::from_secs(10))
    }

    /// As [`Queue::open`], from an address, reconnecting for up to `patience`.
    pub fn connect(a: &Address, patience: Duration) -> Result<Queue, QueueError> {
        let client = match &a.roots {
            Some(pem) if a.url.starts_with("rediss") || a.url.starts_with("valkeys") => {
                redis::Client::build_with_tls(
                    a.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                )
            }
            _ => redis::Client::open(a.url.as_str()),
        }
        .map_err(|e| QueueError::Redis {
            addr: a.shown.clone(),
            source: e,
        })?;
        Queue::open_with(&client, &a.job, a.shown.clone(), patience)
    }

    fn open_with(
        client: &redis::Client,
        job: &str,
        addr: String,
        patience: Duration,
    ) -> Result<Queue, QueueError> {
        let k = |s: &str| format!("bulkget:{job}:{s}");
        let mut q = Queue {
            client: client.clone(),
            con: None,
            keys: Keys {
                pages: k("pages"),
                state: k("state"),
                lease: k("lease"),
                dead: k("dead"),
                failures: k("failures"),
                workers: k("workers"),
            },
            addr,
            patience,
        };
        q.group()?;
        Ok(q)
    }

    /// Creates the consumer group (and the stream) unless there.
    fn group(&mut self) -> Result<(), QueueError> {
        self.run(|c, k| {
            let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&k.pages)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query(c);
            match r {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                r => r.map(drop),
            }
        })
    }

    /// Runs `f` on the connection, making it again (for up to the
    /// patience) when it broke or Redis is loading.
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut redis::Connection, &Keys) -> redis::RedisResult<T>,
    ) -> Result<T, QueueError> {
        let t0 = Instant::now();
        let mut wait = Duration::from_millis(20);
        loop {
            let r = match self.con.as_mut() {
                Some(c) => f(c, &self.keys),
                None => {
                    let left = self
                        .patience
                        .saturating_sub(t0.elapsed())
                        .max(Duration::from_millis(100));
                    match self.client.get_connection_with_timeout(left) {
                        Ok(c) => {
                            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                            let _ = c.set_write_timeout(Some(Duration::from_secs(30)));
                            self.con = Some(c);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && t0.elapsed() < self.patience => {
                    self.con = None;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    if is_transient(&e) {
                        self.con = None;
                    }
                    return Err(QueueError::Redis {
                        addr: self.addr.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Takes or renews the lister's lease for `ms` as `me`; false while
    /// another holds it.
    pub fn lease(&mut self, me: &str, ms: u64) -> Result<bool, QueueError> {
        let s = Script::new(
            r"local v = redis.call('GET', KEYS[1])
              if v == false or v == ARGV[1] then
                redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                return 1
              end
              return 0",
        );
        let got: i64 = self.run(|c, k| s.key(&k.lease).arg(me).arg(ms).invoke(c))?;
        Ok(got == 1)
    }

    /// Gives the lease up if `me` holds it (a clean end).
    pub fn release(&mut self, me: &str) -> Result<(), QueueError> {
        let s = Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
              return 1",
        );
        let _: i64 = self.run(|c, k| s.key(&k.lease).arg(me).invoke(c))?;
        Ok(())
    }

    /// Enqueues one listing page, listed from `marker` (empty: the first)
    /// as `me`, as one stream entry per chunk, and moves the cursor to
    /// `next` (`None`: the listing ended) in the same step, renewing the
    /// lease for `lease_ms`. Nothing changes unless `me` holds the lease
    /// and the cursor is still `marker`.
    pub fn enqueue(
        &mut self,
        me: &str,
        marker: &str,
        chunks: &[&[String]],
        next: Option<&str>,
        lease_ms: u64,
    ) -> Result<Enqueued, QueueError> {
        let s = Script::new(
            r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
              if redis.call('HGET', KEYS[3], 'listing_done') == '1' then return -1 end
              if (redis.call('HGET', KEYS[3], 'cursor') or '') ~= ARGV[2] then return -1 end
              for i = 7, #ARGV do
                redis.call('XADD', KEYS[2], '*', 'marker', ARGV[2], 'names', ARGV[i])
              end
              redis.call('HINCRBY', KEYS[3], 'listed', ARGV[3])
              if ARGV[4] == '1' then
                redis.call('HSET', KEYS[3], 'listing_done', '1')
                redis.call('HDEL', KEYS[3], 'cursor')
              else
                redis.call('HSET', KEYS[3], 'cursor', ARGV[5])
              end
              redis.call('PEXPIRE', KEYS[1], ARGV[6])
              return 1",
        );
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        // JSON: a name may hold any character, a newline too.
        let joined: Vec<String> = chunks
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| serde_json::to_string(c).expect("json"))
            .collect();
        let got: i64 = self.run(|c, k| {
            let mut inv = s.key(&k.lease);
            inv.key(&k.pages)
                .key(&k.state)
                .arg(me)
                .arg(marker)
                .arg(total)
                .arg(if next.is_none() { "1" } else { "0" })
                .arg(next.unwrap_or(""))
                .arg(lease_ms);
            for j in &joined {
                inv.arg(j);
            }
            inv.invoke(c)
        })?;
        Ok(match got {
            1 => Enqueued::Done,
            0 => Enqueued::NotHolder,
            _ => Enqueued::Moved,
        })
    }

    /// Where listing goes on (`None`: from the first page), and whether it
    /// ended.
    pub fn cursor(&mut self) -> Result<(Option<String>, bool), QueueError> {
        let (c, d): (Option<String>, Option<String>) = self.run(|c, k| {
            redis::cmd("HMGET")
                .arg(&k.state)
                .arg("cursor")
                .arg("listing_done")
                .query(c)
        })?;
        Ok((c, d.as_deref() == Some("1")))
    }

    /// Records what the job lists (the first to say it wins): a rerun of
    /// another source under the same job name is refused.
    pub fn claim_source(&mut self, source: &str) -> Result<String, QueueError> {
        self.run(|c, k| {
            let _: Value = redis::cmd("HSETNX")
                .arg(&k.state)
                .arg("source")
                .arg(source)
                .query(c)?;
            redis::cmd("HGET").arg(&k.state).arg("source").query(c)
        })
    }

    /// The job cannot go on: `why` (kept once, the first).
    pub fn set_error(&mut self, why: &str) -> Result<(), QueueError> {
        self.run(|c, k| {
            redis::cmd("HSETNX")
                .arg(&k.state)
                .arg("error")
                .arg(why)
                .query::<Value>(c)
                .map(drop)
        })
    }

    /// The next page for `consumer`: first (with `claim`) one whose worker
    /// has been silent for `lease_ms` (taken over), else a new one,
    /// waiting up to `block_ms` for it. `None`: nothing to do now.
    pub fn next_page(
        &mut self,
        consumer: &str,
        lease_ms: u64,
        block_ms: u64,
        claim: bool,
    ) -> Result<Option<Page>, QueueError> {
        if claim && let Some(p) = self.claim_page(consumer, lease_ms)? {
            return Ok(Some(p));
        }
        self.new_page(consumer, block_ms)
    }

    /// A page whose worker has been silent for `lease_ms`, taken over.
    fn claim_page(&mut self, consumer: &str, lease_ms: u64) -> Result<Option<Page>, QueueError> {
        let v: Value = self.run(|c, k| {
            redis::cmd("XAUTOCLAIM")
                .arg(&k.pages)
                .arg(GROUP)
                .arg(consumer)
                .arg(lease_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let claimed = match &v {
            Value::Array(parts) if parts.len() >= 2 => entries(&parts[1])?,
            other => return Err(QueueError::Shape(format!("{other:?}"))),
        };
        match claimed.into_iter().next() {
            Some(mut p) => {
                p.deliveries = self.deliveries(&p.id)?.max(2);
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// A page no worker had yet, waiting up to `block_ms` for one.
    fn new_page(&mut self, consumer: &str, block_ms: u64) -> Result<Option<Page>, QueueError> {
        let v: Value = self.run(|c, k| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&k.pages)
                .arg(">")
                .query(c)
        })?;
        let got = match v {
            Value::Nil => None,
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(s)) if s.len() == 2 => entries(&s[1])?.into_iter().next(),
                Some(other) => return Err(QueueError::Shape(format!("{other:?}"))),
                None => None,
            },
            Value::Map(m) => match m.first() {
                Some((_, e)) => entries(e)?.into_iter().next(),
                None => None,
            },
            other => return Err(QueueError::Shape(format!("{other:?}"))),
        };
        Ok(got.map(|mut p| {
            p.deliveries = 1;
            p
        }))
    }

    /// Renews `consumer`'s hold on pages `ids` while they are in progress
    /// (their idle time starts again, so no one takes them over); a page
    /// another worker took over meanwhile stays that worker's. The pages
    /// no longer `consumer`'s come back (they are finished all the same,
    /// and counted once).
    pub fn renew(&mut self, consumer: &str, ids: &[&str]) -> Result<Vec<String>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let s = Script::new(
            r"local lost = {}
              for i = 3, #ARGV do
                local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
                if p[1] and p[1][2] == ARGV[2] then
                  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
                else
                  table.insert(lost, ARGV[i])
                end
              end
              return lost",
        );
        self.run(|c, k| {
            let mut inv = s.key(&k.pages);
            inv.arg(GROUP).arg(consumer);
            for id in ids {
                inv.arg(*id);
            }
            inv.invoke(c)
        })
    }

    /// How many times page `id` has been delivered (0: not pending).
    pub fn deliveries(&mut self, id: &str) -> Result<u64, QueueError> {
        let v: Value = self.run(|c, k| {
            redis::cmd("XPENDING")
                .arg(&k.pages)
                .arg(GROUP)
                .arg(id)
                .arg(id)
                .arg(1)
                .query(c)
        })?;
        match v {
            Value::Array(rows) => match rows.first() {
                Some(Value::Array(r)) if r.len() == 4 => match &r[3] {
                    Value::Int(n) => Ok(*n as u64),
                    other => Err(QueueError::Shape(format!("{other:?}"))),
                },
                None => Ok(0),
                Some(other) => Err(QueueError::Shape(format!("{other:?}"))),
            },
            other => Err(QueueError::Shape(format!("{other:?}"))),
        }
    }

    /// Page `id` is done: `landed` files landed durably, `failed` failed
    /// for good (`failures`: their ledger lines, JSON). Counted only by the
    /// first acknowledgement of the page (true); a page done twice counts
    /// once (false).
    pub fn ack(
        &mut self,
        id: &str,
        landed: u64,
        failed: u64,
        failures: &[String],
    ) -> Result<bool, QueueError> {
        let s = Script::new(
            r"if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
              redis.call('HINCRBY', KEYS[2], 'landed', ARGV[3])
              redis.call('HINCRBY', KEYS[2], 'failed', ARGV[4])
              for i = 5, #ARGV do
                redis.call('XADD', KEYS[3], '*', 'failure', ARGV[i])
              end
              redis.call('XDEL', KEYS[1], ARGV[2])
              return 1",
        );
        let got: i64 = self.run(|c, k| {
            let mut inv = s.key(&k.pages);
            inv.key(&k.state)
                .key(&k.failures)
                .arg(GROUP)
                .arg(id)
                .arg(landed)
                .arg(failed);
            for f in failures {
                inv.arg(f);
            }
            inv.invoke(c)
        })?;
        Ok(got == 1)
    }

    /// Page `page` goes to the dead-letter stream with `reason`, and its
    /// files to the failure stream and count as failed (once, as
    /// [`Queue::ack`]). `failure` makes a name's ledger line.
    pub fn bury(
        &mut self,
        page: &Page,
        reason: &str,
        failure: impl Fn(&str) -> String,
    ) -> Result<bool, QueueError> {
        let s = Script::new(
            r"if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
              redis.call('XADD', KEYS[3], '*', 'page', ARGV[2], 'names', ARGV[3], 'reason', ARGV[4])
              redis.call('HINCRBY', KEYS[2], 'failed', ARGV[5])
              for i = 6, #ARGV do
                redis.call('XADD', KEYS[4], '*', 'failure', ARGV[i])
              end
              redis.call('XDEL', KEYS[1], ARGV[2])
              return 1",
        );
        let lines: Vec<String> = page.names.iter().map(|n| failure(n)).collect();
        let got: i64 = self.run(|c, k| {
            let mut inv = s.key(&k.pages);
            inv.key(&k.state)
                .key(&k.dead)
                .key(&k.failures)
                .arg(GROUP)
                .arg(&page.id)
                .arg(serde_json::to_string(&page.names).expect("json"))
                .arg(reason)
                .arg(page.names.len());
            for l in &lines {
                inv.arg(l);
            }
            inv.invoke(c)
        })?;
        Ok(got == 1)
    }
}

/// Stream entries (`[[id, [field, value, …]], …]`) as pages; entries
/// deleted meanwhile (a nil field list) are left out.
fn entries(v: &Value) -> Result<Vec<Page>, QueueError> {
    let Value::Array(items) = v else {
        return Err(QueueError::Shape(format!("{v:?}")));
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Value::Array(pair) = it else {
            return Err(QueueError::Shape(format!("{it:?}")));
        };
        let (Some(id), Some(fields)) = (pair.first(), pair.get(1)) else {
            return Err(QueueError::Shape(format!("{it:?}")));
        };
        let id: String = redis::from_redis_value(id.clone())?;
        let Value::Array(f) = fields else {
            continue;
        };
        let mut page = Page {
            id,
            marker: String::new(),
            names: Vec::new(),
            deliveries: 0,
        };
        for kv in f.chunks(2) {
            let k: String = redis::from_redis_value(kv[0].clone())?;
            let val: String = redis::from_redis_value(kv.get(1).cloned().unwrap_or(Value::Nil))?;
            match k.as_str() {
                "marker" => page.marker = val,
                "names" => {
                    page.names = serde_json::from_str(&val)
                        .map_err(|e| QueueError::Shape(format!("page {}: {e}", page.id)))?
                }
                _ => {}
            }
        }
        out.push(page);
    }
    Ok(out)
}
