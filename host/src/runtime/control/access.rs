//! Who may talk to the control endpoint: not a web page (a request with
//! `Origin` or `Sec-Fetch-*` gets 403), only by this endpoint's own address
//! (any other `Host`, as DNS rebinding sends, gets 403), and only with the
//! run's token (else 401).

use std::net::SocketAddr;

use super::http::{Answer, Head, error};
use super::run_folder::same_secret;
use super::server::Served;

/// Whether `host` names this endpoint (not another name resolving to it).
fn host_ok(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    host == addr.to_string()
        || host.eq_ignore_ascii_case(&format!("localhost:{port}"))
        || host == format!("127.0.0.1:{port}")
}

/// Refuse what is not ours to answer: browsers, other host names, no
/// token. `None` when the request may go on.
pub(super) fn refuse(head: &Head, served: &Served) -> Option<Answer> {
    if head.all("origin").next().is_some()
        || head
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("sec-fetch-"))
    {
        return Some(error(
            403,
            "requests from web pages are refused (the request carries an Origin or Sec-Fetch header)",
        ));
    }
    let hosts: Vec<_> = head.all("host").collect();
    match hosts[..] {
        [host] if host_ok(host, served.addr) => {}
        [] => return Some(error(400, "a Host header is required")),
        _ => {
            return Some(error(
                403,
                "the Host header does not name this endpoint (127.0.0.1:PORT or localhost:PORT)",
            ));
        }
    }
    let auth: Vec<_> = head.all("authorization").collect();
    let token = match auth[..] {
        [value] => value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim()),
        _ => None,
    };
    if !token.is_some_and(|t| same_secret(t.as_bytes(), served.token.as_bytes())) {
        return Some(error(
            401,
            "missing or wrong token: send `Authorization: Bearer TOKEN`, TOKEN from the job's \
             address file in the run folder",
        ));
    }
    None
}
