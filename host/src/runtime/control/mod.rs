//! The control endpoint a running job serves on 127.0.0.1: a small HTTP/1.1
//! server (one request per connection) with
//!
//! - `GET /status`: job name, counters, last checkpoint (JSON);
//! - `GET /metrics`: the same counters in Prometheus text format;
//! - `POST /savepoint?name=N`: take a savepoint, answer when it is complete;
//! - `POST /stop` and `POST /stop?savepoint=true&name=N`: stop the job, with
//!   a savepoint first if asked.
//!
//! Access: the job makes a secret token per run and writes it, with the
//! bound address and its process id, to `<run dir>/<job>.addr` as JSON
//! `{"addr": "127.0.0.1:PORT", "token": "HEX", "pid": N}` (mode 0600, in a
//! folder only its user can enter, see [`run_dir`]). `weir savepoint
//! trigger` and `weir stop` find the job by name there ([`find`]) and send
//! `Authorization: Bearer TOKEN`; any request without it gets 401. A
//! request carrying `Origin` or `Sec-Fetch-*` (sent by browsers, never by
//! the CLI) or a `Host` other than this endpoint's address (DNS rebinding)
//! gets 403.
//!
//! Each connection has its own thread (at most [`MAX_CONNECTIONS`] at a
//! time, then 503), [`HEAD_DEADLINE`] in all to send its request head and
//! at most [`HEAD_LIMIT`] bytes of it (else 408 or 431): a slow or silent
//! client does not hold up other requests.
//!
//! One file per concept: `http.rs` (request heads, answers, limits),
//! `access.rs` (who may ask), `routes.rs` (what is answered), `server.rs`
//! (binding, accepting, the address file's life), `run_folder.rs` (where
//! the address and token are kept), `client.rs` (what the CLI sends) and
//! `percent.rs` (query values).

mod access;
mod client;
mod http;
mod percent;
mod routes;
mod run_folder;
mod server;

use std::time::Duration;

pub use client::{find, find_in, request};
pub use http::{HEAD_DEADLINE, HEAD_LIMIT, MAX_CONNECTIONS};
pub use percent::{percent_decode, percent_encode};
pub use run_folder::{Endpoint, addr_file, check_run_dir, prepare_run_dir, run_dir};
pub use server::{Bound, ControlServer, JobHandle};

/// Longest a savepoint request waits for completion (the server's wait,
/// and with a margin the client's).
const SAVEPOINT_WAIT: Duration = Duration::from_secs(600);
