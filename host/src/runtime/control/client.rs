//! The client the `weir` CLI uses: find a running job's endpoint by name
//! in the run folder ([`find`]) and send it one request with its token
//! ([`request`], [`Endpoint::request`]) over hyper.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::SAVEPOINT_WAIT;
use super::run_folder::{Endpoint, check_run_dir, read_addr_file, run_dir};
use crate::{Error, Result};

impl Endpoint {
    /// Send a request with this endpoint's token; see [`request`].
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, String)> {
        request(&self.addr, &self.token, method, path)
    }
}

/// A query string (without `?`) of `pairs`, percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Send a request with `token` to the control endpoint at `addr`; returns
/// status and body. A savepoint is answered when it is complete: the
/// answer is awaited up to [`SAVEPOINT_WAIT`] and a minute.
pub fn request(addr: &str, token: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let fail = |what: String| {
        Error::io("talking to the control endpoint at", addr.to_string())(std::io::Error::other(
            what,
        ))
    };
    let target = addr
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| Error::Config(format!("control address `{addr}` resolves to nothing")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::Config(format!("a request to the control endpoint: {e}")))?;
    runtime.block_on(async {
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(target),
        )
        .await
        .map_err(|_| fail("connecting timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let connection = tokio::spawn(connection);
        let exchange = async {
            let response = sender.send_request(req).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let answer = tokio::time::timeout(SAVEPOINT_WAIT + Duration::from_secs(60), exchange)
            .await
            .map_err(|_| fail("no answer in time".into()))?
            .map_err(|e| fail(e.to_string()));
        connection.abort();
        answer
    })
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
