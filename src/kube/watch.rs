//! One watch: kube-runtime's watcher (list, then watch from the list's resourceVersion, with
//! bookmarks; a 410 Gone re-lists) with backoff on errors, feeding one store.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::kinds::Kind;
use super::store::{ScopeId, Stores};

/// Runs until the task is aborted; every error is logged and retried with backoff.
pub async fn run(
    client: kube::Client,
    stores: Arc<Stores>,
    id: ScopeId,
    kind: Kind,
    namespace: Option<String>,
) {
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &kind.resource),
        None => Api::all_with(client, &kind.resource),
    };
    let what = match &namespace {
        Some(ns) => format!("{} in namespace {ns}", kind.resource.plural),
        None => kind.resource.plural.clone(),
    };
    let mut last_error = String::new();
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                on_error(&stores, id, &what, &err, &mut last_error);
                continue;
            }
        };
        if !last_error.is_empty() {
            tracing::info!(watch = %what, "watch recovered");
            last_error.clear();
        }
        match event {
            Event::Init => stores.init(id),
            Event::InitApply(object) => stores.init_apply(id, to_value(object)),
            Event::InitDone => stores.init_done(id),
            Event::Apply(object) => stores.apply(id, to_value(object)),
            Event::Delete(object) => stores.delete(id, to_value(object)),
        }
    }
}

fn on_error(
    stores: &Stores,
    id: ScopeId,
    what: &str,
    err: &watcher::Error,
    last_error: &mut String,
) {
    let message = err.to_string();
    // A kind the cluster does not serve (CRD missing) or Portico may not read (RBAC) must not
    // hold the rest of the configuration back: it counts as empty while the watch retries.
    let unavailable = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 404 || s.code == 403,
        _ => false,
    };
    if unavailable {
        stores.unavailable(id);
    }
    if *last_error != message {
        if unavailable {
            tracing::warn!(watch = %what, error = %message, "kind unavailable; treated as empty, retrying");
        } else {
            tracing::warn!(watch = %what, error = %message, "watch failed; retrying with backoff");
        }
        *last_error = message;
    } else {
        tracing::debug!(watch = %what, error = %message, "watch still failing");
    }
}

fn to_value(object: DynamicObject) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_default()
}
