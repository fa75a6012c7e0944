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
/// status lists. An `Arc<String>`, not `Arc<str>`: text written into a `String` is kept
/// without copying it. Parsed only when a caller needs the tree.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StatusJson(Arc<String>);

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

impl StatusJson {
    /// Wraps text that is already compact JSON, written like `Value::to_string` writes it
    /// (keys sorted, as serde_json's map sorts them): see `json_str`.
    pub(crate) fn from_text(text: String) -> Self {
        StatusJson(Arc::new(text))
    }
}

impl From<Value> for StatusJson {
    fn from(value: Value) -> Self {
        StatusJson(Arc::new(value.to_string()))
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

/// Appends `s` as a JSON string literal, escaped as serde_json escapes it (so text written
/// directly matches `Value::to_string` byte for byte).
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escape: copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends one condition as `Condition::to_json` renders it (keys in serde_json's order),
/// without building the `Condition` or a `Value`.
pub(crate) fn write_condition(
    out: &mut String,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    use std::fmt::Write;
    out.push_str("{\"lastTransitionTime\":\"");
    out.push_str(TRANSITION_TIME);
    out.push_str("\",\"message\":");
    json_str(out, message);
    if let Some(g) = generation {
        let _ = write!(out, ",\"observedGeneration\":{g}");
    }
    out.push_str(",\"reason\":");
    json_str(out, reason);
    out.push_str(if status {
        ",\"status\":\"True\",\"type\":"
    } else {
        ",\"status\":\"False\",\"type\":"
    });
    json_str(out, type_);
    out.push('}');
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

    #[test]
    fn written_json_matches_serde_json() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é→😀\u{7f}\u{2028}");
        for s in ["", "plain", "a\"b\\c", text.as_str()] {
            let mut out = String::new();
            json_str(&mut out, s);
            assert_eq!(out, Value::String(s.into()).to_string());
        }
        for (status, generation) in [(true, Some(3)), (false, None), (true, Some(-1))] {
            let c = Condition::new("Accepted", status, "Why\n", "a \"message\"");
            let mut out = String::new();
            write_condition(
                &mut out,
                "Accepted",
                status,
                "Why\n",
                "a \"message\"",
                generation,
            );
            assert_eq!(out, c.to_json(generation).to_string());
        }
    }
}
