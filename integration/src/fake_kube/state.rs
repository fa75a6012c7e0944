//! The fake API server's memory: objects per resource type, one cluster-wide resourceVersion
//! counter, and the event history that watches replay from.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::types::ResourceType;

/// A watch event, as the history keeps it and live watches receive it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// An API error, answered as a `kind: Status` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{what} not found"))
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object itself; its status is kept (status is a subresource).
    Main,
    /// The `/status` subresource: only `status` changes.
    Status,
}

type Objects = BTreeMap<(String, String), Value>;

pub struct State {
    pub types: Vec<ResourceType>,
    objects: BTreeMap<(String, String), Objects>,
    pub rv: u64,
    history: Vec<Arc<Event>>,
    /// Watches that start before this resourceVersion get 410 Gone.
    pub compacted: u64,
    pub events: broadcast::Sender<Arc<Event>>,
    /// `METHOD path?query` of every request, in order.
    pub requests: Vec<String>,
    uid: u64,
}

impl State {
    pub fn new(types: Vec<ResourceType>) -> Self {
        let (events, _) = broadcast::channel(4096);
        State {
            types,
            objects: BTreeMap::new(),
            rv: 1,
            history: Vec::new(),
            compacted: 0,
            events,
            requests: Vec::new(),
            uid: 0,
        }
    }

    pub fn find_type(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    pub fn type_of_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, _) = super::types::split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    fn objects(&self, rt: &ResourceType) -> Option<&Objects> {
        self.objects.get(&(rt.group.clone(), rt.plural.clone()))
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        self.objects(rt)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a type in one namespace (or all), sorted by namespace and name.
    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
        let Some(objects) = self.objects(rt) else {
            return Vec::new();
        };
        objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// History events after `rv` (exclusive), or None when that part was compacted away.
    pub fn since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Forgets the history: watches resuming from any earlier resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let name = name_of(&object)
            .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value"))?;
        let key = (scope(rt, namespace), name.clone());
        if self.objects(rt).is_some_and(|o| o.contains_key(&key)) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", rt.plural),
            ));
        }
        self.uid += 1;
        let uid = format!("00000000-0000-0000-0000-{:012}", self.uid);
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        let meta = metadata(&mut object);
        if rt.namespaced {
            meta.insert("namespace".into(), json!(key.0));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!("2025-01-01T00:00:00Z"));
        Ok(self.store(rt, key, object, "ADDED"))
    }

    /// PUT: replaces the object (or, for [`Part::Status`], its status), guarded by
    /// metadata.resourceVersion when the body carries one.
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let key = (scope(rt, namespace), name.to_string());
        let current = self.current(rt, &key)?;
        check_version(&body, &current)?;
        let next = match part {
            Part::Main => {
                let mut next = body;
                if let Some(status) = current.get("status") {
                    next["status"] = status.clone();
                } else if let Some(map) = next.as_object_mut() {
                    map.remove("status");
                }
                next
            }
            Part::Status => {
                let mut next = current.clone();
                next["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                next
            }
        };
        self.update(rt, key, current, next)
    }

    /// PATCH with a JSON merge patch (also used for server-side apply and strategic merge,
    /// which for the fields Portico writes behave the same).
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        patch: &Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let key = (scope(rt, namespace), name.to_string());
        let current = self.current(rt, &key)?;
        check_version(patch, &current)?;
        let mut next = current.clone();
        match part {
            Part::Main => {
                let mut patch = patch.clone();
                if let Some(map) = patch.as_object_mut() {
                    map.remove("status");
                }
                merge_patch(&mut next, &patch);
            }
            Part::Status => {
                if let Some(status) = patch.get("status") {
                    merge_patch(&mut next["status"], status);
                }
                if let Some(meta) = patch.get("metadata") {
                    // Labels and annotations may ride along; nothing else in metadata changes.
                    for field in ["labels", "annotations"] {
                        if let Some(v) = meta.get(field) {
                            merge_patch(&mut next["metadata"][field], v);
                        }
                    }
                }
            }
        }
        self.update(rt, key, current, next)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = (scope(rt, namespace), name.to_string());
        let mut object = self
            .objects
            .get_mut(&(rt.group.clone(), rt.plural.clone()))
            .and_then(|o| o.remove(&key))
            .ok_or_else(|| ApiError::not_found(&format!("{} {name:?}", rt.plural)))?;
        self.rv += 1;
        metadata(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(rt, &key.0, "DELETED", object.clone());
        Ok(object)
    }

    fn current(&self, rt: &ResourceType, key: &(String, String)) -> Result<Value, ApiError> {
        self.objects(rt)
            .and_then(|o| o.get(key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&format!("{} {:?}", rt.plural, key.1)))
    }

    fn update(
        &mut self,
        rt: &ResourceType,
        key: (String, String),
        current: Value,
        mut next: Value,
    ) -> Result<Value, ApiError> {
        // Identity and bookkeeping stay the server's, whatever the body said.
        next["apiVersion"] = json!(rt.api_version());
        next["kind"] = json!(rt.kind);
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let bumped = spec_of(&current) != spec_of(&next);
        let meta = metadata(&mut next);
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match current["metadata"].get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.insert(
            "generation".into(),
            json!(if bumped { generation + 1 } else { generation }),
        );
        if strip_rv(current.clone()) == strip_rv(next.clone()) {
            // A no-op write changes nothing and emits no event, like the real API server.
            return Ok(current);
        }
        Ok(self.store(rt, key, next, "MODIFIED"))
    }

    fn store(
        &mut self,
        rt: &ResourceType,
        key: (String, String),
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        self.rv += 1;
        metadata(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
            .insert(key.clone(), object.clone());
        self.record(rt, &key.0, kind, object.clone());
        object
    }

    fn record(&mut self, rt: &ResourceType, namespace: &str, kind: &'static str, object: Value) {
        let event = Arc::new(Event {
            rv: self.rv,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: namespace.to_string(),
            kind,
            object,
        });
        self.history.push(event.clone());
        // Sent under the state lock, so watches see events in resourceVersion order.
        let _ = self.events.send(event);
    }
}

/// The namespace part of a storage key: empty for cluster-scoped types.
fn scope(rt: &ResourceType, namespace: &str) -> String {
    if rt.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}

fn name_of(object: &Value) -> Option<String> {
    object["metadata"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn metadata(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// Everything that counts towards metadata.generation: all but metadata and status.
fn spec_of(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

fn strip_rv(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    object
}

/// Optimistic concurrency: a body naming a resourceVersion must name the current one.
fn check_version(body: &Value, current: &Value) -> Result<(), ApiError> {
    let Some(wanted) = body["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    let have = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("");
    if wanted != have {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (have {have}, got {wanted})"
            ),
        ));
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target
        .as_object_mut()
        .expect("target was just made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway_type() -> ResourceType {
        ResourceType::new(
            "gateway.networking.k8s.io",
            "v1",
            "Gateway",
            "gateways",
            true,
        )
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn writes_bump_resource_version_and_generation_only_on_spec_changes() {
        let rt = gateway_type();
        let mut state = State::new(vec![rt.clone()]);
        let created = state
            .create(
                &rt,
                "ns",
                json!({"metadata": {"name": "gw"}, "spec": {"x": 1}}),
            )
            .unwrap();
        assert_eq!(created["metadata"]["generation"], json!(1));
        let rv1 = created["metadata"]["resourceVersion"].clone();

        let status = json!({"status": {"conditions": []}, "metadata": {"resourceVersion": rv1}});
        let patched = state.patch(&rt, "ns", "gw", &status, Part::Status).unwrap();
        assert_eq!(patched["metadata"]["generation"], json!(1));
        assert_eq!(patched["spec"], json!({"x": 1}));

        let stale = state
            .patch(&rt, "ns", "gw", &status, Part::Status)
            .unwrap_err();
        assert_eq!(stale.code, 409);

        let spec = json!({"spec": {"x": 2}, "status": {"ignored": true}});
        let patched = state.patch(&rt, "ns", "gw", &spec, Part::Main).unwrap();
        assert_eq!(patched["metadata"]["generation"], json!(2));
        assert_eq!(patched["status"], json!({"conditions": []}));

        let before = state.rv;
        state.patch(&rt, "ns", "gw", &spec, Part::Main).unwrap();
        assert_eq!(state.rv, before, "a no-op write is not an event");
    }

    #[test]
    fn compaction_makes_old_versions_too_old() {
        let rt = gateway_type();
        let mut state = State::new(vec![rt.clone()]);
        state
            .create(&rt, "ns", json!({"metadata": {"name": "a"}}))
            .unwrap();
        let rv = state.rv;
        state
            .create(&rt, "ns", json!({"metadata": {"name": "b"}}))
            .unwrap();
        assert_eq!(state.since(rv).unwrap().len(), 1);
        state.compact();
        assert!(state.since(rv).is_none());
        assert_eq!(state.since(state.rv).unwrap().len(), 0);
    }
}
