//! Admin HTTP: health, readiness, metrics, live status and debugging views.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::serve::State;

type Shared = Arc<State>;

pub async fn serve(
    listener: TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/debug/problems", get(problems))
        .route("/debug/proxy-status", get(proxy_status))
        .route("/debug/config_dump", get(config_dump))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(AxumState(state): AxumState<Shared>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no config published yet\n").into_response()
    }
}

async fn metrics(AxumState(state): AxumState<Shared>) -> Response {
    let view = state.view.read().await;
    let mut text = state.cache.render_metrics();
    text.push_str(
        "# HELP portico_translation_duration_seconds Duration of the latest full translation.\n",
    );
    text.push_str("# TYPE portico_translation_duration_seconds gauge\n");
    text.push_str(&format!(
        "portico_translation_duration_seconds {}\n",
        view.translation_seconds
    ));
    text.push_str("# HELP portico_reconciliations_total Translations published since start.\n");
    text.push_str("# TYPE portico_reconciliations_total counter\n");
    text.push_str(&format!("portico_reconciliations_total {}\n", view.reloads));
    text.push_str("# HELP portico_config_problems Problems in the current input.\n");
    text.push_str("# TYPE portico_config_problems gauge\n");
    text.push_str(&format!(
        "portico_config_problems {}\n",
        view.problems.len()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

/// The status Portico computes for every object, as `portico status` prints it, live: it
/// includes what Envoy accepted or rejected.
async fn status(AxumState(state): AxumState<Shared>, Query(q): Query<FormatQuery>) -> Response {
    let statuses = state.view.read().await.statuses.clone();
    render(
        &portico_translator::status_documents(&statuses),
        q.format.as_deref(),
    )
}

async fn problems(AxumState(state): AxumState<Shared>) -> String {
    let view = state.view.read().await;
    view.problems.iter().map(|p| format!("{p}\n")).collect()
}

async fn proxy_status(AxumState(state): AxumState<Shared>) -> Response {
    axum::Json(crate::commands::proxy_status_json(&state.cache)).into_response()
}

#[derive(Deserialize)]
struct NodeQuery {
    node: String,
    #[serde(default)]
    show_secrets: bool,
}

/// What one node was last sent, in Envoy's JSON mapping. Private keys are redacted unless asked.
async fn config_dump(AxumState(state): AxumState<Shared>, Query(q): Query<NodeQuery>) -> Response {
    let Some(sent) = state.cache.sent_resources(&q.node) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no connected node {:?}\n", q.node),
        )
            .into_response();
    };
    let mut out = BTreeMap::new();
    for (type_url, resources) in sent {
        let items: Vec<serde_json::Value> = resources
            .iter()
            .map(|(name, any)| {
                let mut rendered = portico_translator::render::resource_json(any)
                    .unwrap_or_else(|e| serde_json::json!({"name": name, "error": e.to_string()}));
                if !q.show_secrets {
                    crate::commands::redact::redact(&mut rendered);
                }
                rendered
            })
            .collect();
        out.insert(type_url, items);
    }
    axum::Json(out).into_response()
}

fn render(value: &serde_json::Value, format: Option<&str>) -> Response {
    match format {
        Some("json") => axum::Json(value.clone()).into_response(),
        _ => match serde_yaml::to_string(value) {
            Ok(text) => ([(header::CONTENT_TYPE, "application/yaml")], text).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
    }
}
