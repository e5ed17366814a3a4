//! What a job's state tells: workers' heartbeats, pages in progress, the
//! failure ledger, the figures (`bulkget status`), and forgetting a job.

use redis::Value;

use super::{GROUP, Queue, QueueError, Status, Worker};

impl Queue {
    /// `w` says it is alive (and how it goes).
    pub fn heartbeat(&mut self, w: &Worker) -> Result<(), QueueError> {
        let v = serde_json::to_string(w).expect("json");
        self.run(|c, k| {
            redis::cmd("HSET")
                .arg(&k.workers)
                .arg(&w.name)
                .arg(&v)
                .query::<Value>(c)
                .map(drop)
        })
    }

    /// Every worker that said it is alive, by name.
    pub fn workers(&mut self) -> Result<Vec<Worker>, QueueError> {
        let m: Vec<(String, String)> =
            self.run(|c, k| redis::cmd("HGETALL").arg(&k.workers).query(c))?;
        let mut out: Vec<Worker> = m
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Pages in progress per consumer.
    pub fn in_progress(&mut self) -> Result<Vec<(String, u64)>, QueueError> {
        let v: Value = self.run(|c, k| redis::cmd("XPENDING").arg(&k.pages).arg(GROUP).query(c))?;
        let mut out = Vec::new();
        if let Value::Array(a) = v
            && let Some(Value::Array(per)) = a.get(3)
        {
            for row in per {
                if let Value::Array(r) = row
                    && r.len() == 2
                {
                    let name: String = redis::from_redis_value(r[0].clone())?;
                    let n: String = redis::from_redis_value(r[1].clone())?;
                    out.push((name, n.parse().unwrap_or(0)));
                }
            }
        }
        Ok(out)
    }

    /// The job's failure ledger, `count` lines after `after` (a stream
    /// ID; "-" from the start): the lines and the last ID.
    pub fn failures(
        &mut self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<String>, Option<String>), QueueError> {
        let start = if after == "-" {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let v: Value = self.run(|c, k| {
            redis::cmd("XRANGE")
                .arg(&k.failures)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query(c)
        })?;
        let Value::Array(items) = v else {
            return Err(QueueError::Shape(format!("{v:?}")));
        };
        let (mut lines, mut last) = (Vec::new(), None);
        for it in items {
            if let Value::Array(pair) = it
                && let (Some(id), Some(Value::Array(f))) = (pair.first(), pair.get(1))
            {
                last = Some(redis::from_redis_value::<String>(id.clone())?);
                if let Some(v) = f.get(1) {
                    lines.push(redis::from_redis_value::<String>(v.clone())?);
                }
            }
        }
        Ok((lines, last))
    }

    /// Removes every key of the job.
    pub fn forget(&mut self) -> Result<u64, QueueError> {
        self.run(|c, k| {
            redis::cmd("DEL")
                .arg(&k.pages)
                .arg(&k.state)
                .arg(&k.lease)
                .arg(&k.dead)
                .arg(&k.failures)
                .arg(&k.workers)
                .query(c)
        })
    }

    /// Whether the job has any key (it was started and not forgotten).
    pub fn exists(&mut self) -> Result<bool, QueueError> {
        let n: u64 = self.run(|c, k| redis::cmd("EXISTS").arg(&k.state).query(c))?;
        Ok(n > 0)
    }

    /// The job's figures now.
    pub fn status(&mut self) -> Result<Status, QueueError> {
        #[allow(clippy::type_complexity)]
        let ((listed, landed, failed, done, error, source), queued, v): (
            (
                Option<u64>,
                Option<u64>,
                Option<u64>,
                Option<String>,
                Option<String>,
                Option<String>,
            ),
            u64,
            Value,
        ) = self.run(|c, k| {
            redis::pipe()
                .cmd("HMGET")
                .arg(&k.state)
                .arg("listed")
                .arg("landed")
                .arg("failed")
                .arg("listing_done")
                .arg("error")
                .arg("source")
                .cmd("XLEN")
                .arg(&k.pages)
                .cmd("XPENDING")
                .arg(&k.pages)
                .arg(GROUP)
                .query(c)
        })?;
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
            error,
            source,
        })
    }
}
