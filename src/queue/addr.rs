//! Where a shared job lives: `redis://[USER:PASSWORD@]HOST[:PORT]/[DB/]JOB`,
//! `rediss://…` (TLS), or `unix:///PATH/TO/SOCKET#JOB`; a bare `JOB` takes
//! its server from `REDIS_URL`.

use super::QueueError;

/// A job's Redis server and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// What the redis crate connects to.
    pub url: String,
    pub job: String,
    /// The address as said in messages (no password).
    pub shown: String,
    /// For `rediss://`: the CA certificates (PEM) to trust instead of the
    /// platform's (`--cacert`).
    pub roots: Option<Vec<u8>>,
}

fn bad(spec: &str, why: &str) -> QueueError {
    QueueError::Address(format!("--queue {spec:?}: {why}"))
}

/// A job name: letters, digits and `-_.:`; it becomes part of every key.
fn check_job(spec: &str, job: &str) -> Result<(), QueueError> {
    if job.is_empty() || job.len() > 200 {
        return Err(bad(spec, "no job name (redis://HOST:PORT/JOB)"));
    }
    if !job
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(bad(spec, "a job name is letters, digits and - _ . : only"));
    }
    Ok(())
}

impl Address {
    /// Trusts the CA certificates in `files` (PEM) for `rediss://`.
    pub fn trust(&mut self, files: &[std::path::PathBuf]) -> Result<(), QueueError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut pem = Vec::new();
        for f in files {
            let b = std::fs::read(f)
                .map_err(|e| QueueError::Address(format!("--cacert {}: {e}", f.display())))?;
            pem.extend_from_slice(&b);
            pem.push(b'\n');
        }
        self.roots = Some(pem);
        Ok(())
    }

    /// Parses `spec`; `redis_url` is `REDIS_URL`'s value, for a bare name.
    pub fn parse(spec: &str, redis_url: Option<&str>) -> Result<Address, QueueError> {
        let lower = spec.to_ascii_lowercase();
        let Some((scheme, rest)) = lower
            .split_once("://")
            .map(|(s, _)| (s.to_string(), &spec[s.len() + 3..]))
        else {
            // A bare job name: the server from REDIS_URL.
            let base = redis_url.filter(|u| !u.is_empty()).ok_or_else(|| {
                bad(
                    spec,
                    "a job name alone needs REDIS_URL (or give redis://HOST:PORT/JOB)",
                )
            })?;
            check_job(spec, spec)?;
            let unix = base.to_ascii_lowercase().contains("unix://");
            let full = if unix {
                format!("{base}#{spec}")
            } else {
                format!("{}/{spec}", base.trim_end_matches('/'))
            };
            let a = Address::parse(&full, None).map_err(|e| {
                bad(
                    spec,
                    &format!("REDIS_URL {base:?} is not redis://HOST:PORT[/DB] ({e})"),
                )
            })?;
            return Ok(a);
        };
        match scheme.as_str() {
            "redis" | "rediss" | "valkey" | "valkeys" => {
                let (auth_host, path) = rest
                    .split_once('/')
                    .ok_or_else(|| bad(spec, "no job name (redis://HOST:PORT/JOB)"))?;
                if auth_host.rsplit('@').next().unwrap_or("").is_empty() {
                    return Err(bad(spec, "no host"));
                }
                let (db, job) = match path.split_once('/') {
                    Some((db, job)) => {
                        db.parse::<u32>()
                            .map_err(|_| bad(spec, "the path is /JOB or /DB/JOB"))?;
                        (Some(db), job)
                    }
                    None => (None, path),
                };
                check_job(spec, job)?;
                let url = format!("{scheme}://{auth_host}/{}", db.unwrap_or("0"));
                let host = auth_host.rsplit('@').next().unwrap_or("");
                Ok(Address {
                    url,
                    job: job.to_string(),
                    shown: format!("{scheme}://{host}/{job}"),
                    roots: None,
                })
            }
            "unix" | "redis+unix" | "valkey+unix" => {
                let (sock, job) = rest.split_once('#').ok_or_else(|| {
                    bad(spec, "a unix socket's job goes after '#': unix:///PATH#JOB")
                })?;
                check_job(spec, job)?;
                Ok(Address {
                    url: format!("{scheme}://{sock}"),
                    job: job.to_string(),
                    shown: format!(
                        "{scheme}://{}#{job}",
                        sock.split('?').next().unwrap_or(sock)
                    ),
                    roots: None,
                })
            }
            other => Err(bad(
                spec,
                &format!("{other}:// is not a Redis address (redis://, rediss://, unix://)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a = Address::parse("redis://:pw@h:6380/job-1", None).unwrap();
        assert_eq!(a.url, "redis://:pw@h:6380/0");
        assert_eq!(
            (a.job.as_str(), a.shown.as_str()),
            ("job-1", "redis://h:6380/job-1")
        );
        let a = Address::parse("REDISS://h/3/j", None).unwrap();
        assert_eq!((a.url.as_str(), a.job.as_str()), ("rediss://h/3", "j"));
        let a = Address::parse("unix:///run/r.sock#j", None).unwrap();
        assert_eq!(
            (a.url.as_str(), a.job.as_str()),
            ("unix:///run/r.sock", "j")
        );
        let a = Address::parse("j", Some("redis://h:1")).unwrap();
        assert_eq!((a.url.as_str(), a.job.as_str()), ("redis://h:1/0", "j"));
        let a = Address::parse("j", Some("unix:///s")).unwrap();
        assert_eq!((a.url.as_str(), a.job.as_str()), ("unix:///s", "j"));
        for bad in [
            "redis://h:1",
            "redis://h:1/",
            "redis://h/x/j",
            "http://h/j",
            "redis://h/a b",
            "unix:///s",
        ] {
            assert!(Address::parse(bad, None).is_err(), "{bad}");
        }
        let e = Address::parse("j", None).unwrap_err().to_string();
        assert!(e.contains("REDIS_URL"), "{e}");
    }
}
