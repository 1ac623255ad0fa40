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
//! The other way round, a worker faster than its source (an operator that
//! does little) finds the channel empty after each batch. It then sleeps
//! until half the channel is filled again, or a message comes that says
//! the source will not send more right away: anything but a full batch (a
//! batch closed by its linger or a flush, a barrier, a watermark, the end).
//! A full batch is held [`HOLD`] at most; after sleeping that long on an
//! empty channel the worker is woken by any message.
//!
//! A wake-up cannot be lost: each side raises its flag before it looks at
//! the channel's length, the other side looks at the flag after it changed
//! the channel, with a full fence on both sides, so one of them sees the
//! other; a sleep also ends after [`RECHECK`] (or [`HOLD`]) in any case.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, SendError, TryRecvError};

/// The longest a full sender sleeps before it looks at the channel again.
const RECHECK: Duration = Duration::from_millis(100);

const AWAKE: u8 = 0;
const HOLDING: u8 = 1;
const IDLE: u8 = 2;

/// The longest full batches wait in the channel for more to join them
/// before the worker takes them anyway (the source may have stopped right
/// after a full batch, with nothing left to close by its linger).
const HOLD: Duration = Duration::from_millis(10);

/// A channel of `capacity` messages (at least 1) from one sender thread to
/// one receiver.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel_holding(capacity, HOLD)
}

/// [`channel`], with full batches held `hold` at most.
fn channel_holding<T>(capacity: usize, hold: Duration) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let room = Arc::new(Room {
        waiting: AtomicBool::new(false),
        sender: Mutex::new(None),
        closed: AtomicBool::new(false),
        idle: AtomicU8::new(AWAKE),
        receiver: Mutex::new(None),
        urgent: AtomicBool::new(false),
        hung_up: AtomicBool::new(false),
        wakes: AtomicU64::new(0),
    });
    let low = capacity / 2;
    (
        Sender {
            tx,
            room: room.clone(),
            low,
        },
        Receiver {
            rx,
            room,
            low,
            hold,
        },
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
    /// [`AWAKE`], [`HOLDING`] (the receiver sleeps until the channel holds
    /// more than `low` messages, or `urgent` is up) or [`IDLE`] (it sleeps
    /// until any message comes).
    idle: AtomicU8,
    /// The thread of the receiver that sleeps.
    receiver: Mutex<Option<Thread>>,
    /// A message was sent that should not wait for others.
    urgent: AtomicBool,
    /// The sender is gone.
    hung_up: AtomicBool,
    /// Wake-ups sent either way.
    wakes: AtomicU64,
}

impl Room {
    fn wake(&self, thread: &Mutex<Option<Thread>>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        let thread = thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = thread.as_ref() {
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
    /// is full; an error when the receiver is gone. A message that is not
    /// `urgent` (a full batch, with more coming right behind it) wakes a
    /// sleeping receiver only once the channel is more than half full.
    pub(crate) fn send(&self, msg: T, urgent: bool) -> Result<(), SendError<T>> {
        if self.tx.is_full() {
            self.wait_for_room();
        }
        self.tx.send(msg)?;
        if urgent {
            self.room.urgent.store(true, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        let wake = match self.room.idle.load(Ordering::SeqCst) {
            AWAKE => false,
            HOLDING => urgent || self.tx.len() > self.low,
            _ => true,
        };
        if wake && self.room.idle.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            self.room.wake(&self.room.receiver);
        }
        Ok(())
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
    hold: Duration,
}

impl<T> Receiver<T> {
    /// A message if one is waiting.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let m = self.rx.try_recv()?;
        self.took();
        Ok(m)
    }

    /// The next message, waiting at most `timeout`: while the channel
    /// holds only full batches, fewer than half of it, the wait goes on
    /// for more (at most [`HOLD`]).
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let start = Instant::now();
        if self.rx.is_empty() && !self.room.urgent.load(Ordering::SeqCst) {
            self.sleep(start, timeout);
        }
        self.room.urgent.store(false, Ordering::SeqCst);
        let left = timeout.saturating_sub(start.elapsed());
        let m = self.rx.recv_timeout(left)?;
        self.took();
        Ok(m)
    }

    /// Sleep until the channel fills past half or an urgent message comes,
    /// [`HOLD`] (`hold`) at most; then, if the channel is still empty, until any
    /// message comes or `timeout` passes.
    fn sleep(&self, start: Instant, timeout: Duration) {
        *self.room.receiver.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::thread::current());
        let woken = |until_any: bool| {
            self.room.hung_up.load(Ordering::SeqCst)
                || self.room.urgent.load(Ordering::SeqCst)
                || self.rx.len() > if until_any { 0 } else { self.low }
        };
        for (mode, limit) in [(HOLDING, timeout.min(self.hold)), (IDLE, timeout)] {
            if mode == IDLE && !self.rx.is_empty() {
                break;
            }
            self.room.idle.store(mode, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            while !woken(mode == IDLE) {
                let Some(left) = limit.checked_sub(start.elapsed()) else {
                    break;
                };
                std::thread::park_timeout(left);
            }
            self.room.idle.store(AWAKE, Ordering::SeqCst);
            if woken(mode == IDLE) {
                break;
            }
        }
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
            self.room.wake(&self.room.sender);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.room.closed.store(true, Ordering::SeqCst);
        self.room.wake(&self.room.sender);
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.room.hung_up.store(true, Ordering::SeqCst);
        self.room.wake(&self.room.receiver);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message arrives once, in order, whether the sender or the
    /// receiver is the slower side, and a full sender refills the channel
    /// in bulk: it sends again only once half the channel is free.
    #[test]
    fn messages_arrive_in_order_and_a_full_sender_waits_for_half_the_channel() {
        let (tx, rx) = channel::<u32>(8);
        for i in 0..8 {
            tx.send(i, false).unwrap();
        }
        let sender = std::thread::spawn(move || {
            // The channel is full: this send waits until 4 were taken.
            tx.send(8, false).unwrap();
            let after = tx.len();
            for i in 9..10_000 {
                tx.send(i, i % 10 == 0).unwrap();
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
        tx.send(0, true).unwrap();
        tx.send(1, true).unwrap();
        let start = Instant::now();
        let sender = std::thread::spawn(move || tx.send(2, true));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(sender.join().unwrap().is_err());
        assert!(start.elapsed() < RECHECK * 5);
    }

    /// Take what `rx` gets within `wait`, on another thread.
    fn taker(rx: Receiver<u32>) -> std::thread::JoinHandle<(Receiver<u32>, Vec<u32>)> {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(m) = rx.recv_timeout(Duration::from_secs(10)) {
                got.push(m);
                if got.len() == 1 {
                    // Take the rest of what is there without waiting.
                    while let Ok(m) = rx.try_recv() {
                        got.push(m);
                    }
                    break;
                }
            }
            (rx, got)
        })
    }

    fn until_asleep(tx: &Sender<u32>, mode: u8) {
        let start = Instant::now();
        while tx.room.idle.load(Ordering::SeqCst) != mode {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the receiver never slept"
            );
            std::thread::yield_now();
        }
    }

    /// A receiver that found the channel empty sleeps through full batches
    /// until more than half the channel is filled, and wakes at once for
    /// anything else.
    #[test]
    fn an_idle_receiver_wakes_for_half_a_channel_of_full_batches_or_one_urgent_message() {
        // Held for up to a minute: only a wake-up ends the sleep here.
        let (tx, rx) = channel_holding::<u32>(8, Duration::from_secs(60));
        let t = taker(rx);
        until_asleep(&tx, HOLDING);
        let wakes = || tx.room.wakes.load(Ordering::SeqCst);
        for i in 0..4 {
            tx.send(i, false).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            tx.len(),
            4,
            "the receiver took full batches from a channel half full"
        );
        assert_eq!(wakes(), 0, "the receiver was woken for full batches");
        tx.send(4, false).unwrap();
        let (rx, got) = t.join().unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(wakes(), 1);
        // Empty again: one urgent message wakes it, at once.
        let t = taker(rx);
        until_asleep(&tx, HOLDING);
        let start = Instant::now();
        tx.send(5, true).unwrap();
        let (_rx, got) = t.join().unwrap();
        assert_eq!(got, vec![5]);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "an urgent message waited"
        );
    }

    /// After sleeping its hold on an empty channel, a receiver wakes for any
    /// message; a full batch alone in the channel waits the hold at most.
    #[test]
    fn a_full_batch_waits_the_hold_at_most() {
        let (tx, rx) = channel_holding::<u32>(8, Duration::from_millis(30));
        let t = taker(rx);
        until_asleep(&tx, IDLE);
        tx.send(0, false).unwrap();
        let (rx, got) = t.join().unwrap();
        assert_eq!(got, vec![0]);
        // A full batch sent while the receiver holds: taken after the hold.
        let t = taker(rx);
        until_asleep(&tx, HOLDING);
        tx.send(1, false).unwrap();
        let start = Instant::now();
        let (_rx, got) = t.join().unwrap();
        assert_eq!(got, vec![1]);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// A receiver asleep learns at once that the sender is gone.
    #[test]
    fn an_idle_receiver_ends_when_the_sender_goes() {
        let (tx, rx) = channel_holding::<u32>(8, Duration::from_secs(60));
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(60)));
        until_asleep(&tx, HOLDING);
        let start = Instant::now();
        drop(tx);
        assert!(t.join().unwrap().is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
