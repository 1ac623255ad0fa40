//! Who may talk to the control endpoint: only by this endpoint's own
//! address (any other `Host`, as DNS rebinding sends, gets 403); not a web
//! page of another site (a request with `Origin` gets 403, and a browser's
//! request, known by its `Sec-Fetch-*` headers, only reads the status page
//! and `/status` from this endpoint itself); and only with the run's
//! token, as `Authorization: Bearer TOKEN` or as the page's cookie (else
//! 401, except for the page, which then says how to get in).

use std::net::SocketAddr;

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;

use super::cookie_name;
use super::routes::error;
use super::run_folder::same_secret;
use super::server::Served;

/// Who is asking, once let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    /// With the token (header or cookie).
    Owner,
    /// Without it: only the page's way in is answered.
    Stranger,
}

/// Whether `host` names this endpoint (not another name resolving to it).
fn host_ok(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    host == addr.to_string()
        || host.eq_ignore_ascii_case(&format!("localhost:{port}"))
        || host == format!("127.0.0.1:{port}")
}

/// The values of header `name`, as text (a value that is not text is
/// taken as empty).
fn all<'a>(headers: &'a HeaderMap, name: &'a str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect()
}

/// The token the request carries in its cookie for this endpoint.
pub(super) fn cookie_token<'a>(headers: &'a HeaderMap, served: &Served) -> Option<&'a str> {
    let name = cookie_name(served.addr.port());
    all(headers, "cookie")
        .into_iter()
        .flat_map(|c| c.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether `token` is this run's.
pub(super) fn is_token(token: &str, served: &Served) -> bool {
    same_secret(token.as_bytes(), served.token.as_bytes())
}

/// Refuse what is not ours to answer (browsers of other sites, other host
/// names: the status and why); else say who asks.
pub(super) fn check(req: &Parts, served: &Served) -> Result<Who, (u16, &'static str)> {
    let h = &req.headers;
    let origin = h.contains_key(header::ORIGIN);
    let browser = h.keys().any(|n| n.as_str().starts_with("sec-fetch-"));
    let page_read = req.method == Method::GET
        && matches!(req.uri.path(), "/" | "/status")
        && all(h, "sec-fetch-site")
            .iter()
            .all(|s| matches!(*s, "same-origin" | "none"));
    if origin || (browser && !page_read) {
        return Err((
            403,
            "requests from web pages are refused (the request carries an Origin or Sec-Fetch \
             header); open the status page with the URL `weir run` printed",
        ));
    }
    match all(h, "host")[..] {
        [host] if host_ok(host, served.addr) => {}
        [] => return Err((400, "a Host header is required")),
        _ => {
            return Err((
                403,
                "the Host header does not name this endpoint (127.0.0.1:PORT or localhost:PORT)",
            ));
        }
    }
    let bearer = match all(h, "authorization")[..] {
        [value] => value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim()),
        _ => None,
    };
    let owner = match bearer {
        Some(t) => is_token(t, served),
        None => cookie_token(h, served).is_some_and(|t| is_token(t, served)),
    };
    Ok(if owner { Who::Owner } else { Who::Stranger })
}

/// The answer to a stranger anywhere but the page.
pub(super) fn unauthorized() -> Response {
    let mut r = error(
        401,
        "missing or wrong token: send `Authorization: Bearer TOKEN`, TOKEN from the job's \
         address file in the run folder",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}
