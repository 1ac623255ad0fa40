//! The status page: one self-contained HTML page (`page.html`: styles and
//! script inline, nothing fetched from elsewhere) served to the owner at
//! `/`; it asks `/status` every second and draws the figures. A browser
//! gets in the way Jupyter lets one in: `/?token=TOKEN` (the URL `weir
//! run` prints) is answered with an HttpOnly, SameSite=Strict cookie
//! holding the token and a redirect to `/`; without it, `/` is a page that
//! only says how to get in.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::access::is_token;
use super::cookie_name;
use super::server::Served;

/// The page.
const PAGE: &str = include_str!("page.html");

/// What a browser without the token sees.
const WAY_IN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Weir: sign in</title><style>body{font:15px system-ui,sans-serif;margin:3em;max-width:40em;\
color:#222}code{background:#eee;padding:2px 4px}</style></head><body id=\"way-in\">\
<h1>Weir status page</h1><p>This page needs the job's token.</p><ul>\
<li>Open the address <code>weir run</code> printed when the job started \
(<code>status page: http://ADDRESS/?token=TOKEN</code>).</li>\
<li>Or read the figures in a terminal: <code>weir status JOB_FILE</code>.</li></ul>\
<p>The token is in the job's address file in the run folder (readable only by the user \
who runs the job).</p></body></html>";

/// Headers of every page: nothing but this endpoint, no framing.
fn page_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// `GET /` with the token: the page.
pub(super) async fn page() -> Response {
    let mut r = Html(PAGE).into_response();
    page_headers(&mut r);
    r
}

/// `GET /` without the token: the cookie for `?token=TOKEN`, else the
/// page that says how to get in.
pub(super) fn way_in(parts: &Parts, served: &Served) -> Response {
    let q: Option<Query<HashMap<String, String>>> = Query::try_from_uri(&parts.uri).ok();
    let token = q.as_ref().and_then(|Query(q)| q.get("token"));
    let mut r = match token {
        Some(t) if is_token(t, served) => {
            let cookie = format!(
                "{}={t}; HttpOnly; SameSite=Strict; Path=/",
                cookie_name(served.addr.port())
            );
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => (StatusCode::UNAUTHORIZED, Html(WAY_IN)).into_response(),
    };
    page_headers(&mut r);
    r
}
