//! Envoy metadata carrying a Gateway's spec.infrastructure labels and annotations, so they
//! show in Envoy's config dump and can be matched in access logs and stats tooling.
//!
//! Shape: `filter_metadata: {"portico.dev/infrastructure": {"entries": ["label:K=V", ...,
//! "annotation:K=V", ...]}}`. A list and single-key structs, because prost encodes protobuf
//! maps in HashMap order: a struct with several keys would encode differently from one
//! translation to the next, and resource versions are hashes of the encoding.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value};

use crate::ir::Infrastructure;

/// The filter_metadata namespace Portico writes under.
pub const NAMESPACE: &str = "portico.dev/infrastructure";

fn string(s: String) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s)),
    }
}

/// None when there are no labels or annotations, so Gateways without them produce exactly
/// what they did before.
pub fn infrastructure(infra: &Infrastructure) -> Option<Metadata> {
    // Asked once per cluster: the common case answers before any iterator is set up.
    if infra.labels.is_empty() && infra.annotations.is_empty() {
        return None;
    }
    let labels = infra.labels.iter().map(|(k, v)| format!("label:{k}={v}"));
    let annotations = infra
        .annotations
        .iter()
        .map(|(k, v)| format!("annotation:{k}={v}"));
    let entries: Vec<Value> = labels.chain(annotations).map(string).collect();
    if entries.is_empty() {
        return None;
    }
    let list = Value {
        kind: Some(value::Kind::ListValue(ListValue { values: entries })),
    };
    let fields = HashMap::from([("entries".to_string(), list)]);
    Some(Metadata {
        filter_metadata: HashMap::from([(NAMESPACE.to_string(), Struct { fields })]),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn empty_infrastructure_adds_nothing() {
        assert_eq!(infrastructure(&Infrastructure::default()), None);
    }

    #[test]
    fn encoding_is_deterministic() {
        let infra = Infrastructure {
            labels: (0..20).map(|i| (format!("l{i}"), format!("{i}"))).collect(),
            annotations: (0..20).map(|i| (format!("a{i}"), format!("{i}"))).collect(),
        };
        let first = infrastructure(&infra).unwrap().encode_to_vec();
        for _ in 0..10 {
            assert_eq!(infrastructure(&infra).unwrap().encode_to_vec(), first);
        }
    }
}
