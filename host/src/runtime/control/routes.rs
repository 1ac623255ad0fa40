//! What the endpoint answers, once [`super::access`] let a request in:
//! the status page (`GET /`), `GET /status`, `GET /metrics`,
//! `POST /savepoint`, `POST /swap`, `POST /rollback` and `POST /stop`,
//! routed by axum, query values decoded by its `Query`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crossbeam_channel::RecvTimeoutError;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::SAVEPOINT_WAIT;
use super::access::{Who, check, unauthorized};
use super::server::Served;
use super::status::manifest_json;
use super::{exposition, page, status};
use crate::checkpoint::check_savepoint_name;
use crate::checkpoint::manifest::{self, Kind};
use crate::runtime::Trigger;
use crate::runtime::swap::{DEFAULT_PROBATION_BATCHES, DEFAULT_PROBATION_TIMEOUT, ProbationAsk};

/// Query values, decoded.
type Params = Query<HashMap<String, String>>;

/// A JSON answer.
pub(super) fn json_answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// A JSON answer `{"error": message}`.
pub(super) fn error(status: u16, message: &str) -> Response {
    json_answer(status, json!({ "error": message }))
}

/// Whether the request is one of the owner's actions, served also when
/// the endpoint is busy.
fn is_action(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/stop" | "/savepoint" | "/swap" | "/rollback")
}

/// Answer one request (`busy`: it came on a busy-tier connection).
pub(super) async fn answer(
    req: Request<hyper::body::Incoming>,
    served: &Arc<Served>,
    busy: bool,
) -> Response {
    let (parts, body) = req.into_parts();
    let mut response = match check(&parts, served) {
        Err((status, why)) => error(status, why),
        Ok(who) if busy && !(who == Who::Owner && is_action(&parts.method, parts.uri.path())) => {
            error(503, "too many control connections")
        }
        Ok(Who::Stranger) if parts.uri.path() == "/" && parts.method == Method::GET => {
            page::way_in(&parts, served)
        }
        Ok(Who::Stranger) => unauthorized(),
        Ok(Who::Owner) => {
            let req = Request::from_parts(parts, Body::new(body));
            match router(served.clone()).oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The owner's routes.
fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/status", get(status_route))
        .route("/metrics", get(metrics_route))
        .route("/savepoint", post(savepoint_route))
        .route("/stop", post(stop_route))
        .route("/swap", post(swap_route))
        .route("/rollback", post(rollback_route))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(served)
}

async fn not_found() -> Response {
    error(404, "no such endpoint")
}

async fn status_route(State(served): State<Arc<Served>>) -> Response {
    json_answer(200, status::status(&served))
}

async fn metrics_route(State(served): State<Arc<Served>>) -> Response {
    match exposition::encode(&served) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(500, &format!("encoding metrics: {e}")),
    }
}

/// Run `f` on a thread that may block (a savepoint, a swap).
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| error(500, &format!("the request failed: {e}")))
}

async fn savepoint_route(State(served): State<Arc<Served>>, Query(q): Params) -> Response {
    blocking(move || savepoint(&served, q.get("name").cloned(), false)).await
}

async fn stop_route(State(served): State<Arc<Served>>, Query(q): Params) -> Response {
    if q.get("savepoint").is_some_and(|v| v == "true" || v == "1") {
        return blocking(move || savepoint(&served, q.get("name").cloned(), true)).await;
    }
    served.job.stop.store(true, Ordering::Relaxed);
    json_answer(200, json!({"stopping": true}))
}

async fn swap_route(State(served): State<Arc<Served>>, Query(q): Params) -> Response {
    blocking(move || swap(&served, &q, false)).await
}

async fn rollback_route(State(served): State<Arc<Served>>, Query(q): Params) -> Response {
    blocking(move || swap(&served, &q, true)).await
}

/// `POST /swap?operator=NAME&plugin=PATH[&probation_batches=N]
/// [&probation_timeout_ms=MS]`: swap an
/// operator's plugin (answers once the new version runs on probation, or
/// with why it was refused: nothing changed then);
/// `POST /rollback?operator=NAME`: swap back to the version before the
/// last promoted swap.
fn swap(served: &Served, q: &HashMap<String, String>, rollback: bool) -> Response {
    let Some(swaps) = &served.job.swaps else {
        return error(
            409,
            "this job cannot swap plugins: swaps need checkpoints ([checkpoints] enabled) and \
             Wasm plugins",
        );
    };
    if served.job.stop.load(Ordering::Relaxed) {
        return error(409, "the job is stopping: nothing was swapped");
    }
    let Some(operator) = q.get("operator") else {
        return error(400, "name the operator: ?operator=NAME");
    };
    let batches = match q.get("probation_batches").map(|v| v.parse::<u64>()) {
        None => DEFAULT_PROBATION_BATCHES,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "probation_batches must be a number"),
    };
    let timeout = match q.get("probation_timeout_ms").map(|v| v.parse::<u64>()) {
        None => DEFAULT_PROBATION_TIMEOUT,
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => return error(400, "probation_timeout_ms must be a number"),
    };
    let ask = ProbationAsk { batches, timeout };
    let result = if rollback {
        swaps.rollback(operator, ask)
    } else {
        let Some(plugin) = q.get("plugin") else {
            return error(400, "name the new component: ?plugin=PATH");
        };
        swaps.swap(operator, std::path::Path::new(plugin), ask)
    };
    match result {
        Ok(record) => json_answer(200, serde_json::to_value(record).unwrap_or_default()),
        Err(r) => error(r.status, &r.message),
    }
}

/// `POST /savepoint?name=N` and `POST /stop?savepoint=true&name=N`: take
/// a savepoint (then stop), answer when it is complete.
fn savepoint(served: &Served, name: Option<String>, stop: bool) -> Response {
    let job = &served.job;
    if !job.savepoints {
        return error(
            409,
            "this job runs without checkpoints ([checkpoints] enabled = false), so it cannot \
             take a savepoint; stop it without one (`weir stop JOB_FILE`)",
        );
    }
    let name = name.filter(|n| !n.is_empty());
    if let Some(refused) = name.as_deref().and_then(|n| check_savepoint_name(n).err()) {
        return error(400, refused);
    }
    if let Some(taken) = name.as_deref().and_then(|n| name_taken(served, n)) {
        return taken;
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let sent = job.triggers.send(Trigger::Savepoint {
        name: name.clone(),
        stop,
        reply: Some(tx),
    });
    let deadline = Instant::now() + SAVEPOINT_WAIT;
    let mut reply = None;
    if sent.is_ok() {
        // Until answered, the job ends (its coordinator drops the reply),
        // or the server stops (the coordinator has ended by then).
        while reply.is_none() && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => reply = Some(r),
                Err(RecvTimeoutError::Timeout) if !served.done.load(Ordering::SeqCst) => {}
                Err(_) => break,
            }
        }
        if reply.is_none() {
            reply = rx.try_recv().ok();
        }
    }
    match reply {
        Some(Ok(m)) => json_answer(200, manifest_json(&job.job, &m)),
        // Another request took the name while this one waited for its
        // barrier: still the user's naming, not a failed checkpoint.
        Some(Err(e)) => match name.as_deref().and_then(|n| name_taken(served, n)) {
            Some(taken) => taken,
            None => json_answer(500, json!({"error": e})),
        },
        None => error(503, "the job ended before the savepoint completed"),
    }
}

/// A 409 refusal when job's store holds a savepoint named `name` already:
/// savepoints are never replaced, and a name in use is the user's to
/// change, so no barrier is asked for (nothing is logged or counted as a
/// failed checkpoint). `None` when the name is free (or the store cannot
/// tell: the coordinator checks again before it writes).
fn name_taken(served: &Served, name: &str) -> Option<Response> {
    let store = served.job.store.as_ref()?;
    let folder = manifest::folder(&served.job.job, Kind::Savepoint, name);
    match store.get(&format!("{folder}/manifest.json")) {
        Ok(Some(_)) => Some(error(
            409,
            &format!(
                "the savepoint name `{name}` is taken: job `{}` has a savepoint of that name, and \
                 savepoints are never replaced; choose another name, or delete that one first \
                 (`weir savepoint delete JOB_FILE {name}`); no savepoint was taken",
                served.job.job
            ),
        )),
        Ok(None) | Err(_) => None,
    }
}
