//! Landing an answer's body in a sink: the one piece of the hot path that
//! `mirror` and `get` share. Errors carry whether the connection can carry on
//! (the body was read to its end and the server keeps the connection open).

use super::Conn;
use super::http1::Head;
use crate::error::FetchError;
use crate::sink::{Sink, SinkFile};

/// Whether the connection can carry another answer after this one.
pub fn reusable(head: &Head) -> bool {
    head.multiplexed
        || (head.bodiless || head.content_length.is_some() || head.chunked) && !head.close
}

/// Reads and drops the body of an answer that is not the file (an error
/// status), and returns that status as the error.
pub async fn refuse(c: &mut Conn, head: &Head) -> (FetchError, bool) {
    if let Err(e) = c.read_body(head, |_| Ok(())).await {
        return (e, false);
    }
    let err = FetchError::Status {
        status: head.status,
        retry_after: head.retry_after,
    };
    (err, reusable(head))
}

/// Streams the body into a new file `name` of `sink`, showing every chunk to
/// `seen` (a hasher, say). The file is returned uncommitted: the caller
/// commits it once satisfied, or drops it and nothing appears.
pub async fn receive<'s, S: Sink>(
    c: &mut Conn,
    head: &Head,
    sink: &'s S,
    name: &str,
    mut seen: impl FnMut(&[u8]),
) -> Result<(S::File<'s>, u64), (FetchError, bool)> {
    let keep = reusable(head);
    let mut file = match sink.create(name) {
        Ok(f) => Some(f),
        Err(e) => {
            if let Err(e) = c.read_body(head, |_| Ok(())).await {
                return Err((e, false));
            }
            return Err((FetchError::Sink(e), keep));
        }
    };
    let mut werr = None;
    let got = c
        .read_body(head, |chunk| {
            seen(chunk);
            if let Some(Err(e)) = file.as_mut().map(|f| f.write(chunk)) {
                werr = Some(e);
                file = None;
            }
            Ok(())
        })
        .await
        .map_err(|e| (e, false))?;
    match (werr, file) {
        (Some(e), _) => Err((FetchError::Sink(e), keep)),
        (None, Some(f)) => Ok((f, got)),
        (None, None) => unreachable!("the file is only dropped on a write error"),
    }
}

/// [`receive`] and commit.
pub async fn land<S: Sink>(
    c: &mut Conn,
    head: &Head,
    sink: &S,
    name: &str,
) -> Result<u64, (FetchError, bool)> {
    let (f, got) = receive(c, head, sink, name, |_| {}).await?;
    f.commit()
        .map_err(|e| (FetchError::Sink(e), reusable(head)))?;
    Ok(got)
}
