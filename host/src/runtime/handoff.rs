//! The hand-off of messages from the router to a worker thread: a bounded
//! channel whose sender, when it finds the channel full, waits until the
//! worker has taken half of it.
//!
//! A worker slower than its source (an operator that does work) keeps the
//! channel full. With a plain bounded channel the router then blocks on
//! every send and is woken each time the worker takes a message: a park and
//! a wake-up per batch, each a futex call and, on another core, an
//! interrupt between processors (in a virtual machine, an exit to the
//! hypervisor). Here it sleeps until the channel holds half its capacity or
//! less and then refills it: one wake-up per half a channel of batches.
//!
//! A wake-up cannot be lost: the sender raises its flag before it looks at
//! the channel's length, the worker looks at the flag after it took a
//! message, with a full fence on both sides, so one of them sees the
//! other; a sleep also ends after [`RECHECK`] in any case.

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, SendError, TryRecvError};

/// The longest a full sender sleeps before it looks at the channel again.
const RECHECK: Duration = Duration::from_millis(100);

/// A channel of `capacity` messages (at least 1) from one sender thread to
/// one receiver.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let room = Arc::new(Room {
        waiting: AtomicBool::new(false),
        sender: Mutex::new(None),
        closed: AtomicBool::new(false),
    });
    let low = capacity / 2;
    (
        Sender {
            tx,
            room: room.clone(),
            low,
        },
        Receiver { rx, room, low },
    )
}

/// What the two sides share.
struct Room {
    /// The sender sleeps until the channel holds `low` messages or fewer.
    waiting: AtomicBool,
    /// The thread of the sender that sleeps.
    sender: Mutex<Option<Thread>>,
    /// The receiver is gone.
    closed: AtomicBool,
}

impl Room {
    fn wake_sender(&self) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = sender.as_ref() {
            t.unpark();
        }
    }
}

/// The router's side.
pub(crate) struct Sender<T> {
    tx: crossbeam_channel::Sender<T>,
    room: Arc<Room>,
    low: usize,
}

impl<T> Sender<T> {
    /// Send `msg`, first waiting for the channel to drain to half when it
    /// is full; an error when the receiver is gone.
    pub(crate) fn send(&self, msg: T) -> Result<(), SendError<T>> {
        if self.tx.is_full() {
            self.wait_for_room();
        }
        self.tx.send(msg)
    }

    fn wait_for_room(&self) {
        *self.room.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
        self.room.waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        while self.tx.len() > self.low && !self.room.closed.load(Ordering::SeqCst) {
            std::thread::park_timeout(RECHECK);
        }
        self.room.waiting.store(false, Ordering::SeqCst);
    }

    /// Messages in the channel.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tx.len()
    }
}

/// The worker's side.
pub(crate) struct Receiver<T> {
    rx: crossbeam_channel::Receiver<T>,
    room: Arc<Room>,
    low: usize,
}

impl<T> Receiver<T> {
    /// A message if one is waiting.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let m = self.rx.try_recv()?;
        self.took();
        Ok(m)
    }

    /// The next message, waiting at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let m = self.rx.recv_timeout(timeout)?;
        self.took();
        Ok(m)
    }

    /// After a message was taken: wake a sleeping sender once the channel
    /// is down to half.
    #[inline]
    fn took(&self) {
        fence(Ordering::SeqCst);
        if self.room.waiting.load(Ordering::SeqCst)
            && self.rx.len() <= self.low
            && self.room.waiting.swap(false, Ordering::SeqCst)
        {
            self.room.wake_sender();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.room.closed.store(true, Ordering::SeqCst);
        self.room.wake_sender();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Every message arrives once, in order, whether the sender or the
    /// receiver is the slower side, and a full sender refills the channel
    /// in bulk: it sends again only once half the channel is free.
    #[test]
    fn messages_arrive_in_order_and_a_full_sender_waits_for_half_the_channel() {
        let (tx, rx) = channel::<u32>(8);
        for i in 0..8 {
            tx.send(i).unwrap();
        }
        let sender = std::thread::spawn(move || {
            // The channel is full: this send waits until 4 were taken.
            tx.send(8).unwrap();
            let after = tx.len();
            for i in 9..10_000 {
                tx.send(i).unwrap();
            }
            after
        });
        // Take nothing before the sender sleeps on the full channel.
        let start = Instant::now();
        while !rx.room.waiting.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the sender never waited"
            );
            std::thread::yield_now();
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        // Three taken, five left: the sender still sleeps (well within its
        // recheck interval).
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.rx.len(), 5, "the sender refilled before half was free");
        while got.len() < 10_000 {
            got.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
            if got.len() % 97 == 0 {
                std::thread::yield_now();
            }
        }
        let after = sender.join().unwrap();
        assert!(after <= 5, "sent into a channel of {after} (of 8)");
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    }

    /// A sender waiting for room learns at once that the receiver is gone.
    #[test]
    fn a_full_sender_fails_when_the_receiver_goes() {
        let (tx, rx) = channel::<u32>(2);
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        let start = Instant::now();
        let sender = std::thread::spawn(move || tx.send(2));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(sender.join().unwrap().is_err());
        assert!(start.elapsed() < RECHECK * 5);
    }
}
