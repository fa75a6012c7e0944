//! The HTTP side of the fake API server: Kubernetes REST paths, list, get, watch streams
//! (with bookmarks, replay from a resourceVersion and 410 Gone), create, replace, patch and
//! delete, including the `/status` subresource.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::state::{ApiError, Event, Part, State};
use super::types::ResourceType;

/// What the handlers share.
pub struct Shared {
    pub state: Mutex<State>,
    /// Bumped to cut every open watch connection.
    pub cut: watch::Sender<u64>,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// While set, new watch requests fail with 503 (an API server that is away).
    pub watches_blocked: AtomicBool,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

/// A parsed request path.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock().requests.push(format!("{method} {uri}"));
    let target = match parse_path(&shared, uri.path()) {
        Ok(t) => t,
        Err(err) => return error(&err),
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match (method, &target.name) {
        (Method::GET, None) if watching && shared.watches_blocked.load(Ordering::SeqCst) => error(
            &ApiError::new(503, "ServiceUnavailable", "watches are blocked by the test"),
        ),
        (Method::GET, None) if watching => watch_stream(shared, target, &query),
        (Method::GET, None) => list(&shared, &target),
        (Method::GET, Some(name)) => {
            let state = shared.lock();
            let ns = target.namespace.as_deref().unwrap_or("");
            match state.get(&target.rt, ns, name) {
                Some(object) => ok(&object),
                None => error(&ApiError::not_found(&format!(
                    "{} {name:?}",
                    target.rt.plural
                ))),
            }
        }
        (Method::POST, None) => write(&shared, &target, &body, |state, rt, ns, body| {
            state.create(rt, ns, body)
        }),
        (Method::PUT, Some(name)) => {
            let part = if target.status {
                Part::Status
            } else {
                Part::Main
            };
            write(&shared, &target, &body, |state, rt, ns, body| {
                state.replace(rt, ns, name, body, part)
            })
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if content_type.starts_with("application/json-patch") {
                return error(&ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "JSON patch is not supported here",
                ));
            }
            let part = if target.status {
                Part::Status
            } else {
                Part::Main
            };
            write(&shared, &target, &body, |state, rt, ns, patch| {
                state.patch(rt, ns, name, &patch, part)
            })
        }
        (Method::DELETE, Some(name)) => {
            let mut state = shared.lock();
            match state.delete(&target.rt, target.namespace.as_deref().unwrap_or(""), name) {
                Ok(object) => ok(&object),
                Err(err) => error(&err),
            }
        }
        _ => error(&ApiError::new(
            405,
            "MethodNotAllowed",
            "method not allowed",
        )),
    }
}

fn write(
    shared: &Shared,
    target: &Target,
    body: &[u8],
    op: impl FnOnce(&mut State, &ResourceType, &str, Value) -> Result<Value, ApiError>,
) -> Response {
    // Server-side apply bodies are YAML, which JSON is a subset of.
    let parsed: Result<Value, String> = serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| e.to_string());
    let body = match parsed {
        Ok(v) if v.is_object() => v,
        Ok(_) => return error(&ApiError::new(400, "BadRequest", "body is not an object")),
        Err(e) => {
            return error(&ApiError::new(
                400,
                "BadRequest",
                format!("cannot decode body: {e}"),
            ));
        }
    };
    let namespace = target
        .namespace
        .clone()
        .or_else(|| body["metadata"]["namespace"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut state = shared.lock();
    match op(&mut state, &target.rt, &namespace, body) {
        Ok(object) => ok(&object),
        Err(err) => error(&err),
    }
}

fn list(shared: &Shared, target: &Target) -> Response {
    let state = shared.lock();
    let items = state.list(&target.rt, target.namespace.as_deref());
    ok(&json!({
        "apiVersion": target.rt.api_version(),
        "kind": format!("{}List", target.rt.kind),
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    }))
}

/// Starts a watch: replays history after the requested resourceVersion (or, without one,
/// sends every current object as ADDED), then streams live events until the client leaves,
/// the timeout passes or the test cuts the connection.
fn watch_stream(shared: Arc<Shared>, target: Target, query: &HashMap<String, String>) -> Response {
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .filter(|rv| *rv > 0);
    let mut cut = shared.cut.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);

    let (replay, mut live, mut last_rv, gone) = {
        let state = shared.lock();
        let live = state.events.subscribe();
        match from {
            Some(rv) => match state.since(rv) {
                Some(events) => {
                    let lines: Vec<Value> = events
                        .iter()
                        .filter(|e| matches(&target, e))
                        .map(|e| event_json(e))
                        .collect();
                    (lines, live, state.rv, false)
                }
                None => (Vec::new(), live, state.rv, true),
            },
            None => {
                let lines = state
                    .list(&target.rt, target.namespace.as_deref())
                    .into_iter()
                    .map(|object| json!({"type": "ADDED", "object": object}))
                    .collect();
                (lines, live, state.rv, false)
            }
        }
    };
    let rt = target.rt.clone();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        if gone {
            let status = ApiError::new(410, "Expired", "too old resource version").status();
            let _ = tx
                .send(Ok(line(&json!({"type": "ERROR", "object": status}))))
                .await;
            return;
        }
        for event in replay {
            if tx.send(Ok(line(&event))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = cut.changed() => {
                    // An abrupt end, as when a connection drops mid-stream.
                    let _ = tx.send(Err(std::io::Error::other("watch cut by the test"))).await;
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": rt.api_version(), "kind": rt.kind,
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    }});
                    if tx.send(Ok(line(&bookmark))).await.is_err() {
                        return;
                    }
                }
                event = live.recv() => match event {
                    Ok(event) => {
                        last_rv = event.rv;
                        if matches(&target, &event) && tx.send(Ok(line(&event_json(&event)))).await.is_err() {
                            return;
                        }
                    }
                    // A watcher that fell behind is dropped; the client resumes from history.
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn matches(target: &Target, event: &Event) -> bool {
    event.group == target.rt.group
        && event.plural == target.rt.plural
        && target
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == event.namespace)
}

fn event_json(event: &Event) -> Value {
    json!({"type": event.kind, "object": event.object})
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then `[namespaces/NS/]PLURAL[/NAME[/status]]`.
fn parse_path(shared: &Shared, path: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Err(ApiError::not_found(&format!("path {path:?}"))),
    };
    // Namespace objects themselves live at /api/v1/namespaces[/NAME[/status]].
    let core_namespace = group.is_empty()
        && rest.first() == Some(&"namespaces")
        && (rest.len() <= 2 || (rest.len() == 3 && rest[2] == "status"));
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !core_namespace => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return Err(ApiError::not_found(&format!("path {path:?}"))),
    };
    let rt = shared.lock().find_type(group, plural).ok_or_else(|| {
        ApiError::not_found(&format!(
            "the server could not find the requested resource ({path})"
        ))
    })?;
    Ok(Target {
        rt,
        namespace,
        name,
        status,
    })
}

fn ok(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        err.status().to_string(),
    )
        .into_response()
}
