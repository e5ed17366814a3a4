//! Answers in input order: a bounded reorder window between the probes,
//! which finish in any order, and standard output.
//!
//! Input `seq` may be put once its answer is known; lines are written as
//! soon as every earlier input's line is. The feeder waits
//! ([`Window::wait_room`]) before it hands out an input more than `cap`
//! ahead of the oldest unwritten one, so memory stays bounded whatever the
//! input's length: one slow path holds at most `cap` lines behind it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Condvar, Mutex};

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Present,
    Absent,
    Error,
}

/// Counts of what was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub present: u64,
    pub absent: u64,
    pub errors: u64,
}

pub struct Window {
    inner: Mutex<Inner>,
    room: Condvar,
    cap: u64,
}

struct Inner {
    /// The seq of `slots[0]`: every earlier line is written.
    base: u64,
    slots: VecDeque<Option<(String, Kind)>>,
    out: Box<dyn Write + Send>,
    /// Flush after each run of lines (a person is watching).
    eager: bool,
    tally: Tally,
    err: Option<io::Error>,
}

impl Window {
    pub fn new(out: Box<dyn Write + Send>, cap: u64, eager: bool) -> Window {
        Window {
            inner: Mutex::new(Inner {
                base: 0,
                slots: VecDeque::new(),
                out,
                eager,
                tally: Tally::default(),
                err: None,
            }),
            room: Condvar::new(),
            cap: cap.max(1),
        }
    }

    /// Blocks while `seq` is `cap` or more ahead of the oldest unwritten line.
    pub fn wait_room(&self, seq: u64) {
        let mut g = self.inner.lock().expect("window lock");
        while seq >= g.base + self.cap && g.err.is_none() {
            g = self.room.wait(g).expect("window lock");
        }
    }

    /// The line (ending in a newline) of input `seq`. False once output
    /// failed (a closed pipe): nothing more will be written.
    pub fn put(&self, seq: u64, line: String, kind: Kind) -> bool {
        let mut g = self.inner.lock().expect("window lock");
        let g = &mut *g;
        let i = (seq - g.base) as usize;
        if g.slots.len() <= i {
            g.slots.resize(i + 1, None);
        }
        g.slots[i] = Some((line, kind));
        let mut moved = false;
        while let Some(Some(_)) = g.slots.front() {
            let (line, kind) = g.slots.pop_front().flatten().expect("checked");
            g.base += 1;
            moved = true;
            match kind {
                Kind::Present => g.tally.present += 1,
                Kind::Absent => g.tally.absent += 1,
                Kind::Error => g.tally.errors += 1,
            }
            if g.err.is_none()
                && let Err(e) = g.out.write_all(line.as_bytes())
            {
                g.err = Some(e);
            }
        }
        if moved {
            if g.eager
                && g.err.is_none()
                && let Err(e) = g.out.flush()
            {
                g.err = Some(e);
            }
            self.room.notify_all();
        }
        g.err.is_none()
    }

    /// Flushes; the counts, or the error that stopped the output.
    pub fn finish(&self) -> io::Result<Tally> {
        let mut g = self.inner.lock().expect("window lock");
        if let Some(e) = g.err.take() {
            return Err(e);
        }
        g.out.flush()?;
        Ok(g.tally)
    }

    /// Lines held for earlier inputs.
    #[cfg(test)]
    fn held(&self) -> usize {
        let g = self.inner.lock().expect("window lock");
        g.slots.iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_come_out_in_input_order_and_are_counted() {
        let buf = Shared::default();
        let w = Window::new(Box::new(buf.clone()), 8, false);
        w.put(2, "c\n".into(), Kind::Error);
        w.put(1, "b\n".into(), Kind::Absent);
        assert_eq!(w.held(), 2);
        assert!(buf.0.lock().unwrap().is_empty());
        w.put(0, "a\n".into(), Kind::Present);
        assert_eq!(w.held(), 0);
        let t = w.finish().unwrap();
        assert_eq!(&*buf.0.lock().unwrap(), b"a\nb\nc\n");
        assert_eq!(
            t,
            Tally {
                present: 1,
                absent: 1,
                errors: 1
            }
        );
    }

    #[test]
    fn the_feeder_waits_while_the_oldest_line_is_missing() {
        let w = Arc::new(Window::new(Box::new(Shared::default()), 4, false));
        for s in 1..4 {
            w.put(s, format!("{s}\n"), Kind::Present);
        }
        w.wait_room(3); // within the window: returns at once
        let (tx, rx) = std::sync::mpsc::channel();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            w2.wait_room(4);
            tx.send(()).unwrap();
        });
        // Still waiting: input 0 is unanswered.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        w.put(0, "0\n".into(), Kind::Present);
        rx.recv().unwrap();
        t.join().unwrap();
        assert_eq!(w.finish().unwrap().present, 4);
    }
}
