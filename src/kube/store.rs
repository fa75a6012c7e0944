//! Reflector stores: the objects every watch has seen, one store per (kind, namespace scope).
//!
//! A (re)list fills a pending store that replaces the live one atomically when the list is
//! complete. A malformed object is a problem, never fatal: its last good version (if any)
//! stays in effect. Status-only changes wake the status writer but not the translator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use portico_translator::{Document, ObjectKey, Problem, Resources};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::kinds::{self, Kind};
use super::refs;

/// Identifies one watch: an index into [`Stores`]' scopes.
pub type ScopeId = usize;

#[derive(Clone)]
struct Entry {
    doc: Document,
    /// The object as the API server sent it, for kinds whose status Portico writes.
    raw: Option<Arc<Value>>,
    /// Hash of everything but status and bookkeeping: unchanged means nothing to translate.
    hash: u64,
}

#[derive(Default)]
struct Contents {
    objects: BTreeMap<ObjectKey, Entry>,
    problems: BTreeMap<ObjectKey, Problem>,
}

struct Scope {
    kind: Kind,
    namespace: Option<String>,
    live: Contents,
    /// Filled between a list's Init and InitDone.
    pending: Option<Contents>,
    synced: bool,
}

/// All stores, and the signals they raise.
pub struct Stores {
    scopes: Mutex<Vec<Scope>>,
    /// Poked when the translator's input changed.
    changed: mpsc::Sender<()>,
    /// Bumped on every change, status-only ones included (the status writer watches it).
    seen: watch::Sender<u64>,
}

impl Stores {
    pub fn new(changed: mpsc::Sender<()>) -> Self {
        Stores {
            scopes: Mutex::new(Vec::new()),
            changed,
            seen: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Scope>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the store of one watch: `namespace` None watches all namespaces.
    pub fn register(&self, kind: Kind, namespace: Option<String>) -> ScopeId {
        let mut scopes = self.lock();
        scopes.push(Scope {
            kind,
            namespace,
            live: Contents::default(),
            pending: None,
            synced: false,
        });
        scopes.len() - 1
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seen.subscribe()
    }

    /// Whether every watch has completed its first list.
    pub fn synced(&self) -> bool {
        self.lock().iter().all(|s| s.synced)
    }

    /// The watches still waiting for their first list, for logs.
    pub fn unsynced(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|s| !s.synced)
            .map(describe)
            .collect()
    }

    pub fn init(&self, id: ScopeId) {
        if let Some(scope) = self.lock().get_mut(id) {
            scope.pending = Some(Contents::default());
        }
    }

    pub fn init_apply(&self, id: ScopeId, object: Value) {
        let mut scopes = self.lock();
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let kind = scope.kind.clone();
        let last_good = |key: &ObjectKey| scope.live.objects.get(key).cloned();
        let decoded = decode(&kind, object);
        let mut pending = scope.pending.take().unwrap_or_default();
        match decoded {
            Ok((key, entry)) => {
                pending.objects.insert(key, entry);
            }
            Err((key, problem)) => {
                if let Some(old) = last_good(&key) {
                    pending.objects.insert(key.clone(), old);
                }
                if scope.live.problems.get(&key) != Some(&*problem) {
                    tracing::warn!("{problem} (skipped)");
                }
                pending.problems.insert(key, *problem);
            }
        }
        scope.pending = Some(pending);
    }

    /// The list is complete: the pending store replaces the live one at once.
    pub fn init_done(&self, id: ScopeId) {
        let mut scopes = self.lock();
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let pending = scope.pending.take().unwrap_or_default();
        let differs =
            hashes(&scope.live) != hashes(&pending) || scope.live.problems != pending.problems;
        let first = !scope.synced;
        tracing::debug!(watch = %describe(scope), objects = pending.objects.len(), "listed");
        scope.live = pending;
        scope.synced = true;
        drop(scopes);
        self.notify(differs || first);
    }

    pub fn apply(&self, id: ScopeId, object: Value) {
        let mut scopes = self.lock();
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let translate = match decode(&scope.kind, object) {
            Ok((key, entry)) => {
                let hash = entry.hash;
                let old = scope.live.objects.insert(key.clone(), entry);
                let had_problem = scope.live.problems.remove(&key).is_some();
                had_problem || old.is_none_or(|o| o.hash != hash)
            }
            Err((key, problem)) => {
                // The last good version stays in effect.
                let new = scope.live.problems.get(&key) != Some(&*problem);
                if new {
                    tracing::warn!(
                        "{problem} (skipped; its last good version, if any, stays in effect)"
                    );
                }
                scope.live.problems.insert(key, *problem);
                new
            }
        };
        drop(scopes);
        self.notify(translate);
    }

    pub fn delete(&self, id: ScopeId, object: Value) {
        let mut scopes = self.lock();
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let key = kinds::key_of(&scope.kind, &object);
        let removed = scope.live.objects.remove(&key).is_some();
        let had_problem = scope.live.problems.remove(&key).is_some();
        drop(scopes);
        self.notify(removed || had_problem);
    }

    /// The kind is not served (CRD not installed) or not readable (RBAC): treat it as empty,
    /// so the rest of the configuration is served. The watch keeps retrying.
    pub fn unavailable(&self, id: ScopeId) {
        let mut scopes = self.lock();
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let had = !scope.live.objects.is_empty() || !scope.synced;
        scope.live = Contents::default();
        scope.synced = true;
        drop(scopes);
        self.notify(had);
    }

    fn notify(&self, translate: bool) {
        if translate {
            // A full channel already holds a pending reload, which will see this change.
            let _ = self.changed.try_send(());
        }
        self.seen.send_modify(|n| *n += 1);
    }

    /// The object as last seen, for kinds whose status Portico writes.
    pub fn live(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        let scopes = self.lock();
        scopes
            .iter()
            .filter(|s| s.kind.name() == key.kind)
            .find_map(|s| s.live.objects.get(key).and_then(|e| e.raw.clone()))
    }

    /// Every live object of the kinds whose status Portico writes.
    pub fn live_owned(&self) -> Vec<(ObjectKey, Arc<Value>)> {
        let scopes = self.lock();
        let mut out = Vec::new();
        for scope in scopes.iter() {
            for (key, entry) in &scope.live.objects {
                if let Some(raw) = &entry.raw {
                    out.push((key.clone(), raw.clone()));
                }
            }
        }
        out
    }

    /// A snapshot for the translator: every object, but only the Secrets something refers to.
    pub fn resources(&self) -> (Resources, Vec<Problem>) {
        let scopes = self.lock();
        let mut resources = Resources::default();
        let mut problems = Vec::new();
        let mut referrers = Vec::new();
        for scope in scopes.iter() {
            problems.extend(scope.live.problems.values().cloned());
            if scope.kind.name() == "Secret" {
                continue;
            }
            for entry in scope.live.objects.values() {
                if let Some(raw) = &entry.raw {
                    referrers.push((entry.doc.key.clone(), raw.clone()));
                }
                resources.insert("", entry.doc.clone());
            }
        }
        let wanted = refs::referenced_secrets(referrers.iter().map(|(k, v)| (k, v.as_ref())));
        for scope in scopes.iter().filter(|s| s.kind.name() == "Secret") {
            for (key, entry) in &scope.live.objects {
                if wanted.contains(&(key.namespace.clone(), key.name.clone())) {
                    resources.insert("", entry.doc.clone());
                }
            }
        }
        // API objects have no file and line.
        resources.sources.clear();
        problems.sort();
        (resources, problems)
    }
}

fn describe(scope: &Scope) -> String {
    match &scope.namespace {
        Some(ns) => format!("{} in {ns}", scope.kind.resource.plural),
        None => scope.kind.resource.plural.clone(),
    }
}

fn hashes(contents: &Contents) -> Vec<(&ObjectKey, u64)> {
    contents.objects.iter().map(|(k, e)| (k, e.hash)).collect()
}

fn decode(kind: &Kind, object: Value) -> Result<(ObjectKey, Entry), (ObjectKey, Box<Problem>)> {
    let key = kinds::key_of(kind, &object);
    let hash = content_hash(&object);
    let raw = kind.owns_status.then(|| Arc::new(object.clone()));
    match kinds::decode(kind, object) {
        Ok(doc) => Ok((doc.key.clone(), Entry { doc, raw, hash })),
        Err(problem) => Err((key, problem)),
    }
}

/// Hash of the object without status and server bookkeeping.
fn content_hash(object: &Value) -> u64 {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    xxhash_rust::xxh3::xxh3_64(object.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stores() -> (Stores, mpsc::Receiver<()>, ScopeId) {
        let (tx, rx) = mpsc::channel(1);
        let stores = Stores::new(tx);
        let kind = kinds::all()
            .into_iter()
            .find(|k| k.name() == "HTTPRoute")
            .unwrap();
        let id = stores.register(kind, None);
        (stores, rx, id)
    }

    fn route(name: &str, host: &str, rv: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "spec": {"hostnames": [host]}})
    }

    fn hosts(stores: &Stores) -> Vec<String> {
        let (resources, _) = stores.resources();
        resources
            .http_routes
            .iter()
            .map(|r| {
                format!(
                    "{}={}",
                    r.metadata.name.as_deref().unwrap_or(""),
                    r.spec.hostnames.as_ref().unwrap()[0]
                )
            })
            .collect()
    }

    fn poked(rx: &mut mpsc::Receiver<()>) -> bool {
        rx.try_recv().is_ok()
    }

    #[test]
    fn a_relist_replaces_the_store_only_when_complete() {
        let (stores, mut rx, id) = stores();
        stores.init(id);
        stores.init_apply(id, route("a", "a.example", "1"));
        stores.init_done(id);
        assert!(stores.synced());
        assert!(poked(&mut rx));

        stores.init(id);
        stores.init_apply(id, route("b", "b.example", "2"));
        assert_eq!(
            hosts(&stores),
            ["a=a.example"],
            "a half-done list is not visible"
        );
        stores.init_done(id);
        assert_eq!(hosts(&stores), ["b=b.example"]);
        assert!(poked(&mut rx));
    }

    #[test]
    fn status_only_changes_do_not_wake_the_translator() {
        let (stores, mut rx, id) = stores();
        stores.apply(id, route("a", "a.example", "1"));
        assert!(poked(&mut rx));
        let mut seen = stores.subscribe();
        seen.mark_unchanged();
        let mut with_status = route("a", "a.example", "2");
        with_status["status"] = json!({"parents": []});
        stores.apply(id, with_status);
        assert!(!poked(&mut rx));
        assert!(seen.has_changed().unwrap());
        assert_eq!(
            stores
                .live(&ObjectKey::new("HTTPRoute", "ns", "a"))
                .unwrap()["status"],
            json!({"parents": []})
        );
    }

    #[test]
    fn a_malformed_update_keeps_the_last_good_version_and_reports_it() {
        let (stores, mut rx, id) = stores();
        stores.apply(id, route("a", "a.example", "1"));
        poked(&mut rx);
        let bad =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"hostnames": "nope"}});
        stores.apply(id, bad);
        assert!(poked(&mut rx));
        assert_eq!(hosts(&stores), ["a=a.example"]);
        let (_, problems) = stores.resources();
        assert_eq!(problems.len(), 1, "{problems:?}");
        stores.apply(id, route("a", "a2.example", "3"));
        let (_, problems) = stores.resources();
        assert!(problems.is_empty());
        stores.delete(id, route("a", "", "4"));
        assert!(hosts(&stores).is_empty());
    }

    #[test]
    fn only_referenced_secrets_reach_the_translator() {
        let (tx, _rx) = mpsc::channel(1);
        let stores = Stores::new(tx);
        let kind = |name: &str| kinds::all().into_iter().find(|k| k.name() == name).unwrap();
        let gateways = stores.register(kind("Gateway"), None);
        let secrets = stores.register(kind("Secret"), None);
        stores.apply(
            gateways,
            json!({"metadata": {"name": "gw", "namespace": "ns"}, "spec": {"gatewayClassName": "c", "listeners": [
                {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cert"}]}}]}}),
        );
        for name in ["cert", "other"] {
            stores.apply(
                secrets,
                json!({"metadata": {"name": name, "namespace": "ns"}, "data": {}}),
            );
        }
        let (resources, _) = stores.resources();
        let names: Vec<_> = resources
            .secrets
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["cert"]);
    }

    #[test]
    fn an_unavailable_kind_counts_as_synced_and_empty() {
        let (stores, _rx, id) = stores();
        assert!(!stores.synced());
        assert_eq!(stores.unsynced(), ["httproutes"]);
        stores.unavailable(id);
        assert!(stores.synced());
    }
}
