//! Reflector stores: the objects every watch has seen, one store per (kind, namespace scope).
//!
//! A (re)list fills a pending store that replaces the live one atomically when the list is
//! complete. A malformed object is a problem, never fatal: its last good version (if any)
//! stays in effect. Status-only changes wake the status writer but not the translator.
//!
//! The stores keep each object's content hash and, for status, a trimmed copy of the raw
//! object; the decoded object itself moves into the translator's input (`input.rs`), which
//! each load updates in place with what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use portico_translator::{Document, ObjectKey, Problem, Resources};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::input::Input;
use super::kinds::{self, Kind};
use super::refs;

/// Identifies one watch: an index into [`Stores`]' scopes.
pub type ScopeId = usize;

#[derive(Clone)]
struct Entry {
    /// The decoded object, until it moves into the translator's input (see `Input`); kept
    /// for Secrets, of which only those something refers to are copied in.
    doc: Option<Document>,
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

impl Scope {
    fn is_secret(&self) -> bool {
        self.kind.name() == "Secret"
    }

    /// Hands a new version's object to the input (Secrets keep theirs).
    fn settle(&self, key: &ObjectKey, entry: &mut Entry, input: &mut Input) {
        if !self.is_secret() {
            input.record(key.clone(), entry.doc.take());
        }
    }
}

struct State {
    scopes: Vec<Scope>,
    input: Input,
}

/// All stores, and the signals they raise.
pub struct Stores {
    state: Mutex<State>,
    /// Poked when the translator's input changed.
    changed: mpsc::Sender<()>,
    /// Bumped on every change, status-only ones included (the status writer watches it).
    seen: watch::Sender<u64>,
}

impl Stores {
    pub fn new(changed: mpsc::Sender<()>) -> Self {
        Stores {
            state: Mutex::new(State {
                scopes: Vec::new(),
                input: Input::default(),
            }),
            changed,
            seen: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the store of one watch: `namespace` None watches all namespaces.
    pub fn register(&self, kind: Kind, namespace: Option<String>) -> ScopeId {
        let scopes = &mut self.lock().scopes;
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
        self.lock().scopes.iter().all(|s| s.synced)
    }

    /// The watches still waiting for their first list, for logs.
    pub fn unsynced(&self) -> Vec<String> {
        self.lock()
            .scopes
            .iter()
            .filter(|s| !s.synced)
            .map(describe)
            .collect()
    }

    pub fn init(&self, id: ScopeId) {
        if let Some(scope) = self.lock().scopes.get_mut(id) {
            scope.pending = Some(Contents::default());
        }
    }

    pub fn init_apply(&self, id: ScopeId, object: Value) {
        let mut state = self.lock();
        let Some(scope) = state.scopes.get_mut(id) else {
            return;
        };
        let decoded = decode(&scope.kind, object);
        let mut pending = scope.pending.take().unwrap_or_default();
        match decoded {
            Ok((key, entry)) => {
                pending.objects.insert(key, entry);
            }
            Err((key, problem)) => {
                // The last good version (already in the input) stays in effect.
                if let Some(old) = scope.live.objects.get(&key) {
                    pending.objects.insert(key.clone(), old.clone());
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
        let mut state = self.lock();
        let State { scopes, input } = &mut *state;
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let mut pending = scope.pending.take().unwrap_or_default();
        let differs =
            hashes(&scope.live) != hashes(&pending) || scope.live.problems != pending.problems;
        for key in scope.live.objects.keys() {
            if !pending.objects.contains_key(key) && !scope.is_secret() {
                input.record(key.clone(), None);
            }
        }
        for (key, entry) in &mut pending.objects {
            let same = scope.live.objects.get(key).map(|e| e.hash) == Some(entry.hash);
            if same && !scope.is_secret() {
                entry.doc = None;
            } else {
                scope.settle(key, entry, input);
            }
        }
        let first = !scope.synced;
        tracing::debug!(watch = %describe(scope), objects = pending.objects.len(), "listed");
        scope.live = pending;
        scope.synced = true;
        drop(state);
        self.notify(differs || first);
    }

    pub fn apply(&self, id: ScopeId, object: Value) {
        let mut state = self.lock();
        let State { scopes, input } = &mut *state;
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let translate = match decode(&scope.kind, object) {
            Ok((key, mut entry)) => {
                let hash = entry.hash;
                let had_problem = scope.live.problems.remove(&key).is_some();
                let changed = scope.live.objects.get(&key).is_none_or(|o| o.hash != hash);
                if changed {
                    scope.settle(&key, &mut entry, input);
                } else {
                    // Same content: the input already holds it (status-only change).
                    entry.doc = entry.doc.filter(|_| scope.is_secret());
                }
                scope.live.objects.insert(key, entry);
                had_problem || changed
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
        drop(state);
        self.notify(translate);
    }

    pub fn delete(&self, id: ScopeId, object: Value) {
        let mut state = self.lock();
        let State { scopes, input } = &mut *state;
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let key = kinds::key_of(&scope.kind, &object);
        let removed = scope.live.objects.remove(&key).is_some();
        if removed && !scope.is_secret() {
            input.record(key.clone(), None);
        }
        let had_problem = scope.live.problems.remove(&key).is_some();
        drop(state);
        self.notify(removed || had_problem);
    }

    /// The kind is not served (CRD not installed) or not readable (RBAC): treat it as empty,
    /// so the rest of the configuration is served. The watch keeps retrying.
    pub fn unavailable(&self, id: ScopeId) {
        let mut state = self.lock();
        let State { scopes, input } = &mut *state;
        let Some(scope) = scopes.get_mut(id) else {
            return;
        };
        let had = !scope.live.objects.is_empty() || !scope.synced;
        if !scope.is_secret() {
            for key in scope.live.objects.keys() {
                input.record(key.clone(), None);
            }
        }
        scope.live = Contents::default();
        scope.synced = true;
        drop(state);
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
        let state = self.lock();
        state
            .scopes
            .iter()
            .filter(|s| s.kind.name() == key.kind)
            .find_map(|s| s.live.objects.get(key).and_then(|e| e.raw.clone()))
    }

    /// Every live object of the kinds whose status Portico writes.
    pub fn live_owned(&self) -> Vec<(ObjectKey, Arc<Value>)> {
        let state = self.lock();
        let mut out = Vec::new();
        for scope in state.scopes.iter() {
            for (key, entry) in &scope.live.objects {
                if let Some(raw) = &entry.raw {
                    out.push((key.clone(), raw.clone()));
                }
            }
        }
        out
    }

    /// The translator's input: every object, but only the Secrets something refers to.
    /// Updated in place from the last call's (drop that one first, or it is copied).
    pub fn resources(&self) -> (Arc<Resources>, Vec<Problem>) {
        let mut state = self.lock();
        let State { scopes, input } = &mut *state;
        let mut problems: Vec<Problem> = scopes
            .iter()
            .flat_map(|s| s.live.problems.values().cloned())
            .collect();
        problems.sort();
        let referrers = scopes
            .iter()
            .flat_map(|s| &s.live.objects)
            .filter_map(|(key, entry)| Some((key, entry.raw.as_deref()?)));
        let wanted = refs::referenced_secrets(referrers);
        let secrets = scopes
            .iter()
            .filter(|s| s.is_secret())
            .flat_map(|s| &s.live.objects)
            .filter(|(key, _)| wanted.contains(&(key.namespace.clone(), key.name.clone())))
            .filter_map(|(key, entry)| Some((key, entry.hash, entry.doc.as_ref()?)));
        (input.load(secrets), problems)
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
    let mut object = without_bookkeeping(object);
    let raw = kind
        .owns_status
        .then(|| Arc::new(for_status(kind, &object)));
    if kind.owns_status
        && let Some(map) = object.as_object_mut()
    {
        // Portico computes these objects' status and never reads the cluster's (the status
        // writer reads it from `raw`): the translator's copy goes without.
        map.remove("status");
    }
    match kinds::decode(kind, object) {
        Ok(doc) => Ok((
            doc.key.clone(),
            Entry {
                doc: Some(doc),
                raw,
                hash,
            },
        )),
        Err(problem) => Err((key, problem)),
    }
}

/// The object without bookkeeping that neither the translator nor the status writer reads
/// and that can be larger than the object itself: managed fields, and kubectl's copy of the
/// last applied configuration.
fn without_bookkeeping(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    object
}

/// What the status writer (metadata, status, a GatewayClass's controllerName) and the Secret
/// references (specs that can name certificates) read: routes, the bulk of the objects, go
/// without their spec.
fn for_status(kind: &Kind, object: &Value) -> Value {
    let Some(map) = object.as_object() else {
        return object.clone();
    };
    let routes = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];
    let without_spec = routes.contains(&kind.name());
    Value::Object(
        map.iter()
            .filter(|(field, _)| !(without_spec && *field == "spec"))
            .map(|(field, value)| (field.clone(), value.clone()))
            .collect(),
    )
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
    fn bookkeeping_is_not_kept() {
        let (stores, _rx, id) = stores();
        let mut object = route("a", "a.example", "1");
        object["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
        object["status"] = json!({"parents": []});
        object["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "keep": "me",
        });
        stores.apply(id, object);
        let live = stores
            .live(&ObjectKey::new("HTTPRoute", "ns", "a"))
            .unwrap();
        assert_eq!(live["metadata"]["managedFields"], Value::Null);
        assert_eq!(live["metadata"]["annotations"], json!({"keep": "me"}));
        assert_eq!(live["status"], json!({"parents": []}));
        assert_eq!(live["spec"], Value::Null, "routes name no Secrets");
        let (resources, _) = stores.resources();
        let meta = &resources.http_routes[0].metadata;
        assert!(meta.managed_fields.is_none());
        assert!(resources.http_routes[0].status.is_none());
        assert_eq!(meta.annotations.as_ref().map(|a| a.len()), Some(1));
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

    /// Everything the translator sees, independent of order.
    fn view(stores: &Stores) -> Vec<String> {
        let (r, problems) = stores.resources();
        let mut out: Vec<String> = r
            .http_routes
            .iter()
            .map(|o| format!("{o:?}"))
            .chain(r.revisions.iter().map(|k| format!("{k:?}")))
            .chain(problems.iter().map(|p| p.to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn updates_in_place_match_a_fresh_list() {
        let (stores, _rx, id) = stores();
        let mut live: BTreeMap<String, Value> = BTreeMap::new();
        let mut next = crate::test_rng::sequence(7);
        for step in 0..120 {
            let name = format!("r{}", next(90));
            match next(10) {
                0 => {
                    stores.delete(id, route(&name, "", "0"));
                    live.remove(&name);
                }
                1 => {
                    // A relist with many changes at once (the rebuild path).
                    stores.init(id);
                    live.clear();
                    for i in 0..next(90) {
                        let (name, host) = (format!("r{i}"), format!("h{}.example", next(3)));
                        live.insert(name.clone(), route(&name, &host, "1"));
                        stores.init_apply(id, route(&name, &host, "1"));
                    }
                    stores.init_done(id);
                }
                _ => {
                    let object = route(&name, &format!("h{}.example", next(3)), "1");
                    live.insert(name, object.clone());
                    stores.apply(id, object);
                }
            }
            if step % 3 == 0 {
                let (fresh, _rx2, fresh_id) = self::stores();
                fresh.init(fresh_id);
                for object in live.values() {
                    fresh.init_apply(fresh_id, object.clone());
                }
                fresh.init_done(fresh_id);
                assert_eq!(view(&stores), view(&fresh), "step {step}");
            }
        }
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
