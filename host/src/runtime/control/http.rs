//! Connections: each is served by hyper (HTTP/1.1, one request, bodies
//! never read), with its request head due within a deadline and at most
//! [`HEAD_LIMIT`] bytes. A connection gets a full slot while fewer than
//! [`MAX_CONNECTIONS`] hold one; past that it waits for its head in the
//! busy tier ([`MAX_WAITING`] places, [`BUSY_HEAD_DEADLINE`]), where only
//! the owner's actions are served. When the busy tier is full the
//! connection that has waited there longest is dropped (answered 503).
//!
//! A head that is late is answered 408 and one that is too large 431 (by
//! hyper). The answers written here without hyper (408, and 503 to a
//! dropped connection) go out on a second handle of the socket once
//! hyper has let go of it; after any answer the connection is closed
//! without a reset: writing stops, and what the client still sends is
//! read and dropped for a moment ([`linger`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::routes::answer;
use super::server::Served;

/// Connections served in full at the same time; more wait in the busy
/// tier.
pub const MAX_CONNECTIONS: usize = 16;

/// Connections waiting for their head in the busy tier; past that, the
/// one waiting longest is dropped.
pub const MAX_WAITING: usize = 64;

/// Time a client has, in all, to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

/// The same in the busy tier.
pub const BUSY_HEAD_DEADLINE: Duration = Duration::from_secs(1);

/// Largest request head (request line and headers) accepted (the least
/// hyper takes as its read buffer).
pub const HEAD_LIMIT: usize = 8 * 1024;

/// Most header lines in a request head.
const MAX_HEADERS: usize = 64;

/// Longest [`linger`] reads after an answer, and how much.
const LINGER: (Duration, usize) = (Duration::from_millis(500), 64 * 1024);

/// The connection slots.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// Connections holding a full slot.
    full: AtomicUsize,
    /// Requests being answered (the server's drop waits for them).
    pub(super) answering: AtomicUsize,
    /// Busy-tier connections waiting for their head, oldest first, with
    /// what drops them.
    waiting: std::sync::Mutex<BTreeMap<u64, Arc<Notify>>>,
    /// Numbers the busy-tier connections.
    next: AtomicU64,
}

/// Which tier a connection is in.
enum Tier {
    /// A full slot, released on drop.
    Full(Arc<Served>),
    /// Busy tier, number `u64`, dropped when notified.
    Busy(Arc<Served>, u64, Arc<Notify>),
}

impl Tier {
    /// Take a full slot, else a place in the busy tier (dropping the one
    /// waiting longest if the tier is full).
    fn take(served: &Arc<Served>) -> Self {
        let slots = &served.slots;
        if slots.full.fetch_add(1, Ordering::SeqCst) < MAX_CONNECTIONS {
            return Tier::Full(served.clone());
        }
        slots.full.fetch_sub(1, Ordering::SeqCst);
        let id = slots.next.fetch_add(1, Ordering::Relaxed);
        let drop_me = Arc::new(Notify::new());
        let mut waiting = crate::lock_or_recover(&slots.waiting);
        waiting.insert(id, drop_me.clone());
        while waiting.len() > MAX_WAITING {
            if let Some((_, oldest)) = waiting.pop_first() {
                oldest.notify_one();
            }
        }
        Tier::Busy(served.clone(), id, drop_me)
    }

    /// The head arrived: leave the waiting list.
    fn arrived(&self) {
        if let Tier::Busy(s, id, _) = self {
            crate::lock_or_recover(&s.slots.waiting).remove(id);
        }
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        match self {
            Tier::Full(s) => {
                s.slots.full.fetch_sub(1, Ordering::SeqCst);
            }
            Tier::Busy(..) => self.arrived(),
        }
    }
}

/// Why a connection was cut before its head arrived.
enum Cut {
    /// Its head deadline passed: 408.
    Late,
    /// It was dropped from the busy tier: 503.
    Dropped,
    /// The server stops.
    Stopping,
}

/// Serve one connection.
pub(super) async fn connection(
    stream: TcpStream,
    served: Arc<Served>,
    mut stop: watch::Receiver<bool>,
) {
    let tier = Tier::take(&served);
    // A second handle on the socket, for answers written after hyper let
    // go of it and for the linger.
    let Ok(std) = stream.into_std() else { return };
    let (Ok(spare), Ok(stream)) = (std.try_clone(), TcpStream::from_std(std)) else {
        return;
    };
    let (deadline, drop_me, busy) = match &tier {
        Tier::Full(_) => (HEAD_DEADLINE, None, false),
        Tier::Busy(_, _, n) => (BUSY_HEAD_DEADLINE, Some(n.clone()), true),
    };
    let head = Arc::new(AtomicBool::new(false));
    let tier = Arc::new(tier);
    let service = {
        let (head, tier, served) = (head.clone(), tier.clone(), served.clone());
        service_fn(move |req| {
            head.store(true, Ordering::SeqCst);
            tier.arrived();
            let served = served.clone();
            async move {
                served.slots.answering.fetch_add(1, Ordering::SeqCst);
                let response = answer(req, &served, busy).await;
                served.slots.answering.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(HEAD_LIMIT)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service);
    let started = Instant::now();
    let cut = async {
        let why = tokio::select! {
            () = tokio::time::sleep_until((started + deadline).into()) => Cut::Late,
            () = async {
                match &drop_me {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            } => Cut::Dropped,
            _ = stop.wait_for(|s| *s) => Cut::Stopping,
        };
        if head.load(Ordering::SeqCst) {
            // A request is being answered: it is not cut.
            std::future::pending::<()>().await;
        }
        why
    };
    let cut = tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!("control connection: {e}");
            }
            None
        }
        why = cut => Some(why),
    };
    let Ok(mut spare) = TcpStream::from_std(spare) else {
        return;
    };
    let canned = match cut {
        Some(Cut::Late) => Some((408, "Request Timeout", "the request head took too long")),
        Some(Cut::Dropped) => Some((503, "Service Unavailable", "too many control connections")),
        Some(Cut::Stopping) | None => None,
    };
    if let Some((status, reason, message)) = canned {
        let body = serde_json::json!({ "error": message }).to_string();
        let text = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(1), spare.write_all(text.as_bytes())).await;
    }
    linger(spare).await;
    drop(tier);
}

/// Close after the answer without resetting the connection: stop sending,
/// then read (and drop) what the client still sends, briefly.
async fn linger(mut conn: TcpStream) {
    let _ = conn.shutdown().await;
    let (wait, mut left) = LINGER;
    let deadline = tokio::time::Instant::now() + wait;
    let mut sink = [0u8; 4096];
    while left > 0 {
        match tokio::time::timeout_at(deadline, conn.read(&mut sink)).await {
            Ok(Ok(n @ 1..)) => left = left.saturating_sub(n),
            _ => break,
        }
    }
}
