//! HTTP/1.1 as the control endpoint speaks it: one request per connection,
//! a request head read within [`HEAD_DEADLINE`] and at most [`HEAD_LIMIT`]
//! bytes, parsed into a [`Head`]; answers written with `Connection: close`;
//! and the connection limit ([`MAX_CONNECTIONS`], then 503).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// Connections served at the same time; more are answered 503.
pub const MAX_CONNECTIONS: usize = 16;

/// Time a client has, in all, to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

/// Largest request head (request line and headers) accepted.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// Value of `key` in the query of request target `path`, still
/// percent-encoded.
pub(super) fn query<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = path.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// An answer: status, body, content type.
pub(super) type Answer = (u16, String, &'static str);

/// A JSON answer.
pub(super) fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    (status, body.to_string(), "application/json")
}

/// A JSON answer `{"error": message}`.
pub(super) fn error(status: u16, message: &str) -> Answer {
    json_answer(status, json!({ "error": message }))
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Write an answer with its status line and headers (`Connection: close`;
/// a 401 names the scheme, `Bearer`).
pub(super) fn write_answer(
    conn: &mut TcpStream,
    (status, body, content_type): &Answer,
) -> std::io::Result<()> {
    let auth = if *status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    write!(
        conn,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{auth}Connection: close\r\n\r\n{body}",
        reason(*status),
        body.len()
    )?;
    conn.flush()
}

/// Too many connections: answer 503 without reading, close. The write
/// does not block (a short answer fits a new connection's send buffer).
pub(super) fn busy(mut conn: TcpStream) {
    let _ = conn.set_nonblocking(true);
    let _ = write_answer(
        &mut conn,
        &json_answer(503, json!({"error": "too many control connections"})),
    );
    let _ = conn.shutdown(Shutdown::Both);
}

/// Close after the answer without resetting the connection: stop sending,
/// then read (and drop) what the client still sends, briefly.
pub(super) fn linger(mut conn: TcpStream) {
    let _ = conn.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || conn.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Why no request head was read.
pub(super) enum HeadError {
    /// The client closed, or the server stops: nothing to answer.
    Gone,
    /// [`HEAD_DEADLINE`] passed.
    Slow,
    /// Over [`HEAD_LIMIT`].
    TooLarge,
    /// A socket error.
    Io(std::io::Error),
}

/// End of the head in `buf` (after the blank line), if there.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Read the request head: at most [`HEAD_LIMIT`] bytes within
/// [`HEAD_DEADLINE`] in all (each read waits only for the time left).
pub(super) fn read_head(conn: &mut TcpStream, done: &AtomicBool) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = head_end(&buf) {
            if end > HEAD_LIMIT {
                return Err(HeadError::TooLarge);
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > HEAD_LIMIT {
            return Err(HeadError::TooLarge);
        }
        if done.load(Ordering::SeqCst) {
            return Err(HeadError::Gone);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Slow);
        }
        // Wake up now and then to notice the server stopping.
        conn.set_read_timeout(Some(left.min(Duration::from_millis(100))))
            .map_err(HeadError::Io)?;
        let room = (HEAD_LIMIT + 4 - buf.len()).min(chunk.len());
        match conn.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A parsed request head.
pub(super) struct Head {
    /// The method (`GET`, `POST`).
    pub(super) method: String,
    /// The request target: path and query.
    pub(super) target: String,
    /// Header names (lower-cased) and values, in order.
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    /// Parse a request head; `None` if it is not HTTP/1.x as expected.
    pub(super) fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut first = lines.next()?.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if first.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
                return None;
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Some(Self {
            method: method.into(),
            target: target.into(),
            headers,
        })
    }

    /// Every value of header `name` (lower-case).
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
