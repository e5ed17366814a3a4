//! Receive coalescing: a fetching thread that has run out of work while
//! many of its requests are in flight lingers a moment before it sleeps on
//! its sockets, so that the answers arriving meanwhile are read in one go.
//!
//! A NIC's interrupt moderation, for the same reason: a server that writes
//! each answer as soon as it is ready (nginx does) otherwise wakes the
//! thread for every few answers, and each wake costs a context switch, an
//! `epoll_wait`, small reads, and the ACKs those reads send (on loopback the
//! kernel runs the server's side of each ACK in the reader's time). Measured
//! against nginx over https (BENCHMARKS.md, session 11): 20–30 % less client
//! CPU per file and more files/s, the CPU saved going to the server.
//!
//! [`LINGER`] is far below any round trip the adaptive concurrency judges,
//! and a pipeline keeps the server busy meanwhile. With few requests in
//! flight (one file, a redirect chain, a HEAD then a GET) there is little to
//! coalesce and each wait would be added to a round trip, so the thread does
//! not linger: [`Flight`] counts the requests in flight on each thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::Deref;
use std::time::Duration;

/// How long a busy thread lingers before it sleeps on its sockets.
pub const LINGER: Duration = Duration::from_micros(250);

/// Requests in flight on this thread from which it lingers.
pub const LINGER_FROM: usize = 16;

thread_local! {
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// The requests in flight on this thread, in all [`Flight`]s.
pub fn in_flight() -> usize {
    IN_FLIGHT.with(Cell::get)
}

fn add(n: usize) {
    IN_FLIGHT.with(|c| c.set(c.get() + n));
}

fn sub(n: usize) {
    IN_FLIGHT.with(|c| c.set(c.get().saturating_sub(n)));
}

/// What a fetching runtime does before its thread parks.
#[derive(Clone, Copy, Debug)]
pub struct Linger(Duration);

impl Linger {
    /// [`LINGER`], or `BULKGET_LINGER_US` microseconds (0: never), for
    /// benchmarks that compare the two.
    pub fn from_env() -> Linger {
        Linger(
            std::env::var("BULKGET_LINGER_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(LINGER, Duration::from_micros),
        )
    }

    /// Lingers when this thread has at least [`LINGER_FROM`] requests in
    /// flight.
    pub fn before_park(self) {
        if !self.0.is_zero() && in_flight() >= LINGER_FROM {
            std::thread::sleep(self.0);
        }
    }
}

/// A connection's requests in flight, oldest first, counted in this
/// thread's total while they are here (a queue that must stay on the thread
/// it was made on, as a connection task does).
pub struct Flight<T> {
    q: VecDeque<T>,
}

impl<T> Flight<T> {
    pub fn new() -> Flight<T> {
        Flight { q: VecDeque::new() }
    }

    pub fn push_back(&mut self, t: T) {
        self.q.push_back(t);
        add(1);
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let t = self.q.pop_front();
        if t.is_some() {
            sub(1);
        }
        t
    }

    pub fn pop_back(&mut self) -> Option<T> {
        let t = self.q.pop_back();
        if t.is_some() {
            sub(1);
        }
        t
    }

    pub fn iter_mut(&mut self) -> std::collections::vec_deque::IterMut<'_, T> {
        self.q.iter_mut()
    }
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight::new()
    }
}

impl<T> Deref for Flight<T> {
    type Target = VecDeque<T>;
    fn deref(&self) -> &VecDeque<T> {
        &self.q
    }
}

impl<T> Drop for Flight<T> {
    fn drop(&mut self) {
        sub(self.q.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_every_queue_on_the_thread() {
        std::thread::spawn(|| {
            let mut a = Flight::new();
            let mut b = Flight::new();
            for i in 0..10 {
                a.push_back(i);
            }
            b.push_back(1);
            b.push_back(2);
            assert_eq!(in_flight(), 12);
            assert_eq!(a.pop_front(), Some(0));
            assert_eq!(b.pop_back(), Some(2));
            assert_eq!(in_flight(), 10);
            drop(a);
            assert_eq!(in_flight(), 1);
            assert_eq!(b.pop_front(), Some(1));
            assert_eq!(b.pop_front(), None);
            assert_eq!(in_flight(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_lingers_only_with_many_requests_in_flight() {
        std::thread::spawn(|| {
            let l = Linger(Duration::from_millis(200));
            let t = std::time::Instant::now();
            l.before_park();
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "lingered with nothing in flight"
            );
            let mut q = Flight::new();
            for i in 0..LINGER_FROM {
                q.push_back(i);
            }
            let t = std::time::Instant::now();
            l.before_park();
            assert!(t.elapsed() >= Duration::from_millis(200), "did not linger");
        })
        .join()
        .unwrap();
    }
}
