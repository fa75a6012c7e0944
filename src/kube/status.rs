//! Status write-back: the leader patches the `/status` subresource of every object whose
//! computed status differs from what the cluster holds, and nothing else.
//!
//! The patch is a JSON merge patch carrying the resourceVersion it was computed from, so a
//! concurrent change fails with 409 and is retried against a fresh read. Entries of shared
//! lists (`parents`, `ancestors`) that belong to other controllers are kept. Conditions keep
//! their lastTransitionTime while their status does not change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use portico_translator::{CONTROLLER_NAME, ObjectKey, ObjectStatus};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::kinds::{self, Kind};
use super::store::Stores;

/// How often a conflicting write is retried against a fresh read before giving up for now.
const CONFLICT_RETRIES: usize = 3;
/// When a write failed for another reason, the next attempt comes after this.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Lists of status entries that several controllers share, each entry naming its controller.
const SHARED_LISTS: [&str; 2] = ["parents", "ancestors"];

/// Writes the latest desired statuses while `leader` is true; wakes on new statuses, on any
/// store change (someone else may have overwritten status) and on leadership changes.
pub async fn run(
    client: kube::Client,
    stores: Arc<Stores>,
    mut desired: watch::Receiver<Option<Arc<Vec<ObjectStatus>>>>,
    mut leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = stores.subscribe();
    let mut written = Written::new();
    let mut retry: Option<tokio::time::Instant> = None;
    loop {
        let retry_at =
            retry.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            Ok(()) = desired.changed() => {}
            Ok(()) = seen.changed() => {}
            Ok(()) = leader.changed() => {}
            _ = tokio::time::sleep_until(retry_at) => {}
        }
        retry = None;
        if !*leader.borrow_and_update() {
            written.clear();
            continue;
        }
        // Nothing is known to be stale until the first translation has been published.
        let Some(statuses) = desired.borrow_and_update().clone() else {
            continue;
        };
        seen.mark_unchanged();
        let kinds = kinds::all();
        let stale = stale_entries(&stores, &statuses, &kinds);
        // Forget deleted objects.
        let current: BTreeSet<ObjectKey> = statuses.iter().chain(&stale).map(key_of).collect();
        written.retain(|key, _| current.contains(key));
        for status in statuses.iter().chain(&stale) {
            if !*leader.borrow() || *stop.borrow() {
                break;
            }
            let Some(kind) = kinds
                .iter()
                .find(|k| k.name() == status.kind && k.owns_status)
            else {
                continue;
            };
            if let Err(err) = write(&client, &stores, kind, status, &mut written).await {
                tracing::warn!(kind = %status.kind, namespace = ?status.namespace, name = %status.name, error = %err, "cannot write status; will retry");
                retry = Some(tokio::time::Instant::now() + RETRY_AFTER);
            }
        }
    }
}

/// Per object: hash of the desired status last written, and the resourceVersions the write
/// was based on and produced. While the desired status is the same and the store shows one
/// of those versions, there is nothing to do: the store has not caught up with the write yet,
/// or the API server normalised the status into something that compares unequal (no loops).
type Written = BTreeMap<ObjectKey, (u64, String, String)>;

async fn write(
    client: &kube::Client,
    stores: &Stores,
    kind: &Kind,
    status: &ObjectStatus,
    written: &mut Written,
) -> kube::Result<()> {
    let namespace = status.namespace.clone().unwrap_or_default();
    let key = key_of(status);
    let Some(mut live) = stores.live(&key).map(|v| v.as_ref().clone()) else {
        return Ok(());
    };
    let desired_hash = xxhash_rust::xxh3::xxh3_64(status.status.as_str().as_bytes());
    let mut desired: Option<Value> = None;
    let api: Api<DynamicObject> = if kind.namespaced {
        Api::namespaced_with(client.clone(), &namespace, &kind.resource)
    } else {
        Api::all_with(client.clone(), &kind.resource)
    };
    for _ in 0..CONFLICT_RETRIES {
        if !ours(kind, &live) {
            return Ok(());
        }
        // Computed from an older generation: the translation of the new one is coming.
        let generation = live["metadata"]["generation"].as_i64();
        if status.generation.is_some() && generation.is_some() && status.generation != generation {
            return Ok(());
        }
        let rv = live["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if written
            .get(&key)
            .is_some_and(|(hash, from, to)| *hash == desired_hash && (rv == *from || rv == *to))
        {
            return Ok(());
        }
        let current = live.get("status").cloned().unwrap_or_else(|| json!({}));
        // Parsed only for objects that may need a write.
        let desired = desired.get_or_insert_with(|| status.status.to_value());
        let target = target_status(desired, &current, &now());
        if target == current {
            return Ok(());
        }
        let patch =
            json!({"metadata": {"resourceVersion": rv}, "status": merge_diff(&current, &target)});
        match api
            .patch_status(&status.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                let new_rv = updated.metadata.resource_version.unwrap_or_default();
                written.insert(key, (desired_hash, rv, new_rv));
                tracing::info!(kind = %status.kind, namespace = %namespace, name = %status.name, "status written");
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(kind = %status.kind, name = %status.name, "status write conflicted; retrying on a fresh read");
                live = match api.get_status(&status.name).await {
                    Ok(fresh) => serde_json::to_value(fresh).unwrap_or_default(),
                    Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                    Err(err) => return Err(err),
                };
            }
            Err(err) => return Err(err),
        }
    }
    tracing::warn!(kind = %status.kind, name = %status.name, "status write kept conflicting; retrying on the next change");
    Ok(())
}

/// Objects that still carry Portico's entries in a shared list (a route that no longer
/// attaches to a Portico Gateway) but have no computed status: those entries are removed.
fn stale_entries(stores: &Stores, statuses: &[ObjectStatus], kinds: &[Kind]) -> Vec<ObjectStatus> {
    let wanted: BTreeSet<ObjectKey> = statuses.iter().map(key_of).collect();
    let mut out = Vec::new();
    for (key, live) in stores.live_owned() {
        if wanted.contains(&key) {
            continue;
        }
        let mut status = serde_json::Map::new();
        for field in SHARED_LISTS {
            let items = live["status"][field]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if items.iter().any(|e| e["controllerName"] == CONTROLLER_NAME) {
                // The list itself stays (it is a required field), without Portico's entries.
                status.insert(field.to_string(), json!([]));
            }
        }
        let Some(kind) = kinds.iter().find(|k| k.name() == key.kind) else {
            continue;
        };
        if status.is_empty() {
            continue;
        }
        out.push(ObjectStatus {
            api_version: kind.resource.api_version.clone(),
            kind: key.kind.clone(),
            namespace: kind.namespaced.then(|| key.namespace.clone()),
            name: key.name.clone(),
            generation: None,
            status: Value::Object(status).into(),
        });
    }
    out
}

fn key_of(status: &ObjectStatus) -> ObjectKey {
    ObjectKey::new(
        &status.kind,
        status.namespace.as_deref().unwrap_or(""),
        &status.name,
    )
}

/// GatewayClasses get status only when they name Portico's controller; the translator
/// decides for every other kind.
fn ours(kind: &Kind, live: &Value) -> bool {
    kind.name() != "GatewayClass"
        || live["spec"]["controllerName"].as_str() == Some(CONTROLLER_NAME)
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The status to store: the translator's, plus other controllers' entries of shared lists,
/// with each condition's lastTransitionTime kept from `current` while its status holds.
pub fn target_status(desired: &Value, current: &Value, now: &str) -> Value {
    let mut target = desired.clone();
    for field in SHARED_LISTS {
        let existing = current[field].as_array().cloned().unwrap_or_default();
        let foreign = |e: &Value| {
            e["controllerName"]
                .as_str()
                .is_some_and(|c| c != CONTROLLER_NAME)
        };
        if !target.is_object() || (target.get(field).is_none() && !existing.iter().any(foreign)) {
            continue;
        }
        // Entries stay where they are (no churn from reordering): foreign ones as they are,
        // Portico's replaced by their new version or dropped; new ones go last.
        let mut ours = target[field].as_array().cloned().unwrap_or_default();
        let mut merged = Vec::new();
        for entry in existing {
            if foreign(&entry) {
                merged.push(entry);
            } else if let Some(i) = ours
                .iter()
                .position(|o| identity(o).is_some() && identity(o) == identity(&entry))
            {
                merged.push(ours.remove(i));
            }
        }
        merged.extend(ours);
        target[field] = Value::Array(merged);
    }
    carry_times(&mut target, Some(current), now);
    target
}

fn carry_times(target: &mut Value, current: Option<&Value>, now: &str) {
    match target {
        Value::Object(map) => {
            if is_condition(map) {
                let kept = current
                    .filter(|c| c["type"] == map["type"] && c["status"] == map["status"])
                    .and_then(|c| c.get("lastTransitionTime"))
                    .filter(|t| t.is_string());
                map.insert(
                    "lastTransitionTime".into(),
                    kept.cloned().unwrap_or_else(|| json!(now)),
                );
                return;
            }
            for (field, child) in map.iter_mut() {
                carry_times(child, current.and_then(|c| c.get(field)), now);
            }
        }
        Value::Array(items) => {
            let old = current.and_then(Value::as_array);
            for item in items {
                let id = identity(item);
                let matched =
                    old.and_then(|old| old.iter().find(|o| id.is_some() && identity(o) == id));
                carry_times(item, matched, now);
            }
        }
        _ => {}
    }
}

fn is_condition(map: &serde_json::Map<String, Value>) -> bool {
    map.get("type").is_some_and(Value::is_string) && map.get("status").is_some_and(Value::is_string)
}

/// What identifies a list entry across updates: a condition's type, a parent's reference
/// and controller, a listener's name.
fn identity(item: &Value) -> Option<Value> {
    if let Value::Object(map) = item {
        if is_condition(map) {
            return Some(json!(["condition", map["type"]]));
        }
        for field in ["parentRef", "ancestorRef"] {
            if let Some(r) = map.get(field) {
                return Some(json!([field, r, map.get("controllerName")]));
            }
        }
        if let Some(name) = map.get("name").filter(|n| n.is_string()) {
            return Some(json!(["name", name]));
        }
    }
    None
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`.
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in b {
                match a.get(key) {
                    Some(old) if old == value => {}
                    Some(old) => {
                        patch.insert(key.clone(), merge_diff(old, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, time: &str) -> Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "", "lastTransitionTime": time})
    }

    #[test]
    fn transition_times_survive_while_the_condition_holds() {
        let placeholder = "1970-01-01T00:00:00Z";
        let current = json!({"conditions": [condition("Accepted", "True", "T1"), condition("Programmed", "True", "T1")],
            "listeners": [{"name": "http", "conditions": [condition("Accepted", "True", "T1")]}]});
        let desired = json!({"conditions": [condition("Accepted", "True", placeholder), condition("Programmed", "False", placeholder)],
            "listeners": [{"name": "http", "conditions": [condition("Accepted", "True", placeholder)]}]});
        let target = target_status(&desired, &current, "T2");
        assert_eq!(
            target,
            json!({"conditions": [condition("Accepted", "True", "T1"), condition("Programmed", "False", "T2")],
                "listeners": [{"name": "http", "conditions": [condition("Accepted", "True", "T1")]}]})
        );
    }

    #[test]
    fn other_controllers_parent_entries_are_kept() {
        let theirs = json!({"parentRef": {"name": "other-gw"}, "controllerName": "example.com/other", "conditions": []});
        let old_ours = json!({"parentRef": {"name": "gw"}, "controllerName": CONTROLLER_NAME, "conditions": []});
        let new_ours = json!({"parentRef": {"name": "gw2"}, "controllerName": CONTROLLER_NAME, "conditions": []});
        let current = json!({"parents": [old_ours, theirs.clone()]});
        let target = target_status(&json!({"parents": [new_ours.clone()]}), &current, "T");
        assert_eq!(
            target,
            json!({"parents": [theirs.clone(), new_ours.clone()]})
        );

        // Existing entries keep their places.
        let current = json!({"parents": [new_ours.clone(), theirs.clone()]});
        let target = target_status(&json!({"parents": [new_ours.clone()]}), &current, "T");
        assert_eq!(target, current);

        // A route that left Portico's Gateways keeps only the others' entries.
        let target = target_status(&json!({"parents": []}), &current, "T");
        assert_eq!(target, json!({"parents": [theirs]}));
    }

    #[test]
    fn an_unchanged_status_is_equal_to_its_target() {
        let current = json!({"conditions": [condition("Accepted", "True", "T1")]});
        let desired =
            json!({"conditions": [condition("Accepted", "True", "1970-01-01T00:00:00Z")]});
        assert_eq!(target_status(&desired, &current, "T2"), current);
    }

    #[test]
    fn merge_diff_produces_the_target_exactly() {
        let from = json!({"a": 1, "b": {"c": 2, "d": 3}, "gone": true, "l": [1]});
        let to = json!({"a": 1, "b": {"c": 5}, "l": [1, 2], "new": "x"});
        let patch = merge_diff(&from, &to);
        assert_eq!(
            patch,
            json!({"b": {"c": 5, "d": null}, "gone": null, "l": [1, 2], "new": "x"})
        );
        let mut applied = from.clone();
        apply_merge_patch(&mut applied, &patch);
        assert_eq!(applied, to);
    }

    fn apply_merge_patch(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch) {
            (Some(map), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        map.remove(k);
                    } else {
                        apply_merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    #[test]
    fn only_portico_gateway_classes_are_ours() {
        let class = kinds::all()
            .into_iter()
            .find(|k| k.name() == "GatewayClass")
            .unwrap();
        assert!(ours(
            &class,
            &json!({"spec": {"controllerName": CONTROLLER_NAME}})
        ));
        assert!(!ours(
            &class,
            &json!({"spec": {"controllerName": "example.com/other"}})
        ));
    }
}
