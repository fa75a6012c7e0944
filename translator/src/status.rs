//! Status of owned objects, rendered like `kubectl get -o yaml`.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectStatus {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub generation: Option<i64>,
    pub status: StatusJson,
}

/// An object's `status` as compact JSON text (what `Value::to_string` gives): a few hundred
/// bytes where the `Value` tree took kilobytes, and shared (`Arc`) between the memo and the
/// status lists. Parsed only when a caller needs the tree.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StatusJson(Arc<str>);

impl StatusJson {
    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The status as a `Value` (parsed on every call).
    pub fn to_value(&self) -> Value {
        // The text came from a `Value`, so it parses; Null would only mean a bug here.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl From<Value> for StatusJson {
    fn from(value: Value) -> Self {
        StatusJson(value.to_string().into())
    }
}

impl fmt::Debug for StatusJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for StatusJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// `{"apiVersion":"v1","kind":"List","items":[{apiVersion, kind, metadata, status}...]}`.
pub fn status_documents(statuses: &[ObjectStatus]) -> Value {
    let items: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let mut metadata = serde_json::Map::new();
            if let Some(g) = s.generation {
                metadata.insert("generation".into(), json!(g));
            }
            metadata.insert("name".into(), json!(s.name));
            if let Some(ns) = &s.namespace {
                metadata.insert("namespace".into(), json!(ns));
            }
            json!({"apiVersion": s.api_version, "kind": s.kind, "metadata": metadata, "status": s.status.to_value()})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Every condition carries this, so that output is deterministic (Portico keeps no history).
pub const TRANSITION_TIME: &str = "1970-01-01T00:00:00Z";

/// One status condition, before rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn to_json(&self, generation: Option<i64>) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("lastTransitionTime".into(), json!(TRANSITION_TIME));
        m.insert("message".into(), json!(self.message));
        if let Some(g) = generation {
            m.insert("observedGeneration".into(), json!(g));
        }
        m.insert("reason".into(), json!(self.reason));
        m.insert(
            "status".into(),
            json!(if self.status { "True" } else { "False" }),
        );
        m.insert("type".into(), json!(self.type_));
        Value::Object(m)
    }
}

pub fn conditions_json(conditions: &[Condition], generation: Option<i64>) -> Value {
    Value::Array(conditions.iter().map(|c| c.to_json(generation)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_keeps_the_compact_text_and_parses_back() {
        let v = json!({"parents": [{"b": 1, "a": "x", "conditions": []}], "z": null});
        let s = StatusJson::from(v.clone());
        assert_eq!(s.as_str(), v.to_string());
        assert_eq!(s.to_value(), v);
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
    }
}
