//! `bulkget::par`: map an async function over many inputs with a bounded
//! number of tasks at once and a timeout per task, and keep every failure
//! with its input instead of stopping at the first one. This is the
//! `parallel` library's model (seed 002) and its names: `failures()`,
//! `failed()`, `succeeded()`, `replace_failed(v)`.
//!
//! ```
//! use std::time::Duration;
//! use bulkget::par::{Par, TaskError};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! let results = Par::new(8)
//!     .timeout(Duration::from_millis(200))
//!     .map(vec![2u64, 0, 5], |x| async move {
//!         if x == 0 {
//!             return Err("zero");
//!         }
//!         Ok(10 / x)
//!     })
//!     .await;
//! assert!(results.failures());
//! assert_eq!(results.succeeded().copied().collect::<Vec<_>>(), [5, 2]);
//! let f = &results.failed()[0];
//! assert_eq!((f.index, f.input), (1, 0));
//! assert!(matches!(f.error, TaskError::Failed("zero")));
//! assert_eq!(results.replace_failed(0), [5, 0, 2]);
//! # });
//! ```
//!
//! Results come back by position ([`Par::map`]) or by key
//! ([`Par::map_keyed`], for named inputs). For inputs too many to hold,
//! [`Par::stream`] yields each outcome as it completes, with only the
//! tasks in flight in memory:
//!
//! ```
//! use futures_util::StreamExt;
//! use bulkget::par::Par;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! let mut done = 0u64;
//! let mut s = Par::new(64).stream(0..100_000u64, |x| async move { Ok::<_, ()>(x * 2) });
//! while let Some(o) = s.next().await {
//!     done += o.result.unwrap() / 2 - o.input + 1;
//! }
//! assert_eq!(done, 100_000);
//! # });
//! ```
//!
//! A timeout drops the task's future (it is cancelled at its next await)
//! and records [`TaskError::TimedOut`] with the input. Timeouts need a tokio
//! runtime with time enabled; the tasks run on the caller's task, so nothing
//! needs to be `Send`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};

/// How many tasks at once, and how long each may take.
#[derive(Clone, Copy, Debug)]
pub struct Par {
    workers: usize,
    timeout: Option<Duration>,
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError<E> {
    /// The function returned this error.
    Failed(E),
    /// It did not finish within the timeout.
    TimedOut(Duration),
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => e.fmt(f),
            TaskError::TimedOut(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

/// A failed task: its position, its input and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed<T, E> {
    pub index: usize,
    pub input: T,
    pub error: TaskError<E>,
}

/// One finished task, as [`Par::stream`] yields it (completion order).
#[derive(Debug)]
pub struct Outcome<T, R, E> {
    pub index: usize,
    pub input: T,
    pub result: Result<R, TaskError<E>>,
}

/// Every task's outcome, by position.
#[derive(Debug)]
pub struct Results<T, R, E> {
    slots: Vec<Result<R, Failed<T, E>>>,
}

impl<T, R, E> Results<T, R, E> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when any task failed (or timed out).
    pub fn failures(&self) -> bool {
        self.slots.iter().any(Result::is_err)
    }

    /// The failed tasks, in input order.
    pub fn failed(&self) -> Vec<&Failed<T, E>> {
        self.slots.iter().filter_map(|s| s.as_ref().err()).collect()
    }

    /// The successful results, in input order.
    pub fn succeeded(&self) -> impl Iterator<Item = &R> {
        self.slots.iter().filter_map(|s| s.as_ref().ok())
    }

    /// Task `i`'s outcome.
    pub fn get(&self, i: usize) -> Option<Result<&R, &Failed<T, E>>> {
        self.slots.get(i).map(Result::as_ref)
    }

    /// Every result in input order, `v` in place of each failure.
    pub fn replace_failed(self, v: R) -> Vec<R>
    where
        R: Clone,
    {
        self.slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|_| v.clone()))
            .collect()
    }

    /// Every outcome in input order.
    pub fn into_vec(self) -> Vec<Result<R, Failed<T, E>>> {
        self.slots
    }
}

/// Every task's outcome, by the key its input was given.
#[derive(Debug)]
pub struct Keyed<K, T, R, E> {
    pub map: BTreeMap<K, Result<R, Failed<T, E>>>,
}

impl<K: Ord, T, R, E> Keyed<K, T, R, E> {
    pub fn failures(&self) -> bool {
        self.map.values().any(Result::is_err)
    }

    /// The failed tasks with their keys, in key order.
    pub fn failed(&self) -> Vec<(&K, &Failed<T, E>)> {
        self.map
            .iter()
            .filter_map(|(k, s)| s.as_ref().err().map(|f| (k, f)))
            .collect()
    }

    /// The successful results with their keys, in key order.
    pub fn succeeded(&self) -> impl Iterator<Item = (&K, &R)> {
        self.map
            .iter()
            .filter_map(|(k, s)| s.as_ref().ok().map(|r| (k, r)))
    }

    pub fn get(&self, k: &K) -> Option<Result<&R, &Failed<T, E>>> {
        self.map.get(k).map(Result::as_ref)
    }

    /// Every result by key, `v` in place of each failure.
    pub fn replace_failed(self, v: R) -> BTreeMap<K, R>
    where
        R: Clone,
    {
        self.map
            .into_iter()
            .map(|(k, s)| (k, s.unwrap_or_else(|_| v.clone())))
            .collect()
    }
}

type Task<'a, T, R, E> = Pin<Box<dyn Future<Output = Outcome<T, R, E>> + 'a>>;

/// The stream of [`Par::stream`]: reads inputs only as tasks finish.
pub struct Tasks<'a, I: Iterator, R, E, F> {
    inputs: std::iter::Enumerate<I>,
    f: F,
    running: FuturesUnordered<Task<'a, I::Item, R, E>>,
    par: Par,
}

impl<'a, I, T, R, E, F, Fut> Tasks<'a, I, R, E, F>
where
    I: Iterator<Item = T>,
    T: Clone + 'a,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<R, E>> + 'a,
{
    fn fill(&mut self) {
        while self.running.len() < self.par.workers {
            let Some((index, input)) = self.inputs.next() else {
                return;
            };
            let fut = (self.f)(input.clone());
            let timeout = self.par.timeout;
            self.running.push(Box::pin(async move {
                let result = match timeout {
                    Some(d) => match tokio::time::timeout(d, fut).await {
                        Ok(r) => r.map_err(TaskError::Failed),
                        Err(_) => Err(TaskError::TimedOut(d)),
                    },
                    None => fut.await.map_err(TaskError::Failed),
                };
                Outcome {
                    index,
                    input,
                    result,
                }
            }));
        }
    }
}

impl<'a, I, T, R, E, F, Fut> Stream for Tasks<'a, I, R, E, F>
where
    I: Iterator<Item = T> + Unpin,
    T: Clone + 'a,
    F: FnMut(T) -> Fut + Unpin,
    Fut: Future<Output = Result<R, E>> + 'a,
{
    type Item = Outcome<T, R, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.fill();
        let r = self.running.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = r {
            // Room for the next input before the caller polls again.
            self.fill();
        }
        r
    }
}

impl Par {
    /// At most `workers` tasks at once (at least one).
    pub fn new(workers: usize) -> Par {
        Par {
            workers: workers.max(1),
            timeout: None,
        }
    }

    /// Each task fails with [`TaskError::TimedOut`] past `d`.
    pub fn timeout(self, d: Duration) -> Par {
        Par {
            timeout: Some(d),
            ..self
        }
    }

    /// Runs `f` on every input; outcomes in completion order, reading the
    /// inputs only as far as the tasks in flight need.
    pub fn stream<'a, I, T, R, E, F, Fut>(&self, inputs: I, f: F) -> Tasks<'a, I::IntoIter, R, E, F>
    where
        I: IntoIterator<Item = T>,
        T: Clone + 'a,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, E>> + 'a,
    {
        Tasks {
            inputs: inputs.into_iter().enumerate(),
            f,
            running: FuturesUnordered::new(),
            par: *self,
        }
    }

    /// Runs `f` on every input; every outcome by position.
    pub async fn map<'a, I, T, R, E, F, Fut>(&self, inputs: I, f: F) -> Results<T, R, E>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Unpin,
        T: Clone + 'a,
        F: FnMut(T) -> Fut + Unpin,
        Fut: Future<Output = Result<R, E>> + 'a,
    {
        let mut slots: Vec<Option<Result<R, Failed<T, E>>>> = Vec::new();
        let mut s = self.stream(inputs, f);
        while let Some(o) = s.next().await {
            if slots.len() <= o.index {
                slots.resize_with(o.index + 1, || None);
            }
            slots[o.index] = Some(o.result.map_err(|error| Failed {
                index: o.index,
                input: o.input,
                error,
            }));
        }
        Results {
            slots: slots
                .into_iter()
                .map(|s| s.expect("every task reports"))
                .collect(),
        }
    }

    /// Runs `f` on every named input; every outcome by its key.
    pub async fn map_keyed<'a, I, K, T, R, E, F, Fut>(
        &self,
        inputs: I,
        mut f: F,
    ) -> Keyed<K, T, R, E>
    where
        I: IntoIterator<Item = (K, T)>,
        I::IntoIter: Unpin,
        K: Ord + Clone + 'a,
        T: Clone + 'a,
        F: FnMut(T) -> Fut + Unpin,
        Fut: Future<Output = Result<R, E>> + 'a,
    {
        let mut map = BTreeMap::new();
        let mut s = self.stream(inputs, |(_, t)| f(t));
        while let Some(o) = s.next().await {
            let (k, input) = o.input;
            let r = o.result.map_err(|error| Failed {
                index: o.index,
                input,
                error,
            });
            map.insert(k, r);
        }
        Keyed { map }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn bounded_workers_and_timeouts_kept_with_their_inputs() {
        rt().block_on(async {
            let (now, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
            let r = Par::new(3)
                .timeout(Duration::from_secs(1))
                .map(0..20u64, |x| {
                    let (now, most) = (now.clone(), most.clone());
                    async move {
                        now.set(now.get() + 1);
                        most.set(most.get().max(now.get()));
                        // 7 sleeps past the timeout; 13 fails.
                        let ms = if x == 7 { 5_000 } else { 10 * (x % 4) };
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        now.set(now.get() - 1);
                        if x == 13 {
                            Err(format!("bad {x}"))
                        } else {
                            Ok(x * x)
                        }
                    }
                })
                .await;
            assert_eq!(most.get(), 3, "never more than 3 at once");
            assert_eq!(r.len(), 20);
            assert!(r.failures());
            let f = r.failed();
            assert_eq!(f.len(), 2);
            assert_eq!((f[0].index, f[0].input), (7, 7));
            assert_eq!(f[0].error, TaskError::TimedOut(Duration::from_secs(1)));
            assert_eq!(f[1].error, TaskError::Failed("bad 13".to_string()));
            assert_eq!(r.get(3), Some(Ok(&9)));
            assert_eq!(r.succeeded().count(), 18);
            let v = r.replace_failed(0);
            assert_eq!((v[7], v[12], v[13], v[19]), (0, 144, 0, 361));
        });
    }

    #[test]
    fn keyed_inputs_and_a_stream_that_reads_only_what_it_needs() {
        rt().block_on(async {
            let r = Par::new(2)
                .map_keyed([("a", 1), ("b", 0), ("c", 4)], |x: i32| async move {
                    if x == 0 { Err("zero") } else { Ok(8 / x) }
                })
                .await;
            assert_eq!(r.get(&"c"), Some(Ok(&2)));
            let f = r.failed();
            assert_eq!((*f[0].0, f[0].1.input), ("b", 0));
            assert_eq!(
                r.replace_failed(-1).into_iter().collect::<Vec<_>>(),
                [("a", 8), ("b", -1), ("c", 2)]
            );

            // An endless input: only the tasks in flight are read from it.
            let pulled = Rc::new(Cell::new(0u64));
            let p = pulled.clone();
            let inputs = (0u64..).inspect(move |_| p.set(p.get() + 1));
            let mut s = Par::new(4).stream(inputs, |x| async move { Ok::<_, ()>(x) });
            let mut seen = 0;
            while let Some(o) = s.next().await {
                assert_eq!(o.result, Ok(o.input));
                seen += 1;
                if seen == 10 {
                    break;
                }
            }
            assert!(pulled.get() <= 10 + 4, "read {} inputs", pulled.get());
        });
    }
}
