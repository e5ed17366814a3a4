//! `get`'s input from an object store's listing (`mirror s3://…`,
//! `az://…`, `gs://…`): each page of [`crate::store::page`] becomes jobs,
//! one per object (a presigned URL, a name checked as a file name, the
//! listed size), handed on by the [`Feeder`] and registered with the run's
//! journal tracker, whose cursor is the key the next run lists after.

use crate::error::RunError;
use crate::fetch::Conn;
use crate::fetch::http1::Method;
use crate::job::{Job, Object};
use crate::pipeline::Shared;
use crate::store::{Location, Store, page};

use super::{Feeder, GetPlan};

/// Lists every object under the prefix (after the key `start`, where a
/// killed run's journal left off) and feeds one job per object, each page
/// registered with the run's tracker. Ok(true) when the listing was passed
/// on to its end.
pub fn feed(
    sh: &Shared<GetPlan>,
    store: &Store,
    loc: &Location,
    start: Option<String>,
    checksum: bool,
    tx: async_channel::Sender<crate::pipeline::Batch<Job>>,
) -> Result<bool, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(e.to_string()))?;
    let mut feed = Feeder::new(sh, tx);
    let r = rt.block_on(list(sh, store, loc, start, checksum, &mut feed));
    match r {
        Ok(complete) => Ok(feed.finish(complete)),
        Err(e) => {
            feed.finish(false);
            Err(e)
        }
    }
}

async fn list(
    sh: &Shared<GetPlan>,
    store: &Store,
    loc: &Location,
    start: Option<String>,
    checksum: bool,
    feed: &mut Feeder<'_>,
) -> Result<bool, RunError> {
    let mut conn: Option<Conn> = None;
    let mut token: Option<String> = None;
    // The key this page starts after: the journal's cursor when resumed.
    let mut after = start;
    for seq in 0.. {
        if feed.stopping() {
            return Ok(false);
        }
        let url = store.list_url(&loc.prefix, after.as_deref(), token.as_deref(), false);
        let (net, policy, stop) = (&sh.ctx.net, &sh.ctx.policy, &*sh.ctx.stop);
        let page = page(net, policy, stop, &mut conn, &url, store.kind()).await?;
        let scheme = loc.kind.scheme();
        for o in &page.unreadable {
            let why = "the key is not UTF-8 once decoded".to_string();
            feed.bad(
                &format!("key {o}"),
                &format!("{scheme}://{}/{o}", loc.bucket),
                why,
            );
        }
        let resume = store.resume_after(&page, page.objects.last().map(|o| o.key.as_str()));
        let header_auth = sh.plan.store.is_some() && store.signs_in_headers();
        let mut jobs = Vec::with_capacity(page.objects.len());
        for o in page.objects {
            let shown = format!("{scheme}://{}/{}", loc.bucket, o.key);
            let name = o.key.strip_prefix(&loc.prefix).unwrap_or(&o.key);
            if let Err(e) = crate::names::check(name) {
                let why = format!("the key cannot be a file name here: {e}");
                feed.bad(&format!("key {:?}", o.key), &shown, why);
                continue;
            }
            jobs.push(Job {
                line: 0,
                url: store.object_url(Method::Get, &o.key),
                name: name.to_string(),
                sha256: None,
                object: Some(Box::new(Object {
                    shown,
                    size: Some(o.size),
                    crc32c: o.crc32c.filter(|_| checksum && o.md5.is_none()),
                    md5: o.md5.filter(|_| checksum),
                    sign: header_auth,
                })),
            });
        }
        let more = page.truncated && page.next.is_some();
        let next = if more {
            resume.clone().or(after.clone())
        } else {
            None
        };
        let marker = after.clone();
        let sent = feed.page(seq, jobs, |parts| {
            if let Some(t) = &sh.tracker {
                t.page_listed(seq, marker, parts, next);
            }
        });
        if !sent {
            return Ok(false);
        }
        if !more {
            return Ok(true);
        }
        token = page.next;
        after = resume.or(after);
    }
    unreachable!("pages are counted by u64")
}
