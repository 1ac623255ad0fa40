//! The control endpoint a running job serves on 127.0.0.1, on hyper (HTTP/1.1,
//! one request per connection) with an axum router, in a tokio runtime on a
//! thread of its own:
//!
//! - `GET /`: the status page, one self-contained HTML page (no CDN) that
//!   asks `/status` every second;
//! - `GET /status`: the job's figures as JSON (counters, partitions,
//!   operators, throughput, checkpoints, swaps, the last dead letters);
//! - `GET /metrics`: the same in the Prometheus text format
//!   (OpenMetrics, through `prometheus-client`);
//! - `POST /savepoint?name=N`: take a savepoint, answer when it is complete;
//! - `POST /stop` and `POST /stop?savepoint=true&name=N`: stop the job, with
//!   a savepoint first if asked;
//! - `POST /swap` and `POST /rollback`: swap an operator's plugin.
//!
//! Access: the job makes a secret token per run and writes it, with the
//! bound address and its process id, to `<run dir>/<job>.addr` as JSON
//! `{"addr": "127.0.0.1:PORT", "token": "HEX", "pid": N}` (mode 0600, in a
//! folder only its user can enter, see [`run_dir`]). `weir savepoint
//! trigger`, `weir stop` and `weir status` find the job by name there
//! ([`find`]) and send `Authorization: Bearer TOKEN`; any request without
//! it gets 401. A request carrying `Origin` (sent by browsers for requests
//! a page makes to another site, and for every POST) gets 403, and so does
//! one with a `Host` other than this endpoint's address (DNS rebinding). A
//! browser (it sends `Sec-Fetch-*` headers) may only GET the page and
//! `/status`, from the page itself or typed in (`Sec-Fetch-Site:
//! same-origin` or `none`); it proves itself with a cookie it gets the way
//! Jupyter does it: `weir run` prints `http://ADDR/?token=TOKEN`, and that
//! URL answers with an HttpOnly, SameSite=Strict cookie holding the token
//! and a redirect to `/`. Without it, `/` is a page that says how to get in.
//!
//! Limits ([`http`]): [`MAX_CONNECTIONS`] connections are served in full;
//! each has [`HEAD_DEADLINE`] to send its request head (else 408) of at
//! most [`HEAD_LIMIT`] bytes (else 431), and bodies are never read. Past
//! that, up to [`MAX_WAITING`] more connections get [`BUSY_HEAD_DEADLINE`]
//! for their head, and only the owner's actions (stop, savepoint, swap,
//! rollback, with the token) are served on them; anything else is answered
//! 503. When those are full too, the one that has waited longest for its
//! head is dropped. So clients without the token can make reads answer 503
//! for a while, but cannot keep the owner from stopping, saving or
//! swapping: the owner's request arrives with its head at once.
//!
//! One file per concept: `http.rs` (connections: tiers, deadlines, limits),
//! `access.rs` (who may ask), `routes.rs` (what is answered), `status.rs`
//! (the figures of `/status`), `progress.rs` (the source's progress in
//! both), `exposition.rs` (`/metrics`), `page.rs` and
//! `page.html` (the status page), `server.rs` (binding, accepting, the
//! address file's life), `run_folder.rs` (where the address and token are
//! kept) and `client.rs` (what the CLI sends).

mod access;
mod client;
mod exposition;
mod http;
mod page;
mod progress;
mod routes;
mod run_folder;
mod server;
mod status;

use std::time::Duration;

pub use client::{find, find_in, query, request};
pub use http::{BUSY_HEAD_DEADLINE, HEAD_DEADLINE, HEAD_LIMIT, MAX_CONNECTIONS, MAX_WAITING};
pub use run_folder::{
    Endpoint, JobLock, addr_file, check_run_dir, job_running, lock_job, prepare_run_dir, run_dir,
};
pub use server::{Bound, ControlServer, JobHandle};

/// Longest a savepoint request waits for completion (the server's wait,
/// and with a margin the client's).
const SAVEPOINT_WAIT: Duration = Duration::from_secs(600);

/// The name of the cookie holding the token on the endpoint at `port`
/// (cookies are shared by every port of a host: one name per port).
fn cookie_name(port: u16) -> String {
    format!("weir-token-{port}")
}
