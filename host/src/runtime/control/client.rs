//! The client the `weir` CLI uses: find a running job's endpoint by name
//! in the run folder ([`find`]) and send it one request with its token
//! ([`request`], [`Endpoint::request`]).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::SAVEPOINT_WAIT;
use super::run_folder::{Endpoint, check_run_dir, read_addr_file, run_dir};
use crate::{Error, Result};

impl Endpoint {
    /// Send a request with this endpoint's token; see [`request`].
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, String)> {
        request(&self.addr, &self.token, method, path)
    }
}

/// Send a request with `token` to the control endpoint at `addr`; returns
/// status and body.
pub fn request(addr: &str, token: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let io = |e| Error::io("talking to the control endpoint at", addr.to_string())(e);
    let target =
        addr.to_socket_addrs().map_err(io)?.next().ok_or_else(|| {
            Error::Config(format!("control address `{addr}` resolves to nothing"))
        })?;
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(10)).map_err(io)?;
    // A savepoint is answered when it is complete.
    conn.set_read_timeout(Some(SAVEPOINT_WAIT + Duration::from_secs(60)))
        .map_err(io)?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    conn.read_to_string(&mut response).map_err(io)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The control endpoint of running job `job`, from its address file in
/// [`run_dir`].
pub fn find(job: &str) -> Result<Endpoint> {
    find_in(&run_dir(), job)
}

/// The control endpoint of running job `job`, from its address file in
/// run folder `dir` (which must pass [`check_run_dir`]).
pub fn find_in(dir: &Path, job: &str) -> Result<Endpoint> {
    let f = dir.join(format!("{job}.addr"));
    let not_here = || {
        Error::Config(format!(
            "job `{job}` does not seem to run here (no {})",
            f.display()
        ))
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_here()),
        _ => check_run_dir(dir)?,
    }
    read_addr_file(&f).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            not_here()
        } else {
            Error::io("reading control address file", &f)(e)
        }
    })
}
