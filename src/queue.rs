//! One job shared by many processes through Redis Streams (issue 25): the
//! primitives the lister and the workers are built on. Not yet wired to a
//! command; `tests/it/queue.rs` drives them against a real redis-server.
//!
//! ```text
//!  lister (holds LEASE)                         workers (consumer group "workers")
//!   page of names ─▶ Lua: lease mine? ─▶ XADD PAGES {marker, names}
//!                          + HSET STATE cursor, HINCRBY listed   (one step)
//!                                             XAUTOCLAIM (a silent worker's page)
//!                                             or XREADGROUP ─▶ fetch ─▶ Lua: XACK == 1?
//!                                                 ─▶ HINCRBY landed/failed + XDEL (one step)
//!   a page delivered too often ─▶ Lua: XACK == 1? ─▶ XADD DEAD, HINCRBY failed, XDEL
//! ```
//!
//! Every key carries the job's name (`bulkget:{JOB}:…`). Each step that
//! changes more than one key is one Lua script, so a process killed
//! anywhere leaves no gap and no double count: a lister that lost its lease
//! cannot enqueue, the cursor moves with the page it lists, and a page done
//! twice (its worker stopped past its lease, another took it over) counts
//! once, since only the first `XACK` of an entry returns 1. Only commands
//! Redis 7.0 has are used.

use redis::{Script, Value};

/// The consumer group every worker reads through.
const GROUP: &str = "workers";

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: an answer of an unexpected shape: {0}")]
    Shape(String),
}

impl From<redis::ParsingError> for QueueError {
    fn from(e: redis::ParsingError) -> QueueError {
        QueueError::Shape(e.to_string())
    }
}

/// One listing page in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The stream entry's ID.
    pub id: String,
    /// The listing cursor the page was listed from (empty: the first).
    pub marker: String,
    pub names: Vec<String>,
}

/// The job's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl Status {
    /// Everything listed has landed or failed.
    pub fn done(&self) -> bool {
        self.listing_done && self.queued == 0 && self.landed + self.failed == self.listed
    }
}

/// A connection to one job's keys.
pub struct Queue {
    con: redis::Connection,
    pages: String,
    state: String,
    lease: String,
    dead: String,
}

impl Queue {
    /// Opens `job` on `client`'s server, creating its consumer group.
    pub fn open(client: &redis::Client, job: &str) -> Result<Queue, QueueError> {
        let k = |s: &str| format!("bulkget:{job}:{s}");
        let mut q = Queue {
            con: client.get_connection()?,
            pages: k("pages"),
            state: k("state"),
            lease: k("lease"),
            dead: k("dead"),
        };
        let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&q.pages)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut q.con);
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        Ok(q)
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
        let got: i64 = s.key(&self.lease).arg(me).arg(ms).invoke(&mut self.con)?;
        Ok(got == 1)
    }

    /// Enqueues one page listed from `marker` as `me`, and moves the
    /// cursor to `next` (`None`: the listing ended) in the same step;
    /// false (nothing changed) unless `me` holds the lease.
    pub fn enqueue(
        &mut self,
        me: &str,
        marker: &str,
        names: &[String],
        next: Option<&str>,
    ) -> Result<bool, QueueError> {
        let s = Script::new(
            r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
              redis.call('XADD', KEYS[2], '*', 'marker', ARGV[2], 'names', ARGV[3])
              redis.call('HINCRBY', KEYS[3], 'listed', ARGV[4])
              if ARGV[5] == '1' then
                redis.call('HSET', KEYS[3], 'listing_done', '1')
                redis.call('HDEL', KEYS[3], 'cursor')
              else
                redis.call('HSET', KEYS[3], 'cursor', ARGV[6])
              end
              return 1",
        );
        let got: i64 = s
            .key(&self.lease)
            .key(&self.pages)
            .key(&self.state)
            .arg(me)
            .arg(marker)
            .arg(names.join("\n"))
            .arg(names.len())
            .arg(if next.is_none() { "1" } else { "0" })
            .arg(next.unwrap_or(""))
            .invoke(&mut self.con)?;
        Ok(got == 1)
    }

    /// Where listing goes on (`None`: from the first page), and whether it
    /// ended.
    pub fn cursor(&mut self) -> Result<(Option<String>, bool), QueueError> {
        let (c, d): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&self.state)
            .arg("cursor")
            .arg("listing_done")
            .query(&mut self.con)?;
        Ok((c, d.as_deref() == Some("1")))
    }

    /// The next page for `consumer`: first one whose worker has been silent
    /// for `lease_ms` (taken over), else a new one, waiting up to
    /// `block_ms` for it. `None`: nothing to do now.
    pub fn next_page(
        &mut self,
        consumer: &str,
        lease_ms: u64,
        block_ms: u64,
    ) -> Result<Option<Page>, QueueError> {
        let v: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.pages)
            .arg(GROUP)
            .arg(consumer)
            .arg(lease_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)?;
        let claimed = match &v {
            Value::Array(parts) if parts.len() >= 2 => entries(&parts[1])?,
            other => return Err(QueueError::Shape(format!("{other:?}"))),
        };
        if let Some(p) = claimed.into_iter().next() {
            return Ok(Some(p));
        }
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.pages)
            .arg(">")
            .query(&mut self.con)?;
        match v {
            Value::Nil => Ok(None),
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(s)) if s.len() == 2 => Ok(entries(&s[1])?.into_iter().next()),
                Some(other) => Err(QueueError::Shape(format!("{other:?}"))),
                None => Ok(None),
            },
            Value::Map(m) => match m.first() {
                Some((_, e)) => Ok(entries(e)?.into_iter().next()),
                None => Ok(None),
            },
            other => Err(QueueError::Shape(format!("{other:?}"))),
        }
    }

    /// Renews `consumer`'s hold on page `id` while it is in progress (its
    /// idle time starts again, so no one takes it over).
    pub fn renew(&mut self, consumer: &str, id: &str) -> Result<(), QueueError> {
        let _: Value = redis::cmd("XCLAIM")
            .arg(&self.pages)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(id)
            .arg("JUSTID")
            .query(&mut self.con)?;
        Ok(())
    }

    /// How many times page `id` has been delivered (0: not pending).
    pub fn deliveries(&mut self, id: &str) -> Result<u64, QueueError> {
        let v: Value = redis::cmd("XPENDING")
            .arg(&self.pages)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query(&mut self.con)?;
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
    /// for good. Counted only by the first acknowledgement of the page
    /// (true); a page done twice counts once (false).
    pub fn ack(&mut self, id: &str, landed: u64, failed: u64) -> Result<bool, QueueError> {
        let s = Script::new(
            r"if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
              redis.call('HINCRBY', KEYS[2], 'landed', ARGV[3])
              redis.call('HINCRBY', KEYS[2], 'failed', ARGV[4])
              redis.call('XDEL', KEYS[1], ARGV[2])
              return 1",
        );
        let got: i64 = s
            .key(&self.pages)
            .key(&self.state)
            .arg(GROUP)
            .arg(id)
            .arg(landed)
            .arg(failed)
            .invoke(&mut self.con)?;
        Ok(got == 1)
    }

    /// Page `page` goes to the dead-letter stream with `reason`, and its
    /// files count as failed (once, as [`Queue::ack`]).
    pub fn bury(&mut self, page: &Page, reason: &str) -> Result<bool, QueueError> {
        let s = Script::new(
            r"if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
              redis.call('XADD', KEYS[3], '*', 'page', ARGV[2], 'names', ARGV[3], 'reason', ARGV[4])
              redis.call('HINCRBY', KEYS[2], 'failed', ARGV[5])
              redis.call('XDEL', KEYS[1], ARGV[2])
              return 1",
        );
        let got: i64 = s
            .key(&self.pages)
            .key(&self.state)
            .key(&self.dead)
            .arg(GROUP)
            .arg(&page.id)
            .arg(page.names.join("\n"))
            .arg(reason)
            .arg(page.names.len())
            .invoke(&mut self.con)?;
        Ok(got == 1)
    }

    /// The job's figures now.
    pub fn status(&mut self) -> Result<Status, QueueError> {
        let (listed, landed, failed, done): (
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<String>,
        ) = redis::cmd("HMGET")
            .arg(&self.state)
            .arg("listed")
            .arg("landed")
            .arg("failed")
            .arg("listing_done")
            .query(&mut self.con)?;
        let queued: u64 = redis::cmd("XLEN").arg(&self.pages).query(&mut self.con)?;
        let v: Value = redis::cmd("XPENDING")
            .arg(&self.pages)
            .arg(GROUP)
            .query(&mut self.con)?;
        let in_progress = match v {
            Value::Array(a) => match a.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        Ok(Status {
            listed: listed.unwrap_or(0),
            landed: landed.unwrap_or(0),
            failed: failed.unwrap_or(0),
            queued,
            in_progress,
            listing_done: done.as_deref() == Some("1"),
        })
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
        };
        for kv in f.chunks(2) {
            let k: String = redis::from_redis_value(kv[0].clone())?;
            let val: String = redis::from_redis_value(kv.get(1).cloned().unwrap_or(Value::Nil))?;
            match k.as_str() {
                "marker" => page.marker = val,
                "names" => page.names = val.lines().map(str::to_string).collect(),
                _ => {}
            }
        }
        out.push(page);
    }
    Ok(out)
}
